"""The systemd units, sysusers/tmpfiles snippets and example config in systemd/.

How the units are checked without installing anything on the test machine:

- ``systemd-analyze verify`` resolves every Exec*= binary and every unit the
  service depends on. It runs with ``--root`` on a temporary tree laid out as
  on a server: the unit in ``etc/systemd/system/``, the host's own ``*.target``
  and ``*.slice`` units (the real dependency graph), ``/bin/kill``, and an
  executable stand-in at ``/opt/exchange-gateway/.venv/bin/python``. The unit
  file itself is used byte for byte. "Clean" means exit 0 *and* no output:
  verify reports unknown or misspelt keys on stderr but still exits 0.
- ``systemd-analyze security --offline=yes`` on the same tree must rate the
  unit at 1.5 or lower (the "Overall exposure level" line).
- The ExecStartPre= and ExecStart= command lines are run for real against the
  example config, with /opt/exchange-gateway mapped to this checkout and
  /etc/exchange-gateway to a temporary directory, as systemd would run them
  (``$CREDENTIALS_DIRECTORY`` set up by the same rule systemd uses for a
  directory credential: file F of ``LoadCredential=ID:DIR`` becomes ``ID_F``;
  this was checked against a real systemd 252 running the units).

In CI (CI=true) a missing systemd-analyze, systemd-sysusers or systemd-tmpfiles
fails these tests instead of skipping them (tests/conftest.py require_tool).
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import crypto
from gateway.app import DRAIN_S
from tests.conftest import ROOT, require_tool

SYSTEMD = ROOT / "systemd"
TEMPLATE = SYSTEMD / "exchange-gateway@.service"
EXAMPLE = SYSTEMD / "exchange-gateway.example.yaml"
INSTANCES = ("gateway", "hub")
MAX_EXPOSURE = 1.5
INSTALL_DIR = "/opt/exchange-gateway"
CONFIG_DIR = "/etc/exchange-gateway"


# --- helpers ----------------------------------------------------------------------


def unit_settings(path: Path = TEMPLATE) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in file order."""
    out = []
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        assert not line.endswith("\\"), "no continuation lines expected"
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def setting(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in unit_settings() if s == section and k == key]


def credential_source() -> tuple[str, str]:
    """(ID, directory) of the unit's one directory credential."""
    (value,) = setting("LoadCredential")
    cred_id, _, path = value.partition(":")
    return cred_id, path


def load_credentials(cred_id: str, source: Path, target: Path) -> None:
    """What systemd does for ``LoadCredential=ID:DIR`` (DIR a directory).

    Each regular file DIR/a/b becomes ``$CREDENTIALS_DIRECTORY/ID_a_b``, read-only,
    owned by the service user (src/core/execute.c: recurse_dir() is started with
    the ID as path, and load_cred_recurse_dir_cb() turns "/" into "_").
    """
    target.mkdir(parents=True, mode=0o700)
    for f in sorted(source.rglob("*")):
        if f.is_file() and not f.is_symlink():
            name = "_".join((cred_id, *f.relative_to(source).parts))
            dst = target / name
            dst.write_bytes(f.read_bytes())
            dst.chmod(0o400)


