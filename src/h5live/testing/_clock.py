"""A fake clock for testing waiting logic without sleeping."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

__all__ = ["FakeClock"]


class FakeClock:
    """A ``clock``/``sleep`` pair whose time only moves when ``sleep`` is called.

    Actions scheduled with :meth:`at` or :meth:`after` run, in time order, when a sleep passes
    their time; this is how tests make a writer act "while" a follower waits.

    Examples
    --------
    >>> clock = FakeClock()
    >>> clock.after(0.5, lambda: print("writer acts"))
    >>> clock.sleep(1.0)
    writer acts
    >>> clock()
    1.0
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._events: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance time by ``seconds``, running the actions that fall due."""
        self.sleeps.append(seconds)
        target = self.now + seconds
        while self._events and self._events[0][0] <= target:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()
        self.now = target

    def at(self, when: float, action: Callable[[], object]) -> None:
        """Run ``action`` once time reaches ``when``."""
        heapq.heappush(self._events, (when, next(self._order), action))

    def after(self, delay: float, action: Callable[[], object]) -> None:
        """Run ``action`` ``delay`` seconds from now."""
        self.at(self.now + delay, action)
