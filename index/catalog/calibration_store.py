"""Where each head's calibration is kept: ATTRIB_HOME/heads/<head id>.calibration.json (the fit)
and <head id>.calibration.npz (the labelled score lists it was fitted on), beside the head's own
checkpoint, with a per-process cache. Fitting is the calibration room's (index/calibration);
this store also holds what its self-fits share within a process.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from pathlib import Path

import numpy as np

from training.calibration import Calibration
from training.verdict import VerdictModel
from training.fileio import atomic_write, atomic_write_bytes

log = logging.getLogger(__name__)


class CalibrationStore:
    """The calibrations of a catalog's heads, by head id, with a per-process cache."""

    def __init__(self, home: Path):
        self.root = Path(home) / "heads"
        self._cache: dict[str, tuple[int, Calibration | VerdictModel]] = {}
        self.copies: dict = {}  # edited copies' backbone features, shared by every head's self-fit
        self.fitting = threading.Lock()  # one self-fit at a time (index.calibration.calibration_for)
        self.verdict_fitting = threading.Lock()  # one verdict fit at a time (index.calibration.verdict_fit)

    def verdict_path(self, key: str) -> Path:
        return self.root / f"verdict-{key}.json"

    def load_verdict(self, key: str) -> VerdictModel | None:
        """The verdict fitted for the live heads `key` names (index/calibration/verdict_fit.py)."""
        return self._load(f"verdict-{key}", self.verdict_path(key), VerdictModel.from_json, "verdict")

    def save_verdict(self, model: VerdictModel) -> Path:
        text = json.dumps(model.to_json(), indent=2) + "\n"
        return atomic_write(self.verdict_path(model.key), lambda tmp: Path(tmp).write_text(text))

    def path(self, head_id: str) -> Path:
        return self.root / f"{head_id}.calibration.json"

    def load(self, head_id: str) -> Calibration | None:
        return self._load(head_id, self.path(head_id), Calibration.from_json, "calibration")

    def _load(self, name: str, path: Path, parse, what: str):
        """The parsed file, cached until it changes; None if it is missing or unreadable."""
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._cache.get(name)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            loaded = parse(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s file %s is unreadable (%s); fitting a new one", what, path, exc)
            return None
        self._cache[name] = (stamp, loaded)
        return loaded

    def save(self, calibration: Calibration) -> Path:
        data = getattr(calibration, "data", None)
        if data is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **data.arrays())
            atomic_write_bytes(self.path(calibration.head_id).with_suffix(".npz"), buffer.getvalue())
        text = json.dumps(calibration.to_json(), indent=2) + "\n"
        return atomic_write(self.path(calibration.head_id), lambda tmp: Path(tmp).write_text(text))
