"""DataSource: complete frames of several datasets, frame by frame or in batches."""

from __future__ import annotations

import h5py
import hdf5plugin  # noqa: F401  (reads the compressed datasets)
import numpy as np
import pytest
import swmr_tools

from h5live import DataSource, FollowPolicy, SliceDict
from h5live.errors import FrameIndexError, ScanShapeError
from h5live.testing import FakeClock, SimulatedWriter, frame_values
from helpers import RecordingDataset

SCANS = {
    "stack": {"scan_shape": (23,), "frame_shape": (3, 4)},
    "stack-presized": {"scan_shape": (23,), "frame_shape": (3, 4), "presized": True},
    "grid": {"scan_shape": (5, 7), "frame_shape": (6,)},
    "grid-presized-scalars": {"scan_shape": (5, 7), "frame_shape": (), "presized": True},
}


def source_for(writer: SimulatedWriter, clock: FakeClock, **options) -> DataSource:
    return DataSource(
        writer.keys,
        {"data": writer.data},
        1.0,
        writer.finished,
        clock=clock,
        sleep=clock.sleep,
        **options,
    )


def expected_frames(writer: SimulatedWriter, start: int, stop: int, slices) -> np.ndarray:
    c = writer.config
    flat = np.stack([frame_values(i, c.frame_shape, c.dtype) for i in range(start, stop)])
    box = tuple(s.stop - s.start for s in slices)
    return flat.reshape(box + tuple(c.frame_shape))


@pytest.mark.parametrize("batch", [None, 1, 4, 1000], ids=["frames", "batch-1", "batch-4", "all"])
@pytest.mark.parametrize("scan", SCANS.values(), ids=SCANS.keys())
def test_every_frame_once_in_order_with_its_place(simulated_writer, fake_clock, scan, batch):
    writer = simulated_writer(**scan)
    total = writer.config.n_frames
    writer.append(total - 3)
    writer.flush_keys()
    source = source_for(writer, fake_clock, batch_frames=batch)
    items = [next(source) for _ in range(1 if batch == 1000 else 3)]
    writer.append(3)
    writer.flush_keys()
    writer.finish()
    items += list(source)
    seen = []
    for item in items:
        assert isinstance(item, SliceDict)
        assert item.maxshape == writer.keys[0].maxshape
        assert item.stop - item.index <= (batch or 1)
        np.testing.assert_array_equal(
            item["data"], expected_frames(writer, item.index, item.stop, item.slice_metadata)
        )
        seen.extend(range(item.index, item.stop))
    assert seen == list(range(total))
    assert source.is_scan_finished()
    assert source.kf.stop_reason == ("complete" if writer.config.presized else "finished")
    assert not source.has_timed_out()


def test_frame_by_frame_items_are_those_of_swmr_tools(tmp_path):
    data = np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["keys"] = np.arange(1, 13).reshape(4, 3, 1, 1)
        f["data"] = data
    with h5py.File(tmp_path / "d.h5", "r") as f:
        ours = list(DataSource([f["keys"]], {"d": f["data"]}, timeout=0.1))
        theirs = list(swmr_tools.DataSource([f["keys"]], {"d": f["data"]}, timeout=0.1))
    assert len(ours) == len(theirs) == 12
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a["d"], b["d"])
        assert (a.slice_metadata, a.maxshape, a.index) == (b.slice_metadata, b.maxshape, b.index)


def test_batches_are_boxes_of_the_grid(simulated_writer, fake_clock):
    writer = simulated_writer(scan_shape=(4, 5), frame_shape=(2,), presized=True)
    writer.append(20)
    writer.flush_keys()
    writer.finish()
    source = source_for(writer, fake_clock, batch_frames=7)
    shapes = [(item.index, item.stop, item["data"].shape) for item in source]
    # ranges of at most 7 frames: [0, 7) [7, 14) [14, 20), each cut into boxes of the 4x5 grid
    assert shapes == [
        (0, 5, (1, 5, 2)),
        (5, 7, (1, 2, 2)),
        (7, 10, (1, 3, 2)),
        (10, 14, (1, 4, 2)),
        (14, 15, (1, 1, 2)),
        (15, 20, (1, 5, 2)),
    ]


