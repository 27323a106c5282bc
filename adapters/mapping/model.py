"""The mapping file as pydantic models (``extra="forbid"``: a typo is an error).

Shapes only; what needs the catalogue, the paths or the input format (unknown data
set or field, a required field without a source, a path that does not parse, an
unknown code table ...) is checked when the mapping is compiled
(:mod:`adapters.mapping.engine`). docs/mapping.md describes every key.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from adapters.readers import Encoding, RecordLayout

__all__ = [
    "NORMALISERS",
    "Condition",
    "CsvInput",
    "FixedWidthInput",
    "InputSpec",
    "JsonInput",
    "JsonLinesInput",
    "MappingFile",
    "RecordRule",
    "Value",
    "XmlInput",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- inputs -------------------------------------------------------------------------


class XmlInput(_Strict):
    format: Literal["xml"]
    records: str = Field(
        description="Absolute element path of the record elements, e.g. "
        "/数据导出/记录 (local names; prefix:name for an exact namespace; * for any)."
    )
    context: dict[str, str] = Field(
        default_factory=dict,
        description="name -> absolute element path of elements read before the "
        "records (a notice header, a batch header) whose values later records use "
        "as $name/...",
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="prefix -> namespace URI for prefix:name"
    )
    encodings: tuple[Encoding, ...] | None = Field(
        None, description="Encodings accepted in the XML declaration (default: all)."
    )
    max_input_bytes: int | None = Field(None, ge=1)
    max_item_bytes: int | None = Field(None, ge=1)
    max_items: int | None = Field(None, ge=1)


class JsonLinesInput(_Strict):
    format: Literal["jsonl"]
    encoding: Encoding = "utf-8"
    max_input_bytes: int | None = Field(None, ge=1)
    max_item_bytes: int | None = Field(None, ge=1)


class JsonInput(_Strict):
    format: Literal["json"]
    encoding: Encoding = "utf-8"
    max_input_bytes: int | None = Field(None, ge=1)
    max_item_bytes: int | None = Field(None, ge=1)


class CsvInput(_Strict):
    format: Literal["csv"]
    encoding: Encoding | Literal["auto"] = "auto"
    delimiter: str = Field(",", min_length=1, max_length=1)
    quote: str | None = Field('"', min_length=1, max_length=1)
    header_rows: int = Field(1, ge=0, le=10)
    names_row: int = Field(1, ge=1, le=10)
    columns: tuple[str, ...] | None = Field(
        None, description="Column names when the file has no header row."
    )
    max_input_bytes: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)


class FixedWidthInput(_Strict):
    format: Literal["fixed_width"]
    encoding: Encoding
    code_start: int = Field(0, ge=0)
    code_length: int = Field(0, ge=0, le=16)
    layouts: tuple[RecordLayout, ...] = Field(min_length=1)
    header: RecordLayout | None = None
    trailer: RecordLayout | None = None
    record_length: int | None = Field(None, ge=1)
    max_input_bytes: int | None = Field(None, ge=1)


InputSpec = Annotated[
    XmlInput | JsonLinesInput | JsonInput | CsvInput | FixedWidthInput,
    Field(discriminator="format"),
]


# --- normaliser steps ---------------------------------------------------------------


class _Op(_Strict):
    op: str


class TrimOp(_Op):
    op: Literal["trim"]


class HalfwidthOp(_Op):
    op: Literal["halfwidth"]


class UpperOp(_Op):
    op: Literal["upper"]


class LowerOp(_Op):
    op: Literal["lower"]


class DateOp(_Op):
    op: Literal["date", "datetime"]
    formats: tuple[str, ...] = Field(min_length=1)
    timezone: str | None = Field(
        None,
        description="Source zone for values without an offset (default: the "
        "mapping's timezone).",
    )
    date_only: Literal["reject", "midnight"] = "reject"

    @field_validator("formats", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


MoneyUnit = Literal["元", "万元", "分"]


class MoneyOp(_Op):
    op: Literal["money", "money_unit"]
    unit: MoneyUnit = "元"
    to: MoneyUnit | None = None
    negative: Literal["allow", "reject"] = "allow"


class DecimalOp(_Op):
    op: Literal["decimal"]
    negative: Literal["allow", "reject"] = "allow"
    scale: Decimal | None = None
    integer: bool = False


class ConvertUnitOp(_Op):
    op: Literal["convert_unit"]
    unit: Value = Field(description="Where the unit of the value is written.")
    factors: dict[str, Decimal] = Field(min_length=1)
    negative: Literal["allow", "reject"] = "allow"

    @field_validator("unit", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return _value_shorthand(value)


class BooleanOp(_Op):
    op: Literal["boolean"]
    true_values: tuple[str, ...] | None = None
    false_values: tuple[str, ...] | None = None
    true_code: str = "1"
    false_code: str = "0"


class ValueRule(_Strict):
    value: str


class LookupOp(_Op):
    op: Literal["lookup"]
    table: str | None = None
    values: dict[str, str] | None = None
    unmapped: Literal["error", "keep", "omit"] | ValueRule = "error"
    empty: Literal["omit", "error"] | ValueRule = "omit"

    @model_validator(mode="after")
    def _one_table(self) -> LookupOp:
        if (self.table is None) == (self.values is None):
            raise ValueError("give either table (a name in tables:) or values")
        return self


class SplitOp(_Op):
    op: Literal["split"]
    separator: str | None = Field(None, min_length=1)
    pattern: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> SplitOp:
        if (self.separator is None) == (self.pattern is None):
            raise ValueError("give either separator or pattern")
        return self


class JoinOp(_Op):
    op: Literal["join"]
    separator: str = ";"


class UniqueOp(_Op):
    op: Literal["unique"]


class PickOp(_Op):
    op: Literal["pick"]
    which: Literal["first", "last"]


class RegexOp(_Op):
    op: Literal["regex"]
    pattern: str = Field(min_length=1)
    group: int | str | None = None
    no_match: Literal["error", "omit", "keep"] = "error"


class ReplaceOp(_Op):
    op: Literal["replace"]
    pattern: str = Field(min_length=1)
    with_: str = Field("", alias="with")


class CheckOp(_Op):
    op: Literal["check"]
    kind: Literal[
        "uscc",
        "org_code",
        "citizen_id",
        "party_id",
        "region_code",
        "area_code",
        "project_code",
        "tender_project_code",
        "section_code",
        "unified_deal_code",
        "date",
        "datetime",
    ]


# name -> the option a scalar shorthand sets ({lookup: 公告性质} = {lookup: {table: ...}})
NORMALISERS: dict[str, str | None] = {
    "trim": None,
    "halfwidth": None,
    "upper": None,
    "lower": None,
    "date": "formats",
    "datetime": "formats",
    "money": "unit",
    "money_unit": "unit",
    "decimal": None,
    "convert_unit": None,
    "boolean": None,
    "lookup": "table",
    "split": "separator",
    "join": "separator",
    "unique": None,
    "pick": "which",
    "regex": "pattern",
    "replace": None,
    "check": "kind",
}


def _step_shorthand(item: Any) -> Any:
    """``trim`` / ``{date: [...]}`` / ``{lookup: {table: x}}`` -> ``{op: ..., ...}``."""
    if isinstance(item, str):
        name, options = item, None
    elif isinstance(item, dict) and len(item) == 1:
        ((name, options),) = item.items()
    else:
        raise ValueError(
            "a normaliser is a name (trim) or a one-key mapping ({date: [...]})"
        )
    if name not in NORMALISERS:
        known = ", ".join(NORMALISERS)
        raise ValueError(f"unknown normaliser {name!r} (known: {known})")
    if isinstance(options, dict):
        return {"op": name, **options}
    if options is None:
        return {"op": name}
    main = NORMALISERS[name]
    if main is None:
        raise ValueError(f"normaliser {name!r} takes a mapping of options")
    return {"op": name, main: options}


def _value_shorthand(value: Any) -> Any:
    """A bare string where a value is expected is a source path."""
    return {"path": value} if isinstance(value, str) else value


StepSpec = Annotated[
    TrimOp
    | HalfwidthOp
    | UpperOp
    | LowerOp
    | DateOp
    | MoneyOp
    | DecimalOp
    | ConvertUnitOp
    | BooleanOp
    | LookupOp
    | SplitOp
    | JoinOp
    | UniqueOp
    | PickOp
    | RegexOp
    | ReplaceOp
    | CheckOp,
    Field(discriminator="op"),
]
Step = Annotated[StepSpec, BeforeValidator(_step_shorthand)]

# --- values and conditions ----------------------------------------------------------

Meta = Literal["input_name", "content_type", "line", "row", "record_type", "index"]
_SOURCES = ("path", "xpath", "const", "setting", "meta", "concat", "first_of")


class Condition(_Strict):
    """A test on the source record; ``all``/``any``/``not`` combine tests."""

    path: str | None = None
    xpath: str | None = None
    meta: Meta | None = None
    setting: str | None = None
    normalize: tuple[Step, ...] = ()
    equals: str | None = None
    not_equals: str | None = None
    in_: tuple[str, ...] | None = Field(None, alias="in")
    not_in: tuple[str, ...] | None = None
    present: bool | None = None
    matches: str | None = None
    all_: tuple[Condition, ...] | None = Field(None, alias="all")
    any_: tuple[Condition, ...] | None = Field(None, alias="any")
    not_: Condition | None = Field(None, alias="not")

    @field_validator("normalize", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("all_", "any_", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        combinators = [x for x in (self.all_, self.any_, self.not_) if x is not None]
        sources = [
            x for x in (self.path, self.xpath, self.meta, self.setting) if x is not None
        ]
        tests = [
            x
            for x in (
                self.equals,
                self.not_equals,
                self.in_,
                self.not_in,
                self.present,
                self.matches,
            )
            if x is not None
        ]
        if combinators:
            if len(combinators) > 1 or sources or tests or self.normalize:
                raise ValueError("all, any and not stand alone in a condition")
            return self
        if len(sources) != 1:
            raise ValueError(
                "a condition tests exactly one of path, xpath, meta, setting"
            )
        if len(tests) > 1:
            raise ValueError(
                "one test per condition (equals, not_equals, in, not_in, present, "
                "matches); combine several with all"
            )
        return self


def _condition_shorthand(value: Any) -> Any:
    """A list of conditions means all of them."""
    return {"all": value} if isinstance(value, list) else value


class Value(_Strict):
    """Where one value comes from and how it is normalised."""

    path: str | None = None
    xpath: str | None = None
    const: str | None = None
    setting: str | None = None
    meta: Meta | None = None
    concat: tuple[Value, ...] | None = Field(None, min_length=1)
    first_of: tuple[Value, ...] | None = Field(None, min_length=1)
    default: str | None = None
    normalize: tuple[Step, ...] = ()
    when: Condition | None = None
    required: bool = False
    aggregate: Literal["first", "last", "count", "join", "unique", "sum"] | None = None

    @field_validator("concat", "first_of", mode="before")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_value_shorthand(v) for v in value]
        return value

    @field_validator("normalize", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | dict) else value

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        return _condition_shorthand(value)

    @model_validator(mode="after")
    def _one_source(self) -> Value:
        given = [name for name in _SOURCES if getattr(self, name) is not None]
        if self.aggregate == "count":
            if given or self.normalize or self.default is not None:
                raise ValueError("aggregate: count takes no source")
            return self
        if len(given) != 1:
            raise ValueError(
                "give exactly one source: path, xpath, const, setting, meta, concat "
                f"or first_of (got {', '.join(given) or 'none'})"
            )
        return self


class RecordRule(_Strict):
    """One kind of national record made from (part of) a source record."""

    name: str | None = Field(None, description="A label for messages.")
    when: Condition | None = None
    skip: bool = Field(
        default=False,
        description="Matching source records are handled by producing nothing.",
    )
    dataset: str | None = None
    for_each: str | None = Field(
        None, description="Path of the sub-records that each make one record."
    )
    group_by: tuple[str, ...] | None = Field(
        None, description="Consecutive source records with equal keys make one record."
    )
    fields: dict[str, Value] = Field(default_factory=dict)

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        return _condition_shorthand(value)

    @field_validator("group_by", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _value_shorthand(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _shape(self) -> RecordRule:
        if self.skip:
            if self.dataset or self.fields or self.for_each or self.group_by:
                raise ValueError("a skip rule has only when (and name)")
            if self.when is None:
                raise ValueError("a skip rule needs when")
            return self
        if not self.dataset:
            raise ValueError("give the dataset this rule produces (or skip: true)")
        if not self.fields:
            raise ValueError("a rule needs fields")
        if self.for_each and self.group_by:
            raise ValueError("for_each and group_by cannot be combined in one rule")
        return self


class MappingFile(_Strict):
    """A whole mapping file (docs/mapping.md)."""

    version: Literal["1"] = Field(description="Mapping language version.")
    name: str = Field(min_length=1)
    description: str = ""
    input: InputSpec
    timezone: str = Field(
        description="Time zone of source times written without an offset "
        "(e.g. +08:00, Asia/Shanghai, UTC)."
    )
    unmatched: Literal["reject", "ignore"] = Field(
        "reject", description="A source record no rule matches: reject it or ignore it."
    )
    row_errors: Literal["reject_record", "reject_input"] = Field(
        "reject_record",
        description="A row the reader cannot read (bad JSON line, wrong column "
        "count): reject that row, or the whole input.",
    )
    tables: dict[str, dict[str, str]] = Field(default_factory=dict)
    platform: dict[str, Value] = Field(default_factory=dict)
    records: tuple[RecordRule, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _extensions(cls, data: Any) -> Any:
        # Top-level keys starting with "x-" hold YAML anchors for reuse; ignored.
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (isinstance(k, str) and k.startswith("x-"))
            }
        return data

    @field_validator("platform", mode="before")
    @classmethod
    def _platform(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _value_shorthand(v) for k, v in value.items()}
        return value


ConvertUnitOp.model_rebuild()
Condition.model_rebuild()
Value.model_rebuild()
