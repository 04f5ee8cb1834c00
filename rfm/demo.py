"""`rfm demo`: the whole pipeline, offline, on real data (docs/DESIGN.md §1).

Part 1, real raters: convert the TL;DR comparisons -> split workers -> train the RFM and the
one-size baseline -> export (fp32 + int8) -> evaluate held-out workers on new responses.
Part 2, personalisation that generalises: synthetic people with one checkable taste each
(detailed/brief, lists/prose, casual/formal, hedged/direct) over real UltraFeedback responses, the
prompts split in half (training raters label one half, held-out people are judged on the other) ->
the same train/export/evaluate -> one held-out synthetic person adapted from a few choices, their
ranking of candidates nobody trained on before and after. Then a latency summary.
Every stage writes into one folder; a stage whose inputs are unchanged is reused on a re-run.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfm.fileio import atomic_open
from rfm.options import THREADS_HELP, opt
from rfm.paths import default_data_dir
from rfm.pipeline import cached_json, export_stage, train_stage
from rfm.train.config import TrainConfig

KINDS = ("rfm", "baseline")


@dataclass
class DemoConfig:
    """What `rfm demo` runs; the defaults are the documented demo (and `rfm demo`'s options)."""

    data_dir: Path | None = opt(None, "Folder with tldr/batch13.jsonl and tldr/batch18.jsonl (default: "
                                "$RFM_DATA_DIR, else ../shared/data).", path="dir")
    output: Path = opt("rfm-demo", "Folder for every output (runs, artifacts, evaluation, plot, summary.json).",
                       path="dir", short="-o")
    backbone: str = opt(TrainConfig.backbone, "As for rfm train: 'minilm' (bundled), a local Hugging Face folder, "
                        "or a hub name.")
    features: int = opt(TrainConfig.features, "Feature dimension d.")
    max_length: int = opt(TrainConfig.max_length, cli=False)
    holdout_users: float = opt(0.3, cli=False)
    min_pairs: int = opt(20, "Workers with fewer pairs are left out of the split.", min=1)
    max_pairs: int | None = opt(None, "Use only the first N pairs (quick runs).", min=1)
    shots: tuple[int, ...] = opt((0, 5, 10, 20), "Shot counts m of the evaluation.")
    repeats: int = opt(3, "Random draws of each user's m choices.", min=1)
    adapt_shots: int = opt(10, cli=False)
    taste_raters: int = opt(32, "Synthetic people with one taste each (part 2).", min=2)
    taste_pairs: int = opt(100, "Choices per synthetic person on their half of the prompts (over real "
                           "UltraFeedback responses; each labels twice as many, training raters keep those on "
                           "one half, held-out people those on the other).", min=10)
    seed: int = opt(0, "Seed of splits, training and draws.")
    threads: int | None = opt(None, THREADS_HELP, min=1)
    bench: bool = opt(True, "Skip the latency summary.", flag=True, name="no-bench")
    train_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        self.data_dir = default_data_dir(self.data_dir)
        self.output, self.shots = Path(self.output), tuple(self.shots)


class Stages:
    """Numbered stage headers and their timings."""

    def __init__(self, total: int, say: Callable[[str], None]):
        self.total, self.say, self.count, self.seconds = total, say, 0, {}

    def start(self, name: str) -> Callable[[], None]:
        self.count += 1
        t0 = time.perf_counter()
        self.say(f"\n== {self.count}/{self.total} {name}")
        return lambda: self.seconds.__setitem__(name, round(time.perf_counter() - t0, 1))


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict:
    """Run every stage; returns the summary (also written to OUTPUT/summary.json)."""
    from rfm.data.convert import ConvertReport, convert
    from rfm.data.jsonl import load_pairs, write_pairs
    from rfm.data.split import split_by_user
    from rfm.data.synth import synthesise

    started = time.perf_counter()
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(8 if cfg.bench else 7, say)

    done = stages.start("convert the TL;DR comparisons (batch13 + batch18)")
    sources = [cfg.data_dir / "tldr" / "batch13.jsonl", cfg.data_dir / "tldr" / "batch18.jsonl"]
    data = out / "tldr.jsonl"
    report = ConvertReport()
    pairs = list(convert("tldr", sources, report))[: cfg.max_pairs]
    write_pairs(data, pairs)
    say(f"   {report.summary()}; using {len(pairs)} pairs from {len({p.user_id for p in pairs})} workers")
    split = out / "split"
    split_report = split_by_user(data, split, cfg.holdout_users, seed=cfg.seed, min_pairs=cfg.min_pairs)
    say(f"   {len(split_report.train_users)} training raters, {len(split_report.heldout_users)} held-out workers "
        f"({split_report.counts['heldout']} pairs); {sum(split_report.dropped.values())} pairs of workers with "
        f"< {cfg.min_pairs} pairs left out")
    done()

    done = stages.start("train the RFM and the one-size baseline on TL;DR workers (head on the cached frozen encoder)")
    runs = _train_both(cfg, split, out / "runs", say)
    done()
    done = stages.start("export to ONNX through Optimum (fp32 + int8), validated")
    artifacts = _export_both(runs, split, out / "artifacts", say)
    done()
    done = stages.start("evaluate held-out TL;DR workers (adapted from m of their choices, int8 runtime)")
    tldr_results = _evaluate_both(cfg, artifacts, split, out, "eval")
    say(accuracy_table(tldr_results, cfg.shots))
    say("   TL;DR workers largely agree: one reward fits them about as well as a personal one (see README)")
    plot_path = out / "accuracy_vs_shots.png"
    plot_accuracy(tldr_results, plot_path, "TL;DR held-out workers, new responses")
    done()

    done = stages.start("synthetic people with one taste each, over real UltraFeedback responses: train and export")
    taste_data = out / "taste.jsonl"
    uf = out / "ultrafeedback.jsonl"
    write_pairs(uf, convert("ultrafeedback", [cfg.data_dir / "ultrafeedback" / "train.jsonl"], ConvertReport()))
    raters = synthesise(uf, taste_data, 3, cfg.taste_raters, seed=cfg.seed, pairs_per_rater=2 * cfg.taste_pairs,
                        temperature=0.1)
    taste_split = out / "taste_split"
    # held-out people are judged on prompts (and responses) no training pair contains: a desktop app ranks
    # candidates generated today, which nobody trained on
    taste_report = split_by_user(taste_data, taste_split, cfg.holdout_users, seed=cfg.seed, min_pairs=1,
                                 item_holdout=0.5)
    counts = taste_report.counts
    say(f"   {cfg.taste_raters} synthetic raters (labelled by rule, not by people), the prompts split in half: "
        f"{len(taste_report.train_users)} train on one half ({counts['train'] + counts['seen_test']} pairs), "
        f"{len(taste_report.heldout_users)} held out on the other ({counts['heldout']} pairs: responses no "
        "training pair contains)")
    taste_runs = _train_both(cfg, taste_split, out / "taste_runs", say)
    taste_artifacts = _export_both(taste_runs, taste_split, out / "taste_artifacts", say)
    done()
    done = stages.start("evaluate held-out synthetic people on responses nobody trained on")
    taste_results = _evaluate_both(cfg, taste_artifacts, taste_split, out, "taste_eval")
    say(accuracy_table(taste_results, cfg.shots))
    plot_accuracy(taste_results, out / "taste_accuracy_vs_shots.png", "synthetic tastes, held-out, new responses")
    done()

    done = stages.start("personalise one held-out synthetic person and rerank candidates nobody trained on")
    personal = personalise_one(taste_artifacts["rfm"], load_pairs(taste_split / "heldout.jsonl"), raters,
                               cfg.adapt_shots, out / "user_store", cfg.seed, say)
    done()

    latency = None
    if cfg.bench:
        done = stages.start("latency on this machine (int8, CPU)")
        latency = quick_latency(artifacts["rfm"], cfg.threads, out / "user_store", say)
        done()

    summary = {"output": str(out), "pairs": len(pairs), "training_raters": len(split_report.train_users),
               "heldout_users": len(split_report.heldout_users),
               "heldout_accuracy": _headline(tldr_results), "taste_heldout_accuracy": _headline(taste_results),
               "heldout_protocol": "new responses (no test response was in the adaptation pairs), same users at "
                                   "every m",
               "taste_heldout_protocol": "as heldout_protocol, and on prompts and responses no training pair "
                                         "contains (item_holdout 0.5)",
               "taste_split": taste_report.to_json(),
               "personalised_example": personal, "latency": latency, "stage_seconds": stages.seconds,
               "total_seconds": round(time.perf_counter() - started, 1), "plot": str(plot_path),
               "artifacts": {k: str(v) for k, v in artifacts.items()},
               "taste_artifacts": {k: str(v) for k, v in taste_artifacts.items()}}
    with atomic_open(out / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def _headline(results: dict) -> dict:
    return {k: {m: row["accuracy"] for m, row in r["heldout"]["shots"].items()} for k, r in results.items()}


def _train_both(cfg: DemoConfig, split: Path, folder: Path, say) -> dict[str, Path]:
    from rfm.train.run import describe

    runs = {}
    for kind in KINDS:
        train_cfg = TrainConfig(kind=kind, backbone=cfg.backbone, features=cfg.features, max_length=cfg.max_length,
                                seed=cfg.seed, **cfg.train_overrides)
        summary, reused = train_stage(split / "train.jsonl", folder / kind, train_cfg)
        say(f"   {kind}: unchanged, reusing {folder / kind}" if reused else f"   {describe(summary)}")
        collapse = summary.get("collapse") or {}
        if collapse.get("collapsed"):
            say(f"   warning: {collapse['advice']}")
        runs[kind] = folder / kind
    return runs


def _export_both(runs: dict[str, Path], split: Path, folder: Path, say) -> dict[str, Path]:
    artifacts = {}
    for kind, run_dir in runs.items():
        manifest, reused = export_stage(run_dir, folder / kind, ["fp32", "int8"], split / "heldout.jsonl")
        if reused:
            say(f"   {kind}: unchanged, reusing {folder / kind}")
        else:
            v = manifest.validation
            say(f"   {kind}: fp32 vs torch {v['fp32_vs_torch_max_abs_diff']:.1e}, int8 cosine "
                f"{v['int8']['mean_cosine']:.4f}, int8 {manifest.sizes_bytes['model_int8.onnx'] / 1e6:.0f} MB")
        artifacts[kind] = folder / kind
    return artifacts


def _evaluate_both(cfg: DemoConfig, artifacts: dict[str, Path], split: Path, out: Path, prefix: str) -> dict:
    from rfm.evaluation import evaluate

    return {kind: cached_json(out / f"{prefix}_{kind}.json",
                              [art / "rfm.json", split / "heldout.jsonl", list(cfg.shots), cfg.repeats, cfg.seed],
                              lambda art=art: evaluate(art, split / "heldout.jsonl", cfg.shots, cfg.repeats,
                                                       cfg.seed, threads=cfg.threads, device="cpu"))
            for kind, art in artifacts.items()}


def accuracy_table(results: dict, shots) -> str:
    """Held-out accuracy on new responses (headline) with the shared-response figure in brackets."""
    lines = ["   held-out accuracy, new responses (shared)   " + "  ".join(f"{'m=' + str(m):<13}" for m in shots)]
    for kind, result in results.items():
        new, shared = result["heldout"]["shots"], result["heldout_shared_responses"]["shots"]
        lines.append(f"   {kind:<42} " + "  ".join(f"{new[str(m)]['accuracy']:.3f} ({shared[str(m)]['accuracy']:.3f})"
                                                  for m in shots))
    heldout = next(iter(results.values()))["heldout"]
    lines.append(f"   the same {heldout['users']} users in every column ({heldout['excluded_users']} left out: too few "
                 "pairs for the largest m)")
    return "\n".join(lines)


def plot_accuracy(results: dict, path: Path, title: str) -> None:
    from rfm.plots import Curve
    from rfm.plots import plot_accuracy as draw

    curves = []
    for kind, result in results.items():
        rows = result["heldout"]["shots"]
        curves.append(Curve(f"{kind} (new responses)", [int(m) for m in rows], [rows[m]["accuracy"] for m in rows],
                            ([rows[m]["ci95"][0] for m in rows], [rows[m]["ci95"][1] for m in rows])))
    draw(curves, path, title)


def _describe_text(text: str) -> str:
    from rfm.data.synth import ATTRIBUTE_NAMES, raw_attributes

    values = dict(zip(ATTRIBUTE_NAMES, raw_attributes(text), strict=True))
    return (f"{len(text.split()):>4} words, lists {values['structure']:.0%}, casual {values['informality']:.1f}, "
            f"hedges {values['hedging']:.1f}")


def _split_for(pairs: list, shots: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices of `shots` pairs to adapt from, and of the other pairs that share no response with them."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    judged = {t for i in order[:shots] for t in (pairs[i].chosen, pairs[i].rejected)}
    return list(order[:shots]), [i for i in order[shots:] if pairs[i].chosen not in judged
                                 and pairs[i].rejected not in judged]


def _candidate_sets(test_pairs: list, sets: int, n: int, seed: int) -> list[list[str]]:
    """`sets` seeded draws of `n` responses from a person's test pairs (responses they never judged)."""
    pool = sorted({t for p in test_pairs for t in (p.chosen, p.rejected)})
    rng = np.random.default_rng(seed + 1)
    return [[pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)] for _ in range(sets)]


def _top_pick(true: np.ndarray, scores: np.ndarray) -> float:
    """The true reward of the highest-scored candidate on the set's scale: 0 = a random pick, 1 = the best."""
    spread = true.max() - true.mean()
    return float((true[int(np.argmax(scores))] - true.mean()) / spread) if spread > 1e-9 else 0.0


QUESTION_REPEATS = 5  # pools per held-out person for the asked-vs-random line


def _asked_vs_random(result: dict, shots: int) -> dict:
    """`evaluate_questions` at one m, as the demo prints it."""
    m = str(shots)
    if not result["users"]:
        return {"shots": shots, "people": 0, "pools": QUESTION_REPEATS}
    diff = result["strategies"]["information"]["minus_random"][m]
    return {"shots": shots, "people": result["users"], "pools": QUESTION_REPEATS,
            "asked": result["strategies"]["information"]["shots"][m]["accuracy"],
            "random": result["strategies"]["random"]["shots"][m]["accuracy"], "diff": diff["diff"],
            "ci95": diff["ci95"]}


def personalise_one(artifact: Path, heldout, raters, shots: int, store: Path, seed: int, say,
                    sets: int = 10, n: int = 8) -> dict:
    """Adapt a held-out synthetic person from `shots` choices and rerank candidates none of which they judged
    (with the demo's item split, none of which any training pair contains either).

    The person shown is the one with the median gain (personalised minus one-size accuracy on their new
    responses) among the held-out people: representative, not the best case. Top picks are scored by
    the person's true reward over `sets` candidate sets of `n`, so one lucky or unlucky set does not decide,
    and the same is done for every held-out person, so one person does not decide either.
    """
    from rfm.evaluation import accuracy, evaluate_questions, featurise_pairs, group_by_user
    from rfm.runtime import RewardModel

    by_user = defaultdict(list)
    for p in heldout:
        by_user[p.user_id].append(p)
    model = RewardModel.load(artifact, device="cpu", store=store)
    extractor = model.extractor  # one session per artifact, not two
    users = group_by_user(heldout, featurise_pairs(extractor, heldout))
    gains, everyone = {}, {}
    mean = model.population["mean"]
    for user in sorted(by_user):
        adapt_rows, test_rows = _split_for(by_user[user], shots, seed)
        if not test_rows:
            continue
        deltas = users[user].deltas
        w = model.fit(deltas[adapt_rows])
        adapt_pairs, test_pairs = [by_user[user][i] for i in adapt_rows], [by_user[user][i] for i in test_rows]
        gains[user] = (accuracy(deltas[test_rows], w), accuracy(deltas[test_rows], mean), adapt_pairs, test_pairs)
        picks = []
        for candidates in _candidate_sets(test_pairs, sets, n, seed):
            phi, true = extractor.candidates(test_pairs[0].prompt, candidates), raters.rewards(user, candidates)
            picks.append((_top_pick(true, phi @ mean), _top_pick(true, phi @ w)))
        everyone[user] = np.mean(picks, axis=0)
    if not gains:
        raise RuntimeError("no held-out person has a choice left between responses they did not judge; "
                       "use more --taste-pairs")
    ranked_users = sorted(gains, key=lambda u: gains[u][0] - gains[u][1])
    user = ranked_users[len(ranked_users) // 2]
    personal_acc, population_acc, adapt_pairs, test_pairs = gains[user]
    n_test = len(test_pairs)
    model.store.delete(user)
    candidate_sets = _candidate_sets(test_pairs, sets, n, seed)
    prompt = test_pairs[0].prompt
    before = [model.rerank(user, prompt, c) for c in candidate_sets]
    model.adapt(user, [(p.prompt, p.chosen, p.rejected) for p in adapt_pairs], replace=True)
    after = [model.rerank(user, prompt, c) for c in candidate_sets]

    def normalised(ranking) -> float:
        true = raters.rewards(user, [r.text for r in ranking])
        return _top_pick(true, -np.arange(len(true)))  # a ranking: its first candidate is the pick

    top_before = float(np.mean([normalised(r) for r in before]))
    top_after = float(np.mean([normalised(r) for r in after]))
    say(f"   {user} (synthetic; taste: {raters.taste(user)}; the median gain among {len(gains)} held-out people), "
        f"adapted from {len(adapt_pairs)} of their choices")
    say(f"   their {n_test} other choices, between responses neither they nor the training judged: personalised "
        f"reward right on {personal_acc:.0%}, one-size reward on {population_acc:.0%}")
    say(f"   one of {sets} sets of {n} candidates nobody trained on, best first:")
    say(f"   {'one-size (before)':<44} | personalised (after)")
    for b, a in zip(before[0], after[0], strict=True):
        say(f"   {_describe_text(b.text):<44} | {_describe_text(a.text)}")
    say(f"   top pick's true reward for this person, mean over the {sets} sets (random pick 0, best candidate 1): "
        f"one-size {top_before:+.2f}, personalised {top_after:+.2f}")
    all_before, all_after = np.mean(list(everyone.values()), axis=0)
    better = int(sum(picks[1] > picks[0] for picks in everyone.values()))
    say(f"   the same for all {len(everyone)} held-out people (mean over people): one-size {all_before:+.2f}, "
        f"personalised {all_after:+.2f}; personalised higher for {better} of them")
    asked = _asked_vs_random(evaluate_questions(users, model.adapter(), (shots,), QUESTION_REPEATS, seed), shots)
    if asked["people"]:
        say(f"   asking instead of waiting: {shots} questions picked by `rfm ask` from a pool of each held-out "
            f"person's pairs, scored on their pairs sharing no response with that pool: right on {asked['asked']:.1%}, "
            f"against {asked['random']:.1%} after {shots} random choices from the pool ({100 * asked['diff']:+.1f} "
            f"points, 95% CI [{100 * asked['ci95'][0]:+.1f}, {100 * asked['ci95'][1]:+.1f}], {asked['people']} "
            f"people x {QUESTION_REPEATS} pools)")
    else:
        say(f"   asking instead of waiting: no held-out person has a pool of {shots} pairs and 5 more to test on "
            "(use more --taste-pairs)")
    return {"user": user, "synthetic": True, "taste": raters.taste(user), "chosen_as": "median gain",
            "adapted_on": len(adapt_pairs), "new_response_pairs": n_test, "personalised_accuracy": personal_acc,
            "one_size_accuracy": population_acc, "candidate_sets": sets, "candidates": n,
            "top_pick_normalised_reward": {"one_size": top_before, "personalised": top_after},
            "everyone": {"people": len(everyone), "personalised_higher": better,
                         "top_pick_normalised_reward": {"one_size": float(all_before), "personalised": float(all_after)}},
            "asked_vs_random": asked,
            "ranking_changed": any([r.text for r in b] != [r.text for r in a] for b, a in zip(before, after,
                                                                                                 strict=True))}


def quick_latency(artifact: Path, threads: int | None, store: Path, say) -> dict:
    """A few headline numbers; `rfm bench` has the full grid."""
    from rfm.bench import bench_adapt, bench_rerank, percentiles, texts_of_length, time_calls
    from rfm.runtime import FeatureExtractor, load_artifact

    art = load_artifact(artifact)
    extractor = FeatureExtractor(art, device="cpu", precision="int8", threads=threads)
    prompts, responses = texts_of_length(extractor.tokenizer, 8, 256)
    batch = percentiles(time_calls(lambda: extractor(prompts, responses), 5, 2, 1.0), 8, 256)
    rerank = bench_rerank(art, (8,), 256, threads, "int8", 5, 2, 1.0, str(store))[0]
    adapt = bench_adapt(art.features, (50,), 50, False, art.population())[0]
    say(f"   features, batch 8 x 256 tokens: p50 {batch['p50_ms']:.0f} ms ({batch['seq_per_s']:.0f} seq/s)")
    say(f"   rerank 8 candidates x 256 tokens: p50 {rerank['p50_ms']:.0f} ms")
    say(f"   adapt w (d={adapt['d']}, m=50 choices): {adapt['fit_ms']:.2f} ms")
    return {"batch8x256_p50_ms": batch["p50_ms"], "rerank8_p50_ms": rerank["p50_ms"], "adapt_ms": adapt["fit_ms"]}