def test_data_is_refreshed_after_the_keys_and_before_it_is_read(simulated_writer, fake_clock):
    events: list[str] = []
    writer = simulated_writer(scan_shape=(12,), frame_shape=(2,))

    class Logged(RecordingDataset):
        def __init__(self, dataset, label):
            super().__init__(dataset, on_read=lambda: events.append(f"read {label}"))
            self.label = label

        def refresh(self):
            events.append(f"refresh {self.label}")
            super().refresh()

    source = DataSource(
        [Logged(writer.keys[0], "keys")],
        {"data": Logged(writer.data, "data")},
        1.0,
        clock=fake_clock,
        sleep=fake_clock.sleep,
    )
    for batch in (3, 4):
        writer.append(batch)
        writer.flush_keys()
        for _ in range(batch):
            next(source)
    data_events = [e for e in events if e.endswith("data")]
    # one refresh per frontier move, each after a keys read, before the frames of that move
    assert (
        data_events == ["refresh data"] + ["read data"] * 3 + ["refresh data"] + ["read data"] * 4
    )
    first_data_refresh = events.index("refresh data")
    assert "read keys" in events[:first_data_refresh]


@pytest.mark.parametrize(
    ("data_shape", "data_maxshape", "shown"),
    [
        ((4, 6, 3), (4, 6, 3), r"\(4, 6\)"),
        ((4, 6, 3), (None, None, 3), r"\(4, 6\)"),
        ((4,), (4,), r"\(4,\)"),
    ],
    ids=["inner-axis", "growing-inner-axis", "too-few-dims"],
)
def test_data_of_another_scan_shape_is_refused_naming_both_shapes(
    tmp_path, data_shape, data_maxshape, shown
):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        keys = f.create_dataset("keys", data=np.ones((4, 5), dtype=int))
        data = f.create_dataset("data", shape=data_shape, maxshape=data_maxshape, dtype="f4")
        with pytest.raises(
            ScanShapeError, match=rf"'/data'.*scan shape {shown}.*'/keys'.*scan shape \(4, 5\)"
        ):
            DataSource([keys], {"data": data})


@pytest.mark.parametrize(
    ("key_maxshape", "data_maxshape"),
    [((20,), (10, 3)), ((10,), (20, 3))],
    ids=["keys-longer", "data-longer"],
)
def test_another_maximum_length_of_the_first_axis_is_accepted(
    tmp_path, key_maxshape, data_maxshape
):
    # swmr_tools 0.9's own test_mock_scan gives keys room for 20 frames beside data for 10.
    with h5py.File(tmp_path / "d.h5", "w") as f:
        keys = f.create_dataset("keys", data=np.ones(4, dtype=int), maxshape=key_maxshape)
        frames = np.arange(12, dtype="f4").reshape(4, 3)
        data = f.create_dataset("data", data=frames, maxshape=data_maxshape)
        items = list(DataSource([keys], {"data": data}, 0.01))
        np.testing.assert_array_equal(np.concatenate([item["data"] for item in items]), frames)


