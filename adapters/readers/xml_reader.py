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

import operator
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
_ROOT_NAME_CHARS = 1024
_NAME_START = (
    ":A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff"
    "\u200c-\u200d\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf"
    "\ufdf0-\ufffd\U00010000-\U000effff"
)
_XML_NAME = re.compile(
    f"[{_NAME_START}][{_NAME_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]*"
)
"""An XML 1.0 (5th edition) Name: what lxml accepts as a tag filter."""
_ROOT_NAME = re.compile(rf"<([^ \t\r\n/>]{{1,{_ROOT_NAME_CHARS}}})[ \t\r\n/>]")


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
    children: tuple[list[str], list[etree._Element]] | None = None
    """The tags and the child elements, in order, when no child has children of its
    own (the usual flat record; the reader has them at hand from its checks, and
    reading tags from lxml is not free).  None otherwise."""

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

    def tidy(self, root: etree._Element | None = None) -> None:
        """Nothing to do: every element was checked and dropped as it ended."""

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


@dataclass(slots=True)
class _Open:
    """An element on the open path from the root (item-filtered reading)."""

    element: etree._Element
    path: str
    """Locator of this element."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Child tag -> how many such children were checked and dropped so far."""


_COUNT = etree.XPath("count(descendant-or-self::*)")
_TAG = operator.attrgetter("tag")
_UNLIMITED = 1 << 62


