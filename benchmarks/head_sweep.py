"""Which knob of the frozen-encoder head moves personalisation? A fast sweep on the taste benchmark.

    .venv/bin/python benchmarks/head_sweep.py                 # ~25 min on a 2-core CPU (warm embedding cache)
    .venv/bin/python benchmarks/head_sweep.py --variants default,ensemble-3 --seeds 0

Writes benchmarks/results/head_sweep.{json,md}.

Protocol: `benchmarks/personalization.py`'s taste split (the same 28 training raters and 12 held-out
users), each held-out user adapted from m of their choices by the runtime's MAP adapter under the
trained prior and scored on pairs that share no response with those m (new responses), the same
users at every m, 3 seeded draws per user and m, 3 training seeds per variant. To make a sweep cheap,
features come from the trained head in fp32 torch on the cached frozen-encoder vectors (no ONNX
export): the `default` row is the check that this proxy matches the benchmark's int8 runtime rows.

Variants (everything not named stays at `rfm train`'s default):
- trainer options: input dropout, learning rate, batch size, the population term, a longer patience;
- a restricted head input: the top-k principal components of the standardised `layers` vector
  (fitted on the training texts alone, no labels), optionally whitened: a head with k x d weights
  instead of 2,689 x d, a stronger inductive bias for 28 raters' 3,360 choices;
- an ensemble: k heads trained with different seeds on the same vector, their features concatenated
  (each scaled by 1/k, each prior block widened by k, so the prior's reward and its spread are the
  average's): one wider linear layer in the exported graph, no extra encoder work;
- an episodic term (`--episodic-loss`): raters adapted from a few of their pairs, scored on pairs sharing no
  response with those, as the product adapts a new person;
- a mixture prior (the adapter, not the head): the default features, but a new user's w is the
  posterior mean under an equal mixture of Gaussians N(w_r, s * Sigma), one at each training rater's
  row w_r, with Sigma the shipped prior's covariance; each component's MAP fit is weighted by its
  Laplace evidence. People who fall into taste groups (Scenario 2's two, taste's eight) are a mixture,
  which one Gaussian fits badly when m is small.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser  # noqa: E402
from personalization import REPEATS, SHOTS_SYNTHETIC, prepare  # noqa: E402
from report import markdown_table  # noqa: E402
from rfm.adapt import UserAdapter  # noqa: E402

from rfm.data.jsonl import index_texts, load_pairs  # noqa: E402
from rfm.evaluation import evaluate_heldout, group_by_user  # noqa: E402


@dataclass
class Variant:
    """What differs from the default: trainer options, a fixed input transform, or k heads."""

    options: dict = field(default_factory=dict)
    components: int | None = None  # principal components of the standardised input
    whiten: bool = False
    heads: int = 1
    mixture_scale: float | None = None  # adapt under a mixture prior over the training raters' rows


VARIANTS = {
    "default": Variant(),
    "dropout-0.5": Variant({"dropout": 0.5}),
    "dropout-0": Variant({"dropout": 0.0}),
    "lr-1e-3": Variant({"lr": 1e-3}),
    "lr-1e-2": Variant({"lr": 1e-2}),
    "batch-256": Variant({"batch_size": 256}),
    "population-loss-0": Variant({"population_loss": 0.0}),
    "patience-12": Variant({"patience": 12, "min_epochs": 20}),
    "pca-32": Variant(components=32),
    "pca-64": Variant(components=64),
    "pca-128": Variant(components=128),
    "pca-256": Variant(components=256),
    "whitened-pca-64": Variant(components=64, whiten=True),
    "whitened-pca-256": Variant(components=256, whiten=True),
    "ensemble-3": Variant(heads=3),
    "ensemble-5": Variant(heads=5),
    "episodic-0.3": Variant({"episodic_loss": 0.3}),
    "episodic-1": Variant({"episodic_loss": 1.0}),
    "episodic-3": Variant({"episodic_loss": 3.0}),
    "mixture-prior-0.1": Variant(mixture_scale=0.1),
    "mixture-prior-0.3": Variant(mixture_scale=0.3),
    "mixture-prior-1": Variant(mixture_scale=1.0),
}


class MixturePrior:
    """A user's w under an equal mixture of N(w_r, scale * cov) over the training raters' rows w_r: the
    components' MAP fits averaged with their Laplace evidence as weights (the rows' mean for m = 0)."""

    def __init__(self, rows: np.ndarray, cov: np.ndarray, scale: float):
        from rfm.adapt import MAPLogisticRegression

        self.mean = rows.mean(0)
        self.components = [MAPLogisticRegression(row, cov * scale) for row in rows]

    def fit(self, deltas: np.ndarray) -> np.ndarray:
        if len(deltas) == 0:
            return self.mean.copy()
        x, y = np.atleast_2d(deltas), np.ones(len(deltas))
        fits, log_evidence = [], []
        for component in self.components:
            w = component.fit(x, y).coef_
            diff = w - component.mu_
            objective = np.logaddexp(0.0, -(x @ w)).sum() + 0.5 * diff @ component.precision_ @ diff
            # log p(data | component) by Laplace, up to a constant all components share (one covariance)
            log_evidence.append(-objective + 0.5 * np.linalg.slogdet(component.covariance_)[1])
            fits.append(w)
        weights = np.exp(np.array(log_evidence) - max(log_evidence))
        return (weights / weights.sum()) @ np.array(fits)


class Encoder:
    """The frozen encoder's cached `layers` vectors, as `rfm train` computes and caches them."""

    def __init__(self):
        from rfm.runtime.tokenize import TRUNCATION_STRATEGY, PairTokenizer
        from rfm.train.backbone import load_backbone
        from rfm.train.model import RewardFeatureModel, rfm_config
        from rfm.train.trainer import TrainConfig

        self.cfg = TrainConfig()
        tokenizer, backbone = load_backbone(self.cfg.backbone)
        config = rfm_config(backbone.config, kind="rfm", features=self.cfg.features, head="linear",
                            head_hidden=self.cfg.head_hidden, dropout=self.cfg.dropout,
                            max_length=self.cfg.max_length, truncation=TRUNCATION_STRATEGY,
                            backbone_name=self.cfg.backbone, pooling=self.cfg.pooling)
        self.model = RewardFeatureModel(config, backbone=backbone).eval()
        self.tokenizer = PairTokenizer(tokenizer.backend_tokenizer, self.cfg.max_length, pad_id=tokenizer.pad_token_id)

    def __call__(self, data) -> np.ndarray:
        from rfm.train.run import _cached_embeddings

        return _cached_embeddings(self.model, self.tokenizer, data, self.cfg, False, None)[0]


