"""Every tutorial runs, as a user would run it, in a fresh interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_script

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("plot_*.py"))


def test_there_are_tutorials():
    assert TUTORIALS


@pytest.mark.live
@pytest.mark.parametrize("script", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path):
    result = run_script(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
