"""Tamper-evident audit log: append-only JSON Lines, chained with SM3, with
checkpoints signed by the node's SM2 key.

Every entry is one line of canonical JSON (RFC 8785 for our value types) and
names the hash of the entry before it, so editing, deleting, inserting or
reordering any line breaks the chain. Anyone can recompute SM3 hashes, so a
*checkpoint* entry (every N entries, every T seconds, at file rotation and at
clean shutdown) is signed with SM2: rewriting the chain after an edit breaks
the next checkpoint's signature. The latest checkpoint is also kept in
``audit-head.json``, so removing entries from the end is detected too.
docs/audit.md describes the format and how to verify it with SM3 and the
OpenSSL CLI alone.

Files: ``audit-000001.jsonl``, ``audit-000002.jsonl``, ... rotated by size; the
chain runs across them. Several processes (the gateway and the CLI) may append
to the same directory: each batch is written under an exclusive ``flock``.

Use from asyncio::

    log = await AuditLog.aopen(directory, node="gw1", signer=ring_current)
    log.append("input_accepted", actor="source:acme", remote="10.0.0.5:51234",
               source="acme", token_id=tid, intake_id=iid, records=12)
    await log.flush()          # only when the caller needs durability now
    await log.aclose()         # final signed checkpoint = clean shutdown

``append`` never blocks: it validates the fields, stamps the time and queues
the event. One writer thread writes everything queued as one batch, with one
``fsync`` per batch (``fsync="batch"``), per entry (``"entry"``) or only at
checkpoints (``"off"``). The CLI uses ``append_sync``. ``verify`` and ``export``
only read.

Entries carry ids, digests, counts, codes and names from the config, never
payload contents or secrets: field names come from ``FIELDS`` (a closed list)
and event types from ``KINDS``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import fcntl
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from crypto import PrivateKey, PublicKey, canonical_json, sm3
from gateway.errors import GatewayError

__all__ = [
    "ACTOR_TYPES",
    "FIELDS",
    "FORMAT_VERSION",
    "GENESIS",
    "HEAD_FILE",
    "KINDS",
    "OUTCOMES",
    "AuditError",
    "AuditLog",
    "FsyncPolicy",
    "Problem",
    "VerifyResult",
    "export",
    "file_name",
    "recent",
    "verify",
]

log = logging.getLogger("gateway.audit")

FORMAT_VERSION = 1
GENESIS = "0" * 64  # the ``prev`` of entry 1
HEAD_FILE = "audit-head.json"
LOCK_FILE = ".audit.lock"
_HEAD_TMP = ".audit-head.json.tmp"
_FILE_RE = re.compile(r"^audit-(\d{6,})\.jsonl$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_BEIJING = timezone(timedelta(hours=8))
_MAX_INT = 2**53 - 1  # exact in every JSON implementation
_MAX_STR = 512
_MAX_DETAIL = 300
_MAX_LIST = 256
_READ_CHUNK = 1 << 16

FsyncPolicy = Literal["entry", "batch", "off"]

# -- vocabulary ---------------------------------------------------------------

OUTCOMES = ("ok", "refused", "failed")
"""``ok``: done. ``refused``: we said no (bad token, bad input, quota).
``failed``: we tried and it did not work (peer down, bad receipt)."""

ACTOR_TYPES = ("system", "source", "operator", "peer")
"""``actor`` is ``system`` or ``TYPE:NAME``: ``source:acme`` (a local system,
with ``token_id``), ``operator:alice`` (CLI or admin API, with ``user``),
``peer:hub-bj`` (another node: a sender we receive from, a hub we send to)."""

KINDS: Mapping[str, tuple[str, str]] = {
    # kind: (default outcome, meaning)
    # intake
    "input_accepted": ("ok", "an input was stored durably and answered 202"),
    "input_refused": ("refused", "an input was refused (4xx or 503); see code"),
    "input_quarantined": ("refused", "a refused input's bytes were kept in quarantine"),
    "input_throttled": ("refused", "an input was refused with 503: spool over quota"),
    "auth_failed": ("refused", "missing, malformed or unknown bearer token"),
    "records_rejected": ("refused", "records of an accepted input were rejected"),
    "intake_worker_died": (
        "failed",
        "an intake worker process died; the inputs it had were retried one by one",
    ),
    # delivery
    "envelope_sealed": ("ok", "records were sealed into an envelope"),
    "send_attempt": ("ok", "one attempt to send an envelope (outcome ok or failed)"),
    "receipt_verified": ("ok", "a signed receipt was verified and stored"),
    "receipt_invalid": ("failed", "a receipt did not verify or did not match"),
    "dead_lettered": ("failed", "an envelope was given up and dead-lettered"),
    "envelope_resealed": ("ok", "records of a too-old envelope were sealed anew"),
    "receiver_rejected": (
        "failed",
        "the receiver's receipt refused records; they were dead-lettered",
    ),
    "hold_alarm": (
        "failed",
        "records waited for their parent longer than ordering.hold_alarm_s",
    ),
    "held_released": (
        "ok",
        "an operator declared parents present; records held for them were released",
    ),
    # hub side
    "envelope_received": ("ok", "an envelope was received (ok or refused)"),
    "receipt_issued": ("ok", "we signed and returned a receipt"),
    # file transports (SFTP servers, drop folders, hub envelope folders)
    "file_claimed": ("ok", "a file source renamed a complete file into processing/"),
    "file_read": ("ok", "a file was read in full (its size and SM3)"),
    "file_skipped": ("ok", "a file repeated an input already stored (same SM3)"),
    "file_archived": ("ok", "a handled file was moved to done/ or error/, or deleted"),
    "transport_failed": ("failed", "an SFTP server or folder failed (connect, I/O)"),
    "file_uploaded": ("ok", "an envelope file was uploaded (.part, fsync, rename)"),
    "receipt_file_read": ("ok", "a receipt file was read and removed"),
    "refusal_file_read": ("refused", "a hub's .error answer file was read and removed"),
    "receipt_file_written": ("ok", "(hub) a receipt file was written"),
    "refusal_file_written": ("refused", "(hub) an .error answer file was written"),
    "origins_pruned": ("ok", "(hub) origin proofs older than the retention deleted"),
    "spool_pruned": (
        "ok",
        "inputs delivered everywhere longer ago than node.keep_delivered_days deleted",
    ),
    # replay and operators
    "input_replayed": ("ok", "a quarantined input was re-processed"),
    "dead_redriven": ("ok", "dead-lettered items were queued again"),
    "operator_action": ("ok", "any operator command (CLI) or admin API action"),
    # configuration and keys
    "config_loaded": ("ok", "configuration loaded at start-up"),
    "config_reloaded": ("ok", "configuration reloaded (SIGHUP); failed if kept old"),
    "keys_loaded": ("ok", "our SM2 keys and peer keys were loaded"),
    "key_rotated": ("ok", "the signing key changed"),
    "key_expiring": ("ok", "a key is within its expiry warning window"),
    # life cycle
    "node_started": ("ok", "the node started serving"),
    "node_stopping": ("ok", "the node began a clean shutdown"),
    # the audit log itself
    "log_opened": ("ok", "a process opened the audit log for writing"),
    "log_recovered": ("ok", "on open: a torn line was cut off, or damage was found"),
    "entries_lost": ("failed", "events were dropped: the audit queue was full"),
    "checkpoint": ("ok", "signed checkpoint over the chain up to this entry"),
}

_S, _I, _B, _L, _H, _C = "str", "int", "bool", "list[str]", "sm3", "counts"

FIELDS: Mapping[str, tuple[str, str]] = {
    # who and where
    "source": (_S, "source (local system) name from the config"),
    "destination": (_S, "destination name from the config"),
    "token_id": (_S, "non-secret token name (tok-...), never the token"),
    "user": (_S, "operator user (CLI login user, admin API user)"),
    "peer": (_S, "peer node name or SM2 key id"),
    # ids
    "intake_id": (_S, "id of an input (the 202 answer's intake_id)"),
    "idempotency_key": (_S, "the producer's Idempotency-Key"),
    "envelope_id": (_S, "envelope id"),
    "envelope_ids": (_L, "envelope ids (bulk operator actions)"),
    "dataset": (_S, "national data-set name"),
    "target": (_S, "id an operator action applies to"),
    # SM3 digests, 64 lowercase hex
    "input_sm3": (_H, "SM3 of the input's raw bytes"),
    "envelope_sm3": (_H, "SM3 of the envelope bytes sent or received"),
    "manifest_sm3": (_H, "SM3 of the envelope's signed manifest"),
    "receipt_sm3": (_H, "SM3 of the receipt bytes"),
    "config_sm3": (_H, "SM3 of the configuration file"),
    "dropped_sm3": (_H, "SM3 of the torn bytes cut off (log_recovered)"),
    "note_sm3": (_H, "SM3 of the .error.json note written beside a file"),
    # keys
    "key_id": (_S, "SM2 key id (first 16 bytes of SM3(SPKI), hex)"),
    "key_ids": (_L, "SM2 key ids"),
    "old_key_id": (_S, "signing key id before a rotation"),
    "new_key_id": (_S, "signing key id after a rotation"),
    "not_after": (_S, "a key's last day, YYYY-MM-DD"),
    # counts and numbers
    "records": (_I, "number of records"),
    "rejected": (_I, "number of rejected records"),
    "quarantined": (_I, "number of quarantined inputs or records"),
    "duplicates": (_I, "number of duplicate records"),
    "bytes": (_I, "size in bytes"),
    "attempt": (_I, "attempt number, from 1"),
    "status": (_I, "HTTP status code"),
    "duration_ms": (_I, "duration in milliseconds"),
    "retry_after_s": (_I, "Retry-After seconds"),
    "dropped": (_I, "number of events dropped (entries_lost)"),
    "dropped_bytes": (_I, "number of torn bytes cut off (log_recovered)"),
    "head_seq": (_I, "seq named by audit-head.json (log_recovered)"),
    "line": (_I, "line number in an audit file"),
    "pid": (_I, "process id"),
    "proofs": (_I, "number of origin proofs"),
    "inputs": (_I, "number of inputs"),
    "restarts": (_I, "how many times the intake workers were restarted"),
    "envelopes": (_I, "number of envelopes"),
    "rejected_by": (_C, "rejected records by reason code"),
    # flags
    "permanent": (_B, "a failure will not be retried"),
    "repeat": (_B, "a repeated request got the first answer again"),
    "final": (_B, "checkpoint: written at a clean shutdown"),
    # what and how
    "reason": (
        _S,
        "short machine-readable reason (see docs/audit.md)",
    ),
    "detail": (
        _S,
        f"short fixed sentence for humans, cut at {_MAX_DETAIL} chars; never data",
    ),
    "command": (_S, "operator command, e.g. 'quarantine replay'"),
    "method": (_S, "HTTP method of an admin API call"),
    "path": (_S, "HTTP path of an admin API call"),
    "transport": (_S, "http, sftp or directory"),
    "content_type": (_S, "media type of an input"),
    "config_path": (_S, "configuration file path"),
    "file": (_S, "audit file name (log_recovered)"),
    "file_name": (_S, "a transported file's name as its producer gave it"),
    "file_path": (
        _S,
        "a transported file's path on the server or disk, after the step",
    ),
    "version": (_S, "software version"),
}

_FIELD_TYPE = {name: spec[0] for name, spec in FIELDS.items()}

_TOP = frozenset(
    {"v", "seq", "ts", "ts_bj", "node", "kind", "actor", "remote", "outcome"}
    | {"code", "data", "prev", "hash"}
)


class AuditError(GatewayError):
    """The audit log cannot be written, resumed or read."""

    code = "E_AUDIT"


class _BadEntry(ValueError):
    """A line or checkpoint that does not check out; the message says why."""


# -- time ---------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _TimeFormat:
    """``ts`` and ``ts_bj`` strings; the part down to the second is cached."""

    __slots__ = ("_bj", "_sec", "_utc")

    def __init__(self) -> None:
        self._sec: tuple[int, int, int, int] | None = None
        self._utc = self._bj = ""

    def __call__(self, t: datetime) -> tuple[str, str]:
        u = t.astimezone(UTC)
        sec = (u.toordinal(), u.hour, u.minute, u.second)
        if sec != self._sec:
            self._sec = sec
            self._utc = u.strftime("%Y-%m-%dT%H:%M:%S")
            self._bj = u.astimezone(_BEIJING).strftime("%Y-%m-%dT%H:%M:%S")
        frac = f".{u.microsecond:06d}"
        return f"{self._utc}{frac}Z", f"{self._bj}{frac}+08:00"


# The same bytes as crypto.canonical_json, without building an encoder per call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


# -- field validation (in the caller's thread: mistakes raise where they are made)


def _clean(s: str) -> str:
    """No control characters or lone surrogates: canonical JSON stays JCS."""
    return _UNSAFE_CHARS.sub("\ufffd", s) if _UNSAFE_CHARS.search(s) else s


def _check_str(name: str, v: object) -> str:
    if not isinstance(v, str):
        raise TypeError(f"audit field {name!r}: expected str, got {type(v).__name__}")
    if name == "detail" and len(v) > _MAX_DETAIL:
        v = v[: _MAX_DETAIL - 1] + "…"
    elif len(v) > _MAX_STR:
        raise ValueError(f"audit field {name!r}: longer than {_MAX_STR} characters")
    return _clean(v)


def _check_int(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"audit field {name!r}: expected int, got {type(v).__name__}")
    if not -_MAX_INT <= v <= _MAX_INT:
        raise ValueError(f"audit field {name!r}: integer out of range")
    return v


def _check_field(name: str, v: object) -> object:
    spec = FIELDS.get(name)
    if spec is None:
        raise ValueError(
            f"audit field {name!r} is not in monitoring.audit.FIELDS "
            "(audit entries carry ids, digests, counts and codes only)"
        )
    typ = spec[0]
    if typ == _S:
        return _check_str(name, v)
    if typ == _I:
        return _check_int(name, v)
    if typ == _B:
        if not isinstance(v, bool):
            raise TypeError(f"audit field {name!r}: expected bool")
        return v
    if typ == _H:
        if not isinstance(v, str) or not _HEX64.match(v):
            raise ValueError(f"audit field {name!r}: expected 64 lowercase hex digits")
        return v
    if typ == _L:
        if not isinstance(v, list | tuple) or len(v) > _MAX_LIST:
            raise TypeError(f"audit field {name!r}: expected a list of str")
        return [_check_str(name, x) for x in v]
    # counts
    if not isinstance(v, Mapping) or len(v) > _MAX_LIST:
        raise TypeError(f"audit field {name!r}: expected a mapping of str to int")
    return {_check_str(name, k): _check_int(name, n) for k, n in v.items()}


def _check_actor(actor: str) -> str:
    if actor == "system":
        return actor
    typ, sep, name = actor.partition(":")
    if not sep or typ not in ACTOR_TYPES or typ == "system" or not name:
        raise ValueError(
            f"audit actor {actor!r}: expected 'system' or one of "
            "'source:NAME', 'operator:USER', 'peer:NAME'"
        )
    if len(actor) > _MAX_STR:
        raise ValueError("audit actor: too long")
    return _clean(actor)


@dataclass(slots=True)
class _Item:
    """One queued event (or a checkpoint request: kind == 'checkpoint')."""

    when: datetime
    kind: str
    actor: str = "system"
    remote: str | None = None
    outcome: str = "ok"
    code: str | None = None
    data: dict[str, object] = field(default_factory=dict)


def _make_item(
    when: datetime,
    kind: str,
    actor: str,
    remote: str | None,
    outcome: str | None,
    code: str | None,
    fields: Mapping[str, object],
) -> _Item:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"audit kind {kind!r} is not in monitoring.audit.KINDS")
    if kind == "checkpoint":
        raise ValueError("checkpoints are written by the audit log itself")
    if outcome is None:
        outcome = spec[0]
    elif outcome not in OUTCOMES:
        raise ValueError(f"audit outcome {outcome!r}: expected one of {OUTCOMES}")
    if code is not None and not _CODE_RE.match(code):
        raise ValueError(f"audit code {code!r}: expected a short stable code")
    if remote is not None:
        remote = _check_str("remote", remote)
    data: dict[str, object] = {}
    for k, v in fields.items():
        if v is None:
            continue
        typ = _FIELD_TYPE.get(k)
        # Fast paths for the common cases; everything else is checked in full.
        if typ is _S and type(v) is str and len(v) <= _MAX_STR:
            data[k] = _clean(v)
        elif typ is _I and type(v) is int and -_MAX_INT <= v <= _MAX_INT:
            data[k] = v
        else:
            data[k] = _check_field(k, v)
    if actor != "system":
        actor = _check_actor(actor)
    return _Item(
        when=when,
        kind=kind,
        actor=actor,
        remote=remote,
        outcome=outcome,
        code=code,
        data=data,
    )


# -- entries --------------------------------------------------------------------


def file_name(index: int) -> str:
    return f"audit-{index:06d}.jsonl"


def _list_files(directory: Path) -> list[tuple[int, Path]]:
    try:
        names = [p.name for p in directory.iterdir()]
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        m = _FILE_RE.match(n)
        if m:
            out.append((int(m.group(1)), directory / n))
    out.sort()
    return out


def _entry_hash(entry: Mapping[str, object]) -> str:
    """SM3 over the canonical bytes of the entry without its ``hash``."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return sm3(canonical_json(body)).hex()


