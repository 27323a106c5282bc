"""XML reader: encodings, namespaces, CDATA, items, limits, malformed input."""

from __future__ import annotations

import io

import pytest
from pydantic import ValidationError

from adapters.readers import InputRejected, XmlOptions, read_xml
from tests.adapters.readers.helpers import (
    Trickle,
    bilingual,
    first_bad_utf8,
    xml_view,
)

DOC = """<?xml version="1.0" encoding="{enc}"?>
<数据导出 系统="锡工建">
  <记录 序号="1"><类型>项目</类型><项目名称>梁溪区广益路（锡沪路—凤宾路）</项目名称></记录>
  <记录 序号="2"><类型>标段</类型><申报人>王䶮</申报人><金额>¥38,650,000.00</金额></记录>
</数据导出>
"""


def texts(data: bytes, options: XmlOptions | None = None) -> list[dict[str, str]]:
    return [
        {str(child.tag): child.text or "" for child in item.element}
        for item in read_xml(data, options)
    ]


def rejected(data: bytes, options: XmlOptions | None = None) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        for _ in read_xml(data, options):
            pass
    bilingual(info.value)
    return info.value


# --- encodings -------------------------------------------------------------------


@pytest.mark.parametrize("label", ["UTF-8", "GB18030", "gb18030"])
def test_declared_encodings_decode_to_the_same_text(label: str) -> None:
    data = DOC.format(enc=label).encode(label)
    rows = texts(data)
    assert rows[0]["项目名称"] == "梁溪区广益路（锡沪路—凤宾路）"
    assert rows[1]["申报人"] == "王䶮"  # a GB18030-only character
    assert rows[1]["金额"] == "¥38,650,000.00"


def gbk_doc(label: str) -> bytes:
    # GBK has neither 䶮 nor ¥; 镕 is GBK but not GB2312.
    doc = DOC.format(enc=label).replace("王䶮", "朱镕基").replace("¥", "￥")
    return doc.encode("gbk")


@pytest.mark.parametrize("label", ["GBK", "gbk", "GB2312", "cp936"])
def test_gbk_family(label: str) -> None:
    rows = texts(gbk_doc(label))
    assert rows[0]["项目名称"] == "梁溪区广益路（锡沪路—凤宾路）"
    assert rows[1]["申报人"] == "朱镕基"
    assert rows[1]["金额"] == "￥38,650,000.00"


def test_no_declaration_means_utf8_and_a_utf8_bom_is_accepted() -> None:
    body = DOC.format(enc="UTF-8").split("\n", 1)[1]
    assert texts(body.encode())[0]["类型"] == "项目"
    assert (
        texts(b"\xef\xbb\xbf" + DOC.format(enc="UTF-8").encode())[0]["类型"] == "项目"
    )


def test_bom_contradicting_the_declaration_is_refused() -> None:
    assert rejected(b"\xef\xbb\xbf" + gbk_doc("GBK")).code == "E_ENCODING"


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"])
def test_utf16_and_utf32_are_refused(bom: bytes) -> None:
    data = bom + DOC.format(enc="UTF-16").encode("utf-16-le")
    assert rejected(data).code == "E_ENCODING"


@pytest.mark.parametrize("label", ["ISO-8859-1", "Big5", "UTF-16", "x\\y"])
def test_unsupported_declared_encodings(label: str) -> None:
    exc = rejected(DOC.format(enc=label).encode("utf-8", "replace"))
    assert exc.code == "E_ENCODING"
    assert "not accepted" in exc.message_en


def test_accepted_encodings_can_be_narrowed() -> None:
    exc = rejected(gbk_doc("GBK"), XmlOptions(encodings=frozenset({"utf-8"})))
    assert exc.code == "E_ENCODING"


def test_bad_bytes_are_reported_by_offset_never_replaced() -> None:
    good = DOC.format(enc="UTF-8").encode()
    data = good.replace("王".encode(), b"\xe7\x8e")  # cut a character short
    exc = rejected(data)
    assert exc.code == "E_ENCODING"
    at = data.index(b"\xe7\x8e")
    assert exc.locator == f"byte offset {at}"


def test_declared_utf8_with_gb18030_bytes() -> None:
    data = DOC.format(enc="UTF-8").encode("gb18030")
    first_bad = first_bad_utf8(data)
    exc = rejected(data)
    assert exc.code == "E_ENCODING"
    assert exc.locator == f"byte offset {first_bad}"


def test_bad_bytes_across_chunk_boundaries() -> None:
    prefix = (
        b'<?xml version="1.0" encoding="GB18030"?><r>' + "中".encode("gb18030") * 40000
    )
    data = prefix + b"\x81\x20</r>"  # a lead byte followed by a space
    exc = rejected(data)
    assert exc.locator == f"byte offset {len(prefix)}"
    with pytest.raises(InputRejected) as info:
        list(read_xml(Trickle(data, (4099, 17))))
    assert info.value.locator == exc.locator


