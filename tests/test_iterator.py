"""LiveDataChunkIterator: hdmf's GenericDataChunkIterator over live sources."""

from __future__ import annotations

import pickle
from typing import ClassVar

import h5py
import numpy as np
import pytest
from hdmf.backends.hdf5.h5tools import HDF5IO
from hdmf.data_utils import GenericDataChunkIterator

from h5live import KeyFollower, LiveDataChunkIterator
from h5live._iterate.iterator import hdmf_chunk_shape
from h5live.errors import FollowTimeout, H5LiveWarning, IteratorOptionError, ScanShapeError
from h5live.testing import frame_values
from helpers import IDLE_S


def write(writer, n):
    writer.append(n)
    writer.flush_keys()


class ArrayIterator(GenericDataChunkIterator):
    """hdmf's iterator over an in-memory array: the reference behaviour."""

    def __init__(self, array, **options):
        self.array = array
        super().__init__(**options)

    def _get_data(self, selection):
        return self.array[selection]

    def _get_maxshape(self):
        return self.array.shape

    def _get_dtype(self):
        return self.array.dtype


def complete_file(path, scan_shape, frame_shape, growing_keys=True):
    n = int(np.prod(scan_shape))
    data = np.stack([frame_values(i, frame_shape, "uint16") for i in range(n)])
    data = data.reshape(*scan_shape, *frame_shape)
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/data/data", data=data, chunks=(1,) * len(scan_shape) + frame_shape)
        maxshape = (None, *scan_shape[1:]) if growing_keys else scan_shape
        f.create_dataset(
            "/entry/keys/key_0", data=np.ones(scan_shape, "i8"), maxshape=maxshape, chunks=True
        )
        f.create_dataset("/entry/finished", data=1)
    return data


def fill(iterator, dataset_name, parent):
    """Write like HDF5IO does: create from the iterator's shapes, extend, write each chunk."""
    return HDF5IO.__chunked_iter_fill__(parent, dataset_name, iterator)


COMPLETE = {
    "stack": ((23,), (4, 5), (3, 4, 5), (6, 4, 5)),
    "grid": ((7, 6), (3,), (2, 4, 3), (4, 4, 3)),
    "stack-tiled-frames": ((10,), (6, 8), (2, 3, 4), (4, 6, 8)),
}


@pytest.mark.parametrize("growing_keys", [True, False], ids=["growing-keys", "fixed-keys"])
@pytest.mark.parametrize(
    ("scan", "frame", "chunk", "buffer"), COMPLETE.values(), ids=COMPLETE.keys()
)
def test_a_complete_source_iterates_like_hdmf(tmp_path, scan, frame, chunk, buffer, growing_keys):
    data = complete_file(tmp_path / "s.h5", scan, frame, growing_keys)
    reference = ArrayIterator(data, chunk_shape=chunk, buffer_shape=buffer)
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        ours = LiveDataChunkIterator(f["/entry/data/data"], chunk_shape=chunk, buffer_shape=buffer)
        for name in ("chunk_shape", "buffer_shape", "maxshape", "num_buffers", "dtype"):
            assert getattr(ours, name) == getattr(reference, name), name
        assert ours.recommended_data_shape() == reference.recommended_data_shape()
        theirs = list(reference)
        mine = list(ours)
        assert [c.selection for c in mine] == [c.selection for c in theirs]
        for a, b in zip(mine, theirs, strict=True):
            assert all(type(s.start) is int and type(s.stop) is int for s in a.selection)
            np.testing.assert_array_equal(a.data, b.data)
        assert ours.stop_reason in ("finished", "complete")


