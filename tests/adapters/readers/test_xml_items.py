"""The item-filtered XML reader (items by tag): lxml reports only the items, and the
limits are checked on finished subtrees.  It must read exactly what the element-
by-element reader reads, and refuse exactly what it refuses."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.mapping import load_mapping, shipped_mappings
from adapters.mapping.formats import XmlFormat
from adapters.readers import InputRejected, XmlItem, XmlOptions, read_xml, xml_reader
from tests.adapters.readers.helpers import SAMPLES, Trickle, bilingual

ROOT = Path(__file__).resolve().parents[3]
TAGS = XmlOptions(item_depth=None, item_tags=frozenset({"{*}i"}))
AT_2 = XmlOptions(item_tags=frozenset({"{*}i"}))  # depth 2 and tag

Outcome = tuple[str, list[tuple[str, int | None, bytes]]]


def outcome(items: Iterator[XmlItem]) -> Outcome:
    seen = []
    try:
        for item in items:
            if item.children is not None:  # what the reader hands over is right
                tags, kids = item.children
                assert kids == list(item.element)
                assert tags == [k.tag for k in kids]
                assert not any(len(k) for k in kids)
            seen.append((item.locator, item.line, etree.tostring(item.element)))
    except InputRejected as exc:
        bilingual(exc)
        return f"{exc.code} at {exc.locator}", seen
    return "ok", seen


def element_by_element(
    monkeypatch: pytest.MonkeyPatch, data: bytes | Trickle, options: XmlOptions
) -> Outcome:
    with monkeypatch.context() as m:
        m.setattr(
            xml_reader,
            "_reading",
            lambda opts, tags: (xml_reader._make_parser(), xml_reader._Walk(opts)),
        )
        return outcome(read_xml(data, options))


def item_filtered(data: bytes | Trickle, options: XmlOptions) -> Outcome:
    walks = []
    real = xml_reader._reading

    def spy(
        opts: XmlOptions, tags: list[str] | None
    ) -> tuple[etree.XMLPullParser, xml_reader._Walk | xml_reader._Items]:
        parser, walk = real(opts, tags)
        walks.append(walk)
        return parser, walk

    xml_reader._reading = spy  # type: ignore[assignment]
    try:
        got = outcome(read_xml(data, options))
    finally:
        xml_reader._reading = real
    assert all(isinstance(w, xml_reader._Items) for w in walks), "fast path not taken"
    return got


def same(monkeypatch: pytest.MonkeyPatch, data: bytes, options: XmlOptions) -> Outcome:
    """Both readers, whole and trickled: the same items, the same verdict.  (An
    item's tail is what was parsed when it ended: trickled, it may be shorter.)"""
    want = element_by_element(monkeypatch, data, options)
    got = item_filtered(data, options)
    assert got == want
    sizes = (1, 7, 4099)
    trickled = element_by_element(monkeypatch, Trickle(data, sizes), options)
    assert item_filtered(Trickle(data, sizes), options) == trickled
    assert trickled[0] == want[0]
    return got


# --- the same items ------------------------------------------------------------------


DOCS = [
    b"<r><i>1</i><i>2</i></r>",
    b"<r>\n <x/>\n <i n='1'><a>1</a><a/><b> 2 </b></i>\n <y/><i/>\n <x/></r>",
    b"<r><g><i>1</i><i>2</i></g><g><x/><i>3</i></g><i>4</i></r>",
    b"<r><i><i>nested</i><c><i/></c></i><i/></r>",
    b"<i><a/><b/></i>",  # the root is the item
    b"<r xmlns='urn:a' xmlns:k='urn:k'><i/><k:i/><x><i/></x></r>",
    b"<k:r xmlns:k='urn:k'><k:i>1</k:i></k:r>",
    b"<r><i><![CDATA[<p>&amp;</p>]]>&lt;&#x4E2D;</i></r>",
    b"<r><pre><deep><er/></deep></pre><i>x</i><post><deep/></post></r>",
    b"<r><i/><!-- c --><?pi x?><i/></r>",
    b"<r a='1'>text<i>1</i>tail<i>2</i>more</r>",
    b"<r>" + b"<x/>" * 3000 + b"<i>1</i>" + b"<y>z</y>" * 3000 + b"</r>",
    b"<r>" + b"<i><v>1</v><w>2</w></i>\r\n" * 3000 + b"</r>",
]


@pytest.mark.parametrize("data", DOCS)
@pytest.mark.parametrize("options", [TAGS, AT_2], ids=["tags", "depth+tags"])
def test_same_items_as_element_by_element(
    monkeypatch: pytest.MonkeyPatch, data: bytes, options: XmlOptions
) -> None:
    same(monkeypatch, data, options)


def test_positions_count_dropped_siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    status, items = same(monkeypatch, DOCS[2], TAGS)
    assert status == "ok"
    assert [i[0] for i in items] == [
        "/r[1]/g[1]/i[1]",
        "/r[1]/g[1]/i[2]",
        "/r[1]/g[2]/i[1]",
        "/r[1]/i[1]",
    ]


def test_gb18030_and_namespaces_by_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (
        '<?xml version="1.0" encoding="GB18030"?>\n'
        '<数据 xmlns:x="urn:x"><x:记录><名称>王䶮</名称></x:记录><记录/></数据>'
    ).encode("gb18030")
    options = XmlOptions(item_tags=frozenset({"{urn:x}记录"}))
    status, items = same(monkeypatch, doc, options)
    assert status == "ok"
    assert [i[0] for i in items] == ["/数据[1]/Q{urn:x}记录[1]"]
    for item in read_xml(doc, options):  # children are valid until the next item
        assert item.children is not None
        assert item.children[0] == ["名称"]
        assert item.children[1][0].text == "王䶮"  # a GB18030-only character


@pytest.mark.parametrize("label", ["GBK", "GB2312", "GB18030", "UTF-8"])
def test_declared_encodings(monkeypatch: pytest.MonkeyPatch, label: str) -> None:
    doc = f'<?xml version="1.0" encoding="{label}"?>\n<根><i>梁溪区</i></根>'
    status, items = same(monkeypatch, doc.encode(label), TAGS)
    assert (status, [i[1] for i in items]) == ("ok", [2])


def test_items_are_cleared_and_detached() -> None:
    records = b"".join(
        b"<i n='%d'><v>%d</v>%s</i>" % (n, n, b"x" * 900) for n in range(2000)
    )
    root = None
    sizes = []
    held = []
    for item in read_xml(b"<root><head/>" + records + b"<tail/></root>", TAGS):
        root = item.element.getparent()
        assert root is not None
        sizes.append(len(root))
        assert item.element.getprevious() is None  # what came before is gone
        held.append(item.element)
    assert len(held) == 2000
    assert max(sizes) < 150
    assert all(len(e) == 0 and e.getparent() is None for e in held)


# --- refused alike -----------------------------------------------------------------


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!DOCTYPE r>",
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">',
        b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
        b"<!-- c -->\n<!doctype r>",
        b"\xef\xbb\xbf<!DOCTYPE r>",
    ],
)
def test_doctype_is_refused(prolog: bytes) -> None:
    for source in (prolog + b"<r><i/></r>", Trickle(prolog + b"<r><i/></r>", (1,))):
        with pytest.raises(InputRejected) as info:
            list(read_xml(source, TAGS))
        assert info.value.code == "E_XML_DOCTYPE"


