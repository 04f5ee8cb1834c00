"""`rfm demo`: the whole pipeline, offline, on the real TL;DR comparisons (DESIGN §1).

convert -> split workers -> train RFM + baseline (head on the cached frozen encoder) -> export
(fp32 + int8) -> evaluate held-out workers -> adapt one worker and rerank summaries -> latency.
Every stage writes into one folder; a stage whose inputs are unchanged is reused on a re-run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfm.fileio import atomic_open

STAMP = ".rfm-demo-stamp"


@dataclass
class DemoConfig:
    """What `rfm demo` runs; the defaults are the documented demo."""

    data_dir: Path
    output: Path
    backbone: str = "minilm"
    features: int = 32
    epochs: int = 40
    max_length: int = 256
    holdout_users: float = 0.3
    min_pairs: int = 20
    max_pairs: int | None = None
    shots: tuple[int, ...] = (0, 5, 10, 20)
    repeats: int = 3
    adapt_shots: int = 10
    seed: int = 0
    threads: int | None = None
    bench: bool = True
    train_overrides: dict = field(default_factory=dict)


@functools.cache
def _code_version() -> str:
    """A digest of rfm's own source, so a stage built by older code is not reused after an upgrade."""
    import importlib

    digest = hashlib.sha256()
    for name in ("rfm", "rfm.train", "rfm.export", "rfm.runtime", "rfm.adapt"):
        root = Path(importlib.import_module(name).__file__).parent
        for source in sorted(root.glob("*.py")):
            digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def _key(*parts: object) -> str:
    digest = hashlib.sha256(_code_version().encode())
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            digest.update(hashlib.sha256(part.read_bytes()).digest())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _fresh(path: Path, key: str) -> bool:
    stamp = path / STAMP if path.is_dir() else path.with_name(path.name + STAMP)
    return path.exists() and stamp.is_file() and stamp.read_text() == key


def _stamp(path: Path, key: str) -> None:
    stamp = path / STAMP if path.is_dir() else path.with_name(path.name + STAMP)
    stamp.write_text(key)


def run_demo(cfg: DemoConfig, say: Callable[[str], None] = print) -> dict:
    """Run every stage; returns the summary (also written to OUTPUT/summary.json)."""
    from rfm.data.convert import ConvertReport, convert
    from rfm.data.jsonl import load_pairs, write_pairs
    from rfm.data.split import split_by_user
    from rfm.evaluation import evaluate
    from rfm.export.build import export_run
    from rfm.train.run import describe, train
    from rfm.train.trainer import TrainConfig

    started = time.perf_counter()
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str) -> Callable[[], None]:
        t0 = time.perf_counter()
        say(f"\n== {name}")
        return lambda: timings.__setitem__(name, round(time.perf_counter() - t0, 1))

    done = stage("1/7 convert the TL;DR comparisons (batch13 + batch18)")
    sources = [cfg.data_dir / "tldr" / "batch13.jsonl", cfg.data_dir / "tldr" / "batch18.jsonl"]
    data = out / "tldr.jsonl"
    report = ConvertReport()
    pairs = list(convert("tldr", sources, report))
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    write_pairs(data, pairs)
    say(f"   {report.summary()}; using {len(pairs)} pairs from {len({p.user_id for p in pairs})} workers")
    done()

    done = stage("2/7 split workers into training raters and held-out users")
    split = out / "split"
    split_report = split_by_user(data, split, cfg.holdout_users, seed=cfg.seed, min_pairs=cfg.min_pairs)
    say(f"   {len(split_report.train_users)} training raters, {len(split_report.heldout_users)} held-out workers "
        f"({split_report.counts['heldout']} pairs); {sum(split_report.dropped.values())} pairs of workers with "
        f"< {cfg.min_pairs} pairs left out")
    done()

    done = stage("3/7 train the RFM and the non-adaptive baseline (head on the frozen, cached encoder)")
    runs = {}
    for kind in ("rfm", "baseline"):
        train_cfg = TrainConfig(kind=kind, backbone=cfg.backbone, features=cfg.features, epochs=cfg.epochs,
                                max_length=cfg.max_length, seed=cfg.seed, **cfg.train_overrides)
        run_dir = out / "runs" / kind
        key = _key(split / "train.jsonl", train_cfg.__dict__)
        if _fresh(run_dir, key):
            say(f"   {kind}: unchanged, reusing {run_dir}")
        else:
            summary = train(split / "train.jsonl", run_dir, train_cfg, overwrite=True)
            _stamp(run_dir, key)
            say(f"   {describe(summary)}")
        runs[kind] = run_dir
    done()

    done = stage("4/7 export to ONNX through Optimum (fp32 + int8), validated")
    artifacts = {}
    for kind, run_dir in runs.items():
        art = out / "artifacts" / kind
        key = _key(run_dir / "model.safetensors", run_dir / "population.npz", "fp32,int8")
        if _fresh(art, key):
            say(f"   {kind}: unchanged, reusing {art}")
        else:
            manifest = export_run(run_dir, art, ["fp32", "int8"], validation_data=str(split / "heldout.jsonl"),
                                  overwrite=True, log=lambda m: None)
            _stamp(art, key)
            v = manifest["validation"]
            say(f"   {kind}: fp32 vs torch {v['fp32_vs_torch_max_abs_diff']:.1e}, int8 cosine "
                f"{v['int8']['mean_cosine']:.4f}, int8 {manifest['sizes_bytes']['model_int8.onnx'] / 1e6:.0f} MB")
        artifacts[kind] = art
    done()

    done = stage("5/7 evaluate held-out workers (adapted from m of their own choices, int8 runtime)")
    results = {}
    for kind, art in artifacts.items():
        path = out / f"eval_{kind}.json"
        key = _key(art / "rfm.json", split / "heldout.jsonl", list(cfg.shots), cfg.repeats, cfg.seed)
        if _fresh(path, key):
            results[kind] = json.loads(path.read_text())
        else:
            results[kind] = evaluate(art, split / "heldout.jsonl", cfg.shots, cfg.repeats, cfg.seed,
                                     threads=cfg.threads, device="cpu")
            with atomic_open(path) as handle:
                json.dump(results[kind], handle, indent=1)
            _stamp(path, key)
    table = accuracy_table(results, cfg.shots)
    say(table)
    plot_path = out / "accuracy_vs_shots.png"
    plot_accuracy(results, plot_path)
    done()

    done = stage("6/7 personalise one held-out worker and rerank summaries")
    personal = personalise_one(artifacts["rfm"], load_pairs(split / "heldout.jsonl"), load_pairs(data),
                               cfg.adapt_shots, out / "user_store", cfg.seed, say)
    done()

    latency = None
    if cfg.bench:
        done = stage("7/7 latency on this machine (int8, CPU)")
        latency = quick_latency(artifacts["rfm"], cfg.threads, out / "user_store", say)
        done()

    summary = {"output": str(out), "pairs": len(pairs), "training_raters": len(split_report.train_users),
               "heldout_users": len(split_report.heldout_users),
               "heldout_accuracy": {k: {m: r["heldout"]["shots"][m]["accuracy"] for m in r["heldout"]["shots"]}
                                    for k, r in results.items()},
               "personalised_example": personal, "latency": latency, "stage_seconds": timings,
               "total_seconds": round(time.perf_counter() - started, 1), "plot": str(plot_path),
               "artifacts": {k: str(v) for k, v in artifacts.items()}}
    with atomic_open(out / "summary.json") as handle:
        json.dump(summary, handle, indent=1)
    return summary


