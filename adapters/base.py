"""The adapter plug-in contract: spec + constructor + one pure method.

``parse(raw)`` turns one input's bytes into national records and per-record
rejections. It is pure and synchronous (no I/O, no clock, no globals), so it
runs in a worker thread and gives the same answer twice. A whole input that
cannot be used raises ``InputRejected`` (from the readers); one bad record is
*yielded* as a ``RecordRejected`` value and parsing goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from gateway.errors import ConfigError

__all__ = [
    "Adapter",
    "AdapterSpec",
    "NationalRecord",
    "RawInput",
    "RecordRejected",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RawInput:
    """One input as received: bytes plus what the transport said about them."""

    source: str
    data: bytes
    content_type: str = "application/octet-stream"
    charset: str | None = None
    name: str = ""  # file name for file transports, "" for HTTP pushes


@dataclass(frozen=True, slots=True, kw_only=True)
class NationalRecord:
    """A record of a national data set: UPPER_SNAKE field names, string values."""

    dataset: str
    fields: Mapping[str, str]
    locator: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRejected:
    """One record that cannot be accepted, with where and why (en + zh-CN)."""

    locator: str
    code: str
    message_en: str
    message_zh: str
    field: str | None = None

    @property
    def message(self) -> str:
        return f"{self.message_en} / {self.message_zh}"


class Adapter(Protocol):
    def parse(self, raw: RawInput) -> Iterator[NationalRecord | RecordRejected]: ...


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """How to build an adapter from its validated options."""

    name: str
    summary: str
    options: type[BaseModel]
    build: Callable[[Any], Adapter]

    def create(self, raw_options: Mapping[str, object], *, where: str) -> Adapter:
        try:
            opts = self.options.model_validate(dict(raw_options))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ConfigError(f"{where}.options.{loc}: {first['msg']}") from exc
        return self.build(opts)
