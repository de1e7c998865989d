"""Live compressed NWB: an unthrottled 512x512 writer converted live to gzip-1 NWB, with h5live's
encoding threads and without them; where the converter's CPU goes, how far behind it is, how
much it slows the writer.

Per round, rounds interleaved (each round rotates the order):

- ``writer alone``: h5live's simulated detector (512x512 uint16 frames, keys, flush times),
  unthrottled, nothing else running;
- ``nwb``: the same writer while ``h5live nwb SOURCE OUT.nwb --rate 100`` (defaults:
  uncompressed) converts it live in another process;
- ``nwb gzip-1 workers=0``: the same, ``--compression gzip --compression-opts 1 --workers 0``:
  HDF5's filter pipeline encodes every chunk on the converter's one thread (the write path
  before the pool);
- ``nwb gzip-1``: the same with the default workers (one encoding thread per core).

For each: the writer's rate (and against the writer alone), the conversion's rate, its lag at
the end (the last frame complete in the NWB file after the writer flushed it), latency p50 and
p99 (writer flush -> complete in the NWB file, followed by this process through the NWB file's
own keys), and the CPU seconds of the converter and of the writer (user + system, every thread,
from the kernel's accounting of each child process).

Then one profile per converting variant (not timed: a separate run under ``cProfile``): the
functions of the converter's main thread that take the most time (the encoding threads are
not profiled; their share is the converter's CPU minus the main thread's).

Usage::

    python benchmarks/bench_live_compression.py           # full run: JSON, PNG, RESULTS.md
    python benchmarks/bench_live_compression.py --quick   # smoke test (the test suite runs this)
"""

from __future__ import annotations

import pstats
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
    rotated,
    save_results,
    simulated_writer_rate,
)

GZIP_1 = ("--compression", "gzip", "--compression-opts", "1")
VARIANTS: dict[str, tuple[str, ...]] = {
    "nwb": (),
    "nwb gzip-1 workers=0": (*GZIP_1, "--workers", "0"),
    "nwb gzip-1": GZIP_1,
}
ALONE = "writer alone"
ROUNDS_FULL = 3
PROFILE_LINES = 12


def converted(
    folder: Path,
    frames: int,
    frame: tuple[int, int],
    options: Sequence[str],
    python: Sequence[str] = (),
) -> dict[str, Any]:
    """The simulated writer, unthrottled, converted live by ``h5live nwb --rate 100 OPTIONS``."""
    return live_nwb_run(folder, frames, frame, options=("--rate", "100", *options), python=python)


