"""The GPU rows of issue 14, side by side in one run on one CUDA machine:

- parity: CUDA fp16 features vs the CPU fp32 features of the same artifact (`--ref`, made on the CPU
  machine with `--make-ref`): cosine, max abs difference, chosen-vs-rejected decisions under the prior mean;
- per batch x length: rfm end to end (`FeatureExtractor`: tokenise + pad + run; from batch 16 also the
  same call in two halves, the second tokenised while the first runs), tokenise + pad alone, a bare
  `session.run` on padded numpy input, and the graph with its inputs already on the GPU;
- PyTorch fp16, a MiniLM-shaped BERT (random weights: the same compute) with the same pooling of six
  layers and a linear head: model only (inputs on the GPU) and end to end (transformers' fast tokenizer
  built from the artifact's tokenizer.json, padding, copy to the GPU, forward, features back), as
  sentence-transformers runs it;
- a stream of 1,024 pairs: rfm with and without tokenising batch k+1 while batch k runs, and PyTorch end
  to end in batches of 32;
- rerank of 8 candidates x 256 tokens through `RewardModel` on CUDA.

    .venv/bin/python benchmarks/gpu_latency.py --make-ref ART --pairs benchmarks/work/split_tldr/heldout.jsonl
    python3 benchmarks/gpu_latency.py --artifact ART --ref ART/gpuref.npz --out DIR      # on the GPU machine

Writes DIR/gpu_latency.{json,md}; `benchmarks/gpu_latency.sh` runs it on a GPU machine without a package
index. Each figure is the median of calls repeated for >= 1 s after warm-up, with p90.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime import FeatureExtractor, RewardModel, load_artifact  # noqa: E402

from rfm.bench import texts_of_length  # noqa: E402

SHAPES = ((1, 256), (8, 256), (32, 256), (32, 512))
STREAM = 1024


def timed(call: Callable[[], object], min_s: float = 1.0, warmup: int = 5, max_calls: int = 2000) -> dict:
    for _ in range(warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while (time.perf_counter() - started < min_s or len(samples) < 10) and len(samples) < max_calls:
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    ms = np.asarray(samples) * 1e3
    return {
        "p50_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "calls": len(ms),
    }


def make_ref(artifact_dir: str, pairs_path: str, n: int) -> None:
    """CPU fp32 features of n (prompt, chosen) and (prompt, rejected) rows, for the GPU parity check."""
    from rfm.data.jsonl import load_pairs

    pairs = load_pairs(pairs_path)[:n]
    prompts = [p.prompt for p in pairs for _ in (0, 1)]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)]
    extractor = FeatureExtractor(load_artifact(artifact_dir), device="cpu", precision="fp32")
    out = Path(artifact_dir) / "gpuref.npz"
    np.savez_compressed(
        out, prompts=np.array(prompts), responses=np.array(responses), features=extractor(prompts, responses)
    )
    print(f"{out}: {len(responses)} rows")


def parity(extractor: FeatureExtractor, ref_path: str, w: np.ndarray) -> dict:
    ref = np.load(ref_path)
    got = extractor(list(ref["prompts"]), list(ref["responses"])).astype(np.float64)
    want = ref["features"].astype(np.float64)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    margin_got, margin_want = (got @ w)[0::2] - (got @ w)[1::2], (want @ w)[0::2] - (want @ w)[1::2]
    return {
        "rows": len(want),
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
        "max_abs_diff": round(float(np.abs(got - want).max()), 5),
        "decisions_agree": round(float(np.mean(np.sign(margin_got) == np.sign(margin_want))), 4),
    }


def torch_model(max_len: int, dim: int, device: str):
    """A MiniLM-shaped BERT (fp16 on the GPU) with rfm's pooling (masked means of six layers) and a head."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=max(512, max_len),
    )
    dtype = torch.float16 if device == "cuda" else torch.float32
    bert = BertModel(config, add_pooling_layer=False).to(device, dtype).eval()
    head = torch.nn.Linear(6 * 384, dim).to(device, dtype)

    def forward(input_ids, attention_mask, token_type_ids):
        states = bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
        ).hidden_states[1:]
        mask = attention_mask.unsqueeze(-1).to(states[0].dtype)
        pooled = [(s * mask).sum(1) / mask.sum(1) for s in states]
        return head(torch.cat(pooled, dim=-1))

    return forward


