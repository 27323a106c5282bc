"""Offline checks for the identifiers and values of national records.

Pure functions, one per identifier kind, with the algorithms of DOMAIN.md §4.
Every ``check_*`` takes a ``str`` and returns a small frozen result instead of
raising: ``ok`` plus a stable reason code (``"E_USCC_CHECK"`` …) that callers turn
into messages through :data:`MESSAGES`. The only I/O is the GB/T 2260 region table
(``catalogue/region_codes.yaml``), read once on first use.

Validation runs every identifier of every record through these checks, twice per
record (gateway intake, hub receive), so they are written for speed: precompiled
patterns (dates are one exact calendar pattern), character-value tables summed in
C (``bytes.translate``, ``map``, ``sum``), and bounded ``functools.lru_cache``
memos on the pure cores whose inputs repeat heavily in real data (USCCs,
organisation codes, citizen IDs, region codes). A memo is only consulted once the
input has the one length the check accepts, so a stream of junk cannot fill it
with long keys; :func:`_cache_clear` empties them (benchmarks, tests). The plain
implementations they replaced live on in the tests, which hold these to them.

The ``*_check_char`` helpers build codes (tests, generators); they raise
``ValueError`` on input outside their alphabet because a caller passing such input
has a bug, not bad data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from operator import mul
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = [
    "CITIZEN_ID_CHECK_CHARS",
    "CITIZEN_ID_WEIGHTS",
    "MESSAGES",
    "MOD37_ALPHABET",
    "OK",
    "ORG_ALPHABET",
    "ORG_WEIGHTS",
    "REGION_TABLE_PATH",
    "USCC_ALPHABET",
    "USCC_WEIGHTS",
    "Check",
    "DecimalCheck",
    "check_area_code",
    "check_citizen_id",
    "check_date",
    "check_datetime",
    "check_decimal",
    "check_money",
    "check_org_code",
    "check_party_id",
    "check_project_code",
    "check_region_code",
    "check_section_code",
    "check_tender_project_code",
    "check_unified_deal_code",
    "check_uscc",
    "citizen_id_check_char",
    "extends_parent",
    "is_known_region",
    "mod37_2_check_char",
    "org_code_check_char",
    "region_name",
    "region_table_version",
    "uscc_check_char",
]


@dataclass(frozen=True, slots=True)
class Check:
    """Outcome of one check: ``reason`` is a stable code, ``None`` when ``ok``."""

    ok: bool
    reason: str | None = None
    # The check character the algorithm computed, when a wrong one was the failure.
    expected: str | None = None


OK = Check(ok=True)


def _fail(reason: str, expected: str | None = None) -> Check:
    return Check(ok=False, reason=reason, expected=expected)


_Result = TypeVar("_Result")
# Memo size of each cached check core: at most ~65k entries of short strings each.
_CACHE_SIZE = 65_536
_CACHED: list[Callable[[], None]] = []  # their cache_clear methods


def _memo(
    fn: Callable[[str], _Result],
) -> functools._lru_cache_wrapper[_Result]:
    """Bounded memo of a pure one-string check core (see the module docstring)."""
    cached = functools.lru_cache(maxsize=_CACHE_SIZE)(fn)
    _CACHED.append(cached.cache_clear)
    return cached


def _cache_clear() -> None:
    """Forget every memoised result (for cold-cache benchmarks and tests)."""
    for clear in _CACHED:
        clear()


def _charset(alphabet: str, count: int | None = None) -> re.Pattern[str]:
    """Pattern for ``count`` (or one or more) characters of ``alphabet``."""
    chars = "".join(re.escape(c) for c in alphabet)
    return re.compile(f"[{chars}]" + ("+" if count is None else f"{{{count}}}"))


def _values(alphabet: str) -> bytes:
    """``bytes.translate`` table taking each ASCII character of ``alphabet`` to its
    index: ``text.encode().translate(table)`` is then the character values of a
    text already known to be in the alphabet, ready for ``sum(map(mul, ...))``.
    """
    return bytes.maketrans(alphabet.encode("ascii"), bytes(range(len(alphabet))))


@dataclass(frozen=True, slots=True)
class DecimalCheck:
    """Outcome of a numeric check; ``value`` keeps the sign as written."""

    ok: bool
    reason: str | None = None
    value: Decimal | None = None


# Reason code -> (English, Chinese). One table so that the catalogue, adapters and
# the hub word the same failure the same way.
MESSAGES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "E_USCC_LENGTH": (
            "unified social credit code must be 18 characters",
            "统一社会信用代码应为18位",
        ),
        "E_USCC_CHARSET": (
            "unified social credit code uses characters outside 0-9 and "
            "A-Z without I, O, S, V, Z",
            "统一社会信用代码含有非法字符（不使用I、O、S、V、Z）",
        ),
        "E_USCC_ORG_CHECK": (
            "positions 9-17 of the unified social credit code are not a valid "
            "organisation code (GB 11714)",
            "统一社会信用代码第9-17位主体标识码校验错误（GB 11714）",
        ),
        "E_USCC_CHECK": (
            "wrong check character of the unified social credit code (GB 32100)",
            "统一社会信用代码校验码错误（GB 32100）",
        ),
        "E_ORG_LENGTH": (
            "organisation code must be 9 characters (or 8-1 with a hyphen)",
            "组织机构代码应为9位（或8位加连字符加1位）",
        ),
        "E_ORG_CHARSET": (
            "organisation code uses characters outside 0-9 and A-Z",
            "组织机构代码含有非法字符",
        ),
        "E_ORG_CHECK": (
            "wrong check character of the organisation code (GB 11714)",
            "组织机构代码校验码错误（GB 11714）",
        ),
        "E_CITIZEN_ID_LENGTH": (
            "citizen ID number must be 18 characters",
            "居民身份证号码应为18位",
        ),
        "E_CITIZEN_ID_CHARSET": (
            "citizen ID number must be 17 digits and a digit or X",
            "居民身份证号码应为17位数字加1位数字或X",
        ),
        "E_CITIZEN_ID_REGION": (
            "citizen ID number does not start with a valid region code",
            "居民身份证号码前6位不是有效的行政区划代码",
        ),
        "E_CITIZEN_ID_BIRTH_DATE": (
            "citizen ID number carries an impossible birth date",
            "居民身份证号码中的出生日期无效",
        ),
        "E_CITIZEN_ID_CHECK": (
            "wrong check character of the citizen ID number (GB 11643)",
            "居民身份证号码校验码错误（GB 11643）",
        ),
        "E_REGION_FORMAT": (
            "region code must be 6 digits",
            "行政区划代码应为6位数字",
        ),
        "E_REGION_STRUCTURE": (
            "region code breaks the GB/T 2260 structure",
            "行政区划代码不符合GB/T 2260结构",
        ),
        "E_REGION_UNKNOWN": (
            "region code is not in the GB/T 2260 table",
            "行政区划代码不在GB/T 2260代码表中",
        ),
        "E_REGION_RETIRED": (
            "region code has been abolished (historical records only)",
            "行政区划代码已撤销（仅用于历史数据）",
        ),
        "E_AREA_FORMAT": (
            "area code must be 6 (GB/T 2260) or 9 (GB/T 10114) digits",
            "区域代码应为6位（GB/T 2260）或9位（GB/T 10114）数字",
        ),
        "E_PROJECT_CODE_LENGTH": (
            "project code must be 17 characters",
            "项目编号应为17位",
        ),
        "E_PROJECT_CODE_FORMAT": (
            "project code must be a letter, a 6-digit region code and 10 "
            "letters or digits",
            "项目编号应为1位字母加6位行政区划代码加10位字母或数字",
        ),
        "E_PROJECT_CODE_REGION": (
            "project code does not carry a valid region code in positions 2-7",
            "项目编号第2-7位不是有效的行政区划代码",
        ),
        "E_TENDER_PROJECT_CODE_LENGTH": (
            "tender project code must be 20 characters",
            "招标项目编号应为20位",
        ),
        "E_TENDER_PROJECT_CODE_FORMAT": (
            "tender project code must be a project code and a 3-digit sequence",
            "招标项目编号应为项目编号加3位顺序号",
        ),
        "E_TENDER_PROJECT_CODE_PARENT": (
            "tender project code does not start with its project code",
            "招标项目编号未以其项目编号开头",
        ),
        "E_SECTION_CODE_LENGTH": (
            "section code must be 23 characters",
            "标段（包）编号应为23位",
        ),
        "E_SECTION_CODE_FORMAT": (
            "section code must be a tender project code and a 3-digit sequence",
            "标段（包）编号应为招标项目编号加3位顺序号",
        ),
        "E_SECTION_CODE_PARENT": (
            "section code does not start with its tender project code",
            "标段（包）编号未以其招标项目编号开头",
        ),
        "E_UDC_LENGTH": (
            "unified deal code must be 40 characters",
            "统一交易标识码应为40位",
        ),
        "E_UDC_FORMAT": (
            "unified deal code must read AAA-<USCC>-<yyyyMMdd>-<6 digits>-<check>",
            "统一交易标识码格式应为AAA-统一社会信用代码-yyyyMMdd-6位顺序号-校验码",
        ),
        "E_UDC_USCC": (
            "unified deal code carries an invalid unified social credit code",
            "统一交易标识码中的统一社会信用代码无效",
        ),
        "E_UDC_DATE": (
            "unified deal code carries an impossible date",
            "统一交易标识码中的日期无效",
        ),
        "E_UDC_CHECK": (
            "wrong check character of the unified deal code (ISO 7064 MOD 37-2)",
            "统一交易标识码校验码错误（ISO 7064 MOD 37-2）",
        ),
        "E_DATE_FORMAT": ("date must be yyyyMMdd", "日期格式应为yyyyMMdd"),
        "E_DATE_INVALID": ("date does not exist", "日期不存在"),
        "E_DATETIME_FORMAT": (
            "date-time must be yyyyMMddHHmmss",
            "时间格式应为yyyyMMddHHmmss",
        ),
        "E_DATETIME_INVALID": ("date-time does not exist", "时间不存在"),
        "E_NUMBER_FORMAT": (
            "number must be plain decimal digits with an optional sign and point",
            "数值应为十进制数字（可带符号与小数点）",
        ),
        "E_NUMBER_INTEGER_DIGITS": (
            "number has too many integer digits",
            "数值整数位数超长",
        ),
        "E_NUMBER_FRACTION_DIGITS": (
            "number has too many decimal places",
            "数值小数位数超长",
        ),
    }
)


# --- GB 32100-2015 统一社会信用代码 (DOMAIN.md §4.2) -------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_VALUES = _values(USCC_ALPHABET)
_USCC_17 = _charset(USCC_ALPHABET, 17)
_USCC_18 = _charset(USCC_ALPHABET, 18)


def _uscc_check_char(first17: str) -> str:
    # MOD 31 over 17 characters already known to be in the alphabet.
    total = sum(map(mul, first17.encode().translate(_USCC_VALUES), USCC_WEIGHTS))
    return USCC_ALPHABET[-total % 31]


def uscc_check_char(first17: str) -> str:
    """Check character for the first 17 USCC characters (MOD 31, §4.2)."""
    if len(first17) != 17 or _USCC_17.fullmatch(first17) is None:
        raise ValueError("need 17 characters of the USCC alphabet")
    return _uscc_check_char(first17)


_USCC_LENGTH = _fail("E_USCC_LENGTH")
_USCC_CHARSET = _fail("E_USCC_CHARSET")
_USCC_ORG_CHECK = _fail("E_USCC_ORG_CHECK")


def check_uscc(code: str) -> Check:
    """统一社会信用代码 per GB 32100-2015 (DOMAIN.md §4.2).

    Checks the alphabet, the embedded organisation code (positions 9-17, GB 11714)
    and the MOD 31 check character. The registration-authority region (positions
    3-8) is not looked up: nationally registered bodies carry ``100000``.
    """
    if len(code) != 18:
        return _USCC_LENGTH
    return _check_uscc18(code)


@_memo
def _check_uscc18(code: str) -> Check:
    if _USCC_18.fullmatch(code) is None:
        return _USCC_CHARSET
    # Positions 9-17 as an organisation code: the USCC alphabet lies inside the
    # organisation-code body alphabet, and a computed check character is always a
    # digit or X, so the code is valid exactly when its check character matches.
    if _org_check_char(code[8:16]) != code[16]:
        return _USCC_ORG_CHECK
    expected = _uscc_check_char(code[:17])
    if code[17] != expected:
        return _fail("E_USCC_CHECK", expected)
    return OK


# --- GB 11714-1997 组织机构代码 (DOMAIN.md §4.3) -----------------------------------

ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_VALUES = _values(ORG_ALPHABET)
# Check character by weighted sum mod 11: 11 - r, where 10 is written X and 11 is 0.
_ORG_CHECK_CHARS = "0X987654321"
_ORG_BODY = _charset(ORG_ALPHABET, 8)
_ORG_CODE = re.compile(_ORG_BODY.pattern + "[0-9X]")


def _org_check_char(body8: str) -> str:
    # MOD 11 over 8 characters already known to be in the alphabet.
    total = sum(map(mul, body8.encode().translate(_ORG_VALUES), ORG_WEIGHTS))
    return _ORG_CHECK_CHARS[total % 11]


def org_code_check_char(body8: str) -> str:
    """Check character for an 8-character organisation-code body (MOD 11, §4.3)."""
    if len(body8) != 8 or _ORG_BODY.fullmatch(body8) is None:
        raise ValueError("need 8 characters of 0-9 A-Z")
    return _org_check_char(body8)


_ORG_LENGTH = _fail("E_ORG_LENGTH")
_ORG_CHARSET = _fail("E_ORG_CHARSET")


def check_org_code(code: str) -> Check:
    """组织机构代码 per GB 11714 (DOMAIN.md §4.3): ``XXXXXXXXC`` or ``XXXXXXXX-C``."""
    if len(code) == 10 and code[8] == "-":
        code = code[:8] + code[9]
    if len(code) != 9:
        return _ORG_LENGTH
    return _check_org9(code)


@_memo
def _check_org9(code: str) -> Check:
    if _ORG_CODE.fullmatch(code) is None:
        return _ORG_CHARSET
    expected = _org_check_char(code[:8])
    if code[8] != expected:
        return _fail("E_ORG_CHECK", expected)
    return OK


# --- GB 11643-1999 居民身份证号码 (DOMAIN.md §4.4) ---------------------------------

CITIZEN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CITIZEN_ID_CHECK_CHARS = "10X98765432"
_DIGIT_VALUES = _values("0123456789")
_CITIZEN_ID = re.compile("[0-9]{17}[0-9X]")


def _all_digits(text: str) -> bool:
    # str.isdigit() alone also accepts e.g. "²" and Arabic-Indic digits; the only
    # ASCII characters it accepts are 0-9, and it is False for "".
    return text.isascii() and text.isdigit()


def _citizen_id_check_char(first17: str) -> str:
    total = sum(map(mul, first17.encode().translate(_DIGIT_VALUES), CITIZEN_ID_WEIGHTS))
    return CITIZEN_ID_CHECK_CHARS[total % 11]


def citizen_id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character for 17 digits (§4.4)."""
    if len(first17) != 17 or not _all_digits(first17):
        raise ValueError("need 17 digits")
    return _citizen_id_check_char(first17)


