"""Normalisers: small pure functions from one source text to one national text.

Every function takes a ``str`` (already trimmed, never empty) plus its compiled
options and returns the new text, or raises :class:`ValueProblem` with a bounded
``code`` and a message in English and Chinese that quotes the value. Nothing here
knows about paths, records or YAML; :mod:`adapters.mapping.engine` chains them.
"""

from __future__ import annotations

import functools
import re
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters import identifiers as ids

__all__ = [
    "BEIJING",
    "CHECKS",
    "MONEY_UNITS",
    "ONE",
    "DatePattern",
    "ValueProblem",
    "boolean",
    "canonical_decimal",
    "check",
    "compile_date_pattern",
    "halfwidth",
    "money",
    "money_unit_code",
    "national_time",
    "parse_decimal",
    "parse_instant",
    "shown",
    "to_date",
    "to_datetime",
    "trim",
    "zone",
]

BEIJING: Final = timezone(timedelta(hours=8), "UTC+08:00")
"""National records carry Beijing time (UTC+8, no daylight saving since 1991)."""


class ValueProblem(Exception):
    """A value a normaliser cannot turn into a national value."""

    def __init__(self, code: str, en: str, zh: str) -> None:
        super().__init__(code, en)
        self.code = code
        self.en = en
        self.zh = zh


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for a message, shortened and with control characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


# --- text -------------------------------------------------------------------------


def trim(value: str) -> str:
    """Strip leading and trailing white space, U+3000 (ideographic space) included."""
    return value.strip()


def halfwidth(value: str) -> str:
    """NFKC: full-width letters, digits and signs become half-width (for codes and
    numbers; names and free text keep their full-width punctuation)."""
    return value if value.isascii() else unicodedata.normalize("NFKC", value)


# --- booleans ---------------------------------------------------------------------

TRUE_WORDS: Final = frozenset({"是", "y", "yes", "t", "true", "1", "对"})
FALSE_WORDS: Final = frozenset({"否", "n", "no", "f", "false", "0", "不"})


def boolean(
    value: str,
    true_words: frozenset[str],
    false_words: frozenset[str],
    true_code: str,
    false_code: str,
) -> str:
    """是/否, Y/N, T/F, 1/0, true/false (ASCII case-insensitive) to a code."""
    key = halfwidth(value).lower()
    if key in true_words:
        return true_code
    if key in false_words:
        return false_code
    raise ValueProblem(
        "E_MAP_BOOLEAN",
        f"{shown(value)} is not a yes/no value",
        f"{shown(value)} 不是是/否值",
    )


# --- numbers and money ------------------------------------------------------------

_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")
_CURRENCY_PREFIXES: Final = ("¥", "RMB", "CNY", "人民币")
MONEY_UNITS: Final[Mapping[str, Decimal]] = {
    "元": Decimal(1),
    "万元": Decimal(10000),
    "分": Decimal("0.01"),
}
MoneyUnit = Literal["元", "万元", "分"]
_UNIT_CODES: Final[Mapping[str, str]] = {"元": "0", "万元": "1"}
_MINUS = str.maketrans({"\u2212": "-", "\u2013": "-", "\ufe63": "-"})


def canonical_decimal(number: Decimal) -> str:
    """Plain decimal text: no exponent, no trailing zeros, no '-0'."""
    if number == 0:
        return "0"
    sign, digits, exponent = number.as_tuple()
    if exponent == 0 and digits[0] != 0:
        return ("-" if sign else "") + "".join(map(str, digits))
    return format(number.normalize(), "f")


def _not_a_number(value: str) -> ValueProblem:
    return ValueProblem(
        "E_MAP_NUMBER", f"{shown(value)} is not a number", f"{shown(value)} 不是数字"
    )


_DIGITS_DOT = str.maketrans("", "", "0123456789.")
_EXACT_DIGITS: Final = 28
ONE: Final = Decimal(1)
"""The scale 1: :func:`decimal_text` skips multiplying by this very object."""
"""Significant digits that Decimal.normalize() keeps (the default context, which
nothing here changes): up to this many, the text form below is exact."""


_Parts: TypeAlias = tuple[str, str, str, str | None]
_last_parts: tuple[str, bool, _Parts] = ("", False, ("", "", "", None))
"""The last number parsed: money and money_unit usually read the same value one
after the other (a tuple, replaced whole: safe to share between threads)."""


