"""The durable spool: inputs, records, delivery queues, outbox and hub inbox in
one SQLite file.

Durability: WAL with ``synchronous=FULL``, so a write method returns only after
its transaction is in the fsync'd WAL. ``put_intake`` returning is what allows
the HTTP 202, ``put_received`` returning what allows the hub's signed receipt.
Nothing is deleted here but hub envelope ids past the dedupe retention; queue
items move between states::

    queued -> leased -> sealed (in an envelope) -> delivered
       ^  ^     |  \\-> delivered (ack)           \\-> dead --+
       |  |     +-- release(delay) / lease expiry              |
       |  +-- requeue_envelope (envelope too old: re-seal)     |
       +-- redrive_dead (operator) <----- dead (dead_letter) <-+

The hub side (``put_received``) is in the same file so that one transaction
holds a received envelope's id, digest and receipt, its records (deduplicated
by dataset, record key and digest) and their onward queue items: a received
envelope is stored as an input like any other, so its records are sealed and
forwarded by the same machinery and ``intake_state`` shows them.

``Spool`` is synchronous and owns one connection. ``AsyncSpool`` runs every
write on one writer thread and commits all writes that queued up while the
previous commit was fsyncing as ONE transaction (group commit); reads use a
second connection on a reader thread.

Quotas count *undelivered* data per source and in total: records not yet
delivered or dead-lettered to every destination, their canonical bytes, and
the raw bytes of inputs that still have such records.

Throughput: the bulk bytes (raw inputs, canonical records, envelope bodies) are
written once, in rows that never change; queue states live in small rows
(``items``, ``envelopes``, the counters), so a state change rewrites a few
small pages rather than pages of record or envelope bytes. Each operation
handles its records with a few set-based statements (lists of ids bound as one
JSON parameter), never one statement per record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import orjson

from gateway.errors import LeaseLost, QuotaExceeded, SpoolError
from gateway.records import (
    AcceptedRecord,
    DeliveryState,
    DestinationCounts,
    HeldRef,
    InboxAnswer,
    InboxCounts,
    InboxEnvelope,
    InputStatus,
    IntakeAnswer,
    IntakeState,
    ItemState,
    LeasedEnvelope,
    LeasedItem,
    Provenance,
    QuarantineEntry,
    RecordState,
    Reject,
    SourceCounts,
    StoredInboxRecord,
    StoredInput,
    StoredReceipt,
    Usage,
)

__all__ = [
    "HELD_AT",
    "MIGRATIONS",
    "AsyncSpool",
    "Limits",
    "PruneCount",
    "Quotas",
    "Spool",
    "new_id",
]

T = TypeVar("T")

# The page size of new spool files (see SqliteStore._configure).
PAGE_SIZE = 16384
# Prepared statements kept per connection; more than this module has.
_STATEMENT_CACHE = 256
# Page cache of the writing connection, KiB.
_CACHE_KIB = 32768
# WAL pages between automatic checkpoints (the default is 1000).
_CHECKPOINT_PAGES = 1000

_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:-]{0,127}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: float | None = None) -> str:
    """A 26-character ULID-style id: creation time (ms) first, then 80 random bits."""
    ms = int((time.time() if now is None else now) * 1000)
    n = (ms << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def check_id(kind: str, value: str) -> None:
    # Ids end up in URLs, file names and log lines: keep them boring.
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"{kind} {value!r}: use 1-128 of [0-9A-Za-z._:-]")


def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _ids_json(ids: Sequence[int] | Sequence[str]) -> str:
    # One bound parameter for any number of ids (json_each), instead of
    # building "IN (?, ?, ...)" strings.
    return orjson.dumps(list(ids)).decode()


_json_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on undelivered data; ``None`` means no cap."""

    max_records: int | None = None
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Quotas:
    """Quota configuration: a cap per source and one for the whole spool."""

    total: Limits = field(default_factory=Limits)
    default_source: Limits = field(default_factory=Limits)
    per_source: Mapping[str, Limits] = field(default_factory=dict)
    retry_after_s: float = 30.0

    def for_source(self, source: str) -> Limits:
        return self.per_source.get(source, self.default_source)


