"""The adapter contract: every shipped mapping and every Python adapter passes it.

Fixtures live in ``tests/fixtures/feeds/<name>/``:

* ``good/*``       sample exports, read in file-name order;
* ``expected.jsonl`` one ``{"dataset", "fields"}`` per national record, in order
  (every expected field must be present and equal; extra fields are allowed);
* ``bad/*`` + ``bad/INDEX.tsv`` broken inputs and what must happen to them.

``<name>`` is a shipped mapping (``config/mappings/<name>.yaml``) or a registered
Python adapter. The copies of ../shared/samples are checked against the originals
when ../shared is there.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.base import Adapter, NationalRecord, RawInput, RecordRejected
from adapters.catalogue import default_catalogue
from adapters.mapping import MappingOptions, shipped_mappings
from adapters.readers import InputRejected
from adapters.registry import REGISTRY
from gateway.pipeline import NOWHERE, adapt_input

ROOT = Path(__file__).resolve().parents[2]
FEEDS = ROOT / "tests" / "fixtures" / "feeds"
SHARED = ROOT.parent / "shared" / "samples"
PLATFORM = {"PLATFORM_CODE": "12320200D202600311"}

# Python adapters that need no options; "mapping" is covered mapping by mapping.
PYTHON_ADAPTERS = sorted(name for name in REGISTRY if name != "mapping")
MAPPINGS = sorted(shipped_mappings())
CASES = [*MAPPINGS, *PYTHON_ADAPTERS]

# What each bad input must produce: the whole input refused, or a record rejected
# with words that show *where* (file position, source field) and *what*.
INPUT_LEVEL = frozenset(
    {
        "xml-malformed",
        "xml-doctype",
        "csv-columns",
        "encoding",
        "empty",
        "fw-count",
    }
)
MUST_NAME: dict[str, tuple[str, ...]] = {
    "nantong_truncated.jsonl": ("line 3",),
    "nantong_bad_uscc.jsonl": ("cgrdm", "check character R"),
    "nantong_negative_amount.jsonl": ("/bao/0/ysje", "-1280"),
    "wuxi_section_not_extending.xml": (
        "记录[2]",
        "E3202002611030017002001",
        "E3202002611030017001",
    ),
    "xuzhou_impossible_date.csv": ("PubDate", "20260231"),
    "wuxi_malformed.xml": ("line 6",),
    "wuxi_doctype_xxe.xml": ("DOCTYPE",),
    "xuzhou_wrong_columns.csv": ("line 3", "23", "24"),
    "taizhou_wrong_encoding.xml": ("byte offset 124",),
    "taizhou_empty.xml": ("empty",),
    "suqian_checksum.txt": ("line 2", "CRC-32"),
    "suqian_count.txt": ("declares 3",),
    "suqian_bad_date.txt": ("20270230",),
    "national_truncated.jsonl": ("line 2",),
    "national_field_type.jsonl": ("PROJECT_CODE",),
    "national_empty.jsonl": ("empty",),
}


def make_adapter(name: str) -> Adapter:
    if name in MAPPINGS:
        options = MappingOptions(mapping=name, platform=PLATFORM).model_dump()
        return REGISTRY["mapping"].create(options, where="test")
    return REGISTRY[name].create({}, where="test")


@dataclass(frozen=True)
class Outcome:
    records: list[NationalRecord]
    rejects: list[RecordRejected]


def parse(adapter: Adapter, path: Path) -> Outcome:
    raw = RawInput(source="test", data=path.read_bytes(), name=path.name)
    records: list[NationalRecord] = []
    rejects: list[RecordRejected] = []
    for item in adapter.parse(raw):
        if isinstance(item, RecordRejected):
            rejects.append(item)
        else:
            records.append(item)
    return Outcome(records, rejects)


def good_files(name: str) -> list[Path]:
    return sorted(p for p in (FEEDS / name / "good").iterdir() if p.is_file())


def expected(name: str) -> list[dict[str, object]]:
    text = (FEEDS / name / "expected.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def bad_rows(name: str) -> list[dict[str, str]]:
    with (FEEDS / name / "bad" / "INDEX.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


BAD_CASES = [(name, row) for name in CASES for row in bad_rows(name)]


# --- fixtures are complete --------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_every_adapter_has_golden_and_bad_fixtures(name: str) -> None:
    assert good_files(name), f"{name}: no good/ fixtures"
    assert expected(name), f"{name}: empty expected.jsonl"
    rows = bad_rows(name)
    assert rows, f"{name}: no bad/ fixtures"
    for row in rows:
        data = (FEEDS / name / "bad" / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]
        assert row["file"] in MUST_NAME, f"say what {row['file']} must name"


def test_python_adapter_names_are_snake_case() -> None:
    for name in PYTHON_ADAPTERS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


# --- golden files ----------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_golden_files_give_the_expected_records(name: str) -> None:
    adapter = make_adapter(name)
    records: list[NationalRecord] = []
    for path in good_files(name):
        outcome = parse(adapter, path)
        assert not outcome.rejects, [r.message for r in outcome.rejects]
        records.extend(outcome.records)
    want = expected(name)
    assert [r.dataset for r in records] == [w["dataset"] for w in want]
    for i, (got, exp) in enumerate(zip(records, want, strict=True)):
        fields = exp["fields"]
        assert isinstance(fields, dict)
        differ = {
            k: (got.fields.get(k), v)
            for k, v in fields.items()
            if got.fields.get(k) != v
        }
        assert not differ, f"{name} record {i} ({got.dataset}): {differ}"


@pytest.mark.parametrize("name", CASES)
def test_golden_records_pass_the_catalogue(name: str) -> None:
    adapter = make_adapter(name)
    catalogue = default_catalogue()
    for path in good_files(name):
        raw = RawInput(source="test", data=path.read_bytes(), name=path.name)
        adapted = adapt_input(adapter, raw, catalogue, NOWHERE)
        assert not adapted.rejects, [r.message for r in adapted.rejects]
        assert adapted.records


@pytest.mark.parametrize("name", CASES)
def test_parse_is_pure(name: str) -> None:
    adapter = make_adapter(name)
    for path in good_files(name):
        first = parse(adapter, path)
        again = parse(adapter, path)
        assert [(r.dataset, dict(r.fields), r.locator) for r in first.records] == [
            (r.dataset, dict(r.fields), r.locator) for r in again.records
        ]


@pytest.mark.parametrize("name", CASES)
def test_records_are_national_text(name: str) -> None:
    adapter = make_adapter(name)
    catalogue = default_catalogue()
    for path in good_files(name):
        for record in parse(adapter, path).records:
            assert catalogue.dataset(record.dataset) is not None
            assert record.locator
            for key, value in record.fields.items():
                assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), key
                assert isinstance(value, str)
                assert value
                assert value == value.strip()
                assert "\ufffd" not in value


# --- bad files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "row"), BAD_CASES, ids=[f"{n}:{r['file']}" for n, r in BAD_CASES]
)
def test_bad_input_is_rejected_as_indexed(name: str, row: dict[str, str]) -> None:
    adapter = make_adapter(name)
    path = FEEDS / name / "bad" / row["file"]
    raw = RawInput(source="test", data=path.read_bytes(), name=path.name)
    words = MUST_NAME[row["file"]]
    if row["detect"] in INPUT_LEVEL:
        with pytest.raises(InputRejected) as info:
            adapt_input(adapter, raw, default_catalogue(), NOWHERE)
        text = f"{info.value.message_en} {info.value.message_zh}"
        assert info.value.locator
    else:
        adapted = adapt_input(adapter, raw, default_catalogue(), NOWHERE)
        assert adapted.rejects, f"{row['file']}: nothing rejected"
        text = " ".join(f"{r.locator} {r.message}" for r in adapted.rejects)
        # No record is built from the bad part: the bad record is never accepted.
        assert adapted.read >= len(adapted.records) + len(adapted.rejects)
    for word in words:
        assert word in text, f"{row['file']}: {word!r} not in {text!r}"


def test_bad_parts_never_reach_the_records() -> None:
    """Spot checks of INDEX.tsv's 'emit no record built from the bad part'."""
    catalogue = default_catalogue()
    cases = {
        ("nantong-procurement-json", "nantong_truncated.jsonl"): 3,  # lines 1-2
        ("wuxi-construction-xml", "wuxi_section_not_extending.xml"): 1,
        ("nantong-procurement-json", "nantong_bad_uscc.jsonl"): 0,
        ("nantong-procurement-json", "nantong_negative_amount.jsonl"): 0,
        ("xuzhou-land-csv", "xuzhou_impossible_date.csv"): 0,
        ("suqian_blacklist", "suqian_checksum.txt"): 1,
    }
    for (name, file), count in cases.items():
        path = FEEDS / name / "bad" / file
        raw = RawInput(source="test", data=path.read_bytes(), name=file)
        adapted = adapt_input(make_adapter(name), raw, catalogue, NOWHERE)
        assert len(adapted.records) == count, file
        for record in adapted.records:
            assert b"-1280" not in record.canonical
            assert b"E3202002611030017002001" not in record.canonical


