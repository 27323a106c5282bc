"""sd_notify client against a real AF_UNIX datagram socket (what systemd listens on)."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import lifecycle


class Receiver:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, sock: socket.socket, env: str) -> None:
        self.sock = sock
        self.env = env  # the value of $NOTIFY_SOCKET that reaches it

    def recv(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        """Everything already queued, without waiting."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        return out


@pytest.fixture
def fs_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # A short directory: AF_UNIX paths are limited to 107 bytes, tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(d, "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield Receiver(s, path)
    shutil.rmtree(d)


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    name = f"exchange-gateway-test-{os.getpid()}-{secrets.token_hex(4)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield Receiver(s, "@" + name)


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)


# --- not under systemd ------------------------------------------------------


@pytest.mark.usefixtures("no_systemd")
def test_every_call_is_a_noop_outside_systemd() -> None:
    assert lifecycle.notify("READY=1") is False
    assert lifecycle.ready() is False
    assert lifecycle.stopping() is False
    assert lifecycle.reloading() is False
    assert lifecycle.watchdog_ping() is False
    assert lifecycle.status("idle") is False
    assert lifecycle.watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "relative/socket", "@", "vsock:2:1234"])
def test_unusable_notify_socket_values_are_ignored(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert lifecycle.ready() is False


def test_missing_socket_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert lifecycle.ready() is False


# --- the messages -------------------------------------------------------------


def test_ready_stopping_watchdog_arrive(fs_receiver: Receiver) -> None:
    assert lifecycle.ready() is True
    assert fs_receiver.recv() == "READY=1"
    assert lifecycle.watchdog_ping() is True
    assert fs_receiver.recv() == "WATCHDOG=1"
    assert lifecycle.stopping() is True
    assert fs_receiver.recv() == "STOPPING=1"


def test_abstract_namespace_socket(abstract_receiver: Receiver) -> None:
    assert abstract_receiver.env.startswith("@")
    assert lifecycle.ready() is True
    assert abstract_receiver.recv() == "READY=1"
    assert lifecycle.stopping() is True
    assert abstract_receiver.recv() == "STOPPING=1"


def test_status_is_one_line(fs_receiver: Receiver) -> None:
    assert lifecycle.status("queued 3\n  delivered 10") is True
    assert fs_receiver.recv() == "STATUS=queued 3 delivered 10"


def test_reloading_carries_monotonic_time(fs_receiver: Receiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lifecycle.reloading() is True
    first, second = fs_receiver.recv().split("\n")
    assert first == "RELOADING=1"
    key, _, usec = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(usec) <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_arbitrary_state(fs_receiver: Receiver) -> None:
    assert lifecycle.notify("READY=1\nSTATUS=up") is True
    assert fs_receiver.recv() == "READY=1\nSTATUS=up"


# --- watchdog interval ----------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("500000", "self", 0.5),
        ("30000000", "other", None),
        ("0", None, None),
        ("-5", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid == "self":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    elif pid == "other":
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert lifecycle.watchdog_interval() == expected


# --- watchdog task --------------------------------------------------------------


async def test_watchdog_task_pings_at_half_the_interval(
    fs_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    task = lifecycle.watchdog_task()
    await asyncio.sleep(0.35)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    got = fs_receiver.pending()
    assert set(got) == {"WATCHDOG=1"}
    assert 3 <= len(got) <= 5  # at t = 0, 0.1, 0.2, 0.3 s


async def test_watchdog_task_without_watchdog_ends_at_once(
    fs_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    task = lifecycle.watchdog_task()
    await asyncio.wait_for(task, timeout=1)
    assert fs_receiver.pending() == []


async def test_blocked_loop_stops_the_pings(fs_receiver: Receiver) -> None:
    """What the watchdog is for: a stuck event loop goes silent."""
    arrivals: list[float] = []
    done = threading.Event()

    def listen() -> None:
        fs_receiver.sock.settimeout(0.05)
        while not done.is_set():
            try:
                if fs_receiver.sock.recv(64) == b"WATCHDOG=1":
                    arrivals.append(time.monotonic())
            except TimeoutError:
                continue

    t = threading.Thread(target=listen)
    t.start()
    try:
        task = lifecycle.watchdog_task(interval_s=0.1)  # ping every 0.05 s
        await asyncio.sleep(0.2)
        time.sleep(0.5)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        done.set()
        t.join()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(arrivals) >= 6
    assert max(gaps) >= 0.45  # silent while blocked
    assert sorted(gaps)[len(gaps) // 2] < 0.2  # otherwise steady