# yyyyMMdd naming a day datetime.date accepts (years 0001-9999, Gregorian leap
# years), as one pattern: tests hold it to datetime.date, all days of all years.
_LEAP_YEAR = (
    r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
)
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)(?:0[1-9]|[12][0-9]|30)"
    r"|02(?:0[1-9]|1[0-9]|2[0-8]))"
)
_DAY = f"(?:(?!0000)[0-9]{{4}}{_MONTH_DAY}|{_LEAP_YEAR}0229)"
_DATE = re.compile(_DAY)
_DATETIME = re.compile(_DAY + "(?:[01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]")


def _real_date(yyyymmdd: str) -> bool:
    return _DATE.fullmatch(yyyymmdd) is not None


_CITIZEN_ID_LENGTH = _fail("E_CITIZEN_ID_LENGTH")
_CITIZEN_ID_CHARSET = _fail("E_CITIZEN_ID_CHARSET")
_CITIZEN_ID_REGION = _fail("E_CITIZEN_ID_REGION")
_CITIZEN_ID_BIRTH_DATE = _fail("E_CITIZEN_ID_BIRTH_DATE")


def check_citizen_id(code: str) -> Check:
    """18-character 居民身份证号码 per GB 11643 (DOMAIN.md §4.4).

    The region prefix is checked for structure and a known province only: the
    code is fixed at issue, so old cards legitimately carry abolished counties.
    The check character must be an upper-case ``X`` (adapters normalise case).
    """
    if len(code) != 18:
        return _CITIZEN_ID_LENGTH
    return _check_citizen_id18(code)


