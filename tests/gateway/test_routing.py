"""Routing rules: match by data set, region prefix, source and fields; defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.models import RouteRule
from gateway.demo_data import demo_jsonl
from gateway.routing import Router
from tests.functional.test_pipeline import auth, delivered, get_json, post, until
from tests.harness import Site, running


def rules(*specs: dict[str, object]) -> Router:
    return Router([RouteRule.model_validate(s) for s in specs])


def test_rules_union_in_order_and_defaults() -> None:
    r = rules(
        {
            "name": "construction",
            "match": {"datasets": ["SECTION", "PROJECT"]},
            "destinations": ["province"],
        },
        {
            "name": "wuxi",
            "match": {"region_prefixes": ["3202"]},
            "destinations": ["city", "province"],
        },
        {
            "name": "procurement",
            "match": {"sources": ["nt"], "fields": {"BID_TYPE": ["1", "2"]}},
            "destinations": ["procure-hub"],
        },
        {"name": "rest", "default": True, "destinations": ["archive"]},
    )
    assert r.route("x", "SECTION", {"REGION_CODE": "320213"}) == ("province", "city")
    assert r.route("x", "SECTION", {"REGION_CODE": "320612"}) == ("province",)
    assert r.route("nt", "PURCHASE_PROJECT", {"BID_TYPE": "2"}) == ("procure-hub",)
    assert r.route("nt", "PURCHASE_PROJECT", {"BID_TYPE": "9"}) == ("archive",)
    assert r.route("other", "PURCHASE_PROJECT", {"BID_TYPE": "1"}) == ("archive",)
    assert r.reachable("nt") == ("province", "city", "procure-hub", "archive")
    assert r.reachable("other") == ("province", "city", "archive")


def test_no_default_means_unroutable() -> None:
    r = rules(
        {"name": "only", "match": {"datasets": ["SECTION"]}, "destinations": ["a"]}
    )
    assert r.route("s", "PROJECT", {}) == ()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


async def test_records_reach_the_hubs_their_rules_name(site: Site) -> None:
    gw = site.gateway_config(
        destinations={"hub": "hub", "hub2": "hub2"},
        extra="""\
routes:
  - name: sections-to-hub2
    match: {datasets: [SECTION]}
    destinations: [hub2]
  - name: nanjing-to-both
    match: {region_prefixes: ["3201"]}
    destinations: [hub, hub2]
""",
    )
    hub, hub2 = site.hub_config(), site.hub_config("hub2")
    async with running(hub, hub2, gw):
        # 2 projects: the first in 320102 (Nanjing), the second in 320205 (Wuxi).
        c, a, _ = await post(
            site.url("gw") + "/v1/ingest/src", demo_jsonl(2), auth(site)
        )
        assert c == 202
        # Wuxi's PROJECT and TENDER_PROJECT match no rule and there is no default.
        assert (a["records"], a["rejected"]) == (6, 2)
        _, state = await get_json(
            site.url("gw") + f"/v1/intake/{a['intake_id']}", auth(site)
        )
        assert {r["code"] for r in state["rejected"]} == {"E_UNROUTABLE"}
        await until(lambda: delivered(site, 4, "hub"))
        await until(lambda: delivered(site, 4, "hub2"))
        _, h1 = await get_json(site.admin("hub") + "/api/status", site.admin_auth())
        _, h2 = await get_json(site.admin("hub2") + "/api/status", site.admin_auth())
        assert h1["hub"]["records"] == 4  # all of Nanjing's records
        # Nanjing's 2 sections and their parents; Wuxi's 2 sections are routed
        # to hub2 too, but their tender project goes nowhere, so parent-first
        # ordering holds them there.
        assert h2["hub"]["records"] == 4
        _, g = await get_json(site.admin("gw") + "/api/status", site.admin_auth())
        assert g["destinations"]["hub2"]["held"] == 2
        assert g["destinations"]["hub"]["held"] == 0
