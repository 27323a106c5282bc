"""Normalisers: small pure functions, known answers and refusals."""

from __future__ import annotations

import pytest

from adapters.mapping import normalizers as nz


def times(*patterns: str) -> tuple[nz.DatePattern, ...]:
    return tuple(nz.compile_date_pattern(p) for p in patterns)


WUXI = times("yyyy年MM月dd日 HH时mm分", "yyyy年MM月dd日 HH时mm分ss秒")


# --- text -----------------------------------------------------------------------


def test_trim_includes_ideographic_space() -> None:
    assert nz.trim("\u3000 江苏 \t\u3000") == "江苏"


def test_halfwidth_codes_and_numbers() -> None:
    assert nz.halfwidth("９１３２０２１３ＭＡ１Ｎ７Ｒ２Ｂ４５") == "91320213MA1N7R2B45"
    assert nz.halfwidth("ＮＴＺＣ２０２６－０４２１") == "NTZC2026-0421"
    assert nz.halfwidth("ABC") == "ABC"


# --- dates and times ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "patterns", "zone", "want"),
    [
        ("2026年11月03日 09时30分", WUXI, "+08:00", "20261103093000"),
        ("2026年11月10日 10时00分15秒", WUXI, "+08:00", "20261110100015"),
        ("２０２６年１１月０３日　09时30分", WUXI, "+08:00", "20261103093000"),
        ("2026/11/3 9:30", times("yyyy/M/d H:mm"), "+08:00", "20261103093000"),
        ("2026-11-03T10:00:00+08:00", times("iso8601"), "+08:00", "20261103100000"),
        ("2026-11-20T01:30:00Z", times("iso8601"), "+08:00", "20261120093000"),
        ("2026-11-20T01:30:00-05:00", times("iso8601"), "+08:00", "20261120143000"),
        ("2026-11-20T01:30:00", times("iso8601"), "UTC", "20261120093000"),
        (
            "2026-11-20 01:30:00.250",
            times("yyyy-MM-dd HH:mm:ss.SSS"),
            "UTC",
            "20261120093000",
        ),
        (
            "2026-11-20T01:30+0100",
            times("yyyy-MM-dd'T'HH:mmXXX"),
            "UTC",
            "20261120083000",
        ),
        # Epoch milliseconds whose Beijing date is a day later than the UTC date.
        ("1796166900000", times("epoch_ms"), "+08:00", "20261202071500"),
        ("1796166900", times("epoch_s"), "+08:00", "20261202071500"),
        ("202611230900", times("yyyyMMddHHmm"), "+08:00", "20261123090000"),
        (
            "2026-11-03 09:30",
            times("yyyy-MM-dd HH:mm"),
            "Asia/Shanghai",
            "20261103093000",
        ),
    ],
)
def test_datetimes_in_beijing_time(
    value: str, patterns: tuple[nz.DatePattern, ...], zone: str, want: str
) -> None:
    got = nz.national_time(value, patterns, nz.zone(zone), output="datetime")
    assert got == want


@pytest.mark.parametrize(
    ("value", "pattern", "want"),
    [
        ("2027年01月10日", "yyyy年MM月dd日", "20270110"),
        ("2026-12-05", "yyyy-MM-dd", "20261205"),
        ("2026-12-05", "iso8601", "20261205"),
        ("20261103", "yyyyMMdd", "20261103"),
        ("2026/1/5", "yyyy/M/d", "20260105"),
    ],
)
def test_dates(value: str, pattern: str, want: str) -> None:
    assert nz.national_time(value, times(pattern), nz.BEIJING, output="date") == want


def test_date_of_an_instant_is_the_beijing_date() -> None:
    got = nz.national_time(
        "2026-12-01T23:45:00Z", times("iso8601"), nz.BEIJING, output="date"
    )
    assert got == "20261202"


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("20260231", "yyyyMMdd"),
        ("2026年02月30日 09时30分", "yyyy年MM月dd日 HH时mm分"),
        ("2026年11月03日 24时00分", "yyyy年MM月dd日 HH时mm分"),
        ("2026年11月03日 09时60分", "yyyy年MM月dd日 HH时mm分"),
        ("2026/13/1 9:30", "yyyy/M/d H:mm"),
        ("2026-02-29T10:00:00+08:00", "iso8601"),
        ("1793841120", "epoch_ms"),  # seconds sent as milliseconds: January 1970
        ("17938411200000000", "epoch_ms"),
        ("12x4", "epoch_ms"),
        ("2026-11-03", "yyyy年MM月dd日"),
    ],
)
def test_impossible_or_foreign_dates_are_errors_never_coerced(
    value: str, pattern: str
) -> None:
    for output in ("date", "datetime"):
        with pytest.raises(nz.ValueProblem) as info:
            nz.national_time(
                value,
                times(pattern),
                nz.BEIJING,
                output=output,
            )
        assert info.value.code == "E_MAP_DATE"
        assert value[:10] in info.value.en


def test_a_date_without_time_needs_an_explicit_midnight() -> None:
    with pytest.raises(nz.ValueProblem, match="no time of day"):
        nz.national_time("20261103", times("yyyyMMdd"), nz.BEIJING, output="datetime")
    got = nz.national_time(
        "20261103",
        times("yyyyMMdd"),
        nz.BEIJING,
        output="datetime",
        date_only="midnight",
    )
    assert got == "20261103000000"


