"""Does asking the right questions beat random choices? `RewardModel.next_question` measured (issue 16).

    .venv/bin/python benchmarks/questions.py                      # ~35 min on a 2-core CPU (cold models)
    .venv/bin/python benchmarks/questions.py --datasets taste --seeds 0

Writes benchmarks/results/questions.{json,md}.

A desktop app can ask a new user "which of these two?" instead of waiting for their choices to
arrive at random; `RewardModel.next_question` picks the pair whose answer teaches the most about
their w (expected information gain under the Laplace posterior, `rfm.adapt.rank_queries`). Here each
held-out user of `benchmarks/personalization.py`'s splits answers m questions from a pool of their
own labelled pairs (their label is the answer), and is scored on test pairs that share no response
with any pool pair (`rfm.evaluation.question_split`: half the pairs are the pool; by responses where
they recur, as on Jester), so every strategy and m meets the same new responses:

- random: m pairs of the pool at random (the protocol of `personalization.py`);
- information: asked one at a time, each the pool pair `next_question` would ask given the answers
  so far (the default of `next_question`);
- uncertainty: likewise, the pair whose predicted choice is closest to a coin flip;
- one-size: the non-adaptive baseline on the same test pairs.

Models: the RFM and the one-size model with `rfm train`'s defaults, 3 training seeds, exported and
run through the runtime in int8 (fp32 where the int8 check refused the graph), cached under
`--work/models/<dataset>/{rfm,one-size}-s<seed>` like personalization.py's default rows. The pools,
tests and random draws depend on the user and the repeat only (10 repeats), not on the training seed:
the same users, the same test pairs, at every m, for every strategy and seed. Paired differences:
each user's accuracy averaged over repeats and seeds, 95% bootstrap CI over users.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser, command_line  # noqa: E402
from personalization import METHODS, prepare, train_and_export  # noqa: E402
from report import markdown_table  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402

from rfm.data.jsonl import load_pairs  # noqa: E402
from rfm.evaluation import evaluate_questions, featurise_pairs, group_by_user, paired_difference, user_adapter  # noqa: E402

DATASETS = ("taste", "taste-unseen", "s2", "s2-small", "s1", "tldr", "jester-unseen")
SHOTS = (0, 5, 10, 20)
REPEATS = 10
DRAW_SEED = 0  # pools, tests and random draws: the same for every training seed
STRATEGIES = ("random", "information", "uncertainty")


def measure(dataset: str, split: Path, work: Path, seed: int) -> dict:
    """One training seed: each strategy's per-user accuracies for the RFM, and the one-size model's."""
    heldout = load_pairs(split / "heldout.jsonl")
    out: dict = {"seed": seed}
    for name, strategies in (("rfm", STRATEGIES), ("one-size", ("random",))):
        art, summary = train_and_export(split, work / "models" / dataset / f"{name}-s{seed}", METHODS[name], seed)
        artifact = load_artifact(art)
        precision = "int8" if "int8" in artifact.manifest.precisions else "fp32"
        extractor = FeatureExtractor(artifact, device="cpu", precision=precision)
        users = group_by_user(heldout, featurise_pairs(extractor, heldout))
        result = evaluate_questions(users, user_adapter(artifact), SHOTS, REPEATS, DRAW_SEED, strategies)
        result["precision"], result["best_epoch"] = precision, summary.get("best_epoch")
        out[name] = result
    return out


def per_user_mean(per_seed: list[dict], method: str, strategy: str, m: str) -> dict[str, float]:
    """Each user's accuracy averaged over the training seeds."""
    rows = [s[method]["strategies"][strategy]["shots"][m]["by_user"] for s in per_seed]
    return {u: float(np.mean([r[u] for r in rows])) for u in sorted(set.intersection(*(set(r) for r in rows)))}


