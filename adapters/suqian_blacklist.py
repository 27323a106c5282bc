"""宿迁市信用信息共享平台 黑名单 exchange file: GB18030 fixed width, CRC-32 per record.

This is the example of a Python adapter (STYLE.md §4.2) for what a mapping cannot
say: every data record ends with the CRC-32 (8 upper-case hex digits) of its own
GB18030 bytes, and a record whose checksum does not match was damaged on the way
and must be rejected. Everything else is plain and left to the fixed-width reader:
a header ``H`` (batch date, record count), data records ``D``, a trailer ``T``
(record count); the counts are checked by the reader.

Data record (byte positions, 0-based, 265 bytes before CRLF)::

    0    1  type "D"          1   20  黑名单标识号       21  60  主体名称
    81  18  主体代码 (USCC)   99  80  处罚原因          179  8  处罚日期 yyyyMMdd
    187 40  处罚部门          227 30  处理文件文号      257  8  CRC-32 of bytes 0-256
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict

from adapters import identifiers as ids
from adapters.base import AdapterSpec, NationalRecord, RawInput, RecordRejected
from adapters.readers import (
    FixedField,
    FixedWidthOptions,
    RecordLayout,
    RowError,
    read_fixed_width,
)

__all__ = ["SPEC", "SuqianBlacklist", "SuqianBlacklistOptions"]

# (name, start, length): contiguous, so that joined they are the checked bytes.
_COLUMNS = (
    ("type", 0, 1),
    ("code", 1, 20),
    ("name", 21, 60),
    ("party", 81, 18),
    ("reason", 99, 80),
    ("date", 179, 8),
    ("authority", 187, 40),
    ("document", 227, 30),
)
_CRC = FixedField(name="crc", start=257, length=8)
_FIELDS = {
    "code": "BLACKLIST_CODE",
    "name": "BODY_NAME",
    "party": "BODY_CODE",
    "reason": "RECORD_REASON",
    "date": "RECORD_DATE",
    "authority": "GOVERNMENT",
    "document": "DOCUMENT_CODE",
}
_LAYOUT = FixedWidthOptions(
    encoding="gb18030",
    code_start=0,
    code_length=1,
    record_length=265,
    layouts=(
        RecordLayout(
            code="D",
            fields=(
                *(
                    FixedField(name=n, start=s, length=w, strip=False)
                    for n, s, w in _COLUMNS
                ),
                _CRC,
            ),
        ),
    ),
    header=RecordLayout(
        code="H",
        fields=(
            FixedField(name="type", start=0, length=1),
            FixedField(name="batch_date", start=1, length=8),
            FixedField(name="count", start=9, length=6),
            FixedField(name="filler", start=15, length=250),
        ),
        count_field="count",
    ),
    trailer=RecordLayout(
        code="T",
        fields=(
            FixedField(name="type", start=0, length=1),
            FixedField(name="count", start=1, length=6),
            FixedField(name="filler", start=7, length=258),
        ),
        count_field="count",
    ),
)


class SuqianBlacklistOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _reject(
    locator: str, code: str, en: str, zh: str, field: str | None = None
) -> RecordRejected:
    return RecordRejected(
        locator=locator,
        code=code,
        message_en=f"{locator}: {en}",
        message_zh=f"{locator}：{zh}",
        field=field,
    )


class SuqianBlacklist:
    """Each checksummed ``D`` record is one BLACK_LIST record."""

    def __init__(self, options: SuqianBlacklistOptions) -> None:
        self._options = options

    def parse(self, raw: RawInput) -> Iterator[NationalRecord | RecordRejected]:
        for record in read_fixed_width(raw.data, _LAYOUT):
            if isinstance(record, RowError):
                yield RecordRejected(
                    locator=record.locator,
                    code=record.code,
                    message_en=record.message_en,
                    message_zh=record.message_zh,
                )
            elif record.kind == "data":
                yield self._record(record.fields, record.locator)

    @staticmethod
    def _record(values: dict[str, str], where: str) -> NationalRecord | RecordRejected:
        # The reader decoded the columns strictly; GB18030 encodes them back to the
        # very bytes that were read, which is what the producer checksummed.
        body = "".join(values[name] for name, _, _ in _COLUMNS).encode("gb18030")
        expected = f"{zlib.crc32(body):08X}"
        found = values["crc"].strip().upper()
        if found != expected:
            return _reject(
                where,
                "E_RECORD_CHECKSUM",
                f"CRC-32 is {found or 'missing'}, the record's bytes give {expected}: "
                "the record was damaged",
                f"CRC-32 校验值为 {found or '缺失'}，按记录内容应为 {expected}：记录已损坏",
            )
        fields: dict[str, str] = {}
        for column, national in _FIELDS.items():
            text = values[column].strip()
            if text:
                # Codes are sometimes typed in full width: NFKC makes them half width.
                party = column == "party"
                fields[national] = (
                    unicodedata.normalize("NFKC", text) if party else text
                )
        date = fields.get("RECORD_DATE")
        if date is not None and not ids.check_date(date).ok:
            return _reject(
                where,
                "E_MAP_DATE",
                f"处罚日期 {date!r} is not a real yyyyMMdd date",
                f"处罚日期 {date!r} 不是有效的 yyyyMMdd 日期",
                "RECORD_DATE",
            )
        return NationalRecord(dataset="BLACK_LIST", fields=fields, locator=where)


SPEC = AdapterSpec(
    name="suqian_blacklist",
    summary="宿迁 黑名单: GB18030 fixed width with a CRC-32 per record (example).",
    options=SuqianBlacklistOptions,
    build=SuqianBlacklist,
)
