"""H5LiveGenerator: h5flow's generator contract over a live source, against a real writer."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from h5live import sum_frames
from h5live.h5flow import H5FLOW_AVAILABLE, H5LiveGenerator
from h5live.testing import frame_values

pytestmark = pytest.mark.live  # real writer processes


class DataManager:
    """The part of h5flow's H5FlowDataManager a generator uses, on a real HDF5 file, recording
    every call."""

    def __init__(self, path):
        self.filepath = os.fspath(path)
        self.fh = h5py.File(self.filepath, "a", libver="latest")
        self.calls = []

    def create_dset(self, dataset_name, dtype):
        self.calls.append(("create_dset", dataset_name, np.dtype(dtype)))
        path = f"{dataset_name}/data"
        if path not in self.fh:
            self.fh.create_dataset(path, (0,), maxshape=(None,), dtype=dtype)

    def set_attrs(self, name, **attrs):
        self.calls.append(("set_attrs", name, sorted(attrs)))
        if name not in self.fh:
            self.fh.create_group(name)
        for key, value in attrs.items():
            self.fh[name].attrs[key] = value

    def get_dset(self, dataset_name):
        return self.fh[f"{dataset_name}/data"]

    def reserve_data(self, dataset_name, spec):
        self.calls.append(("reserve_data", dataset_name, spec))
        dset = self.get_dset(dataset_name)
        length = len(dset)
        dset.resize((length + spec,))
        return slice(length, length + spec)

    def write_data(self, dataset_name, spec, data):
        self.calls.append(("write_data", dataset_name, spec, len(data)))
        self.get_dset(dataset_name)[spec] = data

    def close_file(self):
        self.fh.close()


@pytest.fixture
def manager(tmp_path):
    manager = DataManager(tmp_path / "flow.h5")
    yield manager
    manager.close_file()


def generator_for(path, manager, **params):
    params.setdefault("timeout", 5.0)
    return H5LiveGenerator(
        classname="H5LiveGenerator",
        dset_name="live/frames",
        data_manager=manager,
        input_filename=path,
        **params,
    )


def run(generator):
    """Drive the generator as h5flow's manager does; return the slices, then one more next()."""
    generator.init()
    slices = list(generator)  # iteration stops at EMPTY, as in h5flow
    after = generator.next()
    generator.finish()
    return slices, after


def expected_frames(indices, frame_shape, dtype="uint16"):
    return np.stack([frame_values(i, frame_shape, dtype) for i in indices])


def check_contiguous(slices, start, chunk_size):
    assert slices, "no slice delivered"
    assert slices[0].start == 0
    for before, after in itertools.pairwise(slices):
        assert after.start == before.stop
    assert all(0 < s.stop - s.start <= chunk_size for s in slices)


# ---------------------------------------------------------------------- live contract


def test_every_frame_once_in_order_then_empty(writer_process, manager):
    process = writer_process(scan_shape=(300,), frame_shape=(4, 3), frame_rate_hz=3000)
    generator = generator_for(process.path, manager, chunk_size=16)
    slices, after = run(generator)
    process.wait()

    check_contiguous(slices, 0, 16)
    assert slices[-1].stop == 300
    assert after == H5LiveGenerator.EMPTY
    rows = manager.get_dset("live/frames")[:]
    np.testing.assert_array_equal(rows["index"], np.arange(300))
    np.testing.assert_array_equal(rows["frame"], expected_frames(range(300), (4, 3)))
    assert generator.stop_reason == "finished"
    attrs = manager.fh["live/frames"].attrs
    assert (attrs["frames_delivered"], attrs["stop_reason"]) == (300, "finished")
    assert attrs["data_path"] == "/entry/data/data"


def test_each_slice_is_reserved_then_written_through_the_data_manager(writer_process, manager):
    process = writer_process(scan_shape=(60,), frame_shape=(2,), frame_rate_hz=2000)
    slices, _ = run(generator_for(process.path, manager, chunk_size=8))
    process.wait()

    moves = [c for c in manager.calls if c[0] in ("reserve_data", "write_data")]
    assert len(moves) == 2 * len(slices)
    for (reserve, write), returned in zip(
        zip(moves[::2], moves[1::2], strict=True), slices, strict=True
    ):
        assert reserve[0] == "reserve_data"
        assert write[:3] == ("write_data", "live/frames", returned)
        assert reserve[2] == write[3] == returned.stop - returned.start
    created = [c for c in manager.calls if c[0] == "create_dset"]
    assert created == [("create_dset", "live/frames", manager.get_dset("live/frames").dtype)]


