"""SFTP as a ``FileStore`` (paramiko): one session, reconnected on demand.

Every method blocks and is meant for ``asyncio.to_thread``; a lock serialises
the calls on the one session. The server's host key must be in the configured
known_hosts file (an unknown or changed key is refused, never added); the
private key or password is read from its file at each connect, so a rotated
secret is picked up without a restart. Key exchange, ciphers, MACs and host
key types can be pinned for old local servers.

Durability: ``write_file`` flushes and then asks the server to fsync through
the ``fsync@openssh.com`` extension. Servers without it (not OpenSSH) answer
"unsupported": the file is then as durable as that server makes a closed
file; the rename that follows still guarantees that no reader ever sees a
partial file.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from config.models import SftpConnection
from gateway import failpoints
from gateway.errors import ConfigError, TransportError
from gateway.transports.store import Entry

__all__ = ["SftpStore", "check_algorithms", "read_secret"]

log = logging.getLogger("gateway.sftp")
T = TypeVar("T")

# What this paramiko offers (its preference lists are the supported sets).
_SUPPORTED: dict[str, tuple[str, ...]] = {
    field: tuple(getattr(paramiko.Transport, f"_preferred_{attr}"))
    for field, attr in (
        ("kex", "kex"),
        ("ciphers", "ciphers"),
        ("macs", "macs"),
        ("host_keys", "keys"),
    )
}


def check_algorithms(cfg: SftpConnection) -> list[tuple[str, str]]:
    """(field, problem) for every configured algorithm paramiko does not offer."""
    out = []
    for field, supported in _SUPPORTED.items():
        for name in getattr(cfg.algorithms, field):
            if name not in supported:
                out.append(
                    (
                        f"algorithms.{field}",
                        f"{name!r} is not supported (supported: {', '.join(supported)})",
                    )
                )
    return out


def read_secret(path: Path) -> str:
    """A password or passphrase from a file that only its owner can read."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read secret file ({exc})") from exc
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"{path}: secret file is accessible by group or others; "
            f"run 'chmod 600 {path}'"
        )
    if not text:
        raise ConfigError(f"{path}: secret file is empty")
    return text


def _entry(attr: paramiko.SFTPAttributes) -> Entry:
    mode = attr.st_mode or 0
    return Entry(
        name=attr.filename,
        size=attr.st_size or 0,
        mtime=float(attr.st_mtime or 0),
        is_file=stat.S_ISREG(mode),
        uid=attr.st_uid,
    )


