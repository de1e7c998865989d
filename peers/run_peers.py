"""Run the owners' own test suites against h5live's drop-ins: swmr_tools 0.9 and hdmf's
GenericDataChunkIterator tests.

``make test-peers`` runs this. For each suite it

1. downloads the owner's sdist from PyPI with pip into ``.peers-cache/sdist`` (once; git-ignored),
2. extracts its tests into a fresh ``.peers-cache/run/<suite>/h5live`` (and ``.../reference``),
3. points them at h5live: swmr_tools' imports are rewritten to ``h5live`` and our stand-in for
   the ``tests/utils.py`` its sdist does not ship is added (``peers/swmr_tools/utils.py``);
   hdmf's tests get a conftest (``peers/hdmf/conftest.py``) that replaces their numpy-backed
   iterators with a ``LiveDataChunkIterator`` over a finished HDF5 file of the same array,
4. runs pytest on them in a subprocess, without the tests listed in ``peers/deselected.txt``
   (one reason per entry; matched exactly by ``peers/deselect_plugin.py``), and prints passed /
   failed / deselected,
5. runs the listed tests apart, twice: against h5live, where each must still fail (an entry
   h5live now passes must leave the list), and against the owner's own code (swmr_tools 0.9
   with the same stand-in ``utils.py``; hdmf's tests as they ship), where each must pass (so
   each is a difference in behaviour, not a test broken by our adaptation).

It exits non-zero when a test that is not deselected fails, when a deselect entry matches no
test, passes against h5live or fails against the owner's code (the list must stay true), or
when the sdists cannot be had.

Usage: ``python peers/run_peers.py [swmr_tools] [hdmf]`` (default: both suites).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / ".peers-cache"
DESELECTED = HERE / "deselected.txt"

SWMR_TOOLS_VERSION = "0.9.0"
# hdmf's tests must be those of the hdmf that LiveDataChunkIterator runs on.
HDMF_VERSION = importlib.metadata.version("hdmf")

# hdmf tests run: the GenericDataChunkIterator file, and the four tests of the HDF5 IO file that
# write a GenericDataChunkIterator (the rest of that file does not use one).
HDMF_GDCI_FILE = "tests/unit/utils_test/test_core_GenericDataChunkIterator.py"
HDMF_IO_FILE = "tests/unit/test_io_hdf5_h5tools.py"
HDMF_IO_TESTS = (
    "H5IOTest::test_write_dataset_generic_data_chunk_iterator",
    "H5IOTest::test_write_dataset_generic_data_chunk_iterator_with_compression",
    "H5IOTest::test_chunk_shape_override_through_wrapper",
    "H5IOTest::test_pass_through_of_chunk_shape_generic_data_chunk_iterator",
)

# The owners' suites run with their own (absent) pytest settings, not h5live's: no
# filterwarnings=error, a per-test timeout so that a hang fails instead of stalling CI.
PYTEST_INI = """\
[pytest]
addopts = -p no:cacheprovider -q -rfE
timeout = 60
faulthandler_timeout = 50
"""


@dataclass
class Suite:
    """One owner's suite: where its sdist comes from and which of its tests run."""

    name: str
    project: str  # as on PyPI
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"

    @property
    def archive_name(self) -> str:  # the sdist's file name, as pip saves it (PEP 625)
        return f"{self.project.replace('-', '_')}-{self.version}.tar.gz"

    @property
    def run_dir(self) -> Path:
        return CACHE / "run" / self.name


SUITES = {
    "swmr_tools": Suite("swmr_tools", "swmr-tools", SWMR_TOOLS_VERSION),
    "hdmf": Suite("hdmf", "hdmf", HDMF_VERSION),
}


def sdist(suite: Suite) -> Path:
    """The suite's sdist in the cache, downloaded with pip if it is not there yet."""
    folder = CACHE / "sdist"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / suite.archive_name
    if archive.exists():
        return archive
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        suite.requirement,
        "-d",
        str(folder),
    ]
    print(f"[{suite.name}] downloading {suite.requirement} (sdist) into {folder}", flush=True)
    if subprocess.run(command).returncode:
        raise SystemExit(
            f"[{suite.name}] pip could not download the sdist of {suite.requirement}. Fix: "
            f"check that PyPI is reachable, or put {suite.archive_name} in {folder}."
        )
    if not archive.exists():
        raise SystemExit(f"[{suite.name}] pip gave no {archive.name} for {suite.requirement}")
    return archive


