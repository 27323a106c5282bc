"""SFTP against a real OpenSSH sshd on loopback (tests/sshd.py).

Host keys, authentication, pinned algorithms, the store's rename semantics,
resumable downloads, the SFTP source end to end, and the SFTP sink with a
hub watching the folder that sshd writes into.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from config.models import SftpConnection, SftpTransport
from crypto import sm3
from gateway.demo_data import demo_jsonl
from gateway.errors import TransportError
from gateway.transports.sftp import SftpStore, check_algorithms
from tests.harness import Site, running
from tests.sshd import Sshd
from tests.transports.helpers import (
    audited,
    delivered_count,
    hub_with_drop,
    one,
    pick,
    push_ingest,
    rig,
    source_config,
    verified,
)


def conn(s: Sshd, **kw: object) -> SftpConnection:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": s.port,
        "user": s.user,
        "known_hosts": str(s.known_hosts),
        "key_file": str(s.key_file),
        "connect_timeout_s": 5,
        "timeout_s": 10,
    }
    base.update(kw)
    return SftpConnection.model_validate(base)


def store(s: Sshd, **kw: object) -> SftpStore:
    return SftpStore(conn(s, **kw), resolve=Path)


def test_operations_and_rename_semantics(ssh_server: Sshd, tmp_path: Path) -> None:
    st = store(ssh_server)
    try:
        d = str(tmp_path)
        st.write_file(f"{d}/a.part", b"x" * 5000)
        st.replace(f"{d}/a.part", f"{d}/a")
        entry = st.stat(f"{d}/a")
        assert entry is not None
        assert (entry.size, entry.is_file) == (5000, True)
        assert st.stat(f"{d}/missing") is None
        (tmp_path / "taken").write_bytes(b"1")
        with pytest.raises(FileExistsError):
            st.rename(f"{d}/a", f"{d}/taken")  # a claim never overwrites
        assert st.rename(f"{d}/a", f"{d}/b") is True
        assert st.rename(f"{d}/a", f"{d}/c") is False  # gone: someone else won
        st.makedirs(f"{d}/x/y/z")
        assert (tmp_path / "x" / "y" / "z").is_dir()
        st.remove(f"{d}/b")
        st.remove(f"{d}/b")  # missing is fine
        assert sorted(e.name for e in st.listdir(d)) == ["taken", "x"]
    finally:
        st.close()


def test_download_resumes_from_an_offset(ssh_server: Sshd, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big").write_bytes(data)
    st = store(ssh_server)
    try:
        out = tmp_path / "copy"
        assert st.download(str(tmp_path / "big"), 0, 1_000_000, out) == 1_000_000
        # A new session (as after a crash) goes on from the local copy's size.
        st.close()
        got = st.download(str(tmp_path / "big"), out.stat().st_size, 10**9, out)
        assert got == len(data) - 1_000_000
        assert out.read_bytes() == data
    finally:
        st.close()


def test_unknown_host_is_refused(ssh_server: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    st = store(ssh_server, known_hosts=str(empty))
    with pytest.raises(TransportError) as err:
        st.listdir("/")
    assert err.value.code == "E_SFTP_HOST_KEY"


def test_changed_host_key_is_refused(ssh_server: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    pub = (tmp_path / "other.pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{ssh_server.port} {pub[0]} {pub[1]}\n")
    with pytest.raises(TransportError) as err:
        store(ssh_server, known_hosts=str(wrong)).listdir("/")
    assert err.value.code == "E_SFTP_HOST_KEY"


def test_wrong_key_fails_authentication(ssh_server: Sshd, tmp_path: Path) -> None:
    other = tmp_path / "id"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    with pytest.raises(TransportError) as err:
        store(ssh_server, key_file=str(other)).listdir("/")
    assert err.value.code == "E_SFTP_AUTH"


def test_password_file_must_be_private(ssh_server: Sshd, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    st = store(ssh_server, key_file=None, password_file=str(pw))
    with pytest.raises(TransportError) as err:
        st.listdir("/")
    assert err.value.code == "E_SFTP_AUTH"
    assert "chmod 600" in str(err.value)


def test_nobody_listening_is_a_connect_error(ssh_server: Sshd) -> None:
    from tests.harness import free_port

    with pytest.raises(TransportError) as err:
        store(ssh_server, port=free_port()).listdir("/")
    assert err.value.code in {"E_SFTP_CONNECT", "E_SFTP_HOST_KEY"}


def test_pinned_algorithms_for_old_servers(ssh_server: Sshd, tmp_path: Path) -> None:
    algs = {
        "kex": ["diffie-hellman-group14-sha256"],
        "ciphers": ["aes128-ctr"],
        "macs": ["hmac-sha2-256"],
        "host_keys": ["ssh-ed25519"],
    }
    st = store(ssh_server, algorithms=algs)
    try:
        st.listdir(str(tmp_path))
        assert st._transport is not None
        assert getattr(st._transport, "remote_cipher", None) == "aes128-ctr"
    finally:
        st.close()
    bad = conn(ssh_server, algorithms={"ciphers": ["arcfour"]})
    assert [f for f, _ in check_algorithms(bad)] == ["algorithms.ciphers"]


def test_session_reconnects_after_the_server_drops_it(
    ssh_server: Sshd, tmp_path: Path
) -> None:
    st = store(ssh_server)
    try:
        st.listdir(str(tmp_path))
        assert st._transport is not None
        first = st._transport
        first.close()  # as if the server or the network dropped us
        assert st.listdir(str(tmp_path)) == []  # the next call reconnects
        assert st._transport is not first
    finally:
        st.close()


async def test_sftp_source_end_to_end(ssh_server: Sshd, tmp_path: Path) -> None:
    site = Site(tmp_path)
    remote = tmp_path / "remote" / "out"
    remote.mkdir(parents=True)
    cfg = source_config(
        site,
        "type: sftp\n" + ssh_server.connection_yaml("") + f"remote_dir: {remote}\n"
        "completion: {mode: stable, stable_s: 0}\n"
        "after: delete\n",
    )
    async with rig(cfg) as r:
        t = r.node.sources["drop"].cfg.transport
        assert isinstance(t, SftpTransport)
        src = r.source(store=SftpStore(t, resolve=Path))
        body = demo_jsonl(4)
        (remote / "x.jsonl").write_bytes(body)
        assert await src.poll_once() == 0
        r.clock.advance(0.1)
        assert await src.poll_once() == 1
        assert await r.counts() == (1, len(body.splitlines()))
        assert not (remote / "x.jsonl").exists()
        assert os.listdir(remote / "done") == []  # after: delete
        assert list((r.node.state_dir / "transfers" / "drop").iterdir()) == []
        prior = await r.spool.lookup_idempotent("drop", "sm3:" + sm3(body).hex())
        assert prior is not None
        state = await r.spool.intake_state(prior.intake_id)
        assert state is not None
        assert state.source == "drop"
        await asyncio.to_thread(src.store.close)


async def test_sftp_sink_delivers_to_a_hub_watching_the_folder(
    ssh_server: Sshd, tmp_path: Path
) -> None:
    """gateway --sftp--> sshd --files--> hub: receipts come back as files."""
    site = Site(tmp_path)
    inbox = tmp_path / "hub-drop" / "in"
    receipts = tmp_path / "hub-drop" / "receipts"
    hub = hub_with_drop(site, inbox, receipts)
    gw = _sftp_gateway(site, ssh_server, inbox, receipts)
    async with running(hub, gw) as (hub_node, gw_node):
        body = demo_jsonl(3)
        status, _ = await push_ingest(site, body)
        assert status == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            counts = await delivered_count(gw_node)
            if counts == len(body.splitlines()):
                break
            await asyncio.sleep(0.1)
        assert await delivered_count(gw_node) == len(body.splitlines())
        assert list(inbox.glob("*.env*")) == []
        assert list(receipts.iterdir()) == []  # read and removed by the sender
        _ = hub_node


def _sftp_gateway(
    site: Site, s: Sshd, inbox: Path, receipts: Path, *, password: bool = False
) -> Path:
    path = site.gateway_config(destinations={})
    text = path.read_text().replace("destinations:\n", "destinations: []\n", 1)
    conn = s.password_yaml("    ") if password else s.connection_yaml("    ")
    block = (
        "destinations:\n"
        "  - name: hub\n"
        "    type: sftp\n" + conn + f"    remote_dir: {inbox}\n"
        f"    receipts_dir: {receipts}\n"
        "    receipt_wait_s: 5\n"
        "    receipt_poll_s: 0.1\n"
        "    receipt_retry_s: 0.5\n"
        f"    recipient_keys: [{site.pub('hub')}]\n"
        "    batch: {max_records: 200, linger_s: 0.05}\n"
        "    retry: {backoff_min_s: 0.2, backoff_max_s: 1.0}\n"
    )
    path.write_text(text.replace("destinations: []\n", block, 1))
    return path


# -- password authentication (a temporary user, tests/sshd.py) and the audit log --


def user_dir(s: Sshd, *parts: str) -> Path:
    """A folder the password user owns (the test process is root)."""
    pw = s.password_user
    assert pw is not None
    path = pw.home
    for p in parts:
        path = path / p
        path.mkdir(exist_ok=True)
        shutil.chown(path, pw.name, pw.name)
    return path


def assert_secret_kept(
    secret: str, caplog: pytest.LogCaptureFixture, *dirs: Path
) -> None:
    """Not in any log record (message or extra fields) nor in the audit logs."""
    for rec in caplog.records:
        assert secret not in rec.getMessage()
        assert secret not in repr(vars(rec))
    for d in dirs:
        for f in d.iterdir():
            assert secret.encode() not in f.read_bytes(), f


async def test_sftp_source_with_a_password_audits_each_step(
    ssh_password_server: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = ssh_password_server
    assert s.password_user is not None
    remote = user_dir(s, tmp_path.name, "out")
    site = Site(tmp_path)
    cfg = source_config(
        site,
        "type: sftp\n" + s.password_yaml("") + f"remote_dir: {remote}\n"
        "completion: {mode: stable, stable_s: 0}\n",
    )
    body = demo_jsonl(3, seed=8)
    async with rig(cfg) as r, audited(r) as audit_dir:
        t = r.node.sources["drop"].cfg.transport
        assert isinstance(t, SftpTransport)
        src = r.source(store=SftpStore(t, resolve=Path))
        (remote / "x.jsonl").write_bytes(body)
        (remote / "bad.jsonl").write_bytes(b"\xff\xfe not json\n")
        await src.poll_once()
        r.clock.advance(0.1)
        assert await src.poll_once() == 2
        assert await r.counts() == (1, len(body.splitlines()))
        await asyncio.to_thread(src.store.close)
    # Moved by the password user, inside its own folder.
    assert (remote / "done" / "x.jsonl").read_bytes() == body
    note = json.loads((remote / "error" / "bad.jsonl.error.json").read_text())
    assert note["error"]["code"] == "E_ENCODING"
    assert sorted(os.listdir(remote / "error")) == ["bad.jsonl", "bad.jsonl.error.json"]

    log = verified(audit_dir, site.key("gw"))
    where = f"sftp://{s.password_user.name}@127.0.0.1:{s.port}"
    claimed = one(log, "file_claimed", file_name="x.jsonl")
    assert claimed["remote"] == where
    assert claimed["data"]["transport"] == "sftp"
    assert claimed["data"]["token_id"] == f"sftp:{s.password_user.name}"
    assert claimed["data"]["bytes"] == len(body)
    read = one(log, "file_read", file_path=claimed["data"]["file_path"])
    assert read["data"]["input_sm3"] == sm3(body).hex()
    done = one(log, "file_archived", file_name="x.jsonl")
    assert done["data"]["file_path"] == f"{remote}/done/x.jsonl"
    bad = one(log, "file_archived", file_name="bad.jsonl")
    assert bad["code"] == "E_ENCODING"
    assert (
        bad["data"]["note_sm3"]
        == sm3((remote / "error" / "bad.jsonl.error.json").read_bytes()).hex()
    )
    assert_secret_kept(s.password_user.password, caplog, audit_dir)


def test_a_wrong_password_is_refused_without_showing_it(
    ssh_password_server: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = ssh_password_server
    assert s.password_user is not None
    wrong = tmp_path / "pw"
    wrong.write_text("not-the-password-7f3a\n")
    wrong.chmod(0o600)
    st = store(s, user=s.password_user.name, key_file=None, password_file=str(wrong))
    with pytest.raises(TransportError) as err:
        st.listdir(str(s.password_user.home))
    assert err.value.code == "E_SFTP_AUTH"
    assert "not-the-password-7f3a" not in str(err.value)
    assert_secret_kept("not-the-password-7f3a", caplog)
    # The right one works (read from its file at each connect).
    ok = store(
        s,
        user=s.password_user.name,
        key_file=None,
        password_file=str(s.password_user.password_file),
    )
    try:
        ok.listdir(str(s.password_user.home))
    finally:
        ok.close()


async def test_sftp_connect_failure_is_audited(
    ssh_server: Sshd, tmp_path: Path
) -> None:
    from tests.harness import free_port

    site = Site(tmp_path)
    port = free_port()  # nobody listens there
    conn_yaml = ssh_server.connection_yaml("").replace(
        f"port: {ssh_server.port}", f"port: {port}"
    )
    cfg = source_config(site, "type: sftp\n" + conn_yaml + "remote_dir: /nowhere\n")
    async with rig(cfg) as r, audited(r) as audit_dir:
        t = r.node.sources["drop"].cfg.transport
        assert isinstance(t, SftpTransport)
        src = r.source(store=SftpStore(t, resolve=Path))
        stop = asyncio.Event()
        task = asyncio.create_task(src.run(stop))
        for _ in range(200):
            await asyncio.sleep(0.02)
            if src.last_error:
                break
        stop.set()
        await task
    log = verified(audit_dir, site.key("gw"))
    failed = one(log, "transport_failed", source="drop")
    assert failed["code"] in {"E_SFTP_CONNECT", "E_SFTP_HOST_KEY"}
    assert failed["remote"] == f"sftp://{ssh_server.user}@127.0.0.1:{port}"
    assert failed["outcome"] == "failed"


async def test_sftp_sink_with_a_password_audits_both_sides(
    ssh_password_server: Sshd,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """gateway --sftp, password--> sshd --files--> hub; then `audit verify` on
    both nodes, and the digests agree from upload to receipt."""
    caplog.set_level(logging.DEBUG)
    s = ssh_password_server
    pw = s.password_user
    assert pw is not None
    inbox = user_dir(s, tmp_path.name, "in")
    receipts = user_dir(s, tmp_path.name, "receipts")
    site = Site(tmp_path)
    hub = hub_with_drop(site, inbox, receipts)
    gw = _sftp_gateway(site, s, inbox, receipts, password=True)
    body = demo_jsonl(3, seed=12)
    async with running(hub, gw) as (_hub_node, gw_node):
        assert (await push_ingest(site, body))[0] == 202
        deadline = time.monotonic() + 30
        while await delivered_count(gw_node) < len(body.splitlines()):
            assert time.monotonic() < deadline, "not delivered"
            await asyncio.sleep(0.1)
    assert list(inbox.glob("*.env*")) == []
    assert list(receipts.iterdir()) == []

    from gateway.cli import main as cli

    for cfg in (gw, hub):
        assert cli(["audit", "verify", "--config", str(cfg)]) == 0, capsys.readouterr()
    g = verified(site.root / "gw" / "audit", site.key("gw"))
    h = verified(site.root / "hub" / "audit", site.key("hub"))
    where = f"sftp://{pw.name}@127.0.0.1:{s.port}"
    sealed = pick(g, "envelope_sealed")
    assert sealed
    for env in sealed:
        env_id = env["data"]["envelope_id"]
        up = one(g, "file_uploaded", envelope_id=env_id)
        assert up["remote"] == where
        assert up["data"]["file_path"] == f"{inbox}/{env_id}.env"
        assert up["data"]["envelope_sm3"] == env["data"]["envelope_sm3"]
        got = one(g, "receipt_file_read", envelope_id=env_id)
        assert got["data"]["file_path"] == f"{receipts}/{env_id}.receipt"
        verified_receipt = one(g, "receipt_verified", envelope_id=env_id)
        assert got["data"]["receipt_sm3"] == verified_receipt["data"]["receipt_sm3"]
        assert up["seq"] < got["seq"] < verified_receipt["seq"]
        # The hub's side of the same file.
        read = one(h, "file_read", file_path=f"{inbox}/{env_id}.env")
        assert read["data"]["envelope_sm3"] == up["data"]["envelope_sm3"]
        one(h, "envelope_received", envelope_id=env_id)
        written = one(h, "receipt_file_written", file_name=f"{env_id}.env")
        assert written["data"]["receipt_sm3"] == got["data"]["receipt_sm3"]
        assert written["data"]["file_path"] == f"{receipts}/{env_id}.receipt"
        gone = one(h, "file_archived", file_path=f"{inbox}/{env_id}.env")
        assert gone["data"]["reason"] == "deleted"
    assert_secret_kept(
        pw.password, caplog, site.root / "gw" / "audit", site.root / "hub" / "audit"
    )
