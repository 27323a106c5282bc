"""Quarantine: look at held inputs and replay them after the cause is fixed.

A replay runs the source's *current* adapter and checks over the input's
original bytes and keeps its original intake id: either the input is accepted
now (in the same transaction that releases it from quarantine) or it stays in
quarantine with the new reason. Used by ``run_gateway.py quarantine replay``
(sync spool, any process) and by the admin API (the running node).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from adapters.base import RawInput
from adapters.catalogue import Catalogue
from adapters.readers import InputRejected
from gateway.adaptpool import AdapterCrashed
from gateway.intake import _media_type
from gateway.node import Source
from gateway.pipeline import Adapted, adapt_input
from gateway.records import InputStatus, StoredInput
from gateway.spool import AsyncSpool, Spool

__all__ = ["Replay", "replay", "replay_async"]


@dataclass(frozen=True, slots=True)
class Replay:
    intake_id: str
    accepted: bool
    records: int = 0
    rejected: int = 0
    code: str | None = None
    message: str | None = None
    destinations: tuple[str, ...] = ()


def _raw(src: Source, stored: StoredInput) -> RawInput | Replay:
    media, charset = _media_type(stored.provenance.content_type)
    if media not in src.cfg.content_types:
        return Replay(
            stored.intake_id,
            accepted=False,
            code="E_CONTENT_TYPE",
            message=f"content type {media!r} still not accepted by the source",
        )
    return RawInput(
        source=src.cfg.name, data=stored.raw, content_type=media, charset=charset
    )


def _plan(src: Source, stored: StoredInput, catalogue: Catalogue) -> Adapted | Replay:
    raw = _raw(src, stored)
    if isinstance(raw, Replay):
        return raw
    try:
        adapted = adapt_input(src.adapter, raw, catalogue, src.route)
    except InputRejected as exc:
        return _refused(stored, exc)
    return _budget(src, stored, adapted)


def _refused(stored: StoredInput, exc: InputRejected) -> Replay:
    return Replay(
        stored.intake_id,
        accepted=False,
        code=exc.code,
        message=f"{exc.message_en} / {exc.message_zh}",
    )


def _budget(src: Source, stored: StoredInput, adapted: Adapted) -> Adapted | Replay:
    iid = stored.intake_id
    budget = src.cfg.error_budget
    if adapted.rejects and budget.exceeded(adapted.read, len(adapted.rejects)):
        return Replay(
            iid,
            accepted=False,
            code="E_ERROR_BUDGET",
            message=f"{len(adapted.rejects)} of {adapted.read} records still "
            "rejected: over the source's error budget",
        )
    return adapted


def _check(stored: StoredInput | None, intake_id: str) -> StoredInput | Replay:
    if stored is None:
        return Replay(
            intake_id, accepted=False, code="E_NOT_FOUND", message="no such intake id"
        )
    if stored.status is not InputStatus.QUARANTINED:
        return Replay(
            intake_id,
            accepted=False,
            code="E_NOT_QUARANTINED",
            message="input is not in quarantine (already accepted)",
        )
    return stored


def replay(
    spool: Spool,
    sources: dict[str, Source],
    catalogue: Catalogue,
    intake_id: str,
    *,
    now: float,
) -> Replay:
    """Replay one quarantined input through a synchronous spool."""
    stored = _check(spool.get_input(intake_id), intake_id)
    if isinstance(stored, Replay):
        return stored
    src = sources.get(stored.provenance.source)
    if src is None:
        return Replay(
            intake_id,
            accepted=False,
            code="E_UNKNOWN_SOURCE",
            message=f"source {stored.provenance.source!r} is not configured",
        )
    plan = _plan(src, stored, catalogue)
    if isinstance(plan, Replay):
        spool.mark_replayed(
            intake_id, now=now, reason_code=plan.code, message=plan.message
        )
        return plan
    spool.put_intake(
        stored.provenance,
        stored.raw,
        plan.records,
        plan.rejects,
        intake_id=intake_id,
        now=now,
    )
    return _ok(intake_id, plan)


Adapt = Callable[[Source, RawInput], Awaitable[Adapted]]


async def replay_async(
    spool: AsyncSpool,
    sources: dict[str, Source],
    adapt: Adapt,
    intake_id: str,
    *,
    now: float,
) -> Replay:
    """Replay one quarantined input in the running node, adapted as intake adapts
    (``adapt``: in an intake worker, so an input that crashes its parser cannot
    take the node down)."""
    stored = _check(await spool.get_input(intake_id), intake_id)
    if isinstance(stored, Replay):
        return stored
    src = sources.get(stored.provenance.source)
    if src is None:
        return Replay(
            intake_id,
            accepted=False,
            code="E_UNKNOWN_SOURCE",
            message=f"source {stored.provenance.source!r} is not configured",
        )
    raw = _raw(src, stored)
    plan: Adapted | Replay
    if isinstance(raw, Replay):
        plan = raw
    else:
        try:
            plan = _budget(src, stored, await adapt(src, raw))
        except InputRejected as exc:
            plan = _refused(stored, exc)
        except AdapterCrashed as exc:
            plan = Replay(
                intake_id, accepted=False, code="E_ADAPTER_CRASHED", message=str(exc)
            )
    if isinstance(plan, Replay):
        await spool.mark_replayed(
            intake_id, now=now, reason_code=plan.code, message=plan.message
        )
        return plan
    await spool.put_intake(
        stored.provenance,
        stored.raw,
        plan.records,
        plan.rejects,
        intake_id=intake_id,
        now=now,
    )
    return _ok(intake_id, plan)


def _ok(intake_id: str, plan: Adapted) -> Replay:
    return Replay(
        intake_id,
        accepted=True,
        records=len(plan.records),
        rejected=len(plan.rejects),
        destinations=tuple({d for r in plan.records for d in r.destinations}),
    )
