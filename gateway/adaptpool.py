"""Intake's adapt step (parse, map, validate, canonical bytes, SM3) in worker processes.

One gateway process holds the GIL for everything it does in Python; adapting is
most of intake's CPU, and it is pure (bytes + source config in, records out), so
it runs in ``node.intake_workers`` processes while the gateway process keeps the
HTTP server, the spool and the forwarders. Nothing durable happens in a worker:
the gateway stores what comes back and only then answers 202, as before.

* Workers are spawned (not forked: the gateway has threads and open databases)
  from the configuration the gateway loaded, and rebuild each source's adapter and
  route with the same code as the gateway (``gateway.node.make_adapter``). They
  hold no keys and no tokens. A reload starts a new pool; the old one finishes
  what it has.
* A worker that dies (a crash in a parser's C code, the OOM killer) takes only
  its pool down. The inputs it had are retried one at a time, each in a fresh
  process of its own: the one that kills that process too is quarantined as
  ``E_ADAPTER_CRASHED``, the others go on. The gateway stays up (promise 3).
* If a worker cannot build a source (a mapping file broken after the gateway
  loaded it), that source is adapted in the gateway process, with the adapter
  the gateway checked, and the problem is logged once.
* Workers ignore SIGINT / SIGTERM (the gateway decides when to stop, and drains
  them) and exit when the gateway process is gone, even after kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adapters.base import Adapter, RawInput
from adapters.catalogue import Catalogue, default_catalogue
from config.models import GatewayConfig, RouteRule, SourceConfig
from gateway import failpoints
from gateway.errors import GatewayError
from gateway.node import make_adapter, source_route
from gateway.pipeline import Adapted, Route, adapt_input
from gateway.routing import Router

__all__ = ["AdaptPool", "AdapterCrashed", "WorkerPlan", "worker_count"]

log = logging.getLogger(__name__)


def worker_count(setting: int | Literal["auto"]) -> int:
    """``auto``: one per core but one for the gateway itself, at least two (a
    large input must not make the small ones wait), at most four."""
    if setting != "auto":
        return setting
    return max(2, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What a worker needs to rebuild the sources: no keys, no tokens."""

    config_dir: str
    sources: tuple[SourceConfig, ...]
    routes: tuple[RouteRule, ...]
    destinations: tuple[str, ...]

    @classmethod
    def of(cls, model: GatewayConfig, config_path: Path) -> WorkerPlan:
        return cls(
            str(config_path.parent),
            tuple(model.sources),
            tuple(model.routes),
            tuple(d.name for d in model.destinations),
        )


class AdapterCrashed(GatewayError):
    """The input killed the process adapting it, alone, twice in a row."""


# --- in the worker process ----------------------------------------------------

_SOURCES: dict[str, tuple[Adapter, Route] | str] = {}
_POISON_POINT = "intake-worker.poison"
_POISON = b"\x00poison\x00"
_CATALOGUE: list[Catalogue] = []


def _init(plan: WorkerPlan, parent: int) -> None:
    # The gateway decides when to stop; a Ctrl-C or systemd's SIGTERM to the
    # whole group must not kill work it is waiting for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()
    _CATALOGUE.append(default_catalogue())
    router = Router(plan.routes)
    for i, s in enumerate(plan.sources):
        try:
            adapter = make_adapter(s, i, Path(plan.config_dir))
        except GatewayError as exc:
            _SOURCES[s.name] = str(exc)  # the gateway adapts this one itself
            continue
        _, route = source_route(router, s, plan.destinations)
        _SOURCES[s.name] = (adapter, route)


