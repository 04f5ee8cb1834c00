"""Does `rfm rerank` pick the same best candidate whatever order the candidates come in?

    .venv/bin/python benchmarks/rerank_order.py [--artifact ART]    # ~2 min on a 2-core CPU

Writes benchmarks/results/rerank_order.{json,md}.

A dynamic int8 graph quantises each onnxruntime call's activations on that call's range, so rows that
share a call move each other's features. Candidate sets: the first 60 TL;DR posts of the benchmark
data, each with its own summaries and, to make 8, summaries of other posts (seeded). Each set is
reranked by the population reward (the prior mean, what a new user gets) in 8 seeded orders; a set
counts when its best candidate (or its whole ranking) differs between orders.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import add_artifact_options, benchmark_parser, command_line  # noqa: E402
from personalization import prepare_real  # noqa: E402
from report import host, markdown_table, write_results  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402

from rfm.bench import machine  # noqa: E402
from rfm.data.jsonl import load_pairs  # noqa: E402
from rfm.evaluation import user_adapter  # noqa: E402

# label -> (precision, rows per call; None = the runtime's CPU default)
MODES = {"int8, CPU default (one row per call)": ("int8", None), "int8, 4 rows per call (the previous default)": ("int8", 4),
         "int8, 32 rows per call (all 8 in one)": ("int8", 32), "fp32, 4 rows per call": ("fp32", 4)}


def candidate_sets(pairs, n_sets: int = 60, size: int = 8) -> list[tuple[str, list[str]]]:
    """(post, its summaries topped up to `size` with other posts' summaries), for the first posts."""
    by_post: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        by_post[p.prompt].update((p.chosen, p.rejected))
    every = sorted({r for v in by_post.values() for r in v})
    rng = np.random.default_rng(1)
    sets = []
    for post, own in list(by_post.items())[:n_sets]:
        extra = [every[i] for i in rng.choice(len(every), size, replace=False) if every[i] not in own]
        sets.append((post, (sorted(own) + extra)[:size]))
    return sets


def main() -> None:
    parser = benchmark_parser(__doc__, seeds=False)
    add_artifact_options(parser)
    parser.add_argument("--orders", type=int, default=8)
    args = parser.parse_args()
    work = Path(args.work)
    if not (work / "tldr.jsonl").is_file():
        prepare_real(work, Path(args.data_dir), quick=True)
    artifact = load_artifact(args.artifact)
    sets = candidate_sets(load_pairs(work / "tldr.jsonl"))
    w = user_adapter(artifact).fit(np.zeros((0, artifact.features)))
    rng = np.random.default_rng(0)
    orders = [[rng.permutation(len(c)) for _ in range(args.orders)] for _, c in sets]
    result = {"command": command_line("rerank_order.py", parser, args, ("artifact", "orders", "threads")),
              "machine": machine(), "sets": len(sets), "orders": args.orders, "modes": {}}
    rows = []
    for label, (precision, rows_per_call) in MODES.items():
        extractor = FeatureExtractor(artifact, device="cpu", precision=precision, threads=args.threads,
                                     batch_size=rows_per_call)
        best_moves = ranking_moves = 0
        shifts = []
        for (post, candidates), perms in zip(sets, orders, strict=True):
            base = extractor.candidates(post, candidates).astype(np.float64) @ w
            bests, rankings = set(), set()
            for perm in perms:
                scores = np.empty(len(candidates))
                scores[perm] = extractor.candidates(post, [candidates[i] for i in perm]).astype(np.float64) @ w
                bests.add(int(np.argmax(scores)))
                rankings.add(tuple(np.argsort(-scores, kind="stable")))
                shifts.append(float(np.max(np.abs(scores - base)) / (np.std(base) + 1e-12)))
            best_moves += len(bests) > 1
            ranking_moves += len(rankings) > 1
        entry = {"best_changes": best_moves, "ranking_changes": ranking_moves,
                 "score_shift_over_sd_median": round(float(np.median(shifts)), 4),
                 "score_shift_over_sd_max": round(float(np.max(shifts)), 4)}
        result["modes"][label] = entry
        rows.append([label, f"{best_moves} of {len(sets)}", f"{ranking_moves} of {len(sets)}",
                     f"{entry['score_shift_over_sd_median']:.3f} / {entry['score_shift_over_sd_max']:.3f}"])
        print(label, entry, flush=True)
    lines = ["# Does the reranking depend on the candidates' order?", "",
             f"Command: `{result['command']}`; {host(result['machine'], args.threads)}; artifact `{args.artifact}`; "
             f"{len(sets)} sets of 8 TL;DR summaries, each reranked in {args.orders} seeded orders by the population "
             "reward.", "",
             *markdown_table(["features", "sets whose best candidate changes with the order",
                              "sets whose ranking changes", "largest score shift / the set's score sd (median / max)"],
                             rows), ""]
    write_results(Path(args.out), "rerank_order", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
