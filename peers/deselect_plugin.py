"""pytest plugin for the peer runs (copied into each run by ``peers/run_peers.py``).

Reads the node ids listed in ``deselected.json`` next to the run's ``pytest.ini`` and matches
them exactly (pytest's own ``--deselect`` matches prefixes: ``::test_chunk_mb_option`` would also
drop ``::test_chunk_mb_option_while_condition``). ``deselect-mode.txt`` beside it says what to do
with them:

- ``deselect``: they are not run (the owner's suite against h5live);
- ``only``: only they run (against h5live, where each must fail, or against the owner's own
  code, where each must pass; the runner checks).

It writes the listed ids it found to ``deselected-found.json`` (so that the runner can tell an
entry that matches nothing) and, in ``only`` mode, each one's outcome (``"passed"`` or
``"failed"``; an error in setup or teardown counts as failed) to ``deselected-outcomes.json``.
"""

from __future__ import annotations

import json

import pytest

_OUTCOMES: dict[str, str] = {}


def _listed(config: pytest.Config) -> set[str]:
    return set(json.loads((config.rootpath / "deselected.json").read_text()))


def _mode(config: pytest.Config) -> str:
    return (config.rootpath / "deselect-mode.txt").read_text().strip()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = _listed(config)
    chosen = [item for item in items if item.nodeid in listed]
    others = [item for item in items if item.nodeid not in listed]
    keep, dropped = (others, chosen) if _mode(config) == "deselect" else (chosen, others)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    found = sorted(item.nodeid for item in chosen)
    (config.rootpath / "deselected-found.json").write_text(json.dumps(found))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _OUTCOMES[report.nodeid] = "failed"
    elif report.when == "call":
        _OUTCOMES.setdefault(report.nodeid, "passed")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _mode(session.config) == "only":
        path = session.config.rootpath / "deselected-outcomes.json"
        path.write_text(json.dumps(_OUTCOMES, sort_keys=True))
