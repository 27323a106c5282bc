"""Events: one method per thing that happens; each bumps metrics and logs.

The only owner of Prometheus objects (Vector's internal events). Metrics live
on an injected ``CollectorRegistry``; label values come from bounded
vocabularies only (source and destination names from the config, data-set
names from the catalogue, stable error codes), never from messages or ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from gateway.errors import GatewayError

__all__ = ["Events"]

if TYPE_CHECKING:
    from monitoring.audit import AuditLog

log = logging.getLogger("gateway")

# `*_created` series double the exposition and nobody alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


class Events:
    def __init__(self, registry: CollectorRegistry, *, node: str, version: str) -> None:
        self.registry = registry
        # Set once the audit log is open; every event below is also audited.
        self.audit: AuditLog | None = None
        r = registry
        self._build = Info("gateway_build", "Build information.", registry=r)
        self._build.info({"version": version, "node": node})
        self.inputs = Counter(
            "gateway_inputs_total",
            "Inputs received, by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.records = Counter(
            "gateway_records_total",
            "Records, by source, data set and outcome.",
            ["source", "dataset", "outcome"],
            registry=r,
        )
        self.rejects = Counter(
            "gateway_rejects_total",
            "Rejected records and inputs, by source and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.held_inputs = Counter(
            "gateway_inputs_held_total",
            "Inputs held whole in quarantine because too many records failed.",
            ["source"],
            registry=r,
        )
        self.auth_failures = Counter(
            "gateway_auth_failures_total",
            "Refused credentials, by source.",
            ["source"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "gateway_ingest_seconds",
            "Time from request to durable answer, by source.",
            ["source"],
            buckets=_LATENCY,
            registry=r,
        )
        self.sealed_records = Counter(
            "gateway_sealed_records_total",
            "Records sealed into envelopes.",
            ["destination"],
            registry=r,
        )
        self.envelopes = Counter(
            "gateway_envelopes_total",
            "Envelopes by destination and outcome.",
            ["destination", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "gateway_delivery_seconds",
            "Send time of one envelope until its receipt.",
            ["destination"],
            buckets=_LATENCY,
            registry=r,
        )
        self.delivered_records = Counter(
            "gateway_delivered_records_total",
            "Records with a verified receipt.",
            ["destination"],
            registry=r,
        )
        self.retries = Counter(
            "gateway_retries_total",
            "Envelopes handed back to the spool to retry.",
            ["destination", "code"],
            registry=r,
        )
        self.circuit_open = Gauge(
            "gateway_circuit_open",
            "1 while a destination's circuit breaker is open.",
            ["destination"],
            registry=r,
        )
        self.hub_envelopes = Counter(
            "gateway_hub_envelopes_total",
            "Envelopes received as a hub, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.hub_records = Counter(
            "gateway_hub_records_total",
            "Records received as a hub, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.crypto_seconds = Histogram(
            "gateway_crypto_seconds",
            "Time to seal or open an envelope.",
            ["operation"],
            buckets=_LATENCY,
            registry=r,
        )

        self.quarantined = Counter(
            "gateway_quarantined_inputs_total",
            "Inputs kept in quarantine, by source and reason code.",
            ["source", "reason"],
            registry=r,
        )
        self.spool_depth = Gauge(
            "gateway_spool_depth",
            "Undelivered records, by destination.",
            ["destination"],
            registry=r,
        )
        self.oldest_undelivered = Gauge(
            "gateway_oldest_undelivered_seconds",
            "Age of the oldest undelivered record, by destination.",
            ["destination"],
            registry=r,
        )
        self.dead_records = Gauge(
            "gateway_dead_records",
            "Dead-lettered records, by destination.",
            ["destination"],
            registry=r,
        )
        self.held_records = Gauge(
            "gateway_held_records",
            "Records waiting for their parent to be delivered first, by destination.",
            ["destination"],
            registry=r,
        )
        self.held_oldest = Gauge(
            "gateway_held_oldest_seconds",
            "How long the longest-held record has waited for its parent.",
            ["destination"],
            registry=r,
        )
        self.hold_alarm_s = Gauge(
            "gateway_hold_alarm_seconds",
            "Configured hold time after which held records raise the alarm "
            "(ordering.hold_alarm_s).",
            ["destination"],
            registry=r,
        )
        self.receiver_rejected_records = Counter(
            "gateway_receiver_rejected_records_total",
            "Records the receiver's receipt refused (dead-lettered), by destination.",
            ["destination"],
            registry=r,
        )
        self.rate_limited = Counter(
            "gateway_rate_limit_wait_seconds_total",
            "Seconds sending waited for the destination's rate limit.",
            ["destination"],
            registry=r,
        )
        self.disk_free = Gauge(
            "gateway_disk_free_bytes",
            "Free bytes on the state directory's file system.",
            registry=r,
        )
        self.disk_min_free = Gauge(
            "gateway_disk_min_free_bytes",
            "Free space below which intake refuses input (quota.min_free_disk).",
            registry=r,
        )
        self.key_expiry = Gauge(
            "gateway_key_expiry_timestamp_seconds",
            "When each of our keys stops signing (Unix time; absent if no end date).",
            ["key_id"],
            registry=r,
        )
        self.audit_checkpoint_age = Gauge(
            "gateway_audit_checkpoint_age_seconds",
            "Seconds since the audit log's last signed checkpoint.",
            registry=r,
        )
        self.sealing_key = Gauge(
            "gateway_sealing_key_info",
            "1 for the key that seals now.",
            ["key_id"],
            registry=r,
        )
        self.files = Counter(
            "gateway_files_total",
            "Files taken from SFTP servers and drop folders, by source and outcome.",
            ["source", "outcome"],
            registry=r,
        )
        self.transport_errors = Counter(
            "gateway_transport_errors_total",
            "SFTP and drop-folder failures, by component (source, destination or "
            "envelope folder name) and code.",
            ["component", "code"],
            registry=r,
        )
        self.intake_worker_deaths = Counter(
            "gateway_intake_worker_deaths_total",
            "Intake worker processes that died (their inputs were retried alone).",
            registry=r,
        )
        # The status page's "last error" per source: (Unix time, code), in memory.
        self.source_errors: dict[str, tuple[float, str]] = {}

    def _audit(self, kind: str, **fields: Any) -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(
                kind, **{k: v for k, v in fields.items() if v is not None and v != ""}
            )
        except (ValueError, TypeError):
            # A field outside the audit vocabulary is our bug: loud, but not fatal.
            log.exception("Audit event refused.", extra={"kind": kind})
        except GatewayError as exc:  # the audit log is closed or failing
            log.error(
                "Audit event not written.", extra={"kind": kind, "detail": str(exc)}
            )

    def known(self, sources: list[str], destinations: list[str], *, hub: bool) -> None:
        """Create every series of the configured names at zero (alerts see 0, not absence)."""
        for src in sources:
            for outcome in ("accepted", "refused", "throttled"):
                self.inputs.labels(src, outcome)
            self.auth_failures.labels(src)
            self.held_inputs.labels(src)
            self.ingest_seconds.labels(src)
        for d in destinations:
            for outcome in ("sealed", "delivered", "retry", "dead"):
                self.envelopes.labels(d, outcome)
            self.sealed_records.labels(d)
            self.delivered_records.labels(d)
            self.delivery_seconds.labels(d)
            self.circuit_open.labels(d).set(0)
            self.spool_depth.labels(d)
            self.oldest_undelivered.labels(d)
            self.dead_records.labels(d)
            self.held_records.labels(d)
            self.held_oldest.labels(d)
            self.receiver_rejected_records.labels(d)
            self.rate_limited.labels(d)
        if hub:
            for outcome in ("accepted", "repeat", "refused", "throttled"):
                self.hub_envelopes.labels(outcome)
            for outcome in ("stored", "duplicate", "rejected"):
                self.hub_records.labels(outcome)
        for op in ("seal", "open"):
            self.crypto_seconds.labels(op)

    def keys_loaded(self, keys: list[tuple[str, float | None]], current: str) -> None:
        """Key ids with their not-after times (config-bounded label values)."""
        self.key_expiry.clear()
        self.sealing_key.clear()
        for kid, not_after in keys:
            if not_after is not None:
                self.key_expiry.labels(kid).set(not_after)
        self.sealing_key.labels(current).set(1)
        log.info("Keys loaded.", extra={"keys": len(keys), "sealing_key": current})

    # -- intake ---------------------------------------------------------------

    def input_accepted(
        self,
        source: str,
        *,
        records: int,
        rejected: int,
        seconds: float,
        intake_id: str,
        remote: str | None = None,
        token_id: str | None = None,
        input_sm3: str | None = None,
        rejected_by: dict[str, int] | None = None,
    ) -> None:
        self.inputs.labels(source, "accepted").inc()
        self.ingest_seconds.labels(source).observe(seconds)
        actor = f"source:{source}"
        self._audit(
            "input_accepted",
            actor=actor,
            remote=remote,
            source=source,
            token_id=token_id,
            intake_id=intake_id,
            input_sm3=input_sm3,
            records=records,
            rejected=rejected,
        )
        if rejected:
            self._audit(
                "records_rejected",
                actor=actor,
                remote=remote,
                source=source,
                intake_id=intake_id,
                rejected=rejected,
                rejected_by=rejected_by,
            )
        log.info(
            "Input accepted.",
            extra={
                "source": source,
                "intake_id": intake_id,
                "records": records,
                "rejected": rejected,
            },
        )

    def input_refused(
        self,
        source: str,
        code: str,
        *,
        intake_id: str | None,
        remote: str | None = None,
        token_id: str | None = None,
        input_sm3: str | None = None,
    ) -> None:
        self.inputs.labels(source, "refused").inc()
        self.rejects.labels(source, code).inc()
        self.source_errors[source] = (time.time(), code)
        if intake_id is not None:
            self.quarantined.labels(source, code).inc()
        self._audit(
            "input_quarantined" if intake_id is not None else "input_refused",
            actor=f"source:{source}",
            remote=remote,
            code=code,
            source=source,
            token_id=token_id,
            intake_id=intake_id,
            input_sm3=input_sm3,
        )
        log.warning(
            "Input refused.",
            extra={"source": source, "code": code, "intake_id": intake_id},
        )

    def error_budget_exceeded(self, source: str) -> None:
        self.held_inputs.labels(source).inc()
        log.warning("Input held: error budget exceeded.", extra={"source": source})

    def input_throttled(self, source: str, *, remote: str | None = None) -> None:
        self.inputs.labels(source, "throttled").inc()
        self.source_errors[source] = (time.time(), "E_QUOTA")
        self._audit(
            "input_throttled",
            actor=f"source:{source}",
            remote=remote,
            code="E_QUOTA",
            source=source,
        )
        log.warning("Input refused: spool over quota.", extra={"source": source})

    def auth_failed(self, source: str, remote: str) -> None:
        self.auth_failures.labels(source).inc()
        self.source_errors[source] = (time.time(), "E_AUTH")
        self._audit(
            "auth_failed", actor=f"source:{source}", remote=remote, source=source
        )
        log.warning(
            "Authentication failed.", extra={"source": source, "remote": remote}
        )

    def record_outcomes(
        self, source: str, accepted: dict[str, int], rejected: dict[str, int]
    ) -> None:
        for dataset, n in accepted.items():
            self.records.labels(source, dataset, "accepted").inc(n)
        for code, n in rejected.items():
            self.records.labels(source, "", "rejected").inc(n)
            self.rejects.labels(source, code).inc(n)

    # -- delivery -------------------------------------------------------------

    def sealed(
        self,
        destination: str,
        *,
        records: int,
        envelope_id: str,
        seconds: float,
        envelope_sm3: str | None = None,
        key_id: str | None = None,
    ) -> None:
        self.sealed_records.labels(destination).inc(records)
        self.envelopes.labels(destination, "sealed").inc()
        self.crypto_seconds.labels("seal").observe(seconds)
        self._audit(
            "envelope_sealed",
            destination=destination,
            envelope_id=envelope_id,
            records=records,
            envelope_sm3=envelope_sm3,
            key_id=key_id,
        )
        log.info(
            "Envelope sealed.",
            extra={
                "destination": destination,
                "envelope_id": envelope_id,
                "records": records,
            },
        )

    def delivered(
        self,
        destination: str,
        *,
        records: int,
        envelope_id: str,
        seconds: float,
        receipt_sm3: str | None = None,
        peer: str | None = None,
        attempt: int | None = None,
    ) -> None:
        self.envelopes.labels(destination, "delivered").inc()
        self.delivered_records.labels(destination).inc(records)
        self.delivery_seconds.labels(destination).observe(seconds)
        self._audit(
            "send_attempt",
            destination=destination,
            envelope_id=envelope_id,
            attempt=attempt,
            duration_ms=int(seconds * 1000),
        )
        self._audit(
            "receipt_verified",
            destination=destination,
            envelope_id=envelope_id,
            records=records,
            receipt_sm3=receipt_sm3,
            peer=peer,
        )
        log.info(
            "Envelope delivered.",
            extra={"destination": destination, "envelope_id": envelope_id},
        )

    def send_failed(
        self,
        destination: str,
        *,
        code: str,
        envelope_id: str,
        permanent: bool,
        detail: str,
    ) -> None:
        self.envelopes.labels(destination, "dead" if permanent else "retry").inc()
        if not permanent:
            self.retries.labels(destination, code).inc()
        self._audit(
            "send_attempt",
            outcome="failed",
            code=_code(code),
            destination=destination,
            envelope_id=envelope_id,
            permanent=permanent,
        )
        if code in ("E_RECEIPT", "E_RECEIPT_INVALID"):
            self._audit(
                "receipt_invalid",
                code=_code(code),
                destination=destination,
                envelope_id=envelope_id,
            )
        if permanent:
            self._audit(
                "dead_lettered",
                code=_code(code),
                destination=destination,
                envelope_id=envelope_id,
            )
        level = logging.ERROR if permanent else logging.WARNING
        log.log(
            level,
            "Delivery failed.",
            extra={
                "destination": destination,
                "code": code,
                "envelope_id": envelope_id,
                "permanent": permanent,
                "detail": detail,
            },
        )

    def receiver_rejected(
        self, destination: str, *, envelope_id: str, by_reason: dict[str, int]
    ) -> None:
        n = sum(by_reason.values())
        self.receiver_rejected_records.labels(destination).inc(n)
        self._audit(
            "receiver_rejected",
            destination=destination,
            envelope_id=envelope_id,
            records=n,
            rejected_by={_code(k): v for k, v in by_reason.items()},
        )
        log.error(
            "The receiver refused records; they are dead-lettered.",
            extra={
                "destination": destination,
                "envelope_id": envelope_id,
                "records": n,
                "rejected_by": by_reason,
            },
        )

    def hold_alarm(self, destination: str, *, records: int, oldest_s: float) -> None:
        """Held records passed the destination's hold time (once per episode)."""
        self._audit(
            "hold_alarm",
            destination=destination,
            records=records,
            duration_ms=int(oldest_s * 1000),
        )
        log.warning(
            "Records have waited for their parent longer than the hold alarm time.",
            extra={
                "destination": destination,
                "records": records,
                "oldest_s": round(oldest_s),
            },
        )

    def circuit(self, destination: str, *, is_open: bool) -> None:
        self.circuit_open.labels(destination).set(1 if is_open else 0)
        log.warning(
            "Circuit %s.",
            "opened" if is_open else "closed",
            extra={"destination": destination},
        )

    # -- hub ------------------------------------------------------------------

    def hub_received(
        self,
        outcome: str,
        *,
        records: int = 0,
        duplicates: int = 0,
        rejected: int = 0,
        envelope_id: str = "",
        sender: str = "",
        detail: str = "",
        remote: str | None = None,
        envelope_sm3: str | None = None,
        code: str | None = None,
    ) -> None:
        self.hub_envelopes.labels(outcome).inc()
        self._audit(
            "envelope_received",
            actor=f"peer:{sender}" if sender else "system",
            remote=remote,
            outcome="ok" if outcome in ("accepted", "repeat") else "refused",
            code=_code(code) if code else None,
            envelope_id=envelope_id or None,
            envelope_sm3=envelope_sm3,
            records=records,
            duplicates=duplicates,
            rejected=rejected,
            repeat=outcome == "repeat",
        )
        if records:
            self.hub_records.labels("stored").inc(records)
        if duplicates:
            self.hub_records.labels("duplicate").inc(duplicates)
        if rejected:
            self.hub_records.labels("rejected").inc(rejected)
        level = logging.INFO if outcome in ("accepted", "repeat") else logging.WARNING
        log.log(
            level,
            "Envelope received.",
            extra={
                "outcome": outcome,
                "envelope_id": envelope_id,
                "sender": sender,
                "records": records,
                "detail": detail,
            },
        )

    # -- file transports -------------------------------------------------------

    def file_done(self, source: str, outcome: str, *, name: str, detail: str) -> None:
        """One file handled: accepted, duplicate, quarantined, too_large, envelope."""
        self.files.labels(source, outcome).inc()
        log.info(
            "File processed.",
            extra={
                "source": source,
                "outcome": outcome,
                "file": name,
                "detail": detail,
            },
        )

    def intake_worker_died(self, *, restarts: int, inputs: int) -> None:
        self.intake_worker_deaths.inc()
        self._audit("intake_worker_died", restarts=restarts, inputs=inputs)
        log.error(
            "An intake worker died; its inputs are retried one by one.",
            extra={"restarts": restarts, "inputs": inputs},
        )

    def transport_failed(self, component: str, code: str, *, detail: str) -> None:
        self.transport_errors.labels(component, code).inc()
        log.error(
            "Transport failed; retrying with backoff.",
            extra={"component": component, "code": code, "detail": detail},
        )

    def timed(self, operation: str) -> Callable[[float], None]:
        h = self.crypto_seconds.labels(operation)
        return h.observe

    # -- node, operators ----------------------------------------------------------

    def resealed(self, destination: str, *, envelope_id: str, records: int) -> None:
        self._audit(
            "envelope_resealed",
            destination=destination,
            envelope_id=envelope_id,
            records=records,
        )
        log.info(
            "Envelope given up; its records are sealed again.",
            extra={"destination": destination, "envelope_id": envelope_id},
        )

    def receipt_issued(self, *, envelope_id: str, receipt_sm3: str, peer: str) -> None:
        self._audit(
            "receipt_issued",
            envelope_id=envelope_id,
            receipt_sm3=receipt_sm3,
            peer=peer,
        )

    def node(self, kind: str, **fields: Any) -> None:
        """Life cycle and configuration events (node_started, config_loaded, ...)."""
        self._audit(kind, **fields)

    def operator(
        self,
        kind: str,
        *,
        user: str,
        remote: str | None = None,
        outcome: str | None = None,
        code: str | None = None,
        **fields: Any,
    ) -> None:
        """An operator action through the CLI or the admin API."""
        self._audit(
            kind,
            actor=f"operator:{user}",
            remote=remote,
            outcome=outcome,
            code=code,
            user=user,
            **fields,
        )
        log.info("Operator action.", extra={"kind": kind, "user": user, "code": code})

    # -- file transports, step by step ------------------------------------------
    # Each step of an SFTP / drop-folder transfer is audited (CONTRACT §4). A file
    # source's steps are done by ``source:NAME``; a destination's and an envelope
    # folder's by ``system``. ``remote`` is the server (``sftp://user@host:port``
    # or ``file://hostname``); the path goes in ``file_path``. Per-file counts stay
    # in ``gateway_files_total`` (``file_done``), failures in
    # ``gateway_transport_errors_total``.

    def file_claimed(
        self,
        source: str,
        *,
        remote: str,
        file_name: str,
        file_path: str,
        size: int | None,
        transport: str,
        token_id: str | None = None,
    ) -> None:
        self._audit(
            "file_claimed",
            actor=f"source:{source}",
            remote=remote,
            source=source,
            transport=transport,
            token_id=token_id,
            file_name=file_name,
            file_path=file_path,
            bytes=size,
        )
        log.debug(
            "File claimed.",
            extra={"source": source, "file": file_name, "bytes": size},
        )

    def file_read(
        self,
        component: str,
        *,
        remote: str,
        file_path: str,
        size: int,
        seconds: float,
        source: str | None = None,
        input_sm3: str | None = None,
        envelope_sm3: str | None = None,
    ) -> None:
        """A whole file copied or read: an input (source) or an envelope (hub)."""
        self._audit(
            "file_read",
            actor=f"source:{source}" if source else "system",
            remote=remote,
            source=source,
            file_path=file_path,
            bytes=size,
            input_sm3=input_sm3,
            envelope_sm3=envelope_sm3,
            duration_ms=int(seconds * 1000),
        )
        log.debug(
            "File read.",
            extra={"component": component, "path": file_path, "bytes": size},
        )

    def file_skipped(
        self,
        source: str,
        *,
        remote: str,
        file_name: str,
        input_sm3: str,
        intake_id: str,
    ) -> None:
        """Same bytes as an input already stored: answered with the first intake."""
        self._audit(
            "file_skipped",
            actor=f"source:{source}",
            remote=remote,
            source=source,
            file_name=file_name,
            input_sm3=input_sm3,
            intake_id=intake_id,
            repeat=True,
        )
        log.info(
            "File repeats an earlier input; not stored again.",
            extra={"source": source, "file": file_name, "intake_id": intake_id},
        )

    def file_archived(
        self,
        component: str,
        how: str,
        *,
        remote: str,
        file_name: str,
        file_path: str,
        source: str | None = None,
        code: str | None = None,
        intake_id: str | None = None,
        input_sm3: str | None = None,
        note_sm3: str | None = None,
    ) -> None:
        """``how``: ``done``, ``deleted`` or ``error`` (then outcome refused + code)."""
        self._audit(
            "file_archived",
            actor=f"source:{source}" if source else "system",
            remote=remote,
            outcome="refused" if how == "error" else "ok",
            code=_code(code) if code else None,
            reason=how,
            source=source,
            file_name=file_name,
            file_path=file_path,
            intake_id=intake_id,
            input_sm3=input_sm3,
            note_sm3=note_sm3,
        )
        log.debug(
            "File archived.",
            extra={"component": component, "how": how, "path": file_path},
        )

    def file_transport_failed(
        self,
        component: str,
        code: str,
        *,
        detail: str,
        remote: str,
        source: str | None = None,
        destination: str | None = None,
        file_path: str | None = None,
    ) -> None:
        """``transport_failed`` (metric, log) and its audit entry. ``detail``
        (server messages, paths) goes to the log only: audit fields carry no data."""
        self.transport_failed(component, code, detail=detail)
        self._audit(
            "transport_failed",
            actor=f"source:{source}" if source else "system",
            remote=remote,
            code=_code(code),
            source=source,
            destination=destination,
            file_path=file_path,
        )

    def file_uploaded(
        self,
        destination: str,
        *,
        remote: str,
        file_path: str,
        envelope_id: str,
        size: int,
        envelope_sm3: str,
        seconds: float,
    ) -> None:
        self.files.labels(destination, "uploaded").inc()
        self._audit(
            "file_uploaded",
            remote=remote,
            destination=destination,
            envelope_id=envelope_id,
            file_path=file_path,
            bytes=size,
            envelope_sm3=envelope_sm3,
            duration_ms=int(seconds * 1000),
        )
        log.info(
            "Envelope file uploaded.",
            extra={"destination": destination, "envelope_id": envelope_id},
        )

    def receipt_file_read(
        self,
        destination: str,
        *,
        remote: str,
        file_path: str,
        envelope_id: str,
        size: int,
        receipt_sm3: str,
    ) -> None:
        """Read (then removed); ``receipt_verified`` follows once it checks out."""
        self.files.labels(destination, "receipt").inc()
        self._audit(
            "receipt_file_read",
            remote=remote,
            destination=destination,
            envelope_id=envelope_id,
            file_path=file_path,
            bytes=size,
            receipt_sm3=receipt_sm3,
        )

    def refusal_file_read(
        self,
        destination: str,
        *,
        remote: str,
        file_path: str,
        envelope_id: str,
        code: str,
        note_sm3: str,
    ) -> None:
        self.files.labels(destination, "refusal").inc()
        self._audit(
            "refusal_file_read",
            remote=remote,
            code=_code(code),
            destination=destination,
            envelope_id=envelope_id,
            file_path=file_path,
            note_sm3=note_sm3,
        )
        log.warning(
            "The hub refused an envelope (answer file).",
            extra={
                "destination": destination,
                "envelope_id": envelope_id,
                "code": code,
            },
        )

    def answer_file_written(
        self,
        component: str,
        *,
        remote: str,
        file_name: str,
        file_path: str,
        receipt_sm3: str | None = None,
        code: str | None = None,
        note_sm3: str | None = None,
    ) -> None:
        """(hub) A receipt (``receipt_sm3``) or a refusal (``code``) for an envelope file."""
        self._audit(
            "refusal_file_written" if code else "receipt_file_written",
            remote=remote,
            code=_code(code) if code else None,
            file_name=file_name,
            file_path=file_path,
            receipt_sm3=receipt_sm3,
            note_sm3=note_sm3,
        )
        log.debug(
            "Answer file written.", extra={"component": component, "path": file_path}
        )

    def origins_pruned(
        self, *, proofs: int, records: int, retention_days: float
    ) -> None:
        self._audit("origins_pruned", proofs=proofs, records=records)
        log.info(
            "Old origin proofs deleted.",
            extra={
                "proofs": proofs,
                "records": records,
                "retention_days": retention_days,
            },
        )

    def spool_pruned(
        self, *, inputs: int, records: int, envelopes: int, keep_days: float
    ) -> None:
        """Delivered data past node.keep_delivered_days was deleted."""
        self._audit("spool_pruned", inputs=inputs, records=records, envelopes=envelopes)
        log.info(
            "Delivered data past its retention deleted.",
            extra={
                "inputs": inputs,
                "records": records,
                "envelopes": envelopes,
                "keep_days": keep_days,
            },
        )


def _code(code: str) -> str:
    """Codes in the audit log are bounded tokens."""
    return code if code.isascii() and len(code) <= 64 else "E_OTHER"
