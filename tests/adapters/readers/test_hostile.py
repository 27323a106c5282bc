"""Hostile input: entity attacks, deep nesting, garbage, empty and 50 MB inputs."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

from adapters.readers import (
    CsvOptions,
    FixedField,
    FixedWidthOptions,
    InputRejected,
    JsonOptions,
    RecordLayout,
    RowError,
    read_csv,
    read_fixed_width,
    read_json,
    read_jsonl,
    read_xml,
)
from adapters.readers.xml_reader import _make_parser
from tests.adapters.readers.helpers import Trickle, bilingual
from tests.adapters.readers.rss_child import generate

ROOT = Path(__file__).resolve().parents[3]
FIXED = FixedWidthOptions(
    encoding="gb18030",
    layouts=(RecordLayout(fields=(FixedField(name="a", start=0, length=4),)),),
)
READERS: dict[str, Callable[[bytes], Iterator[object]]] = {
    "xml": lambda data: iter(read_xml(data)),
    "csv": lambda data: iter(read_csv(data)),
    "tsv": lambda data: iter(
        read_csv(data, CsvOptions(delimiter="\t", quotechar=None))
    ),
    "json": lambda data: iter(read_json(data, JsonOptions(require_object=False))),
    "jsonl": lambda data: iter(read_jsonl(data)),
    "fixed": lambda data: iter(read_fixed_width(data, FIXED)),
}


def doctype_rejected(data: bytes) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        list(read_xml(data))
    assert info.value.code == "E_XML_DOCTYPE"
    bilingual(info.value)
    return info.value


# --- entity attacks -----------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<lolz>&lol9;</lolz>"""


def test_billion_laughs() -> None:
    doctype_rejected(BILLION_LAUGHS)


def test_quadratic_blow_up() -> None:
    big = b"A" * 100_000
    data = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "'
        + big
        + b'">]><r>'
        + b"&a;" * 10_000
        + b"</r>"
    )
    doctype_rejected(data)


def test_xxe_etc_passwd() -> None:
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"\n<r>&xxe;</r>"
    )
    exc = doctype_rejected(data)
    assert exc.locator == "line 2, byte offset 22"
    assert "root:" not in exc.message_en


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!DOCTYPE r>",
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/x.dtd">',
        b'<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "x.dtd">',
        b'<!DOCTYPE r [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>',
        b"<!-- a comment -->\n<?pi x?>\n<!DOCTYPE r>",
        b"<!doctype r>",
        b"\xef\xbb\xbf<!DOCTYPE r>",
    ],
)
def test_every_doctype_is_refused(prolog: bytes) -> None:
    doctype_rejected(prolog + b"<r/>")
    with pytest.raises(InputRejected) as info:
        list(read_xml(Trickle(prolog + b"<r/>", (1,))))
    assert info.value.code == "E_XML_DOCTYPE"


def test_doctype_in_a_gb18030_document() -> None:
    data = '<?xml version="1.0" encoding="GB18030"?><!DOCTYPE 数据 []><数据/>'.encode(
        "gb18030"
    )
    doctype_rejected(data)


def lxml_parse(data: bytes) -> etree._Element:
    """The reader's lxml parser alone, without the prolog scan in front of it."""
    parser = _make_parser()
    parser.feed(data)
    return parser.close()


