"""Routing: which destinations a record goes to.

Rules are tried in order and the destinations of every rule that matches are
taken (a record can go to several hubs). A rule matches on data set, region
code prefix, source and simple field predicates; a rule with ``default: true``
applies only when no other rule matched. A record no rule routes is rejected
as ``E_UNROUTABLE`` (kept in quarantine with its input), never dropped.
Without any rules, a source's records go to its ``destinations`` (default:
every destination), as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.models import RouteRule

__all__ = ["Router"]


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    datasets: frozenset[str] | None
    regions: tuple[str, ...] | None
    sources: frozenset[str] | None
    fields: tuple[tuple[str, frozenset[str]], ...]
    destinations: tuple[str, ...]
    default: bool

    def matches(self, source: str, dataset: str, fields: Mapping[str, str]) -> bool:
        if self.datasets is not None and dataset not in self.datasets:
            return False
        if self.sources is not None and source not in self.sources:
            return False
        if self.regions is not None:
            region = fields.get("REGION_CODE", "")
            if not region.startswith(self.regions):
                return False
        return all(fields.get(f, "") in allowed for f, allowed in self.fields)


class Router:
    def __init__(self, rules: Sequence[RouteRule]) -> None:
        self._rules = [
            _Rule(
                name=r.name,
                datasets=frozenset(r.match.datasets) if r.match.datasets else None,
                regions=tuple(r.match.region_prefixes)
                if r.match.region_prefixes
                else None,
                sources=frozenset(r.match.sources) if r.match.sources else None,
                fields=tuple(
                    (f, frozenset([v] if isinstance(v, str) else v))
                    for f, v in r.match.fields.items()
                ),
                destinations=tuple(r.destinations),
                default=r.default,
            )
            for r in rules
        ]

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def reachable(self, source: str) -> tuple[str, ...]:
        """Every destination a record from ``source`` might be routed to."""
        out: list[str] = []
        for rule in self._rules:
            if rule.sources is None or source in rule.sources:
                out.extend(d for d in rule.destinations if d not in out)
        return tuple(out)

    def route(
        self, source: str, dataset: str, fields: Mapping[str, str]
    ) -> tuple[str, ...]:
        """Destinations for one record, in rule order, without repeats; () if none."""
        out: list[str] = []
        for rule in self._rules:
            if not rule.default and rule.matches(source, dataset, fields):
                out.extend(d for d in rule.destinations if d not in out)
        if not out:
            for rule in self._rules:
                if rule.default and rule.matches(source, dataset, fields):
                    out.extend(d for d in rule.destinations if d not in out)
        return tuple(out)
