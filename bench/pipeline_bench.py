"""Pipeline benchmark: HTTP ingest → durable spool → sealed → hub receipt, real processes.

Usage: ``python bench/pipeline_bench.py [--records 60000] [--batch 200] [--clients 8]``

Measures, on this machine, with a gateway and a hub as separate processes:
  1. ingest → sealed-and-spooled throughput (no hub running, so nothing is sent;
     children held by parent-first ordering count as done: they need a receipt);
  2. end-to-end throughput to the hub with every receipt verified;
  3. ingest-to-durable latency p50/p99 at a fixed 1,000 records/s;
  4. peak RSS (VmHWM) of the gateway and the hub (with their intake workers).
Reference, in the same run: a bare aiohttp server that writes each request body
to a file and fsyncs it before answering (the least any durable HTTP intake must
do), driven by the same client: ratio = ours / bare.
The load client runs on the same 2 cores as both nodes: the numbers include it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.demo_data import demo_jsonl  # noqa: E402
from tests.harness import Proc, Site, free_port  # noqa: E402

MiB = 1024 * 1024


def bodies(records: int, batch: int, pad: int) -> list[bytes]:
    per = 4  # demo_records yields 4 records per project
    out = []
    for start in range(0, records // per, batch // per):
        out.append(demo_jsonl(batch // per, start=start, seed=start, pad=pad))
    return out


async def blast(url: str, token: str, payloads: list[bytes], clients: int) -> float:
    """Send every payload with ``clients`` concurrent connections; seconds taken."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
    }

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                async with session.post(
                    url, data=io.BytesIO(body), headers=headers
                ) as r:
                    await r.read()
                    if r.status == 202:
                        break
                    await asyncio.sleep(0.05)  # 503 quota: honour and retry

    started = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=clients)
    ) as s:
        await asyncio.gather(*(worker(s) for _ in range(clients)))
    return time.perf_counter() - started


