"""File forwarders: an envelope becomes a file in a hub's drop folder.

Over SFTP (``SftpStore``) or into a local folder (``LocalStore``), the same
steps, each safe to repeat after a crash at any point::

    1 <receipts_dir>/<id>.receipt there?   -> read it, remove it, return it
      <receipts_dir>/<id>.error there?     -> the hub refused the envelope
    2 <remote_dir>/<id>.env not there?     -> write <id>.env.part (flush, fsync
                                              where the server allows), check
                                              its size, rename it to <id>.env
    3 wait up to receipt_wait_s for the receipt; else E_RECEIPT_PENDING
      (transient: the spool retries later, and step 1/2 then skip the upload)

The receiver only ever looks at ``*.env``, so it never sees half a file. The
receipt is verified by the caller (``crypto.check_receipt`` in dispatch)
exactly like an HTTP receipt. Re-uploading after the hub took the file but
before its receipt appeared is harmless: the hub answers a repeated envelope
with the same receipt (docs/operations.md, "File hops").

With ``events`` each step is audited: ``file_uploaded``, ``receipt_file_read``
or ``refusal_file_read`` (dispatch then audits ``receipt_verified``), and
``transport_failed``.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import time
from collections.abc import Callable
from typing import TypeVar

from config.models import DirectoryDestination, SftpDestination
from crypto import sm3
from crypto.receipt import MAX_RECEIPT
from gateway import failpoints
from gateway.errors import (
    PermanentDeliveryError,
    ResealRequired,
    TransientDeliveryError,
    TransportError,
)
from gateway.transports.store import FileStore
from monitoring.events import Events

__all__ = ["FileForwarder"]

T = TypeVar("T")
ERROR_SUFFIX = ".error"
RECEIPT_SUFFIX = ".receipt"
ENVELOPE_SUFFIX = ".env"


class FileForwarder:
    """One destination's envelope drop (its own SFTP session or local folder)."""

    def __init__(
        self,
        cfg: SftpDestination | DirectoryDestination,
        store: FileStore,
        *,
        inbox: str,
        receipts: str,
        clock: Callable[[], float] = time.monotonic,
        events: Events | None = None,
    ) -> None:
        self.name = cfg.name
        self._cfg = cfg
        self.store = store
        self.inbox = inbox
        self.receipts = receipts
        self._clock = clock
        self.events = events

    async def _call(self, fn: Callable[..., T], path: str, *args: object) -> T:
        """``fn(path, *args)`` on a thread; failures become transient delivery errors."""
        try:
            return await asyncio.to_thread(fn, path, *args)
        except TransportError as exc:
            self._failed(exc.code, str(exc), path)
            raise TransientDeliveryError(f"{self.name}: {exc}", code=exc.code) from exc
        except FileNotFoundError as exc:
            self._failed("E_NOT_FOUND", str(exc), path)
            raise TransientDeliveryError(
                f"{self.name}: {exc.filename or exc}: no such file or folder",
                code="E_NOT_FOUND",
            ) from exc

    def _failed(self, code: str, detail: str, path: str) -> None:
        if self.events is not None:
            self.events.file_transport_failed(
                self.name,
                code,
                detail=detail,
                remote=self.store.where,
                destination=self.name,
                file_path=path,
            )

    async def _answer(self, envelope_id: str) -> bytes | None:
        """The hub's receipt if it is there (and then removed), or its refusal."""
        rpath = posixpath.join(self.receipts, envelope_id + RECEIPT_SUFFIX)
        raw = await self._call(self.store.read_file, rpath, MAX_RECEIPT)
        if raw is not None:
            if len(raw) > MAX_RECEIPT:
                raise TransientDeliveryError(
                    f"{self.name}: receipt too large", code="E_RECEIPT"
                )
            # The dispatcher stores the receipt in the spool when it has checked
            # it; if we crash before that, the retry re-uploads and the hub
            # writes the same receipt again.
            await self._call(self.store.remove, rpath)
            if self.events is not None:
                self.events.receipt_file_read(
                    self.name,
                    remote=self.store.where,
                    file_path=rpath,
                    envelope_id=envelope_id,
                    size=len(raw),
                    receipt_sm3=sm3(raw).hex(),
                )
            return raw
        epath = posixpath.join(self.receipts, envelope_id + ERROR_SUFFIX)
        err = await self._call(self.store.read_file, epath, 65536)
        if err is not None:
            code = _error_code(err)
            await self._call(self.store.remove, epath)
            if self.events is not None:
                self.events.refusal_file_read(
                    self.name,
                    remote=self.store.where,
                    file_path=epath,
                    envelope_id=envelope_id,
                    code=code or "E_REFUSED",
                    note_sm3=sm3(err).hex(),
                )
            if code == "E_ENVELOPE_EXPIRED":
                raise ResealRequired(
                    f"{self.name}: envelope too old, re-seal", code=code
                )
            raise PermanentDeliveryError(
                f"{self.name}: the hub refused envelope {envelope_id}: {code}",
                code=code or "E_REFUSED",
            )
        return None

    async def send(self, envelope: bytes, *, envelope_id: str) -> bytes:
        cfg = self._cfg
        answer = await self._answer(envelope_id)
        if answer is not None:
            return answer
        final = posixpath.join(self.inbox, envelope_id + ENVELOPE_SUFFIX)
        if await self._call(self.store.stat, final) is None:
            part = final + ".part"
            started = time.perf_counter()
            failpoints.hit("file-sink.before-upload")
            await self._call(self.store.write_file, part, envelope)
            failpoints.hit("file-sink.before-rename")
            await self._call(self.store.replace, part, final)
            if self.events is not None:
                self.events.file_uploaded(
                    self.name,
                    remote=self.store.where,
                    file_path=final,
                    envelope_id=envelope_id,
                    size=len(envelope),
                    envelope_sm3=(await asyncio.to_thread(sm3, envelope)).hex(),
                    seconds=time.perf_counter() - started,
                )
        deadline = self._clock() + cfg.receipt_wait_s
        while True:
            answer = await self._answer(envelope_id)
            if answer is not None:
                return answer
            if self._clock() >= deadline:
                break
            await asyncio.sleep(cfg.receipt_poll_s)
        raise TransientDeliveryError(
            f"{self.name}: no receipt for {envelope_id} yet",
            code="E_RECEIPT_PENDING",
            retry_after=cfg.receipt_retry_s,
        )

    async def check(self) -> None:
        """Do what send does short of sending: reach the folder."""
        if await self._call(self.store.stat, self.inbox) is None:
            raise TransientDeliveryError(
                f"{self.name}: {self.inbox} does not exist", code="E_TRANSPORT"
            )

    async def aclose(self) -> None:
        await asyncio.to_thread(self.store.close)


def _error_code(raw: bytes) -> str:
    try:
        obj = json.loads(raw)
    except ValueError:
        return ""
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        code = obj["error"].get("code")
        if isinstance(code, str) and code.isascii() and code.isprintable():
            return code[:64]
    return ""
