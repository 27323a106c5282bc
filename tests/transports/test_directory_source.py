"""Directory source: claim by rename, completion rules, races, duplicates, resume.

Each test drives ``FileSource.poll_once`` against a real folder and a real
intake (spool, catalogue, adapter) with a controlled clock, so the races are
staged exactly instead of hoped for.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from gateway.demo_data import demo_jsonl
from gateway.transports.store import LocalStore
from gateway.transports.watch import Wakeup
from tests.harness import Site
from tests.transports.helpers import rig, source_config


def drop_config(site: Site, extra: str = "") -> Path:
    (site.root / "drop").mkdir(exist_ok=True)
    return source_config(
        site,
        f"type: directory\npath: {site.root / 'drop'}\n"
        "completion: {mode: stable, stable_s: 1}\n" + extra,
    )


BAD = b"\xff\xfe\xfd not text at all\n" * 3


def records_in(body: bytes) -> int:
    return len(body.splitlines())


async def settle(src, clock, polls: int = 2) -> int:
    """Poll, let the stable time pass, poll again: what a quiet folder sees."""
    n = 0
    for _ in range(polls):
        n += await src.poll_once()
        clock.advance(1.5)
    return n


async def test_complete_file_is_claimed_accepted_and_archived(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        body = demo_jsonl(2)
        (site.root / "drop" / "a.jsonl").write_bytes(body)
        assert await src.poll_once() == 0  # first sighting: not yet stable
        r.clock.advance(1.5)
        assert await src.poll_once() == 1
        assert await r.counts() == (1, records_in(body))
        drop = site.root / "drop"
        assert (drop / "done" / "a.jsonl").read_bytes() == body
        assert not (drop / "a.jsonl").exists()
        assert os.listdir(drop / ".processing") == []
        assert os.listdir(site.root / "gw" / "transfers" / "drop") == []
        prior = await r.spool.lookup_idempotent("drop", "sm3:" + _sm3(body))
        assert prior is not None
        state = await r.spool.intake_state(prior.intake_id)
        assert state is not None
        assert state.content_type == "application/x-ndjson"


def _sm3(data: bytes) -> str:
    from crypto import sm3

    return sm3(data).hex()


async def test_writer_still_writing_is_not_taken(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        body = demo_jsonl(3)
        f = site.root / "drop" / "big.jsonl"
        half = len(body) // 2
        with f.open("wb") as w:
            w.write(body[:half])
            w.flush()
            assert await src.poll_once() == 0
            r.clock.advance(0.5)
            assert await src.poll_once() == 0  # not stable for long enough
            w.write(body[half:])
            w.flush()
            r.clock.advance(5)
            # Size changed since the last look: the clock starts again.
            assert await src.poll_once() == 0
        r.clock.advance(1.5)
        assert await src.poll_once() == 1
        assert await r.counts() == (1, records_in(body))
        assert (site.root / "drop" / "done" / "big.jsonl").read_bytes() == body


async def test_many_files_at_once(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        bodies = [demo_jsonl(1, start=i, seed=i) for i in range(40)]
        for i, b in enumerate(bodies):
            (site.root / "drop" / f"f{i:03}.jsonl").write_bytes(b)
        assert await settle(src, r.clock) == 40
        assert await r.counts() == (40, sum(records_in(b) for b in bodies))
        assert len(os.listdir(site.root / "drop" / "done")) == 40
        assert await settle(src, r.clock) == 0


async def test_file_renamed_away_in_mid_claim(tmp_path: Path) -> None:
    """The producer renames the file between our listing and our claim."""
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        store = LocalStore()
        real_rename = store.rename
        drop = site.root / "drop"
        moved = drop / "elsewhere.tmp"

        def racing_rename(src: str, dst: str) -> bool:
            if src.endswith("race.jsonl") and Path(src).exists():
                Path(src).rename(moved)  # the producer wins the race
            return real_rename(src, dst)

        store.rename = racing_rename  # type: ignore[method-assign]
        src = r.source(store=store)
        (drop / "race.jsonl").write_bytes(demo_jsonl(1))
        assert await settle(src, r.clock) == 0
        assert await r.counts() == (0, 0)
        assert moved.exists(), "the file the producer took away is untouched"
        assert src.last_error is None
        # Renamed back under a matching name, it is taken normally.
        moved.rename(drop / "race2.jsonl")
        assert await settle(src, r.clock) == 1


async def test_two_gateways_on_one_folder_take_each_file_once(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        a = r.source(node_name="gw-a")
        b = r.source(node_name="gw-b")
        bodies = [demo_jsonl(1, start=i, seed=100 + i) for i in range(20)]
        for i, body in enumerate(bodies):
            (site.root / "drop" / f"x{i}.jsonl").write_bytes(body)
        for _ in range(3):
            await asyncio.gather(a.poll_once(), b.poll_once())
            r.clock.advance(1.5)
        assert a.files_done + b.files_done == 20
        assert await r.counts() == (20, sum(records_in(b) for b in bodies))


async def test_same_content_dropped_twice_is_one_input(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        body = demo_jsonl(2, seed=5)
        drop = site.root / "drop"
        (drop / "one.jsonl").write_bytes(body)
        await settle(src, r.clock)
        (drop / "one.jsonl").write_bytes(body)  # same name, same bytes, again
        (drop / "copy.jsonl").write_bytes(body)  # other name, same bytes
        await settle(src, r.clock)
        assert await r.counts() == (1, records_in(body))
        done = sorted(os.listdir(drop / "done"))
        assert done[0] == "copy.jsonl"
        assert done[1] == "one.jsonl"
        assert done[2].startswith("one.jsonl.")  # archived beside, not over
        files = r.registry.get_sample_value(
            "gateway_files_total", {"source": "drop", "outcome": "duplicate"}
        )
        assert files == 2


async def test_marker_mode_waits_for_the_marker(tmp_path: Path) -> None:
    site = Site(tmp_path)
    (site.root / "drop").mkdir()
    cfg = source_config(
        site,
        f"type: directory\npath: {site.root / 'drop'}\n"
        "completion: {mode: marker, suffix: .ok}\n",
    )
    async with rig(cfg) as r:
        src = r.source()
        drop = site.root / "drop"
        body = demo_jsonl(1)
        (drop / "m.jsonl").write_bytes(body)
        assert await settle(src, r.clock, polls=3) == 0
        (drop / "m.jsonl.ok").write_bytes(b"")
        assert await src.poll_once() == 1
        assert not (drop / "m.jsonl.ok").exists()
        assert os.listdir(drop / ".processing") == []
        assert await r.counts() == (1, records_in(body))


async def test_restart_resumes_a_claimed_file_and_a_partial_copy(
    tmp_path: Path,
) -> None:
    """State left by a crash after the claim, half-way through the copy."""
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        body = demo_jsonl(3, seed=9)
        drop = site.root / "drop"
        (drop / ".processing").mkdir()
        claimed = "gw~drop~crash.jsonl"
        (drop / ".processing" / claimed).write_bytes(body)
        staging = site.root / "gw" / "transfers" / "drop"
        staging.mkdir(parents=True)
        (staging / claimed).write_bytes(body[:100])
        assert await src.poll_once() == 1
        assert await r.counts() == (1, records_in(body))
        assert (drop / "done" / "crash.jsonl").read_bytes() == body
        # A crash after the input was stored but before the archive: again.
        (drop / ".processing" / claimed).write_bytes(body)
        assert await src.poll_once() == 1
        assert await r.counts() == (1, records_in(body))


async def test_quarantined_input_goes_to_error_with_a_note(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        drop = site.root / "drop"
        (drop / "bad.jsonl").write_bytes(BAD)
        await settle(src, r.clock)
        assert (drop / "error" / "bad.jsonl").read_bytes() == BAD
        note = json.loads((drop / "error" / "bad.jsonl.error.json").read_text())
        assert note["error"]["code"]
        assert note["intake_id"]
        c = (await r.spool.source_counts())["drop"]
        assert c.quarantined == 1


async def test_too_large_file_is_refused_without_reading(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        drop = site.root / "drop"
        with (drop / "huge.jsonl").open("wb") as f:
            f.truncate(9 * 1024 * 1024)  # over the source's 8 MiB
        await settle(src, r.clock)
        assert (drop / "error" / "huge.jsonl").exists()
        note = json.loads((drop / "error" / "huge.jsonl.error.json").read_text())
        assert note["error"]["code"] == "E_TOO_LARGE"


async def test_run_reports_failures_and_recovers(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r:
        src = r.source()
        src.incoming = str(site.root / "nowhere")  # the folder is gone
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        for _ in range(50):
            await asyncio.sleep(0.02)
            if src.last_error:
                break
        assert src.last_error is not None
        errors = r.registry.get_sample_value(
            "gateway_transport_errors_total",
            {"component": "drop", "code": "E_NOT_FOUND"},
        )
        assert errors is not None
        assert errors >= 1
        stop.set()
        await task


async def test_inotify_wakes_the_loop(tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    w = Wakeup([str(folder)], mode="inotify")
    w.start()
    try:
        if not w.watching:
            if os.environ.get("CI") == "true":
                pytest.fail("inotify is required in CI but does not work here")
            pytest.skip("no inotify on this file system")
        (folder / "new.jsonl").write_bytes(b"x")
        await asyncio.wait_for(w.event.wait(), 5)
    finally:
        w.close()
