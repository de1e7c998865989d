"""``h5live demo``: a simulated acquisition converted live to NWB, measured and verified.

Contract
--------
- Three processes: a simulated detector writes ``acquisition.h5`` (frames and their flush
  times); ``h5live nwb`` converts it into ``acquisition.nwb`` while it is written, showing its
  progress bar; this process follows the NWB file's own keys (h5live following h5live's output)
  and stamps when each frame became complete there.
- The summary: frames, throughput, latency from the writer's flush to the frame being complete
  in the NWB file (p50, p99), the writer's rate, and whether the NWB data (read with pynwb)
  equal the source's frames and flush times. A PNG is saved next to the output (if
  matplotlib is installed): each frame's latency with its p50 and p99 and a note of what sets
  the sawtooth (frames wait for their chunk's release), and the lag behind the writer in
  frames and in seconds over the acquisition.
- Exit 0 only if every frame was converted and verified.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._write.output import NWB_LAYOUT, OutputLayout
from h5live.errors import H5LiveError

__all__ = ["run_demo"]

FRAME = (128, 128)
MAX_LATENCY_S, CHUNK_FRAMES = 0.05, 16  # what the converter is given, and the plot explains
DATA, FLUSH_TIME = "/entry/data/data", "/entry/flush_time"  # the simulated detector's
METADATA = {  # what --metadata gives h5live nwb (YAML works as well)
    "session_description": "h5live demo: a simulated detector converted to NWB while it writes",
    "experimenter": ["h5live demo"],
    "institution": "h5live",
    "keywords": ["h5live", "SWMR", "live conversion"],
    "subject": {
        "subject_id": "simulated-detector",
        "description": "no animal: frames from h5live's simulated detector",
        "species": "n/a",
        "sex": "U",
        "age": "P0D/",
    },
    "series": {"name": "detector", "unit": "counts", "description": "simulated frames"},
}


def _wait_for_output(
    path: Path,
    converter: subprocess.Popen[str],
    timeout_s: float,
    layout: OutputLayout = NWB_LAYOUT,
) -> None:
    """Until the converter has made its output (it imports pynwb first: about a second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if converter.poll() is not None:
            raise H5LiveError(
                f"the converter of the demo exited early (code {converter.returncode}); its "
                "message is above. Fix: rerun with --debug."
            )
        try:
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                if layout.keys in f:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise H5LiveError(f"{path} was not created within {timeout_s} s. Fix: rerun with --debug.")


def _follow(
    path: Path,
    frames: int,
    timeout: float | None,
    layout: OutputLayout = NWB_LAYOUT,
    policy: FollowPolicy | None = None,
) -> tuple[np.ndarray, list[Any]]:
    """When each frame became complete in the output (NWB, or ``layout``'s), and (time,
    frontier) samples (``policy``: how to poll; a benchmark polls gently, so as not to take
    the CPU from what it measures)."""
    complete_at = np.full(frames, np.nan)
    samples: list[tuple[float, int]] = []
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        follower = KeyFollower(
            [f[layout.keys]], timeout=timeout, finished_dataset=f[layout.finished], policy=policy
        )
        for start, stop in follower.iter_ranges():
            now = time.time()
            complete_at[start : min(stop, frames)] = now
            samples.append((now, stop))
    return complete_at, samples


def _verify(
    source: Path, output: Path, frames: int, paths: tuple[str, str] = (DATA, FLUSH_TIME)
) -> tuple[bool, np.ndarray]:
    """Whether the NWB frames and timestamps equal the source's (``paths``: its frames and
    flush times); the source's flush times."""
    from pynwb import NWBHDF5IO

    with h5py.File(source, "r") as f:
        data = f[paths[0]][...]
        flushed = f[paths[1]][...]
    with NWBHDF5IO(output, "r") as io:
        series = io.read().acquisition["detector"]
        equal = bool(
            series.data.shape[0] == frames
            and np.array_equal(series.data[:], data)
            and np.array_equal(series.timestamps[:], flushed)
        )
    return equal, flushed


def _lag(
    flushed: np.ndarray, complete_at: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """At each of ``times`` (same clock as the per-frame arrays): how many frames the writer
    had flushed that were not yet complete in the output, and how long the oldest of them had
    waited (s; 0 when none waited)."""
    flushed_sorted = np.sort(flushed[np.isfinite(flushed)])
    done_sorted = np.sort(complete_at[np.isfinite(complete_at)])
    n_flushed = np.searchsorted(flushed_sorted, times, side="right")
    n_done = np.searchsorted(done_sorted, times, side="right")
    frames = np.maximum(n_flushed - n_done, 0)
    oldest = flushed_sorted[np.minimum(n_done, max(flushed_sorted.size - 1, 0))]
    seconds = np.where(frames > 0, times - oldest, 0.0) if flushed_sorted.size else times * 0
    return frames, seconds


def _plot(
    path: Path,
    flushed: np.ndarray,
    complete_at: np.ndarray,
    max_latency_s: float = 0.05,
    chunk_frames: int = 16,
) -> bool:
    """Latency of each frame (with its p50 and p99, and what sets the shape) and the lag
    behind the writer, in frames and seconds, over the acquisition."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = min(flushed.size, complete_at.size)
    flushed, complete_at = flushed[:n], complete_at[:n]
    t0 = float(np.nanmin(flushed))
    latency_ms = (complete_at - flushed) * 1e3
    finite = latency_ms[np.isfinite(latency_ms)]
    fig, (latency, lag) = plt.subplots(
        2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    latency.plot(flushed - t0, latency_ms, ".", markersize=2, color="tab:blue", label="a frame")
    for q, style in ((50, "--"), (99, ":")):
        if finite.size:
            value = float(np.percentile(finite, q))
            latency.axhline(value, color="black", linestyle=style, linewidth=1)
            latency.annotate(
                f"p{q} {value:.1f} ms",
                (1.0, value),
                xycoords=("axes fraction", "data"),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
    latency.set_ylim(0, (float(finite.max()) if finite.size else 1.0) * 1.6)  # room for the note
    latency.set_ylabel("writer's flush to complete in NWB (ms)")
    latency.set_title("h5live demo: a live conversion to NWB", loc="left")
    latency.text(
        0.01,
        0.98,
        "Why a sawtooth: the complete frames are written in a release once the oldest has\n"
        f"waited max_latency_s ({max_latency_s * 1e3:g} ms; chunks of {chunk_frames} frames).\n"
        "Each tooth is one release: its first frame waited longest, its last the least;\n"
        "the floor is the converter's and this follower's polls, the write and its flush.\n"
        "The last frames go out when the converter sees the writer's finished flag.",
        transform=latency.transAxes,
        va="top",
        fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
    )
    end = float(np.nanmax(np.concatenate([flushed, complete_at]))) - t0
    times = np.linspace(0.0, end, 2000)
    frames, seconds = _lag(flushed - t0, complete_at - t0, times)
    lag.step(times, frames, where="post", color="tab:orange")
    lag.set_ylabel("lag (frames)", color="tab:orange")
    lag.set_ylim(bottom=0)
    lag_s = lag.twinx()
    lag_s.step(times, seconds * 1e3, where="post", color="tab:green", linewidth=1)
    lag_s.set_ylabel("oldest waiting frame (ms)", color="tab:green")
    lag_s.set_ylim(bottom=0)
    lag.set_title(
        "lag: frames flushed by the writer but not yet complete in NWB, and the oldest one's wait",
        loc="left",
        fontsize=9,
    )
    lag.set_xlabel("time since the writer's first frame (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _writer(source: Path, frames: int, rate: float, files: int) -> Any:
    """The simulated detector: one writer process, or (``files`` > 1) a master file of
    virtual datasets over that many detector files, each written by its own process."""
    from h5live.testing import MultiFileAcquisition, WriterProcess

    if files > 1:
        return MultiFileAcquisition(
            source,
            files=files,
            layout="vds",
            scan_shape=(frames,),
            frame_shape=FRAME,
            frame_rate_hz=rate,
            timestamps=True,
            hold_at=0,
        )
    return WriterProcess(
        source,
        scan_shape=(frames,),
        frame_shape=FRAME,
        frame_rate_hz=rate,
        n_keys=2,
        key_order="random",
        timestamps=True,
        hold_at=0,
    )


def run_demo(
    frames: int, rate: float, timeout: float | None, directory: str | None, files: int = 1
) -> tuple[dict[str, Any], bool]:
    """Run the demo; its summary, and whether everything was converted and verified.

    ``files`` > 1: the acquisition is a master file of virtual datasets over that many
    detector files, each written by its own process, and the master is converted.
    """
    folder = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="h5live-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    source, output = folder / "acquisition.h5", folder / "acquisition.nwb"
    where = f"{source}" if files == 1 else f"{files} files, one process each, and {source}"
    print(
        f"Simulated detector: {frames} frames of {FRAME[0]}x{FRAME[1]} uint16 at {rate:g} "
        f"frames/s into {where}\nConverting it live to {output} in another process...",
        file=sys.stderr,
    )
    with _writer(source, frames, rate, files) as writer:
        writer.start()
        paths = (DATA, FLUSH_TIME)
        if files > 1:
            paths = (writer.config.data_paths[0], writer.config.timestamp_paths[0])
        metadata = folder / "session.json"
        metadata.write_text(json.dumps(METADATA, indent=2))
        command = [sys.executable, "-m", "h5live", "nwb", str(source), str(output)]
        command += ["--overwrite", "--json", "--max-latency", str(MAX_LATENCY_S)]
        command += ["--metadata", str(metadata), "--chunk-shape", str(CHUNK_FRAMES)]
        command += [str(n) for n in FRAME]
        converter = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            _wait_for_output(output, converter, 60)
            writer.go()
            complete_at, _ = _follow(output, frames, timeout)
            out, _ = converter.communicate(timeout=120)
        finally:
            if converter.poll() is None:
                converter.kill()
                converter.communicate()
        writer.wait()
    result = json.loads(out.strip().splitlines()[-1]) if converter.returncode == 0 else {}
    verified, flushed = _verify(source, output, frames, paths) if result else (False, np.array([]))
    latency_ms = (complete_at - flushed[: complete_at.size]) * 1e3 if flushed.size else None
    plot = folder / "acquisition_latency.png"
    plotted = latency_ms is not None and _plot(
        plot, flushed, complete_at, MAX_LATENCY_S, CHUNK_FRAMES
    )
    mb = frames * int(np.prod(FRAME)) * 2 / 1e6
    seconds = result.get("seconds") or float("nan")
    summary: dict[str, Any] = {
        "source": str(source),
        "nwb_file": str(output),
        "frames_complete": result.get("frames_complete"),
        "state": result.get("state"),
        "mb_per_s": round(mb / seconds, 1) if seconds == seconds else None,
        "latency_p50_ms": _percentile(latency_ms, 50),
        "latency_p99_ms": _percentile(latency_ms, 99),
        "writer_frames_per_s": round(writer.summary["rate_hz"], 1) if writer.summary else None,
        "nwb_equals_source": verified,
        "plot": str(plot) if plotted else "skipped (pip install matplotlib)",
    }
    ok = verified and result.get("state") == "complete"
    return summary, ok


def _percentile(values: np.ndarray | None, q: float) -> float | None:
    if values is None:
        return None
    finite = values[np.isfinite(values)]
    return round(float(np.percentile(finite, q)), 2) if finite.size else None
