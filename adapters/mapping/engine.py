"""Compile a mapping file into an adapter, and run it over one input.

Compiling turns every path, condition and normaliser into a closure once, checks
the mapping against the catalogue (data sets, fields, required fields), and
collects every problem with its YAML location. Running reads the input with the
format's safe reader and, for each source record, applies the rules in order:

* every rule whose ``when`` holds makes its record(s) - one, one per ``for_each``
  sub-record, or one per group of consecutive records (``group_by``);
* a matching ``skip`` rule ends the record's processing and makes nothing;
* a record no rule matches is rejected (or ignored, ``unmatched: ignore``).

A value that cannot be normalised rejects that record (``RecordRejected``, naming
the national field, the source path and the value); reading goes on.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias

from lxml import etree

from adapters.base import NationalRecord, RawInput, RecordRejected
from adapters.catalogue import Catalogue
from adapters.mapping import normalizers as nz
from adapters.mapping.formats import (
    ColumnsFormat,
    FieldError,
    Format,
    JsonFormat,
    Raw,
    Run,
    Scope,
    TextFn,
    XmlFormat,
    clean,
    source_label,
)
from adapters.mapping.loader import Loc, Problems
from adapters.mapping.model import (
    BooleanOp,
    CheckOp,
    Condition,
    ConvertUnitOp,
    DateOp,
    DecimalOp,
    HalfwidthOp,
    JoinOp,
    JsonInput,
    JsonLinesInput,
    LookupOp,
    LowerOp,
    MappingFile,
    MoneyOp,
    PickOp,
    RecordRule,
    RegexOp,
    ReplaceOp,
    SplitOp,
    TrimOp,
    UniqueOp,
    UpperOp,
    Value,
    ValueRule,
    XmlInput,
)
from adapters.mapping.paths import Path, PathSyntaxError, parse_path
from adapters.readers import InputRejected, RowError
from gateway.errors import ConfigError

__all__ = ["CompiledMapping", "FieldError", "compile_mapping"]

ValueFn: TypeAlias = Callable[[Scope], Raw]
StepFn: TypeAlias = Callable[[Raw, Scope], Raw]
Test: TypeAlias = Callable[[Scope], bool]

MAX_GROUP_ROWS: Final = 100_000


@dataclass(slots=True)
class _Group:
    key: tuple[str, ...]
    rows: list[Scope] = field(default_factory=list)
    broken: bool = False


class _State:
    """Per-parse state of the group rules."""

    __slots__ = ("groups", "seen_keys")

    def __init__(self) -> None:
        self.groups: dict[int, _Group] = {}
        self.seen_keys: dict[int, set[tuple[str, ...]]] = {}


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    get: ValueFn
    aggregate: str | None
    label: str  # where the value comes from, for messages


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    label: str
    dataset: str
    when: Test | None
    for_each: Callable[[Scope], list[Scope]] | None
    group_by: tuple[Callable[[Scope], Raw], ...]
    fields: tuple[_Field, ...]
    skip: bool = field(default=False, kw_only=True)
    switch: _Switch | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class _Switch:
    """A rule's ``when`` that starts with a plain ``equals`` / ``in`` on a path:
    rules are then picked by that value with one dict lookup (see _Dispatch)."""

    path: str
    get: ValueFn
    values: frozenset[str]
    rest: Test | None
    """The rest of the condition (the other members of ``all``), if any."""


_Candidates: TypeAlias = tuple[tuple["_Rule", "Test | None"], ...]


class _Dispatch:
    """Which rules can match a record, from one value shared by their conditions.

    Mappings usually pick the rule by one field (``类型``, ``sjlx``): instead of
    testing every rule's condition on every record, the value is read once and
    looked up.  Only a value that is one text is dispatched; absent and repeated
    values, and a source that fails, take the rule-by-rule path, which then behaves
    exactly as before (a switch is only the *first* test of a rule, so a rule the
    lookup leaves out would have stopped at that test, without error).
    """

    __slots__ = ("buckets", "default", "get")

    def __init__(self, rules: tuple[_Rule, ...]) -> None:
        first = next(r.switch for r in rules if r.switch is not None)
        self.get = first.get
        keys: dict[str, None] = {}
        for rule in rules:
            if rule.switch is not None:
                keys.update(dict.fromkeys(sorted(rule.switch.values)))
        self.buckets: dict[str, _Candidates] = {
            key: _candidates(rules, key) for key in keys
        }
        self.default: _Candidates = _candidates(rules, None)


def _candidates(rules: tuple[_Rule, ...], key: str | None) -> _Candidates:
    out: list[tuple[_Rule, Test | None]] = []
    for rule in rules:
        if rule.switch is None:
            out.append((rule, rule.when))
        elif key is not None and key in rule.switch.values:
            out.append((rule, rule.switch.rest))
    return tuple(out)


def _dispatch(rules: tuple[_Rule, ...]) -> _Dispatch | None:
    paths = {r.switch.path for r in rules if r.switch is not None}
    if len(paths) != 1 or len(rules) < 2:
        return None
    return _Dispatch(rules)


def _collapse(value: Raw, source: str, scope: Scope | None = None) -> str | None:
    """One text or absent; several values are an error naming ``source``."""
    if value is None or type(value) is str:
        return value or None
    items = [v for v in value if v]
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return _many(items, source if scope is None else source_label(source, scope))


def _many(items: list[str], source: str) -> str:
    raise FieldError(
        "E_MAP_MULTIPLE",
        f"{len(items)} values found ({', '.join(nz.shown(v, 20) for v in items[:3])}"
        f"{', ...' if len(items) > 3 else ''}) where one is expected; add join or pick",
        f"应为一个值，实际有 {len(items)} 个；请使用 join 或 pick",
        source,
    )


class _Compiler:
    def __init__(
        self,
        model: MappingFile,
        problems: Problems,
        catalogue: Catalogue,
        settings: Mapping[str, str],
    ) -> None:
        self.model = model
        self.problems = problems
        self.catalogue = catalogue
        self.settings = settings
        spec = model.input
        self.format: Format
        if isinstance(spec, XmlInput):
            self.format = XmlFormat(spec, problems)
        elif isinstance(spec, JsonInput | JsonLinesInput):
            self.format = JsonFormat(spec)
        else:
            self.format = ColumnsFormat(spec)
        try:
            self.zone = nz.zone(model.timezone)
        except ValueError as exc:
            problems.add(("timezone",), str(exc))
            self.zone = nz.BEIJING

    # -- paths --

    def path(self, text: str, loc: Loc) -> Path | None:
        fmt = self.format
        if not fmt.paths:
            if text.startswith("$"):
                try:
                    parsed = parse_path(text)
                except PathSyntaxError as exc:
                    self.problems.add(loc, str(exc))
                    return None
                if parsed.context not in fmt.contexts or len(parsed.steps) != 1:
                    known = ", ".join(sorted(fmt.contexts)) or "none"
                    self.problems.add(
                        loc,
                        f"{text!r}: only $header/COLUMN refers to a context here "
                        f"(contexts: {known})",
                    )
                    return None
                return parsed
            return Path(text, None, absolute=False, steps=())
        try:
            parsed = parse_path(text)
        except PathSyntaxError as exc:
            self.problems.add(loc, str(exc))
            return None
        if parsed.context is not None and parsed.context not in fmt.contexts:
            known = ", ".join(sorted(fmt.contexts)) or "none are declared"
            self.problems.add(
                loc, f"unknown context ${parsed.context} (contexts: {known})"
            )
            return None
        if not parsed.steps:
            self.problems.add(loc, "a context path needs a step after $name/")
            return None
        if isinstance(fmt, XmlFormat | JsonFormat):
            before = len(self.problems.items)
            fmt.validate(parsed, loc, self.problems)
            if len(self.problems.items) > before:
                return None
        return parsed

    def getter(self, text: str, loc: Loc, *, strict: bool) -> Callable[[Scope], Raw]:
        parsed = self.path(text, loc)
        if parsed is None:
            return lambda scope: None
        return self.format.getter(parsed, strict=strict)

    # -- sources --

    def source(self, spec: Value | Condition, loc: Loc, *, strict: bool) -> ValueFn:
        if spec.path is not None:
            return self.getter(spec.path, (*loc, "path"), strict=strict)
        if spec.xpath is not None:
            if not isinstance(self.format, XmlFormat):
                self.problems.add((*loc, "xpath"), "xpath works on XML input only")
                return lambda scope: None
            try:
                return self.format.xpath(spec.xpath)
            except etree.XPathSyntaxError as exc:
                self.problems.add((*loc, "xpath"), f"XPath: {exc}")
                return lambda scope: None
        if spec.setting is not None:
            value = self.settings.get(spec.setting)
            if value is None:
                self.problems.add(
                    (*loc, "setting"),
                    f"setting {spec.setting!r} is not given in the source's options "
                    "(settings:)",
                )
            text = clean(value)
            return lambda scope: text
        if spec.meta is not None:
            return self.meta(spec.meta, (*loc, "meta"))
        if not isinstance(spec, Value):  # pragma: no cover - conditions have no more
            return lambda scope: None
        if spec.const is not None:
            const = spec.const or None
            return lambda scope: const
        parts_spec = spec.concat or spec.first_of or ()
        key = "concat" if spec.concat else "first_of"
        parts = [
            (self.value(p, (*loc, key, i)), _value_label(p))
            for i, p in enumerate(parts_spec)
        ]
        if spec.concat:

            def concat(scope: Scope) -> Raw:
                out = []
                for get, label in parts:
                    text = _collapse(get(scope), label)
                    if text is None:
                        return None
                    out.append(text)
                return "".join(out)

            return concat

        def first_of(scope: Scope) -> Raw:
            for get, label in parts:
                text = _collapse(get(scope), label)
                if text is not None:
                    return text
            return None

        return first_of

    def meta(self, name: str, loc: Loc) -> ValueFn:
        fmt = self.format.name
        allowed = {
            "row": ("csv", "fixed_width"),
            "record_type": ("fixed_width",),
        }
        if name in allowed and fmt not in allowed[name]:
            self.problems.add(loc, f"meta {name} is not available for {fmt} input")
        if name == "input_name":
            return lambda scope: clean(scope.run.raw.name)
        if name == "content_type":
            return lambda scope: clean(scope.run.raw.content_type)
        if name == "line":
            return lambda scope: None if scope.line is None else str(scope.line)
        if name == "row":
            return lambda scope: None if scope.row is None else str(scope.row)
        if name == "record_type":
            return lambda scope: clean(scope.record_type)
        return lambda scope: str(scope.index) if scope.index else None

    # -- values --

    def value(self, spec: Value, loc: Loc, *, aggregate_ok: bool = False) -> ValueFn:
        if spec.aggregate is not None and not aggregate_ok:
            self.problems.add(
                (*loc, "aggregate"),
                "aggregate belongs to the fields of a group_by rule",
            )
        if spec.aggregate == "count":
            return lambda scope: None  # counted by the group
        source = self.source(spec, loc, strict=True)
        label = _value_label(spec)
        steps = self.steps(spec.normalize, (*loc, "normalize"))
        when = self.condition(spec.when, (*loc, "when")) if spec.when else None
        default = spec.default or None
        required = spec.required

        def run(scope: Scope) -> Raw:
            if when is not None and not when(scope):
                return None
            value = source(scope)
            if value is None:
                value = default
            try:
                for step in steps:
                    value = step(value, scope)
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None
            if required and not value:
                raise FieldError(
                    "E_MAP_REQUIRED",
                    "the value is required but empty or missing",
                    "该值必填，但为空或缺失",
                    source_label(label, scope),
                )
            return value

        if when is None and default is None and not required:
            if not steps:
                return source
            if all(isinstance(s, _Scalar) for s in steps):
                fns = tuple(s.fn for s in steps if isinstance(s, _Scalar))
                fn = fns[0] if len(fns) == 1 else _composed(fns)
                return self.format.fused(source, fn, label)
        return run

    # -- normalisers --

    def steps(self, specs: Sequence[Any], loc: Loc) -> list[StepFn]:
        out = []
        for i, spec in enumerate(specs):
            step = self.step(spec, (*loc, i))
            if step is not None:
                out.append(step)
        return out

    def step(self, spec: Any, loc: Loc) -> StepFn | None:
        at = (*loc, spec.op)
        if isinstance(spec, TrimOp):
            return _scalar(nz.trim)
        if isinstance(spec, HalfwidthOp):
            return _scalar(nz.halfwidth)
        if isinstance(spec, UpperOp):
            return _scalar(str.upper)
        if isinstance(spec, LowerOp):
            return _scalar(str.lower)
        if isinstance(spec, DateOp):
            return self._date(spec, at)
        if isinstance(spec, MoneyOp):
            unit, to, negative = spec.unit, spec.to, spec.negative
            if spec.op == "money_unit":
                if (to or unit) not in ("元", "万元"):
                    self.problems.add(
                        at, "分 has no national unit code: add to: 元 (or 万元)"
                    )
                return _scalar(lambda v: nz.money_unit_code(v, unit=unit, to=to))
            return _scalar(lambda v: nz.money(v, unit=unit, to=to, negative=negative))
        if isinstance(spec, DecimalOp):
            negative2, scale, integer = spec.negative, spec.scale, spec.integer
            return _scalar(
                lambda v: nz.decimal_text(
                    v, negative=negative2, scale=scale, integer=integer
                )
            )
        if isinstance(spec, ConvertUnitOp):
            return self._convert_unit(spec, at)
        if isinstance(spec, BooleanOp):
            true_words = (
                frozenset(nz.halfwidth(w).lower() for w in spec.true_values)
                if spec.true_values is not None
                else nz.TRUE_WORDS
            )
            false_words = (
                frozenset(nz.halfwidth(w).lower() for w in spec.false_values)
                if spec.false_values is not None
                else nz.FALSE_WORDS
            )
            if true_words & false_words:
                self.problems.add(at, "a word cannot be both true and false")
            yes, no = spec.true_code, spec.false_code
            return _scalar(lambda v: nz.boolean(v, true_words, false_words, yes, no))
        if isinstance(spec, LookupOp):
            return self._lookup(spec, at)
        if isinstance(spec, SplitOp):
            if spec.pattern is not None:
                try:
                    splitter = re.compile(spec.pattern)
                except re.error as exc:
                    self.problems.add(at, f"bad regular expression: {exc}")
                    return None
                split: Callable[[str], list[str]] = splitter.split
            else:
                sep = spec.separator or ""
                split = lambda v: v.split(sep)  # noqa: E731

            def do_split(value: Raw, scope: Scope) -> Raw:
                if value is None:
                    return None
                items = [value] if isinstance(value, str) else value
                out: list[str] = []
                for item in items:
                    out.extend(t for t in (clean(x) for x in split(item)) if t)
                return out

            return do_split
        if isinstance(spec, JoinOp):
            sep2 = spec.separator

            def join(value: Raw, scope: Scope) -> Raw:
                if value is None or isinstance(value, str):
                    return value
                return sep2.join(value) or None

            return join
        if isinstance(spec, UniqueOp):

            def unique(value: Raw, scope: Scope) -> Raw:
                if value is None or isinstance(value, str):
                    return value
                return list(dict.fromkeys(value))

            return unique
        if isinstance(spec, PickOp):
            first = spec.which == "first"

            def pick(value: Raw, scope: Scope) -> Raw:
                if value is None or isinstance(value, str):
                    return value
                return value[0] if first else value[-1]

            return pick
        if isinstance(spec, RegexOp):
            return self._regex(spec, at)
        if isinstance(spec, ReplaceOp):
            try:
                pattern = re.compile(spec.pattern)
            except re.error as exc:
                self.problems.add(at, f"bad regular expression: {exc}")
                return None
            replacement = spec.with_
            try:
                pattern.sub(replacement, "")
            except (re.error, IndexError) as exc:
                self.problems.add(at, f"bad replacement: {exc}")
                return None
            return _scalar(lambda v: pattern.sub(replacement, v) or None)
        if isinstance(spec, CheckOp):
            kind = spec.kind
            return _scalar(lambda v: nz.check(v, kind))
        raise AssertionError(spec)  # pragma: no cover - the model admits no other

    def _date(self, spec: DateOp, at: Loc) -> StepFn | None:
        patterns = []
        for i, text in enumerate(spec.formats):
            try:
                patterns.append(nz.compile_date_pattern(text))
            except ValueError as exc:
                self.problems.add((*at, "formats", i), str(exc))
        zone = self.zone
        if spec.timezone is not None:
            try:
                zone = nz.zone(spec.timezone)
            except ValueError as exc:
                self.problems.add((*at, "timezone"), str(exc))
        if not patterns:
            return None  # reported above
        output: Literal["date", "datetime"] = (
            "date" if spec.op == "date" else "datetime"
        )
        return _scalar(
            nz.time_converter(
                tuple(patterns), zone, output=output, date_only=spec.date_only
            )
        )

    def _convert_unit(self, spec: ConvertUnitOp, at: Loc) -> StepFn:
        unit_of = self.value(spec.unit, (*at, "unit"))
        # A factor of exactly 1 (the usual one) becomes nz.ONE, which decimal_text
        # knows it can skip.
        factors = {
            unit: nz.ONE if factor.as_tuple() == nz.ONE.as_tuple() else factor
            for unit, factor in spec.factors.items()
        }
        negative = spec.negative
        known = ", ".join(factors)

        def convert(value: Raw, scope: Scope) -> Raw:
            if value is None:
                return None
            unit = _collapse(unit_of(scope), "unit")
            factor = factors.get(unit) if unit is not None else None
            if factor is None:
                shown = nz.shown(unit) if unit is not None else "no unit"
                raise nz.ValueProblem(
                    "E_MAP_UNIT",
                    f"unit {shown} is not one of {known}",
                    f"单位 {shown} 不在 {known} 之中",
                )
            if type(value) is str:
                return nz.decimal_text(value, negative=negative, scale=factor)
            return [nz.decimal_text(v, negative=negative, scale=factor) for v in value]

        return convert

    def _lookup(self, spec: LookupOp, at: Loc) -> StepFn | None:
        if spec.table is not None:
            table = self.model.tables.get(spec.table)
            if table is None:
                known = ", ".join(self.model.tables) or "none"
                self.problems.add(
                    (*at, "table"),
                    f"no table {spec.table!r} in tables (known: {known})",
                )
                return None
        else:
            table = spec.values or {}
        unmapped, empty = spec.unmapped, spec.empty
        name = spec.table or "values"

        def one(value: str) -> str | None:
            found = table.get(value)
            if found is not None:
                return found
            if isinstance(unmapped, ValueRule):
                return unmapped.value
            if unmapped == "keep":
                return value
            if unmapped == "omit":
                return None
            raise nz.ValueProblem(
                "E_MAP_UNMAPPED",
                f"{nz.shown(value)} is not in table {name}",
                f"{nz.shown(value)} 不在代码对照表 {name} 中",
            )

        def lookup(value: Raw, scope: Scope) -> Raw:
            if value is None:
                if isinstance(empty, ValueRule):
                    return empty.value
                if empty == "error":
                    raise nz.ValueProblem(
                        "E_MAP_EMPTY",
                        f"the value is empty and table {name} requires one",
                        f"值为空，代码对照表 {name} 要求有值",
                    )
                return None
            if isinstance(value, str):
                return one(value)
            out = [one(v) for v in value]
            return [v for v in out if v is not None]

        return lookup

    def _regex(self, spec: RegexOp, at: Loc) -> StepFn | None:
        try:
            pattern = re.compile(spec.pattern)
        except re.error as exc:
            self.problems.add((*at, "pattern"), f"bad regular expression: {exc}")
            return None
        group: int | str = (
            spec.group if spec.group is not None else (1 if pattern.groups else 0)
        )
        if isinstance(group, str) and group.isdigit():
            group = int(group)
        if (isinstance(group, int) and group > pattern.groups) or (
            isinstance(group, str) and group not in pattern.groupindex
        ):
            self.problems.add((*at, "group"), f"the pattern has no group {group!r}")
            return None
        no_match = spec.no_match
        text = spec.pattern

        def extract(value: str) -> str | None:
            match = pattern.search(value)
            if match is None:
                if no_match == "keep":
                    return value
                if no_match == "omit":
                    return None
                raise nz.ValueProblem(
                    "E_MAP_REGEX",
                    f"{nz.shown(value)} does not match /{text}/",
                    f"{nz.shown(value)} 不匹配 /{text}/",
                )
            found = match.group(group)
            return clean(found)

        return _scalar(extract)

    # -- conditions --

    def condition(self, spec: Condition, loc: Loc) -> Test:
        if spec.all_ is not None:
            tests = [
                self.condition(c, (*loc, "all", i)) for i, c in enumerate(spec.all_)
            ]
            return _all_of(tests) or (lambda scope: True)
        if spec.any_ is not None:
            tests = [
                self.condition(c, (*loc, "any", i)) for i, c in enumerate(spec.any_)
            ]
            return lambda scope: any(t(scope) for t in tests)
        if spec.not_ is not None:
            inner = self.condition(spec.not_, (*loc, "not"))
            return lambda scope: not inner(scope)
        source = self.source(spec, loc, strict=False)
        steps = self.steps(spec.normalize, (*loc, "normalize"))
        label = spec.path or spec.xpath or spec.meta or spec.setting or ""

        def values(scope: Scope) -> list[str]:
            value = source(scope)
            try:
                for step in steps:
                    value = step(value, scope)
            except nz.ValueProblem as p:
                raise FieldError(
                    p.code, p.en, p.zh, source_label(label, scope)
                ) from None
            if value is None:
                return []
            return [value] if isinstance(value, str) else [v for v in value if v]

        if not steps:
            fast = _plain_test(spec, source)
            if fast is not None:
                return fast
        if spec.equals is not None:
            equals = spec.equals
            return lambda scope: equals in values(scope)
        if spec.not_equals is not None:
            differs = spec.not_equals
            return lambda scope: differs not in values(scope)
        if spec.in_ is not None:
            allowed = frozenset(spec.in_)
            return lambda scope: any(v in allowed for v in values(scope))
        if spec.not_in is not None:
            banned = frozenset(spec.not_in)
            return lambda scope: not any(v in banned for v in values(scope))
        if spec.matches is not None:
            try:
                regex = re.compile(spec.matches)
            except re.error as exc:
                self.problems.add((*loc, "matches"), f"bad regular expression: {exc}")
                return lambda scope: False
            return lambda scope: any(regex.fullmatch(v) for v in values(scope))
        wanted = True if spec.present is None else spec.present
        return lambda scope: bool(values(scope)) == wanted

    # -- rules --

    def rule(self, index: int, spec: RecordRule) -> _Rule:
        loc: Loc = ("records", index)
        label = spec.name or (
            f"rule {index + 1} ({spec.dataset})"
            if spec.dataset
            else f"rule {index + 1}"
        )
        when, switch = self.when(spec.when, (*loc, "when"))
        if spec.skip:
            return _Rule(index, label, "", when, None, (), (), skip=True, switch=switch)
        dataset = spec.dataset or ""
        self.check_dataset(dataset, spec, loc)
        for_each = None
        if spec.for_each is not None:
            if not self.format.paths:
                self.problems.add(
                    (*loc, "for_each"),
                    f"for_each has no meaning for {self.format.name}",
                )
            else:
                parsed = self.path(spec.for_each, (*loc, "for_each"))
                if parsed is not None:
                    for_each = self.format.nodes(parsed)
        group_by = tuple(
            self.getter(k, (*loc, "group_by", i), strict=True)
            for i, k in enumerate(spec.group_by or ())
        )
        fields = tuple(
            _Field(
                name,
                self.value(v, (*loc, "fields", name), aggregate_ok=bool(group_by)),
                v.aggregate,
                _value_label(v),
            )
            for name, v in spec.fields.items()
        )
        return _Rule(
            index, label, dataset, when, for_each, group_by, fields, switch=switch
        )

    def when(
        self, spec: Condition | None, loc: Loc
    ) -> tuple[Test | None, _Switch | None]:
        """A rule's condition, and its switch when it starts with a plain test."""
        if spec is None:
            return None, None
        parts = spec.all_ if spec.all_ is not None else (spec,)
        first = parts[0] if parts else None
        if (
            first is None
            or first.path is None
            or first.normalize
            or (first.equals is None and first.in_ is None)
        ):
            return self.condition(spec, loc), None
        at = (*loc, "all") if spec.all_ is not None else None
        before = len(self.problems.items)
        tests = [
            self.condition(c, loc if at is None else (*at, i))
            for i, c in enumerate(parts)
        ]
        if len(self.problems.items) > before:
            return _all_of(tests), None  # reported once; the mapping will not run
        values = frozenset(first.in_ or ()) | (
            {first.equals} if first.equals is not None else frozenset()
        )
        get = self.source(first, loc if at is None else (*at, 0), strict=False)
        switch = _Switch(first.path, get, values, _all_of(tests[1:]))
        return _all_of(tests), switch

    def check_dataset(self, dataset: str, spec: RecordRule, loc: Loc) -> None:
        found = self.catalogue.dataset(dataset)
        if found is None:
            close = difflib.get_close_matches(dataset, self.catalogue.datasets, 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.problems.add(
                (*loc, "dataset"),
                f"unknown data set {dataset!r} in catalogue "
                f"{self.catalogue.version}{hint}",
            )
            return
        for name in spec.fields:
            if name not in found.fields:
                close = difflib.get_close_matches(name, found.fields, 1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problems.add(
                    (*loc, "fields", name),
                    f"{dataset} has no field {name}{hint}",
                )
        given = set(spec.fields) | set(self.model.platform)
        missing = [
            f"{f.name} ({f.name_zh})"
            for f in found.fields.values()
            if f.required and f.required_at == "intake" and f.name not in given
        ]
        if missing:
            self.problems.add(
                (*loc, "fields"),
                f"required field(s) of {dataset} with no source: {', '.join(missing)}",
            )

    def platform(self) -> tuple[_Field, ...]:
        names = self.platform_names()
        out = []
        for name, spec in self.model.platform.items():
            if name not in names:
                self.problems.add(
                    ("platform", name),
                    f"{name} is not a platform field (platform fields: "
                    f"{', '.join(sorted(names))})",
                )
            get = self.value(spec, ("platform", name))
            out.append(_Field(name, get, None, _value_label(spec)))
        return tuple(out)

    def platform_names(self) -> frozenset[str]:
        for dataset in self.catalogue.datasets.values():
            own = {f.name for f in dataset.spec.fields}
            return frozenset(n for n in dataset.fields if n not in own)
        return frozenset()  # pragma: no cover - the catalogue has data sets


def _all_of(tests: Sequence[Test]) -> Test | None:
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]

    def all_of(scope: Scope) -> bool:
        for test in tests:  # noqa: SIM110 - faster than all() of a generator
            if not test(scope):
                return False
        return True

    return all_of


def _plain_test(spec: Condition, source: ValueFn) -> Test | None:
    """equals / in / present on a source without normalisers: no lists built."""
    if spec.equals is not None:
        equals = spec.equals

        def is_equal(scope: Scope) -> bool:
            value = source(scope)
            if type(value) is str:
                return value == equals
            return value is not None and equals in value

        return is_equal
    if spec.in_ is not None:
        allowed = frozenset(spec.in_)

        def is_in(scope: Scope) -> bool:
            value = source(scope)
            if type(value) is str:
                return value in allowed
            return value is not None and any(v in allowed for v in value)

        return is_in
    if spec.matches is None and spec.not_equals is None and spec.not_in is None:
        wanted = True if spec.present is None else spec.present
        return lambda scope: bool(source(scope)) == wanted
    return None


def _value_label(spec: Value) -> str:
    """How a value's source is named in messages: a path, or parts like A+B."""
    if spec.concat:
        return "+".join(_value_label(p) for p in spec.concat)
    if spec.first_of:
        return "|".join(_value_label(p) for p in spec.first_of)
    if spec.const is not None:
        return repr(spec.const)
    return spec.path or spec.xpath or spec.setting or spec.meta or "value"


class _Scalar:
    """A text function as a step: absent stays absent, lists map item by item."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[str], str | None]) -> None:
        self.fn = fn

    def __call__(self, value: Raw, scope: Scope) -> Raw:
        if value is None:
            return None
        if type(value) is str:
            return self.fn(value)
        out = [self.fn(v) for v in value]
        return [v for v in out if v]


_scalar = _Scalar


def _chain(text: str, fns: tuple[TextFn, ...]) -> str | None:
    for fn in fns:
        found = fn(text)
        if not found:
            return None
        text = found
    return text


def _composed(fns: tuple[TextFn, ...]) -> TextFn:
    """Several text functions as one; an absent result ends the chain."""
    return lambda text: _chain(text, fns)


# --- the compiled mapping -----------------------------------------------------------------


def _reject(
    locator: str, code: str, en: str, zh: str, field: str | None = None
) -> RecordRejected:
    return RecordRejected(
        locator=locator,
        code=code,
        message_en=f"{locator}: {en}",
        message_zh=f"{locator}：{zh}",
        field=field,
    )


def _field_reject(locator: str, errors: list[tuple[str, FieldError]]) -> RecordRejected:
    name, first = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    more_zh = f"（另有 {len(errors) - 1} 处）" if len(errors) > 1 else ""
    return _reject(
        locator,
        first.code,
        f"{name} from {first.source}: {first.en}{more}",
        f"{name}（来源 {first.source}）：{first.zh}{more_zh}",
        name,
    )


def _reject_error(locator: str, error: FieldError) -> RecordRejected:
    return _reject(
        locator,
        error.code,
        f"{error.source}: {error.en}",
        f"{error.source}：{error.zh}",
    )


class CompiledMapping:
    """A mapping ready to run: ``parse`` is the adapter method."""

    def __init__(
        self,
        model: MappingFile,
        fmt: Format,
        rules: tuple[_Rule, ...],
        platform: tuple[_Field, ...],
        fixed: Mapping[str, str],
    ) -> None:
        self.model = model
        self.name = model.name
        self.format = fmt
        self.rules = rules
        self.platform = platform
        self.fixed = dict(fixed)
        self.reject_unmatched = model.unmatched == "reject"
        self.reject_input = model.row_errors == "reject_input"
        self.dispatch = _dispatch(rules)
        self.every: _Candidates = tuple((r, r.when) for r in rules)

    # -- running --

    def parse(self, raw: RawInput) -> Iterator[NationalRecord | RecordRejected]:
        run = Run(raw)
        state = _State()
        for item in self.format.items(raw, run):
            if isinstance(item, RowError):
                if self.reject_input:
                    raise InputRejected(
                        item.code, item.locator, item.message_en, item.message_zh
                    )
                yield RecordRejected(
                    locator=item.locator,
                    code=item.code,
                    message_en=item.message_en,
                    message_zh=item.message_zh,
                )
                continue
            yield from self._one(item, state)
        for rule in self.rules:
            group = state.groups.pop(rule.index, None)
            if group is not None:
                yield self._group_record(rule, group)

    def _one(
        self, scope: Scope, state: _State
    ) -> Iterator[NationalRecord | RecordRejected]:
        candidates = self.every
        dispatch = self.dispatch
        if dispatch is not None:
            try:
                key = dispatch.get(scope)
            except FieldError:
                pass  # the rule-by-rule path reports it, in order
            else:
                if key is None:
                    candidates = dispatch.default
                elif type(key) is str:
                    candidates = dispatch.buckets.get(key, dispatch.default)
        matched = False
        for rule, when in candidates:
            try:
                if when is not None and not when(scope):
                    continue
            except FieldError as exc:
                yield _reject_error(scope.locator, exc)
                return
            matched = True
            if rule.skip:
                return
            if rule.group_by:
                yield from self._grouped(rule, scope, state)
            elif rule.for_each is not None:
                for sub in rule.for_each(scope):
                    yield self._record(rule, sub)
            else:
                yield self._record(rule, scope)
        if not matched and self.reject_unmatched:
            yield _reject(
                scope.locator,
                "E_MAP_UNMATCHED",
                "no rule of the mapping matches this record",
                "映射中没有与此记录匹配的规则",
            )

    def _record(self, rule: _Rule, scope: Scope) -> NationalRecord | RecordRejected:
        out: dict[str, str] = {}
        errors: list[tuple[str, FieldError]] = []
        for f in rule.fields:
            try:
                value = f.get(scope)
                if not value:
                    continue  # absent (or empty): national records omit it
                if type(value) is not str:
                    value = _collapse(value, f.label, scope)
                    if value is None:
                        continue
                out[f.name] = value
            except FieldError as exc:
                errors.append((f.name, exc))
        self._platform(out, scope, errors)
        if errors:
            return _field_reject(scope.locator, errors)
        return NationalRecord(dataset=rule.dataset, fields=out, locator=scope.locator)

    def _platform(
        self, out: dict[str, str], scope: Scope, errors: list[tuple[str, FieldError]]
    ) -> None:
        for f in self.platform:
            if f.name in out:
                continue
            try:
                value = _collapse(f.get(scope), f.label, scope)
            except FieldError as exc:
                errors.append((f.name, exc))
                continue
            if value is not None:
                out[f.name] = value
        for name, value in self.fixed.items():
            out.setdefault(name, value)

    def _grouped(
        self, rule: _Rule, scope: Scope, state: _State
    ) -> Iterator[NationalRecord | RecordRejected]:
        key: list[str] = []
        try:
            for get in rule.group_by:
                part = _collapse(get(scope), "group_by")
                if part is None:
                    yield _reject(
                        scope.locator,
                        "E_MAP_GROUP",
                        f"{rule.label}: the group_by key is empty",
                        f"{rule.label}：group_by 分组键为空",
                    )
                    return
                key.append(part)
        except FieldError as exc:
            yield _reject_error(scope.locator, exc)
            return
        group = state.groups.get(rule.index)
        k = tuple(key)
        if group is not None and group.key == k:
            if len(group.rows) >= MAX_GROUP_ROWS:
                group.broken = True
            else:
                group.rows.append(_keep(scope, self.format))
            return
        if group is not None:
            yield self._group_record(rule, group)
        seen = state.seen_keys.setdefault(rule.index, set())
        group = _Group(k, [_keep(scope, self.format)], broken=k in seen)
        seen.add(k)
        state.groups[rule.index] = group

    def _group_record(
        self, rule: _Rule, group: _Group
    ) -> NationalRecord | RecordRejected:
        first = group.rows[0]
        locator = first.locator
        if len(group.rows) > 1:
            locator += f" (+{len(group.rows) - 1} rows)"
        if group.broken:
            key = "/".join(group.key)
            return _reject(
                locator,
                "E_MAP_GROUP",
                f"{rule.label}: rows with key {key!r} are not consecutive (or more "
                f"than {MAX_GROUP_ROWS}); one group cannot be made from them",
                f"{rule.label}：键为 {key!r} 的行不连续（或超过 {MAX_GROUP_ROWS} 行），"
                "无法合并为一条记录",
            )
        out: dict[str, str] = {}
        errors: list[tuple[str, FieldError]] = []
        for f in rule.fields:
            try:
                value = self._aggregate(f, group.rows)
            except FieldError as exc:
                errors.append((f.name, exc))
                continue
            if value is not None:
                out[f.name] = value
        self._platform(out, first, errors)
        if errors:
            return _field_reject(locator, errors)
        return NationalRecord(dataset=rule.dataset, fields=out, locator=locator)

    @staticmethod
    def _aggregate(f: _Field, rows: list[Scope]) -> str | None:
        how = f.aggregate or "first"
        if how == "count":
            return str(len(rows))
        if how == "first":
            return _collapse(f.get(rows[0]), f.label, rows[0])
        if how == "last":
            return _collapse(f.get(rows[-1]), f.label, rows[-1])
        values: list[str] = []
        for row in rows:
            value = f.get(row)
            if value is None:
                continue
            values.extend([value] if isinstance(value, str) else value)
        values = [v for v in values if v]
        if how == "unique":
            values = list(dict.fromkeys(values))
        if not values:
            return None
        if how == "sum":
            total = Decimal(0)
            for v in values:
                try:
                    total += nz.parse_decimal(v)[0]
                except nz.ValueProblem as p:
                    raise FieldError(p.code, p.en, p.zh, f.name) from None
            return nz.canonical_decimal(total)
        return ";".join(values)


def _keep(scope: Scope, fmt: Format) -> Scope:
    """A scope that stays valid after the reader moves on (XML items are cleared)."""
    if isinstance(fmt, XmlFormat):
        return Scope(copy.deepcopy(scope.node), scope.run, scope.where, line=scope.line)
    return scope


def compile_mapping(
    model: MappingFile,
    problems: Problems,
    catalogue: Catalogue,
    *,
    settings: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
) -> CompiledMapping:
    """Compile ``model``; raises MappingError listing every problem found."""
    compiler = _Compiler(model, problems, catalogue, settings or {})
    fixed = dict(platform or {})
    names = compiler.platform_names()
    for name in fixed:
        if name not in names:
            # A problem of the source's options, not of the mapping file.
            raise ConfigError(
                f"platform.{name}: not a platform field "
                f"(platform fields: {', '.join(sorted(names))})"
            )
    rules = tuple(compiler.rule(i, r) for i, r in enumerate(model.records))
    computed = compiler.platform()
    problems.raise_if_any()
    return CompiledMapping(model, compiler.format, rules, computed, fixed)
