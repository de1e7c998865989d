"""Live runs: a simulated writer process, ``h5live copy`` in another process, latency, keep-up.

Contract
--------
- :func:`writer_max_rate` runs the simulated writer alone as fast as it can
  (``frame_rate_hz=None``) and returns the frames per second it reached.
- :func:`live_run` runs three processes as ``h5live demo`` does (and with its functions): a
  :class:`~h5live.testing.WriterProcess` writing frames and their flush times
  (``timestamps=True``), ``python -m h5live copy`` converting them as they come, and this
  process following the copy's own keys. A frame's latency is the time this process saw it
  complete in the copy (its key set: written and flushed) minus the writer's flush time, both
  ``time.time()`` on this machine; the follower polls every millisecond, which it adds.
- :func:`keep_up_verdict` decides from those times whether the copy kept up (see its
  docstring); it is a pure function, unit-tested on synthetic times.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live._demo import _follow, _wait_for_output
from h5live._write.output import HDF5_LAYOUT
from h5live.bench._data import DATA, DataSpec
from h5live.errors import H5LiveError

__all__ = ["KeepUp", "keep_up_verdict", "latency_summary", "live_run", "writer_max_rate"]

#: Seconds a live converter may sit idle before it stops (the writer never pauses that long).
IDLE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class KeepUp:
    """Whether a live copy kept up with its writer, and the figures behind the decision.

    Attributes
    ----------
    kept_up
        ``complete and end_delay_s <= end_limit_s and growth_s <= growth_limit_s``.
    complete
        Every frame the writer flushed became complete in the copy.
    end_delay_s
        From the writer's last flush to the last frame complete in the copy.
    end_limit_s
        ``max(1 s, 2 * max_latency_s)``.
    growth_s
        How much the lowest latency of the frames flushed in the last quarter of the writer's
        run exceeds the lowest of the second quarter. The lowest latency of a stretch is the
        delay of its freshest released frame: flat when the copy keeps pace (however large
        its buffers), rising as a backlog builds up.
    growth_limit_s
        ``max(0.05 s, 10% of the writer's run)``: a copy slower than the writer by about a
        fifth or more exceeds it.
    reason
        In words.
    """

    kept_up: bool
    complete: bool
    end_delay_s: float
    end_limit_s: float
    growth_s: float
    growth_limit_s: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def keep_up_verdict(
    flushed: np.ndarray, complete_at: np.ndarray, max_latency_s: float | None
) -> KeepUp:
    """Decide whether a copy kept up, from each frame's flush time and the time it became
    complete in the copy (NaN: never), in seconds.

    The copy kept up if (1) every frame became complete, (2) the last one within
    ``max(1 s, 2 * max_latency_s)`` of the writer's last flush, and (3) its lag did not grow
    steadily: see :attr:`KeepUp.growth_s`.
    """
    flushed = np.asarray(flushed, dtype=float)
    complete_at = np.asarray(complete_at, dtype=float)
    end_limit = max(1.0, 2.0 * (max_latency_s or 0.0))
    written = np.isfinite(flushed)
    complete = bool(written.any() and np.isfinite(complete_at[written]).all())
    if not complete:
        missing = int((~np.isfinite(complete_at[written])).sum()) if written.any() else 0
        return KeepUp(
            False, False, math.inf, end_limit, math.inf, math.inf, f"{missing} frames not copied"
        )
    times, done = flushed[written], complete_at[written]
    start, end = float(times.min()), float(times.max())
    span = end - start
    end_delay = float(done.max()) - end
    latency = done - times
    second = (times >= start + span / 4) & (times < start + span / 2)
    last = times >= start + 3 * span / 4
    growth = 0.0
    if span > 0 and second.any() and last.any():
        growth = float(latency[last].min() - latency[second].min())
    growth_limit = max(0.05, 0.1 * span)
    reasons = []
    if end_delay > end_limit:
        reasons.append(f"ended {end_delay:.2f} s after the writer (limit {end_limit:.2f} s)")
    if growth > growth_limit:
        reasons.append(f"lag grew by {growth:.2f} s (limit {growth_limit:.2f} s)")
    return KeepUp(
        not reasons,
        True,
        end_delay,
        end_limit,
        growth,
        growth_limit,
        "; ".join(reasons) or "kept up",
    )


def latency_summary(latency_s: np.ndarray) -> dict[str, float | None]:
    """p50, p99 and max of latencies (s) in milliseconds, NaN left out."""
    values = latency_s[np.isfinite(latency_s)] * 1e3
    if not values.size:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def live_scan_shape(spec: DataSpec, frames: int) -> tuple[int, ...]:
    """A live scan of about ``frames`` frames, with the spec's inner scan dims (whole rows)."""
    inner = math.prod(spec.scan_shape[1:])
    return (max(1, round(frames / max(inner, 1))), *spec.scan_shape[1:])


def _writer_options(spec: DataSpec, compressed: bool) -> dict[str, Any]:
    return {
        "frame_shape": spec.frame_shape,
        "dtype": spec.dtype,
        "data_chunks": spec.chunks,
        "compression": spec.writer_compression if compressed else None,
        "timestamps": True,
    }


def writer_max_rate(workdir: Path, spec: DataSpec, frames: int, *, compressed: bool) -> float:
    """Frames per second of the simulated writer alone, unthrottled."""
    from h5live.testing import WriterProcess

    path = workdir / "writer_alone.h5"
    scan = live_scan_shape(spec, frames)
    try:
        with WriterProcess(
            path, scan_shape=scan, frame_rate_hz=None, **_writer_options(spec, compressed)
        ) as writer:
            writer.start()
            writer.wait(timeout_s=600)
            summary = writer.summary or {}
    finally:
        path.unlink(missing_ok=True)
    return float(summary.get("rate_hz", math.nan))


def _converter_command(
    source: Path,
    destination: Path,
    chunk_shape: tuple[int, ...],
    buffer_shape: tuple[int, ...],
    max_latency_s: float | None,
) -> list[str]:
    command = [sys.executable, "-m", "h5live", "copy", str(source), str(destination)]
    command += ["--data", DATA, "--compression", "source", "--overwrite", "--json"]
    command += ["--no-progress", "--timeout", str(IDLE_TIMEOUT_S)]
    command += ["--max-latency", "none" if max_latency_s is None else str(max_latency_s)]
    command += ["--chunk-shape", *map(str, chunk_shape)]
    command += ["--buffer-shape", *map(str, buffer_shape)]
    return command


def live_run(
    workdir: Path,
    spec: DataSpec,
    *,
    chunk_shape: tuple[int, ...],
    buffer_shape: tuple[int, ...],
    rate: float | None,
    frames: int,
    max_latency_s: float | None,
    compressed: bool,
) -> dict[str, Any]:
    """One live copy of a simulated writer at ``rate`` frames/s (``None``: unthrottled):
    latency, the keep-up verdict, the writer's achieved rate and the converter's summary."""
    from h5live.testing import WriterProcess

    source, destination = workdir / "live_source.h5", workdir / "live_copy.h5"
    scan = live_scan_shape(spec, frames)
    count = math.prod(scan)
    command = _converter_command(source, destination, chunk_shape, buffer_shape, max_latency_s)
    options = _writer_options(spec, compressed)
    try:
        with WriterProcess(
            source, scan_shape=scan, frame_rate_hz=rate, hold_at=0, **options
        ) as writer:
            # started first: it waits for the writer's file, and both import in parallel
            converter = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            try:
                writer.start()
                _wait_for_output(destination, converter, 60, layout=HDF5_LAYOUT)
                writer.go()
                complete_at, _ = _follow(destination, count, IDLE_TIMEOUT_S, layout=HDF5_LAYOUT)
                out, err = converter.communicate(timeout=600)
            finally:
                if converter.poll() is None:
                    converter.kill()
                    converter.communicate()
            writer.wait(timeout_s=600)
            written = writer.summary or {}
        if converter.returncode != 0:
            raise H5LiveError(
                f"h5live copy of the live run failed (exit {converter.returncode}): "
                f"{err.strip().splitlines()[-1] if err.strip() else 'no message'}. Fix: run "
                f"{' '.join(command)} by hand with --debug."
            )
        with h5py.File(source, "r") as f:
            flushed = np.asarray(f["/entry/flush_time"][...], dtype=float).ravel()[:count]
    finally:
        source.unlink(missing_ok=True)
        destination.unlink(missing_ok=True)
    result = json.loads(out.strip().splitlines()[-1])
    verdict = keep_up_verdict(flushed, complete_at, max_latency_s)
    return {
        "target_rate_hz": rate,
        "writer_rate_hz": float(written.get("rate_hz", math.nan)),
        "frames": count,
        "latency": latency_summary(complete_at - flushed),
        "keep_up": verdict.as_dict(),
        "converter": {key: result.get(key) for key in ("state", "seconds", "chunk_copy")},
    }