def test_growing_data_of_a_presized_scan_is_accepted(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        keys = f.create_dataset("keys", data=np.ones((4, 5), dtype=int))
        data = f.create_dataset("data", shape=(4, 5, 2), maxshape=(None, 5, 2), dtype="f4")
        assert len(list(DataSource([keys], {"data": data}, 0.01))) == 20


def test_no_data_is_refused(simulated_writer):
    writer = simulated_writer()
    with pytest.raises(ValueError, match="no data to follow"):
        DataSource(writer.keys, {})


@pytest.mark.parametrize("bad", [0, -2, 1.5], ids=["zero", "negative", "float"])
def test_bad_batch_frames_is_refused(simulated_writer, bad):
    writer = simulated_writer()
    with pytest.raises(ValueError, match="batch_frames"):
        DataSource(writer.keys, {"data": writer.data}, batch_frames=bad)


def _interleaved_file(path, parts=3, frames=11):
    data = np.arange(frames * 4, dtype=np.int32).reshape(frames, 4)
    with h5py.File(path, "w") as f:
        f["keys"] = np.arange(1, frames + 1)
        for j in range(parts):
            f[f"part_{j}"] = data[j::parts]
    return data


@pytest.mark.parametrize("batch", [None, 4], ids=["frames", "batch-4"])
def test_interleaved_datasets_give_the_frames_in_order(tmp_path, batch):
    data = _interleaved_file(tmp_path / "d.h5")
    with h5py.File(tmp_path / "d.h5", "r") as f:
        parts = {"d": [f[f"part_{j}"] for j in range(3)]}
        ours = list(
            DataSource([f["keys"]], None, 0.1, interleaved_datasets=parts, batch_frames=batch)
        )
        theirs = list(swmr_tools.DataSource([f["keys"]], None, 0.1, interleaved_datasets=parts))
    np.testing.assert_array_equal(np.concatenate([item["d"] for item in ours]), data)
    if batch is None:
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a["d"], b["d"])
            assert (a.slice_metadata, a.index) == (b.slice_metadata, b.index)


class DuckArray:
    """A dataset as swmr_tools' own tests make them: list shapes, float values, and a ``dtype``
    attribute that is not a numpy dtype (theirs are ``unittest.mock`` objects)."""

    dtype = object()

    def __init__(self, values):
        self.values = np.asarray(values)
        self.shape = self.maxshape = list(self.values.shape)

    def __getitem__(self, selection):
        return self.values[selection]


@pytest.mark.parametrize("batch", [None, 4], ids=["frames", "batch-4"])
def test_interleaved_duck_typed_datasets_whose_dtype_is_not_one(batch):
    data = np.arange(11 * 2, dtype=np.float32).reshape(11, 2)
    parts = {"d": [DuckArray(data[j::3]) for j in range(3)]}
    keys = [DuckArray(np.ones(11))]
    items = list(DataSource(keys, None, 0.01, interleaved_datasets=parts, batch_frames=batch))
    frames = np.concatenate([item["d"] for item in items])
    np.testing.assert_array_equal(frames, data)
    assert frames.dtype == np.float32
    assert items[0].maxshape == [11]


def test_results_written_back_like_swmr_tools(tmp_path):
    data = np.random.default_rng(1).integers(0, 100, size=(3, 4, 5, 6))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["keys"] = np.arange(1, 13).reshape(3, 4)
        f["data"] = data
    results = {}
    for name, module in (("ours", __import__("h5live")), ("theirs", swmr_tools)):
        with h5py.File(tmp_path / "d.h5", "r") as f, h5py.File(tmp_path / f"{name}.h5", "w") as out:
            source = module.DataSource([f["keys"]], {"d": f["data"]}, timeout=0.1)
            result = None
            for item in source:
                total = item["d"].sum(axis=(-1, -2)).squeeze()
                if result is None:
                    result = source.create_dataset(total, out, "total")
                else:
                    source.append_data(total, item.slice_metadata, result)
            results[name] = result[...]
    np.testing.assert_array_equal(results["ours"], results["theirs"])
    np.testing.assert_array_equal(results["ours"], data.sum(axis=(-1, -2)))


def test_batch_results_write_back_with_their_scan_dims(tmp_path, simulated_writer, fake_clock):
    writer = simulated_writer(scan_shape=(4, 5), frame_shape=(3,), presized=True)
    writer.append(20)
    writer.flush_keys()
    writer.finish()
    source = source_for(writer, fake_clock, batch_frames=8)
    with h5py.File(tmp_path / "out.h5", "w") as out:
        result = None
        for item in source:
            sums = item["data"].sum(axis=-1)
            if result is None:
                result = source.create_dataset(sums[(0,) * sums.ndim], out, "sum")
            source.append_data(sums, item.slice_metadata, result)
        expected = np.array([frame_values(i, (3,), "uint16").sum() for i in range(20)])
        np.testing.assert_array_equal(result[...], expected.reshape(4, 5))


