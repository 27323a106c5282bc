"""Parent-first ordering in the spool, and the references the catalogue implies.

Real SQLite files, real catalogue; the end-to-end checks (a gateway and hubs as
processes, the order at the far end) are in tests/integration/test_cascade.py
and tests/functional/test_ordering.py.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from adapters.base import NationalRecord
from adapters.catalogue import default_catalogue
from gateway.demo_data import demo_jsonl
from gateway.ordering import parent_index
from gateway.pipeline import accept_record, fixed
from gateway.records import AcceptedRecord, ItemState, Provenance
from gateway.spool import HELD_AT, MIGRATIONS, Spool
from tests.gateway.test_spool import PreV4

T0 = 1_790_000_000.0
TP = "E3201000001000001001"  # a tender project code (20)
SEC = TP + "001"  # one of its sections (23)


def rec(
    dataset: str,
    key: str,
    *,
    parent: str | None = None,
    provides: tuple[str, ...] = (),
    dests: tuple[str, ...] = ("hub",),
) -> AcceptedRecord:
    body = json.dumps({"dataset": dataset, "key": key}).encode()
    return AcceptedRecord(
        dataset=dataset,
        record_key=f"{dataset}:{key}",
        canonical=body,
        digest_hex=hashlib.sha256(body).hexdigest(),
        destinations=dests,
        parent_ref=parent,
        provides=provides,
    )


def tender(code: str = TP, **kw: object) -> AcceptedRecord:
    return rec("TENDER_PROJECT", code, provides=(f"TENDER_PROJECT:{code}",), **kw)  # type: ignore[arg-type]


def section(code: str = SEC, parent: str = TP, **kw: object) -> AcceptedRecord:
    return rec("SECTION", code, parent=f"TENDER_PROJECT:{parent}", **kw)  # type: ignore[arg-type]


def put(spool: Spool, *records: AcceptedRecord, at: float = T0) -> str:
    raw = json.dumps([r.record_key for r in records]).encode() + str(at).encode()
    p = Provenance(
        source="acme",
        remote_addr="192.0.2.7",
        token_id="tok-1",
        received_at=at,
        content_type="application/x-ndjson",
        digest_hex=hashlib.sha256(raw).hexdigest(),
    )
    return spool.put_intake(p, raw, list(records), now=at).intake_id


def seal_and_deliver(
    spool: Spool,
    dest: str,
    now: float,
    *,
    parent_first: bool = True,
    rejected: dict[str, str] | None = None,
) -> list[str]:
    """Lease what is ready, seal it into one envelope, ack it; returns the keys."""
    items = spool.lease(dest, limit=100, lease_s=60, now=now, parent_first=parent_first)
    if not items:
        return []
    env = f"env-{dest}-{now}"
    spool.put_envelope(
        dest,
        env,
        b"x",
        digest_hex="0" * 64,
        item_ids=[i.item_id for i in items],
        now=now,
    )
    by_key = {i.record_key: i.item_id for i in items}
    spool.ack_envelope(
        env,
        receipt_id=f"r-{env}",
        receipt_digest_hex="1" * 64,
        receipt=b"{}",
        now=now,
        rejected={by_key[k]: why for k, why in (rejected or {}).items()},
    )
    return [i.record_key for i in items]


@pytest.fixture
def spool(tmp_path: Path):
    with Spool(tmp_path / "spool.db") as s:
        yield s


# -- references from the catalogue ----------------------------------------------


def test_references_follow_the_catalogue_parent_links() -> None:
    idx = parent_index(default_catalogue())
    assert (
        idx.parent_ref("SECTION", {"TENDER_PROJECT_CODE": TP}) == f"TENDER_PROJECT:{TP}"
    )
    assert idx.parent_ref("SECTION", {}) is None  # no value: nothing to wait for
    assert idx.parent_ref("PROJECT", {"PROJECT_CODE": "x"}) is None  # a root
    assert idx.provides("TENDER_PROJECT", {"TENDER_PROJECT_CODE": TP}) == (
        f"TENDER_PROJECT:{TP}",
    )
    # A tender project is itself the child of a project.
    assert idx.parent_ref("TENDER_PROJECT", {"PROJECT_CODE": TP[:17]}) == (
        f"PROJECT:{TP[:17]}"
    )
    # Children refer to a purchase project through two different fields: a
    # purchase project satisfies both ways, each written with its field name.
    got = idx.provides(
        "PURCHASE_PROJECT", {"PURCHASE_PROJECT_CODE": "P1", "UNIFIED_DEAL_CODE": "U1"}
    )
    assert set(got) == {
        "PURCHASE_PROJECT.PURCHASE_PROJECT_CODE:P1",
        "PURCHASE_PROJECT.UNIFIED_DEAL_CODE:U1",
    }
    assert idx.parent_ref("BID_DEAL_ANNOUNCE", {"UNIFIED_DEAL_CODE": "U1"}) == (
        "PURCHASE_PROJECT.UNIFIED_DEAL_CODE:U1"
    )


def test_accepted_records_carry_their_references() -> None:
    """A business-key reference is the parent's record key (the migration
    rebuilds delivered references from record keys)."""
    cat = default_catalogue()
    got = []
    for line in demo_jsonl(1).splitlines():
        obj = json.loads(line)
        out = accept_record(
            NationalRecord(dataset=obj["dataset"], fields=obj["fields"], locator="t"),
            cat,
            fixed(["hub"]),
        )
        assert isinstance(out, AcceptedRecord), out
        got.append(out)
    project, tp, sec1, sec2 = got
    assert project.parent_ref is None
    assert project.provides == (project.record_key,)
    assert tp.parent_ref == project.record_key
    assert tp.provides == (tp.record_key,)
    assert sec1.parent_ref == sec2.parent_ref == tp.record_key
    assert sec1.provides == ()


# -- the spool --------------------------------------------------------------------


def test_a_child_waits_until_its_parent_is_delivered(spool: Spool) -> None:
    # The child arrives first, the parent later.
    child_input = put(spool, section())
    assert seal_and_deliver(spool, "hub", T0 + 1) == []  # held, nothing sent
    counts = spool.destination_counts(now=T0 + 11)["hub"]
    assert (counts.queued, counts.held, counts.oldest_held_s) == (1, 1, 10.0)
    [held] = spool.held("hub")
    assert (held.ref, held.records, held.since) == (f"TENDER_PROJECT:{TP}", 1, T0 + 1)
    state = spool.intake_state(child_input)
    assert state is not None
    [d] = state.records[0].deliveries
    assert d.state is ItemState.HELD
    assert d.error == f"E_PARENT_PENDING: waiting for TENDER_PROJECT:{TP}"

    put(spool, tender(), at=T0 + 2)
    # The parent goes alone; its receipt releases the child for the next envelope.
    assert seal_and_deliver(spool, "hub", T0 + 3) == [f"TENDER_PROJECT:{TP}"]
    assert spool.held("hub") == []
    assert seal_and_deliver(spool, "hub", T0 + 4) == [f"SECTION:{SEC}"]
    counts = spool.destination_counts(now=T0 + 5)["hub"]
    assert (counts.delivered, counts.held, counts.queued) == (2, 0, 0)


def test_parent_and_child_in_one_input_go_in_two_envelopes(spool: Spool) -> None:
    put(spool, tender(), section(), section(SEC[:-1] + "2"), rec("NOTE", "n1"))
    first = seal_and_deliver(spool, "hub", T0 + 1)
    assert first == [f"TENDER_PROJECT:{TP}", "NOTE:n1"]  # the rest is held
    second = seal_and_deliver(spool, "hub", T0 + 2)
    assert sorted(second) == [f"SECTION:{SEC}", f"SECTION:{SEC[:-1]}2"]


def test_ordering_is_per_destination(spool: Spool) -> None:
    put(spool, tender(dests=("a", "b")), section(dests=("a", "b")))
    assert seal_and_deliver(spool, "a", T0 + 1) == [f"TENDER_PROJECT:{TP}"]
    # b has not received the parent: its copy of the child still waits.
    assert spool.lease("b", limit=9, lease_s=60, now=T0 + 2, parent_first=True) != []
    assert [h.destination for h in spool.held()] == ["b"]
    assert seal_and_deliver(spool, "a", T0 + 3) == [f"SECTION:{SEC}"]


def test_a_parent_delivered_in_an_earlier_run_is_remembered(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool(path) as s:
        put(s, tender())
        seal_and_deliver(s, "hub", T0 + 1)
    with Spool(path) as s:
        put(s, section(), at=T0 + 100)
        assert seal_and_deliver(s, "hub", T0 + 101) == [f"SECTION:{SEC}"]


def test_a_refused_parent_is_dead_and_its_children_stay_held(spool: Spool) -> None:
    put(spool, tender(), section())
    key = f"TENDER_PROJECT:{TP}"
    assert seal_and_deliver(spool, "hub", T0 + 1, rejected={key: "E_FORMAT"}) == [key]
    counts = spool.destination_counts(now=T0 + 2)["hub"]
    assert (counts.delivered, counts.dead, counts.held) == (0, 1, 1)
    dead = spool._conn.execute(
        "SELECT error FROM items WHERE state = 'dead'"
    ).fetchone()
    assert dead[0] == "E_RECEIVER_REJECTED: E_FORMAT"
    assert seal_and_deliver(spool, "hub", T0 + 3) == []
    # Fixed upstream and redriven: the parent goes, then the child.
    assert spool.redrive_dead("hub", now=T0 + 4) == 1
    assert seal_and_deliver(spool, "hub", T0 + 5) == [key]
    assert seal_and_deliver(spool, "hub", T0 + 6) == [f"SECTION:{SEC}"]


def test_an_operator_can_declare_a_parent_present(spool: Spool) -> None:
    put(spool, section(), section("E3201000001000002001001", "E3201000001000002001"))
    assert seal_and_deliver(spool, "hub", T0 + 1) == []
    assert len(spool.held("hub")) == 2
    assert spool.release_held("hub", [f"TENDER_PROJECT:{TP}"], now=T0 + 2) == 1
    assert seal_and_deliver(spool, "hub", T0 + 3) == [f"SECTION:{SEC}"]
    how = spool._conn.execute(
        "SELECT how FROM delivered_refs WHERE ref = ?", (f"TENDER_PROJECT:{TP}",)
    ).fetchone()
    assert how == ("operator",)
    assert spool.release_held("hub", None, now=T0 + 4) == 1  # all the rest
    assert seal_and_deliver(spool, "hub", T0 + 5) == ["SECTION:E3201000001000002001001"]
    assert spool.held() == []


def test_without_parent_first_nothing_is_held(spool: Spool) -> None:
    put(spool, section(), tender())
    got = seal_and_deliver(spool, "hub", T0 + 1, parent_first=False)
    assert got == [f"SECTION:{SEC}", f"TENDER_PROJECT:{TP}"]


def test_turning_parent_first_off_releases_what_was_held(spool: Spool) -> None:
    put(spool, section())
    assert seal_and_deliver(spool, "hub", T0 + 1) == []
    assert spool.unhold_all("hub", now=T0 + 2) == 1
    assert spool.held() == []
    assert seal_and_deliver(spool, "hub", T0 + 3, parent_first=False) == [
        f"SECTION:{SEC}"
    ]


def test_a_held_record_is_still_counted_by_the_quotas(spool: Spool) -> None:
    put(spool, section())
    before = spool.usage()["acme"]
    seal_and_deliver(spool, "hub", T0 + 1)
    assert spool.usage()["acme"] == before
    assert spool.check() == []


def test_dead_lettering_a_held_record_forgets_its_hold(spool: Spool) -> None:
    put(spool, section())
    seal_and_deliver(spool, "hub", T0 + 1)
    [item] = [r[0] for r in spool._conn.execute("SELECT id FROM items")]
    assert spool.dead_letter([item], reason="operator", now=T0 + 2) == 1
    assert spool.held() == []
    assert spool._conn.execute("SELECT COUNT(*) FROM holds").fetchone() == (0,)


def test_many_held_records_do_not_block_the_ready_ones(spool: Spool) -> None:
    put(spool, *[section(f"{TP}{i:03d}") for i in range(250)], rec("NOTE", "n"))
    # One lease call holds all 250 and still finds the ready record behind them.
    got = spool.lease("hub", limit=100, lease_s=60, now=T0 + 1, parent_first=True)
    assert [i.record_key for i in got] == ["NOTE:n"]
    assert spool.held("hub")[0].records == 250
    held_at = {
        r[0]
        for r in spool._conn.execute(
            "SELECT ready_at FROM items WHERE state = 'queued'"
        )
    }
    assert held_at == {HELD_AT}


def test_version_3_spool_migrates_with_delivered_keys_remembered(
    tmp_path: Path,
) -> None:
    class V3Spool(PreV4):
        MIGRATIONS = MIGRATIONS[:3]

    path = tmp_path / "spool.db"
    with V3Spool(path) as old:
        # Delivered under version 3: a tender project (its key is its reference).
        put(old, rec("TENDER_PROJECT", TP))
        items = old.lease("hub", limit=9, lease_s=60, now=T0 + 1)
        old.ack(
            [i.item_id for i in items],
            receipt_id="r",
            receipt_digest_hex="1" * 64,
            now=T0 + 2,
        )
    with Spool(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        row = s._conn.execute(
            "SELECT destination, ref, how FROM delivered_refs"
        ).fetchall()
        assert row == [("hub", f"TENDER_PROJECT:{TP}", "receipt")]
        put(s, section(), at=T0 + 10)
        assert seal_and_deliver(s, "hub", T0 + 11) == [f"SECTION:{SEC}"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