class SftpStore:
    """One SFTP session to one server; reconnects lazily after any failure."""

    def __init__(self, cfg: SftpConnection, *, resolve: Callable[[str], Path]) -> None:
        self.cfg = cfg
        self._resolve = resolve
        self.where = f"sftp://{cfg.user}@{cfg.host}:{cfg.port}"
        self._lock = threading.Lock()
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._fsync_supported = True

    # -- session ----------------------------------------------------------------

    def _host_name(self) -> str:
        c = self.cfg
        return c.host if c.port == 22 else f"[{c.host}]:{c.port}"

    def _known_keys(self) -> dict[str, paramiko.PKey]:
        path = self._resolve(self.cfg.known_hosts)
        keys = paramiko.HostKeys()
        try:
            keys.load(str(path))
        except OSError as exc:
            raise TransportError(
                f"{self.where}: cannot read known_hosts {path}: {exc}",
                code="E_SFTP_HOST_KEY",
            ) from exc
        found = keys.lookup(self._host_name())
        if not found:
            raise TransportError(
                f"{self.where}: host {self._host_name()} is not in {path}; refusing",
                code="E_SFTP_HOST_KEY",
            )
        return dict(found.items())

    def _pkey(self) -> paramiko.PKey:
        c = self.cfg
        if c.key_file is None:
            raise ConfigError("no key_file configured")
        passphrase = (
            read_secret(self._resolve(c.key_passphrase_file))
            if c.key_passphrase_file
            else None
        )
        path = self._resolve(c.key_file)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise ConfigError(
                f"{path}: private key is accessible by group or others; "
                f"run 'chmod 600 {path}'"
            )
        return paramiko.PKey.from_path(str(path), passphrase)

    def _connect(self) -> paramiko.SFTPClient:
        c = self.cfg
        known = self._known_keys()
        try:
            sock = socket.create_connection(
                (c.host, c.port), timeout=c.connect_timeout_s
            )
        except OSError as exc:
            raise TransportError(
                f"{self.where}: cannot connect: {exc}", code="E_SFTP_CONNECT"
            ) from exc
        t = paramiko.Transport(sock)
        try:
            t.banner_timeout = c.connect_timeout_s
            t.handshake_timeout = c.connect_timeout_s
            t.auth_timeout = c.connect_timeout_s
            opts = t.get_security_options()
            a = c.algorithms
            if a.kex:
                opts.kex = a.kex
            if a.ciphers:
                opts.ciphers = a.ciphers
            if a.macs:
                opts.digests = a.macs
            # Ask only for host key types we can check against known_hosts.
            have = set(known) | (
                {"rsa-sha2-512", "rsa-sha2-256"} if "ssh-rsa" in known else set()
            )
            types = a.host_keys or [k for k in _SUPPORTED["host_keys"] if k in have]
            if types:
                opts.key_types = types
            t.start_client(timeout=c.connect_timeout_s)
            key = t.get_remote_server_key()
            want = known.get(key.get_name())
            if want is None or want != key:
                raise TransportError(
                    f"{self.where}: host key {key.get_name()} "
                    f"{key.fingerprint} does not match known_hosts; refusing",
                    code="E_SFTP_HOST_KEY",
                )
            try:
                if c.key_file is not None:
                    t.auth_publickey(c.user, self._pkey())
                elif c.password_file is not None:
                    t.auth_password(c.user, read_secret(self._resolve(c.password_file)))
            except paramiko.AuthenticationException as exc:
                raise TransportError(
                    f"{self.where}: authentication as {c.user!r} failed: {exc}",
                    code="E_SFTP_AUTH",
                ) from exc
            if not t.is_authenticated():
                raise TransportError(
                    f"{self.where}: not authenticated", code="E_SFTP_AUTH"
                )
            sftp = paramiko.SFTPClient.from_transport(t)
            if sftp is None:
                raise TransportError(
                    f"{self.where}: no SFTP subsystem", code="E_SFTP_CONNECT"
                )
            sftp.get_channel().settimeout(c.timeout_s)  # type: ignore[union-attr]
        except TransportError:
            t.close()
            raise
        except ConfigError as exc:
            t.close()
            raise TransportError(str(exc), code="E_SFTP_AUTH") from exc
        except (paramiko.SSHException, OSError, EOFError, ValueError) as exc:
            t.close()
            raise TransportError(
                f"{self.where}: SSH session failed: {type(exc).__name__}: {exc}",
                code="E_SFTP_CONNECT",
            ) from exc
        self._transport, self._sftp = t, sftp
        log.info("SFTP session opened.", extra={"server": self.where})
        return sftp

    def _drop(self) -> None:
        if self._sftp is not None:
            try:
                self._sftp.close()
            except (OSError, paramiko.SSHException, EOFError):
                log.debug("Closing the SFTP channel failed.")
        if self._transport is not None:
            self._transport.close()
        self._sftp = self._transport = None

    def _op(self, what: str, path: str, fn: Callable[[paramiko.SFTPClient], T]) -> T:
        with self._lock:
            sftp = self._sftp
            if (
                sftp is None
                or self._transport is None
                or not self._transport.is_active()
            ):
                self._drop()
                sftp = self._connect()
            try:
                return fn(sftp)
            except (FileNotFoundError, FileExistsError):
                raise
            except PermissionError as exc:
                raise TransportError(
                    f"{self.where}: {what} '{path}': permission denied",
                    code="E_SFTP_PERMISSION",
                ) from exc
            except (OSError, paramiko.SSHException, EOFError) as exc:
                alive = self._transport is not None and self._transport.is_active()
                if not alive or isinstance(exc, (TimeoutError, socket.timeout)):
                    self._drop()
                raise TransportError(
                    f"{self.where}: {what} '{path}': {type(exc).__name__}: {exc}",
                    code="E_SFTP_IO" if alive else "E_SFTP_CONNECT",
                ) from exc

    # -- FileStore ----------------------------------------------------------------

    def listdir(self, path: str) -> list[Entry]:
        return self._op(
            "listing", path, lambda s: [_entry(a) for a in s.listdir_attr(path)]
        )

    def stat(self, path: str) -> Entry | None:
        def run(s: paramiko.SFTPClient) -> Entry | None:
            try:
                a = s.stat(path)
            except FileNotFoundError:
                return None
            a.filename = posixpath.basename(path)
            return _entry(a)

        return self._op("stat of", path, run)

    def rename(self, src: str, dst: str) -> bool:
        def run(s: paramiko.SFTPClient) -> bool:
            try:
                # SSH_FXP_RENAME never overwrites on OpenSSH (link + unlink).
                s.rename(src, dst)
            except OSError as exc:
                if isinstance(exc, PermissionError):
                    raise
                try:
                    s.stat(src)
                except FileNotFoundError:
                    return False  # someone else claimed it first
                try:
                    s.stat(dst)
                except FileNotFoundError:
                    raise exc from None
                raise FileExistsError(errno.EEXIST, "target exists", dst) from exc
            return True

        return self._op("renaming", src, run)

    def replace(self, src: str, dst: str) -> None:
        self._op("renaming", src, lambda s: s.posix_rename(src, dst))

    def remove(self, path: str) -> None:
        def run(s: paramiko.SFTPClient) -> None:
            try:
                s.remove(path)
            except FileNotFoundError:
                return

        self._op("removing", path, run)

    def makedirs(self, path: str) -> None:
        def run(s: paramiko.SFTPClient) -> None:
            parts = [p for p in path.split("/") if p]
            cur = "/" if path.startswith("/") else ""
            for p in parts:
                cur = posixpath.join(cur, p) if cur else p
                try:
                    s.stat(cur)
                except FileNotFoundError:
                    try:
                        s.mkdir(cur)
                    except OSError:
                        s.stat(cur)  # created meanwhile by someone else: fine

        self._op("creating", path, run)

    def download(self, path: str, offset: int, limit: int, out: Path) -> int:
        def run(s: paramiko.SFTPClient) -> int:
            with s.open(path, "rb") as f:
                size = f.stat().st_size or 0
                end = min(size, offset + limit)
                if end <= offset:
                    return 0
                f.seek(offset)
                f.prefetch(end)
                done = 0
                with out.open("ab") as dst:
                    while done < end - offset:
                        block = f.read(min(1 << 20, end - offset - done))
                        if not block:
                            break
                        dst.write(block)
                        if done == 0:
                            dst.flush()
                            failpoints.hit("sftp.read-partial")
                        done += len(block)
                    dst.flush()
                    os.fsync(dst.fileno())
                return done

        return self._op("downloading", path, run)

    def read_file(self, path: str, limit: int) -> bytes | None:
        def run(s: paramiko.SFTPClient) -> bytes | None:
            try:
                with s.open(path, "rb") as f:
                    return bytes(f.read(limit + 1))
            except FileNotFoundError:
                return None

        return self._op("reading", path, run)

    def write_file(self, path: str, data: bytes) -> None:
        def run(s: paramiko.SFTPClient) -> None:
            with s.open(path, "wb") as f:
                f.set_pipelined(True)
                view = memoryview(data)
                step = min(1 << 20, max(1, len(data) // 2))
                for i in range(0, len(data), step):
                    f.write(view[i : i + step])
                    if i == 0:
                        f.flush()
                        failpoints.hit("sftp.write-partial")
                f.flush()
                self._fsync(s, f)
            size = s.stat(path).st_size
            if size != len(data):
                raise OSError(f"wrote {len(data)} bytes, the server holds {size}")

        self._op("writing", path, run)

    def _fsync(self, s: paramiko.SFTPClient, f: paramiko.SFTPFile) -> None:
        if not self._fsync_supported:
            return
        request: Any = getattr(s, "_request")  # noqa: B009 - not in the public API
        try:
            request(paramiko.sftp.CMD_EXTENDED, "fsync@openssh.com", f.handle)
        except OSError:
            self._fsync_supported = False
            log.warning(
                "The SFTP server does not support fsync; relying on close.",
                extra={"server": self.where},
            )

    def close(self) -> None:
        with self._lock:
            self._drop()
