"""Benchmarks double as smoke tests: their --quick mode runs here (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_script

BENCHMARKS = sorted((Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"))


@pytest.mark.live
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_quick_mode_runs(script, tmp_path):
    result = run_script(script, "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
