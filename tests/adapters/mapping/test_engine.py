"""The mapping engine on small inline mappings, one feature at a time.

AWARD_INFO needs only BODY_NAME and BODY_CODE, so its free text fields
(GOVERNMENT, SCOPE, DOCUMENT_CODE, REWARD_REASON, ...) serve as probes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.base import RawInput
from adapters.readers import InputRejected
from tests.adapters.mapping.helpers import compile_text, fields, run

USCC = "91320213MA1N7R2B45"


def head(fmt: str, extra: str = "") -> str:
    return f"""
        version: 1
        name: t
        timezone: "+08:00"
        input:
          format: {fmt}
        {extra}
    """


# --- XML ------------------------------------------------------------------------

XML_NOTICE = f"""<?xml version="1.0" encoding="UTF-8"?>
<export xmlns="urn:t" xmlns:o="urn:other" when="2026-11-03T10:00:00+08:00">
  <header><field name="机构" value="泰州交易中心"/><field name="批次" value="B7"/></header>
  <rows>
    <row type="a"><名称> 甲公司 </名称><代码>{USCC}</代码><备注>x<b>y</b>z</备注>
      <o:extra>ns</o:extra><tag>t1</tag><tag>t2</tag></row>
    <row type="b"><名称>乙公司</名称><代码>{USCC}</代码></row>
    <row type="zzz"><名称>丙</名称><代码>{USCC}</代码></row>
  </rows>
</export>
"""

XML_MAPPING = """
    version: 1
    name: xml-test
    timezone: "+08:00"
    input:
      format: xml
      records: /export/rows/row
      context: {hdr: /export/header}
      namespaces: {o: "urn:other", t: "urn:t"}
    records:
      - when: {path: "@type", equals: a}
        dataset: AWARD_INFO
        fields:
          BODY_NAME: 名称
          BODY_CODE: 代码
          GOVERNMENT: "$hdr/field[@name='机构']/@value"
          SCOPE: /export/@when
          DOCUMENT_CODE: 备注
          REWARD_REASON: o:extra
          REWARD_DATE: {path: "/export/@when", normalize: [{date: iso8601}]}
          BODY_TYPE: {path: tag, normalize: [join]}
          BODY_ROLE: {xpath: "string(t:tag[2])"}
      - when: {path: "@type", equals: b}
        dataset: AWARD_INFO
        fields:
          BODY_NAME: 名称
          BODY_CODE: 代码
          GOVERNMENT: "$hdr/field[@name='批次']/@value"
"""


def test_xml_contexts_attributes_namespaces_and_xpath(tmp_path: Path) -> None:
    mapping = compile_text(tmp_path, XML_MAPPING)
    records, rejects = run(mapping, XML_NOTICE)
    assert fields(records) == [
        {
            "BODY_NAME": "甲公司",
            "BODY_CODE": USCC,
            "GOVERNMENT": "泰州交易中心",
            "SCOPE": "2026-11-03T10:00:00+08:00",
            "DOCUMENT_CODE": "xyz",
            "REWARD_REASON": "ns",
            "REWARD_DATE": "20261103",
            "BODY_TYPE": "t1;t2",
            "BODY_ROLE": "t2",
        },
        {"BODY_NAME": "乙公司", "BODY_CODE": USCC, "GOVERNMENT": "B7"},
    ]
    assert records[0].locator.startswith("/export[1]/rows[1]/row[1], line 5")
    [unmatched] = rejects
    assert unmatched.code == "E_MAP_UNMATCHED"
    assert "row[3]" in unmatched.locator


def test_xml_indexes_on_one_record_do_not_mix(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: t
        timezone: "+08:00"
        input: {format: xml, records: /r/i}
        records:
          - dataset: AWARD_INFO
            fields:
              GOVERNMENT: "f[@k='a']/@v"
              BODY_NAME: name
              BODY_CODE: "f[@k='c']/@v"
              SCOPE: "f[@k='zz']/@v"
        """,
    )
    doc = f'<r><i><f k="a" v="1"/><name>n</name><f k="c" v="{USCC}"/></i></r>'
    records, rejects = run(mapping, doc)
    assert not rejects
    assert fields(records) == [{"GOVERNMENT": "1", "BODY_NAME": "n", "BODY_CODE": USCC}]


