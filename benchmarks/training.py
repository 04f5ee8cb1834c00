"""Training time on this CPU (the default recipe: cold and warm cache; full fine-tuning) and accuracy.

    .venv/bin/python benchmarks/training.py      # after benchmarks/personalization.py prepared the data

Writes benchmarks/results/training.{json,md}. Cold = an empty embedding cache, so every distinct text
is encoded: the default `rfm train` (layers pooling, few-shot selection) on 5,000 pairs (the first
5,000 of the Scenario-1 + taste training pairs, real UltraFeedback/HH-RLHF responses) and on the
TL;DR training pairs; warm = the cache filled by the personalisation benchmark is hit. `--tune full`
runs one epoch on the first 100 TL;DR training pairs and is extrapolated per 1,000 pairs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rfm.train.run import train  # noqa: E402
from rfm.train.trainer import TrainConfig  # noqa: E402

from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402


def timed(data: Path, out: Path, **options) -> tuple[float, dict]:
    t0 = time.perf_counter()
    summary = train(data, out, TrainConfig(**options), overwrite=True, progress=False)
    return time.perf_counter() - t0, summary


def main() -> None:
    work = ROOT / "benchmarks" / "work"
    out_dir = ROOT / "benchmarks" / "results"
    rows = []
    def record(dataset: str, tune: str, cache: str, n: int, seconds: float, summary: dict) -> None:
        rows.append({"dataset": dataset, "tune": tune, "cache": cache, "pairs": n, "seconds": seconds,
                     "s_per_1000_pairs": 1000 * seconds / n, "train_acc": summary["metrics"]["train_acc"],
                     "val_acc": summary["metrics"]["val_acc"], "encoded_texts": summary.get("encoded_texts"),
                     "fewshot_acc": summary["metrics"].get("fewshot_acc"), "best_epoch": summary.get("best_epoch"),
                     "epochs_run": summary["metrics"].get("epochs_run")})
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        default_cache = os.environ.get("RFM_CACHE")
        tldr = work / "split_tldr" / "train.jsonl"
        five_k = tmp / "5k.jsonl"
        write_pairs(five_k, (load_pairs(work / "split_s1" / "train.jsonl")
                             + load_pairs(work / "split_taste" / "train.jsonl"))[:5000])
        for name, data in (("5,000 synthetic-rater pairs", five_k), ("tldr", tldr)):
            os.environ["RFM_CACHE"] = str(tmp / f"cold-cache-{data.stem}")
            seconds, summary = timed(data, tmp / "run")
            record(name, "head (default)", "cold", len(load_pairs(data)), seconds, summary)
        if default_cache is None:
            del os.environ["RFM_CACHE"]
        else:
            os.environ["RFM_CACHE"] = default_cache
        for dataset in ("tldr", "s2", "taste"):
            data = work / f"split_{dataset}" / "train.jsonl"
            seconds, summary = timed(data, tmp / "run")
            record(dataset, "head (default)", "warm", len(load_pairs(data)), seconds, summary)
        subset = tmp / "tldr100.jsonl"
        write_pairs(subset, load_pairs(tldr)[:100])
        seconds, summary = timed(subset, tmp / "full", features=32, tune="full", epochs=1, val_frac=0.1,
                                 batch_size=16, min_pairs=1)
        record("tldr (100 pairs, 1 epoch)", "full", "-", 100, seconds, summary)
    result = {"command": "python benchmarks/training.py", "runs": rows}
    (out_dir / "training.json").write_text(json.dumps(result, indent=1))
    from report import training_report

    training_report(out_dir / "training.json", out_dir)


if __name__ == "__main__":
    main()
