"""The national catalogue: loading, DOMAIN.md fidelity, and record validation."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.catalogue import (
    CATALOGUE_DIR,
    Catalogue,
    FieldSpec,
    Stage,
    Violation,
    default_catalogue,
    load_catalogue,
    validate_record,
)
from adapters.catalogue._validate import validate_fields
from adapters.catalogue._validate_reference import validate_fields_reference
from gateway.demo_data import demo_records
from gateway.errors import ConfigError
from tests.adapters.test_identifiers import REFERENCE_CHECKS, near_misses

SHARED = Path(__file__).resolve().parents[3] / "shared"
SAMPLES = SHARED / "samples" / "expected"
DOMAIN = SHARED / "DOMAIN.md"

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} (DOMAIN.md, samples) is not present"
)


def _sample_records() -> list[tuple[str, int, str, dict[str, str]]]:
    if not SAMPLES.is_dir():
        return []
    records = []
    for path in sorted(SAMPLES.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            record = json.loads(line)
            records.append((path.name, number, record["dataset"], record["fields"]))
    return records


SAMPLE_RECORDS = _sample_records()


def _sample(dataset: str) -> dict[str, str]:
    return dict(next(r[3] for r in SAMPLE_RECORDS if r[2] == dataset))


def _codes(violations: list[Violation]) -> list[tuple[str | None, str]]:
    return [(v.field, v.code) for v in violations]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


# --- what the catalogue contains -----------------------------------------------------


def test_catalogue_covers_the_required_data_sets(catalogue: Catalogue) -> None:
    wanted = [
        *range(500, 514),
        *range(550, 555),
        600,
        601,
        *range(650, 654),
        700,
        701,
        100,
        300,
        *range(302, 307),
    ]
    missing = [n for n in wanted if catalogue.by_number(n) is None]
    assert missing == []
    assert catalogue.version == "2026.1"
    section = catalogue.dataset("SECTION")
    assert section is not None
    assert section.data_no == 502
    assert section.domain == "construction"


def test_every_data_set_carries_the_platform_fields(catalogue: Catalogue) -> None:
    for dataset in catalogue.datasets.values():
        for name in ("PLATFORM_CODE", "PUB_SERVICE_PLAT_CODE", "DATA_TIMESTAMP"):
            spec = dataset.fields[name]
            assert spec.required
            assert spec.required_at == "outbound"
        # DOMAIN.md §2.1: TRADE_PLAT is required for 工程建设 sets only.
        assert dataset.fields["TRADE_PLAT"].required == (
            dataset.domain == "construction"
        )
    assert catalogue.datasets["PROJECT"].fields["PLATFORM_CODE"].length == 18
    assert catalogue.datasets["PROJECT"].fields["TRADE_PLAT"].length == 11


def test_parents(catalogue: Catalogue) -> None:
    expect = {
        "TENDER_PROJECT": ("PROJECT", "PROJECT_CODE"),
        "SECTION": ("TENDER_PROJECT", "TENDER_PROJECT_CODE"),
        "WIN_RESULT_ANNO": ("TENDER_PROJECT", "TENDER_PROJECT_CODE"),
        "DEAL_LAND_INFO": ("DEAL_BEHAVIOR_INFO", "UNIFIED_DEAL_CODE"),
        "WITHDRAW_BLACK_LIST": ("BLACK_LIST", "BLACKLIST_CODE"),
    }
    for name, (parent, via) in expect.items():
        ref = catalogue.datasets[name].spec.parent
        assert ref is not None
        assert (ref.dataset, ref.via) == (parent, via)
    assert catalogue.datasets["PROJECT"].spec.parent is None
    assert catalogue.datasets["SECTION"].fields["BID_SECTION_CODE"].extends == (
        "TENDER_PROJECT_CODE"
    )


def test_code_tables_from_domain(catalogue: Catalogue) -> None:
    tables = catalogue.code_tables
    assert tables["PRICE_UNIT"].values == {"0": "元", "1": "万元"}
    assert set(tables["PRICE_FORM_CODE"].values) == {"1", "2", "3", "9"}
    assert set(tables["TRUE_OR_FALSE"].values) == {"0", "1"}
    assert set(tables["32"].values) == {"1", "2", "3"}
    assert tables["2001"].status == "pending"
    assert tables["2001"].values == {}


def test_models_are_frozen(catalogue: Catalogue) -> None:
    spec = catalogue.datasets["PROJECT"].fields["PROJECT_CODE"]
    with pytest.raises(ValidationError):
        spec.length = 18  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalogue.version = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        catalogue.datasets["X"] = catalogue.datasets["PROJECT"]  # type: ignore[index]


def test_default_catalogue_is_loaded_once() -> None:
    assert default_catalogue() is default_catalogue()


# --- DOMAIN.md §3 tables, field by field ----------------------------------------------

_HEADING = re.compile(r"^#### (\d+) `([A-Z_]+)`", re.MULTILINE)
_ROW = re.compile(
    r"^\| ([A-Z][A-Z0-9_]*) \| ([^|]*) \| (Y?) *\| ([^|]*)\|$", re.MULTILINE
)


def _domain_tables() -> dict[str, list[tuple[str, str, bool, str]]]:
    text = DOMAIN.read_text(encoding="utf-8")
    headings = list(_HEADING.finditer(text))
    tables = {}
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        end = following.start() if following else text.index("\n---", heading.end())
        rows = _ROW.findall(text, heading.end(), end)
        tables[heading[2]] = [
            (n, zh.strip(), req == "Y", rule) for n, zh, req, rule in rows
        ]
    return tables


@needs_shared
def test_domain_tables_are_transcribed_exactly(catalogue: Catalogue) -> None:
    tables = _domain_tables()
    # The nine full tables of DOMAIN.md §3 (the others are abbreviated there).
    assert set(tables) == {
        "PROJECT",
        "TENDER_PROJECT",
        "SECTION",
        "TENDER_ANN_QUA_INQUERY_ANN",
        "BID_OPENING_RECORD",
        "TENDER_CANDIDATE",
        "TENDER_CANDIDATE_ANNOUNCE",
        "WIN_RESULT_ANNO",
        "CONTRACT_PERFORMANCE",
    }
    assert all(tables.values())
    for name, rows in tables.items():
        own = catalogue.datasets[name].spec.fields
        assert [f.name for f in own] == [r[0] for r in rows], name
        for spec, (_, name_zh, required, rule) in zip(own, rows, strict=True):
            where = f"{name}.{spec.name}"
            assert spec.name_zh == name_zh, where
            assert spec.required == required, where
            # Commas separate rules, except inside n(14,6).
            tokens = [t.strip() for t in re.split(r",(?![^(]*\))", rule) if t.strip()]
            lengths = [int(t[4:]) for t in tokens if t.startswith("len=")]
            maxima = [int(t[1:]) for t in tokens if t.startswith("≤")]
            assert spec.length == (lengths[0] if lengths else None), where
            assert spec.max_length == (maxima[0] if maxima else None), where
            formats = {
                "yyyyMMddHHmmss": "datetime",
                "yyyyMMdd": "date",
                "GB/T2260": "region_code",
            }
            for token in tokens:
                if token in formats:
                    assert spec.format == formats[token], where
                if token.startswith("n("):
                    assert spec.format == token.replace(" ", ""), where
            tables_named = [t.split(":", 1)[1] for t in tokens if t.startswith("enum:")]
            tables_named += [
                t.split("#", 1)[1] for t in tokens if t.startswith("code#")
            ]
            if tables_named:
                assert spec.code_table == tables_named[0], where
            elif spec.code_table is not None:
                # Added only where the values are unknown: it restricts nothing.
                assert catalogue.code_tables[spec.code_table].status == "pending", where


# --- the samples ---------------------------------------------------------------------


@needs_shared
def test_samples_are_present() -> None:
    assert len(SAMPLE_RECORDS) == 41


@needs_shared
@pytest.mark.parametrize(
    ("file", "line", "dataset", "fields"),
    SAMPLE_RECORDS,
    ids=[f"{r[0]}:{r[1]}" for r in SAMPLE_RECORDS],
)
def test_sample_record_is_valid(
    file: str, line: int, dataset: str, fields: dict[str, str]
) -> None:
    assert validate_record(dataset, fields) == []


@needs_shared
def test_sample_record_is_incomplete_for_sending() -> None:
    record = _sample("PROJECT")
    missing = {v.field for v in validate_record("PROJECT", record, stage="outbound")}
    assert missing == {
        "PLATFORM_CODE",
        "PUB_SERVICE_PLAT_CODE",
        "DATA_TIMESTAMP",
        "TRADE_PLAT",
        "CLASS_VER_CODE",
        "INDUSTRIES_TYPE",
    }
    record |= {
        "PLATFORM_CODE": "91350000MA347WHE48",
        "PUB_SERVICE_PLAT_CODE": "123100007847653857",
        "DATA_TIMESTAMP": "20261126093000",
        "TRADE_PLAT": "E1234567890",
        "CLASS_VER_CODE": "1",
        "INDUSTRIES_TYPE": "E48",
    }
    assert validate_record("PROJECT", record, stage="outbound") == []


# --- the broken inputs of samples/bad, as records -------------------------------------


@needs_shared
def test_bad_uscc_names_field_and_check_character() -> None:
    record = _sample("PURCHASE_PROJECT") | {"PURCHASER_CODE": "11320614MB0Q7T5U90"}
    (violation,) = validate_record("PURCHASE_PROJECT", record)
    assert (violation.field, violation.code) == ("PURCHASER_CODE", "E_USCC_CHECK")
    assert "expected check character R" in violation.message_en
    assert "校验码应为R" in violation.message_zh


@needs_shared
def test_section_not_extending_its_tender_project() -> None:
    record = _sample("SECTION") | {
        "TENDER_PROJECT_CODE": "E3202002611030017001",
        "BID_SECTION_CODE": "E3202002611030017002001",
    }
    (violation,) = validate_record("SECTION", record)
    assert (violation.field, violation.code) == ("BID_SECTION_CODE", "E_CODE_PARENT")
    assert "E3202002611030017001" in violation.message_en


@needs_shared
def test_impossible_date() -> None:
    record = _sample("DEAL_BEHAVIOR_INFO") | {"PUBLISHING_TIME": "20260231"}
    assert _codes(validate_record("DEAL_BEHAVIOR_INFO", record)) == [
        ("PUBLISHING_TIME", "E_DATE_INVALID")
    ]


@needs_shared
def test_negative_amount_keeps_its_sign_and_fails() -> None:
    record = _sample("PURCHASE_PROJECT") | {"PROGRAM_BUDGET": "-1280"}
    assert _codes(validate_record("PURCHASE_PROJECT", record)) == [
        ("PROGRAM_BUDGET", "E_NUMBER_NEGATIVE")
    ]


# --- each rule ------------------------------------------------------------------------


def test_unknown_dataset() -> None:
    (violation,) = validate_record("NO_SUCH_SET", {})
    assert violation.field is None
    assert violation.code == "E_DATASET_UNKNOWN"
    assert "NO_SUCH_SET" in violation.message_en


@needs_shared
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"PROJECT_NAME_X": "x"}, [("PROJECT_NAME_X", "E_FIELD_UNKNOWN")]),
        ({"PROJECT_NAME": ""}, [("PROJECT_NAME", "E_REQUIRED")]),
        ({"PROJECT_NAME": "  "}, [("PROJECT_NAME", "E_REQUIRED")]),
        ({"PROJECT_NAME": "长" * 601}, [("PROJECT_NAME", "E_MAX_LENGTH")]),
        ({"PROJECT_NAME": "长" * 600}, []),
        ({"PROJECT_CODE": "E320200261103001"}, [("PROJECT_CODE", "E_LENGTH")]),
        (
            {"PROJECT_CODE": "E9902002611030017"},
            [("PROJECT_CODE", "E_PROJECT_CODE_REGION")],
        ),
        ({"REGION_CODE": "320611"}, [("REGION_CODE", "E_REGION_RETIRED")]),
        ({"RELATE_CODE": "2"}, [("RELATE_CODE", "E_CODE_UNKNOWN")]),
        ({"CREATE_TIME": "20261028250500"}, [("CREATE_TIME", "E_DATETIME_INVALID")]),
        ({"INVEST_PROJECT_CODE": ""}, [("INVEST_PROJECT_CODE", "E_REQUIRED_WHEN")]),
        ({"INVEST_PROJECT_CODE": "", "RELATE_CODE": "0"}, []),
        # pending code table: any value of the right length is accepted
        ({"CLASS_VER_CODE": "Z"}, []),
        ({"CLASS_VER_CODE": "ZZ"}, [("CLASS_VER_CODE", "E_LENGTH")]),
        ({"DATA_TIMESTAMP": "2026-11-26"}, [("DATA_TIMESTAMP", "E_DATETIME_FORMAT")]),
    ],
)
def test_project_rules(change: dict[str, str], expected: list[tuple[str, str]]) -> None:
    record = _sample("PROJECT") | change
    assert _codes(validate_record("PROJECT", record)) == expected


@needs_shared
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"BID_SECTION_CODES": "E3202002611030017001001;"},
            [("BID_SECTION_CODES", "E_MULTI_EMPTY_ITEM")],
        ),
        (
            {"BID_SECTION_CODES": "E3202002611030017001001;E3202002611100021001001"},
            [("BID_SECTION_CODES", "E_CODE_PARENT")],
        ),
        ({"NOTICE_BID_NUM": "100"}, [("NOTICE_BID_NUM", "E_NUMBER_INTEGER_DIGITS")]),
        ({"NOTICE_BID_NUM": "1.5"}, [("NOTICE_BID_NUM", "E_NUMBER_FRACTION_DIGITS")]),
        ({"NOTICE_NATURE": "9"}, []),
        ({"NOTICE_NATURE": "4"}, [("NOTICE_NATURE", "E_CODE_UNKNOWN")]),
        ({"DOC_PRICE": "1e3"}, [("DOC_PRICE", "E_NUMBER_FORMAT")]),
        (
            {"UNIFIED_DEAL_CODES": "A02-123100007847653857-20161012-000015-R"},
            [("UNIFIED_DEAL_CODES", "E_UDC_CHECK")],
        ),
    ],
)
def test_notice_rules(change: dict[str, str], expected: list[tuple[str, str]]) -> None:
    record = _sample("TENDER_ANN_QUA_INQUERY_ANN")
    record["TENDER_PROJECT_CODE"] = "E3202002611030017001"
    record["BID_SECTION_CODES"] = "E3202002611030017001001"
    record |= change
    assert _codes(validate_record("TENDER_ANN_QUA_INQUERY_ANN", record)) == expected


@needs_shared
def test_missing_parent_code_is_reported_once() -> None:
    record = _sample("SECTION")
    del record["TENDER_PROJECT_CODE"]
    assert _codes(validate_record("SECTION", record)) == [
        ("TENDER_PROJECT_CODE", "E_REQUIRED")
    ]


def test_violation_is_frozen() -> None:
    violation = Violation(field="A", code="E_X", message_en="a", message_zh="甲")
    with pytest.raises(dataclasses.FrozenInstanceError):
        violation.code = "E_Y"  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------

_CHECKED = [
    "UNIFIED_DEAL_CODE",
    "BID_SECTION_CODE",
    "TENDER_PROJECT_CODE",
    "REGION_CODE",
]


@needs_shared
@given(
    st.sampled_from([r[3] for r in SAMPLE_RECORDS if r[2] == "SECTION"]),
    st.sampled_from(_CHECKED),
    st.data(),
)
def test_changing_one_character_of_a_code_is_caught(
    sample: dict[str, str], field: str, data: st.DataObject
) -> None:
    record = dict(sample)
    value = record[field]
    index = data.draw(st.integers(0, len(value) - 1))
    char = data.draw(st.sampled_from("0123456789ABCDEFGHJKLMNPQRTUWXY*-"))
    assume(value[index] != char)
    record[field] = value[:index] + char + value[index + 1 :]
    # A changed region may still be a real Jiangsu code: only codes with a check
    # character or a parent are guaranteed to notice.
    assume(field != "REGION_CODE" or not char.isdigit())
    # So may a changed section sequence number: only its prefix is tied to a parent.
    assume(field != "BID_SECTION_CODE" or index < 20 or not char.isdigit())
    assert validate_record("SECTION", record) != []


@given(
    st.sampled_from(sorted(default_catalogue().datasets)),
    st.data(),
)
def test_validation_never_raises(dataset: str, data: st.DataObject) -> None:
    names = sorted(default_catalogue().datasets[dataset].fields)
    record = data.draw(
        st.dictionaries(st.sampled_from([*names, "EXTRA"]), st.text(max_size=50))
    )
    for violation in validate_record(dataset, record):
        assert violation.code.startswith("E_")
        assert violation.message_en
        assert violation.message_zh


# --- loader errors --------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "catalogue"
    shutil.copytree(
        CATALOGUE_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_copy_of_shipped_catalogue_loads(tmp_path: Path) -> None:
    assert load_catalogue(_copy(tmp_path)).version == "2026.1"


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "datasets/construction.yaml",
            "{name: PROJECT_NAME, name_zh: 项目名称, required: true, max_length: 600}",
            "{name: PROJECT_NAME, name_zh: 项目名称, required: true, max_lenght: 600}",
            "datasets.0.fields.1.max_lenght: Extra inputs are not permitted",
        ),
        (
            "datasets/construction.yaml",
            'code_table: "1000"}',
            'code_table: "1001"}',
            "no code table 1001",
        ),
        (
            "datasets/construction.yaml",
            "required_at: outbound,\n         length: 1, code_table: INDUSTRY_CLASS",
            "\n         length: 1, code_table: INDUSTRY_CLASS",
            "is pending, so the field can only be required_at: outbound",
        ),
        (
            "datasets/land.yaml",
            'catalogue_version: "2026.1"',
            'catalogue_version: "2025.9"',
            "differs from common.yaml 2026.1",
        ),
        (
            "datasets/mining.yaml",
            "parent: {dataset: EXPLOR_BID_AUCTION_TRANS_ANN, via: UNIFIED_DEAL_CODE}",
            "parent: {dataset: NO_SUCH_SET, via: UNIFIED_DEAL_CODE}",
            "parent has no such data set or key",
        ),
        (
            "datasets/construction.yaml",
            "format: project_code}",
            "format: project_id}",
            "unknown format 'project_id'",
        ),
        (
            "common.yaml",
            '    values: {"0": 元, "1": 万元}',
            "    values: {}",
            "pending tables have no values",
        ),
        ("datasets/credit.yaml", "datasets:", "datasets: [", "credit.yaml"),
    ],
)
def test_broken_catalogue_is_refused(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    root = _copy(tmp_path)
    _edit(root / file, old, new)
    with pytest.raises(ConfigError) as caught:
        load_catalogue(root)
    assert message in str(caught.value)
    # ConfigError convention: every line starts with the file it is about.
    assert all(line.startswith(str(root)) for line in str(caught.value).splitlines())


def test_empty_catalogue_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"common\.yaml"):
        load_catalogue(tmp_path)


# --- the compiled validator against the reference ---------------------------------
#
# Catalogue.validate runs each data set compiled into per-field checkers, with
# memoised identifier checks (adapters.catalogue._validate). The reference is the
# validator as it was before, rule by rule, run with the identifier checks as they
# were before (tests.adapters.test_identifiers.REFERENCE_CHECKS): the two must give
# the same violations, in the same order, with the same messages.

_OLD_CHECKS = {name: reference for name, (_, reference) in REFERENCE_CHECKS.items()}


def _reference(dataset: str, record: dict[str, str], stage: Stage) -> list[Violation]:
    catalogue = default_catalogue()
    return validate_fields_reference(
        catalogue.datasets[dataset], record, catalogue.code_tables, stage, _OLD_CHECKS
    )


def _demo() -> list[tuple[str, dict[str, str]]]:
    out = []
    for r in demo_records(4, pad=20):
        fields = r["fields"]
        assert isinstance(fields, dict)
        out.append((str(r["dataset"]), {k: str(v) for k, v in fields.items()}))
    return out


_PLATFORM = {
    "PLATFORM_CODE": "91350000MA347WHE48",
    "PUB_SERVICE_PLAT_CODE": "123100007847653857",
    "DATA_TIMESTAMP": "20261126093000",
    "TRADE_PLAT": "E1234567890",
}
# Valid records (samples, demo), also with the platform fields an outbound record
# carries, as the starting points of mutations.
_BASES = [(r[2], r[3]) for r in SAMPLE_RECORDS] + _demo()
_BASES += [(dataset, fields | _PLATFORM) for dataset, fields in _BASES]
# Values to swap in: every value of every base record, and some awkward ones.
_POOL = sorted({v for _, fields in _BASES for v in fields.values()})
_POOL += ["", " ", "\u3000", "-0", "+0.50", "1e3", "0", "A;B", ";", "x" * 700]
_CHARS = st.sampled_from("0123456789ABEXZaez-;.+ \u3000。²")
_STAGES = st.sampled_from(["intake", "outbound"])


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A valid record with one to four mutations."""
    dataset, base = draw(st.sampled_from(_BASES))
    record = dict(base)
    names = sorted(default_catalogue().datasets[dataset].fields)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["char", "char", "drop", "unknown", "empty", "swap", "add"])
        )
        present = sorted(record)
        if kind in {"char", "drop", "swap"} and not present:
            continue
        if kind == "char":
            name = draw(st.sampled_from(present))
            value = record[name]
            i = draw(st.integers(0, len(value)))
            cut = draw(st.integers(0, 1))
            record[name] = value[:i] + draw(_CHARS) + value[i + cut :]
        elif kind == "drop":
            del record[draw(st.sampled_from(present))]
        elif kind == "unknown":
            record[draw(st.sampled_from(["EXTRA", "PROJECT_NAME_X", "AMOUNT"]))] = "1"
        elif kind == "empty":
            name = draw(st.sampled_from(names))
            record[name] = draw(st.sampled_from(["", " ", "\u3000\t"]))
        elif kind == "swap":
            name = draw(st.sampled_from(present))
            if draw(st.booleans()):
                other = draw(st.sampled_from(present))
                record[name], record[other] = record[other], record[name]
            else:
                record[name] = draw(st.sampled_from(_POOL))
        else:
            record[draw(st.sampled_from(names))] = draw(st.sampled_from(_POOL))
    return dataset, record


