"""Mapping adapters: records per second per input format, on one core.

    .venv/bin/python bench/adapter_bench.py                    # 50,000 records per format
    .venv/bin/python bench/adapter_bench.py --records 200000 --profile 25 --json

Inputs: the wuxi (GB18030 XML) and nantong (JSON Lines) exports are written by
``../shared/samples/tools/make_bulk.py`` (streaming, seeded), together with the
national records a correct adapter must produce, which are checked. The xuzhou
(TSV) and taizhou (XML, attribute values, notice context) inputs are made here by
repeating the shipped sample rows with fresh keys.

For each format it reports CPU time of this process, best of --repeat, both as
measured and scaled to a reference core: shared and virtual machines change speed
from minute to minute, so every timed run is calibrated just before it with an
empty 10-million-iteration loop (REFERENCE_LOOP_S on the reference core):

* reader   the safe reader alone (items/s; an item may make several records);
* mapping  reader + mapping: what the ``mapping`` adapter costs (records/s);
* intake   reader + mapping + catalogue validation + canonical bytes, i.e.
           ``gateway.pipeline.adapt_input`` as intake runs it (records/s).

Not a timed test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters import native  # noqa: E402
from adapters.base import NationalRecord, RawInput  # noqa: E402
from adapters.catalogue import default_catalogue  # noqa: E402
from adapters.mapping import load_mapping, shipped_mappings  # noqa: E402
from adapters.mapping.engine import CompiledMapping  # noqa: E402
from adapters.mapping.formats import Run  # noqa: E402
from gateway.pipeline import NOWHERE, adapt_input  # noqa: E402

FEEDS = ROOT / "tests" / "fixtures" / "feeds"
DEFAULT_TOOL = ROOT.parent / "shared" / "samples" / "tools" / "make_bulk.py"


REFERENCE_LOOP_S = 0.15
"""CPU seconds of the calibration loop on the reference core: a typical 2024
desktop core running CPython 3.11."""


@dataclass
class Result:
    system: str
    format: str
    input_mb: float
    items: int
    records: int
    reader_items_s: int
    mapping_records_s: int
    intake_records_s: int
    mapping_us_per_record: float
    ref_reader_items_s: int
    ref_mapping_records_s: int
    ref_intake_records_s: int
    ref_mapping_us_per_record: float
    checked: str


def calibration() -> float:
    """CPU seconds for 10 million empty loop iterations: how fast this core is now."""
    start = time.process_time()
    for _ in range(10_000_000):
        pass
    return time.process_time() - start


def best(repeat: int, fn: Callable[[], int]) -> tuple[float, float, int]:
    """Least CPU seconds over ``repeat`` runs, the least of the same scaled to the
    reference core, and what fn returned."""
    times: list[float] = []
    scaled: list[float] = []
    out = 0
    for _ in range(repeat):
        speed = REFERENCE_LOOP_S / calibration()
        start = time.process_time()
        out = fn()
        elapsed = time.process_time() - start
        times.append(elapsed)
        scaled.append(elapsed * speed)
    return min(times), min(scaled), out


def bulk_from_tool(
    tool: Path, kind: str, n: int, seed: int, out: Path
) -> tuple[Path, Path]:
    data = out / f"{kind}-{n}.{'xml' if kind == 'wuxi' else 'jsonl'}"
    expected = out / f"{kind}-{n}.expected.jsonl"
    if not data.exists():
        subprocess.run(
            [
                sys.executable,
                str(tool),
                kind,
                str(n),
                str(data),
                "--seed",
                str(seed),
                "--expected",
                str(expected),
            ],
            check=True,
        )
    return data, expected


def bulk_xuzhou(n: int, out: Path) -> Path:
    """n CJGS rows: the sample's 成交 rows with fresh DealLandIDs."""
    path = out / f"xuzhou-{n}.csv"
    if path.exists():
        return path
    sample = (
        FEEDS / "xuzhou-land-csv" / "good" / "XZTD_20261209_CJGS.csv"
    ).read_bytes()
    lines = sample.split(b"\r\n")
    head, rows = lines[:2], [r for r in lines[2:] if r and "成交".encode() in r]
    with path.open("wb") as f:
        f.write(b"\r\n".join(head) + b"\r\n")
        for i in range(n):
            cells = rows[i % len(rows)].split(b"\t")
            cells[0] = f"XZTD-CJ-BENCH-{i:08d}".encode()
            f.write(b"\t".join(cells) + b"\r\n")
    return path


def bulk_taizhou(n: int, out: Path) -> Path:
    """One notice with n items (the 007 notice's items, repeated)."""
    path = out / f"taizhou-{n}.xml"
    if path.exists():
        return path
    text = (FEEDS / "taizhou-mining-xml" / "good" / "TZKQ-CR-2026-007.xml").read_text(
        "utf-8"
    )
    start, end = text.index("    <item "), text.index("  </items>")
    items = text[start:end].split("    <item ")[1:]
    with path.open("w", encoding="utf-8") as f:
        f.write(text[:start])
        for i in range(n):
            f.write("    <item " + items[i % len(items)])
        f.write(text[end:])
    return path


