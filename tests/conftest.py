"""Shared fixtures: a tiny random BERT, small slices of the real data, one trained run and artifact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RFM_QUIET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RFM_DATA_DIR", ROOT.parent / "shared" / "data"))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"real data missing: {path} (set RFM_DATA_DIR to the shared data folder)")
    return path


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own user store; the embedding cache is shared by the session only."""
    monkeypatch.setenv("RFM_HOME", str(tmp_path_factory.mktemp("rfm_home")))
    monkeypatch.setenv("RFM_CACHE", str(_session_cache(tmp_path_factory)))


_CACHE: dict[str, Path] = {}


def _session_cache(factory) -> Path:
    if "cache" not in _CACHE:
        _CACHE["cache"] = factory.mktemp("rfm_cache")
    return _CACHE["cache"]


def make_tiny_bert(folder: Path, seed: int = 0, hidden: int = 64) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved as a Hugging Face folder."""
    import torch
    from rfm.runtime.tokenize import minilm_dir
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, folder / name)
    return folder


def make_tiny_distilbert(folder: Path) -> Path:
    """A randomly initialised 1-layer DistilBERT (no segment ids) with MiniLM's tokenizer."""
    import torch
    from rfm.runtime.tokenize import minilm_dir
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
                    ).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tldr_pairs_path(tmp_path_factory) -> Path:
    """TL;DR batch13 + batch18 converted (1,771 pairs, 30 workers)."""
    from rfm.data.convert import ConvertReport, convert
    from rfm.data.jsonl import write_pairs

    out = tmp_path_factory.mktemp("tldr") / "tldr.jsonl"
    write_pairs(out, convert("tldr", [shared("tldr", "batch13.jsonl"), shared("tldr", "batch18.jsonl")],
                             ConvertReport()))
    return out


@pytest.fixture(scope="session")
def ultrafeedback_path(tmp_path_factory) -> Path:
    from rfm.data.convert import ConvertReport, convert
    from rfm.data.jsonl import write_pairs

    out = tmp_path_factory.mktemp("uf") / "uf.jsonl"
    write_pairs(out, convert("ultrafeedback", [shared("ultrafeedback", "train.jsonl")], ConvertReport()))
    return out


@pytest.fixture(scope="session")
def scenario2(tmp_path_factory, ultrafeedback_path) -> Path:
    """Two opposing deterministic raters over 300 real UltraFeedback pairs each, split for seen eval."""
    from rfm.data.synth import synthesise

    folder = tmp_path_factory.mktemp("s2")
    synthesise(ultrafeedback_path, folder / "s2.jsonl", scenario=2, n_raters=2, seed=0, pairs_per_rater=300,
               deterministic=True)
    return folder / "s2.jsonl"


@pytest.fixture(scope="session")
def scenario2_split(scenario2) -> Path:
    """train.jsonl (80% of each rater's pairs) and seen_test.jsonl (20%)."""
    from rfm.data.split import split_by_user

    folder = scenario2.parent / "split"
    split_by_user(scenario2, folder, holdout_frac=0.0, seed=0, seen_frac=0.2)
    return folder


TINY_TRAIN = {"features": 8, "epochs": 150, "lr": 1e-2, "max_length": 128, "seed": 0}


def train_tiny(backbone: Path, data: Path, out: Path, **overrides) -> dict:
    from rfm.train.run import train
    from rfm.train.trainer import TrainConfig

    return train(data, out, TrainConfig(backbone=str(backbone), **{**TINY_TRAIN, **overrides}), progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_backbone, scenario2_split) -> Path:
    """A tiny RFM (d=8): the head tuned on the frozen tiny BERT, on Scenario-2 raters."""
    out = tmp_path_factory.mktemp("runs") / "rfm"
    train_tiny(tiny_backbone, scenario2_split / "train.jsonl", out)
    return out


@pytest.fixture(scope="session")
def tiny_baseline_run(tmp_path_factory, tiny_backbone, scenario2_split) -> Path:
    out = tmp_path_factory.mktemp("runs") / "baseline"
    train_tiny(tiny_backbone, scenario2_split / "train.jsonl", out, kind="baseline")
    return out


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_run) -> Path:
    from rfm.export.build import export_run

    out = tmp_path_factory.mktemp("arts") / "rfm"
    export_run(tiny_run, out, ["fp32", "int8", "fp16"], log=lambda m: None)
    return out
