"""The mapping engine compiled with mypyc, and the guard that keeps it honest.

``make`` compiles ``normalizers``, ``formats`` and ``engine`` with mypyc into
extension modules beside their sources (``.venv/bin/mypyc``, the pinned mypy);
mappings then run about 1.5x faster (docs/performance-adapters.md). Python
imports an extension module before a ``.py`` of the same name, so a build older
than its sources (an edit, a checkout, an upgrade without ``make``) would run
stale machine code. The package therefore checks first: when any compiled
module is missing or older than any of the three sources, all three are loaded
from source (they call each other natively, so it is all or nothing) and a
warning says ``make`` is due. The ``.py`` files are always the truth; the build
only changes speed.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Literal

__all__ = ["MODULES", "engine_kind", "load"]

log = logging.getLogger(__name__)

MODULES = ("normalizers", "formats", "engine")
"""In dependency order: each imports only the ones before it."""

_HERE = Path(__file__).resolve().parent
_PACKAGE = __name__.rpartition(".")[0]

EngineKind = Literal["compiled", "source", "source (stale build)"]
_kind: list[EngineKind] = []


def _build_state() -> EngineKind:
    builds = {m: sorted(_HERE.glob(f"{m}.*.so")) for m in MODULES}
    if not any(builds.values()):
        return "source"
    if not all(builds.values()):
        return "source (stale build)"
    built = min(p.stat().st_mtime for paths in builds.values() for p in paths)
    newest = max((_HERE / f"{m}.py").stat().st_mtime for m in MODULES)
    return "compiled" if built >= newest else "source (stale build)"


def load() -> EngineKind:
    """Decide once, before the engine is imported, what it runs as."""
    if _kind:
        return _kind[0]
    state = _build_state()
    if state == "source (stale build)":
        log.warning(
            "The compiled mapping engine is older than its sources; running the "
            "sources (slower). Run `make` to rebuild it."
        )
        package = sys.modules[_PACKAGE]
        for name in MODULES:
            full = f"{_PACKAGE}.{name}"
            spec = importlib.util.spec_from_file_location(full, _HERE / f"{name}.py")
            if spec is None or spec.loader is None:  # pragma: no cover - a file we ship
                raise ImportError(full)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            spec.loader.exec_module(module)
            setattr(package, name, module)
    _kind.append(state)
    return state


def engine_kind() -> EngineKind:
    """What the mapping engine in this process runs as (for logs and benches)."""
    return _kind[0] if _kind else load()


# On import: the package imports this module before the engine.
load()
