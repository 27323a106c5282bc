"""Properties and fuzzing of the mapping engine (and, through it, the readers).

Whatever the input bytes, a shipped mapping yields national records and
``RecordRejected`` values or raises ``InputRejected``, and nothing else; whatever
the mapping text, loading it succeeds or raises ``MappingError``. A few hundred
examples run in the normal suite; run longer with
``GATEWAY_FUZZ_EXAMPLES=20000 .venv/bin/pytest --timeout 0 tests/adapters/mapping/test_properties.py``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adapters.base import NationalRecord, RawInput, RecordRejected
from adapters.mapping import MappingError, load_mapping, shipped_mappings
from adapters.mapping import normalizers as nz
from adapters.mapping.engine import CompiledMapping
from adapters.mapping.model import NORMALISERS
from adapters.mapping.paths import PathSyntaxError, parse_path
from adapters.readers import InputRejected

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "feeds"
MAPPINGS: dict[str, CompiledMapping] = {
    name: load_mapping(path) for name, path in shipped_mappings().items()
}
GOOD = {
    name: [p.read_bytes() for p in sorted((FEEDS / name / "good").iterdir())]
    for name in MAPPINGS
}


def _refused(kind: type[E], fn: Callable[[], T]) -> T | E:
    """What fn returns, or the exception of the allowed kind it raised."""
    try:
        return fn()
    except kind as exc:
        return exc


def drain(
    mapping: CompiledMapping, data: bytes
) -> list[NationalRecord | RecordRejected]:
    """Everything the mapping yields; InputRejected is the only allowed exception."""
    refused = _refused(
        InputRejected, lambda: list(mapping.parse(RawInput(source="fuzz", data=data)))
    )
    if isinstance(refused, InputRejected):
        assert refused.code
        assert refused.message_en
        return []
    items = refused
    for item in items:
        assert isinstance(item, NationalRecord | RecordRejected)
        if isinstance(item, NationalRecord):
            for key, value in item.fields.items():
                assert isinstance(value, str)
                assert value, key
                assert "\ufffd" not in value
        else:
            assert item.code
            assert item.message_en.startswith(item.locator)
    return items


# --- whole mappings over hostile bytes ---------------------------------------------


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)), st.binary(max_size=2000))
def test_random_bytes(name: str, data: bytes) -> None:
    drain(MAPPINGS[name], data)


@FUZZ
@given(st.sampled_from(sorted(MAPPINGS)), st.randoms(use_true_random=False))
def test_mutated_golden_files(name: str, rng: random.Random) -> None:
    data = bytearray(rng.choice(GOOD[name]))
    for _ in range(rng.randint(1, 8)):
        if not data:
            break
        action = rng.random()
        at = rng.randrange(len(data))
        if action < 0.4:
            data[at] = rng.randrange(256)
        elif action < 0.6:
            del data[at : at + rng.randint(1, 40)]
        elif action < 0.8:
            data[at:at] = rng.choice(
                [b"<", b">", b"\t", b'"', b"\n", b"\xff", b"{", b"&"]
            )
        else:
            data = data[: rng.randint(0, len(data))]
    drain(MAPPINGS[name], bytes(data))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.decimals(allow_nan=False, allow_infinity=False, places=4)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bj", "zbbz", "gysdm", "xzqh", "x"]), inner, max_size=4
        )
    ),
    max_leaves=20,
)
NANTONG_KEYS = [
    "sjlx",
    "cgxmbh",
    "cgxmmc",
    "cgrdm",
    "dljgdm",
    "ysje",
    "gdzc",
    "sfppp",
    "cjsj",
    "bao",
    "bbh",
    "jybsm",
    "xzqh",
    "jydq",
    "fbsj",
    "gys",
    "jgzt",
    "tzxmdm",
]


def _encode(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


@settings(FUZZ, max_examples=max(25, EXAMPLES // 4))
@given(
    st.lists(
        st.fixed_dictionaries(
            {"sjlx": st.sampled_from(["cgxm", "cjgg", "x"])},
            optional={k: JSON_VALUES for k in NANTONG_KEYS if k != "sjlx"},
        ),
        min_size=1,
        max_size=4,
    )
)
def test_nantong_structures(lines: list[dict[str, object]]) -> None:
    data = "".join(
        json.dumps(_encode(line), ensure_ascii=False) + "\n" for line in lines
    )
    drain(MAPPINGS["nantong-procurement-json"], data.encode())


# --- paths and normalisers ----------------------------------------------------------


@FUZZ
@given(st.text(alphabet="ab/[]@'\"=!*.$:项 ", max_size=20))
def test_paths_parse_or_say_where(text: str) -> None:
    path = _refused(PathSyntaxError, lambda: parse_path(text))
    if isinstance(path, PathSyntaxError):
        assert 0 <= path.position <= len(text)
    else:
        assert path.text == text


@FUZZ
@given(st.text(max_size=40), st.sampled_from(["元", "万元", "分"]))
def test_money_never_crashes_and_is_canonical(text: str, unit: str) -> None:
    out = _refused(nz.ValueProblem, lambda: nz.money(text, unit=unit))
    if isinstance(out, nz.ValueProblem):
        assert out.code in {"E_MAP_NUMBER", "E_MAP_NEGATIVE"}
    else:
        assert out == nz.canonical_decimal(Decimal(out))
        assert "E" not in out


@FUZZ
@given(
    st.decimals(
        min_value=Decimal("-99999999999999"),
        max_value=Decimal("99999999999999"),
        places=2,
        allow_nan=False,
    )
)
def test_money_reads_what_accountants_write(number: Decimal) -> None:
    written = f"¥{number:,.2f}"
    assert nz.money(written) == nz.canonical_decimal(number)
    if number < 0:
        assert nz.money(written).startswith("-")  # the sign is never dropped


PATTERNS = {
    "yyyy年MM月dd日 HH时mm分ss秒": "%Y年%m月%d日 %H时%M分%S秒",
    "yyyy-MM-dd HH:mm:ss": "%Y-%m-%d %H:%M:%S",
    "yyyyMMddHHmmss": "%Y%m%d%H%M%S",
    "yyyy/MM/dd HH:mm:ss": "%Y/%m/%d %H:%M:%S",
}


@FUZZ
@given(
    st.datetimes(  # naive on purpose: wall-clock times as a source writes them
        min_value=datetime(1990, 1, 1),  # noqa: DTZ001
        max_value=datetime(2099, 12, 31),  # noqa: DTZ001
    ),
    st.sampled_from(sorted(PATTERNS)),
)
def test_datetimes_round_trip(moment: datetime, pattern: str) -> None:
    moment = moment.replace(microsecond=0)
    text = moment.strftime(PATTERNS[pattern])
    compiled = (nz.compile_date_pattern(pattern),)
    got = nz.national_time(text, compiled, nz.BEIJING, output="datetime")
    assert got == moment.strftime("%Y%m%d%H%M%S")
    # The same instant written in UTC comes back in Beijing time.
    utc = nz.national_time(text, compiled, nz.zone("UTC"), output="datetime")
    assert utc == (moment + timedelta(hours=8)).strftime("%Y%m%d%H%M%S")


@FUZZ
@given(st.integers(1990, 2099), st.integers(0, 13), st.integers(0, 32))
def test_impossible_days_are_errors(year: int, month: int, day: int) -> None:
    assume(isinstance(_refused(ValueError, lambda: date(year, month, day)), ValueError))
    text = f"{year:04d}{month:02d}{day:02d}"
    compiled = (nz.compile_date_pattern("yyyyMMdd"),)
    with pytest.raises(nz.ValueProblem) as info:
        nz.national_time(text, compiled, nz.BEIJING, output="date")
    assert info.value.code == "E_MAP_DATE"


@FUZZ
@given(st.text(max_size=30), st.sampled_from(sorted(nz.CHECKS)))
def test_checks_and_text_normalisers_never_crash(text: str, kind: str) -> None:
    for fn in (nz.trim, nz.halfwidth):
        assert isinstance(fn(text), str)
    checked = _refused(nz.ValueProblem, lambda: nz.check(text, kind))
    assert checked == text or (
        isinstance(checked, nz.ValueProblem) and checked.code.startswith("E_")
    )
    word = _refused(
        nz.ValueProblem,
        lambda: nz.boolean(text, nz.TRUE_WORDS, nz.FALSE_WORDS, "1", "0"),
    )
    assert word in ("1", "0") or (
        isinstance(word, nz.ValueProblem) and word.code == "E_MAP_BOOLEAN"
    )


# --- mapping documents ----------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "path",
        "const",
        "concat",
        "first_of",
        "default",
        "normalize",
        "when",
        "dataset",
        "fields",
        "records",
        "input",
        "format",
        "for_each",
        "group_by",
        "skip",
        "equals",
        "in",
        "present",
        "all",
        "any",
        "not",
        "aggregate",
        "meta",
        "setting",
        "xpath",
        "BODY_NAME",
        "BODY_CODE",
        "AWARD_INFO",
        "x",
        "1",
        "",
        *NORMALISERS,
    ]
)
DOCS = st.recursive(
    st.none() | WORDS | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(WORDS, inner, max_size=4)
    ),
    max_leaves=25,
)


@FUZZ
@given(DOCS)
def test_any_mapping_document_loads_or_is_explained(doc: object) -> None:
    base: dict[str, object] = {
        "version": "1",
        "name": "fuzz",
        "timezone": "+08:00",
        "input": {"format": "jsonl"},
        "records": [
            {"dataset": "AWARD_INFO", "fields": {"BODY_NAME": "n", "BODY_CODE": "c"}}
        ],
    }
    variants: list[object] = [doc]
    if isinstance(doc, dict):
        variants.append(base | {"records": [doc]})
        variants.append(base | {"records": [{"dataset": "AWARD_INFO", "fields": doc}]})
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fuzz-mapping-{os.getpid()}.yaml"
    try:
        for variant in variants:
            path.write_text(
                yaml.safe_dump(variant, allow_unicode=True), encoding="utf-8"
            )
            mapping = _refused(MappingError, lambda: load_mapping(path))
            if isinstance(mapping, MappingError):
                assert mapping.problems
                assert all(str(p).startswith(str(path)) for p in mapping.problems)
                continue
            drain(mapping, b'{"n": "a", "c": "b", "x": [1, {"y": 2}]}\n')
    finally:
        path.unlink(missing_ok=True)
