"""Calibration: how sure each space's answers are. A head's fit comes from the catalog itself
(calibration.py, the default, refitted when the catalog drifts) or from labelled queries: a
benchmark manifest or the review desk's decisions (labelled_fit.py). Queries are scored against
every source at once by concept (concept_scores.py). A head put live or rolled back gets its own
fit at once (rollout.py). The fits are kept by the catalog, beside their heads
(`catalog.calibrations`); the model itself is `training.calibration`.
"""

from index.calibration.calibration import CalibrationError, calibration_for, fit_summary, record_fit, refit
from index.calibration.concept_scores import concept_count
from index.calibration.labelled_fit import decision_queries, labelled_fits, labelled_work, manifest_queries
from index.calibration.rollout import put_live, rollback, set_head
from index.calibration.verdict_decisions import maybe_refit_from_decisions, refit_from_decisions
from index.calibration.verdict_fit import refit_verdict, verdict_for

__all__ = ["CalibrationError", "calibration_for", "concept_count", "decision_queries", "fit_summary",
           "labelled_fits", "labelled_work", "manifest_queries", "maybe_refit_from_decisions", "put_live",
           "record_fit", "refit", "refit_from_decisions", "refit_verdict", "rollback", "set_head", "verdict_for"]
