"""Input formats: read source records with the safe readers, compile paths for them.

A source record becomes a :class:`Scope`: the record's node (an lxml element, a
JSON value wrapped in :class:`JNode`, or a CSV / fixed-width ``name -> text``
dict), where it is in the input, and the :class:`Run` it belongs to (contexts such
as a notice header or a fixed-width header record). Each format compiles a parsed
:class:`~adapters.mapping.paths.Path` into a getter that returns the trimmed,
non-empty text(s) found (``Raw``), and a ``for_each`` path into sub-scopes.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, TypeAlias

from lxml import etree

from adapters.base import RawInput
from adapters.mapping import normalizers as nz
from adapters.mapping.loader import Loc, Problems
from adapters.mapping.model import (
    CsvInput,
    FixedWidthInput,
    JsonInput,
    JsonLinesInput,
    XmlInput,
)
from adapters.mapping.paths import Path, PathSyntaxError, Step, parse_path
from adapters.readers import (
    CsvOptions,
    FixedWidthOptions,
    InputRejected,
    JsonOptions,
    RowError,
    XmlOptions,
    read_csv,
    read_fixed_width,
    read_json,
    read_jsonl,
    read_xml,
)
from adapters.readers.errors import Where

__all__ = [
    "ColumnsFormat",
    "FieldError",
    "Format",
    "JNode",
    "JsonFormat",
    "Raw",
    "Run",
    "Scope",
    "TextFn",
    "XmlFormat",
    "clean",
    "collect",
    "source_label",
]

Raw: TypeAlias = str | list[str] | None
TextFn: TypeAlias = Callable[[str], str | None]
ValueFn: TypeAlias = Callable[["Scope"], Raw]


class FieldError(Exception):
    """One value of one record cannot be made national."""

    def __init__(self, code: str, en: str, zh: str, source: str) -> None:
        super().__init__(code, en)
        self.code = code
        self.en = en
        self.zh = zh
        self.source = source


# --- source records -----------------------------------------------------------------


class JNode:
    """A JSON value with the way back to its parent (for ``..`` and locators)."""

    __slots__ = ("frag", "parent", "value")

    def __init__(self, value: object, parent: JNode | None, frag: str) -> None:
        self.value = value
        self.parent = parent
        self.frag = frag

    def pointer(self) -> str:
        parts: list[str] = []
        node: JNode | None = self
        while node is not None and node.frag:
            parts.append(node.frag)
            node = node.parent
        return "".join("/" + p for p in reversed(parts))


class Run:
    """One ``parse`` call: the input and the contexts read from it so far."""

    __slots__ = ("contexts", "raw")

    def __init__(self, raw: RawInput) -> None:
        self.raw = raw
        self.contexts: dict[str, Scope] = {}


class Scope:
    """One source record (or sub-record) being mapped."""

    __slots__ = (
        "children",
        "index",
        "kids",
        "line",
        "node",
        "pointer",
        "record_type",
        "row",
        "run",
        "texts",
        "where",
    )

    def __init__(
        self,
        node: Any,
        run: Run,
        where: str,
        *,
        line: int | None = None,
        row: int | None = None,
        record_type: str | None = None,
        pointer: str = "",
        index: int = 0,
    ) -> None:
        self.node = node
        self.run = run
        self.where = where
        self.line = line
        self.row = row
        self.record_type = record_type
        self.pointer = pointer
        self.index = index
        # XML: attribute indexes of the children; JSON: shared path prefixes.
        self.kids: dict[Any, Any] | None = None
        # XML: the texts of the children by local name (the common field source).
        self.texts: dict[str, Raw] | None = None
        # XML: tags and child elements of a flat item, from the reader.
        self.children: tuple[list[str], list[Any]] | None = None

    def child(self, node: Any, pointer: str, index: int) -> Scope:
        return Scope(
            node,
            self.run,
            self.where,
            line=self.line,
            row=self.row,
            record_type=self.record_type,
            pointer=pointer,
            index=index,
        )

    @property
    def locator(self) -> str:
        return f"{self.where}, {self.pointer}" if self.pointer else self.where


# --- text of source values -------------------------------------------------------------


def clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    return text or None


def collect(texts: Sequence[str | None]) -> Raw:
    out = [t for t in (clean(x) for x in texts) if t is not None]
    if not out:
        return None
    return out[0] if len(out) == 1 else out


def _xml_text(element: Any) -> str | None:
    if isinstance(element, str):
        return element
    if len(element):
        return "".join(element.itertext())
    text: str | None = element.text
    return text


class _Index(NamedTuple):
    """How to find ``name[@attr='value']`` children through a per-scope index."""

    key: tuple[str, str, str]
    build: Callable[[Scope], dict[str, list[Any]]]
    value: str


def _indexed(index: _Index, context: str | None, scope: Scope) -> list[Any] | None:
    """The ``name[@attr='value']`` elements of ``scope`` (or of its named context),
    through the scope's index (built on first use); None when there are none."""
    start = scope
    if context is not None:
        ctx = scope.run.contexts.get(context)
        if ctx is None:
            return None
        start = ctx
    cache = start.kids
    found = cache.get(index.key) if cache is not None else None
    if found is None:
        found = index.build(start)
    return found.get(index.value) or None