def test_second_lock_lxml_itself_reads_no_file(tmp_path: Path) -> None:
    """Even if a DOCTYPE got past the prolog scan, the parser settings hold."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    data = (
        f'<!DOCTYPE r [<!ENTITY file SYSTEM "{secret.as_uri()}">]><r><a>&file;</a></r>'
    ).encode()
    assert b"TOP-SECRET" not in etree.tostring(lxml_parse(data))


def test_second_lock_lxml_itself_never_connects() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.3)
        port = server.getsockname()[1]
        data = (
            f'<!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/x.dtd" ['
            f'<!ENTITY net SYSTEM "http://127.0.0.1:{port}/e">]>'
            "<r><b>&net;</b></r>"
        ).encode()
        with pytest.raises(etree.XMLSyntaxError, match="network"):  # no_network=True
            lxml_parse(data)
        with pytest.raises(TimeoutError):
            server.accept()
    with pytest.raises(InputRejected) as info:
        list(read_xml(data))
    assert info.value.code == "E_XML_DOCTYPE"


# --- nesting ----------------------------------------------------------------------


def test_ten_thousand_deep_nesting() -> None:
    deep_xml = b"<a>" * 10_000 + b"</a>" * 10_000
    with pytest.raises(InputRejected) as info:
        list(read_xml(deep_xml))
    assert info.value.code == "E_XML_DEPTH"
    deep_json = b"[" * 10_000 + b"]" * 10_000
    with pytest.raises(InputRejected) as info:
        list(read_json(deep_json))
    assert info.value.code == "E_JSON_DEPTH"
    deep_objects = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    got = list(read_jsonl(deep_objects + b"\n" + b'{"ok":1}\n'))
    assert isinstance(got[0], RowError)
    assert got[0].code == "E_JSON_DEPTH"
    assert not isinstance(got[1], RowError)


# --- garbage, empty, NUL -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(READERS))
def test_binary_garbage_is_rejected_cleanly(name: str) -> None:
    rng = random.Random(20261126)
    for size in (1, 7, 100, 5000, 100_000):
        data = rng.randbytes(size)
        rejected = None
        try:
            for item in READERS[name](data):
                assert not isinstance(item, BaseException)
        except InputRejected as exc:
            rejected = exc
        if rejected is not None:
            bilingual(rejected)


@pytest.mark.parametrize("name", sorted(READERS))
def test_empty_input(name: str) -> None:
    with pytest.raises(InputRejected) as info:
        list(READERS[name](b""))
    assert info.value.code == "E_EMPTY"
    assert info.value.message_zh.startswith("字节偏移 0：输入为空")


@pytest.mark.parametrize("name", sorted(READERS))
def test_nul_bytes_are_binary(name: str) -> None:
    with pytest.raises(InputRejected) as info:
        list(READERS[name](b"<a>1234\x00\n"))
    assert info.value.code == "E_BINARY"


# --- 50 MB inputs: peak RSS of a child process ------------------------------------

METER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('RSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
)
LIMIT_KB = 150 * 1024

# generator kind, reader kind, expected outcome
BIG = [
    ("xml", "xml", None),
    ("csv", "csv", None),
    ("csv_quoted", "csv_quoted", None),
    ("jsonl", "jsonl", None),
    ("json", "json", None),
    ("fixed", "fixed", None),
    ("xml_attributes", "xml", "E_XML_TAG_TOO_LARGE"),
    ("xml_text", "xml", "E_XML_MALFORMED"),
    ("xml_names", "xml", "E_XML_TOO_MANY_NAMES"),
    # The same through the item-filtered reader (items by tag), and two shapes
    # only it can get wrong: content that is never an item, an item never ending.
    ("xml", "xml_tags", None),
    ("xml_attributes", "xml_tags", "E_XML_TAG_TOO_LARGE"),
    ("xml_text", "xml_tags", "E_XML_MALFORMED"),
    ("xml_names", "xml_tags", "E_XML_TOO_MANY_NAMES"),
    ("xml_other", "xml_tags", "no_items"),
    ("xml_big_item", "xml_tags", "E_XML_ITEM_TOO_LARGE"),
    ("json_string", "json", "E_JSON_ITEM_TOO_LARGE"),
    ("jsonl_line", "jsonl", "row_error"),
    # an open quote: the C splitter's field limit (or else our row limit) stops it
    ("csv_open_quote", "csv_quoted", "E_CSV_FIELD_TOO_LONG"),
    ("csv_long_line", "csv_plain", "E_CSV_ROW_TOO_LARGE"),
]


@pytest.mark.slow
def test_fifty_megabyte_inputs_keep_memory_flat(tmp_path: Path) -> None:
    """Each reader reads a 50 MB file (normal, and hostile shapes) in its own child
    process; resource.getrusage(RUSAGE_CHILDREN).ru_maxrss of a small meter process
    gives that child's peak RSS, which must stay under 150 MB."""
    paths = []
    running = []
    try:
        for kind, reader, _ in BIG:
            path = tmp_path / f"{kind}.bin"
            if not path.exists():  # one file per shape, read by every reader
                generate(kind, path)
                assert path.stat().st_size >= 49 * 1024 * 1024
                paths.append(path)
            command = [
                sys.executable,
                "-c",
                METER,
                sys.executable,
                "-m",
                "tests.adapters.readers.rss_child",
                reader,
                str(path),
            ]
            running.append(
                subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            )
        report = {}
        for (kind, reader, expected), process in zip(BIG, running, strict=True):
            out, _ = process.communicate(timeout=240)
            result_line, rss_line = out.strip().splitlines()[-2:]
            result = json.loads(result_line)
            _, peak_kb, code = rss_line.split()
            assert code == "0", (kind, out)
            report[f"{kind}/{reader}"] = int(peak_kb) // 1024
            assert int(peak_kb) < LIMIT_KB, (kind, f"{int(peak_kb) // 1024} MB")
            if expected is None:
                assert result["rejected"] is None, (kind, result)
                assert result["row_errors"] == 0, (kind, result)
                assert result["items"] > 1000, (kind, result)
            elif expected == "no_items":
                assert result == {"items": 0, "row_errors": 0, "rejected": None}, (
                    kind,
                    result,
                )
            elif expected == "row_error":
                assert result["rejected"] is None, (kind, result)
                assert result["row_errors"] == 1, (kind, result)
            else:
                assert result["rejected"] == expected, (kind, result)
        print("peak RSS (MB):", report)
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
        for path in paths:
            path.unlink(missing_ok=True)