def test_parser_settings_hold_with_a_tag_filter(tmp_path: Path) -> None:
    """Even if a DOCTYPE got past the prolog scan, the filtered parser loads
    nothing: no entity, no DTD, no network."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    parser = xml_reader._make_parser(["{*}i", "{*}r"])
    parser.feed(
        f'<!DOCTYPE r [<!ENTITY f SYSTEM "{secret.as_uri()}">]><r><i>&f;</i></r>'.encode()
    )
    root = parser.close()
    assert b"TOP-SECRET" not in etree.tostring(root)


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"<a>" * depth + inner + b"</a>" * depth


@pytest.mark.parametrize(
    ("data", "options"),
    [
        (nested(64), TAGS),  # no item at all, just deep: accepted
        (nested(65), TAGS),  # too deep outside items
        (b"<r>" + nested(63) + b"<i/></r>", TAGS),
        (b"<r><i>" + nested(62) + b"</i></r>", TAGS),  # 64 levels: accepted
        (b"<r><i>" + nested(63) + b"</i></r>", TAGS),  # too deep inside an item
        (b"<r><i/>" + nested(70) + b"<i/></r>", TAGS),
        (b"<r><i>" + nested(6) + b"</i></r>", TAGS.model_copy(update={"max_depth": 5})),
        (nested(10_000), TAGS),  # libxml2 stops first; reported as our limit
        (b"<r><i>" + nested(10_000) + b"</i></r>", TAGS),
        (b"<i>" + nested(10_000) + b"</i>", TAGS),
    ],
)
def test_depth(
    monkeypatch: pytest.MonkeyPatch, data: bytes, options: XmlOptions
) -> None:
    status, _ = same(monkeypatch, data, options)
    assert status == "ok" or status.startswith("E_XML_DEPTH")


def test_ten_thousand_deep_is_rejected_as_depth() -> None:
    for data in (nested(10_000), b"<r><i>" + nested(10_000) + b"</i></r>"):
        with pytest.raises(InputRejected) as info:
            list(read_xml(data, TAGS))
        assert info.value.code == "E_XML_DEPTH"
        assert "64 levels" in info.value.message_en


@pytest.mark.parametrize(
    ("data", "update", "code"),
    [
        (
            b"<r><i>" + b"<j>x</j>" * 20 + b"</i></r>",
            {"max_item_elements": 10},
            "elements",
        ),
        (
            b"<r><i><j>" + b"<k/>" * 20 + b"</j></i></r>",
            {"max_item_elements": 10},
            "elements",
        ),
        (b"<r><i>" + b"<j/>" * 9 + b"</i></r>", {"max_item_elements": 10}, None),
        (b"<r><i>" + b"<j/>" * 10 + b"</i></r>", {"max_item_elements": 10}, "elements"),
        (
            b"<r><i><j>" + b"x" * 300_000 + b"</j></i></r>",
            {"max_item_bytes": 100_000},
            "bytes",
        ),
        (
            b"<r><i>" + b"<j>y</j>" * 40_000 + b"</i></r>",
            {"max_item_bytes": 100_000},
            "bytes",
        ),
        (b"<r>" + b"<i/>" * 11 + b"</r>", {"max_items": 10}, "rows"),
        (
            b"<r>" + b"".join(b"<a%d/>" % n for n in range(30)) + b"</r>",
            {"max_names": 20},
            "names",
        ),
        (
            b"<r><i>" + b"".join(b"<a%d/>" % n for n in range(30)) + b"</i></r>",
            {"max_names": 20},
            "names",
        ),
    ],
)
def test_item_limits(
    monkeypatch: pytest.MonkeyPatch,
    data: bytes,
    update: dict[str, int],
    code: str | None,
) -> None:
    status, _ = same(monkeypatch, data, TAGS.model_copy(update=update))
    wanted = {
        None: "ok",
        "elements": "E_XML_ITEM_TOO_LARGE",
        "bytes": "E_XML_ITEM_TOO_LARGE",
        "rows": "E_TOO_MANY_ROWS",
        "names": "E_XML_TOO_MANY_NAMES",
    }[code]
    assert status.startswith(wanted)


def test_an_open_item_is_limited_while_it_is_read() -> None:
    """Element count and depth of an item still open are checked after every chunk:
    a huge item is refused long before it is complete."""
    fed = []

    class Source:
        def __init__(self) -> None:
            self.sent = 0

        def read(self, size: int, /) -> bytes:
            if self.sent == 0:
                self.sent = 1
                return b"<r><i>"
            self.sent += 1
            fed.append(self.sent)
            return b"<j/>" * (size // 4)

    with pytest.raises(InputRejected) as info:
        list(read_xml(Source(), TAGS))
    assert info.value.code == "E_XML_ITEM_TOO_LARGE"
    assert len(fed) < 10  # 100,000 elements: a few 64 KiB chunks


@pytest.mark.parametrize(
    "data",
    [
        b"<r><i>1</i>",
        b"<r><i></r>",
        b"<r><i/></r><r/>",
        b"<r><i/></r>trailing",
        b"\n\n<r><i a='1' a='2'/></r>",
        b"<r><i>&xxe;</i></r>",
        b"<r\x0b><i/></r>",  # not a name: the element-by-element reader takes it
        b"<:r><i/></:r>",
        b"<a:b:c><i/></a:b:c>",
        b"<" + b"r" * 2000 + b"><i/></" + b"r" * 2000 + b">",
    ],
)
def test_malformed_alike(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    want = element_by_element(monkeypatch, data, TAGS)
    assert outcome(read_xml(data, TAGS)) == want
    assert outcome(read_xml(Trickle(data, (1, 3)), TAGS)) == want


# --- the shipped samples through the mappings' own options -------------------------


def mapping_options(name: str) -> XmlOptions:
    fmt = load_mapping(shipped_mappings()[name]).format
    assert isinstance(fmt, XmlFormat)
    return fmt.options


SAMPLE_FILES = [
    (name, path)
    for name in ("wuxi-construction-xml", "taizhou-mining-xml")
    for base in (SAMPLES, ROOT / "config" / "demo" / "samples")
    for path in sorted((base / name).glob("*.xml"))
]


@pytest.mark.skipif(not SAMPLE_FILES, reason="no samples")
@pytest.mark.parametrize(("name", "path"), SAMPLE_FILES, ids=lambda x: str(x)[-30:])
def test_samples_give_the_same_items(
    monkeypatch: pytest.MonkeyPatch, name: str, path: Path
) -> None:
    options = mapping_options(name)
    assert options.item_tags  # the mappings ask for items by tag
    status, items = same(monkeypatch, path.read_bytes(), options)
    assert status == "ok"
    assert items


# --- generated documents ------------------------------------------------------------

NAMES = ["i", "a", "b", "k:i", "k:a"]
TEXTS = ["", "x", " 中 ", "&amp;", "<![CDATA[<>]]>", "\r\n", "\n" * 3 + "y" * 70]


def element(kids: st.SearchStrategy[list[str]]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda name, attrs, inner, tail: (
            f"<{name}{attrs}>{''.join(inner)}{tail}</{name}>"
        ),
        st.sampled_from(NAMES),
        st.sampled_from(["", " n='1'", " xmlns:k='urn:k'", " k:n='2'"]),
        kids,
        st.sampled_from(TEXTS),
    )


TREES = st.recursive(
    element(st.just([])),
    lambda inner: element(st.lists(inner, max_size=4)),
    max_leaves=25,
)


LIMITED = st.builds(
    XmlOptions,
    item_depth=st.sampled_from([None, 2, 3]),
    item_tags=st.sampled_from(
        [frozenset({"{*}i"}), frozenset({"i"}), frozenset({"{urn:k}i", "{*}a"})]
    ),
    max_depth=st.integers(3, 8),
    max_item_bytes=st.sampled_from([16 << 20, 40, 200]),
    max_item_elements=st.integers(1, 6),
    max_names=st.integers(2, 6),
    max_items=st.integers(1, 8),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=TREES, options=LIMITED, sizes=st.lists(st.integers(1, 9), min_size=1))
def test_generated_documents(body: str, options: XmlOptions, sizes: list[int]) -> None:
    data = f"<r xmlns:k='urn:k'>{body}</r>".encode()
    with pytest.MonkeyPatch.context() as monkeypatch:
        want = element_by_element(monkeypatch, data, options)
        trickled = element_by_element(monkeypatch, Trickle(data, sizes), options)
    assert item_filtered(data, options) == want
    assert item_filtered(Trickle(data, sizes), options) == trickled


def test_binary_file_object_and_bytes_agree() -> None:
    data = DOCS[-1]
    assert outcome(read_xml(io.BytesIO(data), TAGS)) == outcome(read_xml(data, TAGS))
