"""Composition root: the only module that knows the concrete classes.

``run(config)`` opens the spool, starts the listeners and one worker per
destination, and runs until SIGTERM/SIGINT. Shutdown order: stop taking
input (close the ingest listener), let in-flight sends finish, stop the
workers, close the spool. Nothing answered 202 is lost at any point: it is
in the spool before the answer is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from config.loader import ConfigProblems, load
from config.models import GatewayConfig
from crypto import sm3 as crypto_sm3
from gateway import lifecycle
from gateway.adaptpool import AdaptPool, WorkerPlan, worker_count
from gateway.dispatch import DestinationWorker
from gateway.errors import ConfigError, GatewayError, SpoolError
from gateway.forwarders import build_forwarder
from gateway.hub import Hub
from gateway.intake import Intake
from gateway.node import Destination, Node, build_node
from gateway.operations import Operations
from gateway.provenance import OriginStore, prune_before
from gateway.records import DestinationCounts
from gateway.spool import AsyncSpool, Limits, PruneCount, Quotas
from gateway.transports.runner import FileTasks
from monitoring.audit import AuditLog
from monitoring.events import Events
from monitoring.http import admin_routes

__all__ = ["Running", "quotas_from", "serve"]

log = logging.getLogger("gateway")
VERSION = "0.1.0"
DRAIN_S = 20.0
GAUGE_INTERVAL_S = 5.0
PRUNE_INTERVAL_S = 3600.0
PRUNE_BATCH = 200  # inputs per transaction


def quotas_from(cfg: GatewayConfig) -> Quotas:
    q = cfg.quota
    return Quotas(
        total=Limits(max_records=q.max_records, max_bytes=q.max_bytes),
        default_source=Limits(
            max_records=q.per_source_max_records, max_bytes=q.per_source_max_bytes
        ),
        retry_after_s=q.retry_after_s,
    )


def _hostport(v: str) -> tuple[str, int]:
    host, _, port = v.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass
class Running:
    node: Node
    spool: AsyncSpool
    events: Events
    registry: CollectorRegistry
    workers: dict[str, DestinationWorker] = field(default_factory=dict)
    intake: Intake = field(init=False)
    hub: Hub | None = None
    origins: OriginStore | None = None  # a hub's origin proofs (provenance)
    files: FileTasks | None = None  # SFTP / directory sources, envelope folders
    runners: list[web.AppRunner] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _hold_alarmed: set[str] = field(default_factory=set)  # destinations in alarm

    def notify(self, destinations: tuple[str, ...]) -> None:
        for d in destinations:
            w = self.workers.get(d)
            if w is not None:
                w.records_ready.set()

    async def status(self) -> dict[str, Any]:
        now = time.time()
        sources = await self.spool.source_counts()
        dests = await self.spool.destination_counts(now=now)
        out: dict[str, Any] = {
            "node": self.node.name,
            "sources": {
                n: {"accepted": 0, "records": 0, "rejected": 0, "quarantined": 0}
                for n in self.node.sources
            },
            "destinations": {},
        }
        for n, c in sources.items():
            out["sources"][n] = {
                "accepted": c.accepted,
                "records": c.records,
                "rejected": c.rejected,
                "quarantined": c.quarantined,
            }
        for n in self.node.destinations:
            d = dests.get(n) or DestinationCounts()
            w = self.workers.get(n)
            out["destinations"][n] = {
                "queued": d.queued + d.leased + d.sealed,
                "delivered": d.delivered,
                "dead": d.dead,
                "oldest_age_s": d.oldest_age_s,
                "held": d.held,
                "oldest_held_s": d.oldest_held_s,
                "circuit_open": bool(w and w.breaker.is_open),
                "last_error": w.last_error if w else None,
            }
        if self.files is not None:
            for n in self.files.sources:
                out["sources"].setdefault(n, {}).update(self.files.status(n))
        if self.node.config.model.hub is not None:
            h = await self.spool.hub_counts()
            out["hub"] = {
                "envelopes": h.envelopes,
                "records": h.records,
                "duplicates": h.duplicates,
            }
        return out

    async def ready_problems(self) -> list[str]:
        problems = []
        try:
            await self.spool.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            problems.append(f"spool: {type(exc).__name__}")
        audit = self.events.audit
        if audit is None or not audit.healthy:
            problems.append("audit: the audit log is not writable")
        free = shutil.disk_usage(self.node.state_dir).free
        if free < self.node.config.model.quota.min_free_disk:
            problems.append(f"disk: {free} bytes free")
        now = datetime.now(UTC)
        try:
            key = self.node.ring.current(now)
        except Exception:  # noqa: BLE001
            problems.append("keys: every key has expired")
        else:
            days = self.node.config.model.node.key_expiry_warning_days
            if key.not_after is not None and (key.not_after - now).days < days:
                problems.append(
                    f"keys: sealing key {key.id} expires {key.not_after:%Y-%m-%d}"
                )
        return problems

    def disk_ok(self) -> bool:
        return (
            shutil.disk_usage(self.node.state_dir).free
            >= self.node.config.model.quota.min_free_disk
        )

    def publish_names(self) -> None:
        self.events.known(
            list(self.node.sources),
            list(self.node.destinations),
            hub=self.node.config.model.hub is not None,
        )

    def publish_keys(self) -> None:
        now = datetime.now(UTC)
        self.events.keys_loaded(
            [
                (k.id, k.not_after.timestamp() if k.not_after else None)
                for k in self.node.ring
            ],
            self.node.ring.current(now).id,
        )

    async def prune_hub_once(self) -> int:
        """Forget received envelope ids older than the dedupe retention.

        Safe: an envelope that old is refused as E_ENVELOPE_EXPIRED before its id
        is looked up, and the record-key dedupe table is kept, so a re-sealed
        record is still held once.
        """
        hub = self.node.config.model.hub
        if hub is None:
            return 0
        cutoff = time.time() - hub.dedupe_retention_days * 86400
        n = await self.spool.prune_hub_envelopes(received_before=cutoff)
        if n:
            log.info("Old envelope ids forgotten.", extra={"count": n})
        return n

    async def prune_origins_once(self) -> tuple[int, int]:
        """Delete origin proofs (origins.db) unused for the dedupe retention.

        A proof an undelivered record may still need (its onward envelope, or a
        re-seal, carries it) is kept however old: the cut-off moves back to the
        oldest undelivered record. Returns (proofs, records) deleted.
        """
        hub = self.node.config.model.hub
        if hub is None or self.origins is None:
            return 0, 0
        now = time.time()
        counts = await self.spool.destination_counts(now=now)
        ages = [c.oldest_age_s for c in counts.values() if c.oldest_age_s is not None]
        cutoff = prune_before(
            now,
            retention_s=hub.dedupe_retention_days * 86400,
            oldest_undelivered_s=max(ages) if ages else None,
        )
        proofs, records = await asyncio.to_thread(self.origins.prune, before=cutoff)
        if proofs:
            self.events.origins_pruned(
                proofs=proofs,
                records=records,
                retention_days=hub.dedupe_retention_days,
            )
        return proofs, records

    async def prune_delivered_once(self) -> PruneCount:
        """Delete inputs delivered everywhere longer than node.keep_delivered_days
        ago, in small transactions so intake never waits long for the writer."""
        days = self.node.config.model.node.keep_delivered_days
        before = time.time() - days * 86400
        total = PruneCount()
        while True:
            n = await self.spool.prune_delivered(before=before, limit=PRUNE_BATCH)
            total = PruneCount(
                inputs=total.inputs + n.inputs,
                records=total.records + n.records,
                envelopes=total.envelopes + n.envelopes,
            )
            if n.inputs < PRUNE_BATCH:
                break
            await asyncio.sleep(0)  # let intake and the workers have the writer
        if total.inputs:
            self.events.spool_pruned(
                inputs=total.inputs,
                records=total.records,
                envelopes=total.envelopes,
                keep_days=days,
            )
        return total

    async def _maintenance(self) -> None:
        """At start and hourly: retention of delivered data, hub dedupe ids and
        origin proofs."""
        hub = self.node.config.model.hub is not None
        while True:
            try:
                await self.prune_delivered_once()
            except SpoolError as exc:
                log.warning(
                    "Pruning delivered data failed.", extra={"detail": str(exc)}
                )
            if hub:
                try:
                    await self.prune_hub_once()
                except SpoolError as exc:
                    log.warning(
                        "Pruning envelope ids failed.", extra={"detail": str(exc)}
                    )
                try:
                    await self.prune_origins_once()
                except (SpoolError, sqlite3.Error) as exc:
                    log.warning(
                        "Pruning origin proofs failed.", extra={"detail": str(exc)}
                    )
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _held_gauges(self, name: str, alarm_s: float, c: DestinationCounts) -> None:
        ev = self.events
        ev.held_records.labels(name).set(c.held)
        ev.held_oldest.labels(name).set(c.oldest_held_s or 0)
        ev.hold_alarm_s.labels(name).set(alarm_s)
        # The alert rule watches the gauges; the log and the audit say it once
        # per episode (until nothing is held past the alarm time).
        over = c.oldest_held_s is not None and c.oldest_held_s > alarm_s
        if over and name not in self._hold_alarmed:
            self._hold_alarmed.add(name)
            ev.hold_alarm(name, records=c.held, oldest_s=c.oldest_held_s or 0)
        elif not over:
            self._hold_alarmed.discard(name)

    async def _gauges(self) -> None:
        ev = self.events
        while True:
            try:
                counts = await self.spool.destination_counts(now=time.time())
                for n, dest in self.node.destinations.items():
                    c = counts.get(n) or DestinationCounts()
                    ev.spool_depth.labels(n).set(c.queued + c.leased + c.sealed)
                    ev.oldest_undelivered.labels(n).set(c.oldest_age_s or 0)
                    ev.dead_records.labels(n).set(c.dead)
                    self._held_gauges(n, dest.cfg.ordering.hold_alarm_s, c)
                ev.disk_free.set(shutil.disk_usage(self.node.state_dir).free)
                if ev.audit is not None:
                    ev.audit_checkpoint_age.set(ev.audit.checkpoint_age_s)
                ev.disk_min_free.set(self.node.config.model.quota.min_free_disk)
            except (SpoolError, OSError) as exc:
                log.warning("Gauge refresh failed.", extra={"detail": str(exc)})
            await asyncio.sleep(GAUGE_INTERVAL_S)


def _file_sm3(path: Path) -> str:
    return crypto_sm3(path.read_bytes()).hex()


def lock_state_dir(state_dir: Path) -> int:
    """Exclusive lock on the state directory: one process per spool, ever."""
    fd = os.open(state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ConfigError(
            f"{state_dir}: another process is using this state directory"
        ) from exc
    return fd


async def _start_site(app: web.Application, where: str) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = _hostport(where)
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    return runner


def _worker(rt: Running, dest: Destination) -> DestinationWorker:
    fwd = build_forwarder(dest.cfg, resolve=rt.node.config.resolve, events=rt.events)
    # The sealing key is looked up per batch, so a reload's key rotation applies.
    return DestinationWorker(
        dest,
        fwd,
        rt.spool,
        lambda: rt.node.ring.current(datetime.now(UTC)),
        rt.events,
        origins=rt.origins,
    )


def _adapt_pool(node: Node, events: Events) -> AdaptPool | None:
    """Intake workers for this configuration (none if it has no sources)."""
    cfg = node.config.model
    workers = worker_count(cfg.node.intake_workers)
    if workers == 0 or not node.sources:
        return None
    plan = WorkerPlan.of(cfg, node.config.path)

    def on_death(restarts: int, inputs: int) -> None:
        events.intake_worker_died(restarts=restarts, inputs=inputs)

    try:
        return AdaptPool(plan, workers, node.catalogue, on_death=on_death)
    except OSError as exc:  # no POSIX semaphores (/dev/shm), no processes left
        log.error(
            "Intake workers cannot start; inputs are adapted in the gateway process.",
            extra={"detail": str(exc)},
        )
        return None


async def reload(rt: Running) -> bool:
    """SIGHUP: re-read the config; apply sources, keys, peers and destinations.

    Queued data is untouched: it lives in the spool, keyed by destination name.
    A destination whose settings changed is drained and restarted; a removed
    one keeps its queue in the spool until it is configured again. Listener
    addresses and turning hub mode on or off need a restart.
    """
    path = rt.node.config.path
    try:
        new = build_node(load(path))
    except (ConfigProblems, GatewayError) as exc:
        log.error(
            "Reload refused; the running configuration stays.",
            extra={"detail": str(exc)},
        )
        rt.events.node("config_reloaded", outcome="failed", code="E_CONFIG")
        return False
    old_cfg, new_cfg = rt.node.config.model, new.config.model
    # Admin tokens apply at once (read per request); addresses need a restart.
    moved = (old_cfg.listen.ingest, old_cfg.listen.admin) != (
        new_cfg.listen.ingest,
        new_cfg.listen.admin,
    )
    if moved or (old_cfg.hub is None) != (new_cfg.hub is None):
        log.warning("Listener or hub-mode changes take effect at the next restart.")
    old = rt.node
    rt.node = new
    rt.intake.sources.clear()
    rt.intake.sources.update(new.sources)
    # New inputs go to workers of the new configuration; the old ones finish.
    old_pool, rt.intake.pool = rt.intake.pool, _adapt_pool(new, rt.events)
    if old_pool is not None:
        rt.tasks.append(asyncio.create_task(old_pool.close()))
    rt.spool.set_quotas(quotas_from(new_cfg))
    if rt.hub is not None and new_cfg.hub is not None:
        rt.hub.ring = new.ring
        rt.hub.senders = new.senders
        rt.hub.sender_names = new.sender_names
        rt.hub.route = new.hub_route
        rt.hub.retention_s = new_cfg.hub.dedupe_retention_days * 86400
        rt.hub.max_envelope_bytes = new_cfg.hub.max_envelope_bytes
        rt.hub.max_plaintext_bytes = new_cfg.hub.max_plaintext_bytes
    for name in list(rt.workers):
        dest = new.destinations.get(name)
        if (
            dest is None
            or dest.cfg != old.destinations[name].cfg
            # PublicKey compares by identity: compare the keys' ids.
            or [k.id for k in dest.recipients]
            != [k.id for k in old.destinations[name].recipients]
        ):
            await rt.workers.pop(name).stop(drain_s=DRAIN_S)
    for name, dest in new.destinations.items():
        if name not in rt.workers:
            w = _worker(rt, dest)
            rt.workers[name] = w
            w.start()
    if rt.files is not None:
        await rt.files.restart(new)
    rt.publish_keys()
    rt.publish_names()
    old_key = old.ring.current(datetime.now(UTC)).id
    new_key = new.ring.current(datetime.now(UTC)).id
    rt.events.node("config_reloaded", config_sm3=_file_sm3(path))
    if old_key != new_key:
        rt.events.node("key_rotated", old_key_id=old_key, new_key_id=new_key)
    log.info(
        "Configuration reloaded.",
        extra={"sources": len(new.sources), "destinations": len(new.destinations)},
    )
    return True


async def serve(
    node: Node, stop: asyncio.Event, reload_requested: asyncio.Event | None = None
) -> None:
    """Run the node until ``stop`` is set; reload when ``reload_requested`` is."""
    cfg = node.config.model
    node.state_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_state_dir(node.state_dir)
    registry = CollectorRegistry()
    events = Events(registry, node=node.name, version=VERSION)
    spool = await AsyncSpool.open(node.spool_path, quotas=quotas_from(cfg))
    # We hold the lock: no lease from an earlier process can still be in use.
    recovered = await spool.recover_leases(now=time.time())
    if recovered:
        log.info("Leases of a previous run released.", extra={"count": recovered})
    rt = Running(node, spool, events, registry)
    cfg_audit = cfg.node.audit
    events.audit = await AuditLog.aopen(
        node.audit_dir,
        node=node.name,
        signer=lambda: rt.node.ring.current(datetime.now(UTC)),
        fsync=cfg_audit.fsync,
        max_file_bytes=cfg_audit.max_file_bytes,
        checkpoint_every=cfg_audit.checkpoint_every,
        checkpoint_seconds=cfg_audit.checkpoint_seconds,
    )
    events.node(
        "config_loaded", config_sm3=_file_sm3(node.config.path), pid=os.getpid()
    )
    events.node(
        "keys_loaded",
        key_ids=[k.id for k in node.ring],
        key_id=node.ring.current(datetime.now(UTC)).id,
    )
    if cfg.hub is not None:
        rt.origins = OriginStore(node.state_dir / "origins.db")
    try:
        for dest in node.destinations.values():
            rt.workers[dest.cfg.name] = _worker(rt, dest)
        ingest = web.Application(client_max_size=1024**4)
        rt.intake = Intake(
            dict(node.sources),
            spool,
            node.catalogue,
            events,
            rt.notify,
            disk_ok=rt.disk_ok,
            pool=_adapt_pool(node, events),
        )
        ingest.add_routes(rt.intake.routes())
        if cfg.hub is not None:
            rt.hub = Hub(
                ring=node.ring,
                senders=node.senders,
                sender_names=node.sender_names,
                spool=spool,
                catalogue=node.catalogue,
                events=events,
                route=node.hub_route,
                retention_s=cfg.hub.dedupe_retention_days * 86400,
                max_envelope_bytes=cfg.hub.max_envelope_bytes,
                max_plaintext_bytes=cfg.hub.max_plaintext_bytes,
                sink_dir=node.config.resolve(cfg.hub.sink_dir)
                if cfg.hub.sink_dir
                else None,
                notify=rt.notify,
                origins=rt.origins,
            )
            ingest.add_routes(rt.hub.routes())
        admin = web.Application()
        ops = Operations(rt)
        admin.add_routes(admin_routes(registry, ops))
        for w in rt.workers.values():
            w.start()
        rt.files = FileTasks(rt.intake, events, rt.hub)
        rt.files.start(node)
        rt.publish_keys()
        rt.publish_names()
        rt.tasks.append(asyncio.create_task(rt._gauges()))
        rt.tasks.append(asyncio.create_task(rt._maintenance()))
        rt.tasks.append(asyncio.create_task(ops.sample_forever()))
        if cfg.listen.ingest:
            rt.runners.append(await _start_site(ingest, cfg.listen.ingest))
        rt.runners.append(await _start_site(admin, cfg.listen.admin))
        rt.tasks.append(lifecycle.watchdog_task())
        lifecycle.ready()
        events.node("node_started", pid=os.getpid())
        log.info(
            "Gateway ready.",
            extra={
                "node": node.name,
                "ingest": cfg.listen.ingest,
                "admin": cfg.listen.admin,
                "destinations": len(rt.workers),
                "sources": len(node.sources),
            },
        )
        while not stop.is_set():
            waits = [asyncio.create_task(stop.wait())]
            if reload_requested is not None:
                waits.append(asyncio.create_task(reload_requested.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            if (
                reload_requested is not None
                and reload_requested.is_set()
                and not stop.is_set()
            ):
                reload_requested.clear()
                lifecycle.reloading()
                await reload(rt)
                lifecycle.ready()
        lifecycle.stopping()
        events.node("node_stopping")
        log.info("Stopping: no new input; draining in-flight sends.")
    finally:
        # Stop intake first, so nothing new is accepted while we drain.
        for r in rt.runners:
            await r.cleanup()
        if rt.files is not None:
            await rt.files.stop()
        intake: Intake | None = getattr(rt, "intake", None)
        if intake is not None and intake.pool is not None:
            await intake.pool.close()  # after the listeners: in-flight inputs finish
        await asyncio.gather(
            *(w.stop(drain_s=DRAIN_S) for w in rt.workers.values()),
            return_exceptions=True,
        )
        for t in rt.tasks:
            t.cancel()
        await asyncio.gather(*rt.tasks, return_exceptions=True)
        await spool.aclose()
        if events.audit is not None:
            # A final signed checkpoint marks the clean shutdown.
            await events.audit.aclose()
            events.audit = None
        if rt.origins is not None:
            rt.origins.close()
        os.close(lock)
        log.info("Stopped.")


def run(node: Node) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        reload_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
        await serve(node, stop, reload_requested)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
