"""HTTP intake: ``POST /v1/ingest/{source}`` and ``GET /v1/intake/{id}``.

HTTP ↔ pipeline and exception → status, nothing else. The answer 202 is sent
only after the input, its records and its who/when/where are fsync'd (the
spool's group commit shares one flush between concurrent requests).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from adapters.base import RawInput
from adapters.catalogue import Catalogue
from adapters.readers import InputRejected
from crypto import sm3
from gateway.adaptpool import AdapterCrashed, AdaptPool
from gateway.bodies import TooLarge, read_limited
from gateway.errors import QuotaExceeded, SpoolError
from gateway.node import Source
from gateway.pipeline import Adapted, adapt_input
from gateway.records import IntakeState, Provenance, Reject
from gateway.spool import AsyncSpool
from monitoring.events import Events

__all__ = ["Intake", "Outcome", "error_response"]

# Stable codes with one sentence each, in English and zh-CN (what producers see).
MESSAGES: dict[str, tuple[str, str]] = {
    "E_UNKNOWN_SOURCE": ("no such source", "没有这个数据源"),
    "E_AUTH_MISSING": ("missing bearer token", "缺少访问令牌"),
    "E_AUTH_INVALID": ("token not valid for this source", "令牌对该数据源无效"),
    "E_CONTENT_TYPE": (
        "content type not accepted by this source",
        "该数据源不接受此内容类型",
    ),
    "E_TOO_LARGE": (
        "input larger than this source accepts",
        "输入超过该数据源允许的大小",
    ),
    "E_IDEMPOTENCY_KEY": ("bad Idempotency-Key header", "Idempotency-Key 请求头无效"),
    "E_IDEMPOTENCY_CONFLICT": (
        "Idempotency-Key reused for different content",
        "Idempotency-Key 已用于不同内容",
    ),
    "E_QUOTA": ("spool over quota, retry later", "缓存已达上限，请稍后重试"),
    "E_SPOOL": ("input could not be stored, retry later", "输入无法保存，请稍后重试"),
    "E_NOT_FOUND": ("no such intake id", "没有这个接收编号"),
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one input, independent of the transport that carried it."""

    status: int
    body: bytes
    intake_id: str | None
    stored: bool = False  # the input's bytes are durable (accepted or quarantined)
    headers: dict[str, str] = field(default_factory=dict)


def _error(
    status: int,
    code: str,
    *,
    message: str | None = None,
    intake_id: str | None = None,
    headers: dict[str, str] | None = None,
    stored: bool = False,
) -> Outcome:
    en, zh = MESSAGES.get(code, (code, code))
    body: dict[str, object] = {
        "error": {"code": code, "message": message or f"{en} / {zh}"}
    }
    if intake_id is not None:
        body["intake_id"] = intake_id
    return Outcome(
        status,
        json.dumps(body, ensure_ascii=False).encode(),
        intake_id,
        stored=stored,
        headers=headers or {},
    )


