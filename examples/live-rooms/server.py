"""live-rooms: a web page per room showing every room's live head count.

Standard library only (``http.server`` with a thread per request) plus the
``headcount`` package. Each page view joins its room for as long as its
Server-Sent Events stream (``/events``) stays open: the stream's connection
is tracked in ``room:<name>``, and untracked when it closes. One watch of
``room:`` per server feeds every stream: its batches (this node's and its
peers' changes alike) are fanned out to the open streams, coalesced per
room, as ``counts`` events; a new stream first gets a ``snapshot`` of every
room.

    python3 server.py --http 8001 --listen 127.0.0.1:7001 --secret s
    python3 server.py --http 8002 --listen 127.0.0.1:7002 --seeds 127.0.0.1:7001 --secret s

then open http://127.0.0.1:8001/room/lobby. With ``--http 0`` and a port 0
in ``--listen`` the server picks free ports; either way it prints one JSON
line when it is ready: ``{"http": PORT, "cluster": "HOST:PORT", "node": NAME}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional, Set
from urllib.parse import parse_qs, urlsplit

import headcount

PREFIX = "room:"
ROOM = re.compile(r"[a-z0-9-]{1,32}")
PAGE = (Path(__file__).resolve().parent / "page.html").read_text()
#: How often a stream checks that its browser is still there, and how often
#: it sends a comment line to keep proxies from timing it out.
CHECK_S, KEEPALIVE_S = 0.25, 10.0


def room_of(topic: "str | bytes") -> str:
    """The room of a ``room:`` topic (one not UTF-8, which this server
    never tracks but another program on the cluster might, with its bad
    bytes replaced)."""
    text = topic if isinstance(topic, str) else topic.decode(errors="replace")
    return text[len(PREFIX):]


class Stream:
    """One open event stream: the rooms whose counts changed since it last
    wrote (coalesced: a room at most once, with its latest count)."""

    def __init__(self) -> None:
        self.pending: Dict[str, int] = {}
        self.ready = threading.Condition()

    def offer(self, changes: Dict[str, int]) -> None:
        with self.ready:
            self.pending.update(changes)
            self.ready.notify()

    def take(self, timeout: float) -> Dict[str, int]:
        with self.ready:
            if not self.pending:
                self.ready.wait(timeout)
            out, self.pending = self.pending, {}
            return out


class Rooms:
    """Every room's count as this node's watch last said, and the streams
    to tell when it changes. One thread reads the watch."""

    def __init__(self, node: headcount.Node) -> None:
        self.lock = threading.Lock()
        self.counts: Dict[str, int] = {}
        self.streams: Set[Stream] = set()
        self.watch = node.watch(PREFIX, initial=True)
        threading.Thread(target=self._feed, name="rooms-feed", daemon=True).start()

    def _feed(self) -> None:
        for batch in self.watch:  # ends when the watch is closed
            changes = {}
            for c in batch:
                changes[room_of(c.topic)] = c.count
            with self.lock:
                for room, n in changes.items():
                    if n:
                        self.counts[room] = n
                    else:
                        self.counts.pop(room, None)
                for s in self.streams:
                    s.offer(changes)

    def subscribe(self) -> "tuple[Stream, Dict[str, int]]":
        """A new stream and the snapshot it starts from (nothing is lost
        between the two: both are taken under the lock)."""
        s = Stream()
        with self.lock:
            self.streams.add(s)
            return s, dict(self.counts)

    def unsubscribe(self, s: Stream) -> None:
        with self.lock:
            self.streams.discard(s)


def gone(sock: socket.socket) -> bool:
    """Whether the browser closed the connection (it sends nothing after
    its request, so a readable socket means end of stream or an error)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def make_handler(node: headcount.Node, rooms: Rooms, name: str) -> type:
    conn_ids = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        server_version = "live-rooms"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the test runs many requests

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/":
                self.send_response(302)
                self.send_header("Location", "/room/lobby")
                self.end_headers()
            elif url.path.startswith("/room/") and ROOM.fullmatch(url.path[6:]):
                body = PAGE.replace("{{ROOM}}", url.path[6:]).replace("{{SERVER}}", name).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif url.path == "/events":
                room = (parse_qs(url.query).get("room") or [""])[0]
                if not ROOM.fullmatch(room):
                    self.send_error(400, "room must be 1 to 32 of a-z, 0-9, -")
                    return
                self.events(room)
            elif url.path == "/counts":  # for curl: every room, as JSON
                top = node.top(1000, PREFIX)
                body = json.dumps({room_of(t): n for t, n in top}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def send_event(self, kind: str, data: Dict[str, int]) -> None:
            self.wfile.write(f"event: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode())
            self.wfile.flush()

        def events(self, room: str) -> None:
            """The page's stream: its connection is in ``room`` while open."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            conn = next(conn_ids)
            node.track(PREFIX + room, conn)
            stream, snapshot = rooms.subscribe()
            try:
                self.send_event("snapshot", snapshot)
                quiet_since = time.monotonic()
                while True:
                    changes = stream.take(CHECK_S)
                    if changes:
                        self.send_event("counts", changes)
                        quiet_since = time.monotonic()
                    elif gone(self.connection):
                        break
                    elif time.monotonic() - quiet_since > KEEPALIVE_S:
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        quiet_since = time.monotonic()
            except OSError:
                pass  # the browser went away mid-write
            finally:
                rooms.unsubscribe(stream)
                try:
                    node.untrack_all(conn)
                except headcount.HeadcountError:
                    pass  # the server is shutting down: the node is closed

    return Handler


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--http", type=int, default=8000, help="HTTP port on 127.0.0.1 (0: any free one)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="the headcount node's cluster address")
    ap.add_argument("--seeds", default="", help="comma-separated cluster addresses of other servers")
    ap.add_argument("--secret", required=True, help="the cluster's shared secret")
    ap.add_argument("--name", default="", help="node name (default: web-<http port>)")
    o = ap.parse_args(argv)

    http = ThreadingHTTPServer(("127.0.0.1", o.http), BaseHTTPRequestHandler)
    http.daemon_threads = True
    port = http.server_address[1]
    name = o.name or f"web-{port}"
    node = headcount.Node(
        node_name=name,
        listen=o.listen,
        seeds=[s for s in o.seeds.split(",") if s] or None,
        secret=o.secret,
        flush_interval_ms=50,
        down_after_ms=1000,
    )
    rooms = Rooms(node)
    http.RequestHandlerClass = make_handler(node, rooms, name)

    def stop(*_: object) -> None:
        threading.Thread(target=http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"http": port, "cluster": node.local_addr, "node": name}), flush=True)
    try:
        http.serve_forever(poll_interval=0.2)
    finally:
        rooms.watch.close()
        node.close()  # leave the cluster: peers drop this server's rooms at once
        http.server_close()


if __name__ == "__main__":
    main()
