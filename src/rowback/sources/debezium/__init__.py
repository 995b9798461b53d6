"""Debezium change events (JSON) from files, stdin, NATS JetStream or Redis Streams.

``decode`` turns one event into a ``Change``; ``ingest`` writes batches of them to a store
together with how far the input was read, so a rerun resumes exactly. ``nats`` and
``redis`` consume streams; their client libraries are optional extras, imported lazily.
"""
