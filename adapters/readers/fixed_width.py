"""Fixed-width text reader: columns by *byte* position in a given encoding.

Each line is decoded strictly first (a bad byte rejects the input with its offset),
then every field is cut by bytes and decoded on its own; a field boundary that falls
inside a multi-byte GBK / GB18030 / UTF-8 character is a row error, never a silently
wrong character.  Record-type codes pick the layout of each line; an optional header
(first line) and trailer (last line) can carry the number of data records, which is
checked at the end.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.readers._source import (
    Encoding,
    Line,
    LongLine,
    MiB,
    Source,
    empty,
    open_lines,
)
from adapters.readers.errors import InputRejected, RowError, Text, Where, shown

__all__ = [
    "FixedField",
    "FixedWidthOptions",
    "FixedWidthRecord",
    "RecordLayout",
    "read_fixed_width",
]

_RECORDS = Text("records", "记录")
_Decode = Callable[[bytes], tuple[str, int]]
_PAD = " \u3000"  # ASCII and ideographic (full-width) space


class FixedField(BaseModel):
    """One column: ``length`` bytes from byte ``start`` (0-based) of the record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Field name in the yielded dict.")
    start: int = Field(ge=0, description="First byte, 0-based, line break excluded.")
    length: int = Field(ge=1, description="Width in bytes (not characters).")
    strip: bool = Field(
        default=True, description="Strip ASCII and ideographic (U+3000) padding spaces."
    )

    @property
    def end(self) -> int:
        return self.start + self.length


class RecordLayout(BaseModel):
    """The fields of one record type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(
        "", description="Record-type code ('' when the feed has no type codes)."
    )
    fields: tuple[FixedField, ...] = Field(min_length=1, description="The columns.")
    count_field: str | None = Field(
        None,
        description="Header / trailer only: the field that holds the number of data "
        "records, checked at the end of the input.",
    )

    @model_validator(mode="after")
    def _check(self) -> RecordLayout:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"layout {self.code!r}: field names must be unique")
        ordered = sorted(self.fields, key=lambda f: f.start)
        for left, right in pairwise(ordered):
            if right.start < left.end:
                raise ValueError(
                    f"layout {self.code!r}: fields {left.name!r} and {right.name!r} "
                    "overlap"
                )
        if self.count_field is not None and self.count_field not in names:
            raise ValueError(f"layout {self.code!r}: count_field is not a field")
        return self


class FixedWidthOptions(BaseModel):
    """How to read one fixed-width feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Encoding = Field(description="Encoding the byte positions refer to.")
    code_start: int = Field(0, ge=0, description="First byte of the record-type code.")
    code_length: int = Field(
        0, ge=0, le=16, description="Bytes of the record-type code; 0: no codes."
    )
    layouts: tuple[RecordLayout, ...] = Field(
        min_length=1, description="Data record layouts, one per record-type code."
    )
    header: RecordLayout | None = Field(
        None, description="Layout of the first line, if the feed has a header."
    )
    trailer: RecordLayout | None = Field(
        None, description="Layout of the last line, if the feed has a trailer."
    )
    record_length: int | None = Field(
        None, ge=1, description="Exact bytes per record, line break excluded."
    )
    skip_blank_lines: bool = Field(default=True, description="Ignore empty lines.")
    max_input_bytes: int = Field(256 * MiB, ge=1, description="Input size limit.")
    max_line_bytes: int = Field(
        64 * 1024, ge=1, description="Longest line; a longer one is a row error."
    )
    max_records: int = Field(5_000_000, ge=1, description="Most data records.")

    @model_validator(mode="after")
    def _check(self) -> FixedWidthOptions:
        every = [*self.layouts, *(x for x in (self.header, self.trailer) if x)]
        codes = [layout.code for layout in every]
        if self.code_length == 0:
            if len(self.layouts) != 1 or any(codes):
                raise ValueError("without code_length there is one layout, no codes")
        else:
            width = self.code_length
            if any(len(code.encode(self.encoding)) != width for code in codes):
                raise ValueError("every code must be code_length bytes long")
            if len(set(codes)) != len(codes):
                raise ValueError("record-type codes must be unique")
        for layout in self.layouts:
            if layout.count_field is not None:
                raise ValueError("count_field belongs to a header or trailer layout")
        return self


