"""Read timeouts, so that slow clients cannot hold connections open.

* Headers: `attrib serve` runs uvicorn's h11 protocol with a timer from the moment a connection
  opens (or a kept-alive one gets its next request's first byte) until the request's headers are
  complete. uvicorn has none of its own: its keep-alive timer stops at the first byte. When the
  timer fires the client gets 408 and the connection is closed.
* Body: BodyTimeoutMiddleware answers 408 when a request body is not fully received within
  ATTRIB_BODY_TIMEOUT_S of its headers (it works under any ASGI server).
* Idle keep-alive connections close after ATTRIB_KEEP_ALIVE_TIMEOUT_S (uvicorn's own timer).
"""

from __future__ import annotations

import asyncio
import json

import h11
import uvicorn
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.settings import Settings


HEADER_LIMIT = 16 * 1024  # h11's limit on a request line and headers, which uvicorn keeps
LINGER_SECONDS = 1.0


def _raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response with the JSON error envelope, for answers made below the app."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def _raw_408(message: str) -> bytes:
    return _raw_error(408, "Request Timeout", "request_timeout", message)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers are slower than `header_timeout`."""

    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    _discarding = False  # an error was answered: the rest of the request is read and dropped

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers, in plain text, to bytes h11 cannot parse: the JSON envelope instead
        (431 when the request line and headers outgrew HEADER_LIMIT, else 400), then close."""
        pending = self.conn.trailing_data[0]
        if len(pending) >= HEADER_LIMIT and b"\r\n\r\n" not in pending:
            response = _raw_error(431, "Request Header Fields Too Large", "headers_too_large",
                                  f"the request line and headers are over {HEADER_LIMIT // 1024} KiB, the server's limit")
        else:
            response = _raw_error(400, "Bad Request", "bad_request", "the request is not valid HTTP/1.1")
        if not self.transport.is_closing():
            self.transport.write(response)
            # Closing with the client's bytes still unread would reset the connection and lose the
            # answer: send EOF, drop what still comes, and close a second later.
            self._discarding = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_raw_408(f"the request headers took over {self.header_timeout:g} s"))
            self.transport.close()


class AttribHTTPProtocol(HeaderTimeoutProtocol):
    """The protocol `attrib serve` runs. Module-level, so uvicorn's spawned workers can import it:
    a process that was not given the timeout (`configure`) reads ATTRIB_HEADER_TIMEOUT_S once."""

    header_timeout: float | None = None  # type: ignore[assignment]

    @classmethod
    def configure(cls, seconds: float) -> None:
        cls.header_timeout = seconds

    def connection_made(self, transport) -> None:  # type: ignore[override]
        if AttribHTTPProtocol.header_timeout is None:
            AttribHTTPProtocol.configure(Settings().header_timeout_s)
        super().connection_made(transport)


class BodyTimeoutMiddleware:
    """Answers 408 (and closes the connection) when a body is not fully received in `seconds`."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        deadline = asyncio.get_running_loop().time() + self.seconds
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:  # later calls wait for a disconnect, which may rightly take long
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                raise _SlowBody(self.seconds) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class _SlowBody(HTTPException):
    """An HTTPException, so FastAPI's body parsing passes it on to the JSON error handler."""

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body was not received within {seconds:g} s",
                         headers={"Connection": "close"})


def server_config(settings: Settings, host: str, port: int, workers: int = 1) -> uvicorn.Config:
    """How `attrib serve` runs the app: the factory (called in each worker), the timeouts above, h11,
    and X-Forwarded-* believed only from ATTRIB_TRUSTED_PROXIES. Worker processes read their
    settings, the header timeout included, from ATTRIB_* themselves."""
    AttribHTTPProtocol.configure(settings.header_timeout_s)
    proxies = settings.trusted_proxies  # uvicorn would trust 127.0.0.1's X-Forwarded-For by default
    return uvicorn.Config("app.main:create_app", factory=True, host=host, port=port, http=AttribHTTPProtocol,
                          timeout_keep_alive=settings.keep_alive_timeout_s, workers=workers,
                          proxy_headers=bool(proxies), forwarded_allow_ips=proxies or [])


def run_server(config: uvicorn.Config) -> None:
    """Serve in this process, or with several workers, in spawned processes accepting on one socket
    (what `uvicorn.run(..., workers=N)` does; the supervisor restarts a worker that dies)."""
    if config.workers == 1:
        uvicorn.Server(config).run()
        return
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[config.bind_socket()]).run()