def test_pickling_carries_a_recipe_and_gives_the_same_buffers(tmp_path):
    complete_file(tmp_path / "s.h5", (12,), (3,))
    with LiveDataChunkIterator(
        tmp_path / "s.h5", "/entry/data/data", chunk_shape=(2, 3), buffer_shape=(4, 3)
    ) as ours:
        blob = pickle.dumps(ours)
        assert b"h5py" not in blob
        expected = [(c.selection, c.data) for c in ours]
    with pickle.loads(blob) as copy:
        got = [(c.selection, c.data) for c in copy]
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("scan_shape", [(6,), (2, 3)], ids=["stack", "grid"])
def test_a_scan_that_ended_before_its_first_frame_hands_out_no_chunk(simulated_writer, scan_shape):
    # frames written but never keyed, then the finished flag: an aborted scan
    writer = simulated_writer(scan_shape=scan_shape, frame_shape=(2,))
    writer.append(3)
    writer.finish()
    writer.close()
    with LiveDataChunkIterator(writer.path, "/entry/data/data", timeout=5) as ours:
        assert (ours.final_rows, ours.num_buffers) == (0, 0)
        assert ours.maxshape == (None, *scan_shape[1:], 2)  # HDF5 cannot chunk maxshape 0
        assert ours.recommended_data_shape() == (0, *scan_shape[1:], 2)
        assert min(ours.recommended_chunk_shape()) >= 1
        assert list(ours) == []
        assert ours.follower.stop_reason == "finished"


INVALID_OPTIONS = {
    "not-dividing": {"chunk_shape": (3, 3), "buffer_shape": (4, 3)},
    "too-big": {"chunk_shape": (20, 3), "buffer_shape": (20, 3)},
    "chunk-bigger-than-buffer": {"chunk_shape": (4, 3), "buffer_shape": (2, 3)},
    "both-buffer-options": {"buffer_gb": 1.0, "buffer_shape": (4, 3)},
    "both-chunk-options": {"chunk_mb": 1.0, "chunk_shape": (4, 3)},
    "zero-chunk-mb": {"chunk_mb": 0},
    "negative-buffer-gb": {"buffer_gb": -1},
    "negative-buffer-shape": {"buffer_shape": (-1, 3)},
    "negative-chunk-shape": {"chunk_shape": (-1, 3)},
}


@pytest.mark.parametrize("options", INVALID_OPTIONS.values(), ids=INVALID_OPTIONS.keys())
def test_invalid_options_raise_hdmfs_texts_as_value_and_assertion_errors(tmp_path, options):
    data = complete_file(tmp_path / "s.h5", (12,), (3,), growing_keys=False)
    with pytest.raises(AssertionError) as theirs:
        ArrayIterator(data, **options)
    with (
        h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f,
        pytest.raises(IteratorOptionError) as ours,
    ):
        LiveDataChunkIterator(f["/entry/data/data"], **options)
    assert str(ours.value) == str(theirs.value)
    assert isinstance(ours.value, ValueError)
    assert isinstance(ours.value, AssertionError)


def test_a_progress_bar_total_is_ignored_with_hdmfs_warning(tmp_path):
    data = complete_file(tmp_path / "s.h5", (12,), (3,), growing_keys=False)
    message = "'total' in 'progress_bar_options'"

    def options():  # hdmf pops "total" from the dict it is given
        return {"display_progress": True, "progress_bar_options": {"total": 5, "disable": True}}

    with pytest.warns(UserWarning, match=message) as theirs:
        ArrayIterator(data, **options())
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        with pytest.warns(H5LiveWarning, match=message) as ours:
            it = LiveDataChunkIterator(f["/entry/data/data"], **options())
        assert it.progress_bar.total == 12
        it.close()
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def single_frame_file(path, key_shape, data_shape):
    data = np.arange(np.prod(data_shape), dtype="i2").reshape(data_shape)
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("/entry/data/data", data=data)
        f.create_dataset("/entry/keys/key_0", data=np.ones(key_shape, "u8"), chunks=True)
        f.create_dataset("/entry/finished", data=1)
    return data