@_memo
def _check_citizen_id18(code: str) -> Check:
    if _CITIZEN_ID.fullmatch(code) is None:
        return _CITIZEN_ID_CHARSET
    if _region_structure(code[:6]) is not None:
        return _CITIZEN_ID_REGION
    if not _real_date(code[6:14]):
        return _CITIZEN_ID_BIRTH_DATE
    expected = _citizen_id_check_char(code[:17])
    if code[17] != expected:
        return _fail("E_CITIZEN_ID_CHECK", expected)
    return OK


def check_party_id(code: str) -> Check:
    """主体代码 / 证件号码 whose type code (code table 2001 / 7) is not known.

    Checked by shape: 18 characters must be a valid USCC or a valid citizen ID,
    9 (or 8-1) characters a valid organisation code; any other shape (passport,
    foreign registration, 15-digit first-generation ID) passes. When an 18-character
    value is neither, the reason follows what it looks like: digits with a known
    province and a real birth date are reported as a citizen ID.
    """
    if len(code) == 18:
        as_uscc = check_uscc(code)
        if as_uscc.ok:
            return OK
        as_id = check_citizen_id(code)
        if as_id.ok:
            return OK
        looks_like_id = as_id.reason == "E_CITIZEN_ID_CHECK"
        return as_id if looks_like_id else as_uscc
    if len(code) == 9 or (len(code) == 10 and code[8] == "-"):
        return check_org_code(code)
    return OK


