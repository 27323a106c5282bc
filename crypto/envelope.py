"""Envelope v1: sign-then-encrypt for one or more recipients, streaming.

Byte layout (all integers big-endian; docs/envelope.md is the reference)::

    magic        5  b"SMENV"
    version      1  0x01
    header_len   4  u32, 1 .. MAX_HEADER
    header       n  canonical JSON (UTF-8, sorted keys, no spaces)
    key_count    2  u16, 1 .. MAX_RECIPIENTS
    per recipient:
      id_len     1  u8 == 32
      key_id    32  ASCII hex, as listed in header["recipients"], same order
      wk_len     2  u16, 1 .. MAX_WRAPPED
      wrapped   wk  SM2-encrypted SM4 key, GM/T 0009 DER (x, y, C3, C2)
    ct_len       8  u64
    ciphertext  ct  SM4-GCM(key, header["nonce"], aad = header bytes)
    tag         16  GCM tag
    sig_len      2  u16, 1 .. MAX_SIGNATURE
    signature   sl  SM2 (ID 1234567812345678) over SM3 of SIGNED, DER (r, s)

    SIGNED = header ‖ "\\n" ‖ "ciphertext-sm3=" ‖ hex(SM3(ciphertext ‖ tag)) ‖ "\\n"

The receiver parses strictly, checks the sender is known and that it is a
recipient, verifies the signature over the header and the ciphertext digest
*before* unwrapping the content key or decrypting anything, then decrypts.
Every failure raises ``EnvelopeInvalid`` whose detail is for the local log
only; peers see one code.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import struct
import uuid
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
import zstandard

from crypto._primitives import (
    GCM_NONCE_BYTES,
    GCM_TAG_BYTES,
    SM2_DEFAULT_ID,
    SM4_KEY_BYTES,
    Gcm,
    InvalidTag,
    Sm3,
)
from crypto.keys import KeyRing, PeerTable, PrivateKey, PublicKey
from gateway.errors import CryptoError, EnvelopeInvalid

__all__ = [
    "COMPRESSIONS",
    "EnvelopeHeader",
    "Opened",
    "Parsed",
    "Sealed",
    "canonical_json",
    "canonical_plain",
    "open_bytes",
    "open_stream",
    "parse",
    "seal_bytes",
    "seal_stream",
    "signed_bytes",
    "split",
]

MAGIC: Final = b"SMENV"
VERSION: Final = 1
MAX_HEADER: Final = 32 * 1024 * 1024
MAX_RECIPIENTS: Final = 64
MAX_WRAPPED: Final = 512
MAX_SIGNATURE: Final = 128
MAX_MANIFEST: Final = 400_000
MAX_META: Final = 64
CHUNK: Final = 1 << 20
COMPRESSIONS: Final = ("none", "gzip", "zstd")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_ENV_ID = re.compile(r"[0-9A-Za-z._:-]{1,128}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
# Work on one worker thread overlaps SM3 with SM4-GCM (both release the GIL).
_hasher_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sm3")
_PARALLEL_MIN = 256 * 1024
# Pipeline grain: small enough that a 1 MiB payload still overlaps its SM3
# with SM4-GCM, large enough that thread hand-offs cost nothing measurable.
_GRAIN = 128 * 1024


# One encoder for all calls: json.dumps with options builds a new one each time.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(obj: Any) -> bytes:
    """The single definition of canonical bytes: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(obj).encode("utf-8")


_SORTED: Final = orjson.OPT_SORT_KEYS


def canonical_plain(obj: Any) -> bytes:
    """``canonical_json`` of a tree the caller knows has no float, ~10x faster.

    orjson writes str, int, bool, None, lists and str-keyed dicts exactly as
    ``canonical_json`` does (same escapes, keys in code-point order; a test
    compares them over generated trees), but would print a float its own way
    (``1e16``, NaN as null): callers pass floats to ``canonical_json`` only.
    What orjson refuses (an int beyond 64 bits, a lone surrogate, a Decimal,
    a non-str key) goes the general way, which keeps its behaviour and errors.
    """
    try:
        out = orjson.dumps(obj, option=_SORTED)
    except TypeError:
        return canonical_json(obj)
    # orjson's result keeps the whole buffer it grew (16 KB for a 2 KB record,
    # measured): records are kept by the thousand, so keep an exact-size copy.
    return bytes(memoryview(out))


