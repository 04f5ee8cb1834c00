"""Is data the lever? The taste benchmark with 1x / 2x / 4x the training raters and 1x / 2x the pairs each (issue 16).

The RFM on taste (28 training raters x 120 pairs) reaches 0.587 at m = 20 on new responses, 7 points
under the frozen encoder's best linear read-out (0.659), and d, head decay and a token head did not
move it. This measures whether more people, or more choices per person, close that gap: one synthetic
taste population (Scenario 3 over the personalisation pool, 160 raters x 300 pairs, seed 0, temperature
0.1), one split (30% of raters held out: the same 48 held-out users, each with their first 150 pairs,
for every row), and nested subsets of the training raters: the first R of a fixed order, each with
the first P of their training pairs; 112 x 30 spreads 28 x 120's 3,360 labels over 4x the people, each
with a seeded random 30 of their training pairs (the first 30 would cover only ~320 distinct pool pairs;
the table counts each row's distinct pairs), and 28 x 120 random is its control: 28 x 120's people and labels
per person, a seeded random 120 of each rater's pairs. `--judge-frac 0` in every row, so only the amount of data changes
between them; 112 x 120 is also trained with rfm train's default, which from 40 raters on keeps 15%
of them out of training to judge the epochs and the prior ("rfm, default judges"). Protocol otherwise as
`benchmarks/personalization.py`: new responses, the same users at every m, 3 draws, RFM mean of 3
training seeds, int8 through the runtime (fp32 where the export refused the int8 graph, marked); one-size
trained once (seed 0). The held-out users' test pairs come from the same pool as the training pairs: the
table says how many training labels each test pair has on average (`benchmarks/unseen_items.py` measures
responses no training rater labelled).

    .venv/bin/python benchmarks/taste_scaling.py      # ~90 min on a 2-core CPU (embedding cache warm)

Writes benchmarks/results/taste_scaling.{json,md}.
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
    SHOTS_SYNTHETIC,
    TRUE_ATTRIBUTES,
    ceiling_rows,
    evaluate_artifact,
    train_and_export,
    write_pool,
)
from report import accuracy_table, paired_differences, paired_lines  # noqa: E402
from rfm.runtime import load_artifact  # noqa: E402

from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402
from rfm.data.split import split_by_user  # noqa: E402
from rfm.data.synth import SyntheticRaters, sidecar_path, synthesise  # noqa: E402
from rfm.pipeline import cached_json  # noqa: E402

RATERS, PAIRS_PER_RATER, HELDOUT_PAIRS = 160, 300, 150
# (name, training raters, training pairs per rater, a seeded random P of each rater's pairs instead of the first P).
# Taste itself is 28 x 120. `rfm data synth` writes each rater's pairs in pool order, so the first 30 of 112
# raters would cover only ~320 distinct pool pairs (28 x 120's first 120: ~1,030): 112 x 30, which spreads 28 x
# 120's 3,360 labels over 4x the people, takes a random 30, and 28 x 120 random is its control (the same
# people and labels per person as 28 x 120, as many distinct responses as a random pick meets).
CONFIGS = (("28x120", 28, 120, False), ("56x120", 56, 120, False), ("112x120", 112, 120, False),
           ("28x240", 28, 240, False), ("112x240", 112, 240, False), ("112x30", 112, 30, True),
           ("28x120-random", 28, 120, True))
SEEDS = (0, 1, 2)
RFM_OPTIONS = {"kind": "rfm", "judge_frac": 0.0}
# configs also trained with rfm train's default judges (15% of the raters kept out of training to judge
# the epochs and the prior, from 40 raters on): what a user with that many raters gets
DEFAULT_JUDGES = "rfm, default judges"
JUDGED = ("112x120",)
ONE_SIZE = {"kind": "baseline"}


def _first_per_user(pairs, limit: int, users: list[str] | None = None) -> list:
    """Each user's first `limit` pairs in file order (only `users`, when given)."""
    keep = None if users is None else set(users)
    taken: dict[str, int] = {}
    out = []
    for p in pairs:
        if keep is not None and p.user_id not in keep:
            continue
        if taken.get(p.user_id, 0) < limit:
            taken[p.user_id] = taken.get(p.user_id, 0) + 1
            out.append(p)
    return out


def prepare(work: Path, data_dir: Path, name: str = "taste", scenario: int = 3) -> tuple[Path, SyntheticRaters, list[str]]:
    """The population (`rfm data synth` Scenario `scenario`), its split and the held-out users' pairs; returns the
    split dir, the raters and the training raters in the fixed order the subsets take them from."""
    pool = write_pool(work, data_dir)
    synth = work / f"{name}{RATERS}x{PAIRS_PER_RATER}.jsonl"
    if not synth.is_file():
        synthesise(pool, synth, scenario, RATERS, seed=0, pairs_per_rater=PAIRS_PER_RATER, temperature=0.1)
    split = work / f"split_{synth.stem}"
    if not (split / "split.json").is_file():
        report = split_by_user(synth, split, 0.3, seed=0, min_pairs=20)
        (split / "split.json").write_text(json.dumps(report.to_json(), indent=1))
    users = sorted({p.user_id for p in load_pairs(split / "train.jsonl")})
    order = [users[i] for i in np.random.default_rng(1).permutation(len(users))]
    return split, SyntheticRaters.load(sidecar_path(synth)), order


