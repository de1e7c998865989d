"""What the benchmark scripts share: timing, the machine description, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
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
