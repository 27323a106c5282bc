"""A real OpenSSH sshd on loopback for the SFTP tests.

Design (docs/operations.md, "Testing SFTP"): the tests log in as the *current*
user with a test-only ``AuthorizedKeysFile`` in the test's temporary
directory, so nothing outside that directory is created or changed: no system
user, no ``~/.ssh`` edits, no system sshd. The daemon gets its own host key,
config, pid file and port; ``StrictModes no`` because pytest's temporary
directories are not owned the way sshd wants for home directories;
``UsePAM no`` so no PAM session is opened. One exception when run as root:
OpenSSH insists on its privilege-separation directory ``/run/sshd``; if it is
missing it is created for the run and removed afterwards.

Password authentication (``sshd(root, password_user=True)``) cannot use the
current user: with ``UsePAM no`` sshd checks the password in /etc/shadow, and
we must not set a password on the account running the tests. So, as root
only, the fixture creates a throw-away system user ``gwsftp<hex>`` (shell
nologin, home a fresh folder under /tmp that it owns, random password set with
``chpasswd``) and deletes it, and its folder, afterwards. Not root: the test
skips, or fails in CI (the CI runner is root: it installs packages).

In CI (``CI=true``) a missing sshd fails the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool
from tests.harness import free_port

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")


def find_sshd() -> str:
    for c in SSHD_CANDIDATES:
        if Path(c).is_file():
            return c
    return require_tool("sshd")


@dataclass
class PasswordUser:
    """A temporary system user that logs in with a password (as root only)."""

    name: str
    password: str
    password_file: Path  # mode 0600, what a config's password_file names
    home: Path  # owned by the user: put its remote folders here


@dataclass
class Sshd:
    root: Path
    port: int
    user: str
    known_hosts: Path
    key_file: Path
    proc: subprocess.Popen[bytes]
    log: Path
    password_user: PasswordUser | None = None

    def password_yaml(self, indent: str) -> str:
        """Like ``connection_yaml``, logging in as the password user."""
        pw = self.password_user
        assert pw is not None, "started without password_user=True"
        return (
            f"{indent}host: 127.0.0.1\n"
            f"{indent}port: {self.port}\n"
            f"{indent}user: {pw.name}\n"
            f"{indent}known_hosts: {self.known_hosts}\n"
            f"{indent}password_file: {pw.password_file}\n"
            f"{indent}connect_timeout_s: 5\n"
            f"{indent}timeout_s: 10\n"
        )

    def connection_yaml(self, indent: str) -> str:
        """The connection part of an SFTP transport / destination block."""
        return (
            f"{indent}host: 127.0.0.1\n"
            f"{indent}port: {self.port}\n"
            f"{indent}user: {self.user}\n"
            f"{indent}known_hosts: {self.known_hosts}\n"
            f"{indent}key_file: {self.key_file}\n"
            f"{indent}connect_timeout_s: 5\n"
            f"{indent}timeout_s: 10\n"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {log.read_text()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as s,
        ):
            if s.recv(4).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise TimeoutError(f"sshd on port {port}: {log.read_text()}")


@contextlib.contextmanager
def _password_user(root: Path) -> Iterator[PasswordUser]:
    if os.geteuid() != 0:
        why = "password authentication needs root (a temporary user with a password)"
        if IN_CI:
            pytest.fail(f"{why}; CI runs as root")
        pytest.skip(why)
    useradd, chpasswd, userdel = (
        require_tool(t) for t in ("useradd", "chpasswd", "userdel")
    )
    name = f"gwsftp{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    # /tmp, not the pytest folder: pytest's base folder is 0700, root only.
    home = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    subprocess.run(
        [
            useradd,
            *("--system", "--user-group", "--no-create-home"),
            *("--home-dir", str(home), "--shell", "/usr/sbin/nologin", name),
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [chpasswd],
            input=f"{name}:{password}\n".encode(),
            check=True,
            capture_output=True,
        )
        shutil.chown(home, name, name)
        pw_file = root / "password"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
        yield PasswordUser(name, password, pw_file, home)
    finally:
        subprocess.run([userdel, name], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def sshd(root: Path, *, password_user: bool = False) -> Iterator[Sshd]:
    binary = find_sshd()
    require_tool("ssh-keygen")
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        pw = stack.enter_context(_password_user(root)) if password_user else None
        with _sshd(binary, root, pw) as server:
            yield server


@contextlib.contextmanager
def _sshd(binary: str, root: Path, pw: PasswordUser | None) -> Iterator[Sshd]:
    host_key = root / "ssh_host_ed25519_key"
    client_key = root / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    auth = root / "authorized_keys"
    auth.write_text((root / "client_ed25519.pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    user = os.environ.get("USER") or _whoami()
    cfg = root / "sshd_config"
    cfg.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {auth}",
                "StrictModes no",
                "UsePAM no",
                # Only the temporary user (if any) may use a password.
                f"PasswordAuthentication {'yes' if pw else 'no'}",
                "PermitEmptyPasswords no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}" + (f" {pw.name}" if pw else ""),
                "Subsystem sftp internal-sftp",
                "MaxStartups 50:30:100",
                "MaxSessions 50",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    known = root / "known_hosts"
    pub = (root / "ssh_host_ed25519_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    made_privsep = False
    if os.geteuid() == 0 and not PRIVSEP_DIR.exists():
        PRIVSEP_DIR.mkdir(mode=0o755)
        made_privsep = True
    log = root / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
        )
    server = Sshd(root, port, user, known, client_key, proc, log, pw)
    try:
        _wait_port(port, proc, log)
        yield server
    finally:
        server.stop()
        if made_privsep:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)


def _whoami() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