def _local(tag: str) -> str:
    return tag[tag.index("}") + 1 :] if tag[:1] == "{" else tag


def _step_matches(tag: str, uri: str | None, local: str) -> bool:
    """One step of an element path: no prefix matches the local name in any
    namespace, a prefix its URI exactly, ``*`` any element."""
    if local == "*":
        return True
    if uri is None:
        return _local(tag) == local
    return tag == f"{{{uri}}}{local}"


_URIS = re.compile(r"Q\{[^}]*\}")
_NOTHING = object()


def _json_text(value: object, source: str) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if value is None:
        return None
    kind = "an object" if isinstance(value, dict) else "an array"
    raise FieldError(
        "E_MAP_SHAPE",
        f"{kind} where a value is expected",
        "此处应为单个值，实际为" + ("对象" if isinstance(value, dict) else "数组"),
        source,
    )


def _texts(values: list[Any], path: Path, scope: Scope) -> Raw:
    """Trimmed, non-empty texts of JSON scalars; an object or array is an error."""
    out = []
    for value in values:
        kind = type(value)
        if kind is str:
            text = value.strip()
        elif kind is Decimal:
            text = format(value, "f")
        elif kind is bool:
            text = "true" if value else "false"
        elif value is None:
            continue
        else:
            text = _json_text(value, source_label(path, scope)) or ""
        if text:
            out.append(text)
    if not out:
        return None
    return out[0] if len(out) == 1 else out


# --- formats: reading items and compiling paths -----------------------------------------


class Format:
    """What differs between input formats."""

    name = ""
    paths = True  # parse paths (CSV / fixed width: plain column names)
    contexts: frozenset[str] = frozenset()

    def __init__(self) -> None:
        # Getters made by getter() that fused() can read without calling them.
        self.simple: dict[Callable[[Scope], Raw], Any] = {}

    def fused(self, get: Callable[[Scope], Raw], fn: TextFn, label: str) -> ValueFn:
        """``get`` (made by :meth:`getter`) followed by ``fn``, as one closure; a
        format that knows the getter reads the value itself (one call less per
        field and record)."""

        def run(scope: Scope) -> Raw:
            value = get(scope)
            if value is None:
                return None
            try:
                if type(value) is str:
                    return fn(value)
                out = [fn(v) for v in value]
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None
            return [v for v in out if v]

        return run

    def items(self, raw: RawInput, run: Run) -> Iterator[Scope | RowError]:
        raise NotImplementedError

    def getter(self, path: Path, *, strict: bool) -> Callable[[Scope], Raw]:
        raise NotImplementedError

    def nodes(self, path: Path) -> Callable[[Scope], list[Scope]]:
        raise NotImplementedError


def source_label(path: Path | str, scope: Scope) -> str:
    """Where a value came from, for messages: ``/bao/0/ysje``, ``cgrdm``."""
    text = path if isinstance(path, str) else path.text
    if not scope.pointer or text.startswith(("/", "$")):
        return text
    parts = text.split("/")
    up = 0
    while up < len(parts) - 1 and parts[up] == "..":
        up += 1
    if isinstance(scope.node, JNode):
        node = scope.node
        for _ in range(up):
            node = node.parent or node
        base = node.pointer()
    else:
        segments = scope.pointer.split("/")
        base = "/".join(segments[: max(0, len(segments) - up)])
    rest = "/".join(parts[up:])
    return f"{base}/{rest}" if base else rest


_TEXT = operator.attrgetter("text")


def _child_texts(scope: Scope) -> dict[str, Raw]:
    """Local name -> trimmed text(s) of every child element, in one pass."""
    if scope.children is None:
        return _texts_of(scope.node)
    tags, kids = scope.children  # a flat item: the reader read the tags
    if len(set(tags)) == len(tags) and "{" not in "".join(tags):
        # No namespaces, no repeated names (the usual record): a dict at once.
        return {
            tag: (text.strip() or None) if text else None
            for tag, text in zip(tags, map(_TEXT, kids), strict=True)
        }
    return _texts_of(kids, tags)


