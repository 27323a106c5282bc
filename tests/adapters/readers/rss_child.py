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
    read_csv,
    read_fixed_width,
    read_json,
    read_jsonl,
    read_xml,
)
from adapters.readers._source import BinarySource

MB = 1024 * 1024
SIZE = 50 * MB

FIXED = FixedWidthOptions(
    encoding="gbk",
    code_length=1,
    layouts=(
        RecordLayout(
            code="D",
            fields=(
                FixedField(name="id", start=1, length=8),
                FixedField(name="name", start=9, length=20),
                FixedField(name="amount", start=29, length=12),
            ),
        ),
    ),
    header=RecordLayout(code="H", fields=(FixedField(name="date", start=1, length=8),)),
    trailer=RecordLayout(
        code="T", fields=(FixedField(name="n", start=1, length=8),), count_field="n"
    ),
)

READERS: dict[str, Callable[[BinarySource], Iterator[object]]] = {
    "xml": lambda f: iter(read_xml(f)),
    "csv": lambda f: iter(read_csv(f, CsvOptions(delimiter="\t", quotechar=None,
                                                 header_rows=2))),
    "csv_quoted": lambda f: iter(read_csv(f)),
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
        head = '<?xml version="1.0" encoding="GB18030"?>\r\n<数据导出>\r\n'.encode("gb18030")
        _repeat(path, head, block, "</数据导出>\r\n".encode("gb18030"), size)
    elif kind == "csv":
        head = "\ufeffid\tname\tremark\tprice\r\n编号\t名称\t备注\t价格\r\n".encode()
        block = '1\t徐州市土地\t"净地"出让\t36.25\r\n'.encode() * 1000
        _repeat(path, head, block, b"", size)
    elif kind == "csv_quoted":
        block = b'1,"multi\r\nline, with ""quotes""",3.5\r\n' * 1000
        _repeat(path, b"a,b,c\r\n", block, b"", size)
    elif kind == "jsonl":
        line = (
            '{"sjlx":"cgxm","ysje":91.3624,"cjsj":1793841120000,'
            '"bao":[{"bbh":"x","ysje":1.5}],"cgnr":"南通市海门区政务服务中心办公家具"}\n'
        )
        _repeat(path, b"", line.encode() * 1000, b"", size)
    elif kind == "json":
        item = '{"ysje":91.3624,"cjsj":1793841120000,"cgnr":"南通市政务服务中心"},\n'
        _repeat(path, b'[\n{"first":1},\n', item.encode() * 1000, b'{"last":1}]\n', size)
    elif kind == "fixed":
        line = b"D00000001" + "南通市海门区".encode("gbk").ljust(20) + b"000000000001\r\n"
        count = _repeat(path, b"H20261103\r\n", line * 1000, b"", size - 12)
        with path.open("ab") as f:
            f.write(b"T%08d\r\n" % (count * 1000))
    elif kind == "xml_attributes":  # one start tag with millions of attributes
        _repeat(path, b"<r><i ", b'a="1" ' * 1000, b"/></r>", size)
    elif kind == "xml_text":
        _repeat(path, b"<r><i>", "中文".encode() * 1000, b"</i></r>", size)
    elif kind == "json_string":  # one string, 4-byte characters, never closed
        _repeat(path, b'[{"a":"', "😀".encode() * 1000, b"", size)
    elif kind == "jsonl_line":
        _repeat(path, b'{"a":"', b"x" * 4096, b'"}\n{"a":1}\n', size)
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
