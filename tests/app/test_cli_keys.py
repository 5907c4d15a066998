"""`attrib keys` with roles, on both databases: create, list, set-role, revoke, all audited as `cli`."""

import pytest

from app.cli import main
from tests.app.test_cli import env  # noqa: F401 - the fixture


def test_keys_get_roles_and_every_change_is_audited(env, capsys):  # noqa: F811
    from app.services import open_database
    from app.settings import Settings
    from index.auth import authenticate
    from index.db import AuditFilter, list_audit

    assert main(["keys", "create", "night desk", "--role", "reviewer"]) == 0
    out = capsys.readouterr().out
    assert "created key 1 (night desk, role reviewer)" in out
    reviewer_key = out.strip().splitlines()[-1]
    assert main(["keys", "create", "--name", "old style"]) == 0  # the default role: admin
    assert "role admin" in capsys.readouterr().out
    assert main(["keys", "set-role", "1", "ingest"]) == 0
    assert "key 1 (night desk) now has the role ingest" in capsys.readouterr().out
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert "night desk" in listing[0] and "role ingest" in listing[0] and "role admin" in listing[1]
    assert main(["keys", "revoke", "1"]) == 0
    assert main(["keys", "set-role", "99", "admin"]) == 1
    assert "no API key with id 99" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["keys", "set-role", "2", "root"])
    assert exited.value.code == 2

    engine, sessions = open_database(Settings())
    assert authenticate(sessions, reviewer_key) is None
    entries, total = list_audit(sessions, AuditFilter(actor="cli"), 0, 10)
    assert total == 4 and [(e.action, e.target_id) for e in entries] == [
        ("key.revoke", "1"), ("key.role", "1"), ("key.create", "2"), ("key.create", "1")]
    assert all(e.key_id is None and e.key_name == "cli" for e in entries)
    assert entries[1].before["role"] == "reviewer" and entries[1].after["role"] == "ingest"
    engine.dispose()
