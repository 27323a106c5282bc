"""Record validation against one loaded data set: the rules, no I/O."""

from __future__ import annotations

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

__all__ = ["Dataset", "Violation", "validate_fields"]


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


def _check_item(
    spec: FieldSpec,
    item: str,
    record: Mapping[str, str],
    tables: Mapping[str, CodeTable],
) -> Violation | None:
    """First broken rule of one value (one list item for multi fields)."""
    digits = numeric_digits(spec.format)
    if digits is not None:
        number = ids.check_decimal(item, *digits)
        if not number.ok:
            reason = number.reason or "E_NUMBER_FORMAT"
            return _violation(
                spec.name, reason, f"format {spec.format}", f"格式{spec.format}"
            )
        if number.value is not None and number.value < 0 and not spec.signed:
            return _violation(spec.name, "E_NUMBER_NEGATIVE")
    elif spec.format in _FORMAT_CHECKS:
        result = _FORMAT_CHECKS[spec.format](item)
        if not result.ok:
            reason = result.reason or "E_FORMAT"
            if result.expected is None:
                return _violation(spec.name, reason)
            return _violation(
                spec.name,
                reason,
                f"expected check character {result.expected}",
                f"校验码应为{result.expected}",
            )
    if spec.code_table is not None:
        table = tables[spec.code_table]
        if table.status != "pending" and item not in table.values:
            allowed = "/".join(table.values)
            return _violation(
                spec.name,
                "E_CODE_UNKNOWN",
                f"table {table.id} allows {allowed}",
                f"代码表{table.id}（{table.name_zh}）取值为{allowed}",
            )
    if spec.extends is not None:
        parent = record.get(spec.extends)
        # A missing parent is reported as missing, not as a mismatch.
        if (
            parent is not None
            and parent.strip()
            and not ids.extends_parent(item, parent)
        ):
            return _violation(
                spec.name,
                "E_CODE_PARENT",
                f"{item} does not start with {spec.extends} {parent}",
                f"{item}未以{spec.extends} {parent}开头",
            )
    return None


def _check_value(
    spec: FieldSpec,
    value: str,
    record: Mapping[str, str],
    tables: Mapping[str, CodeTable],
) -> Violation | None:
    """First broken rule of a present value: one violation per field is enough."""
    if spec.length is not None and len(value) != spec.length:
        return _violation(
            spec.name,
            "E_LENGTH",
            f"{len(value)} characters, must be {spec.length}",
            f"实际{len(value)}位，应为{spec.length}位",
        )
    if spec.max_length is not None and len(value) > spec.max_length:
        return _violation(
            spec.name,
            "E_MAX_LENGTH",
            f"{len(value)} characters, at most {spec.max_length}",
            f"实际{len(value)}位，最多{spec.max_length}位",
        )
    items = value.split(";") if spec.multi else [value]
    if spec.multi and any(not item for item in items):
        return _violation(spec.name, "E_MULTI_EMPTY_ITEM")
    for item in items:
        found = _check_item(spec, item, record, tables)
        if found is not None:
            return found
    return None


def validate_fields(
    dataset: Dataset,
    record: Mapping[str, str],
    tables: Mapping[str, CodeTable],
    stage: Stage,
) -> list[Violation]:
    """Every broken rule of ``record`` (field name -> string value), in field order."""
    found = [
        _violation(name, "E_FIELD_UNKNOWN")
        for name in record
        if name not in dataset.fields
    ]
    for spec in dataset.fields.values():
        value = record.get(spec.name)
        # Samples never carry "" (absent means omitted); blank counts as absent anyway.
        if value is None or not value.strip():
            enforced = spec.required_at == "intake" or stage == "outbound"
            if spec.required and enforced:
                found.append(_violation(spec.name, "E_REQUIRED"))
            continue
        problem = _check_value(spec, value, record, tables)
        if problem is not None:
            found.append(problem)
    for rule in dataset.spec.required_when:
        if record.get(rule.field) != rule.equals:
            continue
        for name in rule.then_required:
            value = record.get(name)
            if value is None or not value.strip():
                found.append(
                    _violation(
                        name,
                        "E_REQUIRED_WHEN",
                        f"{rule.field} is {rule.equals}",
                        f"{rule.field}为{rule.equals}",
                    )
                )
    return found
