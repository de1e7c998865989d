"""Compressed outputs: chunks encoded by h5live's pool of threads against HDF5's filter pipeline.

A complete source of detector-like frames (Poisson counts, uint16, one frame per chunk as
detectors write them, with h5live's keys and finished flag) is copied into a compressed dataset
of 8-frame chunks, these ways, rounds interleaved (each round rotates the order), medians
reported:

- ``h5py``: plain h5py, one destination chunk at a time (``out[i:i+8] = src[i:i+8]``): HDF5's
  filter pipeline encodes each chunk, on the caller's core;
- ``hdmf GDCI``: hdmf's GenericDataChunkIterator over the h5py dataset (chunk and buffer of 8
  frames) in ``H5DataIO`` with the same filter, written by ``NWBHDF5IO`` into an ImageSeries;
- ``to_nwb``, ``to_nwb workers=1``, ``to_nwb workers=0``: ``h5live.to_nwb`` of the source
  (``compression=`` the same filter, ``chunk_shape`` of 8 frames, other options the defaults):
  by default (one encoding thread per core, here 2), with one thread, and with HDF5's filter
  pipeline (the write path before the pool);
- ``pool workers=1`` and ``pool workers=2``: ``h5live._write.parallel.ParallelChunkWriter`` alone:
  the caller reads each chunk's frames (``read_direct``) and submits them; ``workers`` threads
  encode them into what HDF5 would store; the caller writes them with ``write_direct_chunk``
  in order. ``workers=1`` shows what the pool adds: its only overlap is one encode beside the
  caller's reads and writes.

For each copy: wall time (MB/s of uint16 frames), CPU time of the process (cores busy) and of
the calling thread; for the pool alone the encode CPU time per chunk (summed over workers) and the
caller's time per chunk, from which the speed on N cores is predicted as
``min(N / (encode + caller), 1 / caller)`` chunks per second (the caller's reads and writes are
serial; disk bandwidth is not modelled). Every output is checked (sample frames read back
equal to the source; the filter pipeline recorded equals the plain h5py write's).

Usage::

    python benchmarks/bench_compression.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_compression.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import datetime
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from h5live._read.filters import filter_pipeline
from h5live._write.parallel import ParallelChunkWriter
from h5live._write.plugin_codecs import library_versions
from h5live.bench._copies import H5pyIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parse_args, pyplot, rotated, save_results

DATA = "/entry/data/data"
NWB_DATA = "/acquisition/frames/data"
TO_NWB_DATA = "/acquisition/detector/data"
METHODS = (
    "h5py",
    "hdmf GDCI",
    "to_nwb workers=0",
    "to_nwb workers=1",
    "to_nwb",
    "pool workers=1",
    "pool workers=2",
)
MEASURED = "to_nwb"  # the method the targets and ratios are of
CODECS: dict[str, dict[str, Any]] = {
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "zstd-3": dict(hdf5plugin.Zstd(clevel=3)),
    "lz4": dict(hdf5plugin.LZ4()),
    "blosc": dict(hdf5plugin.Blosc()),  # lz4, level 5, byte shuffle
}
TARGETS = (  # from issue 17: (codec, method compared, at least), for MEASURED
    ("gzip-1", "hdmf GDCI", 1.7),
    ("gzip-1", "h5py", 1.7),
    ("zstd-3", "hdmf GDCI", 1.6),
)


def make_source(path: Path, frames: int, frame: tuple[int, int]) -> None:
    """A complete source: Poisson counts (mean 3), uint16, one frame per chunk, its keys all
    set and its finished flag set."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(DATA, shape=(frames, *frame), dtype="uint16", chunks=(1, *frame))
        for lo in range(0, frames, 50):
            n = min(50, frames - lo)
            data[lo : lo + n] = rng.poisson(3.0, size=(n, *frame)).astype("uint16")
        f.create_dataset("/entry/keys/key_0", data=np.ones(frames, "i4"), maxshape=(None,))
        f.create_dataset("/entry/finished", data=np.ones(1, "i4"))


def copy_to_nwb(
    source: Path, out: Path, options: dict[str, Any], chunks: tuple[int, ...], workers: int | None
) -> dict[str, Any]:
    """``h5live.to_nwb`` of the source (which it opens itself: HDF5 refuses a second open of a
    file with other SWMR flags in one process)."""
    from h5live import to_nwb

    result = to_nwb(
        source,
        out,
        rate=100.0,
        compression=options,
        chunk_shape=chunks,
        workers=workers,
    )
    if result.state != "complete":
        raise AssertionError(f"to_nwb ended {result.state}: {result}")
    return {"chunk_copy": result.chunk_copy[TO_NWB_DATA]}


