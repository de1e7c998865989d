"""The ``h5live bench`` run: sweep, alternatives side by side, live latency and keep-up.

Contract
--------
- :func:`run_bench` measures, in this order, on the data of a :class:`BenchOptions`:

  1. the sweep: ``copy_live`` of a complete source into a new file for each chunk shape
     (frames per chunk) x buffer size (chunks per buffer), uncompressed, and compressed
     (source and copy with the same filters); combinations whose buffer exceeds the data or
     the memory cap are skipped (listed with the reason);
  2. the alternatives: the same copy (the source's chunks and filters kept) by each method of
     :data:`~h5live.bench._copies.ALTERNATIVES`, rounds interleaved (the order rotated each
     round), medians, ratios against plain h5py;
  3. live: the writer's unthrottled rate alone; latency for a few buffer sizes (the sweep
     pick's chunks) at one rate; and for a few chunk x buffer choices the highest rate kept up,
     doubling from a start rate up to the unthrottled writer, stopping at the first failure.

- It returns one JSON-able dict; :func:`write_outputs` writes it and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from h5live._read.filters import PLUGIN_FILTERS
from h5live.bench._copies import ALTERNATIVES, REFERENCE, CopyJob, MethodUnavailable, copy_with
from h5live.bench._data import (
    DataSpec,
    check_compression,
    default_compression,
    file_spec,
    make_source,
    scan_block,
    simulated_spec,
)
from h5live.bench._live import live_run, writer_max_rate
from h5live.bench._report import (
    RULE,
    keep_up_rate,
    recommend,
    recommendation_line,
    sweep_pick,
    write_plots,
)

__all__ = [
    "BenchOptions",
    "BenchUsageError",
    "bench_options",
    "compression_name",
    "run_bench",
    "write_outputs",
]

KEEP_UP_RULE = (
    "every frame copied, the last within max(1 s, 2 x max_latency) of the writer's last "
    "flush, and the lowest latency of the frames flushed in the last quarter of the run at "
    "most max(0.05 s, 10% of the run) above that of the second quarter (no growing backlog)"
)

#: A live run writes at most this many bytes.
LIVE_BYTES_CAP = 2 << 30


@dataclass(frozen=True)
class BenchOptions:
    """What ``h5live bench`` measures, and how long it may take.

    ``compression``: ``"auto"`` (bitshuffle-LZ4 if hdf5plugin is installed, else gzip), a
    name h5live accepts, or ``None`` (uncompressed only). With ``source`` (a user's file), its
    shape, dtype, chunks and filters are used, ``frames`` at most.
    """

    frames: int | None = None
    frame_shape: tuple[int, ...] = (512, 512)
    dtype: str = "uint16"
    compression: str | None = "auto"
    scan_shape: tuple[int, ...] | None = None
    source: str | None = None
    data_path: str | None = None
    chunk_frames: tuple[int, ...] = (1, 4, 16, 64)
    buffer_chunks: tuple[int, ...] = (1, 4, 16, 64, 256)
    memory_cap_mb: float = 2048.0
    rounds: int = 3
    max_latency_s: float | None = 1.0
    live_seconds: float = 3.0
    start_rate_hz: float | None = None
    latency_rate_hz: float | None = None
    workdir: str | None = None
    quick: bool = False

    @classmethod
    def quick_defaults(cls, **given: Any) -> BenchOptions:
        """Tiny sizes that still run every part in seconds; ``given`` fields win."""
        base: dict[str, Any] = {
            "frames": 32,
            "frame_shape": (64, 64),
            "chunk_frames": (1, 4),
            "buffer_chunks": (1, 4),
            "rounds": 1,
            "live_seconds": 0.3,
            "quick": True,
        }
        base.update({k: v for k, v in given.items() if v is not None})
        return cls(**base)


class BenchUsageError(ValueError):
    """Options of ``h5live bench`` that do not fit together (the command exits 2)."""


def bench_options(*, quick: bool = False, **given: Any) -> BenchOptions:
    """Checked :class:`BenchOptions` from the command's options (``None``: the default, or
    the quick default with ``quick``).

    Raises
    ------
    BenchUsageError
        A frame of rank above 3, ``scan`` with ``frames`` that disagree, shape options with
        ``source``, a non-positive size.
    """
    frame = given.get("frame_shape")
    if frame is not None and not 1 <= len(frame) <= 3:
        raise BenchUsageError(
            f"--frame takes 1 to 3 sizes (a spectrum N, an image H W, a volume D H W), got "
            f"{len(frame)}: {' '.join(map(str, frame))}. Fix: e.g. --frame 512 512."
        )
    scan, frames = given.get("scan_shape"), given.get("frames")
    if scan is not None and frames is not None and math.prod(scan) != frames:
        raise BenchUsageError(
            f"--scan {' '.join(map(str, scan))} holds {math.prod(scan)} frames, --frames says "
            f"{frames}. Fix: pass one of them."
        )
    if given.get("source") is not None:
        clash = [
            name
            for name, key in (("--frame", "frame_shape"), ("--scan", "scan_shape"))
            if given.get(key) is not None
        ]
        if given.get("dtype") not in (None, "uint16"):
            clash.append("--dtype")
        if clash:
            raise BenchUsageError(
                f"{', '.join(clash)} cannot be used with --source {given['source']!r}: the "
                "file's own shape and dtype are measured. Fix: leave them out (--frames "
                "limits how many frames are copied)."
            )
    for key in ("memory_cap_mb", "live_seconds", "start_rate_hz", "latency_rate_hz"):
        value = given.get(key)
        if value is not None and not (value > 0 and math.isfinite(value)):
            flag = "--" + key.rsplit("_", 1)[0].replace("_", "-")
            raise BenchUsageError(f"{flag} must be a positive number, got {value!r}.")
    # None is a value for these two (no compression, whole buffers only), not "the default"
    meaningful = {k: given.pop(k) for k in ("compression", "max_latency_s") if k in given}
    given = {k: v for k, v in given.items() if v is not None}
    if quick:
        return dataclasses.replace(BenchOptions.quick_defaults(**given), **meaningful)
    return BenchOptions(**given, **meaningful)


def compression_name(text: str) -> str | None:
    """``--compression``: ``auto``, ``none`` (``None``) or a name h5live accepts.

    Raises
    ------
    ValueError
        An unknown name, with the known ones.
    """
    if text == "auto":
        return text
    if text == "none":
        return None
    if text not in ("gzip", "lzf", *PLUGIN_FILTERS) and not text.isdigit():
        raise ValueError(
            f"unknown compression {text!r}. Fix: use auto, none, gzip, lzf, "
            f"{', '.join(PLUGIN_FILTERS)} or an HDF5 filter id."
        )
    return text


def resolve_spec(options: BenchOptions) -> DataSpec:
    """The data to measure (raises for a bad file, dataset or compression)."""
    compression = options.compression
    if compression == "auto":
        compression = default_compression()
    if compression is not None:
        check_compression(compression)
    if options.source is not None:
        return file_spec(options.source, options.data_path, options.frames, compression)
    return simulated_spec(
        frames=options.frames,
        frame_shape=options.frame_shape,
        dtype=options.dtype,
        compression=compression,
        scan_shape=options.scan_shape,
    )


def _shapes(spec: DataSpec, chunk: int, buffer: int) -> tuple[Any, Any] | str:
    """Chunk and buffer shapes for ``chunk`` frames x ``buffer`` chunks, or why not."""
    chunk_block = scan_block(spec.scan_shape, chunk)
    buffer_block = scan_block(spec.scan_shape, chunk * buffer)
    if chunk > spec.frames or chunk * buffer > spec.frames:
        return f"buffer of {chunk * buffer} frames exceeds the data ({spec.frames} frames)"
    if chunk_block is None or buffer_block is None:
        return "not a block of whole rows (or part of one row) of the grid scan"
    if any(
        b % c and b != n for b, c, n in zip(buffer_block, chunk_block, spec.scan_shape, strict=True)
    ):
        return "the buffer is not made of whole chunks in this grid"
    frame = spec.frame_shape
    return (*chunk_block, *frame), (*buffer_block, *frame)


def run_sweep(
    workdir: Path, spec: DataSpec, source: Path, label: str, options: BenchOptions, log: Any
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for chunk in options.chunk_frames:
        for buffer in options.buffer_chunks:
            shapes = _shapes(spec, chunk, buffer)
            buffer_bytes = chunk * buffer * spec.frame_bytes
            if isinstance(shapes, str) or buffer_bytes > options.memory_cap_mb * 1e6:
                reason = (
                    shapes
                    if isinstance(shapes, str)
                    else f"buffer of {buffer_bytes / 1e6:.0f} MB exceeds the memory cap "
                    f"({options.memory_cap_mb:.0f} MB)"
                )
                skipped.append({"chunk_frames": chunk, "buffer_chunks": buffer, "reason": reason})
                continue
            job = CopyJob(source, workdir / "sweep_copy.h5", shapes[0], shapes[1])
            run = copy_with("h5live copy_live", job)
            point = {
                "chunk_frames": chunk,
                "buffer_chunks": buffer,
                "chunk_shape": list(shapes[0]),
                "buffer_shape": list(shapes[1]),
                "buffer_bytes": buffer_bytes,
                "seconds": run["seconds"],
                "mb_per_s": spec.data_bytes / 1e6 / run["seconds"],
                "peak_mb": run["peak_bytes"] / 1e6,
                "chunk_copy": run["chunk_copy"],
            }
            points.append(point)
            log(
                f"sweep ({label}): chunk {chunk} x buffer {buffer}: "
                f"{point['mb_per_s']:.0f} MB/s, peak {point['peak_mb']:.0f} MB"
            )
    return {"points": points, "skipped": skipped}


def run_alternatives(
    workdir: Path,
    spec: DataSpec,
    sources: Mapping[str, Path],
    options: BenchOptions,
    log: Any,
) -> dict[str, Any]:
    rank = len(spec.scan_shape)
    chunk_frames = spec.chunk_frames
    # buffers of whole source chunks, about 128 MB, at most the data
    per_buffer = max(1, min((128 << 20) // max(chunk_frames * spec.frame_bytes, 1), 1 << 20))
    buffer_frames = chunk_frames
    for factor in (per_buffer, *range(per_buffer, 0, -1)):
        shapes = _shapes(spec, chunk_frames, factor)
        if not isinstance(shapes, str):
            buffer_frames = chunk_frames * factor
            break
    buffer_block = scan_block(spec.scan_shape, buffer_frames) or spec.chunks[:rank]
    buffer_shape = (*buffer_block, *spec.frame_shape)
    runs: dict[str, dict[str, Any]] = {}
    for label, source in sources.items():
        samples: dict[str, list[dict[str, Any]]] = {m: [] for m in ALTERNATIVES}
        unavailable: dict[str, str] = {}
        for round_ in range(options.rounds):
            k = round_ % len(ALTERNATIVES)
            for method in (*ALTERNATIVES[k:], *ALTERNATIVES[:k]):
                if method in unavailable:
                    continue
                name = "alt_copy.nwb" if "NWB" in method else "alt_copy.h5"
                job = CopyJob(source, workdir / name, spec.chunks, buffer_shape, rank)
                try:
                    samples[method].append(copy_with(method, job))
                except MethodUnavailable as exc:
                    unavailable[method] = str(exc)
        methods: dict[str, dict[str, Any]] = {}
        for method in ALTERNATIVES:
            if method in unavailable:
                methods[method] = {"unavailable": unavailable[method]}
                continue
            values = samples[method]
            seconds = statistics.median(v["seconds"] for v in values)
            methods[method] = {
                "seconds": seconds,
                "mb_per_s": spec.data_bytes / 1e6 / seconds,
                "peak_mb": statistics.median(v["peak_bytes"] for v in values) / 1e6,
                "all_seconds": [v["seconds"] for v in values],
            }
            if "chunk_copy" in values[-1]:
                methods[method]["chunk_copy"] = values[-1]["chunk_copy"]
        reference = methods[REFERENCE]["seconds"]
        for entry in methods.values():
            if "seconds" in entry:
                entry["vs_h5py"] = reference / entry["seconds"]
        runs[label] = methods
        log(
            f"alternatives ({label}): "
            + ", ".join(
                f"{m} {v['mb_per_s']:.0f} MB/s" for m, v in methods.items() if "mb_per_s" in v
            )
        )
    return {
        "rounds": options.rounds,
        "chunk_shape": list(spec.chunks),
        "buffer_shape": list(buffer_shape),
        "runs": runs,
    }


def _live_frames(spec: DataSpec, rate: float, options: BenchOptions) -> int:
    low = 32 if options.quick else 256
    high = max(low, LIVE_BYTES_CAP // max(spec.frame_bytes, 1))
    return int(min(max(round(rate * options.live_seconds), low), high))


def run_live(
    workdir: Path,
    spec: DataSpec,
    label: str,
    points: list[dict[str, Any]],
    pick: Mapping[str, Any],
    options: BenchOptions,
    log: Any,
) -> dict[str, Any]:
    compressed = label != "none"
    probe = _live_frames(spec, 1000.0, options) if not options.quick else 256
    writer_max = writer_max_rate(workdir, spec, probe, compressed=compressed)
    log(f"live: writer alone, unthrottled: {writer_max:.0f} frames/s")
    start = options.start_rate_hz or writer_max / (2 if options.quick else 8)
    rates: list[float | None] = []
    rate = start
    while rate < 0.9 * writer_max:
        rates.append(rate)
        rate *= 2
    rates.append(None)
    cache: dict[tuple[int, int, float | None], dict[str, Any]] = {}

    def run(chunk: int, buffer: int, target: float | None) -> dict[str, Any]:
        key = (chunk, buffer, target)
        if key not in cache:
            shapes = _shapes(spec, chunk, buffer)
            if isinstance(shapes, str):  # the live scan is as long as needed
                block = scan_block((1 << 40, *spec.scan_shape[1:]), chunk)
                whole = scan_block((1 << 40, *spec.scan_shape[1:]), chunk * buffer)
                if block is None or whole is None:
                    raise ValueError(f"chunk {chunk} x buffer {buffer}: {shapes}")
                shapes = ((*block, *spec.frame_shape), (*whole, *spec.frame_shape))
            frames = _live_frames(spec, target or writer_max, options)
            cache[key] = live_run(
                workdir,
                spec,
                chunk_shape=shapes[0],
                buffer_shape=shapes[1],
                rate=target,
                frames=frames,
                max_latency_s=options.max_latency_s,
                compressed=compressed,
            )
            r = cache[key]
            log(
                f"live: chunk {chunk} x buffer {buffer} at "
                f"{'max' if target is None else f'{target:.0f}'} fps: writer "
                f"{r['writer_rate_hz']:.0f} fps, p99 {r['latency']['p99_ms'] or math.nan:.0f} "
                f"ms, {r['keep_up']['reason']}"
            )
        return {**cache[key], "chunk_frames": chunk, "buffer_chunks": buffer}

    latency_rate = options.latency_rate_hz or (start if options.quick else writer_max / 2)
    chunk = int(pick["chunk_frames"])
    buffers = [
        b
        for b in options.buffer_chunks
        if chunk * b * spec.frame_bytes <= options.memory_cap_mb * 1e6
    ][: 2 if options.quick else 4]
    if int(pick["buffer_chunks"]) not in buffers:
        buffers.append(int(pick["buffer_chunks"]))
    latency = []
    for buffer in sorted(buffers):
        entry = run(chunk, buffer, latency_rate)
        latency.append({**entry, "buffer_bytes": chunk * buffer * spec.frame_bytes})
    choices = [pick]
    if not options.quick:
        smallest = min(points, key=lambda p: (p["buffer_bytes"], p["chunk_frames"]))
        fastest = max(points, key=lambda p: p["mb_per_s"])
        for extra in (smallest, fastest):
            if all(extra is not c for c in choices):
                choices.append(extra)
    keep_up = []
    for choice in choices:
        runs = []
        for target in rates:
            entry = run(int(choice["chunk_frames"]), int(choice["buffer_chunks"]), target)
            runs.append(entry)
            if not entry["keep_up"]["kept_up"]:
                break
        best, at_max = keep_up_rate(runs)
        same = [
            r
            for r in latency
            if (r["chunk_frames"], r["buffer_chunks"])
            == (choice["chunk_frames"], choice["buffer_chunks"])
        ]
        kept = [r for r in runs if r["keep_up"]["kept_up"]]
        shown = same[0] if same else (kept[-1] if kept else runs[0])
        keep_up.append(
            {
                "chunk_frames": choice["chunk_frames"],
                "buffer_chunks": choice["buffer_chunks"],
                "buffer_bytes": choice["buffer_bytes"],
                "mb_per_s": choice["mb_per_s"],
                "keep_up_rate_hz": best,
                "at_writer_max": at_max,
                "first_rate_hz": runs[0]["target_rate_hz"] or writer_max,
                "p99_ms": shown["latency"]["p99_ms"],
                "p99_rate_hz": shown["writer_rate_hz"],
                "runs": runs,
            }
        )
    return {
        "compression": label,
        "writer_max_rate_hz": writer_max,
        "rates_hz": rates,
        "latency_rate_hz": latency_rate,
        "max_latency_s": options.max_latency_s,
        "live_seconds": options.live_seconds,
        "latency": latency,
        "keep_up": keep_up,
        "keep_up_rule": KEEP_UP_RULE,
    }


def run_bench(options: BenchOptions, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Measure everything; the results as a JSON-able dict (see the module docstring)."""
    import h5py

    started = time.monotonic()
    spec = resolve_spec(options)
    labels = {"none": False}
    if spec.compression is not None:
        labels[spec.compression] = True
    main = spec.compression or "none"
    log(f"data: {spec.describe()}; compressed: {main}")
    with tempfile.TemporaryDirectory(prefix="h5live-bench-", dir=options.workdir) as tmp:
        workdir = Path(tmp)
        sources = {}
        for k, (label, compressed) in enumerate(labels.items()):
            sources[label] = workdir / f"source_{k}.h5"
            make_source(sources[label], spec, compressed=compressed)
        sweep = {
            label: run_sweep(workdir, spec, path, label, options, log)
            for label, path in sources.items()
        }
        if not sweep[main]["points"]:
            raise ValueError(
                f"no chunk x buffer combination fits {spec.frames} frames under the memory cap "
                f"of {options.memory_cap_mb:.0f} MB. Fix: pass smaller --chunks/--buffers, or "
                "more --frames."
            )
        # --quick: the compressed case only (the same code; its NWB writes cost seconds)
        compared = {main: sources[main]} if options.quick else sources
        alternatives = run_alternatives(workdir, spec, compared, options, log)
        pick = sweep_pick(sweep[main]["points"])
        live = run_live(workdir, spec, main, sweep[main]["points"], pick, options, log)
    chosen = recommend(live["keep_up"])
    results: dict[str, Any] = {
        "data": {
            "description": spec.describe(),
            **{k: v for k, v in asdict(spec).items() if k != "filters"},
            "data_mb": spec.data_bytes / 1e6,
        },
        "options": asdict(options),
        "versions": {
            "h5py": h5py.version.version,
            "hdf5": h5py.version.hdf5_version,
            "numpy": np.__version__,
        },
        "memory": "tracemalloc peak above the start of each copy (Python and numpy "
        "allocations: the buffers; not HDF5's own C allocations)",
        "sweep": sweep,
        "alternatives": alternatives,
        "live": live,
        "sweep_pick": {k: pick[k] for k in ("chunk_frames", "buffer_chunks", "mb_per_s")},
        "recommendation": {
            "line": QUICK_LINE
            if options.quick
            else recommendation_line(chosen, main, live["writer_max_rate_hz"]),
            "rule": RULE,
            "choice": None if options.quick else {k: v for k, v in chosen.items() if k != "runs"},
        },
        "seconds": time.monotonic() - started,
    }
    return results


#: What a ``--quick`` run says instead of a recommendation: its sizes are too small to measure.
QUICK_LINE = (
    "Smoke test (--quick): every part ran on a few tiny frames, so these figures and ratios "
    "measure nothing and no recommendation is made. For one, measure your data: h5live bench "
    "--frame H W --dtype D (a detector like yours), or --source FILE (a file it wrote)."
)


def write_outputs(results: dict[str, Any], out: Path, prefix: str = "") -> list[str]:
    """Write ``<prefix>bench.json`` and the plots into ``out``; the files written, and a note
    if the plots were skipped."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(results, out, prefix)
    results["plots"] = plots
    name = f"{prefix}bench.json"
    (out / name).write_text(json.dumps(results, indent=2, default=_jsonable))
    return [name, *plots]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
