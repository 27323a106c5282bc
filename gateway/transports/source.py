"""File sources: files on an SFTP server or in a local drop folder become inputs.

One file is one input through ``Intake.accept``. The steps, and why a crash
at any point loses no file and processes none twice::

    1 list the incoming folder; a file is complete when its size and mtime
      stayed the same over two polls at least ``stable_s`` apart, or when its
      marker (``NAME.done``) exists
    2 claim: rename it into processing/ as ``<node>~<source>~NAME`` (with
      its marker first). A rename is atomic and never overwrites, so of two
      gateways (or two polls) exactly one wins; the loser sees "gone".
    3 download into state_dir/transfers/ (appending: a restart resumes where
      the last run stopped), until the local copy has the remote size
    4 Intake.accept with Idempotency-Key ``sm3:<SM3 of the bytes>``: the same
      content (re-run after a crash, or dropped twice) is one input
    5 only when the input is durable (``Outcome.stored``): move the file to
      done/ (or delete it) -- or to error/ when the input was quarantined
    6 forget the local copy and the marker

Each step is audited through ``Events`` (``file_claimed``, ``file_read``,
``file_skipped``, ``file_archived``, ``transport_failed``; docs/audit.md). A
refused file's ``NAME.error.json`` note is written beside it in error/ as
``.part``, fsync'd, then renamed.

A restart first finishes whatever it finds in processing/ under its own
prefix: before step 2 nothing happened; between 2 and 5 the file is still in
processing/ and is taken up again (step 4 is idempotent); after 5 nothing is
left. A full spool (503) leaves the file in processing/ for a later poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import posixpath
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from config.models import DirectoryTransport, MarkerCompletion, SftpTransport
from crypto import sm3
from gateway import failpoints
from gateway.errors import TransportError
from gateway.intake import Intake, Outcome
from gateway.transports.store import CHUNK, Entry, FileStore
from gateway.transports.watch import Wakeup
from monitoring.events import Events

__all__ = ["FileSource"]

log = logging.getLogger("gateway.files")
T = TypeVar("T")
NOTE_SUFFIX = ".error.json"


def _local_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class _Later(Exception):
    """The input could not be stored now (spool full): retry after a while."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry in {seconds} s")
        self.seconds = seconds


def _retry_after(out: Outcome) -> float:
    try:
        return max(1.0, float(out.headers.get("Retry-After", "30")))
    except ValueError:
        return 30.0


