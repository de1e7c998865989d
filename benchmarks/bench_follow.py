"""Follow benchmark: h5live.KeyFollower against swmr_tools 0.9, side by side in one run.

Three measurements, each a ratio of the two libraries measured in the same run:

1. Idle poll cost: one waiting-loop iteration when nothing is new (read the keys, check the
   finished flag), on pre-sized keys of 1e3..1e7 frames, half complete, with 1 and 3 keys.
2. Latency from the writer's flush to the follower yielding the frame, with a real writer
   process at 2000 frames/s, default settings of each library.
3. The writer's frame rate (as fast as it can, 3 pre-sized 1e6-frame keys) with no follower,
   with h5live following, and with swmr_tools following; rounds interleaved.

Usage::

    python benchmarks/bench_follow.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_follow.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from h5live import KeyFollower
from h5live.testing import WriterProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    latency_stats,
    machine,
    machine_line,
    parse_args,
    pyplot,
    rotated,
    save_results,
    seconds_per_call,
)


def swmr_tools_follower(keys: list[Any], finished: Any, timeout: float = 10) -> Any:
    import swmr_tools

    follower = swmr_tools.KeyFollower(keys, timeout=timeout, finished_dataset=finished)
    follower.check_datasets()
    return follower


def follower_of(library: str, f: Any, process: WriterProcess) -> Any:
    """A follower of the writer's file ``f`` from ``library``, with its default settings."""
    keys = [f[path] for path in process.config.key_paths]
    finished = f[process.config.finished_path]
    if library == "h5live":
        return KeyFollower(keys, finished_dataset=finished)
    return swmr_tools_follower(keys, finished)


# ---------------------------------------------------------------- 1. idle poll cost


def make_keys_file(path: Path, n_frames: int, n_keys: int) -> None:
    """Pre-sized keys of ``n_frames``, the first half set, chunked as the simulator does."""
    half = n_frames // 2
    values = np.arange(1, half + 1, dtype=np.int64)
    with h5py.File(path, "w", libver="latest") as f:
        for k in range(n_keys):
            key = f.create_dataset(
                f"/entry/keys/key_{k}",
                shape=(n_frames,),
                dtype="i8",
                chunks=(min(n_frames, 1024),),
                fillvalue=0,
            )
            key[:half] = values
        # Shape (1,): swmr_tools cannot read a scalar finished dataset (it indexes [0]).
        f.create_dataset("/entry/finished", data=np.zeros(1, np.int32), maxshape=(1,), chunks=(1,))


