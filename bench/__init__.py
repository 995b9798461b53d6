"""Rowback's benchmark suite: one command, ``python -m bench [--quick] [--only NAME] [--runs N]``.

Every benchmark is a module here with ``run(ctx) -> BenchResult``; measured work runs in a
child process (:mod:`bench.worker`) so its peak RSS is its own. Results go to
``bench/out/results.json``; ``docs/benchmarks.md`` explains the figures.
"""