def test_xml_several_values_need_join_or_pick(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: t
        timezone: "+08:00"
        input: {format: xml, records: /export/rows/row}
        unmatched: ignore
        records:
          - dataset: AWARD_INFO
            when: {path: "@type", equals: a}
            fields:
              BODY_NAME: 名称
              BODY_CODE: 代码
              SCOPE: tag
              GOVERNMENT: {path: tag, normalize: [{pick: last}]}
        """,
    )
    records, rejects = run(mapping, XML_NOTICE)
    assert not records
    [reject] = rejects
    assert reject.code == "E_MAP_MULTIPLE"
    assert reject.field == "SCOPE"
    assert "'t1'" in reject.message_en
    assert "join or pick" in reject.message_en


def test_xml_nested_document_children_inherit_parent_keys(tmp_path: Path) -> None:
    """One project element: a record for the project, one per section."""
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: nested
        timezone: "+08:00"
        input: {format: xml, records: /projects/project}
        records:
          - dataset: AWARD_INFO
            fields: {BODY_NAME: name, BODY_CODE: code}
          - dataset: PERFORMANCE_INFO
            for_each: sections/section
            fields:
              BODY_NAME: ../../name
              BODY_CODE: ../../code
              BID_SECTION_CODE: "@no"
              BID_SECTION_NAME: title
              CONTRACT_PERIOD: {meta: index}
        """,
    )
    doc = f"""<projects><project><name>P</name><code>{USCC}</code><sections>
        <section no="S1"><title>一</title></section>
        <section no="S2"><title>二</title></section></sections></project></projects>"""
    records, rejects = run(mapping, doc)
    assert not rejects
    assert [r.dataset for r in records] == [
        "AWARD_INFO",
        "PERFORMANCE_INFO",
        "PERFORMANCE_INFO",
    ]
    assert fields(records)[1:] == [
        {
            "BODY_NAME": "P",
            "BODY_CODE": USCC,
            "BID_SECTION_CODE": "S1",
            "BID_SECTION_NAME": "一",
            "CONTRACT_PERIOD": "1",
        },
        {
            "BODY_NAME": "P",
            "BODY_CODE": USCC,
            "BID_SECTION_CODE": "S2",
            "BID_SECTION_NAME": "二",
            "CONTRACT_PERIOD": "2",
        },
    ]
    assert records[2].locator.endswith("sections/section[2]")


def test_xml_group_rows_survive_the_reader_moving_on(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: g
        timezone: "+08:00"
        input: {format: xml, records: /r/i}
        records:
          - dataset: AWARD_INFO
            group_by: k
            fields:
              BODY_NAME: k
              BODY_CODE: c
              SCOPE: {path: v, aggregate: join}
              GOVERNMENT: {aggregate: count}
        """,
    )
    doc = (
        "<r>"
        + "".join(
            f"<i><k>{k}</k><c>{USCC}</c><v>{v}</v></i>"
            for k, v in [("a", "1"), ("a", "2"), ("b", "3")]
        )
        + "</r>"
    )
    records, rejects = run(mapping, doc)
    assert not rejects
    assert fields(records) == [
        {"BODY_NAME": "a", "BODY_CODE": USCC, "SCOPE": "1;2", "GOVERNMENT": "2"},
        {"BODY_NAME": "b", "BODY_CODE": USCC, "SCOPE": "3", "GOVERNMENT": "1"},
    ]


def test_xml_unsafe_input_is_refused_by_the_reader(tmp_path: Path) -> None:
    mapping = compile_text(tmp_path, XML_MAPPING)
    evil = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><export/>'
    with pytest.raises(InputRejected) as info:
        run(mapping, evil)
    assert info.value.code == "E_XML_DOCTYPE"


# --- JSON -----------------------------------------------------------------------

JSON_LINE = {
    "kind": "p",
    "name": "项目甲",
    "code": "９１３２０２１３ＭＡ１Ｎ７Ｒ２Ｂ４５",
    "ok": True,
    "amount": 12.50,
    "when": 1796166900000,
    "tags": ["a", "b", "a"],
    "owner": {"name": "业主", "org": {"id": "X1"}},
    "parts": [
        {"no": "01", "win": 1, "price": 5, "mode": "je"},
        {"no": "02", "win": 0, "price": 7, "mode": "je"},
        {"no": "03", "win": 1, "price": None, "mode": "fl"},
    ],
}


def jsonl(*objects: object) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects)


def test_json_paths_predicates_and_normalisers(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: jsonl}
        tables:
          modes: {je: "1", fl: "2"}
        records:
          - when: {path: kind, equals: p}
            dataset: AWARD_INFO
            fields:
              BODY_NAME: {concat: [name, {const: "/"}, owner/name]}
              BODY_CODE: {path: code, normalize: [halfwidth, {check: uscc}]}
              GOVERNMENT: {path: "parts[win=1]/no", normalize: [join]}
              SCOPE: {path: "parts[win=1]/mode", normalize: [{lookup: modes}, unique, join]}
              DOCUMENT_CODE: {path: tags, normalize: [unique, {join: ","}]}
              REWARD_REASON: {first_of: [missing, owner/org/id]}
              REWARD_DATE: {path: when, normalize: [{date: epoch_ms}]}
              BODY_TYPE: {path: ok, normalize: [boolean]}
              BODY_ROLE: {meta: line}
              REWARD_PUNISHMENT_TYPE: {path: "parts[mode='fl']/price", default: "none"}
        """,
    )
    records, rejects = run(mapping, jsonl(JSON_LINE))
    assert not rejects
    assert fields(records) == [
        {
            "BODY_NAME": "项目甲/业主",
            "BODY_CODE": USCC,
            "GOVERNMENT": "01;03",
            "SCOPE": "1;2",
            "DOCUMENT_CODE": "a,b",
            "REWARD_REASON": "X1",
            "REWARD_DATE": "20261202",
            "BODY_TYPE": "1",
            "BODY_ROLE": "1",
            "REWARD_PUNISHMENT_TYPE": "none",
        }
    ]


