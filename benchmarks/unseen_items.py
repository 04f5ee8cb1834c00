"""Responses nobody trained on: does personalisation hold on candidates no training rater ever labelled?

The synthetic benchmarks draw training raters and held-out users from one pool of 1,994 real response
pairs, so a held-out user's "new responses" (none of them in the user's own m adaptation pairs) were
mostly labelled by training raters: in `taste_scaling.py`'s rows 82-100% of the held-out test pairs
were, 1.6-13 labels each, and the RFM's accuracy at m = 20 rises with that count. A desktop app ranks
candidates generated today, which no one trained on. This benchmark splits the pool by prompt into two
halves: training raters label only pairs of half A, and each held-out user is scored twice with the
same models, on their pairs in half A ("items training saw") and on their pairs in half B ("items
nobody trained on", which share no prompt and no response with half A), the same number of pairs per
user in both. Populations: 160 synthetic raters x 300 pairs over the pool (seed 0, temperature 0.1),
30% held out (48 users), as in `taste_scaling.py`; taste (Scenario 3) and Scenario 2. Training raters:
the first R of taste_scaling's fixed order, each with a seeded random 120 of their half-A pairs,
`--judge-frac 0`. Protocol otherwise as `benchmarks/personalization.py`: new responses for the user,
the same users at every m, 3 draws, the RFM mean of 3 training seeds, int8 through the runtime; one-size
and the linear probe trained once (seed 0). The linear read-out ceiling is fitted to the training
raters' texts (half A), so on half B it too is out of sample.

    .venv/bin/python benchmarks/unseen_items.py      # ~50 min on a 2-core CPU (embedding cache warm)

Writes benchmarks/results/unseen_items.{json,md}.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser  # noqa: E402
from personalization import (  # noqa: E402
    LINEAR_READOUT,
    METHODS,
    SHOTS_SYNTHETIC,
    TRUE_ATTRIBUTES,
    ceiling_rows,
    evaluate_artifact,
    train_and_export,
)
from personalization import prepare as prepare_benchmarks  # noqa: E402
from report import accuracy_table, paired_differences  # noqa: E402
from rfm.runtime import load_artifact  # noqa: E402
from taste_scaling import HELDOUT_PAIRS, _random_per_user, prepare  # noqa: E402

from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402
from rfm.pipeline import cached_json  # noqa: E402

POPULATIONS = {"taste": 3, "s2": 2}
# (name, population, training raters, training pairs per rater)
CONFIGS = (("taste 28x120", "taste", 28, 120), ("taste 112x120", "taste", 112, 120), ("s2 28x120", "s2", 28, 120))
SEEDS = (0, 1, 2)
TESTS = {"seen": "items training saw (half A)", "unseen": "items nobody trained on (half B)"}
RFM_OPTIONS = {"kind": "rfm", "judge_frac": 0.0}
ONCE = {"one-size": METHODS["one-size"], "linear-probe": METHODS["linear-probe"]}
# Head recipes that might memorise the training responses less (`--variants`): the defaults were tuned on
# test pairs the training raters had labelled, which reward memorising them.
VARIANTS = {"decay-1": {"weight_decay": 1.0}, "decay-3": {"weight_decay": 3.0}, "dropout-0.5": {"dropout": 0.5},
            "d-8": {"features": 8}, "val-prompts": {"val_split": "prompts"}}


def halves(pool: Path, seed: int = 0) -> tuple[set[str], set[str]]:
    """The pool's prompts split in two at random, and the responses of half A's pairs."""
    pairs = load_pairs(pool)
    prompts = sorted({p.prompt for p in pairs})
    order = np.random.default_rng(seed).permutation(len(prompts))
    side_a = {prompts[i] for i in order[: len(prompts) // 2]}
    responses_a = {r for p in pairs if p.prompt in side_a for r in (p.chosen, p.rejected)}
    return side_a, responses_a


def side(pair, side_a: set[str], responses_a: set[str]) -> str | None:
    """'A', 'B' (no prompt or response of half A), or None for the rare half-B pair re-using a half-A response."""
    if pair.prompt in side_a:
        return "A"
    return None if pair.chosen in responses_a or pair.rejected in responses_a else "B"


def build(split: Path, folder: Path, users: list[str], per_user: int, side_a: set[str], responses_a: set[str]) -> dict:
    """Two split dirs under `folder` with the same training and seen-rater pairs (half A): `seen/` holds the
    held-out users' half-A pairs, `unseen/` their half-B pairs, the same number per user."""
    done = {name: folder / name for name in TESTS}
    if all((d / "heldout.jsonl").is_file() for d in done.values()):
        return done
    chosen = set(users)
    train = [p for p in load_pairs(split / "train.jsonl") if side(p, side_a, responses_a) == "A"]
    train = _random_per_user(train, per_user, users)
    seen = [p for p in load_pairs(split / "seen_test.jsonl") if p.user_id in chosen and side(p, side_a, responses_a) == "A"]
    by_side: dict[str, dict[str, list]] = {"A": collections.defaultdict(list), "B": collections.defaultdict(list)}
    for p in load_pairs(split / "heldout.jsonl"):
        where = side(p, side_a, responses_a)
        if where is not None:
            by_side[where][p.user_id].append(p)
    held = {"seen": [], "unseen": []}
    for user in sorted(by_side["A"].keys() & by_side["B"].keys()):
        n = min(len(by_side["A"][user]), len(by_side["B"][user]), HELDOUT_PAIRS)
        held["seen"] += by_side["A"][user][:n]
        held["unseen"] += by_side["B"][user][:n]
    for name, d in done.items():
        d.mkdir(parents=True, exist_ok=True)
        write_pairs(d / "train.jsonl", train)
        write_pairs(d / "seen_test.jsonl", seen)
        write_pairs(d / "heldout.tmp", held[name])
        os.replace(d / "heldout.tmp", d / "heldout.jsonl")  # last: marks the folder complete
    return done