# --- GB/T 2260 行政区划代码 (DOMAIN.md §4.5) ---------------------------------------

REGION_TABLE_PATH = Path(__file__).resolve().parent / "catalogue" / "region_codes.yaml"


class _RegionRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    retired: int | None = None
    successor: str | None = None


class _RegionTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    table_version: str
    coverage: tuple[str, ...]
    codes: dict[str, _RegionRow]

    @field_validator("codes")
    @classmethod
    def _six_digits(cls, codes: dict[str, _RegionRow]) -> dict[str, _RegionRow]:
        bad = [c for c in codes if len(c) != 6 or not _all_digits(c)]
        if bad:
            raise ValueError(f"region codes must be 6 digits: {bad}")
        return codes

    @model_validator(mode="after")
    def _consistent(self) -> _RegionTable:
        for code, row in self.codes.items():
            if code[:2] + "0000" not in self.codes:
                raise ValueError(f"{code}: its province row is missing")
            if row.successor is not None:
                successor = self.codes.get(row.successor)
                if successor is None or successor.retired is not None:
                    raise ValueError(f"{code}: successor {row.successor} not current")
        for province in self.coverage:
            if province + "0000" not in self.codes:
                raise ValueError(f"coverage {province}: no province row")
        return self


@functools.cache
def _region_table() -> _RegionTable:
    with REGION_TABLE_PATH.open(encoding="utf-8") as fh:
        return _RegionTable.model_validate(yaml.safe_load(fh))


