"""Metrics as documented, on a live node; alert rules and the dashboard with promtool."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import aiohttp

from gateway.demo_data import demo_jsonl
from tests.conftest import ROOT, require_tool
from tests.functional.test_pipeline import auth, delivered, post, until
from tests.harness import Site, running

DOC = (ROOT / "docs/metrics.md").read_text()
DOCUMENTED = re.findall(r"^\| `(gateway_[a-z_]+)` \|", DOC, re.M)


def exported_names(text: str) -> set[str]:
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    # Info metrics are exposed as <name>_info; counters' TYPE line drops _total.
    return names | {n + "_total" for n in names} | {n + "_info" for n in names}


async def test_every_documented_metric_is_exported_and_promtool_agrees(
    tmp_path: Path,
) -> None:
    promtool = require_tool("promtool")
    site = Site(tmp_path)
    async with running(site.hub_config(), site.gateway_config()):
        await post(site.url("gw") + "/v1/ingest/src", demo_jsonl(1), auth(site))
        await post(site.url("gw") + "/v1/ingest/src", b"", auth(site))  # quarantined
        await until(lambda: delivered(site, 4))
        async with aiohttp.ClientSession() as s:
            async with s.get(site.admin("gw") + "/metrics") as r:
                gw_text = await r.text()
            async with s.get(site.admin("hub") + "/metrics") as r:
                hub_text = await r.text()
    assert len(DOCUMENTED) >= 20
    have = exported_names(gw_text) | exported_names(hub_text)
    missing = [m for m in DOCUMENTED if m not in have]
    assert not missing, f"documented but not exported: {missing}"
    undocumented = {
        n
        for n in re.findall(r"^# TYPE (gateway_\S+) ", gw_text + hub_text, re.M)
        if n not in DOCUMENTED
        and n + "_total" not in DOCUMENTED
        and n + "_info" not in DOCUMENTED
    }
    assert not undocumented, f"exported but not documented: {undocumented}"
    for text in (gw_text, hub_text):
        res = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            check=False,
        )
        assert res.returncode == 0, res.stdout.decode() + res.stderr.decode()
    # Zero-initialised series for configured names, so alerts see 0, not absence.
    assert 'gateway_circuit_open{destination="hub"} 0.0' in gw_text
    assert 'gateway_auth_failures_total{source="src"} 0.0' in gw_text


def test_alert_rules_check_and_unit_tests() -> None:
    promtool = require_tool("promtool")
    mon = ROOT / "monitoring"
    for args in (
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        res = subprocess.run(
            [promtool, *args], cwd=mon, capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_alerts_and_dashboard_use_documented_metrics_only() -> None:
    rules = (ROOT / "monitoring/alerts.yml").read_text()
    dash = json.loads((ROOT / "monitoring/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set(re.findall(r"gateway_[a-z_]+", rules + "\n".join(exprs)))
    base = {re.sub(r"_(bucket|sum|count)$", "", u) for u in used}
    unknown = {u for u in base if u not in DOCUMENTED}
    assert not unknown, f"not in docs/metrics.md: {unknown}"
    assert dash["uid"] == "exchange-gateway"
    assert len(dash["panels"]) >= 12