async def fixed_rate(
    url: str, token: str, payloads: list[bytes], per_second: float
) -> list[float]:
    """Send payloads at a fixed rate; return each request's latency in seconds."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
    }
    lat: list[float] = []

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        t0 = time.perf_counter()
        async with session.post(url, data=io.BytesIO(body), headers=headers) as r:
            await r.read()
            assert r.status == 202, r.status
        lat.append(time.perf_counter() - t0)

    async with aiohttp.ClientSession() as s:
        tasks = []
        t0 = time.perf_counter()
        for i, body in enumerate(payloads):
            delay = t0 + i / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(s, body)))
        await asyncio.gather(*tasks)
    return lat


def status(p: Proc) -> dict[str, Any]:
    return p.status()


def wait(pred: Callable[[], bool], seconds: float = 600) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if pred():
            return time.perf_counter() - t0
        time.sleep(0.05)
    raise TimeoutError


def _family(pid: int) -> list[int]:
    """The process and its children (the gateway's intake workers)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
    return pids


def vm_hwm_kib(p: Proc) -> int:
    """Peak RSS of the process plus its children's (each their own peak)."""
    assert p.p is not None
    total = 0
    for pid in _family(p.p.pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def settle(p: Proc, idle_s: float = 0.05) -> None:
    """Wait until the process and its children use next to no CPU."""
    before = cpu_s(p)
    for _ in range(60):
        time.sleep(0.5)
        now = cpu_s(p)
        if now - before < idle_s:
            return
        before = now


def cpu_s(p: Proc) -> float:
    """User + system CPU seconds the process and its children (intake workers)
    have used so far (all threads)."""
    assert p.p is not None
    ticks = 0
    for pid in _family(p.p.pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def bare_reference(payloads: list[bytes], clients: int, workdir: Path) -> float:
    """A bare durable intake: write + fsync each body, then 202."""
    n = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal n
        body = await request.read()
        n += 1
        path = workdir / f"in-{n}"

        def write() -> None:
            with path.open("wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())

        await asyncio.to_thread(write)
        return web.json_response({"ok": True}, status=202)

    app = web.Application(client_max_size=64 * MiB)
    app.router.add_post("/in", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        return await blast(f"http://127.0.0.1:{port}/in", "x", payloads, clients)
    finally:
        await runner.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=200, help="records per HTTP request")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument(
        "--pad", type=int, default=450, help="padding to make ~2 KB records"
    )
    ap.add_argument(
        "--no-parent-first",
        action="store_true",
        help="send in arrival order (ordering.parent_first: false) to see its cost",
    )
    ap.add_argument(
        "--intake-workers",
        default="auto",
        help="node.intake_workers of the gateway (0: adapt in the gateway process)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        help="write py-spy flame graphs (all threads) of the gateway and the hub "
        "during the backlog drain and the live run into this folder",
    )
    args = ap.parse_args()

    payloads = bodies(args.records, args.batch, args.pad)
    n_records = sum(b.count(b"\n") for b in payloads)
    n_bytes = sum(len(b) for b in payloads)
    print(
        f"# pipeline_bench  {time.strftime('%Y-%m-%d %H:%M')}  cores: {os.cpu_count()}"
    )
    print(
        f"load: {n_records} records in {len(payloads)} requests, "
        f"{n_bytes / n_records:.0f} B/record avg, {n_bytes / MiB:.1f} MiB, "
        f"{args.clients} concurrent clients"
    )

    with tempfile.TemporaryDirectory(prefix="gwbench-") as d:
        root = Path(d)
        (root / "bare").mkdir()
        ref_s = asyncio.run(bare_reference(payloads, args.clients, root / "bare"))
        site = Site(root / "site")
        site.root.mkdir()
        hub = Proc(site.hub_config(), site.admin("hub"), site.root / "hub.log")
        gw_cfg = site.gateway_config(intake_workers=args.intake_workers)
        # Production-like timeouts: a 2,000-record envelope takes a loaded hub
        # more than the test harness's 5 s to open, validate and store.
        text = gw_cfg.read_text().replace("    timeout_s: 5\n", "    timeout_s: 60\n")
        text = text.replace(
            "    batch: {max_records: 200, linger_s: 0.05}",
            "    batch: {max_records: 2000, max_bytes: 8MiB, linger_s: 0.2}"
            + ("\n    ordering: {parent_first: false}" if args.no_parent_first else ""),
        )
        text = text.replace(
            "quota:\n",
            "quota:\n  max_records: 50000000\n  "
            "per_source_max_records: 50000000\n  max_bytes: 100GiB\n  "
            "per_source_max_bytes: 100GiB\n",
        )
        gw_cfg.write_text(text)
        gw = Proc(gw_cfg, site.admin("gw"), site.root / "gw.log")
        url = site.url("gw") + "/v1/ingest/src"

        try:
            # 1. ingest -> sealed and spooled (no hub: nothing leaves).
            gw.start()
            spies = _spy(args.profile, "ingest", gw)
            settle(gw)  # intake workers start in the background: not measured
            c0 = cpu_s(gw)
            t_ingest = asyncio.run(blast(url, site.token, payloads, args.clients))
            c_ingest = cpu_s(gw) - c0
            _unspy(spies)
            t_sealed = t_ingest + wait(
                lambda: (
                    status(gw)["destinations"]["hub"]["queued"] == n_records
                    and _all_sealed(site)
                )
            )
            c_sealed = cpu_s(gw) - c0
            # 2. end to end: start the hub; the backlog drains with receipts verified.
            hub.start()
            hub.wait_ready()
            spies = _spy(args.profile, "drain", gw, hub)
            g0, h0 = cpu_s(gw), cpu_s(hub)
            t_drain = wait(
                lambda: status(gw)["destinations"]["hub"]["delivered"] == n_records
            )
            c_drain = (cpu_s(gw) - g0, cpu_s(hub) - h0)
            _unspy(spies)
            rss_gw, rss_hub = vm_hwm_kib(gw), vm_hwm_kib(hub)
            # 3. live end to end: a second load with the hub up, timed to the last receipt.
            payloads2 = bodies(args.records, args.batch, args.pad)
            payloads2 = [
                p.replace(b"E32", b"F32") for p in payloads2
            ]  # new record keys
            spies = _spy(args.profile, "live", gw, hub)
            g0, h0 = cpu_s(gw), cpu_s(hub)
            t0 = time.perf_counter()
            asyncio.run(blast(url, site.token, payloads2, args.clients))
            wait(
                lambda: status(gw)["destinations"]["hub"]["delivered"] == 2 * n_records
            )
            t_e2e = time.perf_counter() - t0
            c_live = (cpu_s(gw) - g0, cpu_s(hub) - h0)
            _unspy(spies)
            # 4. latency at a fixed 1,000 records/s (10-record requests, 100 per second).
            small = bodies(10_000, 12, 0)
            small = [p.replace(b"E32", b"G32") for p in small][:1000]
            per_req = small[0].count(b"\n")
            lat = asyncio.run(fixed_rate(url, site.token, small, 1000 / per_req))
            rss_gw, rss_hub = max(rss_gw, vm_hwm_kib(gw)), max(rss_hub, vm_hwm_kib(hub))
        finally:
            for p in (gw, hub):
                with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                    p.stop()
                p.kill9()

    mib = n_bytes / MiB
    q = statistics.quantiles(lat, n=100)
    print()
    print("| measure | value | reference (bare write+fsync server) | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| ingest → durable 202 (HTTP) | {n_records / t_ingest:,.0f} rec/s, "
        f"{mib / t_ingest:.1f} MiB/s | {n_records / ref_s:,.0f} rec/s, {mib / ref_s:.1f} MiB/s "
        f"| {ref_s / t_ingest:.2f} |"
    )
    print(
        f"| ingest → sealed and spooled | {n_records / t_sealed:,.0f} rec/s, "
        f"{mib / t_sealed:.1f} MiB/s | | |"
    )
    print(
        f"| backlog drain to hub, receipts verified | {n_records / t_drain:,.0f} rec/s, "
        f"{mib / t_drain:.1f} MiB/s | | |"
    )
    print(
        f"| end to end, live (ingest → hub receipt) | {n_records / t_e2e:,.0f} rec/s, "
        f"{mib / t_e2e:.1f} MiB/s | | |"
    )
    print(
        f"| ingest latency at 1,000 rec/s ({per_req} rec/request) | p50 "
        f"{q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms | | |"
    )
    print(
        f"| peak RSS | gateway {rss_gw / 1024:.0f} MiB, hub {rss_hub / 1024:.0f} MiB | | |"
    )
    print()
    print("CPU per record (user + system, all threads; steadier than wall time on a")
    print("shared machine):")
    print("| phase | gateway µs/rec | hub µs/rec | records per CPU-second (both) |")
    print("|---|---:|---:|---:|")
    for name, g, h in (
        ("ingest → durable 202", c_ingest, 0.0),
        ("ingest → sealed and spooled", c_sealed, 0.0),
        ("backlog drain to the hub", *c_drain),
        ("end to end, live", *c_live),
    ):
        print(
            f"| {name} | {g / n_records * 1e6:,.0f} | {h / n_records * 1e6:,.0f} "
            f"| {n_records / (g + h):,.0f} |"
        )
    return 0


def _spy(
    folder: Path | None, phase: str, *procs: Proc
) -> list[subprocess.Popen[bytes]]:
    """Start py-spy on each process (sampling the thread holding the GIL)."""
    if folder is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, p in zip(("gateway", "hub"), procs, strict=False):
        assert p.p is not None
        out = folder / f"{phase}-{name}.txt"
        spies.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("py-spy")),  # the venv's, pinned
                    "record",
                    "--pid",
                    str(p.p.pid),
                    "--threads",
                    "--gil",  # only what holds the GIL: Python CPU, not waits
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    time.sleep(0.5)
    return spies


def _unspy(spies: list[subprocess.Popen[bytes]]) -> None:
    for s in spies:
        s.send_signal(signal.SIGINT)
    for s in spies:
        s.wait(timeout=60)


def _all_sealed(site: Site) -> bool:
    from gateway.spool import Spool

    with Spool(site.root / "gw" / "spool.db", readonly=True) as sp:
        d = sp.destination_counts(now=time.time()).get("hub")
        # Parent-first ordering (on by default) holds children until their
        # parent's receipt: with no hub running, held records count as done.
        return d is not None and d.queued == d.held and d.leased == 0


if __name__ == "__main__":
    sys.exit(main())
