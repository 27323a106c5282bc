"""Private plumbing shared by the readers: chunked input with a size limit,
strict decoding that reports bad bytes by offset, and line splitting.

Nothing here opens a file or a socket: input is bytes or an object with ``read``.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Literal, NamedTuple, Protocol, TypeAlias

from adapters.readers.errors import InputRejected, Text, Where, shown

CHUNK_BYTES = 64 * 1024
"""How much is read, decoded and parsed at a time."""

MiB = 1024 * 1024

Encoding: TypeAlias = Literal["utf-8", "gbk", "gb18030", "gb2312"]
"""Encodings a reader accepts.  GB2312 is decoded as GBK, its superset: exporters
label GBK text as GB2312 all the time, and browsers (WHATWG) do the same."""

ENCODINGS: tuple[Encoding, ...] = ("utf-8", "gbk", "gb18030", "gb2312")

_CODECS: dict[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "gbk": "gbk",
    "cp936": "gbk",
    "ms936": "gbk",
    "windows-936": "gbk",
    "x-gbk": "gbk",
    "gb2312": "gbk",
    "gb_2312": "gbk",
    "gb_2312-80": "gbk",
    "csgb2312": "gbk",
    "euc-cn": "gbk",
    "gb18030": "gb18030",
}
_FAMILY: dict[str, Encoding] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "gb18030": "gb18030",
    "gb2312": "gb2312",
    "gb_2312": "gb2312",
    "gb_2312-80": "gb2312",
    "csgb2312": "gb2312",
    "euc-cn": "gb2312",
}

UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)


class BinarySource(Protocol):
    """Anything with a binary ``read(size)``: an open file, ``io.BytesIO``, a socket
    file, a spool blob reader."""

    def read(self, size: int, /) -> bytes: ...


Source: TypeAlias = bytes | bytearray | memoryview | BinarySource
"""What every reader accepts: the whole input, or a binary file object."""


def codec_of(label: str) -> tuple[str, Encoding] | None:
    """Python codec and accepted-encoding family for an encoding label."""
    key = label.strip().lower()
    codec = _CODECS.get(key)
    if codec is None:
        return None
    return codec, _FAMILY.get(key, "gbk")


def codec_for(encoding: Encoding) -> str:
    """Python codec for one of our encoding names."""
    return _CODECS[encoding]


def iter_chunks(source: Source, max_bytes: int) -> Iterator[bytes]:
    """The input in chunks; ``InputRejected`` as soon as it exceeds ``max_bytes``."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        if view.nbytes > max_bytes:
            raise InputRejected.make(
                "E_TOO_LARGE", Where(offset=max_bytes), limit=max_bytes
            )
        for start in range(0, view.nbytes, CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])
        return
    total = 0
    while True:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("readers need a binary file object (read() gave str)")
        total += len(chunk)
        if total > max_bytes:
            raise InputRejected.make(
                "E_TOO_LARGE", Where(offset=max_bytes), limit=max_bytes
            )
        yield bytes(chunk)


def peek(chunks: Iterator[bytes], size: int) -> tuple[bytes, Iterator[bytes]]:
    """At least ``size`` leading bytes (fewer only at the end of input), and an
    iterator that still yields everything."""
    parts: list[bytes] = []
    have = 0
    for chunk in chunks:
        parts.append(chunk)
        have += len(chunk)
        if have >= size:
            break
    head = b"".join(parts)
    return head, chain([head], chunks)


def foreign_bom(head: bytes) -> str | None:
    """Name of a UTF-16/UTF-32 byte-order mark at the start, if any."""
    for bom, name in _OTHER_BOMS:
        if head.startswith(bom):
            return name
    return None


