"""The lexical index: BM25 over chunk text, derived from the store like the vectors.

Text is analysed into terms by `Analyzer`: lower-cased, diacritics folded, split into words,
English stopwords dropped, each word reduced to its Snowball stem (PyStemmer). The same
analysis applies to chunks and to queries, so a query term matches every inflection of it.

Postings live in immutable segments, each a CSR matrix (terms by positions) of term
frequencies. New chunks arrive as a new small segment; segments of similar size merge, as in
a log-structured index, so there are O(log n) of them and a merge costs O(log n) per posting
over time. A position is a chunk's slot in the arrays `chunk_ids` (ascending) and `lengths`;
a removed chunk is marked dead and its postings are dropped at the next merge. Until then it
still counts in document frequencies, as deleted documents do in Lucene.

Scores are Okapi BM25 with the Lucene idf, ln(1 + (N - df + 0.5) / (df + 0.5)), computed at
query time, so `k1` and `b` can change without rebuilding anything. The index saves as a
folder of `.npy` files (loaded without pickle) and a JSON vocabulary; a loaded index maps its
postings from those files instead of reading them onto the heap. A search ranks only the
chunks at or above a floor under the k-th best score, found among the rarest terms' chunks;
equal scores are ordered by chunk id.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from indexes.files import write_array, write_bytes

ANALYZER_VERSION = 1
"""Bumped whenever analysis changes; a saved index of another version is rebuilt."""

# English stopwords: function words that carry no topic (articles, pronouns, auxiliaries,
# prepositions, conjunctions). Negations are stopwords too; BM25 cannot use them anyway.
_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our
ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself
yourselves
"""
ENGLISH_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_WORD = re.compile(r"\w+", re.UNICODE)
DEFAULT_K1 = 1.2
DEFAULT_B = 0.3
"""Chosen on SciFact's training split with the other retrieval defaults (`ragsvc eval tune`)."""
_MERGE_FACTOR = 2


class Analyzer:
    """Text → terms. Thread-safe; stems are memoised, the vocabulary of a corpus is small."""

    def __init__(self, stopwords: frozenset[str] = ENGLISH_STOPWORDS) -> None:
        import Stemmer

        self.stopwords = stopwords
        self._stemmer = Stemmer.Stemmer("english")
        self._stems: dict[str, str] = {}
        self._lock = threading.Lock()

    def terms(self, text: str) -> list[str]:
        text = text.lower()
        if not text.isascii():
            text = "".join(
                c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
            )
        stems = self._stems
        out: list[str] = []
        for word in _WORD.findall(text):
            if word in self.stopwords:
                continue
            stem = stems.get(word)
            if stem is None:
                with self._lock:
                    stem = stems[word] = self._stemmer.stemWord(word)
            out.append(stem)
        return out


class Segment(NamedTuple):
    """Postings of some positions: for term t, `positions[indptr[t]:indptr[t + 1]]` with
    their term frequencies. Terms added to the vocabulary later have no postings here."""

    indptr: np.ndarray  # int64, (terms + 1,)
    positions: np.ndarray  # int32
    frequencies: np.ndarray  # float32

    @property
    def size(self) -> int:
        return len(self.positions)

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        if term + 1 >= len(self.indptr):
            return _EMPTY_INT, _EMPTY_FLOAT
        start, end = int(self.indptr[term]), int(self.indptr[term + 1])
        return self.positions[start:end], self.frequencies[start:end]


_EMPTY_INT = np.zeros(0, dtype=np.int32)
_EMPTY_FLOAT = np.zeros(0, dtype=np.float32)


def _padded(indptr: np.ndarray, size: int) -> np.ndarray:
    """A segment's `indptr` over a vocabulary that has grown since it was made."""
    if len(indptr) >= size:
        return indptr
    return np.concatenate([indptr, np.full(size - len(indptr), indptr[-1], dtype=indptr.dtype)])


def _segment(
    term_ids: np.ndarray, positions: np.ndarray, counts: np.ndarray, terms: int
) -> Segment:
    order = np.lexsort((positions, term_ids))
    term_ids, positions, counts = term_ids[order], positions[order], counts[order]
    indptr = np.zeros(terms + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_ids, minlength=terms), out=indptr[1:])
    return Segment(indptr, positions.astype(np.int32), counts.astype(np.float32))


