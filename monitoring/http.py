"""Admin listener: /metrics, /healthz, /readyz and the operator status page."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["admin_routes"]

StatusFn = Callable[[], Awaitable[dict[str, Any]]]
ReadyFn = Callable[[], Awaitable[list[str]]]


def admin_routes(
    registry: CollectorRegistry, status: StatusFn, ready: ReadyFn, node: str
) -> list[web.RouteDef]:
    async def metrics(_r: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_r: web.Request) -> web.Response:
        problems = await ready()
        if problems:
            return web.json_response(
                {"status": "not ready", "problems": problems}, status=503
            )
        return web.json_response({"status": "ready"})

    async def status_json(_r: web.Request) -> web.Response:
        return web.json_response(await status())

    async def page(_r: web.Request) -> web.Response:
        s = await status()
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{v['accepted']}</td><td>{v['records']}</td>"
            f"<td>{v['rejected']}</td><td>{v['quarantined']}</td></tr>"
            for n, v in s["sources"].items()
        )
        drows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{v['queued']}</td><td>{v['delivered']}</td>"
            f"<td>{v['dead']}</td><td>{v['oldest_age_s'] or 0:.1f}</td>"
            f"<td>{html.escape(str(v.get('last_error') or ''))}</td></tr>"
            for n, v in s["destinations"].items()
        )
        body = f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<title>交换前置机 {html.escape(node)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;border-bottom:1px solid #ccc}}</style>
<h1>交换前置机 Exchange gateway: {html.escape(node)}</h1>
<h2>数据源 Sources</h2><table><tr><th>name</th><th>inputs 接收</th><th>records 记录</th>
<th>rejected 拒收</th><th>quarantined 隔离</th></tr>{rows}</table>
<h2>目的地 Destinations</h2><table><tr><th>name</th><th>queued 排队</th>
<th>delivered 已送达</th><th>dead 死信</th><th>oldest age s 最久等待</th><th>last error 最近错误</th></tr>{drows}</table>
<pre id="status-json">{html.escape(json.dumps(s, ensure_ascii=False, indent=1))}</pre></html>"""
        return web.Response(text=body, content_type="text/html")

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/api/status", status_json),
        web.get("/", page),
    ]