def error_response(
    status: int,
    code: str,
    *,
    message: str | None = None,
    intake_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    en, zh = MESSAGES.get(code, (code, code))
    body: dict[str, object] = {
        "error": {"code": code, "message": message or f"{en} / {zh}"}
    }
    if intake_id is not None:
        body["intake_id"] = intake_id
    return web.json_response(body, status=status, headers=headers)


def _media_type(header: str) -> tuple[str, str | None]:
    parts = [p.strip() for p in header.split(";")]
    charset = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset" and v:
            charset = v.strip().strip('"').lower()
    return parts[0].lower(), charset


@dataclass
class Intake:
    sources: dict[str, Source]
    spool: AsyncSpool
    catalogue: Catalogue
    events: Events
    notify: Callable[[tuple[str, ...]], None]
    disk_ok: Callable[[], bool] = lambda: True
    clock: Callable[[], float] = time.time
    pool: AdaptPool | None = None
    """Worker processes for the adapt step; None: a thread of this process."""

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/ingest/{source}", self.ingest),
            web.get("/v1/intake/{intake_id}", self.intake_state),
        ]

    def _auth(self, src: Source, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.events.auth_failed(src.cfg.name, request.remote or "")
            return error_response(
                401,
                "E_AUTH_MISSING",
                headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
            )
        given = token.strip().encode()
        found = None
        for tid, secret in src.tokens:
            # Compare against every token, always: no early exit timing.
            if hmac.compare_digest(given, secret):
                found = tid
        if found is None:
            self.events.auth_failed(src.cfg.name, request.remote or "")
            return error_response(403, "E_AUTH_INVALID")
        return found

    async def ingest(self, request: web.Request) -> web.StreamResponse:
        """HTTP push: authenticate, read within the limit, then ``accept``."""
        name = request.match_info["source"]
        src = self.sources.get(name)
        if src is None:
            return error_response(404, "E_UNKNOWN_SOURCE")
        auth = self._auth(src, request)
        if isinstance(auth, web.Response):
            return auth
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 200 and key.isprintable()):
            return error_response(400, "E_IDEMPOTENCY_KEY")
        limit = src.cfg.max_bytes
        if request.content_length is not None and request.content_length > limit:
            self.events.input_refused(name, "E_TOO_LARGE", intake_id=None)
            return error_response(413, "E_TOO_LARGE")
        try:
            data = await read_limited(request.content, limit)
        except TooLarge:
            self.events.input_refused(name, "E_TOO_LARGE", intake_id=None)
            return error_response(413, "E_TOO_LARGE")
        out = await self.accept(
            src,
            data,
            remote_addr=request.remote or "",
            token_id=auth,
            content_type=request.headers.get("Content-Type", ""),
            idempotency_key=key,
        )
        return web.Response(
            status=out.status,
            body=out.body,
            headers=out.headers,
            content_type="application/json",
        )

    async def accept(
        self,
        src: Source,
        data: bytes,
        *,
        remote_addr: str,
        token_id: str,
        content_type: str,
        idempotency_key: str | None = None,
        name: str = "",
    ) -> Outcome:
        """One input, whatever carried it: adapt, validate, store durably, answer.

        ``Outcome.stored`` says whether the input's bytes are now durable (accepted,
        or kept in quarantine): only then may a file transport archive its copy.
        """
        started = time.perf_counter()
        source = src.cfg.name
        # A large input's SM3 takes milliseconds: not on the event loop.
        if len(data) > 64 * 1024:
            digest = (await asyncio.to_thread(sm3, data)).hex()
        else:
            digest = sm3(data).hex()
        key = idempotency_key
        if key is not None:
            prior = await self.spool.lookup_idempotent(source, key)
            if prior is not None:
                if prior.digest_hex != digest:
                    return _error(
                        422,
                        "E_IDEMPOTENCY_CONFLICT",
                        intake_id=prior.intake_id,
                        stored=True,
                    )
                return Outcome(prior.status, prior.body, prior.intake_id, stored=True)
        media, charset = _media_type(content_type)
        prov = Provenance(
            source=source,
            remote_addr=remote_addr,
            token_id=token_id,
            received_at=self.clock(),
            content_type=content_type,
            digest_hex=digest,
            idempotency_key=key,
        )
        if media not in src.cfg.content_types:
            return await self._quarantine(
                prov,
                data,
                "E_CONTENT_TYPE",
                415,
                f"content type {media!r} not accepted; expected one of "
                f"{src.cfg.content_types}",
            )
        raw = RawInput(
            source=source, data=data, content_type=media, charset=charset, name=name
        )
        try:
            adapted = await self.adapt(src, raw)
        except InputRejected as exc:
            return await self._quarantine(
                prov, data, exc.code, 422, f"{exc.message_en} / {exc.message_zh}"
            )
        except AdapterCrashed as exc:
            return await self._quarantine(
                prov,
                data,
                "E_ADAPTER_CRASHED",
                422,
                f"{exc} / 解析该输入的进程崩溃（单独重试亦然），输入已隔离",
            )
        budget = src.cfg.error_budget
        if adapted.rejects and budget.exceeded(adapted.read, len(adapted.rejects)):
            # Better hold the whole input than forward a part the sender must redo.
            self.events.error_budget_exceeded(source)
            return await self._quarantine(
                prov,
                data,
                "E_ERROR_BUDGET",
                422,
                f"{len(adapted.rejects)} of {adapted.read} records rejected: over the "
                f"source's error budget; nothing forwarded / {adapted.read} 条记录中 "
                f"{len(adapted.rejects)} 条被拒收，超过该数据源的错误上限，整批暂存隔离区",
                rejects=adapted.rejects,
            )
        if not self.disk_ok():
            # Refuse well before the disk is full: nothing is dropped silently.
            self.events.input_throttled(source, remote=remote_addr)
            return _error(503, "E_QUOTA", headers={"Retry-After": "60"})
        try:
            answer = await self.spool.put_intake(
                prov, data, adapted.records, adapted.rejects, now=prov.received_at
            )
        except QuotaExceeded as exc:
            self.events.input_throttled(source, remote=remote_addr)
            return _error(
                503,
                "E_QUOTA",
                headers={"Retry-After": str(max(1, int(exc.retry_after_s)))},
            )
        except SpoolError:
            self.events.input_refused(source, "E_SPOOL", intake_id=None)
            return _error(503, "E_SPOOL", headers={"Retry-After": "30"})
        if answer.repeated and key is not None and answer.digest_hex != prov.digest_hex:
            return _error(
                422, "E_IDEMPOTENCY_CONFLICT", intake_id=answer.intake_id, stored=True
            )
        if not answer.repeated:
            self.events.record_outcomes(
                source, dict(adapted.by_dataset), dict(adapted.by_reason)
            )
            self.events.input_accepted(
                source,
                records=len(adapted.records),
                rejected=len(adapted.rejects),
                seconds=time.perf_counter() - started,
                intake_id=answer.intake_id,
                remote=prov.remote_addr,
                token_id=prov.token_id,
                input_sm3=prov.digest_hex,
                rejected_by=dict(adapted.by_reason),
            )
            if adapted.records:
                self.notify(tuple({d for r in adapted.records for d in r.destinations}))
        return Outcome(answer.status, answer.body, answer.intake_id, stored=True)

    async def adapt(self, src: Source, raw: RawInput) -> Adapted:
        """Parse, map and validate one input: in an intake worker if there are
        any. Raises InputRejected, or AdapterCrashed (it killed its worker)."""
        pool = self.pool
        if pool is None:
            return await asyncio.to_thread(
                adapt_input, src.adapter, raw, self.catalogue, src.route
            )
        return await pool.adapt(src.cfg.name, src.adapter, src.route, raw)

    async def _quarantine(
        self,
        prov: Provenance,
        data: bytes,
        code: str,
        status: int,
        message: str,
        rejects: list[Reject] | None = None,
    ) -> Outcome:
        try:
            answer = await self.spool.put_quarantine(
                prov,
                data,
                reason_code=code,
                message=message,
                rejects=rejects
                or [Reject(locator="input", code=code, message=message)],
                answer_status=status,
                now=prov.received_at,
                answer=json.dumps(
                    {"error": {"code": code, "message": message}}, ensure_ascii=False
                ).encode(),
            )
        except SpoolError:
            self.events.input_refused(prov.source, "E_SPOOL", intake_id=None)
            return _error(503, "E_SPOOL", headers={"Retry-After": "30"})
        self.events.input_refused(
            prov.source,
            code,
            intake_id=answer.intake_id,
            remote=prov.remote_addr,
            token_id=prov.token_id,
            input_sm3=prov.digest_hex,
        )
        if answer.repeated:
            return Outcome(answer.status, answer.body, answer.intake_id, stored=True)
        return _error(
            status, code, message=message, intake_id=answer.intake_id, stored=True
        )

    async def intake_state(self, request: web.Request) -> web.StreamResponse:
        # Any of the node's source tokens may look an intake up, but only its own.
        iid = request.match_info["intake_id"]
        state = await self.spool.intake_state(iid)
        if state is None:
            return error_response(404, "E_NOT_FOUND")
        src = self.sources.get(state.source)
        if src is not None:
            auth = self._auth(src, request)
            if isinstance(auth, web.Response):
                return auth
        return web.json_response(intake_json(state))


def intake_json(state: IntakeState) -> dict[str, object]:
    return {
        "intake_id": state.intake_id,
        "source": state.source,
        "status": str(state.status),
        "received_at": state.received_at,
        "content_type": state.content_type,
        "size": state.size,
        "sm3": state.digest_hex,
        "records": [
            {
                "seq": r.seq,
                "dataset": r.dataset,
                "record_key": r.record_key,
                "sm3": r.digest_hex,
                "state": "accepted",
                "deliveries": {
                    d.destination: {
                        "state": str(d.state),
                        "attempts": d.attempts,
                        "delivered_at": d.delivered_at,
                        "envelope_id": d.envelope_id,
                        "receipt_id": d.receipt_id,
                        "error": d.error,
                    }
                    for d in r.deliveries
                },
            }
            for r in state.records
        ],
        "rejected": [
            {"locator": j.locator, "code": j.code, "message": j.message}
            for j in state.rejects
        ],
        "reason": None
        if state.reason_code is None
        else {"code": state.reason_code, "message": state.reason_message},
        "replayed_at": state.replayed_at,
    }
