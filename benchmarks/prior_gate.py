"""Could training choose the mixture prior per model? Its judges' few-shot verdict vs what held-out users get.

`mixture_prior.py` shows the mixture prior helping Scenario 2 and taste and hurting Jester on held-out
users. A gate at train time would pick the prior per artifact the way the prior width is picked: adapt
the judges (held-out raters, or the training raters' validation pairs) from a few of their choices under
each prior and score pairs that share no response with those choices. This script retrains each of
`personalization.py`'s RFMs (same split, seed and code; their rater rows must match the cached run's
bit for bit), scores both priors on the very few-shot tasks that chose the width (the mixture leaving out
the judge's own row, which was fitted to the pairs being scored), and sets that verdict beside
`mixture_prior.json`'s held-out mixture-minus-population per seed.

    python benchmarks/prior_gate.py                       # ~6 min on the 2-core host (warm caches)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser  # noqa: E402
from report import markdown_table  # noqa: E402
from rfm.adapt import MAPLogisticRegression, MixtureMAPLogisticRegression  # noqa: E402
from rfm.adapt.mixture import MIXTURE_SCALE  # noqa: E402
from rfm.train import run as train_run  # noqa: E402
from rfm.train.prior import SELECTION_DRAWS  # noqa: E402
from rfm.train.selection import FewShotTask, fewshot_scores, fewshot_tasks  # noqa: E402
from rfm.train.trainer import TrainConfig, judging  # noqa: E402

DATASETS = ("taste", "s2", "s2-small", "jester", "tldr")
HELDOUT_SHOTS = ("5", "10", "20")


def fewshot_per_task(delta: np.ndarray, tasks: list[FewShotTask], adapter_for) -> tuple[float, float]:
    """`fewshot_scores` with each task's own estimator: (accuracy averaged per task, log-likelihood per pair)."""
    scores = [fewshot_scores(delta, [task], adapter_for(task)) for task in tasks]
    return (float(np.mean([acc for acc, _ in scores])),
            float(np.average([loglik for _, loglik in scores], weights=[len(t.test) for t in tasks])))


def judges_verdict(split: Path, seed: int, cached_run: Path) -> dict:
    """Retrain the RFM, capturing what `_finish` sees, and score both priors on its width-choosing tasks."""
    captured: dict = {}
    finish = train_run._finish

    def spy(result, cfg, data, phi):
        weights, prior, width = finish(result, cfg, data, phi)
        captured.update(cfg=cfg, data=data, phi=phi, weights=weights, prior=prior)
        return weights, prior, width

    train_run._finish = spy
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train_run.train(split / "train.jsonl", Path(tmp) / "run", TrainConfig(seed=seed, kind="rfm"),
                            progress=False)
    finally:
        train_run._finish = finish
    with np.load(cached_run / "raters.npz") as z:
        if not np.array_equal(z["weights"], captured["weights"]):
            raise SystemExit(f"{cached_run}: the retrained rater rows differ from the cached run's; "
                             "run personalization.py first so both come from this code")
    cfg, data, phi, rows, prior = (captured[k] for k in ("cfg", "data", "phi", "weights", "prior"))
    judge = judging(data, cfg)
    tasks = fewshot_tasks(data.user, judge.tasks_val, data.a, data.b, draws=SELECTION_DRAWS, seed=cfg.seed,
                          rows=judge.tasks_rows)
    delta = phi[data.a] - phi[data.b]
    mixtures: dict[int, MixtureMAPLogisticRegression] = {}

    def mixture_for(task: FewShotTask) -> MixtureMAPLogisticRegression:
        rater = int(data.user[task.test[0]])  # leave the judge's own row out: it was fitted to these pairs
        if rater not in mixtures:
            mixtures[rater] = MixtureMAPLogisticRegression(np.delete(rows, rater, axis=0), prior["cov"], MIXTURE_SCALE)
        return mixtures[rater]

    pop_acc, pop_ll = fewshot_scores(delta, tasks, MAPLogisticRegression(prior["mean"], prior["cov"]))
    mix_acc, mix_ll = fewshot_per_task(delta, tasks, mixture_for)
    return {"judges": "held-out raters" if judge.judges.any() else "training raters' validation pairs",
            "judge_count": len({int(data.user[t.test[0]]) for t in tasks}), "tasks": len(tasks),
            "test_pairs": int(sum(len(t.test) for t in tasks)),
            "val_acc": {"population": pop_acc, "mixture": mix_acc}, "val_loglik": {"population": pop_ll,
                                                                                 "mixture": mix_ll}}


