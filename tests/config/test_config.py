"""Configuration: shipped examples load; every problem is reported with file:line:col."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.loader import ConfigProblems, load
from config.models import parse_size
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "config").glob("**/*.yaml"))
EXAMPLES = [
    p for p in EXAMPLES if "mappings" not in p.parts and "samples" not in p.parts
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_load(path: Path) -> None:
    cfg = load(path)
    assert cfg.model.node.name


def test_cascade_examples_chain_up() -> None:
    county = load(ROOT / "config/examples/county-gateway.yaml").model
    city = load(ROOT / "config/examples/city-hub.yaml").model
    province = load(ROOT / "config/examples/province-hub.yaml").model
    assert city.hub is not None
    assert province.hub is not None
    assert county.node.name in {s.name for s in city.hub.senders}
    assert city.node.name in {s.name for s in province.hub.senders}
    assert city.hub.destinations == ["province-hub"]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """\
node:
  name: t
  state_dir: state
  keys: [{file: k.pem}]
listen:
  ingest: 127.0.0.1:1
sources:
  - name: s
    token_files: [t.token]
destinations:
  - name: d
    url: http://127.0.0.1:2/v1/envelopes
    recipient_keys: [hub.pub.pem]
"""


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    m = load(write(tmp_path, GOOD)).model
    assert m.sources[0].adapter == "national_jsonl"
    assert m.destinations[0].batch.max_records == 1000
    assert m.listen.admin == "127.0.0.1:9108"


def test_every_problem_listed_with_line_and_column(tmp_path: Path) -> None:
    text = (
        GOOD.replace("token_files:", "tokn_files:")
        .replace("url: http://", "url: ftp://")
        .replace("name: t\n", "name: T!\n")
    )
    with pytest.raises(ConfigProblems) as info:
        load(write(tmp_path, text))
    probs = {p.path: p for p in info.value.problems}
    assert set(probs) >= {"node.name", "sources.0.tokn_files", "destinations.0.url"}
    assert probs["node.name"].line == 2
    assert probs["destinations.0.url"].line == 12
    assert probs["sources.0.tokn_files"].line == 9
    assert "Extra inputs are not permitted" in probs["sources.0.tokn_files"].message
    assert str(probs["node.name"]).startswith(f"{tmp_path / 'gw.yaml'}:2:")


def test_cross_references_are_checked(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    token_files: [t.token]\n",
        "    token_files: [t.token]\n    destinations: [nowhere]\n",
    )
    with pytest.raises(ConfigProblems, match="unknown destination 'nowhere'"):
        load(write(tmp_path, text))


def test_duplicate_yaml_keys_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems, match="duplicate key 'listen'"):
        load(write(tmp_path, GOOD + "listen:\n  admin: 127.0.0.1:3\n"))
    with pytest.raises(ConfigProblems, match=r"gw.yaml:\d+:\d+: YAML"):
        load(write(tmp_path, "node: [unclosed\n"))
    with pytest.raises(ConfigProblems, match="cannot read"):
        load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("64MiB", 64 * 1024**2),
        ("10 GB", 10 * 1000**3),
        (4096, 4096),
        ("1.5KiB", 1536),
    ],
)
def test_sizes(text: object, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["-1", "lots", True, -5, "5 XB"])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_check_config_lists_problems_and_exits_2(tmp_path: Path) -> None:
    """Files the config names are checked too: missing keys, tokens, open modes."""
    cfg = write(tmp_path, GOOD)
    (tmp_path / "t.token").write_text("short\n")
    (tmp_path / "t.token").chmod(0o644)
    r = subprocess.run(
        [sys.executable, str(ROOT / "run_gateway.py"), "check-config", str(cfg)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any("node.keys.0.file" in ln and "cannot read" in ln for ln in lines), lines
    assert any("sources.0.token_files.0" in ln and "chmod 600" in ln for ln in lines)
    assert any("destinations.0.recipient_keys.0" in ln for ln in lines)
    assert "Traceback" not in r.stderr


def test_check_config_ok(tmp_path: Path) -> None:
    import crypto

    crypto.keygen(tmp_path, "k")
    (tmp_path / "k.key.pem").rename(tmp_path / "k.pem")
    crypto.keygen(tmp_path, "hub")
    tok = tmp_path / "t.token"
    tok.write_text("0123456789abcdef0123\n")
    tok.chmod(0o600)
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_gateway.py"),
            "check-config",
            str(write(tmp_path, GOOD)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "ok: node t, 1 sources, 1 destinations" in r.stdout
