"""Keys of any numeric type (floats, uint64 unique ids as Odin writes, bool) through every path:
followed and read while written, iterated, copied (copy_live) and converted (to_nwb); the
outputs are followed, read and iterated in turn."""

from __future__ import annotations

import h5py
import numpy as np
import pynwb
import pytest

from h5live import DataSource, KeyFollower, LiveDataChunkIterator, copy_live, to_nwb
from h5live.testing import frame_values

DATA = "/entry/data/data"
N, FRAME = 60, (4, 3)
KEY_DTYPES = {"float64": "f8", "float32": "f4", "uint64": "u8", "bool": "?"}


def expected(n: int = N) -> np.ndarray:
    return np.stack([frame_values(i, FRAME, "uint16") for i in range(n)])


@pytest.mark.live
@pytest.mark.parametrize("key_dtype", KEY_DTYPES.values(), ids=KEY_DTYPES.keys())
def test_a_live_source_with_such_keys_is_followed_copied_and_converted(
    writer_process, tmp_path, key_dtype
):
    process = writer_process(
        scan_shape=(N,),
        frame_shape=FRAME,
        key_dtype=key_dtype,
        timestamps=True,
        frame_rate_hz=2000,
        hold_at=0,
    )
    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        assert f["/entry/keys/key_0"].dtype == np.dtype(key_dtype)
    process.go()
    copied = copy_live(process.path, tmp_path / "copy.h5", max_latency_s=0.01)
    assert process.wait() == 0
    assert (copied.frames_complete, copied.state) == (N, "complete")
    converted = to_nwb(process.path, tmp_path / "scan.nwb")
    assert (converted.frames_complete, converted.state) == (N, "complete")

    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        source = DataSource([f["/entry/keys/key_0"]], {"d": f[DATA]}, 0.1, batch_frames=16)
        np.testing.assert_array_equal(np.concatenate([item["d"] for item in source]), expected())
    with LiveDataChunkIterator(process.path, DATA, chunk_shape=(8, *FRAME)) as iterator:
        np.testing.assert_array_equal(np.concatenate([c.data for c in iterator]), expected())
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected())
    with pynwb.NWBHDF5IO(tmp_path / "scan.nwb", "r") as io:
        (series,) = io.read().acquisition.values()
        np.testing.assert_array_equal(series.data[...], expected())
    # the outputs are live sources too: followed, and iterated, with their own keys
    for output, data_path in ((tmp_path / "copy.h5", DATA), (tmp_path / "scan.nwb", None)):
        with KeyFollower.from_path(output, timeout=1) as follower:
            assert list(follower) == list(range(N))
        if data_path is None:
            data_path = f"/acquisition/{series.name}/data"
        with LiveDataChunkIterator(output, data_path, timeout=1) as iterator:
            np.testing.assert_array_equal(np.concatenate([c.data for c in iterator]), expected())


def test_float_keys_with_nan_hold_the_frontier_in_a_copy(tmp_path):
    # a NaN key is a frame not written yet: the copy stops before it, as with 0
    keys = np.ones(N)
    keys[40] = np.nan
    with h5py.File(tmp_path / "src.h5", "w", libver="latest") as f:
        f.create_dataset(DATA, data=expected(), chunks=(1, *FRAME))
        f.create_dataset("/entry/keys/key_0", data=keys, chunks=(16,))
        f.create_dataset("/entry/finished", data=1)
    result = copy_live(tmp_path / "src.h5", tmp_path / "copy.h5", timeout=0.1)
    assert result.frames_complete == 40
    with h5py.File(tmp_path / "copy.h5", "r") as f:
        np.testing.assert_array_equal(f[DATA][...], expected(40))
