"""JSON and JSON Lines readers: exact numbers, duplicate keys, depth, streaming."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.readers import (
    InputRejected,
    JsonItem,
    JsonOptions,
    RowError,
    read_json,
    read_jsonl,
)
from tests.adapters.readers.helpers import Trickle, bilingual

ANY = JsonOptions(require_object=False)


def lines(data: bytes, options: JsonOptions | None = None) -> list[JsonItem | RowError]:
    return list(read_jsonl(data, options))


def rejected_doc(data: bytes, options: JsonOptions | None = None) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        list(read_json(data, options))
    bilingual(info.value)
    return info.value


def one_error(data: bytes, options: JsonOptions | None = None) -> RowError:
    (error,) = [i for i in lines(data, options) if isinstance(i, RowError)]
    bilingual(error)
    return error


# --- numbers and values ------------------------------------------------------------


def test_numbers_stay_exact_decimals() -> None:
    data = b'{"ysje":91.3624,"cjsj":1793841120000,"f":1e-7,"big":123456789012345678901234567890,"neg":-0.10}\n'
    (item,) = lines(data)
    assert isinstance(item, JsonItem)
    assert item.value == {
        "ysje": Decimal("91.3624"),
        "cjsj": Decimal("1793841120000"),
        "f": Decimal("1E-7"),
        "big": Decimal("123456789012345678901234567890"),
        "neg": Decimal("-0.10"),
    }
    assert str(item.value["neg"]) == "-0.10"  # type: ignore[index]


def test_strings_booleans_null_and_nesting() -> None:
    data = '{"s":"含\\n换行","t":true,"n":null,"a":[{"x":"\\ud83d\\ude00"}]}'.encode()
    (item,) = lines(data)
    assert isinstance(item, JsonItem)
    assert item.value == {"s": "含\n换行", "t": True, "n": None, "a": [{"x": "😀"}]}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    error = one_error(b'{"x":%s}' % constant.encode())
    assert error.code == "E_JSON_SYNTAX"


def test_number_limits() -> None:
    assert one_error(b'{"x":' + b"1" * 101 + b"}").code == "E_JSON_NUMBER"
    assert one_error(b'{"x":1e999999999999999999999}').code == "E_JSON_NUMBER"
    options = JsonOptions(max_number_chars=5)
    assert one_error(b'{"x":123456}', options).code == "E_JSON_NUMBER"


def test_duplicate_keys_are_refused_at_any_depth() -> None:
    assert one_error(b'{"a":1,"a":2}').code == "E_JSON_DUPLICATE_KEY"
    error = one_error(b'{"a":[{"b":1,"c":2,"b":3}]}')
    assert error.code == "E_JSON_DUPLICATE_KEY"
    assert "'b'" in error.message_en


def test_lone_surrogates_are_refused() -> None:
    assert one_error(b'{"a":"\\ud800"}').code == "E_JSON_STRING"
    assert one_error(b'{"\\udfff":1}').code == "E_JSON_STRING"


def test_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        return b'{"a":' * depth + b"1" + b"}" * depth

    (ok,) = lines(nested(64))
    assert isinstance(ok, JsonItem)
    assert one_error(nested(65)).code == "E_JSON_DEPTH"
    assert one_error(b"[" * 10_000 + b"]" * 10_000, ANY).code == "E_JSON_DEPTH"
    assert one_error(nested(4), JsonOptions(max_depth=3)).code == "E_JSON_DEPTH"


def test_objects_are_required_unless_told_otherwise() -> None:
    error = one_error(b"[1,2]\n")
    assert (error.code, error.message_en) == (
        "E_JSON_NOT_OBJECT",
        "line 1, byte offset 0: the value is an array, an object is required",
    )
    assert [i.value for i in lines(b'1\n"x"\n[true]\nnull\n', ANY)] == [  # type: ignore[union-attr]
        Decimal(1),
        "x",
        [True],
        None,
    ]


# --- JSON Lines --------------------------------------------------------------------


def test_jsonl_lines_offsets_crlf_and_blank_lines() -> None:
    data = b'{"a":1}\r\n\r\n  \n{"a":2}\r\n{"a":3}'
    got = lines(data)
    assert [(i.line, i.offset, i.pointer) for i in got] == [  # type: ignore[union-attr]
        (1, 0, ""),
        (4, 14, ""),
        (5, 23, ""),
    ]
    assert [i.locator for i in got] == [
        "line 1, byte offset 0",
        "line 4, byte offset 14",
        "line 5, byte offset 23",
    ]


def test_a_bad_line_is_a_row_error_and_reading_goes_on() -> None:
    data = b'{"a":1}\n{"a":\n{"a":3}\n'
    got = lines(data)
    assert isinstance(got[1], RowError)
    assert got[1].code == "E_JSON_SYNTAX"
    assert got[1].locator == "line 2, column 6, byte offset 13"
    assert [i.value for i in got if isinstance(i, JsonItem)] == [
        {"a": Decimal(1)},
        {"a": Decimal(3)},
    ]


def test_trailing_garbage_on_a_line() -> None:
    assert one_error(b'{"a":1} x\n').code == "E_JSON_SYNTAX"
    assert one_error(b'{"a":1}{"b":2}\n').code == "E_JSON_SYNTAX"


def test_over_long_line_is_skipped_without_being_held() -> None:
    data = b'{"a":1}\n{"b":"' + b"x" * 5000 + b'"}\n{"a":3}\n'
    got = lines(data, JsonOptions(max_item_bytes=1000))
    assert [type(i).__name__ for i in got] == ["JsonItem", "RowError", "JsonItem"]
    assert isinstance(got[1], RowError)
    assert (got[1].code, got[1].line, got[1].offset) == ("E_LINE_TOO_LONG", 2, 8)
    assert [
        i.line
        for i in list(
            read_jsonl(Trickle(data, (600,)), JsonOptions(max_item_bytes=1000))
        )
    ] == [1, 2, 3]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf", b" \r\n"])
def test_jsonl_empty(data: bytes) -> None:
    with pytest.raises(InputRejected) as info:
        lines(data)
    assert info.value.code == "E_EMPTY"


def test_jsonl_encoding() -> None:
    assert lines(b'\xef\xbb\xbf{"a":"\xe4\xb8\xad"}\n')[0].value == {"a": "中"}  # type: ignore[union-attr]
    with pytest.raises(InputRejected) as info:
        lines(b'{"a":1}\n{"a":"\xd6\xd0"}\n')
    assert (info.value.code, info.value.locator) == (
        "E_ENCODING",
        "line 2, byte offset 14",
    )
    gbk = JsonOptions(encoding="gbk")
    assert lines('{"a":"中"}\n'.encode("gbk"), gbk)[0].value == {"a": "中"}  # type: ignore[union-attr]


def test_jsonl_item_limit() -> None:
    with pytest.raises(InputRejected) as info:
        lines(b'{"a":1}\n' * 4, JsonOptions(max_items=3))
    assert info.value.code == "E_TOO_MANY_ROWS"


# --- JSON documents ----------------------------------------------------------------


def test_top_level_array_is_streamed_with_json_pointers() -> None:
    data = b'[\n  {"a":1},\n  {"a":2.50},\n  {"a":"\xe4\xb8\xad"}\n]\n'
    got = list(read_json(data))
    assert [(i.pointer, i.line, i.offset) for i in got] == [
        ("/0", 2, 4),
        ("/1", 3, 15),
        ("/2", 4, 29),
    ]
    assert got[1].value == {"a": Decimal("2.50")}
    assert got[1].locator == "/1, line 3, byte offset 15"


def test_other_documents_are_one_item() -> None:
    (item,) = read_json(b' {"a":{"b":[1,2]}} ')
    assert (item.pointer, item.line, item.offset) == ("", 1, 1)
    assert list(read_json(b"[]")) == []
    assert list(read_json(b" [ ] ")) == []


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[", "E_JSON_SYNTAX"),
        (b'[{"a":1}', "E_JSON_SYNTAX"),
        (b'[{"a":1},]', "E_JSON_SYNTAX"),
        (b'[{"a":1} {"a":2}]', "E_JSON_SYNTAX"),
        (b'[{"a":1}] []', "E_JSON_SYNTAX"),
        (b'{"a":1} x', "E_JSON_SYNTAX"),
        (b'[{"a":1,"a":1}]', "E_JSON_DUPLICATE_KEY"),
        (b"[" * 10_000 + b"]" * 10_000, "E_JSON_DEPTH"),
        (b'[{"a":NaN}]', "E_JSON_SYNTAX"),
        (b"[1]", "E_JSON_NOT_OBJECT"),
        (b'"x"', "E_JSON_NOT_OBJECT"),
        (b"", "E_EMPTY"),
        (b" \n ", "E_EMPTY"),
        (b"\xff\xfe[\x00]\x00", "E_ENCODING"),
        (b'[{"a":"\xc3"}]', "E_ENCODING"),
        (b'[{"a":"\x00"}]', "E_BINARY"),
    ],
)
def test_document_problems_reject_the_whole_document(data: bytes, code: str) -> None:
    assert rejected_doc(data).code == code


def test_document_error_positions() -> None:
    exc = rejected_doc(b'[{"a":1},\n {"a":1,"a":2}]')
    assert exc.locator == "/1, line 2, byte offset 11"
    exc = rejected_doc(b'[{"a":1},\n {"a" 1}]')
    assert exc.locator == "/1, line 2, byte offset 16"


def test_document_item_size_limit() -> None:
    big = b'[{"a":"' + b"x" * 300_000 + b'"}]'
    assert rejected_doc(big, JsonOptions(max_item_bytes=100_000)).code == (
        "E_JSON_ITEM_TOO_LARGE"
    )
    never_closed = b'[{"a":"' + b"x" * 300_000
    assert rejected_doc(never_closed, JsonOptions(max_item_bytes=100_000)).code == (
        "E_JSON_ITEM_TOO_LARGE"
    )
    assert rejected_doc(
        b'{"a":"' + b"x" * 1000 + b'"}', JsonOptions(max_item_bytes=100)
    ).code == ("E_JSON_ITEM_TOO_LARGE")
    with pytest.raises(InputRejected) as info:
        list(read_json(b'[{"a":1},{"a":2}]', JsonOptions(max_items=1)))
    assert info.value.code == "E_TOO_MANY_ROWS"


def test_numbers_split_across_reads_stay_whole() -> None:
    data = b"[1234567, 2.5e10,\n-0.001]"
    expected = [Decimal(1234567), Decimal("2.5e10"), Decimal("-0.001")]
    for sizes in ((1,), (2,), (3,), (5, 1), (4099,)):
        assert [i.value for i in read_json(Trickle(data, sizes), ANY)] == expected


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.dictionaries(
            st.text(max_size=5),
            st.one_of(
                st.none(),
                st.booleans(),
                st.text(max_size=8),
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
            ),
            max_size=4,
        ),
        max_size=6,
    ),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
)
def test_streamed_documents_match_whole_documents(
    values: list[dict[str, object]], sizes: list[int]
) -> None:
    text = json.dumps(values, ensure_ascii=False, indent=1)
    data = text.encode()
    whole = [(i.pointer, i.line, i.offset, i.value) for i in read_json(data)]
    trickled = [
        (i.pointer, i.line, i.offset, i.value) for i in read_json(Trickle(data, sizes))
    ]
    assert whole == trickled
    exact = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    assert [v for _, _, _, v in whole] == exact
    assert [p for p, _, _, _ in whole] == [f"/{n}" for n in range(len(values))]
    assert [(i.pointer, i.value) for i in read_json(io.BytesIO(data))] == [
        (p, v) for p, _, _, v in whole
    ]


def test_options_validation() -> None:
    with pytest.raises(ValidationError):
        JsonOptions(max_depth=0)
    with pytest.raises(ValidationError):
        JsonOptions(encoding="latin-1")
    with pytest.raises(ValidationError):
        JsonOptions(depth=3)  # type: ignore[call-arg]
