"""The h5live command: demo, follow, simulate; exit codes and error lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from h5live._cli import main
from h5live._write.stop import clear_stop, request_stop
from h5live.errors import SourceNotReadyError

pytestmark = pytest.mark.live


def test_demo_converts_a_live_acquisition_to_nwb_and_verifies_it(tmp_path, capsys):
    code = main(["demo", "--frames", "400", "--rate", "2000", "--dir", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (summary["frames_complete"], summary["state"]) == (400, "complete")
    assert summary["nwb_equals_source"] is True
    assert summary["latency_p50_ms"] > 0
    assert summary["latency_p99_ms"] >= summary["latency_p50_ms"]
    assert (tmp_path / "acquisition.nwb").exists()
    assert summary["plot"] == str(tmp_path / "acquisition_latency.png")
    assert (tmp_path / "acquisition_latency.png").stat().st_size > 0


def test_simulate_then_follow(tmp_path, capsys):
    path = tmp_path / "sim.h5"
    assert main(["simulate", str(path), "--scan", "5", "6", "--frame", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 30
    assert main(["follow", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 30
    assert summary["stop_reason"] in ("finished", "complete")


def test_follow_stops_on_a_stop_asked_while_the_writer_pauses(writer_process, capsys):
    # As the signal handler does when its raise lands inside a weakref callback and is lost:
    # the request alone must end the wait for the paused writer (exit 130), not the idle
    # timeout (exit 0, a minute later).
    process = writer_process(scan_shape=(40,), frame_shape=(2,), hold_at=(0, 20))
    process.go()
    request_stop(signal.SIGINT)
    try:
        code = main(["follow", str(process.path), "--timeout", "60"])
    finally:
        clear_stop()
    assert code == 130
    assert "interrupted (SIGINT)" in capsys.readouterr().err


def test_missing_source_is_one_clear_line_and_exit_1(tmp_path, capsys):
    code = main(["follow", str(tmp_path / "absent.h5"), "--open-timeout", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert err[0].startswith("h5live: error: no file at")
    assert "absent.h5" in err[0]


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(SourceNotReadyError):
        main(["--debug", "follow", str(tmp_path / "absent.h5"), "--open-timeout", "0"])


def test_debug_shows_h5live_debug_lines_and_not_those_of_the_libraries_it_imports(
    simulated_writer, tmp_path
):
    # copy imports the write path (hdmf, zarr, numcodecs) after --debug set the log levels:
    # numcodecs' "Registering codec" debug lines would come out labelled h5live
    writer = simulated_writer(scan_shape=(6,), frame_shape=(2,))
    writer.append(6)
    writer.flush_keys()
    writer.finish()
    writer.close()
    command = [sys.executable, "-m", "h5live", "--debug", "copy", str(writer.path)]
    command += [str(tmp_path / "copy.h5"), "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "h5live: DEBUG: frontier 5" in result.stderr.splitlines()
    assert "codec" not in result.stderr


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["follow"])
    assert info.value.code == 2
    assert "source" in capsys.readouterr().err


def test_installed_entry_point_runs():
    script = Path(sys.executable).with_name("h5live")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.startswith("h5live ")


def test_a_warning_starts_a_line_of_its_own_beside_the_progress_bar(tmp_path):
    # No subject in the metadata: to_nwb warns while the bar is on stderr.
    source = tmp_path / "scan.h5"
    assert main(["simulate", str(source), "--scan", "20", "--frame", "4", "4"]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "h5live", "nwb", str(source), str(tmp_path / "scan.nwb")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.split("\n") if "h5live: WARNING" in line]
    assert warned
    # what a terminal shows of each line: the text after its last carriage return
    assert [line.split("\r")[-1][:16] for line in warned] == ["h5live: WARNING:"] * len(warned)
