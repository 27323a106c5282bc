"""The mapping's fast paths give what the general paths give, errors included.

Each fast path keeps its general path next to it (rule-by-rule conditions, the
getter-then-normaliser closure, Decimal arithmetic, datetime), so every test here
runs both on the same inputs and compares everything: values, codes, messages.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import NationalRecord, RawInput, RecordRejected
from adapters.mapping import normalizers as nz
from adapters.mapping.engine import CompiledMapping
from adapters.mapping.formats import ColumnsFormat, Format, JsonFormat, XmlFormat
from tests.adapters.mapping.helpers import compile_text, run

USCC = "91320213MA1N7R2B45"
FAST = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def outcome(fn: object, *args: object, **kwargs: object) -> tuple[object, ...]:
    try:
        return ("ok", fn(*args, **kwargs))  # type: ignore[operator]
    except nz.ValueProblem as p:
        return ("problem", p.code, p.en, p.zh)
    except Exception as exc:  # noqa: BLE001 - the general path's own failures too
        return ("error", type(exc).__name__, str(exc))


# --- numbers: text arithmetic against Decimal ----------------------------------------


def money_by_decimal(
    value: str, *, unit: str = "元", to: str | None = None, negative: str = "allow"
) -> str:
    number, written = nz.parse_decimal(value, currency=True)
    source = written or unit
    target = to or source
    if number < 0 and negative == "reject":
        raise nz.ValueProblem(
            "E_MAP_NEGATIVE",
            f"{nz.shown(value)} is negative (the sign is never dropped)",
            f"{nz.shown(value)} 为负数（不会去掉负号）",
        )
    if source != target:
        number = number * nz.MONEY_UNITS[source] / nz.MONEY_UNITS[target]
    return nz.canonical_decimal(number)


def decimal_by_decimal(
    value: str, *, negative: str = "allow", integer: bool = False
) -> str:
    number, _ = nz.parse_decimal(value)
    if number < 0 and negative == "reject":
        raise nz.ValueProblem(
            "E_MAP_NEGATIVE",
            f"{nz.shown(value)} is negative (the sign is never dropped)",
            f"{nz.shown(value)} 为负数（不会去掉负号）",
        )
    if integer and number != number.to_integral_value():
        raise nz.ValueProblem(
            "E_MAP_NUMBER",
            f"{nz.shown(value)} is not a whole number",
            f"{nz.shown(value)} 不是整数",
        )
    return nz.canonical_decimal(number)


DIGITS = st.text("0123456789", min_size=1, max_size=40)
NUMBERS = st.one_of(
    st.builds(
        lambda sign, whole, fraction: sign + whole + fraction,
        st.sampled_from(["", "-", "+", "¥", "-¥", "RMB ", "－", "￥"]),
        DIGITS,
        st.one_of(st.just(""), DIGITS.map(lambda d: "." + d)),
    ),
    st.builds(
        lambda n, tail: f"{n:,}{tail}",
        st.integers(-(10**12), 10**12),
        st.sampled_from(["", ".00", ".5", "元", "万元", "分", ".10万元"]),
    ),
    st.text("0123456789.,-+ ¥元万分RMB１２．，－e", max_size=12),
)


@FAST
@given(value=NUMBERS)
def test_money_and_decimal_text_agree_with_decimal_arithmetic(value: str) -> None:
    for kwargs in (
        {"unit": "元"},
        {"unit": "万元", "negative": "reject"},
        {"unit": "分", "to": "元"},
        {"unit": "元", "to": "万元"},
    ):
        assert outcome(nz.money, value, **kwargs) == outcome(
            money_by_decimal, value, **kwargs
        )
    for extra in ({}, {"integer": True}, {"negative": "reject"}):
        want = outcome(decimal_by_decimal, value, **extra)
        assert outcome(nz.decimal_text, value, **extra) == want
        # The scale 1 (nz.ONE) is skipped; any other 1 is multiplied.
        assert outcome(nz.decimal_text, value, scale=nz.ONE, **extra) == outcome(
            nz.decimal_text, value, scale=Decimal("1"), **extra
        )


@pytest.mark.parametrize("digits", [27, 28, 29, 40])
def test_long_numbers_round_as_decimal_does(digits: int) -> None:
    for value in ("9" * digits, "1" * digits + ".5", "0." + "1" * digits, "5.0"):
        assert nz.money(value) == money_by_decimal(value)
        assert nz.decimal_text(value) == decimal_by_decimal(value)
        assert nz.decimal_text(value, scale=nz.ONE) == nz.decimal_text(
            value, scale=Decimal(1)
        )


def test_the_last_number_is_reused_only_for_the_same_question() -> None:
    assert nz.money("100万元") == "100"
    assert nz.money_unit_code("100万元") == "1"  # the same parse, reused
    with pytest.raises(nz.ValueProblem):  # no unit without currency=True
        nz.decimal_text("100万元")
    assert nz.decimal_text("100") == "100"


# --- times: compiled converter against the general path ------------------------------

PATTERNS = [
    ("yyyy年MM月dd日 HH时mm分", "yyyy年MM月dd日 HH时mm分ss秒"),
    ("yyyy/M/d H:mm",),
    ("yyyyMMdd",),
    ("yyyy-MM-dd",),
    ("iso8601",),
    ("epoch_ms",),
    ("epoch_s",),
    ("yyyy-MM-dd'T'HH:mmXXX", "yyyy-MM-dd HH:mm"),
    ("yyyyMMddHHmm", "iso8601"),
]
PART = st.sampled_from


@st.composite
def times(draw: st.DrawFn) -> str:
    y = draw(PART(["2026", "2024", "1900", "0000", "9999", "2100", "1979", "２０２６"]))
    mo = draw(PART(["01", "1", "12", "13", "00", "02", "２"]))
    d = draw(PART(["01", "1", "29", "30", "31", "32", "00"]))
    h = draw(PART(["00", "9", "23", "24", "09"]))
    mi = draw(PART(["00", "5", "59", "60"]))
    s = draw(PART(["00", "59", "60", "7"]))
    return draw(
        PART(
            [
                f"{y}年{mo}月{d}日 {h}时{mi}分",
                f"{y}年{mo}月{d}日\u3000{h}时{mi}分{s}秒",
                f"{y}/{mo}/{d} {h}:{mi}",
                f"{y}{mo}{d}",
                f"{y}-{mo}-{d}",
                f"{y}-{mo}-{d}T{h}:{mi}:{s}+08:00",
                f"{y}-{mo}-{d}T{h}:{mi}:{s}Z",
                f"{y}-{mo}-{d}T{h}:{mi}+0100",
                f"{y}{mo}{d}{h}{mi}",
                str(draw(st.integers(-(10**13), 10**16))),
            ]
        )
    )


@FAST
@given(
    value=times(),
    texts=st.sampled_from(PATTERNS),
    zone=st.sampled_from(["+08:00", "UTC", "Asia/Shanghai", "-05:00"]),
    output=st.sampled_from(["date", "datetime"]),
    date_only=st.sampled_from(["reject", "midnight"]),
)
def test_time_converter_agrees_with_the_general_path(
    value: str, texts: tuple[str, ...], zone: str, output: str, date_only: str
) -> None:
    patterns = tuple(nz.compile_date_pattern(t) for t in texts)
    source = nz.zone(zone)
    convert = nz.time_converter(
        patterns,
        source,
        output=output,
        date_only=date_only,
    )
    want = outcome(nz._national_time, value, patterns, source, output, date_only)
    assert outcome(convert, value) == want
    assert outcome(convert, value) == want  # the small cache changes nothing


def test_epoch_edges_of_the_fast_range() -> None:
    epoch_s = (nz.compile_date_pattern("epoch_s"),)
    convert = nz.time_converter(epoch_s, nz.BEIJING, output="datetime")
    for seconds in (315532799, 315532800, 4102444799, 4102444800, 0, 10**15):
        want = outcome(
            nz._national_time, str(seconds), epoch_s, nz.BEIJING, "datetime", "reject"
        )
        assert outcome(convert, str(seconds)) == want


# --- rules picked by one value, against rule by rule ----------------------------------

DISPATCHED = """
    version: 1
    name: t
    timezone: "+08:00"
    input: {format: jsonl}
    records:
      - when: {path: kind, equals: a}
        dataset: AWARD_INFO
        fields: {BODY_NAME: name, BODY_CODE: code, SCOPE: {const: a}}
      - when: {all: [{path: kind, in: [b, c]}, {path: flag, equals: "1"}]}
        dataset: AWARD_INFO
        fields: {BODY_NAME: name, BODY_CODE: code, SCOPE: {const: b1}}
      - when: {path: extra, present: true}
        dataset: AWARD_INFO
        fields: {BODY_NAME: name, BODY_CODE: code, SCOPE: {const: extra}}
      - when: {path: kind, equals: skip}
        skip: true
      - when: {path: kind, in: [b, skip]}
        dataset: AWARD_INFO
        fields: {BODY_NAME: name, BODY_CODE: code, SCOPE: {const: b-late}}
