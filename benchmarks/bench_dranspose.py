"""dranspose benchmark: frames/s from a live file to the reducer through ``dranspose replay``.

Two replay sources, side by side in one run, on the same simulated detector (a writer process
writing as fast as it can while the replay runs):

- ``h5live``: :class:`h5live.dranspose.H5LiveSource` as shipped (reads a window of the keys
  after the frontier; forwards bitshuffle-LZ4 chunks as stored).
- ``polling``: the swmr_tools pattern, :class:`PollingSource` below: every poll refreshes and
  reads every key dataset whole, then reads each new frame through h5py (decoded). It polls as
  often as h5live does (1 ms), so the difference is what a poll reads, not how long it sleeps.

Two cases: uncompressed frames with 3 keys pre-sized for a long scan (the scan planned for
``key_frames`` points, ``frames`` of them written), and bitshuffle-LZ4 frames with growing
keys. The figure is frames written / seconds from the writer's start to the reducer's last
result, the median over interleaved rounds, and the ratio h5live / polling.

Usage::

    python benchmarks/bench_dranspose.py            # full run: benchmarks/results/dranspose.*
    python benchmarks/bench_dranspose.py --quick    # smoke test (the test suite runs this)
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (reads bitshuffle-LZ4 frames)
import numpy as np
from dranspose.data.stream1 import Stream1Data, Stream1End, Stream1Start
from dranspose.event import InternalWorkerMessage, StreamData

from h5live.dranspose import load_config, parse_stins
from h5live.testing import WriterProcess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, machine_line, parse_args, pyplot, rotated, save_results

SOURCES = {"h5live": "h5live.dranspose:H5LiveSource", "polling": "bench_dranspose:PollingSource"}
POLL_INTERVAL_S = 0.001


class PollingSource:
    """A replay source in the swmr_tools pattern: each poll reads every key dataset whole.

    Configured as :class:`h5live.dranspose.H5LiveSource` is (``$H5LIVE_DRANSPOSE_CONFIG``, one
    stream, keys in ``/entry/keys``, finished flag ``/entry/finished``); yields the same events
    (frames decoded, ``compression="none"``).
    """

    def __init__(self) -> None:
        self.config = load_config()

    def get_source_generators(self) -> list[Iterator[InternalWorkerMessage]]:
        return [self.events()]

    def events(self) -> Iterator[InternalWorkerMessage]:
        stream = self.config.streams[0]

        def message(event: int, frames: list[bytes]) -> InternalWorkerMessage:
            data = StreamData(typ="STINS", frames=frames)
            return InternalWorkerMessage(event_number=event, streams={stream.name: data})

        with h5py.File(stream.path, "r", libver="latest", swmr=True) as f:
            keys = [f[f"/entry/keys/{name}"] for name in sorted(f["/entry/keys"])]
            data, finished = f[stream.dataset], f["/entry/finished"]
            start = Stream1Start(msg_number=0, filename=stream.path)
            yield message(0, [start.model_dump_json().encode()])
            index = 0
            done = False
            while True:
                for key in keys:
                    key.refresh()
                complete = np.logical_and.reduce([key[...].ravel() != 0 for key in keys])
                stop = int(np.argmin(complete)) if not complete.all() else complete.size
                if stop > index:
                    data.refresh()
                    for i in range(index, stop):
                        frame = data[i]
                        header = Stream1Data(
                            msg_number=i + 1,
                            frame=i,
                            shape=list(frame.shape),
                            type=str(frame.dtype),
                            compression="none",
                        )
                        yield message(i + 1, [header.model_dump_json().encode(), frame.tobytes()])
                    index = stop
                elif done:
                    break
                else:
                    finished.refresh()
                    done = bool(finished[()])  # one more key read after the flag
                    if not done:
                        time.sleep(POLL_INTERVAL_S)
            end = Stream1End(msg_number=index + 1)
            yield message(index + 1, [end.model_dump_json().encode()])


class SumWorker:
    """Decodes each frame (none or bslz4) and sums it: a minimal analysis."""

    def __init__(self, parameters: Any = None, context: Any = None, state: Any = None) -> None:
        pass

    def process_event(self, event: Any, parameters: Any = None, tick: bool = False) -> Any:
        packet = parse_stins(event.streams["det"])
        if packet.htype != "image":
            return None
        return (packet.frame, int(packet.data.sum(dtype=np.int64)))


class TimingReducer:
    """Counts frames and notes when the last one arrived."""

    def __init__(self, parameters: Any = None, context: Any = None, state: Any = None) -> None:
        self.frames = 0
        self.last = 0.0
        self.publish: dict[str, Any] = {}

    def process_result(self, result: Any, parameters: Any = None) -> None:
        self.frames += 1
        self.last = time.perf_counter()


def replay_once(
    source: str, path: Path, case: dict[str, Any], frames: int, live: bool
) -> dict[str, float]:
    """Replay the writer's file with ``source``: live (the writer starts 0.2 s after the
    replay), or once the file is complete; frames/s to the reducer, replay CPU per frame."""
    import dranspose.replay

    writer = WriterProcess(
        path,
        scan_shape=(case["key_frames"],),
        frame_shape=tuple(case["frame_shape"]),
        presized=case["presized"],
        n_keys=case["n_keys"],
        compression=case["compression"],
        stop_after=frames,
        finished_scalar=True,
        hold_at=0 if live else None,
    )
    with writer:
        writer.start()
        os.environ["H5LIVE_DRANSPOSE_CONFIG"] = json.dumps({"streams": {"det": str(path)}})
        started: list[float] = []

        def go() -> None:
            started.append(time.perf_counter())
            writer.go()

        if live:
            threading.Timer(0.2, go).start()  # the replay waits for frames when they start
        else:
            writer.wait()
            started.append(time.perf_counter())
        cpu = time.thread_time()  # replay runs source, workers and reducer on this thread
        dranspose.replay.replay(
            "bench_dranspose:SumWorker",
            "bench_dranspose:TimingReducer",
            None,
            SOURCES[source],
            None,
        )
        cpu = time.thread_time() - cpu
        writer.wait()
        reducer = dranspose.replay.reducer
    path.unlink()
    if reducer.frames != frames:
        raise RuntimeError(f"{source}: {reducer.frames} frames reached the reducer, not {frames}")
    writer_rate = (writer.summary or {}).get("rate_hz", float("nan"))
    return {
        "fps": frames / (reducer.last - started[0]),
        "writer_fps": writer_rate,
        "cpu_us": cpu / frames * 1e6,
    }


CASES = [
    {
        "name": "uncompressed, 3 pre-sized keys",
        "compression": None,
        "presized": True,
        "n_keys": 3,
        "frame_shape": [64, 64],
    },
    {
        "name": "bitshuffle-LZ4, 1 growing key",
        "compression": "bitshuffle",
        "presized": False,
        "n_keys": 1,
        "frame_shape": [256, 256],
    },
]


def run(config: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for live, case in [(live, case) for live in (True, False) for case in CASES]:
        case = {
            **case,
            "key_frames": config["key_frames"] if case["presized"] else config["frames"],
        }
        fps: dict[str, list[float]] = {name: [] for name in SOURCES}
        writer_fps: dict[str, list[float]] = {name: [] for name in SOURCES}
        cpu_us: dict[str, list[float]] = {name: [] for name in SOURCES}
        for round_ in range(config["rounds"]):
            for name in rotated(list(SOURCES), round_):
                path = tmp / f"{name}-{round_}.h5"
                got = replay_once(name, path, case, config["frames"], live)
                fps[name].append(got["fps"])
                writer_fps[name].append(got["writer_fps"])
                cpu_us[name].append(got["cpu_us"])
        row = {
            "mode": "live" if live else "complete file",
            "case": case["name"],
            "frames": config["frames"],
            "key_frames": case["key_frames"],
            "frame_shape": case["frame_shape"],
            **{f"{name}_fps": statistics.median(fps[name]) for name in SOURCES},
            **{f"{name}_rounds": [round(v, 1) for v in fps[name]] for name in SOURCES},
            **{f"{name}_writer_fps": statistics.median(writer_fps[name]) for name in SOURCES},
            **{f"{name}_cpu_us": statistics.median(cpu_us[name]) for name in SOURCES},
        }
        row["ratio"] = row["h5live_fps"] / row["polling_fps"]
        same_round = [a / b for a, b in zip(fps["h5live"], fps["polling"], strict=True)]
        row["same_round_ratios"] = [round(r, 2) for r in same_round]
        row["cpu_ratio"] = row["polling_cpu_us"] / row["h5live_cpu_us"]
        rows.append(row)
        print(
            f"{row['mode']:<13} {case['name']:<32} h5live {row['h5live_fps']:7.0f} frames/s  "
            f"polling {row['polling_fps']:7.0f} frames/s  ratio {row['ratio']:5.2f}x;  replay CPU "
            f"h5live {row['h5live_cpu_us']:5.0f} us/frame  polling {row['polling_cpu_us']:5.0f} "
            f"us/frame  ratio {row['cpu_ratio']:5.2f}x",
            flush=True,
        )
    return rows


def markdown(results: dict[str, Any], command: str) -> str:
    lines = [
        "## Live file to dranspose reducer (`bench_dranspose.py`)",
        "",
        f"Command: `{command}`  ",
        f"Run: {results['date']}; {machine_line(results['machine'])} "
        f"dranspose {results['dranspose']}.  ",
        "Data: `benchmarks/results/dranspose.json`, plot: `benchmarks/results/dranspose.png`.",
        "",
        "Frames/s to the reducer through `dranspose replay` (2 workers, each frame decoded "
        "and summed); medians of interleaved rounds "
        f"({results['config']['rounds']}). **live**: from the writer's start to the reducer's "
        "last result, the detector writing as fast as it can in another process (so its rate, "
        "shown, bounds both); **complete file**: the same file replayed once written, from the "
        "replay's start (what the source and workers can do). `polling` reads every key "
        "dataset whole on each poll and each frame through h5py (the swmr_tools pattern), "
        "polling every 1 ms as h5live does. Replay CPU: the replay thread's CPU time (source, "
        "workers and reducer) per frame.",
        "",
        "| mode | case | frames (of a scan of) | h5live (frames/s) | polling (frames/s) "
        "| h5live / polling | writer's rate, h5live / polling run (frames/s) "
        "| replay CPU h5live / polling (us/frame) | polling / h5live CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['mode']} | {r['case']}, {r['frame_shape'][0]}x{r['frame_shape'][1]} uint16 "
            f"| {r['frames']:,} ({r['key_frames']:,}) | {r['h5live_fps']:.0f} "
            f"| {r['polling_fps']:.0f} | {r['ratio']:.2f}x "
            f"| {r['h5live_writer_fps']:.0f} / {r['polling_writer_fps']:.0f} "
            f"| {r['h5live_cpu_us']:.0f} / {r['polling_cpu_us']:.0f} | {r['cpu_ratio']:.2f}x |"
        )
    lines += ["", "Rounds (frames/s):", ""]
    for r in results["rows"]:
        lines.append(
            f"- {r['mode']}, {r['case']}: h5live {r['h5live_rounds']}, "
            f"polling {r['polling_rounds']}; same-round h5live / polling "
            f"{r['same_round_ratios']}"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], png: Path) -> None:
    plt = pyplot()
    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["h5live_fps"] for r in rows], 0.4, label="h5live source")
    ax.bar(x + 0.2, [r["polling_fps"] for r in rows], 0.4, label="polling source")
    ax.set_xticks(x, [f"{r['mode']}\n{r['case']}" for r in rows], fontsize=7)
    ax.set_ylabel("frames/s to the reducer")
    ax.set_title("HDF5 file -> dranspose replay -> reducer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    if args.quick:
        config = {"frames": 100, "key_frames": 10**4, "rounds": 1}
    else:
        config = {"frames": 3000, "key_frames": 10**6, "rounds": 7}
    with tempfile.TemporaryDirectory(prefix="h5live-bench-") as tmp_name:
        rows = run(config, Path(tmp_name))
    if args.quick:
        return 0
    from importlib.metadata import version

    results = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "dranspose": version("dranspose"),
        "config": config,
        "rows": rows,
    }
    save_results("dranspose", results, args.out, argv, markdown, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