class FileSource:
    """Polls one folder (SFTP or local) for one source; one file at a time."""

    def __init__(
        self,
        *,
        node: str,
        source: str,
        transport: SftpTransport | DirectoryTransport,
        incoming: str,
        store: FileStore,
        intake: Intake,
        staging: Path,
        events: Events,
        wake: Wakeup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = source
        self.cfg = transport
        self.store = store
        self.intake = intake
        self.events = events
        self.staging = staging
        self.wake = wake or Wakeup([], mode="poll")
        self._clock = clock
        self.incoming = incoming

        def under(p: str) -> str:
            return p if p.startswith("/") else posixpath.join(incoming, p)

        self.processing = under(transport.processing_dir)
        self.done = under(transport.done_dir)
        self.error = under(transport.error_dir)
        self.owner = f"{node}~{source}~"
        self._seen: dict[str, tuple[tuple[int, float], float]] = {}
        self._ready = False
        self.failures = 0
        self.last_error: str | None = None
        self.files_done = 0
        self.transport = "sftp" if isinstance(transport, SftpTransport) else "directory"
        # The file a failure happened on (for its audit entry), if any.
        self._current: str | None = None

    # -- helpers ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except FileNotFoundError as exc:
            # A folder that should be there is not (or a claimed file vanished).
            raise TransportError(
                f"{self.store.where}: {exc.filename or exc}: no such file or folder",
                code="E_NOT_FOUND",
            ) from exc

    @property
    def _marker(self) -> str | None:
        c = self.cfg.completion
        return c.suffix if isinstance(c, MarkerCompletion) else None

    def _remote_addr(self, name: str) -> str:
        return f"{self.store.where}{posixpath.join(self.incoming, name)}"

    def _token_id(self, entry: Entry | None) -> str:
        if isinstance(self.cfg, SftpTransport):
            return f"sftp:{self.cfg.user}"
        uid = entry.uid if entry is not None else None
        return f"dir:uid={uid}" if uid is not None else "dir"

    # -- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.wake.start()
        try:
            while not stop.is_set():
                wait = self.cfg.poll_interval_s
                try:
                    await self.poll_once(stop)
                    self.failures = 0
                    self.last_error = None
                    wait = min(wait, self._recheck_in())
                except _Later as exc:
                    wait = exc.seconds
                except TransportError as exc:
                    wait = self._failed(exc.code, str(exc))
                except OSError as exc:
                    wait = self._failed("E_STAGING", f"local staging: {exc}")
                except Exception as exc:  # a bug must not stop the source for good
                    log.exception("File source crashed; retrying.")
                    wait = self._failed("E_INTERNAL", type(exc).__name__)
                await self._sleep(stop, wait)
        finally:
            self.wake.close()
            await asyncio.to_thread(self.store.close)

    def _failed(self, code: str, detail: str) -> float:
        self.failures += 1
        self.last_error = f"{code}: {detail}"
        self.events.file_transport_failed(
            self.name,
            code,
            detail=detail,
            remote=self.store.where,
            source=self.name,
            file_path=self._current,
        )
        self._current = None
        base = min(self.cfg.backoff_max_s, 2.0 ** min(self.failures - 1, 16))
        return float(base * (0.5 + random.random() / 2))  # noqa: S311 - jitter

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        stopper = asyncio.create_task(stop.wait())
        waker = asyncio.create_task(self.wake.wait(seconds))
        try:
            await asyncio.wait({stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            waker.cancel()
            await asyncio.gather(stopper, waker, return_exceptions=True)

    def _recheck_in(self) -> float:
        """Files seen but not yet stable: look again once they could be."""
        c = self.cfg.completion
        if self._marker is not None or not self._seen:
            return self.cfg.poll_interval_s
        stable_s = getattr(c, "stable_s", 0.0)
        now = self._clock()
        pending = [
            since + stable_s - now
            for _, since in self._seen.values()
            if since + stable_s > now
        ]
        return max(0.05, min(pending)) if pending else self.cfg.poll_interval_s

    async def poll_once(self, stop: asyncio.Event | None = None) -> int:
        """Finish claimed files, then claim and process complete new ones."""
        self._current = None
        if not self._ready:
            for d in (self.processing, self.done, self.error):
                await self._call(self.store.makedirs, d)
            await asyncio.to_thread(self.staging.mkdir, parents=True, exist_ok=True)
            self._ready = True
        n = await self._resume()
        entries = await self._call(self.store.listdir, self.incoming)
        by_name = {e.name: e for e in entries}
        marker = self._marker
        for e in sorted(entries, key=lambda e: (e.mtime, e.name)):
            if stop is not None and stop.is_set():
                break
            if not self._candidate(e) or not self._complete(e, by_name):
                continue
            if await self._claim(e):
                self._seen.pop(e.name, None)
                await self._process(self.owner + e.name, e)
                n += 1
        self._seen = {k: v for k, v in self._seen.items() if k in by_name}
        if marker is not None:
            await self._drop_orphan_markers(by_name, marker)
        return n

    def _candidate(self, e: Entry) -> bool:
        name = e.name
        marker = self._marker
        return (
            e.is_file
            and not name.startswith(".")
            and not name.endswith(".part")
            and not (marker is not None and name.endswith(marker))
            and fnmatch.fnmatchcase(name, self.cfg.pattern)
        )

    def _complete(self, e: Entry, by_name: dict[str, Entry]) -> bool:
        marker = self._marker
        if marker is not None:
            return e.name + marker in by_name
        stable_s = getattr(self.cfg.completion, "stable_s", 0.0)
        now = self._clock()
        sig = (e.size, e.mtime)
        prev = self._seen.get(e.name)
        if prev is None or prev[0] != sig:
            self._seen[e.name] = (sig, now)
            return False
        return now - prev[1] >= stable_s

    async def _claim(self, e: Entry) -> bool:
        name = e.name
        src = posixpath.join(self.incoming, name)
        dst = posixpath.join(self.processing, self.owner + name)
        self._current = src  # a failure in between names it
        claimed = await self._rename_in(src, dst, name)
        self._current = None
        if claimed:
            self._claimed(name, dst, e.size, e)
            failpoints.hit("file-source.claimed")
        return claimed

    async def _rename_in(self, src: str, dst: str, name: str) -> bool:
        marker = self._marker
        try:
            if marker is not None:
                # Marker first: a crash in between leaves a claimed marker, and
                # the resume step then claims its file (still complete).
                if not await self._call(self.store.rename, src + marker, dst + marker):
                    return False
                failpoints.hit("file-source.marker-claimed")
            return bool(await self._call(self.store.rename, src, dst))
        except FileExistsError:
            log.warning(
                "A file of the same name is still in processing; claiming later.",
                extra={"source": self.name, "file": name},
            )
            return False

    def _claimed(self, name: str, path: str, size: int | None, e: Entry) -> None:
        self.events.file_claimed(
            self.name,
            remote=self.store.where,
            file_name=name,
            file_path=path,
            size=size,
            transport=self.transport,
            token_id=self._token_id(e),
        )

    async def _resume(self) -> int:
        entries = await self._call(self.store.listdir, self.processing)
        mine = {e.name: e for e in entries if e.name.startswith(self.owner)}
        marker = self._marker
        n = 0
        for claimed, e in sorted(mine.items()):
            if marker is not None and claimed.endswith(marker):
                data = claimed[: -len(marker)]
                if data not in mine:
                    name = data[len(self.owner) :]
                    src = posixpath.join(self.incoming, name)
                    dst = posixpath.join(self.processing, data)
                    if await self._call(self.store.rename, src, dst):
                        # Claimed now (its marker was claimed before a crash).
                        self._claimed(name, dst, None, e)
                        await self._process(data, e)
                        n += 1
                    else:
                        await self._call(
                            self.store.remove,
                            posixpath.join(self.processing, claimed),
                        )
                continue
            if not e.is_file:
                continue
            log.info(
                "Resuming a file claimed before a restart.",
                extra={"source": self.name, "file": claimed[len(self.owner) :]},
            )
            await self._process(claimed, e)
            n += 1
        return n

    async def _drop_orphan_markers(
        self, by_name: dict[str, Entry], marker: str
    ) -> None:
        # A marker whose file is gone (claimed by another gateway that crashed
        # before moving the marker, or removed by the producer) would make a
        # later file of that name look complete too early.
        for name in by_name:
            if name.endswith(marker) and name[: -len(marker)] not in by_name:
                entry = by_name[name]
                if entry.mtime and time.time() - entry.mtime > 3600:
                    await self._call(
                        self.store.remove, posixpath.join(self.incoming, name)
                    )

    # -- one file -----------------------------------------------------------------

    async def _process(self, claimed: str, listed: Entry | None) -> None:
        name = claimed[len(self.owner) :]
        path = posixpath.join(self.processing, claimed)
        local = self.staging / claimed
        src = self.intake.sources.get(self.name)
        if src is None:
            return  # removed by a reload; the file waits in processing/
        self._current = path
        entry = await self._call(self.store.stat, path)
        if entry is None:
            await asyncio.to_thread(local.unlink, missing_ok=True)
            self._current = None
            return
        token_id = self._token_id(listed or entry)
        if entry.size > src.cfg.max_bytes:
            self.events.input_refused(
                self.name,
                "E_TOO_LARGE",
                intake_id=None,
                remote=self._remote_addr(name),
                token_id=token_id,
            )
            limit = src.cfg.max_bytes
            await self._to_error(
                path,
                name,
                code="E_TOO_LARGE",
                message=f"The file is {entry.size} bytes; the source accepts at most "
                f"{limit}. / 文件大小为 {entry.size} 字节，该数据源最多接收 {limit} 字节。",
                size=entry.size,
            )
            await self._finish(claimed, local)
            self._current = None
            self.events.file_done(self.name, "too_large", name=name, detail="")
            return
        started = time.perf_counter()
        data = await self._fetch(path, entry.size, local)
        digest = await asyncio.to_thread(lambda: sm3(data).hex())
        self.events.file_read(
            self.name,
            remote=self.store.where,
            file_path=path,
            size=len(data),
            seconds=time.perf_counter() - started,
            source=self.name,
            input_sm3=digest,
        )
        key = f"sm3:{digest}"
        prior = await self.intake.spool.lookup_idempotent(self.name, key)
        ctype = self.cfg.content_type or src.cfg.content_types[0]
        out = await self.intake.accept(
            src,
            data,
            remote_addr=self._remote_addr(name),
            token_id=token_id,
            content_type=ctype,
            idempotency_key=key,
            name=name,
        )
        if not out.stored:
            log.warning(
                "Input not stored (spool full?); the file stays in processing.",
                extra={"source": self.name, "file": name, "status": out.status},
            )
            raise _Later(_retry_after(out))
        failpoints.hit("file-source.stored")
        if prior is not None:
            self.events.file_skipped(
                self.name,
                remote=self.store.where,
                file_name=name,
                input_sm3=digest,
                intake_id=prior.intake_id,
            )
        if 200 <= out.status < 300:
            outcome = "duplicate" if prior is not None else "accepted"
            if self.cfg.after == "delete":
                await self._call(self.store.remove, path)
                self._archived("deleted", name, path, out.intake_id, digest)
            else:
                target = await self._archive(path, self.done, name, out.intake_id)
                if target is not None:
                    self._archived("done", name, target, out.intake_id, digest)
        else:
            outcome = "quarantined"
            code, message = _answer_error(out.body)
            await self._to_error(
                path,
                name,
                code=code,
                message=message,
                size=len(data),
                intake_id=out.intake_id,
                input_sm3=digest,
            )
        await self._finish(claimed, local)
        self._current = None
        self.files_done += 1
        self.events.file_done(
            self.name, outcome, name=name, detail=f"intake {out.intake_id}"
        )

    def _archived(
        self, how: str, name: str, path: str, intake_id: str | None, digest: str
    ) -> None:
        self.events.file_archived(
            self.name,
            how,
            remote=self.store.where,
            file_name=name,
            file_path=path,
            source=self.name,
            intake_id=intake_id,
            input_sm3=digest,
        )

    async def _fetch(self, path: str, size: int, local: Path) -> bytes:
        """Download into the staging copy, resuming from what is already there."""
        have = await asyncio.to_thread(_local_size, local)
        if have > size:
            await asyncio.to_thread(local.unlink)
            have = 0
        while True:
            while have < size:
                got = await self._call(self.store.download, path, have, CHUNK, local)
                if got == 0:
                    break
                have += got
                failpoints.hit("file-source.download")
            # The claimed file cannot change any more, except when a producer
            # wrote on after a long pause: then take the rest too.
            entry = await self._call(self.store.stat, path)
            if entry is None:
                raise TransportError(
                    f"{self.store.where}: '{path}' vanished while being read",
                    code="E_FILE_VANISHED",
                )
            if entry.size == have:
                return await asyncio.to_thread(local.read_bytes)
            if entry.size < have:
                await asyncio.to_thread(local.unlink)
                have = 0
            size = entry.size

    async def _archive(
        self, path: str, folder: str, name: str, intake_id: str | None
    ) -> str | None:
        """Move a handled file into ``folder``; its new path (None: it vanished)."""
        target = posixpath.join(folder, name)
        try:
            moved = await self._call(self.store.rename, path, target)
        except FileExistsError:
            target = posixpath.join(folder, f"{name}.{intake_id or int(time.time())}")
            try:
                moved = await self._call(self.store.rename, path, target)
            except FileExistsError:
                # The same input, archived under both names already.
                await self._call(self.store.remove, path)
                return target
        if not moved:
            log.warning(
                "A claimed file vanished before it was archived.",
                extra={"source": self.name, "file": name},
            )
            return None
        return target

    async def _to_error(
        self,
        path: str,
        name: str,
        *,
        code: str,
        message: str,
        size: int,
        intake_id: str | None = None,
        input_sm3: str | None = None,
    ) -> None:
        """Move a refused file to error/ and write ``NAME.error.json`` beside it."""
        target = await self._archive(path, self.error, name, intake_id)
        if target is None:
            return
        en, zh = bilingual(code, message)
        note = {
            "error": {
                "code": code,
                "message": message,
                "message_en": en,
                "message_zh": zh,
            },
            # The intake id is also the quarantine id (`quarantine show ID`); none
            # when the file was refused unread (too large).
            "intake_id": intake_id,
            "input_sm3": input_sm3,
            "source": self.name,
            "file": name,
            "bytes": size,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        raw = json.dumps(note, ensure_ascii=False, indent=1).encode()
        written = await self._write_note(target + NOTE_SUFFIX, raw)
        self.events.file_archived(
            self.name,
            "error",
            remote=self.store.where,
            file_name=name,
            file_path=target,
            source=self.name,
            code=code,
            intake_id=intake_id,
            input_sm3=input_sm3,
            note_sm3=sm3(raw).hex() if written else None,
        )

    async def _write_note(self, final: str, raw: bytes) -> bool:
        """Write, fsync, rename: a reader sees no note or the whole note."""
        part = final + ".part"
        try:
            await self._call(self.store.write_file, part, raw)
            await self._call(self.store.replace, part, final)
        except TransportError as exc:
            # The input is durable and its file is in error/ already: a lost note
            # must not stop the source (the quarantine entry has the same facts).
            log.warning(
                "The .error.json note could not be written.",
                extra={"source": self.name, "file": final, "detail": str(exc)},
            )
            with contextlib.suppress(TransportError):
                await self._call(self.store.remove, part)
            return False
        return True

    async def _finish(self, claimed: str, local: Path) -> None:
        marker = self._marker
        if marker is not None:
            await self._call(
                self.store.remove, posixpath.join(self.processing, claimed + marker)
            )
        await asyncio.to_thread(local.unlink, missing_ok=True)


def _answer_error(body: bytes) -> tuple[str, str]:
    """(code, message) of a refusal answer (``{"error": {...}}``)."""
    try:
        obj = json.loads(body)
        err = obj["error"]
        code, message = err.get("code"), err.get("message")
    except (ValueError, KeyError, TypeError, AttributeError):
        return "E_UNKNOWN", ""
    return (
        code if isinstance(code, str) and code else "E_UNKNOWN",
        message if isinstance(message, str) else "",
    )


_CJK = re.compile("[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def bilingual(code: str, message: str) -> tuple[str, str]:
    """(English, Chinese) of an answer's message.

    Adapters and intake write ``"<English> / <Chinese>"``; a message without a
    Chinese part gets a fixed Chinese sentence naming the code.
    """
    cuts = [i for i in range(len(message)) if message.startswith(" / ", i)]
    for i in cuts:  # the first cut with plain English before it ...
        if not _CJK.search(message[:i]) and _CJK.search(message[i + 3 :]):
            return message[:i], message[i + 3 :]
    for i in reversed(cuts):  # ... else the last one with Chinese after it
        if _CJK.search(message[i + 3 :]):
            return message[:i], message[i + 3 :]
    if _CJK.search(message):
        return f"{code}: see message_zh.", message
    return (
        message or f"{code}: the input was refused.",
        f"{code}：输入被拒收，原文已保存在隔离区；详细说明见 message_en。",
    )