@given(_mutated(), _STAGES)
def test_validator_agrees_with_reference_on_mutated_records(
    case: tuple[str, dict[str, str]], stage: Stage
) -> None:
    dataset, record = case
    expected = _reference(dataset, record, stage)
    assert validate_record(dataset, record, stage=stage) == expected
    # Twice: the second run answers from memos.
    assert validate_record(dataset, record, stage=stage) == expected


def _values(dataset: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(_POOL),
        st.text(max_size=30),
        st.from_regex(r"[+-]?[0-9]{1,16}(\.[0-9]{0,8})?", fullmatch=True),
        st.lists(st.sampled_from(_POOL), min_size=1, max_size=3).map(";".join),
    )


@given(st.sampled_from(sorted(default_catalogue().datasets)), _STAGES, st.data())
def test_validator_agrees_with_reference_on_any_record(
    dataset: str, stage: Stage, data: st.DataObject
) -> None:
    names = sorted(default_catalogue().datasets[dataset].fields)
    record = data.draw(
        st.dictionaries(st.sampled_from([*names, "EXTRA"]), _values(dataset))
    )
    expected = _reference(dataset, record, stage)
    assert validate_record(dataset, record, stage=stage) == expected


@pytest.mark.parametrize("stage", ["intake", "outbound"])
def test_validator_agrees_with_reference_on_valid_records(stage: Stage) -> None:
    for dataset, record in _BASES:
        assert validate_record(dataset, record, stage=stage) == _reference(
            dataset, record, stage
        )


