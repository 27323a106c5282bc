"""Record validation against one loaded data set: the rules, no I/O.

Validation runs twice per record on the data path (gateway intake, hub receive),
so each data set is compiled once (:func:`compile_validator`) into a tuple of
per-field entries: the field name, its prebuilt E_REQUIRED violations, and a
checker closure with its code table, format check, length and parent field
already resolved. Checking a record is then one pass over that tuple with no spec
lookups or format parsing; a valid value costs one or two cheap checks, and
violations (the rare case) are worded by the same :func:`_violation` as always.
``_validate_reference.validate_fields_reference`` is the plain rule-by-rule
version the tests hold this one to.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters import identifiers as ids
from adapters.catalogue._schema import (
    CodeTable,
    DatasetSpec,
    FieldSpec,
    Stage,
    numeric_digits,
)

__all__ = [
    "Dataset",
    "RecordValidator",
    "Violation",
    "compile_validator",
    "validate_fields",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule. ``field`` is None when the record as a whole is wrong."""

    field: str | None
    code: str
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class Dataset:
    """A data set as validated: its spec plus the platform fields it carries."""

    domain: str
    spec: DatasetSpec
    # Own fields first, then the platform fields (with the domain's requiredness).
    fields: Mapping[str, FieldSpec]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def data_no(self) -> int:
        return self.spec.data_no


# Messages of the catalogue's own codes; identifier codes come from ids.MESSAGES.
_MESSAGES: Mapping[str, tuple[str, str]] = {
    "E_DATASET_UNKNOWN": ("data set is not in the catalogue", "数据集不在目录中"),
    "E_FIELD_UNKNOWN": ("field is not defined for this data set", "该数据集无此字段"),
    "E_REQUIRED": ("required field is missing or empty", "必填字段缺失或为空"),
    "E_REQUIRED_WHEN": ("field is required here", "此情形下该字段必填"),
    "E_LENGTH": ("value has the wrong length", "字段长度不符"),
    "E_MAX_LENGTH": ("value is too long", "字段超长"),
    "E_MULTI_EMPTY_ITEM": (
        "';'-separated list has an empty item",
        "以';'分隔的多值中有空项",
    ),
    "E_NUMBER_NEGATIVE": ("value must not be negative", "数值不能为负"),
    "E_CODE_UNKNOWN": ("value is not in the code table", "值不在代码表范围内"),
    "E_FORMAT": ("value has the wrong format", "格式错误"),
    "E_CODE_PARENT": (
        "code does not extend its parent code",
        "编号未以其上级编号开头",
    ),
}


def _violation(
    field: str | None, code: str, detail_en: str = "", detail_zh: str = ""
) -> Violation:
    en, zh = _MESSAGES.get(code) or ids.MESSAGES.get(code) or (code, code)
    where = f"{field}: " if field else ""
    where_zh = f"{field}：" if field else ""
    return Violation(
        field=field,
        code=code,
        message_en=f"{where}{en}{'; ' + detail_en if detail_en else ''}",
        message_zh=f"{where_zh}{zh}{'，' + detail_zh if detail_zh else ''}",
    )


# --- compiled validation ---------------------------------------------------------------

# A record as checked: values are strings, though a None value is taken for an
# absent field (as a .get() lookup would see it) rather than crashing.
_Record = Mapping[str, str | None]
# Checks one present, non-blank value (or one item of a multi field) of a record.
_Checker = Callable[[str, _Record], Violation | None]
# Every broken rule of a record at a stage: what Catalogue.validate runs.
RecordValidator = Callable[[_Record, Stage], list[Violation]]

_FORMAT_CHECKS: Mapping[str, Callable[[str], ids.Check]] = {
    "date": ids.check_date,
    "datetime": ids.check_datetime,
    "uscc": ids.check_uscc,
    "org_code": ids.check_org_code,
    "citizen_id": ids.check_citizen_id,
    "party_id": ids.check_party_id,
    "region_code": ids.check_region_code,
    "area_code": ids.check_area_code,
    "project_code": ids.check_project_code,
    "tender_project_code": ids.check_tender_project_code,
    "section_code": ids.check_section_code,
    "unified_deal_code": ids.check_unified_deal_code,
}

