"""Delivery worker with a fake forwarder, a real spool and real crypto."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import crypto
from config.models import HttpDestination
from crypto.envelope import parse
from gateway.dispatch import DestinationWorker
from gateway.errors import (
    PermanentDeliveryError,
    ResealRequired,
    TransientDeliveryError,
)
from gateway.node import Destination
from gateway.pipeline import canonical_record
from gateway.records import AcceptedRecord, Provenance
from gateway.spool import AsyncSpool
from monitoring.events import Events
from tests.conftest import make_key


class FakeHub:
    """A forwarder whose answers the test scripts; receipts are real and signed."""

    name = "hub"

    def __init__(self, key: crypto.PrivateKey) -> None:
        self.key = key
        self.script: list[Exception | str] = []
        self.sent: list[str] = []

    async def send(self, envelope: bytes, *, envelope_id: str) -> bytes:
        self.sent.append(envelope_id)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        if step == "garbage":
            return b"{}"
        h = parse(io.BytesIO(envelope), max_size=len(envelope)).header
        return crypto.make_receipt(
            self.key,
            envelope_id=envelope_id,
            envelope_sm3=crypto.sm3(envelope).hex(),
            received_at=datetime.now(UTC),
            records=[crypto.RecordOutcome(d, "accepted") for d in h.manifest],
        )

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def record(i: int) -> AcceptedRecord:
    canon = canonical_record("PROJECT", {"PROJECT_CODE": f"E320102261101{i:04d}"})
    return AcceptedRecord(
        dataset="PROJECT",
        record_key=f"PROJECT:{i}",
        canonical=canon,
        digest_hex=crypto.sm3(canon).hex(),
        destinations=("hub",),
    )


async def setup(
    tmp_path: Path, *, clock: Callable[[], float] = time.time, **cfg: object
) -> tuple[AsyncSpool, DestinationWorker, FakeHub, Events]:
    spool = await AsyncSpool.open(tmp_path / "spool.db")
    hub_key, me = make_key(), make_key()
    base: dict[str, object] = {
        "name": "hub",
        "url": "http://unused/v1/envelopes",
        "recipient_keys": ["x"],
        "batch": {"max_records": 10, "linger_s": 0},
        "retry": {"backoff_min_s": 0.05, "backoff_max_s": 0.1, "max_age_days": 1},
        "circuit_failures": 3,
        "circuit_open_s": 0.3,
    }
    base.update(cfg)
    d = Destination(
        HttpDestination.model_validate(base),
        (hub_key.public,),
        crypto.PeerTable([hub_key.public]),
    )
    fake = FakeHub(hub_key)
    events = Events(CollectorRegistry(), node="t", version="0")
    worker = DestinationWorker(d, fake, spool, lambda: me, events, clock=clock)
    return spool, worker, fake, events


async def put(spool: AsyncSpool, n: int, start: int = 0) -> None:
    prov = Provenance(
        source="s",
        remote_addr="127.0.0.1",
        token_id="t",
        received_at=time.time(),
        content_type="x",
        digest_hex="0" * 64,
    )
    await spool.put_intake(prov, b"raw", [record(start + i) for i in range(n)])


async def until(pred: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await pred():  # type: ignore[misc]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached")


async def counts(spool: AsyncSpool) -> dict[str, int]:
    c = (await spool.destination_counts(now=time.time()))["hub"]
    return {
        "queued": c.queued + c.leased + c.sealed,
        "delivered": c.delivered,
        "dead": c.dead,
    }


async def test_transient_then_delivered(tmp_path: Path) -> None:
    spool, w, fake, _ = await setup(tmp_path)
    fake.script = [TransientDeliveryError("down", code="HTTP_503", retry_after=0.05)]
    await put(spool, 25)
    w.start()
    try:
        await until(lambda: _eq(spool, delivered=25))
        assert len(fake.sent) == 4  # 3 envelopes of <=10 records, one sent twice
        assert w.last_error is None
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def _eq(spool: AsyncSpool, **want: int) -> bool:
    c = await counts(spool)
    return all(c[k] == v for k, v in want.items())


async def test_permanent_is_dead_lettered_with_reason(tmp_path: Path) -> None:
    spool, w, fake, _ = await setup(tmp_path)
    fake.script = [PermanentDeliveryError("hub said no", code="HTTP_400")]
    await put(spool, 5)
    w.start()
    try:
        await until(lambda: _eq(spool, dead=5))
        assert w.last_error is not None
        assert "HTTP_400" in w.last_error
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def test_too_old_envelope_is_resealed_under_a_new_id(tmp_path: Path) -> None:
    offset = 0.0
    spool, w, fake, _ = await setup(tmp_path, clock=lambda: time.time() + offset)
    fake.script = [TransientDeliveryError("down", code="HTTP_503", retry_after=0.05)]
    await put(spool, 3)
    w.start()
    try:
        await until(lambda: _sent(fake, 1))
        offset = 2 * 86400.0  # the envelope is now older than max_age_days
        await until(lambda: _eq(spool, delivered=3))
        assert len(set(fake.sent)) == 2, fake.sent  # a new envelope was sealed
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def _sent(fake: FakeHub, n: int) -> bool:
    return len(fake.sent) >= n


async def test_reseal_requested_by_receiver(tmp_path: Path) -> None:
    spool, w, fake, _ = await setup(tmp_path)
    fake.script = [ResealRequired("too old", code="E_ENVELOPE_EXPIRED")]
    await put(spool, 4)
    w.start()
    try:
        await until(lambda: _eq(spool, delivered=4))
        assert len(set(fake.sent)) == 2
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def test_unverifiable_receipt_is_never_counted_as_delivered(
    tmp_path: Path,
) -> None:
    spool, w, fake, _ = await setup(tmp_path)
    fake.script = ["garbage", "garbage"]
    await put(spool, 2)
    w.start()
    try:
        await until(lambda: _sent(fake, 2))
        assert (await counts(spool))["delivered"] == 0
        await until(lambda: _eq(spool, delivered=2))  # third try gets a real receipt
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def test_circuit_opens_after_failures_and_probes(tmp_path: Path) -> None:
    spool, w, fake, events = await setup(tmp_path)
    fake.script = [TransientDeliveryError("down", code="E_CONNECT")] * 3
    await put(spool, 30)
    w.start()
    try:
        await until(lambda: _breaker_open(w))
        assert (
            events.registry.get_sample_value(
                "gateway_circuit_open", {"destination": "hub"}
            )
            == 1
        )
        await until(lambda: _eq(spool, delivered=30))
        assert not w.breaker.is_open
        assert (
            events.registry.get_sample_value(
                "gateway_circuit_open", {"destination": "hub"}
            )
            == 0
        )
    finally:
        await w.stop(drain_s=1)
        await spool.aclose()


async def _breaker_open(w: DestinationWorker) -> bool:
    return w.breaker.is_open


@pytest.mark.parametrize("hint", [None, 3.0])
async def test_backoff_grows_and_honours_retry_after(
    tmp_path: Path, hint: float | None
) -> None:
    spool, w, _, _ = await setup(tmp_path)
    await spool.aclose()
    limit = 4 * w.dest.cfg.retry.backoff_max_s
    waits = [w._backoff(a, hint) for a in range(6)]
    assert all(0 < x <= limit for x in waits)
    if hint is not None:
        assert all(x >= min(hint, limit) for x in waits)
