"""``h5live copy`` on bad input, through the installed entry point in a subprocess.

Each bad input exits 1 with one line on stderr (``h5live: error: ...``) that names the file (and
the dataset) and says how to fix it; a destination is left as it was (none is created when
nothing was copied, an existing one is untouched). Usage errors exit 2, ``--debug`` shows the
traceback, and a writer that crashes mid-copy leaves an output truthfully marked incomplete. A
full disk is tested in ``test_copy.py``; Ctrl-C (exit 130) too.

The bad-input runs are independent and each costs a second of interpreter start-up, so they are
started together once per module (:func:`runs`) and each test checks one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from h5live.testing import CRASH_EXIT_CODE, SimulatedWriter, frame_values
from helpers import IDLE_S, output_status, wait_for_frames

pytestmark = pytest.mark.live

H5LIVE = str(Path(sys.executable).with_name("h5live"))  # the installed entry point
DATA = "/entry/data/data"


@dataclass(frozen=True)
class Command:
    """One ``h5live copy`` run, in a folder of its own.

    ``source`` is a file of the shared sources folder (see :func:`make_sources`),
    ``destination`` a path in the run's folder, holding ``existing`` before the run if given;
    ``says``: what the error line must contain besides ``h5live: error:`` and ``Fix:``.
    """

    source: str
    options: tuple[str, ...] = ()
    destination: str = "copy.h5"
    existing: bytes | None = None
    global_options: tuple[str, ...] = ()
    says: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    destination: Path


NOW = ("--open-timeout", "0")  # a missing or unreadable file is not waited for
PRECIOUS = b"precious, not HDF5"

COMMANDS = {
    "good source": Command("scan.h5", ("--json",)),
    "float keys": Command("float_keys.h5", ("--json",)),
    "missing source": Command("absent.h5", NOW, says=("absent.h5",)),
    "source not HDF5": Command("notes.txt", NOW, says=("notes.txt", "not an HDF5 file")),
    "missing data dataset": Command(
        "scan.h5", ("--data", "/no/such"), says=("scan.h5", "/no/such")
    ),
    "data path is a group": Command("scan.h5", ("--data", "/entry"), says=("scan.h5", "/entry")),
    "text keys found": Command(
        "text_keys.h5", says=("text_keys.h5", "/entry/keys/key_0", "not a number")
    ),
    "keys given at a text dataset": Command(
        "text_keys.h5", ("--keys", "/entry/label"), says=("text_keys.h5", "/entry/label", "number")
    ),
    "keys given at a scalar": Command(
        "scan.h5", ("--keys", "/entry/finished"), says=("scan.h5", "/entry/finished", "scalar")
    ),
    "destination exists": Command(
        "scan.h5", existing=PRECIOUS, says=("copy.h5", "exists", "--resume", "--overwrite")
    ),
    "resume of a file h5live did not write": Command(
        "scan.h5", ("--resume",), existing=PRECIOUS, says=("copy.h5", "not an output of h5live")
    ),
    "overwrite with a missing data dataset": Command(
        "scan.h5", ("--overwrite", "--data", "/no/such"), existing=PRECIOUS, says=("/no/such",)
    ),
    "chunk shape of a frame for a grid scan": Command(
        "grid.h5",
        ("--chunk-shape", "100", "2"),
        says=(
            "grid.h5",
            DATA,
            "chunk_shape=(100, 2)",
            "one per scan axis",
            "--chunk-shape 100 4 2",
        ),
    ),
    "overwrite with a buffer shape too wide": Command(
        "grid.h5",
        ("--overwrite", "--buffer-shape", "1", "9", "2"),
        existing=PRECIOUS,
        says=("grid.h5", "buffer_shape=(1, 9, 2)", "--buffer-shape 1 4 2"),
    ),
    "destination folder missing": Command(
        "scan.h5", destination="no/such/folder/copy.h5", says=("no/such/folder/copy.h5",)
    ),
    "resume and overwrite": Command("scan.h5", ("--resume", "--overwrite")),
    "debug": Command("absent.h5", NOW, global_options=("--debug",)),
}

GOOD_SOURCES = ("good source", "float keys")
BAD_INPUTS = [
    name for name in COMMANDS if name not in (*GOOD_SOURCES, "resume and overwrite", "debug")
]


def expected(n: int, frame: tuple[int, ...]) -> np.ndarray:
    return np.stack([frame_values(i, frame, "uint16") for i in range(n)])


def status(path: Path) -> dict[str, object]:
    """How complete an output says it is."""
    return output_status(path)


def make_sources(folder: Path) -> Path:
    """Finished acquisitions of the simulated writer (a stack, a grid scan), a text file, one
    with float keys (keys of any numeric type are keys) and one with text keys."""
    folder.mkdir()
    with SimulatedWriter(folder / "scan.h5", scan_shape=(10,), frame_shape=(2,)) as w:
        w.run()
    with SimulatedWriter(folder / "grid.h5", scan_shape=(3, 4), frame_shape=(2,)) as w:
        w.run()
    (folder / "notes.txt").write_text("frame 1: 42\n")
    for name, keys in (("float_keys.h5", np.ones(10)), ("text_keys.h5", np.array(["set"] * 10))):
        with h5py.File(folder / name, "w", libver="latest") as f:
            f.create_dataset(DATA, data=expected(10, (2,)), chunks=(1, 2), maxshape=(None, 2))
            keys = keys.astype(h5py.string_dtype()) if keys.dtype.kind == "U" else keys
            f.create_dataset("/entry/keys/key_0", data=keys, chunks=(10,), maxshape=(None,))
            f.create_dataset("/entry/label", data=np.array(["frame"] * 10, dtype=object))
            f.create_dataset("/entry/finished", data=np.int32(1))
    return folder


def copy_command(command: Command, sources: Path, destination: Path) -> list[str]:
    return [
        H5LIVE,
        *command.global_options,
        "copy",
        str(sources / command.source),
        str(destination),
        "--no-progress",
        *command.options,
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every run of :data:`COMMANDS`, started together, each with its pipes closed."""
    base = tmp_path_factory.mktemp("cli_copy")
    sources = make_sources(base / "sources")
    started: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    done: dict[str, Run] = {}
    try:
        for k, (name, command) in enumerate(COMMANDS.items()):
            folder = base / f"run{k}"
            folder.mkdir()
            destination = folder / command.destination
            if command.existing is not None:
                destination.write_bytes(command.existing)
            process = subprocess.Popen(
                copy_command(command, sources, destination),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=folder,
            )
            started[name] = (process, destination)
        for name, (process, destination) in started.items():
            out, err = process.communicate(timeout=90)
            done[name] = Run(process.returncode, out, err, destination)
    finally:
        for name, (process, _) in started.items():
            if name not in done:
                process.kill()
                process.communicate()
    return done


