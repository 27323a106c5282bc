"""The audit log: entry format, chain, checkpoints, rotation, crash recovery,
every kind of tampering done by editing the real files, export, and the
docs' OpenSSL and Python recipes run as written."""

from __future__ import annotations

import asyncio
import base64
import errno
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx
from gmssl import func as gm_func
from gmssl import sm3 as gm_sm3

import crypto
from monitoring import audit
from monitoring.audit import AuditError, AuditLog, export, verify
from tests.conftest import ROOT, make_key

DOC = ROOT / "docs" / "audit.md"
ID_OPT = ["-sigopt", "distid:1234567812345678"]


# -- helpers ---------------------------------------------------------------------


@pytest.fixture
def key() -> crypto.PrivateKey:
    return make_key()


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


def open_log(d: Path, key: crypto.PrivateKey, **kw: Any) -> AuditLog:
    kw.setdefault("node", "gw1")
    return AuditLog.open(d, signer=key, **kw)


def fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(
            "input_accepted",
            actor="source:acme",
            remote=f"10.0.0.{i % 250}:{40000 + i}",
            source="acme",
            token_id="tok-0123456789ab",
            intake_id=f"in-{i:06d}",
            records=i % 7,
            input_sm3=crypto.sm3(str(i).encode()).hex(),
        )


def make_log(d: Path, key: crypto.PrivateKey, n: int = 50, **kw: Any) -> None:
    """A cleanly closed log with ``n`` events after its ``log_opened``."""
    with open_log(d, key, **kw) as log:
        fill(log, n)


def files(d: Path) -> list[Path]:
    return sorted(d.glob("audit-*.jsonl"))


def lines(p: Path) -> list[bytes]:
    return p.read_bytes().splitlines(keepends=True)


def write_lines(p: Path, ls: list[bytes]) -> None:
    p.write_bytes(b"".join(ls))


def entries(d: Path) -> list[tuple[Path, int, dict[str, Any]]]:
    """(file, 0-based line index, entry) for every line of every file."""
    return [(p, i, json.loads(raw)) for p in files(d) for i, raw in enumerate(lines(p))]


def find(
    d: Path, pred: Callable[[dict[str, Any]], bool], nth: int = 0
) -> tuple[Path, int, dict[str, Any]]:
    return [e for e in entries(d) if pred(e[2])][nth]


def rehash(obj: dict[str, Any]) -> bytes:
    obj.pop("hash", None)
    obj["hash"] = crypto.sm3(crypto.canonical_json(obj)).hex()
    return crypto.canonical_json(obj) + b"\n"


def rechain(d: Path, path: Path, idx: int) -> None:
    """What an attacker without the key can do: renumber and recompute every
    seq, prev and hash from (path, idx) to the end of the log."""
    prev: str | None = None
    seq = 0
    started = False
    for p in files(d):
        ls = lines(p)
        for i, raw in enumerate(ls):
            obj = json.loads(raw)
            started = started or (p == path and i == idx)
            if started:
                obj["seq"] = seq + 1
                if prev is not None:
                    obj["prev"] = prev
                ls[i] = rehash(obj)
            prev, seq = obj["hash"], obj["seq"]
        write_lines(p, ls)


def healthy(log: AuditLog) -> bool:
    return log.healthy


def check(d: Path, key: crypto.PrivateKey) -> audit.VerifyResult:
    return verify(d, [key.public])


def bad(
    result: audit.VerifyResult, file: str, line: int | None, seq: int | None, text: str
) -> None:
    assert not result.ok, result.report()
    assert result.exit_code == 1
    err = result.error
    assert err is not None
    assert (err.file, err.line, err.seq) == (file, line, seq), str(err)
    assert text in err.reason, str(err)


CRASH = """
import os, sys
import crypto
from monitoring.audit import AuditLog
d, keyfile, n, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = AuditLog.open(d, node="gw1", signer=crypto.load_private_key(keyfile),
                    checkpoint_every=every)
for i in range(n):
    log.append("input_accepted", actor="source:acme", source="acme", records=i)
log.flush_sync()
os._exit(0)  # like kill -9: no final checkpoint, no clean shutdown
"""


@pytest.fixture
def keyfiles(tmp_path: Path) -> tuple[Path, Path]:
    k, pub, _ = crypto.keygen(tmp_path / "keys", "node")
    return k, pub


