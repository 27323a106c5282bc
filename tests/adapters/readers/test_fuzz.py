"""Fuzzing: whatever the bytes, a reader yields items or RowError values, or raises
InputRejected, and nothing else; reading in small pieces changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.readers import (
    CODES,
    CsvOptions,
    FixedField,
    FixedWidthOptions,
    InputRejected,
    JsonOptions,
    RecordLayout,
    RowError,
    Source,
    XmlItem,
    XmlOptions,
    read_csv,
    read_fixed_width,
    read_json,
    read_jsonl,
    read_xml,
)
from tests.adapters.readers.helpers import Trickle

FUZZ = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

FIXED = FixedWidthOptions(
    encoding="gbk",
    code_length=1,
    layouts=(
        RecordLayout(
            code="D",
            fields=(
                FixedField(name="a", start=1, length=3),
                FixedField(name="b", start=4, length=4),
            ),
        ),
    ),
    header=RecordLayout(
        code="H", fields=(FixedField(name="n", start=1, length=2),), count_field="n"
    ),
    trailer=RecordLayout(
        code="T", fields=(FixedField(name="n", start=1, length=2),), count_field="n"
    ),
)

XML = XmlOptions(max_depth=8, max_input_bytes=1 << 20)
XML_TAGS = XmlOptions(item_depth=None, item_tags=frozenset({"{*}a"}))
CSV = CsvOptions(max_input_bytes=1 << 20)
CSV_PLAIN = CsvOptions(delimiter="|", quotechar=None, header_rows=2, encoding="gbk")
JSON = JsonOptions(max_depth=5, require_object=False)
JSONL = JsonOptions(max_depth=5, max_item_bytes=64)

READERS: dict[str, Callable[[Source], Iterator[object]]] = {
    "xml": lambda s: iter(read_xml(s, XML)),
    "xml_tags": lambda s: iter(read_xml(s, XML_TAGS)),
    "csv": lambda s: iter(read_csv(s, CSV)),
    "csv_plain": lambda s: iter(read_csv(s, CSV_PLAIN)),
    "json": lambda s: iter(read_json(s, JSON)),
    "jsonl": lambda s: iter(read_jsonl(s, JSONL)),
    "fixed": lambda s: iter(read_fixed_width(s, FIXED)),
}


def outcome(name: str, source: Source) -> tuple[str, list[object]]:
    """Run one reader to the end; anything but the three outcomes fails the test."""
    seen: list[object] = []
    rejected: InputRejected | None = None
    try:
        for item in READERS[name](source):
            assert not isinstance(item, BaseException)
            if isinstance(item, RowError):
                assert item.code
                assert item.locator
                assert item.message_zh
                seen.append(item)
            elif isinstance(item, XmlItem):
                seen.append((item.locator, etree.tostring(item.element)))
            else:
                seen.append(item)
    except InputRejected as exc:
        rejected = exc
    if rejected is None:
        return "ok", seen
    assert rejected.code in CODES
    assert rejected.locator
    assert rejected.message_en
    assert rejected.message_zh
    return rejected.code, seen


def agree(small: tuple[str, list[object]], whole: tuple[str, list[object]]) -> None:
    """Reading in small pieces changes nothing for a good input, and never changes
    *whether* an input is rejected.  Which problem is met first may differ: a
    64 KiB chunk is decoded before it is parsed, so a bad byte late in a chunk can
    be found before a syntax error early in it.  What was yielded before the
    rejection is a prefix of the true sequence either way."""
    if "ok" in (small[0], whole[0]):
        assert small == whole
        return
    short, long = sorted((small[1], whole[1]), key=len)
    assert long[: len(short)] == short


def pieces(*parts: bytes) -> st.SearchStrategy[bytes]:
    """Byte strings assembled from format-shaped pieces and random bytes."""
    return st.lists(
        st.one_of(st.sampled_from(parts), st.binary(max_size=3)), max_size=40
    ).map(b"".join)


XML_PIECES = pieces(
    b"<",
    b">",
    b"</",
    b"/>",
    b"a",
    b"b:a",
    b' x="1"',
    b" xmlns='u'",
    b"=",
    b'"',
    b"&amp;",
    b"&#10;",
    b"&x;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"<?p?>",
    b"<!DOCTYPE a>",
    b'<?xml version="1.0" encoding="GB18030"?>',
    b'<?xml version="1.0" encoding="GBK"?>',
    b"\xef\xbb\xbf",
    "中".encode("gb18030"),
    "中".encode(),
    b"\xff",
    b"\x00",
    b" ",
    b"\r\n",
    b"<a>",
    b"</a>",
)
CSV_PIECES = pieces(
    b",",
    b'"',
    b'""',
    b"\r\n",
    b"\n",
    b"|",
    b"\\",
    b"a",
    "亅".encode("gbk"),
    "中".encode(),
    b"\xef\xbb\xbf",
    b"\x81",
    b" ",
)
JSON_PIECES = pieces(
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"k"',
    b'"v"',
    b"1",
    b"-2.5e3",
    b"1e999999",
    b"true",
    b"null",
    b"NaN",
    b'"\\ud800"',
    b'"\\n"',
    b"\n",
    b"\r\n",
    b" ",
    "中".encode(),
    b"\xef\xbb\xbf",
)
FIXED_PIECES = pieces(
    b"H01",
    b"H00",
    b"T01",
    b"T00",
    b"D",
    b"abc",
    b"1234",
    b"\n",
    b"\r\n",
    "中文".encode("gbk"),
    b"\x81",
    b" ",
)


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    for name in READERS:
        outcome(name, data)


@FUZZ
@given(data=XML_PIECES, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=3))
def test_xml_shaped_bytes(data: bytes, sizes: list[int]) -> None:
    for name in ("xml", "xml_tags"):
        agree(outcome(name, Trickle(data, sizes)), outcome(name, data))


@FUZZ
@given(data=CSV_PIECES, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=3))
def test_csv_shaped_bytes(data: bytes, sizes: list[int]) -> None:
    for name in ("csv", "csv_plain"):
        agree(outcome(name, Trickle(data, sizes)), outcome(name, data))


@FUZZ
@given(data=JSON_PIECES, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=3))
def test_json_shaped_bytes(data: bytes, sizes: list[int]) -> None:
    for name in ("json", "jsonl"):
        agree(outcome(name, Trickle(data, sizes)), outcome(name, data))


@FUZZ
@given(data=FIXED_PIECES, sizes=st.lists(st.integers(1, 9), min_size=1, max_size=3))
def test_fixed_width_shaped_bytes(data: bytes, sizes: list[int]) -> None:
    agree(outcome("fixed", Trickle(data, sizes)), outcome("fixed", data))
