"""HTTP forwarder against real in-process servers (plain and TLS): classification."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.models import HttpDestination
from gateway.errors import (
    DeliveryTimeout,
    PermanentDeliveryError,
    ResealRequired,
    TransientDeliveryError,
)
from gateway.forwarders.http import HttpForwarder, retry_after_seconds
from tests.harness import free_port


def dest(url: str, **kw: object) -> HttpDestination:
    base: dict[str, object] = {
        "name": "d",
        "url": url,
        "recipient_keys": ["x.pem"],
        "timeout_s": 2,
        "retry": {"quick_attempts": 2, "initial_s": 0.01, "max_quick_s": 0.02},
    }
    base.update(kw)
    return HttpDestination.model_validate(base)


async def serve(
    handler, ssl_ctx: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/v1/envelopes", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_ctx).start()
    return runner, port


async def test_receipt_comes_back_and_idempotency_key_is_sent() -> None:
    seen: dict[str, str] = {}

    async def ok(request: web.Request) -> web.Response:
        seen.update(request.headers)
        assert await request.read() == b"ENVELOPE"
        return web.Response(
            body=b"RECEIPT", content_type="application/vnd.smenv.receipt+json"
        )

    runner, port = await serve(ok)
    fwd = HttpForwarder(dest(f"http://127.0.0.1:{port}/v1/envelopes"), resolve=str)
    try:
        assert await fwd.send(b"ENVELOPE", envelope_id="e-1") == b"RECEIPT"
        assert seen["Idempotency-Key"] == "e-1"
    finally:
        await fwd.aclose()
        await fwd.aclose()  # idempotent
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "exc", "code"),
    [
        (503, b'{"error":{"code":"E_QUOTA"}}', TransientDeliveryError, "HTTP_503"),
        (429, b"", TransientDeliveryError, "HTTP_429"),
        (500, b"oops", TransientDeliveryError, "HTTP_500"),
        (400, b'{"error":{"code":"E_ENVELOPE"}}', PermanentDeliveryError, "HTTP_400"),
        (
            409,
            b'{"error":{"code":"E_ENVELOPE_CONFLICT"}}',
            PermanentDeliveryError,
            "HTTP_409",
        ),
        (
            422,
            b'{"error":{"code":"E_ENVELOPE_EXPIRED"}}',
            ResealRequired,
            "E_ENVELOPE_EXPIRED",
        ),
    ],
)
async def test_classification(
    status: int, body: bytes, exc: type[Exception], code: str
) -> None:
    calls = 0

    async def answer(_r: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=status, body=body, headers={"Retry-After": "7"})

    runner, port = await serve(answer)
    fwd = HttpForwarder(dest(f"http://127.0.0.1:{port}/v1/envelopes"), resolve=str)
    try:
        with pytest.raises(exc) as info:
            await fwd.send(b"x", envelope_id="e")
        assert info.value.code == code  # type: ignore[attr-defined]
        if isinstance(info.value, TransientDeliveryError):
            assert info.value.retry_after == 7
            assert calls == 2  # the quick retries, then handed back
        else:
            assert calls == 1  # permanent: no retry
    finally:
        await fwd.aclose()
        await runner.cleanup()


async def test_timeout_and_refused_connection_are_transient() -> None:
    async def slow(_r: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    runner, port = await serve(slow)
    fwd = HttpForwarder(
        dest(f"http://127.0.0.1:{port}/v1/envelopes", timeout_s=0.2), resolve=str
    )
    try:
        with pytest.raises(DeliveryTimeout) as info:
            await fwd.send(b"x", envelope_id="e")
        assert isinstance(info.value, TimeoutError)
    finally:
        await fwd.aclose()
        await runner.cleanup()
    closed = HttpForwarder(
        dest(f"http://127.0.0.1:{free_port()}/v1/envelopes"), resolve=str
    )
    with pytest.raises(TransientDeliveryError) as info2:
        await closed.send(b"x", envelope_id="e")
    assert info2.value.code == "E_CONNECT"
    await closed.aclose()


def test_retry_after_forms() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Thu, 26 Nov 2026 12:01:00 GMT", now=now) == 60
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def _ca_and_server_cert(tmp: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "srv.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "srv.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp / "ca.pem", tmp / "srv.pem", tmp / "srv.key"


async def test_tls_with_configured_ca(tmp_path: Path) -> None:
    ca, cert, key = _ca_and_server_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def ok(_r: web.Request) -> web.Response:
        return web.Response(body=b"R")

    runner, port = await serve(ok, ctx)
    url = f"https://127.0.0.1:{port}/v1/envelopes"
    good = HttpForwarder(dest(url, tls={"ca_file": str(ca)}), resolve=str)
    untrusted = HttpForwarder(dest(url), resolve=str)  # system CAs only
    try:
        assert await good.send(b"x", envelope_id="e") == b"R"
        with pytest.raises(TransientDeliveryError):
            await untrusted.send(b"x", envelope_id="e")
    finally:
        await good.aclose()
        await untrusted.aclose()
        await runner.cleanup()
