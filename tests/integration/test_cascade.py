"""A three-level cascade as separate processes, mixing SFTP and HTTP hops.

::

    county gateway ──SFTP (real sshd)──▶ city hub ──HTTP──▶ provincial hub
          └──────────────────HTTP (routed directly)────────────▲

The county routes PROJECT and TENDER_PROJECT records to the city (an SFTP
hop: envelope files in, signed receipt files back) and SECTION records
straight to the province. At the far end every record is held exactly once,
each by the route it was given, and for every record that came through the
city the province holds an origin proof that verifies as signed by the
county's key (docs/envelope.md, "Provenance across hubs").
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crypto import canonical_json, load_public_key, sm3
from crypto.origin import OriginProof, verify_origin
from gateway.demo_data import demo_jsonl
from gateway.spool import Spool
from tests.harness import Proc, Site, http
from tests.sshd import Sshd, sshd
from tests.transports.helpers import wait_for

# Nanjing's project trees go through the city hub (SFTP), Wuxi's straight to
# the province (HTTP): each tree takes one path, so parent-first ordering at
# each destination orders it at the far end too (docs/operations.md).
VIA_CITY = ("3201", "3203", "3205", "3207")


def _node(site: Site, name: str) -> list[str]:
    return [
        "node:",
        f"  name: {name}",
        f"  state_dir: {site.root / name}",
        f"  keys: [{{file: {site.key(name)}}}]",
        "listen:",
        f"  ingest: 127.0.0.1:{site.port(name)}",
        f"  admin: 127.0.0.1:{site.port(name + '-admin')}",
        f"  admin_token_files: [{site.admin_token_file()}]",
    ]


FAST = [
    "    batch: {max_records: 100, linger_s: 0.05}",
    "    retry: {quick_attempts: 2, initial_s: 0.05, max_quick_s: 0.2, "
    "backoff_min_s: 0.2, backoff_max_s: 1.0}",
    "    circuit_failures: 50",
    "    circuit_open_s: 0.5",
]


def county(site: Site, s: Sshd, inbox: Path, receipts: Path) -> Path:
    lines = [
        *_node(site, "county"),
        "sources:",
        "  - name: src",
        f"    token_files: [{site.token_file()}]",
        "    content_types: [application/x-ndjson]",
        "destinations:",
        "  - name: city",
        "    type: sftp",
        *s.connection_yaml("    ").splitlines(),
        f"    remote_dir: {inbox}",
        f"    receipts_dir: {receipts}",
        "    receipt_wait_s: 5",
        "    receipt_poll_s: 0.1",
        "    receipt_retry_s: 0.5",
        f"    recipient_keys: [{site.pub('city')}]",
        *FAST,
        "  - name: province",
        f"    url: {site.url('province')}/v1/envelopes",
        f"    recipient_keys: [{site.pub('province')}]",
        "    timeout_s: 5",
        *FAST,
        "routes:",
        "  - name: via-city",
        f"    match: {{region_prefixes: [{', '.join(repr(p) for p in VIA_CITY)}]}}",
        "    destinations: [city]",
        "  - name: direct",
        "    default: true",
        "    destinations: [province]",
        "quota: {min_free_disk: 16MiB}",
    ]
    path = site.root / "county.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def city(site: Site, inbox: Path, receipts: Path) -> Path:
    lines = [
        *_node(site, "city"),
        "destinations:",
        "  - name: province",
        f"    url: {site.url('province')}/v1/envelopes",
        f"    recipient_keys: [{site.pub('province')}]",
        "    timeout_s: 5",
        *FAST,
        "hub:",
        f"  senders: [{{name: county, key: {site.pub('county')}}}]",
        "  destinations: [province]",
        "  envelope_dirs:",
        f"    - {{path: {inbox}, receipts_dir: {receipts}, poll_interval_s: 0.2}}",
        "quota: {min_free_disk: 16MiB}",
    ]
    path = site.root / "city.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def province(site: Site) -> Path:
    return site.hub_config("province", senders=("city", "county"))


def held(site: Site, name: str) -> list[tuple[bytes, str]]:
    with Spool(site.root / name / "spool.db", readonly=True) as sp:
        out: list[tuple[bytes, str]] = []
        after = 0
        while page := sp.list_hub_records(after=after, limit=500):
            out.extend((r.canonical, r.sender_key_id) for r in page)
            after = page[-1].record_id
    return out


def origin_of(site: Site, name: str, record_sm3: str) -> OriginProof:
    with sqlite3.connect(site.root / name / "origins.db") as db:
        row = db.execute(
            """SELECT p.proof FROM record_origins r JOIN proofs p ON p.id = r.proof_id
               WHERE r.record_sm3 = ?""",
            (record_sm3,),
        ).fetchone()
    assert row is not None, f"no origin proof for {record_sm3}"
    return OriginProof.from_json(json.loads(row[0]))


def _delivered(p: Proc, dest: str) -> int:
    d: Any = p.status()["destinations"]
    return int(d[dest]["delivered"])


@pytest.mark.slow
def test_county_city_province(tmp_path: Path) -> None:
    site = Site(tmp_path)
    drop = tmp_path / "city-sftp"
    inbox, receipts = drop / "in", drop / "receipts"
    with sshd(tmp_path / "sshd") as server:
        procs = {
            "province": Proc(
                province(site), site.admin("province"), tmp_path / "p.log"
            ),
            "city": Proc(
                city(site, inbox, receipts), site.admin("city"), tmp_path / "c.log"
            ),
            "county": Proc(
                county(site, server, inbox, receipts),
                site.admin("county"),
                tmp_path / "k.log",
            ),
        }
        try:
            for p in procs.values():
                p.start()
            bodies = [demo_jsonl(2, start=i * 2, seed=i) for i in range(4)]
            for i, b in enumerate(bodies):
                code, answer = http(
                    "POST",
                    site.url("county") + "/v1/ingest/src",
                    b,
                    {
                        "Authorization": f"Bearer {site.token}",
                        "Content-Type": "application/x-ndjson",
                        "Idempotency-Key": f"k{i}",
                    },
                )
                assert code == 202, answer
            records = [
                canonical_json(json.loads(line))
                for b in bodies
                for line in b.splitlines()
            ]
            via_city = [
                r
                for r in records
                if json.loads(r)["fields"]["REGION_CODE"].startswith(VIA_CITY)
            ]
            direct = [r for r in records if r not in via_city]
            assert via_city
            assert direct

            def county_done() -> bool:
                d: Any = procs["county"].status()["destinations"]
                return (d["city"]["delivered"], d["province"]["delivered"]) == (
                    len(via_city),
                    len(direct),
                )

            wait_for(county_done, 60, "county deliveries receipted")
            wait_for(
                lambda: _delivered(procs["city"], "province") == len(via_city),
                60,
                "city forwarded onward",
            )
        finally:
            for p in reversed(procs.values()):
                p.stop()
    # Receipts flowed back down: every SFTP hop's receipt was read and removed.
    assert list(inbox.glob("*.env*")) == []
    assert list(receipts.iterdir()) == []
    at_province = held(site, "province")
    got = sorted(r for r, _ in at_province)
    assert got == sorted(records), "each record exactly once at the far end"
    county_id = load_public_key(site.pub("county")).id
    city_id = load_public_key(site.pub("city")).id
    by_sender = dict(at_province)
    for r in direct:
        assert by_sender[r] == county_id
    for r in via_city:
        assert by_sender[r] == city_id
        digest = sm3(r).hex()
        proof = origin_of(site, "province", digest)
        header = verify_origin(proof, [digest])
        assert header.sender == county_id, "the province can prove the county"
    # Parent-first at the far end: every record arrived after its parent.
    own = {"PROJECT": "PROJECT_CODE", "TENDER_PROJECT": "TENDER_PROJECT_CODE"}
    parent = {"TENDER_PROJECT": "PROJECT_CODE", "SECTION": "TENDER_PROJECT_CODE"}
    arrived: dict[str, int] = {}
    for i, (r, _) in enumerate(at_province):
        obj = json.loads(r)
        if obj["dataset"] in own:
            arrived[obj["fields"][own[obj["dataset"]]]] = i
    checked = 0
    for i, (r, _) in enumerate(at_province):
        obj = json.loads(r)
        if obj["dataset"] in parent:
            assert arrived[obj["fields"][parent[obj["dataset"]]]] < i, obj["dataset"]
            checked += 1
    assert checked == len(records) // 4 * 3
    # The city kept the same proofs for what it received.
    assert origin_of(site, "city", sm3(via_city[0]).hex()).sender_spki