def check_text(
    text: str, raw: bytes, offset: int, codec: str, line: int | None
) -> None:
    """Refuse NUL (binary data) and U+FFFD (data already lost upstream).

    ``raw`` are the bytes ``text`` was decoded from, starting at ``offset`` on line
    ``line`` (None: line numbers are not tracked).
    """
    if "\x00" in text:
        # NUL is never part of a multi-byte character in the accepted encodings.
        at = raw.index(b"\x00")
        where = Where(line=_line_at(raw, at, line), offset=offset + at)
        raise InputRejected.make("E_BINARY", where, encoding=codec.upper())
    index = text.find("\ufffd")
    if index >= 0:
        at = len(text[:index].encode(codec))
        where = Where(line=_line_at(raw, at, line), offset=offset + at)
        raise InputRejected.make("E_ENCODING/replacement", where)


def _line_at(raw: bytes, at: int, line: int | None) -> int | None:
    return None if line is None else line + raw.count(b"\n", 0, at)


def decode_error(
    exc: UnicodeDecodeError, data: bytes, offset: int, codec: str, line: int | None
) -> InputRejected:
    """``InputRejected`` for a strict-decoding failure of ``data`` at ``offset``.

    A NUL or U+FFFD before the bad bytes is reported instead: the first problem
    wins, however the input was cut into chunks.
    """
    valid = data[: exc.start]
    check_text(valid.decode(codec), valid, offset, codec, line)
    bad = data[exc.start : exc.start + 4]
    at = Where(line=_line_at(data, exc.start, line), offset=offset + exc.start)
    cut_short = any(word in exc.reason for word in ("end of data", "incomplete"))
    if cut_short and exc.end >= len(data):
        return InputRejected.make(
            "E_ENCODING/truncated", at, shown=shown(bad), encoding=codec.upper()
        )
    return InputRejected.make(
        "E_ENCODING/invalid", at, shown=shown(bad), encoding=codec.upper()
    )


class StreamDecoder:
    """Strict incremental decoding that knows the byte offset of every failure."""

    def __init__(self, codec: str, offset: int) -> None:
        self.codec = codec
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self._offset = offset

    def decode(self, data: bytes, *, final: bool = False) -> str:
        pending: bytes = self._decoder.getstate()[0]
        start = self._offset - len(pending)
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            raise self._locate(pending + data, start) from None
        self._offset += len(data)
        if text:
            left: bytes = self._decoder.getstate()[0]
            consumed = (pending + data)[: len(pending) + len(data) - len(left)]
            check_text(text, consumed, start, self.codec, None)
        return text

    def _locate(self, data: bytes, start: int) -> InputRejected:
        # Same algorithm, whole buffer at once: the first error is at the same place.
        try:
            data.decode(self.codec)
        except UnicodeDecodeError as exc:
            return decode_error(exc, data, start, self.codec, None)
        return InputRejected.make(  # pragma: no cover - the decoders agree
            "E_ENCODING/invalid",
            Where(offset=start),
            shown=shown(data[:4]),
            encoding=self.codec.upper(),
        )


def detect(head: bytes, *, at_end: bool) -> str:
    """UTF-8 if ``head`` (the first bytes) is UTF-8, else GB18030 if it is that.

    A later byte that does not fit is reported where it is; nothing is guessed twice.
    """
    for codec in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(codec)("strict").decode(head, at_end)
        except UnicodeDecodeError:
            continue
        return codec
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = head[exc.start : exc.start + 4]
        raise InputRejected.make(
            "E_ENCODING/undetected", Where(offset=exc.start), shown=shown(bad)
        ) from None
    return "utf-8"  # pragma: no cover - unreachable: head decoded above


class Line(NamedTuple):  # a tuple: millions are made, and cheaply
    """One physical line without its LF / CRLF terminator, strictly decoded."""

    raw: bytes
    text: str
    number: int
    offset: int


class LongLine(NamedTuple):
    """A line over the limit; its bytes were skipped, never held in memory."""

    number: int
    offset: int


