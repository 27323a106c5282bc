"""Build a mapping from YAML text and run it over bytes."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

from adapters.base import NationalRecord, RawInput, RecordRejected
from adapters.mapping import load_mapping
from adapters.mapping.engine import CompiledMapping


def compile_text(
    tmp_path: Path,
    text: str,
    *,
    settings: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
    name: str = "m.yaml",
) -> CompiledMapping:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_mapping(path, settings=settings, platform=platform)


def run(
    mapping: CompiledMapping, data: bytes | str, *, name: str = "input"
) -> tuple[list[NationalRecord], list[RecordRejected]]:
    raw = RawInput(
        source="t",
        data=data.encode("utf-8") if isinstance(data, str) else data,
        name=name,
    )
    records: list[NationalRecord] = []
    rejects: list[RecordRejected] = []
    for item in mapping.parse(raw):
        if isinstance(item, RecordRejected):
            rejects.append(item)
        else:
            records.append(item)
    return records, rejects


def fields(records: list[NationalRecord]) -> list[dict[str, str]]:
    return [dict(r.fields) for r in records]
