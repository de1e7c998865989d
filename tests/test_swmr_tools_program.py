"""Acceptance: a swmr_tools 0.9 program runs unchanged with its imports pointed at h5live."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_script

pytestmark = pytest.mark.live  # real writer processes

PROGRAM = Path(__file__).parent / "programs" / "swmr_tools_program.py"


def point_at_h5live(source: str) -> str:
    """What a user does: the submodule imports become h5live's, then the package name."""
    return source.replace("from swmr_tools.datasource import", "from h5live import").replace(
        "swmr_tools", "h5live"
    )


def test_swmr_tools_program_gives_the_same_output_on_h5live(tmp_path):
    ported = tmp_path / "h5live_program.py"
    ported.write_text(point_at_h5live(PROGRAM.read_text()))
    assert "swmr_tools" not in ported.read_text().split('"""', 2)[2]
    outputs = {}
    for name, script in (("swmr_tools", PROGRAM), ("h5live", ported)):
        run = run_script(script, str(tmp_path / f"{name}.h5"), cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        outputs[name] = json.loads(run.stdout)
    assert outputs["h5live"] == outputs["swmr_tools"]
    assert outputs["h5live"]["keys"] == list(range(12))
    assert len(outputs["h5live"]["chunks"]) == 4