def bench_idle_poll(
    tmp: Path, sizes: Sequence[int], key_counts: Sequence[int], budget_s: float
) -> list[dict[str, Any]]:
    rows = []
    for n_keys in key_counts:
        for n_frames in sizes:
            path = tmp / f"idle-{n_frames}-{n_keys}.h5"
            make_keys_file(path, n_frames, n_keys)
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                keys = [f[f"/entry/keys/key_{k}"] for k in range(n_keys)]
                finished = f["/entry/finished"]
                ours = KeyFollower(keys, finished_dataset=finished)
                ours.poll()
                theirs = swmr_tools_follower(keys, finished)
                theirs._is_next()
                theirs.current_key = theirs.current_max

                def their_idle_iteration(theirs: Any = theirs) -> None:
                    theirs._is_next()  # what its wait loop does per iteration, minus the sleep
                    theirs.is_finished()

                t_ours = seconds_per_call(ours.poll, budget_s)
                t_theirs = seconds_per_call(their_idle_iteration, budget_s)
            path.unlink()
            rows.append(
                {
                    "frames": n_frames,
                    "keys": n_keys,
                    "h5live_us": t_ours * 1e6,
                    "swmr_tools_us": t_theirs * 1e6,
                    "ratio": t_theirs / t_ours,
                }
            )
            print(
                f"idle poll  {n_frames:>9,} frames {n_keys} key(s): h5live {t_ours * 1e6:8.1f} us"
                f"  swmr_tools {t_theirs * 1e6:10.1f} us  ratio {t_theirs / t_ours:8.1f}x",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------- 2. latency


def follow_and_stamp(library: str, path: Path, process: WriterProcess) -> np.ndarray:
    """Follow ``path`` with ``library`` (default settings); time.time() at each yield."""
    stamps = np.full(process.config.n_frames, np.nan)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        follower = follower_of(library, f, process)
        process.go()
        for index in follower:
            stamps[index] = time.time()
    return stamps


def bench_latency(
    tmp: Path, n_frames: int, rate_hz: float, n_keys: int, rounds: int
) -> list[dict[str, Any]]:
    latencies: dict[str, list[np.ndarray]] = {"h5live": [], "swmr_tools": []}
    achieved: dict[str, list[float]] = {"h5live": [], "swmr_tools": []}
    for round_ in range(rounds):
        for library in rotated(("h5live", "swmr_tools"), round_):
            path = tmp / f"latency-{library}-{round_}.h5"
            with WriterProcess(
                path,
                scan_shape=(n_frames,),
                frame_shape=(64, 64),
                frame_rate_hz=rate_hz,
                n_keys=n_keys,
                timestamps=True,
                presized=True,  # swmr_tools crashes on empty growing keys (argmax of empty)
                finished_scalar=False,  # swmr_tools cannot read a scalar finished dataset
                hold_at=0,
            ) as process:
                process.start()
                stamps = follow_and_stamp(library, path, process)
                process.wait()
                achieved[library].append(process.summary["rate_hz"] if process.summary else 0.0)
            with h5py.File(path, "r") as f:
                flushed = f["/entry/flush_time"][...]
            path.unlink()
            latencies[library].append((stamps - flushed) * 1e3)
    rows = []
    for library, parts in latencies.items():
        row = {
            "library": library,
            "rate_hz": rate_hz,
            "keys": n_keys,
            "writer_rate_hz": statistics.median(achieved[library]),
            **latency_stats(parts),
        }
        rows.append(row)
        print(
            f"latency    {library:<10} {rate_hz:.0f} frames/s {n_keys} key(s): "
            f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
            f"(writer {row['writer_rate_hz']:.0f} frames/s)",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- 3. writer slowdown


def follow_in_thread(
    library: str, path: Path, process: WriterProcess, cpu_share: list[float]
) -> threading.Thread:
    """Follow in a thread; append the share of one core the follower used to ``cpu_share``."""

    def run() -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            for _ in follower_of(library, f, process):
                pass
        cpu_share.append((time.thread_time() - cpu) / (time.perf_counter() - started))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def bench_writer_rate(
    tmp: Path, key_frames: int, n_frames: int, rounds: int, rate_hz: float | None
) -> list[dict[str, Any]]:
    """The writer's achieved rate (and CPU per frame) with no follower, h5live, swmr_tools."""
    order = ["none", "h5live", "swmr_tools"]
    rates: dict[str, list[float]] = {name: [] for name in order}
    cpu_us: dict[str, list[float]] = {name: [] for name in order}
    shares: dict[str, list[float]] = {name: [] for name in order}
    for round_ in range(rounds):
        for library in rotated(order, round_):
            path = tmp / f"rate-{library}-{round_}.h5"
            with WriterProcess(
                path,
                scan_shape=(key_frames,),
                frame_shape=(16, 16),
                presized=True,
                n_keys=3,
                frame_rate_hz=rate_hz,
                stop_after=n_frames,
                finished_scalar=False,
                hold_at=0,
            ) as process:
                process.start()
                thread = None
                if library != "none":
                    thread = follow_in_thread(library, path, process, shares[library])
                time.sleep(0.2)  # the follower is attached and polling before frames start
                process.go()
                process.wait()
                if thread is not None:
                    thread.join(timeout=60)
                summary = process.summary or {"rate_hz": 0.0, "cpu_s": math.nan, "frames": 1}
                rates[library].append(summary["rate_hz"])
                cpu_us[library].append(summary["cpu_s"] / summary["frames"] * 1e6)
            path.unlink()
    rows = []
    base, base_cpu = statistics.median(rates["none"]), statistics.median(cpu_us["none"])
    target = "max" if rate_hz is None else f"{rate_hz:.0f}"
    for library, values in rates.items():
        # On this kind of VM single runs drop by up to 30% at random, whatever follows them:
        # medians over interleaved rounds are robust to that; same-round ratios show the spread.
        ratios = [value / none for value, none in zip(values, rates["none"], strict=True)]
        median, cpu = statistics.median(values), statistics.median(cpu_us[library])
        share = statistics.median(shares[library]) if shares[library] else 0.0
        rows.append(
            {
                "target_hz": rate_hz,
                "follower": library,
                "writer_rate_hz": median,
                "relative": median / base,
                "same_round_min": min(ratios),
                "same_round_max": max(ratios),
                "writer_cpu_us_per_frame": cpu,
                "cpu_relative": cpu / base_cpu,
                "follower_cpu_share": share,
                "rounds": [round(v, 1) for v in values],
            }
        )
        print(
            f"writer {target:>4} follower {library:<10}: {median:6.0f} frames/s "
            f"({median / base:5.3f} of unfollowed; "
            f"same-round {min(ratios):.2f}-{max(ratios):.2f}), "
            f"writer {cpu:4.0f} us CPU/frame ({cpu / base_cpu:5.3f}), "
            f"follower {share:4.2f} of a core",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- report


def plot(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n_keys, style in ((1, "-"), (3, "--")):
        rows = [r for r in results["idle_poll"] if r["keys"] == n_keys]
        frames = [r["frames"] for r in rows]
        ax1.loglog(
            frames, [r["h5live_us"] for r in rows], "o" + style, label=f"h5live, {n_keys} key(s)"
        )
        ax1.loglog(
            frames,
            [r["swmr_tools_us"] for r in rows],
            "s" + style,
            label=f"swmr_tools, {n_keys} key(s)",
        )
    ax1.set_xlabel("frames in the pre-sized keys")
    ax1.set_ylabel("idle poll cost (us)")
    ax1.set_title("Idle poll cost")
    ax1.legend(fontsize=8)
    rows = results["latency"]
    names = [r["library"] for r in rows]
    ax2.bar(np.arange(len(rows)) - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax2.bar(np.arange(len(rows)) + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax2.set_xticks(np.arange(len(rows)), names)
    ax2.set_yscale("log")
    ax2.set_ylabel("flush to yield (ms)")
    ax2.set_title(f"Latency at {rows[0]['rate_hz']:.0f} frames/s")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [
        "## Following a live file (`bench_follow.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(m)}  ",
        "Data: `benchmarks/results/follow.json`, plot: `benchmarks/results/follow.png`.",
        "",
        "### Idle poll cost (a waiting-loop iteration with nothing new; keys pre-sized, half set)",
        "",
        "| frames | keys | h5live (us) | swmr_tools (us) | swmr_tools / h5live |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results["idle_poll"]:
        lines.append(
            f"| {r['frames']:,} | {r['keys']} | {r['h5live_us']:.1f} | {r['swmr_tools_us']:.1f} "
            f"| {r['ratio']:.1f}x |"
        )
    lat = results["latency"]
    lines += [
        "",
        f"### Latency from writer flush to yield ({lat[0]['rate_hz']:.0f} frames/s, "
        f"{lat[0]['keys']} key(s) pre-sized, default settings)",
        "",
        "| follower | frames | p50 (ms) | p99 (ms) | max (ms) | writer achieved (frames/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in lat:
        lines.append(
            f"| {r['library']} | {r['frames']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['max_ms']:.1f} | {r['writer_rate_hz']:.0f} |"
        )
    ours = next(r for r in lat if r["library"] == "h5live")
    theirs = next(r for r in lat if r["library"] == "swmr_tools")
    lines.append("")
    lines.append(
        f"p50 ratio swmr_tools / h5live: {theirs['p50_ms'] / ours['p50_ms']:.0f}x; "
        f"p99 ratio: {theirs['p99_ms'] / ours['p99_ms']:.0f}x."
    )
    rate = results["writer_rate"]
    lines += [
        "",
        "### Writer frame rate with a follower attached (3 pre-sized keys of "
        f"{results['config']['rate_key_frames']:,} frames, {results['config']['rate_frames']:,} "
        "frames written; medians of interleaved rounds)",
        "",
        "| writer target | follower | writer (frames/s) | / unfollowed | same-round ratios | "
        "writer CPU (us/frame) | / unfollowed | follower CPU (share of a core) |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rate:
        target = "as fast as possible" if r["target_hz"] is None else f"{r['target_hz']:.0f}/s"
        lines.append(
            f"| {target} | {r['follower']} | {r['writer_rate_hz']:.0f} | {r['relative']:.3f} | "
            f"{r['same_round_min']:.2f}-{r['same_round_max']:.2f} | "
            f"{r['writer_cpu_us_per_frame']:.0f} | {r['cpu_relative']:.3f} | "
            f"{r['follower_cpu_share']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    if args.quick:
        config = {
            "sizes": [10**3, 10**5],
            "key_counts": [1, 3],
            "budget_s": 0.02,
            "latency_frames": 100,
            "latency_rounds": 1,
            "rate_key_frames": 10**5,
            "rate_frames": 300,
            "rate_rounds": 1,
        }
    else:
        config = {
            "sizes": [10**3, 10**4, 10**5, 10**6, 10**7],
            "key_counts": [1, 3],
            "budget_s": 1.0,
            "latency_frames": 4000,
            "latency_rounds": 4,
            "rate_key_frames": 10**6,
            "rate_frames": 4000,
            "rate_rounds": 9,
        }
    with tempfile.TemporaryDirectory(prefix="h5live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "config": config,
            "idle_poll": bench_idle_poll(
                tmp, config["sizes"], config["key_counts"], config["budget_s"]
            ),
            "latency": bench_latency(
                tmp, config["latency_frames"], 2000.0, 1, config["latency_rounds"]
            ),
            "writer_rate": [
                row
                for target in (2000.0, None)
                for row in bench_writer_rate(
                    tmp,
                    config["rate_key_frames"],
                    config["rate_frames"],
                    config["rate_rounds"],
                    target,
                )
            ],
        }
    if args.quick:
        return 0
    save_results("follow", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