def _number_parts(value: str, *, currency: bool) -> _Parts:
    """Sign ('', '+' or '-'), whole digits, fraction digits (without separators)
    and the money unit written after the number; ``_not_a_number`` otherwise."""
    global _last_parts
    last = _last_parts
    if last[0] == value and last[1] is currency and value:
        return last[2]
    parts = _parse_number(value, currency=currency)
    _last_parts = (value, currency, parts)
    return parts


def _parse_number(value: str, *, currency: bool) -> _Parts:
    if value.isascii():
        # "-12.5" style text (no separators) is the common case: no parsing needed.
        negative = value[:1] == "-"
        body = value[1:] if negative else value
        if (
            body
            and not body.translate(_DIGITS_DOT)
            and body[0].isdigit()
            and body[-1].isdigit()
            and body.count(".") <= 1
        ):
            whole, _, fraction = body.partition(".")
            return ("-" if negative else ""), whole, fraction, None
    text = halfwidth(value).translate(_MINUS).replace(" ", "")
    sign = ""
    if text[:1] in "+-":
        sign, text = text[:1], text[1:]
    unit = None
    if currency:
        for prefix in _CURRENCY_PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        for suffix in ("万元", "元", "分"):
            if text.endswith(suffix):
                unit, text = suffix, text[: -len(suffix)]
                break
    if sign and text[:1] in "+-":
        raise _not_a_number(value)
    match = _NUMBER.fullmatch(sign + text)
    if match is None:
        raise _not_a_number(value)
    sign, whole, fraction = match.groups("")  # "" for an absent fraction
    return sign, whole.replace(",", ""), fraction or "", unit


def _decimal(value: str, sign: str, whole: str, fraction: str) -> Decimal:
    try:
        return Decimal(sign + whole + ("." + fraction if fraction else ""))
    except InvalidOperation:  # pragma: no cover - the parts are digits only
        raise _not_a_number(value) from None


def _canonical_text(sign: str, whole: str, fraction: str) -> str | None:
    """``canonical_decimal`` of the number with these parts, from the text alone
    (None where normalize() would round: more than 28 digits and a fraction)."""
    if fraction and len((whole + fraction).lstrip("0")) > _EXACT_DIGITS:
        return None
    whole = whole.lstrip("0")
    fraction = fraction.rstrip("0")
    if not whole and not fraction:
        return "0"
    text = (whole or "0") + ("." + fraction if fraction else "")
    return "-" + text if sign == "-" else text


def _is_zero(whole: str, fraction: str) -> bool:
    return not whole.strip("0") and not fraction.strip("0")


def parse_decimal(value: str, *, currency: bool = False) -> tuple[Decimal, str | None]:
    """The exact number in ``value`` and the money unit written after it, if any.

    Accepts full-width digits and signs, a sign, thousands separators in groups of
    three, a decimal point; with ``currency`` also a leading ¥/￥/RMB/CNY/人民币 and a
    trailing 元/万元/分. The sign is kept; nothing is rounded.
    """
    sign, whole, fraction, unit = _number_parts(value, currency=currency)
    return _decimal(value, sign, whole, fraction), unit


def _check_negative(value: str, number: Decimal, negative: str) -> None:
    if number < 0 and negative == "reject":
        raise _negative(value)


def _negative(value: str) -> ValueProblem:
    return ValueProblem(
        "E_MAP_NEGATIVE",
        f"{shown(value)} is negative (the sign is never dropped)",
        f"{shown(value)} 为负数（不会去掉负号）",
    )


def _not_whole(value: str) -> ValueProblem:
    return ValueProblem(
        "E_MAP_NUMBER",
        f"{shown(value)} is not a whole number",
        f"{shown(value)} 不是整数",
    )


def decimal_text(
    value: str,
    *,
    negative: str = "allow",
    scale: Decimal | None = None,
    integer: bool = False,
) -> str:
    """A plain number, optionally multiplied by ``scale``, in canonical form."""
    sign, whole, fraction, _ = _number_parts(value, currency=False)
    if sign == "-" and negative == "reject" and not _is_zero(whole, fraction):
        raise _negative(value)
    if scale is ONE and len((whole + fraction).lstrip("0")) <= _EXACT_DIGITS:
        scale = None  # times 1 changes nothing while nothing is rounded
    if scale is None:
        if integer and fraction.strip("0"):
            raise _not_whole(value)
        text = _canonical_text(sign, whole, fraction)
        if text is not None:
            return text
    number = _decimal(value, sign, whole, fraction)
    if scale is not None:
        number *= scale
    if integer and number != number.to_integral_value():
        raise _not_whole(value)
    return canonical_decimal(number)