def test_validate_fields_is_the_compiled_validator() -> None:
    catalogue = default_catalogue()
    record = _demo()[0][1] | {"EXTRA": "1", "REGION_CODE": "320611"}
    dataset = catalogue.datasets["PROJECT"]
    assert validate_fields(dataset, record, catalogue.code_tables, "intake") == (
        catalogue.validate("PROJECT", record)
    )
    assert _codes(catalogue.validate("PROJECT", record)) == [
        ("EXTRA", "E_FIELD_UNKNOWN"),
        ("REGION_CODE", "E_REGION_RETIRED"),
    ]


@st.composite
def _numbers(draw: st.DrawFn, fmt: str) -> str:
    """Numbers at the limits of ``n(p,s)``: digit counts p-1..p+1, s..s+1, signs."""
    match = re.fullmatch(r"n\((\d+)(?:,(\d+))?\)", fmt)
    assert match is not None
    whole, fraction = int(match[1]), int(match[2] or 0)
    sign = draw(st.sampled_from(["", "", "+", "-"]))
    count = draw(st.sampled_from([0, 1, whole - 1, whole, whole + 1]))
    digits = draw(st.text("0123456789", min_size=count, max_size=count))
    if digits and draw(st.booleans()):
        digits = draw(st.sampled_from("123456789")) + digits[1:]
    digits = "0" * draw(st.integers(0, 2)) + digits
    places = draw(st.sampled_from([None, 0, 1, fraction, fraction + 1]))
    if places is not None:
        digits += "." + draw(st.text("0123456789", min_size=places, max_size=places))
    return sign + digits


