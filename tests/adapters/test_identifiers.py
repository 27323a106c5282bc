"""Known answers (DOMAIN.md §4) and properties of adapters.identifiers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters import identifiers as ids
from adapters.identifiers import (
    MOD37_ALPHABET,
    ORG_ALPHABET,
    USCC_ALPHABET,
    Check,
)

# --- helpers -------------------------------------------------------------------------


def _reason(result: Check) -> str | None:
    return None if result.ok else result.reason


def _replace(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


# --- USCC, GB 32100 (§4.2) -----------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        # Verified in DOMAIN.md §4.2.
        "91350000MA347WHE48",
        "91140100MA0GTCLY49",
        "123100007847653857",
        "91330000755918469E",
        # Samples: check character 0 (31 - 0 maps back to 0) and digit-only code.
        "91320612MA1Q2B7X80",
        "913202821422076805",
        # Samples: embedded organisation codes with check characters X and 0.
        "9132021325013487XB",
        "91321204MA1MJ6C210",
    ],
)
def test_uscc_valid(code: str) -> None:
    assert ids.check_uscc(code) == ids.OK
    assert ids.uscc_check_char(code[:17]) == code[17]


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        # DOMAIN.md §4.2: the Q&A "worked example" is invalid (its org part too).
        ("91310115MA1G4L1WXK", "E_USCC_ORG_CHECK", None),
        ("91350000MA347WHE49", "E_USCC_CHECK", "8"),
        # samples bad/nantong_bad_uscc.jsonl: GB 32100 requires R.
        ("11320614MB0Q7T5U90", "E_USCC_CHECK", "R"),
        ("91350000MA347WHE4", "E_USCC_LENGTH", None),
        ("91350000MA347WHE488", "E_USCC_LENGTH", None),
        ("91350000MA347WHI48", "E_USCC_CHARSET", None),  # I is not used
        ("91350000ma347whe48", "E_USCC_CHARSET", None),
        ("９１350000MA347WHE48", "E_USCC_CHARSET", None),  # full-width digits
    ],
)
def test_uscc_invalid(code: str, reason: str, expected: str | None) -> None:
    result = ids.check_uscc(code)
    assert not result.ok
    assert result.reason == reason
    assert result.expected == expected


def test_uscc_weights_are_powers_of_three() -> None:
    # DOMAIN.md §4.2: w_i = 3^(i-1) mod 31.
    assert tuple(pow(3, i, 31) for i in range(17)) == ids.USCC_WEIGHTS


_uscc_char = st.sampled_from(USCC_ALPHABET)


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    head = "".join(draw(st.lists(_uscc_char, min_size=8, max_size=8)))
    body = "".join(draw(st.lists(_uscc_char, min_size=8, max_size=8)))
    first17 = head + body + ids.org_code_check_char(body)
    return first17 + ids.uscc_check_char(first17)


@given(valid_usccs())
def test_uscc_built_codes_validate(code: str) -> None:
    assert ids.check_uscc(code).ok


@given(valid_usccs(), st.integers(0, 17), _uscc_char)
def test_uscc_any_single_substitution_fails(code: str, index: int, char: str) -> None:
    assume(code[index] != char)
    # 31 is prime and no weight is 0 mod 31: every substitution moves the sum.
    assert not ids.check_uscc(_replace(code, index, char)).ok


# --- organisation code, GB 11714 (§4.3) ----------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "MA347WHE4",  # from 91350000MA347WHE48
        "784765385",  # from 123100007847653857
        "25013487X",  # check 10 -> X
        "MA1MJ6C21",
        "10000004-0",  # check 11 -> 0, printed with a hyphen
        "10000018-X",
    ],
)
def test_org_code_valid(code: str) -> None:
    assert ids.check_org_code(code).ok


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        ("25013487Y", "E_ORG_CHARSET", None),
        ("250134871", "E_ORG_CHECK", "X"),
        ("100000041", "E_ORG_CHECK", "0"),
        ("MA347WHE", "E_ORG_LENGTH", None),
        ("MA347WHE-4X", "E_ORG_LENGTH", None),
        ("ma347whe4", "E_ORG_CHARSET", None),
    ],
)
def test_org_code_invalid(code: str, reason: str, expected: str | None) -> None:
    result = ids.check_org_code(code)
    assert (result.reason, result.expected) == (reason, expected)


@given(st.text(alphabet=ORG_ALPHABET, min_size=8, max_size=8))
def test_org_code_built_codes_validate(body: str) -> None:
    check = ids.org_code_check_char(body)
    assert ids.check_org_code(body + check).ok
    assert ids.check_org_code(f"{body}-{check}").ok


@given(
    st.text(alphabet=ORG_ALPHABET, min_size=8, max_size=8),
    st.integers(0, 7),
    st.sampled_from(ORG_ALPHABET),
)
def test_org_code_substitution_fails(body: str, index: int, char: str) -> None:
    old, new = ORG_ALPHABET.index(body[index]), ORG_ALPHABET.index(char)
    # MOD 11 cannot see a change of 11, 22 or 33 in one character's value.
    assume((new - old) % 11 != 0)
    code = body + ids.org_code_check_char(body)
    assert not ids.check_org_code(_replace(code, index, char)).ok


@given(
    st.text(alphabet=ORG_ALPHABET, min_size=8, max_size=8),
    st.sampled_from("0123456789X"),
)
def test_org_code_wrong_check_char_fails(body: str, check: str) -> None:
    assume(check != ids.org_code_check_char(body))
    assert ids.check_org_code(body + check).reason == "E_ORG_CHECK"


# --- citizen ID, GB 11643 (§4.4) -----------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "11010519491231002X",  # the GB 11643 example, check character X
        "440524188001010014",  # the other GB 11643 example
    ],
)
def test_citizen_id_valid(code: str) -> None:
    assert ids.check_citizen_id(code).ok


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("110105194912310021", "E_CITIZEN_ID_CHECK"),
        ("11010519491231002x", "E_CITIZEN_ID_CHARSET"),  # lower-case x
        ("1101051949123100", "E_CITIZEN_ID_LENGTH"),
        ("11010519490230002X", "E_CITIZEN_ID_BIRTH_DATE"),  # 30 February
        ("99010519491231002X", "E_CITIZEN_ID_REGION"),  # no province 99
        ("320100A9491231002X", "E_CITIZEN_ID_CHARSET"),
    ],
)
def test_citizen_id_invalid(code: str, reason: str) -> None:
    assert _reason(ids.check_citizen_id(code)) == reason


def test_citizen_id_reports_expected_check_char() -> None:
    assert ids.check_citizen_id("110105194912310021").expected == "X"


@st.composite
def valid_citizen_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["110105", "320102", "320611", "440524", "650000"]))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31)))
    sequence = draw(st.integers(0, 999))
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + ids.citizen_id_check_char(first17)


@given(valid_citizen_ids())
def test_citizen_id_built_ids_validate(code: str) -> None:
    # 320611 is abolished: cards keep the region of issue, so it still counts.
    assert ids.check_citizen_id(code).ok


@given(valid_citizen_ids(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_citizen_id_single_substitution_fails(code: str, index: int, char: str) -> None:
    assume(code[index] != char)
    assert not ids.check_citizen_id(_replace(code, index, char)).ok


# --- party IDs whose type is unknown --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91350000MA347WHE48", None),
        ("11010519491231002X", None),
        ("MA347WHE4", None),
        ("MA347WHE-4", None),
        ("E12345678", "E_ORG_CHECK"),
        ("P1234567", None),  # passport-like: not checked
        ("110105491231002", None),  # 15-digit first-generation ID: not checked
        ("11320614MB0Q7T5U90", "E_USCC_CHECK"),
        ("110105194912310021", "E_CITIZEN_ID_CHECK"),  # digits, province, date
        ("913202821422076806", "E_USCC_CHECK"),  # digits, but no such province
    ],
)
def test_party_id(code: str, reason: str | None) -> None:
    assert _reason(ids.check_party_id(code)) == reason


# --- region codes, GB/T 2260 (§4.5) --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("320000", "江苏省"),
        ("320200", "无锡市"),
        ("321300", "宿迁市"),
        ("320213", "梁溪区"),
        ("320613", "崇川区"),
        ("320685", "海安市"),
        ("321204", "姜堰区"),
        ("110000", "北京市"),
        ("820000", "澳门特别行政区"),
    ],
)
def test_region_known(code: str, name: str) -> None:
    assert ids.check_region_code(code).ok
    assert ids.is_known_region(code)
    assert ids.region_name(code) == name


def test_region_table_has_all_of_jiangsu() -> None:
    # DOMAIN.md §4.5: the 13 prefecture-level cities of Jiangsu.
    cities = [f"32{n:02d}00" for n in range(1, 14)]
    assert all(ids.is_known_region(c) for c in cities)
    assert not ids.is_known_region("321400")
    provinces = [
        "110000", "120000", "130000", "140000", "150000", "210000", "220000",
        "230000", "310000", "320000", "330000", "340000", "350000", "360000",
        "370000", "410000", "420000", "430000", "440000", "450000", "460000",
        "500000", "510000", "520000", "530000", "540000", "610000", "620000",
        "630000", "640000", "650000", "710000", "810000", "820000",
    ]  # fmt: skip
    assert all(ids.is_known_region(p) for p in provinces)
    assert ids.region_table_version()


@pytest.mark.parametrize(
    ("old", "new"),
    [("320982", "320904"), ("321088", "321012"), ("320829", "320813")],
)
def test_region_retired_codes_from_domain(old: str, new: str) -> None:
    # DOMAIN.md §4.5: 大丰市 -> 大丰区, 江都 -> 江都区, 洪泽县 -> 洪泽区.
    assert ids.check_region_code(old).reason == "E_REGION_RETIRED"
    assert ids.check_region_code(old, allow_retired=True).ok
    assert ids.is_known_region(old, include_retired=True)
    assert not ids.is_known_region(old)
    assert ids.check_region_code(new).ok


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("32000", "E_REGION_FORMAT"),
        ("32000A", "E_REGION_FORMAT"),
        ("３２００００", "E_REGION_FORMAT"),  # full-width digits
        ("990000", "E_REGION_UNKNOWN"),  # no province 99
        ("327100", "E_REGION_STRUCTURE"),  # prefecture 71-89 unassigned
        ("329500", "E_REGION_STRUCTURE"),
        ("320001", "E_REGION_STRUCTURE"),  # county under the province aggregate
        ("320101", "E_REGION_UNKNOWN"),  # 市辖区 aggregate is not in the table
        ("320299", "E_REGION_UNKNOWN"),
        ("110105", None),  # Beijing is not covered: structure only
        ("469001", None),  # 90 = province-administered counties (Hainan)
    ],
)
def test_region_invalid_or_unchecked(code: str, reason: str | None) -> None:
    assert _reason(ids.check_region_code(code)) == reason


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("320303", None),
        ("320303001", None),  # GB/T 10114 township under 云龙区
        ("320611001", "E_REGION_RETIRED"),
        ("3203030", "E_AREA_FORMAT"),
        ("32030300A", "E_AREA_FORMAT"),
    ],
)
def test_area_code(code: str, reason: str | None) -> None:
    assert _reason(ids.check_area_code(code)) == reason


# --- project / tender project / section codes (§4.1) ----------------------------------


@pytest.mark.parametrize(
    ("project", "tender", "section"),
    [
        ("e3100000151008459", "e3100000151008459002", "e3100000151008459002001"),
        ("E3202002611030017", "E3202002611030017001", "E3202002611030017001002"),
    ],
)
def test_transaction_codes_valid(project: str, tender: str, section: str) -> None:
    assert ids.check_project_code(project).ok
    assert ids.check_tender_project_code(tender, project).ok
    assert ids.check_section_code(section, tender).ok
    assert ids.extends_parent(section, tender)
    assert ids.extends_parent(tender, project)


@pytest.mark.parametrize(
    ("check", "code", "parent", "reason"),
    [
        (ids.check_project_code, "E320200261103001", None, "E_PROJECT_CODE_LENGTH"),
        (ids.check_project_code, "13202002611030017", None, "E_PROJECT_CODE_FORMAT"),
        (ids.check_project_code, "E32020026110300-7", None, "E_PROJECT_CODE_FORMAT"),
        (ids.check_project_code, "E9902002611030017", None, "E_PROJECT_CODE_REGION"),
        (
            ids.check_tender_project_code,
            "E32020026110300170A1",
            None,
            "E_TENDER_PROJECT_CODE_FORMAT",
        ),
        (
            ids.check_tender_project_code,
            "E3202002611030018001",
            "E3202002611030017",
            "E_TENDER_PROJECT_CODE_PARENT",
        ),
        # samples bad/wuxi_section_not_extending.xml
        (
            ids.check_section_code,
            "E3202002611030017002001",
            "E3202002611030017001",
            "E_SECTION_CODE_PARENT",
        ),
        (ids.check_section_code, "E3202002611030017001", None, "E_SECTION_CODE_LENGTH"),
        (
            ids.check_section_code,
            "E32020026110300170010A1",
            None,
            "E_SECTION_CODE_FORMAT",
        ),
    ],
)
def test_transaction_codes_invalid(
    check: Callable[..., Check], code: str, parent: str | None, reason: str
) -> None:
    result = check(code) if parent is None else check(code, parent)
    assert _reason(result) == reason


def test_project_code_keeps_abolished_region() -> None:
    # Codes cannot be modified after issue, so 320611 (港闸区, abolished 2020) stays.
    assert ids.check_project_code("E3206111903150001").ok


_code_char = st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@given(
    st.sampled_from(["320213", "320600", "110105"]),
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=10, max_size=10),
    st.integers(0, 999),
    st.integers(0, 999),
)
def test_transaction_codes_chain(region: str, tail: str, t: int, s: int) -> None:
    project = f"E{region}{tail}"
    tender = f"{project}{t:03d}"
    section = f"{tender}{s:03d}"
    assert ids.check_section_code(section, tender).ok
    assert ids.check_tender_project_code(tender, project).ok
    other = f"{project}{(t + 1) % 1000:03d}"
    assert ids.check_section_code(section, other).reason == "E_SECTION_CODE_PARENT"


# --- 统一交易标识码, ISO 7064 MOD 37-2 (§4.1, §4.6) ----------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "A02-123100007847653857-20161012-000015-Q",  # the real Shanghai value
        "B03-123206004683401237-20261105-000418-*",  # samples: check value 36
        "C01-12320300467305617E-20261102-000031-U",
        "D02-12321200467559027D-20261030-007001-8",
    ],
)
def test_unified_deal_code_valid(code: str) -> None:
    assert ids.check_unified_deal_code(code).ok


def test_mod37_2_real_value() -> None:
    assert ids.mod37_2_check_char("A02123100007847653857201610120000" + "15") == "Q"


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        ("A02-123100007847653857-20161012-000015-R", "E_UDC_CHECK", "Q"),
        ("B03-123206004683401237-20261105-000418-0", "E_UDC_CHECK", "*"),
        ("A02-123100007847653857-20161012-000015", "E_UDC_LENGTH", None),
        ("A02-123100007847653857-2016101-2000015-Q", "E_UDC_FORMAT", None),
        ("A02_123100007847653857-20161012-000015-Q", "E_UDC_FORMAT", None),
        ("a02-123100007847653857-20161012-000015-Q", "E_UDC_FORMAT", None),
        ("A02-123100007847653857-20161012-00001X-Q", "E_UDC_FORMAT", None),
        ("A02-123100007847653858-20161012-000015-Q", "E_UDC_USCC", None),
        ("A02-123100007847653857-20160231-000015-Q", "E_UDC_DATE", None),
    ],
)
def test_unified_deal_code_invalid(
    code: str, reason: str, expected: str | None
) -> None:
    result = ids.check_unified_deal_code(code)
    assert (result.reason, result.expected) == (reason, expected)


@st.composite
def valid_deal_codes(draw: st.DrawFn) -> str:
    kind = "".join(draw(st.lists(_code_char, min_size=3, max_size=3)))
    uscc = draw(valid_usccs())
    day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    sequence = draw(st.integers(0, 999_999))
    data = f"{kind}{uscc}{day:%Y%m%d}{sequence:06d}"
    return f"{kind}-{uscc}-{day:%Y%m%d}-{sequence:06d}-{ids.mod37_2_check_char(data)}"


@given(valid_deal_codes())
def test_unified_deal_code_built_codes_validate(code: str) -> None:
    assert len(code) == 40
    assert ids.check_unified_deal_code(code).ok


@given(valid_deal_codes(), st.integers(0, 39), st.sampled_from(MOD37_ALPHABET))
def test_unified_deal_code_single_substitution_fails(
    code: str, index: int, char: str
) -> None:
    assume(code[index] != char)
    assert not ids.check_unified_deal_code(_replace(code, index, char)).ok


@given(
    st.text(alphabet=MOD37_ALPHABET[:36], min_size=1, max_size=40),
    st.data(),
)
def test_mod37_2_detects_single_substitution(data: str, draw: st.DataObject) -> None:
    index = draw.draw(st.integers(0, len(data) - 1))
    char = draw.draw(st.sampled_from(MOD37_ALPHABET[:36]))
    assume(data[index] != char)
    # 37 is prime and every weight 2^i is non-zero mod 37.
    assert ids.mod37_2_check_char(
        _replace(data, index, char)
    ) != ids.mod37_2_check_char(data)


# --- dates and numbers (§2.2) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("20261103", None),
        ("20240229", None),
        ("20260231", "E_DATE_INVALID"),  # samples bad/xuzhou_impossible_date.csv
        ("20230229", "E_DATE_INVALID"),
        ("00000101", "E_DATE_INVALID"),
        ("20261301", "E_DATE_INVALID"),
        ("2026113", "E_DATE_FORMAT"),
        ("2026-11-03", "E_DATE_FORMAT"),
        ("２０２６１１０３", "E_DATE_FORMAT"),
    ],
)
def test_date(value: str, reason: str | None) -> None:
    assert _reason(ids.check_date(value)) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("20261103093000", None),
        ("20261231235959", None),
        ("20261103240000", "E_DATETIME_INVALID"),
        ("20261103236000", "E_DATETIME_INVALID"),
        ("20261103235960", "E_DATETIME_INVALID"),  # no leap seconds
        ("20260231093000", "E_DATETIME_INVALID"),
        ("202611030930", "E_DATETIME_FORMAT"),
        ("2026-11-03 09:30:00", "E_DATETIME_FORMAT"),
    ],
)
def test_datetime(value: str, reason: str | None) -> None:
    assert _reason(ids.check_datetime(value)) == reason


@given(st.datetimes())
def test_datetime_accepts_every_real_instant(moment: datetime) -> None:
    text = f"{moment:%Y%m%d%H%M%S}"
    assume(len(text) == 14)  # strftime does not pad years before 1000
    assert ids.check_datetime(text).ok
    assert ids.check_date(text[:8]).ok


@pytest.mark.parametrize(
    ("value", "amount"),
    [
        ("36912345.67", Decimal("36912345.67")),
        ("0", Decimal(0)),
        ("91.3624", Decimal("91.3624")),
        ("-1280", Decimal(-1280)),  # the sign is kept, not dropped
        ("+5", Decimal(5)),
        ("99999999999999.999999", Decimal("99999999999999.999999")),
        ("000000000000001", Decimal(1)),  # leading zeros are not digits
    ],
)
def test_money_valid(value: str, amount: Decimal) -> None:
    result = ids.check_money(value)
    assert result.ok
    assert result.value == amount


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("100000000000000", "E_NUMBER_INTEGER_DIGITS"),
        ("1.1234567", "E_NUMBER_FRACTION_DIGITS"),
        ("1.5000000", "E_NUMBER_FRACTION_DIGITS"),
        ("1e5", "E_NUMBER_FORMAT"),
        ("1,000", "E_NUMBER_FORMAT"),
        ("¥1", "E_NUMBER_FORMAT"),
        (" 1", "E_NUMBER_FORMAT"),
        (".5", "E_NUMBER_FORMAT"),
        ("5.", "E_NUMBER_FORMAT"),
        ("", "E_NUMBER_FORMAT"),
        ("NaN", "E_NUMBER_FORMAT"),
        ("１", "E_NUMBER_FORMAT"),
    ],
)
def test_money_invalid(value: str, reason: str) -> None:
    result = ids.check_money(value)
    assert (result.ok, result.reason, result.value) == (False, reason, None)


def test_decimal_without_fraction_digits() -> None:
    assert ids.check_decimal("12", 2).ok
    assert ids.check_decimal("123", 2).reason == "E_NUMBER_INTEGER_DIGITS"
    assert ids.check_decimal("1.0", 2).reason == "E_NUMBER_FRACTION_DIGITS"


@given(
    st.decimals(
        min_value=Decimal("-99999999999999.999999"),
        max_value=Decimal("99999999999999.999999"),
        places=6,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_money_round_trip(amount: Decimal) -> None:
    result = ids.check_money(f"{amount:f}")
    assert result.ok
    assert result.value == amount


# --- robustness -----------------------------------------------------------------------

_CHECKS = [
    ids.check_uscc,
    ids.check_org_code,
    ids.check_citizen_id,
    ids.check_party_id,
    ids.check_region_code,
    ids.check_area_code,
    ids.check_project_code,
    ids.check_tender_project_code,
    ids.check_section_code,
    ids.check_unified_deal_code,
    ids.check_date,
    ids.check_datetime,
]


@given(st.sampled_from(_CHECKS), st.text(max_size=45))
def test_checks_never_raise(check: Callable[[str], Check], text: str) -> None:
    result = check(text)
    assert isinstance(result, Check)
    assert result.ok == (result.reason is None)
    if not result.ok:
        assert result.reason in ids.MESSAGES


@given(st.text(max_size=30))
def test_money_never_raises(text: str) -> None:
    result = ids.check_money(text)
    assert result.ok == (result.reason is None) == (result.value is not None)


def test_builders_reject_foreign_alphabets() -> None:
    for build, bad in [
        (ids.uscc_check_char, "9135000OMA347WHE4"),
        (ids.org_code_check_char, "MA347WH"),
        (ids.citizen_id_check_char, "1101051949123100X"),
        (ids.mod37_2_check_char, "a02"),
    ]:
        with pytest.raises(ValueError, match="need"):
            build(bad)


# --- the fast checks against the straightforward ones ------------------------------
#
# adapters.identifiers is written for speed (patterns, translate tables, memos).
# Below, verbatim, is the plain implementation it replaced; the properties hold
# every check (and check-character builder) to the same answers, reasons and
# expected characters on arbitrary text and on near-misses of valid codes.


def _ref_uscc_check_char(first17: str) -> str:
    if len(first17) != 17 or any(c not in USCC_ALPHABET for c in first17):
        raise ValueError("need 17 characters of the USCC alphabet")
    total = sum(
        USCC_ALPHABET.index(c) * w
        for c, w in zip(first17, ids.USCC_WEIGHTS, strict=True)
    )
    return USCC_ALPHABET[(31 - total % 31) % 31]


def _ref_check_uscc(code: str) -> Check:
    if len(code) != 18:
        return Check(ok=False, reason="E_USCC_LENGTH")
    if any(c not in USCC_ALPHABET for c in code):
        return Check(ok=False, reason="E_USCC_CHARSET")
    if not _ref_check_org_code(code[8:17]).ok:
        return Check(ok=False, reason="E_USCC_ORG_CHECK")
    expected = _ref_uscc_check_char(code[:17])
    if code[17] != expected:
        return Check(ok=False, reason="E_USCC_CHECK", expected=expected)
    return Check(ok=True)


def _ref_org_code_check_char(body8: str) -> str:
    if len(body8) != 8 or any(c not in ORG_ALPHABET for c in body8):
        raise ValueError("need 8 characters of 0-9 A-Z")
    remainder = (
        11
        - sum(
            ORG_ALPHABET.index(c) * w
            for c, w in zip(body8, ids.ORG_WEIGHTS, strict=True)
        )
        % 11
    )
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def _ref_check_org_code(code: str) -> Check:
    if len(code) == 10 and code[8] == "-":
        code = code[:8] + code[9]
    if len(code) != 9:
        return Check(ok=False, reason="E_ORG_LENGTH")
    if any(c not in ORG_ALPHABET for c in code[:8]) or code[8] not in "0123456789X":
        return Check(ok=False, reason="E_ORG_CHARSET")
    expected = _ref_org_code_check_char(code[:8])
    if code[8] != expected:
        return Check(ok=False, reason="E_ORG_CHECK", expected=expected)
    return Check(ok=True)


def _ref_all_digits(text: str) -> bool:
    return bool(text) and all(c in "0123456789" for c in text)


def _ref_citizen_id_check_char(first17: str) -> str:
    if len(first17) != 17 or not _ref_all_digits(first17):
        raise ValueError("need 17 digits")
    total = sum(
        int(c) * w for c, w in zip(first17, ids.CITIZEN_ID_WEIGHTS, strict=True)
    )
    return ids.CITIZEN_ID_CHECK_CHARS[total % 11]


def _ref_real_date(yyyymmdd: str) -> bool:
    try:
        date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def _ref_check_citizen_id(code: str) -> Check:
    if len(code) != 18:
        return Check(ok=False, reason="E_CITIZEN_ID_LENGTH")
    if not _ref_all_digits(code[:17]) or code[17] not in "0123456789X":
        return Check(ok=False, reason="E_CITIZEN_ID_CHARSET")
    if _ref_region_structure(code[:6]) is not None:
        return Check(ok=False, reason="E_CITIZEN_ID_REGION")
    if not _ref_real_date(code[6:14]):
        return Check(ok=False, reason="E_CITIZEN_ID_BIRTH_DATE")
    expected = _ref_citizen_id_check_char(code[:17])
    if code[17] != expected:
        return Check(ok=False, reason="E_CITIZEN_ID_CHECK", expected=expected)
    return Check(ok=True)


def _ref_check_party_id(code: str) -> Check:
    if len(code) == 18:
        as_uscc = _ref_check_uscc(code)
        if as_uscc.ok:
            return Check(ok=True)
        as_id = _ref_check_citizen_id(code)
        if as_id.ok:
            return Check(ok=True)
        looks_like_id = as_id.reason == "E_CITIZEN_ID_CHECK"
        return as_id if looks_like_id else as_uscc
    if len(code) == 9 or (len(code) == 10 and code[8] == "-"):
        return _ref_check_org_code(code)
    return Check(ok=True)


def _ref_region_structure(code: str) -> str | None:
    if len(code) != 6 or not _ref_all_digits(code):
        return "E_REGION_FORMAT"
    if code[:2] + "0000" not in ids._region_table().codes:
        return "E_REGION_UNKNOWN"
    prefecture = int(code[2:4])
    if 71 <= prefecture <= 89 or prefecture >= 91:
        return "E_REGION_STRUCTURE"
    if prefecture == 0 and code[4:] != "00":
        return "E_REGION_STRUCTURE"
    return None


def _ref_check_region_code(code: str, *, allow_retired: bool = False) -> Check:
    reason = _ref_region_structure(code)
    if reason is not None:
        return Check(ok=False, reason=reason)
    table = ids._region_table()
    if code[:2] not in table.coverage:
        return Check(ok=True)
    row = table.codes.get(code)
    if row is None:
        return Check(ok=False, reason="E_REGION_UNKNOWN")
    if row.retired is not None and not allow_retired:
        return Check(ok=False, reason="E_REGION_RETIRED")
    return Check(ok=True)


def _ref_check_area_code(code: str) -> Check:
    if len(code) == 9 and _ref_all_digits(code):
        return _ref_check_region_code(code[:6])
    if len(code) == 6:
        return _ref_check_region_code(code)
    return Check(ok=False, reason="E_AREA_FORMAT")


_REF_PROJECT_CODE = re.compile(r"[A-Za-z][0-9]{6}[0-9A-Za-z]{10}")
_REF_SEQUENCE = re.compile(r"[0-9]{3}")


def _ref_extends_parent(child: str, parent: str) -> bool:
    return len(child) > len(parent) and child.startswith(parent)


def _ref_check_project_code(code: str) -> Check:
    if len(code) != 17:
        return Check(ok=False, reason="E_PROJECT_CODE_LENGTH")
    if _REF_PROJECT_CODE.fullmatch(code) is None:
        return Check(ok=False, reason="E_PROJECT_CODE_FORMAT")
    if not _ref_check_region_code(code[1:7], allow_retired=True).ok:
        return Check(ok=False, reason="E_PROJECT_CODE_REGION")
    return Check(ok=True)


def _ref_check_tender_project_code(code: str, project_code: str | None = None) -> Check:
    if len(code) != 20:
        return Check(ok=False, reason="E_TENDER_PROJECT_CODE_LENGTH")
    if (
        _REF_SEQUENCE.fullmatch(code[17:]) is None
        or not _ref_check_project_code(code[:17]).ok
    ):
        return Check(ok=False, reason="E_TENDER_PROJECT_CODE_FORMAT")
    if project_code is not None and not _ref_extends_parent(code, project_code):
        return Check(ok=False, reason="E_TENDER_PROJECT_CODE_PARENT")
    return Check(ok=True)


def _ref_check_section_code(code: str, tender_project_code: str | None = None) -> Check:
    if len(code) != 23:
        return Check(ok=False, reason="E_SECTION_CODE_LENGTH")
    if (
        _REF_SEQUENCE.fullmatch(code[20:]) is None
        or not _ref_check_tender_project_code(code[:20]).ok
    ):
        return Check(ok=False, reason="E_SECTION_CODE_FORMAT")
    if tender_project_code is not None and not _ref_extends_parent(
        code, tender_project_code
    ):
        return Check(ok=False, reason="E_SECTION_CODE_PARENT")
    return Check(ok=True)


_REF_DEAL_TYPE = re.compile(r"[0-9A-Z]{3}")


def _ref_mod37_2_check_char(data: str) -> str:
    if not data or any(c not in MOD37_ALPHABET[:36] for c in data):
        raise ValueError("need characters of 0-9 A-Z")
    p = 0
    for c in data:
        p = ((p + MOD37_ALPHABET.index(c)) * 2) % 37
    return MOD37_ALPHABET[(38 - p) % 37]


def _ref_check_unified_deal_code(code: str) -> Check:
    if len(code) != 40:
        return Check(ok=False, reason="E_UDC_LENGTH")
    parts = code.split("-")
    if [len(p) for p in parts] != [3, 18, 8, 6, 1]:
        return Check(ok=False, reason="E_UDC_FORMAT")
    deal_type, uscc, day, sequence, check = parts
    if _REF_DEAL_TYPE.fullmatch(deal_type) is None or not _ref_all_digits(sequence):
        return Check(ok=False, reason="E_UDC_FORMAT")
    if not _ref_check_uscc(uscc).ok:
        return Check(ok=False, reason="E_UDC_USCC")
    if not _ref_all_digits(day) or not _ref_real_date(day):
        return Check(ok=False, reason="E_UDC_DATE")
    expected = _ref_mod37_2_check_char(deal_type + uscc + day + sequence)
    if check != expected:
        return Check(ok=False, reason="E_UDC_CHECK", expected=expected)
    return Check(ok=True)


def _ref_check_date(value: str) -> Check:
    if len(value) != 8 or not _ref_all_digits(value):
        return Check(ok=False, reason="E_DATE_FORMAT")
    if _ref_real_date(value):
        return Check(ok=True)
    return Check(ok=False, reason="E_DATE_INVALID")


def _ref_check_datetime(value: str) -> Check:
    if len(value) != 14 or not _ref_all_digits(value):
        return Check(ok=False, reason="E_DATETIME_FORMAT")
    if not _ref_real_date(value[:8]):
        return Check(ok=False, reason="E_DATETIME_INVALID")
    try:
        time(int(value[8:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return Check(ok=False, reason="E_DATETIME_INVALID")
    return Check(ok=True)


# Format name (as in the catalogue) -> (fast check, reference check).
REFERENCE_CHECKS: dict[str, tuple[Callable[[str], Check], Callable[[str], Check]]] = {
    "date": (ids.check_date, _ref_check_date),
    "datetime": (ids.check_datetime, _ref_check_datetime),
    "uscc": (ids.check_uscc, _ref_check_uscc),
    "org_code": (ids.check_org_code, _ref_check_org_code),
    "citizen_id": (ids.check_citizen_id, _ref_check_citizen_id),
    "party_id": (ids.check_party_id, _ref_check_party_id),
    "region_code": (ids.check_region_code, _ref_check_region_code),
    "area_code": (ids.check_area_code, _ref_check_area_code),
    "project_code": (ids.check_project_code, _ref_check_project_code),
    "tender_project_code": (
        ids.check_tender_project_code,
        _ref_check_tender_project_code,
    ),
    "section_code": (ids.check_section_code, _ref_check_section_code),
    "unified_deal_code": (
        ids.check_unified_deal_code,
        _ref_check_unified_deal_code,
    ),
}
_BUILDERS = [
    (ids.uscc_check_char, _ref_uscc_check_char, USCC_ALPHABET, 17),
    (ids.org_code_check_char, _ref_org_code_check_char, ORG_ALPHABET, 8),
    (ids.citizen_id_check_char, _ref_citizen_id_check_char, "0123456789", 17),
    (ids.mod37_2_check_char, _ref_mod37_2_check_char, MOD37_ALPHABET[:36], None),
]


def _same(fast: Check, reference: Check) -> None:
    assert (fast.ok, fast.reason, fast.expected) == (
        reference.ok,
        reference.reason,
        reference.expected,
    )


# Characters that matter to some check, plus some that matter to none.
_NEAR = st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz-*; ²٣\u3000\n。I")
# Every 7th code of the table (current and abolished), some outside its coverage,
# and some that break the structure.
_REGIONS = [*sorted(ids._region_table().codes)[::7], "110105", "650000", "441900"]
_REGIONS += ["990000", "327100", "320001", "000000"]


@st.composite
def _project_codes(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(_REGIONS))
    tail = draw(
        st.text("0123456789ABCDEFGHJKLMNPQRTUWXYabcz", min_size=10, max_size=10)
    )
    return draw(st.sampled_from("EeAZ")) + region + tail


def _days() -> st.SearchStrategy[str]:
    return st.dates().map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}")


def _moments() -> st.SearchStrategy[str]:
    return st.datetimes().map(
        lambda m: (
            f"{m.year:04d}{m.month:02d}{m.day:02d}"
            f"{m.hour:02d}{m.minute:02d}{m.second:02d}"
        )
    )


def _org_codes() -> st.SearchStrategy[str]:
    body = st.text(ORG_ALPHABET, min_size=8, max_size=8)
    return body.map(lambda b: b + ids.org_code_check_char(b))


_DIGITS = "0123456789X"
# Format -> (valid values, the characters its edits mostly use).
_KINDS: dict[str, tuple[st.SearchStrategy[str], str]] = {
    "date": (_days(), _DIGITS),
    "datetime": (_moments(), _DIGITS),
    "uscc": (valid_usccs(), USCC_ALPHABET + "IOSVZ"),
    "org_code": (_org_codes(), ORG_ALPHABET + "-"),
    "citizen_id": (valid_citizen_ids(), _DIGITS),
    "party_id": (
        st.one_of(valid_usccs(), valid_citizen_ids(), _org_codes()),
        USCC_ALPHABET + "-",
    ),
    "region_code": (st.sampled_from(_REGIONS), _DIGITS),
    "area_code": (
        st.one_of(
            st.sampled_from(_REGIONS),
            st.sampled_from(_REGIONS).map(lambda r: r + "001"),
        ),
        _DIGITS,
    ),
    "project_code": (_project_codes(), _DIGITS + "Aa"),
    "tender_project_code": (_project_codes().map(lambda c: c + "001"), _DIGITS + "Aa"),
    "section_code": (_project_codes().map(lambda c: c + "001002"), _DIGITS + "Aa"),
    "unified_deal_code": (valid_deal_codes(), MOD37_ALPHABET[:36] + "-"),
}


@st.composite
def near_misses(draw: st.DrawFn, kind: str) -> str:
    """A valid value of ``kind`` with up to three edits (replace, drop, insert, swap)."""
    valid, alphabet = _KINDS[kind]
    code = draw(valid)
    chars = st.one_of(st.sampled_from(alphabet), _NEAR)
    for _ in range(draw(st.integers(0, 3))):
        if not code:
            break
        i = draw(st.integers(0, len(code) - 1))
        edit = draw(st.sampled_from(["replace", "replace", "drop", "insert", "swap"]))
        if edit == "replace":
            code = _replace(code, i, draw(chars))
        elif edit == "drop":
            code = code[:i] + code[i + 1 :]
        elif edit == "insert":
            code = code[:i] + draw(chars) + code[i:]
        elif i + 1 < len(code):
            code = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
    return code


def _any_text(kind: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=45), st.text(_NEAR, max_size=45), near_misses(kind)
    )


@pytest.mark.parametrize("name", sorted(REFERENCE_CHECKS))
@settings(max_examples=300)
@given(data=st.data())
def test_fast_checks_agree_with_reference(name: str, data: st.DataObject) -> None:
    fast, reference = REFERENCE_CHECKS[name]
    text = data.draw(_any_text(name))
    _same(fast(text), reference(text))
    # Twice: the second answer may come from a memo.
    _same(fast(text), reference(text))


@given(
    st.one_of(
        _any_text("tender_project_code"),
        _any_text("section_code"),
        _any_text("region_code"),
    ),
    st.sampled_from([None, "E3202002611030017", "E3202002611030017001"]),
)
def test_fast_parent_checks_agree_with_reference(text: str, parent: str | None) -> None:
    _same(
        ids.check_tender_project_code(text, parent),
        _ref_check_tender_project_code(text, parent),
    )
    _same(ids.check_section_code(text, parent), _ref_check_section_code(text, parent))
    for allow in (False, True):
        _same(
            ids.check_region_code(text, allow_retired=allow),
            _ref_check_region_code(text, allow_retired=allow),
        )


def _outcome(build: Callable[[str], str], text: str) -> str:
    try:
        return build(text)
    except ValueError as exc:
        return f"ValueError: {exc}"


@given(st.sampled_from(range(len(_BUILDERS))), st.data())
def test_fast_check_char_builders_agree_with_reference(
    which: int, data: st.DataObject
) -> None:
    fast, reference, alphabet, size = _BUILDERS[which]
    text = data.draw(
        st.one_of(
            st.text(alphabet, min_size=size or 1, max_size=size or 60),
            st.text(_NEAR, max_size=20),
        )
    )
    assert _outcome(fast, text) == _outcome(reference, text)


_CENTURY_RULE_YEARS = [0, 1, 4, 100, 200, 400, 1582, 1600, 1900, 2000, 2024, 2025]
_CENTURY_RULE_YEARS += [2100, 2400, 9600, 9800, 9996, 9999]


@pytest.mark.parametrize("year", _CENTURY_RULE_YEARS)
def test_date_pattern_is_the_calendar(year: int) -> None:
    for month in range(100):
        for day in range(100):
            value = f"{year:04d}{month:02d}{day:02d}"
            _same(ids.check_date(value), _ref_check_date(value))


@given(st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32))
def test_date_pattern_is_the_calendar_any_year(year: int, month: int, day: int) -> None:
    value = f"{year:04d}{month:02d}{day:02d}"
    _same(ids.check_date(value), _ref_check_date(value))


def test_time_pattern_is_the_clock() -> None:
    for part in range(100):
        for value in (f"20240229{part:02d}0000", f"2024022900{part:02d}00"):
            _same(ids.check_datetime(value), _ref_check_datetime(value))
        value = f"202402290000{part:02d}"
        _same(ids.check_datetime(value), _ref_check_datetime(value))


def test_memos_hold_only_plausible_keys() -> None:
    """Input of the wrong length never reaches a memo, so junk cannot fill one."""
    ids._cache_clear()
    for junk in ["x" * 5000, "9" * 17, "9" * 19, "", "3202130"]:
        for check, _ in REFERENCE_CHECKS.values():
            check(junk)
    memos = [ids._check_uscc18, ids._check_org9, ids._check_citizen_id18]
    memos += [ids._check_region6, ids._check_region6_any]
    assert all(memo.cache_info().currsize == 0 for memo in memos)
    assert ids.check_uscc("91350000MA347WHE48").ok
    assert ids._check_uscc18.cache_info().currsize == 1
    ids._cache_clear()
    assert ids._check_uscc18.cache_info().currsize == 0
