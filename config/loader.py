"""YAML → validated models, with every problem reported by path, line and column.

Example of what an operator sees::

    config/gateway.yaml:14:7: destinations.0.url: String should match pattern '^https?://'
    config/gateway.yaml:9:5: sources.1.tokn_files: Extra inputs are not permitted
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from config.models import GatewayConfig
from gateway.yamltext import YamlUnreadable, read_yaml

__all__ = ["ConfigProblem", "ConfigProblems", "LoadedConfig", "load", "resolve"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
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
            else f"{where}: {self.message}"
        )


class ConfigProblems(Exception):
    """Every problem found in a configuration, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    path: Path
    model: GatewayConfig

    def resolve(self, p: str) -> Path:
        return resolve(self.path, p)


def resolve(config_path: Path, p: str) -> Path:
    """Paths in a config are relative to the config file's directory."""
    q = Path(os.path.expandvars(p))
    return q if q.is_absolute() else (config_path.parent / q)


# Tags of the config's discriminated unions (transports, completion modes).
_UNION_TAGS = frozenset({"http", "sftp", "directory", "stable", "marker"})


class _SafeLineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a config bug)."""


def _construct_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode
) -> dict[object, object]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_SafeLineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _mark_for(node: yaml.Node | None, loc: Sequence[int | str]) -> yaml.Node | None:
    """Follow a pydantic error location through the composed YAML node tree."""
    cur = node
    for part in loc:
        if isinstance(cur, yaml.MappingNode):
            nxt: yaml.Node | None = None
            for k, v in cur.value:
                if k.value == str(part):
                    nxt = v
                    break
            if nxt is None:
                # The key itself is missing or extra: point at the mapping / the key.
                return cur
            cur = nxt
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(cur.value):
                return cur
            cur = cur.value[part]
        else:
            return cur
    return cur


def load(path: str | os.PathLike[str]) -> LoadedConfig:
    """Load and validate; raise ConfigProblems listing every problem."""
    p = Path(path)
    name = str(p)
    try:
        root, data = read_yaml(p, _SafeLineLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigProblems(
            [ConfigProblem(name, None, None, "", f"cannot read ({exc})")]
        ) from exc
    except YamlUnreadable as exc:
        raise ConfigProblems(
            [ConfigProblem(name, exc.line, exc.column, "", f"YAML: {exc.message}")]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigProblems(
            [ConfigProblem(name, 1, 1, "", "top level must be a mapping")]
        )
    try:
        model = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [
                x
                for x in err["loc"]
                if not (isinstance(x, str) and x.startswith("function-"))
            ]
            # Discriminated unions add the tag to the location; it is not in the YAML.
            loc = [x for x in loc if x not in _UNION_TAGS]
            dotted = ".".join(str(x) for x in loc)
            node = _mark_for(root, loc)
            line = node.start_mark.line + 1 if node is not None else None
            col = node.start_mark.column + 1 if node is not None else None
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            problems.append(ConfigProblem(name, line, col, dotted, msg))
        raise ConfigProblems(problems) from exc
    return LoadedConfig(path=p, model=model)