def h5dataio_options(options: dict[str, Any]) -> dict[str, Any]:
    """H5DataIO's spelling of h5py's filter options."""
    wrapped = dict(options)
    if isinstance(wrapped.get("compression"), int):
        wrapped["allow_plugin_filters"] = True
    return wrapped


def copy_h5py(source: Any, out: Path, options: dict[str, Any], rows: int) -> dict[str, Any]:
    with h5py.File(out, "w") as f:
        copy = f.create_dataset(
            DATA,
            shape=source.shape,
            dtype=source.dtype,
            chunks=(rows, *source.shape[1:]),
            **options,
        )
        for lo in range(0, source.shape[0], rows):
            copy[lo : lo + rows] = source[lo : lo + rows]
    return {}


def copy_gdci(source: Any, out: Path, options: dict[str, Any], rows: int) -> dict[str, Any]:
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    shape = (rows, *source.shape[1:])
    iterator = H5pyIterator(source, chunk_shape=shape, buffer_shape=shape)
    nwbfile = NWBFile(
        session_description="bench_compression",
        identifier="bench-compression",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
    )
    with warnings.catch_warnings():  # hdmf warns that a plugin filter may not be available
        warnings.filterwarnings("ignore", "[0-9]+ compression may not be available")
        data = H5DataIO(iterator, **h5dataio_options(options))
    nwbfile.add_acquisition(ImageSeries(name="frames", data=data, unit="counts", rate=100.0))
    with NWBHDF5IO(out, "w") as io:
        io.write(nwbfile)
    return {}


def copy_parallel(
    source: Any, out: Path, options: dict[str, Any], rows: int, workers: int
) -> dict[str, Any]:
    frames = source.shape[0]
    frame = tuple(source.shape[1:])
    read = 0.0
    with h5py.File(out, "w") as f:
        copy = f.create_dataset(
            DATA, shape=source.shape, dtype=source.dtype, chunks=(rows, *frame), **options
        )
        with ParallelChunkWriter(copy, workers=workers, extend=False) as writer:
            for lo in range(0, frames, rows):
                n = min(rows, frames - lo)
                buffer = np.empty((n, *frame), dtype=source.dtype)  # handed over: no copy
                started = time.perf_counter()
                source.read_direct(buffer, np.s_[lo : lo + n], np.s_[:])
                read += time.perf_counter() - started
                writer.submit((lo, *(0 for _ in frame)), buffer, copy=False)
        stats = writer.stats
    return {
        "chunks": stats.chunks,
        "encode_cpu_s": stats.encode_cpu_s,
        "encode_s": stats.encode_s,
        "write_s": stats.write_s,
        "wait_s": stats.wait_s,
        "read_s": read,
        "ratio": stats.bytes_in / max(stats.bytes_out, 1),
    }


def check_output(samples: dict[int, Any], out: Path, method: str, reference: Any) -> None:
    """Sample frames (index: frame) equal the source's; the filter pipeline is a plain h5py
    write's."""
    path = {"hdmf GDCI": NWB_DATA}.get(method, TO_NWB_DATA if method.startswith("to_nwb") else DATA)
    with h5py.File(out, "r") as f:
        copy = f[path]
        for index, frame in samples.items():
            if not np.array_equal(copy[index], frame):
                raise AssertionError(f"{method}: frame {index} differs from the source")
        if reference is not None and filter_pipeline(copy) != reference:
            raise AssertionError(
                f"{method}: filters {filter_pipeline(copy)} differ from h5py's {reference}"
            )


def run(
    method: str, source_path: Path, out: Path, options: dict[str, Any], rows: int
) -> tuple[float, dict[str, Any]]:
    """One timed copy; seconds and what was measured."""
    if method.startswith("to_nwb"):
        with h5py.File(source_path, "r") as f:
            chunks = (rows, *f[DATA].shape[1:])
        workers = {"to_nwb workers=0": 0, "to_nwb workers=1": 1}.get(method)
        return timed(lambda: copy_to_nwb(source_path, out, options, chunks, workers))
    with h5py.File(source_path, "r") as f:
        source = f[DATA]
        calls: dict[str, Callable[[], dict[str, Any]]] = {
            "h5py": lambda: copy_h5py(source, out, options, rows),
            "hdmf GDCI": lambda: copy_gdci(source, out, options, rows),
            "pool workers=1": lambda: copy_parallel(source, out, options, rows, 1),
            "pool workers=2": lambda: copy_parallel(source, out, options, rows, 2),
        }
        return timed(calls[method])


