"""Startup benchmark: how long a fresh Python process takes to get what it needs of h5live,
against swmr_tools 0.9, side by side in one run.

A beamline script, a detector's writer and ``h5live follow`` start a process for each scan; a
live test suite starts hundreds. Each variant below is a new interpreter that imports what its
use needs and exits; the wall time of the whole process is measured, rounds interleaved (the
order rotated each round), medians reported:

- ``python``: the interpreter alone (the floor);
- ``h5py``: h5py and numpy, what any HDF5 reader needs;
- ``swmr_tools``: ``from swmr_tools import KeyFollower, DataSource``;
- ``h5live follow/read``: ``from h5live import KeyFollower, DataSource``;
- ``h5live iterate``: ``from h5live import LiveDataChunkIterator`` (hdmf, with pandas and
  zarr): what every ``import h5live`` cost before the write path was imported on first use;
- ``h5live nwb``: ``from h5live import to_nwb`` and pynwb, what a conversion to NWB needs;
- ``h5live follow (CLI)``: ``python -m h5live --help``.

Usage::

    python benchmarks/bench_startup.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_startup.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parse_args, pyplot, rotated, save_results

VARIANTS: dict[str, list[str]] = {
    "python": ["-c", "pass"],
    "h5py": ["-c", "import h5py, numpy"],
    "swmr_tools": ["-c", "from swmr_tools import KeyFollower, DataSource"],
    "h5live follow/read": ["-c", "from h5live import KeyFollower, DataSource"],
    "h5live iterate": ["-c", "from h5live import LiveDataChunkIterator"],
    "h5live nwb": ["-c", "from h5live import to_nwb; import pynwb"],
    "h5live follow (CLI)": ["-m", "h5live", "--help"],
}


def start_seconds(args: Sequence[str]) -> float:
    """Wall time of one new interpreter running ``args`` to its exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def bench(rounds: int, warm: bool) -> list[dict[str, Any]]:
    names = list(VARIANTS)
    for name in names if warm else ():  # the page cache and the bytecode caches first
        start_seconds(VARIANTS[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in rotated(names, round_):
            times[name].append(start_seconds(VARIANTS[name]))
    floor = statistics.median(times["python"])
    swmr = statistics.median(times["swmr_tools"])
    rows = []
    for name in names:
        median = statistics.median(times[name])
        rows.append(
            {
                "variant": name,
                "command": shlex.join(["python", *VARIANTS[name]]),
                "median_s": median,
                "min_s": min(times[name]),
                "max_s": max(times[name]),
                "imports_s": median - floor,
                "vs_swmr_tools": median / swmr,
            }
        )
    return rows


def markdown(results: dict[str, Any], command: str) -> str:
    rows = {r["variant"]: r for r in results["startup"]}
    follow, full = rows["h5live follow/read"], rows["h5live iterate"]
    lines = [
        "## Starting a process (`bench_startup.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(results['machine'])}  ",
        "Data: `benchmarks/results/startup.json`, plot: `benchmarks/results/startup.png`.",
        "",
        f"A new interpreter imports what its use needs and exits; wall time of the process, "
        f"median of {results['config']['rounds']} interleaved rounds (seconds). *Imports*: less "
        "the interpreter alone.",
        "",
        "| variant | what it runs | median | min-max | imports | / swmr_tools |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results["startup"]:
        lines.append(
            f"| {r['variant']} | `{r['command']}` | {r['median_s']:.3f} | "
            f"{r['min_s']:.3f}-{r['max_s']:.3f} | {r['imports_s']:.3f} | "
            f"{r['vs_swmr_tools']:.2f}x |"
        )
    lines += [
        "",
        f"Following or reading starts in {follow['median_s']:.2f} s; the iterator and the write "
        f"path (hdmf, pandas, zarr), imported on first use, would make it "
        f"{full['median_s']:.2f} s ({full['median_s'] / follow['median_s']:.1f}x), what every "
        "`import h5live` cost before.",
        "",
        "![process start](results/startup.png)",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    rows = results["startup"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = np.arange(len(rows))
    ax.barh(y, [r["median_s"] for r in rows], color="tab:blue")
    ax.errorbar(
        [r["median_s"] for r in rows],
        y,
        xerr=[
            [r["median_s"] - r["min_s"] for r in rows],
            [r["max_s"] - r["median_s"] for r in rows],
        ],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.set_yticks(y, [r["variant"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("process start to exit (s), median and min-max")
    ax.set_title("What a new process pays to use h5live or swmr_tools")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    config = {"rounds": 1 if args.quick else 15, "warm": not args.quick}
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "config": config,
        "startup": bench(config["rounds"], config["warm"]),
    }
    for r in results["startup"]:
        print(f"{r['variant']:>22}: {r['median_s']:.3f} s ({r['vs_swmr_tools']:.2f}x swmr_tools)")
    if args.quick:
        return 0
    save_results("startup", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
