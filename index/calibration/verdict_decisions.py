"""The verdict learns from reviewers: decided cases are labels (`match`: the first concept it
names; `no_match`: none). Each case keeps the answer it got, with every space's calibrated
probabilities, so a refit needs no forward pass.

A refit uses the newest MAX_DECIDED cases whose answer came from the heads live now. It holds
back every HELD_BACK-th case, fits on the rest (`training.verdict.fit`, which also checks itself
space by space), and puts the new fit live only if its answers are better on the held-back cases
than those of the fit live now (the log-loss of each verdict's own claim: its concept with its
probability, or none with the none probability); the winner is then refitted on every case.
Every attempt is entered in the audit log (`verdict.fit`), live or not, with both figures.
When every case used was answered with matched regions (`?evidence=regions`), their inlier counts
go into the fit too (`training.verdict`'s match strength, kept only where it clearly helps).

`attrib calibrate --from-decisions` runs it; the server runs it in the background once MIN_DECIDED
cases are decided and again each time the decided cases have grown by half since the last try.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from index.calibration.labelled_fit import MAX_DECIDED, MIN_DECIDED
from index.calibration.verdict_fit import verdict_for, verdict_key
from index.db import Actor, record
from index.desk import decided_answers
from training.fileio import atomic_write_bytes
from training.verdict import SpaceEvidence, VerdictModel, fit, predict

log = logging.getLogger(__name__)
DECISIONS = "decisions"
HELD_BACK = 4  # every 4th case (a quarter) is held back to compare the fits
GROWTH = 1.5  # the server tries again once the decided cases have grown by half


def refit_from_decisions(catalog, actor: Actor) -> dict:
    """Try a fit on the reviewers' decisions; returns what happened (also in the audit log)."""
    spaces = catalog.spaces()
    key = verdict_key(spaces)
    examples, truths, found = decided_examples(catalog, spaces)
    strengths = found if all(f is not None for f in found) else None
    outcome = {"key": key, "cases": len(examples), "live": False}
    if len(examples) < MIN_DECIDED or all(t is None for t in truths) or all(t is not None for t in truths):
        outcome["reason"] = (f"{len(examples)} decided case(s) answered by the heads live now, both matches and "
                             f"no-matches needed, at least {MIN_DECIDED}")
        return outcome
    held = np.arange(len(examples)) % HELD_BACK == HELD_BACK - 1
    train = [i for i in range(len(examples)) if not held[i]]
    try:
        candidate = fit([examples[i] for i in train], [truths[i] for i in train], np.arange(len(train)), sorted(spaces),
                        DECISIONS, f"review desk: {len(train)} decided cases", key, len(catalog.features),
                        [strengths[i] for i in train] if strengths else None)
    except ValueError as exc:
        return outcome | {"reason": str(exc)}
    current = verdict_for(catalog, spaces, wait=True)
    test = [i for i in range(len(examples)) if held[i]]
    new_loss, old_loss = (_claim_loss(model, [examples[i] for i in test], [truths[i] for i in test],
                                      [strengths[i] for i in test] if strengths else None)
                          for model in (candidate, current))
    outcome |= {"held_back": len(test), "log_loss_new": round(new_loss, 4), "log_loss_live": round(old_loss, 4),
                "live_method": current.method if current else "max_rule"}
    if new_loss < old_loss:
        model = fit(examples, truths, np.arange(len(examples)), sorted(spaces), DECISIONS,
                    f"review desk: {len(examples)} decided cases", key, len(catalog.features), strengths)
        model.summary["held_back_log_loss"] = {"new": outcome["log_loss_new"], "replaced": outcome["log_loss_live"]}
        catalog.calibrations.save_verdict(model)
        outcome["live"] = True
    with catalog.sessions.begin() as session:
        record(session, actor, "verdict.fit", "verdict", key, after=outcome)
    return outcome