class FixedWidthRecord(NamedTuple):
    """One decoded record."""

    kind: Literal["header", "data", "trailer"]
    record_type: str
    fields: dict[str, str]
    line: int
    offset: int

    @property
    def locator(self) -> str:
        return Where(line=self.line, offset=self.offset).en()


@dataclass(frozen=True, slots=True)
class _Plan:
    """A layout prepared for cutting."""

    layout: RecordLayout
    columns: tuple[tuple[str, int, int, bool], ...]
    # Fields in byte order with the gaps between them as unnamed segments, so that
    # together they cover bytes 0 .. need without a hole.
    segments: tuple[tuple[str | None, int, int, bool], ...]
    need: int

    @classmethod
    def of(cls, layout: RecordLayout) -> _Plan:
        columns = tuple((f.name, f.start, f.end, f.strip) for f in layout.fields)
        segments: list[tuple[str | None, int, int, bool]] = []
        at = 0
        for name, start, end, strip in sorted(columns, key=lambda c: c[1]):
            if start > at:
                segments.append((None, at, start, False))
            segments.append((name, start, end, strip))
            at = end
        return cls(layout, columns, tuple(segments), at)

    def cut(
        self, line: Line, decode: _Decode, record_length: int | None
    ) -> dict[str, str] | RowError:
        raw, text = line.raw, line.text
        if record_length is not None and len(raw) != record_length:
            return RowError.make(
                "E_FW_LENGTH", _where(line), got=len(raw), expected=record_length
            )
        if len(raw) < self.need:
            return RowError.make(
                "E_FW_LENGTH",
                _where(line),
                got=len(raw),
                expected=Text(f"at least {self.need}", f"至少 {self.need}"),
            )
        if raw.isascii():  # one byte per character: byte and character slices agree
            return {
                name: text[start:end].strip(_PAD) if strip else text[start:end]
                for name, start, end, strip in self.columns
            }
        # Decode segment by segment from byte 0.  Strict decoding of a segment that
        # starts on a character boundary fails unless it also ends on one (the
        # decoders read left to right), so every field boundary is proven.
        values: dict[str, str] = {}
        for name, start, end, strip in self.segments:
            try:
                value = decode(raw[start:end])[0]
            except UnicodeDecodeError:
                field = next(f for f in self.layout.fields if end in (f.start, f.end))
                return RowError.make(
                    "E_FW_BOUNDARY",
                    _where(line),
                    field=shown(field.name),
                    start=field.start,
                    end=field.end - 1,
                )
            if name is not None:
                values[name] = value.strip(_PAD) if strip else value
        return values


def _where(line: Line | LongLine) -> Where:
    return Where(line=line.number, offset=line.offset)


_HEADER = Text("header", "头")
_TRAILER = Text("trailer", "尾")


