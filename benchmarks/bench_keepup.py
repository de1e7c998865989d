"""Keep-up benchmark: live NWB conversion, default settings, against an unthrottled writer.

Does ``h5live nwb`` with its default settings keep up with a detector writing 512x512 uint16
frames as fast as this machine can write them? One run, side by side:

1. ``plain h5py writer``: a bare SWMR writer in its own process (per frame: grow, write,
   flush) - the fastest a writer of this file shape can go here;
2. ``simulated writer``: h5live's simulated detector, unthrottled, alone (frames, flush times,
   keys: what the conversion follows);
3. the same simulated writer again, with ``h5live nwb SOURCE OUT.nwb`` (defaults, as a user
   runs it) converting it in another process, and this process following the NWB file's own
   keys to stamp when each frame became complete there.

The conversion keeps up when the writer, while converted, still writes at least as fast as
the plain h5py writer alone (within 10%: the two share 2 cores), and the conversion ends within
``max(1 s, 2 x max latency)`` of the writer's last frame, i.e. its lag stays bounded rather than
growing with the scan. Reported: the three writer rates, the conversion's rate, the lag at the
end, latency p50/p99 from the writer's flush to the frame being complete in the NWB file.

Usage::

    python benchmarks/bench_keepup.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_keepup.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    live_nwb_run,
    machine,
    machine_line,
    parse_args,
    pyplot,
    save_results,
    simulated_writer_rate,
)

MAX_LATENCY_S = 1.0  # h5live nwb's default
ROUNDS_FULL = 3

PLAIN_WRITER = """
import sys, time, h5py, numpy as np
path, frames, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
frame = (np.arange(h * w) % 4096).astype("uint16").reshape(h, w)
with h5py.File(path, "w", libver="latest") as f:
    d = f.create_dataset("data", shape=(0, h, w), maxshape=(None, h, w), chunks=(1, h, w),
                         dtype="uint16")
    f.swmr_mode = True
    start = time.perf_counter()
    for i in range(frames):
        d.resize(i + 1, axis=0)
        d[i] = frame
        d.flush()
    print(frames / (time.perf_counter() - start))
"""


def plain_writer_rate(path: Path, frames: int, frame: tuple[int, int]) -> float:
    """Frames per second of a bare h5py SWMR writer, in its own process."""
    command = [sys.executable, "-c", PLAIN_WRITER, str(path), str(frames), *map(str, frame)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    path.unlink()
    return float(done.stdout.strip())


def converted(folder: Path, frames: int, frame: tuple[int, int]) -> dict[str, Any]:
    """The simulated writer, unthrottled, converted live by ``h5live nwb`` (defaults)."""
    return live_nwb_run(folder, frames, frame)


def keeps_up(plain_hz: float, run: dict[str, Any]) -> bool:
    """The rule stated in the module docstring."""
    fast_writer = run["writer_rate_hz"] >= 0.9 * plain_hz
    bounded = run["end_lag_s"] <= max(1.0, 2 * MAX_LATENCY_S)
    return bool(fast_writer and bounded and run["state"] == "complete")


def measure(quick: bool) -> dict[str, Any]:
    frames, frame = (60, (64, 64)) if quick else (3000, (512, 512))
    rounds = 1 if quick else ROUNDS_FULL
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="h5live-keepup-") as tmp:
        folder = Path(tmp)
        for _ in range(rounds):  # the three, interleaved
            plain = plain_writer_rate(folder / "plain.h5", frames, frame)
            alone, _ = simulated_writer_rate(folder / "alone.h5", frames, frame)
            live = converted(folder, frames, frame)
            live["keeps_up"] = keeps_up(plain, live)
            runs.append({"plain_writer_hz": plain, "simulated_writer_hz": alone, **live})
    return {
        "frames": frames,
        "frame_shape": list(frame),
        "frame_mb": float(np.prod(frame) * 2 / 1e6),
        "rounds": rounds,
        "runs": runs,
        "keeps_up_every_round": all(r["keeps_up"] for r in runs),
    }


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "## Keep-up: live NWB conversion with default settings against an unthrottled writer",
        "",
        f"`{command}` on {machine_line(results['machine']).rstrip('.')}.",
        "",
        f"{results['frames']} frames of {results['frame_shape'][0]}x{results['frame_shape'][1]} "
        f"uint16 ({results['frame_mb'] * results['frames']:.0f} MB), files in the temp folder. "
        "Per round, side by side: a bare h5py SWMR writer alone; h5live's simulated writer "
        "alone; the simulated writer again while `h5live nwb SOURCE OUT.nwb` (defaults) "
        "converts it. Keeps up: the converted writer still writes at >= 90% of the bare h5py "
        "writer's rate, and the conversion ends within 2 s of the writer's last frame.",
        "",
        "| round | bare h5py writer (frames/s) | simulated writer alone | simulated writer, "
        "converted | conversion (frames/s) | lag at the end (s) | latency p50 / p99 (ms) | "
        "keeps up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(results["runs"], 1):
        lines.append(
            f"| {k} | {r['plain_writer_hz']:.0f} | {r['simulated_writer_hz']:.0f} | "
            f"{r['writer_rate_hz']:.0f} ({r['writer_rate_hz'] / r['plain_writer_hz']:.2f}x) | "
            f"{r['conversion_rate_hz']:.0f} | {r['end_lag_s']:.2f} | "
            f"{r['latency_p50_ms']:.0f} / {r['latency_p99_ms']:.0f} | "
            f"{'yes' if r['keeps_up'] else 'no'} |"
        )
    lines += ["", "![latency of each frame, per round](results/keepup.png)"]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, r in enumerate(results["runs"], 1):
        ax.plot(r["latency_ms"], label=f"round {k}: writer {r['writer_rate_hz']:.0f} frames/s")
    ax.set_xlabel("frame")
    ax.set_ylabel("writer flush -> complete in NWB (ms)")
    ax.set_title("h5live nwb (defaults) following an unthrottled writer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    results = {"machine": machine(), **measure(args.quick)}
    for k, r in enumerate(results["runs"], 1):
        print(
            f"round {k}: bare h5py writer {r['plain_writer_hz']:.0f} frames/s, simulated "
            f"{r['simulated_writer_hz']:.0f} alone, {r['writer_rate_hz']:.0f} converted; "
            f"conversion {r['conversion_rate_hz']:.0f} frames/s, lag at end "
            f"{r['end_lag_s']:.2f} s, p50/p99 {r['latency_p50_ms']:.0f}/"
            f"{r['latency_p99_ms']:.0f} ms, keeps up: {r['keeps_up']}"
        )
    if not args.quick:
        for r in results["runs"]:
            r["latency_ms"] = [round(v, 2) for v in r["latency_ms"]]
        save_results("keepup", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
