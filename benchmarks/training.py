"""Training time per 1,000 pairs on this CPU (head: cold and warm cache; full fine-tuning) and accuracy.

    .venv/bin/python benchmarks/training.py      # after benchmarks/personalization.py prepared the data

Writes benchmarks/results/training.{json,md}. Cold = an empty embedding cache (every distinct text
is encoded); warm = the same run again (the cache is hit). `--tune full` runs one epoch on the first
300 TL;DR training pairs and is extrapolated per 1,000 pairs.
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
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dataset in ("tldr", "s1", "s2"):
            data = work / f"split_{dataset}" / "train.jsonl"
            n = len(load_pairs(data))
            os.environ["RFM_CACHE"] = str(tmp / f"cache-{dataset}")
            for cache in ("cold", "warm"):
                seconds, summary = timed(data, tmp / "run", features=32)
                rows.append({"dataset": dataset, "tune": "head", "cache": cache, "pairs": n, "seconds": seconds,
                             "s_per_1000_pairs": 1000 * seconds / n, "train_acc": summary["metrics"]["train_acc"],
                             "val_acc": summary["metrics"]["val_acc"], "encoded_texts": summary["encoded_texts"]})
                print(rows[-1], flush=True)
        subset = tmp / "tldr300.jsonl"
        write_pairs(subset, load_pairs(work / "split_tldr" / "train.jsonl")[:300])
        seconds, summary = timed(subset, tmp / "full", features=32, tune="full", epochs=1, val_frac=0.1,
                                 batch_size=16)
        rows.append({"dataset": "tldr (300 pairs, 1 epoch)", "tune": "full", "cache": "-", "pairs": 300,
                     "seconds": seconds, "s_per_1000_pairs": 1000 * seconds / 300,
                     "train_acc": summary["metrics"]["train_acc"], "val_acc": summary["metrics"]["val_acc"]})
        print(rows[-1], flush=True)
    result = {"command": "python benchmarks/training.py", "runs": rows}
    (out_dir / "training.json").write_text(json.dumps(result, indent=1))
    from report import training_report

    training_report(out_dir / "training.json", out_dir)


if __name__ == "__main__":
    main()
