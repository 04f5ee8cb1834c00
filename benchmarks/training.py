"""Training time per 1,000 pairs on this CPU (head: cold and warm cache; full fine-tuning) and accuracy.

    .venv/bin/python benchmarks/training.py      # after benchmarks/personalization.py prepared the data

Writes benchmarks/results/training.{json,md}. Cold = an empty embedding cache (every distinct text
is encoded; TL;DR only, to keep the script short); warm = the cache filled by the personalisation
benchmark is hit. `--tune full` runs one epoch on the first 100 TL;DR training pairs and is
extrapolated per 1,000 pairs.
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
                     "val_acc": summary["metrics"]["val_acc"], "encoded_texts": summary.get("encoded_texts")})
        print(rows[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        default_cache = os.environ.get("RFM_CACHE")
        tldr = work / "split_tldr" / "train.jsonl"
        os.environ["RFM_CACHE"] = str(tmp / "cold-cache")
        seconds, summary = timed(tldr, tmp / "run", features=32)
        record("tldr", "head", "cold", len(load_pairs(tldr)), seconds, summary)
        if default_cache is None:
            del os.environ["RFM_CACHE"]
        else:
            os.environ["RFM_CACHE"] = default_cache
        for dataset in ("tldr", "s1", "s2"):
            data = work / f"split_{dataset}" / "train.jsonl"
            seconds, summary = timed(data, tmp / "run", features=32)
            record(dataset, "head", "warm", len(load_pairs(data)), seconds, summary)
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
