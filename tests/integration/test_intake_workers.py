"""Intake workers (gateway/adaptpool.py): real spawned processes, real crashes.

* workers adapt exactly as the gateway process does (same records, same bytes);
* an input that kills its worker is quarantined, every other input goes on, and
  the gateway stays up;
* a worker that cannot build a source leaves it to the gateway process;
* a gateway killed with -9 leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from gateway.adaptpool import _POISON, _POISON_POINT
from gateway.app import serve
from gateway.demo_data import demo_jsonl
from gateway.spool import Spool
from tests.functional.test_pipeline import auth, get_json, post
from tests.harness import (
    Proc,
    Site,
    admin_headers,
    node_from,
    running,
    wait_ready_async,
)

ROOT = Path(__file__).resolve().parents[2]
NANTONG = ROOT / "tests" / "fixtures" / "feeds" / "nantong-procurement-json" / "good"


def stored(path: Path) -> list[tuple[str, str]]:
    """(record key, digest) of every record the gateway's spool holds."""
    with Spool(path, readonly=True) as sp:
        rows = sp._conn.execute(
            "SELECT record_key, digest_hex FROM records ORDER BY record_key"
        ).fetchall()
    return [(str(k), str(d)) for k, d in rows]


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def ignores_sigterm(pid: int) -> bool:
    """Whether the worker's initializer has run (it ignores SIGTERM from then on)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_workers_make_the_same_records_as_the_gateway_process(
    tmp_path: Path,
) -> None:
    bodies = [demo_jsonl(3, start=i * 10, seed=i) for i in range(6)]
    results = []
    for workers in (0, 2):
        site = Site(tmp_path / f"w{workers}")
        site.root.mkdir()
        cfg = site.gateway_config(intake_workers=workers)
        async with running(cfg) as (node,):
            if workers:
                assert node.config.model.node.intake_workers == 2
            url = site.url("gw") + "/v1/ingest/src"
            answers = await asyncio.gather(*(post(url, b, auth(site)) for b in bodies))
            assert [a[0] for a in answers] == [202] * len(bodies)
            counts = [(a[1]["records"], a[1]["rejected"]) for a in answers]
        results.append((counts, stored(site.root / "gw" / "spool.db")))
    assert results[0] == results[1]
    assert len(results[0][1]) == sum(b.count(b"\n") for b in bodies)


async def test_an_input_that_kills_its_worker_is_quarantined_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Armed in the environment the workers are spawned with; this process
    # read its failpoints at import and stays unaffected.
    monkeypatch.setenv("GATEWAY_FAILPOINTS", _POISON_POINT)
    site = Site(tmp_path)
    cfg = site.gateway_config(intake_workers=2)
    good = [demo_jsonl(2, start=i * 10, seed=i) for i in range(5)]
    poison = demo_jsonl(1, start=99, seed=99) + b'{"x": "' + _POISON + b'"}\n'
    async with running(cfg) as (node,):
        url = site.url("gw") + "/v1/ingest/src"
        answers = await asyncio.gather(
            post(url, poison, auth(site)),
            *(post(url, b, auth(site)) for b in good),
        )
        status, body, _ = answers[0]
        assert status == 422, body
        assert body["error"]["code"] == "E_ADAPTER_CRASHED"
        assert "崩溃" in body["error"]["message"]
        assert [a[0] for a in answers[1:]] == [202] * len(good)
        # The gateway is up and its new workers take inputs.
        after = await post(url, demo_jsonl(1, start=200, seed=5), auth(site))
        assert after[0] == 202, after
        code, q = await get_json(
            site.admin("gw") + "/api/quarantine", headers=admin_headers(node)
        )
        assert code == 200, q
        reasons = [i["reason_code"] for i in q["items"]]
        assert reasons == ["E_ADAPTER_CRASHED"], q
        # A replay (admin API) adapts in a worker too: the node survives it.
        iid = q["items"][0]["intake_id"]
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                site.admin("gw") + f"/api/quarantine/{iid}/replay",
                headers=admin_headers(node),
            ) as r,
        ):
            replayed = await r.json()
        assert replayed.get("code") == "E_ADAPTER_CRASHED", replayed
        assert (await post(url, demo_jsonl(1, start=300, seed=6), auth(site)))[0] == 202
        async with (
            aiohttp.ClientSession() as s,
            s.get(site.admin("gw") + "/metrics", headers=admin_headers(node)) as r,
        ):
            metrics = await r.text()
        deaths = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("gateway_intake_worker_deaths_total ")
        ]
        assert len(deaths) == 1, metrics
        assert deaths[0] >= 1, deaths
    log = [
        r for r in stored(site.root / "gw" / "spool.db") if r[0].startswith("PROJECT")
    ]
    assert len(log) == 5 * 2 + 2  # the good inputs' projects, none of the poison's


async def test_a_source_a_worker_cannot_build_is_adapted_by_the_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = Site(tmp_path)
    mapping = tmp_path / "nantong.yaml"
    shutil.copy(ROOT / "config" / "mappings" / "nantong-procurement-json.yaml", mapping)
    cfg = site.gateway_config(intake_workers=1)
    text = cfg.read_text().replace(
        "  - name: src\n",
        "  - name: src\n    adapter: mapping\n"
        f"    options: {{mapping: {mapping}, platform: {{PLATFORM_CODE: "
        "12320600D2026004XD, PUB_SERVICE_PLAT_CODE: 12320600D2026004XD}}\n",
    )
    cfg.write_text(text)
    node = node_from(cfg)  # the gateway checked the mapping: it is good
    mapping.write_text("version: 1\nname: broken\n")  # then it broke on disk
    stop = asyncio.Event()
    task = asyncio.create_task(serve(node, stop))
    try:
        await wait_ready_async(node)
        body = (NANTONG / "ntzc_cgxm_20261105.jsonl").read_bytes()
        status, answer, _ = await post(
            site.url("gw") + "/v1/ingest/src", body, auth(site)
        )
        assert status == 202, answer
        assert answer["records"] > 0, answer
    finally:
        stop.set()
        await task
    assert "cannot build this source" in caplog.text


def test_a_gateway_killed_with_9_leaves_no_worker(tmp_path: Path) -> None:
    site = Site(tmp_path)
    gw = Proc(
        site.gateway_config(intake_workers=2),
        site.admin("gw"),
        site.root / "gw.log",
    )
    gw.start()
    try:
        assert gw.p is not None
        deadline = time.monotonic() + 30
        workers: list[int] = []
        while time.monotonic() < deadline:
            workers = [p for p in children(gw.p.pid) if "spawn_main" in cmdline(p)]
            if len(workers) == 2 and all(ignores_sigterm(p) for p in workers):
                break
            time.sleep(0.1)
        assert len(workers) == 2, [cmdline(p) for p in children(gw.p.pid)]
        # Workers ignore SIGTERM / SIGINT sent to the whole group: the gateway
        # decides when they stop.
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert all(alive(pid) for pid in workers)
        family = children(gw.p.pid)  # the workers and multiprocessing's helper
        gw.kill9()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in family):
            time.sleep(0.1)
        left = [cmdline(p) for p in family if alive(p)]
        assert not left, f"orphaned processes: {left}"
    finally:
        gw.kill9()