def _block(
    block: bytes, offset: int, number: int, codec: str, max_line_bytes: int
) -> Iterator[Line | LongLine]:
    """The lines of ``block`` (complete lines joined by LF), decoded in one go."""
    try:
        text = block.decode(codec)
    except UnicodeDecodeError as exc:
        raise decode_error(exc, block, offset, codec, number) from None
    check_text(text, block, offset, codec, number)
    # LF is one byte and one character in every accepted encoding: the splits agree.
    for raw, line in zip(block.split(b"\n"), text.split("\n"), strict=True):
        size = len(raw) + 1
        if raw.endswith(b"\r"):
            raw, line = raw[:-1], line[:-1]
        if len(raw) > max_line_bytes:
            yield LongLine(number, offset)
        else:
            yield Line(raw, line, number, offset)
        number += 1
        offset += size


def iter_lines(
    chunks: Iterable[bytes], offset: int, max_line_bytes: int, codec: str
) -> Iterator[Line | LongLine]:
    """Split on LF (0x0A) and decode strictly.

    LF is never part of a multi-byte character in UTF-8, GBK or GB18030, so the
    bytes can be split before decoding.  A CR before the LF is dropped.  Memory
    stays within ``max_line_bytes`` plus one chunk: a longer line is skipped and
    reported as ``LongLine``.
    """
    pending: list[bytes] = []
    pending_size = 0
    number = 1
    skipping = False
    for data in chunks:
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                offset += len(data)
                continue
            skipping = False
            offset += cut + 1
            number += 1
            data = data[cut + 1 :]
        cut = data.rfind(b"\n")
        if cut >= 0:
            block = b"".join([*pending, data[:cut]]) if pending else data[:cut]
            yield from _block(block, offset, number, codec, max_line_bytes)
            number += block.count(b"\n") + 1
            offset += len(block) + 1
            data = data[cut + 1 :]
            pending, pending_size = [], 0
        if data:
            pending.append(data)
            pending_size += len(data)
        if pending_size > max_line_bytes + 1:
            yield LongLine(number, offset)
            skipping = True
            offset += pending_size
            pending, pending_size = [], 0
    if pending and not skipping:
        yield from _block(b"".join(pending), offset, number, codec, max_line_bytes)


def bom_error(bom: str, expected: str) -> InputRejected:
    return InputRejected.make(
        "E_ENCODING/bom", Where(offset=0), bom=bom, encoding=expected.upper()
    )


def empty(thing: Text) -> InputRejected:
    return InputRejected.make("E_EMPTY", Where(offset=0), thing=thing)


def _skip(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    for chunk in chunks:
        if size:
            chunk, size = chunk[size:], max(0, size - len(chunk))
        if chunk:
            yield chunk


def open_lines(
    source: Source,
    *,
    encoding: Encoding | Literal["auto"],
    max_input_bytes: int,
    max_line_bytes: int,
    thing: Text,
) -> tuple[str, Iterator[Line | LongLine]]:
    """Codec and physical lines of a line-oriented text input.

    ``encoding="auto"``: a UTF-8 BOM means UTF-8; otherwise the first 64 KiB decide
    between UTF-8 and GB18030 (a superset of GBK and GB2312).  A UTF-8 BOM is
    skipped; any other BOM, or a UTF-8 BOM on a GBK/GB18030 input, is refused.
    """
    chunks = iter_chunks(source, max_input_bytes)
    head, chunks = peek(chunks, CHUNK_BYTES)
    if not head:
        raise empty(thing)
    expected = "UTF-8 / GB18030" if encoding == "auto" else encoding
    bom = foreign_bom(head)
    if bom is not None:
        raise bom_error(bom, expected)
    skip = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
    if encoding == "auto":
        codec = "utf-8" if skip else detect(head, at_end=len(head) < CHUNK_BYTES)
    else:
        codec = codec_for(encoding)
        if skip and codec != "utf-8":
            raise bom_error("UTF-8", expected)
    return codec, iter_lines(_skip(chunks, skip), skip, max_line_bytes, codec)
