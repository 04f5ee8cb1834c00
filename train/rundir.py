"""The run dir (docs/DESIGN.md §3.2): a Hugging Face folder plus rater weights and the population prior."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rfm.errors import UsageError

RATERS_FILE = "raters.npz"
POPULATION_FILE = "population.npz"
SUMMARY_FILE = "training_summary.json"


def save_raters(folder: Path, user_ids: list[str], weights: np.ndarray, prior: dict[str, np.ndarray]) -> None:
    np.savez(folder / RATERS_FILE, weights=weights.astype(np.float64), user_ids=np.array(user_ids, dtype=str))
    np.savez(folder / POPULATION_FILE, **prior)


def load_raters(folder: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    with np.load(Path(folder) / RATERS_FILE) as z:
        return [str(u) for u in z["user_ids"]], z["weights"]


def load_run(folder: str | os.PathLike):
    """(RewardFeatureModel in eval mode, tokenizer, config) from a run dir."""
    from rfm.train.model import RewardFeatureModel
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise UsageError(f"{folder}: not an rfm run dir (needs config.json and model.safetensors; run `rfm train`)")
    config = AutoConfig.from_pretrained(folder)
    if not hasattr(config, "rfm_features"):
        raise UsageError(f"{folder}/config.json: no rfm fields (not made by `rfm train`)")
    try:
        model, info = RewardFeatureModel.from_pretrained(folder, config=config, output_loading_info=True)
    except RuntimeError as exc:  # shapes that do not fit the config
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "size mismatch"
        raise UsageError(f"{folder}/model.safetensors: weights do not match config ({first})") from None
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    unexpected = [k for k in info["unexpected_keys"] if not k.endswith("position_ids")]
    if missing or unexpected or info.get("mismatched_keys"):
        raise UsageError(f"{folder}/model.safetensors: weights do not match config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    return model, tokenizer, config


def read_summary(folder: str | os.PathLike) -> dict:
    path = Path(folder) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