"""

KINDS = st.one_of(
    st.sampled_from(["a", "b", "c", "skip", "zzz", "", " a ", "A"]),
    st.none(),
    st.lists(st.sampled_from(["a", "b"]), max_size=3),
    st.just({"nested": 1}),
    st.integers(0, 2),
    st.booleans(),
)


def everything(mapping: CompiledMapping, data: bytes) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for r in mapping.parse(RawInput(source="t", data=data)):
        if isinstance(r, NationalRecord):
            out.append(("record", r.dataset, dict(r.fields), r.locator))
        else:
            assert isinstance(r, RecordRejected)
            out.append(("reject", r.code, r.message_en, r.message_zh, r.locator))
    return out


@pytest.fixture(scope="module")
def dispatched(tmp_path_factory: pytest.TempPathFactory) -> CompiledMapping:
    mapping = compile_text(tmp_path_factory.mktemp("m"), DISPATCHED)
    assert mapping.dispatch is not None
    return mapping


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"kind": KINDS, "name": st.just("n"), "code": st.just(USCC)},
            optional={"flag": st.sampled_from(["1", "0"]), "extra": st.just("x")},
        ),
        min_size=1,
        max_size=6,
    )
)
def test_dispatch_agrees_with_rule_by_rule(
    dispatched: CompiledMapping, rows: list[dict[str, object]]
) -> None:
    data = "\n".join(json.dumps(r) for r in rows).encode()
    fast = everything(dispatched, data)
    dispatch, dispatched.dispatch = dispatched.dispatch, None
    try:
        assert everything(dispatched, data) == fast
    finally:
        dispatched.dispatch = dispatch


def test_dispatch_needs_one_shared_first_test(tmp_path: Path) -> None:
    mixed = DISPATCHED.replace("{path: kind, in: [b, skip]}", "{path: other, in: [b]}")
    assert compile_text(tmp_path, mixed).dispatch is None
    first_not_plain = DISPATCHED.replace(
        '{all: [{path: kind, in: [b, c]}, {path: flag, equals: "1"}]}',
        '{all: [{path: flag, equals: "1"}, {path: kind, in: [b, c]}]}',
    )
    mapping = compile_text(tmp_path, first_not_plain, name="n.yaml")
    assert mapping.dispatch is None


# --- one closure per field, against getter-then-normaliser ------------------------------

XML_FIELDS = """
    version: 1
    name: t
    timezone: "+08:00"
    input: {format: xml, records: /r/i, context: {h: /r/h}}
    records:
      - dataset: AWARD_INFO
        fields:
          BODY_NAME: {path: n, normalize: [halfwidth]}
          BODY_CODE: {path: "f[@k='code']/@v", normalize: [halfwidth, {check: party_id}]}
          SCOPE: {path: t, normalize: [trim, upper]}
          GOVERNMENT: {path: "$h/f[@k='gov']/@v", normalize: [upper]}
          REWARD_DATE: {path: "f[@k='day']/@v", normalize: [{date: "yyyy-MM-dd"}]}
          DOCUMENT_CODE: {path: m, normalize: [upper, join]}
