"""The few DER structures SM2 needs: strict, minimal, no general ASN.1.

Used to build SM2 keys from raw numbers (vectors, the fallback backend) and to
read the GM/T 0009 SM2Cipher and SM2 signature structures. Parsing rejects
indefinite lengths, non-minimal lengths, trailing bytes and negative integers.
"""

from __future__ import annotations

# id-ecPublicKey (RFC 5480) and the SM2 curve (GM/T 0006: 1.2.156.10197.1.301).
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"

_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_OID = 0x06
_SEQUENCE = 0x30


class DerError(ValueError):
    """Bytes that are not the DER structure expected."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def integer(n: int) -> bytes:
    if n < 0:
        raise DerError("negative integers are not used here")
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
    return tlv(_INTEGER, body)


def octet_string(b: bytes) -> bytes:
    return tlv(_OCTET_STRING, b)


def bit_string(b: bytes) -> bytes:
    return tlv(_BIT_STRING, b"\x00" + b)


def sequence(*parts: bytes) -> bytes:
    return tlv(_SEQUENCE, b"".join(parts))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(_OID, bytes(out))


def read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one TLV at ``pos``: (tag, value, next position)."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        n = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        n = int.from_bytes(data[pos : pos + count], "big")
        if n < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length")
        pos += count
    if pos + n > len(data):
        raise DerError("truncated")
    return tag, data[pos : pos + n], pos + n


def read_sequence(data: bytes) -> list[tuple[int, bytes]]:
    """Parse ``data`` as exactly one SEQUENCE; return its children."""
    tag, body, end = read_tlv(data, 0)
    if tag != _SEQUENCE or end != len(data):
        raise DerError("not a single SEQUENCE")
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body):
        t, v, pos = read_tlv(body, pos)
        items.append((t, v))
    return items


def read_uint(tag: int, value: bytes) -> int:
    if tag != _INTEGER or not value:
        raise DerError("not an INTEGER")
    if value[0] & 0x80:
        raise DerError("negative INTEGER")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(value, "big")


def signature(r: int, s: int) -> bytes:
    """SM2 signature, GM/T 0009: SEQUENCE { r INTEGER, s INTEGER }."""
    return sequence(integer(r), integer(s))


def parse_signature(der: bytes) -> tuple[int, int]:
    items = read_sequence(der)
    if len(items) != 2:
        raise DerError("signature must have two INTEGERs")
    return read_uint(*items[0]), read_uint(*items[1])


def sm2_cipher(x: int, y: int, c3: bytes, c2: bytes) -> bytes:
    """GM/T 0009 SM2Cipher: SEQUENCE { x INTEGER, y INTEGER, HASH OCTET STRING, C2 }."""
    return sequence(integer(x), integer(y), octet_string(c3), octet_string(c2))


def parse_sm2_cipher(der: bytes) -> tuple[int, int, bytes, bytes]:
    items = read_sequence(der)
    if len(items) != 4 or items[2][0] != _OCTET_STRING or items[3][0] != _OCTET_STRING:
        raise DerError("not an SM2Cipher")
    if len(items[2][1]) != 32:
        raise DerError("SM2Cipher hash must be 32 bytes")
    return read_uint(*items[0]), read_uint(*items[1]), items[2][1], items[3][1]


def _algorithm() -> bytes:
    return sequence(oid(OID_EC_PUBLIC_KEY), oid(OID_SM2))


def spki(x: int, y: int) -> bytes:
    """SubjectPublicKeyInfo for an SM2 point (uncompressed)."""
    point = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    return sequence(_algorithm(), bit_string(point))


def pkcs8(d: int, x: int, y: int) -> bytes:
    """PKCS#8 PrivateKeyInfo wrapping an RFC 5915 ECPrivateKey on the SM2 curve."""
    point = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
    ec_private = sequence(
        integer(1),
        octet_string(d.to_bytes(32, "big")),
        tlv(0xA1, bit_string(point)),
    )
    return sequence(integer(0), _algorithm(), octet_string(ec_private))


def _check_algorithm(value: bytes) -> None:
    if value != _algorithm()[2:]:
        raise DerError("not an SM2 key")


def parse_spki(der: bytes) -> bytes:
    """Return the 64-byte raw public point (x ‖ y) of an SM2 SPKI."""
    items = read_sequence(der)
    if len(items) != 2 or items[0][0] != _SEQUENCE or items[1][0] != _BIT_STRING:
        raise DerError("not a SubjectPublicKeyInfo")
    _check_algorithm(items[0][1])
    bits = items[1][1]
    if len(bits) != 66 or bits[:2] != b"\x00\x04":
        raise DerError("public point must be uncompressed")
    return bits[2:]


def parse_pkcs8(der: bytes) -> bytes:
    """Return the 32-byte private scalar of an SM2 PKCS#8 PrivateKeyInfo."""
    items = read_sequence(der)
    if (
        len(items) < 3
        or items[0] != (_INTEGER, b"\x00")
        or items[2][0] != _OCTET_STRING
    ):
        raise DerError("not a PKCS#8 PrivateKeyInfo")
    _check_algorithm(items[1][1])
    inner = read_sequence(items[2][1])
    if (
        len(inner) < 2
        or inner[0] != (_INTEGER, b"\x01")
        or inner[1][0] != _OCTET_STRING
    ):
        raise DerError("not an ECPrivateKey")
    scalar = inner[1][1]
    if len(scalar) > 32:
        raise DerError("private scalar too long")
    return scalar.rjust(32, b"\x00")