# No limit: the length bound of a field without length or max_length.
_UNBOUNDED = sys.maxsize
# Identifier values repeat heavily (the same parties, regions, projects and deals
# across records), so whether a value passes its format check is memoised per
# format, for values up to _ACCEPT_MAX_LENGTH characters (every identifier is
# shorter; longer values take the unmemoised path, so the memos stay small).
# Dates and date-times need no memo: one precompiled pattern checks them exactly.
_ACCEPT_CACHE_SIZE = 16_384
_ACCEPT_MAX_LENGTH = 64
_PATTERN_FORMATS: Mapping[str, re.Pattern[str]] = {
    "date": ids._DATE,
    "datetime": ids._DATETIME,
}


def _accepts_format(
    check: Callable[[str], ids.Check],
) -> functools._lru_cache_wrapper[bool]:
    def accepts(value: str) -> bool:
        return check(value).ok

    return functools.lru_cache(maxsize=_ACCEPT_CACHE_SIZE)(accepts)


_ACCEPTS: Mapping[str, functools._lru_cache_wrapper[bool]] = {
    fmt: _accepts_format(check)
    for fmt, check in _FORMAT_CHECKS.items()
    if fmt not in _PATTERN_FORMATS
}


def _cache_clear() -> None:
    """Forget every memoised check result, here and in identifiers (benchmarks)."""
    for accepts in _ACCEPTS.values():
        accepts.cache_clear()
    ids._cache_clear()


def _number_pattern(spec: FieldSpec, integer: int, fraction: int) -> re.Pattern[str]:
    """The values of ``n(p,s)`` that break no rule.

    ids.check_decimal's grammar with the digit limits built in (leading zeros,
    which do not count, taken possessively so nothing backtracks) and, unless the
    field is signed, no minus sign; a value it refuses goes the full path, where
    ids.check_decimal names the broken rule (or, for ``-0``, accepts it).
    """
    sign = "[+-]?" if spec.signed else r"\+?"
    tail = rf"(?:\.[0-9]{{1,{fraction}}})?" if fraction else ""
    return re.compile(rf"{sign}(?=[0-9])0*+[0-9]{{0,{integer}}}{tail}")


def _number_checker(spec: FieldSpec, integer: int, fraction: int) -> _Checker:
    name, fmt, signed = spec.name, spec.format, spec.signed

    def check(item: str, record: _Record) -> Violation | None:
        number = ids.check_decimal(item, integer, fraction)
        if not number.ok:
            reason = number.reason or "E_NUMBER_FORMAT"
            return _violation(name, reason, f"format {fmt}", f"格式{fmt}")
        if number.value is not None and number.value < 0 and not signed:
            return _violation(name, "E_NUMBER_NEGATIVE")
        return None

    return check


def _format_checker(spec: FieldSpec, fn: Callable[[str], ids.Check]) -> _Checker:
    name = spec.name

    def check(item: str, record: _Record) -> Violation | None:
        result = fn(item)
        if result.ok:
            return None
        reason = result.reason or "E_FORMAT"
        if result.expected is None:
            return _violation(name, reason)
        return _violation(
            name,
            reason,
            f"expected check character {result.expected}",
            f"校验码应为{result.expected}",
        )

    return check


def _code_checker(spec: FieldSpec, table: CodeTable) -> _Checker:
    name, values = spec.name, frozenset(table.values)
    allowed = "/".join(table.values)
    en = f"table {table.id} allows {allowed}"
    zh = f"代码表{table.id}（{table.name_zh}）取值为{allowed}"
    # The table never changes, so neither does the violation.
    unknown = _violation(name, "E_CODE_UNKNOWN", en, zh)

    def check(item: str, record: _Record) -> Violation | None:
        return None if item in values else unknown

    return check


def _parent_checker(spec: FieldSpec, parent_field: str) -> _Checker:
    name = spec.name

    def check(item: str, record: _Record) -> Violation | None:
        parent = record.get(parent_field)
        # A missing parent is reported as missing, not as a mismatch.
        if (
            parent is None
            or (len(item) > len(parent) and item.startswith(parent))
            or not parent.strip()
        ):
            return None
        return _violation(
            name,
            "E_CODE_PARENT",
            f"{item} does not start with {parent_field} {parent}",
            f"{item}未以{parent_field} {parent}开头",
        )

    return check


