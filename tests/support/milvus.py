"""Whether milvus-lite can run here."""

from __future__ import annotations

import importlib.util

MILVUS_MISSING = next(
    (name for name in ("pymilvus", "milvus_lite") if importlib.util.find_spec(name) is None), None
)
