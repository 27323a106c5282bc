"""Configuration checks for file transports (used by build_node / check-config).

Each function returns (YAML path suffix, problem) pairs; nothing connects to
a server here (``check-config`` must work offline).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from config.models import (
    AnyDestination,
    DirectoryDestination,
    DirectoryTransport,
    EnvelopeDir,
    HttpDestination,
    SftpConnection,
    SftpTransport,
    SourceConfig,
)
from gateway.transports.sftp import check_algorithms

__all__ = ["destination_problems", "envelope_dir_problems", "source_problems"]

Resolve = Callable[[str], Path]


def _creatable(path: Path) -> bool:
    for p in (path, *path.parents):
        if p.exists():
            return p.is_dir() and os.access(p, os.W_OK | os.X_OK)
    return False


def _private_file(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a file"
    if stat.S_IMODE(st.st_mode) & 0o077:
        return f"{path}: accessible by group or others; run 'chmod 600 {path}'"
    return None


def _sftp(cfg: SftpConnection, resolve: Resolve) -> list[tuple[str, str]]:
    out = check_algorithms(cfg)
    kh = resolve(cfg.known_hosts)
    if not kh.is_file():
        out.append(("known_hosts", f"{kh}: no such file"))
    for attr in ("key_file", "password_file", "key_passphrase_file"):
        value = getattr(cfg, attr)
        if value is not None and (problem := _private_file(resolve(value))):
            out.append((attr, problem))
    return out


def source_problems(s: SourceConfig, resolve: Resolve) -> list[tuple[str, str]]:
    t = s.transport
    out: list[tuple[str, str]] = []
    if isinstance(t, SftpTransport | DirectoryTransport):
        if s.token_files:
            out.append(("token_files", "only HTTP sources take bearer tokens"))
        if t.content_type is not None:
            media = t.content_type.split(";")[0].strip().lower()
            if media not in s.content_types:
                out.append(
                    (
                        "transport.content_type",
                        f"{media!r} is not in the source's content_types",
                    )
                )
    if isinstance(t, SftpTransport):
        out += [(f"transport.{k}", v) for k, v in _sftp(t, resolve)]
    elif isinstance(t, DirectoryTransport):
        path = resolve(t.path)
        if not path.is_dir():
            out.append(("transport.path", f"{path}: no such directory"))
        elif not os.access(path, os.W_OK | os.X_OK):
            out.append(("transport.path", f"{path}: not writable (claims rename)"))
    elif not s.token_files:
        out.append(("token_files", "at least one token file is required"))
    return out


def destination_problems(d: AnyDestination, resolve: Resolve) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(d, HttpDestination):
        for attr in ("ca_file", "cert_file", "key_file"):
            f = getattr(d.tls, attr)
            if f and not resolve(f).is_file():
                out.append((f"tls.{attr}", f"{resolve(f)}: no such file"))
    elif isinstance(d, DirectoryDestination):
        for attr in ("path", "receipts_dir"):
            p = resolve(getattr(d, attr))
            if not _creatable(p):
                out.append((attr, f"{p}: cannot be created"))
    else:
        out += _sftp(d, resolve)
    return out


def envelope_dir_problems(e: EnvelopeDir, resolve: Resolve) -> list[tuple[str, str]]:
    out = []
    for attr in ("path", "receipts_dir"):
        p = resolve(getattr(e, attr))
        if not _creatable(p):
            out.append((attr, f"{p}: cannot be created"))
    return out
