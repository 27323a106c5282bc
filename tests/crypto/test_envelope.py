"""Envelope v1 behaviour: round trips, tampering, wrong keys, limits, fuzzing."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto
from crypto import envelope as envelope_mod
from gateway.errors import EnvelopeInvalid
from tests.conftest import make_key

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def ring(*keys: crypto.PrivateKey) -> crypto.KeyRing:
    return crypto.KeyRing(list(keys))


def peers(*keys: crypto.PrivateKey) -> crypto.PeerTable:
    return crypto.PeerTable([k.public for k in keys])


@pytest.mark.parametrize("compression", crypto.COMPRESSIONS)
def test_round_trip_every_recipient_can_open(compression: str) -> None:
    s, r1, r2 = make_key(), make_key(), make_key()
    payload = b'{"dataset":"SECTION","fields":{}}\n' * 5000
    manifest = [crypto.sm3(b"rec%d" % i).hex() for i in range(3)]
    env, header = crypto.seal_bytes(
        payload,
        s,
        [r1.public, r2.public],
        now=NOW,
        compression=compression,
        content_type="application/x-ndjson",
        manifest=manifest,
        meta={"source": "wuxi"},
    )
    for r in (r1, r2):
        opened, pt = crypto.open_bytes(env, ring(r), peers(s))
        assert pt == payload
        assert opened.sender.id == s.id
        assert opened.recipient.id == r.id
        assert opened.header.manifest == tuple(manifest)
        assert opened.header.meta == {"source": "wuxi"}
        assert opened.header.created == "2026-11-26T09:30:00.000000Z"
    assert header.recipients == (r1.id, r2.id)


def test_stream_and_bytes_forms_are_interchangeable() -> None:
    s, r = make_key(), make_key()
    payload = bytes(range(256)) * 20_000  # 5 MB, several chunks
    out = io.BytesIO()
    sealed = crypto.seal_stream(
        io.BytesIO(payload),
        out,
        s,
        [r.public],
        now=NOW,
        compression="zstd",
        chunk=300_000,
    )
    assert sealed.size == len(out.getvalue())
    _, pt = crypto.open_bytes(out.getvalue(), ring(r), peers(s))
    assert pt == payload
    env, _ = crypto.seal_bytes(payload, s, [r.public], now=NOW)
    sink = io.BytesIO()
    crypto.open_stream(
        io.BytesIO(env),
        sink,
        ring(r),
        peers(s),
        max_size=len(env),
        max_plaintext=len(payload),
    )
    assert sink.getvalue() == payload


def test_empty_payload() -> None:
    s, r = make_key(), make_key()
    env, _ = crypto.seal_bytes(b"", s, [r.public], now=NOW)
    assert crypto.open_bytes(env, ring(r), peers(s))[1] == b""


def _sections(env: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of each part, from the layout in crypto/envelope.py."""
    pos = 6
    (hlen,) = struct.unpack(">I", env[pos : pos + 4])
    out = {"prefix": (0, pos + 4), "header": (pos + 4, pos + 4 + hlen)}
    pos += 4 + hlen
    (count,) = struct.unpack(">H", env[pos : pos + 2])
    start = pos
    pos += 2
    for _ in range(count):
        idlen = env[pos]
        pos += 1 + idlen
        (wl,) = struct.unpack(">H", env[pos : pos + 2])
        pos += 2 + wl
    out["keys"] = (start, pos)
    (ctl,) = struct.unpack(">Q", env[pos : pos + 8])
    out["ct_len"] = (pos, pos + 8)
    pos += 8
    out["ciphertext"] = (pos, pos + ctl)
    pos += ctl
    out["tag"] = (pos, pos + 16)
    pos += 16
    out["signature"] = (pos, len(env))
    return out


def test_every_single_byte_flip_is_rejected() -> None:
    """Flip each byte in turn (header, nonce inside it, wrapped key, ciphertext,
    tag, signature, lengths, magic): every one is rejected, no plaintext out."""
    s, r = make_key(), make_key()
    env, _ = crypto.seal_bytes(
        b"secret record " * 20,
        s,
        [r.public],
        now=NOW,
        manifest=[crypto.sm3(b"a").hex()],
    )
    parts = _sections(env)
    assert set(parts) >= {"header", "keys", "ciphertext", "tag", "signature"}
    for i in range(len(env)):
        bad = bytearray(env)
        bad[i] ^= 0x01
        sink = io.BytesIO()
        with pytest.raises(EnvelopeInvalid):
            crypto.open_stream(
                io.BytesIO(bytes(bad)),
                sink,
                ring(r),
                peers(s),
                max_size=1 << 20,
                max_plaintext=1 << 20,
            )
        assert sink.getvalue() == b"", f"plaintext written after flipping byte {i}"
        with pytest.raises(EnvelopeInvalid):
            crypto.open_bytes(bytes(bad), ring(r), peers(s))