def timespan_s(value: str) -> float:
    """systemd time span (``90s``, ``2min``, ``1min 30s``, ``45``) in seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(num) * units[unit or "s"]
    return total


def unit_paths() -> Path:
    for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (d / "sysinit.target").is_file():
            return d
    pytest.fail("systemd's unit directory (sysinit.target) not found")


@pytest.fixture(scope="module")
def analyze() -> str:
    return require_tool("systemd-analyze")


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory: pytest.TempPathFactory, analyze: str) -> Path:
    """A file system root laid out as a server with the package installed."""
    root = tmp_path_factory.mktemp("root")
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    shutil.copy2(TEMPLATE, units / TEMPLATE.name)
    lib = root / "usr/lib/systemd/system"
    lib.mkdir(parents=True)
    for pattern in ("*.target", "*.slice"):
        for f in unit_paths().glob(pattern):
            if f.is_file():
                shutil.copy2(f, lib / f.name)
    python = root / INSTALL_DIR.lstrip("/") / ".venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n# stand-in for the venv interpreter\n")
    python.chmod(0o755)
    kill = shutil.which("kill", path="/bin:/usr/bin")
    assert kill is not None
    (root / "bin").mkdir()
    shutil.copy2(kill, root / "bin/kill")
    return root


# --- the unit file's own promises ---------------------------------------------------


def test_unit_declares_the_lifecycle() -> None:
    assert setting("Type") == ["notify"]
    assert setting("NotifyAccess") == ["main"]
    assert timespan_s(setting("WatchdogSec")[0]) > 0
    assert setting("Restart") == ["on-failure"]
    assert setting("RestartPreventExitStatus") == ["2"]  # config errors: no loop
    (pre,) = setting("ExecStartPre")
    (start,) = setting("ExecStart")
    (reload_,) = setting("ExecReload")
    assert shlex.split(pre)[2:] == ["check-config", f"{CONFIG_DIR}/%i.yaml"]
    assert shlex.split(start)[2:] == ["run", "--config", f"{CONFIG_DIR}/%i.yaml"]
    assert shlex.split(pre)[:2] == shlex.split(start)[:2]
    assert shlex.split(start)[:2] == [
        f"{INSTALL_DIR}/.venv/bin/python",
        f"{INSTALL_DIR}/run_gateway.py",
    ]
    assert shlex.split(reload_) == ["/bin/kill", "-HUP", "$MAINPID"]


def test_stop_timeout_covers_the_drain() -> None:
    """SIGTERM: aiohttp finishes in-flight requests, then deliveries drain."""
    request_grace = (
        inspect.signature(web.BaseRunner.__init__)
        .parameters["shutdown_timeout"]
        .default
    )
    stop = timespan_s(setting("TimeoutStopSec")[0])
    assert stop > DRAIN_S + request_grace


def test_unit_runs_unprivileged_with_its_own_state_and_credentials() -> None:
    assert setting("User") == ["exchange-gateway"]
    assert setting("StateDirectory") == ["exchange-gateway/%i"]
    assert credential_source() == ("secret", f"{CONFIG_DIR}/credentials/%i")
    assert setting("CapabilityBoundingSet") == [""]
    sysusers = (SYSTEMD / "sysusers.d/exchange-gateway.conf").read_text()
    assert re.search(r"^u\s+exchange-gateway\s", sysusers, re.MULTILINE)


# --- systemd-analyze --------------------------------------------------------------


@pytest.mark.parametrize("instance", INSTANCES)
def test_verify_is_clean(analyze: str, unit_root: Path, instance: str) -> None:
    r = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            "--generators=no",
            f"--root={unit_root}",
            f"exchange-gateway@{instance}.service",
        ],
        capture_output=True,
        text=True,
        cwd=unit_root,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout + r.stderr == ""


def test_verify_catches_a_misspelt_key(
    analyze: str, unit_root: Path, tmp_path: Path
) -> None:
    """The check above is not vacuous: a typo is reported (though exit is 0)."""
    root = tmp_path / "root"
    shutil.copytree(unit_root, root, symlinks=True)
    unit = root / "etc/systemd/system" / TEMPLATE.name
    unit.write_text(unit.read_text().replace("ProtectClock=", "ProtectClok="))
    r = subprocess.run(
        [
            analyze,
            "verify",
            "--man=no",
            "--generators=no",
            f"--root={root}",
            "exchange-gateway@gateway.service",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ProtectClok" in r.stderr


def security(analyze: str, unit_root: Path, instance: str) -> tuple[float, str]:
    r = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            "--no-pager",
            f"--root={unit_root}",
            f"exchange-gateway@{instance}.service",
        ],
        capture_output=True,
        text=True,
        cwd=unit_root,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1)), r.stdout


@pytest.mark.parametrize("instance", INSTANCES)
def test_security_exposure(analyze: str, unit_root: Path, instance: str) -> None:
    exposure, report = security(analyze, unit_root, instance)
    assert exposure <= MAX_EXPOSURE, report
    passed = {
        line.split()[1]
        for line in report.splitlines()
        if line.startswith("✓") and len(line.split()) > 1
    }
    for must in (
        "User=/DynamicUser=",
        "NoNewPrivileges=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "ProtectSystem=",
        "PrivateUsers=",
        "MemoryDenyWriteExecute=",
        "SystemCallFilter=~@privileged",
        "NotifyAccess=",
        "RestrictNamespaces=~user",
    ):
        assert must in passed, report


# --- sysusers.d and tmpfiles.d -------------------------------------------------------


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    """An empty root with the service user created by our sysusers.d file."""
    sysusers = require_tool("systemd-sysusers")
    root = tmp_path / "sysroot"
    (root / "etc").mkdir(parents=True)
    conf = SYSTEMD / "sysusers.d/exchange-gateway.conf"
    subprocess.run(
        [sysusers, f"--root={root}", str(conf)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return root


def test_sysusers_creates_a_system_user(sysroot: Path) -> None:
    passwd = (sysroot / "etc/passwd").read_text().splitlines()
    (entry,) = [p for p in passwd if p.startswith("exchange-gateway:")]
    _, _, uid, gid, _, home, shell = entry.split(":")
    assert int(uid) < 1000  # a system user
    assert home == "/var/lib/exchange-gateway"
    assert shell.endswith("nologin")
    group = (sysroot / "etc/group").read_text()
    assert f"exchange-gateway:x:{gid}:" in group


def test_tmpfiles_creates_the_layout(sysroot: Path, tmp_path: Path) -> None:
    tmpfiles = require_tool("systemd-tmpfiles")
    conf = SYSTEMD / "tmpfiles.d/exchange-gateway.conf"
    as_root = os.geteuid() == 0
    if not as_root:
        # Without root, chown to the service group cannot happen; check the rest.
        text = re.sub(
            r"^(d\s+\S+\s+\d+)\s+\S+\s+\S+",
            r"\1 - -",
            conf.read_text(),
            flags=re.MULTILINE,
        )
        conf = tmp_path / "tmpfiles.conf"
        conf.write_text(text)
    r = subprocess.run(
        [tmpfiles, f"--root={sysroot}", "--create", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    gid = next(
        int(line.split(":")[2])
        for line in (sysroot / "etc/group").read_text().splitlines()
        if line.startswith("exchange-gateway:")
    )
    expect = {
        "etc/exchange-gateway": (0o750, gid),
        "etc/exchange-gateway/peers": (0o750, gid),
        "etc/exchange-gateway/credentials": (0o700, 0),
        "var/lib/exchange-gateway": (0o750, gid),
        "var/backups/exchange-gateway": (0o700, 0),
    }
    for rel, (mode, group) in expect.items():
        st = (sysroot / rel).stat()
        assert stat.S_IMODE(st.st_mode) == mode, rel
        if as_root:
            assert (st.st_uid, st.st_gid) == (0, group), rel


# --- the example config, run the way the unit runs it --------------------------------


def _self_signed_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test hub CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Installed:
    """The example config installed as on a server, under a temporary directory."""

    def __init__(self, base: Path) -> None:
        self.etc = base / "etc/exchange-gateway"
        cred_id, source = credential_source()
        # /etc/exchange-gateway/credentials/%i, under this test's /etc
        rel = Path(source.replace("%i", "gateway")).relative_to(CONFIG_DIR)
        self.secrets = self.etc / rel
        self.creds = base / "run/credentials/exchange-gateway@gateway.service"
        self.state = base / "var/lib/exchange-gateway/gateway"
        self.config = self.etc / "gateway.yaml"
        (self.etc / "peers").mkdir(parents=True)
        self.secrets.mkdir(parents=True, mode=0o700)
        self.ingest_port = _free_port()
        self.admin_port = _free_port()

        cfg = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
        # What differs from a server: the state directory and the listen addresses.
        cfg["node"]["state_dir"] = str(self.state)
        cfg["listen"] = {
            "ingest": f"127.0.0.1:{self.ingest_port}",
            "admin": f"127.0.0.1:{self.admin_port}",
        }
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

        # Secrets, as the operator puts them in credentials/gateway/ ...
        prefix = "${CREDENTIALS_DIRECTORY}/" + cred_id + "_"
        key_path = cfg["node"]["keys"][0]["file"]
        assert key_path.startswith(prefix)
        stem = key_path[len(prefix) :].removesuffix(".key.pem")
        crypto.keygen(self.secrets, stem)
        (self.secrets / f"{stem}.pub.pem").unlink()
        for src in cfg["sources"]:
            for t in src["token_files"]:
                assert t.startswith(prefix)
                tok = self.secrets / t[len(prefix) :]
                fd = os.open(tok, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(32) + "\n")
        # ... and as the service sees them.
        load_credentials(cred_id, self.secrets, self.creds)
        # Public material, as the hub's operator hands it over.
        crypto.keygen(base / "hub-side", "province-hub")
        shutil.copy(
            base / "hub-side/province-hub.pub.pem",
            self.etc / "peers/province-hub.pub.pem",
        )
        _self_signed_ca(self.etc / "peers/province-hub-ca.pem")

    def command(self, key: str) -> list[str]:
        """The unit's command line for ``key``, mapped onto this checkout."""
        (line,) = setting(key)
        argv = []
        for arg in shlex.split(line.replace("%i", "gateway")):
            if arg == f"{INSTALL_DIR}/.venv/bin/python":
                argv.append(sys.executable)
            elif arg.startswith(INSTALL_DIR + "/"):
                argv.append(str(ROOT / arg[len(INSTALL_DIR) + 1 :]))
            elif arg.startswith(CONFIG_DIR + "/"):
                argv.append(str(self.etc / arg[len(CONFIG_DIR) + 1 :]))
            else:
                argv.append(arg)
        return argv

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
        env.pop("NOTIFY_SOCKET", None)
        env.update(
            CREDENTIALS_DIRECTORY=str(self.creds),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
            PYTHONUTF8="1",
        )
        return env


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    return Installed(tmp_path)


