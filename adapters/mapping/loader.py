"""Read a mapping file and report every problem as ``file:line:column: path: what``.

Scalars are read as *text* (only ``null``/``~``/empty stay null): in a mapping
almost every value is text, and YAML 1.1 would otherwise turn ``yes``, ``on``,
``0510`` or ``2026-11-03`` into booleans, numbers and dates behind the operator's
back. Options that are numbers or booleans are converted by the models. Duplicate
keys are refused; anchors and ``<<`` merge keys work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from adapters.mapping.model import MappingFile
from gateway.errors import ConfigError
from gateway.yamltext import YamlUnreadable, read_yaml

__all__ = [
    "Loc",
    "MappingError",
    "MappingProblem",
    "Problems",
    "read_mapping",
]

Loc = tuple[int | str, ...]

_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True, slots=True)
class MappingProblem:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        return (
            f"{where}: {self.path}: {self.message}"
            if self.path
            else (f"{where}: {self.message}")
        )


class MappingError(ConfigError):
    """A mapping file cannot be used; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[MappingProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


class _TextLoader(yaml.SafeLoader):
    """SafeLoader with text scalars and no duplicate keys."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag in (_NULL, _MERGE)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode
) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_TextLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _merged(node: yaml.MappingNode) -> list[yaml.MappingNode]:
    """The mappings merged into ``node`` with ``<<``, nearest first."""
    out: list[yaml.MappingNode] = []
    for key, value in node.value:
        if key.tag != _MERGE:
            continue
        if isinstance(value, yaml.MappingNode):
            out.append(value)
        elif isinstance(value, yaml.SequenceNode):
            out.extend(v for v in value.value if isinstance(v, yaml.MappingNode))
    return out


def _child(
    node: yaml.MappingNode, key: str, *, want_key: bool = False
) -> yaml.Node | None:
    for k, v in node.value:
        if k.tag != _MERGE and k.value == key:
            here: yaml.Node = k if want_key else v
            return here
    for source in _merged(node):
        found = _child(source, key, want_key=want_key)
        if found is not None:
            return found
    return None


def locate(
    root: yaml.Node | None, loc: Loc, *, at_key: bool = False
) -> tuple[yaml.Node | None, str]:
    """The YAML node a model location points at, and the location as written.

    Parts that are not in the YAML (the tags pydantic adds for discriminated
    unions) are skipped; a missing key points at its mapping, and with ``at_key``
    the last part points at the key rather than its value (an extra key).
    """
    node = root
    shown: list[str] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            found = _child(node, str(part), want_key=at_key and last)
            if found is None:
                if last:
                    shown.append(str(part))
                continue
            shown.append(str(part))
            node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                shown.append(str(part))
                break
            shown.append(str(part))
            node = node.value[part]
        else:
            break
    return node, ".".join(shown)


class Problems:
    """Problems found in one mapping file, located in its YAML."""

    def __init__(self, file: str, root: yaml.Node | None) -> None:
        self.file = file
        self.root = root
        self.items: list[MappingProblem] = []

    def add(self, loc: Loc, message: str, *, at_key: bool = False) -> None:
        node, path = locate(self.root, loc, at_key=at_key)
        line = column = None
        if node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.items.append(MappingProblem(self.file, line, column, path, message))

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(
                self.items, key=lambda p: (p.line or 0, p.column or 0, p.path)
            )
            raise MappingError(ordered)


def read_mapping(path: Path) -> tuple[MappingFile, Problems]:
    """Parse and validate the shape of one mapping file.

    Returns the model and a :class:`Problems` (empty) bound to the YAML tree, for the
    compiler to add what it finds. Raises MappingError for YAML or shape problems.
    """
    name = str(path)
    try:
        root, data = read_yaml(path, _TextLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(
            [MappingProblem(name, None, None, "", f"cannot read the mapping ({exc})")]
        ) from exc
    except YamlUnreadable as exc:
        raise MappingError(
            [MappingProblem(name, exc.line, exc.column, "", f"YAML: {exc.message}")]
        ) from exc
    problems = Problems(name, root)
    if not isinstance(data, dict):
        problems.add((), "the mapping must be a YAML mapping (key: value)")
        problems.raise_if_any()
    try:
        model = MappingFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and any(
                len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc
                for e in errors
            ):
                continue  # its items failed: that is the problem to show
            message = error["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            problems.add(loc, message, at_key=error["type"] == "extra_forbidden")
        problems.raise_if_any()
        raise  # pragma: no cover - raise_if_any raised
    return model, problems