@pytest.mark.parametrize(
    ("key_shape", "data_shape"),
    [((1,), (1, 20, 30)), ((1, 1), (1, 20, 30)), ((4, 1, 1), (4, 20, 30))],
    ids=["one-frame", "one-frame-keys-1x1", "trailing-size-1-key-dims"],
)
def test_a_single_frame_scan_and_trailing_size_1_key_dims_iterate_like_hdmf(
    tmp_path, key_shape, data_shape
):
    data = single_frame_file(tmp_path / "s.h5", key_shape, data_shape)
    reference = ArrayIterator(data, chunk_shape=(1, 10, 30), buffer_shape=(1, 20, 30))
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        ours = LiveDataChunkIterator(
            f["/entry/data/data"], chunk_shape=(1, 10, 30), buffer_shape=(1, 20, 30)
        )
        assert (ours.scan_rank, ours.maxshape) == (1, reference.maxshape)
        got = [(c.selection, c.data.copy()) for c in ours]
    expected = [(c.selection, c.data) for c in reference]
    assert [s for s, _ in got] == [s for s, _ in expected]
    np.testing.assert_array_equal(np.concatenate([d for _, d in got]), data)


def test_a_single_frame_scan_whose_data_has_no_scan_axis_is_refused(tmp_path):
    single_frame_file(tmp_path / "s.h5", (1,), (20, 30))
    with (
        h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f,
        pytest.raises(ScanShapeError, match=r"one frame.*shape \(20, 30\).*Fix:"),
    ):
        LiveDataChunkIterator(f["/entry/data/data"])


@pytest.mark.parametrize("data_shape", [(1, 2000, 2000), (2, 2000, 2000), (3, 700, 900)], ids=str)
def test_a_chunk_mb_smaller_than_one_frame_gives_hdmfs_chunk_shape(data_shape):
    # whole frames cannot honour it (a frame is 2.5 to 8 MB): the chunks hdmf would choose
    reference = ArrayIterator(np.empty(data_shape, "i2"), chunk_mb=1.0)
    assert hdmf_chunk_shape(data_shape, 2, 1.0) == reference.chunk_shape


def test_a_chunk_mb_smaller_than_one_frame_of_a_file(tmp_path):
    data = single_frame_file(tmp_path / "s.h5", (1,), (1, 2000, 2000))
    reference = ArrayIterator(data, chunk_mb=1.0)
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        ours = LiveDataChunkIterator(f["/entry/data/data"], chunk_mb=1.0)
        assert ours.chunk_shape == reference.chunk_shape == (1, 79, 79)
        # without chunk_mb, frames stay whole whatever their size
        assert LiveDataChunkIterator(f["/entry/data/data"]).chunk_shape == (1, 2000, 2000)


def test_default_chunks_are_whole_frames_and_buffers_whole_chunks(tmp_path):
    complete_file(tmp_path / "s.h5", (50,), (100, 100), growing_keys=False)  # 20 kB frames
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        it = LiveDataChunkIterator(f["/entry/data/data"], chunk_mb=0.1, buffer_gb=0.0005)
        assert it.chunk_shape == (5, 100, 100)  # 5 frames of 20 kB in 0.1 MB
        assert it.buffer_shape == (25, 100, 100)  # 5 chunks in 0.5 MB
        assert [c.selection[0] for c in it] == [slice(0, 25), slice(25, 50)]


@pytest.mark.live
@pytest.mark.parametrize(
    ("scan", "chunk"), [((300,), (4, 4)), ((30, 10), (2, 10, 4))], ids=["stack", "grid"]
)
def test_a_live_source_of_unknown_length_is_written_whole(writer_process, tmp_path, scan, chunk):
    process = writer_process(scan_shape=scan, frame_shape=(4,), frame_rate_hz=3000, hold_at=0)
    with (
        h5py.File(process.path, "r", libver="latest", swmr=True) as f,
        h5py.File(tmp_path / "out.h5", "w") as out,
    ):
        it = LiveDataChunkIterator(f["/entry/data/data"], chunk_shape=chunk, buffer_gb=0.001)
        assert it.maxshape[0] is None
        assert it.recommended_data_shape()[0] == 0
        process.go()
        written = fill(it, "data", out)[...]
    assert process.wait() == 0
    n = process.config.n_frames
    expected = np.stack([frame_values(i, (4,), "uint16") for i in range(n)])
    np.testing.assert_array_equal(written.reshape(n, 4), expected)
    assert it.stop_reason == "finished"


