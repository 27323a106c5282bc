"""Spool benchmark: records/s of each spool operation on a real file, sync and async.

Usage: ``python bench/spool_bench.py [--inputs 60] [--records 200] [--size 2048]
[--clients 8] [--dests 1] [--repeat N] [--only NAME ...] [--profile NAME]
[--dir DIR]``

Each input carries ``--records`` records of about ``--size`` bytes of canonical
JSON (plus raw bytes of the same total size), queued for one destination. Every
number is records per second over a fresh spool file, with the durability the
gateway runs with (WAL, ``synchronous=FULL``: one fsync per commit):

sync (``Spool``, one transaction per call, as a single caller sees it):
  put_intake              store inputs
  lease+put_envelope      seal stage: lease 200 records, store their envelope
  lease_env+ack_envelope  forward stage: lease an envelope, store its receipt
  gateway cycle           per input: put_intake, lease, put_envelope,
                          lease_envelopes, ack_envelope
  put_received            hub: store envelopes of 200 records, kept at the hub
  put_received+onward     the same, each record also queued for one destination

async (``AsyncSpool``, the way the node uses it; group commit):
  put_intake              ``--clients`` concurrent intake requests
  lease+put_envelope      one sealer per destination (``--dests`` of them)
  lease_env+ack_envelope  one forwarder, up to 4 envelopes in flight
  gateway cycle           clients, sealer and forwarder running together until
                          every record is delivered
  put_received            ``--clients`` concurrent hub requests

Each line gives records/s (wall clock) and CPU microseconds per record (the
whole process, all threads: the part other work on the node cannot use). The
machine's fsync latency and load average are printed first: a sync call cannot
beat records / fsync time, and on a shared machine the wall-clock numbers swing
with other load, so compare with ``--repeat N`` (best of N is printed last).
Spool files go to the system temp folder unless ``--dir`` says otherwise: use
the disk the spool will live on.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.records import (  # noqa: E402
    AcceptedRecord,
    InboxEnvelope,
    LeasedEnvelope,
    Provenance,
)
from gateway.spool import AsyncSpool, Spool  # noqa: E402

T0 = 1_790_000_000.0
DEST = "hub"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_record(
    rng: random.Random, n: int, size: int, dests: tuple[str, ...]
) -> AcceptedRecord:
    head = {
        "dataset": "deal",
        "project_code": f"P{n:010d}",
        "amount": rng.randint(1, 10**9),
        "region": f"{rng.randint(100000, 999999)}",
    }
    pad = size - len(json.dumps(head)) - 12
    head["notes"] = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=max(0, pad)))
    body = json.dumps(head, separators=(",", ":")).encode()
    return AcceptedRecord(
        dataset="deal",
        record_key=f"P{n:010d}",
        canonical=body,
        digest_hex=sha(body),
        destinations=dests,
    )


class Inputs:
    """Pre-built inputs, so only the spool is timed."""

    def __init__(self, args: argparse.Namespace, *, dests: tuple[str, ...], seed: int):
        rng = random.Random(seed)
        self.batches: list[tuple[Provenance, bytes, list[AcceptedRecord]]] = []
        n = seed * 10_000_000
        for _ in range(args.inputs):
            recs = []
            for _ in range(args.records):
                n += 1
                recs.append(make_record(rng, n, args.size, dests))
            raw = b"\n".join(r.canonical for r in recs)
            p = Provenance(
                source=f"s{len(self.batches) % 3}",
                remote_addr="127.0.0.1",
                token_id="t",
                received_at=T0,
                content_type="application/x-ndjson",
                digest_hex=sha(raw),
                idempotency_key=f"k{seed}.{len(self.batches)}",
            )
            self.batches.append((p, raw, recs))

    @property
    def records(self) -> int:
        return sum(len(b[2]) for b in self.batches)


def envelope_body(n_records: int, args: argparse.Namespace) -> bytes:
    return os.urandom(int(n_records * args.size * args.envelope_ratio))


def received(
    args: argparse.Namespace, inputs: Inputs, i: int
) -> tuple[InboxEnvelope, list[AcceptedRecord], Provenance]:
    p, raw, recs = inputs.batches[i]
    eid = f"env.{p.idempotency_key}"
    env = InboxEnvelope(
        envelope_id=eid,
        sender_key_id="k-1",
        digest_hex=p.digest_hex,
        size=len(raw),
        received_at=T0,
        remote_addr="127.0.0.2",
        receipt=b"RECEIPT " + eid.encode() + os.urandom(200),
    )
    hp = Provenance(
        source="hub:gw",
        remote_addr="127.0.0.2",
        token_id="k-1",
        received_at=T0,
        content_type="application/x-ndjson",
        digest_hex=p.digest_hex,
    )
    return env, recs, hp


# -- timing -----------------------------------------------------------------------


class Timer:
    """Wall time, and CPU time of the whole process (all threads)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0

    @contextmanager
    def run(self) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t0
            self.cpu += time.process_time() - c0


