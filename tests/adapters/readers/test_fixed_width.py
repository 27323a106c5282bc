"""Fixed-width reader: byte columns, record types, header/trailer counts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.readers import (
    FixedField,
    FixedWidthOptions,
    FixedWidthRecord,
    InputRejected,
    RecordLayout,
    RowError,
    read_fixed_width,
)
from tests.adapters.readers.helpers import Trickle, bilingual

DATA_LAYOUT = RecordLayout(
    code="D",
    fields=(
        FixedField(name="id", start=1, length=4),
        FixedField(name="name", start=5, length=10),
        FixedField(name="amount", start=15, length=8),
    ),
)
PARCEL_LAYOUT = RecordLayout(
    code="P", fields=(FixedField(name="parcel", start=1, length=6, strip=False),)
)
OPTIONS = FixedWidthOptions(
    encoding="gbk",
    code_length=1,
    layouts=(DATA_LAYOUT, PARCEL_LAYOUT),
    header=RecordLayout(code="H", fields=(FixedField(name="date", start=1, length=8),)),
    trailer=RecordLayout(
        code="T",
        fields=(FixedField(name="count", start=1, length=6),),
        count_field="count",
    ),
)


def data_line(
    code: str, id_: str, name: str, amount: str, encoding: str = "gbk"
) -> bytes:
    return (
        code.encode() + id_.encode() + name.encode(encoding).ljust(10) + amount.encode()
    )


GOOD = (
    b"\r\n".join(
        [
            b"H20261103",
            data_line("D", "0001", "张三", "00012.50"),
            b"P A-01 ",
            data_line("D", "0002", "李四五", "00200.00"),
            b"T000003",
        ]
    )
    + b"\r\n"
)


def read(
    data: bytes, options: FixedWidthOptions = OPTIONS
) -> list[FixedWidthRecord | RowError]:
    return list(read_fixed_width(data, options))


def rejected(data: bytes, options: FixedWidthOptions = OPTIONS) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        read(data, options)
    bilingual(info.value)
    return info.value


def test_records_by_type_with_header_and_trailer() -> None:
    got = read(GOOD)
    assert all(isinstance(r, FixedWidthRecord) for r in got)
    assert [(r.kind, r.record_type, r.fields) for r in got] == [  # type: ignore[union-attr]
        ("header", "H", {"date": "20261103"}),
        ("data", "D", {"id": "0001", "name": "张三", "amount": "00012.50"}),
        ("data", "P", {"parcel": " A-01 "}),  # strip=False keeps the padding
        ("data", "D", {"id": "0002", "name": "李四五", "amount": "00200.00"}),
        ("trailer", "T", {"count": "000003"}),
    ]
    second = got[1]
    assert isinstance(second, FixedWidthRecord)
    assert (second.line, second.offset) == (2, 11)
    assert second.locator == "line 2, byte offset 11"
    assert read(GOOD.replace(b"\r\n", b"\n"))[3].fields == got[3].fields  # type: ignore[union-attr]
    assert read(Trickle(GOOD)) == got  # type: ignore[arg-type]


def test_ideographic_padding_is_stripped() -> None:
    line = b"D0003" + "王\u3000".encode("gbk").ljust(10) + b"00000001"
    data = b"\n".join([b"H20261103", line, b"T000001"])
    assert read(data)[1].fields["name"] == "王"  # type: ignore[union-attr]


def test_a_field_boundary_inside_a_character_is_a_row_error() -> None:
    # "D000" + 张 puts the first byte of 张 at byte 4, the last byte of field "id".
    shifted = b"D000" + "张三".encode("gbk") + b"xxxxxxx" + b"00000001"
    got = read(b"\n".join([b"H20261103", shifted, b"T000001"]))
    error = got[1]
    assert isinstance(error, RowError)
    assert error.code == "E_FW_BOUNDARY"
    assert error.message_en == (
        "line 2, byte offset 10: field 'id' (bytes 1-4) cuts through a multi-byte "
        "character"
    )
    bilingual(error)
    assert isinstance(got[2], FixedWidthRecord)


def test_gb18030_four_byte_characters_and_utf8() -> None:
    layout = RecordLayout(
        fields=(
            FixedField(name="a", start=0, length=4),
            FixedField(name="b", start=4, length=3),
        )
    )
    gb = FixedWidthOptions(encoding="gb18030", layouts=(layout,))
    four = "\U00020000".encode("gb18030")  # 𠀀, 4 bytes in GB18030
    assert len(four) == 4
    assert read(four + b"abc\n", gb)[0].fields == {"a": "\U00020000", "b": "abc"}  # type: ignore[union-attr]
    cut = read(b"x" + four[:3] + four[3:] + b"bc\n", gb)[0]
    assert isinstance(cut, RowError)
    assert cut.code == "E_FW_BOUNDARY"
    utf8 = FixedWidthOptions(encoding="utf-8", layouts=(layout,))
    assert read("x中abc\n".encode(), utf8)[0].fields == {"a": "x中", "b": "abc"}  # type: ignore[union-attr]
    split = read("中文abc\n".encode(), utf8)[0]
    assert isinstance(split, RowError)
    assert split.code == "E_FW_BOUNDARY"


def test_unknown_record_type_and_length_problems_are_row_errors() -> None:
    data = b"\n".join(
        [b"H20261103", b"X123", b"D0001", GOOD.split(b"\r\n")[1], b"T000003"]
    )
    got = read(data)
    codes = [r.code for r in got if isinstance(r, RowError)]
    assert codes == ["E_FW_RECORD_TYPE", "E_FW_LENGTH"]


def test_record_length_applies_to_every_record() -> None:
    exact = FixedWidthOptions(
        encoding="gbk",
        layouts=(RecordLayout(fields=(FixedField(name="a", start=0, length=2),)),),
        record_length=3,
    )
    got = read(b"abc\nab\nabcd\n", exact)
    assert [type(r).__name__ for r in got] == [
        "FixedWidthRecord",
        "RowError",
        "RowError",
    ]


def test_counts_are_checked_against_the_data_records() -> None:
    data = GOOD.replace(b"T000003", b"T000004")
    exc = rejected(data)
    assert exc.code == "E_FW_COUNT"
    assert exc.message_en == (
        f"line 5, byte offset {data.index(b'T0')}: the trailer record declares 4 "
        "data records, the input has 3"
    )
    assert exc.message_zh.endswith("尾记录声明 4 条数据记录，实际为 3 条")
    assert rejected(GOOD.replace(b"T000003", b"T00x003")).code == "E_FW_COUNT"
    # Row errors still count: the count proves the transfer is complete.
    with_bad = GOOD.replace(b"P A-01 ", b"Q")
    assert [r.code for r in read(with_bad) if isinstance(r, RowError)] == [
        "E_FW_RECORD_TYPE"
    ]


def test_header_count_without_trailer() -> None:
    options = FixedWidthOptions(
        encoding="gbk",
        code_length=1,
        layouts=(DATA_LAYOUT,),
        header=RecordLayout(
            code="H", fields=(FixedField(name="n", start=1, length=3),), count_field="n"
        ),
    )
    line = data_line("D", "0001", "张三", "00000001")
    assert len(read(b"H001\n" + line + b"\n", options)) == 2
    assert rejected(b"H002\n" + line + b"\n", options).code == "E_FW_COUNT"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (GOOD.split(b"\r\n", 1)[1], "E_FW_HEADER"),
        (GOOD.rsplit(b"T", 1)[0], "E_FW_TRAILER"),
        (b"H20261103\n", "E_FW_TRAILER"),
        (GOOD.replace(b"P A-01 ", b"H20261104"), "E_FW_HEADER"),
        (GOOD.replace(b"P A-01 ", b"T000001"), "E_FW_TRAILER"),
        (b"H2026\n" + GOOD.split(b"\r\n", 1)[1], "E_FW_HEADER"),
        (b"", "E_EMPTY"),
        (b"\n \n", "E_EMPTY"),
        (GOOD.replace("张三".encode("gbk"), b"\x81\x20\x20\x20"), "E_ENCODING"),
        (GOOD.replace(b"P A-01 ", b"PA-\x0001"), "E_BINARY"),
    ],
)
def test_whole_input_problems(data: bytes, code: str) -> None:
    assert rejected(data).code == code


def test_bad_byte_offset() -> None:
    data = GOOD.replace("张三".encode("gbk"), b"\x81\x20\x20\x20")
    exc = rejected(data)
    at = data.index(b"\x81")
    assert exc.locator == f"line 2, byte offset {at}"


def test_over_long_lines_and_record_limit() -> None:
    options = OPTIONS.model_copy(update={"max_line_bytes": 40})
    data = GOOD.replace(b"P A-01 ", b"P" + b"x" * 100)
    got = read(data, options)
    assert [r.code for r in got if isinstance(r, RowError)] == ["E_LINE_TOO_LONG"]
    limited = OPTIONS.model_copy(update={"max_records": 2})
    assert rejected(GOOD, limited).code == "E_TOO_MANY_ROWS"


def test_single_layout_without_codes() -> None:
    options = FixedWidthOptions(
        encoding="utf-8",
        layouts=(
            RecordLayout(
                fields=(
                    FixedField(name="a", start=0, length=2),
                    FixedField(name="b", start=3, length=2),
                )
            ),
        ),
    )
    assert [r.fields for r in read(b"12 34\n\n56 78", options)] == [  # type: ignore[union-attr]
        {"a": "12", "b": "34"},
        {"a": "56", "b": "78"},
    ]


def test_layout_and_options_validation() -> None:
    with pytest.raises(ValidationError):
        RecordLayout(
            fields=(
                FixedField(name="a", start=0, length=3),
                FixedField(name="b", start=2, length=2),
            )
        )
    with pytest.raises(ValidationError):
        RecordLayout(
            fields=(
                FixedField(name="a", start=0, length=1),
                FixedField(name="a", start=1, length=1),
            )
        )
    with pytest.raises(ValidationError):
        RecordLayout(fields=(FixedField(name="a", start=0, length=1),), count_field="b")
    with pytest.raises(ValidationError):
        FixedWidthOptions(encoding="gbk", layouts=(DATA_LAYOUT, PARCEL_LAYOUT))
    with pytest.raises(ValidationError):
        FixedWidthOptions(encoding="gbk", code_length=2, layouts=(DATA_LAYOUT,))
    with pytest.raises(ValidationError):
        FixedWidthOptions(
            encoding="gbk", code_length=1, layouts=(DATA_LAYOUT, DATA_LAYOUT)
        )
    with pytest.raises(ValidationError):
        FixedWidthOptions(
            encoding="gbk",
            code_length=1,
            layouts=(DATA_LAYOUT.model_copy(update={"count_field": "id"}),),
        )
    with pytest.raises(ValidationError):
        FixedField(name="a", start=0, length=0)
