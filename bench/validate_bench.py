"""National-record validation throughput, one core, per record family.

Usage: ``python bench/validate_bench.py [--seconds S] [--profile]``.

Families:
  * demo: ``gateway.demo_data.demo_records(n, pad=450)`` (PROJECT, TENDER_PROJECT,
    two SECTIONs per project; ~2 KB SECTION records), distinct codes per project
  * samples: every record of ``/work/shared/samples/expected/*.jsonl`` (all four
    domains), cycled
  * invalid: the demo records with one field broken each (the reject path)

Prints records/s of ``Catalogue.validate`` (what the gateway's intake and the
hub's receive call) for each family, best of ``--repeat`` runs:

  * cold: every memo of the validator and of adapters.identifiers is emptied
    before each pass over the records (not timed), so only the repetition inside
    the family itself (regions, days, a project's codes in its sections) hits.
    This is the realistic number: each process validates a record once.
  * warm: passes repeat without clearing, so every check after the first pass is
    a memo hit (an upper bound; with the same records it flatters the memos).

Time is this thread's CPU time (time.thread_time), i.e. records per second of
one busy core, so other load on the machine does not count against it (it still
slows it a little through shared caches).

Runs against whatever tree it sits in; copy it into an export of an older commit
to measure that (the old tree has no memos, so cold and warm coincide).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.catalogue import Catalogue, default_catalogue  # noqa: E402
from gateway.demo_data import demo_records  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "samples" / "expected"

Records = list[tuple[str, dict[str, str]]]


def demo(count: int) -> Records:
    out: Records = []
    for r in demo_records(count, pad=450):
        fields = r["fields"]
        assert isinstance(fields, dict)
        out.append((str(r["dataset"]), {str(k): str(v) for k, v in fields.items()}))
    return out


def samples() -> Records:
    out: Records = []
    for path in sorted(SAMPLES.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            out.append((record["dataset"], record["fields"]))
    return out


def broken(records: Records) -> Records:
    """Each record with one value made wrong (cycling through the kinds)."""
    out: Records = []
    for i, (dataset, fields) in enumerate(records):
        f = dict(fields)
        name = sorted(f)[i % len(f)]
        kind = i % 4
        if kind == 0:
            f[name] = f[name][:-1] + ("X" if f[name][-1] != "X" else "Y")
        elif kind == 1:
            del f[name]
        elif kind == 2:
            f["NO_SUCH_FIELD"] = "x"
        else:
            f[name] = ""
        out.append((dataset, f))
    return out


def _no_memos() -> None:
    pass


try:
    from adapters.catalogue._validate import _cache_clear
except ImportError:  # a tree from before the memos
    _cache_clear = _no_memos


def rate(
    catalogue: Catalogue, records: Records, seconds: float, *, cold: bool
) -> float:
    validate = catalogue.validate
    n, elapsed = 0, 0.0
    while elapsed < seconds:
        if cold:
            _cache_clear()
        t0 = time.thread_time()
        for dataset, fields in records:
            validate(dataset, fields)
        elapsed += time.thread_time() - t0
        n += len(records)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--projects", type=int, default=2500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    catalogue = default_catalogue()
    families: dict[str, Callable[[], Records]] = {
        "demo (pad=450)": lambda: demo(args.projects),
        "samples (4 domains)": samples,
        "invalid (demo, 1 broken field)": lambda: broken(demo(args.projects // 4)),
    }
    for label, make in families.items():
        records = make()
        if not records:
            print(f"{label:32s}  (no records)")
            continue
        size = sum(len(json.dumps(f, ensure_ascii=False).encode()) for _, f in records)
        bad = sum(1 for d, f in records if catalogue.validate(d, f))
        cold = max(
            rate(catalogue, records, args.seconds, cold=True)
            for _ in range(args.repeat)
        )
        warm = max(
            rate(catalogue, records, args.seconds, cold=False)
            for _ in range(args.repeat)
        )
        print(
            f"{label:32s} {len(records):6d} records, avg {size / len(records):5.0f} B,"
            f" {bad:5d} with violations: cold {cold:9,.0f} records/s,"
            f" warm {warm:9,.0f} records/s"
        )
        if args.profile:
            _cache_clear()
            profiler = cProfile.Profile()
            profiler.enable()
            for dataset, fields in records:
                catalogue.validate(dataset, fields)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
