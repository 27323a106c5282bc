"""Streaming CSV / TSV reader with a configurable dialect.

Bytes are split into lines on LF (never part of a multi-byte character), each line is
decoded *strictly* and only then split into fields, so a ``|`` or ``\\`` byte that is
the second byte of a GBK character can never be taken for a delimiter.  A bad byte
rejects the input with its byte offset; nothing is ever replaced by U+FFFD.

Per-row problems (wrong field count, stray character after a closing quote, an
over-long field, a quote still open at the end) are *yielded* as ``RowError`` and
reading goes on.  Header problems, encoding errors, limits and a row that never ends
reject the whole input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.readers._source import (
    Encoding,
    Line,
    MiB,
    Source,
    empty,
    open_lines,
)
from adapters.readers.errors import InputRejected, RowError, Text, Where, shown

__all__ = ["CsvOptions", "CsvRow", "read_csv"]

_ROWS = Text("rows", "数据行")


class CsvOptions(BaseModel):
    """How to read one CSV (or TSV, or ``|``-separated) feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Encoding | Literal["auto"] = Field(
        "auto",
        description="Text encoding.  'auto': UTF-8 if there is a UTF-8 BOM or the "
        "first 64 KiB are UTF-8, else GB18030 (a superset of GBK / GB2312).",
    )
    delimiter: str = Field(
        ",", min_length=1, max_length=1, description="Field separator, e.g. '\\t'."
    )
    quotechar: str | None = Field(
        '"',
        min_length=1,
        max_length=1,
        description="Quote character; a doubled quote inside quotes is one quote.  "
        "None turns quoting off: quotes are then ordinary characters.",
    )
    header_rows: int = Field(
        1, ge=0, le=10, description="Rows at the top that are headers, not data."
    )
    names_row: int = Field(
        1,
        ge=1,
        le=10,
        description="Which header row (1-based) holds the column names; the other "
        "header rows are checked for width and skipped.",
    )
    fieldnames: tuple[str, ...] | None = Field(
        None,
        description="Column names to use instead of a header row (required when "
        "header_rows is 0).",
    )
    skip_blank_lines: bool = Field(
        default=True, description="Ignore empty lines (not reported as ragged)."
    )
    max_input_bytes: int = Field(256 * MiB, ge=1, description="Input size limit.")
    max_rows: int = Field(5_000_000, ge=1, description="Most data rows accepted.")
    max_columns: int = Field(1000, ge=1, description="Most columns in the header.")
    max_row_bytes: int = Field(
        4 * MiB,
        ge=1,
        description="Longest row, in bytes; a longer one (usually an unclosed "
        "quote) rejects the input.",
    )
    max_field_chars: int = Field(
        1 * MiB, ge=1, description="Longest field; a longer one is a row error."
    )

    @model_validator(mode="after")
    def _check(self) -> CsvOptions:
        if self.delimiter in "\r\n" or self.quotechar in ("\r", "\n"):
            raise ValueError("delimiter and quotechar cannot be line breaks")
        if self.quotechar == self.delimiter:
            raise ValueError("quotechar and delimiter must differ")
        if self.fieldnames is None:
            if self.header_rows == 0:
                raise ValueError("fieldnames are required when header_rows is 0")
            if self.names_row > self.header_rows:
                raise ValueError("names_row is beyond header_rows")
        elif len(set(self.fieldnames)) != len(self.fieldnames):
            raise ValueError("fieldnames must be unique")
        return self


class CsvRow(NamedTuple):
    """One data row, by column name."""

    fields: dict[str, str]
    row: int
    """Data row number, 1-based; header rows and skipped blank lines not counted."""
    line: int
    """Physical line where the row starts, 1-based."""
    offset: int
    """Byte offset of the row's first byte."""

    @property
    def locator(self) -> str:
        return Where(row=self.row, line=self.line, offset=self.offset).en()


@dataclass(slots=True)
class _Raw:
    fields: list[str]
    line: int
    offset: int
    size: int
    quoted: bool
    error: tuple[str, dict[str, object]] | None


class _Splitter:
    """Splits decoded lines into fields; a quoted field may span lines."""

    def __init__(self, delimiter: str, quote: str | None) -> None:
        self.d = delimiter
        self.q = quote
        self.fields: list[str] = []
        self.parts: list[str] = []
        self.in_quotes = False
        self.quoted = False
        self.error: tuple[str, dict[str, object]] | None = None

    def take(self) -> tuple[list[str], bool, tuple[str, dict[str, object]] | None]:
        fields, quoted, error = self.fields, self.quoted, self.error
        self.fields, self.quoted, self.error = [], False, None
        return fields, quoted, error

    def _end_field(self) -> None:
        self.fields.append("".join(self.parts))
        self.parts.clear()

    def line(self, text: str) -> bool:
        """Consume one line; True when it completes the row."""
        d, q = self.d, self.q
        if q is None or (not self.in_quotes and q not in text):
            self.fields.extend(text.split(d))
            return True
        pos, n = 0, len(text)
        parts = self.parts
        while True:
            if not self.in_quotes:
                if text.startswith(q, pos):
                    self.in_quotes = self.quoted = True
                    pos += 1
                else:
                    end = text.find(d, pos)
                    if end < 0:
                        parts.append(text[pos:])
                        self._end_field()
                        return True
                    parts.append(text[pos:end])
                    self._end_field()
                    pos = end + 1
                    continue
            end = text.find(q, pos)
            if end < 0:
                parts.append(text[pos:])
                parts.append("\n")  # the line break belongs to the field
                return False
            parts.append(text[pos:end])
            pos = end + 1
            if text.startswith(q, pos):
                parts.append(q)
                pos += 1
                continue
            self.in_quotes = False
            if pos == n:
                self._end_field()
                return True
            if text.startswith(d, pos):
                self._end_field()
                pos += 1
                continue
            if self.error is None:
                self.error = (
                    "E_CSV_QUOTE",
                    {"shown": shown(text[pos]), "field": len(self.fields) + 1},
                )
            # Keep the rest of the line in this field; the row is reported anyway.
            parts.append(text[pos:])
            self._end_field()
            return True


