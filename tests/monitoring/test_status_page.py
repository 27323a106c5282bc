"""The operator status page and the admin API behind it (/api/*).

The API tests run real nodes in-process; the page test drives Debian's headless
Chromium over the Chrome DevTools Protocol (aiohttp's websocket client): it
signs in with the admin token, compares the figures shown with /api/status,
shows and replays a quarantined input, and checks the audit log lists it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import crypto
from gateway.demo_data import demo_jsonl
from gateway.errors import ConfigError
from gateway.node import token_id
from gateway.operations import Rates
from monitoring.audit import AuditLog, export, recent
from monitoring.http import STATUS_PAGE
from tests.conftest import make_key, require_tool
from tests.harness import Site, node_from, running

JSONL = "application/x-ndjson"
HELD = "text/plain"  # not accepted by the test source until the config says so


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


async def call(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, headers=headers or {}, data=body or None) as r,
    ):
        raw = await r.read()
        try:
            data: Any = json.loads(raw)
        except ValueError:
            data = raw.decode()
        return r.status, data, dict(r.headers)


async def push(site: Site, body: bytes, content_type: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {site.token}", "Content-Type": content_type}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            site.url("gw") + "/v1/ingest/src", data=io.BytesIO(body), headers=headers
        ) as r,
    ):
        return r.status, await r.json()


async def api(site: Site, path: str, method: str = "GET") -> tuple[int, Any]:
    code, data, _ = await call(method, site.admin("gw") + path, site.admin_auth())
    return code, data


async def until(pred: Any, seconds: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached within {seconds} s")


def accept_held_type(site: Site) -> None:
    """Change the gateway's config so that the held content type is accepted."""
    path = site.root / "gw.yaml"
    text = path.read_text()
    old = "content_types: [application/x-ndjson, application/json]"
    assert old in text
    path.write_text(text.replace(old, f"content_types: [{JSONL}, {HELD}]"))


async def reloaded(site: Site, after_seq: int) -> bool:
    _, au = await api(site, "/api/audit?limit=20")
    return any(
        e["kind"] == "config_reloaded" and e["outcome"] == "ok" and e["seq"] > after_seq
        for e in au["entries"]
    )


# -- audit.recent ----------------------------------------------------------------


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(
            "input_accepted",
            actor="source:acme",
            source="acme",
            intake_id=f"in-{i:06d}",
            records=i,
        )


def test_recent_is_the_tail_newest_first_across_files(tmp_path: Path) -> None:
    d = tmp_path / "audit"
    with AuditLog.open(d, node="gw1", signer=make_key(), max_file_bytes=4096) as log:
        _fill(log, 120)
    assert len(list(d.glob("audit-*.jsonl"))) > 3  # rotated: the tail spans files
    everything = [json.loads(line) for line in export(d)]
    got = recent(d, 60)
    assert [e["seq"] for e in got] == [e["seq"] for e in reversed(everything)][:60]
    assert got == list(reversed(everything))[:60]
    assert recent(d, 10_000) == list(reversed(everything))
    assert recent(d, 0) == []
    assert recent(tmp_path / "nowhere", 5) == []


def test_recent_skips_a_partial_last_line_and_reads_only_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "audit"
    with AuditLog.open(d, node="gw1", signer=make_key()) as log:
        _fill(log, 3000)
    (_, last), *_ = sorted(
        ((p.stat().st_size, p) for p in d.glob("audit-*.jsonl")), reverse=True
    )
    size = last.stat().st_size
    with last.open("ab") as f:
        f.write(b'{"v":1,"seq":99999,"kind":"torn')  # a write in progress
    read = 0
    pread = os.pread

    def counting(fd: int, n: int, offset: int) -> bytes:
        nonlocal read
        data = pread(fd, n, offset)
        read += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting)  # the os module audit.py reads with
    got = recent(d, 20)
    assert len(got) == 20
    assert got[0]["kind"] == "checkpoint"  # the final checkpoint of the clean close
    assert all(a["seq"] == b["seq"] + 1 for a, b in itertools.pairwise(got))
    assert read < size // 10, (read, size)


