"""Hub side of a file hop: envelopes arrive as files, receipts leave as files.

For each ``*.env`` in a watched folder (``*.part`` files are still being
uploaded and are ignored) the hub does exactly what ``POST /v1/envelopes``
does (``Hub.accept_envelope``), then:

- 200: writes the signed receipt as ``<receipts_dir>/<name>.receipt``
  (``.part`` + fsync + rename + fsync of the folder), then removes the
  envelope file;
- 503 (spool full): leaves the file for a later poll;
- a refusal (4xx): writes ``<receipts_dir>/<name>.error`` (``{"error":
  {"code": ...}}``) and moves the envelope to the error folder.

``<name>`` is the file name without ``.env``: the sender names the file after
the envelope id and waits for that receipt. A crash between storing and
writing the receipt is harmless: the file is still there, and a repeated
envelope gets the same receipt again.

Each step is audited through ``Events`` (``file_read``, then the hub's own
``envelope_received``, ``receipt_file_written`` or ``refusal_file_written``,
``file_archived``; ``transport_failed`` when the folder cannot be used).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from pathlib import Path

from crypto import sm3
from gateway import failpoints
from gateway.errors import TransportError
from gateway.hub import EnvelopeAnswer, Hub
from gateway.transports.store import fsync_dir
from gateway.transports.watch import Wakeup
from monitoring.events import Events

__all__ = ["EnvelopeFolder", "write_atomic"]

log = logging.getLogger("gateway.hub")
SUFFIX = ".env"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``path`` so that a reader sees nothing or all of it, durably."""
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    fsync_dir(path.parent)


class EnvelopeFolder:
    """Watches one envelope drop folder for a hub."""

    def __init__(
        self,
        hub: Hub,
        *,
        path: Path,
        receipts: Path,
        errors: Path,
        poll_interval_s: float,
        events: Events,
        watch: str = "auto",
    ) -> None:
        self.hub = hub
        self.path = path
        self.receipts = receipts
        self.errors = errors
        self.poll_interval_s = poll_interval_s
        self.events = events
        self.wake = Wakeup([str(path)], mode=watch)
        self.name = f"envelopes:{path.name}"
        self.last_error: str | None = None
        self.failures = 0
        self.where = f"file://{socket.gethostname()}"

    async def run(self, stop: asyncio.Event) -> None:
        for d in (self.path, self.receipts, self.errors):
            await asyncio.to_thread(d.mkdir, parents=True, exist_ok=True)
        self.wake.start()
        try:
            while not stop.is_set():
                wait = self.poll_interval_s
                try:
                    later = await self.poll_once(stop)
                    self.failures = 0
                    self.last_error = None
                    if later is not None:
                        wait = later
                except (OSError, TransportError) as exc:
                    self.failures += 1
                    self.last_error = str(exc)
                    code = getattr(exc, "code", "E_DIR_IO")
                    self.events.file_transport_failed(
                        self.name,
                        code,
                        detail=str(exc),
                        remote=self.where,
                        file_path=str(self.path),
                    )
                    wait = min(300.0, 2.0 ** min(self.failures, 8))
                stopper = asyncio.create_task(stop.wait())
                waker = asyncio.create_task(self.wake.wait(wait))
                await asyncio.wait(
                    {stopper, waker}, return_when=asyncio.FIRST_COMPLETED
                )
                stopper.cancel()
                waker.cancel()
                await asyncio.gather(stopper, waker, return_exceptions=True)
        finally:
            self.wake.close()

    def _list(self) -> list[Path]:
        out = []
        with os.scandir(self.path) as it:
            for e in it:
                if (
                    e.name.endswith(SUFFIX)
                    and not e.name.startswith(".")
                    and e.is_file(follow_symlinks=False)
                ):
                    out.append(Path(e.path))
        return sorted(out, key=lambda p: p.name)

    async def poll_once(self, stop: asyncio.Event | None = None) -> float | None:
        """Handle every envelope file present; a wait hint if the spool is full."""
        for f in await asyncio.to_thread(self._list):
            if stop is not None and stop.is_set():
                return None
            later = await self._one(f)
            if later is not None:
                return later
        return None

    def _read(self, f: Path) -> tuple[bytes, int, str | None] | None:
        """(bytes read, file size, SM3 when read whole), or None if it is gone."""
        limit = self.hub.max_envelope_bytes
        try:
            with f.open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                data = fh.read(limit + 1)
        except FileNotFoundError:
            return None
        # An oversized file is refused unread; its partial digest would mislead.
        return data, size, sm3(data).hex() if len(data) <= limit else None

    async def _one(self, f: Path) -> float | None:
        stem = f.name[: -len(SUFFIX)]
        started = time.perf_counter()
        got = await asyncio.to_thread(self._read, f)
        if got is None:
            return None  # taken away meanwhile
        data, size, digest = got
        self.events.file_read(
            self.name,
            remote=self.where,
            file_path=str(f),
            size=size,
            seconds=time.perf_counter() - started,
            envelope_sm3=digest,
        )
        answer = await self.hub.accept_envelope(data, remote_addr=f"file://{f}")
        if answer.status == 200:
            failpoints.hit("envelope-folder.stored")
            receipt = self.receipts / f"{stem}.receipt"
            await asyncio.to_thread(write_atomic, receipt, answer.body)
            self.events.answer_file_written(
                self.name,
                remote=self.where,
                file_name=f.name,
                file_path=str(receipt),
                receipt_sm3=sm3(answer.body).hex(),
            )
            await asyncio.to_thread(f.unlink, missing_ok=True)
            self.events.file_archived(
                self.name,
                "deleted",
                remote=self.where,
                file_name=f.name,
                file_path=str(f),
            )
            self.events.file_done(self.name, "envelope", name=f.name, detail="")
            return None
        if answer.status in (429, 503):
            return _retry_after(answer)
        body = answer.body if answer.body else json.dumps({"error": {}}).encode()
        code = _error_code(body)
        error_file, target = await asyncio.to_thread(self._refused, f, stem, body)
        self.events.answer_file_written(
            self.name,
            remote=self.where,
            file_name=f.name,
            file_path=str(error_file),
            code=code,
            note_sm3=sm3(body).hex(),
        )
        self.events.file_archived(
            self.name,
            "error",
            remote=self.where,
            file_name=f.name,
            file_path=str(target),
            code=code,
        )
        self.events.file_done(
            self.name,
            "refused",
            name=f.name,
            detail=answer.body.decode(errors="replace"),
        )
        return None

    def _refused(self, f: Path, stem: str, body: bytes) -> tuple[Path, Path]:
        """Write the refusal file, move the envelope to error/; both paths."""
        error_file = self.receipts / f"{stem}.error"
        write_atomic(error_file, body)
        target = self.errors / f.name
        if target.exists():
            target = self.errors / f"{f.name}.{os.getpid()}.{int(f.stat().st_mtime)}"
        f.replace(target)
        fsync_dir(self.errors)
        return error_file, target


def _error_code(body: bytes) -> str:
    """The code of a refusal body (``{"error": {"code": ...}}``); E_REFUSED if none."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "E_REFUSED"
    return code if isinstance(code, str) and code.isascii() and code else "E_REFUSED"


def _retry_after(answer: EnvelopeAnswer) -> float:
    try:
        return max(1.0, float(answer.headers.get("Retry-After", "30")))
    except ValueError:
        return 30.0
