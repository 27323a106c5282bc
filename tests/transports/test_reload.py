"""SIGHUP reload restarts file sources from the new configuration."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.app import serve
from gateway.demo_data import demo_jsonl
from tests.harness import Site, node_from, wait_ready_async
from tests.transports.helpers import source_config


def _config(site: Site, folder: Path) -> Path:
    return source_config(
        site,
        f"type: directory\npath: {folder}\n"
        "completion: {mode: stable, stable_s: 0.1}\npoll_interval_s: 0.1\n",
    )


async def _wait_file(path: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(path.exists):
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)


async def test_reload_moves_a_directory_source(tmp_path: Path) -> None:
    site = Site(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    cfg = _config(site, one)
    node = node_from(cfg)
    stop, reload_requested = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(node, stop, reload_requested))
    try:
        await wait_ready_async(node)
        (one / "a.jsonl").write_bytes(demo_jsonl(1, seed=1))
        await _wait_file(one / "done" / "a.jsonl")
        _config(site, two)  # same file, new folder
        reload_requested.set()
        (two / "b.jsonl").write_bytes(demo_jsonl(1, seed=2))
        await _wait_file(two / "done" / "b.jsonl")
        (one / "c.jsonl").write_bytes(demo_jsonl(1, seed=3))
        await asyncio.sleep(0.6)
        assert (one / "c.jsonl").exists(), "the old folder is no longer watched"
    finally:
        stop.set()
        await task
