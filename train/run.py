"""`rfm train`: data -> features (head on a cached frozen encoder, or full fine-tuning) -> run dir."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from rfm.adapt import MAPLogisticRegression, fit_choices
from rfm.runtime.tokenize import TRUNCATION_STRATEGY, PairTokenizer
from rfm.train.backbone import hub_offline, load_backbone, resolve_backbone, weights_fingerprint
from rfm.train.config import VAL_SPLITS, Kind
from rfm.train.decay_search import parse_grid, search_weight_decay
from rfm.train.embed_cache import EmbeddingCache, embed_texts
from rfm.train.model import POOLINGS, RewardFeatureModel, rfm_config, takes_token_types
from rfm.train.prior import SELECTION_DRAWS, SHRINK_FACTORS, choose_prior_width
from rfm.train.rundir import SUMMARY_FILE, save_raters
from rfm.train.selection import fewshot_tasks
from rfm.train.token_states import token_states
from rfm.train.trainer import (
    PairData,
    TrainConfig,
    config_dict,
    fewshot_selector,
    fit_bradley_terry,
    fit_head_on_embeddings,
    head_features,
    index_pairs,
    judging,
    population_prior,
)

from rfm.data.jsonl import load_pairs
from rfm.errors import UsageError
from rfm.fileio import atomic_open, check_output_dir, publish, staging_dir


def _validate(cfg: TrainConfig) -> None:
    checks = [
        (cfg.kind in {k.value for k in Kind}, "--baseline must be 'bt' or 'linear-probe'"),
        (cfg.tune in ("head", "full"), "--tune must be head or full"),
        (cfg.head in ("linear", "mlp", "tokens"), "--head must be linear, mlp or tokens"),
        (cfg.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}"),
        (cfg.selection in ("fewshot", "loss"), "--selection must be fewshot or loss"),
        (cfg.features >= 1, "--features must be >= 1"),
        (cfg.epochs >= 1, "--epochs must be >= 1"),
        (cfg.max_time >= 0, "--max-time must be >= 0 (seconds; 0 means no limit)"),
        (cfg.batch_size >= 1, "--batch-size must be >= 1"),
        (cfg.lr > 0, "--lr must be > 0"),
        (cfg.episodic_loss >= 0, "--episodic-loss must be >= 0 (0 turns it off)"),
        (cfg.episode_raters >= 1, "--episode-raters must be >= 1"),
        (cfg.max_length >= 8, "--max-length must be >= 8"),
        (cfg.prompt_budget is None or 1 <= cfg.prompt_budget < cfg.max_length,
         "--prompt-budget must be between 1 and --max-length - 1"),
        (0 <= cfg.val_frac < 1, "--val-frac must be in [0, 1)"),
        (cfg.val_split in VAL_SPLITS, f"--val-split must be one of {', '.join(VAL_SPLITS)}"),
        (not (cfg.kind == "linear-probe" and cfg.tune == "full"), "--baseline linear-probe trains no features; "
         "use --tune head"),
        (not cfg.weight_decay_grid or (cfg.tune == "head" and cfg.kind != "linear-probe"),
         "--weight-decay-grid trains the head once per value: use it with --tune head, for an RFM or --baseline bt"),
    ]
    parse_grid(cfg.weight_decay_grid)  # a one-line error for a malformed grid, before any encoding
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


class FrozenEncoder:
    """Pooled embeddings of the frozen backbone, batch by batch, in inference mode."""

    def __init__(self, model: RewardFeatureModel, pair_tokenizer: PairTokenizer):
        self.model, self.tok, self.calls = model, pair_tokenizer, 0

    def __call__(self, texts: list[tuple[str, str]]) -> np.ndarray:
        self.calls += len(texts)
        batch = self.tok([p for p, _ in texts], [r for _, r in texts])
        with torch.inference_mode():
            pooled = self.model.pooled(*(torch.from_numpy(batch[k]) for k in
                                         ("input_ids", "attention_mask", "token_type_ids")))
        return pooled.float().numpy()


def train(data_path: str | os.PathLike, out: str | os.PathLike, cfg: TrainConfig, overwrite: bool = False,
          progress: bool = True, cache_root: Path | None = None) -> dict:
    """Train and write a run dir; returns the summary (also saved as training_summary.json)."""
    _validate(cfg)
    hub_offline()
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    check_output_dir(out, overwrite)
    resolve_backbone(cfg.backbone)
    pairs = load_pairs(data_path)
    data = index_pairs(pairs, cfg, str(data_path))
    staging = staging_dir(out, overwrite)
    try:
        hf_tokenizer, backbone = load_backbone(cfg.backbone)
        cfg = _effective_pooling(cfg, backbone)
        head = "identity" if cfg.kind == "linear-probe" else cfg.head
        features = 1 if cfg.kind == "baseline" else cfg.features
        config = rfm_config(backbone.config, kind=cfg.kind, features=features, head=head,
                            head_hidden=cfg.head_hidden, dropout=cfg.dropout, max_length=cfg.max_length,
                            truncation=TRUNCATION_STRATEGY, backbone_name=cfg.backbone, pooling=cfg.pooling,
                            standardize=cfg.standardize, prompt_budget=cfg.prompt_budget)
        torch.manual_seed(cfg.seed)
        model = RewardFeatureModel(config, backbone=backbone)
        model.eval()
        pair_tok = PairTokenizer(hf_tokenizer.backend_tokenizer, cfg.max_length, pad_id=hf_tokenizer.pad_token_id,
                                 prompt_budget=cfg.prompt_budget)
        summary: dict = {"config": config_dict(cfg), "users": len(data.user_ids), "pairs": len(data.a),
                         "distinct_texts": len(data.texts), "dropped_users": data.dropped_users}
        if cfg.tune == "head":
            embeddings, summary["encoded_texts"], summary["cache"] = _cached_embeddings(
                model, pair_tok, data, cfg, progress, cache_root)
            summary["encode_s"] = round(time.perf_counter() - started, 3)
            if cfg.kind == "linear-probe":
                weights, prior, metrics = _fit_linear_probe(embeddings, data, cfg)
                summary.update(metrics=metrics, history=[], best_epoch=0)
            else:
                for p in model.backbone.parameters():
                    p.requires_grad_(False)
                tokens = (token_states(model.backbone, pair_tok, data.texts, model.uses_token_types)
                          if cfg.head == "tokens" else None)
                def fit(config: TrainConfig):
                    # under a grid, each bar names the decay and the split it is judged on
                    desc = (f"training {config.kind}, weight decay {config.weight_decay:g} ({config.val_split} "
                            "split)") if cfg.weight_decay_grid else None
                    return fit_head_on_embeddings(data, embeddings, model.head, config, features, progress, tokens,
                                                  desc)

                if cfg.weight_decay_grid:
                    result, cfg, summary["weight_decay_search"] = search_weight_decay(fit, model.head, cfg,
                                                                                      len(data.texts))
                    summary["config"] = config_dict(cfg)
                else:
                    result = fit(cfg)
                model.head.eval()
                with torch.no_grad():
                    phi = head_features(model.head, torch.from_numpy(embeddings), tokens,
                                        np.arange(len(data.texts))).double().numpy()
                weights, prior, width = _finish(result, cfg, data, phi)
                summary.update(metrics=result.metrics, history=result.history, best_epoch=result.best_epoch,
                               prior_width=width, collapse=collapse_check(result, width))
        else:
            weights, prior, fit_summary = _train_full(model, pair_tok, data, cfg, features, progress)
            summary.update(fit_summary)
            if not is_main_process():  # under torchrun / accelerate launch, the main process alone writes
                shutil.rmtree(staging, ignore_errors=True)
                return summary
        model.eval()
        model.save_pretrained(staging, safe_serialization=True)
        hf_tokenizer.save_pretrained(staging)
        judges = judging(data, cfg).judges  # their rows were adapted, not trained (see _with_judges)
        save_raters(staging, list(data.user_ids), weights, prior)
        summary["judge_raters"] = [u for u, judge in zip(data.user_ids, judges, strict=True) if judge]
        summary["train_s"] = round(time.perf_counter() - started, 3)
        with atomic_open(staging / SUMMARY_FILE) as handle:
            json.dump(summary, handle, indent=1, default=float)
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def is_main_process() -> bool:
    """False in every process but rank 0 of a torchrun / accelerate launch (they train, but do not write)."""
    return int(os.environ.get("RANK", "0")) == 0


def _effective_pooling(cfg: TrainConfig, backbone) -> TrainConfig:
    """Response pooling finds the response by its segment id; a backbone without token_type_ids
    (RoBERTa, DistilBERT, ...) has none, so such a run pools over all tokens and says so."""
    if cfg.pooling in ("mean", "layers") or takes_token_types(backbone):
        return cfg  # "layers" pools over all tokens by itself when there are no segment ids
    logging.getLogger("rfm").warning(f"{cfg.backbone}: the backbone takes no token_type_ids, so --pooling "
                                     f"{cfg.pooling} cannot find the response's tokens; pooling over all tokens "
                                     "(mean) instead")
    return dataclasses.replace(cfg, pooling="mean")


def _cached_embeddings(model, pair_tok, data: PairData, cfg: TrainConfig, progress: bool,
                       cache_root: Path | None) -> tuple[np.ndarray, int, str | None]:
    import hashlib

    fingerprint = weights_fingerprint(model.backbone)
    budget = f"|prompt{cfg.prompt_budget}" if cfg.prompt_budget else ""  # old keys stay valid without a budget
    key = hashlib.sha256(f"{fingerprint}|{cfg.max_length}|{TRUNCATION_STRATEGY}|{cfg.pooling}{budget}".encode()
                         ).hexdigest()
    cache = None if os.environ.get("RFM_NO_CACHE") == "1" else EmbeddingCache(key[:32], cache_root)
    encoder = FrozenEncoder(model, pair_tok)
    try:
        matrix, encoded = embed_texts(data.texts, encoder, cache, progress=progress)
    finally:
        if cache is not None:
            cache.close()
    return matrix, encoded, str(cache.path) if cache is not None else None


def _finish(result, cfg: TrainConfig, data: PairData, phi: np.ndarray) -> tuple[np.ndarray, dict, dict | None]:
    """The trained raters' weights, the population prior (its width checked by the judges) and that check."""
    weights = result.weights.matrix()
    if cfg.kind == "baseline":
        return weights, {"mean": weights[0], "cov": np.eye(1) * 1e-4, "count": np.array(1)}, None
    judge = judging(data, cfg)
    weights = weights[judge.trained]
    prior = population_prior(weights)
    delta = phi[data.a] - phi[data.b]
    tasks = fewshot_tasks(data.user, judge.tasks_val, data.a, data.b, draws=SELECTION_DRAWS, seed=cfg.seed,
                          rows=judge.tasks_rows)
    width = choose_prior_width(delta, data.user, judge.tasks_val, prior["mean"], prior["cov"], tasks=tasks,
                               shrink=SHRINK_FACTORS if judge.judges.any() else ())
    width["judges"] = "held-out raters" if judge.judges.any() else "training raters' validation pairs"
    prior["cov"] = width["cov_scale"] * prior["cov"] + width["tau"] * np.eye(len(prior["mean"]))
    return _with_judges(weights, judge.judges, delta, data.user, prior), prior, width


