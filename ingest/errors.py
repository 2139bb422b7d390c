"""Exceptions raised while turning bytes into chunks and vectors, under one root, `IngestError`.

Every `DocumentError` is a per-document failure with a reason a user can act on; the pipeline
records it and goes on with the next document. The others refuse the whole run. Anything
else is a bug and aborts the run.

    IngestError
    ├── DocumentError            one document could not be ingested
    │   ├── EmptyDocument        zero bytes, or no extractable text (a scan with no text layer)
    │   ├── UnsupportedType      content sniffing found no extractor (binary data, archives)
    │   ├── ExtractionFailed     the extractor could not read the file (corrupt or malformed)
    │   │   └── EncryptedDocument  a password is required
    │   └── InvalidRecord        a JSONL line that is not a {"_id", "title", "text"} object
    ├── EmbedderUnavailable      the configured embedder or model cannot be loaded
    └── InputNotFound            a path given to ingest does not exist; nothing is ingested
"""


class IngestError(Exception):
    """The root of ingestion's errors."""


class DocumentError(IngestError):
    """A document could not be ingested; the message says why."""


class EmptyDocument(DocumentError):
    pass


class UnsupportedType(DocumentError):
    pass


class ExtractionFailed(DocumentError):
    pass


class EncryptedDocument(ExtractionFailed):
    pass


class InvalidRecord(DocumentError):
    pass


class EmbedderUnavailable(IngestError):
    """The configured embedder or model cannot be loaded (not a per-document error)."""


class InputNotFound(IngestError):
    """A path given to ingest does not exist (the whole request is refused)."""
