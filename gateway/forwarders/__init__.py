"""Output plug-ins: deliver one sealed envelope, return the receiver's receipt.

``build_forwarder`` is the one place that maps a destination's ``type`` to
its forwarder: ``http`` (POST /v1/envelopes), ``sftp`` and ``directory``
(envelope files and receipt files, ``files.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from config.models import (
    AnyDestination,
    DirectoryDestination,
    HttpDestination,
    SftpDestination,
)
from gateway.forwarders.base import Forwarder
from gateway.forwarders.files import FileForwarder
from gateway.forwarders.http import HttpForwarder
from gateway.transports.sftp import SftpStore
from gateway.transports.store import LocalStore
from monitoring.events import Events

__all__ = ["build_forwarder"]


def build_forwarder(
    cfg: AnyDestination,
    *,
    resolve: Callable[[str], Path],
    events: Events | None = None,
) -> Forwarder:
    """``events``: the file forwarders audit their steps (upload, receipt file)."""
    if isinstance(cfg, HttpDestination):
        return HttpForwarder(cfg, resolve=lambda p: str(resolve(p)))
    if isinstance(cfg, SftpDestination):
        return FileForwarder(
            cfg,
            SftpStore(cfg, resolve=resolve),
            inbox=cfg.remote_dir,
            receipts=cfg.receipts_dir,
            events=events,
        )
    if isinstance(cfg, DirectoryDestination):
        return FileForwarder(
            cfg,
            LocalStore(),
            inbox=str(resolve(cfg.path)),
            receipts=str(resolve(cfg.receipts_dir)),
            events=events,
        )
    raise TypeError(f"no forwarder for {type(cfg).__name__}")  # pragma: no cover
