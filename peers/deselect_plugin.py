"""pytest plugin for the peer runs (copied into each run by ``peers/run_peers.py``).

Deselects the node ids listed in ``deselected.json`` next to the run's ``pytest.ini``, matching
them exactly (pytest's own ``--deselect`` matches prefixes: ``::test_chunk_mb_option`` would also
drop ``::test_chunk_mb_option_while_condition``), and writes the ones it found to
``deselected-found.json`` so that the runner can tell an entry that matches nothing.
"""

from __future__ import annotations

import json

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    listed = set(json.loads((config.rootpath / "deselected.json").read_text()))
    dropped = [item for item in items if item.nodeid in listed]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.nodeid not in listed]
    found = sorted(item.nodeid for item in dropped)
    (config.rootpath / "deselected-found.json").write_text(json.dumps(found))
