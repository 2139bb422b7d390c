"""Exceptions raised while turning bytes into chunks and vectors.

Every `IngestError` is a per-document failure with a reason a user can act on; the pipeline
records it and goes on with the next document. Anything else is a bug and aborts the run.

    IngestError
    ├── EmptyDocument        zero bytes, or no extractable text (e.g. a scan with no text layer)
    ├── UnsupportedType      content sniffing found no extractor (binary data, archives, images)
    ├── ExtractionFailed     the extractor could not read the file (corrupt or malformed)
    │   └── EncryptedDocument  a password is required
    └── InvalidRecord        a JSONL line that is not a {"_id", "title", "text"} object

    EmbedderUnavailable      (own root) the configured embedder or model cannot be loaded
    InputNotFound            (own root) a path given to ingest does not exist; nothing is ingested
"""


class IngestError(Exception):
    """A document could not be ingested; the message says why."""


class EmptyDocument(IngestError):
    pass


class UnsupportedType(IngestError):
    pass


class ExtractionFailed(IngestError):
    pass


class EncryptedDocument(ExtractionFailed):
    pass


class InvalidRecord(IngestError):
    pass


class EmbedderUnavailable(Exception):
    """The configured embedder or model cannot be loaded (not a per-document error)."""


class InputNotFound(Exception):
    """A path given to ingest does not exist (the whole request is refused)."""