class SqliteStore:
    """One SQLite file opened for durable use: WAL, FULL sync, versioned schema.

    Subclasses set ``KIND``, ``APPLICATION_ID`` and ``MIGRATIONS``. Writes go
    through ``_write`` (one transaction each, or a savepoint inside ``batch``).
    """

    KIND: ClassVar[str]
    APPLICATION_ID: ClassVar[int]
    MIGRATIONS: ClassVar[tuple[tuple[str, ...], ...]]

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        # Commits that changed rows, i.e. WAL fsyncs (an empty commit writes nothing).
        self.commits = 0
        self._in_batch = False
        self._batch_broken = False
        self._where = f"{self.KIND} '{self.path}'"
        self._conn = self._connect()

    # -- opening ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        new_file = not self.path.exists()
        if new_file and self.readonly:
            raise SpoolError(f"{self._where}: does not exist")
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                # Used by one thread at a time; the async facade owns the threads.
                check_same_thread=False,
                timeout=10.0,
                # Every statement's text is a constant: each is prepared once.
                cached_statements=_STATEMENT_CACHE,
            )
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: cannot open: {exc}") from exc
        try:
            self._configure(conn)
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        if new_file and not self.readonly:
            _fsync_dir(self.path.parent)
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if not self.readonly:
                # Takes effect only while the file is empty (a new spool): fewer
                # syscalls per MB and ~2 KB records packed 7 to a page instead
                # of 1 to a 4 KiB page. Older files keep their page size.
                conn.execute(f"PRAGMA page_size = {int(PAGE_SIZE)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise SpoolError(f"{self._where}: cannot use WAL (got {mode!r})")
                # A large input leaves a large WAL behind; shrink it after checkpoints.
                conn.execute("PRAGMA journal_size_limit = 67108864")
                conn.execute(f"PRAGMA wal_autocheckpoint = {int(_CHECKPOINT_PAGES)}")
                # A group commit can hold many MB of dirty pages; the reader
                # keeps SQLite's default cache.
                conn.execute(f"PRAGMA cache_size = {-int(_CACHE_KIB)}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            # Ephemeral tables (json_each lists, sorts) never touch the disk.
            conn.execute("PRAGMA temp_store = MEMORY")
            if self.readonly:
                conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: cannot configure: {exc}") from exc

    def _migrate(self, conn: sqlite3.Connection) -> None:
        known = len(self.MIGRATIONS)
        try:
            conn.execute("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
            try:
                app_id = conn.execute("PRAGMA application_id").fetchone()[0]
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                self._check_version(app_id, version)
                for statements in self.MIGRATIONS[version:]:
                    for sql in statements:
                        conn.execute(sql)
                if version < known:
                    # PRAGMA takes no bound parameters; both values are ints we own.
                    conn.execute(f"PRAGMA user_version = {int(known)}")
                    conn.execute(f"PRAGMA application_id = {int(self.APPLICATION_ID)}")
                conn.execute("COMMIT")
            except BaseException:
                if _in_txn(conn):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: cannot open schema: {exc}") from exc

    def _check_version(self, app_id: int, version: int) -> None:
        known = len(self.MIGRATIONS)
        if app_id not in (0, self.APPLICATION_ID) or (app_id == 0 and version):
            raise SpoolError(f"{self._where}: not a {self.KIND} database")
        if version > known:
            raise SpoolError(
                f"{self._where}: schema version {version} is newer than this "
                f"program knows ({known}); run the newer gateway or restore "
                "a backup made by this version"
            )
        if version < known and self.readonly:
            raise SpoolError(
                f"{self._where}: schema version {version}, expected {known}; "
                "open it for writing first to migrate"
            )

    @property
    def schema_version(self) -> int:
        return int(
            self._read("schema_version", lambda: self._one("PRAGMA user_version"))
        )

    def close(self) -> None:
        with suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions ----------------------------------------------------

    def _one(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _rollback(self) -> None:
        # A failed COMMIT or an I/O error may already have ended the transaction.
        if self._conn.in_transaction:
            with suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _write(self, what: str, fn: Callable[[], T]) -> T:
        if self.readonly:
            raise SpoolError(f"{self._where}: {what}: opened read-only")
        conn = self._conn
        try:
            if self._in_batch:
                return self._in_savepoint(what, fn)
            changes = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: {what}: {exc}") from exc
        self.commits += conn.total_changes != changes
        return result

    def _in_savepoint(self, what: str, fn: Callable[[], T]) -> T:
        conn = self._conn
        if self._batch_broken or not conn.in_transaction:
            # SQLite rolled the shared transaction back (I/O error, disk full):
            # a new savepoint would silently start a fresh one without the
            # earlier callers' work, so the whole batch must fail.
            self._batch_broken = True
            raise SpoolError(f"{self._where}: {what}: batch transaction was lost")
        conn.execute("SAVEPOINT job")
        try:
            result = fn()
        except BaseException:
            try:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            except sqlite3.Error:
                self._batch_broken = True
            if not _in_txn(conn):
                self._batch_broken = True
            raise
        conn.execute("RELEASE job")
        return result

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several writes as one transaction: one commit, one fsync.

        Each write inside gets a savepoint, so one caller's failure (a quota
        refusal, a bad argument) undoes only that caller's work.
        """
        if self._in_batch:
            raise RuntimeError("batches do not nest")
        if self.readonly:
            raise SpoolError(f"{self._where}: batch: opened read-only")
        changes = self._conn.total_changes
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: begin: {exc}") from exc
        self._in_batch, self._batch_broken = True, False
        try:
            yield
        except BaseException:
            self._in_batch = False
            self._rollback()
            raise
        self._in_batch = False
        if self._batch_broken:
            self._rollback()
            raise SpoolError(f"{self._where}: commit: batch transaction was lost")
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise SpoolError(f"{self._where}: commit: {exc}") from exc
        self.commits += self._conn.total_changes != changes

    def _read(self, what: str, fn: Callable[[], T]) -> T:
        conn = self._conn
        try:
            if conn.in_transaction:
                return fn()
            # One read transaction, so multi-query answers are one snapshot.
            conn.execute("BEGIN")
            try:
                return fn()
            finally:
                if _in_txn(conn):
                    conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise SpoolError(f"{self._where}: {what}: {exc}") from exc

    def integrity_problems(self) -> list[str]:
        """SQLite's own checks (``integrity_check``, ``foreign_key_check``)."""

        def run() -> list[str]:
            found = [str(r[0]) for r in self._conn.execute("PRAGMA integrity_check")]
            problems = [] if found == ["ok"] else found
            problems += [
                f"foreign key: table {r[0]} rowid {r[1]} -> {r[2]}"
                for r in self._conn.execute("PRAGMA foreign_key_check")
            ]
            return problems

        return self._read("integrity check", run)


def _in_txn(conn: sqlite3.Connection) -> bool:
    # A function call, so the type checker does not assume the flag is unchanged
    # after statements that can end a transaction behind our back.
    return conn.in_transaction


def _fsync_dir(path: Path) -> None:
    # A new database file is only durable once its directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: initial schema
    (
        """CREATE TABLE inputs (
            id              TEXT PRIMARY KEY,
            source          TEXT NOT NULL,
            remote_addr     TEXT NOT NULL,
            token_id        TEXT NOT NULL,
            received_at     REAL NOT NULL,
            content_type    TEXT NOT NULL,
            idempotency_key TEXT,
            digest_hex      TEXT NOT NULL,
            size            INTEGER NOT NULL,
            status          TEXT NOT NULL CHECK (status IN ('accepted', 'quarantined')),
            n_records       INTEGER NOT NULL DEFAULT 0,
            n_rejected      INTEGER NOT NULL DEFAULT 0,
            pending_records INTEGER NOT NULL DEFAULT 0,
            answer_status   INTEGER NOT NULL,
            answer          BLOB NOT NULL,
            reason_code     TEXT,
            reason_message  TEXT,
            quarantined_at  REAL,
            replayed_at     REAL,
            replay_count    INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE INDEX inputs_quarantine ON inputs (id)
            WHERE quarantined_at IS NOT NULL""",
        # Raw bytes apart, so scans of `inputs` never page through large blobs.
        """CREATE TABLE raw_inputs (
            input_id TEXT PRIMARY KEY REFERENCES inputs (id),
            raw      BLOB NOT NULL
        )""",
        """CREATE TABLE idempotency (
            source   TEXT NOT NULL,
            key      TEXT NOT NULL,
            input_id TEXT NOT NULL REFERENCES inputs (id),
            PRIMARY KEY (source, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE records (
            id         INTEGER PRIMARY KEY,
            input_id   TEXT NOT NULL REFERENCES inputs (id),
            seq        INTEGER NOT NULL,
            dataset    TEXT NOT NULL,
            record_key TEXT NOT NULL,
            digest_hex TEXT NOT NULL,
            size       INTEGER NOT NULL,
            pending    INTEGER NOT NULL,
            canonical  BLOB NOT NULL,
            UNIQUE (input_id, seq)
        )""",
        """CREATE TABLE rejects (
            input_id TEXT NOT NULL REFERENCES inputs (id),
            seq      INTEGER NOT NULL,
            locator  TEXT NOT NULL,
            code     TEXT NOT NULL,
            message  TEXT NOT NULL,
            PRIMARY KEY (input_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE envelopes (
            seq                INTEGER PRIMARY KEY AUTOINCREMENT,
            id                 TEXT NOT NULL UNIQUE,
            destination        TEXT NOT NULL,
            state              TEXT NOT NULL CHECK (state IN ('queued', 'leased',
                                   'delivered', 'dead', 'resealed')),
            created_at         REAL NOT NULL,
            ready_at           REAL NOT NULL,
            attempts           INTEGER NOT NULL DEFAULT 0,
            digest_hex         TEXT NOT NULL,
            size               INTEGER NOT NULL,
            delivered_at       REAL,
            receipt_id         TEXT,
            receipt_digest_hex TEXT,
            receipt            BLOB,
            error              TEXT,
            body               BLOB NOT NULL
        )""",
        """CREATE INDEX envelopes_ready ON envelopes (destination, seq)
            WHERE state IN ('queued', 'leased')""",
        "CREATE INDEX envelopes_state ON envelopes (destination, state)",
        # AUTOINCREMENT: item ids never repeat, so enqueue order is id order.
        """CREATE TABLE items (
            id                 INTEGER PRIMARY KEY AUTOINCREMENT,
            destination        TEXT NOT NULL,
            record_id          INTEGER NOT NULL REFERENCES records (id),
            state              TEXT NOT NULL CHECK (state IN
                                   ('queued', 'leased', 'sealed', 'delivered', 'dead')),
            enqueued_at        REAL NOT NULL,
            ready_at           REAL NOT NULL,
            attempts           INTEGER NOT NULL DEFAULT 0,
            envelope_seq       INTEGER REFERENCES envelopes (seq),
            delivered_at       REAL,
            receipt_id         TEXT,
            receipt_digest_hex TEXT,
            error              TEXT
        )""",
        # A leased item's ready_at is its lease expiry, so one range covers
        # "ready" and "lease expired" (crash recovery needs no sweeper).
        """CREATE INDEX items_ready ON items (destination, id)
            WHERE state IN ('queued', 'leased')""",
        """CREATE INDEX items_undelivered ON items (destination, id)
            WHERE state IN ('queued', 'leased', 'sealed')""",
        "CREATE INDEX items_state ON items (destination, state)",
        "CREATE INDEX items_record ON items (record_id)",
        """CREATE INDEX items_envelope ON items (envelope_seq)
            WHERE envelope_seq IS NOT NULL""",
        """CREATE TABLE source_stats (
            source      TEXT PRIMARY KEY,
            accepted    INTEGER NOT NULL DEFAULT 0,
            records     INTEGER NOT NULL DEFAULT 0,
            rejected    INTEGER NOT NULL DEFAULT 0,
            quarantined INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        # Kept in step with the data in the same transactions, so the quota
        # check costs two index lookups instead of a scan.
        """CREATE TABLE usage (
            source  TEXT PRIMARY KEY,
            records INTEGER NOT NULL DEFAULT 0,
            bytes   INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
    ),
    # 2: the hub inbox, moved in from its own file (gateway/inbox.py) so that a
    # received envelope, its records and their onward items are one commit.
    # A received envelope is an `inputs` row: its records are `records` rows
    # (seq = position in the envelope), their onward deliveries `items`, the
    # signed receipt is the input's stored answer, and `raw_inputs` holds the
    # envelope bytes only if the hub keeps them (empty otherwise).
    (
        # Envelope ids for dedupe; pruned after the dedupe retention.
        """CREATE TABLE hub_envelopes (
            id            TEXT PRIMARY KEY,
            input_id      TEXT NOT NULL REFERENCES inputs (id),
            sender_key_id TEXT NOT NULL,
            remote_addr   TEXT NOT NULL,
            digest_hex    TEXT NOT NULL,
            size          INTEGER NOT NULL,
            received_at   REAL NOT NULL,
            stored        INTEGER NOT NULL,
            duplicates    INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX hub_envelopes_received ON hub_envelopes (received_at)",
        # Every record received, by content: the record-key dedupe memory. It
        # outlives `hub_envelopes`, so a re-sealed old backlog lands once.
        """CREATE TABLE hub_records (
            dataset       TEXT NOT NULL,
            record_key    TEXT NOT NULL,
            digest_hex    TEXT NOT NULL,
            record_id     INTEGER NOT NULL UNIQUE REFERENCES records (id),
            envelope_id   TEXT NOT NULL,
            sender_key_id TEXT NOT NULL,
            received_at   REAL NOT NULL,
            PRIMARY KEY (dataset, record_key, digest_hex)
        ) WITHOUT ROWID""",
        """CREATE TABLE hub_stats (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            envelopes  INTEGER NOT NULL,
            records    INTEGER NOT NULL,
            duplicates INTEGER NOT NULL
        )""",
        """INSERT INTO hub_stats (id, envelopes, records, duplicates)
            VALUES (1, 0, 0, 0)""",
    ),
    # 3: throughput. A state change must not rewrite bulk bytes: updating a row
    # rewrites its whole page (and, if its length changes, all its overflow
    # pages) into the WAL. Nothing is copied, so a large file migrates at once.
    (
        # The bytes of envelopes sealed from now on; their `envelopes.body` is
        # empty. Envelopes sealed before keep theirs in `envelopes.body`: each
        # body is in exactly one place.
        """CREATE TABLE envelope_bodies (
            seq  INTEGER PRIMARY KEY REFERENCES envelopes (seq),
            body BLOB NOT NULL
        )""",
        # `records.pending` (a count kept on the row that holds the canonical
        # bytes) is no longer kept up to date and is 0 in new rows: a record is
        # held while one of its items is queued, leased or sealed, which
        # `items_record` answers. `inputs.pending_records` is still counted.
        #
        # The oldest undelivered item of a destination is the least id of its
        # queued, leased or sealed items: three seeks in `items_state`.
        "DROP INDEX items_undelivered",
    ),
    # 4: parent-first ordering (gateway/ordering.py). A record keeps the
    # reference it waits for and those it satisfies; each destination keeps
    # the references delivered there (by a verified receipt, or declared
    # present by an operator), and the items held until one arrives. A held
    # item stays 'queued' with ready_at = HELD_AT, so every count of queued
    # (undelivered) data is unchanged and lease never picks it.
    (
        "ALTER TABLE records ADD COLUMN parent_ref TEXT",
        "ALTER TABLE records ADD COLUMN provides TEXT",  # JSON array, or NULL
        """CREATE TABLE delivered_refs (
            destination  TEXT NOT NULL,
            ref          TEXT NOT NULL,
            delivered_at REAL NOT NULL,
            how          TEXT NOT NULL CHECK (how IN ('receipt', 'operator')),
            PRIMARY KEY (destination, ref)
        ) WITHOUT ROWID""",
        """CREATE TABLE holds (
            item_id     INTEGER PRIMARY KEY REFERENCES items (id),
            destination TEXT NOT NULL,
            ref         TEXT NOT NULL,
            since       REAL NOT NULL
        )""",
        "CREATE INDEX holds_ref ON holds (destination, ref)",
        # Held items leave the lease index, so leasing never walks past them
        # (queries repeat the literal bound: SQLite uses a partial index only
        # when the query's WHERE has the index's terms).
        "DROP INDEX items_ready",
        """CREATE INDEX items_ready ON items (destination, id)
            WHERE state IN ('queued', 'leased') AND ready_at < 1e17""",
        "CREATE INDEX holds_since ON holds (destination, since)",
        # What was delivered before this version: a record key is the
        # reference of its business key (all that can be known without the
        # catalogue; references through other fields start empty).
        """INSERT OR IGNORE INTO delivered_refs (destination, ref, delivered_at, how)
            SELECT i.destination, r.record_key, MAX(i.delivered_at), 'receipt'
            FROM items i JOIN records r ON r.id = i.record_id
            WHERE i.state = 'delivered' AND r.record_key NOT LIKE '%:sm3:%'
            GROUP BY i.destination, r.record_key""",
    ),
    # 5: retention. Delivered inputs are deleted after node.keep_delivered_days
    # (``prune_delivered``), so the delivered count per destination is kept
    # as a total, in step with the items in the same transactions.
    (
        """CREATE TABLE destination_stats (
            destination TEXT PRIMARY KEY,
            delivered   INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        """INSERT INTO destination_stats (destination, delivered)
            SELECT destination, COUNT(*) FROM items WHERE state = 'delivered'
            GROUP BY destination""",
        "CREATE INDEX idempotency_input ON idempotency (input_id)",
        "CREATE INDEX inputs_received ON inputs (received_at)",
    ),
)

_DELIVERED_UPSERT = """
    INSERT INTO destination_stats (destination, delivered) VALUES (?, ?)
    ON CONFLICT (destination) DO UPDATE SET delivered = delivered + excluded.delivered
"""

# ``ready_at`` of a held item: beyond any clock, so no lease range reaches it.
HELD_AT = 1e18  # above the items_ready index's bound (1e17)


@dataclass(frozen=True, slots=True)
class PruneCount:
    """What one ``prune_delivered`` call deleted."""

    inputs: int = 0
    records: int = 0
    envelopes: int = 0


_STATS_UPSERT = """
    INSERT INTO source_stats (source, accepted, records, rejected, quarantined)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (source) DO UPDATE SET
        accepted = accepted + excluded.accepted,
        records = records + excluded.records,
        rejected = rejected + excluded.rejected,
        quarantined = quarantined + excluded.quarantined
"""

_USAGE_UPSERT = """
    INSERT INTO usage (source, records, bytes) VALUES (?, ?, ?)
    ON CONFLICT (source) DO UPDATE SET
        records = records + excluded.records,
        bytes = bytes + excluded.bytes
"""


# The positions, in a JSON array of [dataset, record_key, digest_hex], of the
# records the hub already holds.
_HELD_SQL = """
    SELECT j.key FROM json_each(?) j WHERE EXISTS (SELECT 1 FROM hub_records h
        WHERE h.dataset = json_extract(j.value, '$[0]')
          AND h.record_key = json_extract(j.value, '$[1]')
          AND h.digest_hex = json_extract(j.value, '$[2]'))
"""


def _onward(
    records: Sequence[AcceptedRecord], raw_size: int
) -> tuple[list[tuple[str, ...]], int, int]:
    """Each record's destinations (deduplicated), and the records and bytes the
    quotas will count for them: only records that go somewhere are held, and
    the raw input is held as long as one of them is."""
    dests = [tuple(dict.fromkeys(r.destinations)) for r in records]
    pending = sum(1 for d in dests if d)
    nbytes = sum(len(r.canonical) for r, d in zip(records, dests, strict=True) if d)
    return dests, pending, nbytes + (raw_size if pending else 0)


class Spool(SqliteStore):
    """The gateway's spool (synchronous; see ``AsyncSpool`` for the event loop)."""

    KIND = "spool"
    APPLICATION_ID = 0x47575350  # "GWSP"
    MIGRATIONS = MIGRATIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        quotas: Quotas | None = None,
        readonly: bool = False,
    ) -> None:
        self.quotas = quotas or Quotas()
        super().__init__(path, readonly=readonly)

    def set_quotas(self, quotas: Quotas) -> None:
        """Replace the quotas (config reload); applies to the next write."""
        self.quotas = quotas

    # -- intake ----------------------------------------------------------

    def put_intake(
        self,
        provenance: Provenance,
        raw: bytes,
        records: Sequence[AcceptedRecord],
        rejects: Sequence[Reject] = (),
        *,
        intake_id: str | None = None,
        answer: bytes | None = None,
        now: float | None = None,
    ) -> IntakeAnswer:
        """Store an accepted input, its records and rejects, and enqueue the records.

        One transaction. A repeat (same source and idempotency key, or an
        intake id already accepted) stores nothing and returns the first
        answer with ``repeated=True``. Given the id of a quarantined input this
        is its replay: the input becomes accepted, its raw bytes are kept.
        ``answer`` defaults to ``{"intake_id", "records", "rejected"}``.
        Raises QuotaExceeded before writing anything.
        """
        if intake_id is not None:
            check_id("intake id", intake_id)
        return self._write(
            "put_intake",
            partial(
                self._put_intake,
                provenance,
                raw,
                records,
                rejects,
                intake_id,
                answer,
                now,
            ),
        )

    def _put_intake(
        self,
        p: Provenance,
        raw: bytes,
        records: Sequence[AcceptedRecord],
        rejects: Sequence[Reject],
        intake_id: str | None,
        answer: bytes | None,
        now: float | None,
    ) -> IntakeAnswer:
        conn = self._conn
        at = p.received_at if now is None else now
        first = self._by_idempotency_key(p.source, p.idempotency_key)
        if first is not None and first.intake_id != intake_id:
            return first
        iid = intake_id or new_id(at)
        row = conn.execute(
            "SELECT status, source, digest_hex FROM inputs WHERE id = ?", (iid,)
        ).fetchone()
        if row is not None and row[0] == InputStatus.ACCEPTED:
            return self._answer(iid, repeated=True)
        replay = row is not None
        if replay and (row[1] != p.source or row[2] != p.digest_hex):
            raise ValueError(f"intake '{iid}': replay with another source or input")

        dests, pending, new_bytes = _onward(records, len(raw))
        self._check_quota(p.source, pending, new_bytes)

        body = answer
        if body is None:
            body = _json_bytes(
                {"intake_id": iid, "records": len(records), "rejected": len(rejects)}
            )
        if replay:
            conn.execute(
                """UPDATE inputs SET status = 'accepted', n_records = ?, n_rejected = ?,
                       pending_records = ?, answer_status = 202, answer = ?,
                       replayed_at = ?
                   WHERE id = ?""",
                (len(records), len(rejects), pending, body, at, iid),
            )
            conn.execute("DELETE FROM rejects WHERE input_id = ?", (iid,))
        else:
            conn.execute(
                """INSERT INTO inputs (id, source, remote_addr, token_id, received_at,
                       content_type, idempotency_key, digest_hex, size, status,
                       n_records, n_rejected, pending_records, answer_status, answer)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?, ?, ?, 202, ?)""",
                (
                    iid, p.source, p.remote_addr, p.token_id, p.received_at,
                    p.content_type, p.idempotency_key, p.digest_hex, len(raw),
                    len(records), len(rejects), pending, body,
                ),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO raw_inputs (input_id, raw) VALUES (?, ?)", (iid, raw)
            )
            self._remember_key(p, iid)
        self._add_records(iid, range(len(records)), records, dests, at)
        self._put_rejects(iid, rejects)
        conn.execute(
            _STATS_UPSERT,
            (p.source, 1, len(records), len(rejects), -1 if replay else 0),
        )
        conn.execute(_USAGE_UPSERT, (p.source, pending, new_bytes))
        return IntakeAnswer(
            intake_id=iid,
            status=202,
            body=body,
            repeated=False,
            digest_hex=p.digest_hex,
        )

    def _add_records(
        self,
        iid: str,
        seqs: Sequence[int],
        records: Sequence[AcceptedRecord],
        dests: Sequence[tuple[str, ...]],
        at: float,
    ) -> range:
        """Store an input's records and queue each for its destinations; returns
        the record ids in ``seqs`` order (``seqs`` ascending)."""
        if not records:
            return range(0)
        conn = self._conn
        # Ids given here (what SQLite would pick: max + 1 onwards, inside our
        # write lock), so they need not be read back.
        first = int(self._one("SELECT COALESCE(MAX(id), 0) + 1 FROM records"))
        ids = range(first, first + len(records))
        conn.executemany(
            """INSERT INTO records (id, input_id, seq, dataset, record_key,
                   digest_hex, size, pending, canonical, parent_ref, provides)
               VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)""",
            (
                (rid, iid, seq, r.dataset, r.record_key, r.digest_hex,
                 len(r.canonical), r.canonical, r.parent_ref,
                 orjson.dumps(r.provides).decode() if r.provides else None)
                for rid, seq, r in zip(ids, seqs, records, strict=True)
            ),
        )  # fmt: skip
        # One statement for all items, in record order then destination order
        # (item ids are the FIFO order of each destination).
        if all(d == dests[0] for d in dests):
            # The usual input: every record goes to the same destinations.
            if dests[0]:
                conn.execute(
                    """INSERT INTO items (record_id, destination, state,
                           enqueued_at, ready_at)
                       SELECT r.value, d.value, 'queued', ?1, ?1
                       FROM json_each(?2) r, json_each(?3) d
                       ORDER BY r.key, d.key""",
                    (at, _ids_json(ids), _json_text(dests[0])),
                )
            return ids
        conn.execute(
            """INSERT INTO items (record_id, destination, state, enqueued_at,
                   ready_at)
               SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                      'queued', ?1, ?1
               FROM json_each(?2) ORDER BY key""",
            (
                at,
                _json_text(
                    [[rid, d] for rid, ds in zip(ids, dests, strict=True) for d in ds]
                ),
            ),
        )
        return ids

    def _put_rejects(self, iid: str, rejects: Sequence[Reject]) -> None:
        self._conn.executemany(
            """INSERT INTO rejects (input_id, seq, locator, code, message)
               VALUES (?, ?, ?, ?, ?)""",
            ((iid, seq, r.locator, r.code, r.message) for seq, r in enumerate(rejects)),
        )

    def _remember_key(self, p: Provenance, iid: str) -> None:
        if p.idempotency_key is not None:
            self._conn.execute(
                "INSERT INTO idempotency (source, key, input_id) VALUES (?, ?, ?)",
                (p.source, p.idempotency_key, iid),
            )

    def _by_idempotency_key(self, source: str, key: str | None) -> IntakeAnswer | None:
        if key is None:
            return None
        iid = self._one(
            "SELECT input_id FROM idempotency WHERE source = ? AND key = ?",
            (source, key),
        )
        return None if iid is None else self._answer(iid, repeated=True)

    def _answer(self, iid: str, *, repeated: bool) -> IntakeAnswer:
        status, body, digest = self._conn.execute(
            "SELECT answer_status, answer, digest_hex FROM inputs WHERE id = ?", (iid,)
        ).fetchone()
        return IntakeAnswer(
            intake_id=iid,
            status=int(status),
            body=bytes(body),
            repeated=repeated,
            digest_hex=str(digest),
        )

    def _check_quota(self, source: str, records: int, nbytes: int) -> None:
        if records == 0 and nbytes == 0:
            return
        q = self.quotas
        mine_caps, all_caps = q.for_source(source), q.total
        if (
            mine_caps.max_records is None
            and mine_caps.max_bytes is None
            and all_caps.max_records is None
            and all_caps.max_bytes is None
        ):
            return  # nothing to check against
        mine = self._conn.execute(
            "SELECT records, bytes FROM usage WHERE source = ?", (source,)
        ).fetchone() or (0, 0)
        total = self._conn.execute(
            "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(bytes), 0) FROM usage"
        ).fetchone()
        for scope, limits, (held_records, held_bytes) in (
            (f"source '{source}'", q.for_source(source), mine),
            ("all sources", q.total, total),
        ):
            for unit, held, adding, cap in (
                ("records", held_records, records, limits.max_records),
                ("bytes", held_bytes, nbytes, limits.max_bytes),
            ):
                if cap is not None and held + adding > cap:
                    raise QuotaExceeded(
                        f"{self._where}: {scope} holds {held} undelivered {unit}; "
                        f"{adding} more would exceed the quota of {cap}",
                        retry_after_s=q.retry_after_s,
                    )

    def lookup_idempotent(self, source: str, key: str) -> IntakeAnswer | None:
        """The stored answer for (source, idempotency key), if any."""
        return self._read(
            "lookup_idempotent", partial(self._by_idempotency_key, source, key)
        )

    # -- quarantine --------------------------------------------------------

    def put_quarantine(
        self,
        provenance: Provenance,
        raw: bytes,
        *,
        reason_code: str,
        message: str,
        rejects: Sequence[Reject] = (),
        intake_id: str | None = None,
        answer: bytes | None = None,
        answer_status: int = 422,
        now: float | None = None,
    ) -> IntakeAnswer:
        """Keep a rejected whole input with its raw bytes and the reason.

        Quarantined inputs are not counted by the quotas: refusing them would
        lose the evidence of what was sent. A repeat returns the first answer.
        """
        if intake_id is not None:
            check_id("intake id", intake_id)

        def run() -> IntakeAnswer:
            p = provenance
            at = p.received_at if now is None else now
            first = self._by_idempotency_key(p.source, p.idempotency_key)
            if first is not None:
                return first
            iid = intake_id or new_id(at)
            if self._one("SELECT 1 FROM inputs WHERE id = ?", (iid,)):
                return self._answer(iid, repeated=True)
            body = answer
            if body is None:
                body = _json_bytes(
                    {
                        "error": {"code": reason_code, "message": message},
                        "intake_id": iid,
                    }
                )
            self._conn.execute(
                """INSERT INTO inputs (id, source, remote_addr, token_id, received_at,
                       content_type, idempotency_key, digest_hex, size, status,
                       answer_status, answer, reason_code, reason_message,
                       quarantined_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'quarantined', ?, ?, ?, ?, ?)""",
                (
                    iid, p.source, p.remote_addr, p.token_id, p.received_at,
                    p.content_type, p.idempotency_key, p.digest_hex, len(raw),
                    answer_status, body, reason_code, message, at,
                ),
            )  # fmt: skip
            self._conn.execute(
                "INSERT INTO raw_inputs (input_id, raw) VALUES (?, ?)", (iid, raw)
            )
            self._remember_key(p, iid)
            self._put_rejects(iid, rejects)
            self._conn.execute(_STATS_UPSERT, (p.source, 0, 0, 0, 1))
            return IntakeAnswer(
                intake_id=iid,
                status=answer_status,
                body=body,
                repeated=False,
                digest_hex=p.digest_hex,
            )

        return self._write("put_quarantine", run)

    def mark_replayed(
        self,
        intake_id: str,
        *,
        now: float,
        reason_code: str | None = None,
        message: str | None = None,
    ) -> bool:
        """Record a replay attempt of a quarantined input; False if unknown.

        A successful replay is ``put_intake(intake_id=...)`` (which accepts the
        input in the same transaction); a replay that fails again passes the
        new reason here. Either way this counts the attempt.
        """

        def run() -> bool:
            cur = self._conn.execute(
                """UPDATE inputs SET replay_count = replay_count + 1, replayed_at = ?,
                       reason_code = COALESCE(?, reason_code),
                       reason_message = COALESCE(?, reason_message)
                   WHERE id = ? AND quarantined_at IS NOT NULL""",
                (now, reason_code, message, intake_id),
            )
            return cur.rowcount == 1

        return self._write("mark_replayed", run)

    def list_quarantine(
        self,
        *,
        source: str | None = None,
        include_replayed: bool = False,
        after: str = "",
        limit: int = 100,
    ) -> list[QuarantineEntry]:
        """Quarantined inputs in id (= time) order, ``after`` an id for paging."""

        def run() -> list[QuarantineEntry]:
            rows = self._conn.execute(
                """SELECT id, source, received_at, size, reason_code, reason_message,
                          status, replay_count, replayed_at
                   FROM inputs
                   WHERE quarantined_at IS NOT NULL AND id > ?
                     AND (? OR status = 'quarantined')
                     AND (? IS NULL OR source = ?)
                   ORDER BY id LIMIT ?""",
                (after, include_replayed, source, source, max(0, limit)),
            )
            return [
                QuarantineEntry(
                    intake_id=r[0], source=r[1], received_at=r[2], size=r[3],
                    reason_code=r[4], message=r[5], status=InputStatus(r[6]),
                    replay_count=r[7], replayed_at=r[8],
                )
                for r in rows
            ]  # fmt: skip

        return self._read("list_quarantine", run)

    def get_input(self, intake_id: str) -> StoredInput | None:
        """An input with its raw bytes and provenance (quarantine show / replay)."""

        def run() -> StoredInput | None:
            row = self._conn.execute(
                """SELECT i.source, i.remote_addr, i.token_id, i.received_at,
                          i.content_type, i.digest_hex, i.idempotency_key, i.status,
                          i.reason_code, i.reason_message, r.raw
                   FROM inputs i JOIN raw_inputs r ON r.input_id = i.id
                   WHERE i.id = ?""",
                (intake_id,),
            ).fetchone()
            if row is None:
                return None
            prov = Provenance(
                source=row[0], remote_addr=row[1], token_id=row[2], received_at=row[3],
                content_type=row[4], digest_hex=row[5], idempotency_key=row[6],
            )  # fmt: skip
            return StoredInput(
                intake_id=intake_id,
                provenance=prov,
                raw=bytes(row[10]),
                status=InputStatus(row[7]),
                reason_code=row[8],
                reason_message=row[9],
                rejects=self._rejects(intake_id),
            )

        return self._read("get_input", run)

    def _rejects(self, iid: str) -> tuple[Reject, ...]:
        return tuple(
            Reject(locator=r[0], code=r[1], message=r[2])
            for r in self._conn.execute(
                """SELECT locator, code, message FROM rejects
                   WHERE input_id = ? ORDER BY seq""",
                (iid,),
            )
        )

    # -- record queues -------------------------------------------------------

    def lease(
        self,
        destination: str,
        *,
        limit: int,
        lease_s: float,
        now: float,
        parent_first: bool = False,
    ) -> list[LeasedItem]:
        """Up to ``limit`` ready records for ``destination``, oldest first, leased
        until ``now + lease_s``. An expired lease makes an item ready again.

        With ``parent_first``, a record whose parent reference has not been
        delivered to ``destination`` is held instead (see ``holds``) and the
        next ready one is taken; it is released when the reference arrives.
        """
        if lease_s <= 0:
            # lease_until identifies the lease (see ack): it must lie ahead.
            raise ValueError(f"lease_s must be positive, not {lease_s}")

        def run() -> list[LeasedItem]:
            if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
                return []
            conn = self._conn
            until = now + lease_s
            if parent_first:
                items = self._lease_parent_first(destination, limit, until, now)
            else:
                items = sorted(
                    conn.execute(
                        """UPDATE items SET state = 'leased', ready_at = ?1
                           WHERE id IN (SELECT id FROM items
                               WHERE destination = ?2 AND state IN ('queued', 'leased')
                                 AND ready_at < 1e17 AND ready_at <= ?3
                               ORDER BY id LIMIT ?4)
                           RETURNING id, record_id, attempts, enqueued_at""",
                        (until, destination, now, limit),
                    )
                )
            if not items:
                return []
            recs = {
                r[0]: r
                for r in conn.execute(
                    """SELECT id, input_id, seq, dataset, record_key, digest_hex,
                              canonical
                       FROM records WHERE id IN (SELECT value FROM json_each(?))""",
                    (_ids_json([i[1] for i in items]),),
                )
            }
            leased = []
            for item_id, record_id, attempts, enqueued_at in items:
                r = recs[record_id]
                leased.append(
                    LeasedItem(
                        item_id=item_id, destination=destination, intake_id=r[1],
                        seq=r[2], dataset=r[3], record_key=r[4], digest_hex=r[5],
                        canonical=bytes(r[6]), attempts=attempts,
                        enqueued_at=enqueued_at, lease_until=until,
                    )
                )  # fmt: skip
            return leased

        return self._write("lease", run)

    def _lease_parent_first(
        self, destination: str, limit: int, until: float, now: float
    ) -> list[tuple[int, int, int, float]]:
        """``lease`` for a parent-first destination: hold what must wait, lease
        the rest (in one transaction, so a reference delivered meanwhile cannot
        be missed: ``_refs_present`` runs in another)."""
        conn = self._conn
        got: list[tuple[int, int, int, float]] = []
        while len(got) < limit:
            want = limit - len(got)
            rows = conn.execute(
                """SELECT i.id, r.parent_ref, r.parent_ref IS NULL OR EXISTS (
                           SELECT 1 FROM delivered_refs d
                           WHERE d.destination = i.destination AND d.ref = r.parent_ref)
                   FROM items i JOIN records r ON r.id = i.record_id
                   WHERE i.destination = ?1 AND i.state IN ('queued', 'leased')
                     AND i.ready_at < 1e17 AND i.ready_at <= ?2
                   ORDER BY i.id LIMIT ?3""",
                (destination, now, want),
            ).fetchall()
            ready = [r[0] for r in rows if r[2]]
            held = [(r[0], r[1]) for r in rows if not r[2]]
            if ready:
                got += conn.execute(
                    """UPDATE items SET state = 'leased', ready_at = ?
                       WHERE id IN (SELECT value FROM json_each(?))
                       RETURNING id, record_id, attempts, enqueued_at""",
                    (until, _ids_json(ready)),
                ).fetchall()
            if held:
                conn.execute(
                    """UPDATE items SET state = 'queued', ready_at = ?
                       WHERE id IN (SELECT value FROM json_each(?))""",
                    (HELD_AT, _ids_json([h[0] for h in held])),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?)",
                    ((iid, destination, ref, now) for iid, ref in held),
                )
            if len(rows) < want or not held:
                break
        return sorted(got)

    def _count_delivered(self, per_destination: Mapping[str, int]) -> None:
        self._conn.executemany(_DELIVERED_UPSERT, sorted(per_destination.items()))

    def _note_delivered(
        self, destination: str, item_ids: Sequence[int], now: float
    ) -> int:
        """The references the records of ``item_ids`` satisfy are now present at
        ``destination``: remember them and release what waited for them."""
        refs = [
            ref
            for (provides,) in self._conn.execute(
                """SELECT r.provides FROM items i JOIN records r ON r.id = i.record_id
                   WHERE i.id IN (SELECT value FROM json_each(?))
                     AND r.provides IS NOT NULL""",
                (_ids_json(item_ids),),
            )
            for ref in json.loads(provides)
        ]
        return self._refs_present(destination, refs, now, how="receipt")

    def _refs_present(
        self, destination: str, refs: Sequence[str], now: float, *, how: str
    ) -> int:
        """Record ``refs`` as present at ``destination``; release their holds.
        Returns how many held records became ready."""
        if not refs:
            return 0
        conn = self._conn
        refs_json = _json_text(list(dict.fromkeys(refs)))
        conn.execute(
            """INSERT OR IGNORE INTO delivered_refs (destination, ref, delivered_at, how)
               SELECT ?, value, ?, ? FROM json_each(?)""",
            (destination, now, how, refs_json),
        )
        released = conn.execute(
            """UPDATE items SET ready_at = ?1
               WHERE id IN (SELECT item_id FROM holds WHERE destination = ?2
                   AND ref IN (SELECT value FROM json_each(?3)))
                 AND state = 'queued' AND ready_at = ?4""",
            (now, destination, refs_json, HELD_AT),
        ).rowcount
        conn.execute(
            """DELETE FROM holds WHERE destination = ?
               AND ref IN (SELECT value FROM json_each(?))""",
            (destination, refs_json),
        )
        return int(released)

    def _drop_holds(self, item_ids: Sequence[int]) -> None:
        """Items leaving the queue by an operator action are no longer held."""
        self._conn.execute(
            "DELETE FROM holds WHERE item_id IN (SELECT value FROM json_each(?))",
            (_ids_json(item_ids),),
        )

    def held(self, destination: str | None = None) -> list[HeldRef]:
        """References records wait for, per destination: how many, since when."""

        def run() -> list[HeldRef]:
            return [
                HeldRef(destination=d, ref=ref, records=n, since=since)
                for d, ref, n, since in self._conn.execute(
                    """SELECT h.destination, h.ref, COUNT(*), MIN(h.since)
                       FROM holds h JOIN items i ON i.id = h.item_id
                       WHERE i.state = 'queued' AND i.ready_at = ?1
                         AND (?2 IS NULL OR h.destination = ?2)
                       GROUP BY h.destination, h.ref
                       ORDER BY MIN(h.since), h.destination, h.ref""",
                    (HELD_AT, destination),
                )
            ]

        return self._read("held", run)

    def release_held(
        self, destination: str, refs: Sequence[str] | None, *, now: float
    ) -> int:
        """Operator action: declare ``refs`` (None: every reference held for)
        present at ``destination``, so what waits for them is sent. Returns how
        many records were released. Used when the parent reached the receiver
        by another way, or will never come."""

        def run() -> int:
            wanted = refs
            if wanted is None:
                wanted = [
                    r[0]
                    for r in self._conn.execute(
                        "SELECT DISTINCT ref FROM holds WHERE destination = ?",
                        (destination,),
                    )
                ]
            return self._refs_present(destination, wanted, now, how="operator")

        return self._write("release_held", run)

    def unhold_all(self, destination: str, *, now: float) -> int:
        """The destination no longer orders parent-first: every held record is
        ready now (nothing is recorded as delivered)."""

        def run() -> int:
            conn = self._conn
            n = conn.execute(
                """UPDATE items SET ready_at = ?1 WHERE id IN (
                       SELECT item_id FROM holds WHERE destination = ?2)
                     AND state = 'queued' AND ready_at = ?3""",
                (now, destination, HELD_AT),
            ).rowcount
            conn.execute("DELETE FROM holds WHERE destination = ?", (destination,))
            return int(n)

        return self._write("unhold_all", run)

    def ack(
        self,
        item_ids: Sequence[int],
        *,
        receipt_id: str,
        receipt_digest_hex: str,
        now: float,
        lease_until: float | None = None,
    ) -> int:
        """Mark records delivered with the receipt that proves it; returns how many
        changed (already delivered or dead ones are left alone).

        ``lease_until`` is the caller's lease (``LeasedItem.lease_until``): given
        it, only items still held under that very lease change, so a worker
        whose lease ran out and was taken by another leaves the other's items
        alone (and learns it from the count). A lease that ran out but was not
        taken is still the caller's. Without it, any queued, leased or sealed
        item changes (operator actions); workers should always pass it.
        """

        def run() -> int:
            rows = self._conn.execute(
                """UPDATE items SET state = 'delivered', delivered_at = ?,
                        receipt_id = ?, receipt_digest_hex = ?
                    WHERE id IN (SELECT value FROM json_each(?))
                      AND CASE WHEN ? IS NULL
                          THEN state IN ('queued', 'leased', 'sealed')
                          ELSE state = 'leased' AND ready_at = ? END
                    RETURNING record_id, destination""",
                (
                    now, receipt_id, receipt_digest_hex, _ids_json(item_ids),
                    lease_until, lease_until,
                ),
            ).fetchall()  # fmt: skip
            self._holds_changed([r[0] for r in rows], -1)
            self._drop_holds(item_ids)
            per: dict[str, int] = {}
            for _rid, dest in rows:
                per[dest] = per.get(dest, 0) + 1
            self._count_delivered(per)
            for dest, ids in self._by_destination(item_ids).items():
                self._note_delivered(dest, ids, now)
            return len(rows)

        return self._write("ack", run)

    def _by_destination(self, item_ids: Sequence[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for iid, dest in self._conn.execute(
            """SELECT id, destination FROM items WHERE state = 'delivered'
               AND id IN (SELECT value FROM json_each(?))""",
            (_ids_json(item_ids),),
        ):
            out.setdefault(dest, []).append(iid)
        return out

    def release(
        self,
        item_ids: Sequence[int],
        *,
        delay_s: float,
        now: float,
        error: str | None = None,
        lease_until: float | None = None,
    ) -> int:
        """Give leased records back, ready at ``now + delay_s``; counts an attempt.
        Returns how many changed; ``lease_until`` as for ``ack``."""

        def run() -> int:
            cur = self._conn.execute(
                """UPDATE items SET state = 'queued', ready_at = ?,
                        attempts = attempts + 1, error = COALESCE(?, error)
                    WHERE id IN (SELECT value FROM json_each(?))
                      AND state = 'leased' AND (? IS NULL OR ready_at = ?)""",
                (now + delay_s, error, _ids_json(item_ids), lease_until, lease_until),
            )
            return cur.rowcount

        return self._write("release", run)

    def dead_letter(
        self,
        item_ids: Sequence[int],
        *,
        reason: str,
        now: float,
        lease_until: float | None = None,
    ) -> int:
        """Stop delivering these records; they stay stored and counted as dead.
        Returns how many changed; ``lease_until`` as for ``ack``."""

        def run() -> int:
            rows = self._conn.execute(
                """UPDATE items SET state = 'dead', error = ?
                    WHERE id IN (SELECT value FROM json_each(?))
                      AND CASE WHEN ? IS NULL
                          THEN state IN ('queued', 'leased', 'sealed')
                          ELSE state = 'leased' AND ready_at = ? END
                    RETURNING record_id""",
                (reason, _ids_json(item_ids), lease_until, lease_until),
            ).fetchall()
            self._holds_changed([r[0] for r in rows], -1)
            self._drop_holds(item_ids)
            return len(rows)

        return self._write("dead_letter", run)

    def redrive_dead(self, destination: str, *, now: float) -> int:
        """Operator action: put every dead-lettered record of ``destination`` back
        in its queue, ready at ``now``, with a fresh count of attempts; returns
        how many. Their dead envelopes become ``resealed`` (the records will be
        sealed anew). Not refused by the quotas: the data is already held, and
        counting it again makes new inputs wait until it is delivered."""

        def run() -> int:
            conn = self._conn
            rows = conn.execute(
                """SELECT id, record_id FROM items
                   WHERE destination = ? AND state = 'dead'""",
                (destination,),
            ).fetchall()
            if not rows:
                return 0
            ids = _ids_json([r[0] for r in rows])
            conn.execute(
                """UPDATE envelopes SET state = 'resealed' WHERE state = 'dead'
                   AND seq IN (SELECT envelope_seq FROM items
                       WHERE id IN (SELECT value FROM json_each(?)))""",
                (ids,),
            )
            # Counted before the items change: which records were held by none.
            self._holds_changed([r[1] for r in rows], +1)
            conn.execute(
                """UPDATE items SET state = 'queued', ready_at = ?, attempts = 0,
                       envelope_seq = NULL
                   WHERE id IN (SELECT value FROM json_each(?))""",
                (now, ids),
            )
            return len(rows)

        return self._write("redrive_dead", run)

    def _holds_changed(self, record_ids: Sequence[int], sign: int) -> None:
        """Keep the quota bookkeeping in step when items leave (-1) or re-enter
        (+1) the undelivered states (queued, leased, sealed).

        A record is held while it has an undelivered item, an input's raw
        bytes while it has a held record. Call with -1 after the items of
        ``record_ids`` left (the records still held by another item are not
        released), with +1 before they re-enter (records already held by
        another item are not counted again).
        """
        if not record_ids:
            return
        conn = self._conn
        # Records with no undelivered item: released now (-1) or held from now
        # on (+1). Per input: how many, and their bytes.
        moved = conn.execute(
            """SELECT r.input_id, COUNT(*), SUM(r.size) FROM records r
               WHERE r.id IN (SELECT value FROM json_each(?))
                 AND NOT EXISTS (SELECT 1 FROM items i WHERE i.record_id = r.id
                     AND i.state IN ('queued', 'leased', 'sealed'))
               GROUP BY r.input_id""",
            (_ids_json(record_ids),),
        ).fetchall()
        if not moved:
            return
        per_input = {iid: (sign * n, sign * nbytes) for iid, n, nbytes in moved}
        changed: dict[str, list[int]] = {}
        for iid, after, raw_size, source in conn.execute(
            """UPDATE inputs SET pending_records = pending_records
                   + json_extract(d.value, '$[1]')
               FROM json_each(?) AS d WHERE inputs.id = json_extract(d.value, '$[0]')
               RETURNING id, pending_records, size, source""",
            (_json_text([[iid, d[0]] for iid, d in per_input.items()]),),
        ).fetchall():
            nrec, nbytes = per_input[iid]
            # The raw bytes move when the input's count crosses zero.
            if bool(after) != bool(after - nrec):
                nbytes += sign * raw_size
            delta = changed.setdefault(source, [0, 0])
            delta[0] += nrec
            delta[1] += nbytes
        conn.executemany(
            _USAGE_UPSERT, [(src, n, b) for src, (n, b) in sorted(changed.items())]
        )

    # -- outbox (sealed envelopes) -----------------------------------------------

    def put_envelope(
        self,
        destination: str,
        envelope_id: str,
        body: bytes,
        *,
        digest_hex: str,
        item_ids: Sequence[int],
        now: float,
    ) -> None:
        """Store a sealed envelope and mark its records sealed, in one transaction.

        The records must be queued or leased for ``destination`` (LeaseLost
        otherwise). Storing the same envelope id and digest again is a no-op.
        """
        check_id("envelope id", envelope_id)

        def run() -> None:
            conn = self._conn
            stored = self._one(
                "SELECT digest_hex FROM envelopes WHERE id = ?", (envelope_id,)
            )
            if stored is not None:
                if stored != digest_hex:
                    raise ValueError(
                        f"envelope '{envelope_id}': stored with another digest"
                    )
                return
            wanted = sorted(set(item_ids))
            seq = conn.execute(
                """INSERT INTO envelopes (id, destination, state, created_at, ready_at,
                       digest_hex, size, body)
                   VALUES (?, ?, 'queued', ?, ?, ?, ?, X'')""",
                (envelope_id, destination, now, now, digest_hex, len(body)),
            ).lastrowid
            sealed = conn.execute(
                """UPDATE items SET state = 'sealed', envelope_seq = ?
                    WHERE id IN (SELECT value FROM json_each(?))
                    AND destination = ? AND state IN ('queued', 'leased')""",
                (seq, _ids_json(wanted), destination),
            ).rowcount
            if not wanted or sealed != len(wanted):
                # Raising undoes this call's writes (transaction or savepoint).
                raise LeaseLost(
                    f"{self._where}: envelope '{envelope_id}': "
                    f"{len(wanted) - sealed} of {len(wanted)} records are no "
                    f"longer queued for '{destination}'"
                )
            conn.execute(
                "INSERT INTO envelope_bodies (seq, body) VALUES (?, ?)", (seq, body)
            )

        self._write("put_envelope", run)

    def lease_envelopes(
        self, destination: str, *, limit: int, lease_s: float, now: float
    ) -> list[LeasedEnvelope]:
        """Like ``lease``, for sealed envelopes in the order they were sealed."""

        def run() -> list[LeasedEnvelope]:
            if limit <= 0:
                return []
            conn = self._conn
            # An envelope sealed before schema version 3 has its body in its row.
            rows = conn.execute(
                """SELECT e.seq, e.id, COALESCE(b.body, e.body), e.digest_hex,
                          e.attempts, e.created_at
                   FROM envelopes e LEFT JOIN envelope_bodies b ON b.seq = e.seq
                   WHERE e.destination = ? AND e.state IN ('queued', 'leased')
                     AND e.ready_at <= ?
                   ORDER BY e.seq LIMIT ?""",
                (destination, now, limit),
            ).fetchall()
            if not rows:
                return []
            until = now + lease_s
            seqs = _ids_json([r[0] for r in rows])
            conn.execute(
                """UPDATE envelopes SET state = 'leased', ready_at = ?
                   WHERE seq IN (SELECT value FROM json_each(?))""",
                (until, seqs),
            )
            members: dict[int, list[tuple[int, str]]] = {r[0]: [] for r in rows}
            for seq, item_id, digest in conn.execute(
                """SELECT i.envelope_seq, i.id, r.digest_hex FROM items i
                   JOIN records r ON r.id = i.record_id
                   WHERE i.envelope_seq IN (SELECT value FROM json_each(?))
                   ORDER BY i.envelope_seq, i.id""",
                (seqs,),
            ):
                members[seq].append((item_id, digest))
            return [
                LeasedEnvelope(
                    envelope_id=eid, destination=destination, body=bytes(body),
                    digest_hex=digest, attempts=attempts, created_at=created,
                    lease_until=until,
                    item_ids=tuple(m[0] for m in members[seq]),
                    record_digests=tuple(m[1] for m in members[seq]),
                )
                for seq, eid, body, digest, attempts, created in rows
            ]  # fmt: skip

        return self._write("lease_envelopes", run)

    def ack_envelope(
        self,
        envelope_id: str,
        *,
        receipt_id: str,
        receipt_digest_hex: str,
        receipt: bytes,
        now: float,
        rejected: Mapping[int, str] | None = None,
    ) -> bool:
        """Store the verified receipt; the envelope and its records become delivered.

        ``rejected`` maps item ids to the reason the receiver gave for refusing
        that record (its receipt outcome): those become dead, not delivered, so
        an operator sees them and can redrive them once fixed. References the
        delivered records satisfy are recorded (parent-first ordering).
        Returns False if the envelope was already delivered (or is unknown).
        """

        def run() -> bool:
            conn = self._conn
            row = conn.execute(
                "SELECT seq, state, destination FROM envelopes WHERE id = ?",
                (envelope_id,),
            ).fetchone()
            if row is None or row[1] == "delivered":
                return False
            seq, destination = row[0], row[2]
            conn.execute(
                """UPDATE envelopes SET state = 'delivered', delivered_at = ?,
                       receipt_id = ?, receipt_digest_hex = ?, receipt = ?
                   WHERE seq = ?""",
                (now, receipt_id, receipt_digest_hex, receipt, seq),
            )
            released = [
                r[0]
                for r in conn.execute(
                    """SELECT record_id FROM items WHERE envelope_seq = ?
                       AND state IN ('queued', 'leased', 'sealed')""",
                    (seq,),
                )
            ]
            conn.execute(
                """UPDATE items SET state = 'delivered', delivered_at = ?,
                        receipt_id = ?, receipt_digest_hex = ?, error = NULL
                    WHERE envelope_seq = ?""",
                (now, receipt_id, receipt_digest_hex, seq),
            )
            if rejected:
                conn.executemany(
                    """UPDATE items SET state = 'dead', delivered_at = NULL,
                           error = ? WHERE id = ? AND envelope_seq = ?""",
                    (
                        (f"E_RECEIVER_REJECTED: {reason}", iid, seq)
                        for iid, reason in rejected.items()
                    ),
                )
            self._holds_changed(released, -1)
            delivered = [
                r[0]
                for r in conn.execute(
                    """SELECT id FROM items WHERE envelope_seq = ?
                       AND state = 'delivered'""",
                    (seq,),
                )
            ]
            # Items already delivered before (an operator's ack) are not new.
            new = len(released) - sum(1 for _ in (rejected or {}))
            self._count_delivered({destination: max(0, new)})
            self._note_delivered(destination, delivered, now)
            return True

        return self._write("ack_envelope", run)

    def release_envelopes(
        self,
        envelope_ids: Sequence[str],
        *,
        delay_s: float,
        now: float,
        error: str | None = None,
    ) -> int:
        """Give leased envelopes back, ready again at ``now + delay_s``."""

        def run() -> int:
            cur = self._conn.execute(
                """UPDATE envelopes SET state = 'queued', ready_at = ?,
                        attempts = attempts + 1, error = COALESCE(?, error)
                    WHERE id IN (SELECT value FROM json_each(?))
                      AND state = 'leased'""",
                (now + delay_s, error, _ids_json(envelope_ids)),
            )
            return cur.rowcount

        return self._write("release_envelopes", run)

    def dead_letter_envelopes(
        self, envelope_ids: Sequence[str], *, reason: str, now: float
    ) -> int:
        """Stop sending these envelopes; their records become dead too."""

        def run() -> int:
            conn = self._conn
            seqs = [
                r[0]
                for r in conn.execute(
                    """UPDATE envelopes SET state = 'dead', error = ?
                        WHERE id IN (SELECT value FROM json_each(?))
                        AND state IN ('queued', 'leased')
                        RETURNING seq""",
                    (reason, _ids_json(envelope_ids)),
                )
            ]
            if not seqs:
                return 0
            released = [
                r[0]
                for r in conn.execute(
                    """UPDATE items SET state = 'dead', error = ?
                       WHERE envelope_seq IN (SELECT value FROM json_each(?))
                         AND state = 'sealed'
                       RETURNING record_id""",
                    (reason, _ids_json(seqs)),
                )
            ]
            self._holds_changed(released, -1)
            return len(seqs)

        return self._write("dead_letter_envelopes", run)

    def recover_leases(self, *, now: float) -> int:
        """At start-up: every lease left by a previous process is void at once.

        Only one process uses a spool (the node holds an exclusive lock on its
        state directory), so nothing leased before this start can still be in
        use; waiting for the lease to expire would only delay delivery.
        """

        def run() -> int:
            n = self._conn.execute(
                "UPDATE items SET ready_at = ? WHERE state = 'leased' AND ready_at > ?",
                (now, now),
            ).rowcount
            n += self._conn.execute(
                "UPDATE envelopes SET ready_at = ? WHERE state = 'leased' AND ready_at > ?",
                (now, now),
            ).rowcount
            return int(n)

        return self._write("recover_leases", run)

    def requeue_envelope(self, envelope_id: str, *, now: float, reason: str) -> int:
        """Give up an unsent envelope (e.g. older than the hub's dedupe window) and put
        its records back in the queue, first in line, to be sealed again. Returns the
        number of records requeued; the receiver's record-key dedupe keeps them
        exactly-once even if the old envelope did arrive."""

        def run() -> int:
            conn = self._conn
            seq = self._one(
                """SELECT seq FROM envelopes WHERE id = ?
                   AND state IN ('queued', 'leased')""",
                (envelope_id,),
            )
            if seq is None:
                return 0
            conn.execute(
                "UPDATE envelopes SET state = 'resealed', error = ? WHERE seq = ?",
                (reason, seq),
            )
            cur = conn.execute(
                """UPDATE items SET state = 'queued', ready_at = ?, envelope_seq = NULL
                   WHERE envelope_seq = ? AND state = 'sealed'""",
                (now, seq),
            )
            return cur.rowcount

        return self._write("requeue_envelope", run)

    # -- hub: received envelopes ------------------------------------------------

    def put_received(
        self,
        envelope: InboxEnvelope,
        records: Sequence[AcceptedRecord],
        provenance: Provenance,
        *,
        now: float,
    ) -> InboxAnswer:
        """Store a received envelope, its receipt and its new records, and queue
        those records for their onward ``destinations``: one transaction.

        - The envelope id already stored (within the retention): nothing is
          written; ``repeated`` is set, and ``conflict`` too if the digests
          differ. The answer carries the first receipt (to send again, or not).
        - Records already held (same dataset, record key and digest, from any
          earlier envelope, or twice in this one) are counted as ``duplicates``
          and neither stored nor queued again: exactly-once at this hub and at
          the next one.
        - The envelope becomes an input of ``provenance.source`` (its id is
          ``answer.intake_id``, for ``intake_state``), whose raw bytes are the
          envelope body if ``envelope.body`` is given, else empty: the opened
          records' canonical bytes are what is kept, and an envelope may be
          100+ MB. The input's size is the bytes kept; the envelope's own size
          is in the envelope row. ``provenance.digest_hex`` must be the
          envelope's digest.
        - Raises QuotaExceeded before writing anything when the records to be
          queued onward (plus a kept body) would exceed the quotas of
          ``provenance.source`` or of the spool: the hub answers 503 and the
          sender retries later. Records going nowhere are not counted.
        """
        e = envelope
        check_id("envelope id", e.envelope_id)
        if provenance.digest_hex != e.digest_hex:
            raise ValueError(
                f"envelope '{e.envelope_id}': provenance digest is not the envelope's"
            )
        if e.body is not None and len(e.body) != e.size:
            raise ValueError(
                f"envelope '{e.envelope_id}': body of {len(e.body)} bytes, "
                f"size says {e.size}"
            )
        return self._write(
            "put_received",
            partial(self._put_received, e, records, provenance, now),
        )

    def _put_received(
        self,
        e: InboxEnvelope,
        records: Sequence[AcceptedRecord],
        p: Provenance,
        now: float,
    ) -> InboxAnswer:
        conn = self._conn
        first = self._receipt(e.envelope_id)
        if first is not None:
            return InboxAnswer(
                receipt=first,
                repeated=True,
                conflict=first.digest_hex != e.digest_hex,
                stored=0,
                duplicates=0,
            )
        seqs: list[int] = []
        new: list[AcceptedRecord] = []
        keys = [(r.dataset, r.record_key, r.digest_hex) for r in records]
        # Positions of the records already held, in one query.
        seen = {keys[row[0]] for row in conn.execute(_HELD_SQL, (_json_text(keys),))}
        for seq, (key, r) in enumerate(zip(keys, records, strict=True)):
            if key in seen:
                continue
            seen.add(key)
            seqs.append(seq)
            new.append(r)
        duplicates = len(records) - len(new)
        raw = b"" if e.body is None else e.body
        dests, pending, new_bytes = _onward(new, len(raw))
        self._check_quota(p.source, pending, new_bytes)

        iid = new_id(now)
        conn.execute(
            """INSERT INTO inputs (id, source, remote_addr, token_id, received_at,
                   content_type, idempotency_key, digest_hex, size, status,
                   n_records, n_rejected, pending_records, answer_status, answer)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?, 0, ?, 200, ?)""",
            (
                iid, p.source, p.remote_addr, p.token_id, p.received_at,
                p.content_type, p.idempotency_key, p.digest_hex, len(raw),
                len(new), pending, e.receipt,
            ),
        )  # fmt: skip
        conn.execute("INSERT INTO raw_inputs (input_id, raw) VALUES (?, ?)", (iid, raw))
        conn.execute(
            """INSERT INTO hub_envelopes (id, input_id, sender_key_id, remote_addr,
                   digest_hex, size, received_at, stored, duplicates)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                e.envelope_id, iid, e.sender_key_id, e.remote_addr, e.digest_hex,
                e.size, e.received_at, len(new), duplicates,
            ),
        )  # fmt: skip
        record_ids = self._add_records(iid, seqs, new, dests, now)
        conn.executemany(
            """INSERT INTO hub_records (dataset, record_key, digest_hex, record_id,
                   envelope_id, sender_key_id, received_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (
                (r.dataset, r.record_key, r.digest_hex, rid, e.envelope_id,
                 e.sender_key_id, e.received_at)
                for r, rid in zip(new, record_ids, strict=True)
            ),
        )  # fmt: skip
        conn.execute(
            """UPDATE hub_stats SET envelopes = envelopes + 1, records = records + ?,
                   duplicates = duplicates + ? WHERE id = 1""",
            (len(new), duplicates),
        )
        conn.execute(_STATS_UPSERT, (p.source, 1, len(new), 0, 0))
        conn.execute(_USAGE_UPSERT, (p.source, pending, new_bytes))
        return InboxAnswer(
            receipt=StoredReceipt(
                envelope_id=e.envelope_id,
                intake_id=iid,
                digest_hex=e.digest_hex,
                receipt=e.receipt,
                received_at=e.received_at,
            ),
            repeated=False,
            conflict=False,
            stored=len(new),
            duplicates=duplicates,
        )

    def _receipt(self, envelope_id: str) -> StoredReceipt | None:
        row = self._conn.execute(
            """SELECT e.input_id, e.digest_hex, i.answer, e.received_at
               FROM hub_envelopes e JOIN inputs i ON i.id = e.input_id
               WHERE e.id = ?""",
            (envelope_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredReceipt(
            envelope_id=envelope_id,
            intake_id=row[0],
            digest_hex=row[1],
            receipt=bytes(row[2]),
            received_at=row[3],
        )

    def get_envelope_receipt(self, envelope_id: str) -> StoredReceipt | None:
        """The receipt already given for this envelope id, if any (and not pruned)."""
        return self._read("get_envelope_receipt", partial(self._receipt, envelope_id))

    def has_hub_record(self, dataset: str, record_key: str, digest_hex: str) -> bool:
        """Whether the hub already holds this exact record (key and content)."""
        return bool(
            self._read(
                "has_hub_record",
                lambda: self._one(
                    """SELECT 1 FROM hub_records
                       WHERE dataset = ? AND record_key = ? AND digest_hex = ?""",
                    (dataset, record_key, digest_hex),
                ),
            )
        )

    def list_hub_records(
        self, *, after: int = 0, limit: int = 100
    ) -> list[StoredInboxRecord]:
        """Records the hub received, in arrival order, ``after`` a record id for
        paging. Records from local intake are not listed."""

        def run() -> list[StoredInboxRecord]:
            return [
                StoredInboxRecord(
                    record_id=r[0], intake_id=r[1], envelope_id=r[2],
                    sender_key_id=r[3], received_at=r[4], dataset=r[5],
                    record_key=r[6], digest_hex=r[7], canonical=bytes(r[8]),
                )
                for r in self._conn.execute(
                    """SELECT h.record_id, r.input_id, h.envelope_id, h.sender_key_id,
                              h.received_at, h.dataset, h.record_key, h.digest_hex,
                              r.canonical
                       FROM hub_records h JOIN records r ON r.id = h.record_id
                       WHERE h.record_id > ? ORDER BY h.record_id LIMIT ?""",
                    (after, max(0, limit)),
                )
            ]  # fmt: skip

        return self._read("list_hub_records", run)

    def hub_counts(self) -> InboxCounts:
        """Hub totals since the spool was created (``status --json``: "hub")."""

        def run() -> InboxCounts:
            row = self._conn.execute(
                "SELECT envelopes, records, duplicates FROM hub_stats WHERE id = 1"
            ).fetchone()
            return InboxCounts(envelopes=row[0], records=row[1], duplicates=row[2])

        return self._read("hub_counts", run)

    def prune_hub_envelopes(self, *, received_before: float) -> int:
        """Forget received envelope ids older than the dedupe retention; returns
        how many. Their inputs, records and record keys stay, so records re-sent
        later in a new envelope are still recognised as duplicates."""

        def run() -> int:
            cur = self._conn.execute(
                "DELETE FROM hub_envelopes WHERE received_at < ?", (received_before,)
            )
            return cur.rowcount

        return self._write("prune_hub_envelopes", run)

    # -- status -------------------------------------------------------------------

    def last_errors(self) -> dict[str, dict[str, str]]:
        """The latest error per destination (from its envelopes and records) and
        per source (its latest quarantined input), for ``status``."""

        def run() -> dict[str, dict[str, str]]:
            dests: dict[str, str] = {}
            for dest in self._item_destinations():
                row = self._conn.execute(
                    """SELECT error FROM envelopes WHERE destination = ?
                         AND error IS NOT NULL ORDER BY seq DESC LIMIT 1""",
                    (dest,),
                ).fetchone()
                if row is None:
                    row = self._conn.execute(
                        """SELECT error FROM items WHERE destination = ?
                             AND state = 'dead' ORDER BY id DESC LIMIT 1""",
                        (dest,),
                    ).fetchone()
                if row is not None and row[0]:
                    dests[dest] = str(row[0])
            sources = {
                src: f"{code}: {message}"
                for src, code, message in self._conn.execute(
                    """SELECT source, reason_code, reason_message FROM inputs
                       WHERE id IN (SELECT MAX(id) FROM inputs
                           WHERE quarantined_at IS NOT NULL AND status = 'quarantined'
                           GROUP BY source)"""
                )
            }
            return {"destinations": dests, "sources": sources}

        return self._read("last_errors", run)

    def _item_destinations(self) -> list[str]:
        """Distinct destinations of ``items``: one index seek each (a skip scan
        of ``items_state``), however many items there are."""
        out: list[str] = []
        dest = self._one("SELECT MIN(destination) FROM items")
        while dest is not None:
            out.append(dest)
            dest = self._one(
                "SELECT MIN(destination) FROM items WHERE destination > ?", (dest,)
            )
        return out

    def prune_delivered(self, *, before: float, limit: int = 500) -> PruneCount:
        """Delete up to ``limit`` inputs received before ``before`` whose every
        record is delivered everywhere (none queued, leased, sealed or dead),
        with their records, items, rejects, raw bytes and idempotency keys, and
        the delivered envelopes nothing refers to any more. Call until it
        returns fewer than ``limit`` inputs. Kept: quarantined inputs, inputs
        with a dead-lettered record, the hub's inbox (its record keys are the
        dedupe memory), the totals and the delivered-reference index."""

        def run() -> PruneCount:
            conn = self._conn
            ids = [
                r[0]
                for r in conn.execute(
                    """SELECT i.id FROM inputs i
                       WHERE i.received_at < ?1 AND i.status = 'accepted'
                         AND i.source NOT LIKE 'hub:%' AND i.pending_records = 0
                         AND NOT EXISTS (SELECT 1 FROM records r
                             JOIN items t ON t.record_id = r.id
                             WHERE r.input_id = i.id AND t.state != 'delivered')
                       ORDER BY i.received_at LIMIT ?2""",
                    (before, limit),
                )
            ]
            if not ids:
                return PruneCount()
            j = _ids_json(ids)
            seqs = {
                r[0]
                for r in conn.execute(
                    """DELETE FROM items WHERE record_id IN (SELECT id FROM records
                           WHERE input_id IN (SELECT value FROM json_each(?)))
                       RETURNING envelope_seq""",
                    (j,),
                )
                if r[0] is not None
            }
            records = conn.execute(
                "DELETE FROM records WHERE input_id IN (SELECT value FROM json_each(?))",
                (j,),
            ).rowcount
            for table in ("rejects", "raw_inputs", "idempotency"):
                conn.execute(
                    f"DELETE FROM {table} WHERE input_id IN "  # noqa: S608 - fixed names
                    "(SELECT value FROM json_each(?))",
                    (j,),
                )
            conn.execute(
                "DELETE FROM inputs WHERE id IN (SELECT value FROM json_each(?))", (j,)
            )
            # Envelopes whose every item is gone; re-sealed ones have none.
            gone = [
                r[0]
                for r in conn.execute(
                    """SELECT seq FROM envelopes WHERE (seq IN (
                           SELECT value FROM json_each(?1))
                         OR (state = 'resealed' AND created_at < ?2))
                       AND state IN ('delivered', 'resealed')
                       AND NOT EXISTS (SELECT 1 FROM items WHERE envelope_seq = seq)""",
                    (_ids_json(sorted(seqs)), before),
                )
            ]
            if gone:
                g = _ids_json(gone)
                conn.execute(
                    "DELETE FROM envelope_bodies WHERE seq IN "
                    "(SELECT value FROM json_each(?))",
                    (g,),
                )
                conn.execute(
                    "DELETE FROM envelopes WHERE seq IN (SELECT value FROM json_each(?))",
                    (g,),
                )
            return PruneCount(inputs=len(ids), records=records, envelopes=len(gone))

        return self._write("prune_delivered", run)

    def source_counts(self) -> dict[str, SourceCounts]:
        """Per-source totals (``status``)."""

        def run() -> dict[str, SourceCounts]:
            return {
                r[0]: SourceCounts(
                    accepted=r[1], records=r[2], rejected=r[3], quarantined=r[4]
                )
                for r in self._conn.execute(
                    """SELECT source, accepted, records, rejected, quarantined
                       FROM source_stats ORDER BY source"""
                )
            }

        return self._read("source_counts", run)

    def destination_counts(self, *, now: float) -> dict[str, DestinationCounts]:
        """Per-destination record states, pending envelopes, oldest undelivered age."""

        def run() -> dict[str, DestinationCounts]:
            conn = self._conn
            # Index seeks only (status and the gauges ask every few seconds):
            # delivered items are many and kept for days, so they are counted
            # by a total, never by a scan.
            counts: dict[str, dict[str, int]] = {
                d: {"delivered": n}
                for d, n in conn.execute(
                    "SELECT destination, delivered FROM destination_stats"
                )
            }
            for dest in self._item_destinations():
                per = counts.setdefault(dest, {})
                for state in ("queued", "leased", "sealed", "dead"):
                    per[state] = self._one(
                        """SELECT COUNT(*) FROM items
                           WHERE destination = ? AND state = ?""",
                        (dest, state),
                    )
                for key, states in (
                    ("envelopes_pending", ("queued", "leased")),
                    ("envelopes_dead", ("dead",)),
                ):
                    per[key] = sum(
                        self._one(
                            """SELECT COUNT(*) FROM envelopes
                               WHERE destination = ? AND state = ?""",
                            (dest, st),
                        )
                        for st in states
                    )
            held: dict[str, tuple[int, float]] = {
                d: (n, since)
                for d, n, since in conn.execute(
                    """SELECT h.destination, COUNT(*), MIN(h.since)
                       FROM holds h JOIN items i ON i.id = h.item_id
                       WHERE i.state = 'queued' AND i.ready_at = ?
                       GROUP BY h.destination""",
                    (HELD_AT,),
                )
            }
            result = {}
            for dest, per in sorted(counts.items()):
                n_held, held_since = held.get(dest, (0, None))
                # Three seeks in items_state rather than an index of its own.
                oldest = self._one(
                    """SELECT enqueued_at FROM items WHERE id = (SELECT MIN(m) FROM (
                           SELECT MIN(id) AS m FROM items
                               WHERE destination = ?1 AND state = 'queued'
                           UNION ALL SELECT MIN(id) FROM items
                               WHERE destination = ?1 AND state = 'leased'
                           UNION ALL SELECT MIN(id) FROM items
                               WHERE destination = ?1 AND state = 'sealed'))""",
                    (dest,),
                )
                result[dest] = DestinationCounts(
                    queued=per.get("queued", 0),
                    leased=per.get("leased", 0),
                    sealed=per.get("sealed", 0),
                    delivered=per.get("delivered", 0),
                    dead=per.get("dead", 0),
                    envelopes_pending=per.get("envelopes_pending", 0),
                    envelopes_dead=per.get("envelopes_dead", 0),
                    oldest_age_s=None if oldest is None else max(0.0, now - oldest),
                    held=n_held,
                    oldest_held_s=(
                        None if held_since is None else max(0.0, now - held_since)
                    ),
                )
            return result

        return self._read("destination_counts", run)

    def usage(self) -> dict[str, Usage]:
        """Undelivered data held per source, as the quotas count it."""
        return self._read(
            "usage",
            lambda: {
                r[0]: Usage(records=r[1], bytes=r[2])
                for r in self._conn.execute(
                    "SELECT source, records, bytes FROM usage ORDER BY source"
                )
            },
        )

    def intake_state(self, intake_id: str) -> IntakeState | None:
        """An input, its rejects, and each record's delivery state per destination."""

        def run() -> IntakeState | None:
            conn = self._conn
            row = conn.execute(
                """SELECT source, status, received_at, content_type, size, digest_hex,
                          reason_code, reason_message, replayed_at
                   FROM inputs WHERE id = ?""",
                (intake_id,),
            ).fetchone()
            if row is None:
                return None
            records: list[RecordState] = []
            deliveries: dict[int, list[DeliveryState]] = {}
            for r in conn.execute(
                """SELECT r.id, r.seq, r.dataset, r.record_key, r.digest_hex,
                          i.destination,
                          CASE WHEN i.state = 'queued' AND i.ready_at = ?2
                               THEN 'held' ELSE i.state END,
                          i.attempts, i.delivered_at, i.receipt_id, e.id,
                          CASE WHEN i.state = 'queued' AND i.ready_at = ?2
                               THEN 'E_PARENT_PENDING: waiting for ' || r.parent_ref
                               ELSE i.error END
                   FROM records r
                   LEFT JOIN items i ON i.record_id = r.id
                   LEFT JOIN envelopes e ON e.seq = i.envelope_seq
                   WHERE r.input_id = ?1 ORDER BY r.seq, i.id""",
                (intake_id, HELD_AT),
            ):
                if r[0] not in deliveries:
                    deliveries[r[0]] = []
                    records.append(
                        RecordState(
                            seq=r[1], dataset=r[2], record_key=r[3], digest_hex=r[4],
                            deliveries=(),
                        )
                    )  # fmt: skip
                if r[5] is not None:
                    deliveries[r[0]].append(
                        DeliveryState(
                            destination=r[5], state=ItemState(r[6]), attempts=r[7],
                            delivered_at=r[8], receipt_id=r[9], envelope_id=r[10],
                            error=r[11],
                        )
                    )  # fmt: skip
            full = tuple(
                RecordState(
                    seq=rec.seq, dataset=rec.dataset, record_key=rec.record_key,
                    digest_hex=rec.digest_hex, deliveries=tuple(d),
                )
                for rec, d in zip(records, deliveries.values(), strict=True)
            )  # fmt: skip
            return IntakeState(
                intake_id=intake_id, source=row[0], status=InputStatus(row[1]),
                received_at=row[2], content_type=row[3], size=row[4],
                digest_hex=row[5], records=full, rejects=self._rejects(intake_id),
                reason_code=row[6], reason_message=row[7], replayed_at=row[8],
            )  # fmt: skip

        return self._read("intake_state", run)

    def check(self) -> list[str]:
        """Everything that is wrong with the file: SQLite's checks plus the quota
        bookkeeping recomputed from the data. Empty means healthy."""
        problems = self.integrity_problems()

        def run() -> list[str]:
            found = []
            conn = self._conn
            # A record is held while one of its items is undelivered.
            for iid, stored, actual in conn.execute(
                """SELECT id, pending_records, actual FROM (
                       SELECT i.id, i.pending_records, (SELECT COUNT(*) FROM records r
                           WHERE r.input_id = i.id AND EXISTS (SELECT 1 FROM items t
                               WHERE t.record_id = r.id
                                 AND t.state IN ('queued', 'leased', 'sealed'))
                       ) AS actual FROM inputs i)
                   WHERE pending_records != actual"""
            ):
                found.append(
                    f"input {iid}: pending_records {stored}, actually {actual}"
                )
            actual_usage = {
                r[0]: (r[1], r[2])
                for r in conn.execute(
                    """SELECT i.source,
                              SUM(i.pending_records),
                              SUM(i.size + (SELECT COALESCE(SUM(r.size), 0)
                                  FROM records r WHERE r.input_id = i.id
                                  AND EXISTS (SELECT 1 FROM items t
                                      WHERE t.record_id = r.id
                                        AND t.state IN ('queued', 'leased', 'sealed'))))
                       FROM inputs i WHERE i.pending_records > 0 GROUP BY i.source"""
                )
            }
            stored_usage = {
                r[0]: (r[1], r[2])
                for r in conn.execute("SELECT source, records, bytes FROM usage")
            }
            for source in sorted(set(actual_usage) | set(stored_usage)):
                want = actual_usage.get(source, (0, 0))
                have = stored_usage.get(source, (0, 0))
                if want != have:
                    found.append(f"usage of '{source}': stored {have}, actually {want}")
            stored, actual = conn.execute(
                """SELECT records, (SELECT COUNT(*) FROM hub_records)
                   FROM hub_stats WHERE id = 1"""
            ).fetchone()
            if stored != actual:
                found.append(f"hub records: counted {stored}, actually {actual}")
            return found

        return problems + self._read("check", run)


# -- the asyncio facade ------------------------------------------------------------

S = TypeVar("S", bound=SqliteStore)


class _Job:
    __slots__ = ("fn", "future", "weight")

    def __init__(
        self, fn: Callable[[], Any], future: concurrent.futures.Future[Any], weight: int
    ) -> None:
        self.fn = fn
        self.future = future
        self.weight = weight


class _Writer(Generic[S]):
    """The one thread that writes: runs queued jobs in batches, one commit each."""

    def __init__(
        self,
        opener: Callable[[], S],
        *,
        name: str,
        max_batch: int,
        max_batch_bytes: int,
    ) -> None:
        self._opener = opener
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopping = False
        self.opened: concurrent.futures.Future[S] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.calls = 0  # jobs run to completion (committed or failed on their own)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], weight: int) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._stopping:
                raise SpoolError(f"{self._thread.name}: closed")
            self._queue.put(_Job(fn, future, weight))
        return future

    def stop(self) -> concurrent.futures.Future[None]:
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._queue.put(None)
        return self.stopped

    def _main(self) -> None:
        try:
            store = self._opener()
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the open
            self.opened.set_exception(exc)
            self.stopped.set_result(None)
            return
        self.opened.set_result(store)
        try:
            running = True
            while running:
                job = self._queue.get()
                if job is None:
                    break
                batch, weight = [job], job.weight
                # Everything that queued up during the previous commit's fsync
                # goes into this one transaction: that is the group commit.
                while len(batch) < self._max_batch and weight < self._max_batch_bytes:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        running = False
                        break
                    batch.append(nxt)
                    weight += nxt.weight
                self._run(store, batch)
        finally:
            # Whatever ended the loop, nobody may wait forever on a queued job.
            with self._lock:
                self._stopping = True
            closed = SpoolError(f"{self._thread.name}: closed")
            # Submits are refused now and this is the only consumer: empty() is exact.
            while not self._queue.empty():
                left = self._queue.get_nowait()
                if left is not None and left.future.set_running_or_notify_cancel():
                    left.future.set_exception(closed)
            store.close()
            self.stopped.set_result(None)

    def _run(self, store: S, batch: list[_Job]) -> None:
        live = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with store.batch():
                for job in live:
                    try:
                        outcomes.append((job, job.fn(), None))
                    except Exception as exc:  # noqa: BLE001 - it belongs to that caller
                        outcomes.append((job, None, exc))
        except Exception as exc:  # noqa: BLE001 - the commit failed for every caller
            failed = exc if isinstance(exc, SpoolError) else SpoolError(str(exc))
            done = {id(j) for j, _, _ in outcomes}
            for job, _, own in outcomes:
                job.future.set_exception(own or failed)
            for job in live:
                if id(job) not in done:
                    job.future.set_exception(failed)
            return
        self.calls += len(live)
        # Only now, after COMMIT returned, may any caller learn of success.
        for job, result, error in outcomes:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)


class AsyncStore(Generic[S]):
    """Event-loop facade: writes on one writer thread (group commit), reads on
    another thread with its own connection."""

    def __init__(self, writer: _Writer[S], store: S, reader: S) -> None:
        self._writer = writer
        self._store = store
        self._reader = reader
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"{store.KIND}-reader"
        )
        self._closed = False

    @classmethod
    async def _start(
        cls,
        open_writer: Callable[[], S],
        open_reader: Callable[[], S],
        *,
        name: str,
        max_batch: int,
        max_batch_bytes: int,
    ) -> tuple[_Writer[S], S, S]:
        writer = _Writer(
            open_writer, name=name, max_batch=max_batch, max_batch_bytes=max_batch_bytes
        )
        store = await asyncio.wrap_future(writer.opened)
        try:
            # The reader opens after the writer, so the schema is migrated.
            reader = await asyncio.to_thread(open_reader)
        except BaseException:
            await asyncio.wrap_future(writer.stop())
            raise
        return writer, store, reader

    @property
    def commits(self) -> int:
        """Commits that wrote something so far (each one WAL fsync)."""
        return self._store.commits

    @property
    def calls(self) -> int:
        """Write calls run so far; ``calls / commits`` is the group-commit factor."""
        return self._writer.calls

    async def _write(self, fn: Callable[[], T], weight: int = 0) -> T:
        return await asyncio.wrap_future(self._writer.submit(fn, weight))

    async def _read(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise SpoolError(f"{self._store.KIND}: closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def aclose(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.wrap_future(self._writer.stop())
        await asyncio.get_running_loop().run_in_executor(self._pool, self._reader.close)
        self._pool.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ping(self) -> None:
        """Readiness probe: the writer thread is alive and can take the write lock."""
        await self._write(lambda: None)

    async def integrity_problems(self) -> list[str]:
        """SQLite's own checks; reads the whole file, so not for a readiness probe."""
        return await self._read(self._reader.integrity_problems)


class AsyncSpool(AsyncStore[Spool]):
    """``Spool`` for the event loop; every write resolves only after its commit."""

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        quotas: Quotas | None = None,
        max_batch: int = 512,
        max_batch_bytes: int = 256 * 1024 * 1024,
    ) -> AsyncSpool:
        writer, store, reader = await cls._start(
            partial(Spool, path, quotas=quotas),
            partial(Spool, path, readonly=True),
            name="spool-writer",
            max_batch=max_batch,
            max_batch_bytes=max_batch_bytes,
        )
        return cls(writer, store, reader)

    def set_quotas(self, quotas: Quotas) -> None:
        self._store.set_quotas(quotas)

    async def put_intake(
        self,
        provenance: Provenance,
        raw: bytes,
        records: Sequence[AcceptedRecord],
        rejects: Sequence[Reject] = (),
        *,
        intake_id: str | None = None,
        answer: bytes | None = None,
        now: float | None = None,
    ) -> IntakeAnswer:
        weight = len(raw) + sum(len(r.canonical) for r in records)
        return await self._write(
            partial(
                self._store.put_intake,
                provenance,
                raw,
                records,
                rejects,
                intake_id=intake_id,
                answer=answer,
                now=now,
            ),
            weight,
        )

    async def put_quarantine(
        self,
        provenance: Provenance,
        raw: bytes,
        *,
        reason_code: str,
        message: str,
        rejects: Sequence[Reject] = (),
        intake_id: str | None = None,
        answer: bytes | None = None,
        answer_status: int = 422,
        now: float | None = None,
    ) -> IntakeAnswer:
        return await self._write(
            partial(
                self._store.put_quarantine,
                provenance,
                raw,
                reason_code=reason_code,
                message=message,
                rejects=rejects,
                intake_id=intake_id,
                answer=answer,
                answer_status=answer_status,
                now=now,
            ),
            len(raw),
        )

    async def mark_replayed(
        self,
        intake_id: str,
        *,
        now: float,
        reason_code: str | None = None,
        message: str | None = None,
    ) -> bool:
        return await self._write(
            partial(
                self._store.mark_replayed,
                intake_id,
                now=now,
                reason_code=reason_code,
                message=message,
            )
        )

    async def lease(
        self,
        destination: str,
        *,
        limit: int,
        lease_s: float,
        now: float,
        parent_first: bool = False,
    ) -> list[LeasedItem]:
        return await self._write(
            partial(
                self._store.lease,
                destination,
                limit=limit,
                lease_s=lease_s,
                now=now,
                parent_first=parent_first,
            )
        )

    async def held(self, destination: str | None = None) -> list[HeldRef]:
        return await self._read(partial(self._reader.held, destination))

    async def release_held(
        self, destination: str, refs: Sequence[str] | None, *, now: float
    ) -> int:
        return await self._write(
            partial(self._store.release_held, destination, refs, now=now)
        )

    async def unhold_all(self, destination: str, *, now: float) -> int:
        return await self._write(partial(self._store.unhold_all, destination, now=now))

    async def ack(
        self,
        item_ids: Sequence[int],
        *,
        receipt_id: str,
        receipt_digest_hex: str,
        now: float,
        lease_until: float | None = None,
    ) -> int:
        return await self._write(
            partial(
                self._store.ack,
                item_ids,
                receipt_id=receipt_id,
                receipt_digest_hex=receipt_digest_hex,
                now=now,
                lease_until=lease_until,
            )
        )

    async def release(
        self,
        item_ids: Sequence[int],
        *,
        delay_s: float,
        now: float,
        error: str | None = None,
        lease_until: float | None = None,
    ) -> int:
        return await self._write(
            partial(
                self._store.release,
                item_ids,
                delay_s=delay_s,
                now=now,
                error=error,
                lease_until=lease_until,
            )
        )

    async def dead_letter(
        self,
        item_ids: Sequence[int],
        *,
        reason: str,
        now: float,
        lease_until: float | None = None,
    ) -> int:
        return await self._write(
            partial(
                self._store.dead_letter,
                item_ids,
                reason=reason,
                now=now,
                lease_until=lease_until,
            )
        )

    async def redrive_dead(self, destination: str, *, now: float) -> int:
        return await self._write(
            partial(self._store.redrive_dead, destination, now=now)
        )

    async def put_envelope(
        self,
        destination: str,
        envelope_id: str,
        body: bytes,
        *,
        digest_hex: str,
        item_ids: Sequence[int],
        now: float,
    ) -> None:
        await self._write(
            partial(
                self._store.put_envelope,
                destination,
                envelope_id,
                body,
                digest_hex=digest_hex,
                item_ids=item_ids,
                now=now,
            ),
            len(body),
        )

    async def lease_envelopes(
        self, destination: str, *, limit: int, lease_s: float, now: float
    ) -> list[LeasedEnvelope]:
        return await self._write(
            partial(
                self._store.lease_envelopes,
                destination,
                limit=limit,
                lease_s=lease_s,
                now=now,
            )
        )

    async def ack_envelope(
        self,
        envelope_id: str,
        *,
        receipt_id: str,
        receipt_digest_hex: str,
        receipt: bytes,
        now: float,
        rejected: Mapping[int, str] | None = None,
    ) -> bool:
        return await self._write(
            partial(
                self._store.ack_envelope,
                envelope_id,
                receipt_id=receipt_id,
                receipt_digest_hex=receipt_digest_hex,
                receipt=receipt,
                now=now,
                rejected=rejected,
            )
        )

    async def release_envelopes(
        self,
        envelope_ids: Sequence[str],
        *,
        delay_s: float,
        now: float,
        error: str | None = None,
    ) -> int:
        return await self._write(
            partial(
                self._store.release_envelopes,
                envelope_ids,
                delay_s=delay_s,
                now=now,
                error=error,
            )
        )

    async def dead_letter_envelopes(
        self, envelope_ids: Sequence[str], *, reason: str, now: float
    ) -> int:
        return await self._write(
            partial(
                self._store.dead_letter_envelopes, envelope_ids, reason=reason, now=now
            )
        )

    async def recover_leases(self, *, now: float) -> int:
        return await self._write(partial(self._store.recover_leases, now=now))

    async def requeue_envelope(
        self, envelope_id: str, *, now: float, reason: str
    ) -> int:
        return await self._write(
            partial(self._store.requeue_envelope, envelope_id, now=now, reason=reason)
        )

    async def put_received(
        self,
        envelope: InboxEnvelope,
        records: Sequence[AcceptedRecord],
        provenance: Provenance,
        *,
        now: float,
    ) -> InboxAnswer:
        body = 0 if envelope.body is None else len(envelope.body)
        weight = body + sum(len(r.canonical) for r in records)
        return await self._write(
            partial(self._store.put_received, envelope, records, provenance, now=now),
            weight,
        )

    async def prune_delivered(self, *, before: float, limit: int = 500) -> PruneCount:
        return await self._write(
            partial(self._store.prune_delivered, before=before, limit=limit)
        )

    async def prune_hub_envelopes(self, *, received_before: float) -> int:
        return await self._write(
            partial(self._store.prune_hub_envelopes, received_before=received_before)
        )

    async def get_envelope_receipt(self, envelope_id: str) -> StoredReceipt | None:
        return await self._read(partial(self._reader.get_envelope_receipt, envelope_id))

    async def has_hub_record(
        self, dataset: str, record_key: str, digest_hex: str
    ) -> bool:
        return await self._read(
            partial(self._reader.has_hub_record, dataset, record_key, digest_hex)
        )

    async def list_hub_records(
        self, *, after: int = 0, limit: int = 100
    ) -> list[StoredInboxRecord]:
        return await self._read(
            partial(self._reader.list_hub_records, after=after, limit=limit)
        )

    async def hub_counts(self) -> InboxCounts:
        return await self._read(self._reader.hub_counts)

    async def lookup_idempotent(self, source: str, key: str) -> IntakeAnswer | None:
        return await self._read(partial(self._reader.lookup_idempotent, source, key))

    async def intake_state(self, intake_id: str) -> IntakeState | None:
        return await self._read(partial(self._reader.intake_state, intake_id))

    async def get_input(self, intake_id: str) -> StoredInput | None:
        return await self._read(partial(self._reader.get_input, intake_id))

    async def list_quarantine(
        self,
        *,
        source: str | None = None,
        include_replayed: bool = False,
        after: str = "",
        limit: int = 100,
    ) -> list[QuarantineEntry]:
        return await self._read(
            partial(
                self._reader.list_quarantine,
                source=source,
                include_replayed=include_replayed,
                after=after,
                limit=limit,
            )
        )

    async def source_counts(self) -> dict[str, SourceCounts]:
        return await self._read(self._reader.source_counts)

    async def destination_counts(self, *, now: float) -> dict[str, DestinationCounts]:
        return await self._read(partial(self._reader.destination_counts, now=now))

    async def usage(self) -> dict[str, Usage]:
        return await self._read(self._reader.usage)

    async def check(self) -> list[str]:
        return await self._read(self._reader.check)
