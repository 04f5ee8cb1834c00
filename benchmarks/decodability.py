"""How much of each synthetic attribute (and so each synthetic taste) the frozen encoder's pooled
vector can express: the ceiling of any head trained on it.

    .venv/bin/python benchmarks/decodability.py    # after benchmarks/personalization.py (uses its data and cache)

For every attribute of `rfm data synth` (the taste scenario uses length, structure, informality and
hedging), a ridge regression from the frozen all-MiniLM-L6-v2 pooled vector (max_length 256, as
trained) predicts the standardised attribute of the response; 3-fold cross-validated R^2 over the
distinct (prompt, response) texts of the synthetic raters' training pairs. Poolings: `response`
(the last layer's mean over the response's tokens: the sentence embedding), `layers` (the mean of
every layer plus log response length: rfm's default), and `layers` with a prompt budget of 32 tokens;
and the per-token part of `rfm train --head tokens` (an MLP of each response token's embedding-layer
state, averaged), fitted by least squares (3-fold CV on a seeded shuffle); and, when
benchmarks/personalization.py has trained it, the taste RFM's own 32 features. Writes benchmarks/results/decodability.{json,md}.
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
from rfm.data.synth import ATTRIBUTE_NAMES, TASTES, raw_attributes  # noqa: E402

# column -> (pooling, prompt budget)
POOLINGS = {"response": ("response", None), "layers": ("layers", None), "layers, prompt budget 32": ("layers", 32)}


def embeddings(data, pooling: str, prompt_budget: int | None = None) -> np.ndarray:
    cfg = TrainConfig(min_pairs=1, pooling=pooling, prompt_budget=prompt_budget)
    tokenizer, backbone = load_backbone("minilm")
    config = rfm_config(backbone.config, kind="rfm", features=8, head="linear", head_hidden=8, dropout=0.0,
                        max_length=cfg.max_length, truncation="longest_first", backbone_name="minilm", pooling=pooling,
                        prompt_budget=prompt_budget)
    model = RewardFeatureModel(config, backbone=backbone).eval()
    tok = PairTokenizer(tokenizer.backend_tokenizer, cfg.max_length, pad_id=tokenizer.pad_token_id,
                        prompt_budget=prompt_budget)
    matrix, _, _ = _cached_embeddings(model, tok, data, cfg, False, None)
    return matrix


TOKEN_COLUMN = "token MLP (--head tokens)"


def token_mlp_r2(data, attrs: np.ndarray, hidden: int = 64, epochs: int = 30, seed: int = 0) -> np.ndarray:
    """3-fold CV R^2 of `--head tokens`' per-token part alone (an MLP of each response token's embedding-layer
    state, averaged over the response), trained by least squares to predict all attributes at once."""
    import torch
    from rfm.train.model import TokenHead
    from rfm.train.token_states import token_states
    from torch import nn

    torch.manual_seed(seed)
    tokenizer, backbone = load_backbone("minilm")
    tok = PairTokenizer(tokenizer.backend_tokenizer, 256, pad_id=tokenizer.pad_token_id)
    states = token_states(backbone, tok, data.texts, uses_token_types=True)
    target = torch.from_numpy(attrs).float()
    folds = np.random.default_rng(seed).permutation(len(attrs)) % 3
    r2 = np.zeros(attrs.shape[1])
    for fold in range(3):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        head = TokenHead(nn.Linear(1, attrs.shape[1]), backbone.config.hidden_size, hidden, attrs.shape[1], 0.1)
        optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.1)

        def predict(rows: np.ndarray, head: TokenHead = head) -> torch.Tensor:
            return head.packed(torch.zeros(len(rows), 1), *states.gather(rows))

        for epoch in range(epochs):
            head.train()
            for rows in np.array_split(np.random.default_rng(epoch).permutation(train), max(1, len(train) // 64)):
                loss = (predict(rows) - target[rows]).pow(2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        head.eval()
        with torch.no_grad():
            error = (predict(test) - target[test]).pow(2).mean(0).numpy()
        r2 += 1 - error / attrs[test].var(0)
    return r2 / 3


RFM_COLUMN = "RFM's 32 features (taste, seed 0)"


def rfm_features(artifact_dir: Path, texts) -> np.ndarray:
    """phi of these texts from a trained taste RFM's int8 artifact, through the runtime."""
    from rfm.runtime import FeatureExtractor, load_artifact

    extractor = FeatureExtractor(load_artifact(artifact_dir), device="cpu", precision="int8")
    return extractor([p for p, _ in texts], [r for _, r in texts]).astype(np.float64)  # it batches by itself


