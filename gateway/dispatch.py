"""Delivery, per destination: spool → batch → seal → outbox → send → receipt → ack.

Each destination has its own two tasks (seal loop, forward loop), its own
forwarder with its own connection pool and in-flight limit, and its own
circuit breaker, so a black-holed destination never slows another. Nothing
waits in memory: the spool is the queue, and long retry waits are written
back to it (they survive restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import crypto
from gateway.errors import (
    CryptoError,
    DeliveryError,
    LeaseLost,
    PermanentDeliveryError,
    ReceiptInvalid,
    ResealRequired,
    SpoolError,
    TransientDeliveryError,
)
from gateway.forwarders.base import Forwarder
from gateway.node import Destination
from gateway.provenance import OriginStore, origin_meta
from gateway.ratelimit import TokenBucket
from gateway.records import LeasedEnvelope, LeasedItem
from gateway.spool import AsyncSpool
from monitoring.events import Events

__all__ = ["BATCH_CONTENT_TYPE", "DestinationWorker", "build_batch"]

log = logging.getLogger("gateway.dispatch")

BATCH_CONTENT_TYPE = "application/x-ndjson; profile=national-records"
SEAL_LEASE_S = 120.0
IDLE_POLL_S = 1.0


def build_batch(items: list[LeasedItem]) -> tuple[bytes, list[str]]:
    """JSON Lines of canonical records, and the manifest of their SM3 digests."""
    return b"".join(i.canonical + b"\n" for i in items), [i.digest_hex for i in items]


@dataclass
class Breaker:
    """Consecutive-failure circuit breaker (closed → open → half-open)."""

    failures_to_open: int
    open_s: float
    failures: int = 0
    opened_at: float | None = None
    on_change: Callable[[bool], None] = field(default=lambda _open: None)

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        # Half-open after the wait: let one round of sends try.
        return now - self.opened_at >= self.open_s

    def success(self) -> None:
        if self.opened_at is not None:
            self.on_change(False)  # noqa: FBT003
        self.failures = 0
        self.opened_at = None

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            if self.opened_at is None:
                self.on_change(True)  # noqa: FBT003
            self.opened_at = now

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


class DestinationWorker:
    """Owns one destination's seal loop and forward loop."""

    def __init__(
        self,
        dest: Destination,
        forwarder: Forwarder,
        spool: AsyncSpool,
        sender: Callable[[], crypto.PrivateKey],
        events: Events,
        *,
        clock: Callable[[], float] = time.time,
        origins: OriginStore | None = None,
    ) -> None:
        self.dest = dest
        # A hub forwarding onward carries each record's origin proof along.
        self.origins = origins
        self.name = dest.cfg.name
        self.forwarder = forwarder
        self.spool = spool
        self._sender = sender
        self.events = events
        self._clock = clock
        self.records_ready = asyncio.Event()
        self.envelopes_ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self.breaker = Breaker(
            dest.cfg.circuit_failures,
            dest.cfg.circuit_open_s,
            on_change=lambda is_open: events.circuit(self.name, is_open=is_open),
        )
        self.last_error: str | None = None
        rl = dest.cfg.rate_limit
        self._buckets = [
            (TokenBucket(rate, burst_s=rl.burst_s), per_record)
            for rate, per_record in (
                (rl.records_per_s, True),
                (rl.envelopes_per_s, False),
            )
            if rate is not None
        ]

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self.records_ready.set()
        self.envelopes_ready.set()
        self._tasks = [
            asyncio.create_task(self._unhold(), name=f"unhold:{self.name}"),
            asyncio.create_task(self._seal_loop(), name=f"seal:{self.name}"),
            asyncio.create_task(self._forward_loop(), name=f"forward:{self.name}"),
        ]

    async def stop(self, *, drain_s: float) -> None:
        """Stop taking new work; let in-flight sends finish (up to ``drain_s``)."""
        self._stopping.set()
        self.records_ready.set()
        self.envelopes_ready.set()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=drain_s)
        for t in self._tasks:
            t.cancel()
        for t in list(self._in_flight):
            t.cancel()
        await asyncio.gather(*self._tasks, *self._in_flight, return_exceptions=True)
        await self.forwarder.aclose()

    async def _unhold(self) -> None:
        """A destination configured without parent-first ordering holds nothing:
        release what an earlier configuration held (once, at start)."""
        if self.dest.cfg.ordering.parent_first:
            return
        try:
            n = await self.spool.unhold_all(self.name, now=self._clock())
        except SpoolError as exc:
            log.error(
                "Releasing held records failed.",
                extra={"destination": self.name, "detail": str(exc)},
            )
            return
        if n:
            log.info(
                "Parent-first ordering is off: held records released.",
                extra={"destination": self.name, "records": n},
            )
            self.records_ready.set()

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    # -- sealing --------------------------------------------------------------

    async def _seal_loop(self) -> None:
        batch = self.dest.cfg.batch
        while not self._stopping.is_set():
            await self._wait(self.records_ready, IDLE_POLL_S)
            if self._stopping.is_set():
                return
            # Linger so that many small pushes share one envelope and one signature.
            if batch.linger_s:
                await asyncio.sleep(batch.linger_s)
            try:
                while not self._stopping.is_set():
                    n = await self._seal_once()
                    if n < batch.max_records:
                        break
            except (SpoolError, DeliveryError, CryptoError) as exc:
                self.last_error = f"seal: {exc}"
                log.error(
                    "Sealing failed.",
                    extra={"destination": self.name, "detail": str(exc)},
                )
                await asyncio.sleep(IDLE_POLL_S)

    async def _seal_once(self) -> int:
        cfg = self.dest.cfg
        now = self._clock()
        items = await self.spool.lease(
            self.name,
            limit=cfg.batch.max_records,
            lease_s=SEAL_LEASE_S,
            now=now,
            parent_first=cfg.ordering.parent_first,
        )
        if not items:
            return 0
        try:
            return await self._seal_items(items, now)
        except asyncio.CancelledError:
            # Stopped mid-seal (shutdown, reload): give the records back now
            # rather than leaving them leased until the lease runs out.
            with contextlib.suppress(SpoolError):
                await asyncio.shield(
                    self.spool.release(
                        [it.item_id for it in items],
                        delay_s=0,
                        now=self._clock(),
                        lease_until=items[0].lease_until,
                    )
                )
            raise

    async def _seal_items(self, items: list[LeasedItem], now: float) -> int:
        cfg = self.dest.cfg
        # Keep the batch under its byte budget; the rest goes back at once.
        size, keep = 0, list[LeasedItem]()
        for it in items:
            if keep and size + len(it.canonical) > cfg.batch.max_bytes:
                break
            keep.append(it)
            size += len(it.canonical)
        meta = {"destination": self.name}
        if self.origins is not None:
            found = await asyncio.to_thread(
                self.origins.lookup, [it.digest_hex for it in keep]
            )
            if found:
                extra, fit = origin_meta([it.digest_hex for it in keep], found)
                keep = keep[:fit]
                meta.update(extra)
        rest = [it.item_id for it in items[len(keep) :]]
        if rest:
            await self.spool.release(
                rest, delay_s=0, now=now, lease_until=items[0].lease_until
            )
        payload, manifest = build_batch(keep)
        started = time.perf_counter()
        env_id = uuid.uuid4().hex
        sender = self._sender()
        envelope, _header = await asyncio.to_thread(
            crypto.seal_bytes,
            payload,
            sender,
            list(self.dest.recipients),
            now=datetime.fromtimestamp(now, UTC),
            content_type=BATCH_CONTENT_TYPE,
            compression=cfg.compression,
            manifest=manifest,
            meta=meta,
            envelope_id=env_id,
        )
        digest = await asyncio.to_thread(crypto.sm3, envelope)
        try:
            await self.spool.put_envelope(
                self.name,
                env_id,
                envelope,
                digest_hex=digest.hex(),
                item_ids=[it.item_id for it in keep],
                now=self._clock(),
            )
        except LeaseLost:
            # Our lease ran out and someone else took the records: drop this envelope.
            log.warning(
                "Seal lease lost; envelope discarded.",
                extra={"destination": self.name, "envelope_id": env_id},
            )
            return len(keep)
        self.events.sealed(
            self.name,
            records=len(keep),
            envelope_id=env_id,
            seconds=time.perf_counter() - started,
            envelope_sm3=digest.hex(),
            key_id=sender.id,
        )
        self.envelopes_ready.set()
        return len(items)

    # -- forwarding -----------------------------------------------------------

    def _lease_s(self) -> float:
        cfg = self.dest.cfg
        return cfg.timeout_s * cfg.retry.quick_attempts + cfg.retry.max_quick_s * 2 + 30

    async def _forward_loop(self) -> None:
        cfg = self.dest.cfg
        while not self._stopping.is_set():
            await self._wait(self.envelopes_ready, IDLE_POLL_S)
            while not self._stopping.is_set():
                now = self._clock()
                if not self.breaker.allow(now):
                    break
                free = cfg.max_in_flight - len(self._in_flight)
                if free <= 0:
                    await asyncio.wait(
                        self._in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    continue
                # Half-open: one probe at a time; rate-limited: one at a time,
                # each when the buckets are out of debt.
                limit = 1 if self.breaker.is_open or self._buckets else free
                if self._buckets:
                    await self._rate_wait()
                    now = self._clock()
                try:
                    leased = await self.spool.lease_envelopes(
                        self.name, limit=limit, lease_s=self._lease_s(), now=now
                    )
                except SpoolError as exc:
                    self.last_error = f"spool: {exc}"
                    log.error(
                        "Leasing envelopes failed.",
                        extra={"destination": self.name, "detail": str(exc)},
                    )
                    break
                if not leased:
                    break
                for env in leased:
                    for bucket, per_record in self._buckets:
                        bucket.spend(len(env.item_ids) if per_record else 1)
                    task = asyncio.create_task(self._deliver_guarded(env))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                if self.breaker.is_open:
                    await asyncio.wait(self._in_flight)

    async def _rate_wait(self) -> None:
        waited = 0.0
        for bucket, _per_record in self._buckets:
            waited += await bucket.ready()
        if waited:
            self.events.rate_limited.labels(self.name).inc(waited)

    def _backoff(self, attempts: int, hint: float | None) -> float:
        r = self.dest.cfg.retry
        base = min(r.backoff_max_s, r.backoff_min_s * (2 ** min(attempts, 20)))
        wait = base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security
        if hint is not None:
            wait = max(wait, min(hint, r.backoff_max_s * 4))
        return float(wait)

    async def _deliver_guarded(self, env: LeasedEnvelope) -> None:
        """A bug in one delivery must not stall the destination: log it, retry later."""
        try:
            await self._deliver(env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "Delivery crashed; the envelope is retried later.",
                extra={"destination": self.name, "envelope_id": env.envelope_id},
            )
            self.last_error = f"E_INTERNAL: {type(exc).__name__}"
            with contextlib.suppress(SpoolError):
                await self.spool.release_envelopes(
                    [env.envelope_id],
                    delay_s=self._backoff(env.attempts, None),
                    now=self._clock(),
                    error=f"E_INTERNAL: {type(exc).__name__}",
                )

    async def _deliver(self, env: LeasedEnvelope) -> None:
        cfg = self.dest.cfg
        started = time.perf_counter()
        age_s = self._clock() - env.created_at
        try:
            if age_s > cfg.retry.max_age_days * 86400:
                raise ResealRequired(
                    f"{self.name}: envelope {env.envelope_id} is "
                    f"{age_s / 86400:.1f} days old",
                    code="E_ENVELOPE_EXPIRED",
                )
            receipt_raw = await self.forwarder.send(
                env.body, envelope_id=env.envelope_id
            )
            receipt = await asyncio.to_thread(
                crypto.check_receipt,
                receipt_raw,
                receivers=self.dest.receipt_signers,
                envelope_id=env.envelope_id,
                envelope_sm3=env.digest_hex,
                manifest=list(env.record_digests),
            )
            if receipt.status != "accepted":
                raise PermanentDeliveryError(
                    f"{self.name}: hub rejected envelope: {receipt.reason}",
                    code=receipt.reason or "E_REJECTED",
                )
            # The receipt answers record by record, in manifest (= item) order.
            rejected = {
                item: out.reason or "E_REJECTED"
                for item, out in zip(env.item_ids, receipt.records, strict=True)
                if out.outcome == "rejected"
            }
            await self.spool.ack_envelope(
                env.envelope_id,
                receipt_id=f"{receipt.receiver}:{env.envelope_id}",
                receipt_digest_hex=crypto.sm3(receipt_raw).hex(),
                receipt=receipt_raw,
                now=self._clock(),
                rejected=rejected,
            )
            if rejected:
                self.events.receiver_rejected(
                    self.name,
                    envelope_id=env.envelope_id,
                    by_reason=dict(Counter(rejected.values())),
                )
            if cfg.ordering.parent_first:
                self.records_ready.set()  # children may wait for these records
        except ResealRequired as exc:
            await self._give_back(env, exc)
            n = await self.spool.requeue_envelope(
                env.envelope_id, now=self._clock(), reason=exc.code
            )
            self.events.resealed(self.name, envelope_id=env.envelope_id, records=n)
            self.records_ready.set()
            return
        except PermanentDeliveryError as exc:
            self.breaker.success()  # the receiver answered: the link is fine
            await self._give_back(env, exc, permanent=True)
            await self.spool.dead_letter_envelopes(
                [env.envelope_id], reason=f"{exc.code}: {exc}", now=self._clock()
            )
            return
        except (TransientDeliveryError, ReceiptInvalid) as exc:
            hint = exc.retry_after if isinstance(exc, TransientDeliveryError) else None
            self.breaker.failure(self._clock())
            await self._give_back(env, exc)
            await self.spool.release_envelopes(
                [env.envelope_id],
                delay_s=self._backoff(env.attempts, hint),
                now=self._clock(),
                error=f"{exc.code}: {exc}",
            )
            return
        self.breaker.success()
        self.last_error = None
        self.events.delivered(
            self.name,
            records=len(env.item_ids) - len(rejected),
            envelope_id=env.envelope_id,
            seconds=time.perf_counter() - started,
            receipt_sm3=crypto.sm3(receipt_raw).hex(),
            peer=receipt.receiver,
            attempt=env.attempts + 1,
        )

    async def _give_back(
        self, env: LeasedEnvelope, exc: Exception, *, permanent: bool = False
    ) -> None:
        code = getattr(exc, "code", "E_DELIVERY")
        self.last_error = f"{code}: {exc}"
        self.events.send_failed(
            self.name,
            code=code,
            envelope_id=env.envelope_id,
            permanent=permanent,
            detail=str(exc),
        )