def money(
    value: str, *, unit: str = "元", to: str | None = None, negative: str = "allow"
) -> str:
    """¥36,912,345.67 -> 36912345.67; the unit written after the number (元/万元/分)
    wins over ``unit``; ``to`` converts exactly, otherwise the source unit is kept."""
    sign, whole, fraction, written = _number_parts(value, currency=True)
    source = written or unit
    target = to or source
    if sign == "-" and negative == "reject" and not _is_zero(whole, fraction):
        raise _negative(value)
    if source == target:
        text = _canonical_text(sign, whole, fraction)
        if text is not None:
            return text
    number = _decimal(value, sign, whole, fraction)
    if source != target:
        number = number * MONEY_UNITS[source] / MONEY_UNITS[target]
    return canonical_decimal(number)


def money_unit_code(value: str, *, unit: str = "元", to: str | None = None) -> str:
    """The national unit code (0 元, 1 万元) of what :func:`money` returns."""
    _, _, _, written = _number_parts(value, currency=True)
    target = to or written or unit
    code = _UNIT_CODES.get(target)
    if code is None:
        raise ValueProblem(
            "E_MAP_UNIT",
            f"{shown(value)} is in {target}, which has no national unit code "
            "(convert with 'to: 元')",
            f"{shown(value)} 的单位{target}没有国家单位代码（请用 to: 元 换算）",
        )
    return code


# --- dates and times --------------------------------------------------------------

_TOKENS: Final[Mapping[str, tuple[str, str]]] = {
    # token -> (group name, regex)
    "yyyy": ("y", r"\d{4}"),
    "MM": ("M", r"\d{2}"),
    "M": ("M", r"\d{1,2}"),
    "dd": ("d", r"\d{2}"),
    "d": ("d", r"\d{1,2}"),
    "HH": ("H", r"\d{2}"),
    "H": ("H", r"\d{1,2}"),
    "mm": ("m", r"\d{2}"),
    "m": ("m", r"\d{1,2}"),
    "ss": ("s", r"\d{2}"),
    "s": ("s", r"\d{1,2}"),
    "SSS": ("f", r"\d{1,9}"),
    "XXX": ("z", r"Z|[+-]\d{2}(?::?\d{2})?"),
}
_TOKEN_RE = re.compile("|".join(sorted(map(re.escape, _TOKENS), key=len, reverse=True)))
SPECIAL_PATTERNS: Final = frozenset({"iso8601", "epoch_ms", "epoch_s"})
_PLAUSIBLE_YEARS: Final = range(1980, 2100)  # epoch values: catches s vs ms


@dataclass(frozen=True, slots=True)
class DatePattern:
    """A compiled date/time pattern such as ``yyyy年MM月dd日 HH时mm分``."""

    text: str
    regex: re.Pattern[str] | None  # None for the special patterns
    has_time: bool
    has_zone: bool


def compile_date_pattern(text: str) -> DatePattern:
    """Compile a pattern; raises ValueError naming the problem.

    Tokens: yyyy MM M dd d HH H mm m ss s SSS (fraction) XXX (Z or +08:00); other
    characters are literal, a space matches any run of white space, ASCII letters
    must be quoted ('T'). Special patterns: iso8601, epoch_ms, epoch_s.
    """
    if text in SPECIAL_PATTERNS:
        return DatePattern(
            text, None, has_time=True, has_zone=text != "iso8601"
        )  # iso8601 may or may not carry an offset
    out: list[str] = []
    groups: set[str] = set()
    i = 0
    while i < len(text):
        if text[i] == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ValueError(f"unterminated quote in date pattern {text!r}")
            out.append(re.escape(text[i + 1 : end]) if end > i + 1 else "'")
            i = end + 1
            continue
        match = _TOKEN_RE.match(text, i)
        if match is not None:
            group, regex = _TOKENS[match.group()]
            if group in groups:
                raise ValueError(f"date pattern {text!r} repeats {match.group()!r}")
            groups.add(group)
            out.append(f"(?P<{group}>{regex})")
            i = match.end()
            continue
        char = text[i]
        if char.isascii() and char.isalpha():
            raise ValueError(
                f"date pattern {text!r}: letter {char!r} is not a token; quote "
                "literal letters like 'T'"
            )
        out.append(r"\s+" if char == " " else re.escape(char))
        i += 1
    if not {"y", "M", "d"} <= groups:
        raise ValueError(f"date pattern {text!r} needs yyyy, M(M) and d(d)")
    if ("s" in groups and "m" not in groups) or ("m" in groups and "H" not in groups):
        raise ValueError(f"date pattern {text!r} has minutes or seconds without hours")
    return DatePattern(
        text, re.compile("".join(out)), has_time="H" in groups, has_zone="z" in groups
    )


