"""Build a node's runtime objects from its configuration, collecting every problem.

Used by ``run`` (fail fast with every problem listed) and by ``check-config``
(list them all, exit 2). Each problem names the config file, the YAML path and
what is wrong with the thing it points at.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

import crypto
from adapters.base import Adapter
from adapters.catalogue import Catalogue, default_catalogue
from adapters.identifiers import region_table_version
from adapters.registry import REGISTRY
from config.loader import LoadedConfig
from config.models import AnyDestination, SourceConfig
from gateway.errors import ConfigError, GatewayError
from gateway.pipeline import NOWHERE, Route, fixed
from gateway.routing import Router
from gateway.transports.checks import (
    destination_problems,
    envelope_dir_problems,
    source_problems,
)

__all__ = [
    "Destination",
    "Node",
    "Source",
    "build_node",
    "make_adapter",
    "source_route",
]

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class Source:
    cfg: SourceConfig
    adapter: Adapter
    tokens: tuple[tuple[str, bytes], ...]  # (token id, token)
    destinations: tuple[str, ...]  # every destination its records may go to
    route: Route


@dataclass(frozen=True, slots=True)
class Destination:
    cfg: AnyDestination
    recipients: tuple[crypto.PublicKey, ...]
    receipt_signers: crypto.PeerTable


@dataclass(slots=True)
class Node:
    config: LoadedConfig
    ring: crypto.KeyRing
    catalogue: Catalogue
    sources: dict[str, Source] = field(default_factory=dict)
    destinations: dict[str, Destination] = field(default_factory=dict)
    senders: crypto.PeerTable = field(default_factory=crypto.PeerTable)
    sender_names: dict[str, str] = field(default_factory=dict)  # key id -> name
    hub_route: Route = NOWHERE
    admin_tokens: tuple[tuple[str, bytes], ...] = ()  # (token id, token): /api/*

    @property
    def name(self) -> str:
        return self.config.model.node.name

    @property
    def state_dir(self) -> Path:
        return self.config.resolve(self.config.model.node.state_dir)

    @property
    def spool_path(self) -> Path:
        return self.state_dir / "spool.db"

    @property
    def audit_dir(self) -> Path:
        a = self.config.model.node.audit
        return self.config.resolve(a.dir) if a.dir else self.state_dir / "audit"


class _Problems:
    def __init__(self, cfg: LoadedConfig) -> None:
        self.cfg = cfg
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{self.cfg.path}: {path}: {message}")


def token_id(token: bytes) -> str:
    """A non-secret name for a token: enough to tell tokens apart in the audit log."""
    return "tok-" + crypto.sm3(token).hex()[:12]


def read_token(path: Path) -> bytes:
    try:
        st = path.stat()
        data = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read token file ({exc.strerror})") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"{path}: token file is accessible by group or others; "
            f"run 'chmod 600 {path}'"
        )
    if len(data) < MIN_TOKEN_CHARS or not data.isascii() or b" " in data:
        raise ConfigError(
            f"{path}: a token must be at least {MIN_TOKEN_CHARS} printable "
            "ASCII characters"
        )
    return data


def _not_after(d: date | None) -> datetime | None:
    if d is None:
        return None
    # A key is usable through the whole of its last day (Beijing time is the
    # operators' clock; UTC end of day is later, so this is the safe side).
    return datetime.combine(d, time.max, tzinfo=UTC)


def _creatable(path: Path) -> bool:
    """The directory exists and is writable, or its nearest existing parent is."""
    for p in (path, *path.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def build_node(cfg: LoadedConfig) -> Node:
    """Everything the config names, loaded and checked.

    Raises ConfigError listing every problem, one per line.
    """
    m = cfg.model
    p = _Problems(cfg)
    crypto.select_backend(m.node.sm2_backend)
    # Load the region table now, not inside the first input's 202 (~0.3 s).
    region_table_version()
    keys: list[crypto.PrivateKey] = []
    for i, kf in enumerate(m.node.keys):
        try:
            keys.append(
                crypto.load_private_key(
                    cfg.resolve(kf.file), not_after=_not_after(kf.not_after)
                )
            )
        except GatewayError as exc:
            p.add(f"node.keys.{i}.file", str(exc))
    try:
        catalogue = default_catalogue()
    except ConfigError as exc:
        p.add("catalogue", str(exc))
        raise ConfigError("\n".join(p.items)) from exc
    state_dir = cfg.resolve(m.node.state_dir)
    if not _creatable(state_dir):
        p.add("node.state_dir", f"{state_dir}: not writable")

    dests: dict[str, Destination] = {}
    for i, d in enumerate(m.destinations):
        recips = _public_keys(
            cfg, p, f"destinations.{i}.recipient_keys", d.recipient_keys
        )
        signers = _public_keys(
            cfg, p, f"destinations.{i}.receipt_keys", d.receipt_keys or d.recipient_keys
        )
        for where, problem in destination_problems(d, cfg.resolve):
            p.add(f"destinations.{i}.{where}", problem)
        dests[d.name] = Destination(d, tuple(recips), crypto.PeerTable(signers))

    sources: dict[str, Source] = {}
    all_dests = tuple(dests)
    router = Router(m.routes)
    for i, s in enumerate(m.sources):
        adapter: Adapter | None = None
        try:
            adapter = make_adapter(s, i, cfg.path.parent)
        except _AdapterProblem as exc:
            p.add(exc.where, str(exc))
        tokens = []
        for j, t in enumerate(s.token_files):
            try:
                tok = read_token(cfg.resolve(t))
                tokens.append((token_id(tok), tok))
            except ConfigError as exc:
                p.add(f"sources.{i}.token_files.{j}", str(exc))
        for where, problem in source_problems(s, cfg.resolve):
            p.add(f"sources.{i}.{where}", problem)
        if adapter is not None:
            reach, route = source_route(router, s, all_dests)
            sources[s.name] = Source(s, adapter, tuple(tokens), reach, route)

    admin_tokens = []
    for j, t in enumerate(m.listen.admin_token_files):
        try:
            tok = read_token(cfg.resolve(t))
            admin_tokens.append((token_id(tok), tok))
        except ConfigError as exc:
            p.add(f"listen.admin_token_files.{j}", str(exc))

    senders = crypto.PeerTable()
    names: dict[str, str] = {}
    if m.hub is not None:
        for i, snd in enumerate(m.hub.senders):
            try:
                k = crypto.load_public_key(cfg.resolve(snd.key), name=snd.name)
            except GatewayError as exc:
                p.add(f"hub.senders.{i}.key", str(exc))
                continue
            senders.add(k)
            names[k.id] = snd.name
        for j, e in enumerate(m.hub.envelope_dirs):
            for where, problem in envelope_dir_problems(e, cfg.resolve):
                p.add(f"hub.envelope_dirs.{j}.{where}", problem)
        if m.hub.sink_dir and not _creatable(cfg.resolve(m.hub.sink_dir)):
            p.add("hub.sink_dir", f"{cfg.resolve(m.hub.sink_dir)}: cannot be created")
    if p.items:
        raise ConfigError("\n".join(p.items))
    hub_route: Route = NOWHERE
    if m.hub is not None:
        if router.active:
            hub_route = _routed(router, "hub")
        elif m.hub.destinations:
            hub_route = fixed(m.hub.destinations)
    return Node(
        cfg,
        crypto.KeyRing(keys),
        catalogue,
        sources,
        dests,
        senders,
        names,
        hub_route,
        admin_tokens=tuple(admin_tokens),
    )


class _AdapterProblem(ConfigError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


def make_adapter(s: SourceConfig, i: int, config_dir: Path) -> Adapter:
    """Source ``i``'s adapter (raises a ConfigError naming its YAML path).

    Also how intake workers rebuild it in their own process (gateway.adaptpool).
    """
    spec = REGISTRY.get(s.adapter)
    if spec is None:
        raise _AdapterProblem(
            f"sources.{i}.adapter",
            f"unknown adapter {s.adapter!r} (known: {', '.join(sorted(REGISTRY))})",
        )
    options = dict(s.options)
    if "base_dir" in spec.options.model_fields:
        # Relative paths in adapter options mean: next to this config.
        options.setdefault("base_dir", str(config_dir.resolve()))
    try:
        return spec.create(options, where=f"sources.{i}")
    except ConfigError as exc:
        raise _AdapterProblem(f"sources.{i}.options", str(exc)) from exc


def source_route(
    router: Router, s: SourceConfig, all_dests: tuple[str, ...]
) -> tuple[tuple[str, ...], Route]:
    """Where a source's records may go, and the route choosing among them."""
    if router.active:
        return router.reachable(s.name), _routed(router, s.name)
    reach = tuple(s.destinations) if s.destinations is not None else all_dests
    return reach, fixed(reach)


def _routed(router: Router, source: str) -> Route:
    def route(dataset: str, fields: Mapping[str, str]) -> tuple[str, ...]:
        return router.route(source, dataset, fields)

    return route


def _public_keys(
    cfg: LoadedConfig, p: _Problems, path: str, files: list[str]
) -> list[crypto.PublicKey]:
    out = []
    for j, f in enumerate(files):
        try:
            out.append(crypto.load_public_key(cfg.resolve(f)))
        except GatewayError as exc:
            p.add(f"{path}.{j}", str(exc))
    return out
