"""Ingestion jobs: the queue uploads land in, the runner that turns a job into a committed
document, the worker process that is the single writer, and the supervisor that starts it."""