@pytest.mark.live
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_a_crashed_writer_leaves_exactly_the_complete_frames(writer_process, tmp_path, strict):
    process = writer_process(
        scan_shape=(40, 5), frame_shape=(3,), crash_after=87, frame_rate_hz=3000, hold_at=0
    )
    with (
        h5py.File(process.path, "r", libver="latest", swmr=True) as f,
        h5py.File(tmp_path / "out.h5", "w") as out,
    ):
        it = LiveDataChunkIterator(
            f["/entry/data/data"],
            chunk_shape=(2, 5, 3),
            buffer_shape=(4, 5, 3),
            timeout=IDLE_S,
            strict=strict,
        )
        process.go()
        if strict:
            with pytest.raises(FollowTimeout, match="strict"):
                fill(it, "data", out)
            return
        written = fill(it, "data", out)
        assert it.stop_reason == "timeout"
        assert written.shape == (18, 5, 3)  # 87 frames: 17 whole rows and 2 of row 17
        flat = written[...].reshape(-1, 3)
        for i in range(87):
            np.testing.assert_array_equal(flat[i], frame_values(i, (3,), "uint16"))
        assert not flat[87:].any()  # never written: only fill values, not presented as frames


def _read_in_another_process(iterator, selection):
    # Close the unpickled copy: with HDF5 2.0, refreshing a dataset while another handle on
    # it is open in the same process makes both read wrong chunks (see the README).
    with iterator:
        return iterator._get_data(selection)


def test_selections_can_be_read_in_other_processes(tmp_path):
    # hdmf-zarr's parallel writer walks buffer_selection_generator and sends the pickled
    # iterator to workers that call _get_data.
    import concurrent.futures
    import multiprocessing

    data = complete_file(tmp_path / "s.h5", (8, 5), (3,))
    with LiveDataChunkIterator(
        tmp_path / "s.h5", "/entry/data/data", chunk_shape=(2, 5, 3), buffer_shape=(2, 5, 3)
    ) as it:
        selections = list(it.buffer_selection_generator)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            parts = list(pool.map(_read_in_another_process, [it] * len(selections), selections))
    for selection, part in zip(selections, parts, strict=True):
        np.testing.assert_array_equal(part, data[selection])


class RecordingBar:
    """A progress_bar_class that records what it is told."""

    made: ClassVar[list[RecordingBar]] = []

    def __init__(self, total=None, **options):
        self.total, self.options, self.n, self.postfix, self.closed = total, options, 0, "", False
        self.initial_total = total
        RecordingBar.made.append(self)

    def update(self, n):
        self.n += n

    def set_postfix_str(self, text):
        self.postfix = text

    def close(self):
        self.closed = True


@pytest.mark.parametrize("growing_keys", [True, False], ids=["finished-file", "fixed-keys"])
def test_progress_counts_frames_and_closes(tmp_path, growing_keys):
    complete_file(tmp_path / "s.h5", (12,), (3,), growing_keys)
    RecordingBar.made.clear()
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        # a total of one's own is ignored with hdmf's warning (see test_iterator_hdmf_options)
        with pytest.warns(H5LiveWarning, match="'total' in 'progress_bar_options'"):
            it = LiveDataChunkIterator(
                f["/entry/data/data"],
                chunk_shape=(2, 3),
                buffer_shape=(4, 3),
                display_progress=True,
                progress_bar_class=RecordingBar,
                progress_bar_options={"desc": "copy", "total": 99},
            )
        list(it)
    (bar,) = RecordingBar.made
    assert (bar.total, bar.n, bar.closed) == (12, 12, True)
    assert bar.options == {"desc": "copy", "unit": "frame"}
    assert "MB/s" in bar.postfix
    assert "lag 0" in bar.postfix