def ridge_r2(X: np.ndarray, attrs: np.ndarray, alphas=(1, 10, 100, 1000)) -> dict[str, float]:
    """3-fold cross-validated R^2 of a standardised ridge regression from X to each attribute."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=list(alphas)))
    return {name: float(cross_val_score(ridge, X, attrs[:, k], cv=3, scoring="r2").mean())
            for k, name in enumerate(ATTRIBUTE_NAMES)}


def main() -> None:
    work = ROOT / "benchmarks" / "work"
    data = index_pairs(load_pairs(work / "split_taste" / "train.jsonl"), TrainConfig(min_pairs=1))
    attrs = np.stack([raw_attributes(response) for _, response in data.texts])
    attrs = (attrs - attrs.mean(0)) / (attrs.std(0) + 1e-12)
    r2: dict[str, dict[str, float]] = {}
    for column, (pooling, budget) in POOLINGS.items():
        r2[column] = ridge_r2(embeddings(data, pooling, budget), attrs)
    r2[TOKEN_COLUMN] = dict(zip(ATTRIBUTE_NAMES, map(float, token_mlp_r2(data, attrs)), strict=True))
    columns = [*POOLINGS, TOKEN_COLUMN]
    trained = work / "models" / "taste" / "rfm-s0" / "artifact"
    if trained.is_dir():  # after benchmarks/personalization.py: what the trained RFM's own features carry
        r2[RFM_COLUMN] = ridge_r2(rfm_features(trained, data.texts), attrs, alphas=(0.1, 1, 10, 100))
        columns.append(RFM_COLUMN)
    result = {"command": "python benchmarks/decodability.py", "texts": len(data.texts), "r2": r2}
    out = ROOT / "benchmarks" / "results"
    (out / "decodability.json").write_text(json.dumps(result, indent=1))
    used = {attribute for attribute, _ in TASTES.values()}
    lines = ["# Synthetic attributes: what a linear head can read from the frozen MiniLM", "",
             f"Command: `{result['command']}`; {len(data.texts)} distinct (prompt, response) texts of the taste "
             "benchmark's training raters (UltraFeedback + HH-RLHF responses); 3-fold cross-validated R^2 of a "
             "ridge regression from the pooled vector to the standardised attribute. `response`: the last layer's "
             "mean over the response's tokens (the sentence embedding; rfm's old default); `layers`: the mean of "
             "every layer plus log response length (rfm's default); `layers, prompt budget 32`: the same with each "
             "prompt cut to its first 32 tokens (`rfm train --prompt-budget 32`), which leaves the response more of "
             "the window. Attributes are measured on the full text; the encoder sees 256 tokens of prompt + "
             "response, so truncation caps every R^2 below 1. `token MLP (--head tokens)`: the per-token part "
             "of `rfm train --head tokens` alone (a 64-unit MLP of each response token's embedding-layer state, "
             "averaged over the response; no prompt budget), trained by least squares, 3-fold cross-validated on a "
             "seeded shuffle of the same texts (AdamW, 30 epochs): it can count kinds of words, which a linear map "
             "of a mean cannot. `RFM's 32 features`: the features of the taste benchmark's seed-0 RFM "
             "(`benchmarks/personalization.py`, rfm train defaults, int8 through the runtime): what Bradley-Terry "
             "training on 28 raters' choices kept of each attribute (these texts are its training texts).",
             "",
             "| attribute | taste scenario uses it | " + " | ".join(f"R^2 {c}" for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | {'yes' if name in used else 'no'} | " + " | ".join(f"{r2[c][name]:.2f}" for c in columns)
              + " |" for name in ATTRIBUTE_NAMES]
    (out / "decodability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
