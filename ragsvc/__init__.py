"""ragsvc: settings and command line (then service and answering) over `indexes` and `ingest`."""

__version__ = "0.1.0"
