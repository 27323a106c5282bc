"""Crypto benchmark: our SM2/SM3/SM4 and seal/open beside OpenSSL in the same run.

Usage: ``make bench`` or ``python bench/crypto_bench.py [--seconds S]``.
References (measured now, on this machine):
  * SM2 sign/verify: ``openssl speed sm2``
  * SM2 encrypt/decrypt: bench/c/sm2_encdec.c (same EVP calls, in C), if cc is present
  * SM3: ``openssl speed -evp sm3`` at the same block size
  * SM4: ``openssl speed -evp sm4-ctr`` (the OpenSSL 3.0 CLI has no SM4-GCM; CTR is
    GCM's bulk cipher, so the ratio also shows what GHASH costs)
Seal/open are shown beside the SM4 reference, since SM4 is their floor.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import crypto  # noqa: E402
from crypto import _primitives  # noqa: E402

MB = 1024 * 1024


def rate(
    fn: Callable[[], object],
    seconds: float,
    *,
    clock: Callable[[], float] | None = None,
) -> float:
    """Calls per second of ``clock`` (default: this thread's CPU time).

    ``openssl speed`` counts user CPU time by default (not wall time), so the
    primitives are compared per CPU-second: robust when other work shares the
    cores. Seal/open, which use a second thread, are timed on the wall clock.
    """
    tick = clock or time.thread_time
    fn()
    n, t0, w0 = 0, tick(), time.perf_counter()
    while time.perf_counter() - w0 < seconds:
        fn()
        n += 1
    return n / max(tick() - t0, 1e-9)


def wall(fn: Callable[[], object], seconds: float) -> float:
    return rate(fn, seconds, clock=time.perf_counter)


def openssl_speed(args: list[str], seconds: float) -> str:
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(max(1, round(seconds))), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def ossl_sm2(seconds: float) -> tuple[float, float]:
    out = openssl_speed(["sm2"], seconds)
    m = re.search(r"SM2 \(CurveSM2\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
    assert m, out
    return float(m.group(1)), float(m.group(2))


def ossl_bulk(alg: str, block: int, seconds: float) -> float:
    """MB/s from `openssl speed -evp ALG -bytes BLOCK` (output is in kB/s of 1000 B)."""
    out = openssl_speed(["-bytes", str(block), "-evp", alg], seconds)
    m = re.search(rf"^{alg}\s+([\d.]+)k", out, re.M | re.I)
    assert m, out
    return float(m.group(1)) * 1000 / MB


def c_encdec(seconds: float) -> tuple[float, float] | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "sm2_encdec"
        r = subprocess.run(
            [cc, "-O2", "-o", str(exe), str(ROOT / "bench/c/sm2_encdec.c"), "-lcrypto"],
            capture_output=True,
            check=False,
        )
        if r.returncode != 0:
            return None
        out = subprocess.run(
            [str(exe), str(seconds)], capture_output=True, text=True, check=True
        ).stdout.split()
    return float(out[0]), float(out[1])


def row(name: str, ours: float, ref: float | None, unit: str) -> str:
    ref_s = f"{ref:12.1f}" if ref else "         n/a"
    ratio = f"{ours / ref:6.2f}" if ref else "   n/a"
    return f"| {name:<34} | {ours:12.1f} | {ref_s} | {ratio} | {unit} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.5)
    secs = ap.parse_args().seconds
    b = _primitives.select_backend("auto")
    now = datetime.now(UTC)
    k = b.generate()
    me = crypto.PrivateKey(key=k, id=crypto.key_id(k.spki_der()))
    peer_k = b.generate()
    peer = crypto.PrivateKey(key=peer_k, id=crypto.key_id(peer_k.spki_der()))
    msg = os.urandom(512)
    sig = me.sign(msg)
    cek = os.urandom(16)
    wrapped = me.public.wrap(cek)

    print(
        f"# crypto_bench  {now:%Y-%m-%d %H:%M} UTC  backend: {b.describe()}  "
        f"cryptography's OpenSSL: {_primitives_openssl()}  cores: {os.cpu_count()}"
    )
    print(
        "| operation                          |         ours |      openssl | ratio | unit |"
    )
    print("|---|---:|---:|---:|---|")
    o_sign, o_verify = ossl_sm2(secs)
    print(
        row(
            "SM2 sign (512 B, with Z)", rate(lambda: me.sign(msg), secs), o_sign, "op/s"
        )
    )
    print(
        row(
            "SM2 verify",
            rate(lambda: me.public.verify(msg, sig), secs),
            o_verify,
            "op/s",
        )
    )
    encdec = c_encdec(secs)
    print(
        row(
            "SM2 encrypt 16 B key",
            rate(lambda: me.public.wrap(cek), secs),
            encdec[0] if encdec else None,
            "op/s",
        )
    )
    print(
        row(
            "SM2 decrypt 16 B key",
            rate(lambda: me.unwrap(wrapped), secs),
            encdec[1] if encdec else None,
            "op/s",
        )
    )
    for block in (16 * 1024, MB):
        data = os.urandom(block)
        sm3 = rate(functools.partial(crypto.sm3, data), secs) * block / MB
        print(
            row(
                f"SM3 {block // 1024} KiB blocks",
                sm3,
                ossl_bulk("sm3", block, secs),
                "MB/s",
            )
        )
        gcm_key, nonce = os.urandom(16), os.urandom(12)

        def gcm(d: bytes = data, k: bytes = gcm_key, n: bytes = nonce) -> bytes:
            g = _primitives.Gcm(k, n, b"")
            return g.update(d) + g.finalize()

        print(
            row(
                f"SM4-GCM {block // 1024} KiB (ref SM4-CTR)",
                rate(gcm, secs) * block / MB,
                ossl_bulk("sm4-ctr", block, secs),
                "MB/s",
            )
        )
    ring, peers = crypto.KeyRing([peer]), crypto.PeerTable([me.public])
    ref_ctr = ossl_bulk("sm4-ctr", MB, secs)
    for size in (1024, 64 * 1024, MB, 16 * MB):
        payload = os.urandom(size)
        env, _ = crypto.seal_bytes(payload, me, [peer.public], now=now)
        seal = (
            wall(
                functools.partial(
                    crypto.seal_bytes, payload, me, [peer.public], now=now
                ),
                secs,
            )
            * size
            / MB
        )
        opened = (
            wall(functools.partial(crypto.open_bytes, env, ring, peers), secs)
            * size
            / MB
        )
        label = f"{size // 1024} KiB" if size < MB else f"{size // MB} MiB"
        print(row(f"seal {label} (ref SM4-CTR 1 MiB)", seal, ref_ctr, "MB/s"))
        print(row(f"open {label} (ref SM4-CTR 1 MiB)", opened, ref_ctr, "MB/s"))
    # A hub opens many envelopes at once; everything here releases the GIL.
    payload = os.urandom(MB)
    env, _ = crypto.seal_bytes(payload, me, [peer.public], now=now)
    for threads in (2,):
        with ThreadPoolExecutor(threads) as pool:

            def batch(e: bytes = env) -> None:
                list(pool.map(lambda _i: crypto.open_bytes(e, ring, peers), range(8)))

            agg = wall(batch, secs) * 8 * MB / MB
            print(
                row(f"open 1 MiB, {threads} threads, aggregate", agg, ref_ctr, "MB/s")
            )

            def sbatch(p: bytes = payload) -> None:
                list(
                    pool.map(
                        lambda _i: crypto.seal_bytes(p, me, [peer.public], now=now),
                        range(8),
                    )
                )

            agg = wall(sbatch, secs) * 8 * MB / MB
            print(
                row(f"seal 1 MiB, {threads} threads, aggregate", agg, ref_ctr, "MB/s")
            )
    return 0


def _primitives_openssl() -> str:
    from cryptography.hazmat.backends.openssl import backend as ossl

    return str(ossl.openssl_version_text())


if __name__ == "__main__":
    sys.exit(main())