def fsync_ms(folder: Path) -> float:
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(50):
            os.pwrite(fd, b"x" * 4096, 0)
            os.fsync(fd)
        return (time.perf_counter() - t0) / 50 * 1000
    finally:
        os.close(fd)
        path.unlink()


# -- sync ---------------------------------------------------------------------------


def sync_put_intake(spool: Spool, inputs: Inputs) -> int:
    for p, raw, recs in inputs.batches:
        spool.put_intake(p, raw, recs, now=T0)
    return inputs.records


def sync_seal(spool: Spool, args: argparse.Namespace) -> int:
    """Seal stage: lease a batch, store its envelope, until nothing is queued."""
    done = n = 0
    bodies = [envelope_body(args.records, args) for _ in range(4)]
    while True:
        items = spool.lease(DEST, limit=args.records, lease_s=60, now=T0)
        if not items:
            return done
        spool.put_envelope(
            DEST,
            f"e{n}",
            bodies[n % 4],
            digest_hex="00",
            item_ids=[i.item_id for i in items],
            now=T0,
        )
        done += len(items)
        n += 1


def sync_forward(spool: Spool) -> int:
    """Forward stage: lease an envelope, store its receipt, until none is left."""
    done = 0
    while True:
        envs = spool.lease_envelopes(DEST, limit=1, lease_s=60, now=T0)
        if not envs:
            return done
        for e in envs:
            spool.ack_envelope(
                e.envelope_id,
                receipt_id="r",
                receipt_digest_hex="00",
                receipt=b"R" * 600,
                now=T0,
            )
            done += len(e.item_ids)


def sync_cycle(spool: Spool, inputs: Inputs, args: argparse.Namespace) -> int:
    """Every stage in turn for each input, as a single caller would."""
    body = envelope_body(args.records, args)
    done = 0
    for n, (p, raw, recs) in enumerate(inputs.batches):
        spool.put_intake(p, raw, recs, now=T0)
        items = spool.lease(DEST, limit=args.records, lease_s=60, now=T0)
        spool.put_envelope(
            DEST,
            f"c{n}",
            body,
            digest_hex="00",
            item_ids=[i.item_id for i in items],
            now=T0,
        )
        done += sync_forward(spool)
    return done


def sync_received(spool: Spool, args: argparse.Namespace, inputs: Inputs) -> int:
    for i in range(len(inputs.batches)):
        env, recs, hp = received(args, inputs, i)
        spool.put_received(env, recs, hp, now=T0)
    return inputs.records


# -- async --------------------------------------------------------------------------


async def async_put_intake(spool: AsyncSpool, inputs: Inputs, clients: int) -> None:
    todo = list(reversed(inputs.batches))

    async def client() -> None:
        while todo:
            p, raw, recs = todo.pop()
            await spool.put_intake(p, raw, recs, now=T0)

    await asyncio.gather(*(client() for _ in range(clients)))


async def sealer(
    spool: AsyncSpool,
    dest: str,
    args: argparse.Namespace,
    body: bytes,
    stop: Callable[[], bool],
) -> int:
    """The seal loop of one destination: lease, then store the envelope."""
    done = 0
    n = 0
    while True:
        items = await spool.lease(dest, limit=args.records, lease_s=60, now=T0)
        if not items:
            if stop():
                return done
            await asyncio.sleep(0.001)
            continue
        n += 1
        await spool.put_envelope(
            dest,
            f"{dest}.{n}",
            body,
            digest_hex="00",
            item_ids=[i.item_id for i in items],
            now=T0,
        )
        done += len(items)


