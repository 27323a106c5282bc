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

import csv
from collections.abc import Iterator
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
        128 * 1024,
        ge=1,
        description="Longest field; a longer one is a row error.  With quoting on, a "
        "quoted field longer than csv.field_size_limit() (128 KiB unless changed) "
        "rejects the input: the rows after it cannot be found.",
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


class _Row(NamedTuple):
    """One row as split, before it is checked against the header."""

    fields: list[str] | None  # None when the row could not be split
    line: int
    offset: int
    size: int  # bytes, line breaks included
    error: tuple[str, dict[str, object]] | None = None


def _too_large(line: Line | LongLine, opts: CsvOptions) -> InputRejected:
    return InputRejected.make(
        "E_CSV_ROW_TOO_LARGE",
        Where(line=line.number, offset=line.offset),
        limit=opts.max_row_bytes,
    )


def _plain_rows(lines: Iterator[Line | LongLine], opts: CsvOptions) -> Iterator[_Row]:
    """Quoting off: every line is a row, split on the delimiter."""
    delimiter = opts.delimiter
    for line in lines:
        if not isinstance(line, Line):
            raise _too_large(line, opts)
        text = line.text
        yield _Row(
            text.split(delimiter) if text else [],
            line.number,
            line.offset,
            len(line.raw) + 1,
        )


def _quoted_rows(lines: Iterator[Line | LongLine], opts: CsvOptions) -> Iterator[_Row]:
    """Quoting on: the standard library's C splitter, fed with our decoded lines."""
    row_lines: list[Line] = []  # the lines of the row being read
    size = 0

    def feed() -> Iterator[str]:
        nonlocal size
        for line in lines:
            if not isinstance(line, Line):
                raise _too_large(line, opts)
            row_lines.append(line)
            size += len(line.raw) + 1
            if size > opts.max_row_bytes:  # bounds memory whatever csv's limits
                raise _too_large(row_lines[0], opts)
            yield line.text + "\n"  # a quoted line break is LF, as in XML

    reader = csv.reader(
        feed(),
        delimiter=opts.delimiter,
        quotechar=opts.quotechar,
        doublequote=True,
        skipinitialspace=False,
        strict=True,  # "a"b is an error, not a guess
    )
    while True:
        row_lines.clear()
        size = 0
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            first = row_lines[0]
            message = str(exc)
            if "field limit" in message:
                # The splitter gave up inside a field: where the next row starts
                # is unknown, so nothing after this point can be trusted.
                raise InputRejected.make(
                    "E_CSV_FIELD_TOO_LONG/input",
                    Where(line=first.number, offset=first.offset),
                    limit=csv.field_size_limit(),
                ) from None
            if "unexpected end of data" in message:
                error: tuple[str, dict[str, object]] = ("E_CSV_UNTERMINATED", {})
            else:
                error = ("E_CSV_QUOTE", {"detail": message})
            yield _Row(None, first.number, first.offset, size, error)
            continue
        first = row_lines[0]
        yield _Row(fields, first.number, first.offset, size)


def _header(opts: CsvOptions, headers: list[_Row]) -> tuple[str, ...]:
    names = opts.fieldnames
    for number, raw in enumerate(headers, 1):
        if raw.fields is None:
            raise InputRejected.make(
                "E_CSV_HEADER/bad",
                Where(line=raw.line, offset=raw.offset),
                row=number,
                detail=raw.error[0] if raw.error else "",
            )
    if names is None:
        raw = headers[opts.names_row - 1]
        names = tuple(raw.fields or ())
        seen: set[str] = set()
        for name in names:
            if name in seen:
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
        if len(raw.fields or ()) != len(names):
            raise InputRejected.make(
                "E_CSV_HEADER/width",
                Where(line=raw.line, offset=raw.offset),
                row=number,
                got=len(raw.fields or ()),
                expected=len(names),
            )
    return names


def read_csv(
    source: Source, options: CsvOptions | None = None
) -> Iterator[CsvRow | RowError]:
    """Yield each data row as a ``CsvRow``, or a ``RowError`` for a bad row.

    Raises ``InputRejected`` (``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_CSV_HEADER``, ``E_CSV_ROW_TOO_LARGE``,
    ``E_CSV_FIELD_TOO_LONG``, ``E_TOO_MANY_ROWS``).
    """
    opts = options or CsvOptions()
    _, lines = open_lines(
        source,
        encoding=opts.encoding,
        max_input_bytes=opts.max_input_bytes,
        max_line_bytes=opts.max_row_bytes,
        thing=_ROWS,
    )
    split = _plain_rows if opts.quotechar is None else _quoted_rows
    headers: list[_Row] = []
    names: tuple[str, ...] | None = None if opts.header_rows else opts.fieldnames
    limit = opts.max_field_chars
    number = 0
    anything = False
    for fields, line, offset, size, error in split(lines, opts):
        if fields == []:  # a blank line
            if opts.skip_blank_lines:
                continue
            fields = [""]
        anything = True
        if names is None:
            headers.append(_Row(fields, line, offset, size, error))
            if len(headers) == opts.header_rows:
                names = _header(opts, headers)
            continue
        number += 1
        if number > opts.max_rows:
            raise InputRejected.make(
                "E_TOO_MANY_ROWS",
                Where(row=number, line=line, offset=offset),
                limit=opts.max_rows,
                thing=_ROWS,
            )
        if fields is not None and len(fields) == len(names):
            long = 0
            if size > limit:  # otherwise no field can be too long
                long = next((i for i, f in enumerate(fields, 1) if len(f) > limit), 0)
            if not long:
                yield CsvRow(
                    dict(zip(names, fields, strict=True)), number, line, offset
                )
                continue
            where = Where(row=number, line=line, offset=offset)
            yield RowError.make("E_CSV_FIELD_TOO_LONG", where, field=long, limit=limit)
            continue
        where = Where(row=number, line=line, offset=offset)
        if fields is None:
            key, details = error or ("E_CSV_QUOTE", {"detail": ""})
            yield RowError.make(key, where, **details)
        else:
            yield RowError.make(
                "E_CSV_RAGGED", where, got=len(fields), expected=len(names)
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