def _signed_bytes(entry: Mapping[str, object]) -> bytes:
    """What a checkpoint's SM2 signature covers: the entry without hash and sig."""
    return canonical_json({k: v for k, v in entry.items() if k not in ("hash", "sig")})


def _parse_line(raw: bytes) -> dict[str, Any]:
    """Parse and check one line (without its newline); ValueError says why not."""
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadEntry("not valid JSON (damaged or edited)") from exc
    if not isinstance(obj, dict):
        raise _BadEntry("not a JSON object")
    extra = set(obj) - _TOP - ({"sig"} if obj.get("kind") == "checkpoint" else set())
    missing = _TOP - set(obj)
    if missing or extra:
        what = (
            f"missing {sorted(missing)}" if missing else f"unexpected {sorted(extra)}"
        )
        raise _BadEntry(f"not an audit entry ({what})")
    if obj["v"] != FORMAT_VERSION:
        raise _BadEntry(f"unknown format version {obj['v']!r}")
    seq = obj["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise _BadEntry("seq is not a positive integer")
    for k in ("hash", "prev"):
        if not isinstance(obj[k], str) or not _HEX64.match(obj[k]):
            raise _BadEntry(f"{k} is not an SM3 hash in hex")
    if not isinstance(obj["data"], dict) or not isinstance(obj["kind"], str):
        raise _BadEntry("kind or data has the wrong type")
    try:
        canonical = canonical_json(obj)
    except (ValueError, TypeError) as exc:
        raise _BadEntry("not representable as canonical JSON") from exc
    if canonical != raw:
        raise _BadEntry("not in canonical form (the line was edited)")
    if _entry_hash(obj) != obj["hash"]:
        raise _BadEntry(
            "hash does not match the entry's contents (the entry was edited)"
        )
    return obj


def _check_signature(obj: Mapping[str, Any], keys: Mapping[str, PublicKey]) -> None:
    """ValueError unless ``obj`` is a checkpoint signed by one of ``keys``."""
    data = obj["data"]
    kid = data.get("key_id")
    sig_b64 = obj.get("sig")
    if not isinstance(kid, str) or not isinstance(sig_b64, str):
        raise _BadEntry("checkpoint without key_id or sig (forged)")
    key = keys.get(kid)
    if key is None:
        raise _BadEntry(f"checkpoint signed by unknown key {kid!r} (forged?)")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except binascii.Error as exc:
        raise _BadEntry("checkpoint signature is not base64 (forged)") from exc
    if not key.verify(_signed_bytes(obj), sig):
        raise _BadEntry(
            "checkpoint signature does not verify: forged, or entries before it "
            "were altered and re-chained"
        )


def _scan_tail(fd: int, size: int) -> tuple[int, bytes | None]:
    """(offset just past the last newline, last complete line or None)."""
    pos = size
    buf = b""
    while pos > 0 and buf.count(b"\n") < 2:
        n = min(_READ_CHUNK, pos)
        pos -= n
        buf = os.pread(fd, n, pos) + buf
    last_nl = buf.rfind(b"\n")
    if last_nl < 0:
        return 0, None
    start = buf.rfind(b"\n", 0, last_nl) + 1
    return pos + last_nl + 1, buf[start:last_nl]


def _count_lines(fd: int, end: int) -> int:
    n, pos = 0, 0
    while pos < end:
        chunk = os.pread(fd, min(1 << 20, end - pos), pos)
        if not chunk:
            break
        n += chunk.count(b"\n")
        pos += len(chunk)
    return n


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- the files on disk (one thread at a time) --------------------------------------


class _Chain:
    """Appends entries to the files under an exclusive flock; not thread-safe."""

    def __init__(
        self,
        directory: Path,
        *,
        node: str,
        signer: Callable[[], PrivateKey],
        fsync: FsyncPolicy,
        max_file_bytes: int,
        checkpoint_every: int,
    ) -> None:
        self.dir = directory
        self.node = node
        self.signer = signer
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self.checkpoint_every = checkpoint_every
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        self._lock_fd = os.open(
            directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640
        )
        self.index = 0
        self.fd = -1
        self.size = 0  # bytes committed in the current file
        self.seq = 0
        self.head = GENESIS
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.items_done = 0  # items of the current write() that are committed
        self._times = _TimeFormat()
        self._recovered: list[tuple[str, dict[str, object]]] = []  # outcome, data
        self._opened = False
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._buf_items = 0
        self._buf_recovered = False
        self._head_line: bytes | None = None
        self._must_sync = False
        self._committed = (0, GENESIS, 0)

    # locking and resuming

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _open_file(self, index: int, *, create: bool) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(self.dir / file_name(index), flags, 0o640)
        if create:
            _fsync_dir(self.dir)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.index = fd, index
        self.size = os.fstat(fd).st_size

    def resync(self) -> None:
        """Catch up with the files: first open, another writer, or a failed write."""
        if (
            self.fd >= 0
            and os.fstat(self.fd).st_size == self.size
            and not (self.dir / file_name(self.index + 1)).exists()
        ):
            return
        files = _list_files(self.dir)
        if not files:
            self._open_file(1, create=True)
            self.seq, self.head = 0, GENESIS
            self._committed = (self.seq, self.head, self.since_checkpoint)
            if not self._opened:
                self._opened = True
                self._check_head([])
            return
        index, path = files[-1]
        if self.fd < 0 or index != self.index:
            self._open_file(index, create=False)
        last = self._tail_of(self.fd, path)
        self.size = os.fstat(self.fd).st_size
        # The last file may be empty (a crash right after rotating): the chain
        # then ends in an earlier file, whose own torn tail is cut too.
        j = len(files) - 1
        while last is None and j > 0:
            j -= 1
            pfd = os.open(files[j][1], os.O_RDWR | os.O_CLOEXEC)
            try:
                last = self._tail_of(pfd, files[j][1])
            finally:
                os.close(pfd)
        if last is None:
            if index != 1 or len(files) > 1:
                raise AuditError(
                    f"{path}: no audit entry found before it; the chain cannot be "
                    "resumed (run 'audit verify')"
                )
            self.seq, self.head = 0, GENESIS
        else:
            try:
                obj = _parse_line(last)
            except ValueError as exc:
                raise AuditError(
                    f"{files[j][1]}: the last entry is damaged ({exc}); the chain "
                    "cannot be resumed (run 'audit verify')"
                ) from exc
            self.seq, self.head = obj["seq"], obj["hash"]
        self._committed = (self.seq, self.head, self.since_checkpoint)
        if not self._opened:
            self._opened = True
            self._check_head(files[: j + 1] if last is not None else [])

    def _check_head(self, files: list[tuple[int, Path]]) -> None:
        """On open: is the log at least as long as its signed head says?

        ``files`` ends with the file that holds the last entry.
        """
        raw = _read_head(self.dir)
        if raw is None:
            # Any checkpoint wrote a head. A file before the last one ends with
            # a rotation checkpoint; otherwise look through the last one.
            has_checkpoint = len(files) > 1 or (
                len(files) == 1 and b'"kind":"checkpoint"' in files[0][1].read_bytes()
            )
            if has_checkpoint:
                self._record_finding(
                    "head_missing",
                    f"{HEAD_FILE} was missing when the log was opened (deleted?)",
                )
            return
        try:
            head = _parse_line(raw.removesuffix(b"\n"))
        except ValueError:
            self._record_finding(
                "head_invalid",
                f"{HEAD_FILE} did not check out when the log was opened (edited?)",
            )
            return
        if head["seq"] > self.seq:
            self._record_finding(
                "truncated",
                f"the log ended at seq {self.seq}, before its signed head: "
                "entries were removed from the end",
                head_seq=head["seq"],
            )

    def _record_finding(self, reason: str, detail: str, **more: object) -> None:
        log.error("Audit log damaged.", extra={"reason": reason, "detail": detail})
        self._recovered.append(("failed", {"reason": reason, "detail": detail, **more}))

    def _tail_of(self, fd: int, path: Path) -> bytes | None:
        """The last complete line of a file, after cutting a torn tail off."""
        size = os.fstat(fd).st_size
        complete, last = _scan_tail(fd, size)
        if complete < size:
            self._cut_torn(fd, path, complete, size)
        return last

    def _cut_torn(self, fd: int, path: Path, complete: int, size: int) -> None:
        fragment = os.pread(fd, size - complete, complete)
        line = _count_lines(fd, complete) + 1
        os.ftruncate(fd, complete)
        os.fsync(fd)
        log.warning(
            "Audit log: torn last line cut off.",
            extra={"file": path.name, "line": line, "bytes": len(fragment)},
        )
        self._recovered.append(
            (
                "ok",
                {
                    "reason": "torn",
                    "file": path.name,
                    "line": line,
                    "dropped_bytes": len(fragment),
                    "dropped_sm3": sm3(fragment).hex(),
                    "detail": "partial last line after a crash was cut off",
                },
            )
        )

    # building lines

    def _emit(self, item: _Item, *, checkpoint_key: PrivateKey | None = None) -> None:
        ts, ts_bj = self._times(item.when)
        entry: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "seq": self.seq + 1,
            "ts": ts,
            "ts_bj": ts_bj,
            "node": self.node,
            "kind": item.kind,
            "actor": item.actor,
            "remote": item.remote,
            "outcome": item.outcome,
            "code": item.code,
            "data": item.data,
            "prev": self.head,
        }
        if checkpoint_key is not None:
            sig = checkpoint_key.sign(canonical_json(entry))
            entry["sig"] = base64.b64encode(sig).decode("ascii")
        body = _ENCODER.encode(entry).encode("utf-8")
        digest = sm3(body).hex()
        # "hash" sorts right before "kind"; ',"kind":' cannot occur earlier (no
        # field is named kind, and quotes inside strings are escaped), so the
        # spliced line is exactly canonical_json(entry | {"hash": digest}).
        at = body.index(b',"kind":')
        line = b'%s,"hash":"%s"%s\n' % (body[:at], digest.encode(), body[at:])
        self._buf.append(line)
        self._buf_bytes += len(line)
        self.seq, self.head = entry["seq"], digest
        if checkpoint_key is not None:
            self._head_line = line
            self._must_sync = True
            self.since_checkpoint = 0
        else:
            self.since_checkpoint += 1

    def _emit_checkpoint(self, now: datetime, reason: str, *, final: bool) -> bool:
        try:
            key = self.signer()
        except GatewayError as exc:
            log.error(
                "Audit checkpoint skipped: no signing key.", extra={"error": str(exc)}
            )
            self.last_checkpoint = time.monotonic()  # try again an interval later
            return False
        data: dict[str, object] = {"key_id": key.id, "reason": reason, "final": final}
        self._emit(_Item(when=now, kind="checkpoint", data=data), checkpoint_key=key)
        return True

    def _emit_recovered(self, now: datetime) -> None:
        for outcome, data in self._recovered:
            item = _Item(when=now, kind="log_recovered", outcome=outcome, data=data)
            self._emit(item)
            self._buf_recovered = True
        if any(outcome != "ok" for outcome, _ in self._recovered):
            # Sign the finding at once, so that it cannot be cut off in turn.
            self._emit_checkpoint(now, "recovered", final=False)

    @property
    def committed_seq(self) -> int:
        return self._committed[0]

    # writing

    def _commit(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        head_line = self._head_line
        try:
            _write_all(self.fd, data)
            if self.fsync != "off" or self._must_sync:
                os.fsync(self.fd)
        except OSError:
            with suppress(OSError):
                os.ftruncate(self.fd, self.size)
            self.seq, self.head, self.since_checkpoint = self._committed
            self._buf.clear()
            self._buf_bytes = 0
            self._buf_items = 0
            self._buf_recovered = False
            self._head_line = None
            self._must_sync = False
            raise
        self.size += len(data)
        self._committed = (self.seq, self.head, self.since_checkpoint)
        self.items_done += self._buf_items
        if self._buf_recovered:
            self._recovered.clear()
        self._buf.clear()
        self._buf_bytes = 0
        self._buf_items = 0
        self._buf_recovered = False
        self._head_line = None
        self._must_sync = False
        if head_line is not None:
            self.last_checkpoint = time.monotonic()
            # The entries are durable; a stale head only weakens the check of
            # the end (it never names more than the log holds), so go on.
            try:
                self._write_head(head_line)
            except OSError as exc:
                log.error("Audit head not updated.", extra={"error": str(exc)})

    def _write_head(self, line: bytes) -> None:
        tmp = self.dir / _HEAD_TMP
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(self.dir / HEAD_FILE)
        _fsync_dir(self.dir)

    def _rotate(self, now: datetime) -> None:
        """Next file first, then the rotation checkpoint closes the old one."""
        old_fd, old_index = self.fd, self.index
        new_fd = os.open(
            self.dir / file_name(old_index + 1),
            os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o640,
        )
        _fsync_dir(self.dir)
        try:
            self._emit_checkpoint(now, "rotate", final=False)
            self._commit()
        except BaseException:
            os.close(new_fd)
            raise
        os.close(old_fd)
        self.fd, self.index, self.size = new_fd, old_index + 1, 0

    def write(self, items: list[_Item], now: datetime) -> None:
        """Append ``items`` in order; on error ``items_done`` says how many stuck."""
        self.items_done = 0
        with self.locked():
            self.resync()
            self._emit_recovered(items[0].when if items else now)
            for item in items:
                if self.size + self._buf_bytes >= self.max_file_bytes:
                    self._rotate(item.when)
                if item.kind == "checkpoint":
                    final = bool(item.data.get("final", False))
                    reason = "close" if final else "request"
                    self._emit_checkpoint(item.when, reason, final=final)
                else:
                    self._emit(item)
                self._buf_items += 1
                if self.fsync == "entry":
                    self._commit()
                if self.since_checkpoint >= self.checkpoint_every:
                    self._emit_checkpoint(item.when, "count", final=False)
            self._commit()

    def checkpoint(self, now: datetime, reason: str) -> None:
        with self.locked():
            self.resync()
            self._emit_recovered(now)
            self._emit_checkpoint(now, reason, final=False)
            self._commit()

    def close(self) -> None:
        for fd in (self.fd, self._lock_fd):
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
        self.fd = self._lock_fd = -1


# -- the log -----------------------------------------------------------------------


class _Flush:
    """A flush request travelling in the queue behind the events it waits for."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[int] = concurrent.futures.Future()


class _Close:
    """The last thing in the queue: write the rest, then a final checkpoint."""


_Queued = _Item | _Flush | _Close


def _settle(fut: concurrent.futures.Future[int], value: int | AuditError) -> None:
    with suppress(concurrent.futures.InvalidStateError):
        if isinstance(value, AuditError):
            fut.set_exception(value)
        else:
            fut.set_result(value)


class AuditLog:
    """Append-only audit log with a writer thread; see the module docstring.

    ``append`` puts the event on a ``queue.SimpleQueue`` and returns: no lock
    is taken on the caller's thread. The writer thread takes everything queued
    as one batch, writes it with one ``write`` and (policy ``batch``) one
    ``fsync``; ``flush`` puts a marker behind the caller's events and waits
    until the writer has passed it.
    """

    def __init__(
        self,
        chain: _Chain,
        *,
        clock: Callable[[], datetime],
        checkpoint_seconds: float,
        max_pending: int,
    ) -> None:
        self._chain = chain
        self._clock = clock
        self._checkpoint_seconds = checkpoint_seconds
        self._max_pending = max_pending
        self._queue: queue.SimpleQueue[_Queued] = queue.SimpleQueue()
        self._lost = 0  # events dropped on a full queue (written by appenders)
        self._lost_reported = 0  # ... of which recorded (writer thread only)
        self._carried = 0  # events the writer holds for a retry
        self._wake = threading.Event()  # ends a retry back-off early (close)
        self._error: AuditError | None = None
        self._closing = False
        self._stopped = False
        self._last_seq = chain.committed_seq
        self._thread = threading.Thread(
            target=self._run, name="audit-writer", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        node: str,
        signer: PrivateKey | Callable[[], PrivateKey],
        fsync: FsyncPolicy = "batch",
        max_file_bytes: int = 64 * 1024 * 1024,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        max_pending: int = 100_000,
        clock: Callable[[], datetime] = _utcnow,
    ) -> AuditLog:
        """Open (or create) the log, cut a torn tail, and record ``log_opened``.

        ``signer`` is our key, or a callable returning the current one (key
        rotation: ``lambda: ring.current(now())``). Blocking: from asyncio use
        ``await AuditLog.aopen(...)``. Raises ``AuditError`` if the directory
        cannot be written or the last entry is damaged (not merely torn): such
        a log is evidence and is not extended; ``audit verify`` says where.
        """
        if fsync not in ("entry", "batch", "off"):
            raise ValueError(f"fsync policy {fsync!r}: expected entry, batch or off")
        if max_file_bytes < 4096 or checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError(
                "audit: max_file_bytes >= 4096, checkpoint_every >= 1, "
                "checkpoint_seconds > 0"
            )
        sign = (lambda: signer) if isinstance(signer, PrivateKey) else signer
        path = Path(directory)
        try:
            chain = _Chain(
                path,
                node=node,
                signer=sign,
                fsync=fsync,
                max_file_bytes=max_file_bytes,
                checkpoint_every=checkpoint_every,
            )
        except OSError as exc:
            raise AuditError(
                f"{path}: cannot open the audit log ({exc.strerror})"
            ) from exc
        try:
            now = clock()
            opened = _Item(when=now, kind="log_opened", data={"pid": os.getpid()})
            chain.write([opened], now)
        except OSError as exc:
            chain.close()
            raise AuditError(
                f"{path}: cannot write the audit log ({exc.strerror})"
            ) from exc
        except BaseException:
            chain.close()
            raise
        return cls(
            chain,
            clock=clock,
            checkpoint_seconds=checkpoint_seconds,
            max_pending=max_pending,
        )

    @classmethod
    async def aopen(cls, directory: str | os.PathLike[str], **kwargs: Any) -> AuditLog:
        """``open`` on a worker thread, for asyncio callers."""
        return await asyncio.to_thread(lambda: cls.open(directory, **kwargs))

    # -- appending ---------------------------------------------------------------

    def append(
        self,
        kind: str,
        *,
        actor: str = "system",
        remote: str | None = None,
        outcome: str | None = None,
        code: str | None = None,
        **fields: object,
    ) -> None:
        """Queue one event. Never blocks; safe from the event loop and any thread.

        ``kind`` from ``KINDS``; ``fields`` named in ``FIELDS`` (None values are
        left out). ValueError/TypeError for a name or value outside the
        vocabulary (a bug in the caller); ``AuditError`` once the log is closed.
        While the writer cannot write (disk failure) events wait in memory; past
        ``max_pending`` they are counted and recorded later as ``entries_lost``.
        """
        item = _make_item(self._clock(), kind, actor, remote, outcome, code, fields)
        if self._closing:
            raise AuditError("audit log is closed")
        if self._queue.qsize() + self._carried >= self._max_pending:
            self._lost += 1
            return
        self._queue.put(item)

    def request_checkpoint(self) -> None:
        """Queue a signed checkpoint (``await flush()`` waits for it too)."""
        if self._closing:
            raise AuditError("audit log is closed")
        self._queue.put(_Item(when=self._clock(), kind="checkpoint"))

    def _flush_future(self) -> concurrent.futures.Future[int] | None:
        if self._error is not None:
            raise AuditError(str(self._error))
        if self._stopped:
            return None
        marker = _Flush()
        self._queue.put(marker)
        if self._writer_gone():  # it may have left before seeing the marker
            _settle(marker.future, self._answer())
        return marker.future

    def _writer_gone(self) -> bool:
        return self._stopped

    def _answer(self) -> int | AuditError:
        return self._last_seq if self._error is None else self._error

    async def flush(self) -> int:
        """Wait until every event appended before the call is written (and
        fsync'd as the policy says); return the last sequence number written.
        ``AuditError`` while the writer cannot write."""
        fut = self._flush_future()
        if fut is None:
            return self._last_seq
        return await asyncio.wrap_future(fut)

    def flush_sync(self, timeout: float | None = None) -> int:
        """``flush`` for threads and the CLI (blocks)."""
        fut = self._flush_future()
        if fut is None:
            return self._last_seq
        return fut.result(timeout)

    def append_sync(
        self,
        kind: str,
        *,
        actor: str = "system",
        remote: str | None = None,
        outcome: str | None = None,
        code: str | None = None,
        **fields: object,
    ) -> int:
        """``append`` + ``flush_sync``, for the CLI; returns the last seq written."""
        self.append(
            kind, actor=actor, remote=remote, outcome=outcome, code=code, **fields
        )
        return self.flush_sync()

    def checkpoint(self) -> int:
        """Write a signed checkpoint now and wait for it; returns its seq."""
        self.request_checkpoint()
        return self.flush_sync()

    @property
    def last_seq(self) -> int:
        """Sequence number of the last entry this process wrote."""
        return self._last_seq

    @property
    def healthy(self) -> bool:
        """False while the writer cannot write, and once closed (readiness)."""
        return self._error is None and not self._closing

    @property
    def checkpoint_age_s(self) -> float:
        """Seconds since the last signed checkpoint (for the staleness alert)."""
        return max(0.0, time.monotonic() - self._chain.last_checkpoint)

    @property
    def pending(self) -> int:
        """Events queued and not yet written (approximately)."""
        return self._queue.qsize()

    # -- closing -------------------------------------------------------------------

    def close(self) -> None:
        """Write everything queued, then a final signed checkpoint (clean
        shutdown). Blocking: from asyncio use ``await aclose()``."""
        if not self._closing:
            self._closing = True
            self._queue.put(_Close())
            self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise AuditError(f"audit log closed with unwritten events: {self._error}")

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the writer thread -------------------------------------------------------------

    def _checkpoint_due_in(self) -> float | None:
        if self._chain.since_checkpoint == 0:
            return None
        due = self._chain.last_checkpoint + self._checkpoint_seconds
        return max(0.0, due - time.monotonic())

    def _drain(self, into: list[_Queued], *, wait: float | None) -> None:
        """Move queued things into ``into``; first wait up to ``wait`` seconds
        (None: until something comes, 0: not at all)."""
        if wait is None or wait > 0:
            try:
                into.append(self._queue.get(timeout=wait))
            except queue.Empty:
                return
        while True:
            try:
                into.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug must not leave flush() waiting forever
            log.exception("Audit writer crashed.")
            self._error = AuditError("audit writer crashed; see the log")
            self._stop()

    def _loop(self) -> None:
        carry: list[_Queued] = []
        closing = False
        failures = 0
        while True:
            batch, carry = carry, []
            self._drain(
                batch, wait=0 if batch or closing else self._checkpoint_due_in()
            )
            items: list[_Item] = []
            flushes: list[tuple[int, _Flush]] = []
            lost = self._lost - self._lost_reported
            if lost > 0:
                self._lost_reported += lost
                items.append(
                    _Item(
                        when=self._clock(),
                        kind="entries_lost",
                        outcome="failed",
                        data={"dropped": lost},
                    )
                )
            for x in batch:
                if isinstance(x, _Close):
                    closing = True
                elif isinstance(x, _Flush):
                    flushes.append((len(items), x))
                else:
                    items.append(x)
            self._chain.items_done = 0
            try:
                if items:
                    self._chain.write(items, self._clock())
                if self._checkpoint_due_in() == 0:
                    self._chain.checkpoint(self._clock(), "interval")
            except (OSError, AuditError) as exc:
                done = self._chain.items_done
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                err = AuditError(
                    f"{self._chain.dir}: cannot write the audit log ({why})"
                )
                log.error("Audit write failed.", extra={"error": str(err)})
                carry = list(items[done:])
                self._carried = len(carry)
                self._error = err
                self._last_seq = self._chain.committed_seq
                for pos, f in flushes:
                    _settle(f.future, self._last_seq if pos <= done else err)
                failures += 1
                if closing and failures >= 2:
                    self._stop()
                    return
                # Back off; close() cuts it short.
                self._wake.wait(min(30.0, 0.5 * 2 ** min(failures - 1, 6)))
                continue
            failures = 0
            self._carried = 0
            self._error = None
            self._last_seq = self._chain.committed_seq
            for _, f in flushes:
                _settle(f.future, self._last_seq)
            if closing and self._queue.empty():
                self._final()
                return

    def _final(self) -> None:
        try:
            now = self._clock()
            final = _Item(when=now, kind="checkpoint", data={"final": True})
            self._chain.write([final], now)
            self._last_seq = self._chain.committed_seq
        except (OSError, AuditError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            self._error = AuditError(
                f"{self._chain.dir}: final checkpoint failed ({why})"
            )
        self._stop()

    def _stop(self) -> None:
        """Leave: nothing is written after this; whoever waits is answered."""
        self._closing = True
        self._stopped = True
        self._chain.close()
        leftover: list[_Queued] = []
        self._drain(leftover, wait=0)
        for x in leftover:
            if isinstance(x, _Flush):
                _settle(x.future, self._answer())


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """Where the log is bad (or only suspicious, for a warning) and why."""

    file: str
    line: int | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        seq = "" if self.seq is None else f" (seq {self.seq})"
        return f"{where}{seq}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """What ``verify`` found. ``ok`` is False exactly when ``error`` is set."""

    directory: str
    error: Problem | None
    warnings: tuple[Problem, ...] = ()
    files: int = 0
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    checkpoints: int = 0
    signed_seq: int | None = None  # highest seq covered by a valid signature
    head_seq: int | None = None  # the checkpoint named by audit-head.json
    clean_shutdown: bool = False  # the last entry is a final checkpoint

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        """CLI exit code (CONTRACT §2): 0 good, 1 the audit chain is broken."""
        return 0 if self.error is None else 1

    def summary(self) -> str:
        """One line: ``DIR/FILE:LINE (seq N): reason`` or what was checked."""
        if self.error is not None:
            return f"{self.directory}/{self.error}"
        span = (
            f"seq {self.first_seq}..{self.last_seq}" if self.last_seq else "no entries"
        )
        signed = (
            f"signed up to seq {self.signed_seq}"
            if self.signed_seq
            else "nothing signed"
        )
        end = "closed cleanly" if self.clean_shutdown else "not closed cleanly"
        return (
            f"{self.directory}: OK: {self.entries} entries in {self.files} files, "
            f"{span}, {self.checkpoints} checkpoints, {signed}, {end}"
        )

    def report(self) -> list[str]:
        """The summary, then one ``warning:`` line per warning."""
        return [self.summary()] + [
            f"{self.directory}/{w} (warning)" for w in self.warnings
        ]


@dataclass(slots=True)
class _Walk:
    keys: Mapping[str, PublicKey]
    warnings: list[Problem] = field(default_factory=list)
    files: int = 0
    entries: int = 0
    first_seq: int | None = None
    seq: int = 0
    head: str = GENESIS
    checkpoints: int = 0
    checkpoint_hashes: dict[int, str] = field(default_factory=dict)
    signed_seq: int = 0
    last_kind: str = ""
    last_reason: str = ""
    last_final: bool = False
    last_file: str = ""
    last_line: int = 0
    first_unsigned: Problem | None = None

    def problem(
        self, file: str, line: int | None, seq: int | None, reason: str
    ) -> Problem:
        return Problem(file=file, line=line, seq=seq, reason=reason)


def _claimed_seq(raw: bytes) -> int | None:
    with suppress(ValueError, UnicodeDecodeError):
        obj = json.loads(raw)
        if isinstance(obj, dict):
            seq = obj.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                return seq
    return None


def _check_entry(w: _Walk, name: str, lineno: int, body: bytes) -> Problem | None:
    try:
        obj = _parse_line(body)
    except ValueError as exc:
        return w.problem(name, lineno, _claimed_seq(body), str(exc))
    seq: int = obj["seq"]
    expected = w.seq + 1
    if seq != expected:
        if w.seq == 0:
            why = f"the log starts at seq {seq}, not 1: earlier entries or files are missing"
        elif seq > expected:
            gap = seq - expected
            what = "1 entry is" if gap == 1 else f"{gap} entries are"
            why = (
                f"seq {seq} follows seq {w.seq}: {what} missing here "
                "(deleted, truncated or moved)"
            )
        else:
            why = f"seq {seq} follows seq {w.seq}: out of order (inserted or moved)"
        return w.problem(name, lineno, seq, why)
    if obj["prev"] != w.head:
        if w.seq == 0:
            why = "the first entry does not start from the genesis hash"
        else:
            why = (
                f"prev does not match the hash of seq {w.seq} ({w.last_file}:"
                f"{w.last_line}): that entry was altered, or this one was inserted"
            )
        return w.problem(name, lineno, seq, why)
    if obj["kind"] == "log_recovered":
        finding = obj["data"].get("reason")
        if finding == "truncated":
            return w.problem(
                name,
                lineno,
                seq,
                "the writer found the log shorter than its signed head (seq "
                f"{obj['data'].get('head_seq')}) when it reopened it: entries before "
                "this one were removed",
            )
        if finding in ("head_missing", "head_invalid"):
            w.warnings.append(
                w.problem(name, lineno, seq, f"recorded: {obj['data'].get('detail')}")
            )
    if obj["kind"] == "checkpoint":
        try:
            _check_signature(obj, w.keys)
        except ValueError as exc:
            return w.problem(name, lineno, seq, str(exc))
        w.checkpoints += 1
        w.checkpoint_hashes[seq] = obj["hash"]
        w.signed_seq = seq
        w.first_unsigned = None
        w.last_reason = str(obj["data"].get("reason", ""))
        w.last_final = obj["data"].get("final") is True
    elif w.first_unsigned is None:
        w.first_unsigned = w.problem(name, lineno, seq, "")
    if w.first_seq is None:
        w.first_seq = seq
    w.entries += 1
    w.seq, w.head = seq, obj["hash"]
    w.last_kind, w.last_file, w.last_line = obj["kind"], name, lineno
    return None


def _walk_file(w: _Walk, path: Path, *, is_last: bool) -> Problem | None:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                if is_last:
                    w.warnings.append(
                        w.problem(
                            path.name,
                            lineno,
                            None,
                            f"partial last line ({len(raw)} bytes): a write was cut "
                            "short by a crash; it is cut off when the log is next opened",
                        )
                    )
                    return None
                return w.problem(
                    path.name, lineno, None, "partial line inside the log (truncated)"
                )
            problem = _check_entry(w, path.name, lineno, raw[:-1])
            if problem is not None:
                return problem
    return None


def _read_head(d: Path) -> bytes | None:
    try:
        return (d / HEAD_FILE).read_bytes()
    except FileNotFoundError:
        return None


def _check_head(w: _Walk, raw: bytes | None) -> Problem | None:
    if raw is None:
        if w.checkpoints:
            w.warnings.append(
                w.problem(
                    HEAD_FILE,
                    None,
                    None,
                    "missing: entries removed from the end could not be detected",
                )
            )
        return None
    try:
        obj = _parse_line(raw.removesuffix(b"\n"))
        if obj["kind"] != "checkpoint":
            raise ValueError("not a checkpoint")
        _check_signature(obj, w.keys)
    except ValueError as exc:
        return w.problem(
            HEAD_FILE, 1, _claimed_seq(raw), f"the signed head is invalid: {exc}"
        )
    hseq: int = obj["seq"]
    if hseq > w.seq:
        clean = " at a clean shutdown" if obj["data"].get("final") is True else ""
        return w.problem(
            w.last_file or file_name(1),
            w.last_line + 1,
            w.seq + 1,
            f"missing: the log ends at seq {w.seq} but the head signed{clean} "
            f"({HEAD_FILE}) is seq {hseq}: entries were removed from the end",
        )
    if w.checkpoint_hashes.get(hseq) != obj["hash"]:
        return w.problem(
            HEAD_FILE,
            1,
            hseq,
            f"the signed head does not match the log's entry seq {hseq} "
            "(the log was rewritten)",
        )
    return None


def verify(
    directory: str | os.PathLike[str], keys: Iterable[PublicKey]
) -> VerifyResult:
    """Check the whole log and name the first bad entry.

    Checks every line (canonical JSON, SM3 hash), every link (``seq``, ``prev``),
    every checkpoint signature (against ``keys``: every public key that may
    have signed, current and retired), the file sequence, and the signed head
    in ``audit-head.json``. Errors (``ok`` False, ``exit_code`` 1): an edited,
    deleted, inserted or reordered entry, a partial line inside the log, a
    missing file, a forged checkpoint or head, an end shorter than the signed
    head (now, or as recorded by a writer that reopened the log). Warnings
    only: a torn last line (a crash), entries after the last checkpoint (not
    covered by a signature), no head file. Never raises for a bad log.
    """
    d = Path(directory)
    w = _Walk(keys={k.id: k for k in keys})
    try:
        files = _list_files(d)
        head = _read_head(d)
        tail = len(files) - 1
        while tail > 0 and files[tail][1].stat().st_size == 0:
            tail -= 1
    except OSError as exc:
        return VerifyResult(
            directory=str(d),
            error=Problem(
                file=".", line=None, seq=None, reason=f"cannot read ({exc.strerror})"
            ),
        )

    def result(error: Problem | None) -> VerifyResult:
        return VerifyResult(
            directory=str(d),
            error=error,
            warnings=tuple(w.warnings),
            files=w.files,
            entries=w.entries,
            first_seq=w.first_seq,
            last_seq=w.seq or None,
            last_hash=w.head if w.seq else None,
            checkpoints=w.checkpoints,
            signed_seq=w.signed_seq or None,
            head_seq=head_seq,
            clean_shutdown=error is None
            and w.last_kind == "checkpoint"
            and w.last_final,
        )

    # The head is read before the files: files only grow, so a head read first
    # never names an entry they lack, even while a writer is appending. A torn
    # line may end the last non-empty file (a crash, or a write going on).
    head_seq = None if head is None else _claimed_seq(head)
    expected = 1
    for n, (index, path) in enumerate(files):
        if index != expected:
            why = f"{file_name(expected)} is missing before this file (deleted?)"
            return result(w.problem(path.name, 1, w.seq + 1, why))
        expected += 1
        w.files += 1
        try:
            problem = _walk_file(w, path, is_last=n >= tail)
        except OSError as exc:
            problem = w.problem(path.name, None, None, f"cannot read ({exc.strerror})")
        if problem is not None:
            return result(problem)
    if w.entries == 0:
        return result(w.problem(file_name(1), None, 1, "the log has no entries"))
    successor = d / file_name(files[-1][0] + 1)
    if (
        w.last_kind == "checkpoint"
        and w.last_reason == "rotate"
        and w.last_file == files[-1][1].name
        and not successor.exists()  # (a writer may have just rotated)
    ):
        why = (
            f"missing: {w.last_file} ends with a rotation checkpoint, so this file "
            "was created (deleted?)"
        )
        return result(w.problem(successor.name, None, w.seq + 1, why))
    problem = _check_head(w, head)
    if problem is not None:
        return result(problem)
    if w.first_unsigned is not None:
        u = w.first_unsigned
        w.warnings.append(
            w.problem(
                u.file,
                u.line,
                u.seq,
                f"{w.seq - w.signed_seq} entries (seq {u.seq}..{w.seq}) after the last "
                "checkpoint are not covered by a signature (crash, still running, "
                "or the end was cut off)",
            )
        )
    return result(None)


# -- export -------------------------------------------------------------------------------


def _first_seq(path: Path) -> int | None:
    with path.open("rb") as f:
        first = f.readline()
    return _claimed_seq(first) if first.endswith(b"\n") else None


def export(directory: str | os.PathLike[str], *, since_seq: int = 1) -> Iterator[str]:
    """The log's lines from ``since_seq`` (inclusive), exactly as stored, each
    ending in a newline: a supervision system re-verifies them with SM3 and the
    node's public key alone (docs/audit.md). Stops before a partial last line.
    Checkpoints come inline; pull again from ``last seq + 1`` later and check
    that the next batch's first ``prev`` is the last ``hash`` you hold.
    """
    files = _list_files(Path(directory))
    start = 0
    for i, (_, path) in enumerate(files):
        first = _first_seq(path)
        if first is None:
            continue
        if first > since_seq:
            break
        start = i
    started = False
    for _, path in files[start:]:
        with path.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    return
                if not started:
                    seq = _claimed_seq(raw)
                    if seq is None or seq < since_seq:
                        continue
                    started = True
                yield raw.decode("utf-8", errors="replace")


# -- recent entries (the status page) ------------------------------------------------------


def _lines_backwards(fd: int, size: int) -> Iterator[bytes]:
    """Complete lines of a file, last first, read in chunks from the end.

    A partial last line (no newline yet: a write in progress, or torn) is left out.
    """
    pos = size
    pending = b""
    trimmed = False
    while pos > 0:
        n = min(_READ_CHUNK, pos)
        pos -= n
        pending = os.pread(fd, n, pos) + pending
        if not trimmed:
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            pending = pending[:cut]
            trimmed = True
        # The first part may be the end of a line that starts in an earlier chunk.
        parts = pending.split(b"\n")
        pending = parts[0]
        yield from reversed(parts[1:])
    if trimmed and pending:
        yield pending


def recent(directory: str | os.PathLike[str], limit: int = 50) -> list[dict[str, Any]]:
    """The last ``limit`` entries, newest first, for display (the status page).

    Reads backwards from the end of the newest file, and of the files before it
    only as far as needed: never a whole log. Entries are parsed, not verified
    (``verify`` does that); a line that is not a JSON object is skipped.
    """
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    for _, path in reversed(_list_files(Path(directory))):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # removed since listed
            continue
        try:
            for raw in _lines_backwards(fd, os.fstat(fd).st_size):
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
                    if len(out) >= limit:
                        return out
        finally:
            os.close(fd)
    return out
