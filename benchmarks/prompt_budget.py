"""A prompt token budget (`rfm train --prompt-budget N`): what it costs in accuracy, what it saves in rerank time.

The budget is part of a model's encoding: the RFM is trained, exported and run keeping each prompt's
first N tokens (the response keeps its tokens), so features are consistent everywhere. Here the TL;DR
RFM (real raters, long posts: median ~340 prompt tokens) is trained with 3 seeds without a budget
and with each budget, exported (int8, this round's default quantisation) and measured:

- accuracy as in benchmarks/personalization.py: held-out workers adapted from m of their choices,
  scored on pairs with responses they never judged (same users at every m, 3 draws), and the seen
  raters' test pairs under their trained weights; paired (the same pairs for every budget);
- what cutting prompts only at run time (a model trained on full prompts) does to its features;
- rerank latency (int8, --threads): 8 candidates whose pairs are 256 tokens without a budget (prompt
  ~3/4, as issue 14's target), and 8 real TL;DR summaries for one real held-out post.

    .venv/bin/python benchmarks/prompt_budget.py [--budgets 32,64] [--seeds 0,1,2] [--threads 2]

Writes benchmarks/results/prompt_budget.{json,md}. Trained models are cached under benchmarks/work/.
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
from personalization import SHOTS_REAL, _split, evaluate_artifact, train_and_export  # noqa: E402
from rfm.runtime import FeatureExtractor, RewardModel, load_artifact  # noqa: E402

from rfm.bench import machine, texts_of_length  # noqa: E402
from rfm.data.convert import ConvertReport, convert  # noqa: E402
from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402
from rfm.pipeline import cached_json  # noqa: E402


def rerank_ms(art: Path, prompt: str, candidates: list[str], threads: int, repeats: int = 15) -> float:
    with tempfile.TemporaryDirectory() as store:
        model = RewardModel.load(art, device="cpu", precision="int8", threads=threads, store=store)
        for _ in range(3):
            model.rerank("bench", prompt, candidates)
        samples = []
        for _ in range(repeats):
            t = time.perf_counter()
            model.rerank("bench", prompt, candidates)
            samples.append(time.perf_counter() - t)
    return round(float(np.median(samples)) * 1e3, 1)


def runtime_only_cut(art: Path, pairs: list, budgets: list[int], threads: int) -> dict:
    """What cutting prompts only at run time does to a model trained on full prompts: a copy of the artifact whose
    manifest claims a budget it was not trained with; feature cosine and decisions under the population w."""
    import shutil

    def phi(folder: Path) -> tuple[np.ndarray, np.ndarray]:
        ex = FeatureExtractor(load_artifact(folder), device="cpu", precision="int8", threads=threads)
        prompts = [p.prompt for p in pairs]
        return ex(prompts, [p.chosen for p in pairs]), ex(prompts, [p.rejected for p in pairs])

    w = load_artifact(art).population()["mean"]
    full_a, full_b = phi(art)
    full = (full_a - full_b) @ w
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            copy = Path(tmp) / str(budget)
            shutil.copytree(art, copy)
            manifest = json.loads((copy / "rfm.json").read_text())
            manifest["truncation"]["prompt_budget"] = budget
            (copy / "rfm.json").write_text(json.dumps(manifest))
            a, b = phi(copy)
            cosine = np.sum(a * full_a, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(full_a, axis=1)
            out[str(budget)] = {"mean_cosine": round(float(cosine.mean()), 4),
                                "decisions_unchanged": round(float(np.mean(np.sign((a - b) @ w) == np.sign(full))), 4)}
    return out


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--budgets", default="32,64")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work, data = Path(args.work), Path(args.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    tldr = work / "tldr.jsonl"
    write_pairs(tldr, convert("tldr", [data / "tldr" / "batch13.jsonl", data / "tldr" / "batch18.jsonl"],
                              ConvertReport()))
    split = _split(tldr, work / "split_tldr")
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets: list[int | None] = [None, *(int(b) for b in args.budgets.split(","))]

    heldout = load_pairs(split / "heldout.jsonl")
    post = max((p for p in heldout), key=lambda p: len(p.prompt))
    summaries = list(dict.fromkeys(s for p in heldout for s in (p.chosen, p.rejected)))[:8]
    started = time.perf_counter()
    result: dict = {"command": "python benchmarks/prompt_budget.py", "machine": machine(), "threads": args.threads,
                    "seeds": seeds, "shots": list(SHOTS_REAL), "budgets": {}}
    synthetic = None
    for budget in budgets:
        name = "none" if budget is None else str(budget)
        rows = []
        for seed in seeds:
            folder = work / "models" / "tldr-budget" / name / f"rfm-s{seed}"
            options = {"kind": "rfm", **({"prompt_budget": budget} if budget else {})}
            art, _ = train_and_export(split, folder, options, seed)
            row = cached_json(folder / "result.json", [art / "rfm.json", split / "heldout.jsonl", list(SHOTS_REAL)],
                              lambda art=art, seed=seed: evaluate_artifact(art, split, "int8", seed, SHOTS_REAL))
            rows.append(row)
            print(f"[{time.perf_counter() - started:5.0f}s] budget {name} seed {seed}: new responses "
                  + " ".join(f"m={m}:{row['new_responses']['shots'][str(m)]['accuracy']:.3f}" for m in SHOTS_REAL)
                  + f", seen {row['seen']['accuracy']:.3f}", flush=True)
        art = work / "models" / "tldr-budget" / name / f"rfm-s{seeds[0]}" / "artifact"
        tokenizer = FeatureExtractor(load_artifact(art), device="cpu", precision="int8").tokenizer
        if synthetic is None:  # 8 pairs of 256 tokens without a budget, prompt ~3/4 of them
            prompts, responses = texts_of_length(tokenizer, 8, 256)
            synthetic = (prompts[0], responses)
        tokens = [len(e.ids) for e in tokenizer.encode_candidates(*synthetic)]
        result["budgets"][name] = {
            "new_responses": {str(m): float(np.mean([r["new_responses"]["shots"][str(m)]["accuracy"] for r in rows]))
                              for m in SHOTS_REAL},
            "new_responses_per_seed": [{m: r["new_responses"]["shots"][str(m)]["accuracy"] for m in map(str, SHOTS_REAL)}
                                       for r in rows],
            "users": rows[0]["new_responses"]["users"],
            "seen": float(np.mean([r["seen"]["accuracy"] for r in rows])),
            "seen_pairs": rows[0]["seen"].get("pairs"),
            "rerank_8x256_ms": rerank_ms(art, synthetic[0], synthetic[1], args.threads),
            "rerank_8x256_tokens": max(tokens),
            "rerank_tldr_8_ms": rerank_ms(art, post.prompt, summaries, args.threads),
        }
    cut = [b for b in budgets if b is not None]
    result["runtime_only_cut"] = runtime_only_cut(work / "models" / "tldr-budget" / "none" / f"rfm-s{seeds[0]}" /
                                                  "artifact", heldout, cut, args.threads)
    out = Path(args.out)
    (out / "prompt_budget.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    lines = ["# Prompt token budget: accuracy and rerank latency (TL;DR RFM)", "",
             f"Command: `{result['command']}`; {m['cpu']} ({m['cores']} cores, {' '.join(m['isa'])}), int8, "
             f"{args.threads} threads; mean of {len(seeds)} training seeds; held-out workers, new responses, same "
             "users at every m.", "",
             "| budget | " + " | ".join(f"m = {s}" for s in SHOTS_REAL) + " | seen raters | rerank 8 x 256: tokens | "
             "ms p50 | rerank 8 TL;DR summaries, ms p50 |",
             "|---|" + "---:|" * (len(SHOTS_REAL) + 4)]
    for name, row in result["budgets"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row['new_responses'][str(s)]:.3f}" for s in SHOTS_REAL)
                     + f" | {row['seen']:.3f} | {row['rerank_8x256_tokens']} | {row['rerank_8x256_ms']:.0f} | "
                     f"{row['rerank_tldr_8_ms']:.0f} |")
    first = next(iter(result["budgets"].values()))
    lines += ["", f"{first['users']} held-out workers; {first['seen_pairs']} seen-rater test pairs.", "",
              "Cutting prompts only at run time, the seed-0 model trained on full prompts, held-out pairs:", "",
              "| run-time cut | mean feature cosine | decisions unchanged (population w) |", "|---|---:|---:|"]
    lines += [f"| {b} | {r['mean_cosine']:.3f} | {r['decisions_unchanged']:.1%} |"
              for b, r in result["runtime_only_cut"].items()]
    lines.append("")
    (out / "prompt_budget.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
