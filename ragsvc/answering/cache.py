"""An in-memory LRU cache of answers (and condensed questions) to deterministic requests.

Keys combine the backend's own key (backend, model, template, rendered prompt, schema) with
the store generation, so any change to the documents makes every older entry unreachable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ResponseCache(Generic[V]):
    """Values by key, the least recently used going first beyond `size`."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return answer

    def put(self, key: str, answer: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
