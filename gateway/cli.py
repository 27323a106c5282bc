"""Command line: ``python run_gateway.py SUBCOMMAND`` (CONTRACT.md §2).

Exit codes: 0 success; 1 the thing checked is bad; 2 usage or configuration
error. Errors are one line, ``where: what``; a traceback only with --debug.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import crypto
from config.loader import ConfigProblems, LoadedConfig
from config.loader import load as config_load
from gateway.errors import ConfigError, EnvelopeInvalid, GatewayError

if TYPE_CHECKING:
    from gateway.node import Node
    from monitoring.audit import AuditLog

BEIJING = timezone(timedelta(hours=8))
EXIT_OK = 0
EXIT_BAD = 1
EXIT_USAGE = 2

# The CLI opens what an operator hands it; far larger than any hub accepts.
CLI_MAX_ENVELOPE = 1 << 40
CLI_MAX_PLAINTEXT = 1 << 40


class UsageError(GatewayError):
    """Bad command-line use; exit 2."""

    code = "E_USAGE"


def _fail(where: str, what: str) -> None:
    print(f"{where}: {what}", file=sys.stderr)


def _atomic_output(path: Path) -> tuple[int, str]:
    """A temp file beside ``path``; the caller renames it into place when done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return fd, tmp


def _commit(tmp: str, path: Path) -> None:
    Path(tmp).replace(path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def cmd_keygen(args: argparse.Namespace) -> int:
    key_path, pub_path, kid = crypto.keygen(args.out, args.name)
    print(f"{key_path}\n{pub_path}\nkey id {kid}")
    return EXIT_OK


def cmd_seal(args: argparse.Namespace) -> int:
    sender = crypto.load_private_key(args.sender_key)
    recipients = [crypto.load_public_key(p) for p in args.to]
    src = Path(args.input)
    out = Path(args.out)
    try:
        fin = src.open("rb")
    except OSError as exc:
        raise UsageError(f"{src}: cannot read ({exc.strerror})") from exc
    fd, tmp = _atomic_output(out)
    try:
        with fin, os.fdopen(fd, "wb") as fout:
            sealed = crypto.seal_stream(
                fin,
                fout,
                sender,
                recipients,
                now=datetime.now(UTC),
                content_type=args.content_type,
                compression=args.compression,
            )
            fout.flush()
            os.fsync(fout.fileno())
        _commit(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(
        f"{out}: envelope {sealed.header.id}, {sealed.size} bytes, "
        f"sender {sender.id}, recipients {', '.join(sealed.header.recipients)}"
    )
    return EXIT_OK


def cmd_open(args: argparse.Namespace) -> int:
    ring = crypto.KeyRing([crypto.load_private_key(p) for p in args.key])
    senders = crypto.PeerTable([crypto.load_public_key(p) for p in args.sender])
    src = Path(args.input)
    out = Path(args.out)
    try:
        fin = src.open("rb")
    except OSError as exc:
        raise UsageError(f"{src}: cannot read ({exc.strerror})") from exc
    fd, tmp = _atomic_output(out)
    try:
        with fin, os.fdopen(fd, "wb") as fout:
            opened = crypto.open_stream(
                fin,
                fout,
                ring,
                senders,
                max_size=CLI_MAX_ENVELOPE,
                max_plaintext=CLI_MAX_PLAINTEXT,
            )
            fout.flush()
            os.fsync(fout.fileno())
    except EnvelopeInvalid as exc:
        Path(tmp).unlink(missing_ok=True)
        _fail(str(src), f"envelope rejected ({exc.code}): {exc.detail}")
        return EXIT_BAD
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _commit(tmp, out)
    h = opened.header
    print(
        f"{out}: {opened.plaintext_len} bytes from sender {opened.sender.id}, "
        f"envelope {h.id}, created {h.created}, {h.records} records"
    )
    return EXIT_OK


def cmd_envelope_split(args: argparse.Namespace) -> int:
    src = Path(args.envelope)
    try:
        fin = src.open("rb")
    except OSError as exc:
        raise UsageError(f"{src}: cannot read ({exc.strerror})") from exc
    try:
        with fin:
            names = crypto.split(fin, args.dir, max_size=CLI_MAX_ENVELOPE)
    except EnvelopeInvalid as exc:
        _fail(str(src), f"not a well-formed envelope ({exc.code}): {exc.detail}")
        return EXIT_BAD
    for n in names:
        print(Path(args.dir) / n)
    return EXIT_OK


def _load(path: str) -> LoadedConfig:
    try:
        return config_load(path)
    except ConfigProblems as exc:
        raise ConfigError("\n".join(str(p) for p in exc.problems)) from exc


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.node import build_node

    loaded = _load(args.file)
    node = build_node(loaded)
    m = loaded.model
    print(
        f"{args.file}: ok: node {m.node.name}, {len(node.sources)} sources, "
        f"{len(node.destinations)} destinations"
        + (f", hub with {len(node.senders)} senders" if m.hub else "")
        + f", sealing key {node.ring.current(datetime.now(UTC)).id}"
    )
    return EXIT_OK


_MEDIA_TYPES = {
    ".xml": "application/xml",
    ".csv": "text/csv",
    ".tsv": "text/csv",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}


def cmd_translate(args: argparse.Namespace) -> int:
    """Dry run of one source's adapter and validation: nothing is spooled or sent."""
    from adapters.base import RawInput
    from adapters.catalogue import default_catalogue
    from adapters.readers import InputRejected
    from adapters.registry import REGISTRY
    from gateway.pipeline import NOWHERE, adapt_input

    loaded = _load(args.config)
    sources = loaded.model.sources
    index = next((i for i, s in enumerate(sources) if s.name == args.source), None)
    if index is None:
        known = ", ".join(s.name for s in sources) or "none"
        raise UsageError(f"--source {args.source}: not in {args.config} ({known})")
    src = sources[index]
    spec = REGISTRY.get(src.adapter)
    if spec is None:
        raise ConfigError(
            f"{args.config}: sources.{index}.adapter: unknown adapter {src.adapter!r}"
        )
    try:
        adapter = spec.create(src.options, where=f"sources.{index}")
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: sources.{index}.options: {exc}") from exc
    catalogue = default_catalogue()
    out = sys.stdout.buffer
    status = EXIT_OK
    for name in args.inputs:
        path = Path(name)
        try:
            data = path.read_bytes()
        except OSError as exc:
            _fail(name, f"cannot read ({exc.strerror})")
            status = EXIT_USAGE
            continue
        raw = RawInput(
            source=src.name,
            data=data,
            content_type=_MEDIA_TYPES.get(
                path.suffix.lower(), "application/octet-stream"
            ),
            name=path.name,
        )
        try:
            # Validation exactly as intake; routing is not part of a dry run.
            adapted = adapt_input(adapter, raw, catalogue, NOWHERE)
        except InputRejected as exc:
            _fail(name, f"{exc.message_en} / {exc.message_zh} [{exc.code}]")
            status = EXIT_USAGE
            continue
        for record in adapted.records:
            out.write(record.canonical + b"\n")
        for reject in adapted.rejects:
            message = reject.message
            if not message.startswith(reject.locator):
                message = f"{reject.locator}: {message}"
            _fail(name, f"{message} [{reject.code}]")
        if adapted.rejects and status == EXIT_OK:
            status = EXIT_BAD
    out.flush()
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import run as app_run
    from gateway.node import build_node
    from monitoring.logging import setup as log_setup

    loaded = _load(args.config)
    node = build_node(loaded)
    log_setup(args.log_level)
    return app_run(node)


def _status_data(loaded: LoadedConfig) -> dict[str, object]:
    from gateway.spool import Spool

    m = loaded.model
    path = loaded.resolve(m.node.state_dir) / "spool.db"
    out: dict[str, object] = {"node": m.node.name}
    sources: dict[str, dict[str, object]] = {
        s.name: {
            "accepted": 0,
            "records": 0,
            "rejected": 0,
            "quarantined": 0,
            "last_error": None,
        }
        for s in m.sources
    }
    dests: dict[str, dict[str, object]] = {
        d.name: {
            "queued": 0,
            "delivered": 0,
            "dead": 0,
            "oldest_age_s": None,
            "held": 0,
            "oldest_held_s": None,
            "last_error": None,
        }
        for d in m.destinations
    }
    hub = {"envelopes": 0, "records": 0}
    if path.exists():
        with Spool(path, readonly=True) as spool:
            for n, c in spool.source_counts().items():
                sources[n] = {
                    "accepted": c.accepted,
                    "records": c.records,
                    "rejected": c.rejected,
                    "quarantined": c.quarantined,
                }
            for n, d in spool.destination_counts(now=time.time()).items():
                dests[n] = {
                    "queued": d.queued + d.leased + d.sealed,
                    "delivered": d.delivered,
                    "dead": d.dead,
                    "oldest_age_s": d.oldest_age_s,
                    "held": d.held,
                    "oldest_held_s": d.oldest_held_s,
                    "envelopes_pending": d.envelopes_pending,
                }
            errors = spool.last_errors()
            for n, v in sources.items():
                v["last_error"] = errors["sources"].get(n)
            for n, per in dests.items():
                per["last_error"] = errors["destinations"].get(n)
            if m.hub is not None:
                h = spool.hub_counts()
                hub = {
                    "envelopes": h.envelopes,
                    "records": h.records,
                    "duplicates": h.duplicates,
                }
    out["sources"] = sources
    out["destinations"] = dests
    if m.hub is not None:
        out["hub"] = hub
    return out


def cmd_status(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    data = _status_data(loaded)
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return EXIT_OK
    print(f"node {data['node']}")
    print(
        f"{'source':<28}{'inputs':>10}{'records':>10}{'rejected':>10}{'quarant.':>10}"
    )
    for n, c in data["sources"].items():  # type: ignore[attr-defined]
        print(
            f"{n:<28}{c['accepted']:>10}{c['records']:>10}{c['rejected']:>10}"
            f"{c['quarantined']:>10}"
        )
    print(
        f"{'destination':<28}{'queued':>10}{'delivered':>10}{'dead':>10}"
        f"{'oldest s':>10}{'held':>10}"
    )
    for n, d in data["destinations"].items():  # type: ignore[attr-defined]
        age = "-" if d["oldest_age_s"] is None else f"{d['oldest_age_s']:.0f}"
        print(
            f"{n:<28}{d['queued']:>10}{d['delivered']:>10}{d['dead']:>10}{age:>10}"
            f"{d['held']:>10}"
        )
    for kind in ("sources", "destinations"):
        for n, v in data[kind].items():  # type: ignore[attr-defined]
            if v.get("last_error"):
                print(f"last error of {n}: {v['last_error']}")
    if "hub" in data:
        h = data["hub"]
        print(f"hub: {h['envelopes']} envelopes, {h['records']} records")  # type: ignore[index]
    return EXIT_OK


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _audit_for(node: Node) -> AuditLog:
    """The node's audit log, opened by this process for an operator action."""
    from monitoring.audit import AuditLog

    a = node.config.model.node.audit
    return AuditLog.open(
        node.audit_dir,
        node=node.name,
        signer=lambda: node.ring.current(datetime.now(UTC)),
        fsync="entry",
        max_file_bytes=a.max_file_bytes,
        checkpoint_every=a.checkpoint_every,
        checkpoint_seconds=a.checkpoint_seconds,
    )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from monitoring.audit import verify as audit_verify

    loaded = _load(args.config)
    m = loaded.model
    keys: list[crypto.PublicKey] = [crypto.load_public_key(p) for p in args.pub]
    for i, kf in enumerate(m.node.keys):
        try:
            keys.append(crypto.load_private_key(loaded.resolve(kf.file)).public)
        except GatewayError as exc:
            if not args.pub:
                raise ConfigError(
                    f"{loaded.path}: node.keys.{i}.file: {exc} "
                    "(auditors without the private key: pass --pub FILE)"
                ) from exc
    keys += [
        crypto.load_public_key(loaded.resolve(p)) for p in m.node.audit.retired_keys
    ]
    a = m.node.audit
    directory = (
        loaded.resolve(a.dir) if a.dir else loaded.resolve(m.node.state_dir) / "audit"
    )
    result = audit_verify(directory, keys)
    print("\n".join(result.report()))
    return int(result.exit_code)


def cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.node import build_node
    from gateway.quarantine import replay
    from gateway.spool import Spool

    loaded = _load(args.config)
    path = loaded.resolve(loaded.model.node.state_dir) / "spool.db"
    if args.action == "list":
        if not path.exists():
            return EXIT_OK
        with Spool(path, readonly=True) as spool:
            entries = spool.list_quarantine(
                source=args.source, include_replayed=args.all, limit=args.limit
            )
        for e in entries:
            when = datetime.fromtimestamp(e.received_at, UTC).astimezone(BEIJING)
            print(
                f"{e.intake_id}  {when:%Y-%m-%d %H:%M:%S}  {e.source:<24} "
                f"{e.size:>9} B  {e.reason_code:<18} {e.status}  {e.message}"
            )
        return EXIT_OK
    if args.id is None:
        raise UsageError(f"quarantine {args.action}: an intake id is required")
    if args.action == "show":
        with Spool(path, readonly=True) as spool:
            stored = spool.get_input(args.id)
        if stored is None:
            _fail(args.id, "no such intake id")
            return EXIT_BAD
        p = stored.provenance
        out = {
            "intake_id": stored.intake_id,
            "status": str(stored.status),
            "source": p.source,
            "remote_addr": p.remote_addr,
            "token_id": p.token_id,
            "received_at": datetime.fromtimestamp(p.received_at, UTC).isoformat(),
            "content_type": p.content_type,
            "sm3": p.digest_hex,
            "size": len(stored.raw),
            "reason": {"code": stored.reason_code, "message": stored.reason_message},
            "rejects": [
                {"locator": r.locator, "code": r.code, "message": r.message}
                for r in stored.rejects
            ],
        }
        print(json.dumps(out, ensure_ascii=False, indent=1))
        if args.raw:
            Path(args.raw).write_bytes(stored.raw)
        return EXIT_OK
    node = build_node(loaded)
    with Spool(path) as spool, _audit_for(node) as audit:
        result = replay(spool, node.sources, node.catalogue, args.id, now=time.time())
        user = _operator()
        audit.append(
            "input_replayed",
            actor=f"operator:{user}",
            outcome="ok" if result.accepted else "refused",
            code=result.code,
            intake_id=args.id,
            user=user,
            records=result.records,
            rejected=result.rejected,
        )
    if result.accepted:
        print(
            f"{args.id}: accepted on replay: {result.records} records, "
            f"{result.rejected} rejected"
        )
        return EXIT_OK
    _fail(args.id, f"still refused ({result.code}): {result.message}")
    return EXIT_BAD


def cmd_redrive(args: argparse.Namespace) -> int:
    from gateway.node import build_node
    from gateway.spool import Spool

    loaded = _load(args.config)
    names = [d.name for d in loaded.model.destinations]
    if args.destination not in names:
        raise UsageError(f"redrive: unknown destination {args.destination!r}")
    node = build_node(loaded)
    with Spool(node.spool_path) as spool, _audit_for(node) as audit:
        n = spool.redrive_dead(args.destination, now=time.time())
        user = _operator()
        audit.append(
            "dead_redriven",
            actor=f"operator:{user}",
            user=user,
            destination=args.destination,
            records=n,
        )
    print(f"{args.destination}: {n} dead-lettered records queued again")
    return EXIT_OK


def cmd_held(args: argparse.Namespace) -> int:
    """Records held by parent-first ordering: list them, or release them."""
    from gateway.node import build_node
    from gateway.spool import Spool

    loaded = _load(args.config)
    names = [d.name for d in loaded.model.destinations]
    if args.destination is not None and args.destination not in names:
        raise UsageError(f"held: unknown destination {args.destination!r}")
    path = loaded.resolve(loaded.model.node.state_dir) / "spool.db"
    if args.action == "list":
        if not path.exists():
            return EXIT_OK
        with Spool(path, readonly=True) as spool:
            held = spool.held(args.destination)
        now = time.time()
        for h in held:
            since = datetime.fromtimestamp(h.since, UTC).astimezone(BEIJING)
            print(
                f"{h.destination:<20} {h.records:>6} held since {since:%Y-%m-%d %H:%M:%S}"
                f" ({now - h.since:,.0f} s)  waiting for {h.ref}"
            )
        return EXIT_OK
    if args.destination is None:
        raise UsageError("held release: --destination is required")
    if not args.all and not args.ref:
        raise UsageError("held release: name --ref REF (repeatable) or --all")
    node = build_node(loaded)
    refs = None if args.all else list(args.ref)
    with Spool(node.spool_path) as spool, _audit_for(node) as audit:
        n = spool.release_held(args.destination, refs, now=time.time())
        user = _operator()
        if refs is None:
            target = "*"
        else:
            target = refs[0] if len(refs) == 1 else f"{len(refs)} references"
        audit.append(
            "held_released",
            actor=f"operator:{user}",
            user=user,
            destination=args.destination,
            target=target[:200],
            records=n,
        )
    print(
        f"{args.destination}: {n} held records released (their parents are "
        "recorded as present at the destination)"
    )
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:

    p = _Parser(prog="run_gateway.py", description="Exchange gateway (交换前置机).")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument(
        "--sm2-backend",
        choices=crypto.BACKEND_NAMES,
        default="auto",
        help="SM2 implementation (default: libcrypto, else gmssl-pyx)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    k = sub.add_parser("keygen", help="new SM2 key pair")
    k.add_argument("--out", required=True, help="directory for the key files")
    k.add_argument("--name", required=True, help="file name stem")
    k.set_defaults(func=cmd_keygen)

    s = sub.add_parser("seal", help="sign and encrypt a file into an envelope")
    s.add_argument("--sender-key", required=True)
    s.add_argument("--to", action="append", required=True, help="recipient public key")
    s.add_argument("--in", dest="input", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--compression", choices=crypto.COMPRESSIONS, default="none")
    s.add_argument("--content-type", default="application/octet-stream")
    s.set_defaults(func=cmd_seal)

    o = sub.add_parser("open", help="verify and decrypt an envelope")
    o.add_argument("--key", action="append", required=True, help="our private key")
    o.add_argument(
        "--from",
        dest="sender",
        action="append",
        required=True,
        help="sender public key",
    )
    o.add_argument("--in", dest="input", required=True)
    o.add_argument("--out", required=True)
    o.set_defaults(func=cmd_open)

    r = sub.add_parser("run", help="run the gateway / hub until SIGTERM")
    r.add_argument("--config", required=True)
    r.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check-config", help="validate a config and all it names")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    tr = sub.add_parser(
        "translate", help="dry run of a source's adapter: national records on stdout"
    )
    tr.add_argument("--config", required=True)
    tr.add_argument("--source", required=True)
    tr.add_argument("inputs", nargs="+", metavar="INPUT")
    tr.set_defaults(func=cmd_translate)

    st = sub.add_parser("status", help="counts per source and destination")
    st.add_argument("--config", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    au = sub.add_parser("audit", help="audit log tools")
    ausub = au.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    av = ausub.add_parser("verify", help="verify the tamper-evident audit chain")
    av.add_argument("--config", required=True)
    av.add_argument(
        "--pub",
        action="append",
        default=[],
        help="public key that may have signed checkpoints (repeatable)",
    )
    av.set_defaults(func=cmd_audit_verify)

    q = sub.add_parser("quarantine", help="inspect and replay quarantined inputs")
    q.add_argument("action", choices=["list", "show", "replay"])
    q.add_argument("id", nargs="?", help="intake id (show, replay)")
    q.add_argument("--config", required=True)
    q.add_argument("--source", help="list: only this source")
    q.add_argument("--all", action="store_true", help="list: include replayed inputs")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--raw", help="show: also write the original bytes to this file")
    q.set_defaults(func=cmd_quarantine)

    rd = sub.add_parser("redrive", help="queue a destination's dead letters again")
    rd.add_argument("--config", required=True)
    rd.add_argument("--destination", required=True)
    rd.set_defaults(func=cmd_redrive)
    hd = sub.add_parser(
        "held", help="records waiting for their parent (parent-first ordering)"
    )
    hd.add_argument("action", choices=["list", "release"])
    hd.add_argument("--config", required=True)
    hd.add_argument("--destination")
    hd.add_argument(
        "--ref",
        action="append",
        default=[],
        help="release what waits for this reference, e.g. TENDER_PROJECT:E32...",
    )
    hd.add_argument("--all", action="store_true", help="release everything held")
    hd.set_defaults(func=cmd_held)

    e = sub.add_parser("envelope", help="envelope tools")
    esub = e.add_subparsers(
        dest="envelope_command", required=True, parser_class=_Parser
    )
    es = esub.add_parser("split", help="write the parts for checking with OpenSSL")
    es.add_argument("envelope")
    es.add_argument("dir")
    es.set_defaults(func=cmd_envelope_split)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        crypto.select_backend(args.sm2_backend)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except UsageError as exc:
        _fail("usage", str(exc))
        return EXIT_USAGE
    except ConfigError as exc:
        if debug:
            raise
        # Already "file: path: what", one problem per line.
        for line in str(exc).splitlines():
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except GatewayError as exc:
        if debug:
            raise
        where, _, what = str(exc).partition(": ")
        _fail(where if what else exc.code, what or str(exc))
        return EXIT_USAGE
    except OSError as exc:
        if debug:
            raise
        _fail(exc.filename or "io", exc.strerror or str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
