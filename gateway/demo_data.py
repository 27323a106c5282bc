"""Demo national records, made here (the project runs without ../shared).

Deterministic for a seed, fictitious, and valid: USCC check characters, Jiangsu
region codes, 17/20/23-character codes that extend their parents, and the
40-character 统一交易标识码 with its MOD 37-2 check character. Also used by the
tests and the benchmark to make load of realistic shape and size.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

from adapters.identifiers import (
    mod37_2_check_char,
    org_code_check_char,
    uscc_check_char,
)

__all__ = ["demo_jsonl", "demo_records", "make_uscc"]

_REGIONS = (
    "320102",
    "320205",
    "320311",
    "320412",
    "320506",
    "320612",
    "320703",
    "320812",
    "320903",
    "321002",
    "321102",
    "321202",
    "321302",
)
_ORGS = (
    "城市建设发展有限公司",
    "交通投资集团有限公司",
    "水务集团有限公司",
    "教育投资有限公司",
)


def make_uscc(rng: random.Random, region: str) -> str:
    """A valid 18-character USCC for a (fictitious) enterprise in ``region``."""
    body8 = "".join(rng.choice("0123456789") for _ in range(8))
    org = body8 + org_code_check_char(body8)
    first17 = "91" + region + org
    return first17 + uscc_check_char(first17)


def _deal_code(uscc: str, day: str, n: int) -> str:
    """统一交易标识码: 交易分类-USCC-date-sequence-check (DOMAIN.md §4.1)."""
    kind, seq = "A02", f"{n:06d}"
    return f"{kind}-{uscc}-{day}-{seq}-" + mod37_2_check_char(kind + uscc + day + seq)


def demo_records(
    count: int = 3, *, seed: int = 2026, pad: int = 0, start: int = 0
) -> Iterator[dict[str, object]]:
    """``count`` projects, each with a tender project and two sections.

    ``pad`` adds that many characters of description to each section, to make
    records of a given size for load tests.
    """
    rng = random.Random(seed)  # noqa: S311 - fictitious demo data, not secrets
    for i in range(start, start + count):
        region = _REGIONS[i % len(_REGIONS)]
        owner = make_uscc(rng, region)
        agency = make_uscc(rng, region)
        day = f"202611{(i % 27) + 1:02d}"
        pcode = f"E{region}{day[2:]}{i % 10000:04d}"
        tcode = pcode + "001"
        name = f"演示工程{i + 1}号（{_ORGS[i % len(_ORGS)][:4]}）"
        yield {
            "dataset": "PROJECT",
            "fields": {
                "PROJECT_CODE": pcode,
                "PROJECT_NAME": name,
                "REGION_CODE": region,
                "RELATE_CODE": "1",
                "INVEST_PROJECT_CODE": f"2026-{region}-48-01-{rng.randrange(10**6):06d}",
                "ADDRESS": f"江苏省演示路{i + 1}号",
                "LEGAL_PERSON": f"演示{_ORGS[i % len(_ORGS)]}",
                "FUND_SOURCE": "财政资金",
                "PROJECT_SCALE": "道路改造约1公里",
                "CONTACTOR": "张工",
                "CONTACT_INFORMATION": "025-80000000",
                "APPROVAL_NAME": "关于演示工程的批复",
                "CREATE_TIME": f"{day}093000",
            },
        }
        yield {
            "dataset": "TENDER_PROJECT",
            "fields": {
                "PROJECT_CODE": pcode,
                "TENDER_PROJECT_CODE": tcode,
                "IS_TO_LAW": "1",
                "TENDER_PROJECT_NAME": name + "施工",
                "REGION_CODE": region,
                "TENDER_CONTENT": "施工总承包",
                "TENDERER_NAME": f"演示{_ORGS[i % len(_ORGS)]}",
                "TENDERER_CODE": owner,
                "ISUNION": "0",
                "TENDER_AGENCY_NAME": "演示招标代理有限公司",
                "TENDER_AGENCY_CODE": agency,
                "CREATE_TIME": f"{day}100000",
                "SUPERVISE_DEPT_NAME": "演示住房和城乡建设局",
                "APPROVE_DEPT_NAME": "演示发展和改革委员会",
                "REPORT_DUTY": "张工",
            },
        }
        for s in (1, 2):
            yield {
                "dataset": "SECTION",
                "fields": {
                    "TENDER_PROJECT_CODE": tcode,
                    "BID_SECTION_CODE": f"{tcode}{s:03d}",
                    "BID_SECTION_NAME": f"第{s}标段",
                    "BID_ECTION_NUM": str(s),
                    "UNIFIED_DEAL_CODE": _deal_code(owner, day, i * 10 + s),
                    "REGION_CODE": region,
                    "TRA_PLACE_CODE": region[:4] + "00",
                    "BID_SECTION_CONTENT": "道路、排水及照明工程施工" + "。" * pad,
                    "CONTRACT_RECKON_PRICE": f"{rng.randrange(100_000, 90_000_000)}.{s}5",
                    "PRICE_UNIT": "0",
                    "BID_QUALIFICATION": "市政公用工程施工总承包二级及以上",
                    "CREATE_TIME": f"{day}110000",
                },
            }


def demo_jsonl(
    count: int = 3, *, seed: int = 2026, pad: int = 0, start: int = 0
) -> bytes:
    return b"".join(
        json.dumps(r, ensure_ascii=False).encode() + b"\n"
        for r in demo_records(count, seed=seed, pad=pad, start=start)
    )