def input_transform(variant: Variant, x: np.ndarray):
    """The fixed map from the pooled vector to the head's input, fitted on the training texts."""
    if variant.components is None:
        return lambda a: a
    shift, scale = x.mean(0), x.std(0) + 1e-6
    _, singular, vt = np.linalg.svd((x - shift) / scale, full_matrices=False)
    basis = vt[: variant.components].T
    spread = singular[: variant.components] / np.sqrt(len(x)) if variant.whiten else np.ones(variant.components)
    return lambda a: (((a - shift) / scale) @ basis / spread).astype(np.float32)


def train_head(train, x: np.ndarray, x_heldout: np.ndarray, options: dict, seed: int):
    """One head as `rfm train` fits it (warm start, few-shot selection, prior width); returns (phi held out,
    prior, best epoch)."""
    import torch
    from rfm.train.model import build_head
    from rfm.train.run import _finish
    from rfm.train.trainer import TrainConfig, fit_head_on_embeddings

    cfg = TrainConfig(seed=seed, **options)
    torch.manual_seed(seed)
    head = build_head(x.shape[1], cfg.features, cfg.head, cfg.head_hidden, cfg.dropout)
    result = fit_head_on_embeddings(train, x, head, cfg, cfg.features, progress=False)
    head.eval()
    with torch.no_grad():
        phi_train = head(torch.from_numpy(x)).double().numpy()
        phi_heldout = head(torch.from_numpy(x_heldout)).double().numpy()
    rows, prior, _ = _finish(result, cfg, train, phi_train)
    return phi_heldout, prior, rows, result.best_epoch


