"""Loading mappings: every problem named with file, line, column and YAML path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adapters.mapping import (
    MAPPINGS_DIR,
    MappingAdapter,
    MappingError,
    MappingOptions,
    load_mapping,
    resolve_mapping,
    shipped_mappings,
)
from adapters.registry import REGISTRY
from gateway.errors import ConfigError
from tests.adapters.mapping.helpers import compile_text, run

HEAD = """\
version: 1
name: t
timezone: "+08:00"
input: {format: xml, records: /r/i, namespaces: {k: "urn:k"}}
tables:
  t1: {a: "1"}
records:
"""


def problems(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    return [line.removeprefix(f"{path}:") for line in lines]


def test_catalogue_and_compile_problems_are_all_listed(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
          - dataset: AWARD_INF
            fields: {BODY_NAME: n}
          - dataset: AWARD_INFO
            fields:
              BODY_NAM: n
              GOVERNMENT: {path: "q:x"}
              SCOPE: {path: x, normalize: [{lookup: nope}]}
              REWARD_DATE: {path: d, normalize: [{date: "yyyy-MM-ddQ"}]}
              DOCUMENT_CODE: {path: x, normalize: [{regex: "("}]}
              REWARD_REASON: "a[b"
              BODY_ROLE: {setting: missing}
              BODY_TYPE: {path: x, aggregate: join}
        """,
    )
    assert found == [
        "8:12: records.0.dataset: unknown data set 'AWARD_INF' in catalogue 2026.1 "
        "(did you mean AWARD_INFO?)",
        "12:5: records.1.fields: required field(s) of AWARD_INFO with no source: "
        "BODY_CODE (奖励主体代码), BODY_NAME (奖励主体名称)",
        "12:15: records.1.fields.BODY_NAM: AWARD_INFO has no field BODY_NAM "
        "(did you mean BODY_NAME?)",
        "13:24: records.1.fields.GOVERNMENT.path: namespace prefix 'q' is not in "
        "namespaces",
        "14:43: records.1.fields.SCOPE.normalize.0.lookup: no table 'nope' in tables "
        "(known: t1)",
        "15:47: records.1.fields.REWARD_DATE.normalize.0.date: date pattern "
        "'yyyy-MM-ddQ': letter 'Q' is not a token; quote literal letters like 'T'",
        "16:50: records.1.fields.DOCUMENT_CODE.normalize.0.regex: bad regular "
        "expression: missing ), unterminated subpattern at position 0",
        "17:20: records.1.fields.REWARD_REASON: expected ']' at character 4 of path "
        "'a[b'",
        "18:26: records.1.fields.BODY_ROLE.setting: setting 'missing' is not given in "
        "the source's options (settings:)",
        "19:37: records.1.fields.BODY_TYPE.aggregate: aggregate belongs to the fields "
        "of a group_by rule",
    ]


def test_shape_problems_point_at_the_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
          - dataset: AWARD_INFO
            feilds: {}
          - dataset: AWARD_INFO
            fields:
              BODY_NAME: {path: n, normalize: [frobnicate]}
              BODY_CODE: {path: c, const: x}
              SCOPE: {path: s, normalize: [{money: {unit: 美元}}]}
        """,
    )
    assert found == [
        "9:3: records.0.feilds: Extra inputs are not permitted",
        "12:38: records.1.fields.BODY_NAME.normalize.0: unknown normaliser "
        "'frobnicate' (known: trim, halfwidth, upper, lower, date, datetime, money, "
        "money_unit, decimal, convert_unit, boolean, lookup, split, join, unique, pick, "
        "regex, replace, check)",
        "13:16: records.1.fields.BODY_CODE: give exactly one source: path, xpath, "
        "const, setting, meta, concat or first_of (got path, const)",
        "14:49: records.1.fields.SCOPE.normalize.0.money.unit: Input should be '元', "
        "'万元' or '分'",
    ]


def test_yaml_problems(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + "  - dataset: A\n    dataset: B\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"m.yaml:9:5: YAML: .*duplicate key"):
        load_mapping(path)
    path.write_text("version: 1\n  bad: [", encoding="utf-8")
    with pytest.raises(MappingError, match=r"m.yaml:2:6: YAML: "):
        load_mapping(path)
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(MappingError, match="must be a YAML mapping"):
        load_mapping(path)
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")


def test_scalars_stay_text(tmp_path: Path) -> None:
    """yes, no, on, 0510 and dates are the operator's text, not YAML 1.1 types."""
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: t
        timezone: "+08:00"
        input: {format: jsonl}
        tables:
          yn: {yes: "1", no: "0", on: "1", off: "0"}
        records:
          - when: {path: flag, in: [yes, on]}
            dataset: AWARD_INFO
            fields:
              BODY_NAME: {const: 0510}
              BODY_CODE: {const: 2026-11-03}
              GOVERNMENT: {path: flag, normalize: [{lookup: yn}]}
        """,
    )
    records, _ = run(mapping, '{"flag": "yes"}\n{"flag": "no"}\n')
    [record] = records
    assert dict(record.fields) == {
        "BODY_NAME": "0510",
        "BODY_CODE": "2026-11-03",
        "GOVERNMENT": "1",
    }


def test_anchors_merges_and_extension_keys(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: t
        timezone: "+08:00"
        input: {format: jsonl}
        x-shared:
          both: &both
            BODY_NAME: n
            BODY_CODE: c
        records:
          - dataset: AWARD_INFO
            fields: {<<: *both, GOVERNMENT: g}
        """,
    )
    records, _ = run(mapping, '{"n": "a", "c": "b", "g": "c"}\n')
    assert dict(records[0].fields) == {
        "BODY_NAME": "a",
        "BODY_CODE": "b",
        "GOVERNMENT": "c",
    }


