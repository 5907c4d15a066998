"""Job ownership: at start-up only the unfinished jobs of processes that are gone are marked
interrupted; those of live processes (and of other hosts) are left to finish. Both databases."""

import socket
import subprocess
import sys

import pytest

from index.db import Job
from index.jobs.jobs import create_work_job, get_job, mark_interrupted, spool_dir
from index.jobs.processes import boot_id, is_alive, start_time, this_process


def owner_of(pid: int) -> str:
    return f"{socket.gethostname()}/{boot_id()}/{pid}/{start_time(pid)}"


@pytest.fixture
def other_process():
    """Another live process on this host."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def gone_owner() -> str:
    """The owner name of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = owner_of(process.pid)
    process.wait()
    assert not is_alive(owner)
    return owner


def add_job(catalog, job_id: str, owner: str | None, state: str = "running") -> None:
    spool_dir(catalog, job_id).mkdir(parents=True)
    with catalog.sessions.begin() as session:
        session.add(Job(id=job_id, state=state, total=10, done=4, results=[], owner=owner))


def test_only_jobs_of_processes_that_are_gone_are_interrupted(make_catalog, other_process):
    catalog = make_catalog()
    this, other = this_process(), owner_of(other_process.pid)
    reused_pid = f"{this.rsplit('/', 1)[0]}/1"  # this pid, but another start time: a reused pid
    elsewhere = f"another-host/{boot_id()}/1/1"
    owners = {"mine": this, "other-live": other, "elsewhere": elsewhere, "gone": gone_owner(),
              "reused": reused_pid, "unowned": None}
    for job_id, owner in owners.items():
        add_job(catalog, job_id, owner, state="queued" if job_id == "mine" else "running")

    assert mark_interrupted(catalog) == 3
    states = {job_id: get_job(catalog, job_id).state for job_id in owners}
    assert states == {"mine": "queued", "other-live": "running", "elsewhere": "running",
                      "gone": "interrupted", "reused": "interrupted", "unowned": "interrupted"}
    assert "4 of 10" in get_job(catalog, "gone").error
    assert {job_id for job_id in owners if spool_dir(catalog, job_id).exists()} == {"mine", "other-live", "elsewhere"}

    other_process.kill()
    other_process.wait()
    assert mark_interrupted(catalog) == 1 and get_job(catalog, "other-live").state == "interrupted"


def test_new_jobs_record_their_owner(make_catalog):
    catalog = make_catalog()
    job_id = create_work_job(catalog, "train", 3)
    assert get_job(catalog, job_id).owner == this_process() and is_alive(this_process())
    assert mark_interrupted(catalog) == 0 and get_job(catalog, job_id).state == "queued"


def test_owner_names_that_are_not_ours_count_as_gone():
    assert not is_alive("garbage") and not is_alive(f"{socket.gethostname()}/x/notapid/1")
    assert not is_alive(f"{socket.gethostname()}/another-boot/1/1")  # this host rebooted since
