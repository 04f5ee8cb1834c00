"""Which batch size should the runtime use on a CPU? Rows per onnxruntime call, int8, 2 threads.

    .venv/bin/python benchmarks/cpu_batch.py [--artifact ART] [--rounds 3]    # ~3 min on a 2-core CPU

Writes benchmarks/results/cpu_batch.{json,md}.

For each batch size (and the runtime's CPU default: one row per call, the rows run as concurrent calls
of a one-thread session, one stream per thread), interleaved over rounds (so a busy moment hits every size alike): the time to
compute features of 128 real (prompt, response) pairs (UltraFeedback, as `rfm eval` meets them:
sorted by length, then cut into batches) and a rerank of 8 candidates x 256 tokens through
`RewardModel` (p50 of 7 calls), and 128 synthetic pairs of 32 and of 128 tokens (does a call's fixed cost
make one row per call dear for short texts?). Also how far a text's int8 features move with the company it is
computed in (the graph quantises each batch's activations on that batch's range): the relative
difference between each text's features computed alone and in the batches of that size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_args import add_artifact_options, benchmark_parser  # noqa: E402
from report import host, markdown_table, write_results  # noqa: E402
from rfm.runtime import FeatureExtractor, RewardModel, load_artifact  # noqa: E402

from rfm.bench import machine, texts_of_length  # noqa: E402
from rfm.data.convert import ConvertReport, convert  # noqa: E402

SIZES = (1, 2, 4, 8, 16, 32)
DEFAULT = "1, concurrent streams (default)"
SHORT_LENGTHS = (32, 128)  # synthetic pairs of this many tokens: does one row per call cost short texts?


def real_texts(data_dir: Path, n: int = 128) -> tuple[list[str], list[str]]:
    """The first n distinct (prompt, response) texts of the UltraFeedback pairs."""
    seen: dict[tuple[str, str], None] = {}
    for pair in convert("ultrafeedback", [data_dir / "ultrafeedback" / "train.jsonl"], ConvertReport()):
        for response in (pair.chosen, pair.rejected):
            seen.setdefault((pair.prompt, response))
        if len(seen) >= n:
            break
    texts = list(seen)[:n]
    return [p for p, _ in texts], [r for _, r in texts]


def main() -> None:
    parser = benchmark_parser(__doc__, seeds=False)
    add_artifact_options(parser)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    artifact = load_artifact(args.artifact)
    prompts, responses = real_texts(Path(args.data_dir))
    modes = [DEFAULT, *SIZES]
    extractors = {b: FeatureExtractor(artifact, device="cpu", precision="int8", threads=args.threads,
                                      batch_size=None if b == DEFAULT else b) for b in modes}
    tokens = float(np.mean([len(e) for e in extractors[1].tokenizer.encode(prompts, responses)]))
    p8, r8 = texts_of_length(extractors[1].tokenizer, 8, 256)
    alone = extractors[1](prompts, responses).astype(np.float64)
    short = {n: texts_of_length(extractors[1].tokenizer, 128, n) for n in SHORT_LENGTHS}
    timings: dict = {b: {"texts_ms": [], "rerank_ms": [], **{f"short{n}_ms": [] for n in SHORT_LENGTHS}} for b in modes}
    with tempfile.TemporaryDirectory() as store:
        models = {}
        for b in modes:
            models[b] = RewardModel.load(args.artifact, device="cpu", precision="int8", threads=args.threads, store=store)
            models[b].extractor = extractors[b]
        for _ in range(args.rounds):
            for b in modes:
                t = time.perf_counter()
                extractors[b](prompts, responses)
                timings[b]["texts_ms"].append((time.perf_counter() - t) * 1e3)
                for n, (sp, sr) in short.items():
                    t = time.perf_counter()
                    extractors[b](sp, sr)
                    timings[b][f"short{n}_ms"].append((time.perf_counter() - t) * 1e3)
                for _ in range(2):
                    models[b].rerank("bench", p8[0], r8)
                calls = []
                for _ in range(7):
                    t = time.perf_counter()
                    models[b].rerank("bench", p8[0], r8)
                    calls.append((time.perf_counter() - t) * 1e3)
                timings[b]["rerank_ms"].append(float(np.median(calls)))
    rows, result = [], {"command": "python benchmarks/cpu_batch.py", "machine": machine(), "threads": args.threads,
                        "artifact": args.artifact, "texts": len(prompts), "mean_tokens": round(tokens, 1), "sizes": {}}
    order_rng = np.random.default_rng(0)
    perms = [order_rng.permutation(8) for _ in range(8)]
    for b in modes:
        # 16 rerankings of 8 real responses under one prompt: does the best candidate depend on their order?
        changed = 0
        for g in range(len(prompts) // 8):
            group = responses[8 * g : 8 * g + 8]
            best = {models[b].rerank("bench", prompts[8 * g], [group[i] for i in perm], top_k=1)[0].text
                    for perm in perms}
            changed += len(best) > 1
        batched = extractors[b](prompts, responses).astype(np.float64)
        moved = np.linalg.norm(batched - alone, axis=1) / np.linalg.norm(alone, axis=1)
        entry = {**{k: [round(v, 1) for v in vals] for k, vals in timings[b].items()},
                 "features_moved_median": round(float(np.median(moved)), 4), "features_moved_max": round(float(moved.max()), 4),
                 "rerank_best_depends_on_order": changed, "rerank_sets": len(prompts) // 8}
        result["sizes"][str(b)] = entry
        rows.append([str(b), " / ".join(f"{v:.0f}" for v in entry["texts_ms"]),
                     f"{min(entry['texts_ms']) / len(prompts):.1f}",
                     *(f"{min(entry[f'short{n}_ms']) / 128:.2f}" for n in SHORT_LENGTHS),
                     " / ".join(f"{v:.0f}" for v in entry["rerank_ms"]),
                     f"{entry['features_moved_median']:.1%} / {entry['features_moved_max']:.1%}",
                     f"{changed} of {len(prompts) // 8}"])
    lines = ["# Rows per onnxruntime call on a CPU (int8)", "",
             f"Command: `{result['command']}`; {host(result['machine'], args.threads)}; artifact `{args.artifact}`; {len(prompts)} real UltraFeedback texts, "
             f"{tokens:.0f} tokens each on average; {args.rounds} interleaved rounds.", "",
             *markdown_table(["batch size", "128 texts, ms per round", "best ms per text",
                              *(f"best ms per text, 128 of {n} tokens" for n in SHORT_LENGTHS),
                              "rerank 8 x 256 p50, ms per round",
                              "features moved vs alone (median / max)",
                              "rerank sets whose best candidate changes with their order"], rows), "",
             "Order check: 16 sets of 8 real responses under one prompt each, reranked in 8 seeded orders by the "
             "population reward (`RewardModel.rerank`, top 1).", ""]
    write_results(Path(args.out), "cpu_batch", result, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
