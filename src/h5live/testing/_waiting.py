"""Waiting in tests on progress, not on a wall clock sized for an idle machine.

A live test waits for a count (frames in an output, keys set in a source) to reach a target.
On a busy machine the count advances slowly but it advances; a real stall does not advance at
all. :func:`wait_for_progress` therefore fails only when the count has not moved for
``stall_s`` seconds, or when the process that should move it has ended, and says which.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

__all__ = ["StallError", "wait_for_progress"]


class StallError(AssertionError):
    """What a test waited for did not come: nothing advanced, or its process ended."""


def _ended(process: subprocess.Popen[Any]) -> str:
    """Exit code and whatever the ended process wrote to a piped stderr."""
    err: Any = ""
    if process.stderr is not None and not process.stderr.closed:
        try:
            _, err = process.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            err = "(stderr not read)"
    if isinstance(err, bytes):
        err = err.decode(errors="replace")
    args = process.args
    parts = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args)
    command = " ".join(os.fsdecode(part) for part in parts)
    return f"{command!r} ended with exit code {process.returncode}: {str(err or '').strip()}"


def _stacks(process: subprocess.Popen[Any]) -> str:
    """Ask a stalled process where it is (``h5live`` prints its threads' stacks on SIGUSR1),
    then end it, and return what it said on a piped stderr."""
    if process.poll() is None and hasattr(signal, "SIGUSR1"):
        process.send_signal(signal.SIGUSR1)
        time.sleep(1.0)  # let it write its stacks
    if process.poll() is None:
        process.kill()
    return _ended(process)


def wait_for_progress(
    count: Callable[[], int | None],
    target: int,
    *,
    what: str,
    process: subprocess.Popen[Any] | None = None,
    stall_s: float = 60.0,
    poll_s: float = 0.02,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Wait until ``count()`` reaches ``target``, for as long as it keeps advancing.

    Parameters
    ----------
    count
        Reads the count; ``None``, or an ``OSError``/``KeyError`` (a file not there yet, a
        dataset not created yet), means nothing is countable yet.
    target
        Return once the count is at least this.
    what
        What is counted, for the message (``"frames in copy.h5"``).
    process
        The process that advances the count: its end before the target fails at once, with
        its exit code and stderr.
    stall_s
        Fail when the count has not advanced for this long.

    Returns
    -------
    int
        The count reached.

    Raises
    ------
    StallError
        The count stalled, or ``process`` ended first (an ``AssertionError``: a test failure).
    """
    last: int | None = None
    moved = clock()
    while True:
        ended = process is not None and process.poll() is not None  # before a last look
        try:
            now = count()
        except (OSError, KeyError):
            now = None
        if now is not None and now >= target:
            return now
        if now is not None and (last is None or now > last):
            last, moved = now, clock()
        if ended:
            assert process is not None
            raise StallError(f"{what}: {last} of {target} when {_ended(process)}")
        if clock() - moved > stall_s:
            where = "" if process is None else f"; where its process was: {_stacks(process)}"
            raise StallError(
                f"{what} stalled: {last} of {target}, no progress for {stall_s:g} s{where}"
            )
        sleep(poll_s)
