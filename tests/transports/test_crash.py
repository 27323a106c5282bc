"""kill -9 at the worst moments of a file hop: nothing lost, nothing twice.

The gateway and the hub run as real processes (``run_gateway.py run``) with
a real sshd. A racing ``kill`` against a loopback transfer of a few
megabytes would mostly miss, so the process SIGKILLs itself at a named point
(``GATEWAY_FAILPOINTS``, gateway/failpoints.py): the same effect as an
operator's kill -9 at that instant. Then it is started again without the
failpoint, and we count.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from crypto import canonical_json
from gateway.demo_data import demo_jsonl
from tests.harness import Proc, Site, http
from tests.sshd import Sshd, sshd
from tests.transports.helpers import hub_records, hub_with_drop, wait_for

pytestmark = pytest.mark.slow


def died_by_kill(p: Proc, seconds: float = 90) -> None:
    assert p.p is not None
    deadline = time.monotonic() + seconds
    while p.p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.p.returncode == -signal.SIGKILL, (
        f"{p.config.name} did not reach its failpoint: " + p.log.read_text()[-3000:]
    )


def source_gateway(site: Site, s: Sshd, remote: Path) -> Path:
    lines = [
        "node:",
        "  name: gw",
        f"  state_dir: {site.root / 'gw'}",
        f"  keys: [{{file: {site.key('gw')}}}]",
        "listen:",
        f"  admin: 127.0.0.1:{site.port('gw-admin')}",
        f"  admin_token_files: [{site.admin_token_file()}]",
        "sources:",
        "  - name: drop",
        "    content_types: [application/x-ndjson]",
        "    transport:",
        "      type: sftp",
        *s.connection_yaml("      ").splitlines(),
        f"      remote_dir: {remote}",
        "      completion: {mode: stable, stable_s: 0.2}",
        "      poll_interval_s: 0.2",
        "destinations:",
        "  - name: hub",  # never reached: the records only need a route
        "    url: http://127.0.0.1:9/v1/envelopes",
        f"    recipient_keys: [{site.pub('hub')}]",
        "quota: {min_free_disk: 16MiB}",
    ]
    path = site.root / "gw.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_with(p: Proc, monkeypatch: pytest.MonkeyPatch, failpoint: str | None) -> None:
    if failpoint:
        monkeypatch.setenv("GATEWAY_FAILPOINTS", failpoint)
    else:
        monkeypatch.delenv("GATEWAY_FAILPOINTS", raising=False)
    p.start(wait=failpoint is None)


def test_kill_9_at_each_step_of_taking_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the claim, during the download, between storing and archiving.

    One file, three crashes in a row (each restart resumes what the last one
    left), then a clean run: one input, every record once, the file archived.
    """
    site = Site(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    body = demo_jsonl(150, pad=2000)  # > 2 MiB: the download is really half done
    assert len(body) > 2 * 1024 * 1024
    lines = len(body.splitlines())
    staging = site.root / "gw" / "transfers" / "drop"
    claimed = remote / ".processing" / "gw~drop~export.jsonl"
    with sshd(tmp_path / "sshd") as server:
        gw = Proc(
            source_gateway(site, server, remote), site.admin("gw"), tmp_path / "gw.log"
        )
        (remote / "export.jsonl").write_bytes(body)
        start_with(gw, monkeypatch, "file-source.claimed")
        died_by_kill(gw)
        assert claimed.exists()
        assert not (remote / "export.jsonl").exists()
        assert list(staging.iterdir()) == []  # nothing read yet

        start_with(gw, monkeypatch, "sftp.read-partial")
        died_by_kill(gw)
        (partial,) = staging.iterdir()
        assert 0 < partial.stat().st_size < len(body)

        start_with(gw, monkeypatch, "file-source.stored")
        died_by_kill(gw)
        assert claimed.exists(), "stored, but not archived yet"
        assert partial.read_bytes() == body  # resumed, not restarted
        try:
            start_with(gw, monkeypatch, None)
            wait_for(
                lambda: (remote / "done" / "export.jsonl").exists(), 90, "archived"
            )
            src: Any = gw.status()["sources"]
            src = src["drop"]
        finally:
            gw.stop()
    assert src["accepted"] == 1
    assert src["records"] + src["rejected"] == lines
    assert src["records"] > 0
    assert (remote / "done" / "export.jsonl").read_bytes() == body
    assert list((remote / ".processing").iterdir()) == []
    assert list(staging.iterdir()) == []
    assert list(remote.glob("*.jsonl")) == []


def sink_gateway(site: Site, s: Sshd, inbox: Path, receipts: Path) -> Path:
    path = site.gateway_config(destinations={})
    block = "\n".join(
        [
            "destinations:",
            "  - name: hub",
            "    type: sftp",
            *s.connection_yaml("    ").splitlines(),
            f"    remote_dir: {inbox}",
            f"    receipts_dir: {receipts}",
            "    receipt_wait_s: 1",
            "    receipt_poll_s: 0.1",
            "    receipt_retry_s: 0.5",
            f"    recipient_keys: [{site.pub('hub')}]",
            "    batch: {max_records: 500, linger_s: 0.05}",
            "    retry: {backoff_min_s: 0.2, backoff_max_s: 1.0}",
            "    circuit_failures: 50",
            # One envelope carries the whole input through each crash step
            # (parent-first ordering would send the projects first, alone).
            "    ordering: {parent_first: false}",
            "",
        ]
    )
    path.write_text(path.read_text().replace("destinations:\n", block, 1))
    return path


def delivered(p: Proc) -> int:
    d: Any = p.status()["destinations"]
    return int(d["hub"]["delivered"])


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def push(site: Site, body: bytes) -> None:
    code, answer = http(
        "POST",
        site.url("gw") + "/v1/ingest/src",
        body,
        {
            "Authorization": f"Bearer {site.token}",
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": "one",
        },
    )
    assert code == 202, answer


def test_kill_9_at_each_step_of_an_sftp_hop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway killed during the upload, then between upload and rename; hub
    killed between storing the envelope and writing its receipt. Every
    record reaches the hub exactly once, with a verified receipt."""
    site = Site(tmp_path)
    drop = tmp_path / "hub-drop"
    inbox, receipts = drop / "in", drop / "receipts"
    body = demo_jsonl(20, seed=3)
    want = sorted(canonical_json(json.loads(line)) for line in body.splitlines())
    with sshd(tmp_path / "sshd") as server:
        hub = Proc(
            hub_with_drop(site, inbox, receipts),
            site.admin("hub"),
            tmp_path / "hub.log",
        )
        gw = Proc(
            sink_gateway(site, server, inbox, receipts),
            site.admin("gw"),
            tmp_path / "gw.log",
        )
        try:
            start_with(hub, monkeypatch, None)
            start_with(gw, monkeypatch, "sftp.write-partial")
            gw.wait_ready()
            push(site, body)
            died_by_kill(gw)
            (part,) = files(inbox)
            assert part.endswith(".env.part")
            half = (inbox / part).stat().st_size
            assert hub_records(site) == []

            start_with(gw, monkeypatch, "file-sink.before-rename")
            died_by_kill(gw)
            assert files(inbox) == [part]  # uploaded again, whole, not renamed
            assert (inbox / part).stat().st_size > half
            assert hub_records(site) == []

            hub.stop()
            start_with(hub, monkeypatch, "envelope-folder.stored")
            hub.wait_ready()
            start_with(gw, monkeypatch, None)
            died_by_kill(hub)
            assert files(receipts) == []  # stored, no receipt written yet
            assert len(hub_records(site)) == len(want)

            start_with(hub, monkeypatch, None)
            wait_for(
                lambda: delivered(gw) == len(want),
                90,
                "delivered with a verified receipt",
            )
        finally:
            gw.stop()
            hub.stop()
    assert sorted(hub_records(site)) == want  # exactly once
    assert files(inbox) == []
    assert files(receipts) == []