def region_table_version() -> str:
    """Version string of the shipped region table (record it with audits)."""
    return _region_table().table_version


def region_name(code: str) -> str | None:
    """Name of a region code in the shipped table (abolished ones too), else None."""
    row = _region_table().codes.get(code)
    return None if row is None else row.name


def is_known_region(code: str, *, include_retired: bool = False) -> bool:
    """Whether the shipped table lists ``code`` (current only, unless asked)."""
    row = _region_table().codes.get(code)
    return row is not None and (include_retired or row.retired is None)


def _region_structure(code: str) -> str | None:
    """Reason why ``code`` breaks the §4.5 structure, or None."""
    if len(code) != 6 or not _all_digits(code):
        return "E_REGION_FORMAT"
    if code[:2] + "0000" not in _region_table().codes:
        return "E_REGION_UNKNOWN"
    prefecture = int(code[2:4])
    # 01-20/51-70 cities, 21-50 prefectures/leagues, 90 province-administered
    # counties; nothing is assigned to 71-89 or 91-99.
    if 71 <= prefecture <= 89 or prefecture >= 91:
        return "E_REGION_STRUCTURE"
    if prefecture == 0 and code[4:] != "00":
        return "E_REGION_STRUCTURE"
    return None


_REGION_FORMAT = _fail("E_REGION_FORMAT")


