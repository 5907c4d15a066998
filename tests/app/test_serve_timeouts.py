"""`attrib serve`'s read timeouts and its answers to malformed HTTP, against a real uvicorn server
over real sockets."""

import socket
import time

import pytest


@pytest.fixture
def server(tmp_path, sqlite_url, monkeypatch, serve_in_thread):
    """The app as `attrib serve` runs it, with short timeouts (the factory reads ATTRIB_*)."""
    for name, value in {"HOME": str(tmp_path / "home"), "DATABASE_URL": sqlite_url, "DEVICE": "cpu",
                        "HEADER_TIMEOUT_S": "0.5", "BODY_TIMEOUT_S": "0.5", "KEEP_ALIVE_TIMEOUT_S": "1"}.items():
        monkeypatch.setenv(f"ATTRIB_{name}", value)
    return serve_in_thread()


def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails after 10 s)."""
    connection.settimeout(10)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def read_health(connection: socket.socket) -> bytes:
    """One whole /healthz response."""
    connection.settimeout(10)
    received = b""
    while not received.endswith(b'{"status":"ok"}'):
        chunk = connection.recv(65536)
        assert chunk, f"closed early after {received!r}"
        received += chunk
    return received


def test_slow_headers_and_bodies_are_cut_off(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server)) as connection:  # headers never finish
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        reply = read_until_closed(connection)
    assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply

    with socket.create_connection(("127.0.0.1", server)) as connection:  # a byte at a time is no better
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Drip: ....................":
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        reply = read_until_closed(connection)
    assert reply.startswith(b"HTTP/1.1 408")

    with socket.create_connection(("127.0.0.1", server)) as connection:  # the body never finishes
        connection.sendall(b"POST /attribute HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                           b"boundary=b\r\nContent-Length: 1000\r\n\r\n--b\r\n")
        reply = read_until_closed(connection)
    assert reply.startswith(b"HTTP/1.1 408") and b'"code":"request_timeout"' in reply
    assert time.monotonic() - started < 30

    with socket.create_connection(("127.0.0.1", server)) as connection:  # a prompt client is served,
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_health(connection).startswith(b"HTTP/1.1 200")
        time.sleep(0.8)  # past the header timeout while idle, within keep-alive: still open
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_health(connection).startswith(b"HTTP/1.1 200")
        assert read_until_closed(connection) == b""  # then closed once idle past keep-alive


def test_malformed_requests_and_oversized_headers_get_the_json_envelope(server):
    """Issue 25, item 5: uvicorn answered these in plain text; the envelope is the same as the app's."""
    import json

    def answer(raw: bytes) -> tuple[str, dict]:
        with socket.create_connection(("127.0.0.1", server)) as connection:
            connection.settimeout(10)
            connection.sendall(raw)
            head, _, body = read_until_closed(connection).partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        return head.split(b"\r\n")[0].decode(), json.loads(body)

    status, body = answer(b"NOT HTTP AT ALL\r\n\r\n")
    assert status == "HTTP/1.1 400 Bad Request" and body["error"]["code"] == "bad_request"
    status, body = answer(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    assert status.startswith("HTTP/1.1 431") and body["error"]["code"] == "headers_too_large"
    assert "16 KiB" in body["error"]["message"]
