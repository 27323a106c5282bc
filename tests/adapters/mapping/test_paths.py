"""The source path language (adapters.mapping.paths)."""

from __future__ import annotations

import pytest

from adapters.mapping.paths import PathSyntaxError, Predicate, Step, parse_path


def test_simple_names() -> None:
    path = parse_path("项目编号")
    assert path.steps == (Step("child", "项目编号"),)
    assert path.simple
    assert not path.absolute
    assert path.context is None


def test_absolute_attribute_and_parent() -> None:
    path = parse_path("/数据导出/@导出时间")
    assert path.absolute
    assert path.steps == (Step("child", "数据导出"), Step("attr", "导出时间"))
    assert not path.simple
    up = parse_path("../../cgxmbh")
    assert [s.kind for s in up.steps] == ["parent", "parent", "child"]


def test_predicates() -> None:
    path = parse_path("record[@field='矿区面积']/@unit")
    assert path.steps[0].predicates == (Predicate("field", True, "=", "矿区面积"),)
    bare = parse_path('gys[zbbz=1][bjxs!="fl"][gysdm]/gysmc')
    assert bare.steps[0].predicates == (
        Predicate("zbbz", False, "=", "1"),
        Predicate("bjxs", False, "!=", "fl"),
        Predicate("gysdm", False, "exists", ""),
    )


def test_context_and_wildcard_and_quoted_names() -> None:
    path = parse_path('$notice/*/"a/b"')
    assert path.context == "notice"
    assert path.steps == (Step("any"), Step("child", "a/b"))
    assert parse_path("k:item").steps == (Step("child", "k:item"),)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("", 0),
        ("a//b", 2),
        ("a/", 2),
        ("a[", 2),
        ("a[b='x]", 5),
        ("@x/y", 3),
        ("a]b", 1),
        ('"', 1),
        ("$", 1),
        ("a[=1]", 2),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path(text)
    assert info.value.position == position
    assert repr(text) in str(info.value)
