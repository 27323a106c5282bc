"""``make run``: a hub and a gateway on loopback, fed the bundled samples.

Generates demo keys and tokens under var/demo/ on first run, checks both
configs, starts ``run_gateway.py run`` twice (hub first), pushes the samples
to the gateway, waits until the hub has receipted them, prints where to look,
and keeps both running until Ctrl-C (then SIGTERM, which drains cleanly).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from crypto import keygen
from gateway.demo_data import demo_jsonl

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "var" / "demo"
CONFIG = ROOT / "config" / "demo"
GATEWAY_INGEST = "http://127.0.0.1:8080"
GATEWAY_ADMIN = "http://127.0.0.1:9108"
HUB_ADMIN = "http://127.0.0.1:9118"
ADMIN = "admin"


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare() -> dict[str, str]:
    """Keys and tokens, made once; returns the source tokens and ``admin``."""
    keys = DEMO / "keys"
    for name in ("gateway", "hub"):
        if not (keys / f"{name}.key.pem").exists():
            keygen(keys, name)
    tokens_dir = DEMO / "tokens"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    tokens = {}
    # "admin" is the admin API's token (status page), in both demo configs.
    for source in [*_sources(), ADMIN]:
        path = tokens_dir / f"{source}.token"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
        tokens[source] = path.read_text().strip()
    return tokens


def _sources() -> list[str]:
    import yaml

    cfg = yaml.safe_load((CONFIG / "gateway.yaml").read_text(encoding="utf-8"))
    return [s["name"] for s in cfg.get("sources", [])]


def samples() -> dict[str, list[tuple[str, str, bytes]]]:
    """Per source: (name, content type, bytes) of the bundled sample exports."""
    out: dict[str, list[tuple[str, str, bytes]]] = {
        "national-jsonl": [
            ("demo-national.jsonl", "application/x-ndjson", demo_jsonl(5))
        ]
    }
    bundled = CONFIG / "samples"
    if bundled.is_dir():
        types = {
            ".xml": "application/xml",
            ".csv": "text/csv",
            ".jsonl": "application/x-ndjson",
            ".json": "application/json",
        }
        for d in sorted(p for p in bundled.iterdir() if p.is_dir()):
            out[d.name] = [
                (
                    f.name,
                    types.get(f.suffix, "application/octet-stream"),
                    f.read_bytes(),
                )
                for f in sorted(d.iterdir())
                if f.is_file()
            ]
    return out


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(  # noqa: S310 - loopback only
        url, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}; see its log above")
        with contextlib.suppress(OSError):
            if _get(url + "/readyz")[0] == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not become ready at {url}/readyz")


def _post(source: str, token: str, name: str, ctype: str, body: bytes) -> str:
    req = urllib.request.Request(  # noqa: S310 - loopback only
        f"{GATEWAY_INGEST}/v1/ingest/{source}",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": ctype,
            "Idempotency-Key": f"demo-{source}-{name}",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
            return f"{r.status} {r.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


def _interrupt(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM (e.g. from a supervisor) stops the demo like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    tokens = prepare()
    py = sys.executable
    gw = [py, str(ROOT / "run_gateway.py")]
    for cfg in ("hub.yaml", "gateway.yaml"):
        r = subprocess.run([*gw, "check-config", str(CONFIG / cfg)], check=False)
        if r.returncode != 0:
            return 2
    logs = DEMO / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (
            (logs / "hub.log").open("ab") as hub_log,
            (logs / "gateway.log").open("ab") as gw_log,
        ):
            hub = subprocess.Popen(
                [*gw, "run", "--config", str(CONFIG / "hub.yaml")],
                stdout=hub_log,
                stderr=subprocess.STDOUT,
            )
            procs.append(hub)
            _wait_ready(HUB_ADMIN, hub, "hub")
            gateway = subprocess.Popen(
                [*gw, "run", "--config", str(CONFIG / "gateway.yaml")],
                stdout=gw_log,
                stderr=subprocess.STDOUT,
            )
            procs.append(gateway)
            _wait_ready(GATEWAY_ADMIN, gateway, "gateway")
        _say("Hub and gateway are running. Feeding the bundled samples:")
        for source, files in samples().items():
            if source not in tokens or source == ADMIN:
                continue
            for name, ctype, body in files:
                _say(
                    f"  {source}/{name}: {_post(source, tokens[source], name, ctype, body)}"
                )
        _wait_delivered(tokens[ADMIN])
        _say(f"""
Where to look:
  gateway status page   {GATEWAY_ADMIN}/        (metrics: {GATEWAY_ADMIN}/metrics)
  hub status page       {HUB_ADMIN}/        (metrics: {HUB_ADMIN}/metrics)
  admin token           {DEMO / "tokens" / "admin.token"}
                        (the status pages ask for it: paste the file's contents)
  hub inbox (JSONL)     {DEMO / "hub" / "inbox"}
  status from the CLI   .venv/bin/python run_gateway.py status --config config/demo/gateway.yaml
  logs                  {logs}
  source tokens         {DEMO / "tokens"}/<source>.token
Press Ctrl-C to stop both.""")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        _say("A process exited; stopping the demo.")
        return 1
    except KeyboardInterrupt:
        _say("\nStopping (SIGTERM, draining)...")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        _wait_stopped(procs)


def _wait_stopped(procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait for the nodes' clean stop; a second Ctrl-C does not cut it short
    (nor print a traceback): they are draining, and stop within 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            for p in procs:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            return
        except KeyboardInterrupt:
            _say(
                "Still stopping: the nodes finish what they are sending (30 s at most)."
            )
        except subprocess.TimeoutExpired:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            return


def _wait_delivered(admin_token: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        code, body = _get(GATEWAY_ADMIN + "/api/status", admin_token)
        if code == 200:
            st = json.loads(body)
            pending = sum(d["queued"] for d in st["destinations"].values())
            if pending == 0:
                delivered = sum(d["delivered"] for d in st["destinations"].values())
                _, hub_body = _get(HUB_ADMIN + "/api/status", admin_token)
                hub = json.loads(hub_body).get("hub", {})
                _say(
                    f"Delivered {delivered} records with verified receipts; the hub holds "
                    f"{hub.get('records', '?')} records from {hub.get('envelopes', '?')} "
                    "envelopes."
                )
                return
        time.sleep(0.3)
    _say("Not everything was delivered within 30 s; see the status pages.")


if __name__ == "__main__":
    sys.exit(main())
