"""Slow clients against a running `attrib serve`: how long are their connections held open?

Opens N connections that send an incomplete request (headers, or headers and part of a body)
and then drip one byte a second, and prints when the server closed them. With the defaults all
close at ATTRIB_HEADER_TIMEOUT_S (10 s) or ATTRIB_BODY_TIMEOUT_S (300 s) whatever the drip.

    attrib serve --port 8000 &
    python benchmarks/slow_clients.py --port 8000 --part headers
    python benchmarks/slow_clients.py --port 8000 --part body
"""

from __future__ import annotations

import argparse
import selectors
import socket
import time

REQUESTS = {
    "headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
    "body": b"POST /attribute HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--part", choices=sorted(REQUESTS), default="headers", help="what never finishes")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--give-up", type=float, default=600, help="stop waiting after this many seconds")
    args = parser.parse_args()

    selector, started, closed = selectors.DefaultSelector(), time.monotonic(), []
    for _ in range(args.connections):
        connection = socket.create_connection((args.host, args.port))
        connection.sendall(REQUESTS[args.part])
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    while selector.get_map() and time.monotonic() - started < args.give_up:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                closed.append(time.monotonic() - started)
                selector.unregister(key.fileobj)
                key.fileobj.close()
        for key in list(selector.get_map().values()):  # a byte a second to those still open
            try:
                key.fileobj.send(b"x")
            except OSError:
                pass
    held = len(selector.get_map())
    span = f"first after {min(closed):.1f} s, last after {max(closed):.1f} s" if closed else "none"
    print(f"slow {args.part}: {len(closed)}/{args.connections} closed by the server ({span}); {held} still open")


if __name__ == "__main__":
    main()