def hf_tokenizer(artifact_dir: Path):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(artifact_dir / "tokenizer.json"))
    tok.pad_token, tok.cls_token, tok.sep_token = "[PAD]", "[CLS]", "[SEP]"
    return tok


def concurrent_reranks(
    art_dir: Path,
    device: str,
    precision: str,
    prompt: str,
    responses: list[str],
    clients: int,
    seconds: float,
    coalesce: bool,
) -> dict:
    """`clients` threads reranking the same 8 candidates through one RewardModel for `seconds`, as a
    service's request threads do, with the extractor's coalescing of waiting batches off or on."""
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory() as store:
        model = RewardModel.load(art_dir, device=device, precision=precision, store=store)
        if coalesce:
            model.extractor.coalesce()
        for _ in range(5):
            model.rerank("warm-up", prompt, responses)
        stop = time.perf_counter() + seconds

        def client(i: int) -> list[float]:
            latencies = []
            while time.perf_counter() < stop:
                t = time.perf_counter()
                model.rerank(f"user{i}", prompt, responses)
                latencies.append(time.perf_counter() - t)
            return latencies

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = np.concatenate([np.asarray(x) for x in pool.map(client, range(clients))]) * 1e3
        elapsed = time.perf_counter() - started
        runner = model.extractor._coalescer
        return {
            "clients": clients,
            "coalesce": coalesce,
            "reranks_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.median(latencies)), 3),
            "p90_ms": round(float(np.percentile(latencies, 90)), 3),
            "rows_per_session_call": round(8 * runner.batches / max(runner.calls, 1), 1) if runner else 8.0,
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artifact")
    parser.add_argument("--ref", default=None, help="gpuref.npz from --make-ref (CPU fp32 features).")
    parser.add_argument("--make-ref", default=None, metavar="ART", help="Write ART/gpuref.npz here and stop.")
    parser.add_argument("--pairs", default=str(ROOT / "benchmarks" / "work" / "split_tldr" / "heldout.jsonl"))
    parser.add_argument("--ref-pairs", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument(
        "--trial", action="store_true", help="Try the script out on the CPU: tiny shapes, no PyTorch."
    )
    args = parser.parse_args()
    if args.make_ref:
        make_ref(args.make_ref, args.pairs, args.ref_pairs)
        return
    import onnxruntime as ort
    import torch

    on_gpu = not args.trial
    shapes, stream_pairs, stream_len, min_s = (
        (((2, 64),), 64, 64, 0.05) if args.trial else (SHAPES, STREAM, 256, 1.0)
    )
    art_dir = Path(args.artifact)
    artifact = load_artifact(art_dir)
    precision = "fp16" if on_gpu else "fp32"
    device = "cuda" if on_gpu else "cpu"
    # max_length 512 for the 32 x 512 row; the parity check runs at the artifact's own max_length
    extractor = FeatureExtractor(artifact, device=device, precision=precision, max_length=512)
    result: dict = {
        "command": "bash benchmarks/gpu_latency.sh (python3 benchmarks/gpu_latency.py --artifact ART --ref REF)",
        "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
        "cpu_cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "precision": precision,
        "torch_precision": "fp16" if on_gpu else "fp32",
        "artifact_max_length": artifact.max_length,
        "pipelined": extractor.pipelined,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        import transformers

        result["transformers"] = transformers.__version__
    except ImportError:
        pass
    print(json.dumps(result), flush=True)
    w = artifact.population()["mean"]
    if args.ref:
        result["parity"] = parity(FeatureExtractor(artifact, device=device, precision=precision), args.ref, w)
        print("parity", result["parity"], flush=True)

    forward = torch_model(512, artifact.features, device)
    hf = hf_tokenizer(art_dir)
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    session, names, tok = extractor.session, extractor.input_names, extractor.tokenizer

    rows = []
    for batch, seq_len in shapes:
        prompts, responses = texts_of_length(tok, batch, seq_len)
        arrays = tok(prompts, responses)
        feeds = {k: arrays[k] for k in names}
        row: dict = {"batch": batch, "seq_len": seq_len, "tokens": int(arrays["attention_mask"].sum(1).max())}
        row["rfm_e2e"] = timed(lambda p=prompts, r=responses: extractor(p, r), min_s)
        if batch >= 16:  # one call in two halves: the second half is tokenised while the first runs
            whole, extractor.batch_size = extractor.batch_size, batch // 2
            row["rfm_e2e_halves"] = timed(lambda p=prompts, r=responses: extractor(p, r), min_s)
            extractor.batch_size = whole
        row["tokenize_pad"] = timed(lambda p=prompts, r=responses: tok(p, r), min_s)
        row["bare_run"] = timed(lambda f=feeds: extractor.run_batch(f), min_s)
        binding = session.io_binding()
        for name in names:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arrays[name], device, 0))
        binding.bind_output("features", device)

        def graph_only(b=binding):
            session.run_with_iobinding(b)
            b.synchronize_outputs()

        row["graph_inputs_on_gpu"] = timed(graph_only, min_s)
        tensors = {k: torch.from_numpy(arrays[k]).to(device) for k in names}

        def torch_only(t=tensors):
            with torch.inference_mode():
                forward(**t)
            sync()

        def torch_e2e(p=prompts, r=responses, n=seq_len):
            enc = hf(
                p,
                r,
                padding=True,
                truncation="longest_first",
                return_token_type_ids=True,
                max_length=n,
                return_tensors="pt",
            )
            with torch.inference_mode():
                out = forward(**{k: enc[k].to(device, non_blocking=True) for k in names})
            return out.float().cpu().numpy()

        row["torch_model_only"] = timed(torch_only, min_s)
        row["torch_e2e"] = timed(torch_e2e, min_s)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result["shapes"] = rows

    prompts, responses = texts_of_length(tok, 64, stream_len, seed=7)
    prompts, responses = prompts * (stream_pairs // 64), responses * (stream_pairs // 64)
    stream: dict = {"pairs": stream_pairs, "seq_len": stream_len}
    for label, batch_size, pipelined in (
        ("rfm_overlapped_b32", 32, True),
        ("rfm_sequential_b32", 32, False),
        ("rfm_overlapped_b128", 128, True),
    ):
        extractor.batch_size, extractor.pipelined = batch_size, pipelined
        stream[label] = timed(lambda: extractor(prompts, responses), min_s=3 * min_s, warmup=2)
    extractor.batch_size, extractor.pipelined = 32, on_gpu
    padded = [tok(prompts[i : i + 32], responses[i : i + 32]) for i in range(0, stream_pairs, 32)]
    stream["tokenize_pad_all_b32"] = timed(
        lambda: [tok(prompts[i : i + 32], responses[i : i + 32]) for i in range(0, stream_pairs, 32)],
        min_s=3 * min_s,
        warmup=2,
    )
    stream["bare_runs_b32"] = timed(
        lambda: [extractor.run_batch({k: b[k] for k in names}) for b in padded], min_s=3 * min_s, warmup=2
    )

    def torch_stream():
        for i in range(0, stream_pairs, 32):
            enc = hf(
                prompts[i : i + 32],
                responses[i : i + 32],
                return_token_type_ids=True,
                padding=True,
                truncation="longest_first",
                max_length=stream_len,
                return_tensors="pt",
            )
            with torch.inference_mode():
                forward(**{k: enc[k].to(device, non_blocking=True) for k in names}).float().cpu()

    stream["torch_e2e_b32"] = timed(torch_stream, min_s=3 * min_s, warmup=2)
    result["stream"] = stream
    print(json.dumps(stream), flush=True)

    prompts8, responses8 = texts_of_length(tok, 8, stream_len)
    with tempfile.TemporaryDirectory() as store:
        model = RewardModel.load(art_dir, device=device, precision=precision, store=store)
        result["rerank_8x256"] = {
            "device": model.extractor.device,
            "precision": model.extractor.precision,
            **timed(lambda: model.rerank("bench", prompts8[0], responses8), min_s),
        }
    print("rerank", result["rerank_8x256"], flush=True)
    result["concurrent"] = [
        concurrent_reranks(art_dir, device, precision, prompts8[0], responses8, clients, 2 * min_s, coalesce)
        for clients in (1, 4, 16)
        for coalesce in (False, True)
    ]
    print("concurrent", result["concurrent"], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "gpu_latency.md").write_text(report(result))
    print((out / "gpu_latency.md").read_text())


def report(r: dict) -> str:
    p50 = lambda cell: cell["p50_ms"] if cell else float("nan")  # noqa: E731
    lines = [
        f"# rfm on {r['gpu'] or 'CPU (trial run)'}: GPU latency (issue 14)",
        "",
        f"{r['date']}; onnxruntime {r['onnxruntime']}, torch {r['torch']}, transformers "
        f"{r.get('transformers', '-')}, {r['cpu_cores']} CPU cores; rfm {r['precision']}, "
        f"artifact max_length {r['artifact_max_length']}. Command: `{r['command']}`. p50 ms (p90 in the JSON).",
        "",
    ]
    if "parity" in r:
        p = r["parity"]
        lines += [
            f"Parity, {'CUDA' if r['gpu'] else 'CPU'} {r['precision']} vs CPU fp32, {p['rows']} real TL;DR rows: min cosine "
            f"{p['min_cosine']}, max abs diff {p['max_abs_diff']}, chosen-vs-rejected decisions agree "
            f"{p['decisions_agree']:.1%}.",
            "",
        ]
    lines += [
        "| batch x tokens | rfm end to end | tokenise + pad | bare run (numpy in) | graph, inputs on GPU "
        f"| rfm / bare | PyTorch {r['torch_precision']} model only | PyTorch {r['torch_precision']} end to end "
        "| PyTorch e2e / rfm e2e | rfm in two overlapped halves | halves / bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["shapes"]:
        e2e, bare = p50(row["rfm_e2e"]), p50(row["bare_run"])
        torch_e2e = p50(row.get("torch_e2e"))
        lines.append(
            f"| {row['batch']} x {row['seq_len']} | {e2e:.2f} | {p50(row['tokenize_pad']):.2f} | {bare:.2f} | "
            f"{p50(row.get('graph_inputs_on_gpu')):.2f} | {e2e / bare:.2f}x | "
            f"{p50(row.get('torch_model_only')):.2f} | {torch_e2e:.2f} | {torch_e2e / e2e:.2f}x | "
            + (f"{p50(row['rfm_e2e_halves']):.2f} | {p50(row['rfm_e2e_halves']) / bare:.2f}x |"
               if row.get("rfm_e2e_halves") else "- | - |")
        )
    s = r["stream"]
    lines += [
        "",
        f"Stream of {s['pairs']} pairs x {s['seq_len']} tokens (ms for all of them):",
        "",
        "| rfm, overlapped, batch 32 | rfm, sequential, batch 32 | rfm, overlapped, batch 128 "
        f"| tokenise + pad alone | bare runs alone | PyTorch {r['torch_precision']} e2e, batch 32 |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {p50(s['rfm_overlapped_b32']):.1f} | {p50(s['rfm_sequential_b32']):.1f} | "
        f"{p50(s['rfm_overlapped_b128']):.1f} | {p50(s['tokenize_pad_all_b32']):.1f} | "
        f"{p50(s['bare_runs_b32']):.1f} | {p50(s.get('torch_e2e_b32')):.1f} |",
        "",
    ]
    rr = r["rerank_8x256"]
    lines += [
        f"Rerank of 8 candidates x 256 tokens through RewardModel ({rr['device']} {rr['precision']}): "
        f"p50 {rr['p50_ms']:.2f} ms.",
        "",
    ]
    lines += [
        "Concurrent reranks of 8 x 256 through one RewardModel (threads, as a service's requests):",
        "",
        "| clients | coalescing | reranks/s | p50 ms | p90 ms | rows per session call |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for c in r["concurrent"]:
        lines.append(
            f"| {c['clients']} | {'on' if c['coalesce'] else 'off'} | {c['reranks_per_s']} | {c['p50_ms']:.2f} "
            f"| {c['p90_ms']:.2f} | {c['rows_per_session_call']} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
