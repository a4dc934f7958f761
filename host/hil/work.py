"""The images still to run, shared by the boards of one run (one thread per board)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable


class WorkQueue:
    def __init__(self, indices: Iterable[int]) -> None:
        self._todo: deque[int] = deque(indices)
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            return self._todo.popleft() if self._todo else None

    def give_back(self, indices: Iterable[int]) -> None:
        """Images a board could not finish (it failed or the run stopped): another board may take them."""
        with self._lock:
            self._todo.extendleft(sorted(indices, reverse=True))

    def __len__(self) -> int:
        with self._lock:
            return len(self._todo)
