"""ragsvc: the service, answering and command line over the `indexes` store and `ingest` pipeline."""

__version__ = "0.1.0"
