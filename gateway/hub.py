"""Hub mode: ``POST /v1/envelopes`` → verify, open, validate, store, signed receipt.

Order of checks: size; structure; a repeat of a stored envelope id (same
bytes: the same receipt again, never a second copy; other bytes: refused);
age against the dedupe retention; then the sender's signature (before any
key is unwrapped); decryption; the manifest against the records carried;
the catalogue. Everything received is stored, and forwarded onward when the
hub has destinations of its own, in one fsync'd transaction before the
receipt is sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import web

import crypto
from adapters.base import NationalRecord
from adapters.catalogue import Catalogue
from crypto.envelope import parse as parse_envelope
from crypto.origin import OriginProof, proof_of, verify_origin
from gateway.bodies import TooLarge, read_limited
from gateway.errors import EnvelopeInvalid, QuotaExceeded, SpoolError
from gateway.pipeline import Route, accept_record
from gateway.provenance import OriginStore, decode_meta
from gateway.records import AcceptedRecord, InboxEnvelope, Provenance, Reject
from gateway.spool import AsyncSpool
from monitoring.events import Events

__all__ = ["RECEIPT_TYPE", "EnvelopeAnswer", "Hub"]

log = logging.getLogger("gateway.hub")
RECEIPT_TYPE = "application/vnd.smenv.receipt+json"


class _BadBatch(Exception):
    """The opened payload does not match its signed manifest."""


@dataclass(frozen=True, slots=True)
class EnvelopeAnswer:
    """The hub's answer to one envelope, whatever carried it (HTTP or a file)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return RECEIPT_TYPE if self.status == 200 else "application/json"


