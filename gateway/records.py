"""Plain values passed into and out of the spool, hub side included (stdlib only).

Times are Unix seconds (``float``, UTC) and are always given by the caller as
``now``, so tests control the clock. Digests are lowercase hex strings computed
by the caller (SM3 in production); the spool stores them and never recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AcceptedRecord",
    "DeliveryState",
    "DestinationCounts",
    "EnvelopeState",
    "HeldRef",
    "InboxAnswer",
    "InboxCounts",
    "InboxEnvelope",
    "InputStatus",
    "IntakeAnswer",
    "IntakeState",
    "ItemState",
    "LeasedEnvelope",
    "LeasedItem",
    "Provenance",
    "QuarantineEntry",
    "RecordState",
    "Reject",
    "SourceCounts",
    "StoredInboxRecord",
    "StoredInput",
    "StoredReceipt",
    "Usage",
]


class InputStatus(StrEnum):
    """What became of a received input."""

    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"


class ItemState(StrEnum):
    """One record's delivery state for one destination."""

    QUEUED = "queued"
    LEASED = "leased"
    SEALED = "sealed"
    DELIVERED = "delivered"
    DEAD = "dead"
    HELD = "held"  # queued, waiting for its parent (shown, never stored as a state)


class EnvelopeState(StrEnum):
    """A sealed envelope's state in the outbox."""

    QUEUED = "queued"
    LEASED = "leased"
    DELIVERED = "delivered"
    DEAD = "dead"
    RESEALED = "resealed"  # given up (e.g. too old); its records went back to the queue


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Who sent an input, from where, when and how."""

    source: str
    remote_addr: str
    token_id: str
    received_at: float
    content_type: str
    digest_hex: str  # of the raw input bytes
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedRecord:
    """A canonical record to store and enqueue for each of ``destinations``."""

    dataset: str
    record_key: str
    canonical: bytes
    digest_hex: str
    destinations: tuple[str, ...] = ()
    # Parent-first ordering (gateway/ordering.py): the reference this record
    # waits for at each destination, and the references it satisfies there.
    parent_ref: str | None = None
    provides: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Intake workers send thousands of these per input: the generic
        # frozen-dataclass unpickling (fields() per object) cost more than
        # making them.
        return _accepted_record, (
            self.dataset,
            self.record_key,
            self.canonical,
            self.digest_hex,
            self.destinations,
            self.parent_ref,
            self.provides,
        )


def _accepted_record(
    dataset: str,
    record_key: str,
    canonical: bytes,
    digest_hex: str,
    destinations: tuple[str, ...],
    parent_ref: str | None,
    provides: tuple[str, ...],
) -> AcceptedRecord:
    return AcceptedRecord(
        dataset=dataset,
        record_key=record_key,
        canonical=canonical,
        digest_hex=digest_hex,
        destinations=destinations,
        parent_ref=parent_ref,
        provides=provides,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A rejected record (or a problem with a whole input) and where it was."""

    locator: str
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeAnswer:
    """The stored answer for an input; ``repeated`` when it was already stored."""

    intake_id: str
    status: int
    body: bytes
    repeated: bool
    digest_hex: str  # of the input first stored under this id / idempotency key


