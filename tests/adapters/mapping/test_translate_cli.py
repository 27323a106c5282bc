"""``run_gateway.py translate``: CONTRACT.md §2 (stdout records, stderr rejects,
exit 0 / 1 / 2, nothing spooled or sent)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[3]
FEEDS = ROOT / "tests" / "fixtures" / "feeds"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            node:
              name: t
              state_dir: {tmp_path / "state"}
              keys: [{{file: {tmp_path / "absent.key.pem"}}}]
            listen: {{ingest: "127.0.0.1:18080", admin: "127.0.0.1:19108"}}
            sources:
              - name: nantong
                adapter: mapping
                options: {{mapping: nantong-procurement-json}}
                token_files: [{tmp_path / "absent.token"}]
              - name: wuxi
                adapter: mapping
                options: {{mapping: wuxi-construction-xml}}
                token_files: [{tmp_path / "absent.token"}]
              - name: broken
                adapter: mapping
                options: {{mapping: no-such-mapping}}
                token_files: [{tmp_path / "absent.token"}]
            destinations: []
            """
        ),
        encoding="utf-8",
    )
    return path


def translate(
    capsys: pytest.CaptureFixture[str], config: Path, source: str, *inputs: Path | str
) -> tuple[int, list[dict[str, object]], list[str]]:
    code = main(
        ["translate", "--config", str(config), "--source", source, *map(str, inputs)]
    )
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    return code, records, err.splitlines()


def test_good_inputs_exit_0_with_national_records(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    good = sorted((FEEDS / "nantong-procurement-json" / "good").iterdir())
    code, records, errors = translate(capsys, config, "nantong", *good)
    assert code == 0
    assert errors == []
    expected = [
        json.loads(line)
        for line in (FEEDS / "nantong-procurement-json" / "expected.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert [set(r) for r in records] == [{"dataset", "fields"}] * len(expected)
    for got, want in zip(records, expected, strict=True):
        assert got["dataset"] == want["dataset"]
        fields = got["fields"]
        assert isinstance(fields, dict)
        assert fields.items() >= want["fields"].items()


def test_rejected_records_exit_1_with_locator_and_reason(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    bad = FEEDS / "nantong-procurement-json" / "bad"
    code, records, errors = translate(
        capsys,
        config,
        "nantong",
        bad / "nantong_truncated.jsonl",
        bad / "nantong_bad_uscc.jsonl",
    )
    assert code == 1
    assert len(records) == 3  # lines 1-2 of the truncated file
    assert len(errors) == 2
    assert errors[0].startswith(f"{bad / 'nantong_truncated.jsonl'}: line 3, column")
    assert errors[0].endswith("[E_JSON_SYNTAX]")
    assert "PURCHASER_CODE from cgrdm" in errors[1]
    assert errors[1].endswith("[E_USCC_CHECK]")


def test_catalogue_rejects_are_reported_like_intake(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    bad = FEEDS / "wuxi-construction-xml" / "bad" / "wuxi_section_not_extending.xml"
    code, records, errors = translate(capsys, config, "wuxi", bad)
    assert code == 1
    assert [r["dataset"] for r in records] == ["TENDER_PROJECT"]
    [error] = errors
    assert "记录[2]" in error
    assert "field BID_SECTION_CODE" in error
    assert error.endswith("[E_CODE_PARENT]")


def test_unusable_inputs_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    bad = FEEDS / "wuxi-construction-xml" / "bad"
    good = FEEDS / "wuxi-construction-xml" / "good" / "wxjy_export_20261103.xml"
    code, records, errors = translate(
        capsys,
        config,
        "wuxi",
        bad / "wuxi_doctype_xxe.xml",
        tmp_path / "absent.xml",
        good,
    )
    assert code == 2
    assert len(records) == 5  # the usable file is still translated
    assert errors[0].startswith(f"{bad / 'wuxi_doctype_xxe.xml'}: line 2")
    assert errors[0].endswith("[E_XML_DOCTYPE]")
    assert (
        errors[1]
        == f"{tmp_path / 'absent.xml'}: cannot read (No such file or directory)"
    )


def test_configuration_problems_exit_2(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    code, _, errors = translate(capsys, config, "nope", "x")
    assert code == 2
    assert errors == [f"usage: --source nope: not in {config} (nantong, wuxi, broken)"]
    code, _, errors = translate(capsys, config, "broken", "x")
    assert code == 2
    assert errors[0].startswith(
        f"{config}: sources.2.options: mapping: no shipped mapping"
    )


def test_nothing_is_spooled_or_sent(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    good = FEEDS / "wuxi-construction-xml" / "good" / "wxjy_export_20261103.xml"
    code, _, _ = translate(capsys, config, "wuxi", good)
    assert code == 0
    assert not (config.parent / "state").exists()


def test_run_gateway_entry_point(config: Path) -> None:
    good = FEEDS / "xuzhou-land-csv" / "good" / "XZTD_20261103_CRGG.csv"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_gateway.py"),
            "translate",
            "--config",
            str(config),
            "--source",
            "wuxi",
            str(good),
        ],
        capture_output=True,
        check=False,
        cwd=ROOT,
    )
    # A CSV fed to the XML source is unusable input: exit 2, one line, no traceback.
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.decode().splitlines()) == 1


def test_check_config_lists_mapping_problems_with_positions(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    mapping = tmp_path / "mine.yaml"
    mapping.write_text(
        textwrap.dedent(
            """\
            version: 1
            name: mine
            timezone: "+08:00"
            input: {format: jsonl}
            records:
              - dataset: PROJEKT
                fields: {PROJECT_CODE: code}
            """
        ),
        encoding="utf-8",
    )
    text = config.read_text(encoding="utf-8").replace(
        "options: {mapping: no-such-mapping}",
        f"options: {{mapping: mine.yaml, base_dir: {tmp_path}}}",
    )
    config.write_text(text, encoding="utf-8")
    assert main(["check-config", str(config)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert (
        f"{config}: sources.2.options: {mapping}:6:14: records.0.dataset: unknown data "
        "set 'PROJEKT' in catalogue 2026.1 (did you mean PROJECT?)"
    ) in errors
