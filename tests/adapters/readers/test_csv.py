"""CSV reader: dialects, header rows, encodings, per-row errors, limits."""

from __future__ import annotations

import csv
import io
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.readers import CsvOptions, CsvRow, InputRejected, RowError, read_csv
from tests.adapters.readers.helpers import Trickle, bilingual

TSV = CsvOptions(delimiter="\t", quotechar=None, header_rows=2)


def rows(data: bytes, options: CsvOptions | None = None) -> list[CsvRow | RowError]:
    return list(read_csv(data, options))


def values(data: bytes, options: CsvOptions | None = None) -> list[dict[str, str]]:
    out = []
    for row in read_csv(data, options):
        assert isinstance(row, CsvRow), row
        out.append(row.fields)
    return out


def rejected(data: bytes, options: CsvOptions | None = None) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        rows(data, options)
    bilingual(info.value)
    return info.value


def test_plain_csv_with_quotes_commas_and_doubled_quotes() -> None:
    data = b'id,name,note\r\n1,"Smith, J.","said ""hi"""\r\n2,,""\r\n'
    assert values(data) == [
        {"id": "1", "name": "Smith, J.", "note": 'said "hi"'},
        {"id": "2", "name": "", "note": ""},
    ]


def test_quoted_newlines_become_lf_and_rows_keep_their_start() -> None:
    data = b'a,b\r\n1,"line one\r\nline two\nline three"\r\n2,x\r\n'
    got = rows(data)
    assert [r.fields for r in got if isinstance(r, CsvRow)] == [
        {"a": "1", "b": "line one\nline two\nline three"},
        {"a": "2", "b": "x"},
    ]
    first, second = got
    assert isinstance(first, CsvRow)
    assert isinstance(second, CsvRow)
    assert (first.row, first.line, first.offset) == (1, 2, 5)
    assert (second.row, second.line, second.offset) == (2, 5, data.index(b"2,x"))
    assert second.locator == f"row 2, line 5, byte offset {data.index(b'2,x')}"


def test_crlf_and_lf_read_the_same() -> None:
    lf = b"a,b\n1,2\n3,4\n"
    assert values(lf) == values(lf.replace(b"\n", b"\r\n"))
    assert values(lf.rstrip(b"\n")) == values(lf)  # no final line break


def test_quotes_inside_an_unquoted_field_are_ordinary() -> None:
    assert values(b'a,b\n5" pipe,x\n') == [{"a": '5" pipe', "b": "x"}]


def test_quoting_off_keeps_a_leading_quote() -> None:
    data = b'a\tb\n"\xe5\x87\x80\xe5\x9c\xb0"\xe5\x87\xba\xe8\xae\xa9\tx\n'
    options = CsvOptions(delimiter="\t", quotechar=None)
    assert values(data, options) == [{"a": '"净地"出让', "b": "x"}]


def test_second_header_row_is_checked_and_skipped() -> None:
    data = "\ufeffNoticeID\tArea_M2\r\n公告ID\t面积(平方米)\r\nN1\t1200\r\n".encode()
    assert values(data, TSV) == [{"NoticeID": "N1", "Area_M2": "1200"}]
    names_from_row_two = CsvOptions(
        delimiter="\t", quotechar=None, header_rows=2, names_row=2
    )
    assert values(data, names_from_row_two) == [
        {"公告ID": "N1", "面积(平方米)": "1200"}
    ]
    bad = data.replace("面积(平方米)".encode(), "面积\t多余".encode())
    exc = rejected(bad, TSV)
    assert (exc.code, exc.locator) == ("E_CSV_HEADER", "line 2, byte offset 21")


def test_fieldnames_instead_of_a_header() -> None:
    options = CsvOptions(header_rows=0, fieldnames=("x", "y"))
    assert values(b"1,2\n3,4\n", options) == [
        {"x": "1", "y": "2"},
        {"x": "3", "y": "4"},
    ]


def test_header_problems_reject_the_input() -> None:
    assert rejected(b"a,b,a\n1,2,3\n").code == "E_CSV_HEADER"
    exc = rejected(b"a,b\n", CsvOptions(header_rows=2))
    assert exc.code == "E_CSV_HEADER"
    assert "header row 2 is missing" in exc.message_en
    assert rejected(b'"a"x,b\n1,2\n').code == "E_CSV_HEADER"
    assert rejected(b'"a,b\n', CsvOptions()).code == "E_CSV_HEADER"
    assert rejected(b"a,b,c\n", CsvOptions(max_columns=2)).code == "E_CSV_HEADER"


