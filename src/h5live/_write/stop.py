"""Stopping a live write from a signal handler: Ctrl-C, SIGTERM or SIGHUP.

A signal handler only records the request (:func:`request_stop`); the write loop raises
:class:`Stopped` at its next chunk (:func:`check_stop`), where the output can still be marked
interrupted. A KeyboardInterrupt raised inside a weakref callback or ``__del__`` would be
swallowed.
"""

from __future__ import annotations

import signal

__all__ = ["Stopped", "check_stop", "clear_stop", "request_stop"]


class Stopped(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (a job scheduler, a closed terminal): a conversion stops as
    for Ctrl-C, its output marked interrupted."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_stop_requested: list[int] = []


def request_stop(signum: int) -> None:
    """Ask running live writes to stop at their next chunk (a signal handler calls this)."""
    _stop_requested.append(signum)


def check_stop() -> None:
    """Raise :class:`Stopped` if a stop was requested."""
    if _stop_requested:
        raise Stopped(_stop_requested.pop())


def clear_stop() -> None:
    """Forget requests (one was handled: a later write must not stop for it)."""
    _stop_requested.clear()
