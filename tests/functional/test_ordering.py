"""Parent-first ordering, receiver refusals and rate limits, gateway → real hub."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.demo_data import demo_jsonl
from gateway.ratelimit import TokenBucket
from tests.functional.test_pipeline import auth, delivered, get_json, post, until
from tests.harness import Site, running


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def split(body: bytes) -> tuple[bytes, bytes]:
    """(projects and tender projects, everything else) of a demo export."""
    parents: list[bytes] = []
    children: list[bytes] = []
    for line in body.splitlines(keepends=True):
        is_parent = json.loads(line)["dataset"] in {"PROJECT", "TENDER_PROJECT"}
        (parents if is_parent else children).append(line)
    return b"".join(parents), b"".join(children)


def arrivals(site: Site, hub: str = "hub") -> list[str]:
    """Data sets in the order the hub stored them."""
    conn = sqlite3.connect(f"file:{site.root / hub / 'spool.db'}?mode=ro", uri=True)
    try:
        return [
            r[0]
            for r in conn.execute("SELECT dataset FROM hub_records ORDER BY record_id")
        ]
    finally:
        conn.close()


async def status(site: Site, node: str = "gw") -> dict[str, object]:
    _, st = await get_json(site.admin(node) + "/api/status", site.admin_auth())
    return st  # type: ignore[no-any-return]


async def metrics(site: Site, node: str = "gw") -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.get(site.admin(node) + "/metrics") as r,
    ):
        return await r.text()


async def test_children_wait_for_their_parents_at_the_hub(site: Site) -> None:
    parents, children = split(demo_jsonl(2))
    async with running(site.hub_config(), site.gateway_config()):
        # The local system sends the sections first.
        c, a, _ = await post(site.url("gw") + "/v1/ingest/src", children, auth(site))
        assert (c, a["records"]) == (202, 4)

        async def held() -> bool:
            st = await status(site)
            return bool(st["destinations"]["hub"]["held"] == 4)  # type: ignore[index]

        await until(held)
        _, state = await get_json(
            site.url("gw") + f"/v1/intake/{a['intake_id']}", auth(site)
        )
        hub_states = [r["deliveries"]["hub"] for r in state["records"]]
        assert {d["state"] for d in hub_states} == {"held"}
        assert hub_states[0]["error"].startswith("E_PARENT_PENDING: waiting for ")

        async def gauge() -> bool:  # the gauges refresh every few seconds
            return 'gateway_held_records{destination="hub"} 4.0' in await metrics(site)

        await until(gauge)
        assert arrivals(site) == []
        c, _, _ = await post(site.url("gw") + "/v1/ingest/src", parents, auth(site))
        assert c == 202
        await until(lambda: delivered(site, 8))
    order = arrivals(site)
    assert len(order) == 8
    last_parent = max(
        i for i, d in enumerate(order) if d in {"PROJECT", "TENDER_PROJECT"}
    )
    first_child = min(i for i, d in enumerate(order) if d == "SECTION")
    assert last_parent < first_child, order
    # Projects came before their tender projects too.
    assert order.index("TENDER_PROJECT") > order.index("PROJECT")


async def test_records_the_hub_refuses_are_dead_not_delivered(site: Site) -> None:
    # The hub forwards onward and routes only projects and sections: it refuses
    # the tender projects (E_UNROUTABLE) in its receipt.
    hub = site.hub_config(
        extra=f"""\
destinations:
  - name: prov
    url: http://127.0.0.1:9/v1/envelopes
    recipient_keys: [{site.pub("prov")}]
routes:
  - name: some
    match: {{datasets: [PROJECT, SECTION]}}
    destinations: [prov]
"""
    )
    async with running(hub, site.gateway_config()):
        c, _, _ = await post(
            site.url("gw") + "/v1/ingest/src", demo_jsonl(1), auth(site)
        )
        assert c == 202

        async def settled() -> bool:
            d = (await status(site))["destinations"]["hub"]  # type: ignore[index]
            return bool(d["dead"] == 1 and d["delivered"] == 1 and d["held"] == 2)

        await until(settled)
        text = await metrics(site)
        assert 'gateway_receiver_rejected_records_total{destination="hub"} 1.0' in text
    assert arrivals(site) == ["PROJECT"]  # the sections wait for the refused parent
    conn = sqlite3.connect(site.root / "gw" / "spool.db")
    try:
        errors = [
            r[0] for r in conn.execute("SELECT error FROM items WHERE state = 'dead'")
        ]
    finally:
        conn.close()
    assert errors == ["E_RECEIVER_REJECTED: E_UNROUTABLE"]


async def test_a_rate_limit_spaces_the_sends(site: Site) -> None:
    gw = site.gateway_config(
        dest_extra="    rate_limit: {records_per_s: 20, burst_s: 1}\n"
        "    ordering: {parent_first: false}"
    )
    gw.write_text(gw.read_text().replace("max_records: 200", "max_records: 8"))
    async with running(site.hub_config(), gw):
        t0 = time.monotonic()
        c, _, _ = await post(
            site.url("gw") + "/v1/ingest/src", demo_jsonl(16), auth(site)
        )
        assert c == 202
        await until(lambda: delivered(site, 64), seconds=30)
        elapsed = time.monotonic() - t0
        text = await metrics(site)
    # 64 records at 20/s with a 20-record burst and 8-record envelopes: the
    # last envelope may leave once (64 - 8) - 20 records' worth of time passed.
    assert elapsed >= (64 - 8 - 20) / 20 * 0.9
    waited = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('gateway_rate_limit_wait_seconds_total{destination="hub"}')
    )
    assert waited > 0.5


async def test_token_bucket_lets_big_amounts_through_and_keeps_the_average() -> None:
    now = [0.0]
    b = TokenBucket(10, burst_s=1, clock=lambda: now[0])
    assert b.wait_s() == 0
    b.spend(25)  # more than the bucket holds: passes, leaves a debt
    assert b.wait_s() == pytest.approx(1.5)
    now[0] = 1.0
    assert b.wait_s() == pytest.approx(0.5)
    now[0] = 100.0
    assert b.wait_s() == 0
    b.spend(10)
    b.spend(0)
    assert b.wait_s() == 0  # saved up at most one second's worth
    b.spend(1)
    assert b.wait_s() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
    real = TokenBucket(1000, burst_s=0.01)
    real.spend(20)
    waited = await real.ready()
    assert waited > 0
    assert real.wait_s() == 0
    await asyncio.sleep(0)


async def test_switching_parent_first_off_by_reload_releases_the_held(
    site: Site,
) -> None:
    _, children = split(demo_jsonl(1))
    cfg = site.gateway_config()
    reloads: list[asyncio.Event] = []
    async with running(site.hub_config(), cfg, reloads=reloads):
        c, _, _ = await post(site.url("gw") + "/v1/ingest/src", children, auth(site))
        assert c == 202

        async def held(n: int) -> bool:
            st = await status(site)
            return bool(st["destinations"]["hub"]["held"] == n)  # type: ignore[index]

        await until(lambda: held(2))
        cfg.write_text(
            cfg.read_text().replace(
                "    circuit_open_s: 0.5\n",
                "    circuit_open_s: 0.5\n    ordering: {parent_first: false}\n",
            )
        )
        reloads[1].set()  # SIGHUP for the gateway
        await until(lambda: delivered(site, 2))
        assert await held(0)
    assert arrivals(site) == ["SECTION", "SECTION"]