def test_problems_inside_merged_blocks_point_at_the_block(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: t
            timezone: "+08:00"
            input: {format: jsonl}
            x-defs:
              bad: &bad {path: x, normalize: [{lookup: nope}]}
            records:
              - dataset: AWARD_INFO
                fields: {BODY_NAME: n, BODY_CODE: c, SCOPE: *bad}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert ":6:44: records.0.fields.SCOPE.normalize.0.lookup: no table 'nope'" in str(
        info.value
    )


def test_input_and_timezone_problems(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: t
            timezone: Mars/Base
            input: {format: xml, records: "rows/row"}
            records:
              - dataset: AWARD_INFO
                for_each: "a["
                fields: {BODY_NAME: n, BODY_CODE: c}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    text = str(info.value)
    assert "3:11: timezone: unknown time zone 'Mars/Base'" in text
    assert "4:31: input.records: an element path is absolute" in text
    assert "7:15: records.0.for_each: expected a name in the predicate" in text


# --- adapter options -------------------------------------------------------------------


def test_shipped_mappings_by_name() -> None:
    assert set(shipped_mappings()) >= {
        "wuxi-construction-xml",
        "nantong-procurement-json",
        "xuzhou-land-csv",
        "taizhou-mining-xml",
    }
    assert resolve_mapping("xuzhou-land-csv") == MAPPINGS_DIR / "xuzhou-land-csv.yaml"
    with pytest.raises(ConfigError, match="no shipped mapping 'nope'"):
        resolve_mapping("nope")


def test_paths_absolute_or_under_base_dir(tmp_path: Path) -> None:
    target = tmp_path / "mine.yaml"
    assert resolve_mapping(str(target)) == target
    assert resolve_mapping("mine.yaml", str(tmp_path)) == target
    assert resolve_mapping("sub/mine.yaml", str(tmp_path)) == tmp_path / "sub/mine.yaml"
    with pytest.raises(ConfigError, match="relative path"):
        resolve_mapping("mine.yaml")
    with pytest.raises(ConfigError, match="relative path"):
        resolve_mapping("mine.yaml", "relative/dir")


def test_the_registered_adapter_reports_with_the_source_path(tmp_path: Path) -> None:
    spec = REGISTRY["mapping"]
    with pytest.raises(ConfigError, match=r"sources\.3\.options\.mapping: "):
        spec.create({"mappin": "x"}, where="sources.3")
    with pytest.raises(
        ConfigError, match=r"^platform\.NOT_A_PLATFORM_FIELD: not a platform field"
    ):
        spec.create(
            {
                "mapping": "wuxi-construction-xml",
                "platform": {"NOT_A_PLATFORM_FIELD": "x"},
            },
            where="sources.0",
        )
    adapter = spec.create({"mapping": "xuzhou-land-csv"}, where="sources.0")
    assert isinstance(adapter, MappingAdapter)
    assert adapter.name == "xuzhou-land-csv"


def test_options_model_forbids_typos() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        MappingOptions.model_validate({"mapping": "x", "setings": {}})