def test_grid_scan_frames_in_flat_order(writer_process, manager):
    process = writer_process(scan_shape=(6, 7), frame_shape=(3,), presized=True)
    slices, _ = run(generator_for(process.path, manager, chunk_size=10))
    process.wait()

    check_contiguous(slices, 0, 10)
    rows = manager.get_dset("live/frames")[:]
    np.testing.assert_array_equal(rows["index"], np.arange(42))
    np.testing.assert_array_equal(rows["frame"], expected_frames(range(42), (3,)))
    assert generator_stop(manager) == "complete"


def generator_stop(manager):
    return manager.fh["live/frames"].attrs["stop_reason"]


def test_start_and_end_position_are_honoured_while_the_writer_still_writes(writer_process, manager):
    # The writer holds before frame 150 until go(): the generator must stop at 120 by itself.
    process = writer_process(scan_shape=(200,), frame_shape=(2,), hold_at=150)
    generator = generator_for(
        process.path, manager, chunk_size=32, start_position=50, end_position=120
    )
    try:
        slices, after = run(generator)
    finally:
        process.go()
        process.wait()

    assert generator.stop_reason == "end_position"
    assert after == H5LiveGenerator.EMPTY
    check_contiguous(slices, 0, 32)
    rows = manager.get_dset("live/frames")[:]
    np.testing.assert_array_equal(rows["index"], np.arange(50, 120))
    np.testing.assert_array_equal(rows["frame"], expected_frames(range(50, 120), (2,)))


def test_idle_timeout_ends_with_every_complete_frame(writer_process, manager):
    process = writer_process(scan_shape=(80,), frame_shape=(2,), finished=False)
    process.wait()  # all 80 frames keyed, and no finished flag will ever come
    generator = generator_for(process.path, manager, chunk_size=1000, timeout=0.3)
    slices, after = run(generator)

    assert generator.stop_reason == "timeout"
    assert after == H5LiveGenerator.EMPTY
    assert slices == [slice(0, 80)]


def test_nothing_is_delivered_before_its_keys_are_set(writer_process, manager):
    # Frame 40's key stays unset while the writer holds before frame 60: the data of frames
    # 40..59 is on disk (and their other keys set), but none may be delivered until it is.
    process = writer_process(
        scan_shape=(120,), frame_shape=(2,), gaps=(40,), gap_fill_after=30, hold_at=60
    )
    generator = generator_for(process.path, manager, chunk_size=1000)
    generator.init()
    try:
        before = [generator.next()]
        while before[-1].stop < 40:
            assert before[-1] != H5LiveGenerator.EMPTY, generator.stop_reason
            before.append(generator.next())
        assert before[-1].stop == 40
    finally:
        process.go()
    after = list(generator)  # the gap is filled once frame 70 is keyed
    generator.finish()
    process.wait()

    check_contiguous(before + after, 0, 1000)
    rows = manager.get_dset("live/frames")[:]
    np.testing.assert_array_equal(rows["index"], np.arange(120))
    np.testing.assert_array_equal(rows["frame"], expected_frames(range(120), (2,)))


def test_a_key_never_set_stops_delivery_before_it(writer_process, manager):
    process = writer_process(scan_shape=(50,), frame_shape=(2,), gaps=(20,))
    process.wait()  # frames 0..49 written, frame 20's key never set, finished set
    generator = generator_for(process.path, manager)
    slices, _ = run(generator)

    assert slices == [slice(0, 20)]
    assert generator.stop_reason == "finished"


def test_stages_reduce_frames_before_they_are_written(writer_process, manager):
    process = writer_process(scan_shape=(30,), frame_shape=(4, 4))
    generator = generator_for(process.path, manager, stages=[sum_frames()])
    run(generator)
    process.wait()

    rows = manager.get_dset("live/frames")[:]
    assert rows.dtype == np.dtype([("index", "<i8"), ("frame", "<u8")])
    np.testing.assert_array_equal(
        rows["frame"], expected_frames(range(30), (4, 4)).sum(axis=(1, 2))
    )