"""
XML_DOCS = [
    f"<r><h><f k='gov' v='g'/></h><i><n>ＡＢ</n><f k='code' v='{USCC}'/><t>x</t></i></r>",
    f"<r><i><n>a</n><n>b</n><f k='code' v='{USCC}'/><f k='code' v='x'/></i></r>",
    "<r><i><n/><t> </t><f k='day' v='2026-02-30'/><m>a</m><m>b</m></i></r>",
    "<r><i><n>a<b>c</b></n><f k='code' v='bad'/><f k='day' v='2026-02-03'/></i></r>",
    "<r xmlns:q='urn:q'><i><q:n>ns</q:n><n>z</n><t>t</t><f k='day' v='x'/></i></r>",
]
JSON_FIELDS = """
    version: 1
    name: t
    timezone: "+08:00"
    input: {format: jsonl}
    records:
      - for_each: sub
        dataset: AWARD_INFO
        fields:
          BODY_NAME: {path: ../name, normalize: [upper]}
          BODY_CODE: {path: code, normalize: [halfwidth, {check: party_id}]}
          SCOPE: {path: n, normalize: [{decimal: {integer: true}}]}
          GOVERNMENT: {path: ../flag, normalize: [upper]}
          REWARD_DATE: {path: t, normalize: [{date: epoch_ms}]}
