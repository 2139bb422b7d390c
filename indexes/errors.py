"""Exceptions raised by the store, the vector index and the catalog.

IndexesError
├── NotFound
│   ├── CollectionNotFound
│   └── DocumentNotFound
├── StoreMissing        no store exists at the data directory (read-only open)
├── SchemaTooNew        the store was written by a newer schema than this code knows
├── ModelMismatch       the store was embedded with another model than the one configured
└── ModelChanged        the store moved to another model (a re-embed switched) under a writer
"""


class IndexesError(Exception):
    """Base class of every error raised by the `indexes` package."""


class NotFound(IndexesError):
    """A named thing does not exist."""


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class DocumentNotFound(NotFound):
    def __init__(self, document_id: int | str, collection: str | None = None) -> None:
        where = f" in collection {collection!r}" if collection else ""
        super().__init__(f"document {document_id!r} does not exist{where}")
        self.document_id = document_id


class StoreMissing(IndexesError):
    """Raised on a read-only open of a data directory that holds no store yet."""


class SchemaTooNew(IndexesError):
    """The store's schema version is newer than the newest migration known here."""


class ModelMismatch(IndexesError):
    """The configured embedding model differs from the one the store was built with."""

    def __init__(self, stored: str, configured: str) -> None:
        super().__init__(
            f"the store was embedded with model {stored!r} but the settings ask for "
            f"{configured!r}; run `ragsvc rebuild --reembed` to re-embed every chunk with "
            f"{configured!r}, or set the embedding model back to {stored!r}"
        )
        self.stored = stored
        self.configured = configured


class ModelChanged(IndexesError):
    """A writer of one model committed to a store that has moved to another (`rebuild
    --reembed` switched it); nothing was stored. The writer reloads with the store's model."""

    def __init__(self, stored: str, writer: str) -> None:
        super().__init__(
            f"the store now serves model {stored!r} (re-embedded) and this writer embeds with "
            f"{writer!r}; nothing was stored"
        )
        self.stored = stored
        self.writer = writer
