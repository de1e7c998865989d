"""h5live.dranspose: its public names, and that importing it does not import dranspose."""

from __future__ import annotations

import subprocess
import sys

import h5live.dranspose


def test_h5live_dranspose_all():
    assert sorted(h5live.dranspose.__all__) == sorted(
        [
            "CONFIG_ENV",
            "DransposeConfig",
            "H5LiveIngester",
            "H5LiveIngesterSettings",
            "H5LiveSource",
            "StreamConfig",
            "decode_bslz4",
            "default_block_size",
            "load_config",
            "parse_stins",
        ]
    )
    for name in h5live.dranspose.__all__:
        assert getattr(h5live.dranspose, name) is not None


def test_importing_h5live_and_its_dranspose_package_does_not_import_dranspose():
    code = (
        "import sys, h5live, h5live.dranspose\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'dranspose')\n"
        "assert not loaded, loaded\n"
        "h5live.dranspose.H5LiveIngester  # imported when first used\n"
        "assert 'dranspose.ingester' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
