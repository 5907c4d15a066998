"""The review desk: cases (a query image with the answer it got), reviewers' decisions on them
(append-only) and rescores with the heads live later, in SQL (cases.py). The desk's tables are
in index/db (models_desk.py); every write records its audit entry there too.
"""

from index.desk.cases import (CaseError, CaseFilter, CaseRecord, Headline, add_decision, add_rescore, case_counts,
                              case_image, create_case, decided_answers, decided_queries, decision_counts, get_case,
                              latest_decisions, list_cases, source_shas)

__all__ = ["CaseError", "CaseFilter", "CaseRecord", "Headline", "add_decision", "add_rescore", "case_counts",
           "case_image", "create_case", "decided_answers", "decided_queries", "decision_counts", "get_case",
           "latest_decisions", "list_cases", "source_shas"]