def zone(name: str) -> tzinfo:
    """``+08:00`` / ``-05:00`` / ``UTC`` / ``Z`` or an IANA name (Asia/Shanghai)."""
    if name in ("UTC", "Z"):
        return UTC
    match = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if match is not None:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta > timedelta(hours=14):
            raise ValueError(f"time zone offset {name!r} is out of range")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    sign, rest = text[0], text[1:].replace(":", "")
    delta = timedelta(hours=int(rest[:2]), minutes=int(rest[2:4] or 0))
    return timezone(-delta if sign == "-" else delta)


def _bad_date(value: str, why_en: str, why_zh: str) -> ValueProblem:
    return ValueProblem(
        "E_MAP_DATE", f"{shown(value)} {why_en}", f"{shown(value)} {why_zh}"
    )


def _epoch(value: str, pattern: str) -> datetime:
    text = halfwidth(value)
    digits = text[1:] if text[:1] == "-" else text
    if not (0 < len(digits) <= 16 and digits.isascii() and digits.isdigit()):
        raise _bad_date(value, f"is not a {pattern} number", f"不是 {pattern} 数值")
    unit = timedelta(milliseconds=1) if pattern == "epoch_ms" else timedelta(seconds=1)
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + int(text) * unit
    except OverflowError:
        moment = datetime(1, 1, 1, tzinfo=UTC)
    if moment.year not in _PLAUSIBLE_YEARS:
        raise _bad_date(
            value,
            f"as {pattern} is the year {moment.year}, which is not plausible",
            f"按 {pattern} 解释为 {moment.year} 年，不合理",
        )
    return moment


def parse_instant(
    value: str, patterns: tuple[DatePattern, ...], source_zone: tzinfo
) -> datetime | date:
    """A date (no time of day in the value) or an aware datetime.

    The first pattern that matches the whole value decides; a value that matches but
    names no real day or time is an error, never adjusted.
    """
    text = halfwidth(value)
    for pattern in patterns:
        if pattern.regex is None:
            if pattern.text == "iso8601":
                try:
                    moment = datetime.fromisoformat(text)
                except ValueError:
                    continue
                if "T" not in text and " " not in text and len(text) <= 10:
                    return moment.date()
                return moment if moment.tzinfo else moment.replace(tzinfo=source_zone)
            return _epoch(value, pattern.text)
        match = pattern.regex.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        try:
            day = date(int(parts["y"]), int(parts["M"]), int(parts["d"]))
            if not pattern.has_time:
                return day
            fraction = (parts.get("f") or "0")[:6].ljust(6, "0")
            moment = datetime(  # noqa: DTZ001 - the zone is set just below
                day.year,
                day.month,
                day.day,
                int(parts["H"]),
                int(parts.get("m") or 0),
                int(parts.get("s") or 0),
                int(fraction),
            )
        except ValueError as exc:
            raise _bad_date(
                value, f"is not a real date or time ({exc})", "不是真实存在的日期或时间"
            ) from None
        zone_text = parts.get("z")
        return moment.replace(tzinfo=_offset(zone_text) if zone_text else source_zone)
    accepted = ", ".join(p.text for p in patterns)
    raise _bad_date(
        value, f"matches none of the patterns {accepted}", f"不符合任何格式：{accepted}"
    )


_EIGHT_HOURS: Final = timedelta(hours=8)


def _is_beijing(zone: tzinfo) -> bool:
    """A fixed UTC+8 zone (Asia/Shanghai is not: it had summer time until 1991)."""
    return isinstance(zone, timezone) and zone.utcoffset(None) == timedelta(hours=8)


