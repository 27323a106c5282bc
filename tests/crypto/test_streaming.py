"""Sealing and opening a 2 GB file keeps peak RSS under 150 MB (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import crypto
from tests.conftest import ROOT

LIMIT_KB = 150 * 1024
SIZE = int(os.environ.get("GATEWAY_STREAM_TEST_BYTES", str(2 * 1024**3)))

# Runs the CLI in-process and reports its own peak RSS in KiB. VmHWM, not
# ru_maxrss: Linux carries the parent's high-water mark across fork+exec into
# ru_maxrss, so a child of a large pytest process would report the parent's.
RUNNER = """
import sys
sys.path.insert(0, sys.argv[1])
from gateway.cli import main
rc = main(sys.argv[2:])
with open("/proc/self/status") as f:
    print(next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")))
sys.exit(rc)
"""


def peak_rss(*args: str, cwd: Path) -> int:
    r = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_gigabytes_stream_with_bounded_memory(tmp_path: Path) -> None:
    crypto.keygen(tmp_path, "a")
    crypto.keygen(tmp_path, "b")
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        block = os.urandom(1 << 16) * 16
        for _ in range(SIZE // len(block)):
            f.write(block)
    size = big.stat().st_size
    rss_seal = peak_rss(
        "seal",
        "--sender-key",
        "a.key.pem",
        "--to",
        "b.pub.pem",
        "--in",
        "big.bin",
        "--out",
        "env.bin",
        cwd=tmp_path,
    )
    big.unlink()
    rss_open = peak_rss(
        "open",
        "--key",
        "b.key.pem",
        "--from",
        "a.pub.pem",
        "--in",
        "env.bin",
        "--out",
        "out.bin",
        cwd=tmp_path,
    )
    out = tmp_path / "out.bin"
    assert out.stat().st_size == size
    print(f"peak RSS: seal {rss_seal} KiB, open {rss_open} KiB for {size} bytes")
    assert rss_seal < LIMIT_KB
    assert rss_open < LIMIT_KB
