"""Read benchmark: h5live's DataSource and FrameReader against swmr_tools 0.9, side by side.

Three measurements, each a ratio of the variants measured in the same run (rounds interleaved,
medians reported):

1. Per-frame cost of a DataSource over a complete file of small frames: swmr_tools frame by
   frame, h5live frame by frame, h5live in batches (``batch_frames``).
2. Per-frame cost of FrameReader reads of whole-frame chunks for each codec: through h5py,
   decoded in Python from ``read_direct_chunk`` (h5live, forced with ``"require"``, and the
   default choice ``True``), and swmr_tools' direct reads (Blosc only).
3. Latency from the writer's flush to the item, for a live growing stack read with each
   library's DataSource at default settings.

Usage::

    python benchmarks/bench_read.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_read.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from h5live import DataSource, FrameReader
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
)

CODECS: dict[str, dict[str, Any]] = {
    "none": {},
    "blosc-lz4": dict(hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.SHUFFLE)),
    "blosc2": dict(hdf5plugin.Blosc2(cname="lz4")),
    "bitshuffle-lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "lz4": dict(hdf5plugin.LZ4()),
    "zstd": dict(hdf5plugin.Zstd()),
    "gzip": {"compression": "gzip", "shuffle": True},
}


def detector_frames(n: int, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Photon-counting-like frames: mostly small counts, compressible as real ones are."""
    rng = np.random.default_rng(0)
    return rng.poisson(3, size=(n, *frame_shape)).astype(np.uint16)