def format_time(t: datetime) -> str:
    if t.tzinfo is None:
        raise CryptoError("envelope times must be timezone-aware")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvelopeHeader:
    """What the header says; every field is covered by the signature."""

    id: str
    sender: str
    recipients: tuple[str, ...]
    created: str
    content_type: str
    compression: str
    records: int
    manifest: tuple[str, ...]
    nonce: bytes
    meta: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "kind": "envelope",
            "id": self.id,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "created": self.created,
            "content_type": self.content_type,
            "compression": self.compression,
            "records": self.records,
            "manifest": list(self.manifest),
            "cipher": "SM4-GCM",
            "hash": "SM3",
            "signature": "SM2-SM3",
            "sm2_id": SM2_DEFAULT_ID.decode(),
            "nonce": self.nonce.hex(),
            "meta": dict(self.meta),
        }

    def encode(self) -> bytes:
        return canonical_plain(self.to_json())

    @property
    def created_at(self) -> datetime:
        return datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC
        )


_HEADER_KEYS = frozenset(
    EnvelopeHeader(
        id="x",
        sender="",
        recipients=(),
        created="",
        content_type="",
        compression="",
        records=0,
        manifest=(),
        nonce=b"",
    ).to_json()
)


def _bad(detail: str) -> EnvelopeInvalid:
    return EnvelopeInvalid(detail)


def _decode_header(raw: bytes) -> EnvelopeHeader:
    """Strictly validate header JSON: exact key set, types, ranges, canonical form."""
    try:
        # orjson: strict RFC 8259 (no NaN, no invalid UTF-8); duplicate keys are
        # caught by the canonical-form check below.
        obj = orjson.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad("header is not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != _HEADER_KEYS:
        raise _bad("header keys are not the v1 set")
    if obj["v"] != VERSION or obj["kind"] != "envelope":
        raise _bad("header version or kind")
    if (obj["cipher"], obj["hash"], obj["signature"], obj["sm2_id"]) != (
        "SM4-GCM",
        "SM3",
        "SM2-SM3",
        SM2_DEFAULT_ID.decode(),
    ):
        raise _bad("unsupported algorithms")
    if not (isinstance(obj["id"], str) and _ENV_ID.fullmatch(obj["id"])):
        raise _bad("envelope id")
    if not (isinstance(obj["sender"], str) and _KEY_ID.fullmatch(obj["sender"])):
        raise _bad("sender key id")
    rec = obj["recipients"]
    if (
        not isinstance(rec, list)
        or not 1 <= len(rec) <= MAX_RECIPIENTS
        or not all(isinstance(r, str) and _KEY_ID.fullmatch(r) for r in rec)
        or len(set(rec)) != len(rec)
    ):
        raise _bad("recipients")
    if not (isinstance(obj["created"], str) and _TIME.fullmatch(obj["created"])):
        raise _bad("created time")
    ct = obj["content_type"]
    if not (isinstance(ct, str) and 0 < len(ct) <= 200 and ct.isprintable()):
        raise _bad("content type")
    if obj["compression"] not in COMPRESSIONS:
        raise _bad("compression")
    n = obj["records"]
    man = obj["manifest"]
    if (
        type(n) is not int
        or not 0 <= n <= MAX_MANIFEST
        or not isinstance(man, list)
        or len(man) != n
        or not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in man)
    ):
        raise _bad("record count or manifest")
    nonce = obj["nonce"]
    if not (isinstance(nonce, str) and re.fullmatch(r"[0-9a-f]{24}", nonce)):
        raise _bad("nonce")
    meta = obj["meta"]
    if (
        not isinstance(meta, dict)
        or len(meta) > MAX_META
        or not all(
            isinstance(k, str)
            and isinstance(v, str)
            and len(k) <= 64
            and len(v) <= 4096
            for k, v in meta.items()
        )
    ):
        raise _bad("meta")
    header = EnvelopeHeader(
        id=obj["id"],
        sender=obj["sender"],
        recipients=tuple(rec),
        created=obj["created"],
        content_type=ct,
        compression=obj["compression"],
        records=n,
        manifest=tuple(man),
        nonce=bytes.fromhex(nonce),
        meta=dict(meta),
    )
    # Only one byte string may stand for a header: no alternative encodings.
    if header.encode() != raw:
        raise _bad("header is not in canonical form")
    return header


