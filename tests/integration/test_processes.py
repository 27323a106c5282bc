"""Real processes on loopback: kill -9, a hub down, a black-holed destination.

The gateway and the hub run as separate OS processes (``run_gateway.py run``).
These tests prove the promises by doing the damage for real.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from crypto import canonical_json
from gateway.demo_data import demo_jsonl
from gateway.records import StoredInboxRecord
from gateway.spool import Spool
from tests.harness import Proc, Site, http

CYCLES = int(os.environ.get("GATEWAY_KILL_CYCLES", "20"))


def procs(
    site: Site,
    *,
    gw_dests: dict[str, str] | None = None,
    gw_kwargs: dict[str, str] | None = None,
) -> tuple[Proc, Proc]:
    hub = Proc(site.hub_config(), site.admin("hub"), site.root / "hub.log")
    gw = Proc(
        site.gateway_config(
            destinations=gw_dests, intake_workers="auto", **(gw_kwargs or {})
        ),
        site.admin("gw"),
        site.root / "gw.log",
    )
    return hub, gw


def push(site: Site, body: bytes, key: str) -> int:
    try:
        code, _ = http(
            "POST",
            site.url("gw") + "/v1/ingest/src",
            body,
            {
                "Authorization": f"Bearer {site.token}",
                "Content-Type": "application/x-ndjson",
                "Idempotency-Key": key,
            },
            timeout=10,
        )
    except OSError:
        return 0
    return code


def wait_for(pred, seconds: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {seconds} s")


def hub_records(site: Site) -> list[bytes]:
    with Spool(site.root / "hub" / "spool.db", readonly=True) as sp:
        out: list[StoredInboxRecord] = []
        after = 0
        while True:
            page = sp.list_hub_records(after=after, limit=500)
            if not page:
                return [r.canonical for r in out]
            out.extend(page)
            after = page[-1].record_id


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def expected_records(bodies: list[bytes]) -> list[bytes]:
    return sorted(
        canonical_json(json.loads(line)) for b in bodies for line in b.splitlines()
    )


class Loader(threading.Thread):
    """Steady load: each input is retried with its Idempotency-Key until it gets 202."""

    def __init__(self, site: Site) -> None:
        super().__init__(daemon=True)
        self.site = site
        self.acked: list[bytes] = []
        self.stop_after_current = threading.Event()
        self.n = 0

    def run(self) -> None:
        while not self.stop_after_current.is_set():
            body = demo_jsonl(1, start=self.n, seed=self.n)
            while push(self.site, body, f"input-{self.n}") != 202:
                time.sleep(0.05)
            self.acked.append(body)
            self.n += 1


@pytest.mark.slow
def test_conservation_under_kill_9(tmp_path: Path) -> None:
    """Kill -9 the gateway and the hub at random moments under steady load: every
    record answered 202 reaches the hub exactly once, and nothing else does."""
    site = Site(tmp_path)
    hub, gw = procs(site)
    rng = random.Random(int(os.environ.get("GATEWAY_KILL_SEED", "7")))
    hub.start()
    gw.start()
    loader = Loader(site)
    loader.start()
    try:
        for cycle in range(CYCLES):
            time.sleep(rng.uniform(0.1, 0.8))
            victim = gw if cycle % 2 == 0 else hub
            victim.kill9()
            time.sleep(rng.uniform(0.0, 0.3))
            victim.start()
        loader.stop_after_current.set()
        loader.join(timeout=60)
        assert not loader.is_alive()
        wait_for(
            lambda: gw.status()["destinations"]["hub"]["queued"] == 0,
            120,
            "gateway queue drained",
        )
    finally:
        loader.stop_after_current.set()
        assert gw.stop() == 0
        assert hub.stop() == 0
    assert loader.n >= CYCLES, "load generator made too little progress"
    held = sorted(hub_records(site))
    want = expected_records(loader.acked)
    assert len(held) == len(set(held)), "a record is held twice at the hub"
    missing = set(want) - set(held)
    extra = set(held) - set(want)
    assert not missing, f"{len(missing)} acknowledged records never reached the hub"
    assert not extra, f"{len(extra)} records at the hub were never acknowledged"
    assert held == want
    assert integrity(site.root / "gw" / "spool.db") == "ok"
    assert integrity(site.root / "hub" / "spool.db") == "ok"


def test_hub_down_for_a_while_then_drains(tmp_path: Path) -> None:
    site = Site(tmp_path)
    hub, gw = procs(site)
    gw.start()
    try:
        bodies = [demo_jsonl(2, start=i * 2, seed=i) for i in range(5)]
        for i, b in enumerate(bodies):
            assert push(site, b, f"k{i}") == 202
        wait_for(lambda: gw.status()["destinations"]["hub"]["queued"] == 40, 30)
        # The backlog survives a crash of the gateway while the hub is away.
        gw.kill9()
        gw.start()
        st = gw.status()["destinations"]["hub"]
        assert (st["queued"], st["delivered"]) == (40, 0)
        hub.start()
        wait_for(
            lambda: gw.status()["destinations"]["hub"]["delivered"] == 40,
            60,
            "backlog delivered",
        )
    finally:
        gw.stop()
        hub.stop()
    assert sorted(hub_records(site)) == expected_records(bodies)


class BlackHole(threading.Thread):
    """Accepts TCP connections and never answers."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for c in self.held:
            c.close()
        self.sock.close()