def _texts_of(element: Any, tags: list[str] | None = None) -> dict[str, Raw]:
    """Local name -> trimmed text(s) of the children of ``element`` (or of the
    elements ``element``, whose ``tags`` are known)."""
    texts: dict[str, Raw] = {}
    for i, ch in enumerate(element):
        tag = ch.tag if tags is None else tags[i]
        if tag.__class__ is not str:
            continue
        if tag[0] == "{":
            tag = tag[tag.index("}") + 1 :]
        text = ch.text if not len(ch) else "".join(ch.itertext())
        if text is not None:
            text = text.strip() or None
        if tag not in texts:
            texts[tag] = text
            continue
        if text is None:
            continue
        before = texts[tag]
        if before is None:
            texts[tag] = text
        elif isinstance(before, str):
            texts[tag] = [before, text]
        else:
            before.append(text)
    return texts


class XmlFormat(Format):
    name = "xml"

    def __init__(self, spec: XmlInput, problems: Problems) -> None:
        super().__init__()
        self.spec = spec
        self.ns = dict(spec.namespaces)
        self.record = self._element_path(spec.records, ("input", "records"), problems)
        self.context_paths = {
            name: self._element_path(p, ("input", "context", name), problems)
            for name, p in spec.context.items()
        }
        self.contexts = frozenset(spec.context)
        every = [self.record, *self.context_paths.values()]
        depths = {len(p) for p in every if p}
        tags: set[str] = set()
        wildcard = False
        for p in every:
            if not p:
                continue
            uri, local = p[-1]
            if local == "*":
                wildcard = True
            else:
                tags.add(f"{{{uri}}}{local}" if uri is not None else f"{{*}}{local}")
        if wildcard and len(depths) > 1:
            problems.add(
                ("input", "context"),
                "with '*' as the last step, records and contexts must be at one depth",
            )
        extra: dict[str, Any] = {
            k: v
            for k, v in {
                "encodings": frozenset(spec.encodings) if spec.encodings else None,
                "max_input_bytes": spec.max_input_bytes,
                "max_item_bytes": spec.max_item_bytes,
                "max_items": spec.max_items,
            }.items()
            if v is not None
        }
        # A placeholder until the paths are known good (compile stops otherwise).
        self.options = XmlOptions()
        if depths and not problems.items:
            try:
                self.options = XmlOptions(
                    item_depth=depths.pop() if len(depths) == 1 else None,
                    item_tags=None if wildcard else frozenset(tags),
                    **extra,
                )
            except ValueError as exc:
                problems.add(("input",), str(exc))

    def _element_path(
        self, text: str, loc: Loc, problems: Problems
    ) -> list[tuple[str | None, str]]:
        try:
            path = parse_path(text)
        except PathSyntaxError as exc:
            problems.add(loc, str(exc))
            return []
        if not path.absolute or any(
            s.kind not in ("child", "any") or s.predicates for s in path.steps
        ):
            problems.add(
                loc, "an element path is absolute and has only names: /root/item"
            )
            return []
        out = []
        for step in path.steps:
            name = step.name if step.kind == "child" else "*"
            resolved = self._qname(name, loc, problems)
            if resolved is None:
                return []
            out.append(resolved)
        return out

    def _qname(
        self, name: str, loc: Loc, problems: Problems | None
    ) -> tuple[str | None, str] | None:
        prefix, colon, local = name.partition(":")
        if not colon:
            return None, name
        uri = self.ns.get(prefix)
        if uri is None:
            if problems is not None:
                problems.add(loc, f"namespace prefix {prefix!r} is not in namespaces")
            return None
        return uri, local

    @staticmethod
    def _matches(node: Any, path: list[tuple[str | None, str]]) -> bool:
        """Whether ``node`` and its ancestors are the steps of ``path``, exactly
        (``node`` None: the parent of the root)."""
        for uri, local in reversed(path):
            if node is None:
                return False
            if not _step_matches(node.tag, uri, local):
                return False
            node = node.getparent()
        return node is None

    def items(self, raw: RawInput, run: Run) -> Iterator[Scope | RowError]:
        paths: list[tuple[str | None, list[tuple[str | None, str]]]] = [
            (None, self.record),
            *self.context_paths.items(),
        ]
        # Consecutive items share their parent: which paths its ancestors allow is
        # worked out once per parent (the reader keeps open ancestors alive).
        parent_seen: Any = _NOTHING
        allowed: list[tuple[str | None, tuple[str | None, str]]] = []
        for item in read_xml(raw.data, self.options):
            element = item.element
            where = item.locator
            if "Q{" in where:
                where = _URIS.sub("", where)
            line = item.line
            if line is not None:
                where = f"{where}, line {line}"
            parent = element.getparent()
            if parent is not parent_seen or parent is None:
                parent_seen = parent
                allowed = [
                    (name, path[-1])
                    for name, path in paths
                    if path and self._matches(parent, path[:-1])
                ]
            tag = element.tag
            for name, (uri, local) in allowed:
                if not _step_matches(tag, uri, local):
                    continue
                if name is None:
                    scope = Scope(element, run, where, line=line)
                    scope.children = item.children
                    yield scope
                else:
                    # Items are cleared when the reader moves on: keep a copy.
                    run.contexts[name] = Scope(
                        copy.deepcopy(element), run, where, line=line
                    )
                break

    def validate(self, path: Path, loc: Loc, problems: Problems) -> None:
        for step in path.steps:
            if step.kind in ("child", "attr"):
                self._qname(step.name, loc, problems)
            for p in step.predicates:
                self._qname(p.name, loc, problems)

    def _step_test(self, name: str) -> Callable[[str], bool]:
        qname = self._qname(name, (), None)
        if qname is None:  # an undeclared prefix: reported by validate()
            return lambda tag: False
        uri, local = qname
        if uri is None:
            return lambda tag: _local(tag) == local
        full = f"{{{uri}}}{local}"
        return lambda tag: tag == full

    def _attr_name(self, name: str) -> str:
        qname = self._qname(name, (), None)
        if qname is None:  # an undeclared prefix: reported by validate()
            return "{}" + name
        uri, local = qname
        return local if uri is None else f"{{{uri}}}{local}"

    def _predicate(self, step: Step) -> Callable[[Any], bool]:
        tests: list[tuple[Callable[[Any], list[str]], str, str]] = []
        for p in step.predicates:
            if p.attr:
                attr = self._attr_name(p.name)

                def attr_values(el: Any, attr: str = attr) -> list[str]:
                    v = clean(el.get(attr))
                    return [] if v is None else [v]

                tests.append((attr_values, p.op, p.value))
                continue
            match = self._step_test(p.name)

            def child_values(
                el: Any, match: Callable[[str], bool] = match
            ) -> list[str]:
                out = []
                for ch in el:
                    if isinstance(ch.tag, str) and match(ch.tag):
                        v = clean(_xml_text(ch))
                        if v is not None:
                            out.append(v)
                return out

            tests.append((child_values, p.op, p.value))

        def test(el: Any) -> bool:
            for values, op, literal in tests:
                found = values(el)
                if op == "exists":
                    ok = bool(found)
                elif op == "=":
                    ok = literal in found
                else:
                    ok = literal not in found
                if not ok:
                    return False
            return True

        return test

    def _index(self, step: Step) -> _Index | None:
        """For ``name[@attr='v']`` from a scope's own element: the matching children
        from an index kept on that scope (built once, then a dict lookup), so that
        many fields of one key/value record do not each scan all its children."""
        if not (
            step.kind == "child"
            and len(step.predicates) == 1
            and step.predicates[0].attr
            and step.predicates[0].op == "="
        ):
            return None
        qname = self._qname(step.name, (), None)  # None: reported by validate()
        attr = self._attr_name(step.predicates[0].name)
        key = ("@=", step.name, attr)
        uri, local = qname if qname is not None else ("", "")
        full = f"{{{uri}}}{local}" if uri is not None else None
        suffix = "}" + local

        def build(start: Scope) -> dict[str, list[Any]]:
            index: dict[str, list[Any]] = {}
            if qname is not None:
                children = start.children
                pairs = (
                    zip(*children, strict=True)
                    if children is not None
                    else ((ch.tag, ch) for ch in start.node)
                )
                for tag, ch in pairs:
                    if tag.__class__ is not str:
                        continue
                    if full is not None:
                        if tag != full:
                            continue
                    elif tag != local and not tag.endswith(suffix):
                        continue  # no prefix: this local name in any namespace
                    v = ch.get(attr)
                    if v is not None:
                        v = v.strip()
                        if v:
                            found = index.get(v)
                            if found is None:
                                index[v] = [ch]
                            else:
                                found.append(ch)
            if start.kids is None:
                start.kids = {}
            start.kids[key] = index
            return index

        return _Index(key, build, step.predicates[0].value)

    def _indexed(self, step: Step) -> Callable[[Scope], list[Any]] | None:
        spec = self._index(step)
        if spec is None:
            return None
        key, build, value = spec

        def indexed(start: Scope) -> list[Any]:
            cache = start.kids
            index = cache.get(key) if cache is not None else None
            if index is None:
                index = build(start)
            found: list[Any] = index.get(value, [])
            return found

        return indexed

    def _walk(self, path: Path) -> Callable[[Scope], list[Any]]:
        # (kind, tag test or attribute name, predicate)
        steps: list[tuple[str, Any, Callable[[Any], bool] | None]] = []
        for step in path.steps:
            pred = self._predicate(step) if step.predicates else None
            if step.kind == "child":
                steps.append(("child", self._step_test(step.name), pred))
            elif step.kind == "any":
                steps.append(("child", lambda tag: True, pred))
            elif step.kind == "attr":
                steps.append(("attr", self._attr_name(step.name), None))
            else:
                steps.append(("parent", None, None))
        absolute = path.absolute
        context = path.context
        # The first step from the record (or context) element is answered from an
        # index kept on its scope: by local name, or, for record[@field='x'], by
        # attribute value. Fields then cost a dict lookup instead of a scan.
        first = path.steps[0]
        first_nodes = None if absolute else self._indexed(first)

        def walk(scope: Scope) -> list[Any]:
            start = scope
            if context is not None:
                ctx = scope.run.contexts.get(context)
                if ctx is None:
                    return []
                start = ctx
            nodes: list[Any] = [start.node]
            todo = steps
            if first_nodes is not None:
                nodes, todo = first_nodes(start), steps[1:]
                if not nodes:
                    return []
            if absolute:
                root = scope.node
                while (up := root.getparent()) is not None:
                    root = up
                kind, test, pred = steps[0]
                if kind != "child" or not test(root.tag) or (pred and not pred(root)):
                    return []
                nodes, todo = [root], steps[1:]
            for kind, test, pred in todo:
                out: list[Any] = []
                if kind == "child":
                    for n in nodes:
                        for ch in n:
                            tag = ch.tag
                            if isinstance(tag, str) and test(tag):
                                out.append(ch)
                    if pred is not None:
                        out = [n for n in out if pred(n)]
                elif kind == "attr":
                    for n in nodes:
                        v = n.get(test)
                        if v is not None:
                            out.append(v)
                else:
                    for n in nodes:
                        up = n.getparent()
                        if up is not None and not any(up is o for o in out):
                            out.append(up)
                nodes = out
                if not nodes:
                    break
            return nodes

        return walk

    def getter(self, path: Path, *, strict: bool) -> Callable[[Scope], Raw]:
        step = path.steps[0] if len(path.steps) == 1 else None
        if path.simple and step is not None and ":" not in step.name:
            name = step.name

            def child_text(scope: Scope) -> Raw:
                texts = scope.texts
                if texts is None:
                    texts = scope.texts = _child_texts(scope)
                return texts.get(name)

            self.simple[child_text] = name
            return child_text
        steps = path.steps
        index = self._index(steps[0]) if not path.absolute else None
        if index is not None and len(steps) == 2 and steps[1].kind == "attr":
            get = self._key_value(index, self._attr_name(steps[1].name), path)
            self.simple[get] = (index, self._attr_name(steps[1].name), path.context)
            return get
        walk = self._walk(path)
        return lambda scope: collect([_xml_text(n) for n in walk(scope)])

    def fused(self, get: Callable[[Scope], Raw], fn: TextFn, label: str) -> ValueFn:
        simple = self.simple.get(get)
        if simple is None:
            return super().fused(get, fn, label)
        if isinstance(simple, tuple):
            return self._key_value_fn(get, fn, label, *simple)
        name = simple

        def child_text_fn(scope: Scope) -> Raw:
            texts = scope.texts
            if texts is None:
                texts = scope.texts = _child_texts(scope)
            value = texts.get(name)
            if value is None:
                return None
            try:
                if type(value) is str:
                    return fn(value)
                out = [fn(v) for v in value]
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None
            return [v for v in out if v]

        return child_text_fn

    def _key_value_fn(
        self,
        get: Callable[[Scope], Raw],
        fn: TextFn,
        label: str,
        index: _Index,
        attr: str,
        context: str | None,
    ) -> ValueFn:
        """``_key_value`` and ``fn`` in one closure, for one element found."""
        general = super().fused(get, fn, label)

        def key_value_fn(scope: Scope) -> Raw:
            elements = _indexed(index, context, scope)
            if elements is None:
                return None
            if len(elements) != 1:
                return general(scope)  # several: as collected by the getter
            text = elements[0].get(attr)
            if text is None:
                return None
            text = text.strip()
            if not text:
                return None
            try:
                return fn(text)
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None

        return key_value_fn

    @staticmethod
    def _key_value(index: _Index, attr: str, path: Path) -> Callable[[Scope], Raw]:
        """``record[@field='面积']/@value``: the common key/value export shape."""
        context = path.context

        def value(scope: Scope) -> Raw:
            elements = _indexed(index, context, scope)
            if elements is None:
                return None
            if len(elements) == 1:
                text = elements[0].get(attr)
                if text is None:
                    return None
                text = text.strip()
                return text or None
            return collect([el.get(attr) for el in elements])

        return value

    def nodes(self, path: Path) -> Callable[[Scope], list[Scope]]:
        walk = self._walk(path)
        text = path.text

        def select(scope: Scope) -> list[Scope]:
            found = [n for n in walk(scope) if not isinstance(n, str)]
            base = f"{scope.pointer}/" if scope.pointer else ""
            return [
                scope.child(n, f"{base}{text}[{i}]", i) for i, n in enumerate(found, 1)
            ]

        return select

    def xpath(self, expression: str) -> Callable[[Scope], Raw]:
        compiled = etree.XPath(expression, namespaces=self.ns, smart_strings=False)

        def get(scope: Scope) -> Raw:
            result: Any = compiled(scope.node)
            if isinstance(result, list):
                return collect([_xml_text(x) for x in result])
            if isinstance(result, bool):
                return "true" if result else "false"
            if isinstance(result, float):
                if result != result or result in (float("inf"), float("-inf")):
                    return None
                return nz.canonical_decimal(Decimal(repr(result)))
            return clean(str(result))

        return get