def test_character_cut_short_at_the_end() -> None:
    exc = rejected(b"<r>x</r>\xe4\xb8")
    assert exc.code == "E_ENCODING"
    assert "ends inside" in exc.message_en


def test_replacement_character_and_nul_are_refused() -> None:
    assert rejected("<r>\ufffd</r>".encode()).code == "E_ENCODING"
    exc = rejected(b"<r>a\x00b</r>")
    assert (exc.code, exc.locator) == ("E_BINARY", "byte offset 4")


# --- namespaces, CDATA, entities ----------------------------------------------------

NS_DEFAULT = b"""<kyqExport xmlns="urn:example:kyq" xmlns:u="urn:example:units">
  <items><item seq="1"><record field="a" value="1&#10;2" u:unit="km"/></item></items>
</kyqExport>"""
NS_PREFIX = b"""<k:kyqExport xmlns:k="urn:example:kyq" xmlns:x="urn:example:units">
  <k:items><k:item seq="1"><k:record field="a" value="1&#10;2" x:unit="km"/></k:item>
  </k:items></k:kyqExport>"""


def test_namespaces_are_resolved_by_uri_not_by_prefix() -> None:
    options = XmlOptions(
        item_depth=None, item_tags=frozenset({"{urn:example:kyq}item"})
    )
    items = iter(read_xml(NS_DEFAULT, options))
    one = next(items)
    assert one.tag == "{urn:example:kyq}item"
    assert one.namespace == "urn:example:kyq"
    assert one.local_name == "item"
    assert one.locator == (
        "/Q{urn:example:kyq}kyqExport[1]/Q{urn:example:kyq}items[1]"
        "/Q{urn:example:kyq}item[1]"
    )
    record = one.element[0]
    assert dict(record.attrib.items()) == {
        "field": "a",
        "value": "1\n2",
        "{urn:example:units}unit": "km",
    }
    mine = (one.locator, one.tag, dict(record.attrib.items()))
    assert list(items) == []
    other = [
        (i.locator, i.tag, dict(i.element[0].attrib.items()))
        for i in read_xml(NS_PREFIX, options)
    ]
    assert other == [mine]


def test_any_namespace_wildcard_and_plain_names() -> None:
    wildcard = XmlOptions(item_depth=None, item_tags=frozenset({"{*}item"}))
    assert len(list(read_xml(NS_PREFIX, wildcard))) == 1
    plain = XmlOptions(item_depth=None, item_tags=frozenset({"item"}))
    assert list(read_xml(NS_PREFIX, plain)) == []  # 'item' means no namespace


def test_cdata_is_text_and_entities_inside_stay_literal() -> None:
    data = (
        "<r><i><内容><![CDATA[<p>A &amp; B</p>]]></内容><x>&lt;&amp;&#x4E2D;</x></i></r>"
    ).encode()
    item = next(iter(read_xml(data)))
    assert item.element[0].text == "<p>A &amp; B</p>"
    assert item.element[1].text == "<&中"


def test_undefined_entity_is_malformed() -> None:
    exc = rejected(b"<r>\n<i>&xxe;</i></r>")
    assert exc.code == "E_XML_MALFORMED"
    assert exc.message_en == (
        "line 2, column 9: the XML is not well-formed: Entity 'xxe' not defined"
    )


# --- items --------------------------------------------------------------------------


def test_items_have_lines_and_positional_locators() -> None:
    data = DOC.format(enc="UTF-8").encode().replace(b"\n", b"\r\n")
    items = [(i.locator, i.line) for i in read_xml(data)]
    assert items == [("/数据导出[1]/记录[1]", 3), ("/数据导出[1]/记录[2]", 4)]


def test_positions_count_siblings_of_the_same_name() -> None:
    data = b"<r><a/><b/><a/><b/><a/></r>"
    assert [i.locator for i in read_xml(data)] == [
        "/r[1]/a[1]",
        "/r[1]/b[1]",
        "/r[1]/a[2]",
        "/r[1]/b[2]",
        "/r[1]/a[3]",
    ]


def test_items_by_tag_at_any_depth_do_not_nest() -> None:
    data = b"<r><n><item id='1'><item id='2'/></item></n><item id='3'/></r>"
    options = XmlOptions(item_depth=None, item_tags=frozenset({"item"}))
    assert [(i.element.get("id"), len(i.element)) for i in read_xml(data, options)] == [
        ("1", 1),
        ("3", 0),
    ]


def test_depth_and_tags_combined() -> None:
    data = b"<r><item id='1'><item id='2'/></item><x><item id='3'/></x></r>"
    options = XmlOptions(item_depth=3, item_tags=frozenset({"item"}))
    assert [i.element.get("id") for i in read_xml(data, options)] == ["2", "3"]


