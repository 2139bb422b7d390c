"""An in-memory LRU cache of answers to deterministic requests.

Keys combine the backend's own key (backend, model, template, rendered prompt, schema) with
the store generation, so any change to the documents makes every older entry unreachable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ragsvc.answering.base import Answer


class ResponseCache:
    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Answer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is not None:
                self._entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return answer

    def put(self, key: str, answer: Answer) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