@pytest.mark.parametrize(
    "pattern",
    ["yyyy-MM", "yyyy-MM-dd HH:ss", "yyyy-MM-ddTHH", "yyyy-MM-dd 'T", "yyyyMMddyyyy"],
)
def test_bad_patterns_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(ValueError, match="date pattern"):
        nz.compile_date_pattern(pattern)


def test_zones() -> None:
    assert nz.zone("+08:00").utcoffset(None) == nz.BEIJING.utcoffset(None)
    assert nz.zone("-0500").utcoffset(None) is not None
    with pytest.raises(ValueError, match="unknown time zone"):
        nz.zone("Mars/Olympus")
    with pytest.raises(ValueError, match="out of range"):
        nz.zone("+15:00")


# --- money and numbers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "to", "want", "code"),
    [
        ("¥36,912,345.67", "元", None, "36912345.67", "0"),
        ("￥0.00", "元", None, "0", "0"),
        ("¥38,650,000.00", "元", None, "38650000", "0"),
        ("236.5", "万元", None, "236.5", "1"),
        ("91.3624", "万元", None, "91.3624", "1"),
        ("228.36万元", "元", None, "228.36", "1"),
        ("1280元", "万元", None, "1280", "0"),
        ("-1,280.00", "元", None, "-1280", "0"),
        ("−5", "元", None, "-5", "0"),
        ("RMB 1,000", "元", None, "1000", "0"),
        ("１２，３４５．５０", "元", None, "12345.5", "0"),
        ("12345", "分", "元", "123.45", "0"),
        ("3.5", "万元", "元", "35000", "0"),
        ("35000", "元", "万元", "3.5", "1"),
        ("-0.00", "元", None, "0", "0"),
    ],
)
def test_money(value: str, unit: str, to: str | None, want: str, code: str) -> None:
    assert nz.money(value, unit=unit, to=to) == want
    assert nz.money_unit_code(value, unit=unit, to=to) == code


def test_the_sign_is_never_dropped() -> None:
    assert nz.money("-1280", unit="万元") == "-1280"
    with pytest.raises(nz.ValueProblem) as info:
        nz.money("-1280", unit="万元", negative="reject")
    assert info.value.code == "E_MAP_NEGATIVE"
    assert "-1280" in info.value.en


@pytest.mark.parametrize(
    "value",
    [
        "1,28",
        "12,3456",
        "1.2.3",
        ".5",
        "5.",
        "12e3",
        "NaN",
        "--5",
        "¥",
        "1 2x",
        "Infinity",
    ],
)
def test_not_numbers(value: str) -> None:
    with pytest.raises(nz.ValueProblem) as info:
        nz.money(value)
    assert info.value.code == "E_MAP_NUMBER"


def test_fen_has_no_unit_code_unless_converted() -> None:
    with pytest.raises(nz.ValueProblem) as info:
        nz.money_unit_code("100", unit="分")
    assert info.value.code == "E_MAP_UNIT"


def test_decimal() -> None:
    assert nz.decimal_text("0.180") == "0.18"
    assert nz.decimal_text("2.56", scale=nz.parse_decimal("0.01")[0]) == "0.0256"
    assert nz.decimal_text("1,200") == "1200"
    with pytest.raises(nz.ValueProblem):
        nz.decimal_text("1.5", integer=True)
    with pytest.raises(nz.ValueProblem):
        nz.decimal_text("-2", negative="reject")


# --- booleans and identifiers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("是", "1"),
        ("否", "0"),
        ("Y", "1"),
        ("n", "0"),
        ("T", "1"),
        ("F", "0"),
        ("1", "1"),
        ("0", "0"),
        ("true", "1"),
        ("FALSE", "0"),
        ("Ｙ", "1"),
    ],
)
def test_booleans(value: str, want: str) -> None:
    assert nz.boolean(value, nz.TRUE_WORDS, nz.FALSE_WORDS, "1", "0") == want


def test_unknown_boolean() -> None:
    with pytest.raises(nz.ValueProblem) as info:
        nz.boolean("maybe", nz.TRUE_WORDS, nz.FALSE_WORDS, "1", "0")
    assert info.value.code == "E_MAP_BOOLEAN"


def test_check_names_the_expected_check_character() -> None:
    assert nz.check("91320213MA1N7R2B45", "uscc") == "91320213MA1N7R2B45"
    with pytest.raises(nz.ValueProblem) as info:
        nz.check("11320614MB0Q7T5U90", "uscc")
    assert info.value.code == "E_USCC_CHECK"
    assert "R" in info.value.en
    with pytest.raises(nz.ValueProblem):
        nz.check("B03-123206004683401237-20261105-000418-A", "unified_deal_code")
    assert nz.check("B03-123206004683401237-20261105-000418-*", "unified_deal_code")


def test_shown_escapes_control_characters() -> None:
    assert nz.shown("a\nb") == "'a\\nb'"
    assert nz.shown("x" * 100).endswith("...'")