def crash_run(d: Path, keyfile: Path, n: int, every: int = 10) -> None:
    """Another process writes ``n`` events, flushes, and dies without closing."""
    res = subprocess.run(
        [sys.executable, "-c", CRASH, str(d), str(keyfile), str(n), str(every)],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")


# -- format ---------------------------------------------------------------------------


def test_entry_format_chain_and_times(logdir: Path, key: crypto.PrivateKey) -> None:
    t0 = datetime(2026, 11, 26, 9, 30, 0, 123456, tzinfo=UTC)
    ticks = iter(range(1000))

    def clock() -> datetime:
        return t0 + timedelta(seconds=next(ticks))

    with open_log(logdir, key, clock=clock) as log:
        log.append(
            "auth_failed",
            actor="source:acme",
            remote="10.0.0.5:51234",
            code="E_AUTH_INVALID",
            source="acme",
        )
        log.append(
            "operator_action",
            actor="operator:张三",
            remote="local",
            user="张三",
            command="quarantine replay",
            target="in-1",
            intake_id=None,  # None fields are left out
        )
    raws = lines(files(logdir)[0])
    objs = [json.loads(r) for r in raws]
    assert [o["kind"] for o in objs] == [
        "log_opened",
        "auth_failed",
        "operator_action",
        "checkpoint",
    ]
    prev = audit.GENESIS
    for n, (raw, obj) in enumerate(zip(raws, objs, strict=True), 1):
        # Each line is canonical JSON + LF; hash = SM3 of it without "hash".
        assert raw == crypto.canonical_json(obj) + b"\n"
        body = {k: v for k, v in obj.items() if k != "hash"}
        assert obj["hash"] == crypto.sm3(crypto.canonical_json(body)).hex()
        assert obj["seq"] == n
        assert obj["prev"] == prev
        assert obj["v"] == 1
        assert obj["node"] == "gw1"
        prev = obj["hash"]
    a = objs[1]
    assert a["ts"] == "2026-11-26T09:30:01.123456Z"
    assert a["ts_bj"] == "2026-11-26T17:30:01.123456+08:00"
    assert (a["actor"], a["remote"], a["outcome"], a["code"]) == (
        "source:acme",
        "10.0.0.5:51234",
        "refused",  # the kind's default outcome
        "E_AUTH_INVALID",
    )
    assert a["data"] == {"source": "acme"}
    assert objs[2]["data"] == {
        "command": "quarantine replay",
        "target": "in-1",
        "user": "张三",
    }
    assert "张三".encode() in raws[2]  # UTF-8, no \\u escapes
    cp = objs[3]
    assert cp["data"] == {"final": True, "key_id": key.id, "reason": "close"}
    assert set(cp) == {*objs[0], "sig"}


def test_fields_outside_the_vocabulary_are_refused(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    with open_log(logdir, key) as log:
        for name in ("payload", "token", "password", "body", "message"):
            with pytest.raises(ValueError, match=r"not in monitoring\.audit\.FIELDS"):
                log.append("input_accepted", **{name: "x"})
        with pytest.raises(ValueError, match="KINDS"):
            log.append("something_else")
        with pytest.raises(ValueError, match="written by the audit log"):
            log.append("checkpoint")
        with pytest.raises(ValueError, match="outcome"):
            log.append("input_accepted", outcome="maybe")
        with pytest.raises(ValueError, match="actor"):
            log.append("input_accepted", actor="acme")
        with pytest.raises(ValueError, match="actor"):
            log.append("input_accepted", actor="admin:root")
        with pytest.raises(ValueError, match="code"):
            log.append("input_refused", code="bad code with spaces")
        with pytest.raises(TypeError, match="records"):
            log.append("input_accepted", records=1.5)
        with pytest.raises(TypeError, match="records"):
            log.append("input_accepted", records=True)
        with pytest.raises(ValueError, match="hex"):
            log.append("input_accepted", input_sm3="ABC")
        with pytest.raises(ValueError, match="longer"):
            log.append("input_accepted", intake_id="x" * 600)
        log.append(
            "records_rejected",
            detail="d" * 1000,  # cut, not refused
            source="a\x00b\nc\ud800",  # controls and lone surrogates replaced
            rejected_by={"E_DATE": 3},
            envelope_ids=("e1", "e2"),
        )
        log.flush_sync()
    (obj,) = [o for _, _, o in entries(logdir) if o["kind"] == "records_rejected"]
    assert len(obj["data"]["detail"]) == 300
    assert obj["data"]["source"] == "a\ufffdb\ufffdc\ufffd"
    assert obj["data"]["rejected_by"] == {"E_DATE": 3}
    assert obj["data"]["envelope_ids"] == ["e1", "e2"]
    assert check(logdir, key).ok


def test_docs_list_every_kind_and_field() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in (*audit.KINDS, *audit.FIELDS):
        assert f"| `{name}` |" in text, name


# -- writing ------------------------------------------------------------------------------


def test_clean_close_verifies(logdir: Path, key: crypto.PrivateKey) -> None:
    make_log(logdir, key, 30)
    r = check(logdir, key)
    assert r.ok, r.report()
    assert r.exit_code == 0
    assert r.warnings == ()
    assert r.clean_shutdown
    assert (r.first_seq, r.last_seq, r.entries) == (1, 32, 32)
    assert r.signed_seq == r.head_seq == 32
    assert r.summary().endswith("closed cleanly")
    head = (logdir / audit.HEAD_FILE).read_bytes()
    assert head == lines(files(logdir)[-1])[-1]


def test_reopen_continues_the_chain(logdir: Path, key: crypto.PrivateKey) -> None:
    make_log(logdir, key, 5)
    make_log(logdir, key, 5)
    objs = [o for _, _, o in entries(logdir)]
    assert [o["seq"] for o in objs] == list(range(1, 15))
    assert [o["kind"] for o in objs].count("log_opened") == 2
    assert objs[7]["kind"] == "log_opened"
    assert (
        objs[7]["prev"] == objs[6]["hash"]
    )  # links to the first run's final checkpoint
    assert check(logdir, key).ok


def test_rotation_by_size_keeps_one_chain(logdir: Path, key: crypto.PrivateKey) -> None:
    make_log(logdir, key, 120, max_file_bytes=8192)
    fs = files(logdir)
    assert len(fs) >= 4
    assert [p.name for p in fs] == [audit.file_name(i) for i in range(1, len(fs) + 1)]
    for older, newer in itertools.pairwise(fs):
        last = json.loads(lines(older)[-1])
        first = json.loads(lines(newer)[0])
        assert last["kind"] == "checkpoint"
        assert last["data"]["reason"] == "rotate"
        assert first["prev"] == last["hash"]
        assert first["seq"] == last["seq"] + 1
        assert older.stat().st_size <= 8192 + 1024
    r = check(logdir, key)
    assert r.ok, r.report()
    assert r.files == len(fs)
    assert r.entries == sum(len(lines(p)) for p in fs)


def test_checkpoints_every_n_entries(logdir: Path, key: crypto.PrivateKey) -> None:
    make_log(logdir, key, 35, checkpoint_every=10)
    kinds = [o["kind"] for _, _, o in entries(logdir)]
    reasons = [
        o["data"]["reason"] for _, _, o in entries(logdir) if o["kind"] == "checkpoint"
    ]
    assert reasons == ["count", "count", "count", "close"]
    runs = "".join("c" if k == "checkpoint" else "." for k in kinds).split("c")
    assert [len(r) for r in runs] == [10, 10, 10, 6, 0]
    assert check(logdir, key).checkpoints == 4


def test_checkpoints_every_t_seconds_and_on_request(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    log = open_log(logdir, key, checkpoint_seconds=0.2)
    try:
        fill(log, 3)
        log.flush_sync()
        deadline = time.monotonic() + 20
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = json.loads(lines(files(logdir)[-1])[-1])
            if last["kind"] == "checkpoint":
                break
            time.sleep(0.05)
        assert last["data"]["reason"] == "interval"
        assert last["seq"] == 5
        seq = log.checkpoint()
        last = json.loads(lines(files(logdir)[-1])[-1])
        assert (last["seq"], last["data"]["reason"]) == (seq, "request")
    finally:
        log.close()
    assert check(logdir, key).ok


@pytest.mark.parametrize("policy", ["entry", "batch", "off"])
def test_fsync_policies(
    logdir: Path,
    key: crypto.PrivateKey,
    policy: audit.FsyncPolicy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = open_log(logdir, key, fsync=policy)
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    for i in range(20):
        fill(log, 1, start=i)
        log.flush_sync()
    n = len(calls)
    monkeypatch.undo()
    log.close()
    expected = {"entry": n >= 20, "batch": n >= 20, "off": n == 0}
    assert expected[policy], (policy, n)
    assert check(logdir, key).ok


def test_batching_groups_appends_into_few_fsyncs(
    logdir: Path, key: crypto.PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(logdir, key, fsync="batch", checkpoint_every=100_000)
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    fill(log, 2000)
    assert log.flush_sync() == 2001
    n = len(calls)
    monkeypatch.undo()
    log.close()
    assert n < 200, n


async def test_async_api_never_blocks_the_loop(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    log = await AuditLog.aopen(logdir, node="gw1", signer=key, checkpoint_every=100_000)
    with blockbuster_ctx():
        for i in range(2000):
            log.append(
                "send_attempt",
                destination="hub",
                envelope_id=f"env-{i}",
                attempt=1,
                status=200,
            )
        seq = await log.flush()
        assert await log.flush() == seq  # nothing new since
    await log.aclose()
    assert seq == 2001
    assert not log.healthy
    with pytest.raises(AuditError, match="closed"):
        log.append("node_started")
    assert check(logdir, key).ok


def test_two_writers_share_one_chain(logdir: Path, key: crypto.PrivateKey) -> None:
    a, b = open_log(logdir, key), open_log(logdir, key)

    def work(log: AuditLog, user: str) -> None:
        for i in range(300):
            log.append(
                "operator_action",
                actor=f"operator:{user}",
                user=user,
                command="status",
                target=str(i),
            )
            if i % 50 == 0:
                log.flush_sync()

    ts = [
        threading.Thread(target=work, args=(a, "a")),
        threading.Thread(target=work, args=(b, "b")),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    a.close()
    b.close()
    r = check(logdir, key)
    assert r.ok, r.report()
    ops = [o for _, _, o in entries(logdir) if o["kind"] == "operator_action"]
    for user in "ab":
        mine = [int(o["data"]["target"]) for o in ops if o["data"]["user"] == user]
        assert mine == list(range(300))


def test_verify_while_a_writer_appends(logdir: Path, key: crypto.PrivateKey) -> None:
    log = open_log(logdir, key, checkpoint_every=7, max_file_bytes=4096)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            fill(log, 3, start=i)
            log.flush_sync()
            i += 3

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(15):
            r = check(logdir, key)
            assert r.ok, r.report()
    finally:
        stop.set()
        t.join()
        log.close()
    assert check(logdir, key).clean_shutdown


def test_write_failure_keeps_events_then_recovers(
    logdir: Path, key: crypto.PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(logdir, key, max_pending=5)
    real = audit._write_all
    broken = threading.Event()
    broken.set()

    def disk_full(fd: int, data: bytes) -> None:
        if broken.is_set():
            os.write(fd, data[: len(data) // 2])  # half a batch reaches the file
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(audit, "_write_all", disk_full)
    fill(log, 1)
    with pytest.raises(AuditError, match="No space left on device"):
        log.flush_sync(timeout=20)
    assert not log.healthy
    fill(log, 11, start=1)  # 4 more fit (max_pending=5), the rest are counted
    broken.clear()
    deadline = time.monotonic() + 20
    while not healthy(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    log.flush_sync(timeout=20)
    log.close()
    r = check(logdir, key)
    assert r.ok, r.report()
    assert r.warnings == ()  # the half-written batch was cut back
    objs = [o for _, _, o in entries(logdir)]
    kept = [
        int(o["data"]["intake_id"][3:]) for o in objs if o["kind"] == "input_accepted"
    ]
    (lost,) = [o for o in objs if o["kind"] == "entries_lost"]
    assert kept == sorted(kept)
    assert kept[0] == 0
    assert len(kept) + lost["data"]["dropped"] == 12
    assert lost["outcome"] == "failed"


# -- crash recovery -------------------------------------------------------------------------


def test_crash_leaves_unsigned_tail_as_a_warning(
    logdir: Path, keyfiles: tuple[Path, Path]
) -> None:
    keyfile, pub = keyfiles
    crash_run(logdir, keyfile, 25)
    r = verify(logdir, [crypto.load_public_key(pub)])
    assert r.ok, r.report()
    assert not r.clean_shutdown
    assert r.signed_seq == r.head_seq == 22
    (w,) = r.warnings
    assert (w.seq, w.line) == (23, 23)
    assert (
        "6 entries (seq 23..28) after the last checkpoint are not covered" in w.reason
    )
    assert any("(warning)" in line for line in r.report())


def test_torn_tail_is_cut_and_recorded(
    logdir: Path, keyfiles: tuple[Path, Path]
) -> None:
    keyfile, pub = keyfiles
    keys = [crypto.load_public_key(pub)]
    crash_run(logdir, keyfile, 5)
    last = files(logdir)[-1]
    fragment = b'{"actor":"source:acme","code":null,"data":{"intake'
    with last.open("ab") as f:
        f.write(fragment)
    r = verify(logdir, keys)
    assert r.ok, r.report()
    assert any("partial last line" in w.reason and w.line == 7 for w in r.warnings)
    before = last.read_bytes()[: -len(fragment)]
    key = crypto.load_private_key(keyfile)
    with open_log(logdir, key) as log:
        fill(log, 2)
    assert last.read_bytes().startswith(before)
    objs = [o for _, _, o in entries(logdir)]
    rec = objs[6]
    assert rec["kind"] == "log_recovered"
    assert rec["prev"] == objs[5]["hash"]
    assert rec["data"]["file"] == last.name
    assert rec["data"]["line"] == 7
    assert rec["data"]["dropped_bytes"] == len(fragment)
    assert rec["data"]["dropped_sm3"] == crypto.sm3(fragment).hex()
    assert objs[7]["kind"] == "log_opened"
    r = verify(logdir, keys)
    assert r.ok
    assert r.warnings == ()


def test_torn_line_before_a_new_empty_file(
    logdir: Path, keyfiles: tuple[Path, Path]
) -> None:
    """A crash while rotating: the next file exists, empty, and the old one ends
    in a torn line (the rotation checkpoint being written)."""
    keyfile, pub = keyfiles
    keys = [crypto.load_public_key(pub)]
    crash_run(logdir, keyfile, 5)
    with files(logdir)[0].open("ab") as f:
        f.write(b'{"actor":"system","code":null,"data":{"fin')
    (logdir / audit.file_name(2)).touch()
    r = verify(logdir, keys)
    assert r.ok, r.report()
    assert any("partial last line" in w.reason for w in r.warnings)
    with open_log(logdir, crypto.load_private_key(keyfile)) as log:
        fill(log, 1)
    first = json.loads(lines(files(logdir)[1])[0])
    assert first["kind"] == "log_recovered"
    assert first["data"]["file"] == audit.file_name(1)
    r = verify(logdir, keys)
    assert r.ok, r.report()
    assert r.warnings == ()


def test_zero_filled_tail_after_power_loss_is_torn_too(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 3)
    with files(logdir)[-1].open("ab") as f:
        f.write(b"\0" * 4096)
    assert check(logdir, key).ok
    make_log(logdir, key, 1)
    kinds = [o["kind"] for _, _, o in entries(logdir)]
    assert "log_recovered" in kinds
    assert check(logdir, key).warnings == ()


def test_a_damaged_last_entry_is_not_extended(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 3)
    p = files(logdir)[-1]
    ls = lines(p)
    ls[-1] = ls[-1].replace(b'"final":true', b'"final":false')
    write_lines(p, ls)
    with pytest.raises(AuditError, match="last entry is damaged"):
        open_log(logdir, key)
    assert lines(p) == ls  # untouched: it is evidence


# -- tampering: each case edits the real files -----------------------------------------------


@pytest.fixture
def signed_log(logdir: Path, key: crypto.PrivateKey) -> Path:
    """A cleanly closed log over several files, a checkpoint every 10 entries."""
    make_log(logdir, key, 60, checkpoint_every=10, max_file_bytes=8192)
    assert len(files(logdir)) >= 3
    assert check(logdir, key).ok
    return logdir


def is_event(o: dict[str, Any]) -> bool:
    return str(o["kind"]) == "input_accepted"


def mid_event(d: Path) -> tuple[Path, int, dict[str, Any]]:
    """An event with at least 5 lines before and 3 after it in its file."""
    for p, i, o in entries(d):
        if is_event(o) and i >= 5 and i + 3 < len(lines(p)) and o["seq"] > 20:
            return p, i, o
    raise AssertionError("no such entry")


def test_edited_entry(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = mid_event(signed_log)
    ls = lines(p)
    ls[i] = ls[i].replace(b'"records":', b'"records":1', 1)
    write_lines(p, ls)
    bad(check(signed_log, key), p.name, i + 1, obj["seq"], "hash does not match")


def test_edited_entry_with_its_hash_recomputed(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p, i, obj = mid_event(signed_log)
    obj["remote"] = "192.0.2.1:1"
    ls = lines(p)
    ls[i] = rehash(obj)
    write_lines(p, ls)
    nxt = entries(signed_log)[
        [e[2]["seq"] for e in entries(signed_log)].index(obj["seq"] + 1)
    ]
    bad(
        check(signed_log, key),
        nxt[0].name,
        nxt[1] + 1,
        obj["seq"] + 1,
        f"prev does not match the hash of seq {obj['seq']}",
    )


def test_edited_entry_with_the_whole_chain_recomputed(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p, i, obj = mid_event(signed_log)
    ls = lines(p)
    ls[i] = ls[i].replace(b'"source":"acme"', b'"source":"evil"', 1)
    write_lines(p, ls)
    rechain(signed_log, p, i)
    cp = find(signed_log, lambda o: o["kind"] == "checkpoint" and o["seq"] > obj["seq"])
    bad(
        check(signed_log, key),
        cp[0].name,
        cp[1] + 1,
        cp[2]["seq"],
        "checkpoint signature does not verify",
    )


def test_deleted_entry(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = mid_event(signed_log)
    ls = lines(p)
    del ls[i]
    write_lines(p, ls)
    bad(
        check(signed_log, key),
        p.name,
        i + 1,
        obj["seq"] + 1,
        f"seq {obj['seq'] + 1} follows seq {obj['seq'] - 1}: 1 entry is missing",
    )


def test_inserted_entry(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = mid_event(signed_log)
    ls = lines(p)
    ls.insert(i + 1, ls[i - 3])  # an older, genuine line copied in
    write_lines(p, ls)
    bad(check(signed_log, key), p.name, i + 2, obj["seq"] - 3, "out of order")


def test_inserted_forged_entry_rechained(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p, i, obj = mid_event(signed_log)
    forged = dict(obj, data={"source": "acme", "records": 999})
    ls = lines(p)
    ls.insert(i + 1, rehash(forged))
    write_lines(p, ls)
    rechain(signed_log, p, i + 1)  # renumber and re-hash everything after it
    cp = find(signed_log, lambda o: o["kind"] == "checkpoint" and o["seq"] > obj["seq"])
    bad(
        check(signed_log, key),
        cp[0].name,
        cp[1] + 1,
        cp[2]["seq"],
        "checkpoint signature does not verify",
    )


def test_reordered_entries(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = mid_event(signed_log)
    ls = lines(p)
    ls[i], ls[i + 1] = ls[i + 1], ls[i]
    write_lines(p, ls)
    bad(
        check(signed_log, key),
        p.name,
        i + 1,
        obj["seq"] + 1,
        f"seq {obj['seq'] + 1} follows seq {obj['seq'] - 1}: 1 entry is missing here "
        "(deleted, truncated or moved)",
    )


def test_reformatted_line(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = find(signed_log, is_event, 5)
    ls = lines(p)
    ls[i] = json.dumps(obj, sort_keys=True).encode() + b"\n"  # same JSON, spaces added
    write_lines(p, ls)
    bad(check(signed_log, key), p.name, i + 1, obj["seq"], "not in canonical form")


def test_garbage_line(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, _ = find(signed_log, is_event, 5)
    ls = lines(p)
    ls[i] = b"hello\n"
    write_lines(p, ls)
    bad(check(signed_log, key), p.name, i + 1, None, "not valid JSON")


def test_lines_cut_from_the_middle_of_a_file(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p = files(signed_log)[1]
    ls = lines(p)
    first_cut = json.loads(ls[3])["seq"]
    write_lines(p, ls[:3] + ls[8:])
    bad(check(signed_log, key), p.name, 4, first_cut + 5, "5 entries are missing")


def test_file_truncated_mid_line_inside_the_log(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p = files(signed_log)[0]
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])
    n = len(lines(p))
    bad(check(signed_log, key), p.name, n, None, "partial line inside the log")


def test_forged_checkpoint_signature(signed_log: Path, key: crypto.PrivateKey) -> None:
    p, i, obj = find(signed_log, lambda o: o["kind"] == "checkpoint", 1)
    # A valid signature, by a key we know, but over other bytes.
    obj["sig"] = base64.b64encode(key.sign(b"something else")).decode()
    ls = lines(p)
    ls[i] = rehash(obj)
    write_lines(p, ls)
    rechain(signed_log, p, i)
    bad(
        check(signed_log, key),
        p.name,
        i + 1,
        obj["seq"],
        "checkpoint signature does not verify",
    )


def test_checkpoint_signed_by_an_unknown_key(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p, i, obj = find(signed_log, lambda o: o["kind"] == "checkpoint", 1)
    mallory = make_key()
    obj.pop("hash")
    obj.pop("sig")
    obj["data"]["key_id"] = mallory.id
    obj["sig"] = base64.b64encode(mallory.sign(crypto.canonical_json(obj))).decode()
    ls = lines(p)
    ls[i] = rehash(obj)
    write_lines(p, ls)
    rechain(signed_log, p, i)
    bad(
        check(signed_log, key), p.name, i + 1, obj["seq"], f"unknown key '{mallory.id}'"
    )


def test_deleted_middle_file(signed_log: Path, key: crypto.PrivateKey) -> None:
    fs = files(signed_log)
    fs[1].unlink()
    bad(
        check(signed_log, key),
        fs[2].name,
        1,
        json.loads(lines(fs[0])[-1])["seq"] + 1,
        "audit-000002.jsonl is missing before this file",
    )


def test_deleted_first_file(signed_log: Path, key: crypto.PrivateKey) -> None:
    fs = files(signed_log)
    fs[0].unlink()
    bad(check(signed_log, key), fs[1].name, 1, 1, "audit-000001.jsonl is missing")


def test_first_file_renumbered_away(signed_log: Path, key: crypto.PrivateKey) -> None:
    fs = files(signed_log)
    fs[0].unlink()
    for n, p in enumerate(fs[1:], 1):
        p.rename(signed_log / audit.file_name(n))
    first_seq = json.loads(lines(files(signed_log)[0])[0])["seq"]
    bad(
        check(signed_log, key),
        audit.file_name(1),
        1,
        first_seq,
        "starts at seq",
    )


def test_deleted_last_file(signed_log: Path, key: crypto.PrivateKey) -> None:
    fs = files(signed_log)
    fs[-1].unlink()
    last = json.loads(lines(fs[-2])[-1])
    bad(
        check(signed_log, key),
        fs[-1].name,
        None,
        last["seq"] + 1,
        "ends with a rotation checkpoint",
    )


def test_truncated_end_after_a_clean_shutdown(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 20)
    (p,) = files(logdir)
    ls = lines(p)
    write_lines(p, ls[:-3])
    bad(
        check(logdir, key),
        p.name,
        len(ls) - 2,
        len(ls) - 2,
        f"the log ends at seq {len(ls) - 3} but the head signed at a clean shutdown "
        f"(audit-head.json) is seq {len(ls)}",
    )


def test_truncation_found_on_reopen_stays_on_record(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 20)
    (p,) = files(logdir)
    ls = lines(p)
    write_lines(p, ls[:-3])
    make_log(logdir, key, 5)  # the gateway restarts; its checkpoints renew the head
    objs = [o for _, _, o in entries(logdir)]
    n = len(ls) - 3
    rec = objs[n]
    assert (rec["kind"], rec["outcome"]) == ("log_recovered", "failed")
    assert rec["data"]["reason"] == "truncated"
    assert rec["data"]["head_seq"] == len(ls)
    assert objs[n + 1]["kind"] == "checkpoint"
    assert objs[n + 1]["data"]["reason"] == "recovered"
    bad(
        check(logdir, key),
        p.name,
        n + 1,
        n + 1,
        f"the writer found the log shorter than its signed head (seq {len(ls)})",
    )


def test_deleted_head_found_on_reopen_stays_on_record(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 20)
    (logdir / audit.HEAD_FILE).unlink()
    make_log(logdir, key, 5)
    r = check(logdir, key)
    assert r.ok
    (w,) = r.warnings
    assert "recorded: audit-head.json was missing when the log was opened" in w.reason


def test_all_files_deleted_but_the_head_is_found_on_reopen(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 20)
    for p in files(logdir):
        p.unlink()
    make_log(logdir, key, 5)
    bad(check(logdir, key), audit.file_name(1), 1, 1, "shorter than its signed head")


def test_truncated_end_after_a_crash_is_only_a_warning(
    logdir: Path, keyfiles: tuple[Path, Path]
) -> None:
    keyfile, pub = keyfiles
    crash_run(logdir, keyfile, 25)
    p = files(logdir)[-1]
    write_lines(p, lines(p)[:-2])
    r = verify(logdir, [crypto.load_public_key(pub)])
    assert r.ok, r.report()
    (w,) = r.warnings
    assert (
        "4 entries (seq 23..26) after the last checkpoint are not covered" in w.reason
    )


def test_truncated_end_past_the_last_checkpoint(
    logdir: Path, keyfiles: tuple[Path, Path]
) -> None:
    keyfile, pub = keyfiles
    crash_run(logdir, keyfile, 25)
    p = files(logdir)[-1]
    write_lines(p, lines(p)[:19])
    bad(
        verify(logdir, [crypto.load_public_key(pub)]),
        p.name,
        20,
        20,
        "the log ends at seq 19 but the head signed (audit-head.json) is seq 22",
    )


def test_forged_head(signed_log: Path, key: crypto.PrivateKey) -> None:
    hp = signed_log / audit.HEAD_FILE
    head = hp.read_bytes()
    hp.write_bytes(head.replace(b'"final":true', b'"final":false'))
    seq = json.loads(head)["seq"]
    bad(check(signed_log, key), audit.HEAD_FILE, 1, seq, "the signed head is invalid")


def test_head_from_another_log(
    signed_log: Path, key: crypto.PrivateKey, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    make_log(other, key, 200)
    shutil.copy(other / audit.HEAD_FILE, signed_log / audit.HEAD_FILE)
    r = check(signed_log, key)
    assert not r.ok
    assert r.error is not None
    assert "the log ends at seq" in r.error.reason or "does not match" in r.error.reason


def test_deleted_head_is_a_warning(signed_log: Path, key: crypto.PrivateKey) -> None:
    (signed_log / audit.HEAD_FILE).unlink()
    r = check(signed_log, key)
    assert r.ok
    assert [w.file for w in r.warnings] == [audit.HEAD_FILE]


def test_empty_or_missing_directory(tmp_path: Path, key: crypto.PrivateKey) -> None:
    r = check(tmp_path / "nothing", key)
    assert not r.ok
    assert r.error is not None
    assert "the log has no entries" in r.error.reason


def test_key_rotation_needs_the_retired_key_to_verify(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    new = make_key()
    current = [key]
    log = AuditLog.open(logdir, node="gw1", signer=lambda: current[0])
    fill(log, 3)
    log.checkpoint()
    current[0] = new
    log.append("key_rotated", old_key_id=key.id, new_key_id=new.id)
    log.close()
    assert verify(logdir, [key.public, new.public]).ok
    cp = find(logdir, lambda o: o["kind"] == "checkpoint")
    bad(
        verify(logdir, [new.public]), cp[0].name, cp[1] + 1, cp[2]["seq"], "unknown key"
    )


def test_problem_text_names_file_line_and_seq(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    p, i, obj = find(signed_log, is_event, 3)
    ls = lines(p)
    ls[i] = ls[i].replace(b"acme", b"acmf", 1)
    write_lines(p, ls)
    r = check(signed_log, key)
    assert str(r.error).startswith(f"{p.name}:{i + 1} (seq {obj['seq']}): ")
    assert r.summary() == f"{signed_log}/{r.error}"


# -- export and third-party verification ---------------------------------------------------------


def third_party_verify(text: str, pub: crypto.PublicKey) -> tuple[int, int]:
    """The docs' algorithm, with gmssl's independent SM3: (last seq, signed seq)."""
    seq = prev = None
    signed = 0
    for raw in text.encode().splitlines(keepends=True):
        assert raw.endswith(b"\n")
        e = json.loads(raw)
        hashed = raw[:-1].replace(b',"hash":"%s"' % e["hash"].encode(), b"", 1)
        assert gm_sm3.sm3_hash(gm_func.bytes_to_list(hashed)) == e["hash"]
        if seq is not None:
            assert (e["seq"], e["prev"]) == (seq + 1, prev)
        if e["kind"] == "checkpoint":
            assert e["data"]["key_id"] == pub.id
            data = re.sub(rb',"sig":"[A-Za-z0-9+/=]+"', b"", hashed, count=1)
            assert pub.verify(data, base64.b64decode(e["sig"]))
            signed = e["seq"]
        seq, prev = e["seq"], e["hash"]
    assert seq is not None
    return seq, signed


def test_export_is_the_log_byte_for_byte(
    signed_log: Path, key: crypto.PrivateKey
) -> None:
    everything = "".join(export(signed_log))
    assert everything.encode() == b"".join(p.read_bytes() for p in files(signed_log))
    last, signed = third_party_verify(everything, key.public)
    assert last == signed == check(signed_log, key).last_seq
    full = list(export(signed_log))
    part = list(export(signed_log, since_seq=40))
    assert part == [line for line in full if json.loads(line)["seq"] >= 40]
    assert json.loads(part[0])["seq"] == 40
    assert all(line.endswith("\n") for line in part)
    assert list(export(signed_log, since_seq=10_000)) == []
    # An incremental pull continues the chain of the previous one.
    assert json.loads(part[0])["prev"] == json.loads(full[38])["hash"]


def test_export_stops_before_a_partial_line(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    make_log(logdir, key, 5)
    with files(logdir)[-1].open("ab") as f:
        f.write(b'{"actor":"sys')
    out = list(export(logdir, since_seq=1))
    assert len(out) == 7


def test_openssl_cli_verifies_a_checkpoint(
    openssl: str, signed_log: Path, key: crypto.PrivateKey, tmp_path: Path
) -> None:
    work = tmp_path / "third-party"
    work.mkdir()
    (work / "pub.pem").write_bytes(key.public.pem())
    _, _, cp = find(signed_log, lambda o: o["kind"] == "checkpoint", 2)
    line = crypto.canonical_json(cp)
    (work / "sig.der").write_bytes(base64.b64decode(cp["sig"]))
    hashed = line.replace(b',"hash":"%s"' % cp["hash"].encode(), b"", 1)
    data = re.sub(rb',"sig":"[A-Za-z0-9+/=]+"', b"", hashed, count=1)
    assert data == crypto.canonical_json(
        {k: v for k, v in cp.items() if k not in ("hash", "sig")}
    )
    (work / "data").write_bytes(data)
    cmd = "openssl dgst -sm3 -verify pub.pem -sigopt distid:1234567812345678 -signature sig.der data"
    res = subprocess.run(
        [openssl, *cmd.split()[1:]], cwd=work, capture_output=True, check=False
    )
    assert res.returncode == 0, res.stderr
    assert b"Verified OK" in res.stdout
    (work / "data").write_bytes(data.replace(b'"final":false', b'"final":true'))
    res = subprocess.run(
        [openssl, *cmd.split()[1:]], cwd=work, capture_output=True, check=False
    )
    assert res.returncode != 0
    # The entry hash is plain SM3 over the line without its hash member.
    out = subprocess.run(
        [openssl, "dgst", "-sm3", "-r"], input=hashed, capture_output=True, check=True
    ).stdout
    assert out.split()[0].decode() == cp["hash"]


def doc_block(lang: str, marker: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    for m in re.finditer(rf"```{lang}\n(.*?)```", text, re.S):
        if marker in m.group(1):
            return m.group(1)
    raise AssertionError(f"no {lang} block with {marker!r} in {DOC}")


def test_docs_openssl_recipe_runs_as_written(
    openssl: str, signed_log: Path, key: crypto.PrivateKey
) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    p, i, cp = find(signed_log, lambda o: o["kind"] == "checkpoint", 1)
    (signed_log / "pub.pem").write_bytes(key.public.pem())
    script = doc_block("sh", "openssl dgst -sm3 -verify")
    script = script.replace("'Np'", f"'{i + 1}p'").replace("audit-000001.jsonl", p.name)
    env = dict(os.environ, PATH=f"{Path(openssl).parent}:{os.environ.get('PATH', '')}")
    res = subprocess.run(
        [bash, "-euo", "pipefail", "-c", script],
        cwd=signed_log,
        capture_output=True,
        check=False,
        env=env,
    )
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    assert out.startswith(cp["hash"] + " ")
    assert "Verified OK" in out


def test_docs_python_recipe_reverifies_an_export(
    openssl: str, signed_log: Path, key: crypto.PrivateKey, tmp_path: Path
) -> None:
    script = tmp_path / "verify_export.py"
    script.write_text(doc_block("python", "# verify_export.py"), encoding="utf-8")
    pem = tmp_path / "pub.pem"
    pem.write_bytes(key.public.pem())
    exp = tmp_path / "export.jsonl"
    exp.write_text("".join(export(signed_log)), encoding="utf-8")
    env = dict(os.environ, PATH=f"{Path(openssl).parent}:{os.environ.get('PATH', '')}")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), str(exp), str(pem)],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    res = run()
    assert res.returncode == 0, res.stderr
    last = check(signed_log, key).last_seq
    assert res.stdout.startswith(f"OK: up to seq {last}, signed up to seq {last}")
    # Tampered export: one count changed.
    ls = exp.read_text(encoding="utf-8").splitlines(keepends=True)
    n = next(n for n in range(10, len(ls)) if '"records":' in ls[n])
    ls[n] = ls[n].replace('"records":', '"records":9', 1)
    exp.write_text("".join(ls), encoding="utf-8")
    res = run()
    assert res.returncode == 1
    assert f"line {n + 1} " in res.stderr
    assert "hash does not match" in res.stderr


def test_async_open_and_close_from_a_running_loop(
    logdir: Path, key: crypto.PrivateKey
) -> None:
    async def main() -> int:
        log = await AuditLog.aopen(logdir, node="gw1", signer=key)
        log.append("node_started", version="0.1.0")
        seq = await log.flush()
        await log.aclose()
        return seq

    assert asyncio.run(main()) == 2
    assert check(logdir, key).clean_shutdown