def test_black_holed_destination_does_not_delay_another(tmp_path: Path) -> None:
    site = Site(tmp_path)
    hole = BlackHole()
    hole.start()
    dests = {"hub": "hub", "void": f"http://127.0.0.1:{hole.port}/v1/envelopes"}
    hub, gw = procs(site, gw_dests=dests)
    # The black hole's timeout is long; the real hub must not wait for it.
    cfg = gw.config.read_text().replace("    timeout_s: 5\n", "    timeout_s: 60\n")
    gw.config.write_text(cfg)
    hub.start()
    gw.start()
    try:
        bodies = [demo_jsonl(2, start=i * 2, seed=i) for i in range(10)]
        for i, b in enumerate(bodies):
            assert push(site, b, f"k{i}") == 202
        wait_for(
            lambda: gw.status()["destinations"]["hub"]["delivered"] == 80,
            45,
            "delivery to the healthy hub",
        )
        void = gw.status()["destinations"]["void"]
        _, metrics = http("GET", site.admin("gw") + "/metrics")
        # The healthy hub got everything while the first send to the black hole
        # was still hanging (no attempt has even timed out yet).
        assert void["delivered"] == 0
        assert void["queued"] == 80
        assert (
            b'gateway_envelopes_total{destination="void",outcome="retry"} 0.0'
            in metrics
        )
        assert len(hole.held) >= 1
    finally:
        gw.stop(timeout=90)
        hub.stop()
        hole.close()


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    site = Site(tmp_path)
    hub, gw = procs(site)
    hub.start()
    gw.start()
    bodies = [demo_jsonl(3, start=i * 3, seed=i) for i in range(4)]
    for i, b in enumerate(bodies):
        assert push(site, b, f"k{i}") == 202
    assert gw.stop() == 0
    gw.start()
    try:
        wait_for(lambda: gw.status()["destinations"]["hub"]["delivered"] == 48, 60)
    finally:
        assert gw.stop() == 0
        assert hub.stop() == 0
    assert sorted(hub_records(site)) == expected_records(bodies)
    text = (site.root / "gw.log").read_text()
    assert "Traceback" not in text


def test_sighup_reload_applies_changes_without_loss(tmp_path: Path) -> None:
    """Reload adds a destination and refuses a broken config, losing nothing queued."""
    site = Site(tmp_path)
    hub = Proc(site.hub_config(), site.admin("hub"), site.root / "hub.log")
    hub2 = Proc(site.hub_config("hub2"), site.admin("hub2"), site.root / "hub2.log")
    gw = Proc(
        site.gateway_config(intake_workers="auto"),
        site.admin("gw"),
        site.root / "gw.log",
    )
    gw.start()
    try:
        first = demo_jsonl(2, start=0, seed=1)
        assert push(site, first, "a") == 202  # hub down: queued
        good = gw.config.read_text()
        gw.config.write_text(
            good.replace("destinations:\n", "destinations:\n  - nonsense\n")
        )
        assert gw.p is not None
        gw.p.send_signal(signal.SIGHUP)
        wait_for(lambda: "Reload refused" in (site.root / "gw.log").read_text(), 10)
        assert gw.status()["destinations"]["hub"]["queued"] == 8
        # Now a real change: a second hub is added.
        gw.config.write_text(
            site.gateway_config(
                destinations={"hub": "hub", "hub2": "hub2"}, intake_workers="auto"
            ).read_text()
        )
        gw.p.send_signal(signal.SIGHUP)
        wait_for(lambda: "hub2" in gw.status()["destinations"], 10)
        hub.start()
        hub2.start()
        second = demo_jsonl(2, start=2, seed=2)
        assert push(site, second, "b") == 202
        wait_for(lambda: gw.status()["destinations"]["hub"]["delivered"] == 16, 60)
        wait_for(lambda: gw.status()["destinations"]["hub2"]["delivered"] == 8, 60)
        assert gw.p.poll() is None
    finally:
        gw.stop()
        hub.stop()
        hub2.stop()
    assert sorted(hub_records(site)) == expected_records([first, second])
