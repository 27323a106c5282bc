"""The demo feeds the project's own sample exports through the shipped mappings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters.base import RawInput
from adapters.catalogue import default_catalogue
from adapters.mapping import shipped_mappings
from adapters.registry import REGISTRY
from gateway.pipeline import NOWHERE, adapt_input

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "config" / "demo"
SAMPLES = DEMO / "samples"
SYSTEMS = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
# What gateway/demo.py sends for each file suffix.
MEDIA = {
    ".xml": "application/xml",
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
}


def sources() -> dict[str, dict[str, object]]:
    config = yaml.safe_load((DEMO / "gateway.yaml").read_text(encoding="utf-8"))
    return {s["name"]: s for s in config["sources"]}


def test_there_is_a_sample_folder_for_every_shipped_mapping() -> None:
    assert set(SYSTEMS) == set(shipped_mappings())


def test_the_national_jsonl_source_is_still_there() -> None:
    source = sources()["national-jsonl"]
    assert source["adapter"] == "national_jsonl"


@pytest.mark.parametrize("system", SYSTEMS)
def test_demo_source_for_each_sample_folder(system: str) -> None:
    source = sources()[system]
    assert source["adapter"] == "mapping"
    options = source["options"]
    assert isinstance(options, dict)
    assert options["mapping"] == system
    assert source["token_files"] == [f"../../var/demo/tokens/{system}.token"]
    types = source["content_types"]
    assert isinstance(types, list)
    for path in (SAMPLES / system).iterdir():
        if path.is_file() and not path.name.startswith("."):
            assert MEDIA[path.suffix] in types, path.name


@pytest.mark.parametrize("system", SYSTEMS)
def test_demo_samples_translate_without_rejects(system: str) -> None:
    source = sources()[system]
    options = source["options"]
    assert isinstance(options, dict)
    adapter = REGISTRY["mapping"].create(options, where=system)
    files = sorted(p for p in (SAMPLES / system).iterdir() if p.suffix in MEDIA)
    assert files
    datasets: set[str] = set()
    for path in files:
        raw = RawInput(source=system, data=path.read_bytes(), name=path.name)
        adapted = adapt_input(adapter, raw, default_catalogue(), NOWHERE)
        assert not adapted.rejects, [r.message for r in adapted.rejects]
        assert adapted.records, path.name
        datasets.update(r.dataset for r in adapted.records)
        for record in adapted.records:
            # Complete for sending except what the gateway adds on the way out.
            assert b'"PLATFORM_CODE"' in record.canonical
    assert len(datasets) >= 2


@pytest.mark.parametrize("system", SYSTEMS)
def test_demo_samples_are_not_the_shared_samples(system: str) -> None:
    shared = ROOT.parent / "shared" / "samples" / system
    if not shared.is_dir():
        pytest.skip("../shared is not present")
    ours = {p.read_bytes() for p in (SAMPLES / system).iterdir() if p.is_file()}
    theirs = {p.read_bytes() for p in shared.iterdir() if p.is_file()}
    assert not ours & theirs