def test_wrong_recipient_and_unknown_sender_are_rejected() -> None:
    s, r, other = make_key(), make_key(), make_key()
    env, _ = crypto.seal_bytes(b"x" * 100, s, [r.public], now=NOW)
    with pytest.raises(EnvelopeInvalid, match="not addressed"):
        crypto.open_bytes(env, ring(other), peers(s))
    with pytest.raises(EnvelopeInvalid, match="unknown sender"):
        crypto.open_bytes(env, ring(r), peers(other))


def test_forged_sender_id_with_another_key_is_rejected() -> None:
    """An attacker re-signs with its own key but claims a known sender id."""
    s, r, mallory = make_key(), make_key(), make_key()
    env, _ = crypto.seal_bytes(b"x" * 100, mallory, [r.public], now=NOW)
    forged = env.replace(mallory.id.encode(), s.id.encode())
    with pytest.raises(EnvelopeInvalid):
        crypto.open_bytes(forged, ring(r), peers(s))


def test_truncation_at_every_length_is_rejected() -> None:
    s, r = make_key(), make_key()
    env, _ = crypto.seal_bytes(b"y" * 64, s, [r.public], now=NOW)
    for n in range(len(env)):
        with pytest.raises(EnvelopeInvalid):
            crypto.open_bytes(env[:n], ring(r), peers(s))
    with pytest.raises(EnvelopeInvalid, match="trailing"):
        crypto.open_bytes(env + b"\0", ring(r), peers(s))


def test_oversized_and_wrong_version_are_rejected() -> None:
    s, r = make_key(), make_key()
    env, _ = crypto.seal_bytes(b"z" * 1000, s, [r.public], now=NOW)
    with pytest.raises(EnvelopeInvalid, match="exceeds the limit"):
        crypto.open_stream(
            io.BytesIO(env),
            io.BytesIO(),
            ring(r),
            peers(s),
            max_size=len(env) - 1,
            max_plaintext=1 << 20,
        )
    v2 = env[:5] + b"\x02" + env[6:]
    with pytest.raises(EnvelopeInvalid, match="version"):
        crypto.open_bytes(v2, ring(r), peers(s))
    with pytest.raises(EnvelopeInvalid, match="magic"):
        crypto.open_bytes(b"PK\x03\x04" + env[4:], ring(r), peers(s))


def test_decompression_bomb_is_bounded() -> None:
    s, r = make_key(), make_key()
    env, _ = crypto.seal_bytes(
        b"\0" * 20_000_000, s, [r.public], now=NOW, compression="zstd"
    )
    assert len(env) < 10_000
    with pytest.raises(EnvelopeInvalid, match="exceeds the limit"):
        crypto.open_stream(
            io.BytesIO(env),
            io.BytesIO(),
            ring(r),
            peers(s),
            max_size=len(env),
            max_plaintext=1_000_000,
        )


def test_non_canonical_header_is_rejected_even_if_signed() -> None:
    """A sender that signs a header with extra spaces is refused: one header, one form."""
    s, r = make_key(), make_key()
    header = envelope_mod._new_header(
        s,
        [r.public],
        content_type="a/b",
        compression="none",
        manifest=(),
        meta=None,
        now=NOW,
        envelope_id=None,
    )
    raw = header.encode().replace(b'"v":1', b'"v": 1')
    with pytest.raises(EnvelopeInvalid, match="canonical"):
        envelope_mod._decode_header(raw)


def test_seal_refuses_bad_parameters() -> None:
    s, r = make_key(), make_key()
    with pytest.raises(Exception, match="compression"):
        crypto.seal_bytes(b"", s, [r.public], now=NOW, compression="lz4")
    with pytest.raises(Exception, match="recipient"):
        crypto.seal_bytes(b"", s, [], now=NOW)
    with pytest.raises(Exception, match="duplicate"):
        crypto.seal_bytes(b"", s, [r.public, r.public], now=NOW)
    with pytest.raises(Exception, match="timezone"):
        crypto.seal_bytes(b"", s, [r.public], now=datetime(2026, 1, 1))  # noqa: DTZ001


KEYS = [make_key() for _ in range(3)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.binary(max_size=5000),
    compression=st.sampled_from(crypto.COMPRESSIONS),
    n_records=st.integers(0, 5),
    meta=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=3),
    content_type=st.sampled_from(["application/x-ndjson", "text/csv; charset=gbk"]),
)
def test_property_round_trip(
    payload: bytes,
    compression: str,
    n_records: int,
    meta: dict[str, str],
    content_type: str,
) -> None:
    s, r1, r2 = KEYS
    manifest = [crypto.sm3(bytes([i])).hex() for i in range(n_records)]
    env, header = crypto.seal_bytes(
        payload,
        s,
        [r1.public, r2.public],
        now=NOW,
        compression=compression,
        manifest=manifest,
        meta=meta,
        content_type=content_type,
    )
    opened, pt = crypto.open_bytes(env, ring(r2), peers(s))
    assert pt == payload
    assert opened.header == header