def _orphan_watch(parent: int) -> None:
    """Exit when the gateway is gone (kill -9 leaves no one to shut us down)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _ready() -> None:
    """Nothing: the initializer has run when this returns."""


@dataclass(frozen=True, slots=True)
class _Unavailable:
    reason: str


def _adapt(source: str, raw: RawInput) -> Adapted | _Unavailable:
    built = _SOURCES.get(source)
    if built is None:
        return _Unavailable(f"source {source!r} not in this worker's configuration")
    if isinstance(built, str):
        return _Unavailable(built)
    adapter, route = built
    if failpoints.armed(_POISON_POINT) and _POISON in raw.data:
        failpoints.hit(_POISON_POINT)  # tests: an input that kills its worker
    return adapt_input(adapter, raw, _CATALOGUE[0], route)


# --- in the gateway process ---------------------------------------------------

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _quiet_children() -> Iterator[None]:
    """Spawn with SIGINT / SIGTERM ignored, so workers ignore them from their
    first instruction (an ignored disposition survives exec; Python keeps it),
    not only once their initializer runs: a Ctrl-C while they import must not
    print tracebacks and break the pool. Here the signals are blocked meanwhile,
    so one that arrives is delivered afterwards, not lost."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change handlers; _init still ignores them
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    saved = [(s, signal.signal(s, signal.SIG_IGN)) for s in _STOP_SIGNALS]
    try:
        yield
    finally:
        for s, handler in saved:
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


class AdaptPool:
    """``adapt(source, adapter, route, raw)`` in worker processes; in this process
    when a worker cannot build the source."""

    def __init__(
        self,
        plan: WorkerPlan,
        workers: int,
        catalogue: Catalogue,
        *,
        on_death: Callable[[int, int], None] = lambda _restarts, _inputs: None,
    ) -> None:
        if workers < 1:
            raise ValueError("an AdaptPool needs at least one worker")
        self._plan = plan
        self._workers = workers
        self._catalogue = catalogue
        self._on_death = on_death
        self._pool = self._new(workers)
        self._alone = asyncio.Lock()
        self._told: set[str] = set()
        self._busy = 0
        self.restarts = 0

    def _new(self, workers: int) -> ProcessPoolExecutor:
        with _quiet_children():
            pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(self._plan, os.getpid()),
            )
            # Start them now (a task each), not inside the first inputs' answers:
            # a worker takes about a second to import and build its sources.
            for _ in range(workers):
                pool.submit(_ready)
        return pool

    async def adapt(
        self, source: str, adapter: Adapter, route: Route, raw: RawInput
    ) -> Adapted:
        """Adapt ``raw`` as ``source``; raises InputRejected like adapt_input,
        or AdapterCrashed when the input kills the process adapting it."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        self._busy += 1
        try:
            out = await loop.run_in_executor(pool, _adapt, source, raw)
        except BrokenProcessPool:
            self._replace(pool)
            out = await self._isolated(source, raw)
        finally:
            self._busy -= 1
        if isinstance(out, _Unavailable):
            if source not in self._told:
                self._told.add(source)
                log.error(
                    "An intake worker cannot build this source; the gateway "
                    "adapts it itself.",
                    extra={"source": source, "detail": out.reason},
                )
            return await asyncio.to_thread(
                adapt_input, adapter, raw, self._catalogue, route
            )
        return out

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._pool is not broken:
            return  # another input already replaced it
        self.restarts += 1
        self._on_death(self.restarts, self._busy)
        self._pool = self._new(self._workers)
        broken.shutdown(wait=False, cancel_futures=True)

    async def _isolated(self, source: str, raw: RawInput) -> Adapted | _Unavailable:
        """Run one input alone in a fresh process: a crash there is its own."""
        loop = asyncio.get_running_loop()
        async with self._alone:
            solo = self._new(1)
            try:
                return await loop.run_in_executor(solo, _adapt, source, raw)
            except BrokenProcessPool:
                raise AdapterCrashed(
                    f"the adapter's process died reading this input ({len(raw.data)} "
                    "bytes), twice, once alone"
                ) from None
            finally:
                solo.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Let running work finish, then stop the workers."""
        pool = self._pool
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=False)
