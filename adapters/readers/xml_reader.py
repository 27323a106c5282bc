"""Streaming, entity-safe XML reader (lxml pull parser).

Safety, in the order it is applied:

1. size limit while reading; UTF-16/32 byte-order marks refused;
2. the encoding comes from the BOM or the XML declaration and must be accepted
   (UTF-8, GBK, GB18030, GB2312); the bytes are decoded *strictly* by Python, so a bad
   byte is reported by offset and no U+FFFD ever reaches a record.  lxml then gets
   the text as UTF-8 with the encoding overridden;
3. the prolog is scanned before lxml sees a byte: any ``<!DOCTYPE`` is refused
   outright, so no DTD, entity or URL can ever be loaded or expanded;
4. lxml runs with ``resolve_entities=False, load_dtd=False, no_network=True`` and
   without ``huge_tree`` anyway, and the root is checked again for a DOCTYPE;
5. tag length (before lxml sees the tag), depth, distinct names, item size and
   item count are limited; finished elements are cleared and detached, so memory
   stays flat whatever the input size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from adapters.readers._source import (
    ENCODINGS,
    UTF8_BOM,
    Encoding,
    MiB,
    Source,
    StreamDecoder,
    codec_of,
    empty,
    foreign_bom,
    iter_chunks,
    peek,
)
from adapters.readers.errors import InputRejected, Text, Where, shown

__all__ = ["XmlItem", "XmlOptions", "read_xml"]

MAX_PROLOG_CHARS = 1 * MiB
_LIBXML2_MAX_DEPTH = 256  # libxml2's own hard limit without huge_tree

_DECLARATION = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:\"[^\"]*\"|'[^']*')"
    rb"[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:\"([^\"]*)\"|'([^']*)')"
)
_LABEL = re.compile(rb"[A-Za-z][A-Za-z0-9._:-]{0,39}")
_SPACE = re.compile(r"[ \t\r\n]*")
_POSITION_SUFFIX = re.compile(r", line \d+, column \d+$")


class XmlOptions(BaseModel):
    """How to read one XML feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_depth: int | None = Field(
        2,
        ge=1,
        le=200,
        description="Depth of the item elements (root = 1).  None: match by "
        "item_tags alone.",
    )
    item_tags: frozenset[str] | None = Field(
        None,
        description="Tags of the item elements, by namespace URI, never by prefix: "
        "'{urn:x}item', 'item' (no namespace) or '{*}item' (any namespace).  "
        "Items do not nest: a match inside an item is part of that item.",
    )
    encodings: frozenset[Encoding] = Field(
        frozenset(ENCODINGS),
        description="Encodings accepted in the XML declaration (no declaration "
        "means UTF-8).",
    )
    max_input_bytes: int = Field(
        256 * MiB, ge=1, description="Larger inputs are rejected while reading."
    )
    max_depth: int = Field(
        64, ge=1, le=200, description="Deepest element nesting accepted."
    )
    max_item_bytes: int = Field(
        16 * MiB,
        ge=1,
        description="Largest item accepted, in bytes of input (checked per 64 KiB).",
    )
    max_item_elements: int = Field(
        100_000, ge=1, description="Most elements in one item, the item included."
    )
    max_items: int = Field(1_000_000, ge=1, description="Most items in one document.")
    max_names: int = Field(
        10_000,
        ge=1,
        description="Most distinct element names in one document (each name is "
        "kept by the parser for the whole document).",
    )
    max_tag_chars: int = Field(
        256 * 1024,
        ge=1024,
        description="Longest tag (from '<' to '>'), checked before lxml sees it: a "
        "start tag with a million attributes costs gigabytes inside libxml2.",
    )

    @model_validator(mode="after")
    def _check(self) -> XmlOptions:
        if self.item_depth is None and not self.item_tags:
            raise ValueError("set item_depth, item_tags or both")
        if self.item_depth is not None and self.item_depth > self.max_depth:
            raise ValueError("item_depth is deeper than max_depth")
        return self