def check_region_code(code: str, *, allow_retired: bool = False) -> Check:
    """6-digit 行政区划代码 per GB/T 2260 (DOMAIN.md §4.5).

    In provinces the table covers completely (Jiangsu) the code must be listed;
    elsewhere only the province and the structure can be checked. Abolished codes
    fail with ``E_REGION_RETIRED`` unless ``allow_retired`` (historical records).
    """
    if len(code) != 6:
        return _REGION_FORMAT
    if allow_retired:
        return _check_region6_any(code)
    return _check_region6(code)


def _region_check(code: str, *, allow_retired: bool) -> Check:
    reason = _region_structure(code)
    if reason is not None:
        return _fail(reason)
    table = _region_table()
    if code[:2] not in table.coverage:
        return OK
    row = table.codes.get(code)
    if row is None:
        return _fail("E_REGION_UNKNOWN")
    if row.retired is not None and not allow_retired:
        return _fail("E_REGION_RETIRED")
    return OK


# The region table is read once and never changes, so the outcome is a pure
# function of the code; one memo per allow_retired keeps the key a plain str.
@_memo
def _check_region6(code: str) -> Check:
    return _region_check(code, allow_retired=False)


@_memo
def _check_region6_any(code: str) -> Check:
    return _region_check(code, allow_retired=True)


_AREA_FORMAT = _fail("E_AREA_FORMAT")


def check_area_code(code: str) -> Check:
    """区域代码: a GB/T 2260 code, or a 9-digit GB/T 10114 township code (§4.5)."""
    if len(code) == 9 and _all_digits(code):
        return _check_region6(code[:6])
    if len(code) == 6:
        return _check_region6(code)
    return _AREA_FORMAT


# --- project / tender project / section codes (DOMAIN.md §4.1) ---------------------