def _item_checker(spec: FieldSpec, tables: Mapping[str, CodeTable]) -> _Checker | None:
    """Checker of one value or list item: format, code table, parent, in order."""
    stages: list[_Checker] = []
    digits = numeric_digits(spec.format)
    if digits is not None:
        stages.append(_number_checker(spec, *digits))
    elif spec.format in _FORMAT_CHECKS:
        stages.append(_format_checker(spec, _FORMAT_CHECKS[spec.format]))
    if spec.code_table is not None:
        table = tables[spec.code_table]
        if table.status != "pending":
            stages.append(_code_checker(spec, table))
    if spec.extends is not None:
        stages.append(_parent_checker(spec, spec.extends))
    if not stages:
        return None
    if len(stages) == 1:
        return stages[0]
    chain = tuple(stages)

    def each(item: str, record: _Record) -> Violation | None:
        for stage in chain:
            found = stage(item, record)
            if found is not None:
                return found
        return None

    return each


def _length_violation(spec: FieldSpec, size: int) -> Violation:
    if spec.length is not None:
        return _violation(
            spec.name,
            "E_LENGTH",
            f"{size} characters, must be {spec.length}",
            f"实际{size}位，应为{spec.length}位",
        )
    return _violation(
        spec.name,
        "E_MAX_LENGTH",
        f"{size} characters, at most {spec.max_length}",
        f"实际{size}位，最多{spec.max_length}位",
    )


def _bounds(spec: FieldSpec) -> tuple[int, int]:
    """Lengths a value may have. (The schema allows length or max_length.)"""
    if spec.length is not None:
        return spec.length, spec.length
    return 0, spec.max_length or _UNBOUNDED


def _value_test(
    spec: FieldSpec, tables: Mapping[str, CodeTable]
) -> tuple[int, Callable[[str], object] | None]:
    """``(longest, test)``: an item of at most ``longest`` characters for which
    ``test`` is truthy passes the field's format and code table (not its length
    or parent). ``test`` is None when the field has neither.
    """
    longest = _UNBOUNDED
    tests: list[Callable[[str], object]] = []
    digits = numeric_digits(spec.format)
    if digits is not None:
        tests.append(_number_pattern(spec, *digits).fullmatch)
    elif spec.format in _PATTERN_FORMATS:
        tests.append(_PATTERN_FORMATS[spec.format].fullmatch)
    elif spec.format in _ACCEPTS:
        tests.append(_ACCEPTS[spec.format])
        longest = _ACCEPT_MAX_LENGTH
    if spec.code_table is not None:
        table = tables[spec.code_table]
        if table.status != "pending":
            tests.append(frozenset(table.values).__contains__)
    if not tests:
        return longest, None
    if len(tests) == 1:
        return longest, tests[0]
    first, second = tests  # a format and a code table

    def both(value: str) -> bool:
        return bool(first(value)) and bool(second(value))

    return longest, both


def _full_checker(spec: FieldSpec, tables: Mapping[str, CodeTable]) -> _Checker:
    """First broken rule of a present value: one violation per field is enough.

    Length first, then each item: an item the value test accepts has only its
    parent left to check; any other goes rule by rule.
    """
    item = _item_checker(spec, tables)
    low, high = _bounds(spec)
    longest, test = _value_test(spec, tables)
    parent = None if spec.extends is None else _parent_checker(spec, spec.extends)
    if spec.multi:
        empty_item = _violation(spec.name, "E_MULTI_EMPTY_ITEM")

        def multi(value: str, record: _Record) -> Violation | None:
            size = len(value)
            if size < low or size > high:
                return _length_violation(spec, size)
            items = value.split(";")
            if "" in items:
                return empty_item
            for one in items:
                if test is not None and len(one) <= longest and test(one):
                    found = None if parent is None else parent(one, record)
                else:
                    found = None if item is None else item(one, record)
                if found is not None:
                    return found
            return None

        return multi

    def single(value: str, record: _Record) -> Violation | None:
        size = len(value)
        if size < low or size > high:
            return _length_violation(spec, size)
        if test is not None and size <= longest and test(value):
            return None if parent is None else parent(value, record)
        return None if item is None else item(value, record)

    return single