def signed_bytes(header_raw: bytes, ct_digest: bytes) -> bytes:
    return header_raw + b"\nciphertext-sm3=" + ct_digest.hex().encode() + b"\n"


# --- sealing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sealed:
    header: EnvelopeHeader
    size: int


class _Compressor:
    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._z: Any = None
        if kind == "gzip":
            self._z = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif kind == "zstd":
            self._z = zstandard.ZstdCompressor(level=3).compressobj()

    def update(self, data: bytes) -> bytes:
        return data if self._z is None else bytes(self._z.compress(data))

    def finish(self) -> bytes:
        if self._z is None:
            return b""
        return bytes(self._z.flush())


def _new_header(
    sender: PrivateKey,
    recipients: Sequence[PublicKey],
    *,
    content_type: str,
    compression: str,
    manifest: Sequence[str],
    meta: Mapping[str, str] | None,
    now: datetime,
    envelope_id: str | None,
) -> EnvelopeHeader:
    if compression not in COMPRESSIONS:
        raise CryptoError(f"unknown compression {compression!r}")
    if not recipients:
        raise CryptoError("an envelope needs at least one recipient")
    ids = [r.id for r in recipients]
    if len(set(ids)) != len(ids):
        raise CryptoError("duplicate recipient")
    header = EnvelopeHeader(
        id=envelope_id or uuid.uuid4().hex,
        sender=sender.id,
        recipients=tuple(ids),
        created=format_time(now),
        content_type=content_type,
        compression=compression,
        records=len(manifest),
        manifest=tuple(manifest),
        nonce=os.urandom(GCM_NONCE_BYTES),
        meta=dict(meta or {}),
    )
    # Seal only what a receiver will accept.
    _decode_header(header.encode())
    return header


def _prefix(header_raw: bytes, wrapped: Sequence[tuple[str, bytes]]) -> bytes:
    parts = [MAGIC, bytes([VERSION]), struct.pack(">I", len(header_raw)), header_raw]
    parts.append(struct.pack(">H", len(wrapped)))
    for kid, wk in wrapped:
        parts += [
            bytes([len(kid)]),
            kid.encode("ascii"),
            struct.pack(">H", len(wk)),
            wk,
        ]
    return b"".join(parts)


def _begin(
    sender: PrivateKey,
    recipients: Sequence[PublicKey],
    **header_fields: Any,
) -> tuple[EnvelopeHeader, bytes, bytes, bytes]:
    """Header, its bytes, a fresh content key, and the bytes before the ciphertext
    (magic, header, key table with the key wrapped to every recipient)."""
    header = _new_header(sender, recipients, **header_fields)
    raw = header.encode()
    cek = os.urandom(SM4_KEY_BYTES)
    wrapped = [(r.id, r.wrap(cek)) for r in recipients]
    return header, raw, cek, _prefix(raw, wrapped)


class _Pipeline:
    """Encrypt on this thread while the SM3 of the ciphertext runs on another."""

    def __init__(self, gcm: Gcm, *, parallel: bool) -> None:
        self._gcm = gcm
        self._h = Sm3()
        self._parallel = parallel
        self._pending: list[Future[None]] = []

    def encrypt(self, data: bytes | memoryview) -> list[bytes]:
        """Ciphertext pieces for ``data`` (joined once by the caller, not here)."""
        if not self._parallel:
            ct = self._gcm.update(data)
            self._h.update(ct)
            return [ct]
        view = memoryview(data)
        out = []
        for i in range(0, len(view), _GRAIN):
            ct = self._gcm.update(view[i : i + _GRAIN])
            self._pending.append(_hasher_pool.submit(self._h.update, ct))
            out.append(ct)
            # A bounded number of grains in flight: memory stays small.
            while len(self._pending) > 16:
                self._pending.pop(0).result()
        return out

    def finish(self) -> tuple[bytes, bytes, bytes]:
        """Return (last ciphertext bytes, tag, SM3(ciphertext ‖ tag))."""
        last = self._gcm.finalize()
        for f in self._pending:
            f.result()
        self._pending.clear()
        tag = self._gcm.tag
        self._h.update(last)
        self._h.update(tag)
        return last, tag, self._h.digest()


