"""The configuration schema: pydantic models that reject unknown keys.

Secrets never appear inline: tokens, keys and passwords are file paths.
Relative paths are resolved against the configuration file's directory by
the loader, so a config can be moved with its files.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}


def parse_size(value: object) -> int:
    """``64MiB`` / ``10 GB`` / ``4096`` → bytes."""
    if isinstance(value, bool):
        # pydantic reports ValueError (not TypeError) as a validation problem.
        raise ValueError("a size, e.g. 64MiB")  # noqa: TRY004
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size must not be negative")
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return int(float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError("a size, e.g. 64MiB, 10GB or 4096")


Size = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyFile(Strict):
    file: str = Field(description="PKCS#8 PEM private key (mode 0600)")
    not_after: date | None = Field(
        default=None, description="last day this key may sign; readiness warns before"
    )


class AuditConfig(Strict):
    dir: str | None = Field(
        default=None, description="audit log directory (default: <state_dir>/audit)"
    )
    fsync: Literal["entry", "batch", "off"] = Field(
        default="batch", description="fsync every entry, every batch, or never"
    )
    max_file_bytes: Size = Field(default=64 * 1024**2, description="rotate above this")
    checkpoint_every: int = Field(
        default=1000, ge=1, description="entries per checkpoint"
    )
    checkpoint_seconds: float = Field(default=60.0, gt=0, description="or this often")
    retired_keys: list[str] = Field(
        default_factory=list,
        description="public keys of our former keys, so `audit verify` accepts "
        "checkpoints they signed",
    )


class NodeConfig(Strict):
    name: str = Field(pattern=NAME, description="this node's name (logs, audit)")
    state_dir: str = Field(description="directory for the spool and the audit log")
    keys: list[KeyFile] = Field(
        min_length=1,
        description="our SM2 keys; the first usable one seals, all of them open",
    )
    sm2_backend: Literal["auto", "libcrypto", "gmssl-pyx"] = "auto"
    key_expiry_warning_days: int = Field(default=30, ge=0)
    keep_delivered_days: float = Field(
        default=7.0,
        gt=0,
        description="delete inputs this long after all their records were delivered "
        "(GET /v1/intake answers until then); dead-lettered, quarantined and hub "
        "inbox data are kept",
    )
    intake_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        default="auto",
        description="processes that parse, map and validate inputs beside the "
        "gateway process; auto: one per core but one, at least 2, at most 4; "
        "0: in the gateway process",
    )
    audit: AuditConfig = AuditConfig()


class Listen(Strict):
    ingest: str | None = Field(
        default=None, description="host:port for /v1/ingest and /v1/envelopes"
    )
    admin: str = Field(
        default="127.0.0.1:9108",
        description="host:port for /metrics, /healthz, /readyz, / and /api/*",
    )
    admin_token_files: list[str] = Field(
        default_factory=list,
        description="files (mode 0600) holding the bearer tokens of the admin API "
        "(/api/*, the status page); none: /api/* answers 403",
    )

    @field_validator("ingest", "admin")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return v


class ErrorBudget(Strict):
    """Hold a whole input in quarantine when too many of its records fail."""

    max_rejected: int | None = Field(
        default=None,
        ge=0,
        description="more rejected records than this holds the input",
    )
    max_ratio: float | None = Field(
        default=0.5, ge=0, le=1, description="a larger rejected share holds the input"
    )
    min_records: int = Field(
        default=20, ge=0, description="inputs with fewer records only obey max_rejected"
    )

    def exceeded(self, read: int, rejected: int) -> bool:
        if self.max_rejected is not None and rejected > self.max_rejected:
            return True
        return (
            self.max_ratio is not None
            and read >= self.min_records
            and read > 0
            and rejected / read > self.max_ratio
        )


def _tag(default: str, choices: str, key: str = "type") -> Any:
    """A callable discriminator: a missing tag means ``default``."""

    def pick(v: Any) -> str:
        if isinstance(v, dict):
            return str(v.get(key, default))
        return str(getattr(v, key, default))

    return Discriminator(
        pick,
        custom_error_type="unknown_type",
        custom_error_message=f"{key} must be one of: {choices}",
    )


class HttpTransport(Strict):
    """Producers push over HTTP: ``POST /v1/ingest/{source}`` (the default)."""

    type: Literal["http"] = "http"


class StableCompletion(Strict):
    """A file is complete when its size and mtime stay the same across polls."""

    mode: Literal["stable"] = "stable"
    stable_s: float = Field(
        default=2.0,
        ge=0,
        description="size and mtime unchanged for at least this long (and over "
        "two polls) before the file is claimed",
    )


class MarkerCompletion(Strict):
    """A file is complete when the producer has written ``NAME<suffix>`` beside it."""

    mode: Literal["marker"] = "marker"
    suffix: str = Field(
        default=".done", min_length=1, description="marker file name suffix"
    )


Completion = Annotated[
    Annotated[StableCompletion, Tag("stable")]
    | Annotated[MarkerCompletion, Tag("marker")],
    _tag("stable", "stable, marker", "mode"),
]


class FileIntake(Strict):
    """What file transports (SFTP, directory) share on the receiving side."""

    processing_dir: str = Field(
        default=".processing",
        description="claimed files are renamed here (relative: inside the watched "
        "directory; must be on the same file system)",
    )
    done_dir: str = Field(default="done", description="archive of processed files")
    error_dir: str = Field(
        default="error", description="files whose input was quarantined or refused"
    )
    pattern: str = Field(default="*", description="fnmatch pattern of file names")
    completion: Completion = StableCompletion()
    after: Literal["archive", "delete"] = Field(
        default="archive",
        description="after the input is durable: move the file to done_dir, or "
        "delete it (quarantined files always go to error_dir)",
    )
    content_type: str | None = Field(
        default=None,
        description="media type (and charset) of the files; default: the "
        "source's first content_types entry",
    )
    poll_interval_s: float = Field(default=5.0, gt=0, le=3600)
    backoff_max_s: float = Field(
        default=300.0, gt=0, description="longest wait between reconnect attempts"
    )


class SftpAlgorithms(Strict):
    """Allowed algorithms, in order of preference (empty: paramiko's defaults)."""

    kex: list[str] = Field(default_factory=list)
    ciphers: list[str] = Field(default_factory=list)
    macs: list[str] = Field(default_factory=list)
    host_keys: list[str] = Field(default_factory=list)


class SftpConnection(Strict):
    """How to reach an SFTP server; secrets are read from files."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, gt=0, lt=65536)
    user: str = Field(min_length=1)
    known_hosts: str = Field(
        description="OpenSSH known_hosts file; a host not in it is refused"
    )
    key_file: str | None = Field(
        default=None, description="private key file (OpenSSH or PEM, mode 0600)"
    )
    key_passphrase_file: str | None = None
    password_file: str | None = Field(
        default=None, description="file holding the password (mode 0600)"
    )
    algorithms: SftpAlgorithms = SftpAlgorithms()
    connect_timeout_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0, description="per SFTP operation")

    @model_validator(mode="after")
    def _one_auth(self) -> SftpConnection:
        if (self.key_file is None) == (self.password_file is None):
            raise ValueError("give exactly one of key_file and password_file")
        return self


class SftpTransport(FileIntake, SftpConnection):
    """Poll a directory on an SFTP server."""

    type: Literal["sftp"] = "sftp"
    remote_dir: str = Field(min_length=1, description="where producers drop files")


class DirectoryTransport(FileIntake):
    """Watch a local drop folder (inotify, with polling as fallback)."""

    type: Literal["directory"] = "directory"
    path: str = Field(min_length=1, description="the drop folder")
    watch: Literal["auto", "inotify", "poll"] = "auto"


SourceTransport = Annotated[
    Annotated[HttpTransport, Tag("http")]
    | Annotated[SftpTransport, Tag("sftp")]
    | Annotated[DirectoryTransport, Tag("directory")],
    _tag("http", "http, sftp, directory"),
]


class SourceConfig(Strict):
    name: str = Field(pattern=NAME)
    transport: SourceTransport = Field(
        default_factory=HttpTransport,
        description="how inputs arrive: http (default), sftp or directory",
    )
    adapter: str = Field(
        default="national_jsonl",
        description="adapter name (national_jsonl, a mapping, or a Python adapter)",
    )
    options: dict[str, object] = Field(
        default_factory=dict, description="adapter options, validated by the adapter"
    )
    token_files: list[str] = Field(
        default_factory=list,
        description="files each holding one bearer token for this source "
        "(http transport only)",
    )
    content_types: list[str] = Field(
        default_factory=lambda: ["application/x-ndjson", "application/json"],
        description="accepted Content-Type media types",
    )
    max_bytes: Size = Field(default=64 * 1024**2, description="largest input accepted")
    destinations: list[str] | None = Field(
        default=None, description="where this source's records go (default: all)"
    )
    error_budget: ErrorBudget = ErrorBudget()


class Batch(Strict):
    max_records: int = Field(default=1000, ge=1, le=100_000)
    max_bytes: Size = Field(default=4 * 1024**2)
    linger_s: float = Field(default=0.5, ge=0, le=3600)


class Tls(Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class Retry(Strict):
    quick_attempts: int = Field(default=3, ge=1, le=10)
    initial_s: float = Field(default=0.2, gt=0)
    max_quick_s: float = Field(default=2.0, gt=0)
    backoff_min_s: float = Field(
        default=1.0, gt=0, description="first spool-level wait"
    )
    backoff_max_s: float = Field(default=300.0, gt=0, description="longest wait")
    max_age_days: float = Field(
        default=7.0,
        gt=0,
        description="re-seal envelopes older than this (inside hub dedupe retention)",
    )


class Ordering(Strict):
    """Parent-first: a child record (a section, a notice) is sent only after its
    parent (the tender project) has been delivered to the same destination."""

    parent_first: bool = Field(
        default=True, description="hold children until their parent is delivered"
    )
    hold_alarm_s: float = Field(
        default=3600.0,
        gt=0,
        description="a record held longer than this raises the held-records alarm",
    )


class RateLimit(Strict):
    """Token buckets on what is sent to one destination (absent: unlimited)."""

    records_per_s: float | None = Field(default=None, gt=0)
    envelopes_per_s: float | None = Field(default=None, gt=0)
    burst_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="how many seconds of rate may be spent at once after a pause",
    )


class DestinationBase(Strict):
    """What every destination has, whatever carries its envelopes."""

    name: str = Field(pattern=NAME)
    recipient_keys: list[str] = Field(
        min_length=1, description="public keys the envelopes are encrypted to"
    )
    receipt_keys: list[str] = Field(
        default_factory=list,
        description="public keys allowed to sign receipts (default: recipient_keys)",
    )
    compression: Literal["none", "gzip", "zstd"] = "zstd"
    batch: Batch = Batch()
    retry: Retry = Retry()
    timeout_s: float = Field(default=30.0, gt=0)
    max_in_flight: int = Field(default=2, ge=1, le=64)
    circuit_failures: int = Field(
        default=5, ge=1, description="failures that open the breaker"
    )
    circuit_open_s: float = Field(default=30.0, gt=0)
    ordering: Ordering = Ordering()
    rate_limit: RateLimit = RateLimit()


class HttpDestination(DestinationBase):
    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://", description="the hub's /v1/envelopes URL")
    tls: Tls = Tls()
    connect_timeout_s: float = Field(default=5.0, gt=0)


class FileDrop(Strict):
    """Envelope files for a hub that watches a directory (docs/operations.md)."""

    receipts_dir: str = Field(
        description="where the receiving hub writes <envelope id>.receipt"
    )
    receipt_wait_s: float = Field(
        default=30.0, ge=0, description="how long one send waits for the receipt"
    )
    receipt_poll_s: float = Field(default=0.5, gt=0)
    receipt_retry_s: float = Field(
        default=15.0, gt=0, description="retry later when no receipt came in time"
    )


class SftpDestination(DestinationBase, FileDrop, SftpConnection):
    """Upload ``<id>.env.part``, rename to ``<id>.env``, wait for the receipt file."""

    type: Literal["sftp"] = "sftp"
    remote_dir: str = Field(min_length=1, description="the hub's envelope drop dir")
    max_in_flight: int = Field(
        default=4,
        ge=1,
        le=64,
        description="envelopes waiting for their receipt at once (one SFTP session)",
    )


class DirectoryDestination(DestinationBase, FileDrop):
    """Write envelopes into a local folder watched by a hub (same receipt protocol)."""

    type: Literal["directory"] = "directory"
    path: str = Field(min_length=1, description="the hub's envelope drop dir")


Destination = Annotated[
    Annotated[HttpDestination, Tag("http")]
    | Annotated[SftpDestination, Tag("sftp")]
    | Annotated[DirectoryDestination, Tag("directory")],
    _tag("http", "http, sftp, directory"),
]
AnyDestination = HttpDestination | SftpDestination | DirectoryDestination


class Sender(Strict):
    name: str = Field(pattern=NAME)
    key: str = Field(description="the sender's SM2 public key (PEM)")


class EnvelopeDir(Strict):
    """A folder where envelopes arrive as files (from sshd or a local process)."""

    path: str = Field(description="watched for *.env files (.part files are ignored)")
    receipts_dir: str = Field(
        description="signed receipts are written here as <envelope id>.receipt"
    )
    error_dir: str = Field(
        default="error",
        description="refused envelopes are moved here (relative: inside path)",
    )
    poll_interval_s: float = Field(default=2.0, gt=0, le=3600)
    watch: Literal["auto", "inotify", "poll"] = "auto"


class HubConfig(Strict):
    senders: list[Sender] = Field(
        min_length=1, description="allow-list of sending nodes"
    )
    dedupe_retention_days: float = Field(default=30.0, gt=0)
    max_envelope_bytes: Size = Field(default=256 * 1024**2)
    max_plaintext_bytes: Size = Field(default=1024**3)
    destinations: list[str] | None = Field(
        default=None, description="forward received records onward (cascade)"
    )
    sink_dir: str | None = Field(
        default=None, description="also write each received batch as a JSONL file here"
    )
    envelope_dirs: list[EnvelopeDir] = Field(
        default_factory=list,
        description="folders where envelopes arrive as files (SFTP or local hops)",
    )


class Quota(Strict):
    max_bytes: Size = Field(default=10 * 1024**3, description="all undelivered data")
    max_records: int = Field(default=10_000_000, ge=1)
    per_source_max_bytes: Size = Field(default=2 * 1024**3)
    per_source_max_records: int = Field(default=2_000_000, ge=1)
    min_free_disk: Size = Field(default=1024**3, description="refuse input below this")
    retry_after_s: int = Field(default=30, ge=1)


class RouteMatch(Strict):
    datasets: list[str] = Field(default_factory=list, description="data set names")
    region_prefixes: list[str] = Field(
        default_factory=list, description="REGION_CODE prefixes, e.g. '3202'"
    )
    sources: list[str] = Field(default_factory=list, description="source names")
    fields: dict[str, str | list[str]] = Field(
        default_factory=dict, description="field equals one of the values"
    )


class RouteRule(Strict):
    name: str = Field(pattern=NAME)
    match: RouteMatch = RouteMatch()
    destinations: list[str] = Field(min_length=1)
    default: bool = Field(
        default=False, description="applies only when no other rule matched"
    )


class GatewayConfig(Strict):
    node: NodeConfig
    listen: Listen = Listen()
    sources: list[SourceConfig] = Field(default_factory=list)
    destinations: list[Destination] = Field(default_factory=list)
    routes: list[RouteRule] = Field(
        default_factory=list,
        description="routing rules; without any, sources[].destinations decide",
    )
    hub: HubConfig | None = None
    quota: Quota = Quota()

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        names = [s.name for s in self.sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"sources: duplicate names {sorted(dup)}")
        dests = [d.name for d in self.destinations]
        dup = {n for n in dests if dests.count(n) > 1}
        if dup:
            raise ValueError(f"destinations: duplicate names {sorted(dup)}")
        for i, s in enumerate(self.sources):
            for d in s.destinations or []:
                if d not in dests:
                    raise ValueError(
                        f"sources.{i}.destinations: unknown destination {d!r}"
                    )
        for i, r in enumerate(self.routes):
            for d in r.destinations:
                if d not in dests:
                    raise ValueError(
                        f"routes.{i}.destinations: unknown destination {d!r}"
                    )
        if self.hub is not None:
            for d in self.hub.destinations or []:
                if d not in dests:
                    raise ValueError(f"hub.destinations: unknown destination {d!r}")
        pushed = any(isinstance(s.transport, HttpTransport) for s in self.sources)
        hub_http = self.hub is not None and not self.hub.envelope_dirs
        if (pushed or hub_http) and self.listen.ingest is None:
            raise ValueError(
                "listen.ingest: required when HTTP sources or an HTTP hub are "
                "configured"
            )
        return self