def test_json_for_each_parent_and_locators(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: jsonl}
        records:
          - dataset: PERFORMANCE_INFO
            for_each: parts
            fields:
              BODY_NAME: ../name
              BODY_CODE: {path: ../code, normalize: [halfwidth]}
              BID_SECTION_CODE: no
              CONTRACT_AMOUNT: {path: price, normalize: [{money: {unit: 万元, negative: reject}}]}
              CONTRACT_CURRENCYUNIT: {path: price, normalize: [{money_unit: 万元}]}
              CONTRACT_PERIOD: {meta: index}
        """,
    )
    bad = dict(JSON_LINE, parts=[{"no": "09", "price": -3}])
    records, rejects = run(mapping, jsonl(JSON_LINE, bad))
    assert [r.fields["BID_SECTION_CODE"] for r in records] == ["01", "02", "03"]
    assert records[0].fields["CONTRACT_AMOUNT"] == "5"
    assert records[0].fields["CONTRACT_CURRENCYUNIT"] == "1"
    assert "CONTRACT_AMOUNT" not in records[2].fields
    assert records[2].fields["CONTRACT_PERIOD"] == "3"
    assert records[1].locator == "line 1, byte offset 0, /parts/1"
    [reject] = rejects
    assert reject.code == "E_MAP_NEGATIVE"
    assert reject.field == "CONTRACT_AMOUNT"
    assert reject.locator.startswith("line 2")
    assert "/parts/0/price" in reject.message_en
    assert "/parts/0/price" in reject.message_zh


def test_json_objects_are_not_values(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: jsonl}
        records:
          - dataset: AWARD_INFO
            fields: {BODY_NAME: owner, BODY_CODE: code}
        """,
    )
    _, rejects = run(mapping, jsonl(JSON_LINE))
    [reject] = rejects
    assert reject.code == "E_MAP_SHAPE"
    assert "object" in reject.message_en


def test_json_documents_and_row_errors(tmp_path: Path) -> None:
    text = """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: json}
        records:
          - dataset: AWARD_INFO
            fields: {BODY_NAME: n, BODY_CODE: c}
    """
    mapping = compile_text(tmp_path, text)
    records, _ = run(
        mapping, json.dumps([{"n": "a", "c": USCC}, {"n": "b", "c": USCC}])
    )
    assert [r.fields["BODY_NAME"] for r in records] == ["a", "b"]
    assert records[1].locator.startswith("/1")
    lines = compile_text(
        tmp_path, text.replace("format: json", "format: jsonl"), name="l.yaml"
    )
    records, rejects = run(lines, '{"n": "a", "c": "' + USCC + '"}\n{"n": \n')
    assert len(records) == 1
    assert rejects[0].code == "E_JSON_SYNTAX"
    strict = compile_text(
        tmp_path,
        text.replace(
            "format: json}", "format: jsonl}\n        row_errors: reject_input"
        ),
        name="s.yaml",
    )
    with pytest.raises(InputRejected):
        run(strict, '{"n": "a", "c": "' + USCC + '"}\n{"n": \n')


