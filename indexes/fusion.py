"""Retrieval building blocks: modes, filters, and fusion of ranked lists.

Fusion combines the dense (FAISS) and lexical (BM25) candidate lists:

- reciprocal rank fusion: score = Σ 1 / (rrf_k + rank), rank counted from 1 in each list;
  it uses ranks only, so it needs no calibration between the two score scales;
- weighted fusion: each list's scores normalised, then `dense_weight · dense + (1 -
  dense_weight) · lexical` (0 for a list a chunk is absent from). Normalisation `minmax` maps
  a list's candidates onto [0, 1]; `max` divides by the list's best score, so a score does not
  depend on how deep the list goes; `zscore` subtracts the candidates' mean and divides by
  their standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

Mode = Literal["dense", "lexical", "hybrid"]
Fusion = Literal["rrf", "weighted"]
Normalisation = Literal["minmax", "max", "zscore"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
MetadataValue = str | int | float | bool


class SearchFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Chunks must match every given condition."""

    collection: str | None = None
    collections: list[str] | None = None
    """Any of these (a key limited to collections searches only them)."""
    document_ids: list[int] | None = None
    media_types: list[str] | None = None
    metadata: dict[str, MetadataValue] | None = None
    """Equality on top-level keys of the documents' user metadata."""

    @property
    def is_empty(self) -> bool:
        return not (
            self.collection
            or self.collections is not None
            or self.document_ids
            or self.media_types
            or self.metadata
        )

    def where(self) -> tuple[str, list[object]]:
        """A SQL condition on `d` (documents) and `col` (collections), and its parameters."""
        clauses: list[str] = []
        params: list[object] = []
        if self.collection is not None:
            clauses.append("col.name = ?")
            params.append(self.collection)
        if self.collections is not None:
            clauses.append(f"col.name IN ({','.join('?' * len(self.collections))})")
            params.extend(self.collections)
        if self.document_ids:
            clauses.append(f"d.id IN ({','.join('?' * len(self.document_ids))})")
            params.extend(self.document_ids)
        if self.media_types:
            clauses.append(f"d.media_type IN ({','.join('?' * len(self.media_types))})")
            params.extend(self.media_types)
        for key, value in (self.metadata or {}).items():
            path = '$."' + key.replace('"', '""') + '"'
            clauses.append("json_extract(d.metadata, ?) = ?")
            params.extend([path, int(value) if isinstance(value, bool) else value])
        return (" AND ".join(clauses) or "1"), params


class FusionParams(msgspec.Struct, frozen=True):
    """How hybrid retrieval fuses its two lists (the `fusion_*` settings)."""

    method: Fusion = "weighted"
    rrf_k: int = 60
    dense_weight: float = 0.5
    normalisation: Normalisation = "max"
    candidates: int = 200
    """Chunks each retriever contributes (at least the k asked for)."""

    def fuse(
        self, dense: Sequence[tuple[int, float]], lexical: Sequence[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        if self.method == "rrf":
            return fuse_rrf([dense, lexical], self.rrf_k)
        return fuse_weighted(dense, lexical, self.dense_weight, self.normalisation)


def fuse_rrf(
    lists: Sequence[Sequence[tuple[int, float]]], rrf_k: int = 60
) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, (chunk_id, _) in enumerate(ranked, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def fuse_weighted(
    dense: Sequence[tuple[int, float]],
    lexical: Sequence[tuple[int, float]],
    dense_weight: float = 0.5,
    normalisation: Normalisation = "minmax",
) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranked, weight in ((dense, dense_weight), (lexical, 1.0 - dense_weight)):
        if not ranked:
            continue
        for chunk_id, normalised in zip(
            (chunk_id for chunk_id, _ in ranked),
            normalise([score for _, score in ranked], normalisation),
            strict=True,
        ):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * normalised
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def normalise(values: list[float], normalisation: Normalisation) -> list[float]:
    """A list's scores on a common scale (see the module docstring)."""
    if normalisation == "max":
        top = max(values)
        return [v / top for v in values] if top > 0 else [1.0] * len(values)
    if normalisation == "zscore":
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return [(v - mean) / spread for v in values] if spread > 0 else [0.0] * len(values)
    low, high = min(values), max(values)
    span = high - low
    return [(v - low) / span for v in values] if span > 0 else [1.0] * len(values)
