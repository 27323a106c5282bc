"""Crash points for tests: ``GATEWAY_FAILPOINTS=name,name`` kills the process there.

The crash tests need a kill -9 at an exact step (half-way through a download,
between an upload and its rename, ...). Racing a signal against a fast
loopback transfer is flaky, so the process kills itself with SIGKILL when it
reaches a named point: the effect is the same as an operator's ``kill -9``
at that instant (no cleanup, no flush, no atexit). Unset in production; the
check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["armed", "hit"]

_ACTIVE = frozenset(
    p.strip() for p in os.environ.get("GATEWAY_FAILPOINTS", "").split(",") if p.strip()
)


def armed(name: str) -> bool:
    """Whether ``name`` is armed (for a point that also depends on the data)."""
    return name in _ACTIVE


def hit(name: str) -> None:
    """SIGKILL this process if the failpoint ``name`` is armed."""
    if name in _ACTIVE:
        os.kill(os.getpid(), signal.SIGKILL)