class JsonFormat(Format):
    def __init__(self, spec: JsonInput | JsonLinesInput) -> None:
        super().__init__()
        self.name = spec.format
        extra = {
            k: v
            for k, v in {
                "max_input_bytes": spec.max_input_bytes,
                "max_item_bytes": spec.max_item_bytes,
            }.items()
            if v is not None
        }
        self.options = JsonOptions(encoding=spec.encoding, **extra)
        self.prefix_keys: dict[tuple[int, tuple[Step, ...]], str] = {}

    def items(self, raw: RawInput, run: Run) -> Iterator[Scope | RowError]:
        options = _with_charset(self.options, raw)
        reader = (
            read_jsonl(raw.data, options)
            if self.name == "jsonl"
            else read_json(raw.data, options)
        )
        for item in reader:
            if isinstance(item, RowError):
                yield item
                continue
            yield Scope(JNode(item.value, None, ""), run, item.locator, line=item.line)

    def validate(self, path: Path, loc: Loc, problems: Problems) -> None:
        if any(s.kind == "attr" for s in path.steps):
            problems.add(loc, "'@' (an XML attribute) has no meaning in JSON")

    @staticmethod
    def _walk(path: Path) -> Callable[[Scope], list[JNode]]:
        steps = path.steps
        absolute = path.absolute

        def pred_ok(node: JNode, step: Step) -> bool:
            value = node.value
            if not isinstance(value, dict):
                return False
            for p in step.predicates:
                raw = value.get(p.name)
                items = raw if isinstance(raw, list) else [raw]
                found = [
                    t
                    for t in (
                        clean(x if isinstance(x, str) else _plain(x)) for x in items
                    )
                    if t is not None
                ]
                if p.op == "exists":
                    ok = bool(found)
                elif p.op == "=":
                    ok = p.value in found
                else:
                    ok = p.value not in found
                if not ok:
                    return False
            return True

        def walk(scope: Scope) -> list[JNode]:
            start: JNode = scope.node
            if absolute:
                while start.parent is not None:
                    start = start.parent
            nodes = [start]
            for step in steps:
                out: list[JNode] = []
                if step.kind == "parent":
                    for n in nodes:
                        if n.parent is not None and not any(n.parent is o for o in out):
                            out.append(n.parent)
                else:
                    for n in nodes:
                        value = n.value
                        if not isinstance(value, dict):
                            continue
                        if step.kind == "child":
                            pairs = (
                                [(step.name, value[step.name])]
                                if step.name in value
                                else []
                            )
                        else:
                            pairs = list(value.items())
                        for key, child in pairs:
                            frag = _escape(key)
                            if isinstance(child, list):
                                out.extend(
                                    JNode(x, n, f"{frag}/{i}")
                                    for i, x in enumerate(child)
                                    if x is not None
                                )
                            elif child is not None:
                                out.append(JNode(child, n, frag))
                    if step.predicates:
                        out = [n for n in out if pred_ok(n, step)]
                nodes = out
                if not nodes:
                    break
            return nodes

        return walk

    def getter(self, path: Path, *, strict: bool) -> Callable[[Scope], Raw]:
        steps = path.steps
        up = 0
        while up < len(steps) and steps[up].kind == "parent":
            up += 1
        rest = steps[up:]
        if path.absolute or any(s.kind == "parent" for s in rest) or not rest:
            walk = self._walk(path)

            def nodes_text(scope: Scope) -> Raw:
                return _texts([n.value for n in walk(scope)], path, scope)

            return nodes_text
        if len(rest) == 1 and rest[0].kind == "child" and not rest[0].predicates:
            get = _json_key(path, rest[0].name, up)
            if up <= 1:
                self.simple[get] = (up, rest[0].name)
            return get
        compiled = [(s.kind == "any", s.name, self._value_test(s)) for s in rest]
        # Several fields often share a filtered prefix (gys[zbbz=1]/...): the values
        # it selects are kept on the scope and computed once per record.
        prefix_key = None
        if any(s.predicates for s in rest[:-1]):
            # A plain string: its hash is cached, the steps' is computed each time.
            prefix_key = self.prefix_keys.setdefault(
                (up, rest[:-1]), f"#prefix{len(self.prefix_keys)}"
            )
        last = compiled[-1:]
        head = compiled[:-1]

        def values(scope: Scope) -> Raw:
            cache: dict[Any, Any] = {}
            if prefix_key is not None:
                if scope.kids is None:
                    scope.kids = {}
                cache = scope.kids
            current: list[Any] | None = cache.get(prefix_key)
            if current is None:
                node = scope.node
                for _ in range(up):
                    node = node.parent
                    if node is None:
                        return None
                current = _descend([node.value], head)
                if prefix_key is not None:
                    cache[prefix_key] = current
            current = _descend(current, last)
            if not current:
                return None
            return _texts(current, path, scope)

        return values

    def fused(self, get: Callable[[Scope], Raw], fn: TextFn, label: str) -> ValueFn:
        simple = self.simple.get(get)
        if simple is None:
            return super().fused(get, fn, label)
        up, name = simple
        general = super().fused(get, fn, label)

        def key_fn(scope: Scope) -> Raw:
            node = scope.node if up == 0 else scope.node.parent
            value = None if node is None else node.value
            if type(value) is not dict:
                return None
            found: Any = value.get(name)
            kind = type(found)
            if kind is str:
                text = found.strip()
                if not text:
                    return None
            elif found is None:
                return None
            elif kind is Decimal:
                text = format(found, "f")
            else:
                return general(scope)  # lists, booleans, objects (an error)
            try:
                return fn(text)
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None

        return key_fn

    @staticmethod
    def _value_test(step: Step) -> Callable[[Any], bool] | None:
        if not step.predicates:
            return None
        preds = [(p.name, p.op, p.value) for p in step.predicates]

        def test(value: Any) -> bool:
            if type(value) is not dict:
                return False
            for name, op, literal in preds:
                raw = value.get(name)
                if raw is None:
                    found = []
                elif type(raw) is str:
                    found = [raw.strip()]
                elif type(raw) is Decimal:
                    found = [format(raw, "f")]
                else:
                    items = raw if type(raw) is list else (raw,)
                    found = [t for t in (clean(_plain(x)) for x in items) if t]
                if op == "exists":
                    ok = bool(found)
                elif op == "=":
                    ok = literal in found
                else:
                    ok = literal not in found
                if not ok:
                    return False
            return True

        return test

    def nodes(self, path: Path) -> Callable[[Scope], list[Scope]]:
        walk = self._walk(path)

        def select(scope: Scope) -> list[Scope]:
            return [
                scope.child(n, n.pointer(), i)
                for i, n in enumerate(walk(scope), 1)
                if isinstance(n.value, dict)
            ]

        return select