@pytest.mark.live
def test_progress_total_is_unknown_while_live(writer_process):
    process = writer_process(scan_shape=(50,), frame_shape=(2,), hold_at=0)
    RecordingBar.made.clear()
    with LiveDataChunkIterator(
        process.path,
        "/entry/data/data",
        chunk_shape=(5, 2),
        buffer_shape=(10, 2),
        display_progress=True,
        progress_bar_class=RecordingBar,
    ) as it:
        process.go()
        list(it)
    assert process.wait() == 0
    (bar,) = RecordingBar.made
    assert bar.initial_total is None  # unknown while the writer ran ...
    assert (bar.total, bar.n, bar.closed) == (50, 50, True)  # ... known once it finished


@pytest.mark.live
def test_known_length_buffers_come_as_soon_as_their_frames_are_complete(writer_process):
    # The writer holds after 40 of 100 frames: the first 4 buffers of 10 must come before it
    # goes on (a blocked iterator would hang here; pytest-timeout fails the test).
    process = writer_process(scan_shape=(100,), frame_shape=(2,), presized=True, hold_at=40)
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_shape=(5, 2), buffer_shape=(10, 2)
    ) as it:
        assert it.maxshape == (100, 2)
        first = [next(it) for _ in range(4)]
        assert [c.selection[0] for c in first] == [
            slice(0, 10),
            slice(10, 20),
            slice(20, 30),
            slice(30, 40),
        ]
        assert it.follower.current_max < 99
        process.go()
        rest = list(it)
    assert process.wait() == 0
    frames = np.concatenate([c.data for c in first + rest])
    np.testing.assert_array_equal(
        frames, np.stack([frame_values(i, (2,), "uint16") for i in range(100)])
    )


@pytest.mark.live
def test_max_latency_releases_every_complete_frame_before_its_chunk_is_full(writer_process):
    # One buffer of 100 frames in chunks of 50; the writer holds after 23. Every complete frame
    # (0..22) must come while it holds, inside the first chunk (without the latency bound
    # next() would block until the 30 s idle timeout).
    process = writer_process(scan_shape=(100,), frame_shape=(2,), hold_at=23)
    with LiveDataChunkIterator(
        process.path,
        "/entry/data/data",
        chunk_shape=(50, 2),
        buffer_shape=(100, 2),
        max_latency_s=0.05,
        timeout=30,
    ) as it:
        assert it.follower.wait_for(22, timeout_s=60)
        first = next(it)
        assert first.selection == (slice(0, 23), slice(0, 2))
        assert it.follower.current_max == 22  # released while the writer held
        process.go()
        rest = list(it)
        assert it.stop_reason in ("finished", "complete")
    assert process.wait() == 0
    chunks = [first, *rest]
    edges = [(c.selection[0].start, c.selection[0].stop) for c in chunks]
    assert [a for a, _ in edges[1:]] == [b for _, b in edges[:-1]]  # in order, no gap or overlap
    assert edges[-1][1] == 100
    frames = np.concatenate([c.data for c in chunks])
    np.testing.assert_array_equal(
        frames, np.stack([frame_values(i, (2,), "uint16") for i in range(100)])
    )


@pytest.mark.live
def test_max_latency_on_a_grid_releases_whole_scan_rows(writer_process):
    # 10 rows of 4 points, chunks of 4 rows, one buffer of 8 rows; the writer holds inside
    # row 3 (frame 14): rows 0-2 are released (part of the first chunk), never part of row 3.
    process = writer_process(scan_shape=(10, 4), frame_shape=(3,), hold_at=14)
    with LiveDataChunkIterator(
        process.path,
        "/entry/data/data",
        chunk_shape=(4, 4, 3),
        buffer_shape=(8, 4, 3),
        max_latency_s=0.05,
        timeout=30,
    ) as it:
        assert it.follower.wait_for(13, timeout_s=60)
        first = next(it)
        assert first.selection == (slice(0, 3), slice(0, 4), slice(0, 3))
        process.go()
        rest = list(it)
    assert process.wait() == 0
    data = np.concatenate([c.data for c in [first, *rest]]).reshape(40, 3)
    np.testing.assert_array_equal(
        data, np.stack([frame_values(i, (3,), "uint16") for i in range(40)])
    )