def seal_stream(
    source: IO[bytes],
    out: IO[bytes],
    sender: PrivateKey,
    recipients: Sequence[PublicKey],
    *,
    now: datetime,
    content_type: str = "application/octet-stream",
    compression: str = "none",
    manifest: Sequence[str] = (),
    meta: Mapping[str, str] | None = None,
    envelope_id: str | None = None,
    chunk: int = CHUNK,
) -> Sealed:
    """Seal everything read from ``source`` into ``out`` (which must be seekable).

    Memory stays at a few chunks whatever the input size.
    """
    header, raw, cek, prefix = _begin(
        sender,
        recipients,
        content_type=content_type,
        compression=compression,
        manifest=manifest,
        meta=meta,
        now=now,
        envelope_id=envelope_id,
    )
    start = out.tell()
    out.write(prefix)
    len_pos = out.tell()
    out.write(b"\0" * 8)
    pipe = _Pipeline(Gcm(cek, header.nonce, raw), parallel=True)
    comp = _Compressor(compression)
    ct_len = 0
    while True:
        block = source.read(chunk)
        if not block:
            break
        for ct in pipe.encrypt(comp.update(block)):
            out.write(ct)
            ct_len += len(ct)
    for ct in pipe.encrypt(comp.finish()):
        out.write(ct)
        ct_len += len(ct)
    last, tag, digest = pipe.finish()
    out.write(last)
    ct_len += len(last)
    sig = sender.sign(signed_bytes(raw, digest))
    out.write(tag + struct.pack(">H", len(sig)) + sig)
    end = out.tell()
    out.seek(len_pos)
    out.write(struct.pack(">Q", ct_len))
    out.seek(end)
    return Sealed(header=header, size=end - start)


def seal_bytes(
    payload: bytes,
    sender: PrivateKey,
    recipients: Sequence[PublicKey],
    *,
    now: datetime,
    content_type: str = "application/octet-stream",
    compression: str = "none",
    manifest: Sequence[str] = (),
    meta: Mapping[str, str] | None = None,
    envelope_id: str | None = None,
) -> tuple[bytes, EnvelopeHeader]:
    """Seal an in-memory payload; returns (envelope bytes, header)."""
    header, raw, cek, prefix = _begin(
        sender,
        recipients,
        content_type=content_type,
        compression=compression,
        manifest=manifest,
        meta=meta,
        now=now,
        envelope_id=envelope_id,
    )
    comp = _Compressor(compression)
    body = comp.update(payload)
    tail = comp.finish()
    if tail:
        body += tail
    pipe = _Pipeline(Gcm(cek, header.nonce, raw), parallel=len(body) >= _PARALLEL_MIN)
    pieces = pipe.encrypt(body)
    last, tag, digest = pipe.finish()
    pieces.append(last)
    ct_len = sum(len(c) for c in pieces)
    sig = sender.sign(signed_bytes(raw, digest))
    env = b"".join(
        [
            prefix,
            struct.pack(">Q", ct_len),
            *pieces,
            tag,
            struct.pack(">H", len(sig)),
            sig,
        ]
    )
    return env, header


# --- parsing ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parsed:
    """Structure of an envelope, checked for form only (nothing verified yet)."""

    header: EnvelopeHeader
    header_raw: bytes
    wrapped: dict[str, bytes]
    ct_offset: int
    ct_len: int
    tag: bytes
    signature: bytes
    total: int


