"""Background ingestion jobs, recorded in the database so a restart reports them truthfully.

Uploaded files are spooled under ATTRIB_HOME/spool/<job id>/ before the job is acknowledged.
A job runs in the process that created it, which is recorded as its `owner`: with several worker
processes, one that starts marks only the unfinished jobs of processes that are gone as interrupted.
With ATTRIB_INGEST_QUEUE=external, ingestion jobs are run by `attrib worker` processes instead,
which claim them (index/jobs/queue.py); a job run again resumes after the results it recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from sqlalchemy import select

from index.catalog import Catalog, existing_sources, source_created
from index.db import CLI, Actor, Job
from index.errors import NotFoundError
from index.ingest import IngestItem, IngestResult, ingest
from index.jobs.processes import is_alive, this_process
from training.errors import AttribError

log = logging.getLogger(__name__)
UNFINISHED = ("queued", "running")


def spool_dir(catalog: Catalog, job_id: str) -> Path:
    return catalog.home / "spool" / job_id


class JobStopped(Exception):
    """Raised between batches when the worker running a job is asked to stop."""


def create_job(catalog: Catalog, items: list[IngestItem], actor: Actor = CLI) -> str:
    """Spool the items' bytes to disk and record a queued job; returns its id. The audit log
    names `actor` for its writes, whichever process runs it."""
    job_id = str(uuid.uuid4())
    folder = spool_dir(catalog, job_id)
    folder.mkdir(parents=True)
    manifest = []
    for number, item in enumerate(items):
        path = folder / f"{number:06d}"
        path.write_bytes(b"" if item.rejection else item.read())
        manifest.append({
            "filename": item.filename, "concept": item.concept, "meta": item.meta,
            "path": str(path), "rejection": item.rejection,
        })
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "actor.json").write_text(json.dumps(asdict(actor)))
    with catalog.sessions.begin() as session:
        session.add(Job(id=job_id, state="queued", total=len(items), done=0, results=[], owner=this_process()))
    return job_id


def run_job(catalog: Catalog, job_id: str, actor: Actor | None = None,
            should_stop: Callable[[], bool] | None = None, retry_transient: bool = False) -> None:
    """Ingest a spooled job, recording progress after each batch (the audit log names `actor`, by
    default the one that submitted it). A job run again skips the files whose results it recorded.
    When `should_stop()` turns true, the job stops after a batch is recorded and is left
    `running`: the caller puts it back in the queue (index/jobs/queue.py). With `retry_transient`, an
    outage of the database or the vector store (`is_transient`) leaves it `running` too and
    raises `TransientFailure`; otherwise it raises no Exception."""
    folder = spool_dir(catalog, job_id)
    ended = False  # the spool goes only with a recorded end: a job cut short by a signal can run again
    try:
        items, results = _remaining(catalog, job_id, folder)
        actor = actor or _job_actor(folder)
        _update(catalog, job_id, state="running")
        start, total = len(results), len(results) + len(items)

        def record(result: IngestResult) -> None:
            results.append(asdict(result))
            if (len(results) - start) % catalog.config.batch_size == 0 or len(results) == total:
                _update(catalog, job_id, done=len(results), results=list(results))
                log.info("job %s: %d of %d files", job_id, len(results), total)
                if len(results) < total and should_stop and should_stop():
                    raise JobStopped(job_id)

        ingest(catalog, items, on_result=record, actor=actor)
        _update(catalog, job_id, state="succeeded", done=len(results), results=results)
        ended = True
    except JobStopped:
        log.warning("job %s stopped after %d files; it can be run again", job_id, len(results))
    except Exception as exc:  # a job must end in a recorded state, whatever happened
        if retry_transient and is_transient(exc):
            raise TransientFailure(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}") from exc
        log.exception("job %s failed", job_id)
        _update(catalog, job_id, state="failed", error=f"{type(exc).__name__}: {exc}")
        ended = True
    finally:
        if ended:
            shutil.rmtree(folder, ignore_errors=True)


TRANSIENT_STORE_CODES = {"milvus_unreachable", "milvus_error", "milvus_timeout"}


class TransientFailure(Exception):
    """The database or the vector store did not answer; the job can run again later."""


def is_transient(exc: BaseException) -> bool:
    """An outage, not a fault of the job: the database's connection, or the vector store's."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    return (isinstance(exc, (OperationalError, InterfaceError))
            or getattr(exc, "code", None) in TRANSIENT_STORE_CODES)