def _json_key(path: Path, name: str, up: int) -> Callable[[Scope], Raw]:
    """``name`` or ``../name``: one key of the record (or of a parent)."""

    def text(found: Any, scope: Scope) -> Raw:
        kind = type(found)
        if kind is str:
            stripped: str = found.strip()
            return stripped or None
        if found is None:
            return None
        if kind is Decimal:
            return format(found, "f")
        return _texts(found if kind is list else [found], path, scope)

    if up == 0:  # the usual cases get no loop

        def key(scope: Scope) -> Raw:
            value = scope.node.value
            if type(value) is not dict:
                return None
            found = value.get(name)
            if type(found) is str:
                stripped: str = found.strip()
                return stripped or None
            return None if found is None else text(found, scope)

        return key
    if up == 1:

        def parent_key(scope: Scope) -> Raw:
            node = scope.node.parent
            if node is None:
                return None
            value = node.value
            if type(value) is not dict:
                return None
            found = value.get(name)
            if type(found) is str:
                stripped: str = found.strip()
                return stripped or None
            return None if found is None else text(found, scope)

        return parent_key

    def ancestor_key(scope: Scope) -> Raw:
        node = scope.node
        for _ in range(up):
            node = node.parent
            if node is None:
                return None
        value = node.value
        if type(value) is not dict:
            return None
        return text(value.get(name), scope)

    return ancestor_key


