"""Build a real intake (spool, catalogue, adapter) around a file source, in-process."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import crypto
from config.models import DirectoryTransport, SftpTransport
from gateway.intake import Intake
from gateway.node import Node
from gateway.spool import AsyncSpool, Quotas, Spool
from gateway.transports.source import FileSource
from gateway.transports.store import FileStore, LocalStore
from monitoring.audit import AuditLog, export, verify
from monitoring.events import Events
from tests.harness import Site, admin_headers, node_from


def source_config(site: Site, transport: str, *, name: str = "gw") -> Path:
    """A node with one file source ``drop`` (national JSON Lines)."""
    lines = [
        "node:",
        f"  name: {name}",
        f"  state_dir: {site.root / name}",
        f"  keys: [{{file: {site.key(name)}}}]",
        "listen:",
        f"  admin: 127.0.0.1:{site.port(name + '-admin')}",
        f"  admin_token_files: [{site.admin_token_file()}]",
        "sources:",
        "  - name: drop",
        "    content_types: [application/x-ndjson]",
        "    max_bytes: 8MiB",
        "    transport:",
        *("      " + line for line in transport.strip("\n").splitlines()),
        # Never contacted here (no workers run): records need somewhere to go.
        "destinations:",
        "  - name: hub",
        "    url: http://127.0.0.1:9/v1/envelopes",
        f"    recipient_keys: [{site.pub('hub')}]",
        "    retry: {quick_attempts: 1, backoff_min_s: 30}",
        "quota:",
        "  min_free_disk: 16MiB",
    ]
    path = site.root / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@dataclass
class Rig:
    node: Node
    spool: AsyncSpool
    intake: Intake
    events: Events
    registry: CollectorRegistry
    clock: Clock

    def source(
        self, *, store: FileStore | None = None, node_name: str | None = None
    ) -> FileSource:
        src = self.node.sources["drop"]
        t = src.cfg.transport
        assert isinstance(t, SftpTransport | DirectoryTransport)
        incoming = (
            t.remote_dir
            if isinstance(t, SftpTransport)
            else str(self.node.config.resolve(t.path))
        )
        return FileSource(
            node=node_name or self.node.name,
            source="drop",
            transport=t,
            incoming=incoming,
            store=store or LocalStore(),
            intake=self.intake,
            staging=self.node.state_dir / "transfers" / "drop",
            events=self.events,
            clock=self.clock,
        )

    async def counts(self) -> tuple[int, int]:
        c = (await self.spool.source_counts()).get("drop")
        return (c.accepted, c.records) if c else (0, 0)


@contextlib.asynccontextmanager
async def rig(config: Path) -> AsyncIterator[Rig]:
    node = node_from(config)
    node.state_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    events = Events(registry, node=node.name, version="test")
    spool = await AsyncSpool.open(node.spool_path, quotas=Quotas())
    intake = Intake(dict(node.sources), spool, node.catalogue, events, lambda _d: None)
    try:
        yield Rig(node, spool, intake, events, registry, Clock())
    finally:
        await spool.aclose()


def hub_with_drop(site: Site, inbox: Path, receipts: Path, name: str = "hub") -> Path:
    path = site.hub_config(name)
    drop = (
        f"  envelope_dirs:\n    - {{path: {inbox}, receipts_dir: {receipts}, "
        "poll_interval_s: 0.2}\n"
    )
    path.write_text(path.read_text().replace("quota:\n", drop + "quota:\n", 1))
    return path


async def push_ingest(site: Site, body: bytes) -> tuple[int, bytes]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            site.url("gw") + "/v1/ingest/src",
            data=body,
            headers={
                "Authorization": f"Bearer {site.token}",
                "Content-Type": "application/x-ndjson",
            },
        ) as r,
    ):
        return r.status, await r.read()


async def delivered_count(node: Node) -> int:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"http://{node.config.model.listen.admin}/api/status",
            headers=admin_headers(node),
        ) as r,
    ):
        st = await r.json()
    return int(st["destinations"]["hub"]["delivered"])


def wait_for(pred: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``pred`` (from a test thread, not an event loop) until it holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if pred():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {seconds} s")


def hub_records(site: Site, name: str = "hub") -> list[bytes]:
    """Every record a hub holds (its spool, read-only), in arrival order."""
    out: list[bytes] = []
    with Spool(site.root / name / "spool.db", readonly=True) as sp:
        after = 0
        while page := sp.list_hub_records(after=after, limit=500):
            out.extend(r.canonical for r in page)
            after = page[-1].record_id
    return out


@contextlib.asynccontextmanager
async def audited(r: Rig) -> AsyncIterator[Path]:
    """Give a rig's events a real audit log (the node's key signs checkpoints);
    closed, with its final checkpoint, when the block ends."""
    directory = r.node.audit_dir
    log = await AuditLog.aopen(
        directory, node=r.node.name, signer=r.node.ring.current(datetime.now(UTC))
    )
    r.events.audit = log
    try:
        yield directory
    finally:
        r.events.audit = None
        await log.aclose()


def audit_entries(directory: Path) -> list[dict[str, Any]]:
    """Every entry of an audit log, in order, after checking the whole chain."""
    return [json.loads(line) for line in export(directory)]


def verified(directory: Path, *keys: Path) -> list[dict[str, Any]]:
    """``audit verify`` over the log with the nodes' keys, then its entries."""
    result = verify(directory, [crypto.load_private_key(k).public for k in keys])
    assert result.ok, result.report()
    assert not result.warnings, result.report()
    return audit_entries(directory)


def pick(
    entries: list[dict[str, Any]], kind: str, **data: object
) -> list[dict[str, Any]]:
    """The entries of ``kind`` whose data has every given value."""
    return [
        e
        for e in entries
        if e["kind"] == kind and all(e["data"].get(k) == v for k, v in data.items())
    ]


def one(entries: list[dict[str, Any]], kind: str, **data: object) -> dict[str, Any]:
    found = pick(entries, kind, **data)
    assert len(found) == 1, (kind, data, found)
    return found[0]