def _random_per_user(pairs, limit: int, users: list[str], seed: int = 0) -> list:
    """A seeded random `limit` of each of `users`' pairs, in file order."""
    rows: dict[str, list[int]] = {u: [] for u in users}
    for i, p in enumerate(pairs):
        if p.user_id in rows:
            rows[p.user_id].append(i)
    rng = np.random.default_rng(seed)
    keep = {i for u in users for i in rng.choice(rows[u], size=min(limit, len(rows[u])), replace=False).tolist()}
    return [p for i, p in enumerate(pairs) if i in keep]


def training_pairs(pairs: list, users: list[str], per_user: int, random_pick: bool) -> list:
    """The training pairs of a config: each rater's first `per_user`, or a seeded random `per_user`."""
    return (_random_per_user if random_pick else _first_per_user)(pairs, per_user, users)


def subset(split: Path, folder: Path, users: list[str], per_user: int, random_pick: bool) -> Path:
    """A split dir with the config's training pairs of `users` (`training_pairs`), their seen pairs, and the
    shared held-out users (first HELDOUT_PAIRS each)."""
    if (folder / "heldout.jsonl").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write_pairs(folder / "train.jsonl", training_pairs(load_pairs(split / "train.jsonl"), users, per_user, random_pick))
    chosen = set(users)
    write_pairs(folder / "seen_test.jsonl", [p for p in load_pairs(split / "seen_test.jsonl") if p.user_id in chosen])
    write_pairs(folder / "heldout.tmp", _first_per_user(load_pairs(split / "heldout.jsonl"), HELDOUT_PAIRS))
    os.replace(folder / "heldout.tmp", folder / "heldout.jsonl")  # last: marks the folder complete
    return folder


