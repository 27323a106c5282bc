"""The file-system operations file transports need, for SFTP and local folders.

Every method is synchronous and may block: callers run them in
``asyncio.to_thread``. Paths are absolute POSIX strings. The semantics that
the crash-safety argument rests on:

- ``rename`` never overwrites: it returns False when the source is gone (some
  other claimer won the race) and raises ``FileExistsError`` when the target
  exists. A claim is one rename, so a file is claimed at most once.
- ``replace`` is an atomic overwrite (POSIX rename): a reader sees the old
  name or the complete new file, never a partial one.
- ``write_file`` writes, flushes and fsyncs (where the server allows it).

Failures of the transport itself raise ``TransportError`` (after the session
is dropped, so the next call reconnects); a missing file raises
``FileNotFoundError`` where that is an answer rather than an error.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import TransportError

__all__ = ["CHUNK", "Entry", "FileStore", "LocalStore", "fsync_dir"]

CHUNK = 8 * 1024 * 1024  # bytes per download call: a stop request waits at most this


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    size: int
    mtime: float
    is_file: bool
    uid: int | None = None


class FileStore(Protocol):
    where: str  # e.g. sftp://user@host:22 or file://hostname, for provenance and logs

    def listdir(self, path: str) -> list[Entry]: ...

    def stat(self, path: str) -> Entry | None: ...

    def rename(self, src: str, dst: str) -> bool: ...

    def replace(self, src: str, dst: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def makedirs(self, path: str) -> None: ...

    def download(self, path: str, offset: int, limit: int, out: Path) -> int: ...

    def read_file(self, path: str, limit: int) -> bytes | None: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def close(self) -> None: ...


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(name: str, st: os.stat_result) -> Entry:
    return Entry(
        name=name,
        size=st.st_size,
        mtime=st.st_mtime,
        is_file=stat.S_ISREG(st.st_mode),
        uid=st.st_uid,
    )


class LocalStore:
    """A local folder (drop folder, or the hub's side of an SFTP hop)."""

    def __init__(self) -> None:
        self.where = f"file://{socket.gethostname()}"

    def _fail(self, what: str, path: str, exc: OSError) -> TransportError:
        return TransportError(
            f"{what} '{path}': {exc.strerror or exc}", code="E_DIR_IO"
        )

    def listdir(self, path: str) -> list[Entry]:
        out = []
        try:
            with os.scandir(path) as it:
                for e in it:
                    try:
                        out.append(_entry(e.name, e.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # gone between readdir and stat
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._fail("listing", path, exc) from exc
        return out

    def stat(self, path: str) -> Entry | None:
        try:
            p = Path(path)
            return _entry(p.name, p.lstat())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail("stat of", path, exc) from exc

    def rename(self, src: str, dst: str) -> bool:
        # The targets are names only this process writes (one process per state
        # directory), so check-then-rename cannot race with another writer.
        target = Path(dst)
        if target.is_symlink() or target.exists():
            raise FileExistsError(errno.EEXIST, "target exists", dst)
        try:
            Path(src).rename(target)
        except FileNotFoundError:
            if Path(src).is_symlink() or Path(src).exists():
                raise
            return False
        except OSError as exc:
            raise self._fail("renaming", src, exc) from exc
        fsync_dir(target.parent)
        return True

    def replace(self, src: str, dst: str) -> None:
        try:
            Path(src).replace(dst)
            fsync_dir(Path(dst).parent)
        except OSError as exc:
            raise self._fail("renaming", src, exc) from exc

    def remove(self, path: str) -> None:
        try:
            Path(path).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail("removing", path, exc) from exc

    def makedirs(self, path: str) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail("creating", path, exc) from exc

    def download(self, path: str, offset: int, limit: int, out: Path) -> int:
        try:
            with Path(path).open("rb") as src, out.open("ab") as dst:
                src.seek(offset)
                data = src.read(limit)
                dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
                return len(data)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._fail("reading", path, exc) from exc

    def read_file(self, path: str, limit: int) -> bytes | None:
        try:
            with Path(path).open("rb") as f:
                return f.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail("reading", path, exc) from exc

    def write_file(self, path: str, data: bytes) -> None:
        try:
            with Path(path).open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise self._fail("writing", path, exc) from exc

    def close(self) -> None:
        return
