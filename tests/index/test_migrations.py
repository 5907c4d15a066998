from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from index.db import Base, downgrade_database, upgrade_database

TABLES = {"concepts", "sources", "index_builds", "jobs", "api_keys", "spaces", "takedowns", "queries",
          "cases", "case_decisions", "case_rescores", "audit_log"}


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_then_downgrade_to_base(database_url):
    upgrade_database(database_url)
    assert TABLES <= tables(database_url)
    downgrade_database(database_url)
    assert tables(database_url) == set()
    upgrade_database(database_url)
    assert TABLES <= tables(database_url)


def test_migrations_match_the_models(database_url):
    upgrade_database(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