def _read_exact(f: IO[bytes], n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _bad(f"truncated in {what}")
    return data


def parse(f: IO[bytes], *, max_size: int) -> Parsed:
    """Strict structural parse of a seekable envelope stream positioned at its start."""
    start = f.tell()
    size = f.seek(0, io.SEEK_END) - start
    f.seek(start)
    if size > max_size:
        raise _bad(f"envelope of {size} bytes exceeds the limit of {max_size}")
    if _read_exact(f, 5, "magic") != MAGIC:
        raise _bad("not an envelope (magic)")
    version = _read_exact(f, 1, "version")[0]
    if version != VERSION:
        raise _bad(f"unsupported envelope version {version}")
    (hlen,) = struct.unpack(">I", _read_exact(f, 4, "header length"))
    if not 0 < hlen <= min(MAX_HEADER, size):
        raise _bad("header length out of range")
    raw = _read_exact(f, hlen, "header")
    header = _decode_header(raw)
    (count,) = struct.unpack(">H", _read_exact(f, 2, "key count"))
    if count != len(header.recipients):
        raise _bad("key table does not match recipients")
    wrapped: dict[str, bytes] = {}
    for expected in header.recipients:
        idlen = _read_exact(f, 1, "key id length")[0]
        kid = _read_exact(f, idlen, "key id")
        if kid != expected.encode("ascii"):
            raise _bad("key table order does not match recipients")
        (wlen,) = struct.unpack(">H", _read_exact(f, 2, "wrapped key length"))
        if not 0 < wlen <= MAX_WRAPPED:
            raise _bad("wrapped key length out of range")
        wrapped[expected] = _read_exact(f, wlen, "wrapped key")
    (ct_len,) = struct.unpack(">Q", _read_exact(f, 8, "ciphertext length"))
    ct_offset = f.tell()
    rest = start + size - ct_offset
    if ct_len > rest - GCM_TAG_BYTES - 2:
        raise _bad("ciphertext length exceeds the envelope")
    f.seek(ct_offset + ct_len)
    tag = _read_exact(f, GCM_TAG_BYTES, "tag")
    (slen,) = struct.unpack(">H", _read_exact(f, 2, "signature length"))
    if not 0 < slen <= MAX_SIGNATURE:
        raise _bad("signature length out of range")
    sig = _read_exact(f, slen, "signature")
    if f.tell() != start + size:
        raise _bad("trailing bytes after the signature")
    return Parsed(header, raw, wrapped, ct_offset, ct_len, tag, sig, size)


# --- opening ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    header: EnvelopeHeader
    sender: PublicKey
    recipient: PrivateKey
    plaintext_len: int


def _parties(
    p: Parsed, senders: PeerTable, keys: KeyRing
) -> tuple[PublicKey, PrivateKey]:
    sender = senders.get(p.header.sender)
    if sender is None:
        raise _bad(f"unknown sender key {p.header.sender}")
    me = next((k for kid in p.header.recipients if (k := keys.get(kid))), None)
    if me is None:
        raise _bad("not addressed to any of our keys")
    return sender, me


def _sm3_parts(*parts: bytes | memoryview) -> bytes:
    h = Sm3()
    for part in parts:
        h.update(part)
    return h.digest()


def _authenticate_digest(
    p: Parsed, senders: PeerTable, keys: KeyRing, ct_digest: bytes
) -> tuple[PublicKey, PrivateKey]:
    sender, me = _parties(p, senders, keys)
    if not sender.verify(signed_bytes(p.header_raw, ct_digest), p.signature):
        raise _bad("signature does not verify")
    return sender, me


def _authenticate(
    f: IO[bytes], p: Parsed, senders: PeerTable, keys: KeyRing
) -> tuple[PublicKey, PrivateKey]:
    # Who is who first: an unknown sender costs us no hashing.
    _parties(p, senders, keys)
    h = Sm3()
    f.seek(p.ct_offset)
    remaining = p.ct_len
    while remaining:
        block = f.read(min(CHUNK, remaining))
        if not block:
            raise _bad("truncated in ciphertext")
        h.update(block)
        remaining -= len(block)
    h.update(p.tag)
    return _authenticate_digest(p, senders, keys, h.digest())


def _content_key(p: Parsed, me: PrivateKey) -> bytes:
    try:
        cek = me.unwrap(p.wrapped[me.id])
    except CryptoError as exc:
        raise _bad("content key does not unwrap") from exc
    if len(cek) != SM4_KEY_BYTES:
        raise _bad("content key has the wrong length")
    return cek


class _DecryptReader(io.RawIOBase):
    """Ciphertext in, plaintext out; the tag is checked when the ciphertext ends."""

    def __init__(self, f: IO[bytes], p: Parsed, cek: bytes) -> None:
        self._f = f
        self._left = p.ct_len
        self._gcm = Gcm(cek, p.header.nonce, p.header_raw, tag=p.tag)
        self._buf = b""
        self._done = False
        f.seek(p.ct_offset)

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._buf and not self._done:
            if self._left:
                block = self._f.read(min(CHUNK, self._left))
                if not block:
                    raise _bad("truncated in ciphertext")
                self._left -= len(block)
                self._buf = self._gcm.update(block)
            else:
                try:
                    self._buf = self._gcm.finalize()
                except InvalidTag as exc:
                    raise _bad("GCM tag does not verify") from exc
                self._done = True

    def readinto(self, b: Any) -> int:
        self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _plain_reader(raw: _DecryptReader, compression: str) -> IO[bytes]:
    return _plain_reader_from(io.BufferedReader(raw, CHUNK), compression)


def _plain_reader_from(buffered: IO[bytes], compression: str) -> IO[bytes]:
    if compression == "gzip":
        gz: IO[bytes] = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        return gz
    if compression == "zstd":
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(
            buffered, read_size=CHUNK
        )
        return reader
    return buffered


def open_stream(
    f: IO[bytes],
    out: IO[bytes],
    keys: KeyRing,
    senders: PeerTable,
    *,
    max_size: int,
    max_plaintext: int,
) -> Opened:
    """Verify, then decrypt ``f`` into ``out``.

    On any failure ``out`` may hold partial plaintext: callers write to a
    temporary file and discard it unless this returns (the ``open`` command
    renames only after success).
    """
    p = parse(f, max_size=max_size)
    sender, me = _authenticate(f, p, senders, keys)
    reader = _plain_reader(
        _DecryptReader(f, p, _content_key(p, me)), p.header.compression
    )
    total = _copy_bounded(reader, out, max_plaintext)
    return Opened(p.header, sender, me, total)


def _copy_bounded(reader: IO[bytes], out: IO[bytes], limit: int) -> int:
    total = 0
    try:
        while True:
            block = reader.read(CHUNK)
            if not block:
                return total
            total += len(block)
            if total > limit:
                raise _bad("plaintext exceeds the limit (decompression bomb?)")
            out.write(block)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        # gzip/zstd report corrupt data as OSError / EOFError / their own errors.
        raise _bad(f"content does not decompress ({type(exc).__name__})") from exc


def open_bytes(
    data: bytes,
    keys: KeyRing,
    senders: PeerTable,
    *,
    max_plaintext: int = 1 << 30,
) -> tuple[Opened, bytes]:
    """Verify and decrypt an in-memory envelope; plaintext only if everything holds.

    Same checks in the same order as ``open_stream``, without stream copies.
    """
    p = parse(io.BytesIO(data), max_size=len(data))
    view = memoryview(data)
    ct = view[p.ct_offset : p.ct_offset + p.ct_len]
    sender, me = _authenticate_digest(p, senders, keys, _sm3_parts(ct, p.tag))
    gcm = Gcm(_content_key(p, me), p.header.nonce, p.header_raw, tag=p.tag)
    body = gcm.update(ct)
    try:
        body += gcm.finalize()
    except InvalidTag as exc:
        raise _bad("GCM tag does not verify") from exc
    if p.header.compression != "none":
        sink = io.BytesIO()
        reader = _plain_reader_from(io.BytesIO(body), p.header.compression)
        _copy_bounded(reader, sink, max_plaintext)
        body = sink.getvalue()
    elif len(body) > max_plaintext:
        raise _bad("plaintext exceeds the limit")
    return Opened(p.header, sender, me, len(body)), body


def split(f: IO[bytes], out_dir: str | os.PathLike[str], *, max_size: int) -> list[str]:
    """Write the envelope's parts as files for checking with the OpenSSL CLI.

    No cryptography is done beyond the SM3 that names the ciphertext in
    ``signed.bin``. Returns the file names written.
    """
    p = parse(f, max_size=max_size)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    h = Sm3()
    f.seek(p.ct_offset)
    with (d / "ciphertext.bin").open("wb") as ct_out:
        remaining = p.ct_len
        while remaining:
            block = _read_exact(f, min(CHUNK, remaining), "ciphertext")
            h.update(block)
            ct_out.write(block)
            remaining -= len(block)
    h.update(p.tag)
    parts = {
        "header.json": p.header_raw,
        "signed.bin": signed_bytes(p.header_raw, h.digest()),
        "signature.der": p.signature,
        "nonce.bin": p.header.nonce,
        "aad.bin": p.header_raw,
        "tag.bin": p.tag,
    }
    for kid, wk in p.wrapped.items():
        parts[f"key-{kid}.der"] = wk
    for name, data in parts.items():
        (d / name).write_bytes(data)
    return ["ciphertext.bin", *parts]
