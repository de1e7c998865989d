"""Benchmarks double as smoke tests: their --quick mode runs here (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_script

#: bench_shapes.py --quick is `h5live bench --quick` (the same engine, options and outputs),
#: which tests/test_bench.py runs; its own part, the RESULTS.md section, is tested there too.
SAME_AS_H5LIVE_BENCH = {"bench_shapes"}
BENCHMARKS = sorted(
    path
    for path in (Path(__file__).parents[1] / "benchmarks").glob("bench_*.py")
    if path.stem not in SAME_AS_H5LIVE_BENCH
)


@pytest.mark.live
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_quick_mode_runs(script, tmp_path):
    result = run_script(script, "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
