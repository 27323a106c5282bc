"""The straightforward record validator, kept as the reference for the fast one.

:mod:`adapters.catalogue._validate` compiles each data set into per-field checkers;
this module checks a record by walking the specs directly, rule by rule, as the
catalogue documents them: the validator as it was before it was compiled. Tests
hold the two to the same answers (passing ``checks``, the identifier checks as
they were too); nothing on the data path calls this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from adapters import identifiers as ids
from adapters.catalogue._schema import CodeTable, FieldSpec, Stage, numeric_digits
from adapters.catalogue._validate import Dataset, Violation, _violation

__all__ = ["FormatChecks", "validate_fields_reference"]

FormatChecks = Mapping[str, Callable[[str], ids.Check]]

_FORMAT_CHECKS: FormatChecks = {
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


def _check_item(
    spec: FieldSpec,
    item: str,
    record: Mapping[str, str],
    tables: Mapping[str, CodeTable],
    checks: FormatChecks,
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
    elif spec.format in checks:
        result = checks[spec.format](item)
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
    checks: FormatChecks,
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
        found = _check_item(spec, item, record, tables, checks)
        if found is not None:
            return found
    return None


def validate_fields_reference(
    dataset: Dataset,
    record: Mapping[str, str],
    tables: Mapping[str, CodeTable],
    stage: Stage,
    checks: FormatChecks = _FORMAT_CHECKS,
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
        problem = _check_value(spec, value, record, tables, checks)
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
