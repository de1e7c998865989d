"""h5live.utils against swmr_tools.utils: the same results, and its bugs fixed."""

from __future__ import annotations

import itertools
import logging

import h5py
import numpy as np
import pytest
from swmr_tools import utils as swmr_utils

from h5live import utils

SHAPES = [(7,), (3, 4), (2, 3, 4), (3, 1, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize(
    "name", ["get_position", "get_position_snake", "get_position_snake_row", "get_row_slice"]
)
def test_positions_are_those_of_swmr_tools(name, shape):
    ours, theirs = getattr(utils, name), getattr(swmr_utils, name)
    full = (*shape, 5)  # a frame dim after the scan dims
    for index in range(int(np.prod(shape))):
        assert ours(index, full, len(shape)) == theirs(index, full, len(shape))


def test_snake_rows_turn_around():
    assert [utils.get_position_snake(i, (2, 3), 2) for i in range(6)] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 2),
        (1, 1),
        (1, 0),
    ]


def test_position_outside_the_scan_names_it():
    with pytest.raises(ValueError, match=r"frame index 12 is outside a scan of shape \(3, 4\)"):
        utils.get_position(12, (3, 4, 9), 2)


@pytest.mark.parametrize("snake", [False, True], ids=["raster", "snake"])
def test_convert_stack_to_grid_is_that_of_swmr_tools(snake):
    for index in range(12):
        slices = [slice(index, index + 1), slice(0, 5)]
        assert utils.convert_stack_to_grid(
            slices, (3, 4), snake
        ) == swmr_utils.convert_stack_to_grid(slices, (3, 4), snake)


@pytest.mark.parametrize(
    "result", [np.float64(2.5), np.arange(3.0), np.ones((2, 2))], ids=["scalar", "vector", "image"]
)
def test_create_and_append_like_swmr_tools(tmp_path, result):
    outputs = {}
    for name, module in (("ours", utils), ("theirs", swmr_utils)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            dataset = module.create_dataset(result, (2, 3), f, "r")
            for index in range(1, 6):
                where = tuple(slice(p, p + 1) for p in np.unravel_index(index, (2, 3)))
                module.append_data(result * index, where, dataset)
            outputs[name] = (dataset[...], dataset.chunks, dataset.maxshape)
    np.testing.assert_array_equal(outputs["ours"][0], outputs["theirs"][0])
    assert outputs["ours"][1:] == outputs["theirs"][1:]


def test_append_accepts_list_slices_and_grows_every_axis(tmp_path):
    # convert_stack_to_grid returns a list; swmr_tools' append_data adds it to a tuple.
    slices = utils.convert_stack_to_grid([slice(9, 10)], (2, 5))
    with h5py.File(tmp_path / "r.h5", "w") as f:
        dataset = f.create_dataset("r", shape=(1, 3), maxshape=(None, None), dtype=int)
        utils.append_data(np.int64(7), slices, dataset)
        assert dataset.shape == (2, 5)
        assert dataset[1, 4] == 7
        with pytest.raises(TypeError, match="can only concatenate list"):
            swmr_utils.append_data(np.int64(7), slices, dataset)


def test_create_dataset_accepts_a_list_scan_maxshape(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        assert utils.create_dataset(np.zeros(4), [None, 3], f, "r").maxshape == (None, 3, 4)


def test_append_data_of_the_wrong_shape_is_explained(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        dataset = utils.create_dataset(np.zeros(4), (None,), f, "r")
        with pytest.raises(ValueError, match=r"shape \(2, 2, 2\).*'/r'"):
            utils.append_data(np.zeros((2, 2, 2)), (slice(1, 2),), dataset)


def test_check_file_readable_takes_one_path_or_several(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w", libver="latest") as f:
        f["a/b"] = 1
        f["c"] = 2
    assert utils.check_file_readable(str(tmp_path / "f.h5"), "a/b")
    assert utils.check_file_readable(str(tmp_path / "f.h5"), ["a/b", "c"])


def test_check_file_readable_gives_up_after_the_timeout(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert not utils.check_file_readable(str(tmp_path / "missing.h5"), ["a"], timeout=0.05)
    assert "missing.h5" in caplog.text


def test_nexus_groups_and_axes_are_copied(tmp_path):
    with h5py.File(tmp_path / "n.h5", "w") as f:
        entry = utils.create_nxentry(f, "entry")
        source = utils.create_nxdata(entry, "data")
        source["x"] = np.arange(3)
        source.attrs["axes"] = ["x", ".", "."]
        source.attrs["x_indices"] = 0
        out = utils.create_nxdata(entry, "result", default=False)
        utils.copy_nexus_axes(source, out, 1, frame_axes=["."])
        assert f.attrs["default"] == "entry"
        assert entry.attrs["default"] == "data"
        assert entry["data"].attrs["NX_class"] == "NXdata"
        assert list(out.attrs["axes"]) == ["x", "."]
        assert out.attrs["x_indices"] == 0
        np.testing.assert_array_equal(out["x"][...], np.arange(3))


def test_refresh_dataset_ignores_arrays():
    utils.refresh_dataset(np.zeros(3))  # no refresh method: nothing to do


def test_every_swmr_tools_util_exists():
    public = {
        n for n in dir(swmr_utils) if not n.startswith("_") and callable(getattr(swmr_utils, n))
    }
    assert public - {"h5py", "np", "logging", "time"} <= set(utils.__all__)
    assert list(itertools.chain(utils.__all__)) == sorted(utils.__all__)
