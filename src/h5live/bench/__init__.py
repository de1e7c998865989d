"""The engine of ``h5live bench``: which chunk and buffer shapes to choose for this data here.

Used by the ``h5live bench`` command and by ``benchmarks/bench_shapes.py``; the command's
options map to :class:`BenchOptions`. Not a stable API: the JSON it writes is the interface.
"""

from __future__ import annotations

from h5live.bench._report import format_table
from h5live.bench._run import (
    BenchOptions,
    BenchUsageError,
    bench_options,
    compression_name,
    run_bench,
    write_outputs,
)

__all__ = [
    "BenchOptions",
    "BenchUsageError",
    "bench_options",
    "compression_name",
    "format_table",
    "run_bench",
    "write_outputs",
]