def time_rounds(variants: dict[str, Callable[[], int]], rounds: int) -> dict[str, float]:
    """Median seconds per frame of each variant; variants interleaved, order flipped per round."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(rounds):
        for name in rotated(names, round_):
            start = time.perf_counter()
            frames = variants[name]()
            samples[name].append((time.perf_counter() - start) / frames)
    return {name: statistics.median(values) for name, values in samples.items()}


# ---------------------------------------------------------------- 1. DataSource per frame


def bench_datasource(
    tmp: Path, n_frames: int, frame_shape: tuple[int, ...], chunk_frames: int, rounds: int
) -> dict:
    import swmr_tools

    path = tmp / f"datasource-{'x'.join(map(str, frame_shape))}-{chunk_frames}.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("keys", data=np.arange(1, n_frames + 1), chunks=(min(1024, n_frames),))
        f.create_dataset("finished", data=np.ones(1, np.int32))
        f.create_dataset(
            "data",
            data=detector_frames(n_frames, frame_shape),
            chunks=(chunk_frames, *frame_shape),
        )

    def run(make: Callable[[Any], Any]) -> Callable[[], int]:
        def go() -> int:
            last = n_frames - 1
            with h5py.File(path, "r", libver="latest", swmr=True) as f:
                count = 0
                for item in make(f):  # stop the clock at the last frame, not at the timeout
                    count += int(item.stop - item.index) if hasattr(item, "stop") else 1
                    if count > last:
                        break
            return count

        return go

    def keys_data(f: Any) -> tuple[list[Any], dict[str, Any]]:
        return [f["keys"]], {"data": f["data"]}

    variants = {
        "swmr_tools": run(lambda f: swmr_tools.DataSource(*keys_data(f), 1, f["finished"])),
        "h5live": run(lambda f: DataSource(*keys_data(f), 1, f["finished"])),
        "h5live_batch": run(
            lambda f: DataSource(*keys_data(f), 1, f["finished"], batch_frames=1024)
        ),
    }
    per_frame = time_rounds(variants, rounds)
    path.unlink()
    row = {"frames": n_frames, "frame_shape": list(frame_shape), "chunk_frames": chunk_frames}
    row.update({f"{name}_us": t * 1e6 for name, t in per_frame.items()})
    row["ratio_frames"] = per_frame["swmr_tools"] / per_frame["h5live"]
    row["ratio_batch"] = per_frame["swmr_tools"] / per_frame["h5live_batch"]
    print(
        f"datasource {frame_shape} {chunk_frames} frame(s)/chunk: swmr_tools "
        f"{row['swmr_tools_us']:.1f} us/frame, h5live "
        f"{row['h5live_us']:.1f} ({row['ratio_frames']:.1f}x), batched "
        f"{row['h5live_batch_us']:.2f} ({row['ratio_batch']:.0f}x)",
        flush=True,
    )
    return row


# ---------------------------------------------------------------- 2. direct chunk reads


def bench_direct(
    tmp: Path, n_frames: int, frame_shape: tuple[int, ...], rounds: int
) -> list[dict[str, Any]]:
    from swmr_tools.datasource import FrameReader as SwmrFrameReader

    frames = detector_frames(n_frames, frame_shape)
    rows = []
    for codec, filters in CODECS.items():
        path = tmp / f"direct-{codec}.h5"
        with h5py.File(path, "w", libver="latest") as f:
            f.create_dataset("data", data=frames, chunks=(1, *frame_shape), **filters)

        def reader(make: Callable[[Any], Any], path: Path = path) -> Callable[[], int]:
            def go() -> int:  # a fresh file each pass: every chunk is read from the file once
                with h5py.File(path, "r", libver="latest", swmr=True) as f:
                    frame_reader = make(f["data"])
                    if isinstance(frame_reader, FrameReader):
                        frame_reader.refresh(n_frames - 1)  # the frontier, as a follower knows
                    read = frame_reader.read_frame
                    for index in range(n_frames):
                        read(index)
                return n_frames

            return go

        with h5py.File(path, "r") as f:
            chosen = FrameReader(f["data"], 1, use_direct_chunk=True).direct
        variants = {
            "h5py": reader(lambda d: FrameReader(d, 1)),
            "direct": reader(lambda d: FrameReader(d, 1, use_direct_chunk="require")),
            "swmr_tools": reader(lambda d: SwmrFrameReader(d, 1, use_direct_chunk=True)),
        }
        per_frame = time_rounds(variants, rounds)
        path.unlink()
        row = {"codec": codec, "frame_shape": list(frame_shape), "default_direct": chosen}
        row.update({f"{name}_us": t * 1e6 for name, t in per_frame.items()})
        row["direct_speedup"] = per_frame["h5py"] / per_frame["direct"]
        row["vs_swmr_tools"] = per_frame["swmr_tools"] / min(per_frame["h5py"], per_frame["direct"])
        rows.append(row)
        print(
            f"direct     {codec:<15} {frame_shape}: h5py {row['h5py_us']:7.1f} us, direct "
            f"{row['direct_us']:7.1f} us ({row['direct_speedup']:.2f}x; default "
            f"{'direct' if chosen else 'h5py'}), swmr_tools {row['swmr_tools_us']:7.1f} us",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- 3. live latency


def bench_latency(tmp: Path, n_frames: int, rate_hz: float, rounds: int) -> list[dict[str, Any]]:
    import swmr_tools

    latencies: dict[str, list[np.ndarray]] = {"h5live": [], "swmr_tools": []}
    for round_ in range(rounds):
        for library in rotated(("h5live", "swmr_tools"), round_):
            path = tmp / f"latency-{library}-{round_}.h5"
            with WriterProcess(
                path,
                scan_shape=(n_frames,),
                frame_shape=(32, 32),
                frame_rate_hz=rate_hz,
                timestamps=True,
                finished_scalar=False,  # swmr_tools cannot read a scalar finished dataset
                hold_at=8,  # growing keys: swmr_tools crashes on empty ones (argmax of empty)
            ) as process:
                process.start()
                stamps = np.full(n_frames, np.nan)
                with h5py.File(path, "r", libver="latest", swmr=True) as f:
                    key = f["/entry/keys/key_0"]
                    while key.shape[0] < 8:  # the writer holds after 8 frames
                        time.sleep(0.01)
                        key.refresh()
                    args = ([key], {"data": f["/entry/data/data"]})
                    make = swmr_tools.DataSource if library == "swmr_tools" else DataSource
                    source = make(*args, 10, f["/entry/finished"])
                    process.go()
                    for item in source:
                        stamps[item.index] = time.time()
                process.wait()
            with h5py.File(path, "r") as f:
                flushed = f["/entry/flush_time"][...]
            path.unlink()
            latencies[library].append((stamps - flushed)[8:] * 1e3)
    rows = []
    for library, parts in latencies.items():
        row = {
            "library": library,
            "rate_hz": rate_hz,
            **latency_stats(parts),
        }
        rows.append(row)
        print(
            f"latency    {library:<10} growing stack at {rate_hz:.0f} frames/s: "
            f"p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms",
            flush=True,
        )
    return rows


# ---------------------------------------------------------------- report


def plot(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    rows = results["datasource"]
    labels = [
        f"{'x'.join(map(str, r['frame_shape'])) or 'scalar'}\n{r['chunk_frames']}/chunk"
        for r in rows
    ]
    x = np.arange(len(rows))
    for k, (name, key) in enumerate(
        (
            ("swmr_tools", "swmr_tools_us"),
            ("h5live", "h5live_us"),
            ("h5live batched", "h5live_batch_us"),
        )
    ):
        ax1.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
    ax1.set_xticks(x, labels)
    ax1.set_yscale("log")
    ax1.set_xlabel("frame shape (uint16)")
    ax1.set_ylabel("DataSource cost (us per frame)")
    ax1.legend(fontsize=8)
    rows = results["direct"]
    x = np.arange(len(rows))
    for k, (name, key) in enumerate(
        (("h5py", "h5py_us"), ("h5live direct", "direct_us"), ("swmr_tools", "swmr_tools_us"))
    ):
        ax2.bar(x + (k - 1) * 0.27, [r[key] for r in rows], 0.27, label=name)
    ax2.set_xticks(x, [r["codec"] for r in rows], rotation=30, fontsize=8)
    ax2.set_ylabel("FrameReader cost (us per frame)")
    ax2.set_title(f"whole-frame chunks, {'x'.join(map(str, rows[0]['frame_shape']))} uint16")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "## Reading live frames (`bench_read.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(results['machine'])}  ",
        "Data: `benchmarks/results/read.json`, plot: `benchmarks/results/read.png`.",
        "",
        f"### DataSource over a complete file ({results['config']['datasource_frames']:,} "
        "uint16 frames, uncompressed; microseconds per frame)",
        "",
        "| frame | frames per chunk | swmr_tools | h5live | h5live batched (1024) | "
        "swmr_tools / h5live | swmr_tools / batched |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["datasource"]:
        lines.append(
            f"| {'x'.join(map(str, r['frame_shape'])) or 'scalar'} | {r['chunk_frames']} | "
            f"{r['swmr_tools_us']:.1f} | "
            f"{r['h5live_us']:.1f} | {r['h5live_batch_us']:.2f} | {r['ratio_frames']:.1f}x | "
            f"{r['ratio_batch']:.0f}x |"
        )
    shape = "x".join(map(str, results["direct"][0]["frame_shape"]))
    lines += [
        "",
        f"### FrameReader, one {shape} uint16 frame per chunk, each chunk read once "
        "(microseconds per frame)",
        "",
        "| codec | h5py | decoded in Python | speed-up | default (`use_direct_chunk=True`) | "
        "swmr_tools (`use_direct_chunk=True`) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in results["direct"]:
        lines.append(
            f"| {r['codec']} | {r['h5py_us']:.1f} | {r['direct_us']:.1f} | "
            f"{r['direct_speedup']:.2f}x | {'direct' if r['default_direct'] else 'h5py'} | "
            f"{r['swmr_tools_us']:.1f} |"
        )
    lat = results["latency"]
    lines += [
        "",
        f"### Latency from writer flush to DataSource item (growing stack, "
        f"{lat[0]['rate_hz']:.0f} frames/s, default settings)",
        "",
        "| library | frames | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in lat:
        lines.append(
            f"| {r['library']} | {r['frames']:,} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['max_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    if args.quick:
        config = {
            "datasource_frames": 300,
            "datasource_layouts": [((16, 16), 1)],
            "direct_frames": 20,
            "direct_shape": (64, 64),
            "latency_frames": 100,
            "rounds": 1,
            "latency_rounds": 1,
        }
    else:
        config = {
            "datasource_frames": 20000,
            "datasource_layouts": [
                ((), 1),
                ((), 64),
                ((16, 16), 1),
                ((16, 16), 64),
                ((64, 64), 1),
            ],
            "direct_frames": 400,
            "direct_shape": (256, 256),
            "latency_frames": 3000,
            "rounds": 5,
            "latency_rounds": 2,
        }
    with tempfile.TemporaryDirectory(prefix="h5live-bench-") as tmp_name:
        tmp = Path(tmp_name)
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "config": config,
            "datasource": [
                bench_datasource(tmp, config["datasource_frames"], shape, chunk, config["rounds"])
                for shape, chunk in config["datasource_layouts"]
            ],
            "direct": bench_direct(
                tmp, config["direct_frames"], config["direct_shape"], config["rounds"]
            ),
            "latency": bench_latency(
                tmp, config["latency_frames"], 1000.0, config["latency_rounds"]
            ),
        }
    if args.quick:
        return 0
    save_results("read", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