def test_lookup_rules_for_unmapped_and_empty(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: jsonl}
        tables:
          t: {A: "1", B: "2"}
        records:
          - dataset: AWARD_INFO
            fields:
              BODY_NAME: n
              BODY_CODE: c
              GOVERNMENT: {path: x, normalize: [{lookup: {table: t, unmapped: {value: "9"}, empty: {value: "0"}}}]}
              SCOPE: {path: x, normalize: [{lookup: {table: t, unmapped: keep}}]}
              DOCUMENT_CODE: {path: x, normalize: [{lookup: {values: {A: a}, unmapped: omit}}]}
              REWARD_REASON: {path: x, normalize: [{lookup: t}]}
        """,
    )
    cases = [{"x": "A"}, {"x": "Z"}, {}]
    records, rejects = run(mapping, jsonl(*({"n": "n", "c": USCC} | c for c in cases)))
    assert fields(records) == [
        {
            "BODY_NAME": "n",
            "BODY_CODE": USCC,
            "GOVERNMENT": "1",
            "SCOPE": "1",
            "DOCUMENT_CODE": "a",
            "REWARD_REASON": "1",
        },
        {"BODY_NAME": "n", "BODY_CODE": USCC, "GOVERNMENT": "0"},
    ]
    [reject] = rejects
    assert reject.code == "E_MAP_UNMAPPED"
    assert reject.field == "REWARD_REASON"
    assert "'Z'" in reject.message_en


def test_regex_replace_when_required_and_settings(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: j
        timezone: "+08:00"
        input: {format: jsonl}
        platform:
          TRADE_PLAT: {setting: plat}
        records:
          - dataset: AWARD_INFO
            fields:
              BODY_NAME: {path: n, required: true}
              BODY_CODE: c
              GOVERNMENT: {path: t, normalize: [{regex: "费率([0-9.]+%)"}]}
              SCOPE: {path: t, normalize: [{replace: {pattern: "[^0-9]", with: ""}}]}
              DOCUMENT_CODE: {path: t, when: {path: k, in: [x, y]}}
              REWARD_REASON: {path: t, normalize: [{regex: {pattern: "^(?P<w>下浮)", group: w, no_match: omit}}]}
              BODY_ROLE: {setting: region}
        """,
        settings={"region": "320200", "plat": "T3202000001"},
        platform={"PLATFORM_CODE": "12320200D202600311"},
    )
    records, rejects = run(
        mapping,
        jsonl(
            {"n": "a", "c": USCC, "t": "中标费率4.50%", "k": "x"},
            {"n": "b", "c": USCC, "t": "下浮率8%", "k": "z"},
            {"n": "", "c": USCC, "t": "费率1%"},
        ),
    )
    assert fields(records)[0] == {
        "BODY_NAME": "a",
        "BODY_CODE": USCC,
        "GOVERNMENT": "4.50%",
        "SCOPE": "450",
        "DOCUMENT_CODE": "中标费率4.50%",
        "BODY_ROLE": "320200",
        "TRADE_PLAT": "T3202000001",
        "PLATFORM_CODE": "12320200D202600311",
    }
    assert [r.code for r in rejects] == ["E_MAP_REGEX", "E_MAP_REQUIRED"]
    assert rejects[1].field == "BODY_NAME"
    assert records == records[:1]


# --- CSV and fixed width ------------------------------------------------------------

CSV_MAPPING = """
    version: 1
    name: c
    timezone: "+08:00"
    input: {format: csv, delimiter: "|", quote: null}
    records:
      - when: {path: Status, equals: skip}
        skip: true
      - when: {path: Notice, present: true}
        group_by: [Notice]
        dataset: AWARD_INFO
        fields:
          BODY_NAME: Notice
          BODY_CODE: Code
          GOVERNMENT: {aggregate: count}
          SCOPE: {path: Parcel, aggregate: join}
          DOCUMENT_CODE: {path: Kind, aggregate: unique}
          REWARD_REASON: {path: Money, aggregate: sum}
          REWARD_PUNISHMENT_TYPE: {path: Parcel, aggregate: last}
          REWARD_DATE: {concat: [D, T], normalize: [{datetime: yyyyMMddHHmm}]}
"""


def csv_text(*rows: str) -> str:
    return "Notice|Code|Parcel|Kind|Money|D|T|Status\n" + "".join(
        r + "\n" for r in rows
    )


