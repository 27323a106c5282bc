"""Provenance across hubs: origin proofs kept by a hub and carried onward.

A hub keeps, for every record it accepts, the origin proof of that record
(``crypto.origin``): the proof carried in the envelope's ``meta`` when an
earlier hub forwarded it, else the signed part of the envelope itself. When
the hub seals records onward, the proofs of the batch go into the new
envelope's ``meta``, so the next hub (and the one after it) can verify which
gateway first signed each record. The format is in docs/envelope.md,
"Provenance across hubs".

``meta`` is bounded (64 entries of 4096 characters), so a batch is cut where
its proofs would no longer fit; one proof too large on its own is left out
(the record still travels, signed by this hub; a warning is logged).

Proofs are not kept forever: ``OriginStore.prune`` deletes those last used
before a cut-off (``prune_before``: the hub's dedupe retention, but never a
proof that an undelivered record may still need).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from crypto import canonical_json
from crypto.origin import OriginProof
from gateway.errors import EnvelopeInvalid

__all__ = [
    "MAX_CHUNKS",
    "META_PREFIX",
    "OriginStore",
    "decode_meta",
    "encode_meta",
    "origin_meta",
    "prune_before",
]

log = logging.getLogger("gateway.provenance")

META_PREFIX = "origin."
CHUNK_CHARS = 4096
MAX_CHUNKS = 60  # of meta's 64 entries; the rest stay free for routing hints
MAX_DECODED = 64 * 1024 * 1024
PRUNE_BATCH = 500  # proofs per transaction: a hub storing meanwhile waits little
# A proof is stored just before its records are committed to the spool: this
# covers that gap (and clock steps) when comparing with the records' ages.
PRUNE_SLACK_S = 3600.0


def prune_before(
    now: float, *, retention_s: float, oldest_undelivered_s: float | None
) -> float:
    """The cut-off for ``OriginStore.prune``: proofs last used before it go.

    The hub's dedupe retention, moved back while any record is still undelivered
    onward: its next (or re-sealed) envelope carries the proof.
    """
    cutoff = now - retention_s
    if oldest_undelivered_s is not None:
        cutoff = min(cutoff, now - oldest_undelivered_s - PRUNE_SLACK_S)
    return cutoff


def _ranges(indices: Sequence[int]) -> str:
    out: list[str] = []
    start = prev = None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif prev is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


def _unranges(text: str, limit: int) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        lo, hi = int(a), int(b or a)
        if not 0 <= lo <= hi < limit:
            raise ValueError("record index out of range")
        out.extend(range(lo, hi + 1))
    return out


def encode_meta(groups: Sequence[tuple[OriginProof, Sequence[int]]]) -> dict[str, str]:
    """``origin.0`` … ``origin.N``: base64 of gzip of canonical JSON, in chunks."""
    if not groups:
        return {}
    doc = {
        "v": 1,
        "origins": [
            {"proof": p.to_json(), "records": _ranges(idx)} for p, idx in groups
        ],
    }
    packed = base64.b64encode(gzip.compress(canonical_json(doc), mtime=0)).decode()
    return {
        f"{META_PREFIX}{n}": packed[i : i + CHUNK_CHARS]
        for n, i in enumerate(range(0, len(packed), CHUNK_CHARS))
    }


def decode_meta(
    meta: Mapping[str, str], *, records: int
) -> list[tuple[OriginProof, list[int]]]:
    """The origin proofs an envelope carries (none: []); EnvelopeInvalid if malformed."""
    parts = []
    n = 0
    while (chunk := meta.get(f"{META_PREFIX}{n}")) is not None:
        parts.append(chunk)
        n += 1
    if not parts:
        return []
    try:
        raw = gzip.decompress(base64.b64decode("".join(parts), validate=True))
        if len(raw) > MAX_DECODED:
            raise EnvelopeInvalid("provenance too large")
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise EnvelopeInvalid("provenance version")
        out = []
        for g in doc["origins"]:
            out.append(
                (OriginProof.from_json(g["proof"]), _unranges(g["records"], records))
            )
        return out
    except EnvelopeInvalid:
        raise
    except (binascii.Error, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise EnvelopeInvalid(
            f"provenance meta malformed ({type(exc).__name__})"
        ) from exc


def _fits(meta: Mapping[str, str]) -> bool:
    return len(meta) <= MAX_CHUNKS


def origin_meta(
    digests: Sequence[str], found: Mapping[str, OriginProof]
) -> tuple[dict[str, str], int]:
    """Meta for the longest prefix of a batch whose proofs fit; (meta, prefix length)."""
    groups: dict[str, tuple[OriginProof, list[int]]] = {}
    for i, d in enumerate(digests):
        proof = found.get(d)
        if proof is None:
            continue
        g = groups.get(proof.id)
        if g is not None:
            g[1].append(i)
            continue
        groups[proof.id] = (proof, [i])
        if not _fits(encode_meta(list(groups.values()))):
            del groups[proof.id]
            if i > 0:
                return _final(groups, i)
            log.warning(
                "An origin proof is too large for an envelope; the record goes "
                "without it.",
                extra={"record_sm3": d},
            )
    return _final(groups, len(digests))


def _final(
    groups: dict[str, tuple[OriginProof, list[int]]], n: int
) -> tuple[dict[str, str], int]:
    kept = list(groups.values())
    meta = encode_meta(kept)
    # Index lists added after the size checks: shed whole groups from the end.
    while kept and not _fits(meta):
        _, idx = kept.pop()
        n = min(n, min(idx))
        kept = [(p, [i for i in ix if i < n]) for p, ix in kept]
        kept = [(p, ix) for p, ix in kept if ix]
        meta = encode_meta(kept)
    return meta, max(n, 1)


class OriginStore:
    """Origin proofs by record digest, in ``state_dir/origins.db`` (fsync'd).

    Written before the received envelope is committed to the spool, so every
    stored record has its proof after any crash (an orphan proof is harmless).
    ``stored_at`` is refreshed whenever a proof comes again, so pruning goes by
    its last use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS proofs (
                id TEXT PRIMARY KEY, sender TEXT NOT NULL, proof BLOB NOT NULL,
                stored_at REAL NOT NULL) WITHOUT ROWID"""
        )
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS record_origins (
                record_sm3 TEXT PRIMARY KEY, proof_id TEXT NOT NULL) WITHOUT ROWID"""
        )
        # For pruning: old proofs without reading their blobs, and a proof's
        # records without scanning the table (about +25 us per stored record).
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS proofs_by_age ON proofs (stored_at)"
        )
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS record_origins_by_proof "
            "ON record_origins (proof_id)"
        )

    def put(
        self,
        pairs: Iterable[tuple[OriginProof, Sequence[str]]],
        sender: str,
        *,
        now: float | None = None,
    ) -> None:
        """Keep each proof for its record digests (first proof of a record wins)."""
        if now is None:
            now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for proof, digests in pairs:
                    self._db.execute(
                        """INSERT INTO proofs VALUES (?, ?, ?, ?) ON CONFLICT (id)
                           DO UPDATE SET stored_at = max(stored_at, excluded.stored_at)""",
                        (proof.id, sender, canonical_json(proof.to_json()), now),
                    )
                    self._db.executemany(
                        "INSERT OR IGNORE INTO record_origins VALUES (?, ?)",
                        ((d, proof.id) for d in digests),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def lookup(self, digests: Sequence[str]) -> dict[str, OriginProof]:
        out: dict[str, OriginProof] = {}
        cache: dict[str, OriginProof] = {}
        with self._lock:
            for d in dict.fromkeys(digests):
                row = self._db.execute(
                    """SELECT p.id, p.proof FROM record_origins r
                       JOIN proofs p ON p.id = r.proof_id WHERE r.record_sm3 = ?""",
                    (d,),
                ).fetchone()
                if row is None:
                    continue
                pid, blob = row
                if pid not in cache:
                    cache[pid] = OriginProof.from_json(json.loads(blob))
                out[d] = cache[pid]
        return out

    def prune(self, *, before: float) -> tuple[int, int]:
        """Delete proofs last stored before ``before`` and their record links.

        Returns (proofs, records) deleted. Works in small transactions, so a
        hub storing envelopes meanwhile is held up briefly only.
        """
        proofs = records = 0
        while True:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    ids = [
                        r[0]
                        for r in self._db.execute(
                            "SELECT id FROM proofs WHERE stored_at < ? LIMIT ?",
                            (before, PRUNE_BATCH),
                        )
                    ]
                    marks = ",".join("?" * len(ids))
                    if ids:
                        records += self._db.execute(
                            f"DELETE FROM record_origins WHERE proof_id IN ({marks})",  # noqa: S608 - placeholders only
                            ids,
                        ).rowcount
                        proofs += self._db.execute(
                            f"DELETE FROM proofs WHERE id IN ({marks})",  # noqa: S608 - placeholders only
                            ids,
                        ).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            if len(ids) < PRUNE_BATCH:
                return proofs, records

    def close(self) -> None:
        with self._lock:
            self._db.close()
