"""Pydantic schema of the catalogue files, checked once when they are loaded.

One model per YAML shape (``common.yaml``, ``datasets/*.yaml``); rules that span
files (code-table references, parents, versions) are checked by the loader.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    field_validator,
    model_validator,
)

__all__ = [
    "FORMATS",
    "CodeTable",
    "CommonFile",
    "DatasetSpec",
    "DomainFile",
    "FieldSpec",
    "ParentRef",
    "RequiredWhen",
    "Stage",
    "numeric_digits",
]

# When a required field must be present: on the adapted record (intake), or only on
# the record the gateway completed for sending (outbound).
Stage = Literal["intake", "outbound"]

_UPPER_SNAKE = r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$"

# Named formats; "n(p)" / "n(p,s)" numbers are parsed by numeric_digits().
FORMATS = frozenset(
    {
        "text",
        "date",
        "datetime",
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
    }
)
_NUMERIC = re.compile(r"n\(([1-9][0-9]?)(?:,([0-9][0-9]?))?\)")


@functools.cache
def numeric_digits(fmt: str) -> tuple[int, int] | None:
    """``(integer, fraction)`` digits of an ``n(p[,s])`` format, else None."""
    match = _NUMERIC.fullmatch(fmt)
    if match is None:
        return None
    return int(match[1]), int(match[2] or 0)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Frozen):
    """One field of a data set (the keys are documented in common.yaml)."""

    name: str = Field(pattern=_UPPER_SNAKE)
    name_zh: str = Field(min_length=1)
    required: bool = False
    required_at: Stage = "intake"
    length: PositiveInt | None = None
    max_length: PositiveInt | None = None
    format: str = "text"
    signed: bool = False
    code_table: str | None = None
    multi: bool = False
    extends: str | None = Field(default=None, pattern=_UPPER_SNAKE)
    source: str | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in FORMATS and numeric_digits(value) is None:
            raise ValueError(f"unknown format {value!r}")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        if self.length is not None and self.max_length is not None:
            raise ValueError("give length or max_length, not both")
        if self.signed and numeric_digits(self.format) is None:
            raise ValueError("signed applies to n(p,s) numbers only")
        if self.required_at == "outbound" and not self.required:
            raise ValueError("required_at applies to required fields only")
        if self.extends == self.name:
            raise ValueError("a field cannot extend itself")
        return self


class CodeTable(_Frozen):
    """A code table; ``pending`` tables have no values yet and check nothing."""

    id: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    status: Literal["complete", "partial", "pending"]
    values: dict[str, str] = Field(default_factory=dict)
    source: str

    @model_validator(mode="after")
    def _values_match_status(self) -> CodeTable:
        if (self.status == "pending") != (not self.values):
            raise ValueError("pending tables have no values; other tables need them")
        return self


class ParentRef(_Frozen):
    """The record this one depends on: ``via`` here equals ``key`` there."""

    dataset: str = Field(pattern=_UPPER_SNAKE)
    via: str = Field(pattern=_UPPER_SNAKE)
    # Field of the parent data set; defaults to the parent's business key.
    key: str | None = Field(default=None, pattern=_UPPER_SNAKE)


class RequiredWhen(_Frozen):
    """``then_required`` fields become required when ``field`` equals ``equals``."""

    field: str = Field(pattern=_UPPER_SNAKE)
    equals: str
    then_required: tuple[str, ...] = Field(min_length=1)
    source: str


class DatasetSpec(_Frozen):
    """One national data set (数据集)."""

    data_no: PositiveInt
    name: str = Field(pattern=_UPPER_SNAKE)
    name_zh: str = Field(min_length=1)
    source: str
    key: str | None = None
    parent: ParentRef | None = None
    required_when: tuple[RequiredWhen, ...] = ()
    fields: tuple[FieldSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> DatasetSpec:
        by_name = {f.name: f for f in self.fields}
        if len(by_name) != len(self.fields):
            raise ValueError("duplicate field names")

        def single(name: str, what: str) -> None:
            field = by_name.get(name)
            if field is None:
                raise ValueError(f"{what} {name} is not a field of {self.name}")
            if field.multi:
                raise ValueError(f"{what} {name} cannot be a multi-valued field")

        if self.key is not None:
            single(self.key, "key")
        if self.parent is not None:
            single(self.parent.via, "parent.via")
        for field in self.fields:
            if field.extends is not None:
                single(field.extends, f"{field.name}.extends")
        for rule in self.required_when:
            single(rule.field, "required_when.field")
            for name in rule.then_required:
                if name not in by_name:
                    raise ValueError(f"required_when: {name} is not a field")
        return self


class DomainFile(_Frozen):
    """``datasets/<domain>.yaml``: the data sets of one trading domain."""

    catalogue_version: str = Field(min_length=1)
    domain: str = Field(pattern=r"^[a-z][a-z_]*$")
    name_zh: str = Field(min_length=1)
    source: str
    # Platform fields (common.yaml) that every set of this domain must carry outbound.
    platform_required: tuple[str, ...] = ()
    datasets: tuple[DatasetSpec, ...] = Field(min_length=1)


class CommonFile(_Frozen):
    """``common.yaml``: platform fields and code tables."""

    catalogue_version: str = Field(min_length=1)
    source: str
    platform_fields: tuple[FieldSpec, ...] = Field(min_length=1)
    code_tables: tuple[CodeTable, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CommonFile:
        if len({t.id for t in self.code_tables}) != len(self.code_tables):
            raise ValueError("duplicate code table ids")
        if len({f.name for f in self.platform_fields}) != len(self.platform_fields):
            raise ValueError("duplicate platform field names")
        return self