def _with_judges(trained: np.ndarray, judges: np.ndarray, delta: np.ndarray, user: np.ndarray,
                 prior: dict) -> np.ndarray:
    """One weight row per rater: the trained rows, and each judge adapted like a new person (MAP under the
    final prior) from all of their pairs, so every rater of the data keeps a weight row in the run."""
    if not judges.any():
        return trained
    weights = np.empty((len(judges), trained.shape[1]))
    weights[~judges] = trained
    adapter = MAPLogisticRegression(prior["mean"], prior["cov"])
    for row in np.flatnonzero(judges):
        weights[row] = fit_choices(adapter, delta[user == row])
    return weights


def _fit_linear_probe(emb: np.ndarray, data: PairData, cfg: TrainConfig) -> tuple[np.ndarray, dict, dict]:
    """The adaptive baseline: logistic regression on the frozen encoder's pooled embedding differences."""
    delta = emb[data.a] - emb[data.b]
    X = np.vstack([delta, -delta])
    y = np.concatenate([np.ones(len(delta)), np.zeros(len(delta))])
    population = MAPLogisticRegression(prior="none", C=cfg.probe_l2).fit(X, y)
    acc = float(np.mean(delta @ population.coef_ > 0))
    d = emb.shape[1]
    prior = {"mean": population.coef_, "cov": np.eye(d) * cfg.probe_l2, "count": np.array(1)}
    return population.coef_[None, :], prior, {"train_acc": acc, "train_pairs": len(delta)}