@pytest.mark.live
def test_without_max_latency_selections_stay_on_chunk_boundaries(writer_process):
    process = writer_process(scan_shape=(100,), frame_shape=(2,), frame_rate_hz=2000, hold_at=0)
    process.go()
    with LiveDataChunkIterator(
        process.path,
        "/entry/data/data",
        chunk_shape=(8, 2),
        buffer_shape=(24, 2),
        max_latency_s=None,
        timeout=30,
    ) as it:
        edges = [(c.selection[0].start, c.selection[0].stop) for c in it]
    assert process.wait() == 0
    assert all(a % 8 == 0 and (b % 8 == 0 or b == 100) for a, b in edges)
    assert edges[-1][1] == 100


def test_max_latency_must_be_a_finite_number_of_seconds(tmp_path):
    with pytest.raises(ValueError, match="max_latency_s must be None or a finite number"):
        LiveDataChunkIterator(tmp_path / "none.h5", "/d", max_latency_s=-1)


def address(chunk):
    return chunk.data.__array_interface__["data"][0]


def test_a_buffer_is_reused_once_the_consumer_lets_go_and_never_before(tmp_path):
    data = complete_file(tmp_path / "s.h5", (23,), (4, 5))
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        it = LiveDataChunkIterator(
            f["/entry/data/data"], chunk_shape=(3, 4, 5), buffer_shape=(6, 4, 5)
        )
        first = next(it)
        second = next(it)  # ``first`` is still held: a new array, of the selection's size
        assert not np.shares_memory(first.data, second.data)
        assert second.data.base is None
        np.testing.assert_array_equal(first.data, data[0:6])
        where = address(first)
        del first, second
        third = next(it)  # let go: read into the buffer again
        assert address(third) == where
        np.testing.assert_array_equal(third.data, data[12:18])
        kept = [third, *it]  # a consumer that keeps every chunk gets data that stays as read
    np.testing.assert_array_equal(np.concatenate([c.data for c in kept]), data[12:])


def test_memory_stays_within_about_one_buffer(tmp_path):
    import tracemalloc

    frames, frame = 400, (100, 100)  # 8 MB of uint16 frames, buffers of 20 frames (0.4 MB)
    with h5py.File(tmp_path / "s.h5", "w", libver="latest") as f:
        f.create_dataset(
            "/entry/data/data",
            data=np.ones((frames, *frame), "uint16"),
            chunks=(1, *frame),
            maxshape=(None, *frame),
        )
        f.create_dataset("/entry/keys/key_0", data=np.ones(frames, "i8"), maxshape=(None,))
        f.create_dataset("/entry/finished", data=1)
    buffer_bytes = 20 * 100 * 100 * 2
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        it = LiveDataChunkIterator(
            f["/entry/data/data"],
            chunk_shape=(5, *frame),
            buffer_shape=(20, *frame),
        )
        tracemalloc.start()
        try:
            total = 0
            for chunk in it:  # a consumer that writes each chunk and lets it go
                total += int(chunk.data.sum())
                del chunk
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == frames * 100 * 100
    assert peak < buffer_bytes + 200_000  # one buffer, read into again and again


def test_max_latency_holds_against_a_writer_that_never_pauses(simulated_writer, fake_clock):
    # One frame every 0.5 ms from t = 2 s, a buffer of 100,000 frames, max_latency_s=0.5: the
    # first chunks must come 0.5 s after the first frame completed (not 0.5 s after the start,
    # and not when the buffer is full), although the frontier moves on every poll.
    writer = simulated_writer(scan_shape=(100_000,), frame_shape=(2,), data_chunks=(10, 2))
    follower = KeyFollower(
        writer.keys, 5.0, writer.finished, clock=fake_clock, sleep=fake_clock.sleep
    )

    def write_one():
        write(writer, 1)
        if writer.frames_keyed < 3000:
            fake_clock.after(0.0005, write_one)

    fake_clock.at(2.0, write_one)
    it = LiveDataChunkIterator(
        writer.data,
        follower=follower,
        chunk_shape=(10, 2),
        buffer_shape=(100_000, 2),
        max_latency_s=0.5,
        clock=fake_clock,
        sleep=fake_clock.sleep,
    )
    first = next(it)
    released = fake_clock()
    assert 2.5 <= released <= 2.5 + 0.01  # the latency, plus a few polls
    rows = first.selection[0]
    assert rows.start == 0
    assert 990 <= rows.stop <= 1020  # the frames complete by then, inside a chunk
    np.testing.assert_array_equal(
        first.data, np.stack([frame_values(i, (2,), "uint16") for i in range(rows.stop)])
    )
    fake_clock.sleep(0.3)  # the consumer is busy; the oldest waiting frame keeps waiting
    second = next(it)  # so the next release is one latency after that frame completed
    assert second.selection[0].start == rows.stop
    assert fake_clock() - released <= 0.5 + 0.01