def run_config(split: Path, raters: SyntheticRaters, order: list[str], config: tuple[str, int, int, bool],
               work: Path, started: float) -> dict:
    name, n_raters, per_user, random_pick = config
    folder = subset(split, work / f"split_taste_scaling_{name}", order[:n_raters], per_user, random_pick)
    entry: dict = {"training_raters": n_raters, "training_pairs_per_rater": per_user, "random_pick": random_pick,
                   "shots": list(SHOTS_SYNTHETIC), "methods": {}}
    methods = [("rfm", RFM_OPTIONS, SEEDS), ("one-size", ONE_SIZE, SEEDS[:1])]
    if name in JUDGED:
        methods.append((DEFAULT_JUDGES, {"kind": "rfm"}, SEEDS))
    for method, options, seeds in methods:
        rows = []
        for seed in seeds:
            model = work / "models" / "taste_scaling" / name / f"{method.replace(', ', '-').replace(' ', '-')}-s{seed}"
            art, summary = train_and_export(folder, model, options, seed)

            def measure(art=art, summary=summary, seed=seed) -> dict:
                # an int8 graph the export refused (outside its validation bounds) leaves fp32, as in personalization.py
                precision = "int8" if "int8" in load_artifact(art).precisions else "fp32"
                return {"seed": seed, "best_epoch": summary.get("best_epoch"), "train_s": summary.get("train_s"),
                        "prior_width": (summary.get("prior_width") or {}).get("margin_variance"),
                        **evaluate_artifact(art, folder, precision, seed, SHOTS_SYNTHETIC)}

            row = cached_json(model / "result.json", [art / "rfm.json", folder / "heldout.jsonl", list(SHOTS_SYNTHETIC)],
                              measure)
            rows.append(row)
            print(f"[{time.perf_counter() - started:6.0f}s] {name} {method} seed {seed}: "
                  + " ".join(f"m={m}:{row['new_responses']['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS_SYNTHETIC)
                  + f" (best epoch {row['best_epoch']}, train {row['train_s']} s)", flush=True)
        entry["methods"][method] = rows
    entry["methods"].update(ceiling_rows(folder, raters, SHOTS_SYNTHETIC, SEEDS[0]))
    return entry


def report(results: dict, out: Path) -> None:
    lines = ["# Taste with more people and more choices: is data the lever?", "",
             f"Command: `{results['command']}` (total {results['total_seconds'] / 60:.0f} min, 2-core CPU).", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "Summary at m = 20 (new responses; RFM mean ± sd over 3 training seeds; paired difference over the "
             "same 48 users with a 95% bootstrap CI):", "",
             "| training raters x pairs each | training pairs (distinct) | training labels per test pair | RFM m=20 "
             "| one-size m=20 | RFM - one-size (points) | linear read-out ceiling | true attributes ceiling | RFM m=50 "
             "| best epochs | train s |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|"]
    rows = [(name, entry, method) for name, entry in results["configs"].items()
            for method in ("rfm", DEFAULT_JUDGES) if method in entry["methods"]]
    for name, entry, method in rows:
        methods = entry["methods"]
        rfm, one = methods[method], methods["one-size"]
        if method != "rfm":
            name += f" ({method})"
        acc = {m: [r["new_responses"]["shots"][m]["accuracy"] for r in rfm] for m in ("20", "50")}
        diff = (paired_differences(rfm, one) or {}).get("20")
        ceiling = {k: methods[k][0]["new_responses"]["shots"]["20"]["accuracy"] for k in (LINEAR_READOUT, TRUE_ATTRIBUTES)}
        lines.append(f"| {name} | {entry['training_raters'] * entry['training_pairs_per_rater']:,} "
                     + (f"({entry['distinct_training_pairs']:,}) | " if "distinct_training_pairs" in entry else "| ")
                     + (f"{entry['labels_per_test_pair']:.2f} | " if "labels_per_test_pair" in entry else "- | ")
                     + f"{np.mean(acc['20']):.3f} ± {np.std(acc['20']):.3f} | "
                     f"{one[0]['new_responses']['shots']['20']['accuracy']:.3f} | "
                     + (f"{100 * diff['diff']:+.1f} [{100 * diff['ci95'][0]:+.1f}, {100 * diff['ci95'][1]:+.1f}]"
                        if diff else "-")
                     + f" | {ceiling[LINEAR_READOUT]:.3f} | {ceiling[TRUE_ATTRIBUTES]:.3f} | {np.mean(acc['50']):.3f} | "
                     + ",".join(str(r["best_epoch"]) for r in rfm) + f" | {np.mean([r['train_s'] for r in rfm]):.0f} |")
    for name, entry in results["configs"].items():
        lines += ["", f"## {name}", "", f"Measured by `{entry.get('measured_by', results['command'])}`.", "",
                  *accuracy_table(entry, "new_responses"), "", *paired_lines(entry)]
    (out / "taste_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = benchmark_parser(__doc__, seeds=False)
    parser.add_argument("--configs", default=None,
                        help="Comma-separated subset, e.g. '112x240' (default: all); the others' results are kept.")
    parser.add_argument("--report-only", action="store_true",
                        help="Train and measure nothing: recount the pairs and rewrite the report from the results file.")
    args = parser.parse_args()
    os.environ.setdefault("RFM_QUIET", "1")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    split, raters, order = prepare(work, Path(args.data_dir))
    path = out / "taste_scaling.json"
    results: dict = {"command": "python benchmarks/taste_scaling.py", "configs": {}, "total_seconds": 0.0}
    if args.report_only and not path.is_file():
        parser.error(f"--report-only: no {path} to report")
    if (args.configs or args.report_only) and path.is_file():
        results = json.loads(path.read_text())
    wanted = [] if args.report_only else args.configs.split(",") if args.configs else None
    unknown = sorted(set(wanted or ()) - {c[0] for c in CONFIGS})
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(c[0] for c in CONFIGS)})")
    for config in CONFIGS:
        name = config[0]
        if wanted is not None and name not in wanted:
            continue
        results["configs"][name] = run_config(split, raters, order, config, work, started)
        results["configs"][name]["measured_by"] = ("python benchmarks/taste_scaling.py"
                                                   + (f" --configs {args.configs}" if args.configs else ""))
        (out / "taste_scaling.json").write_text(json.dumps(results, indent=1))
    if not args.report_only:
        results["total_seconds"] += round(time.perf_counter() - started, 1)
    results["configs"] = {c[0]: results["configs"][c[0]] for c in CONFIGS if c[0] in results["configs"]}
    train = load_pairs(split / "train.jsonl")
    tests = [frozenset((p.chosen, p.rejected)) for p in _first_per_user(load_pairs(split / "heldout.jsonl"), HELDOUT_PAIRS)]
    for name, n_raters, per_user, random_pick in CONFIGS:
        entry = results["configs"].get(name)
        if entry is None:
            continue
        entry["random_pick"] = random_pick
        pairs = training_pairs(train, order[:n_raters], per_user, random_pick)
        entry["distinct_training_pairs"] = len({(p.prompt, frozenset((p.chosen, p.rejected))) for p in pairs})
        # the held-out users' test pairs come from the same pool: how often training raters labelled each one
        labels = collections.Counter(frozenset((p.chosen, p.rejected)) for p in pairs)
        entry["labels_per_test_pair"] = float(np.mean([labels.get(k, 0) for k in tests]))
    path.write_text(json.dumps(results, indent=1))
    report(results, out)


if __name__ == "__main__":
    main()