def extract_tests(archive: Path, destination: Path) -> Path:
    """Extract the sdist's ``tests/`` folder into ``destination``; the extracted root."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/tests/")]
        tar.extractall(destination, members=members, filter="data")
    return destination / top


# ``from swmr_tools import X`` and ``from swmr_tools.<module> import X``: h5live exports the same
# names at its top level (KeyFollower, RowKeyFollower, DataSource, ChunkSource, FrameReader,
# utils, chunk_utils).
_SWMR_IMPORT = re.compile(r"^(\s*from\s+)swmr_tools(?:\.\w+)?(\s+import\s)", re.MULTILINE)


def prepare_swmr_tools(root: Path, *, for_h5live: bool = True) -> list[str]:
    """Add our stand-in ``utils.py`` to swmr_tools' tests and (``for_h5live``) point their
    imports at h5live; the pytest arguments that run them."""
    tests = root / "tests"
    if (tests / "utils.py").exists():
        raise SystemExit("[swmr_tools] the sdist now ships tests/utils.py: drop our stand-in")
    shutil.copy(HERE / "swmr_tools" / "utils.py", tests / "utils.py")
    for path in sorted(tests.glob("test_*.py")) if for_h5live else ():
        text = _SWMR_IMPORT.sub(r"\1h5live\2", path.read_text())
        leftover = [line for line in text.splitlines() if re.search(r"\bswmr_tools\b", line)]
        if leftover:
            raise SystemExit(f"[swmr_tools] {path.name}: import not pointed at h5live: {leftover}")
        path.write_text(text)
    return ["tests"]


def prepare_hdmf(root: Path, *, for_h5live: bool = True) -> list[str]:
    """Add (``for_h5live``) the adapter conftest to hdmf's tests; the pytest arguments that run
    them."""
    if for_h5live:
        shutil.copy(HERE / "hdmf" / "conftest.py", root / "conftest.py")
    return [HDMF_GDCI_FILE, *(f"{HDMF_IO_FILE}::{test}" for test in HDMF_IO_TESTS)]


def deselected(suite: str) -> dict[str, str]:
    """Node id -> reason, for ``suite``, from ``peers/deselected.txt``.

    Each entry is ``<suite> <node id>  # <reason>``; an entry without a reason is refused.
    """
    entries: dict[str, str] = {}
    for number, line in enumerate(DESELECTED.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry, _, reason = line.partition("#")
        fields = entry.split()
        if len(fields) != 2 or not reason.strip():
            raise SystemExit(
                f"{DESELECTED}:{number}: expected '<suite> <node id>  # <reason>', got {line!r}"
            )
        if fields[0] == suite:
            entries[fields[1]] = reason.strip()
    return entries


@dataclass
class PytestRun:
    """What one pytest run of a suite gave."""

    status: int  # pytest's exit code
    counts: dict[str, int]  # passed, failed, skipped
    found: set[str]  # listed node ids that were collected
    outcomes: dict[str, str]  # mode "only": listed node id -> "passed" or "failed"


def run_pytest(suite: Suite, for_h5live: bool, mode: str, listed: dict[str, str]) -> PytestRun:
    """Extract ``suite``'s tests afresh, prepare them (for h5live or for the owner's own code)
    and run pytest on them in ``mode`` (see ``peers/deselect_plugin.py``)."""
    folder = suite.run_dir / ("h5live" if for_h5live else "reference")
    root = extract_tests(sdist(suite), folder)
    prepare = prepare_swmr_tools if suite.name == "swmr_tools" else prepare_hdmf
    args = prepare(root, for_h5live=for_h5live)
    (root / "pytest.ini").write_text(PYTEST_INI)
    (root / "deselected.json").write_text(json.dumps(sorted(listed)))
    (root / "deselect-mode.txt").write_text(mode)
    shutil.copy(HERE / "deselect_plugin.py", root / "h5live_peer_deselect.py")
    report = root / "report.xml"
    command = [sys.executable, "-m", "pytest", "-p", "h5live_peer_deselect", *args]
    if mode == "only":  # the listed tests: their outcomes are what counts, not their output
        command += ["--tb=no", "-p", "no:warnings"]
    command.append(f"--junitxml={report}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    output = subprocess.DEVNULL if mode == "only" else None
    status = subprocess.run(command, cwd=root, env=env, stdout=output).returncode
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                counts["failed"] += 1
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
    found = root / "deselected-found.json"
    outcomes = root / "deselected-outcomes.json"
    return PytestRun(
        status,
        counts,
        set(json.loads(found.read_text())) if found.exists() else set(),
        json.loads(outcomes.read_text()) if outcomes.exists() else {},
    )


def run(suite: Suite) -> bool:
    """Run one suite; True if every test that ran passed and the deselect list is true."""
    listed = deselected(suite.name)
    print(
        f"\n[{suite.name}] its tests against h5live, without the {len(listed)} listed", flush=True
    )
    main = run_pytest(suite, True, "deselect", listed)
    counts = main.counts
    print(
        f"[{suite.name}] passed {counts['passed']}, failed {counts['failed']}, "
        f"deselected {len(main.found)}, skipped {counts['skipped']} (pytest exit {main.status})"
    )
    problems = [] if main.status == 0 and counts["failed"] == 0 else ["a test failed"]
    stale = sorted(set(listed) - main.found)
    if stale:
        problems.append(f"entries that match no test: {stale}")
    # each listed test is a difference: it fails against h5live and passes against the owner's code
    ours = run_pytest(suite, True, "only", listed).outcomes
    theirs = run_pytest(suite, False, "only", listed).outcomes
    owner = f"{suite.project} {suite.version}"
    for node, reason in listed.items():
        if node in stale:
            continue
        print(
            f"[{suite.name}]   deselected {node}: against h5live {ours.get(node, 'not run')}, "
            f"against {owner} {theirs.get(node, 'not run')}. {reason}"
        )
        if ours.get(node) != "failed":
            problems.append(f"{node} did not fail against h5live: remove it from the list")
        if theirs.get(node) != "passed":
            problems.append(f"{node} did not pass against {owner}: it shows no difference")
    for problem in problems:
        print(f"[{suite.name}] {problem} (see {DESELECTED})")
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run swmr_tools' and hdmf's own tests against h5live's drop-ins."
    )
    parser.add_argument("suites", nargs="*", help=f"any of {list(SUITES)} (default: all)")
    options = parser.parse_args(argv)
    unknown = sorted(set(options.suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {unknown}; choose from {list(SUITES)}")
    results = {name: run(SUITES[name]) for name in options.suites or SUITES}
    failed = [name for name, ok in results.items() if not ok]
    print(f"\npeer suites: {'failed: ' + ', '.join(failed) if failed else 'all passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
