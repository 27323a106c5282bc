"""Transport configuration: HTTP stays the default; SFTP and directory are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import ConfigProblems, load
from config.models import (
    DirectoryDestination,
    HttpDestination,
    HttpTransport,
    MarkerCompletion,
    SftpDestination,
    SftpTransport,
    StableCompletion,
)
from gateway.errors import ConfigError
from gateway.node import build_node
from tests.harness import Site

BASE = """\
node:
  name: t
  state_dir: state
  keys: [{file: k.pem}]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(BASE + text, encoding="utf-8")
    return p


def test_existing_configs_mean_http(tmp_path: Path) -> None:
    m = load(
        write(
            tmp_path,
            "listen: {ingest: 127.0.0.1:1}\n"
            "sources: [{name: s, token_files: [t]}]\n"
            "destinations: [{name: d, url: 'http://h/v1/envelopes', "
            "recipient_keys: [k]}]\n",
        )
    ).model
    assert isinstance(m.sources[0].transport, HttpTransport)
    assert isinstance(m.destinations[0], HttpDestination)


def test_sftp_and_directory_shapes(tmp_path: Path) -> None:
    m = load(
        write(
            tmp_path,
            """\
sources:
  - name: a
    transport:
      type: sftp
      host: files.example
      user: gw
      known_hosts: kh
      key_file: id
      remote_dir: /out
      completion: {mode: marker, suffix: .ok}
      algorithms: {kex: [diffie-hellman-group14-sha1], ciphers: [aes128-cbc]}
  - name: b
    transport: {type: directory, path: /srv/drop}
destinations:
  - name: up
    type: sftp
    host: hub.example
    user: county
    known_hosts: kh
    password_file: pw
    remote_dir: /in
    receipts_dir: /receipts
    recipient_keys: [k]
  - name: local
    type: directory
    path: /srv/hub/in
    receipts_dir: /srv/hub/receipts
    recipient_keys: [k]
""",
        )
    ).model
    a, b = m.sources[0].transport, m.sources[1].transport
    assert isinstance(a, SftpTransport)
    assert isinstance(a.completion, MarkerCompletion)
    assert a.completion.suffix == ".ok"
    assert a.port == 22
    assert (a.processing_dir, a.done_dir, a.error_dir) == (
        ".processing",
        "done",
        "error",
    )
    assert not isinstance(b, HttpTransport | SftpTransport)
    assert isinstance(b.completion, StableCompletion)
    assert isinstance(m.destinations[0], SftpDestination)
    assert isinstance(m.destinations[1], DirectoryDestination)
    assert m.listen.ingest is None  # no HTTP source: no ingest listener needed


def test_problems_name_their_yaml_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems) as err:
        load(
            write(
                tmp_path,
                """\
sources:
  - name: a
    transport:
      type: sftp
      host: h
      user: u
      known_hosts: kh
      remote_dir: /x
      bogus: 1
destinations:
  - name: d
    type: carrier-pigeon
    recipient_keys: [k]
""",
            )
        )
    text = str(err.value)
    assert "sources.0.transport.bogus: Extra inputs are not permitted" in text
    assert "destinations.0: type must be one of: http, sftp, directory" in text
    assert "gw.yaml:13:" in text  # with line and column
    with pytest.raises(ConfigProblems) as err:
        load(
            write(
                tmp_path,
                "sources:\n  - name: a\n    transport: {type: sftp, host: h, "
                "user: u, known_hosts: kh, remote_dir: /x}\n",
            )
        )
    assert "sources.0.transport: give exactly one of key_file and password_file" in (
        str(err.value)
    )


def test_check_config_finds_file_problems(tmp_path: Path) -> None:
    site = Site(tmp_path)
    key = tmp_path / "id"
    key.write_text("x")
    key.chmod(0o644)
    (tmp_path / "drop").mkdir()
    path = tmp_path / "gw.yaml"
    path.write_text(
        f"""\
node:
  name: t
  state_dir: {tmp_path / "state"}
  keys: [{{file: {site.key("t")}}}]
sources:
  - name: a
    token_files: [{site.token_file()}]
    content_types: [application/x-ndjson]
    transport:
      type: sftp
      host: h
      user: u
      known_hosts: {tmp_path / "missing_known_hosts"}
      key_file: {key}
      remote_dir: /x
      content_type: text/csv
      algorithms: {{ciphers: [arcfour]}}
  - name: b
    transport: {{type: directory, path: {tmp_path / "nowhere"}}}
destinations:
  - name: d
    type: directory
    path: {tmp_path / "out"}
    receipts_dir: {tmp_path / "receipts"}
    recipient_keys: [{site.pub("hub")}]
"""
    )
    with pytest.raises(ConfigError) as err:
        build_node(load(path))
    text = str(err.value)
    for where in (
        "sources.0.token_files: only HTTP sources take bearer tokens",
        "sources.0.transport.content_type:",
        "sources.0.transport.algorithms.ciphers: 'arcfour' is not supported",
        "sources.0.transport.known_hosts:",
        "sources.0.transport.key_file:",
        "chmod 600",
        "sources.1.transport.path:",
    ):
        assert where in text, text
