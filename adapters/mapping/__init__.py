"""Declarative mappings: connect a local trading system with a YAML file, not Python.

A mapping file (docs/mapping.md) says how to read the input (XML, JSON, JSON Lines,
CSV, fixed width), which source records make which national records, and where
each national field comes from through which normalisers. The ``mapping`` adapter
loads and compiles one file at start-up (every problem is reported with file, line,
column and YAML path) and then runs it like any Python adapter.

Adapter options (a source's ``options:`` in the gateway config)::

    mapping: wuxi-construction-xml        # a shipped mapping, config/mappings/<name>.yaml
    # or: mapping: /etc/gateway/mappings/foo.yaml  (relative paths need base_dir)
    base_dir: /etc/gateway                # what a relative mapping path is relative to
    platform:                             # platform fields added to every record
      PLATFORM_CODE: 91320200MA1XXXXXXX
    settings:                             # values the mapping reads with {setting: NAME}
      REGION: "320200"
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from adapters.base import AdapterSpec, NationalRecord, RawInput, RecordRejected
from adapters.catalogue import Catalogue, default_catalogue
from adapters.mapping.engine import CompiledMapping, compile_mapping
from adapters.mapping.loader import MappingError, MappingProblem, read_mapping
from gateway.errors import ConfigError

__all__ = [
    "MAPPINGS_DIR",
    "SPEC",
    "MappingAdapter",
    "MappingError",
    "MappingOptions",
    "MappingProblem",
    "load_mapping",
    "resolve_mapping",
    "shipped_mappings",
]

MAPPINGS_DIR = Path(__file__).resolve().parents[2] / "config" / "mappings"
"""Where the shipped mappings live: ``config/mappings/<name>.yaml``."""


class MappingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mapping: str = Field(
        min_length=1,
        description="A shipped mapping's name (config/mappings/<name>.yaml) or a path "
        "to a mapping file (absolute, or relative to base_dir).",
    )
    base_dir: str | None = Field(
        None, description="Absolute directory a relative mapping path is relative to."
    )
    platform: dict[str, str] = Field(
        default_factory=dict,
        description="Platform fields (PLATFORM_CODE, PUB_SERVICE_PLAT_CODE, "
        "TRADE_PLAT, ...) added to every record this source produces.",
    )
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="Named values the mapping reads with {setting: NAME}.",
    )


def shipped_mappings() -> dict[str, Path]:
    """Name -> file of every mapping shipped in config/mappings/."""
    return {p.stem: p for p in sorted(MAPPINGS_DIR.glob("*.yaml"))}


def resolve_mapping(name: str, base_dir: str | None = None) -> Path:
    """The file a ``mapping:`` option names; raises ConfigError if it cannot be."""
    if "/" not in name and os.sep not in name and not name.endswith((".yaml", ".yml")):
        path = MAPPINGS_DIR / f"{name}.yaml"
        if not path.is_file():
            known = ", ".join(shipped_mappings()) or "none"
            raise ConfigError(
                f"mapping: no shipped mapping {name!r} (shipped: {known}); give a "
                "path to use your own file"
            )
        return path
    path = Path(os.path.expandvars(name)).expanduser()
    if not path.is_absolute():
        if base_dir is None or not Path(base_dir).is_absolute():
            raise ConfigError(
                f"mapping: {name!r} is a relative path; give an absolute path, a "
                "shipped mapping name, or an absolute base_dir"
            )
        path = Path(base_dir) / path
    return path


def load_mapping(
    path: Path,
    *,
    catalogue: Catalogue | None = None,
    settings: Mapping[str, str] | None = None,
    platform: Mapping[str, str] | None = None,
) -> CompiledMapping:
    """Read, check and compile one mapping file; raises MappingError."""
    model, problems = read_mapping(path)
    return compile_mapping(
        model,
        problems,
        catalogue or default_catalogue(),
        settings=settings,
        platform=platform,
    )


class MappingAdapter:
    """Runs one compiled mapping (see :mod:`adapters.mapping.engine`)."""

    def __init__(self, options: MappingOptions) -> None:
        path = resolve_mapping(options.mapping, options.base_dir)
        self.path = path
        self.compiled = load_mapping(
            path, settings=options.settings, platform=options.platform
        )

    @property
    def name(self) -> str:
        return self.compiled.name

    def parse(self, raw: RawInput) -> Iterator[NationalRecord | RecordRejected]:
        return self.compiled.parse(raw)


SPEC = AdapterSpec(
    name="mapping",
    summary="A declarative YAML mapping (docs/mapping.md).",
    options=MappingOptions,
    build=MappingAdapter,
)