def overlap(folder: Path) -> dict:
    """How much of the held-out test set the training raters labelled."""
    labels = collections.Counter(frozenset((p.chosen, p.rejected)) for p in load_pairs(folder / "train.jsonl"))
    responses = {r for key in labels for r in key}
    held = load_pairs(folder / "heldout.jsonl")
    keys = [frozenset((p.chosen, p.rejected)) for p in held]
    prompts = {p.prompt for p in load_pairs(folder / "train.jsonl")}
    return {"test_pairs": len(held), "users": len({p.user_id for p in held}),
            "prompts_in_training": float(np.mean([p.prompt in prompts for p in held])),
            "pairs_labelled_in_training": float(np.mean([k in labels for k in keys])),
            "labels_per_test_pair": float(np.mean([labels.get(k, 0) for k in keys])),
            "responses_in_training": float(np.mean([p.chosen in responses or p.rejected in responses for p in held]))}


def benchmark_overlap(work: Path, data_dir: Path) -> dict[str, dict]:
    """The same overlap figures for `personalization.py`'s datasets (converted, synthesised and split as it does)."""
    return {name: overlap(split) for name, split in prepare_benchmarks(work, data_dir, quick=False).items()}


def run_config(work: Path, data_dir: Path, config: tuple[str, str, int, int], started: float,
               variants: tuple[str, ...] = (), earlier: dict | None = None) -> dict:
    """Train and score the config's methods (with `earlier`, its results so far: only `variants`, kept beside them)."""
    name, pop, n_raters, per_user = config
    split, raters, order = prepare(work, data_dir, pop, POPULATIONS[pop])
    side_a, responses_a = halves(work / "pool.jsonl")
    tag = name.replace(" ", "_")
    folders = build(split, work / f"split_unseen_items_{tag}", order[:n_raters], per_user, side_a, responses_a)
    train = load_pairs(folders["seen"] / "train.jsonl")
    entry: dict = {"population": pop, "training_raters": n_raters, "training_pairs_per_rater": per_user,
                   "training_pairs": len(train),
                   "distinct_training_pairs": len({frozenset((p.chosen, p.rejected)) for p in train}),
                   "shots": list(SHOTS_SYNTHETIC), "overlap": {t: overlap(d) for t, d in folders.items()},
                   "tests": {t: {"methods": {}} for t in TESTS}}
    methods = [] if earlier else [("rfm", RFM_OPTIONS, SEEDS)] + [(m, o, SEEDS[:1]) for m, o in ONCE.items()]
    methods += [(f"rfm, {v}", {**RFM_OPTIONS, **VARIANTS[v]}, SEEDS) for v in variants]
    if earlier:
        for test in TESTS:
            entry["tests"][test]["methods"] = {m: rows for m, rows in earlier["tests"][test]["methods"].items()
                                               if m not in {method for method, _, _ in methods}}
    for method, options, seeds in methods:
        for seed in seeds:
            model = work / "models" / "unseen_items" / tag / f"{method.replace(', ', '-')}-s{seed}"
            art, summary = train_and_export(folders["unseen"], model, options, seed)
            precision = "int8" if "int8" in load_artifact(art).precisions else "fp32"
            for test, folder in folders.items():
                def measure(art=art, summary=summary, seed=seed, folder=folder, precision=precision) -> dict:
                    return {"seed": seed, "best_epoch": summary.get("best_epoch"), "train_s": summary.get("train_s"),
                            "prior_width": (summary.get("prior_width") or {}).get("margin_variance"),
                            **evaluate_artifact(art, folder, precision, seed, SHOTS_SYNTHETIC)}

                row = cached_json(model / f"result_{test}.json",
                                  [art / "rfm.json", folder / "heldout.jsonl", list(SHOTS_SYNTHETIC)], measure)
                entry["tests"][test]["methods"].setdefault(method, []).append(row)
                print(f"[{time.perf_counter() - started:6.0f}s] {name} {method} seed {seed} on {TESTS[test]}: "
                      + " ".join(f"m={m}:{row['new_responses']['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS_SYNTHETIC),
                      flush=True)
    for test, folder in folders.items() if not earlier else ():
        entry["tests"][test]["methods"].update(ceiling_rows(folder, raters, SHOTS_SYNTHETIC, SEEDS[0]))
    return entry


def _ci(diff: dict | None) -> str:
    return f"{100 * diff['diff']:+.1f} [{100 * diff['ci95'][0]:+.1f}, {100 * diff['ci95'][1]:+.1f}]" if diff else "-"


def report(results: dict, out: Path) -> None:
    lines = ["# Responses nobody trained on", "",
             f"Command: `{results['command']}` (total {results['total_seconds'] / 60:.0f} min, 2-core CPU).", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Summary at m = 20 (new responses for the user; RFM mean ± sd over 3 training seeds; paired differences "
             "over the same users, each user's accuracy averaged over the seeds, 95% bootstrap CI over users):", "",
             "| config | test items | training labels per test pair | RFM m=20 | one-size | probe | RFM - one-size | "
             "RFM - probe | read-out ceiling | true attributes ceiling |",
             "|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for name, entry in results["configs"].items():
        for test, label in TESTS.items():
            methods = entry["tests"][test]["methods"]
            rfm = [r["new_responses"]["shots"]["20"]["accuracy"] for r in methods["rfm"]]
            acc = {k: methods[k][0]["new_responses"]["shots"]["20"]["accuracy"]
                   for k in ("one-size", "linear-probe", LINEAR_READOUT, TRUE_ATTRIBUTES)}
            diffs = {k: (paired_differences(methods["rfm"], methods[k]) or {}).get("20") for k in ("one-size", "linear-probe")}
            lines.append(f"| {name} | {label} | {entry['overlap'][test]['labels_per_test_pair']:.2f} | "
                         f"{np.mean(rfm):.3f} ± {np.std(rfm):.3f} | {acc['one-size']:.3f} | {acc['linear-probe']:.3f} | "
                         f"{_ci(diffs['one-size'])} | {_ci(diffs['linear-probe'])} | {acc[LINEAR_READOUT]:.3f} | "
                         f"{acc[TRUE_ATTRIBUTES]:.3f} |")
    if results.get("benchmark_overlap"):
        lines += ["", "For comparison, `benchmarks/personalization.py`'s datasets (training raters and held-out users "
                  "label one pool of responses; the held-out users' whole test files, before the per-m exclusion of "
                  "pairs sharing a response with the adaptation pairs):", "",
                  "| dataset | held-out users' pairs | labelled by training raters | training labels per test pair | "
                  "with a response training saw | with a prompt training saw |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {o['test_pairs']:,} | {100 * o['pairs_labelled_in_training']:.0f}% | "
                  f"{o['labels_per_test_pair']:.2f} | {100 * o['responses_in_training']:.0f}% | "
                  + (f"{100 * o['prompts_in_training']:.0f}% |" if "prompts_in_training" in o else "- |")
                  for name, o in results["benchmark_overlap"].items()]
    lines += ["", "The same RFM models on both test sets, paired over the same users (items nobody trained on minus "
              "items training saw, points):", ""]
    for name, entry in results["configs"].items():
        tests = entry["tests"]
        diffs = paired_differences(tests["unseen"]["methods"]["rfm"], tests["seen"]["methods"]["rfm"]) or {}
        lines.append(f"- {name}: " + "; ".join(f"m={m} {_ci(d)}" for m, d in diffs.items()))
    variant_rows = [(name, method) for name, entry in results["configs"].items()
                    for method in entry["tests"]["unseen"]["methods"] if method.startswith("rfm, ")]
    if variant_rows:
        lines += ["", "Head recipes (`--variants`; 3 training seeds each), m = 20, against the default recipe paired over "
                  "the same users:", "",
                  "| config | recipe | items training saw | minus default | items nobody trained on | minus default |",
                  "|---|---|---:|---|---:|---|"]
        for name, method in variant_rows:
            cells = []
            for test in TESTS:
                methods = results["configs"][name]["tests"][test]["methods"]
                acc = [r["new_responses"]["shots"]["20"]["accuracy"] for r in methods[method]]
                diff = (paired_differences(methods[method], methods["rfm"]) or {}).get("20")
                cells += [f"{np.mean(acc):.3f} ± {np.std(acc):.3f}", _ci(diff)]
            lines.append(f"| {name} | {method[5:]} ({', '.join(f'{k}={v}' for k, v in VARIANTS[method[5:]].items())}) | "
                         + " | ".join(cells) + " |")
    for name, entry in results["configs"].items():
        lines += ["", f"## {name}", "",
                  f"{entry['training_raters']} training raters x {entry['training_pairs_per_rater']} half-A pairs "
                  f"({entry['training_pairs']:,} labels, {entry['distinct_training_pairs']:,} distinct pairs)."]
        for test, label in TESTS.items():
            o = entry["overlap"][test]
            lines += ["", f"### {label}", "",
                      f"{o['users']} held-out users, {o['test_pairs']:,} pairs; {100 * o['pairs_labelled_in_training']:.0f}% "
                      f"of them labelled by training raters ({o['labels_per_test_pair']:.2f} labels each on average), "
                      f"{100 * o['responses_in_training']:.0f}% with a response the training saw.", "",
                      *accuracy_table({"shots": entry["shots"], **entry["tests"][test]}, "new_responses")]
            methods = entry["tests"][test]["methods"]
            for baseline in ("one-size", "linear-probe"):
                diffs = paired_differences(methods["rfm"], methods[baseline]) or {}
                lines.append(f"\n- rfm minus {baseline}: " + "; ".join(f"m={m} {_ci(d)}" for m, d in diffs.items()))
    (out / "unseen_items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = benchmark_parser(__doc__, seeds=False)
    parser.add_argument("--configs", default=None,
                        help="Comma-separated subset, e.g. 'taste 28x120' (default: all); the others' results are kept.")
    parser.add_argument("--report-only", action="store_true", help="Rewrite the report from the results file; run nothing.")
    parser.add_argument("--variants", default="",
                        help=f"Comma-separated head recipes to add ({', '.join(VARIANTS)}); earlier variants' rows are kept.")
    parser.add_argument("--only-variants", action="store_true",
                        help="Train and score only --variants, beside the config's earlier rows (the default recipe, "
                        "baselines and ceilings are kept as measured).")
    args = parser.parse_args()
    os.environ.setdefault("RFM_QUIET", "1")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = [c.strip() for c in args.configs.split(",")] if args.configs else None
    unknown = sorted(set(wanted or ()) - {c[0] for c in CONFIGS})
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(c[0] for c in CONFIGS)})")
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    if set(variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {', '.join(sorted(set(variants) - set(VARIANTS)))} (known: {', '.join(VARIANTS)})")
    started = time.perf_counter()
    path = out / "unseen_items.json"
    results: dict = {"command": "python benchmarks/unseen_items.py", "configs": {}, "total_seconds": 0.0}
    if args.report_only and not path.is_file():
        parser.error(f"--report-only: no {path} to report")
    if (wanted or variants or args.report_only) and path.is_file():
        results = json.loads(path.read_text())
    for config in CONFIGS:
        if not args.report_only and (wanted is None or config[0] in wanted):
            earlier = results["configs"].get(config[0])
            if args.only_variants and earlier is None:
                parser.error(f"--only-variants: {config[0]!r} has no earlier results in {path}")
            entry = run_config(work, Path(args.data_dir), config, started, variants,
                               earlier if args.only_variants else None)
            for test in TESTS if earlier else ():
                methods = entry["tests"][test]["methods"]
                methods.update({m: rows for m, rows in earlier["tests"][test]["methods"].items()
                                if m.startswith("rfm, ") and m not in methods})
            results["configs"][config[0]] = entry
            path.write_text(json.dumps(results, indent=1))
    if not args.report_only:
        results["total_seconds"] += round(time.perf_counter() - started, 1)
    results["configs"] = {c[0]: results["configs"][c[0]] for c in CONFIGS if c[0] in results["configs"]}
    results["benchmark_overlap"] = benchmark_overlap(work, Path(args.data_dir))
    path.write_text(json.dumps(results, indent=1))
    report(results, out)


if __name__ == "__main__":
    main()
