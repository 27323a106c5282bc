"""What the admin API does for operators, against the running node.

The admin listener (``monitoring/http.py``) authenticates and speaks HTTP; this
module does the work: status with throughput, the quarantine (list, show,
replay) and the recent audit entries. Throughput is computed from the Events
counters (in memory, no spool query), sampled every few seconds over a sliding
window of about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError, SpoolError
from gateway.quarantine import Replay, replay_async
from monitoring.audit import recent

if TYPE_CHECKING:
    from prometheus_client import Counter

    from gateway.app import Running

__all__ = ["Operations", "Rates"]

BEIJING = timezone(timedelta(hours=8))
RATE_WINDOW_S = 60.0
RATE_SAMPLE_S = 2.0
MAX_REJECTS_SHOWN = 1000

Key = tuple[str, str]  # ("source" | "destination" | "hub", name)


def beijing(ts: float | None) -> str | None:
    """Unix time as the operators' clock shows it: ``2027-02-10 09:30:00``."""
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, UTC)
        .astimezone(BEIJING)
        .strftime("%Y-%m-%d %H:%M:%S")
    )


class Rates:
    """Per-second rates of growing totals over a sliding window.

    Keeps every sample of the last ``window_s`` seconds plus the newest one before
    them, so a rate always spans about the window once the node has run that long.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[Key, float]]] = deque()

    def add(self, now: float, totals: dict[Key, float]) -> None:
        s = self._samples
        if len(s) >= 2 and now - s[-2][0] < 0.5:
            s[-1] = (now, dict(totals))  # frequent callers: refresh the newest only
            return
        s.append((now, dict(totals)))
        while len(s) > 2 and s[1][0] <= now - self.window_s:
            s.popleft()

    def rates(self) -> tuple[dict[Key, float], float]:
        """(rate per key, seconds the rates span); empty until two samples exist."""
        if len(self._samples) < 2:
            return {}, 0.0
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span <= 0:
            return {}, 0.0
        # The counters live in this process's memory: a name missing from the
        # first sample had not counted anything yet.
        return {
            k: max(0.0, v - first.get(k, 0.0)) / span for k, v in last.items()
        }, span


def _totals(counter: Counter, label: str, **match: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in counter.collect():
        for s in metric.samples:
            if not s.name.endswith("_total"):
                continue
            if any(s.labels.get(k) != v for k, v in match.items()):
                continue
            name = s.labels[label]
            out[name] = out.get(name, 0.0) + s.value
    return out


class Operations:
    """The admin API's backend (``monitoring.http.AdminBackend``) for one node."""

    def __init__(self, rt: Running) -> None:
        self.rt = rt
        self.rates = Rates()
        self._replaying = asyncio.Lock()

    # -- throughput -----------------------------------------------------------

    def _sample(self) -> None:
        ev = self.rt.events
        totals: dict[Key, float] = {}
        for n, v in _totals(ev.records, "source", outcome="accepted").items():
            totals["source", n] = v
        for n, v in _totals(ev.delivered_records, "destination").items():
            totals["destination", n] = v
        hub = _totals(ev.hub_records, "outcome").get("stored")
        if hub is not None:
            totals["hub", ""] = hub
        self.rates.add(time.monotonic(), totals)

    async def sample_forever(self, interval_s: float = RATE_SAMPLE_S) -> None:
        """A background task: samples the counters for the throughput figures."""
        while True:
            self._sample()
            await asyncio.sleep(interval_s)

    # -- the admin API ----------------------------------------------------------

    def admin_tokens(self) -> Sequence[tuple[str, bytes]]:
        # Read per request: a reload (SIGHUP) replaces rt.node, tokens included.
        return self.rt.node.admin_tokens

    async def ready_problems(self) -> list[str]:
        return await self.rt.ready_problems()

    async def status(self) -> dict[str, Any]:
        """``Running.status()`` plus throughput (records/s) and each source's last error."""
        out = await self.rt.status()
        self._sample()
        rates, span = self.rates.rates()

        def rate(key: Key) -> float | None:  # None: not running long enough yet
            return round(rates.get(key, 0.0), 3) if span > 0 else None

        now = time.time()
        out["generated_at"] = now
        out["generated_at_bj"] = beijing(now)
        out["throughput_window_s"] = round(span, 1)
        errors = self.rt.events.source_errors
        for n, v in out["sources"].items():
            v["throughput"] = rate(("source", n))
            err = errors.get(n)
            v["last_error"] = err[1] if err else None
            v["last_error_at"] = err[0] if err else None
            v["last_error_at_bj"] = beijing(err[0]) if err else None
        for n, v in out["destinations"].items():
            v["throughput"] = rate(("destination", n))
        if "hub" in out:
            out["hub"]["throughput"] = rate(("hub", ""))
        return out

    async def quarantine_list(
        self, *, source: str | None, include_replayed: bool, after: str, limit: int
    ) -> list[dict[str, Any]]:
        entries = await self.rt.spool.list_quarantine(
            source=source, include_replayed=include_replayed, after=after, limit=limit
        )
        return [
            {
                "intake_id": e.intake_id,
                "source": e.source,
                "received_at": e.received_at,
                "received_at_bj": beijing(e.received_at),
                "size": e.size,
                "reason_code": e.reason_code,
                "message": e.message,
                "status": str(e.status),
                "replay_count": e.replay_count,
                "replayed_at": e.replayed_at,
                "replayed_at_bj": beijing(e.replayed_at),
            }
            for e in entries
        ]

    async def quarantine_show(self, intake_id: str) -> dict[str, Any] | None:
        """Provenance, reason and rejects of an input; never its bytes."""
        stored = await self.rt.spool.get_input(intake_id)
        if stored is None:
            return None
        p = stored.provenance
        return {
            "intake_id": stored.intake_id,
            "status": str(stored.status),
            "source": p.source,
            "remote_addr": p.remote_addr,
            "token_id": p.token_id,
            "received_at": p.received_at,
            "received_at_bj": beijing(p.received_at),
            "content_type": p.content_type,
            "idempotency_key": p.idempotency_key,
            "sm3": p.digest_hex,
            "size": len(stored.raw),
            "reason": None
            if stored.reason_code is None
            else {"code": stored.reason_code, "message": stored.reason_message},
            "rejects": [
                {"locator": r.locator, "code": r.code, "message": r.message}
                for r in stored.rejects[:MAX_REJECTS_SHOWN]
            ],
            "rejects_total": len(stored.rejects),
        }

    async def quarantine_replay(
        self, intake_id: str, *, user: str, remote: str | None, path: str
    ) -> dict[str, Any]:
        """Replay through the source's current adapter; audited as an operator action."""
        node = self.rt.node
        try:
            async with self._replaying:  # one replay at a time: no double accept
                result = await replay_async(
                    self.rt.spool,
                    node.sources,
                    self.rt.intake.adapt,
                    intake_id,
                    now=time.time(),
                )
        except SpoolError as exc:
            result = Replay(intake_id, accepted=False, code=exc.code, message=str(exc))
            outcome = "failed"
        else:
            outcome = "ok" if result.accepted else "refused"
        if result.accepted and result.destinations:
            self.rt.notify(result.destinations)
        self.rt.events.operator(
            "operator_action",
            user=user,
            remote=remote,
            outcome=outcome,
            code=result.code,
            command="quarantine replay",
            method="POST",
            path=path,
            target=intake_id,
            intake_id=intake_id,
            records=result.records,
            rejected=result.rejected,
        )
        await self._flush_audit()
        return {
            "intake_id": result.intake_id,
            "accepted": result.accepted,
            "records": result.records,
            "rejected": result.rejected,
            "destinations": sorted(result.destinations),
            "code": result.code,
            "message": result.message,
        }

    def auth_failed(
        self, *, remote: str | None, code: str, method: str, path: str
    ) -> None:
        self.rt.events.operator(
            "auth_failed",
            user="admin",
            remote=remote,
            outcome="refused",
            code=code,
            method=method,
            path=path,
        )

    async def audit_recent(self, limit: int) -> list[dict[str, Any]]:
        await self._flush_audit()  # what just happened is on the page too
        return await asyncio.to_thread(recent, self.rt.node.audit_dir, limit)

    async def _flush_audit(self) -> None:
        if self.rt.events.audit is not None:
            with contextlib.suppress(GatewayError):  # readiness reports a failing log
                await self.rt.events.audit.flush()