def measure(
    system: str,
    mapping: CompiledMapping,
    path: Path,
    expected: Path | None,
    repeat: int,
) -> Result:
    data = path.read_bytes()
    raw = RawInput(source="bench", data=data, name=path.name)
    catalogue = default_catalogue()
    reader_s, reader_ref, items = best(
        repeat, lambda: sum(1 for _ in mapping.format.items(raw, Run(raw)))
    )
    mapping_s, mapping_ref, records = best(
        repeat, lambda: sum(isinstance(r, NationalRecord) for r in mapping.parse(raw))
    )
    intake_s, intake_ref, accepted = best(
        max(1, repeat // 2),
        lambda: len(adapt_input(mapping, raw, catalogue, NOWHERE).records),
    )
    checked = "-"
    if expected is not None:
        want = [json.loads(line) for line in expected.open(encoding="utf-8")]
        got = [r for r in mapping.parse(raw) if isinstance(r, NationalRecord)]
        bad = sum(
            g.dataset != w["dataset"]
            or any(g.fields.get(k) != v for k, v in w["fields"].items())
            for g, w in zip(got, want, strict=False)
        ) + abs(len(got) - len(want))
        checked = f"{len(want) - bad}/{len(want)} equal"
    elif accepted != records:
        checked = f"{records - accepted} rejected by the catalogue"
    return Result(
        system=system,
        format=mapping.format.name,
        input_mb=round(len(data) / 1e6, 1),
        items=items,
        records=records,
        reader_items_s=round(items / reader_s),
        mapping_records_s=round(records / mapping_s),
        intake_records_s=round(accepted / intake_s),
        mapping_us_per_record=round((mapping_s - reader_s) / records * 1e6, 1),
        ref_reader_items_s=round(items / reader_ref),
        ref_mapping_records_s=round(records / mapping_ref),
        ref_intake_records_s=round(accepted / intake_ref),
        ref_mapping_us_per_record=round((mapping_ref - reader_ref) / records * 1e6, 1),
        checked=checked,
    )


def profile(mapping: CompiledMapping, path: Path, top: int) -> str:
    raw = RawInput(source="bench", data=path.read_bytes())
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for _ in mapping.parse(raw):
        pass
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=50_000, help="records per format")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    p.add_argument("--tool", type=Path, default=DEFAULT_TOOL, help="make_bulk.py")
    p.add_argument("--workdir", type=Path, help="keep generated inputs here")
    p.add_argument("--cpu", type=int, help="pin to this CPU (Linux)")
    p.add_argument(
        "--profile", type=int, default=0, metavar="N", help="top N functions"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per format")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    mappings = {name: load_mapping(path) for name, path in shipped_mappings().items()}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, Path, Path | None]] = []
    if args.tool.is_file():
        wx, wx_exp = bulk_from_tool(args.tool, "wuxi", args.records, args.seed, work)
        nt, nt_exp = bulk_from_tool(args.tool, "nantong", args.records, args.seed, work)
        inputs += [
            ("wuxi-construction-xml", wx, wx_exp),
            ("nantong-procurement-json", nt, nt_exp),
        ]
    else:
        print(
            f"{args.tool} not found: skipping the wuxi and nantong bulk inputs",
            file=sys.stderr,
        )
    inputs += [
        ("xuzhou-land-csv", bulk_xuzhou(args.records, work), None),
        ("taizhou-mining-xml", bulk_taizhou(args.records, work), None),
    ]
    results = []
    for system, path, expected in inputs:
        result = measure(system, mappings[system], path, expected, args.repeat)
        results.append(result)
        if args.json:
            print(json.dumps(asdict(result), ensure_ascii=False))
        if args.profile:
            print(
                f"\n--- profile: {system} ---\n{profile(mappings[system], path, args.profile)}"
            )
    if not args.json:
        columns = f"{'reader/s':>10}{'mapping/s':>11}{'intake/s':>10}{'µs/rec':>8}"
        print(f"\n{'':<48}{'--- this machine ---':>39}{'--- reference core ---':>39}")
        print(
            f"{'system':<26}{'fmt':>6}{'MB':>7}{'records':>9}{columns}{columns}  check"
        )
        for r in results:
            print(
                f"{r.system:<26}{r.format:>6}{r.input_mb:>7}{r.records:>9}"
                f"{r.reader_items_s:>10}{r.mapping_records_s:>11}"
                f"{r.intake_records_s:>10}{r.mapping_us_per_record:>8}"
                f"{r.ref_reader_items_s:>10}{r.ref_mapping_records_s:>11}"
                f"{r.ref_intake_records_s:>10}{r.ref_mapping_us_per_record:>8}"
                f"  {r.checked}"
            )
        load = os.getloadavg()[0]
        print(
            f"\nreference core: the calibration loop takes {REFERENCE_LOOP_S} s CPU; "
            f"here it takes {calibration():.2f} s now"
        )
        print(
            f"\n(CPU time of this process, best of {args.repeat}; load average {load:.1f} "
            f"on {os.cpu_count()} CPUs; inputs in {work}; mapping engine: "
            f"{native.engine_kind()})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
