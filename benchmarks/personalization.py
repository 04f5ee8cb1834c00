"""The paper's experiments at our scale (docs/DESIGN.md §4): personalisation on new responses, best-of-n, int8 vs fp32.

    .venv/bin/python benchmarks/personalization.py            # ~45 min on a 2-core CPU
    .venv/bin/python benchmarks/personalization.py --quick    # a smoke run

Writes benchmarks/results/personalization.{json,md} and personalization_<dataset>.png. Every number
comes through the exported ONNX artifacts (int8 unless stated) and the runtime's MAP adapter.

Protocol. Users are split into training raters and held-out users (30% held out). A held-out user
is adapted from m of their pairs and scored on their other pairs that share *no response* with
those m ("new responses", the headline: a reranker meets candidates the user never judged); the
same users are compared at every m (users who cannot supply that at the largest m are left out of
every column and counted). The figure on pairs that may re-use judged responses ("shared
responses") is reported beside it: it measures memorising judged items, not taste that transfers.
3 seeded draws per user and m; every model is trained with 3 seeds (the linear probe once).

Datasets
- tldr: OpenAI TL;DR comparisons (batch13 + batch18), workers with >= 20 pairs; real raters.
- jester: Jester joke ratings of real people (`rfm data convert --format jester`, --min-gap 3,
  --max-pairs 100), users with >= 20 pairs.
- jester-unseen: the same people and held-out users, jokes nobody trained on: --max-pairs 400, then
  `rfm data split --item-holdout 0.5 --items responses` (training raters keep their pairs of two of
  75 jokes, held-out users theirs of two of the other 75; pairs across are dropped).
- s1 / s2: synthetic raters (`rfm data synth`, Scenario 1 / 2) over a pool of real responses: the
  994 UltraFeedback train pairs + the first 1,000 HH-RLHF harmless-test pairs; 40 raters x 150
  pairs, temperature 0.1. s2-small: Scenario 2, 24 raters x 80 pairs, UltraFeedback responses only.
- taste: Scenario 3 over the same pool, 40 raters x 150 pairs: each rater has one checkable taste
  (detailed/brief, lists/prose, casual/formal, hedged/direct).
- taste-unseen / s2-unseen / s2-small-unseen / s1-unseen: the same raters (seed, scenario and pool) on
  responses nobody trained on: twice the pairs each (300; s2-small 160), then `rfm data split
  --item-holdout 0.5`: training raters keep about their usual number of pairs on half the prompts,
  held-out users theirs on the other half (pairs re-using a training response dropped); best-of-n draws its extra candidates from the held-out half only.

Methods: the RFM (rfm train defaults: d = 32, layers pooling, few-shot selection), the non-adaptive
Bradley-Terry baseline ("one-size"), and the adaptive linear probe: per-user logistic regression on
the frozen encoder's own sentence embedding (mean of the last layer over the response's tokens).
Synthetic datasets add two ceilings, adapted the same way under the raters' true weights as the prior:
"true attributes" (the raters' own attributes as the features: perfect features) and "frozen encoder,
best linear read-out" (each attribute as a ridge regression from the frozen encoder's `layers` vector
predicts it, fitted with the true attributes as labels: the best a linear head on it could learn).
`--ceilings-only` recomputes just these rows in an existing results file (no model is trained).

Best-of-n (synthetic raters, seed-0 models; int8 vs fp32 likewise on the seed-0 RFM): for each held-out rater, w is adapted from m = 20 of
their pairs; for 10 prompts from their other pairs, the candidates are the prompt's two responses
plus responses drawn from the pool (n = 4, 8, 16 share the first n of one draw of 16). The true
reward of the pick is normalised so that a random pick scores 0 and the oracle 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser  # noqa: E402
from rfm.adapt import UserAdapter  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402

from rfm.data.convert import ConvertReport, convert  # noqa: E402
from rfm.data.jester import jester_pairs  # noqa: E402
from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402
from rfm.data.split import split_by_user  # noqa: E402
from rfm.data.synth import SyntheticRaters, sidecar_path, synthesise  # noqa: E402
from rfm.evaluation import evaluate_heldout, evaluate_seen, featurise_pairs, group_by_user, user_adapter  # noqa: E402
from rfm.pipeline import cached_json, export_stage, train_stage  # noqa: E402

SHOTS_SYNTHETIC = (0, 5, 10, 20, 50)
REAL_DATASETS = ("tldr", "jester", "jester-unseen")  # real raters: no true weights, so no ceilings or best-of-n
SHOTS_REAL = (0, 5, 10, 20)  # real users have fewer pairs: m = 50 would leave most out
REPEATS = 3
# dataset -> (scenario or None, raters, pairs per rater, source)
SYNTHETIC = {"taste": (3, 40, 150, "pool"), "s2": (2, 40, 150, "pool"), "s2-small": (2, 24, 80, "uf"),
             "s1": (1, 40, 150, "pool")}
QUICK_SYNTHETIC = {"s2": (2, 12, 60, "pool"), "taste": (3, 16, 60, "pool")}
UNSEEN = ("taste", "s2", "s2-small", "s1")  # also measured on responses nobody trained on ("<name>-unseen")


def _seed_of(*parts: object) -> int:
    """A stable seed from any values (Python's hash() of a str changes between processes)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _literal(text: str) -> object:
    """'32' -> 32, '0.5' -> 0.5, anything else stays a string (for --variant options)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _split(src: Path, folder: Path, **items) -> Path:
    report = split_by_user(src, folder, 0.3, seed=0, min_pairs=20, **items)
    (folder / "split.json").write_text(json.dumps(report.to_json(), indent=1))
    return folder


def write_pool(work: Path, data_dir: Path) -> Path:
    """The synthetic raters' responses: pool.jsonl (UltraFeedback train + 1,000 HH-RLHF harmless-test pairs)
    and uf.jsonl (UltraFeedback only); returns pool.jsonl."""
    work.mkdir(parents=True, exist_ok=True)
    uf = list(convert("ultrafeedback", [data_dir / "ultrafeedback" / "train.jsonl"], ConvertReport()))
    hh = list(convert("hh-rlhf", [data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"], ConvertReport()))[:1000]
    write_pairs(work / "pool.jsonl", uf + hh)
    write_pairs(work / "uf.jsonl", uf)
    return work / "pool.jsonl"


def prepare_real(work: Path, data_dir: Path, quick: bool = False) -> dict[str, Path]:
    """Convert and split the real raters' datasets (Jester not in `quick`); returns dataset -> split dir."""
    work.mkdir(parents=True, exist_ok=True)
    splits = {}
    tldr = work / "tldr.jsonl"
    write_pairs(tldr, convert("tldr", [data_dir / "tldr" / "batch13.jsonl", data_dir / "tldr" / "batch18.jsonl"],
                              ConvertReport()))
    splits["tldr"] = _split(tldr, work / "split_tldr")
    jester = work / "jester.jsonl"
    write_pairs(jester, jester_pairs(data_dir / "jester", ConvertReport(), min_gap=3.0, max_pairs=100, seed=0))
    if not quick:
        splits["jester"] = _split(jester, work / "split_jester")
        jester400 = work / "jester400.jsonl"
        write_pairs(jester400, jester_pairs(data_dir / "jester", ConvertReport(), min_gap=3.0, max_pairs=400, seed=0))
        splits["jester-unseen"] = _split(jester400, work / "split_jester-unseen", item_holdout=0.5, items="responses")
    return splits


def prepare(work: Path, data_dir: Path, quick: bool) -> dict[str, Path]:
    """Convert, synthesise and split; returns dataset -> split dir."""
    splits = prepare_real(work, data_dir, quick)
    write_pool(work, data_dir)
    for name, (scenario, raters, per_rater, source) in (QUICK_SYNTHETIC if quick else SYNTHETIC).items():
        synth = work / f"{name}.jsonl"
        synthesise(work / f"{source}.jsonl", synth, scenario, raters, seed=0, pairs_per_rater=per_rater,
                   temperature=0.1)
        splits[name] = _split(synth, work / f"split_{name}")
        if name in UNSEEN and not quick:
            synth = work / f"{name}-unseen.jsonl"
            synthesise(work / f"{source}.jsonl", synth, scenario, raters, seed=0, pairs_per_rater=2 * per_rater,
                       temperature=0.1)
            splits[f"{name}-unseen"] = _split(synth, work / f"split_{name}-unseen", item_holdout=0.5)
    return splits


METHODS = {"rfm": {"kind": "rfm"}, "one-size": {"kind": "baseline"},
           "linear-probe": {"kind": "linear-probe", "pooling": "response"}}


def train_and_export(split: Path, out: Path, options: dict, seed: int) -> tuple[Path, dict]:
    """Train and export through the demo's cached stages (a finished stage is reused on a re-run)."""
    from rfm.train.trainer import TrainConfig

    summary, _ = train_stage(split / "train.jsonl", out / "run", TrainConfig(seed=seed, **options), progress=False)
    export_stage(out / "run", out / "artifact", ["fp32", "int8"], split / "heldout.jsonl", fallback=["fp32"])
    return out / "artifact", summary


def best_of_n(extractor: FeatureExtractor, adapter: UserAdapter, users, pairs_by_user, raters: SyntheticRaters,
              pool: list[str], seed: int, trials: int = 10, ns=(4, 8, 16), m: int = 20) -> dict:
    scores: dict[int, list[float]] = {n: [] for n in ns}
    for user, data in users.items():
        if len(data.deltas) < m + 1:
            continue
        rng = np.random.default_rng(_seed_of(seed, user, "best-of-n"))
        order = rng.permutation(len(data.deltas))
        w = adapter.fit(data.deltas[order[:m]])
        test = [pairs_by_user[user][i] for i in order[m:]]
        for _ in range(trials):
            pair = test[int(rng.integers(len(test)))]
            extra = [pool[i] for i in rng.choice(len(pool), size=max(ns) - 2, replace=False)]
            candidates = [pair.chosen, pair.rejected, *extra]
            phi = extractor([pair.prompt] * len(candidates), candidates).astype(np.float64)
            true = raters.rewards(user, candidates)
            for n in ns:
                r, pick = true[:n], int(np.argmax(phi[:n] @ w))
                spread = r.max() - r.mean()
                if spread > 1e-9:
                    scores[n].append((r[pick] - r.mean()) / spread)
    return {str(n): {"normalised_reward": float(np.mean(v)), "trials": len(v)} for n, v in scores.items()}


def evaluate_artifact(art: Path, split: Path, precision: str, seed: int, shots, raters: SyntheticRaters | None = None,
                      pool: list[str] | None = None, threads: int | None = None) -> dict:
    artifact = load_artifact(art)
    extractor = FeatureExtractor(artifact, device="cpu", precision=precision, threads=threads)
    heldout_pairs = load_pairs(split / "heldout.jsonl")
    users = group_by_user(heldout_pairs, featurise_pairs(extractor, heldout_pairs))
    seen_pairs = load_pairs(split / "seen_test.jsonl")
    seen_users = group_by_user(seen_pairs, featurise_pairs(extractor, seen_pairs))
    adapter = user_adapter(artifact)
    result = {"precision": precision, "seen": evaluate_seen(seen_users, artifact),
              "new_responses": evaluate_heldout(users, adapter, shots, REPEATS, seed, disjoint=True, by_user=True),
              "shared_responses": evaluate_heldout(users, adapter, shots, REPEATS, seed, disjoint=False)}
    if raters is not None and pool is not None:
        by_user: dict[str, list] = {}
        for p in heldout_pairs:
            by_user.setdefault(p.user_id, []).append(p)
        result["best_of_n"] = best_of_n(extractor, adapter, users, by_user, raters, pool, seed)
    return result


TRUE_ATTRIBUTES = "true attributes (ceiling)"
LINEAR_READOUT = "frozen encoder, best linear read-out (ceiling)"


def ceiling_rows(split: Path, raters: SyntheticRaters, shots, seed: int) -> dict[str, list[dict]]:
    """What features could reach, adapted by the same MAP adapter under the training raters' true weights:

    - TRUE_ATTRIBUTES: the raters' own standardised attributes as phi (perfect features);
    - LINEAR_READOUT: each attribute as a ridge regression from the frozen encoder's `layers` vector
      predicts it, fitted to the training raters' texts with the true attributes as labels (a cheat no
      training run has): the best any linear head on the frozen encoder could learn.
    """
    from decodability import embeddings
    from rfm.train.trainer import TrainConfig, index_pairs
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = index_pairs(load_pairs(split / "train.jsonl"), TrainConfig(min_pairs=1))
    weights = np.stack([raters.weights[u] for u in train.user_ids])
    adapter = UserAdapter({"mean": weights.mean(0), "cov": np.cov(weights.T) + 1e-3 * np.eye(weights.shape[1])},
                          "population")
    train_x, train_attrs = embeddings(train, "layers"), raters.attributes([r for _, r in train.texts])
    readout = [make_pipeline(StandardScaler(), RidgeCV(alphas=[1, 10, 100, 1000])).fit(train_x, train_attrs[:, k])
               for k in range(train_attrs.shape[1])]

    def deltas(pairs, features):
        data = index_pairs(pairs, TrainConfig(min_pairs=1))
        phi = features(data)
        return group_by_user(pairs, phi[data.a] - phi[data.b])

    def read_out(data) -> np.ndarray:
        x = embeddings(data, "layers")  # once per text set, not once per attribute
        return np.stack([m.predict(x) for m in readout], 1)

    features = {TRUE_ATTRIBUTES: lambda data: raters.attributes([r for _, r in data.texts]), LINEAR_READOUT: read_out}
    heldout, seen_pairs = load_pairs(split / "heldout.jsonl"), load_pairs(split / "seen_test.jsonl")
    rows = {}
    for name, featurise in features.items():
        users, seen = deltas(heldout, featurise), deltas(seen_pairs, featurise)
        correct = [float(np.mean(data.deltas @ raters.weights[u] > 0)) for u, data in seen.items()]
        rows[name] = [{"seed": seed, "precision": "exact", "best_epoch": "-", "prior_width": None,
                       "seen": {"accuracy": float(np.mean(correct))},
                       "new_responses": evaluate_heldout(users, adapter, shots, REPEATS, seed, disjoint=True, by_user=True),
                       "shared_responses": evaluate_heldout(users, adapter, shots, REPEATS, seed, disjoint=False)}]
    return rows


def run_dataset(dataset: str, split: Path, work: Path, seeds: list[int], pool: list[str], started: float,
                methods: dict[str, dict] | None = None) -> dict:
    """Train and measure `methods` (default: all, and the ceilings; a subset leaves the ceilings to the earlier run)."""
    shots = SHOTS_REAL if dataset in REAL_DATASETS else SHOTS_SYNTHETIC
    raters = None if dataset in REAL_DATASETS else SyntheticRaters.load(sidecar_path(work / f"{dataset}.jsonl"))
    entry = {"split": json.loads((split / "split.json").read_text()), "shots": list(shots), "methods": {}}
    if dataset.endswith("-unseen") and raters is not None:  # best-of-n candidates nobody trained on either
        pool = sorted({t for p in load_pairs(split / "heldout.jsonl") for t in (p.chosen, p.rejected)})
    for name, options in (METHODS if methods is None else methods).items():
        per_seed = []
        for seed in seeds if name != "linear-probe" else seeds[:1]:
            t0 = time.perf_counter()
            folder = work / "models" / dataset / f"{name}-s{seed}"
            art, summary = train_and_export(split, folder, options, seed)

            def measure(art=art, summary=summary, seed=seed, name=name) -> dict:
                precision = "int8" if "int8" in load_artifact(art).precisions else "fp32"
                bon = raters if seed == seeds[0] else None
                row = {"seed": seed, "train_metrics": summary.get("metrics"), "best_epoch": summary.get("best_epoch"),
                       "prior_width": (summary.get("prior_width") or {}).get("margin_variance"),
                       "collapse": summary.get("collapse"), "train_s": summary.get("train_s"),
                       **evaluate_artifact(art, split, precision, seed, shots, bon, pool if bon else None)}
                if name == "rfm" and precision == "int8" and seed == seeds[0]:
                    row["fp32"] = evaluate_artifact(art, split, "fp32", seed, shots)
                return row

            row = cached_json(folder / "result.json", [art / "rfm.json", split / "heldout.jsonl", list(shots)], measure)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            row["prior_cov_scale"] = (summary.get("prior_width") or {}).get("cov_scale")
            if "weight_decay_search" in summary:  # --weight-decay-grid: the decay this seed's run chose
                row["weight_decay_chosen"] = summary["weight_decay_search"]["chosen"]
            per_seed.append(row)
            print(f"[{time.perf_counter() - started:6.0f}s] {dataset} {name} seed {seed}: new responses "
                  + " ".join(f"m={m}:{row['new_responses']['shots'][str(m)]['accuracy']:.3f}" for m in shots)
                  + f" ({row['new_responses']['users']} users)", flush=True)
        entry["methods"][name] = per_seed
    if raters is not None and methods is None:
        entry["methods"].update(ceiling_rows(split, raters, shots, seeds[0]))
    return entry


def keep_earlier_variants(entry: dict, earlier: dict | None) -> dict:
    """The new entry, with the rows an earlier run measured and this one did not (variants, or with `--methods`
    any row and the ceilings), each labelled with the command that measured it, so a subset re-run loses nothing."""
    if not earlier:
        return entry
    measured_ceilings = any("(ceiling)" in name for name in entry["methods"])
    kept = {name: rows for name, rows in earlier["methods"].items()
            if name not in entry["methods"] and not ("(ceiling)" in name and measured_ceilings)}
    if not kept:
        return entry
    methods = {**entry["methods"], **kept}
    ceilings = {name: rows for name, rows in methods.items() if "(ceiling)" in name}
    # the earlier run's order first (rfm, one-size, probe, variants), then this run's new rows, ceilings last
    order = [n for n in earlier["methods"] if n in methods] + [n for n in entry["methods"] if n not in earlier["methods"]]
    entry["methods"] = {**{n: methods[n] for n in order if n not in ceilings}, **ceilings}
    earlier_labels = earlier.get("kept_rows", {})
    entry["kept_rows"] = {name: earlier_labels.get(name, earlier.get("measured_by")) for name in kept}
    return entry


def update_ceilings(results_path: Path, splits: dict[str, Path], work: Path, seed: int, command: str,
                    out: Path) -> None:
    """Replace the ceiling rows of the synthetic datasets already in the results file (models untouched)."""
    from report import personalization_report

    results = json.loads(results_path.read_text())
    for dataset, split in splits.items():
        entry = results["datasets"].get(dataset)
        if entry is None or dataset in REAL_DATASETS:
            continue
        raters = SyntheticRaters.load(sidecar_path(work / f"{dataset}.jsonl"))
        entry["methods"].update(ceiling_rows(split, raters, entry["shots"], seed))
        entry["ceilings_measured_by"] = f"{command} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
    results_path.write_text(json.dumps(results, indent=1))
    personalization_report(results_path, out)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--datasets", default=None, help="Comma-separated subset (default: all).")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="Also train an RFM with these rfm train options (e.g. 'rfm-prompt32:prompt_budget=32'), "
                             "measured like the others; repeatable.")
    parser.add_argument("--methods", default=None, metavar="NAME,...",
                        help="Train and measure only these methods (rfm, one-size, linear-probe or a --variant name); "
                             "the other rows, ceilings included, are kept from the existing results file.")
    parser.add_argument("--ceilings-only", action="store_true",
                        help="Recompute only the synthetic datasets' ceiling rows in the existing results file.")
    args = parser.parse_args()
    for variant in args.variant:
        name, _, options = variant.partition(":")
        # a comma starts a new option only before "key=", so a value may hold commas (weight_decay_grid=0.1,1,3)
        items = (o.split("=", 1) for o in re.split(r",(?=\w+=)", options) if o)
        METHODS[name] = {"kind": "rfm", **{k: _literal(v) for k, v in items}}
    methods = None
    if args.methods:
        unknown = sorted(set(args.methods.split(",")) - set(METHODS))
        if unknown:
            parser.error(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)}; add one with --variant)")
        methods = {name: METHODS[name] for name in args.methods.split(",")}
    os.environ.setdefault("RFM_QUIET", "1")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = prepare(work, Path(args.data_dir), args.quick)
    if args.datasets:
        splits = {k: v for k, v in splits.items() if k in args.datasets.split(",")}
    pool = sorted({t for p in load_pairs(work / "pool.jsonl") for t in (p.chosen, p.rejected)})
    seeds = [int(s) for s in args.seeds.split(",")][: 1 if args.quick else None]
    command = ("python benchmarks/personalization.py" + (" --quick" if args.quick else "")
               + (f" --datasets {args.datasets}" if args.datasets else "")
               + "".join(f" --variant {v}" for v in args.variant)
               + (f" --methods {args.methods}" if args.methods else ""))
    results: dict = {"command": command, "repeats": REPEATS, "seeds": seeds, "datasets": {}}
    results_path = out / "personalization.json"
    if results_path.is_file() and args.datasets:  # a subset re-run keeps the other datasets' results
        results["datasets"] = json.loads(results_path.read_text()).get("datasets", {})
    if args.ceilings_only:
        update_ceilings(results_path, splits, work, seeds[0], command + " --ceilings-only", out)
        return
    for dataset, split in splits.items():
        entry = run_dataset(dataset, split, work, seeds, pool, started, methods)
        entry["measured_by"] = f"{command} (finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
        results["datasets"][dataset] = keep_earlier_variants(entry, results["datasets"].get(dataset))
        results_path.write_text(json.dumps(results, indent=1))
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results_path.write_text(json.dumps(results, indent=1))
    from report import personalization_report

    personalization_report(results_path, out)


if __name__ == "__main__":
    main()
