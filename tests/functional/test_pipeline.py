"""The whole path in one process: intake → spool → seal → forward → hub → receipt."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import crypto
from crypto import envelope as envelope_mod
from gateway.demo_data import demo_jsonl
from gateway.spool import Spool
from tests.harness import Site, running

JSONL = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def auth(site: Site, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.token}", **JSONL, **extra}


async def post(
    url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=io.BytesIO(body), headers=headers) as r,
    ):
        raw = await r.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return r.status, data, dict(r.headers)


async def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, await r.json()


async def until(pred: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def delivered(site: Site, n: int, dest: str = "hub") -> bool:
    _, st = await get_json(site.admin("gw") + "/api/status", site.admin_auth())
    return bool(st["destinations"][dest]["delivered"] >= n)


async def test_end_to_end_with_verified_receipts(site: Site) -> None:
    hub_cfg, gw_cfg = site.hub_config(), site.gateway_config()
    async with running(hub_cfg, gw_cfg):
        body = demo_jsonl(3)
        code, ans, _ = await post(site.url("gw") + "/v1/ingest/src", body, auth(site))
        assert code == 202, ans
        assert ans["records"] == 12
        assert ans["rejected"] == 0
        await until(lambda: delivered(site, 12))
        code, state = await get_json(
            site.url("gw") + f"/v1/intake/{ans['intake_id']}", auth(site)
        )
        assert code == 200
        assert len(state["records"]) == 12
        for rec in state["records"]:
            d = rec["deliveries"]["hub"]
            assert d["state"] == "delivered"
            assert d["receipt_id"]
        _, hub_status = await get_json(
            site.admin("hub") + "/api/status", site.admin_auth()
        )
        assert hub_status["hub"]["records"] == 12
    # What the hub holds is exactly what was pushed, record for record.
    with Spool(site.root / "hub" / "spool.db", readonly=True) as hub_spool:
        held = hub_spool.list_hub_records(limit=100)
    sent = sorted(crypto.canonical_json(json.loads(line)) for line in body.splitlines())
    assert sorted(r.canonical for r in held) == sent


async def test_idempotency_key_returns_first_answer(site: Site) -> None:
    async with running(site.hub_config(), site.gateway_config()):
        url = site.url("gw") + "/v1/ingest/src"
        h = auth(site, **{"Idempotency-Key": "batch-42"})
        c1, a1, _ = await post(url, demo_jsonl(1), h)
        c2, a2, _ = await post(url, demo_jsonl(1), h)
        assert (c1, c2) == (202, 202)
        assert a1 == a2
        c3, a3, _ = await post(url, demo_jsonl(2), h)
        assert c3 == 422
        assert a3["error"]["code"] == "E_IDEMPOTENCY_CONFLICT"
        await until(lambda: delivered(site, 4))
        _, st = await get_json(site.admin("gw") + "/api/status", site.admin_auth())
        assert st["sources"]["src"]["records"] == 4


async def test_refusals_say_what_and_keep_bytes(site: Site) -> None:
    async with running(site.hub_config(), site.gateway_config()):
        url = site.url("gw") + "/v1/ingest/src"
        c, a, _ = await post(url, b"{}", JSONL)
        assert c == 401
        assert a["error"]["code"] == "E_AUTH_MISSING"
        c, a, _ = await post(
            url, b"{}", {"Authorization": "Bearer wrong-token-xxxxxxxx", **JSONL}
        )
        assert c == 403
        c, a, _ = await post(site.url("gw") + "/v1/ingest/nope", b"{}", auth(site))
        assert c == 404
        c, a, _ = await post(url, b"x" * (3 * 1024 * 1024), auth(site))
        assert c == 413
        c, a, _ = await post(
            url, b"<xml/>", auth(site, **{"Content-Type": "application/xml"})
        )
        assert c == 415
        assert a["intake_id"]
        c, a, _ = await post(url, b"", auth(site))
        assert c == 422
        assert a["error"]["code"] == "E_EMPTY"
        empty_id = a["intake_id"]
        # A record-level problem is a reject inside a 202, with where and why.
        bad = (
            b'{"dataset": "SECTION", "fields": {"BID_SECTION_CODE": "x"}}\n'
            + demo_jsonl(1)
        )
        c, a, _ = await post(url, bad, auth(site))
        assert c == 202
        assert a["records"] == 4
        assert a["rejected"] == 1
        c, st = await get_json(
            site.url("gw") + f"/v1/intake/{a['intake_id']}", auth(site)
        )
        assert st["rejected"][0]["locator"].startswith("line 1")
        assert "/" in st["rejected"][0]["message"]  # English / 中文
    with Spool(site.root / "gw" / "spool.db", readonly=True) as sp:
        kept = sp.get_input(empty_id)
        assert kept is not None
        assert kept.reason_code == "E_EMPTY"
        q = sp.list_quarantine()
        assert {e.reason_code for e in q} == {"E_CONTENT_TYPE", "E_EMPTY"}


async def test_quota_answers_503_with_retry_after(site: Site) -> None:
    gw = site.gateway_config(extra="")
    text = gw.read_text().replace("quota:\n", "quota:\n  max_records: 5\n")
    gw.write_text(text)
    # No hub running: records stay undelivered and count against the quota.
    async with running(gw):
        url = site.url("gw") + "/v1/ingest/src"
        c, _, _ = await post(url, demo_jsonl(1), auth(site))
        assert c == 202
        c, a, h = await post(url, demo_jsonl(1, seed=7), auth(site))
        assert c == 503
        assert a["error"]["code"] == "E_QUOTA"
        assert int(h["Retry-After"]) >= 1


async def _sealed_for_hub(
    site: Site,
    *,
    sender: str = "gw",
    created: datetime | None = None,
    payload: bytes | None = None,
) -> bytes:
    """An envelope as a gateway would send it, made directly for hub tests."""
    lines = (payload or demo_jsonl(1)).splitlines()
    canon = [crypto.canonical_json(json.loads(x)) for x in lines]
    body = b"".join(c + b"\n" for c in canon)
    env, _ = crypto.seal_bytes(
        body,
        crypto.load_private_key(site.key(sender)),
        [crypto.load_public_key(site.pub("hub"))],
        now=created or datetime.now(UTC),
        content_type="application/x-ndjson",
        manifest=[crypto.sm3(c).hex() for c in canon],
    )
    return env


async def test_hub_dedupes_and_refuses_bad_envelopes(site: Site) -> None:
    async with running(site.hub_config(senders=("gw",))):
        url = site.url("hub") + "/v1/envelopes"
        env = await _sealed_for_hub(site)
        c1, r1, _ = await post(url, env, {})
        c2, r2, _ = await post(url, env, {})
        assert (c1, c2) == (200, 200)
        assert r1 == r2  # the same receipt again, never a second copy
        receipt = crypto.check_receipt(
            json.dumps(r1, separators=(",", ":"), ensure_ascii=False).encode()
            if isinstance(r1, dict)
            else r1,
            receivers=[crypto.load_public_key(site.pub("hub"))],
            envelope_id=envelope_mod.parse(
                io.BytesIO(env), max_size=len(env)
            ).header.id,
            envelope_sm3=crypto.sm3(env).hex(),
            manifest=list(
                envelope_mod.parse(io.BytesIO(env), max_size=len(env)).header.manifest
            ),
        )
        assert receipt.status == "accepted"
        # Same records in a new envelope: accepted, held once.
        c3, _, _ = await post(url, await _sealed_for_hub(site), {})
        assert c3 == 200
        _, st = await get_json(site.admin("hub") + "/api/status", site.admin_auth())
        assert st["hub"]["records"] == 4
        assert st["hub"]["duplicates"] == 4
        # Tampered, unknown sender, too old: refused with a bare code.
        bad = bytearray(await _sealed_for_hub(site))
        bad[-30] ^= 1
        c, a, _ = await post(url, bytes(bad), {})
        assert (c, a) == (400, {"error": {"code": "E_ENVELOPE"}})
        site.key("stranger")
        c, a, _ = await post(url, await _sealed_for_hub(site, sender="stranger"), {})
        assert (c, a) == (400, {"error": {"code": "E_ENVELOPE"}})
        old = await _sealed_for_hub(
            site, created=datetime.now(UTC) - timedelta(days=40)
        )
        c, a, _ = await post(url, old, {})
        assert (c, a["error"]["code"]) == (422, "E_ENVELOPE_EXPIRED")


async def test_hub_refuses_same_id_with_other_bytes(site: Site) -> None:
    async with running(site.hub_config()):
        url = site.url("hub") + "/v1/envelopes"
        key = crypto.load_private_key(site.key("gw"))
        hub_pub = crypto.load_public_key(site.pub("hub"))
        line = crypto.canonical_json(json.loads(demo_jsonl(1).splitlines()[0]))
        kw: dict[str, Any] = {
            "now": datetime.now(UTC),
            "manifest": [crypto.sm3(line).hex()],
            "envelope_id": "fixed-id-1",
        }
        e1, _ = crypto.seal_bytes(line + b"\n", key, [hub_pub], **kw)
        e2, _ = crypto.seal_bytes(
            line + b"\n", key, [hub_pub], **kw
        )  # fresh key, nonce
        assert (await post(url, e1, {}))[0] == 200
        c, a, _ = await post(url, e2, {})
        assert (c, a["error"]["code"]) == (409, "E_ENVELOPE_CONFLICT")


async def test_hub_rejects_records_that_fail_the_catalogue(site: Site) -> None:
    async with running(site.hub_config()):
        bad = (
            b'{"dataset":"SECTION","fields":{"BID_SECTION_CODE":"short"}}\n'
            + demo_jsonl(1)
        )
        env = await _sealed_for_hub(site, payload=bad)
        c, r, _ = await post(site.url("hub") + "/v1/envelopes", env, {})
        assert c == 200
        body = json.loads(r["body"])
        outcomes = [x["outcome"] for x in body["records"]]
        assert outcomes.count("rejected") == 1
        assert outcomes.count("accepted") == 4


async def test_metrics_and_health(site: Site) -> None:
    async with running(site.hub_config(), site.gateway_config()):
        await post(site.url("gw") + "/v1/ingest/src", demo_jsonl(1), auth(site))
        await until(lambda: delivered(site, 4))
        async with aiohttp.ClientSession() as s:
            async with s.get(site.admin("gw") + "/metrics") as r:
                text = await r.text()
            async with s.get(site.admin("gw") + "/healthz") as r:
                assert r.status == 200
        assert (
            'gateway_records_total{dataset="SECTION",outcome="accepted",source="src"} 2.0'
            in text
        )
        assert 'gateway_delivered_records_total{destination="hub"} 4.0' in text


async def test_error_budget_holds_the_whole_input(site: Site) -> None:
    async with running(site.hub_config(), site.gateway_config()):
        bad = b'{"dataset": "SECTION", "fields": {"BID_SECTION_CODE": "x"}}\n' * 15
        c, a, _ = await post(
            site.url("gw") + "/v1/ingest/src", bad + demo_jsonl(3), auth(site)
        )
        assert c == 422
        assert a["error"]["code"] == "E_ERROR_BUDGET"
        assert "15 of 27" in a["error"]["message"]
        _, st = await get_json(site.admin("gw") + "/api/status", site.admin_auth())
        assert st["sources"]["src"]["records"] == 0
        assert st["sources"]["src"]["quarantined"] == 1
        async with (
            aiohttp.ClientSession() as s,
            s.get(site.admin("gw") + "/metrics") as r,
        ):
            assert 'gateway_inputs_held_total{source="src"} 1.0' in await r.text()
    with Spool(site.root / "gw" / "spool.db", readonly=True) as sp:
        kept = sp.get_input(a["intake_id"])
        assert kept is not None
        assert len(kept.rejects) == 15
        assert kept.raw.startswith(bad)


async def test_hub_forgets_envelope_ids_after_the_retention(site: Site) -> None:
    """Ids older than the dedupe retention are pruned (at start and hourly);
    such an envelope is refused as expired anyway, so nothing is stored twice."""
    hub_cfg = site.hub_config(extra="")
    hub_cfg.write_text(
        hub_cfg.read_text().replace(
            "hub:\n", "hub:\n  dedupe_retention_days: 0.00003\n"
        )
    )  # about 2.6 s
    env = await _sealed_for_hub(site)
    env_id = envelope_mod.parse(io.BytesIO(env), max_size=len(env)).header.id
    async with running(hub_cfg):
        c, _, _ = await post(site.url("hub") + "/v1/envelopes", env, {})
        assert c == 200
    with Spool(site.root / "hub" / "spool.db", readonly=True) as sp:
        assert sp.get_envelope_receipt(env_id) is not None
    await asyncio.sleep(3)
    async with running(hub_cfg):

        async def pruned() -> bool:
            with Spool(site.root / "hub" / "spool.db", readonly=True) as sp:
                return sp.get_envelope_receipt(env_id) is None

        await until(pruned, 10)
        c, a, _ = await post(site.url("hub") + "/v1/envelopes", env, {})
        assert (c, a["error"]["code"]) == (422, "E_ENVELOPE_EXPIRED")
    with Spool(site.root / "hub" / "spool.db", readonly=True) as sp:
        assert sp.get_envelope_receipt(env_id) is None
        assert sp.hub_counts().records == 4  # the records themselves are kept