def _descend(
    current: list[Any],
    steps: list[tuple[bool, str, Callable[[Any], bool] | None]],
) -> list[Any]:
    """Follow child steps through JSON values; arrays are entered automatically."""
    for any_key, name, test in steps:
        found: list[Any] = []
        for value in current:
            if type(value) is not dict:
                continue
            children = value.values() if any_key else (value.get(name),)
            for child in children:
                if type(child) is list:
                    found.extend(x for x in child if x is not None)
                elif child is not None:
                    found.append(child)
        if test is not None:
            found = [v for v in found if test(v)]
        current = found
        if not current:
            break
    return current


def _plain(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class ColumnsFormat(Format):
    """CSV rows and fixed-width records: a flat name -> text mapping."""

    paths = False

    def __init__(self, spec: CsvInput | FixedWidthInput) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.format
        if isinstance(spec, FixedWidthInput) and spec.header is not None:
            self.contexts = frozenset({"header"})

    def items(self, raw: RawInput, run: Run) -> Iterator[Scope | RowError]:
        spec = self.spec
        if isinstance(spec, CsvInput):
            encoding: Any = spec.encoding
            if raw.charset:
                encoding = _encoding_of(raw.charset)
            extra = {
                k: v
                for k, v in {
                    "max_input_bytes": spec.max_input_bytes,
                    "max_rows": spec.max_rows,
                }.items()
                if v is not None
            }
            options = CsvOptions(
                encoding=encoding,
                delimiter=spec.delimiter,
                quotechar=spec.quote,
                header_rows=spec.header_rows,
                names_row=spec.names_row,
                fieldnames=spec.columns,
                **extra,
            )
            for row in read_csv(raw.data, options):
                if isinstance(row, RowError):
                    yield row
                    continue
                yield Scope(row.fields, run, row.locator, line=row.line, row=row.row)
            return
        fw = FixedWidthOptions(
            encoding=_encoding_of(raw.charset) if raw.charset else spec.encoding,
            code_start=spec.code_start,
            code_length=spec.code_length,
            layouts=spec.layouts,
            header=spec.header,
            trailer=spec.trailer,
            record_length=spec.record_length,
            **(
                {"max_input_bytes": spec.max_input_bytes}
                if spec.max_input_bytes
                else {}
            ),
        )
        number = 0
        for record in read_fixed_width(raw.data, fw):
            if isinstance(record, RowError):
                yield record
                continue
            scope = Scope(
                record.fields,
                run,
                record.locator,
                line=record.line,
                record_type=record.record_type,
            )
            if record.kind == "header":
                run.contexts["header"] = scope
            elif record.kind == "data":
                number += 1
                scope.row = number
                yield scope

    def getter(self, path: Path, *, strict: bool) -> Callable[[Scope], Raw]:
        if path.context is not None:
            ctx_name = path.context
            column = path.steps[0].name if path.steps else ""

            def from_context(scope: Scope) -> Raw:
                ctx = scope.run.contexts.get(ctx_name)
                return None if ctx is None else clean(ctx.node.get(column))

            return from_context
        name = path.text

        def column_text(scope: Scope) -> Raw:
            found = scope.node.get(name)
            if found is None:
                if strict:
                    raise FieldError(
                        "E_MAP_COLUMN",
                        f"the input has no column {name!r}",
                        f"输入中没有列 {name!r}",
                        name,
                    )
                return None
            found = found.strip()
            return found or None

        self.simple[column_text] = name
        return column_text

    def fused(self, get: Callable[[Scope], Raw], fn: TextFn, label: str) -> ValueFn:
        name = self.simple.get(get)
        if name is None:
            return super().fused(get, fn, label)
        general = super().fused(get, fn, label)

        def column_fn(scope: Scope) -> Raw:
            found = scope.node.get(name)
            if found is None:
                return general(scope)  # no such column: an error, or absent
            text = found.strip()
            if not text:
                return None
            try:
                return fn(text)
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None

        return column_fn


def _encoding_of(label: str) -> Any:
    key = label.strip().lower()
    aliases = {"utf8": "utf-8", "cp936": "gbk", "ms936": "gbk", "windows-936": "gbk"}
    key = aliases.get(key, key)
    if key in ("utf-8", "gbk", "gb18030", "gb2312"):
        return key
    raise InputRejected.make(
        "E_ENCODING/unsupported",
        Where(offset=0),
        encoding=repr(label),
        accepted="utf-8, gbk, gb18030, gb2312",
    )


def _with_charset(options: JsonOptions, raw: RawInput) -> JsonOptions:
    if not raw.charset:
        return options
    return options.model_copy(update={"encoding": _encoding_of(raw.charset)})


# --- compiled rules ---------------------------------------------------------------------