def test_ragged_rows_are_row_errors_and_reading_goes_on() -> None:
    data = b"a,b\n1,2\n1,2,3\n4\n5,6\n"
    got = rows(data)
    assert [type(r).__name__ for r in got] == [
        "CsvRow",
        "RowError",
        "RowError",
        "CsvRow",
    ]
    error = got[1]
    assert isinstance(error, RowError)
    assert error.code == "E_CSV_RAGGED"
    assert (error.line, error.offset) == (3, 8)
    assert error.message_en == (
        "row 2, line 3, byte offset 8: the row has 3 fields, the header has 2"
    )
    bilingual(error)


def test_stray_character_after_a_closing_quote_is_a_row_error() -> None:
    got = rows(b'a,b\n"x"y,2\n3,4\n')
    assert isinstance(got[0], RowError)
    assert got[0].code == "E_CSV_QUOTE"
    assert isinstance(got[1], CsvRow)
    assert got[1].fields == {"a": "3", "b": "4"}


def test_unterminated_quote_at_the_end_is_a_row_error() -> None:
    got = rows(b'a,b\n1,2\n3,"open\nstill open\n')
    assert isinstance(got[0], CsvRow)
    assert isinstance(got[1], RowError)
    assert (got[1].code, got[1].line) == ("E_CSV_UNTERMINATED", 3)


def test_a_row_that_never_ends_rejects_the_input() -> None:
    data = b'a,b\n1,"' + b"x" * 5000 + b"\n" * 10
    exc = rejected(data, CsvOptions(max_row_bytes=1000))
    assert (exc.code, exc.locator) == ("E_CSV_ROW_TOO_LARGE", "line 2, byte offset 4")
    one_line = b"a,b\n" + b"x" * 5000 + b"\n"
    assert rejected(one_line, CsvOptions(max_row_bytes=1000)).code == (
        "E_CSV_ROW_TOO_LARGE"
    )


def test_field_length_limit() -> None:
    got = rows(b"a,b\n" + b"x" * 20 + b",y\n1,2\n", CsvOptions(max_field_chars=10))
    assert isinstance(got[0], RowError)
    assert got[0].code == "E_CSV_FIELD_TOO_LONG"
    assert isinstance(got[1], CsvRow)
    plain = CsvOptions(quotechar=None, max_field_chars=10)
    assert [type(r).__name__ for r in rows(b"a\n" + b"x" * 11 + b"\n1\n", plain)] == [
        "RowError",
        "CsvRow",
    ]


def test_a_quoted_field_beyond_the_splitter_limit_rejects_the_input() -> None:
    if csv.field_size_limit() > 1_000_000:
        pytest.skip("csv.field_size_limit() was raised in this process")
    huge = b'a,b\n1,"' + b"x\n" * 100_000 + b'"\n2,3\n'
    exc = rejected(huge)
    assert (exc.code, exc.locator) == ("E_CSV_FIELD_TOO_LONG", "line 2, byte offset 4")


def test_blank_lines() -> None:
    data = b"a,b\n\n1,2\r\n\r\n"
    assert values(data) == [{"a": "1", "b": "2"}]
    got = rows(data, CsvOptions(skip_blank_lines=False))
    assert [r.code for r in got if isinstance(r, RowError)] == ["E_CSV_RAGGED"] * 2
    assert values(b'a\n""\n', CsvOptions()) == [{"a": ""}]  # quoted empty is data


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\r\n\n"])
def test_empty_inputs(data: bytes) -> None:
    assert rejected(data).code == "E_EMPTY"


def test_header_only_is_not_empty() -> None:
    assert rows(b"a,b\n") == []


def test_row_and_size_limits() -> None:
    data = b"a\n" + b"1\n" * 11
    assert rejected(data, CsvOptions(max_rows=10)).code == "E_TOO_MANY_ROWS"
    assert rejected(data, CsvOptions(max_input_bytes=10)).code == "E_TOO_LARGE"