"""
JSON_VALUES = st.one_of(
    st.sampled_from(["x", " ", "", "1", "1.5", "１２", USCC, "1796166900000"]),
    st.none(),
    st.booleans(),
    st.integers(-5, 10**13),
    st.lists(st.sampled_from(["a", USCC, "2"]), max_size=3),
    st.just({"o": 1}),
)
CSV_FIELDS = """
    version: 1
    name: t
    timezone: "+08:00"
    input: {format: csv}
    records:
      - dataset: AWARD_INFO
        fields:
          BODY_NAME: {path: name, normalize: [upper]}
          BODY_CODE: {path: code, normalize: [halfwidth]}
          SCOPE: {path: missing, normalize: [upper]}
"""


def general_fused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, name: str
) -> CompiledMapping:
    with monkeypatch.context() as m:
        for cls in (XmlFormat, JsonFormat, ColumnsFormat):
            m.setattr(cls, "fused", Format.fused)
        return compile_text(tmp_path, text, name=name)


@pytest.mark.parametrize("doc", XML_DOCS)
def test_xml_fields_fused_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, doc: str
) -> None:
    fast = compile_text(tmp_path, XML_FIELDS)
    general = general_fused(monkeypatch, tmp_path, XML_FIELDS, "g.yaml")
    assert everything(fast, doc.encode()) == everything(general, doc.encode())


def test_csv_fields_fused_agree(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fast = compile_text(tmp_path, CSV_FIELDS)
    general = general_fused(monkeypatch, tmp_path, CSV_FIELDS, "g.yaml")
    data = f"name,code\nab, ９１\n,{USCC}\n".encode()
    got = everything(fast, data)
    assert got == everything(general, data)
    assert {r[1] for r in got} == {"E_MAP_COLUMN"}  # the missing column, always


@FAST
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "name": JSON_VALUES,
                "flag": JSON_VALUES,
                "sub": st.lists(
                    st.fixed_dictionaries(
                        {"code": JSON_VALUES, "n": JSON_VALUES, "t": JSON_VALUES}
                    ),
                    min_size=1,
                    max_size=2,
                ),
            }
        ),
        min_size=1,
        max_size=3,
    )
)
def test_json_fields_fused_agree(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, object]]
) -> None:
    tmp_path = tmp_path_factory.mktemp("j")
    fast = compile_text(tmp_path, JSON_FIELDS)
    with pytest.MonkeyPatch.context() as monkeypatch:
        general = general_fused(monkeypatch, tmp_path, JSON_FIELDS, "g.yaml")
    data = "\n".join(json.dumps(r) for r in rows).encode()
    assert everything(fast, data) == everything(general, data)


def test_records_from_flat_items_and_copies_agree(tmp_path: Path) -> None:
    """A flat item's texts come from the tags the reader read; a kept copy (group
    rules) reads its own: both give the same records."""
    mapping = compile_text(tmp_path, XML_FIELDS)
    doc = XML_DOCS[0].encode()
    records, _ = run(mapping, doc)
    assert records
    assert records[0].fields["BODY_NAME"] == "AB"