def decided_examples(catalog, spaces) -> tuple[list[dict[str, SpaceEvidence]], list[str | None], list]:
    """The evidence of each decided case whose answer came from the live heads, its label, and
    its candidates' match strength (None for a case answered without matched regions)."""
    heads = {name: live.info.head_id for name, live in spaces.items()}
    examples, truths, strengths = [], [], []
    for answer, concepts in decided_answers(catalog.sessions, MAX_DECIDED):
        blocks = answer.get("spaces") or {}
        if {name: (block or {}).get("head_id") for name, block in blocks.items() if name in heads} != heads:
            continue
        examples.append({name: evidence_of(blocks[name]) for name in heads})
        truths.append(concepts[0] if concepts else None)
        strengths.append(strength_of([blocks[name] for name in heads]))
    return examples, truths, strengths


def evidence_of(block: dict) -> SpaceEvidence:
    """A stored answer's space block as the verdict reads it."""
    concepts = block.get("concepts") or []
    return SpaceEvidence({c["concept"]: float(c.get("probability") or 0.0) for c in concepts},
                         float(block.get("none_probability") if block.get("none_probability") is not None else 1.0))


def strength_of(blocks: list[dict]) -> dict[str, int] | None:
    """{concept: inliers} of a stored answer's spaces, as `app.evidence.match_strength` reads a
    served one: each first concept's first source's inliers; None if any has no matched regions."""
    strength: dict[str, int] = {}
    for block in blocks:
        concepts = (block or {}).get("concepts") or []
        if not concepts:
            continue
        sources = concepts[0].get("sources") or []
        regions = (sources[0].get("regions") if sources else None) or {}
        if "inliers" not in regions:
            return None
        strength[concepts[0]["concept"]] = max(strength.get(concepts[0]["concept"], 0), int(regions["inliers"]))
    return strength


def _claim_loss(model: VerdictModel | None, examples, truths, strengths=None) -> float:
    """Mean log-loss of each verdict's own claim (right or wrong, at its stated probability)."""
    losses = []
    for i, (evidence, truth) in enumerate(zip(examples, truths)):
        verdict = predict(model, evidence, strengths[i] if strengths else None)
        if verdict is None:
            continue
        match = verdict.kind == "match"
        p = verdict.probability if match else verdict.none_probability
        right = verdict.concept == truth if match else truth is None
        p = min(max(p, 1e-6), 1 - 1e-6)
        losses.append(-np.log(p if right else 1 - p))
    return float(np.mean(losses)) if losses else float("inf")


# -- the server's trigger ------------------------------------------------------------------------

_trying = threading.Lock()


def maybe_refit_from_decisions(catalog, decided: int, actor: Actor) -> bool:
    """Start a background refit when `decided` cases reach MIN_DECIDED, and again each time they
    have grown by GROWTH since the last try; True if one started."""
    key = verdict_key(catalog.spaces())
    last = _last_attempt(catalog, key)
    if decided < MIN_DECIDED or (last and decided < GROWTH * last) or not _trying.acquire(blocking=False):
        return False
    _remember_attempt(catalog, key, decided)

    def run() -> None:
        try:
            refit_from_decisions(catalog, actor)
        except Exception:  # noqa: BLE001 - the live fit stays; the next decision tries again later
            log.exception("refitting the verdict from decisions failed")
        finally:
            _trying.release()

    threading.Thread(target=run, name="attrib-verdict-decisions", daemon=False).start()  # see verdict_fit.py
    return True


def _attempts(catalog) -> Path:
    return catalog.calibrations.root / "verdict-decisions.json"


def _last_attempt(catalog, key: str) -> int:
    try:
        return int(json.loads(_attempts(catalog).read_text()).get(key, 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _remember_attempt(catalog, key: str, cases: int) -> None:
    try:
        seen = json.loads(_attempts(catalog).read_text())
    except (OSError, ValueError):
        seen = {}
    seen = seen if isinstance(seen, dict) else {}
    atomic_write_bytes(_attempts(catalog), json.dumps(seen | {key: max(cases, 1)}).encode())
