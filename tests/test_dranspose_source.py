"""h5live.dranspose.H5LiveSource through dranspose's own replay, on live writer processes.

The worker and reducer below are also what the distributed test runs in its dranspose
processes (``test_dranspose_source:FrameWorker``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (reads the compressed datasets)
import numpy as np
import pytest
from dranspose.event import InternalWorkerMessage, StreamData
from dranspose.replay import replay

from h5live.dranspose import H5LiveSource, load_config, parse_stins
from h5live.testing import frame_values

RESULTS_ENV = "H5LIVE_TEST_RESULTS"


class FrameWorker:
    """Reduces every STINS message to what the tests check: kind, frame, compression, sum."""

    def __init__(self, parameters: Any = None, context: Any = None, state: Any = None) -> None:
        self.name = getattr(state, "name", "?")

    def process_event(self, event: Any, parameters: Any = None, tick: bool = False) -> Any:
        streams = {}
        for name, data in event.streams.items():
            packet = parse_stins(data)
            seen: dict[str, Any] = {"htype": packet.htype, "msg_number": packet.msg_number}
            if packet.htype == "image":
                seen.update(
                    frame=packet.frame,
                    compression=packet.compression,
                    shape=list(packet.data.shape),
                    sum=int(packet.data.sum(dtype=np.int64)),
                )
            streams[name] = seen
        return {"event": event.event_number, "worker": str(self.name), "streams": streams}


class FrameReducer:
    """Keeps every result; with $H5LIVE_TEST_RESULTS set, writes them there at the end."""

    def __init__(self, parameters: Any = None, context: Any = None, state: Any = None) -> None:
        self.results: list[dict[str, Any]] = []
        self.publish: dict[str, Any] = {}

    def process_result(self, result: Any, parameters: Any = None) -> None:
        self.results.append(result.payload)

    def finish(self, parameters: Any = None) -> None:
        path = os.environ.get(RESULTS_ENV)
        if path:
            Path(path).write_text(json.dumps(self.results))


def frame_sum(index: int, frame_shape: tuple[int, ...], dtype: str = "uint16") -> int:
    return int(frame_values(index, frame_shape, dtype).sum(dtype=np.int64))


def check_stream(results: list[dict[str, Any]], name: str, n_frames: int, shape, compression):
    """Every frame of ``name`` reached the reducer once, right, in event ``index + 1``,
    between a header in event 0 and an end in the last event."""
    images = {}
    kinds = {}
    for result in results:
        seen = result["streams"].get(name)
        if seen is None:
            continue
        kinds.setdefault(seen["htype"], set()).add(result["event"])
        if seen["htype"] == "image":
            assert seen["frame"] not in images, f"frame {seen['frame']} of {name} twice"
            images[seen["frame"]] = seen
            assert result["event"] == seen["frame"] + 1
            assert seen["msg_number"] == seen["frame"] + 1
    assert sorted(images) == list(range(n_frames))
    assert kinds["header"] == {0}
    last = max(r["event"] for r in results)
    assert kinds["series_end"] == {last}
    for index, seen in images.items():
        assert seen["sum"] == frame_sum(index, shape), f"frame {index} of {name}"
        assert seen["shape"] == list(shape)
        assert seen["compression"] == compression


def run_replay(monkeypatch, config: dict[str, Any]) -> list[dict[str, Any]]:
    """dranspose's replay, as ``dranspose replay -s h5live.dranspose:H5LiveSource`` runs it
    (the source made without arguments, configured by the environment)."""
    monkeypatch.setenv("H5LIVE_DRANSPOSE_CONFIG", json.dumps(config))
    replay(
        "test_dranspose_source:FrameWorker",
        "test_dranspose_source:FrameReducer",
        None,
        "h5live.dranspose:H5LiveSource",
        None,
        nworkers=2,
    )
    import dranspose.replay

    return list(dranspose.replay.reducer.results)


# ---------------------------------------------------------------- 1. the replay source


@pytest.mark.live
@pytest.mark.parametrize("presized", [False, True], ids=["growing", "presized"])
def test_replay_of_a_live_file_delivers_every_frame_with_dranspose_event_numbers(
    writer_process, monkeypatch, presized
):
    writer = writer_process(
        scan_shape=(60,), frame_shape=(16, 12), frame_rate_hz=1000, presized=presized, hold_at=0
    )
    threading.Timer(0.2, writer.go).start()  # frames land while the replay runs
    results = run_replay(monkeypatch, {"streams": {"det": writer.path}})
    writer.wait()
    check_stream(results, "det", 60, (16, 12), "none")
    assert max(r["event"] for r in results) == 61
    # dranspose sends event 0 to every worker: both saw a header
    assert len([r for r in results if r["event"] == 0]) == 2


@pytest.mark.live
def test_replay_of_a_grid_scan_numbers_frames_by_flat_index(writer_process, monkeypatch):
    writer = writer_process(scan_shape=(4, 5), frame_shape=(6, 7), frame_rate_hz=500)
    results = run_replay(monkeypatch, {"streams": {"grid": writer.path}})
    writer.wait()
    check_stream(results, "grid", 20, (6, 7), "none")


@pytest.mark.live
def test_frames_are_yielded_while_the_writer_still_writes(writer_process):
    writer = writer_process(scan_shape=(12,), frame_shape=(4, 4), hold_at=5)
    events = H5LiveSource({"streams": {"det": writer.path}}).events()
    # the writer waits after frame 4: the header and frames 0..4 must come out now
    received = [next(events) for _ in range(6)]
    assert [e.event_number for e in received] == [0, 1, 2, 3, 4, 5]
    assert writer.returncode is None  # still held
    writer.go()
    rest = list(events)
    writer.wait()
    assert [e.event_number for e in rest] == [*range(6, 13), 13]
    assert json.loads(rest[-1].streams["det"].frames[0])["htype"] == "series_end"


@pytest.mark.live
def test_streams_of_different_lengths_all_end_in_one_generator(writer_process, monkeypatch):
    short = writer_process("short.h5", scan_shape=(7,), frame_shape=(3, 3), frame_rate_hz=500)
    long = writer_process("long.h5", scan_shape=(25,), frame_shape=(5, 2), frame_rate_hz=500)
    config = {"streams": {"short": short.path, "long": long.path}}
    assert len(H5LiveSource(config).get_source_generators()) == 1
    results = run_replay(monkeypatch, config)
    short.wait()
    long.wait()
    check_stream(results, "short", 7, (3, 3), "none")
    check_stream(results, "long", 25, (5, 2), "none")
    assert max(r["event"] for r in results) == 26


@pytest.mark.live
def test_two_datasets_of_one_file_share_one_follower(writer_process, monkeypatch):
    writer = writer_process(scan_shape=(30,), frame_shape=(4, 4), timestamps=True)
    writer.wait()
    config = {
        "streams": {
            "det": writer.path,
            "time": {"path": writer.path, "dataset": "/entry/flush_time"},
        }
    }
    results = run_replay(monkeypatch, config)
    check_stream(results, "det", 30, (4, 4), "none")
    with h5py.File(writer.path, "r") as f:
        flushed = f["/entry/flush_time"][...]
    events = H5LiveSource(config).events()
    next(events)
    first = next(events).streams["time"].frames
    assert json.loads(first[0])["shape"] == []
    assert np.frombuffer(first[1], dtype="f8")[0] == flushed[0]


def header_messages(name: str, n: int):
    """``n`` events of one stream (headers will do: the worker only parses them)."""
    for event in range(n):
        frames = [json.dumps({"htype": "header", "msg_number": 0, "filename": ""}).encode()]
        yield InternalWorkerMessage(
            event_number=event, streams={name: StreamData(typ="STINS", frames=frames)}
        )


class TwoGenerators:
    """A replay source with one generator per stream, the layout H5LiveSource avoids."""

    def get_source_generators(self):
        return [header_messages("short", 2), header_messages("long", 5)]


def test_dranspose_replay_stops_at_the_first_exhausted_generator():
    """Why H5LiveSource returns one generator: dranspose drops what other generators hold."""
    replay(
        "test_dranspose_source:FrameWorker",
        "test_dranspose_source:FrameReducer",
        None,
        "test_dranspose_source:TwoGenerators",
        None,
        nworkers=1,
    )
    import dranspose.replay

    events = sorted({r["event"] for r in dranspose.replay.reducer.results})
    assert events == [0, 1]  # events 2..4 of "long" were dropped


def test_the_source_is_configured_by_the_environment(monkeypatch, tmp_path):
    path = tmp_path / "streams.yaml"
    path.write_text("timeout_s: 3\nstreams:\n  eiger: scan.h5\n")
    monkeypatch.setenv("H5LIVE_DRANSPOSE_CONFIG", str(path))
    source = H5LiveSource()
    assert source.config.timeout_s == 3
    assert source.config.stream("eiger").dataset == "/entry/data/data"
    monkeypatch.delenv("H5LIVE_DRANSPOSE_CONFIG")
    with pytest.raises(ValueError, match="H5LIVE_DRANSPOSE_CONFIG is not set"):
        H5LiveSource()


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"streams": {}}, "no streams"),
        ({"stream": {"a": "x.h5"}}, "unknown configuration keys"),
        ({"streams": {"a": {"file": "x.h5"}}}, "must be a file path or a mapping with 'path'"),
        ({"streams": {"a:b": "x.h5"}}, "contains ':'"),
        ({"streams": {"a": "x.h5"}, "timeout_s": -1}, "timeout_s"),
    ],
    ids=["empty", "typo", "no-path", "colon", "negative-timeout"],
)
def test_a_bad_configuration_says_what_is_wrong(config, match):
    with pytest.raises(ValueError, match=match):
        load_config(config)


# ---------------------------------------------------------------- 2. compressed frames


def first_image(path: str, **options: Any) -> list[bytes]:
    events = H5LiveSource({"streams": {"det": path}, **options}).events()
    next(events)
    frames = next(events).streams["det"].frames
    events.close()
    return frames


@pytest.mark.live
def test_bitshuffle_lz4_frames_are_forwarded_as_stored(writer_process, monkeypatch):
    writer = writer_process(
        scan_shape=(40,), frame_shape=(32, 24), compression="bitshuffle", frame_rate_hz=1000
    )
    results = run_replay(monkeypatch, {"streams": {"det": writer.path}})
    writer.wait()
    check_stream(results, "det", 40, (32, 24), "bslz4")
    header, payload = first_image(writer.path)
    with h5py.File(writer.path, "r") as f:
        _, stored = f["/entry/data/data"].id.read_direct_chunk((0, 0, 0))
    assert json.loads(header)["compression"] == "bslz4"
    assert payload == stored  # not decoded and re-encoded: the chunk's bytes


@pytest.mark.live
def test_frames_are_decoded_when_asked_or_not_bslz4(writer_process):
    bslz4 = writer_process("bs.h5", scan_shape=(3,), frame_shape=(8, 8), compression="bitshuffle")
    lz4 = writer_process("lz4.h5", scan_shape=(3,), frame_shape=(8, 8), compression="lz4")
    bslz4.wait()
    lz4.wait()
    expected = frame_values(0, (8, 8), "uint16").tobytes()
    for frames in (first_image(bslz4.path, forward_compressed=False), first_image(lz4.path)):
        assert json.loads(frames[0])["compression"] == "none"
        assert frames[1] == expected