def heldout_gain(entry: dict, seed: int) -> dict[str, float]:
    """Held-out users' mixture minus population accuracy at each m, points, from mixture_prior.json."""
    def shots(prior: str) -> dict:
        return next(r for r in entry["rows"][prior] if r["seed"] == seed)["new_responses"]["shots"]

    pop, mix = shots("population"), shots("mixture")
    return {m: 100 * (mix[m]["accuracy"] - pop[m]["accuracy"]) for m in HELDOUT_SHOTS}


def reading(rows: list[dict]) -> list[str]:
    """How often each judges' criterion would have picked the prior that held-out users did better with (m = 20)."""
    lines = []
    truth = np.array([r["heldout_mixture_minus_population"]["20"] for r in rows])
    helps = truth > 0.05
    for name, key, margin in (("accuracy", "val_acc", 0.0), ("log-likelihood", "val_loglik", 1e-3)):
        verdict = np.array([r[key]["mixture"] - r[key]["population"] for r in rows])
        picks = verdict > margin
        lines.append(f"- A gate on the judges' {name} (mixture if it gains more than {margin:g}) picks the mixture "
                     f"for {int(picks.sum())} of {len(rows)} models; held-out users gain from it (> +0.05 points at "
                     f"m = 20) with {int(helps.sum())}; both agree on {int((picks == helps).sum())} of {len(rows)}; "
                     f"held-out gain where it picks the mixture: {truth[picks].sum():+.1f} points summed "
                     f"(the best possible gate: {truth[helps].sum():+.1f}); correlation of its margin with the "
                     f"held-out gain {np.corrcoef(verdict, truth)[0, 1]:+.2f}.")
    lower = sum(r["val_loglik"]["mixture"] < r["val_loglik"]["population"] for r in rows)
    lines.append(f"- Always the mixture: {truth.sum():+.1f} points summed over the {len(rows)} models (always the "
                 f"population prior: 0). The mixture's judges' log-likelihood is lower in {lower} of {len(rows)} "
                 "models, also where held-out users rank better with it: it is less calibrated, so the width's own "
                 "criterion cannot choose it.")
    return lines


def main() -> None:
    parser = benchmark_parser(__doc__, data_dir=False)
    parser.add_argument("--datasets", default=",".join(DATASETS), help=f"Comma-separated subset of {', '.join(DATASETS)}.")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    mixture = json.loads((out / "mixture_prior.json").read_text())["datasets"]
    rows, table, started = [], [], time.perf_counter()
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            verdict = judges_verdict(work / f"split_{dataset}", seed, work / "models" / dataset / f"rfm-s{seed}" / "run")
            gain = heldout_gain(mixture[dataset], seed)
            acc, ll = verdict["val_acc"], verdict["val_loglik"]
            row = {"dataset": dataset, "seed": seed, **verdict, "heldout_mixture_minus_population": gain}
            rows.append(row)
            table.append([dataset, str(seed), f"{verdict['judge_count']} {verdict['judges']}",
                          f"{100 * (acc['mixture'] - acc['population']):+.1f}",
                          f"{1e3 * (ll['mixture'] - ll['population']):+.1f}",
                          *(f"{gain[m]:+.1f}" for m in HELDOUT_SHOTS)])
            print(f"[{time.perf_counter() - started:5.0f}s] " + " | ".join(table[-1]), flush=True)
    (out / "prior_gate.json").write_text(json.dumps({"rows": rows, "mixture_scale": MIXTURE_SCALE}, indent=1))
    lines = ["# Can the judges tell whether the mixture prior helps? (per trained RFM)", "",
             "Judges' verdict: the few-shot tasks that chose the prior width (0/5/10/20 shots, 2 draws, pairs sharing "
             "no response with the shots), mixture minus population prior (the mixture leaves out the judge's own "
             "row); held out: `mixture_prior.json`'s held-out users, new responses, int8, the same artifact. "
             f"`python benchmarks/prior_gate.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             *markdown_table(["data", "seed", "judges", "judges' accuracy, points", "judges' log-lik, 1e-3 nats/pair",
                              *(f"held out m={m}, points" for m in HELDOUT_SHOTS)], table), "",
             *reading(rows), ""]
    (out / "prior_gate.md").write_text("\n".join(lines))
    print(f"wrote {out / 'prior_gate.md'}")


if __name__ == "__main__":
    main()
