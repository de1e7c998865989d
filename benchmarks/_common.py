"""What the benchmark scripts share: timing, the machine description, RESULTS.md sections."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"


def seconds_per_call(call: Callable[[], object], budget_s: float) -> float:
    """Median time of one call over batches filling about ``budget_s``."""
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    per_batch = max(1, int(budget_s / 5 / once))
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter() - start) / per_batch)
    return statistics.median(samples)


def machine() -> dict[str, Any]:
    """Versions and platform, for the record."""
    import swmr_tools

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "swmr_tools": getattr(swmr_tools, "__version__", "?"),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One Markdown line describing the machine of a run."""
    return (
        f"Python {m['python']}, h5py {m['h5py']} (HDF5 {m['hdf5']}), numpy {m['numpy']}, "
        f"swmr_tools {m['swmr_tools']}; {m['cpus']} CPUs, {m['platform']}."
    )


def update_results_md(name: str, section: str) -> None:
    """Replace the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{section.strip()}\n{end}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS_MD.write_text(text)


def latency_stats(parts: list[np.ndarray]) -> dict[str, Any]:
    """Frame count, p50, p99 and max of latencies in milliseconds (NaN: frame not seen)."""
    values = np.concatenate(parts)
    values = values[np.isfinite(values)]
    return {
        "frames": int(values.size),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(values.max()),
    }


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def parse_args(doc: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The options every benchmark has: ``--quick`` and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, no files written")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="JSON and PNG folder")
    return parser.parse_args(argv)


def save_results(
    name: str,
    results: dict[str, Any],
    out: Path,
    argv: Sequence[str] | None,
    markdown: Callable[[dict[str, Any], str], str],
    plot: Callable[[dict[str, Any], Path], None],
) -> None:
    """Write ``out/<name>.json``, ``out/<name>.png`` and this run's section of RESULTS.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    script = f"bench_{name}"
    command = f"python benchmarks/{script}.py" + ("" if argv is None else " " + " ".join(argv))
    update_results_md(script, markdown(results, command.strip()))
    plot(results, out / f"{name}.png")
    print(f"wrote {out / f'{name}.json'}, {out / f'{name}.png'} and {RESULTS_MD}")


def rotated(names: Sequence[str], round_: int) -> list[str]:
    """The order in which round ``round_`` runs ``names``: rotated each round, so that no
    variant always runs first (or right after the same other one) on a noisy machine."""
    k = round_ % len(names)
    return [*names[k:], *names[:k]]


def simulated_writer_rate(path: Path, frames: int, frame: tuple[int, int]) -> tuple[float, float]:
    """Frames per second of h5live's simulated writer, unthrottled, alone, and its CPU seconds
    (user + system); the file is removed."""
    import resource

    from h5live.testing import WriterProcess

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = children_cpu()
    with WriterProcess(path, scan_shape=(frames,), frame_shape=frame, timestamps=True) as w:
        w.start()
        w.wait()
        rate = float(w.summary["rate_hz"]) if w.summary else float("nan")
    cpu = children_cpu() - before
    path.unlink()
    return rate, cpu


def live_conversion(
    source: Path,
    output: Path,
    command: str,
    watch: Callable[[Path], Any],
    *,
    startup_s: float,
    end_s: float,
    layout: Any = None,
    options: Sequence[str] = (),
    python: Sequence[str] = (),
    **writer: Any,
) -> dict[str, Any]:
    """``h5live COMMAND SOURCE OUTPUT [OPTIONS]`` (defaults) converting a simulated writer live,
    each in its own process: the writer waits until the output exists, then ``watch(output)``
    runs while both work. ``python``: what runs ``-m h5live`` instead of this interpreter (e.g.
    ``[sys.executable, "-m", "cProfile", "-o", PATH]``). Returns the converter's JSON summary
    (``summary``), what ``watch`` returned (``watched``), the writer's flush times (``flushed``)
    and rate (``writer_rate_hz``), and the CPU seconds (user + system, every thread) of the
    converter and of the writer (``converter_cpu_s``, ``writer_cpu_s``); the files are
    removed."""
    import resource
    import subprocess
    import sys

    from h5live._demo import _wait_for_output
    from h5live.testing import WriterProcess

    def children_cpu() -> float:  # of the child processes ended and waited for so far
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    with WriterProcess(source, timestamps=True, hold_at=0, **writer) as process:
        process.start()
        argv = [*(python or [sys.executable]), "-m", "h5live", command, str(source), str(output)]
        converter = subprocess.Popen(
            [*argv, *options, "--json", "--no-progress", "--overwrite"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_for_output(output, converter, startup_s, *([layout] if layout else []))
            process.go()
            watched = watch(output)
            before = children_cpu()
            out, _ = converter.communicate(timeout=end_s)
            converter_cpu = children_cpu() - before
        finally:
            if converter.poll() is None:
                converter.kill()
                converter.communicate()
        before = children_cpu()
        process.wait()
        writer_cpu = children_cpu() - before
        summary_rate = process.summary["rate_hz"] if process.summary else float("nan")
    if converter.returncode:
        raise RuntimeError(f"h5live {command} failed with exit code {converter.returncode}")
    with h5py.File(source, "r") as f:
        flushed = f["/entry/flush_time"][...]
    source.unlink()
    output.unlink()
    return {
        "summary": json.loads(out.strip().splitlines()[-1]),
        "watched": watched,
        "flushed": flushed,
        "converter_cpu_s": converter_cpu,
        "writer_cpu_s": writer_cpu,
        "writer_rate_hz": float(summary_rate),
    }


def live_nwb_run(
    folder: Path,
    frames: int,
    frame: tuple[int, int],
    *,
    options: Sequence[str] = (),
    python: Sequence[str] = (),
) -> dict[str, Any]:
    """h5live's simulated writer, unthrottled, converted live by ``h5live nwb [OPTIONS]``
    (default: timestamps from the writer's flush times); this process follows the NWB file's
    own keys, gently (every 5 ms, at most 5% of a core: it must not take the CPU it measures),
    to stamp when each frame became complete there. Rates, lag at the end, latencies (writer
    flush -> complete in the NWB file), CPU seconds and the converter's summary."""
    from h5live import FollowPolicy
    from h5live._demo import _follow

    gentle = FollowPolicy(poll_interval_s=0.005, max_busy_fraction=0.05)
    run = live_conversion(
        folder / "live.h5",
        folder / "live.nwb",
        "nwb",
        lambda path: _follow(path, frames, timeout=120, policy=gentle)[0],
        startup_s=60,
        end_s=600,
        options=options,
        python=python,
        scan_shape=(frames,),
        frame_shape=frame,
    )
    complete_at, flushed = run["watched"], run["flushed"]
    latency_ms = (complete_at - flushed) * 1e3
    latency = latency_stats([latency_ms])
    span = float(np.nanmax(complete_at) - flushed.min())
    summary = run["summary"]
    return {
        "writer_rate_hz": run["writer_rate_hz"],
        "conversion_rate_hz": frames / span if span > 0 else float("nan"),
        "end_lag_s": float(np.nanmax(complete_at) - flushed.max()),
        "latency_p50_ms": latency["p50_ms"],
        "latency_p99_ms": latency["p99_ms"],
        "latency_ms": latency_ms.tolist(),
        "converter_cpu_s": run["converter_cpu_s"],
        "converter_cores": run["converter_cpu_s"] / span if span > 0 else float("nan"),
        "writer_cpu_s": run["writer_cpu_s"],
        "state": summary["state"],
        "frames_complete": summary["frames_complete"],
        "chunk_copy": summary.get("chunk_copy", {}),
    }