@dataclass
class Hub:
    ring: crypto.KeyRing
    senders: crypto.PeerTable
    sender_names: dict[str, str]
    spool: AsyncSpool
    catalogue: Catalogue
    events: Events
    route: Route
    retention_s: float
    max_envelope_bytes: int
    max_plaintext_bytes: int
    sink_dir: Path | None
    notify: Callable[[tuple[str, ...]], None]
    clock: Callable[[], float] = time.time
    origins: OriginStore | None = None  # origin proofs of what we receive

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/envelopes", self.receive)]

    def _refuse(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        envelope_id: str = "",
        sender: str = "",
    ) -> EnvelopeAnswer:
        # Peers get the code only; the detail is for our log and audit.
        self.events.hub_received(
            "refused",
            envelope_id=envelope_id,
            sender=sender,
            detail=f"{code}: {detail}",
        )
        return EnvelopeAnswer(status, json.dumps({"error": {"code": code}}).encode())

    @staticmethod
    def _http(answer: EnvelopeAnswer) -> web.Response:
        return web.Response(
            status=answer.status,
            body=answer.body,
            headers=answer.headers,
            content_type=answer.content_type,
        )

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/envelopes``: read within the limit, then ``accept_envelope``."""
        limit = self.max_envelope_bytes
        if request.content_length is not None and request.content_length > limit:
            return self._http(
                self._refuse(413, "E_TOO_LARGE", f"{request.content_length} bytes")
            )
        try:
            data = await read_limited(request.content, limit)
        except TooLarge:
            return self._http(self._refuse(413, "E_TOO_LARGE", f"over {limit} bytes"))
        return self._http(
            await self.accept_envelope(data, remote_addr=request.remote or "")
        )

    async def accept_envelope(self, data: bytes, *, remote_addr: str) -> EnvelopeAnswer:
        """One envelope, whatever carried it: verify, open, store, signed receipt.

        The receipt (status 200) is returned only after everything is durable.
        """
        limit = self.max_envelope_bytes
        if len(data) > limit:
            return self._refuse(413, "E_TOO_LARGE", f"{len(data)} bytes")
        digest = (await asyncio.to_thread(crypto.sm3, data)).hex()
        try:
            parsed = parse_envelope(io.BytesIO(data), max_size=limit)
        except EnvelopeInvalid as exc:
            return self._refuse(400, "E_ENVELOPE", exc.detail)
        header = parsed.header
        stored = await self.spool.get_envelope_receipt(header.id)
        if stored is not None:
            if stored.digest_hex == digest:
                self.events.hub_received(
                    "repeat", envelope_id=header.id, sender=header.sender
                )
                return EnvelopeAnswer(200, stored.receipt)
            return self._refuse(
                409,
                "E_ENVELOPE_CONFLICT",
                "same envelope id, different bytes",
                envelope_id=header.id,
                sender=header.sender,
            )
        now = self.clock()
        age = now - header.created_at.timestamp()
        if age > self.retention_s:
            return self._refuse(
                422,
                "E_ENVELOPE_EXPIRED",
                f"{age / 86400:.1f} days old",
                envelope_id=header.id,
                sender=header.sender,
            )
        started = time.perf_counter()
        try:
            opened, payload = await asyncio.to_thread(
                crypto.open_bytes,
                data,
                self.ring,
                self.senders,
                max_plaintext=self.max_plaintext_bytes,
            )
            outcomes, accepted = await asyncio.to_thread(self._records, opened, payload)
        except EnvelopeInvalid as exc:
            return self._refuse(
                400,
                "E_ENVELOPE",
                exc.detail,
                envelope_id=header.id,
                sender=header.sender,
            )
        except _BadBatch as exc:
            return self._refuse(
                400, "E_ENVELOPE", str(exc), envelope_id=header.id, sender=header.sender
            )
        self.events.crypto_seconds.labels("open").observe(time.perf_counter() - started)
        if self.origins is not None and accepted:
            await asyncio.to_thread(self._keep_origins, data, opened, accepted)
        receipt = crypto.make_receipt(
            self.ring.current(datetime.fromtimestamp(now, UTC)),
            envelope_id=header.id,
            envelope_sm3=digest,
            received_at=datetime.fromtimestamp(now, UTC),
            records=outcomes,
        )
        sender_name = self.sender_names.get(opened.sender.id, opened.sender.id)
        prov = Provenance(
            source=f"hub:{sender_name}"[:63],
            remote_addr=remote_addr,
            token_id=opened.sender.id,
            received_at=now,
            content_type=header.content_type,
            digest_hex=digest,
            idempotency_key=None,
        )
        env = InboxEnvelope(
            envelope_id=header.id,
            sender_key_id=opened.sender.id,
            digest_hex=digest,
            size=len(data),
            received_at=now,
            remote_addr=remote_addr,
            receipt=receipt,
        )
        try:
            answer = await self.spool.put_received(env, accepted, prov, now=now)
        except QuotaExceeded as exc:
            self.events.hub_received(
                "throttled", envelope_id=header.id, sender=opened.sender.id
            )
            return EnvelopeAnswer(
                503,
                json.dumps({"error": {"code": "E_QUOTA"}}).encode(),
                {"Retry-After": str(max(1, int(exc.retry_after_s)))},
            )
        except SpoolError as exc:
            log.error("Storing a received envelope failed.", extra={"detail": str(exc)})
            return EnvelopeAnswer(
                503,
                json.dumps({"error": {"code": "E_SPOOL"}}).encode(),
                {"Retry-After": "30"},
            )
        if answer.conflict:
            return self._refuse(
                409,
                "E_ENVELOPE_CONFLICT",
                "raced with different bytes",
                envelope_id=header.id,
                sender=opened.sender.id,
            )
        rejected = sum(1 for o in outcomes if o.outcome == "rejected")
        self.events.hub_received(
            "repeat" if answer.repeated else "accepted",
            records=answer.stored,
            duplicates=answer.duplicates,
            rejected=rejected,
            envelope_id=header.id,
            sender=opened.sender.id,
        )
        if not answer.repeated:
            if self.sink_dir is not None and accepted:
                await asyncio.to_thread(self._write_sink, header.id, accepted)
            if answer.stored:
                self.notify(tuple({d for r in accepted for d in r.destinations}))
        return EnvelopeAnswer(200, answer.receipt.receipt)

    def _keep_origins(
        self, data: bytes, opened: crypto.Opened, accepted: list[AcceptedRecord]
    ) -> None:
        """Store each accepted record's origin proof before the records are stored.

        A proof carried in the envelope (an earlier hub forwarded the records)
        is kept if it verifies; otherwise the envelope itself is the origin.
        """
        if self.origins is None:
            return
        header = opened.header
        carried: dict[str, OriginProof] = {}
        try:
            groups = decode_meta(header.meta, records=header.records)
        except EnvelopeInvalid as exc:
            log.warning(
                "Provenance in an envelope is malformed; its sender is taken as "
                "the origin.",
                extra={"envelope_id": header.id, "detail": exc.detail},
            )
            groups = []
        for proof, idx in groups:
            digests = [header.manifest[i] for i in idx]
            try:
                verify_origin(proof, digests)
            except EnvelopeInvalid as exc:
                log.warning(
                    "An origin proof does not verify; its records are taken as "
                    "coming from the envelope's sender.",
                    extra={"envelope_id": header.id, "detail": exc.detail},
                )
                continue
            carried.update((d, proof) for d in digests)
        own = proof_of(data, opened.sender)
        by_proof: dict[str, tuple[OriginProof, list[str]]] = {}
        for r in accepted:
            p = carried.get(r.digest_hex, own)
            by_proof.setdefault(p.id, (p, []))[1].append(r.digest_hex)
        self.origins.put(by_proof.values(), sender=opened.sender.id)

    def _records(
        self, opened: crypto.Opened, payload: bytes
    ) -> tuple[list[crypto.RecordOutcome], list[AcceptedRecord]]:
        """Check the payload against the signed manifest, then each record."""
        header = opened.header
        lines = payload.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if len(lines) != header.records:
            raise _BadBatch(
                f"{len(lines)} records carried, manifest lists {header.records}"
            )
        outcomes: list[crypto.RecordOutcome] = []
        accepted: list[AcceptedRecord] = []
        for i, (line, want) in enumerate(zip(lines, header.manifest, strict=True)):
            if crypto.sm3(line).hex() != want:
                raise _BadBatch(f"record {i} does not match its manifest digest")
            rec = _national(line, i)
            if isinstance(rec, Reject):
                outcomes.append(crypto.RecordOutcome(want, "rejected", rec.code))
                continue
            out = accept_record(rec, self.catalogue, self.route, known=(line, want))
            if isinstance(out, Reject):
                outcomes.append(crypto.RecordOutcome(want, "rejected", _code(out.code)))
                continue
            if out.canonical != line:
                outcomes.append(
                    crypto.RecordOutcome(want, "rejected", "E_NOT_CANONICAL")
                )
                continue
            outcomes.append(crypto.RecordOutcome(want, "accepted"))
            accepted.append(out)
        return outcomes, accepted

    def _write_sink(self, envelope_id: str, records: list[AcceptedRecord]) -> None:
        """Downlink copy for local consumers: one JSONL file per envelope, atomic."""
        if self.sink_dir is None:
            return
        self.sink_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.sink_dir / f".{envelope_id}.jsonl.part"
        with tmp.open("wb") as f:
            for r in records:
                f.write(r.canonical + b"\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.sink_dir / f"{envelope_id}.jsonl")


def _code(code: str) -> str:
    return code if code.replace("_", "").isalnum() and code.isupper() else "E_INVALID"


def _national(line: bytes, i: int) -> NationalRecord | Reject:
    try:
        obj = orjson.loads(line)  # duplicate keys fail the canonical check
    except ValueError:
        return Reject(locator=f"record {i}", code="E_JSON_SYNTAX", message="not JSON")
    if (
        not isinstance(obj, dict)
        or set(obj) != {"dataset", "fields"}
        or not isinstance(obj["dataset"], str)
        or not isinstance(obj["fields"], dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in obj["fields"].items()
        )
    ):
        return Reject(locator=f"record {i}", code="E_RECORD_SHAPE", message="bad shape")
    return NationalRecord(
        dataset=obj["dataset"], fields=obj["fields"], locator=f"record {i}"
    )
