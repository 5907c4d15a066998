"""Deterministic crash injection for the crash tests: `ATTRIB_CRASH_AT=<name>` (or `<name>:<n>`,
the n-th time) makes the process kill itself with SIGKILL, as `kill -9` would, when it reaches
that point. Unset, it costs one environment lookup. Points: `takedown_after_commit` (rows gone,
artefacts not yet), `ingest_after_commit` (rows and images stored, features and vectors not yet).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter = Counter()


def crash_point(name: str) -> None:
    wanted = os.environ.get("ATTRIB_CRASH_AT")
    if not wanted or wanted.partition(":")[0] != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(wanted.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)
