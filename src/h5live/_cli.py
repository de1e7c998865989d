"""The ``h5live`` command: a thin layer over the public API.

Exit codes: 0 done, 1 error (one line on stderr; the traceback with ``--debug``), 2 usage,
130 interrupted (143 SIGTERM, 129 SIGHUP: handled as Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from h5live._follow.follower import FollowPolicy, KeyFollower
from h5live._write.stop import Stopped, check_stop, request_stop
from h5live.errors import H5LiveError

__all__ = ["main"]


def _progress(total: int | None, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="frame", file=sys.stderr, dynamic_ncols=True)


def follow_with_progress(
    follower: KeyFollower,
    *,
    total: int | None,
    description: str,
    on_range: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Iterate a follower's ranges with a progress bar; return a summary of the run."""
    started = time.monotonic()
    first: float | None = None
    frames = 0
    with _progress(total if total is not None else follower.total, description) as bar:
        for start, stop in follower.iter_ranges():
            if first is None:
                first = time.monotonic()
            if on_range is not None:
                on_range(start, stop)
            frames += stop - start
            bar.update(stop - start)
    ended = time.monotonic()
    span = ended - (first if first is not None else started)
    return {
        "frames": frames,
        "frontier": follower.current_max,
        "stop_reason": follower.stop_reason,
        "skipped": follower.skipped,
        "elapsed_s": round(ended - started, 3),
        "frames_per_s": round(frames / span, 1) if span > 0 else None,
    }


_LABELS = {
    "frames": "frames delivered",
    "frontier": "frontier (last complete index)",
    "stop_reason": "stop reason",
    "skipped": "skipped frames",
    "elapsed_s": "elapsed (s)",
    "frames_per_s": "frames/s",
    "mb_per_s": "MB/s",
    "latency_p50_ms": "latency p50, writer flush to NWB (ms)",
    "latency_p99_ms": "latency p99, writer flush to NWB (ms)",
    "frames_complete": "frames complete",
    "nwb_file": "NWB file",
    "nwb_equals_source": "NWB data equal the source",
    "writer_frames_per_s": "writer frames/s",
    "rate_hz": "frames/s",
    "cpu_s": "CPU (s)",
}


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    """Print a summary: JSON with unit-suffixed keys, or aligned labelled lines."""
    if as_json:
        print(json.dumps(summary))
        return
    labels = {name: _LABELS.get(name, name.replace("_", " ")) for name in summary}
    width = max(len(label) for label in labels.values())
    for name, value in summary.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{labels[name]:<{width}}  {shown}")


# ---------------------------------------------------------------- subcommands


def _cmd_follow(args: argparse.Namespace) -> int:
    policy = FollowPolicy(gaps=args.gaps, gap_timeout_s=args.gap_timeout)
    with KeyFollower.from_path(
        args.source,
        args.keys,
        args.finished,
        timeout=args.timeout,
        open_timeout_s=args.open_timeout,
        policy=policy,
    ) as follower:
        follower.on_wait = check_stop  # a Ctrl-C swallowed while waiting is seen at the next wait
        summary = follow_with_progress(follower, total=None, description=Path(args.source).name)
    _print_summary({"source": str(args.source), **summary}, args.json)
    return 0


def _conversion_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``h5live copy`` and ``h5live nwb`` share, as keyword arguments."""
    return {
        "key_paths": args.keys,
        "finished_path": args.finished,
        "compression": None if args.compression == "none" else args.compression,
        "compression_opts": args.compression_opts,
        "chunk_mb": args.chunk_mb,
        "chunk_shape": tuple(args.chunk_shape) if args.chunk_shape else None,
        "buffer_gb": args.buffer_gb,
        "buffer_shape": tuple(args.buffer_shape) if args.buffer_shape else None,
        "max_latency_s": args.max_latency,
        "timeout": args.timeout,
        "open_timeout_s": args.open_timeout,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "display_progress": not args.no_progress,
        "progress_bar_options": {"file": sys.stderr, "desc": Path(args.destination).name},
        "workers": args.workers,
    }


def _report(result: Any, as_json: bool) -> int:
    """Print a conversion's summary; say so on stderr when the output is not complete."""
    _print_summary(result.as_dict(), as_json)
    if result.state != "complete":
        print(
            f"h5live: warning: {result.destination} is {result.state}: the source stopped "
            f"({result.stop_reason}) after {result.frames_complete} complete frames without "
            "setting its finished flag (a crashed or stalled writer, or no flag). Fix: check "
            "the writer; if it goes on, run again with --resume.",
            file=sys.stderr,
        )
    return 0