class _Items:
    """Items by tag: lxml reports only the start and end of elements whose tag may
    be an item's (and the root's start), so the elements in between cost no Python.

    The limits are checked on subtrees instead of per event, always before anything
    is dropped: an item's subtree when it ends; other finished content just before
    it is dropped (when the item or open element after it starts, or at the end of
    the chunk); the open item and the open path after every chunk (element count
    and depth with XPath, in C; libxml2 itself stops at depth 256 in between).
    Every element is checked before it leaves the tree, so the outcome does not
    depend on how the input is cut into chunks.  Locators and lines are those of
    ``_Walk``: positions count the dropped siblings.
    """

    def __init__(self, options: XmlOptions) -> None:
        self.options = options
        self.max_depth = options.max_depth
        tags = options.item_tags or frozenset()
        self.exact = frozenset(t for t in tags if not t.startswith("{*}"))
        self.any_ns = frozenset(t[3:] for t in tags if t.startswith("{*}"))
        self.root: etree._Element | None = None
        self.frames: list[_Open] = []
        self.top: dict[str, int] = {}
        self.names: set[str] = set()
        self.fed = 0
        self.items = 0
        self.item: etree._Element | None = None
        self.item_parent: etree._Element | None = None
        self.item_depth_wanted = options.item_depth
        self.parent_depth = 0  # of the last item's parent (0: none yet)
        self.item_tag = ""
        self.item_path = ""
        self.item_depth = 0
        self.item_fed = 0
        self.item_dropped: dict[str, int] = self.top
        self.kids: list[etree._Element] = []
        self.deep: dict[int, etree.XPath] = {}

    # -- events ---------------------------------------------------------------

    def events(self, parser: etree.XMLPullParser) -> Iterator[XmlItem]:
        for event, element in parser.read_events():
            if not isinstance(element, etree._Element):  # pragma: no cover
                continue  # only start/end are requested
            if event == "start":
                if self.item is None:
                    self._start(element)
                continue
            if element is not self.item:
                continue  # a match inside an item, or at another depth
            yield self._finish(element)
            self._drop_item(element)

    def _start(self, element: etree._Element) -> None:
        if self.root is None:
            self._found_root(element)
        tag = element.tag
        if not (tag in self.exact or tag.rpartition("}")[2] in self.any_ns):
            return  # the root's name, asked for to find the root
        parent = element.getparent()
        frames = self.frames
        known = self.parent_depth
        depth = known + 1
        if (
            parent is None
            or not 0 < known <= len(frames)
            or frames[known - 1].element is not parent
        ):
            # Not the open parent of the last item: find the path from the root.
            ancestors = list(element.iterancestors())
            ancestors.reverse()
            depth = len(ancestors) + 1
            if self.item_depth_wanted not in (None, depth):
                return
            self._sync(ancestors)
            self.parent_depth = depth - 1
        elif self.item_depth_wanted not in (None, depth):
            return
        elif len(frames) >= depth:
            del frames[depth - 1 :]  # content after the last item, dropped below
        if parent is not None:
            at = frames[-1]
            dropped, base = at.dropped, at.path
            if element.getprevious() is not None:
                self._drop_before(element, parent, dropped, base, depth)
        else:
            dropped, base = self.top, ""
        if tag not in self.names:
            self._name(tag, element)
        if depth > self.max_depth:
            raise self._too_deep(element)
        self.item = element
        self.item_parent = parent
        self.item_tag = tag
        self.item_path = base + _step(tag, dropped.get(tag, 0) + 1)
        self.item_depth = depth
        self.item_fed = self.fed
        self.item_dropped = dropped

    def _found_root(self, element: etree._Element) -> None:
        root = element
        for root in element.iterancestors():  # noqa: B007 - the last one is the root
            pass
        self.root = root
        doctype: object = getattr(root.getroottree().docinfo, "doctype", None)
        if doctype:  # unreachable after the prolog scan; kept as a second lock
            raise InputRejected.make("E_XML_DOCTYPE", Where(line=_line(root)))

    def _finish(self, element: etree._Element) -> XmlItem:
        opts = self.options
        line = _line(element)
        # The usual item: known names, no grandchildren, few children.  Checked in
        # C (map over the children); anything else takes the careful walk, which
        # finds the first problem in document order.  The child proxies are kept
        # until the item is dropped: a consumer walking the children reuses them.
        kids = self.kids = list(element)
        tags: list[str] = list(map(_TAG, kids))
        flat = not sum(map(len, kids))
        if kids and (
            not flat
            or len(kids) >= opts.max_item_elements
            or self.item_depth >= self.max_depth
            or not self.names.issuperset(tags)
        ):
            self._below(element, self.item_depth, opts.max_item_elements - 1)
        if self.fed - self.item_fed > opts.max_item_bytes:
            self._check_item_bytes(line)
        self.items += 1
        if self.items > opts.max_items:
            raise InputRejected.make(
                "E_TOO_MANY_ROWS",
                Where(path=self.item_path, line=line),
                limit=opts.max_items,
                thing=Text("items", "条目"),
            )
        return XmlItem(element, line, self.item_path, (tags, kids) if flat else None)

    def _drop_item(self, element: etree._Element) -> None:
        self.item = None
        self.kids = []
        dropped = self.item_dropped
        dropped[self.item_tag] = dropped.get(self.item_tag, 0) + 1
        parent = self.item_parent
        if parent is not None:
            parent.remove(element)  # its tail goes with it
            element.clear()

    # -- after each chunk -------------------------------------------------------

    def tidy(self, root: etree._Element | None = None) -> None:
        """Drop what is finished outside the open item (checking it first), and
        check the open path and the open item so far."""
        if self.root is None and root is not None:
            self._found_root(root)
        node = self.root
        if node is None:
            return
        item = self.item
        chain: list[etree._Element] = []
        while node is not item:
            chain.append(node)
            if not len(node):
                break
            node = node[-1]
        self._sync(chain)
        if item is not None:
            self._check_open_item(item)

    def _check_open_item(self, item: etree._Element) -> None:
        """Depth and element count of the item read so far, in C; when one is over
        its limit, the careful walk reports the first problem in document order."""
        opts = self.options
        count = _COUNT(item)
        if (isinstance(count, float) and count > opts.max_item_elements) or self._deep(
            self.max_depth - self.item_depth + 1
        )(item):
            self._below(item, self.item_depth, opts.max_item_elements - 1)
        self._check_item_bytes(_line(item))

    def _deep(self, steps: int) -> etree.XPath:
        found = self.deep.get(steps)
        if found is None:
            found = etree.XPath("boolean(" + "/".join(["*"] * steps) + ")")
            self.deep[steps] = found
        return found

    # -- the open path ----------------------------------------------------------

    def _sync(self, chain: list[etree._Element]) -> None:
        """Make the open path ``chain`` (root first); new elements on it have their
        finished preceding siblings checked and dropped."""
        frames = self.frames
        same = 0
        limit = min(len(chain), len(frames))
        while same < limit and frames[same].element is chain[same]:
            same += 1
        if same < len(frames):
            del frames[same:]
        for element in chain[same:]:
            self._push(element)

    def _push(self, element: etree._Element) -> None:
        frames = self.frames
        depth = len(frames) + 1
        if frames:
            parent = frames[-1]
            dropped, base = parent.dropped, parent.path
            self._drop_before(element, parent.element, dropped, base, depth)
        else:
            dropped, base = self.top, ""
        tag = element.tag
        self._name(tag, element)
        if depth > self.max_depth:
            raise self._too_deep(element)
        frames.append(_Open(element, base + _step(tag, dropped.get(tag, 0) + 1)))

    def _drop_before(
        self,
        element: etree._Element,
        parent: etree._Element,
        dropped: dict[str, int],
        base: str,
        depth: int,
    ) -> None:
        """Check and drop the finished siblings before ``element`` (at ``depth``;
        ``base``: the locator of the parent)."""
        while element.getprevious() is not None:
            first = parent[0]
            tag = first.tag
            self._name(tag, first)
            if depth > self.max_depth:
                raise self._too_deep(first)
            position = dropped[tag] = dropped.get(tag, 0) + 1
            if len(first):
                self._below(first, depth, _UNLIMITED, base + _step(tag, position))
            del parent[0]

    # -- checks -------------------------------------------------------------------

    def _below(
        self, element: etree._Element, depth: int, room: int, path: str | None = None
    ) -> int:
        """Names and depth of everything below ``element`` (which is at ``depth``),
        in document order; returns how many elements that is, at most ``room``.
        ``path``: the locator of ``element`` when it is not an item (errors name
        the parent of what is wrong, as the element-by-element reader does)."""
        names = self.names
        deeper = depth + 1
        too_deep = deeper > self.max_depth
        count = 0
        seen: dict[str, int] = {}
        for child in element:
            tag = child.tag
            if tag not in names:
                self._name(tag, child, path)
            if too_deep:
                raise self._too_deep(child, path)
            count += 1
            if count > room:
                raise self._too_many(child)
            if path is not None:
                seen[tag] = seen.get(tag, 0) + 1
            if len(child):
                sub = None if path is None else path + _step(tag, seen[tag])
                count += self._below(child, deeper, room - count, sub)
        return count

    def _path(self) -> str | None:
        if self.item is not None:
            return self.item_path
        return self.frames[-1].path if self.frames else None

    def _name(self, tag: str, element: etree._Element, path: str | None = None) -> None:
        if tag in self.names:
            return
        if len(self.names) >= self.options.max_names:
            raise InputRejected.make(
                "E_XML_TOO_MANY_NAMES",
                Where(path=path or self._path(), line=_line(element)),
                limit=self.options.max_names,
            )
        self.names.add(tag)

    def _too_deep(
        self, element: etree._Element, path: str | None = None
    ) -> InputRejected:
        return InputRejected.make(
            "E_XML_DEPTH",
            Where(path=path or self._path(), line=_line(element)),
            limit=self.max_depth,
        )

    def _too_many(self, element: etree._Element) -> InputRejected:
        return InputRejected.make(
            "E_XML_ITEM_TOO_LARGE/elements",
            Where(path=self.item_path, line=_line(element)),
            limit=self.options.max_item_elements,
        )

    def _check_item_bytes(self, line: int | None) -> None:
        if self.fed - self.item_fed > self.options.max_item_bytes:
            raise InputRejected.make(
                "E_XML_ITEM_TOO_LARGE/bytes",
                Where(path=self.item_path, line=line),
                limit=self.options.max_item_bytes,
            )


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


