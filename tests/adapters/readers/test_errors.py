"""InputRejected / RowError: codes, bilingual messages, locators."""

from __future__ import annotations

import pickle

import pytest

from adapters.readers import CODES, InputRejected, RowError
from adapters.readers.errors import Text, Where, shown
from gateway.errors import GatewayError


def test_input_rejected_is_a_gateway_error_with_a_stable_code() -> None:
    exc = InputRejected.make(
        "E_ENCODING/invalid", Where(offset=12), shown="0xFF", encoding="GBK"
    )
    assert isinstance(exc, GatewayError)
    assert exc.code == "E_ENCODING"  # the "/invalid" suffix only picks the wording
    assert exc.locator == "byte offset 12"
    assert exc.message_en == "byte offset 12: bytes 0xFF are not valid GBK"
    assert exc.message_zh == "字节偏移 12：字节 0xFF 不是有效的 GBK 编码"
    assert str(exc) == "E_ENCODING: byte offset 12: bytes 0xFF are not valid GBK"


def test_input_rejected_survives_pickling_for_worker_processes() -> None:
    exc = InputRejected.make("E_XML_DOCTYPE", Where(line=2, offset=42))
    back = pickle.loads(pickle.dumps(exc))
    assert (back.code, back.locator, back.message_en, back.message_zh) == (
        exc.code,
        exc.locator,
        exc.message_en,
        exc.message_zh,
    )


def test_row_error_carries_line_and_offset() -> None:
    error = RowError.make(
        "E_CSV_RAGGED", Where(row=1, line=3, offset=553), got=23, expected=24
    )
    assert error == RowError(
        "row 1, line 3, byte offset 553",
        "E_CSV_RAGGED",
        "row 1, line 3, byte offset 553: the row has 23 fields, the header has 24",
        "第 1 条记录，第 3 行，字节偏移 553：该行有 23 个字段，表头有 24 个",
        line=3,
        offset=553,
    )
    with pytest.raises(AttributeError):
        error.code = "x"  # type: ignore[misc]


def test_where_renders_every_part_in_both_languages() -> None:
    where = Where(path="/a[1]", row=2, line=3, column=4, offset=5)
    assert where.en() == "/a[1], row 2, line 3, column 4, byte offset 5"
    assert where.zh() == "/a[1]，第 2 条记录，第 3 行，第 4 列，字节偏移 5"
    assert Where().en() == "input"
    assert Where().zh() == "输入"


def test_language_specific_fragments() -> None:
    exc = InputRejected.make("E_EMPTY", Where(offset=0), thing=Text("rows", "数据行"))
    assert exc.message_en.endswith("the input is empty (no rows)")
    assert exc.message_zh.endswith("输入为空（没有数据行）")


def test_codes_are_a_small_stable_set() -> None:
    assert {
        "E_EMPTY",
        "E_TOO_LARGE",
        "E_ENCODING",
        "E_BINARY",
        "E_XML_DOCTYPE",
        "E_XML_MALFORMED",
        "E_XML_DEPTH",
        "E_CSV_RAGGED",
        "E_CSV_HEADER",
        "E_JSON_SYNTAX",
        "E_JSON_DUPLICATE_KEY",
        "E_JSON_DEPTH",
        "E_FW_COUNT",
    } <= CODES
    assert all(code.startswith("E_") and code.isupper() for code in CODES)


def test_shown_is_short_printable_and_quoted() -> None:
    assert shown("a\nb") == "'a\\nb'"
    assert shown("x" * 100).endswith("...'")
    assert shown(b"\xff\xfe") == "0xFF 0xFE"
    assert shown(bytes(20)).endswith(" ...")
