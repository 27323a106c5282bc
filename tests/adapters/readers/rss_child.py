"""Generators for large inputs, and a child program that reads one of them.

``python -m tests.adapters.readers.rss_child KIND PATH`` reads the file at PATH with
the reader for KIND through a binary file object and prints one JSON line:
``{"items": n, "row_errors": n, "rejected": code | null}``.
The parent measures the child's peak RSS.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from adapters.readers import (
    CsvOptions,
    FixedField,
    FixedWidthOptions,
    InputRejected,
    RecordLayout,
    RowError,
    XmlOptions,
    read_csv,
    read_fixed_width,
    read_json,
    read_jsonl,
    read_xml,
)
from adapters.readers._source import BinarySource

MB = 1024 * 1024
SIZE = 50 * MB

# Realistic record sizes (a few hundred bytes to 1 KB, like the sample exports).
_FIXED_FIELDS = (
    ("id", 1, 12),
    ("name", 13, 60),
    ("address", 73, 80),
    ("region", 153, 6),
    ("amount", 159, 16),
    ("date", 175, 8),
    ("flag", 183, 1),
    ("note", 184, 40),
)
FIXED = FixedWidthOptions(
    encoding="gbk",
    code_length=1,
    layouts=(
        RecordLayout(
            code="D",
            fields=tuple(
                FixedField(name=n, start=s, length=w) for n, s, w in _FIXED_FIELDS
            ),
        ),
    ),
    header=RecordLayout(code="H", fields=(FixedField(name="date", start=1, length=8),)),
    trailer=RecordLayout(
        code="T", fields=(FixedField(name="n", start=1, length=8),), count_field="n"
    ),
)
XML_TAGS = XmlOptions(item_depth=None, item_tags=frozenset({"{*}记录", "{*}i"}))
_TEXT = "梁溪区广益路（锡沪路—凤宾路）道路改造工程施工，含道路、排水、照明及绿化"

READERS: dict[str, Callable[[BinarySource], Iterator[object]]] = {
    "xml": lambda f: iter(read_xml(f)),
    # Items by tag: lxml reports only these elements (the item-filtered reader).
    "xml_tags": lambda f: iter(read_xml(f, XML_TAGS)),
    "csv": lambda f: iter(
        read_csv(f, CsvOptions(delimiter="\t", quotechar=None, header_rows=2))
    ),
    "csv_quoted": lambda f: iter(read_csv(f)),
    "csv_plain": lambda f: iter(read_csv(f, CsvOptions(quotechar=None))),
    "jsonl": lambda f: iter(read_jsonl(f)),
    "json": lambda f: iter(read_json(f)),
    "fixed": lambda f: iter(read_fixed_width(f, FIXED)),
}


def _repeat(path: Path, head: bytes, block: bytes, tail: bytes, size: int) -> int:
    """Write head, block repeated up to about ``size`` bytes, tail; return repeats."""
    count = max(1, (size - len(head) - len(tail)) // len(block))
    with path.open("wb") as f:
        f.write(head)
        for _ in range(count):
            f.write(block)
        f.write(tail)
    return count


def generate(kind: str, path: Path, size: int = SIZE) -> None:
    """Write a large input of the given kind (normal or hostile)."""
    if kind == "xml":
        record = "".join(
            f"<字段{i}>梁溪区广益路道路改造工程 {i} ¥38,650,000.00</字段{i}>\r\n"
            for i in range(20)
        )
        block = f'<记录 序号="1">\r\n{record}</记录>\r\n'.encode("gb18030") * 40
        head = '<?xml version="1.0" encoding="GB18030"?>\r\n<数据导出>\r\n'.encode(
            "gb18030"
        )
        _repeat(path, head, block, "</数据导出>\r\n".encode("gb18030"), size)
    elif kind == "csv":  # xuzhou-like: TSV, 2 header rows, 24 columns
        names = "\t".join(f"C{i:02}" for i in range(24))
        head = f"\ufeff{names}\r\n{names}\r\n".encode()
        row = "\t".join(
            [f"XZTD-GG-2026-{i:03}" if i % 3 else _TEXT[: 8 + i] for i in range(24)]
        )
        _repeat(path, head, f"{row}\r\n".encode() * 200, b"", size)
    elif kind == "csv_quoted":  # quoted fields with commas, quotes and line breaks
        row = (
            f'N-001,"{_TEXT}","第一行，含逗号\r\n第二行 ""引号""\r\n第三行",'
            f'36912345.67,"{_TEXT[:20]}",Y\r\n'
        )
        _repeat(path, b"a,b,c,d,e,f\r\n", row.encode() * 200, b"", size)
    elif kind in ("jsonl", "json"):  # nantong-like objects
        obj = json.dumps(
            {
                "sjlx": "cgxm",
                "cgxmbh": "NTZC2026-0421",
                "cgxmmc": _TEXT,
                "cgrdm": "11320614MB0Q7T5U9R",
                "ysje": 91.3624,
                "cjsj": 1793841120000,
                "gdzc": True,
                "cgnr": _TEXT * 3,
                "bao": [
                    {"bbh": "NTZC2026-0421-01", "ysje": 386.5, "jybsm": "B01-1" * 8},
                    {"bbh": "NTZC2026-0421-02", "ysje": 1280, "jybsm": "B01-2" * 8},
                ],
            },
            ensure_ascii=False,
        )
        if kind == "jsonl":
            _repeat(path, b"", f"{obj}\n".encode() * 100, b"", size)
        else:
            block = f"{obj},\n".encode() * 100
            _repeat(path, b"[\n", block, f"{obj}]\n".encode(), size)
    elif kind == "fixed":
        values = {
            "id": "000000000001",
            "name": _TEXT[:25],
            "address": _TEXT[:36],
            "region": "320213",
            "amount": "36912345.67",
            "date": "20261103",
            "flag": "Y",
            "note": "",
        }
        fixed_record = b"D" + b"".join(
            values[n].encode("gbk").ljust(w) for n, _, w in _FIXED_FIELDS
        )
        count = _repeat(
            path, b"H20261103\r\n", (fixed_record + b"\r\n") * 200, b"", size
        )
        with path.open("ab") as f:
            f.write(b"T%08d\r\n" % (count * 200))
    elif kind == "xml_attributes":  # one start tag with millions of attributes
        _repeat(path, b"<r><i ", b'a="1" ' * 1000, b"/></r>", size)
    elif kind == "xml_names":  # a million distinct element names
        with path.open("wb") as f:
            f.write(b"<r>")
            for start in range(0, 4_800_000, 10_000):
                f.write(b"".join(b"<a%d/>" % n for n in range(start, start + 10_000)))
            f.write(b"</r>")
    elif kind == "xml_other":  # no item at all: finished elements must not pile up
        block = "".join(f"<x n='{i}'>{_TEXT}</x>\n" for i in range(100)).encode()
        _repeat(path, b"<r>", block, b"</r>", size)
    elif kind == "xml_big_item":  # one item that never ends
        _repeat(path, b"<r><i>", b"<j>1</j>" * 1000, b"</i></r>", size)
    elif kind == "xml_text":
        _repeat(path, b"<r><i>", "中文".encode() * 1000, b"</i></r>", size)
    elif kind == "json_string":  # one string, 4-byte characters, never closed
        _repeat(path, b'[{"a":"', "😀".encode() * 1000, b"", size)
    elif kind == "jsonl_line":
        _repeat(path, b'{"a":"', b"x" * 4096, b'"}\n{"a":1}\n', size)
    elif kind == "csv_long_line":
        _repeat(path, b"a,b\n", b"x," * 4096, b"\n", size)
    elif kind == "csv_open_quote":
        _repeat(path, b'a,b\n1,"', b"x\n" * 4096, b"", size)
    else:
        raise ValueError(kind)


def main(kind: str, path: str) -> None:
    reader = READERS[kind.split(":")[0]]
    items = errors = 0
    rejected = None
    with Path(path).open("rb") as f:
        try:
            for item in reader(f):
                items += 1
                errors += isinstance(item, RowError)
        except InputRejected as exc:
            rejected = exc.code
    print(json.dumps({"items": items, "row_errors": errors, "rejected": rejected}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