def _raw_rows(source: Source, opts: CsvOptions) -> Iterator[_Raw | RowError]:
    _, lines = open_lines(
        source,
        encoding=opts.encoding,
        max_input_bytes=opts.max_input_bytes,
        max_line_bytes=opts.max_row_bytes,
        thing=_ROWS,
    )
    splitter = _Splitter(opts.delimiter, opts.quotechar)
    start: Line | None = None
    row_bytes = 0
    for line in lines:
        if not isinstance(line, Line):
            raise InputRejected.make(
                "E_CSV_ROW_TOO_LARGE",
                Where(line=line.number, offset=line.offset),
                limit=opts.max_row_bytes,
            )
        if start is None:
            start, row_bytes = line, 0
        row_bytes += len(line.raw) + 1
        if row_bytes > opts.max_row_bytes:
            raise InputRejected.make(
                "E_CSV_ROW_TOO_LARGE",
                Where(line=start.number, offset=start.offset),
                limit=opts.max_row_bytes,
            )
        if splitter.line(line.text):
            fields, quoted, error = splitter.take()
            yield _Raw(fields, start.number, start.offset, row_bytes, quoted, error)
            start = None
    if start is not None:
        yield RowError.make(
            "E_CSV_UNTERMINATED", Where(line=start.number, offset=start.offset)
        )


def _header(opts: CsvOptions, headers: list[_Raw]) -> tuple[str, ...]:
    names = opts.fieldnames
    if names is None:
        names = tuple(headers[opts.names_row - 1].fields)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raw = headers[opts.names_row - 1]
                raise InputRejected.make(
                    "E_CSV_HEADER/duplicate",
                    Where(line=raw.line, offset=raw.offset),
                    name=shown(name),
                )
            seen.add(name)
    if len(names) > opts.max_columns:
        raise InputRejected.make(
            "E_CSV_HEADER/width",
            Where(line=headers[0].line if headers else None),
            row=opts.names_row,
            got=len(names),
            expected=f"<= {opts.max_columns}",
        )
    for number, raw in enumerate(headers, 1):
        if raw.error is not None:
            raise InputRejected.make(
                "E_CSV_HEADER/bad",
                Where(line=raw.line, offset=raw.offset),
                row=number,
                detail=raw.error[0],
            )
        if len(raw.fields) != len(names):
            raise InputRejected.make(
                "E_CSV_HEADER/width",
                Where(line=raw.line, offset=raw.offset),
                row=number,
                got=len(raw.fields),
                expected=len(names),
            )
    return names


def read_csv(
    source: Source, options: CsvOptions | None = None
) -> Iterator[CsvRow | RowError]:
    """Yield each data row as a ``CsvRow``, or a ``RowError`` for a bad row.

    Raises ``InputRejected`` (``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_CSV_HEADER``, ``E_CSV_ROW_TOO_LARGE``, ``E_TOO_MANY_ROWS``).
    """
    opts = options or CsvOptions()
    headers: list[_Raw] = []
    names: tuple[str, ...] | None = None if opts.header_rows else opts.fieldnames
    number = 0
    anything = False
    for raw in _raw_rows(source, opts):
        if isinstance(raw, RowError):
            if names is None:
                raise InputRejected.make(
                    "E_CSV_HEADER/bad",
                    Where(line=raw.line, offset=raw.offset),
                    row=len(headers) + 1,
                    detail=raw.code,
                )
            anything = True
            yield raw
            continue
        if opts.skip_blank_lines and raw.fields == [""] and not raw.quoted:
            continue
        anything = True
        if names is None:
            headers.append(raw)
            if len(headers) == opts.header_rows:
                names = _header(opts, headers)
            continue
        number += 1
        if number > opts.max_rows:
            raise InputRejected.make(
                "E_TOO_MANY_ROWS",
                Where(row=number, line=raw.line, offset=raw.offset),
                limit=opts.max_rows,
                thing=_ROWS,
            )
        limit = opts.max_field_chars
        if raw.error is None and len(raw.fields) == len(names):
            long = 0
            if raw.size > limit:  # otherwise no field can be too long
                long = next(
                    (i for i, f in enumerate(raw.fields, 1) if len(f) > limit), 0
                )
            if not long:
                fields = dict(zip(names, raw.fields, strict=True))
                yield CsvRow(fields, number, raw.line, raw.offset)
                continue
            where = Where(row=number, line=raw.line, offset=raw.offset)
            yield RowError.make("E_CSV_FIELD_TOO_LONG", where, field=long, limit=limit)
            continue
        where = Where(row=number, line=raw.line, offset=raw.offset)
        if raw.error is not None:
            yield RowError.make(raw.error[0], where, **raw.error[1])
        else:
            yield RowError.make(
                "E_CSV_RAGGED", where, got=len(raw.fields), expected=len(names)
            )
    if names is None:
        if headers:
            raise InputRejected.make(
                "E_CSV_HEADER/missing",
                Where(line=headers[-1].line + 1),
                row=len(headers) + 1,
                rows=len(headers),
            )
        raise empty(_ROWS)
    if not anything:
        raise empty(_ROWS)
