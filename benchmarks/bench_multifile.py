"""Multi-file benchmark: a master of virtual datasets over 2 detector files against the same
frames in one file, side by side in one run.

Two measurements, each a ratio of the layouts measured in the same run:

1. Follow latency: from the writer's flush of a frame to h5live.KeyFollower (default settings)
   yielding it, with real writer processes at 1000 frames/s: one process writing one file,
   against two detector-file processes plus the master's process (VDS over growing files, and
   over pre-sized files). Rounds interleaved.
2. Copy throughput: copy_live (defaults) of a finished acquisition, one file against the VDS
   master; and plain h5py reads of all frames, for what HDF5 itself costs.

Usage::

    python benchmarks/bench_multifile.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_multifile.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live import KeyFollower, copy_live
from h5live.testing import MultiFileAcquisition, SimulatedWriter, WriterProcess
from h5live.testing._multifile import detector_paths, write_acquisition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import latency_stats, machine, machine_line, parse_args, pyplot, rotated, save_results

LAYOUTS = ("one file", "vds 2 files growing", "vds 2 files pre-sized")


# ---------------------------------------------------------------- 1. follow latency


def writers(layout: str, path: Path, n_frames: int, rate_hz: float, frame: tuple[int, ...]) -> Any:
    """The writer process(es) of ``layout``, paused before their first frame."""
    common = {"scan_shape": (n_frames,), "frame_shape": frame, "frame_rate_hz": rate_hz}
    if layout == "one file":
        return WriterProcess(path, timestamps=True, hold_at=0, **common)
    presized = layout.endswith("pre-sized")
    return MultiFileAcquisition(
        path, files=2, layout="vds", presized=presized, timestamps=True, hold_at=0, **common
    )


def flush_path(layout: str) -> str:
    return "/entry/flush_time" if layout == "one file" else "/entry/detector/flush_time"


def bench_latency(
    tmp: Path, n_frames: int, rate_hz: float, frame: tuple[int, ...], rounds: int
) -> list[dict[str, Any]]:
    latencies: dict[str, list[np.ndarray]] = {layout: [] for layout in LAYOUTS}
    achieved: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for round_ in range(rounds):
        for layout in rotated(LAYOUTS, round_):
            path = tmp / f"latency-{round_}-{layout.replace(' ', '-')}.h5"
            stamps = np.full(n_frames, np.nan)
            with writers(layout, path, n_frames, rate_hz, frame) as process:
                process.start()
                with KeyFollower.from_path(path) as follower:
                    process.go()
                    for index in follower:
                        stamps[index] = time.time()
                process.wait()
                achieved[layout].append(process.summary["rate_hz"] if process.summary else 0.0)
            with h5py.File(path, "r") as f:
                flushed = f[flush_path(layout)][...]
            latencies[layout].append((stamps - flushed) * 1e3)
    rows = []
    for layout in LAYOUTS:
        row = {
            "layout": layout,
            "rate_hz": rate_hz,
            "writer_rate_hz": statistics.median(achieved[layout]),
            **latency_stats(latencies[layout]),
        }
        rows.append(row)
        print(
            f"latency    {layout:<22} {rate_hz:.0f} frames/s: p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  (writers {row['writer_rate_hz']:.0f} frames/s)",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- 2. copy throughput


def write_complete(layout: str, path: Path, n_frames: int, frame: tuple[int, ...]) -> str:
    """A finished acquisition of ``layout``; the path of its frames."""
    if layout == "one file":
        with SimulatedWriter(path, scan_shape=(n_frames,), frame_shape=frame) as writer:
            writer.run()
        return "/entry/data/data"
    config = write_acquisition(
        path,
        files=2,
        layout="vds",
        presized=layout.endswith("pre-sized"),
        scan_shape=(n_frames,),
        frame_shape=frame,
    )
    return config.data_paths[0]


def read_all(path: Path, data: str, rows: int) -> float:
    """Seconds to read every frame with plain h5py, ``rows`` frames per read."""
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        dataset = f[data]
        dataset.refresh()
        start = time.perf_counter()
        for lo in range(0, dataset.shape[0], rows):
            dataset[lo : lo + rows]
        return time.perf_counter() - start


def bench_copy(
    tmp: Path, n_frames: int, frame: tuple[int, ...], rounds: int
) -> list[dict[str, Any]]:
    nbytes = n_frames * int(np.prod(frame)) * 2
    copy_mb_s: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    read_mb_s: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    how: dict[str, str] = {}
    for round_ in range(rounds):
        for layout in rotated(LAYOUTS, round_):
            path = tmp / f"copy-{round_}-{layout.replace(' ', '-')}.h5"
            data = write_complete(layout, path, n_frames, frame)
            read_mb_s[layout].append(nbytes / read_all(path, data, 64) / 1e6)
            result = copy_live(path, tmp / "copy.h5", overwrite=True)
            copy_mb_s[layout].append(nbytes / result.seconds / 1e6)
            how[layout] = result.chunk_copy[data]
            (tmp / "copy.h5").unlink()
            for written in [path, *map(Path, detector_paths(path, 2))]:
                written.unlink(missing_ok=True)
    rows = []
    base_copy = statistics.median(copy_mb_s["one file"])
    base_read = statistics.median(read_mb_s["one file"])
    for layout in LAYOUTS:
        copy, read = statistics.median(copy_mb_s[layout]), statistics.median(read_mb_s[layout])
        rows.append(
            {
                "layout": layout,
                "frames": n_frames,
                "mb": nbytes / 1e6,
                "copy_mb_s": copy,
                "copy_relative": copy / base_copy,
                "chunk_copy": how[layout],
                "read_mb_s": read,
                "read_relative": read / base_read,
                "copy_rounds": [round(v, 1) for v in copy_mb_s[layout]],
            }
        )
        print(
            f"copy       {layout:<22} {copy:7.0f} MB/s ({copy / base_copy:5.2f} of one file, "
            f"{how[layout]}); h5py read {read:7.0f} MB/s ({read / base_read:5.2f})",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- report


def plot(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = results["latency"]
    x = np.arange(len(rows))
    ax1.bar(x - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax1.bar(x + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax1.set_xticks(x, [r["layout"] for r in rows], fontsize=8)
    ax1.set_ylabel("flush to yield (ms)")
    ax1.set_title(f"Follow latency at {rows[0]['rate_hz']:.0f} frames/s")
    ax1.legend()
    rows = results["copy"]
    ax2.bar(x - 0.2, [r["copy_mb_s"] for r in rows], 0.4, label="copy_live")
    ax2.bar(x + 0.2, [r["read_mb_s"] for r in rows], 0.4, label="h5py read")
    ax2.set_xticks(x, [r["layout"] for r in rows], fontsize=8)
    ax2.set_ylabel("MB/s")
    ax2.set_title(f"Finished acquisition, {rows[0]['mb']:.0f} MB")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def markdown(results: dict[str, Any], command: str) -> str:
    m, config = results["machine"], results["config"]
    frame = "x".join(str(n) for n in config["frame"])
    lines = [
        "## Multi-file acquisitions: a VDS master against one file (`bench_multifile.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(m)}  ",
        "Data: `benchmarks/results/multifile.json`, plot: `benchmarks/results/multifile.png`.",
        "",
        f"### Follow latency ({config['latency_frames']:,} frames of {frame} uint16 at "
        f"{config['rate_hz']:.0f} frames/s, KeyFollower defaults, {config['latency_rounds']} "
        "interleaved rounds; the VDS is interleaved in blocks of 10 frames from 2 files, each "
        "written by its own process, plus the master's process)",
        "",
        "| layout | frames | p50 (ms) | p99 (ms) | max (ms) | writers achieved (frames/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results["latency"]:
        lines.append(
            f"| {r['layout']} | {r['frames']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['max_ms']:.1f} | {r['writer_rate_hz']:.0f} |"
        )
    base = results["latency"][0]
    ratios = ", ".join(
        f"{r['layout']} {r['p50_ms'] / base['p50_ms']:.2f}x "
        f"(p99 {r['p99_ms'] / base['p99_ms']:.2f}x)"
        for r in results["latency"][1:]
    )
    lines += ["", f"p50 latency against one file: {ratios}."]
    copy = results["copy"]
    lines += [
        "",
        f"### Copy throughput (`copy_live` defaults, finished acquisition of "
        f"{copy[0]['frames']:,} frames of {frame} uint16, {copy[0]['mb']:.0f} MB; medians of "
        f"{config['copy_rounds']} interleaved rounds)",
        "",
        "| layout | copy_live (MB/s) | / one file | chunks | h5py read, 64 frames a read "
        "(MB/s) | / one file |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in copy:
        lines.append(
            f"| {r['layout']} | {r['copy_mb_s']:.0f} | {r['copy_relative']:.2f} | "
            f"{r['chunk_copy']} | {r['read_mb_s']:.0f} | {r['read_relative']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    if args.quick:
        config = {
            "frame": [32, 32],
            "rate_hz": 1000.0,
            "latency_frames": 60,
            "latency_rounds": 1,
            "copy_frames": 60,
            "copy_rounds": 1,
        }
    else:
        config = {
            "frame": [256, 256],
            "rate_hz": 1000.0,
            "latency_frames": 3000,
            "latency_rounds": 3,
            "copy_frames": 2000,
            "copy_rounds": 3,
        }
    frame = tuple(config["frame"])
    with tempfile.TemporaryDirectory(prefix="h5live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "config": config,
            "latency": bench_latency(
                tmp, config["latency_frames"], config["rate_hz"], frame, config["latency_rounds"]
            ),
            "copy": bench_copy(tmp, config["copy_frames"], frame, config["copy_rounds"]),
        }
    if args.quick:
        return 0
    save_results("multifile", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