def _remaining(catalog: Catalog, job_id: str, folder: Path) -> tuple[list[IngestItem], list[dict]]:
    """The spooled items not yet recorded, and the results recorded so far (in input order)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    items = [
        IngestItem(m["filename"], m["concept"], path=Path(m["path"]), meta=m["meta"],
                   rejection=tuple(m["rejection"]) if m["rejection"] else None)
        for m in manifest
    ]
    recorded = list(get_job(catalog, job_id).results or [])[:len(items)]
    return items[len(recorded):], recorded


def _job_actor(folder: Path) -> Actor:
    try:
        return Actor(**json.loads((folder / "actor.json").read_text()))
    except FileNotFoundError:  # spooled before jobs recorded who submitted them
        return CLI


def recorded_or_committed(catalog: Catalog, job: Job) -> list[dict]:
    """The job's recorded results, plus one for each later spooled file whose source is in the
    catalog: a batch committed just before a crash, whose results were never recorded. A source
    made after the job was created is `indexed`, an older one a `duplicate`."""
    recorded = list(job.results or [])
    try:
        manifest = json.loads((spool_dir(catalog, job.id) / "manifest.json").read_text())[len(recorded):]
    except (OSError, ValueError):
        return recorded
    spooled = {}
    for entry in manifest:
        if entry["rejection"] or not (entry["concept"] or "").strip():
            continue
        try:
            spooled[(entry["concept"].strip(), hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest())] = entry
        except OSError:
            continue
    found = existing_sources(catalog.sessions, set(spooled))
    created = source_created(catalog.sessions, list(found.values()))
    return recorded + [
        asdict(IngestResult(entry["filename"], "indexed" if created[found[key]] >= job.created_at else "duplicate",
                            key[0], found[key]))
        for key, entry in spooled.items() if key in found]


def create_work_job(catalog: Catalog, kind: str, total: int) -> str:
    """Record a queued job of another kind than ingestion: `space_build` (`done` counts stored
    features mapped by the new head), `train` (`done` counts images whose features are ready) or
    `catch_up` (`done` counts sources embedded by a backbone: index/jobs/catch_ups.py)."""
    job_id = str(uuid.uuid4())
    with catalog.sessions.begin() as session:
        session.add(Job(id=job_id, kind=kind, state="queued", total=total, done=0, results=[],
                        owner=this_process()))
    return job_id


def run_work_job(catalog: Catalog, job_id: str, work: Callable[[Callable[[int], None]], dict]) -> None:
    """Run `work(progress)`, recording progress, and its result dict as the job's one result; a
    `JobStopped` from it records the job as interrupted. Never raises."""
    done = 0

    def progress(rows: int) -> None:
        nonlocal done
        done += rows
        _update(catalog, job_id, done=done)

    try:
        _update(catalog, job_id, state="running")
        result = work(progress)
        _update(catalog, job_id, state="succeeded", done=done, results=[result])
    except JobStopped as stopped:  # a shutdown: what was done stays done
        _update(catalog, job_id, state="interrupted", done=done, error=str(stopped))
    except Exception as exc:  # a job must end in a recorded state, whatever happened
        log.exception("job %s failed", job_id)
        message = exc.message if isinstance(exc, AttribError) else f"{type(exc).__name__}: {exc}"
        _update(catalog, job_id, state="failed", error=message)


def _update(catalog: Catalog, job_id: str, **fields) -> None:
    with catalog.sessions.begin() as session:
        job = session.get(Job, job_id)
        for name, value in fields.items():
            setattr(job, name, value)


def get_job(catalog: Catalog, job_id: str) -> Job:
    with catalog.sessions() as session:
        job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id!r}", code="job_not_found")
    return job


def mark_interrupted(catalog: Catalog, external_kinds: tuple[str, ...] = ()) -> int:
    """At start-up: jobs left queued or running by a process that is gone (or by one that recorded
    no owner) will not finish. Jobs of live processes, and of other hosts, are left alone, and so
    are jobs of `external_kinds` (run by `attrib worker`s, which recover them: index/jobs/queue.py)."""
    with catalog.sessions.begin() as session:
        unfinished = session.scalars(
            select(Job).where(Job.state.in_(UNFINISHED), Job.kind.not_in(external_kinds)))
        jobs = [job for job in unfinished if not (job.owner and is_alive(job.owner))]
        for job in jobs:
            recovered = 0
            if job.kind == "ingest":  # what the crash committed before it could be recorded counts too
                results = recorded_or_committed(catalog, job)
                recovered = len(results) - len(job.results or [])
                job.results, job.done = results, job.done + recovered
            found = f" ({recovered} of them found committed after the restart)" if recovered else ""
            job.state = "interrupted"
            job.error = (
                f"the server stopped before this job finished: {job.done} of {job.total} files were "
                f"processed{found}; their results are listed; submit the rest again"
            )
    for job in jobs:
        shutil.rmtree(spool_dir(catalog, job.id), ignore_errors=True)
    return len(jobs)
