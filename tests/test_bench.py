"""h5live bench: the command end to end (--quick), its usage errors, and its decision rules on
synthetic measurements. No test asserts a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5live.bench._live import keep_up_verdict
from h5live.bench._report import keep_up_rate, recommend, recommendation_line, sweep_pick

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "h5live", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    done = run_bench("--quick", "--out", "tmp", cwd=folder)
    return done, folder / "tmp"


@pytest.mark.live
def test_quick_run_says_it_is_a_smoke_test_and_recommends_nothing(quick_run):
    done, _ = quick_run
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("SMOKE TEST (--quick)")
    assert lines[-1].startswith("Smoke test (--quick)")
    assert "--frame H W --dtype D" in lines[-1]
    assert "--source FILE" in lines[-1]
    assert "Recommendation" not in done.stdout


@pytest.mark.live
def test_quick_run_json_has_every_section_with_positive_numbers(quick_run):
    _, out = quick_run
    results = json.loads((out / "bench.json").read_text())
    for label, sweep in results["sweep"].items():
        assert sweep["points"], label
        assert all(p["mb_per_s"] > 0 and p["peak_mb"] >= 0 for p in sweep["points"])
    assert set(results["sweep"]) == {"none", results["live"]["compression"]}
    for methods in results["alternatives"]["runs"].values():
        measured = [m for m in methods.values() if "unavailable" not in m]
        assert len(measured) == len(methods)  # swmr_tools and pynwb are test dependencies
        assert all(m["mb_per_s"] > 0 and m["vs_h5py"] > 0 for m in measured)
    live = results["live"]
    assert live["writer_max_rate_hz"] > 0
    assert len(live["latency"]) >= 2
    assert all(r["latency"]["p99_ms"] > 0 for r in live["latency"])
    [choice] = live["keep_up"]
    assert len(choice["runs"]) == 2  # two rates: the start rate and the unthrottled writer
    assert (
        choice["runs"][-1]["target_rate_hz"] is None or not choice["runs"][-1]["keep_up"]["kept_up"]
    )
    assert results["recommendation"]["line"].startswith("Smoke test (--quick)")
    assert results["recommendation"]["choice"] is None


@pytest.mark.live
def test_quick_run_writes_valid_pngs(quick_run):
    _, out = quick_run
    results = json.loads((out / "bench.json").read_text())
    names = results["plots"]
    assert {"latency.png", "keepup.png"} <= set(names)
    assert sum(name.startswith("throughput_") for name in names) == 2
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--frame", "1", "2", "3", "4"], 2, "--frame takes 1 to 3 sizes"),
        (["--compression", "snappy"], 2, "unknown compression 'snappy'"),
        (["--scan", "4", "5", "--frames", "7"], 2, "holds 20 frames"),
        (["--source", "missing.h5"], 1, "'missing.h5' does not exist"),
    ],
    ids=["frame-rank", "unknown-compression", "scan-vs-frames", "missing-file"],
)
def test_bad_input_gives_one_clear_line(args, code, words, tmp_path):
    done = run_bench(*args, cwd=tmp_path)
    assert done.returncode == code
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert words in errors[0]
    assert "Fix" in errors[0] or code == 2


def test_a_dataset_not_in_the_source_is_named_with_the_fix(tmp_path):
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["entry/frames"] = np.zeros((4, 8, 8), dtype="uint16")
    done = run_bench("--source", "scan.h5", "--data", "/entry/nope", cwd=tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("h5live: error:")
    assert "/entry/nope" in line
    assert "Fix" in line


# ---------------------------------------------------------------- the recommendation rule


def point(chunk: int, buffer: int, mb_per_s: float, frame_bytes: int = 1 << 20) -> dict:
    return {
        "chunk_frames": chunk,
        "buffer_chunks": buffer,
        "buffer_bytes": chunk * buffer * frame_bytes,
        "mb_per_s": mb_per_s,
    }


def test_sweep_pick_is_the_smallest_buffer_within_tolerance_of_the_best():
    points = [point(1, 1, 500), point(4, 4, 950), point(16, 4, 1000), point(16, 64, 1010)]
    assert sweep_pick(points, tolerance=0.10) == point(4, 4, 950)


def test_sweep_pick_breaks_buffer_ties_by_throughput():
    points = [point(1, 16, 980), point(4, 4, 1000), point(16, 1, 990)]  # all 16 MB buffers
    assert sweep_pick(points, tolerance=0.10) == point(4, 4, 1000)


def test_sweep_pick_takes_the_fastest_when_nothing_is_close():
    points = [point(1, 1, 100), point(64, 256, 1000)]
    assert sweep_pick(points, tolerance=0.10) == point(64, 256, 1000)


def test_sweep_pick_refuses_no_points():
    with pytest.raises(ValueError, match="no sweep measurements"):
        sweep_pick([])


def run(target: float | None, writer: float, kept: bool) -> dict:
    return {"target_rate_hz": target, "writer_rate_hz": writer, "keep_up": {"kept_up": kept}}


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([run(100, 100, True), run(200, 199, True), run(None, 950, True)], (950.0, True)),
        ([run(100, 100, True), run(200, 199, False)], (100.0, False)),
        ([run(100, 99, False)], (None, False)),
    ],
    ids=["up-to-the-writer-max", "fails-at-the-second-rate", "fails-at-once"],
)
def test_keep_up_rate_is_the_last_rate_before_the_first_failure(runs, expected):
    assert keep_up_rate(runs) == expected


def test_recommend_takes_the_choice_that_keeps_up_fastest():
    choices = [
        {"name": "pick", "keep_up_rate_hz": 500.0},
        {"name": "small", "keep_up_rate_hz": None},
        {"name": "big", "keep_up_rate_hz": 2000.0},
    ]
    assert recommend(choices)["name"] == "big"


def test_recommend_keeps_the_sweep_pick_on_a_tie():
    choices = [{"name": "pick", "keep_up_rate_hz": 900.0}, {"name": "big", "keep_up_rate_hz": 900}]
    assert recommend(choices)["name"] == "pick"


def test_recommend_keeps_the_sweep_pick_when_it_keeps_up_with_the_writer_at_full_speed():
    """The unthrottled writer's rate varies from run to run: 759 vs 700 frames/s is noise,
    not a reason to trade a 15x faster copy for it."""
    choices = [
        {"name": "pick", "keep_up_rate_hz": 700.0, "at_writer_max": True},
        {"name": "tiny", "keep_up_rate_hz": 759.0, "at_writer_max": True},
    ]
    assert recommend(choices)["name"] == "pick"
    choices[0]["at_writer_max"] = False  # the pick fell behind the writer at full speed
    assert recommend(choices)["name"] == "tiny"


# ---------------------------------------------------------------- the keep-up decision


def steady(frames: int = 400, rate: float = 100.0, delay_s: float = 0.02) -> tuple:
    flushed = np.arange(frames) / rate
    return flushed, flushed + delay_s


def test_a_copy_with_a_constant_delay_keeps_up():
    flushed, done = steady()
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert verdict.kept_up, verdict.reason
    assert verdict.end_delay_s == pytest.approx(0.02)
    assert verdict.growth_s == pytest.approx(0.0, abs=1e-9)


def test_a_copy_releasing_whole_buffers_keeps_up():
    flushed = np.arange(400) / 100.0  # 4 s; buffers of 50 frames released 10 ms after the last
    done = (np.arange(400) // 50 * 50 + 49) / 100.0 + 0.01
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert verdict.kept_up, verdict.reason


def test_a_copy_at_two_thirds_of_the_writer_rate_does_not_keep_up():
    flushed = np.arange(400) / 100.0
    done = np.arange(400) / 66.0 + 0.01  # its backlog grows by half a second per second
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert not verdict.kept_up
    assert "ended" in verdict.reason
    assert "lag grew" in verdict.reason


def test_a_short_run_whose_lag_grows_fails_on_growth_alone():
    flushed = np.arange(100) / 100.0  # 1 s
    done = flushed * 1.3 + 0.01  # 30% slower: ends 0.3 s late, inside the end limit
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert verdict.end_delay_s < verdict.end_limit_s
    assert not verdict.kept_up
    assert "lag grew" in verdict.reason


def test_a_late_end_fails_even_without_growth():
    flushed, done = steady()
    done[-1] = flushed[-1] + 2.5  # the last frame only after 2.5 s (limit 2 s here)
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert not verdict.kept_up
    assert "ended 2.50 s" in verdict.reason


def test_a_frame_never_copied_fails():
    flushed, done = steady()
    done[10] = np.nan
    verdict = keep_up_verdict(flushed, done, max_latency_s=1.0)
    assert not verdict.kept_up
    assert not verdict.complete
    assert verdict.reason == "1 frames not copied"


def test_the_end_limit_is_twice_the_max_latency_but_at_least_a_second():
    flushed, done = steady()
    assert keep_up_verdict(flushed, done, max_latency_s=3.0).end_limit_s == 6.0
    assert keep_up_verdict(flushed, done, max_latency_s=0.1).end_limit_s == 1.0
    assert keep_up_verdict(flushed, done, max_latency_s=None).end_limit_s == 1.0


def test_the_recommendation_line_states_the_choice_and_its_figures():
    choice = {
        **point(4, 16, 1800.0),
        "p99_ms": 151.0,
        "p99_rate_hz": 443.0,
        "keep_up_rate_hz": 950.0,
        "at_writer_max": True,
    }
    assert recommendation_line(choice, "bitshuffle", 1000.0) == (
        "Recommendation (bitshuffle): chunk 4 frames, buffer 16 chunks (67 MB): 1800 MB/s, "
        "p99 latency 151 ms at 443 fps, keeps up with the writer at full speed (950 fps; "
        "1000 fps alone)"
    )


@pytest.mark.live
def test_bench_shapes_turns_a_run_into_its_results_md_section(quick_run):
    # benchmarks/bench_shapes.py is `h5live bench` plus this section of RESULTS.md
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "bench_shapes.py"
    spec = importlib.util.spec_from_file_location("bench_shapes", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _, out = quick_run
    results = json.loads((out / "bench.json").read_text())
    results["machine"] = module.machine()
    text = module.markdown(results, "python benchmarks/bench_shapes.py", results["plots"])
    assert text.startswith("## Choosing chunk and buffer shapes")
    assert "Command: `python benchmarks/bench_shapes.py`" in text
    assert results["recommendation"]["line"] in text
    assert "![latency.png](results/latency.png)" in text