def test_a_grid_split_along_its_inner_axis_hands_out_every_complete_frame_at_a_stop(tmp_path):
    # Scan 3x4, frames 0-4 complete and the writer finished; buffers of 2x2 points split each
    # row band in two: the second box of the first band (frames 2, 3) must not be dropped.
    path = tmp_path / "g.h5"
    keys = np.zeros((3, 4), "i8")
    keys.flat[:5] = 1
    with h5py.File(path, "w", libver="latest") as f:
        data = np.stack([frame_values(i, (2,), "uint16") for i in range(12)]).reshape(3, 4, 2)
        f.create_dataset("/entry/data/data", data=data, chunks=(1, 2, 2), maxshape=(None, 4, 2))
        f.create_dataset("/entry/keys/key_0", data=keys, maxshape=(None, 4), chunks=(1, 4))
        f.create_dataset("/entry/finished", data=1)
    with h5py.File(path, "r", libver="latest", swmr=True) as f:
        it = LiveDataChunkIterator(
            f["/entry/data/data"], chunk_shape=(1, 2, 2), buffer_shape=(2, 2, 2), timeout=1
        )
        chunks = list(it)
    frames = sorted(
        int(np.ravel_multi_index((r, c), (3, 4)))
        for chunk in chunks
        for r in range(chunk.selection[0].start, chunk.selection[0].stop)
        for c in range(chunk.selection[1].start, chunk.selection[1].stop)
    )
    assert frames == [0, 1, 2, 3, 4]
    for chunk in chunks:
        np.testing.assert_array_equal(chunk.data, data[chunk.selection])


@pytest.mark.live
def test_a_known_length_writer_that_crashes_leaves_no_rows_of_fill_values(writer_process, tmp_path):
    process = writer_process(scan_shape=(20,), frame_shape=(2,), presized=True, crash_after=7)
    with LiveDataChunkIterator(
        process.path, "/entry/data/data", chunk_shape=(2, 2), buffer_shape=(4, 2), timeout=1
    ) as it:
        assert it.maxshape == (20, 2)
        with h5py.File(tmp_path / "out.h5", "w") as out:
            copy = fill(it, "copy", out)
            assert copy.maxshape == (20, 2)
            np.testing.assert_array_equal(
                copy[...], np.stack([frame_values(i, (2,), "uint16") for i in range(7)])
            )
        assert it.stop_reason == "timeout"
    assert process.wait() != 0


def test_start_row_resumes_on_a_chunk_boundary(tmp_path):
    data = complete_file(tmp_path / "s.h5", (23,), (4, 5))
    with h5py.File(tmp_path / "s.h5", "r", libver="latest", swmr=True) as f:
        shapes = {"chunk_shape": (3, 4, 5), "buffer_shape": (6, 4, 5)}
        it = LiveDataChunkIterator(f["/entry/data/data"], start_row=9, **shapes)
        chunks = list(it)
        assert [c.selection[0] for c in chunks] == [slice(9, 15), slice(15, 21), slice(21, 23)]
        np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), data[9:])
        assert it.frames_done == 14
        del it  # its follower holds the keys: one handle per dataset
        with pytest.raises(ValueError, match=r"start_row must be .* \(a multiple of 3\), got 4"):
            LiveDataChunkIterator(f["/entry/data/data"], start_row=4, **shapes)