def test_items_are_cleared_and_detached_but_ancestors_stay_reachable() -> None:
    pad = b"x" * 1000
    records = b"".join(
        b"<rec n='%d'><v>%d</v>%s</rec>" % (n, n, pad) for n in range(2000)
    )
    data = b"<root export='x'>" + records + b"</root>"
    seen = []
    held = []
    sizes = []
    root = None
    for item in read_xml(data):
        root = item.element.getparent()
        assert root is not None
        assert root.get("export") == "x"
        sizes.append(len(root))  # this item, and what the current chunk parsed ahead
        seen.append(item.element.findtext("v"))
        held.append(item.element)
    assert seen == [str(n) for n in range(2000)]
    assert max(sizes) < 150  # a 64 KiB chunk holds about 64 of these items
    assert all(len(e) == 0 and not e.attrib and e.getparent() is None for e in held)
    assert root is not None
    assert len(root) == 0


def test_trickled_input_gives_the_same_items() -> None:
    data = DOC.format(enc="GB18030").encode("gb18030")
    expected = xml_view(read_xml(data))
    assert xml_view(read_xml(Trickle(data))) == expected
    assert xml_view(read_xml(io.BytesIO(data))) == expected


# --- malformed, empty, limits ------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"<r><a></b></r>", "line 1, column 11"),
        (b"<r><a>", "line 1, column 7"),
        (b"<r/><r/>", "line 1, column 5"),
        (b"<r/>trailing", "line 1, column 5"),
        (b"\n\n<r a='1' a='2'/>", "line 3, column 15"),
        (b"no xml at all", "line 1, column 1"),
    ],
)
def test_malformed_documents(data: bytes, where: str) -> None:
    exc = rejected(data)
    assert exc.code == "E_XML_MALFORMED"
    assert exc.locator == where


@pytest.mark.parametrize(
    "data", [b"", b"   \r\n\t", b"\xef\xbb\xbf", b'<?xml version="1.0"?>\n<!-- x -->\n']
)
def test_empty_documents(data: bytes) -> None:
    assert rejected(data).code == "E_EMPTY"


def test_endless_prolog_is_refused() -> None:
    data = b"<!--" + b"x" * (1024 * 1024 + 10) + b"--><r/>"
    exc = rejected(data)
    assert exc.code == "E_XML_MALFORMED"
    assert "prolog" in exc.message_en


def test_markup_declarations_outside_a_dtd_are_refused() -> None:
    exc = rejected(b'<!ENTITY x "y"><r/>')
    assert exc.code == "E_XML_MALFORMED"


def test_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        return b"<a>" * depth + b"</a>" * depth

    assert list(read_xml(nested(64))) != []
    exc = rejected(nested(65))
    assert exc.code == "E_XML_DEPTH"
    assert "64 levels" in exc.message_en
    assert rejected(nested(6), XmlOptions(max_depth=5)).code == "E_XML_DEPTH"


def test_item_size_limits() -> None:
    big = b"<r><i>" + b"<j>x</j>" * 20 + b"</i></r>"
    exc = rejected(big, XmlOptions(max_item_elements=10))
    assert exc.code == "E_XML_ITEM_TOO_LARGE"
    assert exc.locator == "/r[1]/i[1], line 1"
    text = b"<r><i>" + b"<j>" + b"x" * 300_000 + b"</j>" * 1 + b"</i></r>"
    assert rejected(text, XmlOptions(max_item_bytes=100_000)).code == (
        "E_XML_ITEM_TOO_LARGE"
    )


def test_tag_length_limit_stops_attribute_blow_up_before_lxml() -> None:
    attrs = b" ".join(b'a%d="1"' % n for n in range(40_000))
    exc = rejected(b"<r><i " + attrs + b"/></r>")
    assert exc.code == "E_XML_TAG_TOO_LARGE"
    assert list(read_xml(b"<r><i " + attrs[:50_000] + b"/></r>")) != []


def test_distinct_name_limit() -> None:
    data = b"<r>" + b"".join(b"<a%d/>" % n for n in range(30)) + b"</r>"
    exc = rejected(data, XmlOptions(max_names=20))
    assert (exc.code, exc.locator) == ("E_XML_TOO_MANY_NAMES", "/r[1], line 1")
    assert len(list(read_xml(data, XmlOptions(max_names=31)))) == 30


def test_item_count_and_input_size_limits() -> None:
    data = b"<r>" + b"<i/>" * 11 + b"</r>"
    assert rejected(data, XmlOptions(max_items=10)).code == "E_TOO_MANY_ROWS"
    exc = rejected(data, XmlOptions(max_input_bytes=20))
    assert (exc.code, exc.locator) == ("E_TOO_LARGE", "byte offset 20")
    with pytest.raises(InputRejected) as info:
        list(read_xml(io.BytesIO(data), XmlOptions(max_input_bytes=20)))
    assert info.value.code == "E_TOO_LARGE"


def test_options_are_frozen_and_strict() -> None:
    options = XmlOptions()
    with pytest.raises(ValidationError):
        options.max_depth = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        XmlOptions(max_dept=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        XmlOptions(item_depth=None)
    with pytest.raises(ValidationError):
        XmlOptions(item_depth=10, max_depth=5)
    assert XmlOptions.model_fields["max_depth"].description