# --- the copies of ../shared/samples ------------------------------------------------

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} is not present (the copies stand alone)"
)


@needs_shared
@pytest.mark.parametrize("name", MAPPINGS)
def test_fixture_copies_equal_shared_samples(name: str) -> None:
    originals = sorted(
        p for p in (SHARED / name).iterdir() if p.is_file() and p.name != "README.md"
    )
    assert [p.name for p in originals] == [p.name for p in good_files(name)]
    for path in originals:
        copy = FEEDS / name / "good" / path.name
        assert copy.read_bytes() == path.read_bytes(), path.name
    assert (FEEDS / name / "expected.jsonl").read_bytes() == (
        SHARED / "expected" / f"{name}.jsonl"
    ).read_bytes()
    with (SHARED / "bad" / "INDEX.tsv").open(encoding="utf-8", newline="") as f:
        shared_rows = [
            r for r in csv.DictReader(f, delimiter="\t") if r["system"] == name
        ]
    assert bad_rows(name) == shared_rows
    for row in shared_rows:
        original = (SHARED / "bad" / row["file"]).read_bytes()
        assert (FEEDS / name / "bad" / row["file"]).read_bytes() == original


@needs_shared
def test_every_shared_system_has_a_shipped_mapping() -> None:
    systems = {p.parent.name for p in SHARED.glob("*/README.md")}
    assert systems <= set(MAPPINGS)
