"""The compiled adapter modules (adapters/native.py): used when fresh,
never when older than its sources, and the same results either way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import native

ROOT = Path(__file__).resolve().parents[3]


def built(root: Path, module: str) -> list[Path]:
    py = root.joinpath(*module.split(".")).with_suffix(".py")
    return sorted(py.parent.glob(py.stem + ".*.so"))


BUILT = all(built(ROOT, m) for m in native.MODULES)
needs_build = pytest.mark.skipif(
    not BUILT and os.environ.get("CI") != "true",
    reason="the mapping engine is not compiled here (make native)",
)

PROBE = """
import json, sys
from adapters.base import RawInput
from pathlib import Path
from adapters import native
from adapters.mapping import load_mapping
import adapters.mapping.engine as engine
import adapters.readers.json_reader as reader
feed = sys.argv[1]
m = load_mapping(Path(sys.argv[2]))
raw = RawInput(source="t", data=open(feed, "rb").read(), name=feed)
out = [(type(r).__name__, getattr(r, "fields", None) or r.code) for r in m.parse(raw)]
files = [engine.__file__, reader.__file__]
print(json.dumps({"kind": native.engine_kind(), "files": files, "out": out},
                 ensure_ascii=False, default=str))
"""

MAPPING = ROOT / "config" / "mappings" / "xuzhou-land-csv.yaml"
FEED = sorted(
    (ROOT / "tests" / "fixtures" / "feeds" / "xuzhou-land-csv" / "good").iterdir()
)[0]


def probe(root: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(FEED), str(MAPPING)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


@needs_build
def test_the_build_is_used_when_fresh() -> None:
    """In CI the Makefile compiled it: the tests run the compiled engine."""
    assert native.engine_kind() == "compiled"
    got = probe(ROOT)
    assert got["kind"] == "compiled"
    assert all(str(f).endswith(".so") for f in got["files"])  # type: ignore[attr-defined]


@needs_build
def test_a_stale_build_is_never_run(tmp_path: Path) -> None:
    copy = tmp_path / "adapters"
    shutil.copytree(ROOT / "adapters", copy)
    fresh = probe(tmp_path)
    assert fresh["kind"] == "compiled"
    # An edited source (or a checkout) after the build: all three from source.
    later = time.time() + 5
    os.utime(copy / "readers" / "json_reader.py", (later, later))
    stale = probe(tmp_path)
    assert stale["kind"] == "source (stale build)"
    assert all(str(f).endswith(".py") for f in stale["files"])  # type: ignore[attr-defined]
    assert stale["out"] == fresh["out"]  # and the same records either way
    assert fresh["out"]


@needs_build
def test_a_partial_build_is_not_mixed_with_sources(tmp_path: Path) -> None:
    copy = tmp_path / "adapters"
    shutil.copytree(ROOT / "adapters", copy)
    for so in built(tmp_path, "adapters.readers._source"):
        so.unlink()
    got = probe(tmp_path)
    assert got["kind"] == "source (stale build)"
    assert all(str(f).endswith(".py") for f in got["files"])  # type: ignore[attr-defined]


def test_without_a_build_the_sources_run(tmp_path: Path) -> None:
    copy = tmp_path / "adapters"
    shutil.copytree(ROOT / "adapters", copy)
    for so in copy.rglob("*.so"):
        so.unlink()
    got = probe(tmp_path)
    assert got["kind"] == "source"
    assert got["out"]
