"""Render bench-results/suite.json (and chaos/fuzz JSON, if present) as the
Markdown tables of BENCHMARKS.md: ``python -m benchmarks.report [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(x: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def loads_table(report: dict[str, Any]) -> list[str]:
    out = [
        "| workload | n | saturation tx/s | load | offered tx/s | committed tx/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in report.get("loads", {}).items():
        kind, n = key.rsplit("-n", 1)
        for level, m in row["levels"].items():
            out.append(
                f"| {kind} | {n} | {_f(row['saturation_tx_s'])} | {level} | {_f(m['offered_tx_s'])} "
                f"| {_f(m['committed_tx_s'])} | {_f(m['p50_ms'])} | {_f(m['p99_ms'])} |"
            )
    return out


def baseline_table(report: dict[str, Any]) -> list[str]:
    out = [
        "| workload | unreplicated tx/s (runs) | n=4 replicated saturation tx/s | replicated / unreplicated |",
        "|---|---|---|---|",
    ]
    for kind, b in report.get("baseline", {}).items():
        runs = ", ".join(f"{x:.0f}" for x in b["runs"])
        out.append(
            f"| {kind} | {_f(b['unreplicated_tx_s'])} ({runs}) | {_f(b.get('replicated_n4_saturation_tx_s'))} "
            f"| {_f(b.get('ratio_replicated_over_unreplicated'), '{:.2f}')} |"
        )
    return out


def killed_table(report: dict[str, Any]) -> list[str]:
    k = report.get("killed")
    if not k:
        return []
    a, b = k["all_up"], k["one_killed"]
    return [
        "| n=4 anchors, 1,000 tx/s offered | committed tx/s | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| all four up | {_f(a['committed_tx_s'])} | {_f(a['p50_ms'])} | {_f(a['p99_ms'])} |",
        f"| one node SIGKILLed | {_f(b['committed_tx_s'])} | {_f(b['p50_ms'])} | {_f(b['p99_ms'])} |",
        f"| ratio | {k['ratio']:.2f} | | |",
    ]


def catchup_table(report: dict[str, Any]) -> list[str]:
    c = report.get("catchup")
    if not c:
        return []
    return [
        "| blocks | txs | seconds (incl. restart) | restart s | blocks/s | tx/s |",
        "|---|---|---|---|---|---|",
        f"| {c['blocks']} | {c['txs']} | {c['seconds_incl_restart']:.1f} | {c['restart_s']:.1f} "
        f"| {c['blocks_per_s']:.0f} | {c['tx_per_s']:.0f} |",
    ]


def soak_table(report: dict[str, Any]) -> list[str]:
    s = report.get("soak")
    if not s:
        return []
    growth = ", ".join(f"{g * 100:+.1f}%" for g in s["rss_growth_after_warmup"])
    spread = ", ".join(f"{g * 100:.1f}%" for g in s.get("rss_spread_after_warmup", []))
    samples = s["rss_samples"]
    first = samples[0]["rss_kb"] if samples else []
    warm = [x for x in samples if x["t"] >= s.get("warmup_s", 60)]
    last = samples[-1]["rss_kb"] if samples else []
    return [
        "| seconds | offered tx/s | committed txs | ledger bytes/tx "
        f"| RSS MiB at start / {s.get('warmup_s', 60)} s / end (per node) "
        "| RSS growth after warm-up (first → last minute, medians) | spread (max-min)/min "
        "| p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['seconds']:.0f} | {s['offered_tx_s']:.0f} | {s['txs_committed']} | {s['ledger_bytes_per_tx']:.0f} "
        f"| {mb(first)} · {mb(warm[0]['rss_kb']) if warm else '-'} · {mb(last)} | {growth} | {spread or '-'} "
        f"| {_f(s['p50_ms'])} / {_f(s['p99_ms'])} |",
    ]


def chaos_table(d: Path) -> list[str]:
    p = d / "chaos.json"
    if not p.exists():
        return []
    doc = json.loads(p.read_text())
    out = [
        "| n | seconds | kills | pauses | link cuts | acknowledged | committed | lost | duplicated "
        "| height | view changes | ledgers verified | problems |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["runs"]:
        out.append(
            f"| {r['n']} | {r['seconds']:.0f} | {r['kills']} | {r['pauses']} | {r['cuts']} "
            f"| {r['acknowledged']} | {r['committed']} | {r['lost']} | {r['duplicated']} "
            f"| {r['height']} | {r['view_changes']} | {r['ledgers_verified']}/{r['n']} | {len(r['problems'])} |"
        )
    t = doc["total"]
    out.append(
        f"| **all {t['runs']} runs** | | {t['kills']} | {t['pauses']} | {t['cuts']} | {t['acknowledged']} "
        f"| {t['committed']} | {t['lost']} | {t['duplicated']} | | | | {t['problems']} |"
    )
    return out


def fuzz_table(d: Path) -> list[str]:
    p = d / "fuzz.json"
    if not p.exists():
        return []
    out = [
        "| decoder (target) | inputs | edges covered | corpus | seconds | findings |",
        "|---|---|---|---|---|---|",
    ]
    for r in json.loads(p.read_text()):
        out.append(
            f"| {r['target']} | {r['inputs']} | {r.get('edges', '-')} | {r.get('corpus', '-')} "
            f"| {r['seconds']} | {len(r['findings'])} |"
        )
    return out


def mb(v: list[int]) -> str:
    return "/".join(f"{x / 1024:.0f}" for x in v)


def main() -> None:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
    report = json.loads((d / "suite.json").read_text())
    print(f"Machine: {report.get('machine')}\n")
    for title, rows in [
        ("Throughput and latency by load", loads_table(report)),
        ("Unreplicated baseline", baseline_table(report)),
        ("One node killed", killed_table(report)),
        ("Catch-up of a restarted node", catchup_table(report)),
        ("Soak", soak_table(report)),
        ("Chaos runs", chaos_table(d)),
        ("Fuzzing (libFuzzer via atheris)", fuzz_table(d)),
    ]:
        if rows:
            print(f"### {title}\n")
            print("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
