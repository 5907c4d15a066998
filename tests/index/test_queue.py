"""The ingestion queue on PostgreSQL: claims are exclusive (FOR UPDATE SKIP LOCKED), jobs of
workers that are gone go back to the queue, and a job run again resumes after what it recorded."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from index.db import Job, Source
from index.ingest import IngestItem
from index.jobs import this_process
from index.jobs.jobs import create_job, get_job, mark_interrupted, run_job, spool_dir
from index.jobs.queue import MAX_ORPHANED, QUEUED_KIND, claim_next_job, release_job, requeue_orphans

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def add_jobs(catalog, count: int, state: str = "queued", owner: str | None = None, kind: str = "ingest") -> list[str]:
    ids = [f"job-{kind}-{state}-{number:03d}" for number in range(count)]
    with catalog.sessions.begin() as session:
        session.add_all(Job(id=job_id, kind=kind, state=state, total=1, done=0, results=[], owner=owner)
                        for job_id in ids)
    return ids


def gone_owner() -> str:
    """The owner name of a process that has exited."""
    probe = "from index.jobs import this_process; print(this_process())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return done.stdout.strip()


def test_an_empty_queue_gives_none_and_other_kinds_are_not_claimed(make_catalog):
    catalog = make_catalog()
    assert claim_next_job(catalog, "worker") is None
    add_jobs(catalog, 1, kind="space_build")
    add_jobs(catalog, 1, state="succeeded")
    assert claim_next_job(catalog, "worker") is None


def test_a_locked_job_is_skipped_not_waited_for(make_catalog):
    catalog = make_catalog()
    first, second = add_jobs(catalog, 2)
    with catalog.sessions.begin() as holder:  # another worker in the middle of claiming the oldest
        locked = holder.scalars(select(Job).where(Job.state == "queued").order_by(Job.created_at, Job.id)
                                .limit(1).with_for_update(skip_locked=True)).one()
        assert locked.id == first
        assert claim_next_job(catalog, "other") == second
        assert claim_next_job(catalog, "other") is None
    assert claim_next_job(catalog, "other") == first
    assert {get_job(catalog, i).owner for i in (first, second)} == {"other"}


def test_two_concurrent_claimers_never_get_the_same_job(make_catalog):
    catalog = make_catalog()
    ids = add_jobs(catalog, 40)
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def claimer(name: str) -> None:
        start.wait()
        while (job_id := claim_next_job(catalog, name)) is not None:
            claimed[name].append(job_id)

    threads = [threading.Thread(target=claimer, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claimed["a"]) & set(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == sorted(ids)
    with catalog.sessions() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(ids))).all()
    assert all(job.state == "running" and job.id in claimed[job.owner] for job in rows)


def test_jobs_of_gone_workers_are_requeued_then_given_up(make_catalog, photos):
    catalog = make_catalog()
    dead = gone_owner()
    orphan = create_job(catalog, [IngestItem(photos[0].name, "x", path=photos[0])])
    live = create_job(catalog, [IngestItem(photos[1].name, "x", path=photos[1])])
    assert claim_next_job(catalog, dead) == orphan and claim_next_job(catalog, this_process()) == live

    assert mark_interrupted(catalog, external_kinds=(QUEUED_KIND,)) == 0  # a server start leaves them to workers
    assert requeue_orphans(catalog) == [orphan]
    assert get_job(catalog, orphan).state == "queued" and get_job(catalog, live).state == "running"
    assert spool_dir(catalog, orphan).is_dir()
    for _ in range(MAX_ORPHANED - 1):
        assert claim_next_job(catalog, dead) == orphan
        requeue_orphans(catalog)
    assert get_job(catalog, orphan).state == "interrupted" and not spool_dir(catalog, orphan).exists()


def test_a_stopped_job_resumes_after_its_recorded_batches(make_catalog, photos):
    catalog = make_catalog()  # batch_size 8
    items = [IngestItem(p.name, p.stem, path=p) for p in photos[40:60]]
    job_id = create_job(catalog, items)
    assert claim_next_job(catalog, this_process()) == job_id
    run_job(catalog, job_id, should_stop=lambda: True)  # SIGTERM: stops after the batch in hand
    stopped = get_job(catalog, job_id)
    assert (stopped.state, stopped.done) == ("running", 8) and spool_dir(catalog, job_id).is_dir()
    release_job(catalog, job_id)

    assert claim_next_job(catalog, this_process()) == job_id
    with pytest.raises(KeyboardInterrupt):  # a second signal: stopped at once, the spool kept for a rerun
        run_job(catalog, job_id, should_stop=lambda: (_ for _ in ()).throw(KeyboardInterrupt))
    cut = get_job(catalog, job_id)
    assert (cut.state, cut.done) == ("running", 16) and spool_dir(catalog, job_id).is_dir()
    release_job(catalog, job_id)

    assert claim_next_job(catalog, this_process()) == job_id
    run_job(catalog, job_id)
    job = get_job(catalog, job_id)
    assert (job.state, job.done) == ("succeeded", 20) and not spool_dir(catalog, job_id).exists()
    assert [r["filename"] for r in job.results] == [item.filename for item in items]
    assert [r["status"] for r in job.results] == ["indexed"] * 20
    with catalog.sessions() as session:
        assert len(session.scalars(select(Source.id)).all()) == 20


def test_a_server_start_leaves_queued_ingestion_to_the_workers(make_catalog):
    catalog = make_catalog()
    dead = gone_owner()
    waiting = add_jobs(catalog, 1, owner=dead)[0]  # enqueued by a server that has stopped since
    build = add_jobs(catalog, 1, owner=dead, kind="space_build")[0]  # ran in that server: lost
    assert mark_interrupted(catalog, external_kinds=(QUEUED_KIND,)) == 1
    assert get_job(catalog, waiting).state == "queued" and get_job(catalog, build).state == "interrupted"
    assert mark_interrupted(catalog) == 1 and get_job(catalog, waiting).state == "interrupted"  # inline: as before


def set_beat(catalog, job_id: str, seconds_ago: float) -> None:
    from datetime import timedelta

    from index.db import utcnow

    with catalog.sessions.begin() as session:
        session.get(Job, job_id).updated_at = utcnow() - timedelta(seconds=seconds_ago)


def test_a_worker_on_another_host_is_lost_when_it_stops_beating(make_catalog):
    catalog = make_catalog()
    elsewhere = "another-host/boot/4242/99"  # cannot be checked from here: only its beats tell
    quiet, beating = add_jobs(catalog, 2, state="running", owner=elsewhere)
    for job_id in (quiet, beating):
        spool_dir(catalog, job_id).mkdir(parents=True)  # its files, still to be run
    set_beat(catalog, quiet, seconds_ago=600)
    set_beat(catalog, beating, seconds_ago=5)

    assert requeue_orphans(catalog, stale_after=120) == [quiet]
    assert (get_job(catalog, quiet).state, get_job(catalog, quiet).owner) == ("queued", None)
    assert (get_job(catalog, beating).state, get_job(catalog, beating).owner) == ("running", elsewhere)


def test_a_running_worker_beats_for_its_job_only(make_catalog):
    from app.worker import Heartbeat
    from index.jobs import beat

    catalog = make_catalog()
    (job_id,) = add_jobs(catalog, 1, state="running", owner=this_process())
    set_beat(catalog, job_id, seconds_ago=600)
    assert not beat(catalog, job_id, "someone-else/boot/1/1")
    assert requeue_orphans(catalog, stale_after=120) == []  # this host's owner is alive: never stale
    with Heartbeat(catalog, job_id, this_process(), seconds=0.05):
        import time

        time.sleep(0.5)
    from index.db import utcnow

    assert (utcnow() - get_job(catalog, job_id).updated_at).total_seconds() < 5
