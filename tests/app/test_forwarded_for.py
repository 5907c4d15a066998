"""X-Forwarded-For is believed only from the proxies ATTRIB_TRUSTED_PROXIES names (issue 25,
item 6): by default a client cannot rotate its address past the failed-login limit. A real
uvicorn server, as `attrib serve` runs it, over real sockets."""

import http.client

import pytest


@pytest.fixture
def serve(tmp_path, sqlite_url, monkeypatch, serve_in_thread):
    def _serve(**env) -> int:
        values = {"HOME": str(tmp_path / "home"), "DATABASE_URL": sqlite_url, "DEVICE": "cpu",
                  "COPY_BACKBONE": "none", "AUTH_FAILURE_BURST": "3", "AUTH_FAILURES_PER_MINUTE": "1"} | env
        for name, value in values.items():
            monkeypatch.setenv(f"ATTRIB_{name}", value)
        return serve_in_thread()

    return _serve


def failed_logins(port: int, count: int) -> list[int]:
    """POST /index with a wrong key, each time claiming another client address."""
    statuses = []
    for i in range(count):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/index", headers={"X-API-Key": "wrong", "X-Forwarded-For": f"198.51.100.{i + 1}"})
        statuses.append(connection.getresponse().status)
        connection.close()
    return statuses


def test_forwarded_addresses_are_not_believed_by_default(serve):
    assert failed_logins(serve(), 5) == [401, 401, 401, 429, 429]


def test_a_named_proxy_is_believed(serve):
    assert failed_logins(serve(TRUSTED_PROXIES="127.0.0.0/8"), 5) == [401] * 5