def test_rates_span_about_a_window() -> None:
    r = Rates(window_s=60)
    assert r.rates() == ({}, 0.0)
    r.add(0.0, {("source", "a"): 0})
    r.add(10.0, {("source", "a"): 50, ("destination", "b"): 5})
    rates, span = r.rates()
    assert span == 10.0
    # b counted 5 since the first sample (the counters start at 0 with the process)
    assert rates == {("source", "a"): 5.0, ("destination", "b"): 0.5}
    r.add(10.2, {("source", "a"): 51})  # frequent callers refresh the newest sample
    r.add(10.4, {("source", "a"): 52, ("destination", "b"): 5})
    rates, span = r.rates()
    assert span == pytest.approx(10.4)
    assert rates[("source", "a")] == pytest.approx(5.0)
    for t in range(20, 200, 10):
        r.add(float(t), {("source", "a"): t * 2, ("destination", "b"): 5})
    rates, span = r.rates()
    assert 60 <= span <= 70
    assert rates[("source", "a")] == pytest.approx(2.0)
    assert rates[("destination", "b")] == 0.0


# -- the admin API ----------------------------------------------------------------

API = [
    ("GET", "/api/status"),
    ("GET", "/api/quarantine"),
    ("GET", "/api/quarantine/in-unknown"),
    ("POST", "/api/quarantine/in-unknown/replay"),
    ("GET", "/api/audit"),
]


async def test_api_needs_the_admin_token_and_the_rest_stays_open(site: Site) -> None:
    async with running(site.gateway_config()):
        base = site.admin("gw")
        for method, path in API:
            code, body, headers = await call(method, base + path)
            assert code == 401, (path, body)
            assert body["error"]["code"] == "E_AUTH_MISSING"
            assert headers["WWW-Authenticate"].startswith("Bearer")
            code, body, _ = await call(
                method, base + path, {"Authorization": "Basic x"}
            )
            assert code == 401, path
            wrong = {"Authorization": "Bearer admin-token-0123456789abcdeX"}
            code, body, _ = await call(method, base + path, wrong)
            assert code == 403, path
            assert body["error"]["code"] == "E_AUTH_INVALID"
            # The source's token is no admin token.
            code, body, _ = await call(
                method, base + path, {"Authorization": f"Bearer {site.token}"}
            )
            assert code == 403, path
            code, body, headers = await call(method, base + path, site.admin_auth())
            assert code in (200, 404), (path, body)
            assert headers["Cache-Control"] == "no-store"
        for path in ("/metrics", "/healthz", "/readyz"):
            code, _, _ = await call("GET", base + path)
            assert code == 200, path
        # The page itself is open and carries no data: the file, byte for byte.
        code, page, headers = await call("GET", base + "/")
        assert code == 200
        assert headers["Content-Type"].startswith("text/html")
        assert page == STATUS_PAGE.read_text(encoding="utf-8")
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "connect-src 'self'" in csp
        assert "script-src 'sha256-" in csp
        assert "unsafe-inline" not in csp
        assert headers["X-Frame-Options"] == "DENY"
        # No external assets: nothing to fetch from anywhere but this listener.
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
        assert "@import" not in page
        assert "url(" not in page
        # Refused attempts are in the audit log (without the token, of course).
        code, au = await api(site, "/api/audit?limit=100")
        failures = [e for e in au["entries"] if e["kind"] == "auth_failed"]
        assert len(failures) == 4 * len(API)
        assert {e["code"] for e in failures} == {"E_AUTH_MISSING", "E_AUTH_INVALID"}
        assert all(e["actor"] == "operator:admin" for e in failures)
        assert site.token not in json.dumps(au)


async def test_api_is_off_without_an_admin_token(site: Site) -> None:
    path = site.gateway_config()
    text = path.read_text()
    path.write_text(re.sub(r"  admin_token_files: .*\n", "", text))
    async with running(path):
        for method, p in API:
            code, body, _ = await call(method, site.admin("gw") + p, site.admin_auth())
            assert code == 403, p
            assert body["error"]["code"] == "E_ADMIN_DISABLED"
            assert "admin token" in body["error"]["message"]
            assert "管理令牌" in body["error"]["message"]
        code, _, _ = await call("GET", site.admin("gw") + "/metrics")
        assert code == 200


