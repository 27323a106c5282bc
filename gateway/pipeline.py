"""Intake order, written down once: adapt → validate → canonical records.

``adapt_input`` is pure and synchronous (it runs in a worker thread): it
returns the records to spool and the rejects to keep, or raises
``InputRejected`` when the input as a whole is unusable. The caller (intake)
then writes everything in one fsync'd transaction and only then answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from adapters.base import Adapter, NationalRecord, RawInput, RecordRejected
from adapters.catalogue import Catalogue
from crypto import canonical_json, canonical_plain, sm3
from gateway.ordering import parent_index
from gateway.records import AcceptedRecord, Reject

__all__ = [
    "NOWHERE",
    "Adapted",
    "Route",
    "adapt_input",
    "canonical_record",
    "fixed",
    "record_key",
]


@dataclass(frozen=True, slots=True)
class Adapted:
    records: list[AcceptedRecord]
    rejects: list[Reject]
    by_dataset: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    read: int = 0


def canonical_record(dataset: str, fields: dict[str, str] | object) -> bytes:
    """The bytes that are signed, digested and delivered for one record."""
    doc = {"dataset": dataset, "fields": fields}
    if isinstance(fields, dict) and all(type(v) is str for v in fields.values()):
        return canonical_plain(doc)  # national fields are text: the fast path
    return canonical_json(doc)


def record_key(
    catalogue: Catalogue, dataset: str, fields: dict[str, str], digest: str
) -> str:
    """A record's identity for dedupe and parent-first ordering.

    The data set's key field (e.g. BID_SECTION_CODE for SECTION) when it has
    one and the record fills it; otherwise the record's own digest.
    """
    spec = catalogue.dataset(dataset)
    key_field = spec.spec.key if spec is not None else None
    if key_field and fields.get(key_field):
        return f"{dataset}:{fields[key_field]}"
    return f"{dataset}:sm3:{digest}"


def _reject(r: RecordRejected) -> Reject:
    return Reject(locator=r.locator, code=r.code, message=r.message)


Route = Callable[[str, Mapping[str, str]], tuple[str, ...]]


def fixed(destinations: Sequence[str]) -> Route:
    """A route that sends every record to the same destinations."""
    out = tuple(destinations)
    return lambda _dataset, _fields: out


def accept_record(
    rec: NationalRecord,
    catalogue: Catalogue,
    route: Route,
    *,
    known: tuple[bytes, str] | None = None,
) -> AcceptedRecord | Reject:
    """Validate and route one adapted record; canonical bytes only if it passes.

    ``known``: bytes and SM3 hex the caller already has (a hub's received
    line): when the canonical bytes are those, the digest is not computed again.
    """
    fields = {k: v for k, v in rec.fields.items() if v != ""}
    problems = catalogue.validate(rec.dataset, fields)
    if problems:
        first = problems[0]
        where = rec.locator + (f", field {first.field}" if first.field else "")
        return Reject(
            locator=where,
            code=first.code,
            message=f"{first.message_en} / {first.message_zh}"
            + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
        )
    destinations = route(rec.dataset, fields)
    if not destinations and route is not _NOWHERE:
        return Reject(
            locator=rec.locator,
            code="E_UNROUTABLE",
            message=f"no routing rule sends a {rec.dataset} record anywhere / "
            f"没有路由规则接收该 {rec.dataset} 记录",
        )
    canonical = canonical_record(rec.dataset, fields)
    if known is not None and known[0] == canonical:
        digest = known[1]
    else:
        digest = sm3(canonical).hex()
    links = parent_index(catalogue)
    return AcceptedRecord(
        dataset=rec.dataset,
        record_key=record_key(catalogue, rec.dataset, fields, digest),
        canonical=canonical,
        digest_hex=digest,
        destinations=destinations,
        parent_ref=links.parent_ref(rec.dataset, fields),
        provides=links.provides(rec.dataset, fields),
    )


def _nowhere(_dataset: str, _fields: Mapping[str, str]) -> tuple[str, ...]:
    return ()


# A hub without onward destinations stores records and routes them nowhere.
_NOWHERE: Route = _nowhere
NOWHERE = _NOWHERE


def adapt_input(
    adapter: Adapter,
    raw: RawInput,
    catalogue: Catalogue,
    route: Route,
) -> Adapted:
    """Parse and validate a whole input (raises InputRejected if unusable)."""
    records: list[AcceptedRecord] = []
    rejects: list[Reject] = []
    by_dataset: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    read = 0
    for item in adapter.parse(raw):
        read += 1
        if isinstance(item, RecordRejected):
            rejects.append(_reject(item))
            by_reason[item.code] += 1
            continue
        out = accept_record(item, catalogue, route)
        if isinstance(out, Reject):
            rejects.append(out)
            by_reason[out.code] += 1
        else:
            records.append(out)
            by_dataset[out.dataset] += 1
    return Adapted(records, rejects, by_dataset, by_reason, read)