@pytest.mark.parametrize("name", GOOD_SOURCES)
def test_the_good_source_copies_completely(runs, name):
    """The control: the sources the bad inputs use are fine otherwise."""
    run = runs[name]
    assert run.code == 0, run.err
    assert json.loads(run.out)["state"] == "complete"
    assert status(run.destination) == {
        "frames": 10,
        "state": "complete",
        "stop_reason": "finished",
        "keys": 10,
        "finished": 1,
        "data": 10,
    }
    with h5py.File(run.destination, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(10, (2,)))


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_a_bad_input_is_one_clear_line_and_exit_1(runs, name):
    run = runs[name]
    lines = run.err.splitlines()
    assert run.code == 1, run.err
    assert len(lines) == 1, run.err
    assert lines[0].startswith("h5live: error: ")
    assert "Fix:" in lines[0]
    for words in COMMANDS[name].says:
        assert words in lines[0]
    assert run.out == ""


@pytest.mark.parametrize("name", [*BAD_INPUTS, "resume and overwrite"])
def test_a_bad_input_leaves_the_destination_as_it_was(runs, name):
    """Nothing copied: no new file is left behind, and an existing one is untouched."""
    run = runs[name]
    assert run.code != 0
    existing = COMMANDS[name].existing
    if existing is None:
        assert not run.destination.exists()
    else:
        assert run.destination.read_bytes() == existing


def test_resume_and_overwrite_together_is_a_usage_error(runs):
    run = runs["resume and overwrite"]
    assert run.code == 2
    assert run.err.startswith("usage: h5live copy")
    assert "argument --overwrite: not allowed with argument --resume" in run.err


def test_debug_shows_the_traceback(runs):
    run = runs["debug"]
    assert run.code == 1
    assert run.err.startswith("Traceback (most recent call last):")
    last = run.err.splitlines()[-1]
    assert last.startswith("h5live.errors.SourceNotReadyError: no file at ")
    assert "absent.h5" in last


def test_a_writer_crash_ends_the_copy_incomplete_with_the_complete_frames(
    writer_process, spawn, tmp_path
):
    """Exit 0: the copy did all it could and says so (``incomplete``, not ``complete``); the
    crash is the writer's failure, seen as the idle timeout with the finished flag unset."""
    process = writer_process(
        scan_shape=(100,), frame_shape=(4,), frame_rate_hz=200, crash_after=37, hold_at=0
    )
    destination = tmp_path / "copy.h5"
    command = [H5LIVE, "copy", process.path, str(destination), "--no-progress", "--json"]
    command += ["--timeout", str(IDLE_S), "--max-latency", "0.05", "--chunk-shape", "8", "4"]
    copier = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_frames(destination, 0, copier)  # it follows the writer
    process.go()
    out, err = copier.communicate(timeout=120)
    assert process.wait() == CRASH_EXIT_CODE
    assert copier.returncode == 0, err
    summary = json.loads(out)
    assert (summary["frames_complete"], summary["state"], summary["stop_reason"]) == (
        37,
        "incomplete",
        "timeout",
    )
    assert status(destination) == {
        "frames": 37,
        "state": "incomplete",
        "stop_reason": "timeout",
        "keys": 37,
        "finished": 0,
        "data": 37,
    }
    with h5py.File(destination, "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(37, (4,)))  # no fill as data
