"""``python -m rowback``: the same as the ``rowback`` command."""

from rowback.cli import main

main()