class LexicalIndex:
    """BM25 over chunks, keyed by chunk id. Not thread-safe for writers: the reader that owns
    it serialises `add`/`remove` against searches."""

    def __init__(self, analyzer: Analyzer, *, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        self.vocabulary: dict[str, int] = {}
        self.terms: list[str] = []
        self.chunk_ids = np.zeros(0, dtype=np.int64)
        self.lengths = np.zeros(0, dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.document_frequency = np.zeros(0, dtype=np.int64)
        self.segments: list[Segment] = []
        self._live_count = 0
        self._live_length = 0.0
        self._norm: np.ndarray | None = None

    def __len__(self) -> int:
        return self._live_count

    def ids(self) -> np.ndarray:
        """The chunk ids held (removed ones excluded)."""
        return self.chunk_ids[self.alive]

    @property
    def postings(self) -> int:
        return sum(s.size for s in self.segments)

    # -- writes ------------------------------------------------------------------------------

    def add(
        self,
        chunk_ids: Sequence[int] | np.ndarray,
        texts: Sequence[str] | None = None,
        *,
        terms: Sequence[list[str]] | None = None,
    ) -> None:
        """Add chunks by their text, or by their `terms` already analysed (so analysis can
        run outside the owner's lock). Ids must be ascending and larger than every id held:
        chunk ids only grow."""
        ids = np.asarray(chunk_ids, dtype=np.int64)
        if not len(ids):
            return
        if (len(self.chunk_ids) and ids[0] <= self.chunk_ids[-1]) or np.any(np.diff(ids) <= 0):
            raise ValueError("chunk ids must be added in ascending order")
        if terms is None:
            assert texts is not None
            terms = [self.analyzer.terms(text) for text in texts]
        first = len(self.chunk_ids)
        term_ids: list[int] = []
        positions: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(len(ids), dtype=np.float32)
        vocabulary = self.vocabulary
        for offset, analysed in enumerate(terms):
            lengths[offset] = len(analysed)
            for term, count in Counter(analysed).items():
                term_id = vocabulary.get(term)
                if term_id is None:
                    term_id = vocabulary[term] = len(self.terms)
                    self.terms.append(term)
                term_ids.append(term_id)
                positions.append(first + offset)
                counts.append(count)
        term_array = np.asarray(term_ids, dtype=np.int64)
        frequency = np.bincount(term_array, minlength=len(self.terms))
        if len(self.document_frequency) < len(frequency):
            grown = np.zeros(len(frequency), dtype=np.int64)
            grown[: len(self.document_frequency)] = self.document_frequency
            self.document_frequency = grown
        self.document_frequency += frequency
        self.chunk_ids = np.concatenate([self.chunk_ids, ids])
        self.lengths = np.concatenate([self.lengths, lengths])
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self._live_count += len(ids)
        self._live_length += float(lengths.sum())
        self.segments.append(
            _segment(
                term_array,
                np.asarray(positions, dtype=np.int64),
                np.asarray(counts),
                len(self.terms),
            )
        )
        self._merge()
        self._norm = None

    def remove(self, chunk_ids: Sequence[int] | np.ndarray) -> None:
        ids = np.asarray(chunk_ids, dtype=np.int64)
        if not len(ids) or not len(self.chunk_ids):
            return
        slots = np.searchsorted(self.chunk_ids, ids)
        in_range = slots < len(self.chunk_ids)
        slots, ids = slots[in_range], ids[in_range]
        slots = slots[self.chunk_ids[slots] == ids]
        slots = slots[self.alive[slots]]
        if not len(slots):
            return
        self.alive[slots] = False
        self._live_count -= len(slots)
        self._live_length -= float(self.lengths[slots].sum())
        self._norm = None

    def _merge(self) -> None:
        while (
            len(self.segments) > 1
            and self.segments[-1].size * _MERGE_FACTOR >= self.segments[-2].size
        ):
            newer = self.segments.pop()
            older = self.segments.pop()
            merged, dead = self._merged([older, newer])
            self.segments.append(merged)
            self.document_frequency -= dead

    def _merged(self, segments: list[Segment]) -> tuple[Segment, np.ndarray]:
        """One segment holding the live postings of `segments` (oldest first: their
        positions ascend from one to the next), and the document frequency of the dead
        postings it dropped (for the caller to subtract). Each term's postings are copied
        run by run into place, so a merge holds little beyond its result (sorting the
        postings of a million chunks took several GB of temporaries)."""
        terms = len(self.terms)
        lengths = [np.diff(_padded(segment.indptr, terms + 1)) for segment in segments]
        indptr = np.zeros(terms + 1, dtype=np.int64)
        np.cumsum(sum(lengths), out=indptr[1:])
        positions = np.empty(int(indptr[-1]), dtype=np.int32)
        frequencies = np.empty(int(indptr[-1]), dtype=np.float32)
        destination = indptr[:-1].copy()
        for segment, length in zip(segments, lengths, strict=True):
            starts = segment.indptr
            for term in np.flatnonzero(length).tolist():
                start, end, to = int(starts[term]), int(starts[term + 1]), int(destination[term])
                positions[to : to + end - start] = segment.positions[start:end]
                frequencies[to : to + end - start] = segment.frequencies[start:end]
            destination += length
        live = self.alive[positions]
        dead = np.zeros(len(self.document_frequency), dtype=np.int64)
        if not live.all():
            dead_terms = np.searchsorted(indptr, np.flatnonzero(~live), side="right") - 1
            dead[:terms] = np.bincount(dead_terms, minlength=terms)
            indptr[1:] -= np.cumsum(dead[:terms])
            positions, frequencies = positions[live], frequencies[live]
        return Segment(indptr, positions, frequencies), dead

    # -- search ------------------------------------------------------------------------------

    def set_parameters(self, k1: float, b: float) -> None:
        """Score with other BM25 parameters from the next search on (nothing is rebuilt)."""
        self.k1, self.b = k1, b
        self._norm = None

    def _length_norm(self) -> np.ndarray:
        if self._norm is None or len(self._norm) != len(self.lengths):
            average = self._live_length / self._live_count if self._live_count else 1.0
            self._norm = (
                self.k1 * (1 - self.b + self.b * self.lengths / max(average, 1e-9))
            ).astype(np.float32)
        return self._norm

    def query_terms(self, text: str) -> list[int]:
        """Distinct vocabulary ids of the query's terms, in order of first appearance."""
        seen: list[int] = []
        for term in self.analyzer.terms(text):
            term_id = self.vocabulary.get(term)
            if term_id is not None and term_id not in seen:
                seen.append(term_id)
        return seen

    def search(
        self, text: str, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (chunk id, BM25 score), best first, among live positions where `allowed`
        (a boolean array over positions) is true. Chunks sharing no term are not returned."""
        term_ids = self.query_terms(text)
        if not term_ids or not self._live_count:
            return []
        norm = self._length_norm()
        scores = np.zeros(len(self.chunk_ids), dtype=np.float32)
        n = float(self._live_count)
        k1_plus_1 = self.k1 + 1.0
        for term_id in term_ids:
            df = float(self.document_frequency[term_id])
            idf = np.float32(np.log1p((n - df + 0.5) / (df + 0.5)))
            for segment in self.segments:
                positions, frequencies = segment.postings(term_id)
                if len(positions):
                    # idf · f · (k1 + 1) / (f + norm) in two buffers: a common term at a
                    # million chunks has 100,000 postings, and every temporary is a pass.
                    part = np.multiply(frequencies, idf)
                    part *= k1_plus_1
                    denominator = norm[positions]
                    denominator += frequencies
                    part /= denominator
                    scores[positions] += part
        if allowed is not None or self._live_count < len(self.alive):
            keep = self.alive if allowed is None else (self.alive & allowed)
            scores[~keep] = 0.0
        matched = np.flatnonzero(scores >= self._score_floor(scores, term_ids, k))
        if not len(matched):
            return []
        if len(matched) > max(k, 10_000):
            values = scores[matched]
            kth = np.partition(values, len(values) - k)[len(values) - k]
            matched = matched[values >= kth]  # every chunk tied with the k-th stays in
        order = np.lexsort((self.chunk_ids[matched], -scores[matched]))
        best = matched[order[:k]]
        return [
            (int(chunk_id), float(score))
            for chunk_id, score in zip(self.chunk_ids[best], scores[best], strict=True)
        ]

    def _score_floor(self, scores: np.ndarray, term_ids: list[int], k: int) -> np.float32:
        """A score no higher than the k-th best, above zero where one is cheap to find: the
        k-th best among the chunks of the rarest terms (any k chunks' k-th best is at most
        the k-th best of all). Choosing the top k among the chunks at or above it is exact,
        and at a million chunks a query matches hundreds of thousands of them: ranking only
        those above the floor saves most of the selection."""
        smallest = np.float32(np.finfo(np.float32).tiny)  # every chunk with a matching term
        if len(scores) < 50_000:
            return smallest
        chosen: list[np.ndarray] = []
        count = 0
        for term_id in sorted(term_ids, key=lambda t: int(self.document_frequency[t])):
            for segment in self.segments:
                positions = segment.postings(term_id)[0]
                chosen.append(positions)
                count += len(positions)
            if count >= k:
                break
        among = scores[np.unique(np.concatenate(chosen))]  # a chunk with two of them: once
        if len(among) < k:
            return smallest
        floor = np.partition(among, len(among) - k)[len(among) - k]
        return max(floor, smallest)

    # -- persistence -------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the index, compacted (dead positions dropped), as `.npy` files and a JSON
        vocabulary, without changing it (searches may run meanwhile). The caller fsyncs the
        folder."""
        folder.mkdir(parents=True, exist_ok=True)
        live = np.flatnonzero(self.alive)
        remap = np.full(len(self.chunk_ids), -1, dtype=np.int64)
        remap[live] = np.arange(len(live))
        if self.segments:
            merged, dead = self._merged(self.segments)
        else:
            empty = np.zeros(0, dtype=np.int64)
            merged, dead = _segment(empty, empty, empty, len(self.terms)), empty
        arrays = {
            "chunk_ids": self.chunk_ids[live],
            "lengths": self.lengths[live],
            "indptr": merged.indptr,
            "positions": remap[merged.positions].astype(np.int32),
            "frequencies": merged.frequencies,
            "document_frequency": self.document_frequency - dead
            if len(dead)
            else self.document_frequency,
        }
        for name, array in arrays.items():
            write_array(folder / f"{name}.npy", array)
        write_bytes(folder / "vocabulary.json", json.dumps(self.terms).encode())

    @classmethod
    def load(
        cls, folder: Path, analyzer: Analyzer, *, k1: float = DEFAULT_K1, b: float = DEFAULT_B
    ) -> LexicalIndex:
        index = cls(analyzer, k1=k1, b=b)
        # The postings (most of the index: 600 MB at a million chunks) stay in the snapshot's
        # files, mapped read-only: the kernel keeps the pages searches touch and can drop
        # the rest, and nothing writes to them (deletes clear `alive`; merges make new
        # arrays). A later snapshot replacing the files leaves this mapping intact.
        mapped = ("positions", "frequencies")
        arrays = {
            name: np.load(
                folder / f"{name}.npy",
                allow_pickle=False,
                mmap_mode="r" if name in mapped else None,
            )
            for name in (
                "chunk_ids",
                "lengths",
                "indptr",
                "positions",
                "frequencies",
                "document_frequency",
            )
        }
        index.terms = json.loads((folder / "vocabulary.json").read_bytes())
        index.vocabulary = {term: number for number, term in enumerate(index.terms)}
        index.chunk_ids = arrays["chunk_ids"].astype(np.int64)
        index.lengths = arrays["lengths"].astype(np.float32)
        index.alive = np.ones(len(index.chunk_ids), dtype=bool)
        index.document_frequency = arrays["document_frequency"].astype(np.int64)
        index.segments = [Segment(arrays["indptr"], arrays["positions"], arrays["frequencies"])]
        if len(index.terms) + 1 != len(arrays["indptr"]) or len(index.document_frequency) != len(
            index.terms
        ):
            raise ValueError(f"lexical index in {folder} is inconsistent")
        index._live_count = len(index.chunk_ids)
        index._live_length = float(index.lengths.sum())
        return index
