"""Merge `rfm bench --json` files from several machines into one Markdown comparison table.

    python benchmarks/merge_bench.py results/bench_cpu.json other-machine.json > comparison.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(paths: list[str]) -> str:
    if not paths:
        raise SystemExit("usage: merge_bench.py BENCH.json [BENCH.json ...]")
    runs = []
    for path in paths:
        result = json.loads(Path(path).read_text())
        m = result["machine"]
        machine = f"{m['gpu'] or m['cpu']} ({m['cores']} cores)"
        for row in result["runs"] + (result.get("torch_fp32") or []):
            runs.append((machine, row))
    lines = ["| machine | device | precision | batch | seq_len | p50 ms | seq/s |", "|---|---|---|---:|---:|---:|---:|"]
    for machine, r in sorted(runs, key=lambda x: (x[1]["batch"], x[1]["seq_len"], x[0], x[1]["precision"])):
        lines.append(f"| {machine} | {r['device']} | {r['precision']} | {r['batch']} | {r['seq_len']} | "
                     f"{r['p50_ms']:.2f} | {r['seq_per_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
