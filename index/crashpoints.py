"""Deterministic crash injection for the crash tests: `ATTRIB_CRASH_AT=<name>` makes the process
kill itself with SIGKILL (as `kill -9` would) when it reaches that point. Unset, it costs one
environment lookup. Points: `takedown_after_commit`, `ingest_after_commit`."""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("ATTRIB_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