class XmlItem(NamedTuple):
    """One item element, complete with its subtree.

    ``element`` is cleared and detached when the next item is requested: take what
    you need before that.  Its open ancestors (and their attributes) stay reachable
    through ``getparent()``; siblings are not kept.
    """

    element: etree._Element
    line: int | None
    """Line of the item's start tag."""
    locator: str
    """XPath-like path with namespaces by URI: ``/Q{urn:x}root[1]/Q{urn:x}item[3]``."""

    @property
    def tag(self) -> str:
        """Tag in Clark notation, ``{uri}local``, or ``local`` without namespace."""
        return str(self.element.tag)

    @property
    def local_name(self) -> str:
        return self.tag.rpartition("}")[2]

    @property
    def namespace(self) -> str | None:
        return self.tag[1:].partition("}")[0] if self.tag.startswith("{") else None


def _line(element: etree._Element) -> int | None:
    line = getattr(element, "sourceline", None)  # the stubs leave it untyped
    return line if isinstance(line, int) else None


def _step(tag: str, position: int) -> str:
    if tag.startswith("{"):
        return f"/Q{tag}[{position}]"
    return f"/{tag}[{position}]"


@dataclass(slots=True)
class _Frame:
    tag: str
    position: int
    children: dict[str, int] = field(default_factory=dict)


class _Walk:
    """Turns pull-parser events into items, enforcing limits and dropping what is
    finished."""

    def __init__(self, options: XmlOptions) -> None:
        self.options = options
        self.frames: list[_Frame] = []
        self.top: dict[str, int] = {}
        self.depth = 0
        self.fed = 0
        self.item: etree._Element | None = None
        self.item_fed = 0
        self.item_elements = 0
        self.items = 0
        self.names: set[str] = set()
        tags = options.item_tags or frozenset()
        self.exact = frozenset(t for t in tags if not t.startswith("{*}"))
        self.any_ns = frozenset(t[3:] for t in tags if t.startswith("{*}"))

    def path(self) -> str:
        return "".join(_step(f.tag, f.position) for f in self.frames)

    def _matches(self, tag: str) -> bool:
        depth = self.options.item_depth
        if depth is not None and depth != self.depth:
            return False
        if self.options.item_tags is None:
            return True
        return tag in self.exact or tag.rpartition("}")[2] in self.any_ns

    def _check_item_bytes(self, line: int | None) -> None:
        if self.fed - self.item_fed > self.options.max_item_bytes:
            raise InputRejected.make(
                "E_XML_ITEM_TOO_LARGE/bytes",
                Where(path=self.path(), line=line),
                limit=self.options.max_item_bytes,
            )

    def events(self, parser: etree.XMLPullParser) -> Iterator[XmlItem]:
        for event, element in parser.read_events():
            if not isinstance(element, etree._Element):  # pragma: no cover
                continue  # only start/end are requested
            if event == "start":
                self._start(element)
                continue
            if self.item is not None and element is not self.item:
                self.depth -= 1  # end of an element inside the item
                continue
            if self.item is not None:
                line = _line(element)
                self._check_item_bytes(line)
                self.items += 1
                if self.items > self.options.max_items:
                    raise InputRejected.make(
                        "E_TOO_MANY_ROWS",
                        Where(path=self.path(), line=line),
                        limit=self.options.max_items,
                        thing=Text("items", "条目"),
                    )
                yield XmlItem(element, line, self.path())
                self.item = None
            self.frames.pop()
            self.depth -= 1
            # Finished: detach it (its tail goes with it) and free its subtree.
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)
                element.clear()  # keep_tail=False is the default

    def _start(self, element: etree._Element) -> None:
        self.depth += 1
        tag = str(element.tag)
        opts = self.options
        if self.item is not None:  # hot path: an element inside an item
            self.item_elements += 1
            if (
                self.item_elements <= opts.max_item_elements
                and self.fed - self.item_fed <= opts.max_item_bytes
                and self.depth <= opts.max_depth
                and tag in self.names
            ):
                return
        self._check(element, tag)
        if self.item is not None:
            return
        if self.depth == 1:
            doctype: object = getattr(element.getroottree().docinfo, "doctype", None)
            if doctype:  # unreachable after the prolog scan; kept as a second lock
                raise InputRejected.make("E_XML_DOCTYPE", Where(line=_line(element)))
        siblings = self.frames[-1].children if self.frames else self.top
        position = siblings.get(tag, 0) + 1
        siblings[tag] = position
        self.frames.append(_Frame(tag, position))
        if self._matches(tag):
            self.item = element
            self.item_fed = self.fed
            self.item_elements = 1

    def _check(self, element: etree._Element, tag: str) -> None:
        """The limits, checked one by one, with the error each one deserves."""
        opts = self.options
        line = _line(element)
        if tag not in self.names:
            if len(self.names) >= opts.max_names:
                raise InputRejected.make(
                    "E_XML_TOO_MANY_NAMES",
                    Where(path=self.path() or None, line=line),
                    limit=opts.max_names,
                )
            self.names.add(tag)
        if self.depth > opts.max_depth:
            raise InputRejected.make(
                "E_XML_DEPTH",
                Where(path=self.path() or None, line=line),
                limit=opts.max_depth,
            )
        if self.item is not None:
            if self.item_elements > opts.max_item_elements:
                raise InputRejected.make(
                    "E_XML_ITEM_TOO_LARGE/elements",
                    Where(path=self.path(), line=line),
                    limit=opts.max_item_elements,
                )
            self._check_item_bytes(line)


