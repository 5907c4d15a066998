"""`attrib serve --workers 2`: two real worker processes on one socket, one ATTRIB_HOME, one SQLite
database. Every request goes over a fresh connection; which worker served it is read from /proc (the
worker whose file descriptors hold the server side of that connection), so nothing in the app is
added for the test. A write through one worker is seen by both, on their next request."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from app.services import open_database
from app.settings import Settings
from index.auth import create_key

REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT_S = 1.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Workers:
    """`attrib serve --workers 2` in its own process group, logging to a file."""

    def __init__(self, environment: dict, log: Path):
        self.port = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port), "--workers", "2"],
                env=environment, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids = self._wait_until_ready(deadline=time.monotonic() + 120)

    def _wait_until_ready(self, deadline: float) -> set[int]:
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited: {self.log.read_text()[-2000:]}"
            workers = self._workers()
            try:
                ready = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                ready = False
            if ready and len(workers) == 2:
                return workers
            time.sleep(0.2)
        raise AssertionError(f"the workers did not become ready: {self.log.read_text()[-2000:]}")

    def _workers(self) -> set[int]:
        """The supervisor's children that run uvicorn (not multiprocessing's resource tracker)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return {int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}

    def serving(self, connection: socket.socket) -> int | None:
        """Which worker holds the server side of this (open) connection."""
        ours, theirs = connection.getsockname()[1], connection.getpeername()[1]
        inode = next((fields[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                      if (fields := line.split())[1].endswith(f":{theirs:04X}") and fields[2].endswith(f":{ours:04X}")),
                     None)
        for pid in self.pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:  # closed meanwhile
                    continue
        return None

    def call(self, method: str, path: str, **request) -> tuple[int, int, dict]:
        """(worker pid, status, JSON body) of one request over a fresh connection."""
        built = httpx.Request(method, f"http://127.0.0.1:{self.port}{path}", **request)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=built.read() or None, headers=dict(built.headers))
            response = connection.getresponse()
            body = response.read()
            pid = self.serving(connection.sock)  # kept alive: the worker still holds it
        finally:
            connection.close()
        assert pid in self.pids, "no worker holds the connection"
        return pid, response.status, json.loads(body)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """One server for the module (starting two workers takes a while); the tests share its catalog."""
    tmp_path = tmp_path_factory.mktemp("workers")
    sqlite_url = f"sqlite:///{tmp_path / 'attrib.db'}"
    environment = {**os.environ, "ATTRIB_HOME": str(tmp_path / "home"), "ATTRIB_DATABASE_URL": sqlite_url,
                   "ATTRIB_DEVICE": "cpu", "ATTRIB_BATCH_SIZE": "4", "ATTRIB_ASYNC_BATCH_FILES": "1",
                   "ATTRIB_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    engine, sessions = open_database(Settings(home=tmp_path / "home", database_url=sqlite_url))
    key = create_key(sessions, "workers")[1]
    engine.dispose()
    server = Workers(environment, tmp_path / "serve.log")
    server.auth = {"X-API-Key": key}
    yield server
    server.stop()
    for _ in range(100):
        if not any(Path(f"/proc/{pid}").exists() for pid in server.pids):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a worker outlived the supervisor")


def until_both(workers: Workers, request, seconds: float = 60) -> dict[int, list]:
    """Repeat `request()` (pid, answer) on fresh connections until both workers answered twice.
    Four at a time: the kernel hands a sequential client's connections to whichever worker went
    back to waiting last, which can be the same one every time."""
    answers: dict[int, list] = {}
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline:
            for pid, answer in pool.map(lambda _: request(), range(4)):
                answers.setdefault(pid, []).append(answer)
            if len(answers) == 2 and all(len(a) >= 2 for a in answers.values()):
                return answers
    raise AssertionError(f"one worker answered everything: {({pid: len(a) for pid, a in answers.items()})}")


def top_sources(workers: Workers, photo: Path):
    def request():
        pid, status, body = workers.call("POST", "/attribute", files={"file": ("q.jpg", photo.read_bytes())})
        assert status == 200, body
        return pid, [(c["concept"], s["filename"]) for c in body["spaces"]["style"]["concepts"] for s in c["sources"]]
    return request


def files_for(paths):
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_two_workers_share_one_catalog(workers, photos):
    old, new = photos[300:302], photos[302:304]
    index_as_job(workers, old, "old")
    until_both(workers, top_sources(workers, old[0]))  # both have loaded the catalog before the next write

    index_as_job(workers, new, "new")  # a job, run by the worker that accepted it
    for answers in until_both(workers, top_sources(workers, new[0])).values():
        assert all(answer[0] == ("new", new[0].name) for answer in answers)

    _, status, body = workers.call("DELETE", "/concepts/new", headers=workers.auth)
    assert status == 200 and body["deleted_sources"] == 2
    for answers in until_both(workers, top_sources(workers, new[0])).values():  # from each one's next request
        assert all(answer[0][0] == "old" and "new" not in {concept for concept, _ in answer} for answer in answers)


def index_as_job(workers: Workers, paths: list[Path], concept: str) -> None:
    """POST /index as a background job; its state is read from both workers until it succeeded."""
    _, status, accepted = workers.call("POST", "/index", files=files_for(paths), data={"concept": concept},
                                       headers=workers.auth)
    assert status == 202
    state = partial(job_state, workers, accepted["status_url"])
    assert {s for seen in until_both(workers, state).values() for s in seen} <= {"queued", "running", "succeeded"}
    for _ in range(600):
        if state()[1] == "succeeded":
            break
        time.sleep(0.1)
    assert all(seen == ["succeeded"] * len(seen) for seen in until_both(workers, state).values())


def job_state(workers: Workers, url: str):
    pid, status, body = workers.call("GET", url, headers=workers.auth)
    assert status == 200, body
    return pid, body["state"]


def test_slow_headers_are_cut_off_in_every_worker(workers):
    held: dict[int, list[float]] = {}
    for _ in range(10):
        connections = [socket.create_connection(("127.0.0.1", workers.port)) for _ in range(4)]
        started = time.monotonic()
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
        time.sleep(0.3)
        owners = [workers.serving(connection) for connection in connections]
        for owner, connection in zip(owners, connections):
            with connection:
                connection.settimeout(10)
                assert connection.recv(65536).startswith(b"HTTP/1.1 408")
                held.setdefault(owner, []).append(time.monotonic() - started)
        if len(held) == 2:
            break
    assert set(held) == workers.pids
    assert all(HEADER_TIMEOUT_S - 0.5 < seconds < HEADER_TIMEOUT_S + 5 for times in held.values() for seconds in times)


def test_several_workers_map_their_indexes_unless_told_otherwise(tmp_path):
    def mapped(**values) -> bool:
        return Settings(home=tmp_path, **values).catalog_config().mmap_index

    assert mapped() is False and mapped(workers=2) is True
    assert mapped(workers=2, index_mmap=False) is False and mapped(index_mmap=True) is True
