"""Operator commands against a running node: quarantine list/show/replay, audit verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway.demo_data import demo_jsonl
from tests.harness import ROOT, Proc, Site, http


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_gateway.py"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_quarantine_replay_and_audit_verify(tmp_path: Path) -> None:
    site = Site(tmp_path)
    cfg = site.gateway_config()
    gw = Proc(cfg, site.admin("gw"), site.root / "gw.log").start()
    try:
        body = demo_jsonl(1)
        code, ans = http(
            "POST",
            site.url("gw") + "/v1/ingest/src",
            body,
            {"Authorization": f"Bearer {site.token}", "Content-Type": "text/csv"},
        )
        assert code == 415
        iid = json.loads(ans)["intake_id"]
        r = cli("quarantine", "list", "--config", str(cfg))
        assert r.returncode == 0
        assert iid in r.stdout
        assert "E_CONTENT_TYPE" in r.stdout
        r = cli(
            "quarantine",
            "show",
            iid,
            "--config",
            str(cfg),
            "--raw",
            str(tmp_path / "raw.bin"),
        )
        assert r.returncode == 0, r.stderr
        shown = json.loads(r.stdout)
        assert shown["reason"]["code"] == "E_CONTENT_TYPE"
        assert (tmp_path / "raw.bin").read_bytes() == body
        # Replaying before the cause is fixed leaves it in quarantine.
        r = cli("quarantine", "replay", iid, "--config", str(cfg))
        assert r.returncode == 1
        assert "E_CONTENT_TYPE" in r.stderr
        # The operator fixes the source's config; the replay keeps the intake id.
        cfg.write_text(
            cfg.read_text().replace(
                "content_types: [application/x-ndjson, application/json]",
                "content_types: [application/x-ndjson, application/json, text/csv]",
            )
        )
        r = cli("quarantine", "replay", iid, "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        assert "4 records" in r.stdout
        code, st = http(
            "GET",
            site.url("gw") + f"/v1/intake/{iid}",
            None,
            {"Authorization": f"Bearer {site.token}"},
        )
        state = json.loads(st)
        assert state["status"] == "accepted"
        assert len(state["records"]) == 4
        assert state["replayed_at"] is not None
        r = cli("quarantine", "replay", iid, "--config", str(cfg))
        assert r.returncode == 1
        assert "E_NOT_QUARANTINED" in r.stderr
    finally:
        assert gw.stop() == 0
    r = cli("audit", "verify", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    audit_dir = site.root / "gw" / "audit"
    text = "".join(p.read_text() for p in sorted(audit_dir.glob("audit-*.jsonl")))
    for kind in (
        "node_started",
        "input_quarantined",
        "input_replayed",
        "node_stopping",
        "checkpoint",
        "config_loaded",
    ):
        assert f'"kind":"{kind}"' in text, kind
    assert '"actor":"operator:' in text
    # Edit one entry: verify names it and exits 1.
    first = sorted(audit_dir.glob("audit-*.jsonl"))[0]
    lines = first.read_text().splitlines(keepends=True)
    target = next(i for i, ln in enumerate(lines) if '"input_quarantined"' in ln)
    lines[target] = lines[target].replace('"E_CONTENT_TYPE"', '"E_CONTENT_TYPX"')
    first.write_text("".join(lines))
    r = cli("audit", "verify", "--config", str(cfg))
    assert r.returncode == 1
    assert f"{first.name}:{target + 1}" in r.stdout + r.stderr


def test_dead_letters_redriven_after_the_cause_is_fixed(tmp_path: Path) -> None:
    """A hub that does not know us refuses (400): dead letters. Once it knows us,
    the operator re-drives them and they are delivered."""
    import time

    site = Site(tmp_path)
    site.key("someone-else")
    hub_cfg = site.hub_config(senders=("someone-else",))
    hub = Proc(hub_cfg, site.admin("hub"), site.root / "hub.log").start()
    cfg = site.gateway_config()
    gw = Proc(cfg, site.admin("gw"), site.root / "gw.log").start()
    try:
        code, _ = http(
            "POST",
            site.url("gw") + "/v1/ingest/src",
            demo_jsonl(1),
            {
                "Authorization": f"Bearer {site.token}",
                "Content-Type": "application/x-ndjson",
            },
        )
        assert code == 202
        deadline = time.monotonic() + 30
        # Parent-first: the project is sent (and refused) alone; its tender
        # project and sections wait for it.
        while (gw.status()["destinations"]["hub"]["dead"], held(site)) != (1, 3):
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
        # The CLI reads the last error from the spool (the service may be down).
        r = cli("status", "--config", str(cfg), "--json")
        dest = json.loads(r.stdout)["destinations"]["hub"]
        assert dest["last_error"].startswith("HTTP_400: hub: "), dest
        code, _ = http(
            "POST",
            site.url("gw") + "/v1/ingest/src",
            b"<xml/>",
            {"Authorization": f"Bearer {site.token}", "Content-Type": "text/xml"},
        )
        assert code == 415
        r = cli("status", "--config", str(cfg))
        assert "last error of src: E_CONTENT_TYPE: " in r.stdout
        assert "last error of hub: HTTP_400: " in r.stdout
        hub.stop()
        hub_cfg.write_text(site.hub_config(senders=("gw",)).read_text())
        hub.start()
        r = cli("redrive", "--config", str(cfg), "--destination", "hub")
        assert r.returncode == 0, r.stderr
        assert "1 dead-lettered records queued again" in r.stdout
        deadline = time.monotonic() + 30
        while gw.status()["destinations"]["hub"]["delivered"] != 4:
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
    finally:
        gw.stop()
        hub.stop()
    text = "".join(
        p.read_text() for p in (site.root / "gw" / "audit").glob("audit-*.jsonl")
    )
    assert '"kind":"dead_lettered"' in text
    assert '"kind":"dead_redriven"' in text


def held(site: Site) -> int:
    r = cli("status", "--config", str(site.root / "gw.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)["destinations"]["hub"]["held"])


def test_held_records_listed_and_released_by_an_operator(tmp_path: Path) -> None:
    """Sections whose tender project reached the hub by another way: the operator
    sees them held, declares the parent present, and they are delivered."""
    import time

    site = Site(tmp_path)
    hub = Proc(site.hub_config(), site.admin("hub"), site.root / "hub.log").start()
    cfg = site.gateway_config()
    gw = Proc(cfg, site.admin("gw"), site.root / "gw.log").start()
    body = b"".join(
        line
        for line in demo_jsonl(2).splitlines(keepends=True)
        if json.loads(line)["dataset"] == "SECTION"
    )
    tender = json.loads(body.splitlines()[0])["fields"]["TENDER_PROJECT_CODE"]
    try:
        code, _ = http(
            "POST",
            site.url("gw") + "/v1/ingest/src",
            body,
            {
                "Authorization": f"Bearer {site.token}",
                "Content-Type": "application/x-ndjson",
            },
        )
        assert code == 202
        deadline = time.monotonic() + 30
        while held(site) != 4:
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
        r = cli("held", "list", "--config", str(cfg))
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2  # two tender projects, two sections each
        assert any(f"waiting for TENDER_PROJECT:{tender}" in x for x in lines)
        r = cli("held", "release", "--config", str(cfg), "--destination", "hub")
        assert r.returncode == 2
        assert "--ref REF" in r.stderr
        r = cli(
            "held", "release", "--config", str(cfg), "--destination", "hub",
            "--ref", f"TENDER_PROJECT:{tender}",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "hub: 2 held records released" in r.stdout
        while gw.status()["destinations"]["hub"]["delivered"] != 2:
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
        assert held(site) == 2
        r = cli(
            "held", "release", "--config", str(cfg), "--destination", "hub", "--all"
        )
        assert "hub: 2 held records released" in r.stdout
        while gw.status()["destinations"]["hub"]["delivered"] != 4:
            assert time.monotonic() < deadline, gw.status()
            time.sleep(0.1)
        assert cli("held", "list", "--config", str(cfg)).stdout == ""
    finally:
        gw.stop()
        hub.stop()
    text = "".join(
        p.read_text() for p in (site.root / "gw" / "audit").glob("audit-*.jsonl")
    )
    assert text.count('"kind":"held_released"') == 2
