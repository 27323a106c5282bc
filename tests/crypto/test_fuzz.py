"""Fuzzing the envelope and receipt parsers: only the documented errors, ever.

Runs a few hundred examples in the normal suite; run longer with
``FUZZ_EXAMPLES=100000 make fuzz`` (docs/envelope.md).
"""

from __future__ import annotations

import contextlib
import io
import os
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crypto
from crypto import envelope as envelope_mod
from gateway.errors import EnvelopeInvalid, ReceiptInvalid
from tests.conftest import make_key

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "400"))
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
SENDER, ME = make_key(), make_key()
RING = crypto.KeyRing([ME])
PEERS = crypto.PeerTable([SENDER.public])
SAMPLE, _ = crypto.seal_bytes(
    b"fuzz me " * 40,
    SENDER,
    [ME.public],
    now=NOW,
    compression="gzip",
    manifest=[crypto.sm3(b"r").hex()],
)
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SAMPLE)), st.binary(max_size=8)), max_size=4
    ),
    cut=st.integers(0, len(SAMPLE)),
)
def test_mutated_envelopes(edits: list[tuple[int, bytes]], cut: int) -> None:
    data = bytearray(SAMPLE)
    for pos, junk in edits:
        data[pos : pos + len(junk)] = junk
    data = data[: max(cut, len(data) // 2)]
    with contextlib.suppress(EnvelopeInvalid):
        crypto.open_bytes(bytes(data), RING, PEERS)


@FUZZ
@given(st.binary(max_size=800))
def test_random_bytes_after_magic(data: bytes) -> None:
    with contextlib.suppress(EnvelopeInvalid):
        envelope_mod.parse(
            io.BytesIO(envelope_mod.MAGIC + b"\x01" + data), max_size=1 << 20
        )


@FUZZ
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(st.text(max_size=12), c, max_size=6)
        ),
        max_leaves=30,
    )
)
def test_random_json_headers(obj: object) -> None:
    raw = crypto.canonical_json(obj)
    with contextlib.suppress(EnvelopeInvalid):
        envelope_mod._decode_header(raw)


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_random_receipts(raw: bytes) -> None:
    with contextlib.suppress(ReceiptInvalid):
        crypto.check_receipt(
            raw,
            receivers=[ME.public],
            envelope_id="x",
            envelope_sm3="0" * 64,
            manifest=[],
        )