def _cmd_copy(args: argparse.Namespace) -> int:
    from h5live import copy_live

    result = copy_live(
        args.source, args.destination, datasets=args.data, **_conversion_options(args)
    )
    return _report(result, args.json)


def _cmd_nwb(args: argparse.Namespace) -> int:
    from h5live import to_nwb

    result = to_nwb(
        args.source,
        args.destination,
        data_path=args.data,
        series_type=args.series,
        rate=args.rate,
        timestamps_path=args.timestamps,
        metadata=args.metadata,
        **_conversion_options(args),
    )
    return _report(result, args.json)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from h5live.testing import SimulatedWriter

    if args.files > 1 or args.layout is not None:
        return _simulate_files(args)

    with SimulatedWriter(
        args.destination,
        scan_shape=tuple(args.scan),
        frame_shape=tuple(args.frame),
        dtype=args.dtype,
        frame_rate_hz=args.rate,
        n_keys=args.keys,
        presized=args.presized,
        compression=args.compression,
        timestamps=True,
    ) as writer:
        print(f"writing {writer.config.n_frames} frames to {args.destination}", file=sys.stderr)
        summary = writer.run()
    _print_summary({"destination": str(args.destination), **summary}, args.json)
    return 0


def _simulate_files(args: argparse.Namespace) -> int:
    """``h5live simulate --files N``: a master file and its detector files, each written by
    its own process."""
    from h5live.testing._multifile import simulate_acquisition

    if args.keys != 1:
        raise ValueError(
            f"--keys {args.keys} applies to one file; a multi-file acquisition has one unique-id "
            "key per detector file. Fix: leave --keys out with --files or --layout."
        )
    print(
        f"writing {math.prod(args.scan)} frames to {args.destination} and {args.files} detector "
        f"files beside it ({args.layout or 'vds'} layout), one process each",
        file=sys.stderr,
    )
    summary = simulate_acquisition(
        args.destination,
        files=args.files,
        layout=args.layout or "vds",
        block=args.block,
        scan_shape=tuple(args.scan),
        frame_shape=tuple(args.frame),
        dtype=args.dtype,
        frame_rate_hz=args.rate,
        presized=args.presized,
        compression=args.compression,
        timestamps=True,
    )
    _print_summary({"destination": str(args.destination), **summary}, args.json)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from h5live._demo import run_demo

    summary, ok = run_demo(args.frames, args.rate, args.timeout, args.dir, args.files)
    _print_summary(summary, args.json)
    if not ok:
        print(
            f"h5live: error: the demo converted {summary['frames_complete']} of {args.frames} "
            f"frames (state {summary['state']!r}, equal to the source: "
            f"{summary['nwb_equals_source']}). Fix: rerun with --debug to see why.",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from h5live.bench import (
        BenchUsageError,
        bench_options,
        format_table,
        run_bench,
        write_outputs,
    )

    try:
        options = bench_options(
            quick=args.quick,
            frames=args.frames,
            frame_shape=tuple(args.frame) if args.frame else None,
            dtype=args.dtype,
            compression=args.compression,
            scan_shape=tuple(args.scan) if args.scan else None,
            source=args.source,
            data_path=args.data,
            chunk_frames=tuple(args.chunks) if args.chunks else None,
            buffer_chunks=tuple(args.buffers) if args.buffers else None,
            memory_cap_mb=args.memory_cap,
            rounds=args.rounds,
            max_latency_s=args.max_latency,
            live_seconds=args.live_seconds,
            start_rate_hz=args.start_rate,
            latency_rate_hz=args.rate,
            workdir=args.dir,
        )
    except BenchUsageError as exc:
        print(f"h5live bench: error: {exc}", file=sys.stderr)
        return 2
    results = run_bench(options, log=lambda line: print(line, file=sys.stderr, flush=True))
    files = write_outputs(results, Path(args.out))
    print(json.dumps(results) if args.json else format_table(results))
    print(results["recommendation"]["line"])
    print(f"h5live bench: wrote {', '.join(files)} in {args.out}", file=sys.stderr)
    return 0


def _bench_compression(text: str) -> str | None:
    from h5live.bench import compression_name

    try:
        return compression_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# ---------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _paths(text: str) -> list[str]:
    paths = [path.strip() for path in text.split(",") if path.strip()]
    if not paths:
        raise argparse.ArgumentTypeError(f"expected comma-separated dataset paths, got {text!r}")
    return paths


def _seconds(text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 or 'none', got {text}")
    return value


def _add_conversion_options(command: argparse.ArgumentParser, compression: str) -> None:
    """Source, output, chunk and buffer options (named as in hdmf), for copy and nwb."""
    command.add_argument(
        "--keys", type=_paths, help="key dataset paths, comma-separated (default: found)"
    )
    command.add_argument("--finished", help="finished dataset path (default: found in the file)")
    command.add_argument(
        "--compression",
        default=compression,
        help="source (the source's filters; its chunks copied raw where they match), none, "
        f"gzip, lzf, zstd, lz4, blosc, blosc2, bitshuffle (default {compression})",
    )
    command.add_argument(
        "--compression-opts", type=int, default=None, help="e.g. the gzip level (0-9)"
    )
    command.add_argument(
        "--workers",
        type=_count,
        default=None,
        help="threads that encode compressed chunks (default: one per core; 0: HDF5's filter "
        "pipeline, one core)",
    )
    chunks = command.add_mutually_exclusive_group()
    chunks.add_argument("--chunk-mb", type=float, help="chunk size in MB, whole frames")
    chunks.add_argument("--chunk-shape", type=_positive_int, nargs="+", help="chunk shape")
    buffers = command.add_mutually_exclusive_group()
    buffers.add_argument(
        "--buffer-gb", type=float, help="buffer size in GB, whole chunks (default 0.128)"
    )
    buffers.add_argument("--buffer-shape", type=_positive_int, nargs="+", help="buffer shape")
    command.add_argument(
        "--max-latency",
        type=_seconds,
        default=1.0,
        help="release whole chunks after this many s, or 'none' (default 1)",
    )
    command.add_argument(
        "--timeout", type=_seconds, default=10.0, help="idle timeout in s, or 'none' (default 10)"
    )
    command.add_argument(
        "--open-timeout", type=float, default=10.0, help="wait this long for the file (default 10)"
    )
    existing = command.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue an existing output")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing output")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.add_argument("--json", action="store_true", help="print the summary as JSON")


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata costs a
    tenth of the CLI's start)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, argparse.SUPPRESS, nargs=0, help="show the version and exit"
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from h5live import __version__

        print(f"h5live {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h5live",
        description="Follow HDF5 files while they are written (SWMR).",
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    follow = sub.add_parser("follow", help="show the live progress of a source")
    follow.add_argument("source", help="HDF5 file being written")
    follow.add_argument(
        "--keys",
        type=_paths,
        help="key dataset (or key group) paths, comma-separated (default: found in the file)",
    )
    follow.add_argument("--finished", help="finished dataset path (default: found in the file)")
    follow.add_argument(
        "--timeout", type=_seconds, default=10.0, help="idle timeout in s, or 'none' (default 10)"
    )
    follow.add_argument(
        "--open-timeout", type=float, default=10.0, help="wait this long for the file (default 10)"
    )
    follow.add_argument("--gaps", choices=("block", "skip"), default="block", help="gap policy")
    follow.add_argument("--gap-timeout", type=float, default=5.0, help="skip gaps open this long")
    follow.add_argument("--json", action="store_true", help="print the summary as JSON")
    follow.set_defaults(run=_cmd_follow)

    copy = sub.add_parser("copy", help="copy a live source into an HDF5 file, as it is written")
    copy.add_argument("source", help="HDF5 file being written")
    copy.add_argument("destination", help="the copy (itself followable while it is written)")
    copy.add_argument(
        "--data", type=_paths, help="data dataset paths, comma-separated (default: all that grow)"
    )
    _add_conversion_options(copy, "source")
    copy.set_defaults(run=_cmd_copy)

    nwb = sub.add_parser("nwb", help="convert a live source into an NWB file, as it is written")
    nwb.add_argument("source", help="HDF5 file being written")
    nwb.add_argument("destination", help="the NWB file (readable with pynwb while written)")
    nwb.add_argument("--data", help="the frames' dataset (default: the largest that grows)")
    nwb.add_argument(
        "--series",
        choices=("auto", "ImageSeries", "TwoPhotonSeries", "TimeSeries", "ElectricalSeries"),
        default="auto",
        help="NWB series type (default: ImageSeries for images, else TimeSeries)",
    )
    timing = nwb.add_mutually_exclusive_group()
    timing.add_argument("--rate", type=float, help="frames per second")
    timing.add_argument("--timestamps", help="timestamp dataset (default: found in the source)")
    nwb.add_argument("--metadata", help="YAML or JSON file of session metadata")
    _add_conversion_options(nwb, "none")
    nwb.set_defaults(run=_cmd_nwb)

    simulate = sub.add_parser("simulate", help="write a simulated detector acquisition")
    simulate.add_argument("destination", help="HDF5 file to write (overwritten)")
    simulate.add_argument(
        "--scan", type=_positive_int, nargs="+", default=[1000], help="scan shape"
    )
    simulate.add_argument("--frame", type=int, nargs="*", default=[64, 64], help="frame shape")
    simulate.add_argument("--dtype", default="uint16")
    simulate.add_argument("--rate", type=float, default=None, help="frames/s (default: max)")
    simulate.add_argument("--keys", type=_positive_int, default=1, help="number of key datasets")
    simulate.add_argument("--presized", action="store_true", help="full scan shape from the start")
    simulate.add_argument("--compression", default=None, help="gzip, lzf, zstd, lz4, blosc, ...")
    simulate.add_argument(
        "--files",
        type=_positive_int,
        default=1,
        help="detector files, each written by its own process, with a master file (default 1)",
    )
    simulate.add_argument(
        "--layout",
        choices=["vds", "links"],
        default=None,
        help="master of a multi-file acquisition: virtual datasets interleaving the files "
        "(vds, the default) or external links to one detector per file (links)",
    )
    simulate.add_argument(
        "--block", type=_positive_int, default=10, help="frames per block per file (vds)"
    )
    simulate.add_argument("--json", action="store_true", help="print the summary as JSON")
    simulate.set_defaults(run=_cmd_simulate)

    demo = sub.add_parser(
        "demo", help="convert a simulated acquisition live to NWB, with a summary and a plot"
    )
    demo.add_argument("--frames", type=_positive_int, default=4000, help="default 4000")
    demo.add_argument("--rate", type=float, default=1000.0, help="frames/s (default 1000)")
    demo.add_argument("--timeout", type=_seconds, default=10.0, help="idle timeout in s")
    demo.add_argument("--dir", help="where to write the acquisition (default: a temp folder)")
    demo.add_argument(
        "--files",
        type=_positive_int,
        default=1,
        help="detector files, each written by its own process, stitched by a master file of "
        "virtual datasets that is converted (default 1: one file)",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(run=_cmd_demo)

    bench = sub.add_parser(
        "bench",
        help="measure chunk and buffer shapes for your data: throughput, memory, latency, "
        "keep-up, against the alternatives",
    )
    bench.add_argument("--source", help="measure this HDF5 file's data instead of simulated")
    bench.add_argument("--data", help="the frames' dataset in --source (default: the largest)")
    bench.add_argument(
        "--frames", type=_positive_int, help="frames (default: about 256 MB; --quick 64)"
    )
    bench.add_argument(
        "--frame",
        type=_positive_int,
        nargs="+",
        help="frame shape (default 512 512; --quick 64 64)",
    )
    bench.add_argument("--dtype", default=None, help="frame dtype (default uint16)")
    bench.add_argument("--scan", type=_positive_int, nargs="+", help="grid scan shape, e.g. 20 30")
    bench.add_argument(
        "--compression",
        type=_bench_compression,
        default="auto",
        help="the compressed case: auto (bitshuffle-LZ4 with hdf5plugin, else gzip), none (skip "
        "it), gzip, lzf, zstd, lz4, blosc, blosc2, bitshuffle",
    )
    bench.add_argument(
        "--chunks", type=_positive_int, nargs="+", help="frames per chunk (default 1 4 16 64)"
    )
    bench.add_argument(
        "--buffers", type=_positive_int, nargs="+", help="chunks per buffer (default 1 4 16 64 256)"
    )
    bench.add_argument("--memory-cap", type=float, help="largest buffer in MB (default 2048)")
    bench.add_argument("--rounds", type=_positive_int, help="rounds of the alternatives (3)")
    bench.add_argument(
        "--max-latency", type=_seconds, default=1.0, help="h5live copy's, live (default 1)"
    )
    bench.add_argument("--live-seconds", type=float, help="length of a live run (default 3)")
    bench.add_argument("--start-rate", type=float, help="first keep-up rate (default: max / 8)")
    bench.add_argument("--rate", type=float, help="rate of the latency runs (default: max / 2)")
    bench.add_argument("--dir", help="temporary files here: the disk you will write to")
    bench.add_argument("--out", default="h5live-bench", help="JSON and PNG folder (h5live-bench)")
    bench.add_argument("--quick", action="store_true", help="tiny sizes: every part in seconds")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    bench.set_defaults(run=_cmd_bench)
    return parser


def _stop(signum: int, frame: object) -> None:
    request_stop(signum)  # seen between chunks even if this raise lands where it is swallowed
    raise Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``h5live`` command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        # `kill -USR1 PID` prints where a running h5live is (every thread's stack) on stderr
        with contextlib.suppress(OSError, ValueError):  # a stderr with no file (called in-process)
            faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for stopper in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[stopper] = signal.signal(stopper, _stop)
    try:
        return _run(args)
    finally:
        for stopper, handler in previous.items():
            signal.signal(stopper, handler)


class _LineHandler(logging.Handler):
    """Writes each log line (and each warning) on a line of its own on stderr, also while a
    progress bar is shown there: tqdm clears the bar, prints the line, and draws it again."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)


@contextlib.contextmanager
def _logging_to_stderr(debug: bool) -> Iterator[None]:
    """Log lines and Python warnings on stderr, each on its own line, for one run: warnings
    and errors from any library, and with ``debug`` h5live's own debug lines (not those of the
    libraries it imports, such as numcodecs registering its codecs)."""
    root, ours = logging.getLogger(), logging.getLogger("h5live")
    handler = _LineHandler()
    handler.setFormatter(logging.Formatter("h5live: %(levelname)s: %(message)s"))
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.DEBUG if debug else logging.NOTSET)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
        root.removeHandler(handler)


def _with_fix(exc: BaseException) -> str:
    """An error's text, with a way forward when the error (HDF5's own, say) gives none."""
    text = str(exc)
    if "Fix:" in text:
        return text
    kind = "" if isinstance(exc, H5LiveError) else f"{type(exc).__name__}: "
    return (
        f"{kind}{text}. Fix: rerun with --debug to see where it came from; if the cause is not "
        "clear, report it with that output."
    )


def _run(args: argparse.Namespace) -> int:
    try:
        with _logging_to_stderr(args.debug):
            code: int = args.run(args)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)
        print(f"h5live: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except (H5LiveError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"h5live: error: {_with_fix(exc)}", file=sys.stderr)
        return 1
    return code