class _Reader:
    """State of one read: the previous line is held back to recognise the last."""

    def __init__(self, opts: FixedWidthOptions, codec: str) -> None:
        self.opts = opts
        self.codec = codec
        self.decode: _Decode = codecs.getdecoder(codec)  # strict; skips name lookups
        # Codes are compared as bytes in the feed's encoding: no decoding per line.
        self.plans = {
            layout.code.encode(codec): _Plan.of(layout) for layout in opts.layouts
        }
        self.header_plan = _Plan.of(opts.header) if opts.header else None
        self.trailer_plan = _Plan.of(opts.trailer) if opts.trailer else None
        self.control_codes = {
            plan.layout.code.encode(codec)
            for plan in (self.header_plan, self.trailer_plan)
            if plan is not None and opts.code_length
        }
        self.known = ", ".join(shown(layout.code) for layout in opts.layouts)
        self.first = True
        self.data = 0
        self.header: FixedWidthRecord | None = None

    def code(self, line: Line) -> bytes:
        start = self.opts.code_start
        return line.raw[start : start + self.opts.code_length]

    def shown_code(self, code: bytes) -> str:
        """For messages only: never goes into a record."""
        return shown(code.decode(self.codec, "backslashreplace"))

    def control(
        self, line: Line | LongLine, plan: _Plan, kind: Literal["header", "trailer"]
    ) -> FixedWidthRecord:
        """The header or trailer record; anything wrong with it rejects the input."""
        key = "E_FW_HEADER" if kind == "header" else "E_FW_TRAILER"
        expected = shown(plan.layout.code)
        if not isinstance(line, Line):
            found = Text("an over-long line", "超长行")
            raise InputRejected.make(key, _where(line), expected=expected, shown=found)
        code = self.code(line)
        if code != plan.layout.code.encode(self.codec):
            raise InputRejected.make(
                key, _where(line), expected=expected, shown=self.shown_code(code)
            )
        values = plan.cut(line, self.decode, self.opts.record_length)
        if isinstance(values, RowError):
            raise InputRejected(
                key, values.locator, values.message_en, values.message_zh
            )
        return FixedWidthRecord(
            kind, plan.layout.code, values, line.number, line.offset
        )

    def check_count(self, record: FixedWidthRecord | None, plan: _Plan | None) -> None:
        if record is None or plan is None or plan.layout.count_field is None:
            return
        which = _HEADER if record.kind == "header" else _TRAILER
        field = plan.layout.count_field
        value = record.fields[field].strip()
        where = Where(line=record.line, offset=record.offset)
        if not (value.isascii() and value.isdigit()):
            raise InputRejected.make(
                "E_FW_COUNT/invalid",
                where,
                shown=shown(value),
                field=shown(field),
                which=which,
            )
        if int(value) != self.data:
            raise InputRejected.make(
                "E_FW_COUNT", where, which=which, declared=int(value), actual=self.data
            )

    def data_line(self, line: Line | LongLine) -> FixedWidthRecord | RowError:
        opts = self.opts
        self.data += 1
        if self.data > opts.max_records:
            raise InputRejected.make(
                "E_TOO_MANY_ROWS", _where(line), limit=opts.max_records, thing=_RECORDS
            )
        if not isinstance(line, Line):
            return RowError.make(
                "E_LINE_TOO_LONG", _where(line), limit=opts.max_line_bytes
            )
        code = self.code(line)
        plan = self.plans.get(code)
        if plan is None:
            if code in self.control_codes:
                which = (
                    "E_FW_HEADER"
                    if self.header_plan
                    and code == (self.header_plan.layout.code.encode(self.codec))
                    else "E_FW_TRAILER"
                )
                raise InputRejected.make(
                    f"{which}/misplaced", _where(line), shown=self.shown_code(code)
                )
            return RowError.make(
                "E_FW_RECORD_TYPE",
                _where(line),
                shown=self.shown_code(code),
                known=self.known,
            )
        values = plan.cut(line, self.decode, opts.record_length)
        if isinstance(values, RowError):
            return values
        return FixedWidthRecord(
            "data", plan.layout.code, values, line.number, line.offset
        )

    def line(self, line: Line | LongLine, *, last: bool) -> FixedWidthRecord | RowError:
        first, self.first = self.first, False
        if first and self.header_plan is not None:
            self.header = self.control(line, self.header_plan, "header")
            return self.header
        if last and self.trailer_plan is not None:
            trailer = self.control(line, self.trailer_plan, "trailer")
            self.check_count(self.header, self.header_plan)
            self.check_count(trailer, self.trailer_plan)
            return trailer
        return self.data_line(line)


def read_fixed_width(
    source: Source, options: FixedWidthOptions
) -> Iterator[FixedWidthRecord | RowError]:
    """Yield header, data and trailer records in input order; a bad data line is a
    ``RowError``.

    Raises ``InputRejected`` (``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_FW_HEADER``, ``E_FW_TRAILER``, ``E_FW_COUNT``,
    ``E_TOO_MANY_ROWS``).
    """
    opts = options
    codec, lines = open_lines(
        source,
        encoding=opts.encoding,
        max_input_bytes=opts.max_input_bytes,
        max_line_bytes=opts.max_line_bytes,
        thing=_RECORDS,
    )
    reader = _Reader(opts, codec)
    pending: Line | LongLine | None = None
    for line in lines:
        blank = isinstance(line, Line) and (not line.raw or line.raw.isspace())
        if blank and opts.skip_blank_lines:
            continue
        if pending is not None:
            yield reader.line(pending, last=False)
        pending = line
    if pending is None:
        raise empty(_RECORDS)
    if reader.first and opts.header is not None and opts.trailer is not None:
        yield reader.line(pending, last=False)  # one line cannot be both
        raise InputRejected.make(
            "E_FW_TRAILER",
            Where(line=pending.number + 1),
            expected=shown(opts.trailer.code),
            shown=Text("the end of the input", "输入结尾"),
        )
    yield reader.line(pending, last=True)
    if opts.trailer is None:
        reader.check_count(reader.header, reader.header_plan)
