"""Read a YAML file once into both its node tree (for positions) and its data.

Shared by the config loader and the mapping loader, which report every problem
with file:line:column. Imports nothing from the project.
"""

from __future__ import annotations

from pathlib import Path

import yaml

__all__ = ["YamlUnreadable", "read_yaml"]


class YamlUnreadable(Exception):
    """The text is not YAML (or breaks a loader rule such as duplicate keys)."""

    def __init__(self, line: int | None, column: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


def read_yaml(
    path: Path, loader: type[yaml.SafeLoader]
) -> tuple[yaml.Node | None, object]:
    """(root node, data) from one parse. OSError / UnicodeDecodeError pass through."""
    text = path.read_text(encoding="utf-8")
    parser = loader(text)
    try:
        root = parser.get_single_node()
        data = parser.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlUnreadable(
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
            str(getattr(exc, "problem", None) or exc),
        ) from exc
    finally:
        parser.dispose()
    return root, data
