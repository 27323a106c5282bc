"""JSON and JSON Lines readers: exact numbers, no duplicate keys, bounded depth.

Every number becomes a ``Decimal`` built from its exact text (``91.3624`` stays
``Decimal('91.3624')``, epoch milliseconds stay integers-as-Decimal): the mapping
layer decides what a number means.  ``NaN`` / ``Infinity``, duplicate keys, lone
surrogate escapes, over-long numbers and nesting deeper than the limit are refused.

* ``read_jsonl``: one value per line.  A bad line is *yielded* as ``RowError`` and
  reading goes on; only encoding errors and limits reject the whole input.
* ``read_json``: one document.  A top-level array is streamed element by element
  (locator: JSON pointer ``/0``, ``/1`` ...); any other value is one item.  Any
  problem rejects the whole document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import NamedTuple, TypeAlias

from adapters.readers._source import (
    UTF8_BOM,
    Line,
    Source,
    StreamDecoder,
    bom_error,
    codec_for,
    empty,
    foreign_bom,
    iter_chunks,
    open_lines,
    peek,
)
from adapters.readers.errors import InputRejected, RowError, Text, Where, shown
from adapters.readers.json_options import JsonOptions

__all__ = ["JsonItem", "JsonOptions", "JsonValue", "read_json", "read_jsonl"]

JsonValue: TypeAlias = (
    bool | str | Decimal | list["JsonValue"] | dict[str, "JsonValue"] | None
)

_LINES = Text("JSON values", "JSON 数据")
_WS = " \t\r\n"
_SURROGATES = (chr(0xD800), chr(0xDFFF))  # as chr(): mypyc refuses such literals
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")


class JsonItem(NamedTuple):
    """One parsed value with where it came from."""

    value: JsonValue
    pointer: str
    """JSON pointer of the value in its document; "" for a whole line or document."""
    line: int
    """Line where the value starts, 1-based."""
    offset: int
    """Byte offset where the value starts."""

    @property
    def locator(self) -> str:
        return Where(path=self.pointer or None, line=self.line, offset=self.offset).en()


class _Problem(Exception):
    """Raised inside the json hooks; becomes a RowError / InputRejected."""

    def __init__(self, key: str, **fields: object) -> None:
        super().__init__(key)
        self.key = key
        self.fields = fields


def _object(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Problem("E_JSON_DUPLICATE_KEY", shown=shown(key))
            seen.add(key)
    return result


def _constant(name: str) -> JsonValue:
    raise _Problem("E_JSON_SYNTAX/constant", shown=name)


def _number_parser(limit: int) -> Callable[[str], Decimal]:
    def number(text: str) -> Decimal:
        if len(text) > limit:
            raise _Problem("E_JSON_NUMBER", shown=shown(text), limit=limit)
        try:
            return Decimal(text)
        except InvalidOperation:
            raise _Problem("E_JSON_NUMBER/range", shown=shown(text)) from None

    return number


def _decoder(opts: JsonOptions) -> json.JSONDecoder:
    number = _number_parser(opts.max_number_chars)
    return json.JSONDecoder(
        object_pairs_hook=_object,
        parse_float=number,
        parse_int=number,
        parse_constant=_constant,
        strict=True,  # no raw control characters inside strings
    )


def _kind(value: JsonValue) -> Text:
    if isinstance(value, list):
        return Text("an array", "数组")
    if isinstance(value, str):
        return Text("a string", "字符串")
    if isinstance(value, bool):
        return Text("a boolean", "布尔值")
    if isinstance(value, Decimal):
        return Text("a number", "数字")
    return Text("null", "null")


def _inspect(value: JsonValue, text: str, opts: JsonOptions) -> _Problem | None:
    """Depth, lone surrogates and object-ness of one parsed value.

    ``text`` is the value's source: the walk only runs when it could find something.
    """
    if opts.require_object and not isinstance(value, dict):
        return _Problem("E_JSON_NOT_OBJECT", kind=_kind(value))
    deep = text.count("[") + text.count("{") > opts.max_depth
    surrogates = "\\ud" in text or "\\uD" in text
    if not (deep or surrogates):
        return None
    stack: list[tuple[JsonValue, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > opts.max_depth:
                return _Problem("E_JSON_DEPTH", limit=opts.max_depth)
            children = (
                list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            )
            for key, child in children:
                if isinstance(key, str):
                    stack.append((key, depth))
                stack.append((child, depth + 1))
        elif isinstance(item, str) and surrogates:
            lone = next(
                (c for c in item if _SURROGATES[0] <= c <= _SURROGATES[1]), None
            )
            if lone is not None:
                return _Problem("E_JSON_STRING", shown=f"\\u{ord(lone):04x}")
    return None


def _where(line: Line) -> Where:
    """Where a line is; made only for a message (a frozen dataclass is not free)."""
    return Where(line=line.number, offset=line.offset)


def read_jsonl(
    source: Source, options: JsonOptions | None = None
) -> Iterator[JsonItem | RowError]:
    """Yield one ``JsonItem`` per non-blank line, or a ``RowError`` for a bad line.

    Raises ``InputRejected`` (``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_TOO_MANY_ROWS``).
    """
    opts = options or JsonOptions()
    codec, lines = open_lines(
        source,
        encoding=opts.encoding,
        max_input_bytes=opts.max_input_bytes,
        max_line_bytes=opts.max_item_bytes,
        thing=_LINES,
    )
    decoder = _decoder(opts)
    count = 0
    for line in lines:
        if not isinstance(line, Line):
            where = Where(line=line.number, offset=line.offset)
            yield RowError.make("E_LINE_TOO_LONG", where, limit=opts.max_item_bytes)
            count += 1
            continue
        text = line.text
        # A value starts with "{" as a rule: only a line that starts with white
        # space can be blank (strip copies the line).
        if not text or (text[0] in _WS and not text.strip(_WS)):
            continue
        count += 1
        if count > opts.max_items:
            raise InputRejected.make(
                "E_TOO_MANY_ROWS", _where(line), limit=opts.max_items, thing=_LINES
            )
        try:
            value = decoder.decode(text)
        except json.JSONDecodeError as exc:
            at = Where(
                line=line.number,
                column=exc.colno,
                offset=line.offset + len(text[: exc.pos].encode(codec)),
            )
            yield RowError.make("E_JSON_SYNTAX", at, detail=exc.msg)
            continue
        except _Problem as problem:
            yield RowError.make(problem.key, _where(line), **problem.fields)
            continue
        except RecursionError:
            yield RowError.make("E_JSON_DEPTH", _where(line), limit=opts.max_depth)
            continue
        found = _inspect(value, text, opts)
        if found is not None:
            yield RowError.make(found.key, _where(line), **found.fields)
            continue
        yield JsonItem(value, "", line.number, line.offset)
    if count == 0:
        raise empty(_LINES)


class _Buffer:
    """Decoded text with a moving window, knowing line and byte offset of a mark."""

    def __init__(self, chunks: Iterator[bytes], decoder: StreamDecoder) -> None:
        self.chunks = chunks
        self.decoder = decoder
        self.text = ""
        self.pos = 0
        self.eof = False
        self.mark = 0  # index in text whose line / byte offset are known
        self.line = 1
        self.offset = 0

    def more(self, need: int = 0) -> bool:
        """Read at least one more chunk, and on until ``need`` characters follow
        pos (or the input ends); what lies before pos is dropped.  False at the end.
        """
        if self.eof:
            return False
        self.advance(self.pos)
        parts = [self.text[self.pos :]]
        have = len(parts[0])
        while True:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.eof = True
                parts.append(self.decoder.decode(b"", final=True))
                break
            parts.append(self.decoder.decode(chunk))
            have += len(parts[-1])
            if have >= need:
                break
        self.text = "".join(parts)  # one join: no quadratic re-copying
        self.mark = self.pos = 0
        return True

    def advance(self, index: int) -> None:
        """Move the mark forward to ``index``."""
        self.line += self.text.count("\n", self.mark, index)
        self.offset += len(self.text[self.mark : index].encode(self.decoder.codec))
        self.mark = index

    def where(self, index: int, path: str | None = None) -> Where:
        line = self.line + self.text.count("\n", self.mark, index)
        piece = self.text[self.mark : index]
        offset = self.offset + len(piece.encode(self.decoder.codec))
        return Where(path=path, line=line, offset=offset)

    def skip_space(self) -> bool:
        """Move pos to the next non-space character; False at the end of input."""
        while True:
            text, n = self.text, len(self.text)
            while self.pos < n and text[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return True
            if not self.more():
                return False


def _syntax(buf: _Buffer, index: int, detail: str, path: str | None) -> InputRejected:
    return InputRejected.make("E_JSON_SYNTAX", buf.where(index, path), detail=detail)


def _value(
    buf: _Buffer, decoder: json.JSONDecoder, opts: JsonOptions, path: str | None
) -> tuple[JsonValue, int]:
    """Parse the value starting at buf.pos, reading more input as needed."""
    while True:
        start = buf.pos
        try:
            value, end = decoder.raw_decode(buf.text, start)
        except json.JSONDecodeError as exc:
            if buf.eof:
                raise _syntax(buf, exc.pos, exc.msg, path) from None
            if len(buf.text) - start > opts.max_item_bytes:
                raise InputRejected.make(
                    "E_JSON_ITEM_TOO_LARGE",
                    buf.where(start, path),
                    limit=opts.max_item_bytes,
                ) from None
            # Maybe just incomplete: read twice as much (never past the limit), retry.
            have = len(buf.text) - start
            buf.more(min(2 * have, opts.max_item_bytes + 1))
            continue
        except _Problem as problem:
            raise InputRejected.make(
                problem.key, buf.where(start, path), **problem.fields
            ) from None
        except RecursionError:
            raise InputRejected.make(
                "E_JSON_DEPTH", buf.where(start, path), limit=opts.max_depth
            ) from None
        if (
            isinstance(value, Decimal)
            and not buf.eof
            and _NUMBER_TAIL.fullmatch(buf.text, end)
        ):
            buf.more()  # "12" | "34", "2.5" | "e10": the number may go on
            continue
        limit = opts.max_item_bytes
        if end - start > limit:
            raise InputRejected.make(
                "E_JSON_ITEM_TOO_LARGE", buf.where(start, path), limit=limit
            )
        found = _inspect(value, buf.text[start:end], opts)
        if found is not None:
            raise InputRejected.make(found.key, buf.where(start, path), **found.fields)
        return value, end


def read_json(source: Source, options: JsonOptions | None = None) -> Iterator[JsonItem]:
    """Yield the elements of a top-level array one by one, or the single top-level
    value.

    Raises ``InputRejected`` (``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_JSON_*``, ``E_TOO_MANY_ROWS``).
    """
    opts = options or JsonOptions()
    codec = codec_for(opts.encoding)
    chunks = iter_chunks(source, opts.max_input_bytes)
    head, chunks = peek(chunks, 4)
    if not head:
        raise empty(_LINES)
    bom = foreign_bom(head)
    if bom is not None:
        raise bom_error(bom, opts.encoding)
    skip = 0
    if head.startswith(UTF8_BOM):
        if codec != "utf-8":
            raise bom_error("UTF-8", opts.encoding)
        skip = len(UTF8_BOM)
    first = next(chunks)[skip:]
    decoder = StreamDecoder(codec, skip)
    buf = _Buffer(chunks, decoder)
    buf.text = decoder.decode(first)
    buf.offset = skip
    json_decoder = _decoder(opts)
    if not buf.skip_space():
        raise empty(_LINES)
    if buf.text[buf.pos] != "[":
        limit = opts.max_item_bytes
        while buf.more(limit + 1):
            if len(buf.text) - buf.pos > limit:
                raise InputRejected.make(
                    "E_JSON_ITEM_TOO_LARGE", buf.where(buf.pos), limit=limit
                )
        where = buf.where(buf.pos)
        value, end = _value(buf, json_decoder, opts, None)
        buf.pos = end
        if buf.skip_space():
            raise _syntax(buf, buf.pos, "Extra data", None)
        yield JsonItem(value, "", where.line or 1, where.offset or 0)
        return
    buf.pos += 1
    index = 0
    if not buf.skip_space():
        raise _syntax(buf, buf.pos, "Unterminated array", None)
    if buf.text[buf.pos] == "]":
        buf.pos += 1
    else:
        while True:
            pointer = f"/{index}"
            if index >= opts.max_items:
                raise InputRejected.make(
                    "E_TOO_MANY_ROWS",
                    buf.where(buf.pos, pointer),
                    limit=opts.max_items,
                    thing=_LINES,
                )
            value, end = _value(buf, json_decoder, opts, pointer)
            buf.advance(buf.pos)
            line, offset = buf.line, buf.offset
            buf.pos = end
            yield JsonItem(value, pointer, line, offset)
            index += 1
            if not buf.skip_space():
                raise _syntax(buf, buf.pos, "Expecting ',' or ']'", None)
            char = buf.text[buf.pos]
            buf.pos += 1
            if char == "]":
                break
            if char != "," or not buf.skip_space():
                raise _syntax(buf, buf.pos - 1, "Expecting ',' or ']'", None)
            if buf.text[buf.pos] == "]":
                raise _syntax(buf, buf.pos, "Expecting value (trailing comma)", None)
    if buf.skip_space():
        raise _syntax(buf, buf.pos, "Extra data after the array", None)
