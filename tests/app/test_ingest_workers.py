"""ATTRIB_INGEST_QUEUE=external: the server only enqueues, and `attrib worker` processes (real
ones, sharing ATTRIB_HOME and a PostgreSQL database) run the jobs. With SQLite it is refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from app.cli import main
from app.settings import Settings
from index.db import Source
from tests.conftest import free_port, start_milvus_lite

REPO = Path(__file__).resolve().parents[2]


def worker_environment(settings: Settings) -> dict:
    """The server's catalog (home, database, vector store) for a worker process."""
    stores = {"ATTRIB_VECTOR_STORE": settings.vector_store, "ATTRIB_MILVUS_URI": settings.milvus_uri or "",
              "ATTRIB_MILVUS_PREFIX": settings.milvus_prefix or ""}
    return {**os.environ, "ATTRIB_HOME": str(settings.home), "ATTRIB_DATABASE_URL": settings.database_url,
            "ATTRIB_INGEST_QUEUE": "external", "ATTRIB_DEVICE": "cpu", "ATTRIB_BATCH_SIZE": "2",
            **{name: value for name, value in stores.items() if value},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def start_worker(settings: Settings, log: Path, *options: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker", *options], cwd=REPO,
                                env=worker_environment(settings), stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.both_stores
@pytest.mark.store_server  # Milvus: a Milvus Lite server the workers and the API share
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_workers_run_the_jobs_the_server_queued(start_api, photos, tmp_path):
    api = start_api(ingest_queue="external", async_batch_files=2)
    batches = {"first": photos[500:504], "second": photos[504:507]}
    jobs = {}
    for concept, paths in batches.items():
        response = api.index(paths, [concept])
        assert response.status_code == 202, response.text
        jobs[concept] = response.json()["job_id"]
    for job_id in jobs.values():  # nobody runs them in the server
        assert api.client.get(f"/jobs/{job_id}", headers=api.auth).json()["state"] == "queued"
        assert (api.app.state.settings.home / "spool" / job_id / "manifest.json").is_file()

    logs = [tmp_path / f"worker{n}.log" for n in (1, 2)]
    workers = [start_worker(api.app.state.settings, log, "--once", "--poll-seconds", "0.2") for log in logs]
    for worker, log in zip(workers, logs):
        assert worker.wait(timeout=180) == 0, log.read_text()[-3000:]

    for concept, job_id in jobs.items():
        job = api.client.get(f"/jobs/{job_id}", headers=api.auth).json()
        assert (job["state"], job["done"], job["indexed"]) == ("succeeded", len(batches[concept]), len(batches[concept]))
        assert [r["filename"] for r in job["results"]] == [p.name for p in batches[concept]]
        assert {r["concept"] for r in job["results"]} == {concept}
    with api.app.state.catalog.sessions() as session:
        assert session.scalar(select(func.count(Source.id))) == 7
        assert session.scalar(select(func.count(func.distinct(Source.sha256)))) == 7
    for concept, paths in batches.items():
        top = api.attribute(paths[0].read_bytes()).json()["spaces"]["style"]["concepts"][0]
        assert top["concept"] == concept and top["sources"][0]["filename"] == paths[0].name
    audit = api.client.get("/audit", params={"action": "source.create", "limit": 100}, headers=api.auth).json()
    assert audit["total"] == 7 and {e["key_name"] for e in audit["items"]} == {"tests"}  # the submitting key
    assert "ran" in logs[0].read_text() + logs[1].read_text()
    if api.app.state.settings.vector_store == "milvus":  # the workers wrote their vectors to Milvus
        assert not list(api.app.state.settings.home.rglob("*.faiss"))


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_terminated_worker_leaves_its_job_resumable(start_api, photos, tmp_path):
    api = start_api(ingest_queue="external", async_batch_files=2)
    paths = photos[510:518]
    job_id = api.index(paths, ["many"]).json()["job_id"]
    log = tmp_path / "worker.log"
    worker = start_worker(api.app.state.settings, log, "--poll-seconds", "0.2")
    url = f"/jobs/{job_id}"
    for _ in range(1200):  # the first batch of 2 is recorded
        if api.client.get(url, headers=api.auth).json()["done"] >= 2 or worker.poll() is not None:
            break
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]
    job = api.client.get(url, headers=api.auth).json()
    assert job["state"] in ("queued", "succeeded"), job  # stopped between batches, or already done
    if job["state"] == "queued":
        assert 2 <= job["done"] < len(paths) and "back in the queue" in log.read_text()
        worker = start_worker(api.app.state.settings, tmp_path / "again.log", "--once")
        assert worker.wait(timeout=180) == 0
    job = api.client.get(url, headers=api.auth).json()
    assert (job["state"], job["done"]) == ("succeeded", len(paths))
    assert [r["filename"] for r in job["results"]] == [p.name for p in paths]
    assert {r["status"] for r in job["results"]} <= {"indexed", "duplicate"}
    with api.app.state.catalog.sessions() as session:
        assert session.scalar(select(func.count(Source.id))) == len(paths)


def test_an_external_queue_needs_postgresql(tmp_path):
    for database in (None, f"sqlite:///{tmp_path / 'a.db'}"):
        with pytest.raises(ValidationError) as caught:
            Settings(home=tmp_path, database_url=database, ingest_queue="external")
        assert caught.value.errors()[0]["type"] == "external_queue_needs_postgres"
    assert Settings(home=tmp_path, database_url="postgresql+psycopg://x@h/db", ingest_queue="external")
    assert Settings(home=tmp_path).ingest_queue == "inline"


def test_a_worker_needs_the_external_queue(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path))
    monkeypatch.setenv("ATTRIB_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    assert main(["worker", "--once"]) == 1
    assert "ATTRIB_INGEST_QUEUE=external" in capsys.readouterr().err
    monkeypatch.setenv("ATTRIB_INGEST_QUEUE", "external")
    assert main(["worker", "--once"]) == 1
    assert "ATTRIB_INGEST_QUEUE" in capsys.readouterr().err


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_vector_store_outage_puts_the_job_back_until_it_is_over(start_api, photos, tmp_path):
    pytest.importorskip("milvus_lite", reason="needs milvus-lite (pip install -e '.[test]')")
    port = free_port()
    data, server_log = tmp_path / "milvus", tmp_path / "milvus.log"
    server = start_milvus_lite(data, port, server_log)  # this test's own: it takes it away and brings it back
    api = start_api(ingest_queue="external", async_batch_files=2, vector_store="milvus",
                    milvus_uri=f"http://127.0.0.1:{port}", milvus_prefix="outage")
    log = tmp_path / "worker.log"
    worker = start_worker(api.app.state.settings, log, "--poll-seconds", "0.5")
    try:
        for _ in range(600):  # the worker has opened its catalog; then Milvus goes away
            if "waiting for ingestion jobs" in log.read_text() or worker.poll() is not None:
                break
            time.sleep(0.2)
        assert "waiting for ingestion jobs" in log.read_text(), log.read_text()[-3000:]
        server.kill()
        server.wait(30)
        paths = photos[520:524]
        job_id = api.index(paths, ["outage"]).json()["job_id"]
        url = f"/jobs/{job_id}"
        for _ in range(600):
            if "back in the queue" in log.read_text() or worker.poll() is not None:
                break
            time.sleep(0.2)
        assert "back in the queue" in log.read_text(), log.read_text()[-3000:]
        assert api.client.get(url, headers=api.auth).json()["state"] in ("queued", "running")  # never failed

        server = start_milvus_lite(data, port, server_log)  # the outage is over
        for _ in range(900):
            job = api.client.get(url, headers=api.auth).json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        assert (job["state"], job["done"]) == ("succeeded", len(paths)), (job, log.read_text()[-3000:])
        assert {r["status"] for r in job["results"]} <= {"indexed", "duplicate"}
        assert worker.poll() is None  # the worker rode it out
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        server.kill()


@pytest.mark.parametrize("poll", ["0", "-1", "nan", "inf", "1e308"])
def test_a_worker_refuses_a_poll_interval_out_of_range(tmp_path, monkeypatch, capsys, postgres_url, poll):
    monkeypatch.setenv("ATTRIB_HOME", str(tmp_path))
    monkeypatch.setenv("ATTRIB_DATABASE_URL", postgres_url)
    monkeypatch.setenv("ATTRIB_INGEST_QUEUE", "external")
    assert main(["worker", "--once", "--poll-seconds", poll]) == 1
    err = capsys.readouterr().err
    assert "--poll-seconds must be positive and at most 3600" in err and "Traceback" not in err