# A section code is a tender project code plus 3 digits, which is a project code
# plus 3 digits; one pattern per level checks the whole chain at once.
_PROJECT_CODE = re.compile(r"[A-Za-z][0-9]{6}[0-9A-Za-z]{10}")
_TENDER_PROJECT_CODE = re.compile(_PROJECT_CODE.pattern + "[0-9]{3}")
_SECTION_CODE = re.compile(_TENDER_PROJECT_CODE.pattern + "[0-9]{3}")
_PROJECT_CODE_LENGTH = _fail("E_PROJECT_CODE_LENGTH")
_PROJECT_CODE_FORMAT = _fail("E_PROJECT_CODE_FORMAT")
_PROJECT_CODE_REGION = _fail("E_PROJECT_CODE_REGION")
_TENDER_PROJECT_CODE_LENGTH = _fail("E_TENDER_PROJECT_CODE_LENGTH")
_TENDER_PROJECT_CODE_FORMAT = _fail("E_TENDER_PROJECT_CODE_FORMAT")
_TENDER_PROJECT_CODE_PARENT = _fail("E_TENDER_PROJECT_CODE_PARENT")
_SECTION_CODE_LENGTH = _fail("E_SECTION_CODE_LENGTH")
_SECTION_CODE_FORMAT = _fail("E_SECTION_CODE_FORMAT")
_SECTION_CODE_PARENT = _fail("E_SECTION_CODE_PARENT")


def extends_parent(child: str, parent: str) -> bool:
    """Whether ``child`` is ``parent`` followed by more characters (§4.1)."""
    return len(child) > len(parent) and child.startswith(parent)


def check_project_code(code: str) -> Check:
    """17-character 项目编号: letter + GB/T 2260 region + 10 characters (§4.1).

    The leading letter's meaning is unknown (DOMAIN.md §9), so any ASCII letter is
    accepted (Shanghai uses ``e``). Codes cannot be modified once issued, so a
    region abolished since then is still accepted.
    """
    if len(code) != 17:
        return _PROJECT_CODE_LENGTH
    if _PROJECT_CODE.fullmatch(code) is None:
        return _PROJECT_CODE_FORMAT
    if not _check_region6_any(code[1:7]).ok:
        return _PROJECT_CODE_REGION
    return OK


def check_tender_project_code(code: str, project_code: str | None = None) -> Check:
    """20-character 招标项目编号 = 项目编号 + 3-digit sequence (§4.1).

    With ``project_code`` given, the code must also extend that parent.
    """
    if len(code) != 20:
        return _TENDER_PROJECT_CODE_LENGTH
    # Its first 17 characters must be a valid project code.
    if (
        _TENDER_PROJECT_CODE.fullmatch(code) is None
        or not _check_region6_any(code[1:7]).ok
    ):
        return _TENDER_PROJECT_CODE_FORMAT
    if project_code is not None and not extends_parent(code, project_code):
        return _TENDER_PROJECT_CODE_PARENT
    return OK


def check_section_code(code: str, tender_project_code: str | None = None) -> Check:
    """23-character 标段（包）编号 = 招标项目编号 + 3-digit sequence (§4.1).

    With ``tender_project_code`` given, the code must also extend that parent.
    """
    if len(code) != 23:
        return _SECTION_CODE_LENGTH
    # Its first 20 characters must be a valid tender project code.
    if _SECTION_CODE.fullmatch(code) is None or not _check_region6_any(code[1:7]).ok:
        return _SECTION_CODE_FORMAT
    if tender_project_code is not None and not extends_parent(
        code, tender_project_code
    ):
        return _SECTION_CODE_PARENT
    return OK


# --- 统一交易标识码, ISO 7064 MOD 37-2 (DOMAIN.md §4.1, §4.6) ----------------------

MOD37_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
_MOD37_VALUES = _values(MOD37_ALPHABET[:36])
_MOD37_DATA = _charset(MOD37_ALPHABET[:36])


@functools.lru_cache(maxsize=64)
def _mod37_weights(length: int) -> tuple[int, ...]:
    # p = ((p + v) * 2) % 37 over n characters is sum(v_i * 2**(n - i)) % 37.
    return tuple(pow(2, length - i, 37) for i in range(length))


def _mod37_2_check_char(data: str) -> str:
    # Over characters already known to be 0-9 A-Z.
    weights = _mod37_weights(len(data))
    total = sum(map(mul, data.encode().translate(_MOD37_VALUES), weights))
    return MOD37_ALPHABET[(1 - total) % 37]


def mod37_2_check_char(data: str) -> str:
    """ISO 7064 pure-system MOD 37-2 check character over ``data`` (§4.6)."""
    if _MOD37_DATA.fullmatch(data) is None:
        raise ValueError("need characters of 0-9 A-Z")
    return _mod37_2_check_char(data)


