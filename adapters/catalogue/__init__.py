"""The national data-set catalogue: versioned data files, validated at load.

``common.yaml`` holds the platform fields of every record and the code tables;
``datasets/<domain>.yaml`` the data sets of one trading domain; the keys are
documented at the top of ``common.yaml``. :func:`load_catalogue` checks every file
against the pydantic schema and the references between files, and raises
:class:`~gateway.errors.ConfigError` listing every problem with its file and path.
:func:`validate_record` checks one national record (field name -> string value)
and returns its :class:`Violation` list, empty when the record is valid.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from adapters.catalogue._schema import (
    CodeTable,
    CommonFile,
    DatasetSpec,
    DomainFile,
    FieldSpec,
    Stage,
)
from adapters.catalogue._validate import (
    Dataset,
    RecordValidator,
    Violation,
    compile_validator,
)
from gateway.errors import ConfigError

__all__ = [
    "CATALOGUE_DIR",
    "Catalogue",
    "CodeTable",
    "Dataset",
    "DatasetSpec",
    "FieldSpec",
    "Stage",
    "Violation",
    "default_catalogue",
    "load_catalogue",
    "validate_record",
]

CATALOGUE_DIR = Path(__file__).resolve().parent

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All data sets and code tables of one catalogue version."""

    version: str
    datasets: Mapping[str, Dataset]
    code_tables: Mapping[str, CodeTable]
    # Each data set compiled on first use (the catalogue is immutable, so once).
    _validators: dict[str, RecordValidator] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def dataset(self, name: str) -> Dataset | None:
        """The data set called ``name`` (e.g. ``"SECTION"``), if defined."""
        return self.datasets.get(name)

    def by_number(self, data_no: int) -> Dataset | None:
        """The data set with catalogue number ``data_no`` (e.g. 502), if defined."""
        return next((d for d in self.datasets.values() if d.data_no == data_no), None)

    def validate(
        self, dataset: str, fields: Mapping[str, str], *, stage: Stage = "intake"
    ) -> list[Violation]:
        """Broken rules of one record; see :func:`validate_record`."""
        validator = self._validators.get(dataset)
        if validator is None:
            found = self.datasets.get(dataset)
            if found is None:
                return [
                    Violation(
                        field=None,
                        code="E_DATASET_UNKNOWN",
                        message_en=f"data set {dataset} is not in catalogue {self.version}",
                        message_zh=f"数据集{dataset}不在目录{self.version}中",
                    )
                ]
            # Racing threads may both compile; either result is the same validator.
            validator = compile_validator(found, self.code_tables)
            self._validators[dataset] = validator
        return validator(fields, stage)


def _read(path: Path, model: type[_Model], problems: list[str]) -> _Model | None:
    try:
        with path.open(encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
        return model.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        # YAML errors span lines; keep one problem per line.
        problems.append(f"{path}: {' '.join(str(exc).split())}")
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(file)"
            problems.append(f"{path}: {where}: {error['msg']}")
    return None


def _cross_check(
    common: CommonFile, domains: Sequence[tuple[Path, DomainFile]]
) -> list[str]:
    """Problems in the references between files, as ``path: message`` lines."""
    problems: list[str] = []
    tables = {t.id: t for t in common.code_tables}
    platform = {f.name for f in common.platform_fields}
    specs: dict[str, DatasetSpec] = {}
    numbers: set[int] = set()
    for path, domain in domains:
        if domain.catalogue_version != common.catalogue_version:
            problems.append(
                f"{path}: catalogue_version {domain.catalogue_version} differs from "
                f"common.yaml {common.catalogue_version}"
            )
        problems.extend(
            f"{path}: platform_required: {name} is not a platform field"
            for name in domain.platform_required
            if name not in platform
        )
        for spec in domain.datasets:
            where = f"{path}: {spec.name}"
            if spec.name in specs or spec.data_no in numbers:
                problems.append(f"{where}: duplicate name or data_no {spec.data_no}")
            specs[spec.name] = spec
            numbers.add(spec.data_no)
            for field in spec.fields:
                if field.name in platform:
                    problems.append(f"{where}.{field.name}: is a platform field")
                if field.code_table is None:
                    continue
                table = tables.get(field.code_table)
                if table is None:
                    problems.append(
                        f"{where}.{field.name}: no code table {field.code_table}"
                    )
                elif (
                    table.status == "pending"
                    and field.required
                    and field.required_at != "outbound"
                ):
                    # No adapter can produce a value nobody has published yet.
                    problems.append(
                        f"{where}.{field.name}: table {table.id} is pending, "
                        "so the field can only be required_at: outbound"
                    )
    for path, domain in domains:
        for spec in domain.datasets:
            if spec.parent is None:
                continue
            parent = specs.get(spec.parent.dataset)
            key = spec.parent.key or (parent.key if parent else None)
            if parent is None or key is None:
                problems.append(
                    f"{path}: {spec.name}: parent has no such data set or key"
                )
            elif key not in {f.name for f in parent.fields}:
                problems.append(
                    f"{path}: {spec.name}: parent key {key} not in {parent.name}"
                )
    return problems


def _build(common: CommonFile, domains: Sequence[tuple[Path, DomainFile]]) -> Catalogue:
    datasets: dict[str, Dataset] = {}
    for _, domain in domains:
        platform = tuple(
            f.model_copy(update={"required": True, "required_at": "outbound"})
            if f.name in domain.platform_required
            else f
            for f in common.platform_fields
        )
        for spec in domain.datasets:
            fields = {f.name: f for f in (*spec.fields, *platform)}
            datasets[spec.name] = Dataset(
                domain=domain.domain, spec=spec, fields=MappingProxyType(fields)
            )
    return Catalogue(
        version=common.catalogue_version,
        datasets=MappingProxyType(datasets),
        code_tables=MappingProxyType({t.id: t for t in common.code_tables}),
    )


def load_catalogue(directory: Path | None = None) -> Catalogue:
    """Read and check ``common.yaml`` and ``datasets/*.yaml`` under ``directory``.

    Raises ConfigError naming every problem (``file: path: message``) at once.
    """
    root = CATALOGUE_DIR if directory is None else directory
    problems: list[str] = []
    common = _read(root / "common.yaml", CommonFile, problems)
    domains: list[tuple[Path, DomainFile]] = []
    paths = sorted((root / "datasets").glob("*.yaml"))
    if not paths:
        problems.append(f"{root / 'datasets'}: no data-set files")
    for path in paths:
        domain = _read(path, DomainFile, problems)
        if domain is not None:
            domains.append((path, domain))
    if common is not None and not problems:
        problems.extend(_cross_check(common, domains))
    if common is None or problems:
        # One problem per line, each starting with its file (ConfigError's convention).
        raise ConfigError("\n".join(problems))
    return _build(common, domains)


@functools.cache
def default_catalogue() -> Catalogue:
    """The shipped catalogue, loaded and checked on first use."""
    return load_catalogue()


def validate_record(
    dataset: str,
    fields: Mapping[str, str],
    *,
    stage: Stage = "intake",
    catalogue: Catalogue | None = None,
) -> list[Violation]:
    """Broken rules of one national record, in field order; empty when valid.

    Checks unknown fields, required fields, exact and maximum length, formats
    (date, datetime, ``n(p,s)`` numbers, identifiers), code tables and the
    parent-extends rule. At ``intake`` (an adapted record) fields marked
    ``required_at: outbound`` may be absent; at ``outbound`` (the record completed
    by the gateway, platform fields included) every required field must be there.
    """
    return (catalogue or default_catalogue()).validate(dataset, fields, stage=stage)
