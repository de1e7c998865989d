"""Iterator benchmark: LiveDataChunkIterator through NWBHDF5IO.write against the alternatives.

One copy of the same uint16 frame data (1 GiB in the full run), done three ways, each in a
fresh process so that its peak memory is its own, rounds interleaved, medians reported:

- ``h5live``: ``H5DataIO(LiveDataChunkIterator(...))`` in an ``ImageSeries``, NWBHDF5IO.write;
- ``h5live, 1 MiB cache``: the same, into an NWB file opened by h5py with a 1 MiB chunk cache
  and handed to ``NWBHDF5IO(file=...)`` (HDF5IO opens files with a 32 MiB cache, so chunks up to
  32 MiB are copied through it on their way to the file);
- ``hdmf``: hdmf's GenericDataChunkIterator over the complete h5py dataset, same shapes, same
  write;
- ``h5py``: a plain h5py chunk-by-chunk copy into a dataset of the same chunks.

The source is a complete file in h5live's layout (keys set, finished flag set), one frame per
chunk as detectors write it. Every destination has the same chunks (``--chunk-frames``) and no
compression, so the copy itself is measured. Peak memory is the child's maximum resident set
size minus its size just before the copy.

Usage::

    python benchmarks/bench_iterator.py            # full run: JSON, PNG, benchmarks/RESULTS.md
    python benchmarks/bench_iterator.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parse_args, pyplot, rotated, save_results

METHODS = ("h5live", "h5live, 1 MiB cache", "hdmf", "h5py")
DATA = "/entry/data/data"


def make_source(path: Path, frames: int, frame_shape: tuple[int, int]) -> None:
    """A complete source: detector-like uint16 frames, one per chunk, keys and finished set."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w", libver="latest") as f:
        data = f.create_dataset(
            DATA,
            shape=(frames, *frame_shape),
            maxshape=(None, *frame_shape),
            chunks=(1, *frame_shape),
            dtype="uint16",
        )
        block = 64
        for lo in range(0, frames, block):
            n = min(block, frames - lo)
            data[lo : lo + n] = rng.poisson(3.0, size=(n, *frame_shape)).astype("uint16")
        f.create_dataset("/entry/keys/key_0", data=np.ones(frames, dtype="int32"))
        f.create_dataset("/entry/finished", data=[1])


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _nwb_write(data: Any, destination: Path, rdcc_nbytes: int | None = None) -> None:
    from hdmf.backends.hdf5.h5_utils import H5DataIO  # imported before the clock starts
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.image import ImageSeries

    nwbfile = NWBFile(
        session_description="benchmark",
        identifier="bench-iterator",
        session_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    nwbfile.add_acquisition(
        ImageSeries(name="frames", data=H5DataIO(data), unit="counts", rate=100.0)
    )
    if rdcc_nbytes is None:
        with NWBHDF5IO(destination, "w") as io:
            io.write(nwbfile)
        return
    with (
        h5py.File(destination, "w", rdcc_nbytes=rdcc_nbytes) as file,
        NWBHDF5IO(file=file, mode="w") as io,
    ):
        io.write(nwbfile)


def child(method: str, source: Path, destination: Path, chunk: int, buffer: int) -> dict[str, Any]:
    """Run one copy in this process; return its time and memory (imports are not timed)."""
    import pynwb.image  # noqa: F401
    from hdmf.backends.hdf5.h5_utils import H5DataIO  # noqa: F401

    from h5live import LiveDataChunkIterator
    from h5live.bench._copies import H5pyIterator  # hdmf's iterator over an h5py dataset

    with h5py.File(source, "r", libver="latest", swmr=True) as f:
        dataset = f[DATA]
        frame = tuple(dataset.shape[1:])
        shapes = {"chunk_shape": (chunk, *frame), "buffer_shape": (buffer, *frame)}
        base = _rss_mb()
        started = time.perf_counter()
        if method.startswith("h5live"):
            cache = 1 << 20 if "cache" in method else None
            with LiveDataChunkIterator(dataset, **shapes) as iterator:
                _nwb_write(iterator, destination, cache)
        elif method == "hdmf":
            _nwb_write(H5pyIterator(dataset, **shapes), destination)
        else:
            with h5py.File(destination, "w") as out:
                copy = out.create_dataset(
                    "data", shape=dataset.shape, dtype=dataset.dtype, chunks=(chunk, *frame)
                )
                for lo in range(0, dataset.shape[0], chunk):
                    copy[lo : lo + chunk] = dataset[lo : lo + chunk]
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux
    return {"seconds": seconds, "peak_extra_mb": peak - base}


def run_child(method: str, source: Path, workdir: Path, chunk: int, buffer: int) -> dict[str, Any]:
    destination = workdir / f"{method.replace(' ', '_').replace(',', '')}.out"
    command = [sys.executable, __file__, "--child", method, str(source), str(destination)]
    command += [str(chunk), str(buffer)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{method} failed:\n{done.stderr}")
    destination.unlink()
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(quick: bool, where: str | None) -> dict[str, Any]:
    """One side-by-side comparison, with the files in folder ``where`` (None: the temp dir)."""
    frames, frame_shape = (64, (64, 64)) if quick else (2048, (512, 512))
    chunk, buffer = (4, 16) if quick else (8, 512)
    rounds = 1 if quick else 7
    frame_mb = np.prod(frame_shape) * 2 / 1e6
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    with tempfile.TemporaryDirectory(prefix="h5live-bench-", dir=where) as tmp:
        workdir = Path(tmp)
        source = workdir / "source.h5"
        make_source(source, frames, frame_shape)
        for round_ in range(rounds):
            for method in rotated(METHODS, round_):
                runs[method].append(run_child(method, source, workdir, chunk, buffer))
    data_mb = frames * frame_mb
    results: dict[str, Any] = {
        "folder": where or tempfile.gettempdir(),
        "frames": frames,
        "frame_shape": list(frame_shape),
        "data_mb": data_mb,
        "chunk_frames": chunk,
        "buffer_frames": buffer,
        "buffer_mb": buffer * frame_mb,
        "rounds": rounds,
        "methods": {},
    }
    for method, values in runs.items():
        seconds = statistics.median(v["seconds"] for v in values)
        results["methods"][method] = {
            "seconds": seconds,
            "mb_per_s": data_mb / seconds,
            "peak_extra_mb": statistics.median(v["peak_extra_mb"] for v in values),
            "all_seconds": [v["seconds"] for v in values],
        }
    base = results["methods"]["h5py"]["seconds"]
    hdmf = results["methods"]["hdmf"]["seconds"]
    for entry in results["methods"].values():
        entry["vs_h5py"] = base / entry["seconds"]
        entry["vs_hdmf"] = hdmf / entry["seconds"]
    return results


def markdown(results: dict[str, Any], command: str) -> str:
    first = results["runs"][0]
    lines = [
        "## LiveDataChunkIterator: a copy through NWBHDF5IO.write against the alternatives",
        "",
        f"`{command}` on {machine_line(results['machine']).rstrip('.')}.",
        "",
        f"{first['frames']} frames of {first['frame_shape'][0]}x{first['frame_shape'][1]} "
        f"uint16 ({first['data_mb']:.0f} MB), one frame per source chunk; destination chunks "
        f"of {first['chunk_frames']} frames, buffers of {first['buffer_frames']} frames "
        f"({first['buffer_mb']:.0f} MB), no compression. Each copy in a fresh process (imports "
        f"not timed), {first['rounds']} interleaved rounds, medians. Ratios > 1: faster than "
        "the reference. The NWB writes include NWB's fixed cost (the file's groups and cached "
        "namespaces), which a bare h5py copy does not pay.",
    ]
    for run in results["runs"]:
        lines += [
            "",
            f"Files in `{run['folder']}`:",
            "",
            "| method | s | MB/s | vs plain h5py | vs hdmf GDCI | peak memory above start (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for method, r in run["methods"].items():
            lines.append(
                f"| {method} | {r['seconds']:.2f} | {r['mb_per_s']:.0f} | {r['vs_h5py']:.2f}x | "
                f"{r['vs_hdmf']:.2f}x | {r['peak_extra_mb']:.0f} |"
            )
    lines += ["", "![copy throughput and memory](results/iterator.png)"]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    runs = results["runs"]
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 4 * len(runs)), squeeze=False)
    for (speed, memory), run in zip(axes, runs, strict=True):
        methods = list(run["methods"])
        speed.bar(methods, [run["methods"][m]["mb_per_s"] for m in methods])
        speed.set_ylabel("MB/s (median)")
        speed.set_title(f"copy of {run['data_mb']:.0f} MB, files in {run['folder']}")
        memory.bar(methods, [run["methods"][m]["peak_extra_mb"] for m in methods])
        memory.axhline(run["buffer_mb"], color="k", linestyle="--", label="one buffer")
        memory.set_ylabel("peak memory above start (MB)")
        memory.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--child"]:
        method, source, destination, chunk, buffer = args_list[1:6]
        print(json.dumps(child(method, Path(source), Path(destination), int(chunk), int(buffer))))
        return 0
    args = parse_args(__doc__ or "", argv)
    folders: list[str | None] = [None]
    if not args.quick and os.path.isdir("/dev/shm"):
        folders.append("/dev/shm")  # memory: the copy paths without the disk's noise
    results: dict[str, Any] = {"machine": machine(), "runs": []}
    for where in folders:
        run = measure(args.quick, where)
        results["runs"].append(run)
        print(f"files in {run['folder']}:")
        for method, r in run["methods"].items():
            print(
                f"  {method:21s} {r['seconds']:7.3f} s {r['mb_per_s']:8.0f} MB/s "
                f"{r['vs_h5py']:5.2f}x h5py {r['vs_hdmf']:5.2f}x hdmf "
                f"peak +{r['peak_extra_mb']:.0f} MB"
            )
    if not args.quick:
        save_results("iterator", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