def test_admin_token_file_must_be_private_and_long(site: Site) -> None:
    path = site.gateway_config()
    site.admin_token_file().chmod(0o644)
    with pytest.raises(ConfigError, match=r"listen\.admin_token_files\.0: .*chmod 600"):
        node_from(path)
    site.admin_token_file().write_text("short\n")
    site.admin_token_file().chmod(0o600)
    with pytest.raises(ConfigError, match=r"listen\.admin_token_files\.0: .*at least"):
        node_from(path)


async def test_quarantine_show_replay_and_audit(site: Site) -> None:
    reloads: list[asyncio.Event] = []
    async with running(site.hub_config(), site.gateway_config(), reloads=reloads):
        code, good = await push(site, demo_jsonl(2), JSONL)
        assert code == 202
        held = demo_jsonl(1, start=50)
        code, bad = await push(site, held, HELD)
        assert code == 415
        assert bad["error"]["code"] == "E_CONTENT_TYPE"
        iid = bad["intake_id"]

        code, q = await api(site, "/api/quarantine")
        assert code == 200
        assert [i["intake_id"] for i in q["items"]] == [iid]
        item = q["items"][0]
        assert item["source"] == "src"
        assert item["reason_code"] == "E_CONTENT_TYPE"
        assert item["status"] == "quarantined"
        assert item["size"] == len(held)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", item["received_at_bj"])
        assert (await api(site, "/api/quarantine?source=other"))[1]["items"] == []
        assert (await api(site, "/api/quarantine?limit=x"))[0] == 400

        code, shown = await api(site, f"/api/quarantine/{iid}")
        assert code == 200
        assert shown["source"] == "src"
        assert shown["content_type"] == HELD
        assert shown["token_id"] == token_id(site.token.encode())
        assert shown["sm3"] == crypto.sm3(held).hex()
        assert shown["size"] == len(held)
        assert shown["reason"]["code"] == "E_CONTENT_TYPE"
        assert shown["rejects"][0]["code"] == "E_CONTENT_TYPE"
        assert shown["remote_addr"].startswith("127.0.0.1")
        # Provenance, never the bytes.
        text = json.dumps(shown, ensure_ascii=False)
        assert "raw" not in shown
        assert held.decode()[:40] not in text
        assert base64.b64encode(held).decode()[:40] not in text
        assert (await api(site, "/api/quarantine/in-nope"))[0] == 404
        assert (await api(site, "/api/quarantine/..%2Fx"))[0] == 404

        # Replayed before the cause is fixed: refused again, counted.
        code, r = await api(site, f"/api/quarantine/{iid}/replay", "POST")
        assert code == 422
        assert (r["accepted"], r["code"]) == (False, "E_CONTENT_TYPE")
        _, q = await api(site, "/api/quarantine")
        assert q["items"][0]["replay_count"] == 1

        async def delivered(n: int) -> bool:
            _, st = await api(site, "/api/status")
            return bool(st["destinations"]["hub"]["delivered"] == n)

        await until(lambda: delivered(good["records"]), what="first input delivered")

        # Fix the cause (SIGHUP-style reload), replay: accepted and delivered.
        _, before = await api(site, "/api/audit?limit=1")
        accept_held_type(site)
        reloads[1].set()
        await until(lambda: reloaded(site, before["entries"][0]["seq"]), what="reload")
        code, r = await api(site, f"/api/quarantine/{iid}/replay", "POST")
        assert code == 200, r
        assert r == {
            "intake_id": iid,
            "accepted": True,
            "records": 4,
            "rejected": 0,
            "destinations": ["hub"],
            "code": None,
            "message": None,
        }
        code, r = await api(site, f"/api/quarantine/{iid}/replay", "POST")
        assert (code, r["code"]) == (409, "E_NOT_QUARANTINED")
        code, r = await api(site, "/api/quarantine/in-nope/replay", "POST")
        assert (code, r["code"]) == (404, "E_NOT_FOUND")

        await until(lambda: delivered(good["records"] + 4), what="replay delivered")
        assert (await api(site, "/api/quarantine"))[1]["items"] == []
        _, q = await api(site, "/api/quarantine?all=1")
        assert [(i["intake_id"], i["status"]) for i in q["items"]] == [
            (iid, "accepted")
        ]

        # The audit log, newest first, names the operator by the token's id.
        code, au = await api(site, "/api/audit?limit=30")
        assert code == 200
        seqs = [e["seq"] for e in au["entries"]]
        assert seqs == list(range(seqs[0], seqs[0] - len(seqs), -1))
        assert seqs[-1] == 1 or len(seqs) == 30
        actions = [e for e in au["entries"] if e["kind"] == "operator_action"]
        admin = "admin:" + token_id(site.admin_token.encode())
        assert [(e["outcome"], e["code"]) for e in actions] == [
            ("refused", "E_NOT_FOUND"),
            ("refused", "E_NOT_QUARANTINED"),
            ("ok", None),
            ("refused", "E_CONTENT_TYPE"),
        ]
        ok = actions[2]
        assert ok["actor"] == f"operator:{admin}"
        assert ok["data"]["user"] == admin
        assert ok["data"]["command"] == "quarantine replay"
        assert ok["data"]["target"] == iid
        assert ok["data"]["records"] == 4
        assert ok["remote"].startswith("127.0.0.1")
        assert len((await api(site, "/api/audit?limit=3"))[1]["entries"]) == 3
        assert (await api(site, "/api/audit?limit=-1"))[0] == 400

        # Throughput: records per second over the last minute, from memory.
        _, st = await api(site, "/api/status")
        assert st["throughput_window_s"] > 0
        assert st["sources"]["src"]["throughput"] > 0
        assert st["destinations"]["hub"]["throughput"] > 0
        assert st["sources"]["src"]["last_error"] == "E_CONTENT_TYPE"


