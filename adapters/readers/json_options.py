"""Options of the JSON readers (apart, so that json_reader can be compiled)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from adapters.readers._source import Encoding, MiB


class JsonOptions(BaseModel):
    """How to read one JSON or JSON Lines feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Encoding = Field(
        "utf-8",
        description="Text encoding (RFC 8259 says UTF-8; GBK / GB18030 for legacy "
        "exporters).  A UTF-8 BOM is skipped.",
    )
    require_object: bool = Field(
        default=True, description="Each line / array element must be an object."
    )
    max_input_bytes: int = Field(256 * MiB, ge=1, description="Input size limit.")
    max_depth: int = Field(
        64, ge=1, le=500, description="Deepest nesting of arrays and objects."
    )
    max_item_bytes: int = Field(
        8 * MiB,
        ge=1,
        description="Longest JSON line, in bytes; for documents, the largest array "
        "element or non-array document, in characters.",
    )
    max_number_chars: int = Field(
        100, ge=1, le=10_000, description="Longest number literal accepted."
    )
    max_items: int = Field(5_000_000, ge=1, description="Most items accepted.")
