"""Test harness: real gateway and hub nodes on loopback, in-process or as processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import crypto
from config.loader import load
from gateway.app import serve
from gateway.node import Node, build_node

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Site:
    """Files and ports of a small test deployment: one gateway, hubs, tokens."""

    root: Path
    token: str = "test-token-0123456789abcdef"
    admin_token: str = "admin-token-0123456789abcdef"
    ports: dict[str, int] = field(default_factory=dict)

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def key(self, name: str) -> Path:
        path = self.root / "keys" / f"{name}.key.pem"
        if not path.exists():
            crypto.keygen(self.root / "keys", name)
        return path

    def pub(self, name: str) -> Path:
        self.key(name)
        return self.root / "keys" / f"{name}.pub.pem"

    def token_file(self) -> Path:
        p = self.root / "tokens" / "src.token"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(self.token + "\n")
            p.chmod(0o600)
        return p

    def admin_token_file(self) -> Path:
        p = self.root / "tokens" / "admin.token"
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(self.admin_token + "\n")
            p.chmod(0o600)
        return p

    def admin_auth(self) -> dict[str, str]:
        """Headers for the admin API (/api/*) of this site's nodes."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    def admin(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name + '-admin')}"

    def gateway_config(
        self,
        name: str = "gw",
        *,
        destinations: dict[str, str] | None = None,
        extra: str = "",
        dest_extra: str = "",
        intake_workers: int | str = 0,
    ) -> Path:
        """``destinations``: destination name -> hub node name (or a raw URL).

        ``intake_workers``: 0 (adapt in the gateway process) keeps in-process
        tests quick; the multi-process tests run real workers.
        """
        dests = destinations if destinations is not None else {"hub": "hub"}
        lines = [
            "node:",
            f"  name: {name}",
            f"  intake_workers: {intake_workers}",
            f"  state_dir: {self.root / name}",
            f"  keys: [{{file: {self.key(name)}}}]",
            "listen:",
            f"  ingest: 127.0.0.1:{self.port(name)}",
            f"  admin: 127.0.0.1:{self.port(name + '-admin')}",
            f"  admin_token_files: [{self.admin_token_file()}]",
            "sources:",
            "  - name: src",
            f"    token_files: [{self.token_file()}]",
            "    content_types: [application/x-ndjson, application/json]",
            "    max_bytes: 2MiB",
            "destinations:",
        ]
        for d, hub in dests.items():
            url = hub if hub.startswith("http") else f"{self.url(hub)}/v1/envelopes"
            key = self.pub(d if hub.startswith("http") else hub)
            lines += [
                f"  - name: {d}",
                f"    url: {url}",
                f"    recipient_keys: [{key}]",
                "    batch: {max_records: 200, linger_s: 0.05}",
                "    retry: {quick_attempts: 2, initial_s: 0.05, max_quick_s: 0.2, "
                "backoff_min_s: 0.2, backoff_max_s: 1.0}",
                "    timeout_s: 5",
                "    circuit_failures: 3",
                "    circuit_open_s: 0.5",
            ]
            if dest_extra:
                lines.append(dest_extra)
        lines += ["quota:", "  min_free_disk: 16MiB"]
        path = self.root / f"{name}.yaml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path

    def hub_config(
        self, name: str = "hub", *, senders: tuple[str, ...] = ("gw",), extra: str = ""
    ) -> Path:
        lines = [
            "node:",
            f"  name: {name}",
            f"  state_dir: {self.root / name}",
            f"  keys: [{{file: {self.key(name)}}}]",
            "listen:",
            f"  ingest: 127.0.0.1:{self.port(name)}",
            f"  admin: 127.0.0.1:{self.port(name + '-admin')}",
            f"  admin_token_files: [{self.admin_token_file()}]",
            "hub:",
            "  senders:",
        ]
        lines += [f"    - {{name: {s}, key: {self.pub(s)}}}" for s in senders]
        lines += ["quota:", "  min_free_disk: 16MiB"]
        path = self.root / f"{name}.yaml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path


def node_from(path: Path) -> Node:
    return build_node(load(path))


def admin_headers(config: Path | Node) -> dict[str, str]:
    """Authorization for a node's admin API, from the first of its admin token files.

    A config file is only read for that (a test may have broken the rest of it).
    """
    if isinstance(config, Node):
        files = config.config.model.listen.admin_token_files
        where = config.config.path.parent
    else:
        listen = (yaml.safe_load(config.read_text()) or {}).get("listen") or {}
        files = listen.get("admin_token_files") or []
        where = config.parent
    if not files:
        return {}
    token = (where / files[0]).read_text().strip()  # relative: to the config's folder
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running(
    *paths: Path, reloads: list[asyncio.Event] | None = None
) -> AsyncIterator[list[Node]]:
    """Run nodes in this event loop until the block ends.

    ``reloads``: gets one event per node; setting it reloads that node's
    configuration, as SIGHUP does.
    """
    stop = asyncio.Event()
    nodes = [node_from(p) for p in paths]
    tasks = []
    for n in nodes:
        reload_requested = None
        if reloads is not None:
            reload_requested = asyncio.Event()
            reloads.append(reload_requested)
        tasks.append(asyncio.create_task(serve(n, stop, reload_requested)))
        await wait_ready_async(n)
    try:
        yield nodes
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def wait_ready_async(node: Node, seconds: float = 10) -> None:
    import aiohttp

    url = f"http://{node.config.model.listen.admin}/readyz"
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise TimeoutError(url)


# -- processes ----------------------------------------------------------------


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Proc:
    """A node as a real OS process (``run_gateway.py run``)."""

    def __init__(self, config: Path, admin: str, log: Path) -> None:
        self.config = config
        self.admin = admin
        self.log = log
        self.p: subprocess.Popen[bytes] | None = None
        self.auth: dict[str, str] | None = None  # admin API headers, read once

    def start(self, *, wait: bool = True) -> Proc:
        with self.log.open("ab") as out:
            self.p = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "run_gateway.py"),
                    "run",
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.auth = admin_headers(self.config)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.p is not None
            if self.p.poll() is not None:
                raise RuntimeError(
                    f"{self.config.name} exited {self.p.returncode}: "
                    + self.log.read_text()[-2000:]
                )
            with contextlib.suppress(OSError):
                if http("GET", self.admin + "/readyz", timeout=1)[0] == 200:
                    return
            time.sleep(0.05)
        raise TimeoutError(self.admin)

    def kill9(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout: float = 30) -> int:
        if self.p is None:
            return 0
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.p.wait(timeout=timeout)

    def status(self) -> dict[str, Any]:
        if self.auth is None:
            self.auth = admin_headers(self.config)
        code, body = http("GET", self.admin + "/api/status", headers=self.auth)
        assert code == 200, body
        result: dict[str, Any] = json.loads(body)
        return result


@contextlib.contextmanager
def processes(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in reversed(procs):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                p.stop(timeout=30)
            p.kill9()
