"""Every module imports on its own, with warnings as errors (aiohttp's habit):
no hidden import-order dependency, no circular import, no import-time warning."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("crypto", "gateway", "adapters", "config", "monitoring")


def modules() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            out.append(".".join(parts))
    return out


def test_every_module_imports_alone() -> None:
    mods = modules()
    assert len(mods) > 40
    # One interpreter per module, run a few at a time.
    procs = []
    failures = []
    for i, mod in enumerate(mods):
        procs.append(
            (
                mod,
                subprocess.Popen(
                    [sys.executable, "-W", "error", "-c", f"import {mod}"],
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                ),
            )
        )
        if len(procs) >= 4 or i == len(mods) - 1:
            for name, p in procs:
                _, err = p.communicate(timeout=60)
                if p.returncode != 0:
                    failures.append(f"{name}: {err.decode(errors='replace')[-400:]}")
            procs = []
    assert not failures, "\n".join(failures)