def _item_values(spec: FieldSpec, parent: str | None) -> st.SearchStrategy[str]:
    """Values near the rules of ``spec``: each side of each limit."""
    options: list[st.SearchStrategy[str]] = [st.text(_CHARS, max_size=6)]
    if spec.format.startswith("n("):
        options.append(_numbers(spec.format))
    elif spec.format in REFERENCE_CHECKS:
        options.append(near_misses(spec.format))
    if spec.code_table is not None:
        values = sorted(default_catalogue().code_tables[spec.code_table].values)
        options.append(st.sampled_from([*values, "9", "00", "Z"]))
    if parent:
        # Codes under the record's own parent, and under a neighbour of it.
        under = st.sampled_from([parent, parent[:-1] + "9"])
        options.append(
            st.tuples(under, st.sampled_from(["001", "01", "0012"])).map("".join)
        )
    return st.one_of(*options)


def _shape(spec: FieldSpec) -> tuple[object, ...]:
    table = default_catalogue().code_tables.get(spec.code_table or "")
    live = table is not None and table.status != "pending"
    return (
        spec.format,
        spec.multi,
        live,
        spec.extends is not None,
        spec.signed,
        spec.length is not None,
        spec.max_length is not None,
    )


# Every field of every data set, grouped by the rules it has, so that each kind of
# field (numbers, lists, parent codes, each identifier...) is drawn as often.
_SHAPES: dict[tuple[object, ...], list[tuple[str, FieldSpec]]] = {}
for _name, _dataset in sorted(default_catalogue().datasets.items()):
    for _spec in _dataset.fields.values():
        _SHAPES.setdefault(_shape(_spec), []).append((_name, _spec))


