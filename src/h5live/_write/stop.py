"""Stopping a live write from a signal handler: Ctrl-C, SIGTERM or SIGHUP.

A signal handler records the request (:func:`request_stop`) before it raises; the write loop
raises :class:`Stopped` at its next chunk and at each wait for a source (:func:`check_stop`),
where the output can still be marked interrupted. The handler's own KeyboardInterrupt is
swallowed when it lands inside a weakref callback or ``__del__`` (h5py runs such callbacks at
every poll): without the waits' check, a Ctrl-C while the writer paused was lost, and the
conversion ran on to its idle timeout (or forever, with none).
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
