"""systemd service notifications (sd_notify), without libsystemd.

The unit is ``Type=notify`` with ``NotifyAccess=main`` and ``WatchdogSec=``
(systemd/exchange-gateway@.service). The program tells systemd:

- ``READY=1`` once the spool is open and the listeners are bound;
- ``WATCHDOG=1`` from a task on the event loop, every half watchdog interval:
  a blocked loop stops the pings, and systemd restarts the service;
- ``STOPPING=1`` when SIGTERM arrives, before draining;
- ``RELOADING=1`` / ``READY=1`` around a SIGHUP reload;
- ``STATUS=...`` free text for ``systemctl status``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op returning False.
A failure to notify is never fatal: it is logged at debug level and reported
by the return value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
    "watchdog_task",
]

log = logging.getLogger("gateway.lifecycle")

# A full notification queue in the service manager must not stall the event loop
# for long; systemd drains it continuously, so this is never reached in practice.
_SEND_TIMEOUT_S = 1.0


def _address() -> bytes | None:
    """The notification socket from ``$NOTIFY_SOCKET``, or None.

    ``/path`` is a socket in the file system, ``@name`` one in the abstract
    namespace (sent as a leading NUL byte). Other forms (``vsock:``) are not
    supported here.
    """
    raw = os.environ.get("NOTIFY_SOCKET", "")
    if raw.startswith("/"):
        return os.fsencode(raw)
    if raw.startswith("@") and len(raw) > 1:
        return b"\0" + os.fsencode(raw[1:])
    return None


def notify(state: str) -> bool:
    """Send one notification (``"READY=1"``, newline-separated assignments).

    Returns True if systemd's socket took the datagram, False when not under
    systemd or when sending failed.
    """
    addr = _address()
    if addr is None:
        return False
    try:
        with socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
        ) as sock:
            sock.settimeout(_SEND_TIMEOUT_S)
            sock.sendto(state.encode("utf-8"), addr)
    except OSError as exc:
        log.debug(
            "Service manager notification failed.",
            extra={"state": state.partition("=")[0], "detail": str(exc)},
        )
        return False
    return True


def ready() -> bool:
    """The service is up: spool open, listeners bound."""
    return notify("READY=1")


def stopping() -> bool:
    """Shutdown has begun (SIGTERM): no new input, draining."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """A reload (SIGHUP) has begun; send ``ready()`` when it is done."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def watchdog_ping() -> bool:
    """Keep-alive for ``WatchdogSec=``."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """One line of free text shown by ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.split()))


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects a ``WATCHDOG=1``, or None.

    From ``$WATCHDOG_USEC``; None when it is unset or invalid, or when
    ``$WATCHDOG_PID`` names another process (the variables were inherited).
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid is not None and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1e6 if usec > 0 else None


async def _watchdog(interval_s: float) -> None:
    period = interval_s / 2
    while True:
        watchdog_ping()
        await asyncio.sleep(period)


def watchdog_task(interval_s: float | None = None) -> asyncio.Task[None]:
    """Start pinging the watchdog every half interval from the running loop.

    The pings come from the event loop itself, so they stop when the loop is
    blocked, which is what the watchdog is for. ``interval_s`` defaults to
    ``watchdog_interval()``; with no watchdog the task finishes at once.
    Cancel the task at shutdown, after draining.
    """
    interval = watchdog_interval() if interval_s is None else interval_s
    if interval is None or interval <= 0:
        return asyncio.create_task(asyncio.sleep(0), name="watchdog")
    return asyncio.create_task(_watchdog(interval), name="watchdog")
