"""Directory hops: the file forwarder's receipt protocol and the hub's envelope folder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from config.models import DirectoryDestination
from gateway.demo_data import demo_jsonl
from gateway.errors import (
    PermanentDeliveryError,
    ResealRequired,
    TransientDeliveryError,
)
from gateway.forwarders.files import FileForwarder
from gateway.transports.store import LocalStore
from tests.harness import Site, running
from tests.transports.helpers import delivered_count, hub_with_drop, push_ingest


def forwarder(tmp_path: Path, **kw: object) -> tuple[FileForwarder, Path, Path]:
    inbox, receipts = tmp_path / "in", tmp_path / "receipts"
    inbox.mkdir(exist_ok=True)
    receipts.mkdir(exist_ok=True)
    cfg = DirectoryDestination.model_validate(
        {
            "name": "hub",
            "type": "directory",
            "path": str(inbox),
            "receipts_dir": str(receipts),
            "recipient_keys": ["k.pem"],
            "receipt_wait_s": 0.2,
            "receipt_poll_s": 0.05,
            "receipt_retry_s": 7,
            **kw,
        }
    )
    return (
        FileForwarder(cfg, LocalStore(), inbox=str(inbox), receipts=str(receipts)),
        inbox,
        receipts,
    )


async def test_upload_then_pending_then_receipt_without_a_second_upload(
    tmp_path: Path,
) -> None:
    fwd, inbox, receipts = forwarder(tmp_path)
    with pytest.raises(TransientDeliveryError) as err:
        await fwd.send(b"ENVELOPE", envelope_id="e1")
    assert err.value.code == "E_RECEIPT_PENDING"
    assert err.value.retry_after == 7
    assert sorted(p.name for p in inbox.iterdir()) == ["e1.env"]
    first = (inbox / "e1.env").stat().st_mtime_ns
    # A retry finds the envelope still waiting: it does not upload again.
    (inbox / "e1.env").write_bytes(b"ENVELOPE")
    await asyncio.sleep(0.01)
    with pytest.raises(TransientDeliveryError):
        await fwd.send(b"ENVELOPE", envelope_id="e1")
    assert (inbox / "e1.env").stat().st_mtime_ns >= first
    # The hub takes the file and writes the receipt: the next send returns it.
    (inbox / "e1.env").unlink()
    (receipts / "e1.receipt").write_bytes(b"RECEIPT")
    assert await fwd.send(b"ENVELOPE", envelope_id="e1") == b"RECEIPT"
    assert list(receipts.iterdir()) == []
    assert list(inbox.iterdir()) == []  # never uploaded again


async def test_a_refusal_file_is_permanent_or_asks_for_a_reseal(tmp_path: Path) -> None:
    fwd, _inbox, receipts = forwarder(tmp_path)
    (receipts / "e2.error").write_text(json.dumps({"error": {"code": "E_ENVELOPE"}}))
    with pytest.raises(PermanentDeliveryError) as err:
        await fwd.send(b"x", envelope_id="e2")
    assert err.value.code == "E_ENVELOPE"
    (receipts / "e3.error").write_text(
        json.dumps({"error": {"code": "E_ENVELOPE_EXPIRED"}})
    )
    with pytest.raises(ResealRequired):
        await fwd.send(b"x", envelope_id="e3")


async def test_unwritable_folder_is_transient(tmp_path: Path) -> None:
    fwd, inbox, _ = forwarder(tmp_path)
    inbox.rmdir()
    inbox.write_text("a file where the folder should be")
    with pytest.raises(TransientDeliveryError) as err:
        await fwd.send(b"x", envelope_id="e4")
    assert err.value.code == "E_DIR_IO"


async def test_directory_sink_to_a_hub_and_refused_envelopes(tmp_path: Path) -> None:
    """gateway --directory--> hub watching it; junk in the folder is refused."""
    site = Site(tmp_path)
    inbox, receipts = tmp_path / "drop" / "in", tmp_path / "drop" / "receipts"
    hub = hub_with_drop(site, inbox, receipts)
    gw = site.gateway_config(destinations={})
    gw.write_text(
        gw.read_text().replace(
            "destinations:\n",
            "destinations:\n"
            "  - name: hub\n"
            "    type: directory\n"
            f"    path: {inbox}\n"
            f"    receipts_dir: {receipts}\n"
            "    receipt_wait_s: 2\n"
            "    receipt_poll_s: 0.05\n"
            f"    recipient_keys: [{site.pub('hub')}]\n"
            "    batch: {max_records: 200, linger_s: 0.05}\n",
            1,
        )
    )
    async with running(hub, gw) as (_hub_node, gw_node):
        body = demo_jsonl(3, seed=4)
        assert (await push_ingest(site, body))[0] == 202
        deadline = time.monotonic() + 30
        while await delivered_count(gw_node) < len(body.splitlines()):
            assert time.monotonic() < deadline, "not delivered"
            await asyncio.sleep(0.1)
        (inbox / "junk.env").write_bytes(b"not an envelope")
        deadline = time.monotonic() + 10
        while not (receipts / "junk.error").exists():
            assert time.monotonic() < deadline, "no refusal file"
            await asyncio.sleep(0.05)
        assert json.loads((receipts / "junk.error").read_text()) == {
            "error": {"code": "E_ENVELOPE"}
        }
        assert (inbox / "error" / "junk.env").exists()
        assert not (inbox / "junk.env").exists()
