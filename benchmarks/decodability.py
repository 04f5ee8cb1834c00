"""Why the synthetic scenarios stay far from their targets: how much of each synthetic attribute a
linear head can read from the frozen encoder's pooled embedding.

    .venv/bin/python benchmarks/decodability.py    # after benchmarks/personalization.py (uses its cache)

For every attribute of `rfm data synth`, a ridge regression from the frozen all-MiniLM-L6-v2
embedding (response pooling, max_length 256, as trained) predicts the standardised attribute;
3-fold cross-validated R^2 is reported. Writes benchmarks/results/decodability.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime.tokenize import PairTokenizer  # noqa: E402
from rfm.train.backbone import load_backbone  # noqa: E402
from rfm.train.model import RewardFeatureModel, rfm_config  # noqa: E402
from rfm.train.run import _cached_embeddings  # noqa: E402
from rfm.train.trainer import TrainConfig, index_pairs  # noqa: E402

from rfm.data.jsonl import load_pairs  # noqa: E402
from rfm.data.synth import ATTRIBUTE_NAMES, raw_attributes  # noqa: E402


def main() -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score

    work = ROOT / "benchmarks" / "work"
    cfg = TrainConfig(min_pairs=1)
    pairs = load_pairs(work / "split_s1" / "train.jsonl")
    data = index_pairs(pairs, cfg)
    tokenizer, backbone = load_backbone("minilm")
    config = rfm_config(backbone.config, kind="rfm", features=8, head="linear", head_hidden=8, dropout=0.0,
                        max_length=cfg.max_length, truncation="longest_first", backbone_name="minilm",
                        pooling=cfg.pooling)
    model = RewardFeatureModel(config, backbone=backbone).eval()
    embeddings, _, _ = _cached_embeddings(model, PairTokenizer(tokenizer.backend_tokenizer, cfg.max_length),
                                          data, cfg, False, None)
    attrs = np.stack([raw_attributes(response) for _, response in data.texts])
    attrs = (attrs - attrs.mean(0)) / (attrs.std(0) + 1e-12)
    r2 = {name: float(cross_val_score(RidgeCV(alphas=[0.1, 1, 10, 100]), embeddings, attrs[:, k], cv=3,
                                      scoring="r2").mean()) for k, name in enumerate(ATTRIBUTE_NAMES)}
    result = {"command": "python benchmarks/decodability.py", "texts": len(data.texts), "r2": r2}
    out = ROOT / "benchmarks" / "results"
    (out / "decodability.json").write_text(json.dumps(result, indent=1))
    lines = ["# Synthetic attributes: what a linear head can read from frozen MiniLM", "",
             f"Command: `{result['command']}`; {len(data.texts)} distinct (prompt, response) texts of the "
             "Scenario-1 training raters; 3-fold cross-validated R^2 of a ridge regression.", "",
             "| attribute | R^2 |", "|---|---:|"] + [f"| {k} | {v:.2f} |" for k, v in r2.items()]
    (out / "decodability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