def test_example_keeps_secrets_in_credentials() -> None:
    cfg = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    secret_paths = [k["file"] for k in cfg["node"]["keys"]]
    secret_paths += [t for s in cfg.get("sources", []) for t in s["token_files"]]
    secret_paths += [
        d["tls"]["key_file"]
        for d in cfg.get("destinations", [])
        if d.get("tls", {}).get("key_file")
    ]
    assert secret_paths
    cred_id, _ = credential_source()
    for p in secret_paths:
        assert p.startswith("${CREDENTIALS_DIRECTORY}/" + cred_id + "_"), p


def test_exec_start_pre_accepts_the_example(installed: Installed) -> None:
    r = subprocess.run(
        installed.command("ExecStartPre"),
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert ": ok: node xz-gateway" in r.stdout


def test_exec_start_pre_fails_without_credentials(installed: Installed) -> None:
    """A missing credential stops the start with exit 2, naming the YAML path."""
    env = installed.env()
    del env["CREDENTIALS_DIRECTORY"]
    r = subprocess.run(
        installed.command("ExecStartPre"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "node.keys.0.file" in r.stderr
    assert "sources.0.token_files.0" in r.stderr
    assert "Traceback" not in r.stderr


def test_exec_start_runs_and_stops_cleanly_on_sigterm(installed: Installed) -> None:
    proc = subprocess.Popen(
        installed.command("ExecStart"),
        env=installed.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        url = f"http://127.0.0.1:{installed.admin_port}/healthz"
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert (installed.state / "spool.db").exists()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=timespan_s(setting("TimeoutStopSec")[0]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "Traceback" not in out