def test_csv_groups_of_consecutive_rows(tmp_path: Path) -> None:
    mapping = compile_text(tmp_path, CSV_MAPPING.replace("datetime", "date"))
    data = csv_text(
        f"N1|{USCC}|p1|k|1.5|20261103|0900|",
        f"N1|{USCC}|p2|k|2|20261103|0900|",
        f"N1|{USCC}|p3|m|0.5|20261103|0900|",
        "x|x|x|x|x|x|x|skip",
        f"N2|{USCC}|q1|k|1|20261104|1000|",
    )
    records, rejects = run(mapping, data)
    assert not rejects
    assert fields(records) == [
        {
            "BODY_NAME": "N1",
            "BODY_CODE": USCC,
            "GOVERNMENT": "3",
            "SCOPE": "p1;p2;p3",
            "DOCUMENT_CODE": "k;m",
            "REWARD_REASON": "4",
            "REWARD_PUNISHMENT_TYPE": "p3",
            "REWARD_DATE": "20261103",
        },
        {
            "BODY_NAME": "N2",
            "BODY_CODE": USCC,
            "GOVERNMENT": "1",
            "SCOPE": "q1",
            "DOCUMENT_CODE": "k",
            "REWARD_REASON": "1",
            "REWARD_PUNISHMENT_TYPE": "q1",
            "REWARD_DATE": "20261104",
        },
    ]
    assert records[0].locator.endswith("(+2 rows)")


def test_csv_split_groups_and_bad_rows_are_rejected(tmp_path: Path) -> None:
    mapping = compile_text(tmp_path, CSV_MAPPING.replace("datetime", "date"))
    data = csv_text(
        f"N1|{USCC}|p1|k|1|20261103|0900|",
        f"N2|{USCC}|q1|k|1|20260231|0900|",
        f"N1|{USCC}|p2|k|1|20261103|0900|",
        f"N3|{USCC}|r1|k",
    )
    records, rejects = run(mapping, data)
    assert [r.fields["BODY_NAME"] for r in records] == ["N1"]
    # N2 is judged when its group ends (row 3), the broken N1 group at the end.
    assert [r.code for r in rejects] == ["E_MAP_DATE", "E_CSV_RAGGED", "E_MAP_GROUP"]
    assert "20260231" in rejects[0].message_en
    assert "REWARD_DATE from D+T" in rejects[0].message_en
    assert "not consecutive" in rejects[2].message_en


def test_csv_missing_columns(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: c
        timezone: "+08:00"
        input: {format: csv}
        records:
          - when: {path: NoSuchColumn, present: false}
            dataset: AWARD_INFO
            fields: {BODY_NAME: Name, BODY_CODE: Cdoe}
        """,
    )
    _, rejects = run(mapping, f"Name,Code\na,{USCC}\n")
    [reject] = rejects
    assert reject.code == "E_MAP_COLUMN"
    assert "'Cdoe'" in reject.message_en


def test_transport_charset_is_honoured(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: c
        timezone: "+08:00"
        input: {format: csv, encoding: utf-8}
        records:
          - dataset: AWARD_INFO
            fields: {BODY_NAME: 名称, BODY_CODE: 代码}
        """,
    )
    data = f"名称,代码\n江苏,{USCC}\n".encode("gbk")
    raw = RawInput(source="t", data=data, charset="GBK")
    [record] = list(mapping.parse(raw))
    assert record.fields["BODY_NAME"] == "江苏"  # type: ignore[union-attr]
    with pytest.raises(InputRejected) as info:
        list(mapping.parse(RawInput(source="t", data=data, charset="latin-1")))
    assert info.value.code == "E_ENCODING"


def test_fixed_width_header_context_and_record_types(tmp_path: Path) -> None:
    mapping = compile_text(
        tmp_path,
        """
        version: 1
        name: f
        timezone: "+08:00"
        input:
          format: fixed_width
          encoding: gb18030
          code_length: 1
          header:
            code: H
            fields: [{name: type, start: 0, length: 1}, {name: batch, start: 1, length: 8}]
          layouts:
            - code: A
              fields: [{name: type, start: 0, length: 1}, {name: name, start: 1, length: 10},
                       {name: code, start: 11, length: 18}]
            - code: B
              fields: [{name: type, start: 0, length: 1}, {name: name, start: 1, length: 10}]
        records:
          - when: {meta: record_type, equals: A}
            dataset: AWARD_INFO
            fields:
              BODY_NAME: name
              BODY_CODE: code
              REWARD_DATE: {path: $header/batch, normalize: [{date: yyyyMMdd}]}
              SCOPE: {meta: row}
          - when: {meta: record_type, equals: B}
            skip: true
        """,
    )
    name = "甲公司".encode("gb18030").ljust(10)
    data = b"H20261103\n" + b"A" + name + USCC.encode() + b"\nB" + name + b"\n"
    records, rejects = run(mapping, data)
    assert not rejects
    assert fields(records) == [
        {
            "BODY_NAME": "甲公司",
            "BODY_CODE": USCC,
            "REWARD_DATE": "20261103",
            "SCOPE": "1",
        }
    ]