def accuracy_table(results: dict, shots) -> str:
    head = "   held-out accuracy   " + "  ".join(f"m={m:<4}" for m in shots)
    lines = [head]
    for kind, result in results.items():
        row = result["heldout"]["shots"]
        lines.append(f"   {kind:<19} " + "  ".join(f"{row[str(m)]['accuracy']:.3f} " for m in shots))
    users = next(iter(results.values()))["heldout"]["shots"]
    lines.append("   users               " + "  ".join(f"{users[str(m)]['users']:<5} " for m in shots))
    return "\n".join(lines)


def plot_accuracy(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, result in results.items():
        shots = sorted(result["heldout"]["shots"], key=int)
        acc = [result["heldout"]["shots"][m]["accuracy"] for m in shots]
        lo = [result["heldout"]["shots"][m]["ci95"][0] for m in shots]
        hi = [result["heldout"]["shots"][m]["ci95"][1] for m in shots]
        xs = [int(m) for m in shots]
        ax.plot(xs, acc, marker="o", label=kind)
        ax.fill_between(xs, lo, hi, alpha=0.15)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("choices used to adapt (m)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("TL;DR held-out workers")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def personalise_one(artifact: Path, heldout, all_pairs, shots: int, store: Path, seed: int, say) -> dict:
    """Adapt the held-out worker with most pairs from `shots` choices; rerank a post's summaries."""
    from rfm.runtime import RewardModel

    by_user = defaultdict(list)
    for p in heldout:
        by_user[p.user_id].append(p)
    user = max(sorted(by_user), key=lambda u: len(by_user[u]))
    mine = by_user[user]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(mine))
    adapt_pairs, test_pairs = [mine[i] for i in order[:shots]], [mine[i] for i in order[shots:]]
    summaries = defaultdict(set)
    for p in all_pairs:
        summaries[p.prompt].update((p.chosen, p.rejected))
    post = max(test_pairs, key=lambda p: (len(summaries[p.prompt]), p.prompt))
    candidates = sorted(summaries[post.prompt])
    model = RewardModel.load(artifact, device="cpu", store=store)
    model.store.delete(user)
    before = model.rerank(user, post.prompt, candidates)
    model.adapt(user, [(p.prompt, p.chosen, p.rejected) for p in adapt_pairs], replace=True)
    after = model.rerank(user, post.prompt, candidates)
    title = post.prompt.split("\n", 1)[0][:90]
    prior_w, personal_w = model.population["mean"], model.weights(user)
    say(f"   worker {user[:12]}…: adapted from {len(adapt_pairs)} of their {len(mine)} choices; "
        f"|w - prior mean| = {np.linalg.norm(personal_w - prior_w):.3f} (|prior mean| = {np.linalg.norm(prior_w):.3f})")
    if np.linalg.norm(personal_w - prior_w) < 1e-3 * max(1.0, float(np.linalg.norm(prior_w))):
        say("   note: the prior says these users do not differ (the training raters' weights came out alike and "
            "their validation pairs chose no extra width), so ten choices barely move w: on this data, "
            "one reward fits everyone about as well")
    say(f"   post: {title!r}: {len(candidates)} candidate summaries (* = the one this worker chose over another)")
    say(f"   {'population prior':<44} | personalised")
    for b, a in zip(before, after, strict=True):
        mark_b, mark_a = ("*" if b.text == post.chosen else " "), ("*" if a.text == post.chosen else " ")
        say(f"   {b.score:+7.3f}{mark_b}{b.text.strip()[:35]:<36} | {a.score:+7.3f}{mark_a}{a.text.strip()[:35]}")
    return {"user": user, "adapted_on": len(adapt_pairs), "post_title": title, "candidates": len(candidates),
            "worker_choice": post.chosen, "top_before": before[0].text, "top_after": after[0].text}


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
