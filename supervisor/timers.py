"""A queue of one pending deadline per key (rule scopes, room views): set or clear a key's
deadline, take the keys whose deadline has come."""

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerQueue(Generic[K]):
    """One deadline per key; a heap whose entries no longer in `due` are skipped."""

    def __init__(self) -> None:
        self.due: dict[K, int] = {}  # key -> its deadline (ms)
        self._heap: list[tuple[int, K]] = []

    def set(self, key: K, deadline: int | None) -> None:
        """`key`'s deadline from now on (None: it has none)."""
        if deadline is None:
            self.due.pop(key, None)
        elif self.due.get(key) != deadline:
            self.due[key] = deadline
            heapq.heappush(self._heap, (deadline, key))  # the old entry goes stale

    def take(self, now_ms: int) -> list[K]:
        """The keys whose deadline is at or before `now_ms` (each no longer due)."""
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            t, key = heapq.heappop(self._heap)
            if self.due.get(key) == t:
                del self.due[key]
                out.append(key)
        return out
