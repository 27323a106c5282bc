"""Admin listener: /metrics, /healthz, /readyz, the operator status page and /api/*.

``/metrics``, ``/healthz`` and ``/readyz`` are open (Prometheus and systemd on
loopback). Every ``/api/*`` route needs ``Authorization: Bearer <admin token>``
(``listen.admin_token_files``); without a configured admin token they answer 403.
``GET /`` is ``monitoring/static/status.html``: it carries no data, asks for the
token (kept in the browser's sessionStorage) and fetches ``/api/*``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["STATUS_PAGE", "AdminBackend", "admin_routes"]

STATUS_PAGE = Path(__file__).resolve().parent / "static" / "status.html"
MAX_QUARANTINE = 1000
MAX_AUDIT = 500
_INTAKE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

MESSAGES: dict[str, tuple[str, str]] = {
    "E_ADMIN_DISABLED": (
        "no admin token is configured (listen.admin_token_files): the admin API is off",
        "未配置管理令牌（listen.admin_token_files），管理接口已关闭",
    ),
    "E_AUTH_MISSING": ("missing bearer token", "缺少访问令牌"),
    "E_AUTH_INVALID": ("admin token not valid", "管理令牌无效"),
    "E_BAD_REQUEST": ("bad query parameter", "查询参数有误"),
    "E_NOT_FOUND": ("no such intake id", "无此接收编号"),
}

_NO_STORE = {"Cache-Control": "no-store"}


class AdminBackend(Protocol):
    """What the admin API needs from the running node (gateway/operations.py)."""

    def admin_tokens(self) -> Sequence[tuple[str, bytes]]: ...

    async def status(self) -> dict[str, Any]: ...

    async def ready_problems(self) -> list[str]: ...

    async def quarantine_list(
        self, *, source: str | None, include_replayed: bool, after: str, limit: int
    ) -> list[dict[str, Any]]: ...

    async def quarantine_show(self, intake_id: str) -> dict[str, Any] | None: ...

    async def quarantine_replay(
        self, intake_id: str, *, user: str, remote: str | None, path: str
    ) -> dict[str, Any]: ...

    async def audit_recent(self, limit: int) -> list[dict[str, Any]]: ...

    def auth_failed(
        self, *, remote: str | None, code: str, method: str, path: str
    ) -> None: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ApiHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def _error(
    status: int,
    code: str,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    en, zh = MESSAGES.get(code, (code, code))
    return web.json_response(
        {"error": {"code": code, "message": message or f"{en} / {zh}"}},
        status=status,
        headers={**_NO_STORE, **(headers or {})},
    )


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_NO_STORE)


def _csp_hashes(page: str, tag: str) -> str:
    """'sha256-...' of every inline <tag> body: the page may run only its own code."""
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
    return " ".join(
        "'sha256-"
        + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()
        + "'"
        for b in bodies
    )


def _limit(request: web.Request, default: int, maximum: int) -> int:
    raw = request.query.get("limit", "")
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(raw)
    return max(1, min(int(raw), maximum))


def admin_routes(
    registry: CollectorRegistry,
    backend: AdminBackend,
    *,
    page_path: Path = STATUS_PAGE,
) -> list[web.RouteDef]:
    page_html = page_path.read_text(encoding="utf-8")
    page_headers = {
        "Content-Security-Policy": (
            "default-src 'none'; connect-src 'self'; img-src 'self' data:; "
            f"script-src {_csp_hashes(page_html, 'script')}; "
            f"style-src {_csp_hashes(page_html, 'style')}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        **_NO_STORE,
    }

    def guarded(handler: ApiHandler) -> Handler:
        """Bearer admin token (constant-time compare) before ``handler`` runs."""

        async def check(request: web.Request) -> web.StreamResponse:
            tokens = backend.admin_tokens()
            if not tokens:
                return _error(403, "E_ADMIN_DISABLED")
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            given = token.strip().encode()
            code = "E_AUTH_MISSING" if scheme.lower() != "bearer" or not given else ""
            found = None
            if not code:
                for tid, secret in tokens:
                    # Compare against every token, always: no early exit timing.
                    if hmac.compare_digest(given, secret):
                        found = tid
                if found is None:
                    code = "E_AUTH_INVALID"
            if found is None:
                backend.auth_failed(
                    remote=request.remote,
                    code=code,
                    method=request.method,
                    path=request.path,
                )
                if code == "E_AUTH_MISSING":
                    return _error(
                        401, code, headers={"WWW-Authenticate": 'Bearer realm="admin"'}
                    )
                return _error(403, code)
            return await handler(request, f"admin:{found}")

        return check

    async def metrics(_r: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_r: web.Request) -> web.Response:
        problems = await backend.ready_problems()
        if problems:
            return web.json_response(
                {"status": "not ready", "problems": problems}, status=503
            )
        return web.json_response({"status": "ready"})

    async def page(_r: web.Request) -> web.Response:
        return web.Response(
            text=page_html, content_type="text/html", headers=page_headers
        )

    async def status(_r: web.Request, _user: str) -> web.Response:
        return _json(await backend.status())

    async def quarantine(request: web.Request, _user: str) -> web.Response:
        q = request.query
        try:
            limit = _limit(request, 100, MAX_QUARANTINE)
        except ValueError:
            return _error(400, "E_BAD_REQUEST", "limit: a positive integer / 正整数")
        items = await backend.quarantine_list(
            source=q.get("source") or None,
            include_replayed=q.get("all", "").lower() in ("1", "true", "yes"),
            after=q.get("after", ""),
            limit=limit,
        )
        return _json({"items": items, "limit": limit})

    async def quarantine_show(request: web.Request, _user: str) -> web.Response:
        iid = request.match_info["intake_id"]
        shown = await backend.quarantine_show(iid) if _INTAKE_ID.match(iid) else None
        if shown is None:
            return _error(404, "E_NOT_FOUND")
        return _json(shown)

    async def replay(request: web.Request, user: str) -> web.Response:
        iid = request.match_info["intake_id"]
        if not _INTAKE_ID.match(iid):
            return _error(404, "E_NOT_FOUND")
        result = await backend.quarantine_replay(
            iid, user=user, remote=request.remote, path=request.path
        )
        code = result.get("code")
        if result.get("accepted"):
            status = 200
        elif code == "E_NOT_FOUND":
            status = 404
        elif code == "E_NOT_QUARANTINED":
            status = 409
        elif code in ("E_QUOTA", "E_SPOOL"):
            status = 503
        else:
            status = 422
        return _json(result, status)

    async def audit(request: web.Request, _user: str) -> web.Response:
        try:
            limit = _limit(request, 50, MAX_AUDIT)
        except ValueError:
            return _error(400, "E_BAD_REQUEST", "limit: a positive integer / 正整数")
        return _json({"entries": await backend.audit_recent(limit), "limit": limit})

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/", page),
        web.get("/api/status", guarded(status)),
        web.get("/api/quarantine", guarded(quarantine)),
        web.get("/api/quarantine/{intake_id}", guarded(quarantine_show)),
        web.post("/api/quarantine/{intake_id}/replay", guarded(replay)),
        web.get("/api/audit", guarded(audit)),
    ]