def _train_full(model: RewardFeatureModel, pair_tok: PairTokenizer, data: PairData, cfg: TrainConfig,
                features: int, progress: bool) -> tuple[np.ndarray, dict, dict]:
    """End-to-end fine-tuning of backbone + head + W; `accelerate launch rfm train ...` scales it out."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model.train()
    device = accelerator.device
    model.to(device)

    def featurise(idx: np.ndarray, train_mode: bool) -> torch.Tensor:
        outputs = []
        chunk = 64 if train_mode else 128
        for start in range(0, len(idx), chunk):
            texts = [data.texts[i] for i in idx[start : start + chunk]]
            batch = pair_tok([p for p, _ in texts], [r for _, r in texts])
            tensors = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            with accelerator.autocast():
                outputs.append(model(**tensors)["features"].float())
        return torch.cat(outputs).cpu() if outputs[0].device.type != "cpu" else torch.cat(outputs)

    judge = judging(data, cfg)
    select = None
    if cfg.kind == "rfm" and cfg.selection == "fewshot":
        def phi_of(idx: np.ndarray) -> np.ndarray:
            model.eval()
            return featurise(idx, False).double().numpy()

        select = fewshot_selector(data, judge, phi_of, cfg.seed)
    result = fit_bradley_terry(data, featurise, [model.head, model.backbone], cfg, features,
                               progress and accelerator.is_main_process, module_lrs=[cfg.lr, cfg.backbone_lr],
                               accelerator=accelerator, val_mask=judge.val, select=select, exclude=judge.excluded)
    model.eval()
    with torch.no_grad():
        phi = featurise(np.arange(len(data.texts)), False).double().numpy()
    model.to("cpu")
    weights, prior, width = _finish(result, cfg, data, phi)
    return weights, prior, {"metrics": result.metrics, "history": result.history, "best_epoch": result.best_epoch,
                            "prior_width": width, "collapse": collapse_check(result, width),
                            "encoded_texts": None, "device": str(device), "processes": accelerator.num_processes}


# A one-size reward this close to chance on the raters' validation pairs means they disagree (or are noise).
NEAR_CHANCE = 0.6
# Few-shot accuracy an RFM must gain over its own one-size reward to count as having learned taste.
MIN_ADAPTATION_GAIN = 0.01


def collapse_check(result, width: dict | None) -> dict | None:
    """Whether an RFM ended as (or no better than) the one-size model while its raters disagree.

    The raters' validation pairs say so when the shared reward alone is near chance on them: then
    either the features learned what the raters differ on (few-shot adaptation beats the shared
    reward) or the run collapsed, which `rfm train` reports loudly with what to change.
    """
    m = result.metrics
    population, fewshot = m.get("fewshot_population_acc"), (width or {}).get("fewshot_acc")
    if population is None or fewshot is None:
        return None
    gain = fewshot - population
    collapsed = population < NEAR_CHANCE and gain < MIN_ADAPTATION_GAIN
    return {"collapsed": bool(collapsed), "population_acc": population, "fewshot_acc": fewshot,
            "adaptation_gain": gain,
            "advice": ("the one-size reward is near chance on the raters' validation pairs, yet adapting to a "
                       "rater from a few choices does not beat it: the features did not learn what these raters "
                       "disagree about. Try more pairs per rater, --epochs 80 --min-epochs 30, --pooling layers, "
                       "--features 8, or --tune full on a GPU") if collapsed else None}


def describe(summary: dict) -> str:
    """The one-line human summary printed at the end of `rfm train`."""
    m = summary.get("metrics", {})
    parts = [f"{summary['config']['kind']}: {summary['pairs']} pairs, {summary['users']} raters"]
    if "val_acc" in m:
        parts.append(f"best epoch {summary.get('best_epoch')}: train acc {m['train_acc']:.3f}, "
                     f"val acc {m['val_acc']:.3f}, val loss {m['val_loss']:.3f}")
    elif "train_acc" in m:
        parts.append(f"train acc {m['train_acc']:.3f}")
    search = summary.get("weight_decay_search")
    if search:
        tried = ", ".join(f"{r['weight_decay']:g}" for r in search["tried"])
        parts.append(f"weight decay {search['chosen']:g} of {tried} (by {search['criterion']} on "
                     f"{search['compared_on']})")
    width = summary.get("prior_width")
    if width and width.get("val_loglik"):
        scale = f"cov x{width['cov_scale']:g} " if width.get("cov_scale", 1.0) != 1.0 else ""
        parts.append(f"prior {scale}+{width['margin_variance']:g} logit^2 (chosen on {width['raters']} "
                     f"{width.get('judges', 'raters')})")
        if width.get("fewshot_acc") is not None and "fewshot_population_acc" in m:
            parts.append(f"new-response accuracy of raters adapted from 0-20 choices {width['fewshot_acc']:.3f} "
                         f"vs one-size {m['fewshot_population_acc']:.3f}")
    parts.append(f"{summary.get('train_s', 0):.1f}s")
    return "; ".join(parts)