@dataclass(frozen=True, slots=True, kw_only=True)
class LeasedItem:
    """A record leased for one destination."""

    item_id: int
    destination: str
    intake_id: str
    seq: int
    dataset: str
    record_key: str
    digest_hex: str
    canonical: bytes
    attempts: int
    enqueued_at: float
    lease_until: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LeasedEnvelope:
    """A sealed envelope leased for sending."""

    envelope_id: str
    destination: str
    body: bytes
    digest_hex: str
    attempts: int
    created_at: float
    lease_until: float
    item_ids: tuple[int, ...]
    record_digests: tuple[str, ...]  # in item order, for checking the receipt


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryState:
    """Where one record stands for one destination."""

    destination: str
    state: ItemState
    attempts: int
    delivered_at: float | None
    receipt_id: str | None
    envelope_id: str | None
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordState:
    """An accepted record and its delivery to each destination."""

    seq: int
    dataset: str
    record_key: str
    digest_hex: str
    deliveries: tuple[DeliveryState, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeState:
    """Everything GET /v1/intake/{id} shows."""

    intake_id: str
    source: str
    status: InputStatus
    received_at: float
    content_type: str
    size: int
    digest_hex: str
    records: tuple[RecordState, ...]
    rejects: tuple[Reject, ...]
    reason_code: str | None  # set while (or since) the input was quarantined
    reason_message: str | None
    replayed_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineEntry:
    """One line of ``quarantine list``."""

    intake_id: str
    source: str
    received_at: float
    size: int
    reason_code: str
    message: str
    status: InputStatus  # ACCEPTED once a replay succeeded
    replay_count: int
    replayed_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInput:
    """A stored input with its raw bytes (``quarantine show`` / replay)."""

    intake_id: str
    provenance: Provenance
    raw: bytes
    status: InputStatus
    reason_code: str | None
    reason_message: str | None
    rejects: tuple[Reject, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceCounts:
    """Per-source totals since the spool was created."""

    accepted: int = 0  # inputs answered 202
    records: int = 0  # records accepted
    rejected: int = 0  # records rejected inside accepted inputs
    quarantined: int = 0  # inputs in quarantine now (not replayed)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationCounts:
    """Per-destination record counts by state, plus the outbox."""

    queued: int = 0
    leased: int = 0
    sealed: int = 0
    delivered: int = 0
    dead: int = 0
    envelopes_pending: int = 0  # queued or leased envelopes
    envelopes_dead: int = 0
    oldest_age_s: float | None = None  # of the oldest undelivered record
    held: int = 0  # queued records waiting for their parent (parent-first)
    oldest_held_s: float | None = None  # how long the longest-held one has waited


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldRef:
    """Records held at one destination until the reference they need arrives."""

    destination: str
    ref: str  # e.g. "TENDER_PROJECT:E3201000001000001001" (gateway/ordering.py)
    records: int
    since: float  # when the first of them was held


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Undelivered data held for a source, as counted by the quotas."""

    records: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEnvelope:
    """An envelope the hub received, verified and answered."""

    envelope_id: str
    sender_key_id: str
    digest_hex: str  # SM3 of the bytes received
    size: int  # bytes received
    received_at: float
    remote_addr: str
    receipt: bytes  # the signed receipt returned to the sender
    # The envelope bytes, only if the hub is configured to keep them (they are
    # stored as the raw bytes of the envelope's input); ``None`` keeps only the
    # digest and size: the opened records are stored either way.
    body: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReceipt:
    """What the hub answered for an envelope id."""

    envelope_id: str
    intake_id: str  # the input that holds the envelope's records
    digest_hex: str
    receipt: bytes
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxAnswer:
    """Result of storing an envelope at the hub."""

    receipt: StoredReceipt  # of the first envelope stored under this id
    repeated: bool  # the envelope id was already stored: nothing was written
    conflict: bool  # ... with a different digest: answer 4xx
    stored: int  # records stored (and enqueued onward) by this call
    duplicates: int  # records already held (same dataset, key and digest)

    @property
    def intake_id(self) -> str:
        """The input holding the envelope's records (``GET /v1/intake/{id}``)."""
        return self.receipt.intake_id


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredInboxRecord:
    """A record held by the hub."""

    record_id: int
    intake_id: str
    envelope_id: str
    sender_key_id: str
    received_at: float
    dataset: str
    record_key: str
    digest_hex: str
    canonical: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxCounts:
    """Hub totals since the spool was created, for ``status`` ("hub")."""

    envelopes: int = 0
    records: int = 0
    duplicates: int = 0