# --- encodings ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_gbk_trail_bytes_are_never_taken_for_delimiters(encoding: str) -> None:
    # '亅' is 0x81 0x7C and '乗' is 0x81 0x5C: a '|' and a '\' as second bytes.
    text = "名称|备注\r\n亅乗|倈\r\n"
    data = text.encode(encoding)
    assert b"|" in "亅".encode(encoding)
    options = CsvOptions(delimiter="|", encoding=encoding)
    assert values(data, options) == [{"名称": "亅乗", "备注": "倈"}]
    auto = CsvOptions(delimiter="|")
    assert values(data, auto) == [{"名称": "亅乗", "备注": "倈"}]


def test_auto_detection() -> None:
    text = "甲,乙\n一,二\n"
    for data in (
        text.encode(),
        b"\xef\xbb\xbf" + text.encode(),
        text.encode("gb18030"),
    ):
        assert values(data) == [{"甲": "一", "乙": "二"}]


def test_gb2312_is_read_as_gbk() -> None:
    data = "姓名\n朱镕基\n".encode("gbk")
    assert values(data, CsvOptions(encoding="gb2312")) == [{"姓名": "朱镕基"}]


def test_bad_bytes_reject_the_input_with_their_offset() -> None:
    data = "a,b\n一,二\n".encode("gbk") + b"\x81\n"
    exc = rejected(data, CsvOptions(encoding="gbk"))
    assert exc.code == "E_ENCODING"
    assert exc.locator == f"line 3, byte offset {len(data) - 2}"
    late = b"a\n" + b"x\n" * 40_000 + b"\xff\n"  # beyond the 64 KiB used to detect
    exc = rejected(late)
    assert exc.locator == f"line 40002, byte offset {len(late) - 2}"


def test_neither_utf8_nor_gb18030() -> None:
    exc = rejected(b"a,b\n\xff\xff\n")
    assert exc.code == "E_ENCODING"
    assert "neither UTF-8 nor GB18030" in exc.message_en


def test_bom_mismatches() -> None:
    assert (
        rejected(b"\xef\xbb\xbfa\n1\n", CsvOptions(encoding="gbk")).code == "E_ENCODING"
    )
    assert rejected(b"\xff\xfea\x00\n\x00").code == "E_ENCODING"


def test_no_replacement_character_and_no_nul() -> None:
    assert rejected("a\n\ufffd\n".encode()).code == "E_ENCODING"
    exc = rejected(b"a,b\n1,\x002\n")
    assert (exc.code, exc.locator) == ("E_BINARY", "line 2, byte offset 6")


def test_trickled_input_gives_the_same_rows() -> None:
    data = 'a,b\r\n"x\r\ny",2\r\n中文,"4"\r\n'.encode("gb18030") * 50
    options = CsvOptions(header_rows=0, fieldnames=("a", "b"))
    assert rows(data, options)[1:] == list(read_csv(Trickle(data), options))[1:]
    assert rows(data, options) == list(read_csv(io.BytesIO(data), options))


def test_options_validation() -> None:
    with pytest.raises(ValidationError):
        CsvOptions(delimiter=";;")
    with pytest.raises(ValidationError):
        CsvOptions(delimiter="\n")
    with pytest.raises(ValidationError):
        CsvOptions(delimiter='"')
    with pytest.raises(ValidationError):
        CsvOptions(header_rows=0)
    with pytest.raises(ValidationError):
        CsvOptions(header_rows=1, names_row=2)
    with pytest.raises(ValidationError):
        CsvOptions(fieldnames=("a", "a"))
    with pytest.raises(ValidationError):
        CsvOptions(quoting=False)  # type: ignore[call-arg]


# --- round trip against the standard library writer --------------------------------

field = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\x00\ufffd"), max_size=12
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=st.lists(st.lists(field, min_size=3, max_size=3), min_size=1, max_size=8),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    terminator=st.sampled_from(["\r\n", "\n"]),
    encoding=st.sampled_from(["utf-8", "gb18030"]),
)
def test_round_trip_with_the_csv_module(
    table: list[list[str]],
    delimiter: str,
    quoting: Literal[0, 1, 2, 3],
    terminator: str,
    encoding: str,
) -> None:
    out = io.StringIO()
    writer = csv.writer(
        out, delimiter=delimiter, quoting=quoting, lineterminator=terminator
    )
    writer.writerow(["h1", "h2", "h3"])
    writer.writerows(table)
    data = out.getvalue().encode(encoding)
    options = CsvOptions(
        delimiter=delimiter,
        encoding=encoding,
        skip_blank_lines=False,
    )
    got = values(data, options)
    assert got == [dict(zip(("h1", "h2", "h3"), row, strict=True)) for row in table]
