"""The paper's experiments at our scale (DESIGN §4): personalisation accuracy, best-of-n, int8 vs fp32.

    .venv/bin/python benchmarks/personalization.py            # ~40 min on a 2-core CPU
    .venv/bin/python benchmarks/personalization.py --quick    # a smoke run

Writes benchmarks/results/personalization.{json,md} and personalization_<dataset>.png. Every number
comes through the exported ONNX artifacts (int8 unless stated) and the runtime's adapter.

Datasets
- tldr: OpenAI TL;DR comparisons (batch13 + batch18), split by worker (30% held out, workers with
  >= 20 pairs), several training seeds (results are noisy at this scale: 8 held-out workers).
- s1 / s2: synthetic raters (`rfm data synth`, Scenario 1 / 2) over a pool of real responses: the
  994 UltraFeedback train pairs + the first 1,000 HH-RLHF harmless-test pairs; 40 raters x 150 pairs,
  temperature 0.1; 30% of raters held out.

Best-of-n (synthetic raters): for each held-out rater, w is adapted from m = 20 of their pairs; then
for 5 prompts from their remaining pairs, the candidate set is the prompt's two real responses plus
responses drawn at random from other prompts in the pool (n = 4, 8, 16 share the first n of one draw
of 16). The true reward of the pick is normalised so that a random pick scores 0 and the oracle 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402

from rfm.data.convert import ConvertReport, convert  # noqa: E402
from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402
from rfm.data.split import split_by_user  # noqa: E402
from rfm.data.synth import SyntheticRaters, sidecar_path, synthesise  # noqa: E402
from rfm.evaluation import Adapter, evaluate_heldout, evaluate_seen, featurise_pairs, group_by_user  # noqa: E402

SHOTS = (0, 5, 10, 20, 50)


def record_split(report, folder: Path) -> None:
    (folder / "split.json").write_text(json.dumps(report.to_json(), indent=1))


def prepare(work: Path, data_dir: Path, quick: bool) -> dict[str, Path]:
    """Convert, synthesise and split; returns dataset -> split dir."""
    work.mkdir(parents=True, exist_ok=True)
    tldr = work / "tldr.jsonl"
    write_pairs(tldr, convert("tldr", [data_dir / "tldr" / "batch13.jsonl", data_dir / "tldr" / "batch18.jsonl"],
                              ConvertReport()))
    uf = list(convert("ultrafeedback", [data_dir / "ultrafeedback" / "train.jsonl"], ConvertReport()))
    hh = list(convert("hh-rlhf", [data_dir / "hh-rlhf" / "harmless-base-test.jsonl.gz"], ConvertReport()))[:1000]
    write_pairs(work / "pool.jsonl", uf + hh)
    splits = {"tldr": work / "split_tldr"}
    record_split(split_by_user(tldr, splits["tldr"], 0.3, seed=0, min_pairs=20), splits["tldr"])
    raters, per_rater = (12, 60) if quick else (40, 150)
    for scenario in (1, 2):
        synth = work / f"s{scenario}.jsonl"
        synthesise(work / "pool.jsonl", synth, scenario, raters, seed=0, pairs_per_rater=per_rater, temperature=0.1)
        splits[f"s{scenario}"] = work / f"split_s{scenario}"
        record_split(split_by_user(synth, splits[f"s{scenario}"], 0.3, seed=0, min_pairs=20), splits[f"s{scenario}"])
    return splits


def methods(quick: bool) -> list[tuple[str, dict]]:
    dims = (8, 32) if quick else (8, 32, 128)
    return [*[(f"rfm-d{d}", {"kind": "rfm", "features": d}) for d in dims],
            ("baseline-bt", {"kind": "baseline"}), ("linear-probe", {"kind": "linear-probe"})]


def train_and_export(split: Path, out: Path, options: dict, seed: int, precisions: list[str]) -> tuple[Path, dict]:
    """Train and export once; a finished model dir is reused on a re-run (the script is resumable)."""
    from rfm.export.build import export_run
    from rfm.train.run import train
    from rfm.train.rundir import read_summary
    from rfm.train.trainer import TrainConfig

    from rfm.errors import RfmError

    run, art = out / "run", out / "artifact"
    if (art / "rfm.json").is_file():
        return art, read_summary(run)
    summary = train(split / "train.jsonl", run, TrainConfig(seed=seed, **options), overwrite=True, progress=False)
    try:
        export_run(run, art, precisions, validation_data=str(split / "heldout.jsonl"), overwrite=True,
                   log=lambda m: None)
    except RfmError as exc:  # an int8 bound missed: evaluate the fp32 graph, and say so in the results
        print(f"   {out.name}: {exc}; exporting fp32 only", flush=True)
        export_run(run, art, ["fp32"], validation_data=str(split / "heldout.jsonl"), overwrite=True,
                   log=lambda m: None)
        summary["int8_export_refused"] = str(exc)
    return art, summary


def best_of_n(extractor: FeatureExtractor, adapter: Adapter, users, pairs_by_user, raters: SyntheticRaters,
              pool: list[str], seed: int, trials: int = 5, ns=(4, 8, 16), m: int = 20) -> dict:
    rng = np.random.default_rng(seed)
    scores = {n: [] for n in ns}
    for user, data in users.items():
        if len(data.deltas) < m + 1:
            continue
        order = np.random.default_rng(abs(hash(user)) % 2**32).permutation(len(data.deltas))
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


def evaluate_artifact(art: Path, split: Path, precision: str, seed: int, raters: SyntheticRaters | None,
                      pool: list[str] | None) -> dict:
    artifact = load_artifact(art)
    extractor = FeatureExtractor(artifact, device="cpu", precision=precision)
    heldout_pairs = load_pairs(split / "heldout.jsonl")
    users = group_by_user(heldout_pairs, featurise_pairs(extractor, heldout_pairs))
    seen_pairs = load_pairs(split / "seen_test.jsonl")
    seen_users = group_by_user(seen_pairs, featurise_pairs(extractor, seen_pairs))
    result = {"precision": precision, "seen": evaluate_seen(seen_users, artifact)}
    for name in ("map", "l2"):
        result[f"heldout_{name}"] = evaluate_heldout(users, Adapter(artifact, name), SHOTS, 5, seed)
    if raters is not None:
        by_user: dict[str, list] = {}
        for p in heldout_pairs:
            by_user.setdefault(p.user_id, []).append(p)
        result["best_of_n"] = best_of_n(extractor, Adapter(artifact, "map"), users, by_user, raters, pool, seed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--tldr-seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RFM_QUIET", "1")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = prepare(work, Path(args.data_dir), args.quick)
    pool = sorted({t for p in load_pairs(work / "pool.jsonl") for t in (p.chosen, p.rejected)})
    results: dict = {"command": "python benchmarks/personalization.py" + (" --quick" if args.quick else ""),
                     "shots": SHOTS, "datasets": {}}
    tldr_seeds = [int(s) for s in args.tldr_seeds.split(",")][: 1 if args.quick else None]
    for dataset, split in splits.items():
        raters = None if dataset == "tldr" else SyntheticRaters.load(sidecar_path(work / f"{dataset}.jsonl"))
        seeds = tldr_seeds if dataset == "tldr" else [0]
        entry = results["datasets"].setdefault(dataset, {"split": json.loads(
            (split / "split.json").read_text()) if (split / "split.json").exists() else None, "methods": {}})
        for name, options in methods(args.quick):
            per_seed = []
            for seed in seeds if options["kind"] != "linear-probe" else seeds[:1]:
                t0 = time.perf_counter()
                art, summary = train_and_export(split, work / "models" / dataset / f"{name}-s{seed}", options, seed,
                                                ["fp32", "int8"])
                cached = work / "models" / dataset / f"{name}-s{seed}" / "result.json"
                if cached.is_file():
                    row = json.loads(cached.read_text())
                else:
                    precision = "int8" if "int8" in load_artifact(art).precisions else "fp32"
                    row = {"seed": seed, "train_metrics": summary.get("metrics"), "best_epoch": summary.get("best_epoch"),
                           "int8_export_refused": summary.get("int8_export_refused"),
                           **evaluate_artifact(art, split, precision, seed, raters, pool if raters else None)}
                    if name == "rfm-d32":
                        row["fp32"] = evaluate_artifact(art, split, "fp32", seed, None, None)
                    row["seconds"] = round(time.perf_counter() - t0, 1)
                    cached.write_text(json.dumps(row))
                per_seed.append(row)
                print(f"[{time.perf_counter() - started:6.0f}s] {dataset} {name} seed {seed}: "
                      + " ".join(f"m={m}:{row['heldout_map']['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS),
                      flush=True)
            entry["methods"][name] = per_seed
        with open(out / "personalization.json", "w") as handle:
            json.dump(results, handle, indent=1)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    with open(out / "personalization.json", "w") as handle:
        json.dump(results, handle, indent=1)
    from report import personalization_report

    personalization_report(out / "personalization.json", out)


if __name__ == "__main__":
    main()