def summarise(per_seed: list[dict]) -> dict:
    """Mean accuracy per strategy and m, and the paired differences that answer the question."""
    shots = [str(m) for m in SHOTS]
    table = {f"rfm, {s}": {m: float(np.mean(list(per_user_mean(per_seed, "rfm", s, m).values()))) for m in shots}
             for s in STRATEGIES}
    table["one-size"] = {m: float(np.mean(list(per_user_mean(per_seed, "one-size", "random", m).values())))
                         for m in shots}
    versus = {}
    for a, b in (("information", "random"), ("uncertainty", "random")):
        versus[f"{a} minus {b}"] = {m: paired_difference(per_user_mean(per_seed, "rfm", a, m),
                                                         per_user_mean(per_seed, "rfm", b, m)) for m in shots[1:]}
    for s in ("random", "information"):
        versus[f"rfm {s} minus one-size"] = {m: paired_difference(per_user_mean(per_seed, "rfm", s, m),
                                                                  per_user_mean(per_seed, "one-size", "random", m))
                                             for m in shots}
    first = per_seed[0]["rfm"]
    return {"accuracy": table, "paired": versus, "users": first["users"], "excluded_users": first["excluded_users"],
            "splits": first["splits"], "pool_pairs": first["pool_pairs"], "test_pairs": first["test_pairs"],
            "precisions": sorted({s[k]["precision"] for s in per_seed for k in ("rfm", "one-size")}),
            "best_epochs": [s["rfm"]["best_epoch"] for s in per_seed]}


def points(d: dict) -> str:
    return f"{100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"


def report(results: dict, out: Path) -> None:
    shots = [str(m) for m in SHOTS]
    lines = ["# Asking the right questions: `next_question` vs random choices", "",
             f"Command: `{results['command']}`. Protocol: the docstring of `benchmarks/questions.py`: held-out users "
             f"answer m questions from a pool of their own pairs and are scored on test pairs sharing no response with "
             f"the pool (the same test pairs for every strategy and m), {REPEATS} repeats, training seeds "
             f"{', '.join(map(str, results['seeds']))}, int8 through the runtime.", ""]
    for dataset, entry in results["datasets"].items():
        s = entry["summary"]
        lines += [f"## {dataset}", "",
                  f"{s['users']} held-out users ({s['excluded_users']} left out: pool under {max(SHOTS)} pairs or "
                  f"under 5 test pairs); pool {s['pool_pairs']:.0f} pairs, test {s['test_pairs']:.0f} pairs on average; "
                  f"split by {', '.join(f'{k} ({v})' for k, v in s['splits'].items())}; "
                  f"precision {', '.join(s['precisions'])}; RFM best epochs {', '.join(map(str, s['best_epochs']))}. "
                  f"{entry['measured_by']}.", ""]
        lines += markdown_table(["method", *(f"m={m}" for m in shots)],
                                [[name, *(f"{row[m]:.3f}" for m in shots)] for name, row in s["accuracy"].items()])
        lines += ["", "Paired over the same users (points, 95% bootstrap CI):", ""]
        for name, row in s["paired"].items():
            lines.append(f"- {name}: " + "; ".join(f"m={m} {points(d)}" for m, d in row.items()))
        lines.append("")
    (out / "questions.md").write_text("\n".join(lines))


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS), help="Comma-separated (default: %(default)s).")
    args = parser.parse_args()
    unknown = [d for d in args.datasets.split(",") if d not in DATASETS]
    if unknown:
        parser.error(f"--datasets: unknown {', '.join(unknown)} (known: {', '.join(DATASETS)})")
    os.environ.setdefault("RFM_QUIET", "1")
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    splits = prepare(work, Path(args.data_dir), quick=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    command = command_line("questions.py", parser, args, ("datasets", "seeds"))
    path = out / "questions.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}  # a re-run keeps other datasets
    results.update(command=command, seeds=seeds, repeats=REPEATS, shots=list(SHOTS))
    for dataset in args.datasets.split(","):
        per_seed = []
        for seed in seeds:
            per_seed.append(measure(dataset, splits[dataset], work, seed))
            rfm = per_seed[-1]["rfm"]["strategies"]
            print(f"[{time.perf_counter() - started:6.0f}s] {dataset} seed {seed}: "
                  + "  ".join(f"{s} " + " ".join(f"{rfm[s]['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS)
                              for s in STRATEGIES), flush=True)
        results["datasets"][dataset] = {
            "summary": summarise(per_seed), "per_seed": per_seed,
            "measured_by": f"finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"}
        path.write_text(json.dumps(results, indent=1))  # each finished dataset is kept
        report(results, out)
    print(f"done in {time.perf_counter() - started:.0f}s: {out / 'questions.md'}")


if __name__ == "__main__":
    main()