def national_time(
    value: str,
    patterns: tuple[DatePattern, ...],
    source_zone: tzinfo,
    *,
    output: Literal["date", "datetime"],
    date_only: str = "reject",
) -> str:
    """``yyyyMMdd`` or ``yyyyMMddHHmmss`` (Beijing time) for a source date/time.

    Values already in Beijing time are validated and re-assembled from their digits
    (the common case, and the fast one); anything else goes through datetime.
    Mappings compile this once per normaliser with :func:`time_converter`.
    """
    convert = time_converter(patterns, source_zone, output=output, date_only=date_only)
    return convert(value)


_Where: TypeAlias = tuple[int, int, int, int | None, int | None, int | None]
"""Positions of y, M, d, H, m, s in a pattern's match.groups()."""
_EPOCH_FAST: Final = range(315532800, 4102444800)
"""Epoch seconds of 1980-01-01 up to 2100-01-01 UTC: plausible, nothing to check."""
_REAL_DAYS: dict[str, bool] = {}
"""yyyyMMdd texts known to name a real day (bounded: cleared when it grows big)."""
_GENERAL_CACHE_SIZE: Final = 1024


@functools.lru_cache(maxsize=256)
def time_converter(
    patterns: tuple[DatePattern, ...],
    source_zone: tzinfo,
    *,
    output: Literal["date", "datetime"],
    date_only: str = "reject",
) -> Callable[[str], str]:
    """:func:`national_time` for fixed patterns and zone, as one function.

    What does not depend on the value is worked out here, once: the kind of the
    patterns, whether the zone is Beijing, where each field is in a match.  The
    common shapes (epoch numbers, Beijing wall-clock patterns) are then re-assembled
    from digits; everything else, and every error, takes the general path, so the
    results and messages are those of that path.
    """

    def general(value: str) -> str:
        return _national_time(value, patterns, source_zone, output, date_only)

    if not patterns:
        return general
    cut = 8 if output == "date" else 14
    if len(patterns) == 1 and patterns[0].text in ("epoch_ms", "epoch_s"):
        per_second = 1000 if patterns[0].text == "epoch_ms" else 1

        def epoch(value: str) -> str:
            if len(value) <= 16 and value.isdigit() and value.isascii():
                seconds = int(value) // per_second  # whole seconds, as datetime has
                if seconds in _EPOCH_FAST:
                    t = time.gmtime(seconds + 28800)  # Beijing: UTC+8, no DST
                    stamp = "%04d%02d%02d%02d%02d%02d" % t[:6]  # noqa: UP031 - faster
                    return stamp[:cut]
            return general(value)

        return epoch
    plans: list[tuple[re.Pattern[str], bool, _Where]] = []
    for pattern in patterns:
        if pattern.regex is None or pattern.has_zone:
            break  # from here on, only the general path knows what to do
        index = pattern.regex.groupindex  # y, M and d are in every pattern
        where = (
            index["y"] - 1,
            index["M"] - 1,
            index["d"] - 1,
            index["H"] - 1 if "H" in index else None,
            index["m"] - 1 if "m" in index else None,
            index["s"] - 1 if "s" in index else None,
        )
        plans.append((pattern.regex, pattern.has_time, where))
    if not plans or not _is_beijing(source_zone):
        return _memo(general)
    slow = _memo(general)
    date_out = output == "date"
    normalize = unicodedata.normalize

    def beijing(value: str) -> str:
        text = value if value.isascii() else normalize("NFKC", value)  # halfwidth
        for regex, has_time, (iy, imo, id_, ih, imi, is_) in plans:
            match = regex.fullmatch(text)
            if match is None:
                continue
            g = match.groups()
            y, mo, d = g[iy], g[imo], g[id_]
            if len(mo) == 1:
                mo = "0" + mo
            if len(d) == 1:
                d = "0" + d
            day = y + mo + d
            if day not in _REAL_DAYS and not _real_day(y, mo, d):
                break
            if not has_time:
                if date_out:
                    return day
                break  # date_only: the general path
            hh = g[ih] if ih is not None else "00"
            mi = g[imi] if imi is not None else "00"
            ss = g[is_] if is_ is not None else "00"
            if len(hh) == 1:
                hh = "0" + hh
            if len(mi) == 1:
                mi = "0" + mi
            if len(ss) == 1:
                ss = "0" + ss
            if hh > "23" or mi > "59" or ss > "59":
                break
            return day if date_out else day + hh + mi + ss
        return slow(value)

    return beijing


