"""Every step of a file transport is in the audit log, and the log verifies.

Real transports (a drop folder here; SFTP in test_sftp.py) write through
``Events`` into a real audit log; the tests then read the log back through
``monitoring.audit.verify`` / ``export`` and check each step's fields.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from crypto import sm3
from gateway.demo_data import demo_jsonl
from gateway.errors import TransportError
from gateway.transports.store import LocalStore
from tests.harness import Site
from tests.transports.helpers import audited, one, pick, rig, verified
from tests.transports.test_directory_source import BAD, drop_config, settle


def _hex(data: bytes) -> str:
    return sm3(data).hex()


async def test_directory_source_audits_each_step(tmp_path: Path) -> None:
    site = Site(tmp_path)
    drop = site.root / "drop"
    body = demo_jsonl(2, seed=21)
    async with rig(drop_config(site)) as r, audited(r) as audit_dir:
        src = r.source()
        (drop / "a.jsonl").write_bytes(body)
        await settle(src, r.clock)
        (drop / "again.jsonl").write_bytes(body)  # same bytes, another name
        (drop / "bad.jsonl").write_bytes(BAD)
        await settle(src, r.clock)
    log = verified(audit_dir, site.key("gw"))

    claimed = one(log, "file_claimed", file_name="a.jsonl")
    path = claimed["data"]["file_path"]
    assert path == f"{drop}/.processing/gw~drop~a.jsonl"
    assert claimed["actor"] == "source:drop"
    assert claimed["remote"] == src.store.where
    assert claimed["remote"].startswith("file://")
    assert claimed["data"]["bytes"] == len(body)
    assert claimed["data"]["transport"] == "directory"
    assert claimed["data"]["token_id"].startswith("dir:uid=")
    assert claimed["ts"].endswith("Z")
    assert claimed["ts_bj"].endswith("+08:00")
    read = one(log, "file_read", file_path=path)
    assert read["data"]["input_sm3"] == _hex(body)
    assert read["data"]["bytes"] == len(body)
    accepted = one(log, "input_accepted", input_sm3=_hex(body))
    intake_id = accepted["data"]["intake_id"]
    done = one(log, "file_archived", file_name="a.jsonl")
    assert done["outcome"] == "ok"
    assert done["data"]["reason"] == "done"
    assert done["data"]["file_path"] == f"{drop}/done/a.jsonl"
    assert done["data"]["intake_id"] == intake_id
    # In the order they happened.
    assert claimed["seq"] < read["seq"] < accepted["seq"] < done["seq"]

    # The repeat: claimed and read, then skipped, naming the first input.
    skipped = one(log, "file_skipped", file_name="again.jsonl")
    assert skipped["data"]["intake_id"] == intake_id
    assert skipped["data"]["input_sm3"] == _hex(body)
    assert skipped["data"]["repeat"] is True
    assert len(pick(log, "input_accepted")) == 1
    again = one(log, "file_archived", file_name="again.jsonl")
    assert again["data"]["reason"] == "done"

    # The bad input: quarantined, moved to error/ with its note.
    quarantined = one(log, "input_quarantined", input_sm3=_hex(BAD))
    moved = one(log, "file_archived", file_name="bad.jsonl")
    assert moved["outcome"] == "refused"
    assert moved["code"] == quarantined["code"]
    assert moved["data"]["reason"] == "error"
    assert moved["data"]["file_path"] == f"{drop}/error/bad.jsonl"
    assert moved["data"]["intake_id"] == quarantined["data"]["intake_id"]
    assert moved["data"]["input_sm3"] == _hex(BAD)
    note = (drop / "error" / "bad.jsonl.error.json").read_bytes()
    assert moved["data"]["note_sm3"] == _hex(note)


async def test_error_note_is_complete_and_written_by_rename(tmp_path: Path) -> None:
    site = Site(tmp_path)
    drop = site.root / "drop"
    writes: list[str] = []
    renames: list[tuple[str, str]] = []

    class Watched(LocalStore):
        def write_file(self, path: str, data: bytes) -> None:
            writes.append(path)
            super().write_file(path, data)

        def replace(self, src: str, dst: str) -> None:
            renames.append((src, dst))
            super().replace(src, dst)

    async with rig(drop_config(site)) as r:
        src = r.source(store=Watched())
        (drop / "bad.jsonl").write_bytes(BAD)
        await settle(src, r.clock)
        prior = await r.spool.lookup_idempotent("drop", "sm3:" + _hex(BAD))
        assert prior is not None
    final = f"{drop}/error/bad.jsonl.error.json"
    assert writes == [final + ".part"]
    assert renames == [(final + ".part", final)]
    assert sorted(p.name for p in (drop / "error").iterdir()) == [
        "bad.jsonl",
        "bad.jsonl.error.json",
    ]
    note = json.loads((drop / "error" / "bad.jsonl.error.json").read_text("utf-8"))
    err = note["error"]
    assert err["code"].startswith("E_")
    assert err["message"]
    assert err["message_en"].isascii()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err["message_zh"])
    assert note["intake_id"] == prior.intake_id
    assert note["input_sm3"] == _hex(BAD)
    assert (note["source"], note["file"], note["bytes"]) == (
        "drop",
        "bad.jsonl",
        len(BAD),
    )


async def test_a_note_that_cannot_be_written_leaves_no_part_file(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    drop = site.root / "drop"

    class NoRename(LocalStore):
        def replace(self, src: str, dst: str) -> None:
            raise TransportError(f"renaming '{src}': no space", code="E_DIR_IO")

    async with rig(drop_config(site)) as r, audited(r) as audit_dir:
        src = r.source(store=NoRename())
        (drop / "bad.jsonl").write_bytes(BAD)
        await settle(src, r.clock)
        assert src.last_error is None  # the input is safe: the source goes on
    assert sorted(p.name for p in (drop / "error").iterdir()) == ["bad.jsonl"]
    log = verified(audit_dir, site.key("gw"))
    moved = one(log, "file_archived", file_name="bad.jsonl")
    assert "note_sm3" not in moved["data"]


async def test_too_large_file_note_and_audit(tmp_path: Path) -> None:
    site = Site(tmp_path)
    drop = site.root / "drop"
    async with rig(drop_config(site)) as r, audited(r) as audit_dir:
        src = r.source()
        with (drop / "huge.jsonl").open("wb") as f:
            f.truncate(9 * 1024 * 1024)  # over the source's 8 MiB
        await settle(src, r.clock)
    note = json.loads((drop / "error" / "huge.jsonl.error.json").read_text())
    assert note["error"]["code"] == "E_TOO_LARGE"
    assert "9437184 bytes" in note["error"]["message_en"]
    assert "9437184 字节" in note["error"]["message_zh"]
    # Refused unread: no quarantine entry, no digest.
    assert note["intake_id"] is None
    assert note["input_sm3"] is None
    log = verified(audit_dir, site.key("gw"))
    refused = one(log, "input_refused", source="drop")
    assert refused["code"] == "E_TOO_LARGE"
    assert refused["remote"].endswith("/huge.jsonl")
    moved = one(log, "file_archived", file_name="huge.jsonl")
    assert (moved["code"], moved["data"]["reason"]) == ("E_TOO_LARGE", "error")
    assert pick(log, "file_read") == []


async def test_folder_failures_are_audited(tmp_path: Path) -> None:
    site = Site(tmp_path)
    async with rig(drop_config(site)) as r, audited(r) as audit_dir:
        src = r.source()
        src.incoming = str(site.root / "nowhere")  # the folder is gone
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if src.last_error:
                break
        stop.set()
        await task
    log = verified(audit_dir, site.key("gw"))
    failed = pick(log, "transport_failed", source="drop")
    assert failed
    assert failed[0]["outcome"] == "failed"
    assert failed[0]["code"] == "E_NOT_FOUND"
    assert failed[0]["actor"] == "source:drop"
    assert failed[0]["remote"] == src.store.where