# ---------------------------------------------------------------------- interface


def test_the_output_is_h5flows_table_layout(writer_process, manager):
    process = writer_process(scan_shape=(5,), frame_shape=(3, 2))
    process.wait()
    generator = generator_for(process.path, manager)
    generator.init()
    generator.close()
    dset = manager.get_dset("live/frames")
    assert dset.ndim == 1
    assert dset.maxshape == (None,)
    assert dset.dtype == np.dtype([("index", "<i8"), ("frame", "<u2", (3, 2))])
    assert generator.next() == H5LiveGenerator.EMPTY  # closed: no more frames


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_filename": None}, "needs the live source"),
        ({"dset_name": None}, "needs dset_name"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"start_position": -1}, "start_position"),
        ({"start_position": 10, "end_position": 5}, "end_position must be an integer >= 10"),
        ({"chunksize": 10}, r"unknown parameter\(s\) \['chunksize'\]"),
    ],
    ids=["no-source", "no-dset-name", "chunk-size", "start", "end-before-start", "typo"],
)
def test_bad_configuration_is_refused(tmp_path, kwargs, match):
    options = {
        "classname": "H5LiveGenerator",
        "dset_name": "live/frames",
        "data_manager": None,
        "input_filename": tmp_path / "scan.h5",
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        H5LiveGenerator(**options)


def test_next_before_init_is_an_error(tmp_path):
    generator = generator_for(tmp_path / "scan.h5", None)
    with pytest.raises(RuntimeError, match="init"):
        generator.next()


def test_without_h5flow_the_generator_has_its_interface():
    assert not H5FLOW_AVAILABLE  # h5flow is not on PyPI, so not in the test environment
    assert slice(-1, -1, None) == H5LiveGenerator.EMPTY
    for name in ("init", "next", "finish", "__iter__", "__next__"):
        assert callable(getattr(H5LiveGenerator, name))


FAKE_H5FLOW = """
import os


class H5FlowGenerator:
    EMPTY = slice(-1, -1)
    class_version = "0.0.0"

    def __init__(self, classname, dset_name, data_manager, input_filename=None,
                 start_position=None, end_position=None, **params):
        self.classname = classname
        self.dset_name = dset_name
        self.data_manager = data_manager
        self.input_filename = input_filename
        self.start_position = start_position
        self.end_position = end_position
        self.comm, self.rank, self.size = None, 0, int(os.environ.get("FAKE_MPI_SIZE", "1"))
"""

FIND_CLASS = """
import importlib.util, sys
from pkgutil import iter_modules
import h5flow.core
# h5flow's get_class: import every module of ./h5flow_modules and take the attribute by name
for finder, name, _ in iter_modules(["h5flow_modules"]):
    spec = finder.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = getattr(module, "H5LiveGenerator")
import h5live.h5flow
assert h5live.h5flow.H5FLOW_AVAILABLE
assert issubclass(found, h5flow.core.H5FlowGenerator)
generator = found(classname="H5LiveGenerator", dset_name="a", data_manager=None,
                  input_filename="scan.h5", chunk_size=4)
assert (generator.chunk_size, generator.EMPTY) == (4, slice(-1, -1))
import os
os.environ["FAKE_MPI_SIZE"] = "2"
try:
    found(classname="H5LiveGenerator", dset_name="a", data_manager=None, input_filename="x")
except ValueError as exc:
    assert "--nompi" in str(exc)
else:
    raise AssertionError("two MPI ranks were accepted")
print("ok")
"""


def test_with_h5flow_it_subclasses_h5flows_generator_and_is_found_by_name(tmp_path):
    # A stand-in h5flow package with the seed's H5FlowGenerator, in a fresh interpreter.
    (tmp_path / "h5flow" / "core").mkdir(parents=True)
    (tmp_path / "h5flow" / "__init__.py").write_text("")
    (tmp_path / "h5flow" / "core" / "__init__.py").write_text(textwrap.dedent(FAKE_H5FLOW))
    (tmp_path / "h5flow_modules").mkdir()
    (tmp_path / "h5flow_modules" / "h5live_source.py").write_text(
        "from h5live.h5flow import H5LiveGenerator\n"
    )
    env = {**os.environ, "PYTHONPATH": os.fspath(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", FIND_CLASS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip() == "ok", result.stderr
