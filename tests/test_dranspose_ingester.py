"""h5live.dranspose.H5LiveIngester in dranspose's distributed mode, for real.

Every part is its own process, as in production: a redis server on a free loopback port,
dranspose's controller and reducer (uvicorn apps), two dranspose workers (``dranspose
worker``), h5live's ingester (``python -m h5live.dranspose``) and a simulated detector writing
the file live. The test posts a trigger map of one event per frame and checks that every frame
reached the reducer, decoded right.

redis-server must be installed (``apt-get install -y redis-server``; ``.ci/run`` installs it).
Without it the test fails and says so: it never skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from h5live.dranspose import H5LiveIngester, H5LiveIngesterSettings
from test_dranspose_source import RESULTS_ENV, check_stream

TESTS = Path(__file__).resolve().parent
STARTUP_S = 60.0  # bound on waiting for the services; the test asserts no timing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Services:
    """Processes started by one test, each logging to a file; all stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = (self.tmp_path / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            command,
            env={**os.environ, **env},
            cwd=self.tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def logs(self) -> str:
        parts = []
        for name, process in self.processes.items():
            text = (self.tmp_path / f"{name}.log").read_text(errors="replace")
            parts.append(f"----- {name} (exit code {process.poll()}) -----\n{text[-3000:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        dead = [name for name, p in self.processes.items() if p.poll() is not None]
        if dead:
            pytest.fail(f"dranspose processes {dead} exited early:\n{self.logs()}")

    def stop(self) -> None:
        """Stop the services, then redis (the first started), which they need to shut down."""
        processes = list(self.processes.values())
        for group in (processes[1:], processes[:1]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    started = Services(tmp_path)
    yield started
    started.stop()


@pytest.fixture
def redis_url(services: Services) -> str:
    """A redis server of this test's own, on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed, and dranspose's distributed mode needs it. Fix: "
            "`apt-get install -y redis-server` (what .ci/run does), or your platform's redis "
            "package, so that redis-server is on PATH."
        )
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    services.start("redis", [*command, "--appendonly", "no"], {})
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        services.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"redis-server did not answer on port {port}:\n{services.logs()}")
        time.sleep(0.05)


def http(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_until(
    what: str,
    services: Services,
    check: Callable[[], Any],
    timeout_s: float = STARTUP_S,
    explain: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        services.check_alive()
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError, OSError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            detail = ""
            if explain is not None:
                try:
                    detail = explain()
                except Exception as error:  # the explanation must not hide the timeout
                    detail = f"(no explanation: {error!r})"
            pytest.fail(f"timed out waiting for {what}:\n{detail}\n{services.logs()}")
        time.sleep(0.2)


def connected_to_reducer(services: Services, worker: str) -> bool:
    """Whether dranspose worker ``worker`` has its result socket to the reducer.

    A dranspose 0.2 worker learns the reducer's address by polling redis (``manage_receiver``:
    every second until it finds it) and, until then, drops its results silently while still
    telling the controller it has them. The controller then waits for those results forever
    and never finishes the trigger map. The worker logs this line once it has connected."""
    log = (services.tmp_path / f"{worker}.log").read_text(errors="replace")
    return "connected out_socket to reducer" in log


def explain_progress(controller: str, redis_url: str, mapping: str) -> str:
    """What the controller and redis know of a trigger map that did not finish: the progress,
    the events each worker completed, the results the reducer got, who finished."""
    import redis

    progress = http(f"{controller}/api/v1/progress")
    completed: dict[str, list[int]] = {}
    reduced: dict[str, list[int]] = {}
    finished: list[str] = []
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for _id, fields in client.xrange(f"dranspose:ready:{mapping}"):
            update = json.loads(fields["data"])
            who = update.get("worker") or update.get("ingester") or update["source"]
            if update["state"] == "finished":
                finished.append(f"{update['source']} {who}")
            elif update["source"] == "reducer":
                reduced.setdefault(who, []).append(update["completed"])
            else:
                completed.setdefault(who, []).extend(update["completed"])
        updates = [
            json.loads(f["data"]) for _id, f in client.xrange("dranspose:controller:updates")
        ]
    finally:
        client.close()
    lines = [f"progress: {progress}"]
    lines += [f"worker {w} completed events {sorted(e)}" for w, e in sorted(completed.items())]
    lines += [f"reducer got from {w} events {sorted(e)}" for w, e in sorted(reduced.items())]
    lines.append(f"finished: {finished}")
    lines.append(f"controller updates: {updates}")
    return "\n".join(lines)


@pytest.mark.live
def test_every_frame_reaches_the_reducer_through_the_distributed_ingester(
    services, redis_url, writer_process, tmp_path
):
    n_frames, shape = 40, (32, 24)
    writer = writer_process(
        scan_shape=(n_frames,),
        frame_shape=shape,
        compression="bitshuffle",  # forwarded as stored, decoded by the workers
        frame_rate_hz=200,
        hold_at=0,
    )
    results = tmp_path / "results.json"
    controller = f"http://127.0.0.1:{free_port()}"
    env = {
        "REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    python = sys.executable
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port"]
    services.start(
        "controller", [*uvicorn, controller.rsplit(":", 1)[1], "dranspose.controller:app"], env
    )
    reducer_env = {
        **env,
        "REDUCER_CLASS": "test_dranspose_source:FrameReducer",
        "REDUCER_URL": f"tcp://127.0.0.1:{free_port()}",
        RESULTS_ENV: str(results),
    }
    services.start("reducer", [*uvicorn, str(free_port()), "dranspose.reducer:app"], reducer_env)
    # the workers connect to the reducer that is registered when they start (else only after
    # a second of polling), so start them once it is
    wait_until(
        "the controller to see the reducer",
        services,
        lambda: http(f"{controller}/api/v1/config")["reducer"] is not None,
    )
    for name in ("w1", "w2"):
        worker = ["-m", "dranspose.cli", "worker", "-n", name]
        services.start(name, [python, *worker, "-c", "test_dranspose_source:FrameWorker"], env)
    ingester_env = {
        **env,
        "INGESTER_URL": f"tcp://127.0.0.1:{free_port()}",
        "H5LIVE_DRANSPOSE_CONFIG": json.dumps({"streams": {"det": writer.path}}),
    }
    services.start("ingester", [python, "-m", "h5live.dranspose"], ingester_env)

    def ready() -> bool:
        # as dranspose's tests wait (tests/utils.py wait_for_controller), and also until the
        # ingester has heard from both workers and both workers can send results to the reducer
        state = http(f"{controller}/api/v1/config")
        workers = {w["name"]: w for w in state["workers"]}
        connected = {w["name"] for i in state["ingesters"] for w in i["connected_workers"].values()}
        return (
            state["reducer"] is not None
            and set(workers) == {"w1", "w2"}
            and all(any("det" in i["streams"] for i in w["ingesters"]) for w in workers.values())
            and connected == {"w1", "w2"}
            and all(connected_to_reducer(services, name) for name in ("w1", "w2"))
        )

    wait_until("the controller to see the reducer, workers and ingester", services, ready)
    trigger_map = {"det": [[{"constraint": i}] for i in range(n_frames)]}
    mapping = http(
        f"{controller}/api/v1/sequence", {"parts": {"main": trigger_map}, "sequence": ["main"]}
    )

    def applied() -> bool:
        # every service has switched to the new trigger map (else the first events can go to
        # a worker still resetting its sockets, and the sequence never completes)
        state = http(f"{controller}/api/v1/config")
        services_ = [state["reducer"], *state["workers"], *state["ingesters"]]
        return all(str(s["mapping_uuid"]) == str(mapping) for s in services_)

    wait_until("every service to take the trigger map", services, applied)
    writer.go()  # frames land while the ingester follows
    progress = wait_until(
        "dranspose to finish",
        services,
        lambda: (p := http(f"{controller}/api/v1/progress"))["finished"] and p,
        explain=lambda: explain_progress(controller, redis_url, str(mapping)),
    )
    writer.wait()
    assert progress["completed_events"] == n_frames + 2  # start, the frames, end
    seen = json.loads(results.read_text())
    check_stream(seen, "det", n_frames, shape, "bslz4")
    assert {r["worker"] for r in seen if r["event"] == 0} == {"w1", "w2"}


@pytest.mark.live
def test_the_ingester_waits_for_frames_without_blocking_the_event_loop(writer_process):
    writer = writer_process(scan_shape=(5,), frame_shape=(4, 4), hold_at=0)
    config = {"streams": {"det": writer.path}, "timeout_s": 2}
    ingester = H5LiveIngester(H5LiveIngesterSettings(ingester_streams=["det"]), config=config)
    ingester.active_streams = ["det"]

    async def follow() -> list[Any]:
        source = ingester.run_source("det")
        messages = [await anext(source)]
        frame = asyncio.ensure_future(anext(source))  # the writer holds before frame 0
        await asyncio.sleep(0.3)  # the loop runs other tasks meanwhile...
        # ...and the wait runs in a thread: a wait on the loop would have returned by now
        # with the end (after the 2 s idle timeout), having blocked this sleep all along
        assert not frame.done()
        writer.go()
        messages.append(await frame)
        messages.extend([await anext(source) for _ in range(5)])  # frames 1..4, then the end
        await ingester.stop_source("det")
        await ingester.redis.aclose()
        await ingester.raw_redis.aclose()
        return messages

    try:
        messages = asyncio.run(follow())
    finally:
        ingester._executor.shutdown()
    writer.wait()
    htypes = [json.loads(m.frames[0])["htype"] for m in messages]
    assert htypes == ["header", *["image"] * 5, "series_end"]
