"""End-to-end test of live-rooms in a real browser: three servers clustered
on loopback, pages opened on all three in one headless Chromium, and every
page's list of rooms (read from its DOM) checked against the true counts,
after joins, after leaves (tabs closed) and after one server is SIGKILLed.
Each server's ``/counts`` (``Node.top``) is checked as well.

    python3 browser_test.py [--chromium /usr/bin/chromium] [--screenshot out.png]

Run by ``test.sh``, with the Python that has ``headcount`` installed.
Loopback only; every wait is bounded (a check gives up after ``SETTLE_S``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from cdp import Browser, Page

HERE = Path(__file__).resolve().parent
#: Straight to the servers on 127.0.0.1, whatever http_proxy says.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
SECRET = "live-rooms-test"
SETTLE_S = 20.0
#: What a page shows: room -> count, from its list items.
READ_DOM = """JSON.stringify({
  live: document.getElementById("status")?.className === "live",
  rooms: Object.fromEntries([...document.querySelectorAll("#rooms li")].map(
    (li) => [li.dataset.room, Number(li.querySelector(".count").textContent)])),
})"""


class Server:
    def __init__(self, name: str, seeds: List[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--http", "0", "--name", name,
             "--seeds", ",".join(seeds), "--secret", SECRET],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError(f"server {name} did not start")
        info = json.loads(line)
        self.url, self.cluster = f"http://127.0.0.1:{info['http']}", info["cluster"]

    def counts(self) -> Dict[str, int]:
        with DIRECT.open(self.url + "/counts", timeout=5) as r:
            return dict(json.load(r))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Tab:
    def __init__(self, browser: Browser, server: Server, room: str) -> None:
        self.server, self.room = server, room
        self.page: Page = browser.open(f"{server.url}/room/{room}")

    def view(self) -> Tuple[bool, Dict[str, int]]:
        v = json.loads(self.page.eval(READ_DOM) or '{"live": false, "rooms": {}}')
        return v["live"], v["rooms"]


def expected(tabs: List[Tab]) -> Dict[str, int]:
    return dict(collections.Counter(t.room for t in tabs))


def check(step: str, tabs: List[Tab], servers: List[Server]) -> None:
    """Every open tab shows the true counts (and is live), and every
    server's /counts says the same, within SETTLE_S."""
    want = expected(tabs)
    deadline = time.monotonic() + SETTLE_S
    while True:
        views = [t.view() for t in tabs]
        counts = [s.counts() for s in servers]
        if all(live and rooms == want for live, rooms in views) and all(c == want for c in counts):
            print(f"ok: {step}: {len(tabs)} pages on {len(servers)} servers show {want}", flush=True)
            return
        if time.monotonic() > deadline:
            detail = "\n".join(f"  page {t.server.name}/{t.room}: live={v[0]} {v[1]}" for t, v in zip(tabs, views))
            detail += "\n" + "\n".join(f"  /counts of {s.name}: {c}" for s, c in zip(servers, counts))
            raise AssertionError(f"{step}: want {want} everywhere after {SETTLE_S}s; got\n{detail}")
        time.sleep(0.1)


def run(chromium: str, screenshot: Optional[Path]) -> None:
    servers: List[Server] = []
    browser: Optional[Browser] = None
    with tempfile.TemporaryDirectory(prefix="live-rooms-") as tmp:
        try:
            a = Server("web-a", [])
            servers.append(a)
            b = Server("web-b", [a.cluster])
            servers.append(b)
            c = Server("web-c", [a.cluster])
            servers.append(c)
            browser = Browser(chromium, Path(tmp))

            # Joins: 7 page views over 3 servers and 3 rooms.
            plan = [(a, "red"), (a, "red"), (a, "blue"), (b, "red"), (b, "green"), (c, "blue"), (c, "blue")]
            tabs = [Tab(browser, s, room) for s, room in plan]
            check("joins", tabs, servers)
            if screenshot:
                screenshot.write_bytes(tabs[0].page.screenshot(520, 330))
                print(f"screenshot: {screenshot}")

            # Leaves: a red page on a and a blue one on c close; a new room.
            for t in (tabs[1], tabs[6]):
                t.page.close()
                tabs.remove(t)
            tabs.append(Tab(browser, c, "green"))
            check("leaves and a new join", tabs, servers)

            # b dies without a goodbye: its pages' connections drop out of
            # the survivors' counts once they find b down.
            b.stop(signal.SIGKILL)
            servers.remove(b)
            for t in [t for t in tabs if t.server is b]:
                t.page.close()
                tabs.remove(t)
            check("a server killed", tabs, servers)

            # The last room empties: it disappears from every page.
            for t in [t for t in tabs if t.room == "green"]:
                t.page.close()
                tabs.remove(t)
            check("a room emptied", tabs, servers)
        finally:
            if browser:
                browser.close()
            for s in servers:
                s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--screenshot", type=Path)
    o = ap.parse_args()
    run(o.chromium, o.screenshot)
    print("live-rooms browser test passed")


if __name__ == "__main__":
    main()
