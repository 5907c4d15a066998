"""The database: engines, sessions and migrations (engine.py), the ORM models of the catalog
(models.py) and of the review desk (models_desk.py) on one declarative base (base.py), and the
audit log every room records its writes to (audit.py).

Importing this package imports both model modules, so `Base.metadata` always holds every table.
"""

from index.db.audit import CLI, Actor, AuditFilter, list_audit, record, record_many
from index.db.base import Base, utcnow
from index.db.engine import DatabaseError, downgrade_database, make_engine, session_factory, upgrade_database
from index.db.models import ApiKey, Concept, IndexBuild, Job, Query, Source, Space, Takedown
from index.db.models_desk import AuditEntry, Case, CaseDecision, CaseRescore

__all__ = ["CLI", "Actor", "ApiKey", "AuditEntry", "AuditFilter", "Base", "Case", "CaseDecision", "CaseRescore",
           "Concept", "DatabaseError", "IndexBuild", "Job", "Query", "Source", "Space", "Takedown",
           "downgrade_database", "list_audit", "make_engine", "record", "record_many", "session_factory",
           "upgrade_database", "utcnow"]
