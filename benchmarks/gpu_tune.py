"""`rfm train --tune full` on a GPU, measured exactly like benchmarks/personalization.py.

One process trains one seed of one recipe (whole encoder + head + W, Bradley-Terry, few-shot
selection), exports it (fp32 + int8, validated), and scores held-out users through the runtime's int8
graph on the CPU: new responses (headline), shared responses, best-of-n. Several processes share one
GPU (`benchmarks/gpu_tune.sh` starts them). `--report` merges their JSON files into
benchmarks/results/gpu_tune.{json,md}.

    python benchmarks/gpu_tune.py --dataset s2 --recipe default --seed 0 --out RESULTS_DIR
    python benchmarks/gpu_tune.py --dataset s2 --recipe lr1e-4 --seed 0 --set backbone_lr=1e-4 --out RESULTS_DIR
    python benchmarks/gpu_tune.py --report RESULTS_DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from personalization import SHOTS_SYNTHETIC, evaluate_artifact  # noqa: E402

from rfm.data.jsonl import load_pairs  # noqa: E402
from rfm.data.synth import SyntheticRaters, sidecar_path  # noqa: E402
from rfm.pipeline import export_stage, train_stage  # noqa: E402


def parse_sets(items: list[str]) -> dict:
    """`key=value` overrides of TrainConfig, each value parsed as its field's type."""
    from rfm.train.config import TrainConfig

    types = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    options = {}
    for item in items:
        key, _, value = item.partition("=")
        key = key.replace("-", "_")
        if key not in types:
            raise SystemExit(f"--set {item}: TrainConfig has no field {key!r}")
        options[key] = value.lower() in ("1", "true", "yes") if types[key] is bool else types[key](value)
    return options


def run_one(args: argparse.Namespace) -> dict:
    import torch
    from rfm.train.trainer import TrainConfig

    work = Path(args.work)
    split = work / f"split_{args.dataset}"
    options = {"kind": "rfm", "tune": "full", "backbone": args.backbone, **parse_sets(args.set)}
    cfg = TrainConfig(seed=args.seed, **options)
    folder = Path(args.models) / args.dataset / f"{args.recipe}-s{args.seed}"
    t0 = time.perf_counter()
    summary, _ = train_stage(split / "train.jsonl", folder / "run", cfg, progress=True)
    train_s = time.perf_counter() - t0
    # The training curve survives even if the export or evaluation below runs out of time.
    partial = Path(args.out) / f"{args.dataset}-{args.recipe}-s{args.seed}.training.json"
    partial.write_text(json.dumps({"options": options | {"backbone": None}, "train_s": round(train_s, 1),
                                   "best_epoch": summary.get("best_epoch"), "history": summary.get("history")},
                                  indent=1, default=float))
    manifest, _ = export_stage(folder / "run", folder / "artifact", ["fp32", "int8"], split / "heldout.jsonl",
                               fallback=["fp32"])
    precision = "int8" if "int8" in manifest.precisions else "fp32"
    raters = SyntheticRaters.load(sidecar_path(work / f"{args.dataset}.jsonl"))
    pool = sorted({t for p in load_pairs(work / "pool.jsonl") for t in (p.chosen, p.rejected)})
    result = evaluate_artifact(folder / "artifact", split, precision, args.seed, SHOTS_SYNTHETIC, raters, pool,
                               threads=args.threads)
    return {"dataset": args.dataset, "recipe": args.recipe, "seed": args.seed,
            "options": {k: v for k, v in options.items() if k != "backbone"},
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
            "torch": torch.__version__, "train_s": round(train_s, 1), "best_epoch": summary.get("best_epoch"),
            "prior_width": (summary.get("prior_width") or {}).get("margin_variance"),
            "collapse": summary.get("collapse"), "train_metrics": summary.get("metrics"),
            "history": summary.get("history"), "export_refused": manifest.extra.get("export_refused"),
            "total_s": round(time.perf_counter() - t0, 1), **result}