@st.composite
def _field_cases(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A record (valid where a sample exists) with one field set near its rules."""
    shape = draw(st.sampled_from(sorted(_SHAPES, key=repr)))
    dataset, spec = draw(st.sampled_from(_SHAPES[shape]))
    bases = [fields for name, fields in _BASES if name == dataset]
    record = dict(draw(st.sampled_from(bases))) if bases else {}
    parent = record.get(spec.extends) if spec.extends is not None else None
    items = _item_values(spec, parent)
    if spec.multi:
        value = ";".join(draw(st.lists(items, min_size=1, max_size=3)))
    else:
        value = draw(items)
    bound = spec.length or spec.max_length
    if bound is not None and draw(st.integers(0, 3)) == 0:
        value = draw(st.sampled_from("x长 ")) * draw(st.integers(bound - 1, bound + 1))
    record[spec.name] = value
    if spec.extends is not None and draw(st.integers(0, 3)) == 0:
        first = value.split(";")[0]
        record[spec.extends] = first[: draw(st.integers(0, len(first)))]
    return dataset, record


@settings(max_examples=500)
@given(_field_cases(), _STAGES)
def test_validator_agrees_with_reference_field_by_field(
    case: tuple[str, dict[str, str]], stage: Stage
) -> None:
    dataset, record = case
    expected = _reference(dataset, record, stage)
    assert validate_record(dataset, record, stage=stage) == expected


def test_validator_agrees_with_reference_on_format_and_code_table(
    tmp_path: Path,
) -> None:
    """No shipped field has both a format and a live code table: make one."""
    root = _copy(tmp_path)
    _edit(
        root / "datasets" / "construction.yaml",
        "标段合同估算价单位, required: true, length: 1, code_table: PRICE_UNIT}",
        "标段合同估算价单位, required: true, length: 1, code_table: PRICE_UNIT,"
        ' format: "n(1)"}',
    )
    catalogue = load_catalogue(root)
    dataset = catalogue.datasets["SECTION"]
    spec = dataset.fields["PRICE_UNIT"]
    assert spec.format == "n(1)"
    assert spec.code_table is not None
    assert catalogue.code_tables[spec.code_table].status != "pending"
    base = next(fields for name, fields in _BASES if name == "SECTION")
    for value in ["0", "1", "2", "-1", "-0", "+1", "00", "10", "1.0", "a", " "]:
        record = base | {"PRICE_UNIT": value}
        for stage in ("intake", "outbound"):
            expected = validate_fields_reference(
                dataset, record, catalogue.code_tables, stage, _OLD_CHECKS
            )
            assert catalogue.validate("SECTION", record, stage=stage) == expected


def _number_grid(fmt: str) -> list[str]:
    match = re.fullmatch(r"n\((\d+)(?:,(\d+))?\)", fmt)
    assert match is not None
    whole, fraction = int(match[1]), int(match[2] or 0)
    values = []
    for sign in ("", "+", "-"):
        for zeros in ("", "0", "00"):
            for count in {0, 1, whole - 1, whole, whole + 1}:
                for lead in ("0", "7"):
                    digits = (lead + "5" * count)[:count]
                    for places in (None, 0, 1, fraction, fraction + 1):
                        tail = "" if places is None else "." + "3" * places
                        values.append(sign + zeros + digits + tail)
    return values


def test_validator_agrees_with_reference_on_number_limits() -> None:
    catalogue = default_catalogue()
    fields = {
        (spec.format, spec.signed, spec.code_table): (name, spec.name)
        for name, dataset in sorted(catalogue.datasets.items())
        for spec in dataset.fields.values()
        if spec.format.startswith("n(")
    }
    assert len(fields) >= 8
    for (fmt, _, _), (dataset, name) in sorted(fields.items(), key=repr):
        base = next((f for d, f in _BASES if d == dataset), {})
        for value in _number_grid(fmt):
            record = base | {name: value}
            assert validate_record(dataset, record) == _reference(
                dataset, record, "intake"
            ), (dataset, name, value)


@pytest.mark.parametrize(
    "value",
    [
        "{p}001",
        "{p}001;{p}002",
        "{p}001;E3202002611100021001001",
        "E3202002611100021001001;{p}001",
        "{p}001;;{p}002",
        "{p}001;{p}0",
        "{p}001;{p}",
        "{p}001;X3202002611030017001001",
        "{p}00;{p}001",
    ],
)
@pytest.mark.parametrize("parent", ["E3202002611030017001", "", " ", None])
def test_validator_agrees_with_reference_on_code_lists(
    value: str, parent: str | None
) -> None:
    dataset = "TENDER_ANN_QUA_INQUERY_ANN"
    base = next((f for d, f in _BASES if d == dataset), {})
    record = base | {"BID_SECTION_CODES": value.format(p="E3202002611030017001")}
    record.pop("TENDER_PROJECT_CODE", None)
    if parent is not None:
        record["TENDER_PROJECT_CODE"] = parent
    for stage in ("intake", "outbound"):
        assert validate_record(dataset, record, stage=stage) == _reference(
            dataset, record, stage
        )