def measure(variant: Variant, split: Path, encoder: Encoder, seed: int) -> dict:
    """New-response accuracy of the held-out users at each m for one variant and training seed."""
    from rfm.train.trainer import TrainConfig, index_pairs
    from scipy.linalg import block_diag

    train = index_pairs(load_pairs(split / "train.jsonl"), TrainConfig(**variant.options))
    heldout_pairs = load_pairs(split / "heldout.jsonl")
    texts, a, b = index_texts(heldout_pairs)
    heldout = index_pairs(heldout_pairs, TrainConfig(min_pairs=1))
    row_of = {t: i for i, t in enumerate(heldout.texts)}
    ia, ib = (np.array([row_of[texts[i]] for i in side]) for side in (a, b))
    x = encoder(train)
    transform = input_transform(variant, x)
    x_train, x_heldout = transform(x).astype(np.float32), transform(encoder(heldout)).astype(np.float32)
    started = time.perf_counter()
    phis, means, covs, epochs = [], [], [], []
    for k in range(variant.heads):
        head_seed = seed if variant.heads == 1 else seed * 1000 + k
        phi, prior, rows, epoch = train_head(train, x_train, x_heldout, variant.options, head_seed)
        phis.append(phi / variant.heads)
        means.append(prior["mean"])
        covs.append(prior["cov"] * variant.heads)
        epochs.append(epoch)
    phi = np.concatenate(phis, 1)
    prior = {"mean": np.concatenate(means), "cov": block_diag(*covs)}
    users = group_by_user(heldout_pairs, phi[ia] - phi[ib])
    adapter = (UserAdapter(prior, "population") if variant.mixture_scale is None
               else MixturePrior(rows, prior["cov"], variant.mixture_scale))
    result = evaluate_heldout(users, adapter, SHOTS_SYNTHETIC, REPEATS, seed, disjoint=True)
    return {"seed": seed, "best_epochs": epochs, "train_s": round(time.perf_counter() - started, 1),
            "users": result["users"], "accuracy": {m: v["accuracy"] for m, v in result["shots"].items()}}


def dataset_table(entry: dict) -> list[str]:
    shots = [str(m) for m in SHOTS_SYNTHETIC]
    base = entry["variants"]["default"]["mean"] if "default" in entry["variants"] else None
    rows = []
    for name, row in entry["variants"].items():
        mean, sd = row["mean"], row["sd"]
        cells = [f"{mean[m]:.3f}" for m in shots]
        versus = f"{100 * (mean['20'] - base['20']):+.1f}" if base else "-"
        rows.append([name, *cells, versus, f"{100 * sd['20']:.1f}",
                     ", ".join(str(e) for r in row["seeds"] for e in r["best_epochs"]), row["measured_by"]])
    header = ["variant", *(f"m={m}" for m in shots), "m=20 vs default (points)", "seed sd at m=20", "best epochs",
              "measured by"]
    return markdown_table(header, rows)


def report(results: dict, out: Path) -> None:
    lines = ["# Frozen-encoder head and adapter: which knob moves personalisation", "",
             f"Held-out users, new responses, the same users at every m, {REPEATS} draws per user and m, mean of 3",
             "training seeds (unless a row's command names others); features from the trained head in fp32 torch on the cached frozen-encoder vectors: a",
             "proxy of `personalization.py` (whose int8 runtime rows give the default 0.587 on taste and 0.693 on",
             "Scenario 2 at m = 20). Each row names the run that measured it.", ""]
    for dataset, entry in results["datasets"].items():
        lines += [f"## {dataset} ({entry['users']} held-out users)", "", *dataset_table(entry), ""]
    (out / "head_sweep.md").write_text("\n".join(lines))


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--dataset", default="taste", help="A synthetic dataset of personalization.py.")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of: {', '.join(VARIANTS)}.")
    args = parser.parse_args()
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}")
    started = time.perf_counter()
    split = prepare(Path(args.work), Path(args.data_dir), quick=False)[args.dataset]
    encoder = Encoder()
    seeds = [int(s) for s in args.seeds.split(",")]
    command = "python benchmarks/head_sweep.py" + "".join(
        f" --{k} {v}" for k, v in (("dataset", args.dataset), ("seeds", args.seeds), ("variants", args.variants))
        if v != parser.get_default(k))
    out = Path(args.out)
    path = out / "head_sweep.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}  # a re-run keeps other rows
    entry = results["datasets"].setdefault(args.dataset, {"variants": {}})
    for name in args.variants.split(","):
        per_seed = [measure(VARIANTS[name], split, encoder, seed) for seed in seeds]
        acc = {m: [r["accuracy"][m] for r in per_seed] for m in per_seed[0]["accuracy"]}
        entry["variants"][name] = {"seeds": per_seed, "mean": {m: float(np.mean(v)) for m, v in acc.items()},
                                   "sd": {m: float(np.std(v)) for m, v in acc.items()},
                                   "measured_by": f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"}
        entry["users"] = per_seed[0]["users"]
        path.write_text(json.dumps(results, indent=1))  # each finished row is kept
        print(f"[{time.perf_counter() - started:6.0f}s] {name}: "
              + " ".join(f"m={m}:{np.mean(v):.3f}" for m, v in acc.items()), flush=True)
    report(results, out)


if __name__ == "__main__":
    main()