# -- the page in headless Chromium ------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1400,2400",
]


class Cdp:
    """Just enough of the Chrome DevTools Protocol: commands and page scripts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        await self.ws.send_json({"id": mid, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 20)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"DevTools connection: {msg.type} {msg.data}")
            data = json.loads(msg.data)
            if data.get("id") == mid:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                result: dict[str, Any] = data["result"]
                return result
            # anything else is an event nobody subscribed to; skip it

    async def js(self, expression: str) -> Any:
        r = await self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait(self, expression: str, seconds: float = 10.0) -> Any:
        async def check() -> Any:
            return await self.js(expression)

        return await until(check, seconds, what=f"page: {expression}")


@contextlib.asynccontextmanager
async def chromium(exe: str, tmp_path: Path) -> AsyncIterator[Cdp]:
    profile = tmp_path / "chromium-profile"
    log_path = tmp_path / "chromium.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its helpers are ours to end, by group id
        )
    try:
        port_file = profile / "DevToolsActivePort"

        async def port() -> int:
            if proc.returncode is not None:
                raise AssertionError(
                    f"chromium exited {proc.returncode}: {log_path.read_text()[-2000:]}"
                )
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            return int(lines[0]) if lines and lines[0].isdigit() else 0

        devtools = await until(port, 20, what="chromium's DevToolsActivePort")
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{devtools}/json/list") as r:
                targets = await r.json()
            page = next(t for t in targets if t["type"] == "page")
            async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Cdp(ws)
    finally:
        # Chromium and its helpers: the process group we started, nothing else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


READ_PAGE = """JSON.stringify((() => {
  const cells = (tr) => Object.fromEntries(
    [...tr.querySelectorAll("td[data-k]")].map((td) => [td.dataset.k, td.textContent]));
  const named = (id) => Object.fromEntries(
    [...document.querySelectorAll(`#${id} tbody tr[data-name]`)]
      .map((tr) => [tr.dataset.name, cells(tr)]));
  return {
    node: document.getElementById("node").textContent,
    sources: named("sources"),
    destinations: named("destinations"),
    quarantine: [...document.querySelectorAll("#quarantine tbody tr[data-id]")]
      .map((tr) => ({id: tr.dataset.id, ...cells(tr),
                     replayable: !tr.querySelector("button[data-action=replay]").disabled})),
    audit: [...document.querySelectorAll("#audit tbody tr[data-seq]")]
      .map((tr) => ({...cells(tr), seq: Number(tr.dataset.seq)})),
    result: {state: document.getElementById("q-result").dataset.state || "",
             text: document.getElementById("q-result").textContent},
    error: document.getElementById("error").hidden ? "" : document.getElementById("error").textContent,
    refreshes: Number(document.body.dataset.refreshes),
  };
})())"""


async def read_page(cdp: Cdp) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(await cdp.js(READ_PAGE))
    return shown


def rate_text(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


async def click(cdp: Cdp, selector: str) -> None:
    """Click when the button is there and enabled: the page re-renders its tables
    every refresh, and a button is disabled while its action runs."""
    await cdp.wait(
        f"(() => {{ const b = document.querySelector({json.dumps(selector)});"
        " if (!b || b.disabled) return false; b.click(); return true; })()"
    )


async def test_status_page_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    exe = require_tool("chromium")  # in CI: fails when missing, never skips
    reloads: list[asyncio.Event] = []
    async with running(site.hub_config(), site.gateway_config(), reloads=reloads):
        code, good = await push(site, demo_jsonl(3), JSONL)
        assert code == 202
        code, bad = await push(site, demo_jsonl(1, start=50), HELD)
        assert code == 415
        iid = bad["intake_id"]

        async def settled() -> bool:
            _, st = await api(site, "/api/status")
            return bool(st["destinations"]["hub"]["delivered"] == good["records"])

        await until(settled, what="first input delivered")

        async with chromium(exe, tmp_path) as cdp:
            await cdp.call("Page.navigate", url=site.admin("gw") + "/")
            await cdp.wait(
                "document.readyState === 'complete'"
                " && !document.getElementById('login').hidden"
            )
            # A wrong token is refused and the page asks again.
            await cdp.js("document.getElementById('token').focus()")
            await cdp.call("Input.insertText", text="not-the-admin-token-at-all")
            await click(cdp, "#login-button")
            await cdp.wait("!document.getElementById('error').hidden")
            assert "E_AUTH_INVALID" in (await read_page(cdp))["error"]
            assert await cdp.js("document.getElementById('login').hidden") is False
            # The right one: the tables fill in.
            await cdp.js("document.getElementById('token').focus()")
            await cdp.call("Input.insertText", text=site.admin_token)
            await click(cdp, "#login-button")
            await cdp.wait(
                "Number(document.body.dataset.refreshes) >= 1"
                " && document.querySelector('#sources tr[data-name]') !== null"
            )
            assert await cdp.js("sessionStorage.length") == 1
            assert await cdp.js("document.cookie") == ""

            # The figures shown are the API's.
            shown = await read_page(cdp)
            _, st = await api(site, "/api/status")
            assert shown["node"] == st["node"] == "gw"
            assert set(shown["sources"]) == set(st["sources"]) == {"src"}
            for name, v in st["sources"].items():
                row = shown["sources"][name]
                for k in ("accepted", "records", "rejected", "quarantined"):
                    assert row[k] == str(v[k]), (name, k, row, v)
                assert row["last_error"].startswith("E_CONTENT_TYPE @ ")
                assert re.fullmatch(r"\d+\.\d\d", row["throughput"]), row
                assert abs(float(row["throughput"]) - v["throughput"]) < 1.0
            assert st["sources"]["src"]["quarantined"] == 1
            assert set(shown["destinations"]) == set(st["destinations"]) == {"hub"}
            for name, v in st["destinations"].items():
                row = shown["destinations"][name]
                for k in ("queued", "delivered", "dead"):
                    assert row[k] == str(v[k]), (name, k, row, v)
                assert v["oldest_age_s"] is None
                assert row["oldest_age"] == "—"
                assert v["held"] == 0
                assert row["held"] == "0"
                assert v["circuit_open"] is False
                assert row["circuit"] == "正常 closed"
                assert row["last_error"] == (v["last_error"] or "—")
                assert abs(float(row["throughput"]) - v["throughput"]) < 1.0
            assert [q["id"] for q in shown["quarantine"]] == [iid]
            row = shown["quarantine"][0]
            assert (row["source"], row["reason"]) == ("src", "E_CONTENT_TYPE")
            assert row["replayable"]
            _, au = await api(site, "/api/audit?limit=50")
            by_seq = {e["seq"]: e for e in au["entries"]}
            seqs = [a["seq"] for a in shown["audit"]]
            assert seqs == list(range(seqs[0], seqs[0] - len(seqs), -1))
            for a in shown["audit"]:
                e = by_seq[a["seq"]]
                assert (a["kind"], a["actor"], a["outcome"]) == (
                    e["kind"],
                    e["actor"],
                    e["outcome"],
                )
            assert any(a["kind"] == "input_quarantined" for a in shown["audit"])

            # Show: provenance and reason in the panel, never the bytes.
            await click(
                cdp, f'#quarantine tr[data-id="{iid}"] button[data-action=show]'
            )
            await cdp.wait("!document.getElementById('q-detail').hidden")
            panel = await cdp.js("document.getElementById('q-detail').textContent")
            _, detail = await api(site, f"/api/quarantine/{iid}")
            assert detail["sm3"] in panel
            assert "E_CONTENT_TYPE" in panel
            assert HELD in panel
            assert '"dataset"' not in panel

            # Replay before the fix: refused again, and the page says so.
            await click(
                cdp, f'#quarantine tr[data-id="{iid}"] button[data-action=replay]'
            )
            await cdp.wait(
                "document.getElementById('q-result').dataset.state === 'refused'"
            )
            assert "E_CONTENT_TYPE" in (await read_page(cdp))["result"]["text"]

            # Fix the cause, reload the node's config, replay from the page again.
            _, before = await api(site, "/api/audit?limit=1")
            accept_held_type(site)
            reloads[1].set()
            await until(
                lambda: reloaded(site, before["entries"][0]["seq"]), what="reload"
            )
            await click(
                cdp, f'#quarantine tr[data-id="{iid}"] button[data-action=replay]'
            )
            await cdp.wait(
                "document.getElementById('q-result').dataset.state === 'accepted'"
            )
            shown = await read_page(cdp)
            assert iid in shown["result"]["text"]
            assert "4 条记录 records" in shown["result"]["text"]
            await cdp.wait("document.querySelector('#quarantine tr[data-id]') === null")

            # The API agrees: the input is accepted and its records go out.
            code, intake, _ = await call(
                "GET",
                site.url("gw") + f"/v1/intake/{iid}",
                {"Authorization": f"Bearer {site.token}"},
            )
            assert code == 200
            assert intake["status"] == "accepted"
            assert len(intake["records"]) == 4

            async def replay_delivered() -> bool:
                _, st = await api(site, "/api/status")
                return bool(
                    st["destinations"]["hub"]["delivered"] == good["records"] + 4
                )

            await until(replay_delivered, what="replayed records delivered")

            # The audit log lists the operator action, on the page and in the API.
            admin = "operator:admin:" + token_id(site.admin_token.encode())
            _, au = await api(site, "/api/audit?limit=50")
            ok = [
                e
                for e in au["entries"]
                if e["kind"] == "operator_action" and e["outcome"] == "ok"
            ]
            assert len(ok) == 1
            assert ok[0]["actor"] == admin
            assert ok[0]["data"]["target"] == iid
            shown = await cdp.wait(
                f"""(() => {{
                  const row = document.querySelector('#audit tr[data-seq="{ok[0]["seq"]}"]');
                  return row ? row.textContent : null;
                }})()"""
            )
            assert "operator_action" in shown
            assert admin in shown
            assert "command=quarantine replay" in shown
            assert f"target={iid}" in shown

            # Figures after the replay, once more against the API.
            await cdp.js("document.getElementById('refresh').click()")
            n = (await read_page(cdp))["refreshes"]
            await cdp.wait(f"Number(document.body.dataset.refreshes) > {n}")
            shown = await read_page(cdp)
            _, st = await api(site, "/api/status")
            assert shown["sources"]["src"]["records"] == str(
                st["sources"]["src"]["records"]
            )
            assert st["sources"]["src"]["records"] == good["records"] + 4
            assert shown["destinations"]["hub"]["delivered"] == str(
                st["destinations"]["hub"]["delivered"]
            )
            assert shown["sources"]["src"]["quarantined"] == "0"

            shot = await cdp.call(
                "Page.captureScreenshot", format="png", captureBeyondViewport=True
            )
            path = tmp_path / "status-page.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            print(f"status page screenshot: {path}")
            assert path.stat().st_size > 10_000

            # Signing out forgets the token.
            await click(cdp, "#logout")
            assert await cdp.js("sessionStorage.length") == 0
            assert await cdp.js("document.getElementById('main').hidden") is True
