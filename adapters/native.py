"""The hot adapter modules compiled with mypyc, and the guard that keeps it honest.

``make`` compiles the modules in ``MODULES`` (the readers' line splitting and JSON
reader, the mapping normalisers, formats and engine) with mypyc into extension
modules beside their sources (``.venv/bin/mypyc``, the pinned mypy); mappings then
run about 1.5-2x faster (docs/performance-adapters.md). Python imports an
extension module before a ``.py`` of the same name, so a build older than its
sources (an edit, a checkout, an upgrade without ``make``) would run stale
machine code. ``adapters/__init__.py`` therefore asks this module first, before
any of them can be imported: when any compiled module is missing or older than
any of the sources, all of them are imported from source (compiled modules call
each other natively, so it is all or nothing) and a warning says ``make`` is due.
The ``.py`` files are always the truth; the build only changes speed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Literal

__all__ = ["MODULES", "engine_kind", "install"]

log = logging.getLogger(__name__)

MODULES = (
    "adapters.readers._source",
    "adapters.readers.json_reader",
    "adapters.mapping.normalizers",
    "adapters.mapping.formats",
    "adapters.mapping.engine",
)
"""What ``make`` compiles (the Makefile's NATIVE_SRC lists the same files)."""

_ROOT = Path(__file__).resolve().parent.parent

EngineKind = Literal["compiled", "source", "source (stale build)"]
_kind: list[EngineKind] = []


def _source(name: str) -> Path:
    return _ROOT.joinpath(*name.split(".")).with_suffix(".py")


def _build_state() -> EngineKind:
    builds = {
        m: sorted(_source(m).parent.glob(_source(m).stem + ".*.so")) for m in MODULES
    }
    if not any(builds.values()):
        return "source"
    if not all(builds.values()):
        return "source (stale build)"
    built = min(p.stat().st_mtime for paths in builds.values() for p in paths)
    newest = max(_source(m).stat().st_mtime for m in MODULES)
    return "compiled" if built >= newest else "source (stale build)"


class _Sources(importlib.abc.MetaPathFinder):
    """Finds the ``MODULES`` as their ``.py`` files, whatever else is beside them."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(fullname))


def install() -> EngineKind:
    """Decide once, before any of the modules is imported, what runs."""
    if _kind:
        return _kind[0]
    state = _build_state()
    if state == "source (stale build)":
        log.warning(
            "The compiled adapter modules are older than their sources; running "
            "the sources (slower). Run `make` to rebuild them."
        )
        sys.meta_path.insert(0, _Sources())
    _kind.append(state)
    return state


def engine_kind() -> EngineKind:
    """What the adapters in this process run as (for logs and benches)."""
    return _kind[0] if _kind else install()
