"""How fast the rater weights W get through the opposing-groups plateau (issue 16): `--w-init` x `--w-lr-scale`.

Scenario 2 (two groups with opposing weights; the benchmark config's 28 training raters x 120 pairs),
the default CPU recipe otherwise, 3 seeds, warm embedding cache. Per setting: the first epoch whose
few-shot accuracy (training raters adapted from 0-20 of their choices, scored on their validation
pairs with new responses: what selects the shipped epoch) reaches 0.60, and the best few-shot accuracy.

    .venv/bin/python benchmarks/w_init.py     # after benchmarks/personalization.py prepared split_s2

Writes benchmarks/results/w_init.{json,md}.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.train.run import train  # noqa: E402
from rfm.train.trainer import TrainConfig  # noqa: E402

W_INIT = (0.0, 0.1, 0.3, 1.0)
W_LR_SCALE = (1.0, 3.0, 10.0)
SEEDS = (0, 1, 2)
REACHED = 0.60


def main() -> None:
    data = ROOT / "benchmarks" / "work" / "split_s2" / "train.jsonl"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w_init, scale, seed in itertools.product(W_INIT, W_LR_SCALE, SEEDS):
            summary = train(data, Path(tmp) / "run", TrainConfig(w_init=w_init, w_lr_scale=scale, seed=seed),
                            overwrite=True, progress=False)
            curve = [h["fewshot_acc"] for h in summary["history"]]
            reached = next((h["epoch"] for h in summary["history"] if h["fewshot_acc"] >= REACHED), None)
            rows.append({"w_init": w_init, "w_lr_scale": scale, "seed": seed, "first_epoch_at_0.60": reached,
                         "best_fewshot_acc": max(curve), "best_epoch": summary["best_epoch"], "curve": curve})
            print(rows[-1] | {"curve": None}, flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / "w_init.json").write_text(json.dumps({"command": "python benchmarks/w_init.py", "runs": rows}, indent=1))
    lines = ["# Rater weights through the opposing-groups plateau (Scenario 2, CPU head)", "",
             "Command: `python benchmarks/w_init.py`. Mean over 3 seeds; few-shot accuracy = training raters "
             "adapted from 0-20 of their choices, scored on validation pairs with new responses.", "",
             "| --w-init | --w-lr-scale | first epoch at few-shot 0.60 (per seed) | best few-shot acc | best epochs |",
             "|---:|---:|---|---:|---|"]
    for w_init, scale in itertools.product(W_INIT, W_LR_SCALE):
        runs = [r for r in rows if r["w_init"] == w_init and r["w_lr_scale"] == scale]
        firsts = ",".join("-" if r["first_epoch_at_0.60"] is None else str(r["first_epoch_at_0.60"]) for r in runs)
        lines.append(f"| {w_init:g} | {scale:g} | {firsts} | {np.mean([r['best_fewshot_acc'] for r in runs]):.3f} | "
                     + ",".join(str(r["best_epoch"]) for r in runs) + " |")
    (out / "w_init.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