def _fast_path(
    spec: FieldSpec, tables: Mapping[str, CodeTable]
) -> tuple[int, int, Callable[[str], object] | None]:
    """``(low, high, test)``: a value of ``low``-``high`` characters for which
    ``test`` (if any) is truthy breaks no rule of the field.

    Every other value takes the full checker, which finds the rule it breaks, if
    any. Lists and parent-extending codes depend on more than the value and get
    an empty window, so they always take the full checker.
    """
    if spec.multi or spec.extends is not None:
        return 1, 0, None
    low, high = _bounds(spec)
    longest, test = _value_test(spec, tables)
    return low, min(high, longest), test


# One field as the record loop sees it, per stage:
# (position in the data set, 1 if required at this stage else 0, fast-path window
# and test, full checker).
_Entry = tuple[int, int, int, int, Callable[[str], object] | None, _Checker]
# A field required at a stage: (position, name, the violation when it is absent).
_Required = tuple[int, str, Violation]


def _position(found: tuple[int, Violation]) -> int:
    return found[0]


def compile_validator(
    dataset: Dataset, tables: Mapping[str, CodeTable]
) -> RecordValidator:
    """The validator of ``dataset``: :func:`validate_fields` with all specs resolved.

    Raises KeyError, as validation would, when a field names a code table that
    ``tables`` lacks (a loaded catalogue never does).
    """
    by_stage: dict[bool, tuple[dict[str, _Entry], tuple[_Required, ...]]] = {}
    for outbound in (False, True):
        entries: dict[str, _Entry] = {}
        required: list[_Required] = []
        for index, spec in enumerate(dataset.fields.values()):
            need = spec.required and (outbound or spec.required_at == "intake")
            if need:
                required.append((index, spec.name, _violation(spec.name, "E_REQUIRED")))
            low, high, accepts = _fast_path(spec, tables)
            full = _full_checker(spec, tables)
            entries[spec.name] = (index, int(need), low, high, accepts, full)
        by_stage[outbound] = entries, tuple(required)
    intake_entries, intake_required = by_stage[False]
    outbound_entries, outbound_required = by_stage[True]
    rules = tuple(
        (
            rule.field,
            rule.equals,
            tuple(
                (
                    name,
                    _violation(
                        name,
                        "E_REQUIRED_WHEN",
                        f"{rule.field} is {rule.equals}",
                        f"{rule.field}为{rule.equals}",
                    ),
                )
                for name in rule.then_required
            ),
        )
        for rule in dataset.spec.required_when
    )

    def validate(record: _Record, stage: Stage) -> list[Violation]:
        if stage == "outbound":
            lookup, required = outbound_entries.get, outbound_required
        else:
            lookup, required = intake_entries.get, intake_required
        found: list[Violation] = []
        # Field-level problems in record order, with their data-set position.
        problems: list[tuple[int, Violation]] = []
        present = 0
        for name, value in record.items():
            entry = lookup(name)
            if entry is None:
                found.append(_violation(name, "E_FIELD_UNKNOWN"))
                continue
            # Samples never carry "" (absent means omitted); blank counts as absent.
            if value is None or not value.strip():
                continue
            index, need, low, high, accepts, full = entry
            present += need
            if low <= len(value) <= high and (accepts is None or accepts(value)):
                continue
            problem = full(value, record)
            if problem is not None:
                problems.append((index, problem))
        if present != len(required):
            get = record.get
            for index, name, violation in required:
                value = get(name)
                if value is None or not value.strip():
                    problems.append((index, violation))
        if problems:
            # One problem per field at most: data-set order is position order.
            problems.sort(key=_position)
            found.extend([problem for _, problem in problems])
        for field, equals, then_required in rules:
            if record.get(field) != equals:
                continue
            for name, violation in then_required:
                value = record.get(name)
                if value is None or not value.strip():
                    found.append(violation)
        return found

    return validate


def validate_fields(
    dataset: Dataset,
    record: _Record,
    tables: Mapping[str, CodeTable],
    stage: Stage,
) -> list[Violation]:
    """Every broken rule of ``record`` (field name -> string value), in field order.

    Compiles the data set for this one call: to check many records, keep the
    :func:`compile_validator` result (Catalogue.validate does).
    """
    return compile_validator(dataset, tables)(record, stage)