def _make_parser(tags: list[str] | None = None) -> etree.XMLPullParser:
    """The one parser configuration; ``tags``: report only these elements."""
    return etree.XMLPullParser(
        events=("start", "end"),
        tag=tags,
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


def _scan_prolog(
    text: str, *, final: bool, bom: int, codec: str
) -> tuple[_Prolog, int]:
    """Walk the prolog (declaration, comments, PIs, white space) up to the root
    start tag, refusing any DOCTYPE or other markup declaration on the way; with
    "root", where the root start tag begins."""
    i = 0
    n = len(text)
    while True:
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]  # always matches
        if i >= n:
            return ("empty" if final else "more"), i
        if not final and n - i < 9:
            return "more", i  # too short to tell "<!DOCTYPE" from "<!--" or "<a"
        if text.startswith("<!--", i) or text.startswith("<?", i):
            close = "-->" if text[i + 1] == "!" else "?>"
            end = text.find(close, i + 2)
            if end < 0:
                return ("root" if final else "more"), n  # lxml reports it
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
        return "root", i


def _root_tags(text: str, at: int, *, final: bool) -> list[str] | None:
    """Tag filters that match the root element whose start tag begins at ``at``
    (lxml reports no event for the root otherwise, and the item-filtered reader
    needs the root to drop finished content); [] if that is not known yet, None
    if it cannot be told (then the reader follows every element)."""
    match = _ROOT_NAME.match(text, at)
    if match is None:
        short = len(text) - at < _ROOT_NAME_CHARS and text.startswith("<", at)
        return [] if short and not final else None
    name = match.group(1)
    if not _XML_NAME.fullmatch(name):
        return None  # libxml2 will say what is wrong with it
    # libxml2's reading of an odd QName (a:b:c, :a) is not ours to guess: ask for
    # every candidate; extra matches are ignored by the reader.
    locals_ = {name, name.partition(":")[2], name.rpartition(":")[2]} - {""}
    return sorted(f"{{*}}{local}" for local in locals_)


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
    guard = _TagGuard(opts.max_tag_chars)
    prolog: list[str] | None = []
    parser = _make_parser()  # replaced once the root start tag is known
    walk: _Walk | _Items = _Walk(opts)

    def feed(text: str) -> etree.XMLSyntaxError | None:
        """Parse ``text``; the caller takes the events, then raises the error (our
        own limits explain it better)."""
        guard.check(text)
        data = text.encode("utf-8")
        walk.fed += len(data)
        try:
            parser.feed(data)
        except etree.XMLSyntaxError as exc:
            return exc
        return None

    for chunk in chunks:
        if skip:
            chunk, skip = chunk[skip:], 0
        text = decoder.decode(chunk)
        if prolog is not None:
            prolog.append(text)
            text = "".join(prolog)
            status, at = _scan_prolog(text, final=False, bom=bom_len, codec=codec)
            root_tags = None
            if status == "root" and opts.item_tags:
                root_tags = _root_tags(text, at, final=False)
                if root_tags == []:
                    status = "more"  # the root's name is cut short
            if status == "more":
                if len(text) > MAX_PROLOG_CHARS:
                    raise InputRejected.make(
                        "E_XML_MALFORMED/prolog", Where(line=1), limit=MAX_PROLOG_CHARS
                    )
                prolog = [text]
                continue
            prolog = None
            parser, walk = _reading(opts, root_tags)
        if text:
            error = feed(text)
            yield from walk.events(parser)
            walk.tidy()
            if error is not None:
                raise _malformed(error)
    text = decoder.decode(b"", final=True)
    if prolog is not None:
        text = "".join(prolog) + text
        status, at = _scan_prolog(text, final=True, bom=bom_len, codec=codec)
        if status != "root":
            raise empty(Text("root element", "根元素"))
        root_tags = _root_tags(text, at, final=True) if opts.item_tags else None
        parser, walk = _reading(opts, root_tags)
    if text:
        error = feed(text)
        yield from walk.events(parser)
        walk.tidy()
        if error is not None:
            raise _malformed(error)
    try:
        root = parser.close()
    except etree.XMLSyntaxError as exc:
        yield from walk.events(parser)
        walk.tidy()
        raise _malformed(exc) from None
    yield from walk.events(parser)
    walk.tidy(root)


def _reading(
    opts: XmlOptions, root_tags: list[str] | None
) -> tuple[etree.XMLPullParser, _Walk | _Items]:
    """Items by tag (and the root known): lxml reports only those elements.
    Otherwise (items by depth alone) every element is followed in Python."""
    if opts.item_tags and root_tags:
        return _make_parser(sorted(opts.item_tags) + root_tags), _Items(opts)
    return _make_parser(), _Walk(opts)