async def forwarder(
    spool: AsyncSpool, dest: str, stop: Callable[[], bool], in_flight: int = 4
) -> int:
    """The forward loop of one destination: lease envelopes, store receipts."""
    done = 0

    async def deliver(e: LeasedEnvelope) -> None:
        nonlocal done
        await spool.ack_envelope(
            e.envelope_id,
            receipt_id="r",
            receipt_digest_hex="00",
            receipt=b"R" * 600,
            now=T0,
        )
        done += len(e.item_ids)

    while True:
        envs = await spool.lease_envelopes(dest, limit=in_flight, lease_s=60, now=T0)
        if not envs:
            if stop():
                return done
            await asyncio.sleep(0.001)
            continue
        await asyncio.gather(*(deliver(e) for e in envs))


async def async_cycle(
    spool: AsyncSpool, inputs: Inputs, args: argparse.Namespace
) -> None:
    body = envelope_body(args.records, args)
    intake_done = False
    sealed_all = False

    async def intake() -> None:
        nonlocal intake_done
        await async_put_intake(spool, inputs, args.clients)
        intake_done = True

    async def seal() -> int:
        nonlocal sealed_all
        n = await sealer(spool, DEST, args, body, lambda: intake_done)
        sealed_all = True
        return n

    _, sealed, delivered = await asyncio.gather(
        intake(), seal(), forwarder(spool, DEST, lambda: sealed_all)
    )
    assert sealed == delivered == inputs.records, (sealed, delivered)


async def async_received(
    spool: AsyncSpool, args: argparse.Namespace, inputs: Inputs
) -> None:
    todo = list(range(len(inputs.batches)))

    async def client() -> None:
        while todo:
            env, recs, hp = received(args, inputs, todo.pop())
            await spool.put_received(env, recs, hp, now=T0)

    await asyncio.gather(*(client() for _ in range(args.clients)))