# AAA-<18>-<8>-<6>-<1>: the hyphens split it into parts of exactly these lengths,
# the deal type is 3 of 0-9 A-Z and the sequence 6 digits; the rest is checked next.
_DEAL_CODE = re.compile(r"[0-9A-Z]{3}-[^-]{18}-[^-]{8}-[0-9]{6}-[^-]")
_UDC_LENGTH = _fail("E_UDC_LENGTH")
_UDC_FORMAT = _fail("E_UDC_FORMAT")
_UDC_USCC = _fail("E_UDC_USCC")
_UDC_DATE = _fail("E_UDC_DATE")


def check_unified_deal_code(code: str) -> Check:
    """40-character 统一交易标识码 ``AAA-<USCC>-<yyyyMMdd>-<seq6>-<check>`` (§4.1).

    The check character is MOD 37-2 over the 35 data characters without hyphens;
    the 3-character 交易分类代码 is only checked for shape (its values are unknown,
    DOMAIN.md §9).
    """
    if len(code) != 40:
        return _UDC_LENGTH
    if _DEAL_CODE.fullmatch(code) is None:
        return _UDC_FORMAT
    if not check_uscc(code[4:22]).ok:
        return _UDC_USCC
    day = code[23:31]
    if not _all_digits(day) or not _real_date(day):
        return _UDC_DATE
    # Deal type, USCC, day and sequence are now all 0-9 A-Z.
    expected = _mod37_2_check_char(code[:38].replace("-", ""))
    if code[39] != expected:
        return _fail("E_UDC_CHECK", expected)
    return OK


# --- dates, times and numbers (DOMAIN.md §2.2) -------------------------------------


_DATE_FORMAT = _fail("E_DATE_FORMAT")
_DATE_INVALID = _fail("E_DATE_INVALID")
_DATETIME_FORMAT = _fail("E_DATETIME_FORMAT")
_DATETIME_INVALID = _fail("E_DATETIME_INVALID")


def check_date(value: str) -> Check:
    """``yyyyMMdd`` naming a real calendar day (§2.2)."""
    if _DATE.fullmatch(value) is not None:
        return OK
    if len(value) != 8 or not _all_digits(value):
        return _DATE_FORMAT
    return _DATE_INVALID


def check_datetime(value: str) -> Check:
    """``yyyyMMddHHmmss`` naming a real instant (no leap seconds, §2.2)."""
    if _DATETIME.fullmatch(value) is not None:
        return OK
    if len(value) != 14 or not _all_digits(value):
        return _DATETIME_FORMAT
    return _DATETIME_INVALID


_DECIMAL = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?")


def check_decimal(
    value: str, integer_digits: int, fraction_digits: int = 0
) -> DecimalCheck:
    """Plain decimal within ``n(integer_digits, fraction_digits)`` (§2.2).

    Accepts an optional sign, digits and an optional fraction; no exponent, no
    separators, no blanks. Leading zeros do not count as integer digits; decimal
    places count as written, so ``1.5000000`` exceeds n(14,6). The sign is kept in
    ``value``: whether a negative amount is acceptable is the caller's rule.
    """
    match = _DECIMAL.fullmatch(value)
    if match is None:
        return DecimalCheck(ok=False, reason="E_NUMBER_FORMAT")
    _, whole, fraction = match.groups()
    if len(whole.lstrip("0")) > integer_digits:
        return DecimalCheck(ok=False, reason="E_NUMBER_INTEGER_DIGITS")
    if fraction is not None and len(fraction) > fraction_digits:
        return DecimalCheck(ok=False, reason="E_NUMBER_FRACTION_DIGITS")
    return DecimalCheck(ok=True, value=Decimal(value))


def check_money(value: str) -> DecimalCheck:
    """Money amount within n(14,6): 14 integer and 6 decimal digits (§2.2)."""
    return check_decimal(value, 14, 6)
