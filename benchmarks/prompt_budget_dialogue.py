"""Does a prompt token budget cost accuracy on dialogues? The check `--prompt-budget` needs before it
could become the default (benchmarks/prompt_budget.py measured TL;DR only, where it costs nothing).

In HH-RLHF (harmless-base, ../shared/data/hh-rlhf/) the prompt is the dialogue so far and the two
responses differ in the last assistant turn, so what decides a preference is often the *last* human
turn, which a budget keeping the prompt's first N tokens cuts off in multi-turn dialogues. There are no
rater ids, so this is a population check: the one-size Bradley-Terry model (`--baseline`) trained on
80% of the pairs with and without a budget, 3 seeds, exported (int8) and scored on the same 20%.

    .venv/bin/python benchmarks/prompt_budget_dialogue.py [--budgets 32] [--seeds 0,1,2]

Writes benchmarks/results/prompt_budget_dialogue.{json,md}; models are cached under benchmarks/work/hh/.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import benchmark_parser  # noqa: E402
from personalization import train_and_export  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402
from rfm.runtime.tokenize import load_tokenizer_file  # noqa: E402

from rfm.data.convert import ConvertReport, convert  # noqa: E402
from rfm.data.jsonl import load_pairs, write_pairs  # noqa: E402

SOURCE = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def prepare(work: Path) -> Path:
    """HH pairs split 80/20 at random (seed 0) into work/split/{train,heldout}.jsonl, one pseudo-rater."""
    split = work / "split"
    if (split / "heldout.jsonl").is_file():
        return split
    split.mkdir(parents=True, exist_ok=True)
    pairs = [replace(p, user_id="everyone") for p in convert("hh-rlhf", [SOURCE], ConvertReport())
             if not p.extra.get("prompts_differ")]
    order = np.random.default_rng(0).permutation(len(pairs))
    cut = int(0.8 * len(pairs))
    write_pairs(split / "train.jsonl", [pairs[i] for i in order[:cut]])
    write_pairs(split / "heldout.jsonl", [pairs[i] for i in order[cut:]])
    return split


def accuracy(art: Path, pairs: list) -> tuple[float, np.ndarray]:
    """Share of pairs whose chosen response scores higher under the population weights (int8), and each margin."""
    artifact = load_artifact(art)
    extractor = FeatureExtractor(artifact, device="cpu", precision="int8")
    w = artifact.population()["mean"]
    prompts = [p.prompt for p in pairs]
    margin = extractor(prompts, [p.chosen for p in pairs]) @ w - extractor(prompts, [p.rejected for p in pairs]) @ w
    return float(np.mean(margin > 0)), margin


def prompt_facts(pairs: list, budgets: list[int]) -> dict:
    tok = load_tokenizer_file("minilm")
    tok.no_padding()
    tok.no_truncation()
    lengths = np.array([len(e.ids) for e in tok.encode_batch([p.prompt for p in pairs], add_special_tokens=False)])
    turns = np.array([p.prompt.count("Human:") for p in pairs])
    return {"prompt_tokens_median": int(np.median(lengths)), "multi_turn_share": round(float(np.mean(turns > 1)), 3),
            **{f"longer_than_{b}_share": round(float(np.mean(lengths > b)), 3) for b in budgets}}


def main() -> None:
    parser = benchmark_parser(__doc__, data_dir=False, work=ROOT / "benchmarks" / "work" / "hh")
    parser.add_argument("--budgets", default="32")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work)
    split = prepare(work)
    test = load_pairs(split / "heldout.jsonl")
    started = time.time()
    result: dict = {"command": f"python benchmarks/prompt_budget_dialogue.py --budgets {args.budgets} --seeds {args.seeds}",
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "test_pairs": len(test),
                    "train_pairs": len(load_pairs(split / "train.jsonl")), **prompt_facts(test, budgets), "rows": []}
    margins: dict = {}
    for budget in [None, *budgets]:
        for seed in seeds:
            name = f"baseline-b{budget or 'none'}-s{seed}"
            options = {"kind": "baseline", **({"prompt_budget": budget} if budget else {})}
            art, _ = train_and_export(split, work / "models" / name, options, seed)
            acc, margin = accuracy(art, test)
            margins[(budget, seed)] = margin
            result["rows"].append({"budget": budget, "seed": seed, "accuracy": round(acc, 4)})
            print(f"[{time.time() - started:.0f}s] budget {budget}, seed {seed}: {acc:.4f}", flush=True)
    for budget in budgets:  # paired over the same test pairs and seeds
        diffs = [float(np.mean(margins[(budget, s)] > 0) - np.mean(margins[(None, s)] > 0)) for s in seeds]
        result[f"budget_{budget}_minus_none"] = {"mean": round(float(np.mean(diffs)), 4), "per_seed": diffs}
    out = Path(args.out)
    (out / "prompt_budget_dialogue.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "prompt_budget_dialogue.md").write_text(report(result, budgets, seeds))
    print((out / "prompt_budget_dialogue.md").read_text())


def report(r: dict, budgets: list[int], seeds: list[int]) -> str:
    lines = ["# A prompt token budget on dialogues (HH-RLHF harmless-base)", "",
             f"{r['date']}. Command: `{r['command']}`. One-size Bradley-Terry model (`--baseline`), trained on "
             f"{r['train_pairs']} pairs, scored (int8, population weights) on the same {r['test_pairs']} held-out "
             f"pairs for every budget. Held-out prompts: median {r['prompt_tokens_median']} tokens, "
             f"{r['multi_turn_share']:.0%} multi-turn; " + ", ".join(
                 f"{r[f'longer_than_{b}_share']:.0%} longer than {b} tokens" for b in budgets) + ".", "",
             "| `--prompt-budget` | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|" + "---:|" * (len(seeds) + 1)]
    for budget in [None, *budgets]:
        accs = [row["accuracy"] for row in r["rows"] if row["budget"] == budget]
        lines.append(f"| {budget or 'none'} | " + " | ".join(f"{a:.3f}" for a in accs) + f" | {np.mean(accs):.3f} |")
    for budget in budgets:
        d = r[f"budget_{budget}_minus_none"]
        lines += ["", f"Budget {budget} minus none, paired by seed: {100 * d['mean']:+.1f} points "
                      f"({', '.join(f'{100 * x:+.1f}' for x in d['per_seed'])})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
