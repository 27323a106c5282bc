"""What the format readers report when input is unusable.

::

    GatewayError            (gateway.errors)
    └── InputRejected       the whole input is unusable: raised, the reader stops
    RowError                one row / line / record is unusable: *yielded* as a
                            value, and the reader goes on with the next one

Both carry a stable ``code`` (safe as a metric label), a ``locator`` saying where
(byte offset, line, column, element path or JSON pointer) and a message in English
and in zh-CN that repeats where and says what.  Items yielded before an
``InputRejected`` come from an input that is rejected as a whole: callers drop them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import GatewayError

__all__ = [
    "CODES",
    "InputRejected",
    "RowError",
    "Text",
    "Where",
]


@dataclass(frozen=True, slots=True)
class Text:
    """A message fragment that differs between English and Chinese."""

    en: str
    zh: str


@dataclass(frozen=True, slots=True)
class Where:
    """A position in the input; every part is optional."""

    path: str | None = None
    row: int | None = None
    line: int | None = None
    column: int | None = None
    offset: int | None = None

    def en(self) -> str:
        parts = [] if self.path is None else [self.path]
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.offset is not None:
            parts.append(f"byte offset {self.offset}")
        return ", ".join(parts) or "input"

    def zh(self) -> str:
        parts = [] if self.path is None else [self.path]
        if self.row is not None:
            parts.append(f"第 {self.row} 条记录")
        if self.line is not None:
            parts.append(f"第 {self.line} 行")
        if self.column is not None:
            parts.append(f"第 {self.column} 列")
        if self.offset is not None:
            parts.append(f"字节偏移 {self.offset}")
        return "，".join(parts) or "输入"


# Template key -> (English, zh-CN).  The code is the part before "/"; the suffix only
# picks a wording, so callers and metrics see a small, stable set of codes.
_TEMPLATES: Final[Mapping[str, tuple[str, str]]] = {
    "E_EMPTY": (
        "the input is empty (no {thing})",
        "输入为空（没有{thing}）",
    ),
    "E_TOO_LARGE": (
        "the input is larger than the limit of {limit} bytes",
        "输入超过 {limit} 字节的大小上限",
    ),
    "E_TOO_MANY_ROWS": (
        "the input has more than {limit} {thing}",
        "输入超过 {limit} 个{thing}",
    ),
    "E_ENCODING/invalid": (
        "bytes {shown} are not valid {encoding}",
        "字节 {shown} 不是有效的 {encoding} 编码",
    ),
    "E_ENCODING/truncated": (
        "the input ends inside a {encoding} character (bytes {shown})",
        "输入在一个 {encoding} 字符中间结束（字节 {shown}）",
    ),
    "E_ENCODING/unsupported": (
        "encoding {encoding} is not accepted here (accepted: {accepted})",
        "不接受编码 {encoding}（可接受：{accepted}）",
    ),
    "E_ENCODING/bom": (
        "the input starts with a {bom} byte-order mark but {encoding} is expected",
        "输入以 {bom} 字节顺序标记开头，但应为 {encoding} 编码",
    ),
    "E_ENCODING/replacement": (
        "U+FFFD (replacement character) found: the producer already lost data here",
        "出现 U+FFFD（替换字符）：数据在导出时已经损坏",
    ),
    "E_ENCODING/undetected": (
        "the input is neither UTF-8 nor GB18030 (first bad bytes {shown} as UTF-8)",
        "输入既不是 UTF-8 也不是 GB18030 编码（按 UTF-8 解码时首个错误字节为 {shown}）",
    ),
    "E_BINARY": (
        "NUL byte: this is binary data, not {encoding} text",
        "出现 NUL 字节：这是二进制数据，不是 {encoding} 文本",
    ),
    "E_LINE_TOO_LONG": (
        "the line is longer than {limit} bytes and was skipped",
        "该行超过 {limit} 字节，已跳过",
    ),
    "E_XML_DOCTYPE": (
        "a DOCTYPE declaration is not allowed (no DTD, entity or URL is ever "
        "loaded or resolved)",
        "不允许 DOCTYPE 声明（不加载、不解析任何 DTD、实体或 URL）",
    ),
    "E_XML_MALFORMED": (
        "the XML is not well-formed: {detail}",
        "XML 格式不正确：{detail}",
    ),
    "E_XML_MALFORMED/markup": (
        "the XML is not well-formed: markup declaration {shown} outside a DTD",
        "XML 格式不正确：DTD 之外出现标记声明 {shown}",
    ),
    "E_XML_MALFORMED/prolog": (
        "the XML prolog (before the root element) is longer than {limit} characters",
        "XML 序言（根元素之前的部分）超过 {limit} 个字符",
    ),
    "E_XML_DEPTH": (
        "elements are nested deeper than {limit} levels",
        "元素嵌套超过 {limit} 层",
    ),
    "E_XML_ITEM_TOO_LARGE/bytes": (
        "the item is larger than {limit} bytes",
        "该条目超过 {limit} 字节",
    ),
    "E_XML_ITEM_TOO_LARGE/elements": (
        "the item has more than {limit} elements",
        "该条目包含超过 {limit} 个元素",
    ),
    "E_XML_TOO_MANY_NAMES": (
        "the document uses more than {limit} distinct element names",
        "文档使用的不同元素名超过 {limit} 个",
    ),
    "E_XML_TAG_TOO_LARGE": (
        "a tag is longer than {limit} characters",
        "某个标签超过 {limit} 个字符",
    ),
    "E_CSV_HEADER/missing": (
        "header row {row} is missing (the input has {rows} rows)",
        "缺少第 {row} 个表头行（输入只有 {rows} 行）",
    ),
    "E_CSV_HEADER/duplicate": (
        "column name {name} appears more than once in the header",
        "列名 {name} 在表头中重复出现",
    ),
    "E_CSV_HEADER/width": (
        "header row {row} has {got} columns, {expected} expected",
        "第 {row} 个表头行有 {got} 列，应为 {expected} 列",
    ),
    "E_CSV_HEADER/bad": (
        "header row {row} is not usable: {detail}",
        "第 {row} 个表头行无法使用：{detail}",
    ),
    "E_CSV_RAGGED": (
        "the row has {got} fields, the header has {expected}",
        "该行有 {got} 个字段，表头有 {expected} 个",
    ),
    "E_CSV_QUOTE": (
        "the row cannot be split: {detail}",
        "该行无法拆分为字段：{detail}",
    ),
    "E_CSV_UNTERMINATED": (
        "a quoted field is still open at the end of the input",
        "引号字段直到输入结尾仍未闭合",
    ),
    "E_CSV_ROW_TOO_LARGE": (
        "a row is longer than {limit} bytes (an unclosed quote?)",
        "某行超过 {limit} 字节（引号未闭合？）",
    ),
    "E_CSV_FIELD_TOO_LONG/input": (
        "a quoted field is longer than {limit} characters; where the rows after it "
        "start is unknown",
        "某个引号字段超过 {limit} 个字符，其后各行的起止位置无法确定",
    ),
    "E_CSV_FIELD_TOO_LONG": (
        "field {field} is longer than {limit} characters",
        "第 {field} 个字段超过 {limit} 个字符",
    ),
    "E_JSON_SYNTAX": (
        "invalid JSON: {detail}",
        "JSON 语法错误：{detail}",
    ),
    "E_JSON_SYNTAX/constant": (
        "{shown} is not valid JSON (no NaN or Infinity)",
        "{shown} 不是合法的 JSON（不允许 NaN 或 Infinity）",
    ),
    "E_JSON_DEPTH": (
        "values are nested deeper than {limit} levels",
        "值的嵌套超过 {limit} 层",
    ),
    "E_JSON_DUPLICATE_KEY": (
        "key {shown} appears more than once in one object",
        "同一对象中键 {shown} 重复出现",
    ),
    "E_JSON_NUMBER": (
        "number {shown} is longer than {limit} characters",
        "数字 {shown} 超过 {limit} 个字符",
    ),
    "E_JSON_NUMBER/range": (
        "number {shown} is out of range",
        "数字 {shown} 超出范围",
    ),
    "E_JSON_STRING": (
        "a string contains a lone surrogate ({shown}), which is not a character",
        "字符串中含有孤立的代理码位（{shown}），不是合法字符",
    ),
    "E_JSON_NOT_OBJECT": (
        "the value is {kind}, an object is required",
        "该值是{kind}，要求是对象",
    ),
    "E_JSON_ITEM_TOO_LARGE": (
        "the value is larger than {limit} bytes (or is never closed)",
        "该值超过 {limit} 字节（或始终未闭合）",
    ),
    "E_FW_LENGTH": (
        "the record is {got} bytes long, {expected} expected",
        "该记录长 {got} 字节，应为 {expected} 字节",
    ),
    "E_FW_RECORD_TYPE": (
        "record type {shown} is unknown (known: {known})",
        "未知的记录类型 {shown}（已知：{known}）",
    ),
    "E_FW_BOUNDARY": (
        "field {field} (bytes {start}-{end}) cuts through a multi-byte character",
        "字段 {field}（字节 {start}-{end}）的边界落在多字节字符中间",
    ),
    "E_FW_HEADER": (
        "the first record must be the header (type {expected}), found {shown}",
        "第一条记录必须是头记录（类型 {expected}），实际为 {shown}",
    ),
    "E_FW_HEADER/misplaced": (
        "a header record (type {shown}) may only be the first record",
        "头记录（类型 {shown}）只能是第一条记录",
    ),
    "E_FW_TRAILER": (
        "the last record must be the trailer (type {expected}), found {shown}",
        "最后一条记录必须是尾记录（类型 {expected}），实际为 {shown}",
    ),
    "E_FW_TRAILER/misplaced": (
        "a trailer record (type {shown}) may only be the last record",
        "尾记录（类型 {shown}）只能是最后一条记录",
    ),
    "E_FW_TRAILER/bad": (
        "the {which} record is not usable: {detail}",
        "{which}记录无法使用：{detail}",
    ),
    "E_FW_COUNT": (
        "the {which} record declares {declared} data records, the input has {actual}",
        "{which}记录声明 {declared} 条数据记录，实际为 {actual} 条",
    ),
    "E_FW_COUNT/invalid": (
        "the record count {shown} in field {field} of the {which} record "
        "is not a number",
        "{which}记录字段 {field} 中的记录数 {shown} 不是数字",
    ),
}

CODES: Final[frozenset[str]] = frozenset(key.split("/")[0] for key in _TEMPLATES)
"""Every code a reader can report."""


def shown(value: str | bytes, limit: int = 40) -> str:
    """A short, quoted, printable rendering of a value for a message."""
    if isinstance(value, bytes):
        return " ".join(f"0x{b:02X}" for b in value[:8]) + (
            " ..." if len(value) > 8 else ""
        )
    text = value if len(value) <= limit else value[:limit] + "..."
    return "'" + text.encode("unicode_escape").decode("ascii") + "'"


def _render(key: str, where: Where, fields: Mapping[str, object]) -> tuple[str, str]:
    en_template, zh_template = _TEMPLATES[key]
    en = {k: v.en if isinstance(v, Text) else v for k, v in fields.items()}
    zh = {k: v.zh if isinstance(v, Text) else v for k, v in fields.items()}
    return (
        f"{where.en()}: {en_template.format(**en)}",
        f"{where.zh()}：{zh_template.format(**zh)}",
    )


class InputRejected(GatewayError):
    """The whole input is unusable; nothing read from it may be used."""

    def __init__(
        self, code: str, locator: str, message_en: str, message_zh: str
    ) -> None:
        super().__init__(code, locator, message_en, message_zh)
        self.code = code
        self.locator = locator
        self.message_en = message_en
        self.message_zh = message_zh

    def __str__(self) -> str:
        return f"{self.code}: {self.message_en}"

    @classmethod
    def make(cls, key: str, where: Where, **fields: object) -> InputRejected:
        """Build the exception from a template key such as ``E_ENCODING/invalid``."""
        en, zh = _render(key, where, fields)
        return cls(key.split("/")[0], where.en(), en, zh)


@dataclass(frozen=True, slots=True)
class RowError:
    """One row, line or record is unusable; reading goes on after it."""

    locator: str
    code: str
    message_en: str
    message_zh: str
    line: int | None = field(default=None, kw_only=True)
    """First line of the row (1-based), when known."""
    offset: int | None = field(default=None, kw_only=True)
    """Byte offset of the row's first byte (0-based), when known."""

    @classmethod
    def make(cls, key: str, where: Where, **fields: object) -> RowError:
        """Build the value from a template key such as ``E_CSV_RAGGED``."""
        en, zh = _render(key, where, fields)
        return cls(
            where.en(),
            key.split("/")[0],
            en,
            zh,
            line=where.line,
            offset=where.offset,
        )
