"""Already-national records as JSON Lines: ``{"dataset": ..., "fields": {...}}``.

For local systems (and hubs downstream) that already speak the national data
sets. Values must be strings (national records are text; money is a decimal
string); a number is accepted only if it is written exactly as text would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from adapters.base import AdapterSpec, NationalRecord, RawInput, RecordRejected
from adapters.readers import JsonItem, JsonOptions, RowError, read_jsonl

__all__ = ["SPEC", "NationalJsonl", "NationalJsonlOptions"]


class NationalJsonlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: str = Field(default="utf-8", description="utf-8, gbk or gb18030")
    max_input_bytes: int = Field(default=256 * 1024 * 1024, ge=1)


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


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        # The reader keeps numbers exact; print them back as written.
        return format(value, "f") if value == value.to_integral_value() else str(value)
    return None


class NationalJsonl:
    """Each line one national record."""

    def __init__(self, options: NationalJsonlOptions) -> None:
        self._opts = JsonOptions(
            encoding=options.encoding,
            max_input_bytes=options.max_input_bytes,
        )

    def parse(self, raw: RawInput) -> Iterator[NationalRecord | RecordRejected]:
        for item in read_jsonl(raw.data, self._opts):
            if isinstance(item, RowError):
                yield RecordRejected(
                    locator=item.locator,
                    code=item.code,
                    message_en=item.message_en,
                    message_zh=item.message_zh,
                )
                continue
            yield self._record(item)

    @staticmethod
    def _record(item: JsonItem) -> NationalRecord | RecordRejected:
        where = item.locator
        obj = item.value
        if not isinstance(obj, dict) or set(obj) - {"dataset", "fields"}:
            return _reject(
                where,
                "E_RECORD_SHAPE",
                'expected {"dataset": ..., "fields": {...}}',
                '应为 {"dataset": ..., "fields": {...}}',
            )
        dataset = obj.get("dataset")
        fields = obj.get("fields")
        if not isinstance(dataset, str) or not dataset:
            return _reject(
                where,
                "E_RECORD_SHAPE",
                '"dataset" must be a data set name',
                '"dataset" 必须是数据集名称',
            )
        if not isinstance(fields, dict):
            return _reject(
                where,
                "E_RECORD_SHAPE",
                '"fields" must be an object',
                '"fields" 必须是对象',
            )
        out: dict[str, str] = {}
        for name, value in fields.items():
            if value is None:
                continue
            text = _text(value)
            if text is None:
                return _reject(
                    where,
                    "E_FIELD_TYPE",
                    f"field {name} must be a string",
                    f"字段 {name} 必须是字符串",
                    name,
                )
            out[name] = text
        return NationalRecord(dataset=dataset, fields=out, locator=where)


SPEC = AdapterSpec(
    name="national_jsonl",
    summary="Already-national records, one JSON object per line.",
    options=NationalJsonlOptions,
    build=NationalJsonl,
)
