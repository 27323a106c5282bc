"""The shared sample exports: good ones read cleanly, reader-level bad ones are
rejected with the right kind of error, mapping-level bad ones are left to mapping."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.readers import (
    CsvOptions,
    CsvRow,
    InputRejected,
    JsonItem,
    RowError,
    XmlOptions,
    read_csv,
    read_jsonl,
    read_xml,
)
from tests.adapters.readers.helpers import SAMPLES, bilingual, first_bad_utf8

if not SAMPLES.is_dir():
    pytest.skip(f"{SAMPLES} is not available", allow_module_level=True)

KYQ = "urn:example:taizhou-kyq:export:2"
TAIZHOU = XmlOptions(
    item_depth=None, item_tags=frozenset({f"{{{KYQ}}}notice", f"{{{KYQ}}}item"})
)
XUZHOU = CsvOptions(delimiter="\t", quotechar=None, header_rows=2)

Reader = Callable[[bytes], Iterator[object]]
READERS: dict[str, Reader] = {
    "wuxi-construction-xml": lambda data: iter(read_xml(data)),
    "taizhou-mining-xml": lambda data: iter(read_xml(data, TAIZHOU)),
    "nantong-procurement-json": lambda data: iter(read_jsonl(data)),
    "xuzhou-land-csv": lambda data: iter(read_csv(data, XUZHOU)),
}
SUFFIX = {
    "wuxi-construction-xml": ".xml",
    "taizhou-mining-xml": ".xml",
    "nantong-procurement-json": ".jsonl",
    "xuzhou-land-csv": ".csv",
}


def good_files(system: str) -> list[Path]:
    return sorted((SAMPLES / system).glob("*" + SUFFIX[system]))


def read_all(system: str) -> list[object]:
    out: list[object] = []
    for path in good_files(system):
        for item in READERS[system](path.read_bytes()):
            assert not isinstance(item, RowError), (path.name, item)
            out.append(item)
    return out


def test_wuxi_gb18030_exports() -> None:
    records: list[dict[str, str]] = []
    for path in good_files("wuxi-construction-xml"):
        for item in read_xml(path.read_bytes()):
            assert item.local_name == "记录"
            records.append({str(c.tag): c.text or "" for c in item.element})
    assert len(records) == 13
    assert {r["类型"] for r in records} == {
        "项目",
        "招标项目",
        "标段",
        "招标公告",
        "中标结果",
    }
    assert any(r.get("申报人") == "王䶮" for r in records)  # GB18030 character
    html = [r["公告内容"] for r in records if "&amp;" in r.get("公告内容", "")]
    assert html
    assert html[0].startswith("<")


def test_taizhou_namespaced_exports() -> None:
    notices = items = 0
    values: list[str] = []
    for path in good_files("taizhou-mining-xml"):
        for item in read_xml(path.read_bytes(), TAIZHOU):
            assert item.namespace == KYQ
            if item.local_name == "notice":
                notices += 1
            else:
                items += 1
            values += [r.get("value", "") for r in item.element]
    assert (notices, items) == (3, 8)
    assert any("\n" in v for v in values)  # &#10; in attribute values


def test_nantong_json_lines() -> None:
    lines = read_all("nantong-procurement-json")
    assert len(lines) == 11
    assert all(isinstance(i, JsonItem) and isinstance(i.value, dict) for i in lines)
    flat = repr([i.value for i in lines if isinstance(i, JsonItem)])
    assert "Decimal('91.3624')" in flat  # exact, never a float
    assert "'ysje': '96.8'" in flat  # a budget sent as a string stays a string
    assert "float" not in flat


def test_xuzhou_tsv_with_two_header_rows() -> None:
    rows = read_all("xuzhou-land-csv")
    assert len(rows) == 12
    assert all(isinstance(r, CsvRow) for r in rows)
    remarks = [r.fields.get("Remark", "") for r in rows if isinstance(r, CsvRow)]
    assert any(remark.startswith('"净地"') for remark in remarks)
    first = rows[0]
    assert isinstance(first, CsvRow)
    assert first.line == 3
    assert "NoticeID" in first.fields  # BOM stripped from the first name


def _index() -> list[dict[str, str]]:
    with (SAMPLES / "bad" / "INDEX.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# Reader-level problems: how each must come out of the reader.
REJECTED = {
    "wuxi_doctype_xxe.xml": "E_XML_DOCTYPE",
    "wuxi_malformed.xml": "E_XML_MALFORMED",
    "taizhou_wrong_encoding.xml": "E_ENCODING",
    "taizhou_empty.xml": "E_EMPTY",
}
ROW_ERRORS = {
    "nantong_truncated.jsonl": ("E_JSON_SYNTAX", 3),
    "xuzhou_wrong_columns.csv": ("E_CSV_RAGGED", 3),
}


@pytest.mark.parametrize("entry", _index(), ids=lambda e: e["file"])
def test_bad_samples(entry: dict[str, str]) -> None:
    data = (SAMPLES / "bad" / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    read = READERS[entry["system"]]
    name = entry["file"]
    if name in REJECTED:
        with pytest.raises(InputRejected) as info:
            list(read(data))
        assert info.value.code == REJECTED[name]
        bilingual(info.value)
        return
    items = list(read(data))
    errors = [i for i in items if isinstance(i, RowError)]
    if name in ROW_ERRORS:
        assert [(e.code, e.line) for e in errors] == [ROW_ERRORS[name]]
        assert all(
            e.line != ROW_ERRORS[name][1] for e in items if isinstance(e, JsonItem)
        )
        bilingual(errors[0])
    else:
        # USCC check, section codes, dates, amounts: the mapping's business.
        assert errors == []
        assert items


def test_wrong_encoding_sample_names_the_first_bad_byte() -> None:
    data = (SAMPLES / "bad" / "taizhou_wrong_encoding.xml").read_bytes()
    with pytest.raises(InputRejected) as info:
        list(read_xml(data))
    assert info.value.locator == f"byte offset {first_bad_utf8(data)}"
    assert "UTF-8" in info.value.message_en


def test_doctype_sample_is_refused_before_anything_is_parsed() -> None:
    data = (SAMPLES / "bad" / "wuxi_doctype_xxe.xml").read_bytes()
    with pytest.raises(InputRejected) as info:
        list(read_xml(data))
    assert info.value.locator == "line 2, byte offset 42"


def test_exact_numbers_in_the_nantong_sample() -> None:
    path = SAMPLES / "nantong-procurement-json" / "ntzc_cjgg_20261203.jsonl"
    found = [i.value for i in read_jsonl(path.read_bytes()) if isinstance(i, JsonItem)]
    assert Decimal("91.3624") in [
        g.get("bj")
        for v in found
        if isinstance(v, dict) and isinstance(v.get("gys"), list)
        for g in v["gys"]  # type: ignore[union-attr]
        if isinstance(g, dict)
    ]
