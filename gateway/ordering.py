"""Parent-first ordering: which record a record waits for, and which it satisfies.

The catalogue says that a child data set refers to its parent through a field
(``parent: {dataset: TENDER_PROJECT, via: TENDER_PROJECT_CODE}``): a SECTION
whose TENDER_PROJECT_CODE is X needs the TENDER_PROJECT whose key is X. Some
receivers (the Fujian platform, DOMAIN.md §2) refuse a child whose parent they
have not received, so a destination with ``ordering.parent_first`` sends a
child only after its parent's receipt verified at that destination.

Both sides are written as the same string, a *reference*::

    TENDER_PROJECT:E3201000001000001001        the parent's business key
    PURCHASE_PROJECT.UNIFIED_DEAL_CODE:…       another field of the parent

A child stores the reference it waits for (``parent_ref``); a record stores
the references it satisfies (``provides``: one per way children refer to its
data set). The spool keeps, per destination, the references delivered there
(a durable index that outlives the records) and the children held for one.
A business-key reference is written exactly like the record key
(``gateway.pipeline.record_key``), so the index can be rebuilt from records.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.catalogue import Catalogue

__all__ = ["ParentIndex", "parent_index"]


@dataclass(frozen=True, slots=True)
class _Link:
    parent: str  # parent data set
    via: str  # field of the child holding the parent's value
    prefix: str  # reference prefix, e.g. "TENDER_PROJECT:"


class ParentIndex:
    """Parent links of one catalogue, resolved once."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._child: dict[str, _Link] = {}
        # Per parent data set: (field, prefix) for every way children refer to it.
        self._provided: dict[str, list[tuple[str, str]]] = {}
        for name, ds in catalogue.datasets.items():
            ref = ds.spec.parent
            if ref is None:
                continue
            parent = catalogue.dataset(ref.dataset)
            if parent is None:  # the catalogue loader refuses this; be safe
                continue
            key = ref.key or parent.spec.key
            if key is None:
                continue
            prefix = (
                f"{ref.dataset}:" if key == parent.spec.key else f"{ref.dataset}.{key}:"
            )
            self._child[name] = _Link(ref.dataset, ref.via, prefix)
            ways = self._provided.setdefault(ref.dataset, [])
            if (key, prefix) not in ways:
                ways.append((key, prefix))

    def parent_ref(self, dataset: str, fields: Mapping[str, str]) -> str | None:
        """The reference this record waits for, or None (no parent, or no value)."""
        link = self._child.get(dataset)
        if link is None:
            return None
        value = fields.get(link.via)
        return f"{link.prefix}{value}" if value else None

    def provides(self, dataset: str, fields: Mapping[str, str]) -> tuple[str, ...]:
        """The references a delivered record of ``dataset`` satisfies."""
        ways = self._provided.get(dataset)
        if not ways:
            return ()
        return tuple(f"{prefix}{fields[k]}" for k, prefix in ways if fields.get(k))


_lock = threading.Lock()
_indexes: dict[int, tuple[Catalogue, ParentIndex]] = {}


def parent_index(catalogue: Catalogue) -> ParentIndex:
    """The index of ``catalogue`` (built on first use; catalogues are immutable)."""
    found = _indexes.get(id(catalogue))
    if found is not None and found[0] is catalogue:
        return found[1]
    with _lock:
        index = ParentIndex(catalogue)
        # Keep the catalogue referenced so its id is not reused by another.
        _indexes[id(catalogue)] = (catalogue, index)
        return index