def profile(
    folder: Path, frames: int, frame: tuple[int, int], options: Sequence[str]
) -> dict[str, Any]:
    """The converter's main thread under cProfile: its total and the top functions."""
    path = folder / "converter.prof"
    python = [sys.executable, "-m", "cProfile", "-o", str(path)]
    run = converted(folder, frames, frame, options, python)
    stats = pstats.Stats(str(path))
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    for (file, line, name), (_, calls, tottime, cumtime, _) in sorted(
        entries.items(), key=lambda item: -item[1][2]
    )[:PROFILE_LINES]:
        where = f"{Path(file).name}:{line}" if line else file
        rows.append(
            {
                "function": f"{name} ({where})",
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
        )
    path.unlink()
    return {
        "main_thread_s": total,
        "converter_cpu_s": run["converter_cpu_s"],
        "writer_rate_hz": run["writer_rate_hz"],
        "top": rows,
    }


def measure(quick: bool) -> dict[str, Any]:
    frames, frame = (60, (64, 64)) if quick else (3000, (512, 512))
    rounds = 1 if quick else ROUNDS_FULL
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in (ALONE, *VARIANTS)}
    profiles: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="h5live-live-compression-") as tmp:
        folder = Path(tmp)
        for round_ in range(rounds):
            for name in rotated([ALONE, *VARIANTS], round_):
                if name == ALONE:
                    rate, cpu = simulated_writer_rate(folder / "alone.h5", frames, frame)
                    run = {"writer_rate_hz": rate, "writer_cpu_s": cpu}
                else:
                    run = converted(folder, frames, frame, VARIANTS[name])
                runs[name].append(run)
                print(f"round {round_} {name:22s} writer {run['writer_rate_hz']:6.0f} frames/s")
        for name in ("nwb gzip-1",) if quick else VARIANTS:  # quick: the profiling works
            profiles[name] = profile(folder, frames, frame, VARIANTS[name])
    return {
        "frames": frames,
        "frame_shape": list(frame),
        "frame_mb": float(np.prod(frame) * 2 / 1e6),
        "rounds": rounds,
        "runs": runs,
        "profiles": profiles,
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def markdown(results: dict[str, Any], command: str) -> str:
    runs = results["runs"]
    alone = median(runs[ALONE], "writer_rate_hz")
    h, w = results["frame_shape"]
    mb = results["frame_mb"] * results["frames"]
    lines = [
        "## Live compressed NWB: encoding threads against HDF5's pipeline, unthrottled writer "
        "(`bench_live_compression.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(results['machine'])}",
        "",
        f"{results['frames']} frames of {h}x{w} uint16 ({mb:.0f} MB) from h5live's simulated "
        f"writer, unthrottled; medians of {results['rounds']} "
        "interleaved rounds (the writer alone and converted in each). Cores busy: CPU seconds / "
        "conversion span.",
        "",
        "| variant | writer (frames/s) | writer vs alone | conversion (frames/s) | "
        "lag at end (s) | latency p50 / p99 (ms) | converter CPU (s) | converter cores busy | "
        "writer CPU (s) | chunks |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
        f"| {ALONE} | {alone:.0f} | 1.00x | | | | | | "
        f"{median(runs[ALONE], 'writer_cpu_s'):.1f} | |",
    ]
    for name in VARIANTS:
        r = runs[name]
        lines.append(
            f"| {name} | {median(r, 'writer_rate_hz'):.0f} | "
            f"{median(r, 'writer_rate_hz') / alone:.2f}x | {median(r, 'conversion_rate_hz'):.0f} | "
            f"{median(r, 'end_lag_s'):.2f} | {median(r, 'latency_p50_ms'):.0f} / "
            f"{median(r, 'latency_p99_ms'):.0f} | {median(r, 'converter_cpu_s'):.1f} | "
            f"{median(r, 'converter_cores'):.2f} | {median(r, 'writer_cpu_s'):.1f} | "
            f"{next(iter(r[-1]['chunk_copy'].values()), '').split(':')[0]} |"
        )
    lines += [
        "",
        "Where the converter's main thread spends its time (cProfile, one run each, "
        "top functions by own time):",
        "",
    ]
    for name, p in results["profiles"].items():
        cpu = p["converter_cpu_s"]
        share = p["main_thread_s"] / cpu if cpu else float("nan")
        lines += [
            f"- `{name}`: main thread {p['main_thread_s']:.1f} s of "
            f"{p['converter_cpu_s']:.1f} CPU s ({share:.0%}; the rest: encoding threads, "
            "HDF5's own threads, start-up):",
            "",
            "  | function | calls | own s | with callees s |",
            "  |---|---:|---:|---:|",
        ]
        lines += [
            f"  | `{t['function']}` | {t['calls']} | {t['tottime_s']:.2f} | {t['cumtime_s']:.2f} |"
            for t in p["top"]
        ]
        lines.append("")
    lines.append("![writer and conversion rates](results/live_compression.png)")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    runs = results["runs"]
    names = [ALONE, *VARIANTS]
    fig, ax = plt.subplots(figsize=(8, 4))
    xs = np.arange(len(names))
    ax.bar(xs - 0.2, [median(runs[n], "writer_rate_hz") for n in names], 0.4, label="writer")
    conversion = [0.0] + [median(runs[n], "conversion_rate_hz") for n in VARIANTS]
    ax.bar(xs + 0.2, conversion, 0.4, label="conversion")
    ax.set_xticks(xs, names, fontsize=8)
    ax.set_ylabel("frames/s (512x512 uint16)")
    ax.set_title("Unthrottled writer converted live to NWB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    import time

    args = parse_args(__doc__ or "", argv)
    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **measure(args.quick)}
    alone = median(results["runs"][ALONE], "writer_rate_hz")
    for name in VARIANTS:
        r = results["runs"][name]
        print(
            f"{name}: writer {median(r, 'writer_rate_hz') / alone:.2f}x alone, conversion "
            f"{median(r, 'conversion_rate_hz'):.0f} frames/s, lag {median(r, 'end_lag_s'):.2f} s, "
            f"converter {median(r, 'converter_cpu_s'):.1f} CPU s"
        )
    if not args.quick:
        save_results("live_compression", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