def test_reset_hands_out_the_frames_again(simulated_writer, fake_clock):
    writer = simulated_writer(scan_shape=(6,))
    writer.append(6)
    writer.flush_keys()
    writer.finish()
    source = source_for(writer, fake_clock, batch_frames=4)
    first = [(item.index, item.stop) for item in source]
    source.reset()
    assert [(item.index, item.stop) for item in source] == first == [(0, 4), (4, 6)]


def test_repr_and_context_manager(simulated_writer, fake_clock):
    writer = simulated_writer(scan_shape=(6,))
    with source_for(writer, fake_clock, batch_frames=2) as source:
        assert "scan.h5" in repr(source)
        assert "batch_frames=2" in repr(source)


LIVE = {
    "stack": {"scan_shape": (500,)},
    "stack-presized-blosc": {"scan_shape": (500,), "presized": True, "compression": "blosc"},
    "grid-lz4": {"scan_shape": (20, 25), "compression": "lz4"},
    "grid-presized": {"scan_shape": (20, 25), "presized": True},
}


@pytest.mark.live
@pytest.mark.parametrize("batch", [None, 64], ids=["frames", "batch-64"])
@pytest.mark.parametrize("layout", LIVE.values(), ids=LIVE.keys())
def test_live_source_delivers_every_value(writer_process, layout, batch):
    process = writer_process(**layout, frame_shape=(4, 5), frame_rate_hz=4000, hold_at=0)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        __import__("time").sleep(seconds)

    with h5py.File(process.path, "r", libver="latest", swmr=True) as f:
        source = DataSource(
            [f["/entry/keys/key_0"]],
            {"data": f["/entry/data/data"]},
            10,
            f["/entry/finished"],
            use_direct_chunk=True,
            batch_frames=batch,
            sleep=sleep,
            policy=FollowPolicy(poll_interval_s=0.001),
        )
        process.go()
        seen = 0
        for item in source:
            flat = item["data"].reshape(item.stop - item.index, 4, 5)
            for k, index in enumerate(range(item.index, item.stop)):
                np.testing.assert_array_equal(flat[k], frame_values(index, (4, 5), "uint16"))
            assert item.index == seen
            seen = item.stop
    assert process.wait() == 0
    assert seen == process.config.n_frames
    # swmr_tools' DataSource sleeps 1 s whenever a growing dataset is behind the keys; the
    # only sleeps here are the follower's short pauses between polls.
    assert max(sleeps, default=0) < 0.5


def test_batches_of_a_grid_whose_data_lags_the_keys_are_explained(tmp_path, fake_clock):
    with h5py.File(tmp_path / "g.h5", "w", libver="latest") as f:
        keys = f.create_dataset("k", data=np.ones((1, 3), "i8"), maxshape=(None, None))
        data = f.create_dataset("d", shape=(0, 0, 2), maxshape=(None, None, 2), dtype="i4")
        source = DataSource(
            [keys], {"d": data}, 1, batch_frames=8, clock=fake_clock, sleep=fake_clock.sleep
        )
        with pytest.raises(FrameIndexError, match=r"frame 2 is outside dataset '/d'"):
            next(source)


@pytest.mark.parametrize("batch", [None, 6], ids=["frames", "batch-6"])
def test_one_read_per_item(simulated_writer, fake_clock, batch):
    writer = simulated_writer(scan_shape=(4, 5), frame_shape=(2,), presized=True)
    writer.append(20)
    writer.flush_keys()
    writer.finish()
    data = RecordingDataset(writer.data)
    items = list(
        DataSource(
            writer.keys,
            {"data": data},
            1.0,
            writer.finished,
            batch_frames=batch,
            clock=fake_clock,
            sleep=fake_clock.sleep,
        )
    )
    # batches of 6 on rows of 5: [0, 5) [5, 6) | [6, 10) [10, 12) | [12, 15) [15, 18) | [18, 20)
    assert len(data.reads) == len(items) == (20 if batch is None else 7)
    assert sum(data.reads) == 20 * 2  # every value read once