# -- driver -------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        self.folder = folder
        # name -> [(records/s, CPU us per record)], one per repeat
        self.results: dict[str, list[tuple[float, float]]] = {}
        self.n = 0
        self.profiler = cProfile.Profile() if args.profile else None

    def wanted(self, name: str) -> bool:
        return not self.args.only or any(o in name for o in self.args.only)

    def fresh(self) -> Path:
        self.n += 1
        return self.folder / f"spool{self.n}.db"

    def report(self, name: str, records: int, t: Timer, note: str = "") -> None:
        rate = records / t.seconds if t.seconds else float("inf")
        cpu_us = t.cpu / records * 1e6 if records else 0.0
        self.results.setdefault(name, []).append((rate, cpu_us))
        print(
            f"  {name:<36} {rate:>9,.0f} records/s  {cpu_us:6.1f} us CPU/record"
            f"  ({records} in {t.seconds:.2f} s{note})"
        )
        sys.stdout.flush()

    @contextmanager
    def timed(self, name: str) -> Iterator[Timer]:
        t = Timer()
        on = self.profiler is not None and self.args.profile in name
        if on and self.profiler is not None:
            self.profiler.enable()
        try:
            with t.run():
                yield t
        finally:
            if on and self.profiler is not None:
                self.profiler.disable()

    def sync(self) -> None:
        args = self.args
        print("sync (Spool, one commit per call)")
        if self.wanted("sync put_intake") or self.wanted("sync lease"):
            inputs = Inputs(args, dests=(DEST,), seed=1)
            with Spool(self.fresh()) as spool:
                with self.timed("sync put_intake") as t:
                    n = sync_put_intake(spool, inputs)
                self.report("sync put_intake", n, t)
                with self.timed("sync lease+put_envelope") as t:
                    n = sync_seal(spool, args)
                self.report("sync lease+put_envelope", n, t)
                with self.timed("sync lease_env+ack_envelope") as t:
                    n = sync_forward(spool)
                self.report("sync lease_env+ack_envelope", n, t)
                assert spool.check() == []
        if self.wanted("sync gateway cycle"):
            inputs = Inputs(args, dests=(DEST,), seed=2)
            with Spool(self.fresh()) as spool:
                with self.timed("sync gateway cycle") as t:
                    n = sync_cycle(spool, inputs, args)
                self.report("sync gateway cycle", n, t)
        for name, dests in (
            ("put_received", ()),
            ("put_received+onward", ("province",)),
        ):
            if not self.wanted(f"sync {name}"):
                continue
            inputs = Inputs(args, dests=dests, seed=3)
            with Spool(self.fresh()) as spool:
                with self.timed(f"sync {name}") as t:
                    n = sync_received(spool, args, inputs)
                self.report(f"sync {name}", n, t)
                assert spool.hub_counts().records == n

    async def run_async(self) -> None:
        args = self.args
        print(f"async (AsyncSpool, group commit, {args.clients} clients)")
        if self.wanted("async put_intake") or self.wanted("async lease"):
            names = [f"d{i}" for i in range(args.dests)]
            inputs = Inputs(args, dests=tuple(names), seed=4)
            async with await AsyncSpool.open(self.fresh()) as spool:
                c0 = spool.commits
                with self.timed("async put_intake") as t:
                    await async_put_intake(spool, inputs, args.clients)
                note = f", {spool.commits - c0} commits"
                self.report("async put_intake", inputs.records, t, note)
                body = envelope_body(args.records, args)
                name = f"async lease+put_envelope x{args.dests}"
                with self.timed(name) as t:
                    sealed = await asyncio.gather(
                        *(sealer(spool, d, args, body, lambda: True) for d in names)
                    )
                self.report(name, sum(sealed), t)
                name = f"async lease_env+ack_envelope x{args.dests}"
                with self.timed(name) as t:
                    delivered = await asyncio.gather(
                        *(forwarder(spool, d, lambda: True) for d in names)
                    )
                self.report(name, sum(delivered), t)
                assert await spool.check() == []
        if self.wanted("async gateway cycle"):
            inputs = Inputs(args, dests=(DEST,), seed=5)
            async with await AsyncSpool.open(self.fresh()) as spool:
                c0, k0 = spool.commits, spool.calls
                with self.timed("async gateway cycle") as t:
                    await async_cycle(spool, inputs, args)
                note = f", {spool.calls - k0} calls in {spool.commits - c0} commits"
                self.report("async gateway cycle", inputs.records, t, note)
        for name, dests in (
            ("put_received", ()),
            ("put_received+onward", ("province",)),
        ):
            if not self.wanted(f"async {name}"):
                continue
            inputs = Inputs(args, dests=dests, seed=6)
            async with await AsyncSpool.open(self.fresh()) as spool:
                with self.timed(f"async {name}") as t:
                    await async_received(spool, args, inputs)
                self.report(f"async {name}", inputs.records, t)
                assert (await spool.hub_counts()).records == inputs.records

    def summary(self) -> None:
        if self.args.repeat < 2:
            return
        print(f"best of {self.args.repeat}")
        for name, runs in self.results.items():
            rate = max(r for r, _ in runs)
            cpu = min(c for _, c in runs)
            print(f"  {name:<36} {rate:>9,.0f} records/s  {cpu:6.1f} us CPU/record")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=60, help="inputs per measurement")
    ap.add_argument("--records", type=int, default=200, help="records per input")
    ap.add_argument("--size", type=int, default=2048, help="bytes per record")
    ap.add_argument("--clients", type=int, default=8, help="async concurrent callers")
    ap.add_argument("--dests", type=int, default=1, help="async seal/forward loops")
    ap.add_argument(
        "--envelope-ratio",
        type=float,
        default=0.5,
        help="sealed envelope bytes per canonical byte (compression)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs; prints the best")
    ap.add_argument("--only", nargs="*", default=[], help="substrings of names to run")
    ap.add_argument("--profile", help="cProfile the runs whose name contains this")
    ap.add_argument("--dir", type=Path, help="folder for the spool files")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="spool-bench-", dir=args.dir) as tmp:
        folder = Path(tmp)
        print(
            f"{args.inputs} inputs x {args.records} records x ~{args.size} B; "
            f"fsync of 4 KiB: {fsync_ms(folder):.2f} ms; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        bench = Bench(args, folder)
        for _ in range(args.repeat):
            bench.sync()
            asyncio.run(bench.run_async())
            for old in folder.glob("spool*"):
                old.unlink()
        bench.summary()
        if bench.profiler is not None:
            stats = pstats.Stats(bench.profiler).sort_stats("tottime")
            stats.print_stats(25)


if __name__ == "__main__":
    main()
