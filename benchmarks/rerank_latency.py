"""The CPU rows of the runtime-speed targets, side by side in one run (issue 14):

- tokenise + pad 32 x 256 (rfm's caches vs the tokenizers library alone), on the synthetic texts
  and on real TL;DR posts the tokeniser has not seen (after other posts, and from a cold cache);
- rerank of 8 candidates x 256 tokens (int8, --threads), with the prompt tokenised once vs per candidate,
  and (--budget-artifact) by a model trained with a prompt token budget on the same texts;
- the wrapper over a bare `session.run` (int8, 8 x 128);
- rfm int8 end to end vs PyTorch fp32 end to end (HF tokenizer + eager model, as sentence-transformers
  would run it) on the same 8 x 256 batch, and model-only.

    .venv/bin/python benchmarks/rerank_latency.py [--artifact ART] [--run RUN] [--budget-artifact ART] [--threads 2]

Writes benchmarks/results/rerank_latency.{json,md}. Each figure is the median of repeated calls after
warm-up; p90/p50 says whether the machine was quiet.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime import FeatureExtractor, PairTokenizer, RewardModel, load_artifact  # noqa: E402

from rfm.bench import machine, texts_of_length  # noqa: E402
from rfm.data.convert import ConvertReport, convert  # noqa: E402


def timed(call, repeats: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3)}


def timed_batches(call, batches: list, before=None) -> dict:
    """Each call on a different batch (texts the tokeniser has not seen since `before` ran, untimed)."""
    samples = []
    for batch in batches:
        if before is not None:
            before()
        t = time.perf_counter()
        call(batch)
        samples.append(time.perf_counter() - t)
    ms = np.asarray(samples) * 1e3
    return {"p50_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "calls": len(samples)}


def tldr_batches(data_dir: Path, size: int = 32) -> tuple[list, list]:
    """Real (post, summary) pairs as `rfm data convert --format tldr` makes them, one per distinct post,
    shuffled: (warm-up batches, timed batches)."""
    posts: dict[str, str] = {}
    for pair in convert("tldr", sorted((data_dir / "tldr").glob("*.jsonl")), ConvertReport()):
        posts.setdefault(pair.prompt, pair.chosen)
    pairs = list(posts.items())
    np.random.default_rng(0).shuffle(pairs)
    batches = [pairs[i : i + size] for i in range(0, len(pairs) - size + 1, size)]
    half = len(batches) // 2
    return batches[:half], batches[half:]


def tokenizer_rows(tok: PairTokenizer, library: PairTokenizer, data_dir: Path, repeats: int) -> dict:
    """Tokenise + pad 32 pairs: rfm's cache-based path vs the tokenizers library alone, synthetic and real text."""
    rows: dict = {}
    prompts, responses = texts_of_length(tok, 32, 256)
    rows["tokenize_pad_32x256"] = timed(lambda: tok(prompts, responses), repeats)
    rows["tokenize_pad_32x256_library"] = timed(lambda: library(prompts, responses), repeats)
    if not (data_dir / "tldr").is_dir():
        return rows
    warm, timed_set = tldr_batches(data_dir)

    def call(use):
        return lambda batch: use([p for p, _ in batch], [r for _, r in batch])

    words = tok.fast_path
    if words is not None:
        words.forget()
        for batch in warm:  # an app that has tokenised other posts before: the cache holds their chunks
            call(tok)(batch)
    rows["tokenize_pad_32_tldr_new_texts"] = timed_batches(call(tok), timed_set)
    if words is not None:
        rows["tokenize_pad_32_tldr_new_texts_cold"] = timed_batches(call(tok), timed_set, before=words.forget)
    rows["tokenize_pad_32_tldr_new_texts_library"] = timed_batches(call(library), timed_set)
    rows["tldr_tokens_per_pair"] = round(float(np.mean([len(e) for b in timed_set for e in
                                                         tok.encode([p for p, _ in b], [r for _, r in b])])), 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default=str(ROOT / "benchmarks" / "work" / "models" / "tldr" / "rfm-s0" / "artifact"))
    parser.add_argument("--run", default=None, help="Run dir for PyTorch (default: the artifact's source run).")
    parser.add_argument("--budget-artifact", default=None,
                        help="An artifact trained with --prompt-budget: its rerank of the same 8 x 256 texts too.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"),
                        help="Holds tldr/: real posts for the tokeniser rows (skipped if absent).")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    artifact = load_artifact(args.artifact)
    int8 = FeatureExtractor(artifact, device="cpu", precision="int8", threads=args.threads)
    tok = int8.tokenizer
    result: dict = {"command": "python benchmarks/rerank_latency.py", "machine": machine(), "threads": args.threads,
                    "artifact": args.artifact}

    library = PairTokenizer.from_file(artifact.root / "tokenizer.json", tok.max_length,
                                      prompt_budget=tok.prompt_budget, use_fast_path=False)
    result.update(tokenizer_rows(tok, library, Path(args.data_dir), args.repeats * 3))

    prompts8, responses8 = texts_of_length(tok, 8, 256)
    prompt = prompts8[0]
    with tempfile.TemporaryDirectory() as store:
        model = RewardModel.load(args.artifact, device="cpu", precision="int8", threads=args.threads, store=store)
        result["rerank_8x256"] = timed(lambda: model.rerank("bench", prompt, responses8), args.repeats)
        result["rerank_8x256_prompt_per_candidate"] = timed(
            lambda: int8([prompt] * len(responses8), responses8), args.repeats)

    budget_tok = None
    if args.budget_artifact:
        budget_art = load_artifact(args.budget_artifact)
        result["prompt_budget"] = budget_art.manifest.truncation.prompt_budget
        with tempfile.TemporaryDirectory() as store:
            fast = RewardModel.load(budget_art.root, device="cpu", precision="int8", threads=args.threads, store=store)
            budget_tok = fast.extractor.tokenizer
            result["prompt_budget_tokens"] = max(len(e.ids) for e in budget_tok.encode_candidates(prompt, responses8))
            result["rerank_8x256_prompt_budget"] = timed(lambda: fast.rerank("bench", prompt, responses8), args.repeats)

    p128, r128 = texts_of_length(tok, 8, 128)
    batch = tok(p128, r128)
    feeds = {k: batch[k] for k in int8.input_names}
    # like for like: the wrapper's call is one session.run of the same 8 rows (the default CPU batch is smaller)
    whole = FeatureExtractor(artifact, device="cpu", precision="int8", threads=args.threads, batch_size=8)
    result["int8_8x128_wrapper"] = timed(lambda: whole(p128, r128), args.repeats)
    result["int8_8x128_bare_run"] = timed(lambda: whole.session.run(["features"], feeds), args.repeats)
    result["cpu_batch_size"] = int8.batch_size

    same = [prompt] * len(responses8)
    result["int8_8x256_end_to_end"] = timed(lambda: int8(same, responses8), args.repeats)
    try:
        import torch
        from rfm.train.rundir import load_run
    except ImportError:
        result["torch"] = "not installed"
    else:
        torch.set_num_threads(args.threads)
        run = args.run or artifact.manifest.export.get("source_run")
        torch_model, hf_tok, config = load_run(run)

        def torch_end_to_end():
            encoded = hf_tok(same, responses8, padding=True, truncation="longest_first",
                             max_length=config.rfm_max_length, return_tensors="pt")
            with torch.inference_mode():
                return torch_model(**encoded)["features"]

        arrays = {k: torch.from_numpy(v) for k, v in tok(same, responses8).items()}

        def torch_model_only():
            with torch.inference_mode():
                return torch_model(**arrays)["features"]

        result["torch_fp32_8x256_end_to_end"] = timed(torch_end_to_end, args.repeats)
        result["torch_fp32_8x256_model_only"] = timed(torch_model_only, args.repeats)
        if budget_tok is not None:  # the same model on the budget's (fewer) tokens: what the budget alone buys
            short = {k: torch.from_numpy(v) for k, v in budget_tok(same, responses8).items()}

            def torch_budget_tokens():
                with torch.inference_mode():
                    return torch_model(**short)["features"]

            result["torch_fp32_budget_tokens_model_only"] = timed(torch_budget_tokens, args.repeats)
        result["torch_version"] = torch.__version__
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rerank_latency.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    rows = [(k, v) for k, v in result.items() if isinstance(v, dict) and "p50_ms" in v]
    lines = ["# CPU latency of the runtime's hot paths (issue 14's CPU rows)", "",
             f"Command: `{result['command']} --artifact {args.artifact}"
             + (f" --budget-artifact {args.budget_artifact}" if args.budget_artifact else "") + "`; "
             f"{m['cpu']} ({m['cores']} cores, {' '.join(m['isa'])}), "
             f"onnxruntime {m['onnxruntime']}, {args.threads} threads, Python {platform.python_version()}"
             + (f", torch {result['torch_version']}" if "torch_version" in result else "") + ".", "",
             "| measure | p50 ms | p90 ms |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} |" for k, v in rows]
    wrapper = result["int8_8x128_wrapper"]["p50_ms"] / result["int8_8x128_bare_run"]["p50_ms"] - 1
    lines += ["", f"- wrapper over bare run, int8 8 x 128: {wrapper:+.1%}"]
    if "tokenize_pad_32_tldr_new_texts" in result:
        lines += [f"- tokenise + pad rows `_tldr_new_texts`: 32 real TL;DR (post, summary) pairs per call, "
                  f"{result['tldr_tokens_per_pair']} tokens per pair after truncation, a different batch each call "
                  f"({result['tokenize_pad_32_tldr_new_texts']['calls']} calls), none seen before; plain: after "
                  f"the other half of the posts went through the tokeniser; `_cold`: its caches emptied "
                  f"(vocabulary only) before each call; `_library`: the tokenizers library alone"]
    if "torch_fp32_8x256_end_to_end" in result:
        e2e = result["torch_fp32_8x256_end_to_end"]["p50_ms"] / result["int8_8x256_end_to_end"]["p50_ms"]
        rr = result["torch_fp32_8x256_end_to_end"]["p50_ms"] / result["rerank_8x256"]["p50_ms"]
        lines += [f"- PyTorch fp32 end to end / rfm int8 end to end, 8 x 256: {e2e:.2f}x",
                  f"- PyTorch fp32 end to end / rfm rerank 8 x 256: {rr:.2f}x"]
        result["ratios"] = {"wrapper_over_bare": wrapper, "torch_e2e_over_int8_e2e": e2e, "torch_e2e_over_rerank": rr}
        if "rerank_8x256_prompt_budget" in result:
            fast_ms = result["rerank_8x256_prompt_budget"]["p50_ms"]
            budget = result["prompt_budget"]
            same_tokens = result["torch_fp32_budget_tokens_model_only"]["p50_ms"] / fast_ms
            lines += [f"- rerank of the same 8 x 256 texts by a model trained with --prompt-budget {budget} "
                      f"({result['prompt_budget_tokens']} tokens per pair): p50 {fast_ms:.0f} ms; PyTorch fp32 end "
                      f"to end at full length / it: {result['torch_fp32_8x256_end_to_end']['p50_ms'] / fast_ms:.2f}x; "
                      f"PyTorch fp32 model only on the same budgeted tokens / it: {same_tokens:.2f}x"]
            result["ratios"]["torch_e2e_over_budget_rerank"] = result["torch_fp32_8x256_end_to_end"]["p50_ms"] / fast_ms
            result["ratios"]["torch_same_tokens_over_budget_rerank"] = same_tokens
        (out / "rerank_latency.json").write_text(json.dumps(result, indent=1))
    (out / "rerank_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
