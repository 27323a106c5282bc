"""Wake a polling loop early when a watched local folder changes (inotify).

Polling stays the source of truth: an inotify event only shortens the wait
before the next poll, so a lost event (queue overflow, a folder replaced, a
file system without inotify such as NFS or CIFS) costs at most one poll
interval. Where inotify is unavailable the watcher falls back to polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["Wakeup"]

log = logging.getLogger("gateway.watch")

try:
    import inotify_simple  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the package is a pinned dependency
    inotify_simple = None


class Wakeup:
    """An event set by inotify on the folders, or by ``poke``."""

    def __init__(self, folders: Sequence[str], *, mode: str = "auto") -> None:
        self.event = asyncio.Event()
        self._folders = list(folders)
        self._mode = mode
        self._inotify: Any = None
        self.watching = False

    def start(self) -> None:
        if self._mode == "poll" or not self._folders:
            return
        if inotify_simple is None:
            self._fallback("the inotify_simple package is missing")
            return
        try:
            ino = inotify_simple.INotify()
            flags = inotify_simple.flags
            mask = (
                flags.CLOSE_WRITE
                | flags.MOVED_TO
                | flags.CREATE
                | flags.ATTRIB
                | flags.DELETE_SELF
            )
            for f in self._folders:
                ino.add_watch(f, mask)
            asyncio.get_running_loop().add_reader(ino.fileno(), self._readable)
        except OSError as exc:
            self._fallback(str(exc))
            return
        self._inotify = ino
        self.watching = True

    def _fallback(self, why: str) -> None:
        if self._mode == "inotify":
            log.error(
                "inotify is unavailable; polling instead.",
                extra={"folders": self._folders, "detail": why},
            )
        else:
            log.info(
                "inotify is unavailable; polling.",
                extra={"folders": self._folders, "detail": why},
            )

    def _readable(self) -> None:
        with contextlib.suppress(OSError):
            self._inotify.read(timeout=0)
        self.event.set()

    def poke(self) -> None:
        self.event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        self.event.clear()

    def close(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            with contextlib.suppress(OSError):
                self._inotify.close()
            self._inotify = None
            self.watching = False