def report(folder: Path, out: Path, note: str = "") -> None:
    """Merge the per-process JSON files: mean and spread over seeds per recipe, as Markdown."""
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
            if p.name != "gpu_tune.json" and not p.name.endswith(".training.json")]
    by_recipe: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_recipe.setdefault((row["dataset"], row["recipe"]), []).append(row)
    lines = ["# `rfm train --tune full` on a GPU", "",
             f"Device: {rows[0]['device']}, torch {rows[0]['torch']}. Held-out users, new responses (their test pairs "
             "share no response with the m adaptation pairs), int8 through the runtime on the CPU, 3 draws per "
             "user and m; mean (min-max) over training seeds. Command: `bash benchmarks/gpu_tune_pack.sh s2` here, "
             "then `bash benchmarks/gpu_tune.sh s2 470 RECIPE...` on the GPU machine (RECIPE = "
             "`name:key=value,...`, the options listed below; see benchmarks/README.md).", *([note, ""] if note else [""])]
    merged = {}
    for (dataset, recipe), seeds in sorted(by_recipe.items()):
        shots = [str(m) for m in SHOTS_SYNTHETIC]
        acc = {m: [s["new_responses"]["shots"][m]["accuracy"] for s in seeds] for m in shots}
        shared = {m: [s["shared_responses"]["shots"][m]["accuracy"] for s in seeds] for m in shots}
        merged[f"{dataset}/{recipe}"] = {"seeds": [s["seed"] for s in seeds], "options": seeds[0]["options"],
                                         "new_responses": {m: float(np.mean(v)) for m, v in acc.items()},
                                         "shared_responses": {m: float(np.mean(v)) for m, v in shared.items()},
                                         "best_epochs": [s["best_epoch"] for s in seeds],
                                         "train_s": [s["train_s"] for s in seeds]}
        lines += [f"## {dataset}, recipe `{recipe}` ({len(seeds)} seeds; options {seeds[0]['options']})", "",
                  "| m | " + " | ".join(shots) + " |", "|---|" + "---|" * len(shots),
                  "| new responses | " + " | ".join(f"{np.mean(acc[m]):.3f} ({min(acc[m]):.3f}-{max(acc[m]):.3f})"
                                                   for m in shots) + " |",
                  "| shared responses | " + " | ".join(f"{np.mean(shared[m]):.3f}" for m in shots) + " |", "",
                  f"Users: {seeds[0]['new_responses']['users']}. Best epochs {[s['best_epoch'] for s in seeds]}; "
                  f"training {[s['train_s'] for s in seeds]} s per seed (processes sharing the GPU). "
                  + (f"Best-of-n (seed {seeds[0]['seed']}): "
                     + ", ".join(f"n={n}: {v['normalised_reward']:.2f}" for n, v in seeds[0]["best_of_n"].items())
                     if seeds[0].get("best_of_n") else ""), ""]
        lines += ["Per epoch (seed " + str(seeds[0]["seed"]) + "): epoch, train acc, raters' val acc, few-shot "
                  "accuracy on new responses (what selects the epoch):", "",
                  "| epoch | train acc | val acc | few-shot |", "|---|---|---|---|"]
        lines += [f"| {h['epoch']} | {h['train_acc']:.3f} | {h['val_acc']:.3f} | {h.get('fewshot_acc', float('nan')):.3f} |"
                  for h in seeds[0]["history"]] + [""]
    (out / "gpu_tune.json").write_text(json.dumps({"recipes": merged, "runs": rows}, indent=1))
    (out / "gpu_tune.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="s2")
    parser.add_argument("--recipe", default="default", help="A name for this set of --set options.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="key=value override of TrainConfig.")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads of the evaluation.")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "work"))
    parser.add_argument("--models", default=str(ROOT / "benchmarks" / "work" / "models-gpu"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--report", metavar="DIR", help="Merge DIR's per-run JSON files into --out.")
    parser.add_argument("--note", default="", help="A paragraph for the report (what else to know about the run).")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        report(Path(args.report), out, args.note)
        return
    row = run_one(args)
    (out / f"{args.dataset}-{args.recipe}-s{args.seed}.json").write_text(json.dumps(row, indent=1, default=float))
    print(f"{args.dataset} {args.recipe} seed {args.seed}: new responses "
          + " ".join(f"m={m}:{row['new_responses']['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS_SYNTHETIC)
          + f"; best epoch {row['best_epoch']}, {row['train_s']} s", flush=True)


if __name__ == "__main__":
    main()
