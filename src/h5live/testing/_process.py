"""The simulated writer in another process: the way live tests, benchmarks and the demo run it.

The child runs ``python -m h5live.testing PATH --config JSON``. It prints ``READY`` once its
file is in SWMR mode, waits on stdin at ``hold_at`` if asked, and prints a JSON summary of the
acquisition on its last line.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

from h5live._closing import ClosingContext
from h5live.testing._writer import CRASH_EXIT_CODE, SimulatedWriter, WriterConfig

__all__ = ["ProcessGroup", "WriterProcess", "main"]


def read_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """One line of a child's stdout (``bufsize=0``), read byte by byte so that nothing after it
    is buffered here and lost to a later ``communicate()``; what came if it timed out."""
    if process.stdout is None:
        raise RuntimeError("the process has no stdout pipe")
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode(errors="replace")


class WriterProcess(ClosingContext):
    """A :class:`SimulatedWriter` running its whole acquisition in another process.

    Parameters
    ----------
    path
        File to create.
    config
        What to write; keyword arguments override its fields.

    Examples
    --------
    >>> with WriterProcess("scan.h5", scan_shape=(1000,), frame_rate_hz=500) as proc:
    ...     proc.start()  # returns once the file is in SWMR mode  # doctest: +SKIP
    ...     ...  # follow it
    ...     proc.wait()  # doctest: +SKIP
    """

    def __init__(
        self, path: str | os.PathLike[str], config: WriterConfig | None = None, **overrides: Any
    ) -> None:
        self.config = WriterConfig.of(config, **overrides)
        self.path = os.fspath(path)
        self.summary: dict[str, Any] | None = None
        self.stderr = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id, once started."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit code, once the process has ended."""
        return None if self._proc is None else self._proc.poll()

    def start(self, *, ready_timeout_s: float = 60.0) -> WriterProcess:
        """Start the writer and return once its file is in SWMR mode.

        Raises
        ------
        RuntimeError
            The writer exited or did not become ready in time, with its stderr.
        """
        config = self.config.to_json()
        command = [sys.executable, "-m", "h5live.testing", self.path, "--config", config]
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            bufsize=0,
        )
        line = read_line(self._proc, ready_timeout_s)
        if line.strip() != "READY":
            self.kill()
            raise RuntimeError(
                f"simulated writer for {self.path!r} did not start (got {line!r}): "
                f"{self._collect_stderr()}"
            )
        return self

    def _collect_stderr(self) -> str:
        if self._stderr_file is None:
            return ""
        self._stderr_file.seek(0)
        self.stderr = self._stderr_file.read().decode(errors="replace")
        return self.stderr

    def go(self) -> None:
        """Let a writer that pauses at ``hold_at`` go on."""
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("the writer process is not started")
        self._proc.stdin.write(b"go\n")
        self._proc.stdin.flush()

    def wait(self, timeout_s: float | None = 120.0) -> int:
        """Wait for the writer to end and return its exit code (3: crashed on purpose).

        Raises
        ------
        RuntimeError
            The writer failed (an exit code other than 0 or 3), with its stderr.
        subprocess.TimeoutExpired
            It did not end in time.
        """
        if self._proc is None:
            raise RuntimeError("the writer process is not started")
        go = b"go\n" * len(self.config.hold_points) or None
        out, _ = self._proc.communicate(input=go, timeout=timeout_s)
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        if lines:
            self.summary = json.loads(lines[-1])
        code = self._proc.returncode
        if code not in (0, CRASH_EXIT_CODE):
            raise RuntimeError(
                f"simulated writer for {self.path!r} failed with exit code {code}:\n"
                f"{self._collect_stderr()}"
            )
        return int(code)

    def kill(self) -> None:
        """Kill the writer at once (like a crash); idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        """Kill the writer if it still runs and release its pipes (idempotent)."""
        self.kill()
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
        if self._stderr_file is not None:
            self._collect_stderr()
            self._stderr_file.close()
            self._stderr_file = None

    def __repr__(self) -> str:
        if self._proc is None:
            state = "not started"
        else:
            state = f"pid={self._proc.pid} rc={self.returncode}"
        return f"<WriterProcess {os.path.basename(self.path)!r} {state}>"


class ProcessGroup(ClosingContext):
    """Every process a test starts, ended when the test ends, whether it passed or failed.

    :meth:`start` is :class:`subprocess.Popen` (same arguments); :meth:`close` kills each
    process still running, reaps it and closes its pipes, so that nothing a test started runs
    on into the next test (a process still running when its ``Popen`` is garbage collected
    raises a ``ResourceWarning`` in whatever test runs then). The ``spawn`` fixture of
    :mod:`h5live.testing.pytest_plugin` is one of these.

    Examples
    --------
    >>> with ProcessGroup() as group:  # doctest: +SKIP
    ...     copier = group.start(["h5live", "copy", "scan.h5", "copy.h5"], stderr=PIPE)
    ...     ...  # an assertion that fails here still ends the copier
    """

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[Any]] = []

    def start(self, command: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start ``command`` (``subprocess.Popen(command, **popen)``) and own it."""
        process: subprocess.Popen[Any] = subprocess.Popen(command, **popen)
        self.processes.append(process)
        return process

    def running(self) -> list[int]:
        """Process ids of the owned processes still running."""
        return [process.pid for process in self.processes if process.poll() is None]

    def close(self) -> None:
        """Kill every owned process still running, reap it, close its pipes (idempotent)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
            process.wait()
        self.processes.clear()

    def __repr__(self) -> str:
        return f"<ProcessGroup processes={len(self.processes)} running={len(self.running())}>"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a writer process: ``python -m h5live.testing PATH --config JSON``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m h5live.testing", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--config", default="{}", help="WriterConfig as JSON")
    args = parser.parse_args(argv)
    config = WriterConfig.from_json(args.config) if args.config != "{}" else WriterConfig()
    writer = SimulatedWriter(args.path, config)
    print("READY", flush=True)
    summary = writer.run(on_hold=sys.stdin.readline)
    if summary["crashed"]:
        sys.stdout.flush()
        os._exit(CRASH_EXIT_CODE)  # no close: a crash leaves the file as it is
    writer.close()
    print(json.dumps(summary), flush=True)
    return 0
