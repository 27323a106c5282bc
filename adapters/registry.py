"""The one explicit list of adapters (Benthos's components/all, as a tuple)."""

from __future__ import annotations

from types import MappingProxyType

from adapters import mapping, national_jsonl, suqian_blacklist
from adapters.base import AdapterSpec

REGISTRY: MappingProxyType[str, AdapterSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (national_jsonl.SPEC, mapping.SPEC, suqian_blacklist.SPEC)
    }
)

__all__ = ["REGISTRY"]