class _TagGuard:
    """Refuses a tag longer than the limit before lxml buffers and parses it.

    It watches the last unclosed '<' of the text fed so far.  A '>' inside an
    attribute value can only make it see a tag as shorter; a '<' inside CDATA or a
    comment as longer, which needs that many characters without any '>'.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.fed = 0
        self.lines = 1
        self.open_at: int | None = None
        self.open_line = 1

    def check(self, text: str) -> None:
        close = text.rfind(">")
        if close >= 0:
            self.open_at = None
        if self.open_at is None:
            start = text.find("<", close + 1)
            if start >= 0:
                self.open_at = self.fed + start
                self.open_line = self.lines + text.count("\n", 0, start)
        self.fed += len(text)
        self.lines += text.count("\n")
        if self.open_at is not None and self.fed - self.open_at > self.limit:
            raise InputRejected.make(
                "E_XML_TAG_TOO_LARGE", Where(line=self.open_line), limit=self.limit
            )


def _make_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end"),
        encoding="utf-8",  # we decoded strictly and feed UTF-8
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def _malformed(exc: etree.XMLSyntaxError) -> InputRejected:
    line, column = exc.position
    detail = _POSITION_SUFFIX.sub("", str(exc.msg or exc))
    if not line:
        # e.g. an undefined entity: libxml2 stops quietly, lxml says "no element
        # found" at line 0; the log's last entry is the real error (earlier
        # entries may be left over from other documents).
        for entry in reversed(list(getattr(exc, "error_log", ()))):
            where = getattr(entry, "line", 0), getattr(entry, "column", 0)
            if isinstance(where[0], int) and where[0] > 0:
                line, column = where
                detail = str(getattr(entry, "message", detail))
                break
    if "Excessive depth" in detail:
        return InputRejected.make(
            "E_XML_DEPTH", Where(line=line), limit=_LIBXML2_MAX_DEPTH
        )
    return InputRejected.make(
        "E_XML_MALFORMED", Where(line=line, column=column), detail=detail
    )


_Prolog = Literal["root", "more", "empty"]


def _scan_prolog(text: str, *, final: bool, bom: int, codec: str) -> _Prolog:
    """Walk the prolog (declaration, comments, PIs, white space) up to the root
    start tag, refusing any DOCTYPE or other markup declaration on the way."""
    i = 0
    n = len(text)
    while True:
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]  # always matches
        if i >= n:
            return "empty" if final else "more"
        if not final and n - i < 9:
            return "more"  # too short to tell "<!DOCTYPE" from "<!--" or "<a"
        if text.startswith("<!--", i) or text.startswith("<?", i):
            close = "-->" if text[i + 1] == "!" else "?>"
            end = text.find(close, i + 2)
            if end < 0:
                return "root" if final else "more"  # lxml reports the open comment
            i = end + len(close)
            continue
        if text.startswith("<!", i):
            where = Where(
                line=text.count("\n", 0, i) + 1,
                offset=bom + len(text[:i].encode(codec)),
            )
            if text[i + 2 : i + 9].upper() == "DOCTYPE":
                raise InputRejected.make("E_XML_DOCTYPE", where)
            raise InputRejected.make(
                "E_XML_MALFORMED/markup", where, shown=shown(text[i : i + 12])
            )
        return "root"


def _encoding(head: bytes, start: int, accepted: frozenset[Encoding]) -> str:
    match = _DECLARATION.match(head, start)
    if match is None:
        return "utf-8"  # XML 1.0 default (UTF-16 needs a BOM, refused earlier)
    label = match.group(1) if match.group(1) is not None else match.group(2)
    found = codec_of(label.decode("ascii")) if _LABEL.fullmatch(label) else None
    if found is None or found[1] not in accepted:
        raise InputRejected.make(
            "E_ENCODING/unsupported",
            Where(line=1, offset=match.start(1) if match.group(1) else match.start(2)),
            encoding=shown(label.decode("ascii", "backslashreplace")),
            accepted=", ".join(sorted(accepted)),
        )
    return found[0]


def read_xml(source: Source, options: XmlOptions | None = None) -> Iterator[XmlItem]:
    """Yield the item elements of one XML document, streaming.

    Raises ``InputRejected`` (codes ``E_EMPTY``, ``E_TOO_LARGE``, ``E_ENCODING``,
    ``E_BINARY``, ``E_XML_DOCTYPE``, ``E_XML_MALFORMED``, ``E_XML_DEPTH``,
    ``E_XML_ITEM_TOO_LARGE``, ``E_XML_TAG_TOO_LARGE``, ``E_XML_TOO_MANY_NAMES``,
    ``E_TOO_MANY_ROWS``); XML has no per-row errors: a document is well-formed or
    it is not.
    """
    opts = options or XmlOptions()
    chunks = iter_chunks(source, opts.max_input_bytes)
    head, chunks = peek(chunks, 1024)
    if not head:
        raise empty(Text("root element", "根元素"))
    bom = foreign_bom(head)
    if bom is not None:
        raise InputRejected.make(
            "E_ENCODING/bom",
            Where(offset=0),
            bom=bom,
            encoding=", ".join(sorted(opts.encodings)),
        )
    bom_len = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
    skip = bom_len
    codec = _encoding(head, bom_len, opts.encodings)
    if skip and codec not in ("utf-8", "ascii"):
        raise InputRejected.make(
            "E_ENCODING/bom", Where(offset=0), bom="UTF-8", encoding=codec.upper()
        )
    decoder = StreamDecoder(codec, skip)
    parser = _make_parser()
    walk = _Walk(opts)
    guard = _TagGuard(opts.max_tag_chars)
    prolog: list[str] | None = []

    def feed(text: str) -> Iterator[XmlItem]:
        guard.check(text)
        data = text.encode("utf-8")
        walk.fed += len(data)
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            yield from walk.events(parser)  # our own limits explain it better
            raise _malformed(exc) from None
        yield from walk.events(parser)

    for chunk in chunks:
        if skip:
            chunk, skip = chunk[skip:], 0
        text = decoder.decode(chunk)
        if prolog is not None:
            prolog.append(text)
            text = "".join(prolog)
            status = _scan_prolog(text, final=False, bom=bom_len, codec=codec)
            if status == "more":
                if len(text) > MAX_PROLOG_CHARS:
                    raise InputRejected.make(
                        "E_XML_MALFORMED/prolog", Where(line=1), limit=MAX_PROLOG_CHARS
                    )
                prolog = [text]
                continue
            prolog = None
        if text:
            yield from feed(text)
    text = decoder.decode(b"", final=True)
    if prolog is not None:
        text = "".join(prolog) + text
        if _scan_prolog(text, final=True, bom=bom_len, codec=codec) != "root":
            raise empty(Text("root element", "根元素"))
    if text:
        yield from feed(text)
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        yield from walk.events(parser)
        raise _malformed(exc) from None
    yield from walk.events(parser)
