"""A processing script written against swmr_tools 0.9; the tests run it unchanged with its
imports pointed at h5live and compare what it prints."""

import json
import sys

import h5py
import numpy as np
from swmr_tools import ChunkSource, DataSource, KeyFollower, RowKeyFollower, chunk_utils, utils
from swmr_tools.datasource import FrameReader, SliceDict


def norm(value):
    """Slices and numbers as plain JSON (swmr_tools gives numpy ints, h5live Python ints)."""
    if isinstance(value, slice):
        return [
            "slice",
            *(None if v is None else int(v) for v in (value.start, value.stop, value.step)),
        ]
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return None if value is None else int(value)


path = sys.argv[1]
rng = np.random.default_rng(5)
with h5py.File(path, "w", libver="latest") as f:
    f.create_dataset("keys", data=np.arange(1, 13).reshape(3, 4, 1, 1))
    f.create_dataset("data", data=rng.integers(0, 1000, size=(3, 4, 5, 6)))
    f.create_dataset("stack", data=rng.integers(0, 9, size=(14, 2, 3)), chunks=(4, 2, 3))
    f.create_dataset("finished", data=[1])

out = {}
with h5py.File(path, "r", libver="latest", swmr=True) as f, h5py.File(path + ".out", "w") as o:
    keys, data = [f["keys"]], {"/data": f["data"]}
    out["keys"] = list(KeyFollower(keys, timeout=0.1, finished_dataset=f["finished"]))

    rows = RowKeyFollower(keys, timeout=0.1)
    rows.check_datasets()
    out["rows"] = [norm(utils.get_row_slice(i, (3, 4), 2)) for i in rows]

    source = DataSource(keys, data, timeout=0.1, finished_dataset=f["finished"])
    result = None
    items = []
    for item in source:
        assert isinstance(item, SliceDict)
        total = item["/data"].sum(axis=(-1, -2)).squeeze()
        items.append([item.index, norm(item.slice_metadata), norm(item.maxshape), int(total)])
        if result is None:
            result = source.create_dataset(total, o, "total")
        else:
            source.append_data(total, item.slice_metadata, result)
    out["items"] = items
    out["result"] = result[...].tolist()
    out["finished"] = [source.is_scan_finished(), source.has_timed_out()]

    reader = FrameReader(f["data"], 2)
    frame, where = reader.read_frame(7)
    out["frame"] = [frame.shape, norm(where), int(frame.sum())]

    chunks = ChunkSource({"s": f["stack"]}, timeout=0.1, finished_dataset=f["finished"])
    out["chunks"] = [[c.index, c["s"].shape, int(c["s"].sum())] for c in chunks]

    grid = np.zeros((4, 5, 2, 3), dtype=f["stack"].dtype)
    stack = f["stack"][...]
    last = None
    for start in range(0, 20, 4):
        current = np.concatenate([stack, stack])[start : start + 4]
        chunk_utils.write_data(
            chunk_utils.get_slice_structure(start, 4, (4, 5), False), current, last, grid
        )
        last = current
    out["regrid"] = int((grid * np.arange(grid.size).reshape(grid.shape)).sum())

    out["utils"] = [
        norm(utils.get_position(10, (3, 4, 5), 2)),
        norm(utils.get_position_snake(6, (3, 4, 5), 2)),
        norm(utils.get_position_snake_row(5, (3, 4), 2)[0]),
        utils.get_position_snake_row(5, (3, 4), 2)[1],
        norm(utils.convert_stack_to_grid([slice(5, 6), slice(0, 3)], (3, 4), True)),
    ]

print(json.dumps(out, default=lambda o: o.tolist() if hasattr(o, "tolist") else int(o)))