def timed(call: Callable[[], dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """Seconds of ``call()``, and what it measured with the CPU times of the process and of
    this thread."""
    cpu, caller = time.process_time(), time.thread_time()
    started = time.perf_counter()
    measured = call()
    seconds = time.perf_counter() - started
    measured["cpu_s"] = time.process_time() - cpu
    measured["caller_cpu_s"] = time.thread_time() - caller
    return seconds, measured


def measure(quick: bool, tmp: Path) -> dict[str, Any]:
    frames, frame, rows = (48, (128, 128), 8) if quick else (400, (512, 512), 8)
    codecs = ["gzip-1", "zstd-3"] if quick else list(CODECS)
    rounds = 1 if quick else 3
    source_path = tmp / "source.h5"
    make_source(source_path, frames, frame)
    mb = frames * int(np.prod(frame)) * 2 / 1e6
    chunks = -(-frames // rows)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    combos = [(codec, method) for codec in codecs for method in METHODS]
    load = [os.getloadavg()[0]]
    with h5py.File(source_path, "r") as f:
        source = f[DATA]
        source[...]  # in the page cache before the first copy
        samples = {i: source[i] for i in sorted({0, 7, 8, (frames - 1) // 2, frames - 1})}
    reference: dict[str, Any] = {}
    for round_ in range(rounds):
        for codec, method in rotated(combos, round_):
            nwb = method == "hdmf GDCI" or method.startswith("to_nwb")
            out = tmp / ("out.nwb" if nwb else "out.h5")
            seconds, measured = run(method, source_path, out, CODECS[codec], rows)
            if method == "h5py":
                with h5py.File(out, "r") as done:
                    reference[codec] = filter_pipeline(done[DATA])
            check_output(samples, out, method, reference.get(codec))
            out.unlink()
            measured.update(seconds=seconds, mb_s=mb / seconds)
            runs.setdefault((codec, method), []).append(measured)
            print(f"round {round_} {codec:7s} {method:17s} {mb / seconds:7.1f} MB/s")
        load.append(os.getloadavg()[0])
    rows_out = []
    for codec in codecs:
        for method in METHODS:
            rows_out.append(summarize(codec, method, runs[(codec, method)], chunks, mb))
    return {
        "config": {
            "frames": frames,
            "frame": list(frame),
            "chunk_frames": rows,
            "mb": mb,
            "chunks": chunks,
            "rounds": rounds,
        },
        "load_average": load,
        "results": rows_out,
    }


def summarize(
    codec: str, method: str, runs: list[dict[str, Any]], chunks: int, mb: float
) -> dict[str, Any]:
    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    row: dict[str, Any] = {
        "codec": codec,
        "method": method,
        "mb_s": median("mb_s"),
        "mb_s_all": [r["mb_s"] for r in runs],
        "seconds": median("seconds"),
        "cores_busy": median("cpu_s") / median("seconds"),
    }
    if "chunk_copy" in runs[-1]:
        row["chunk_copy"] = runs[-1]["chunk_copy"]
    if method.startswith("pool"):
        per_chunk = {
            "encode_cpu_ms": 1e3 * median("encode_cpu_s") / chunks,
            "encode_ms": 1e3 * median("encode_s") / chunks,
            "caller_cpu_ms": 1e3 * median("caller_cpu_s") / chunks,
            "write_ms": 1e3 * median("write_s") / chunks,
            "read_ms": 1e3 * median("read_s") / chunks,
            "wait_ms": 1e3 * median("wait_s") / chunks,
        }
        row.update(per_chunk, ratio=median("ratio"))
        chunk_mb = mb / chunks
        encode, caller = per_chunk["encode_cpu_ms"] / 1e3, per_chunk["caller_cpu_ms"] / 1e3
        row["predicted_mb_s"] = {
            str(n): chunk_mb * min(n / (encode + caller), 1 / caller) for n in (1, 2, 8, 16)
        }
    return row


def ratios(results: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """MEASURED against each other method, per codec (medians)."""
    speed = {(r["codec"], r["method"]): r["mb_s"] for r in results}
    return {
        (codec, method): speed[(codec, MEASURED)] / speed[(codec, method)]
        for codec, method in speed
        if method != MEASURED
    }


def markdown(results: dict[str, Any], command: str) -> str:
    m, config = results["machine"], results["config"]
    frame = "x".join(str(n) for n in config["frame"])
    load = ", ".join(f"{x:.1f}" for x in results["load_average"])
    libraries = ", ".join(f"{k} {v}" for k, v in results["libraries"].items())
    lines = [
        "## Compressed outputs: parallel chunk encoding against HDF5's filter pipeline "
        "(`bench_compression.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(m)} hdf5plugin {results['hdf5plugin']} "
        f"({libraries}). Load average (1 min) before and after each round: {load}.  ",
        "Data: `benchmarks/results/compression.json`, plot: `benchmarks/results/compression.png`.",
        "",
        f"{config['frames']} frames of {frame} uint16 Poisson counts (mean 3; {config['mb']:.0f} "
        f"MB), source chunks of one frame, destination chunks of {config['chunk_frames']} "
        f"frames; medians of {config['rounds']} interleaved rounds. MB/s of uint16 frames; "
        "cores busy: process CPU time / wall time.",
        "",
        f"| codec | method | MB/s | rounds (MB/s) | cores busy | {MEASURED} is |",
        "|---|---|---:|---|---:|---:|",
    ]
    ratio = ratios(results["results"])
    for r in results["results"]:
        against = ratio.get((r["codec"], r["method"]))
        lines.append(
            f"| {r['codec']} | {r['method']} | {r['mb_s']:.0f} | "
            f"{' / '.join(f'{x:.0f}' for x in r['mb_s_all'])} | {r['cores_busy']:.2f} | "
            f"{'' if against is None else f'{against:.2f}x'} |"
        )
    lines += [
        "",
        "Per chunk (the pool alone; encode CPU summed over workers, caller = the submitting "
        "thread's CPU: reads, hand-over, `write_direct_chunk`), and the speed predicted for N "
        "cores, `min(N / (encode + caller), 1 / caller)` chunks/s:",
        "",
        "| codec | workers | ratio | encode CPU (ms) | encode wall (ms) | caller CPU (ms) | "
        "read (ms) | write (ms) | caller waited (ms) | predicted 2 / 8 / 16 cores (MB/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["results"]:
        if not r["method"].startswith("pool"):
            continue
        p = r["predicted_mb_s"]
        lines.append(
            f"| {r['codec']} | {r['method'][-1]} | {r['ratio']:.2f} | "
            f"{r['encode_cpu_ms']:.1f} | {r['encode_ms']:.1f} | {r['caller_cpu_ms']:.1f} | "
            f"{r['read_ms']:.1f} | {r['write_ms']:.1f} | {r['wait_ms']:.1f} | "
            f"{p['2']:.0f} / {p['8']:.0f} / {p['16']:.0f} |"
        )
    alone = [r["cores_busy"] for r in results["results"] if r["method"] == "h5py"]
    if alone and max(alone) < 0.9:
        lines += [
            "",
            f"**This run got less than one core**: plain h5py, one thread, kept "
            f"{max(alone):.2f} cores busy at best. Other sessions were loading the machine, and "
            "Linux's autogroup scheduling gives each session an equal share of the CPUs however "
            "many threads it runs, so a second worker could not add CPU time here: the wall-clock "
            "ratios below do not show what the pool does; the per-chunk CPU times and the "
            "predictions above do.",
        ]
    lines += ["", f"Targets of issue 17 (`{MEASURED}`, default workers, against):", ""]
    for codec, method, target in TARGETS:
        got = ratio.get((codec, method))
        if got is None:
            continue
        verdict = "met" if got >= target else "not met"
        lines.append(f"- {codec} vs {method}: {got:.2f}x (target {target}x): {verdict}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    codecs = list(dict.fromkeys(r["codec"] for r in results["results"]))
    speed = {(r["codec"], r["method"]): r["mb_s"] for r in results["results"]}
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(METHODS)
    for k, method in enumerate(METHODS):
        xs = [i + k * width for i in range(len(codecs))]
        ax.bar(xs, [speed[(c, method)] for c in codecs], width, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(codecs))], codecs)
    ax.set_ylabel("MB/s (uint16 frames)")
    ax.set_title("Compressed copy: HDF5's pipeline vs h5live's encoding threads")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    logging.getLogger("h5live").setLevel(logging.ERROR)  # to_nwb's note on the empty subject
    with tempfile.TemporaryDirectory(prefix="h5live-bench-") as tmp_name:
        results: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine(),
            "hdf5plugin": hdf5plugin.version,
            "libraries": library_versions(),
            **measure(args.quick, Path(tmp_name)),
        }
    for (codec, method), got in ratios(results["results"]).items():
        print(f"{codec}: {MEASURED} is {got:.2f}x {method}")
    if args.quick:
        return 0
    save_results("compression", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
