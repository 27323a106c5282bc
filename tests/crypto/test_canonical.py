"""canonical_plain (orjson) gives canonical_json's bytes for every float-free tree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import canonical_json, canonical_plain

# Every code point but lone surrogates (not encodable as UTF-8 by either).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
LEAF = (
    TEXT
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | st.none()
)
TREE = st.recursive(
    LEAF,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(TEXT, kids, max_size=6),
    max_leaves=40,
)


@settings(max_examples=1500, deadline=None)
@given(TREE)
def test_same_bytes_as_the_definition(tree: object) -> None:
    assert canonical_plain(tree) == canonical_json(tree)


def test_every_control_character_and_key_order() -> None:
    chars = [chr(c) for c in range(0x100)] + [
        "\u2028",
        "\ufeff",
        "\uffff",
        "\U0010ffff",
    ]
    doc = {c: c + '"\\' for c in chars}
    assert canonical_plain(doc) == canonical_json(doc)


@pytest.mark.parametrize(
    "tree",
    [
        2**64,  # beyond orjson's integers: the general path
        {"a": [-(2**70)]},
        {1: "x"},  # json turns an int key into text; so must we
    ],
)
def test_what_orjson_refuses_goes_the_general_way(tree: object) -> None:
    assert canonical_plain(tree) == canonical_json(tree)


def test_a_lone_surrogate_fails_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"a": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        canonical_plain({"a": "\ud800"})


def test_canonical_json_is_sorted_compact_utf8() -> None:
    out = canonical_plain({"b": "中", "a": [1, True, None]})
    assert out == '{"a":[1,true,null],"b":"中"}'.encode()
    assert json.loads(out) == {"b": "中", "a": [1, True, None]}


def test_results_hold_no_more_memory_than_their_bytes() -> None:
    """orjson hands back its whole grown buffer; a spool or a hub keeps thousands of
    records, so canonical_plain returns exact-size bytes."""
    import tracemalloc

    doc = {
        "dataset": "PROJECT",
        "fields": {f"F{i}": "演示工程（城市建设）" for i in range(30)},
    }
    size = len(canonical_plain(doc))
    tracemalloc.start()
    try:
        kept = [canonical_plain(doc) for _ in range(1000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == 1000
    assert held < 1000 * (size + 200), (
        f"{held / 1000:.0f} bytes held per {size}-byte result"
    )