def _real_day(y: str, mo: str, d: str) -> bool:
    try:
        date(int(y), int(mo), int(d))
    except ValueError:
        return False
    if len(_REAL_DAYS) > 100_000:
        _REAL_DAYS.clear()
    _REAL_DAYS[y + mo + d] = True
    return True


def _memo(convert: Callable[[str], str]) -> Callable[[str], str]:
    """The general path with a small cache: a notice's time is the same for all of
    its items.  Errors are not cached (they are raised again)."""
    cache: dict[str, str] = {}

    def cached(value: str) -> str:
        found = cache.get(value)
        if found is None:
            found = convert(value)
            if len(cache) >= _GENERAL_CACHE_SIZE:
                cache.clear()
            cache[value] = found
        return found

    return cached


def _national_time(
    value: str,
    patterns: tuple[DatePattern, ...],
    source_zone: tzinfo,
    output: Literal["date", "datetime"],
    date_only: str,
) -> str:
    """The general path of :func:`national_time` (every pattern, zone and error)."""
    if patterns[0].text in ("epoch_ms", "epoch_s") and len(patterns) == 1:
        moment = _epoch(value, patterns[0].text) + _EIGHT_HOURS
        stamp = "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031 - faster than f-strings
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
        )
        return stamp[:8] if output == "date" else stamp
    if _is_beijing(source_zone):
        text = halfwidth(value)
        for pattern in patterns:
            if pattern.regex is None:
                break  # special patterns: the general path below
            match = pattern.regex.fullmatch(text)
            if match is None:
                continue
            if pattern.has_zone:
                break
            parts = match.groupdict()
            y, mo, d = parts["y"], parts["M"].zfill(2), parts["d"].zfill(2)
            hh = (parts.get("H") or "").zfill(2)
            mi = (parts.get("m") or "").zfill(2)
            ss = (parts.get("s") or "").zfill(2)
            try:
                date(int(y), int(mo), int(d))
            except ValueError as exc:
                raise _bad_date(
                    value,
                    f"is not a real date or time ({exc})",
                    "不是真实存在的日期或时间",
                ) from None
            if pattern.has_time and (hh > "23" or mi > "59" or ss > "59"):
                raise _bad_date(
                    value, "is not a real date or time", "不是真实存在的日期或时间"
                )
            if output == "date":
                return y + mo + d
            if not pattern.has_time:
                break  # date_only handling: the general path
            return y + mo + d + hh + mi + ss
    instant = parse_instant(value, patterns, source_zone)
    if output == "date":
        return to_date(instant)
    return to_datetime(instant, value, date_only=date_only)


def to_datetime(instant: datetime | date, value: str, *, date_only: str) -> str:
    """``yyyyMMddHHmmss`` in Beijing time."""
    if not isinstance(instant, datetime):
        if date_only != "midnight":
            raise _bad_date(
                value,
                "has no time of day (set date_only: midnight to accept 00:00:00)",
                "缺少时刻（如可取 00:00:00，请设置 date_only: midnight）",
            )
        return instant.strftime("%Y%m%d") + "000000"
    return instant.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def to_date(instant: datetime | date) -> str:
    """``yyyyMMdd``: a calendar date as written, or the Beijing date of an instant."""
    if isinstance(instant, datetime):
        return instant.astimezone(BEIJING).strftime("%Y%m%d")
    return instant.strftime("%Y%m%d")


# --- identifier checks ------------------------------------------------------------

CHECKS: Final[Mapping[str, Callable[[str], ids.Check]]] = {
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
    "date": ids.check_date,
    "datetime": ids.check_datetime,
}


def check(value: str, kind: str) -> str:
    """``value`` unchanged if it is a valid ``kind`` identifier."""
    result = CHECKS[kind](value)
    if result.ok:
        return value
    code = result.reason or "E_FORMAT"
    en, zh = ids.MESSAGES.get(code, (f"not a valid {kind}", f"不是有效的 {kind}"))
    if result.expected is not None:
        en += f" (expected check character {result.expected})"
        zh += f"（校验码应为 {result.expected}）"
    raise ValueProblem(code, f"{shown(value)}: {en}", f"{shown(value)}：{zh}")
