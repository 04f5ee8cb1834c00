"""`rfm bench`: latency and throughput of the runtime across devices, precisions, batch sizes, lengths.

Timings use time.perf_counter around whole calls after warm-up; percentiles over repeats. The grid
feeds text that tokenises to exactly `seq_len` tokens (past the artifact's max_length if asked, so
the graph itself is timed at that length). Comparisons in the same run: a bare
`InferenceSession.run` on pre-tokenised arrays (the floor under our wrapper), PyTorch eager fp32 of
the same run dir (`--compare torch`, needs the [train] extra), scikit-learn for the adapter.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rfm.adapt import MAPLogisticRegression
from rfm.errors import UsageError
from rfm.runtime.artifact import Artifact, load_artifact
from rfm.runtime.features import FeatureExtractor
from rfm.runtime.session import cuda_available
from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file

WORDS = ["the", "model", "reads", "each", "answer", "and", "the", "person", "picks", "one", "they", "like", "more", "than", "the", "other", "because", "it", "is", "clear", "short", "kind", "and", "right", "about", "what", "was", "asked"]


def machine() -> dict:
    """CPU, cores, ISA flags, GPU and onnxruntime facts, so results from different hardware line up."""
    import onnxruntime as ort

    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        gpu = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        pass
    isa = sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                          "amx_bf16", "avx_vnni"})
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "isa": isa, "gpu": gpu, "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(), "python": platform.python_version(),
            "platform": platform.platform()}


def percentiles(samples_s: Sequence[float], batch: int, seq_len: int) -> dict:
    ms = np.asarray(samples_s) * 1e3
    p50 = float(np.percentile(ms, 50))
    p90 = float(np.percentile(ms, 90))
    return {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "seq_per_s": round(batch / (p50 / 1e3), 2),
            "tokens_per_s": round(batch * seq_len / (p50 / 1e3), 1), "repeats": len(ms),
            "stable": bool(p90 <= UNSTABLE_P90_OVER_P50 * p50)}


# A cell whose p90 is more than this many times its p50 ran on a busy machine: reported as unstable.
UNSTABLE_P90_OVER_P50 = 2.0


def grid_cells(artifact: Artifact, devices: Sequence[str], precisions: Sequence[str]) -> tuple[list, list[str]]:
    """(device, precision) pairs worth timing, and why the others are skipped."""
    cells, skipped = [], []
    for device in devices:
        for precision in precisions:
            if precision == "auto":
                precision = "fp16" if device == "cuda" and "fp16" in artifact.precisions else (
                    "int8" if "int8" in artifact.precisions else "fp32")
            if (device, precision) in cells:
                continue
            if precision not in artifact.precisions:
                skipped.append(f"{device}/{precision}: not in artifact")
            elif device == "cpu" and precision == "fp16":
                skipped.append("cpu/fp16: fp16 is a GPU precision")
            elif device == "cuda" and precision == "int8":
                skipped.append("cuda/int8: int8 graphs are CPU graphs (slow fallback kernels on CUDA)")
            else:
                cells.append((device, precision))
    return cells, skipped


def time_calls(call: Callable[[], object], repeats: int, warmup: int, min_time_s: float) -> list[float]:
    for _ in range(warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < repeats or (time.perf_counter() - started < min_time_s and len(samples) < 10 * repeats):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    return samples


def texts_of_length(tokenizer: PairTokenizer, n: int, seq_len: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n (prompt, response) pairs that encode to exactly seq_len tokens (prompt ~3/4 of them)."""
    rng = np.random.default_rng(seed)
    prompts, responses = [], []
    for _ in range(n):
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=seq_len)]
        cut = max(1, (3 * seq_len) // 4)
        prompt, response = " ".join(words[:cut]), " ".join(words[cut:]) or "ok"
        while len(tokenizer.encode([prompt], [response])[0].ids) > seq_len and " " in prompt:
            prompt = prompt.rsplit(" ", 1)[0]
        prompts.append(prompt)
        responses.append(response)
    return prompts, responses


def bench_grid(artifact: Artifact, devices: Sequence[str], precisions: Sequence[str], batches: Sequence[int],
               seq_lens: Sequence[int], threads: int | None, repeats: int, warmup: int, min_time_s: float,
               bare: bool, torch_model=None, progress: Callable[[str], None] = lambda m: None) -> dict:
    runs, bare_rows = [], []
    torch_rows: dict[str, list] = {"cpu": [], "cuda": []}
    torch_done: set[tuple[str, int, int]] = set()
    cells, skipped = grid_cells(artifact, devices, precisions)
    total, done, started = len(cells) * len(seq_lens) * len(batches), 0, time.perf_counter()
    for device, precision in cells:
        # a cell of batch B is one session.run of B rows
        extractor = FeatureExtractor(artifact, device=device, precision=precision, threads=threads,
                                     batch_size=max(batches), max_length=max(max(seq_lens), artifact.max_length))
        for seq_len in seq_lens:
            for batch in batches:
                prompts, responses = texts_of_length(extractor.tokenizer, batch, seq_len)
                eta = "" if not done else f", ~{(time.perf_counter() - started) / done * (total - done):.0f} s left"
                progress(f"[{done + 1}/{total}] {device} {precision} batch {batch} x {seq_len}{eta}")
                done += 1
                samples = time_calls(lambda p=prompts, r=responses, e=extractor: e(p, r), repeats, warmup, min_time_s)
                row = {"device": device, "precision": precision, "batch": batch, "seq_len": seq_len}
                runs.append({**row, **percentiles(samples, batch, seq_len)})
                arrays = extractor.tokenizer(prompts, responses)
                if bare:
                    feeds = {k: arrays[k] for k in extractor.input_names}
                    session = extractor.session
                    samples = time_calls(lambda f=feeds, s=session: s.run(["features"], f), repeats, warmup,
                                         min_time_s)
                    bare_rows.append({**row, **percentiles(samples, batch, seq_len)})
                if torch_model is not None and (device, batch, seq_len) not in torch_done:
                    torch_done.add((device, batch, seq_len))
                    label = "torch-fp32" if device == "cpu" else "torch-fp16"
                    model_only, end_to_end = torch_model(device, arrays, prompts, responses,
                                                         extractor.tokenizer.max_length, repeats, warmup, min_time_s)
                    torch_rows[device] += [{**row, "precision": label, **percentiles(model_only, batch, seq_len)},
                                           {**row, "precision": f"{label} e2e", **percentiles(end_to_end, batch, seq_len)}]
    return {"runs": runs, "bare_session": bare_rows or None, "torch_fp32": torch_rows["cpu"] or None,
            "torch_cuda": torch_rows["cuda"] or None, "skipped": skipped}


def torch_timer(run_dir: str | os.PathLike, threads: int | None):
    """Timings of the same model in PyTorch eager (needs the [train] extra): fp32 on the CPU, fp16 on CUDA;
    model only (on the padded arrays rfm ran) and end to end (the run's own Hugging Face tokenizer, padding,
    the copy to the device, features back), as sentence-transformers would run it."""
    try:
        import torch

        from rfm.train.rundir import load_run
    except ImportError:
        raise UsageError("--compare torch needs the training extra: pip install 'rfm[train]'") from None
    model, hf_tokenizer, _ = load_run(run_dir)
    models = {"cpu": model.eval()}
    if threads:
        torch.set_num_threads(threads)

    def timer(device: str, arrays: dict[str, np.ndarray], prompts: list[str], responses: list[str], max_length: int,
              repeats: int, warmup: int, min_time_s: float) -> tuple[list[float], list[float]]:
        if device not in models:
            models[device] = copy.deepcopy(model).to(device, torch.float16).eval()
        on_device = models[device]
        finish = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}

        def model_only():
            with torch.inference_mode():
                on_device(**tensors)["features"]
            finish()

        def end_to_end():
            encoded = hf_tokenizer(prompts, responses, padding=True, truncation="longest_first", max_length=max_length,
                                   return_tensors="pt", return_token_type_ids=True)
            with torch.inference_mode():
                features = on_device(**{k: encoded[k].to(device) for k in arrays})["features"]
            return features.float().cpu().numpy()

        return (time_calls(model_only, repeats, warmup, min_time_s),
                time_calls(end_to_end, repeats, warmup, min_time_s))

    return timer


def bench_adapt(d: int, ms: Sequence[int], repeats: int, with_sklearn: bool, prior: dict | None = None) -> list[dict]:
    """Adapter fit time at the artifact's d (population prior) vs scikit-learn on the same problem."""
    rng = np.random.default_rng(0)
    rows = []
    mean = prior["mean"] if prior else np.zeros(d)
    cov = prior["cov"] if prior else np.eye(d)
    for m in ms:
        X = rng.normal(size=(m, d))
        y = (X @ rng.normal(size=d) + rng.normal(size=m) > 0).astype(float)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        adapter, l2 = MAPLogisticRegression(mean, cov), MAPLogisticRegression(prior="none")
        ours = time_calls(lambda X=X, y=y, a=adapter: a.fit(X, y), repeats, 3, 0.2)
        plain = time_calls(lambda X=X, y=y, a=l2: a.fit(X, y), repeats, 3, 0.2)
        fitted = MAPLogisticRegression(mean, cov).fit(X, y)
        x1 = rng.normal(size=(1, d))

        def one_feedback(X=X, y=y, x1=x1, a=adapter):
            a.fit(X, y)
            t = time.perf_counter()
            a.partial_fit(x1, np.ones(1))
            return time.perf_counter() - t

        update = [one_feedback() for _ in range(max(repeats, 20))]
        row = {"d": d, "m": m, "fit_ms": round(float(np.median(ours)) * 1e3, 4),
               "fit_l2_ms": round(float(np.median(plain)) * 1e3, 4),
               "update_ms": round(float(np.median(update)) * 1e3, 4),
               "sklearn_ms": None, "iterations_ok": bool(np.all(np.isfinite(fitted.coef_)))}
        if with_sklearn:
            try:
                from sklearn.linear_model import LogisticRegression

                sk_model = LogisticRegression(C=1.0, fit_intercept=False)
                sk = time_calls(lambda X=X, y=y, a=sk_model: a.fit(X, y), repeats, 3, 0.2)
                row["sklearn_ms"] = round(float(np.median(sk)) * 1e3, 4)
            except ImportError:
                pass
        rows.append(row)
    return rows


def bench_tokenize(artifact: Artifact, batch: int, seq_lens: Sequence[int], repeats: int) -> list[dict]:
    tok = PairTokenizer(load_tokenizer_file(artifact.root / "tokenizer.json"), max(max(seq_lens), artifact.max_length),
                        prompt_budget=artifact.manifest.truncation.prompt_budget)
    rows = []
    for seq_len in seq_lens:
        prompts, responses = texts_of_length(tok, batch, seq_len)
        samples = time_calls(lambda p=prompts, r=responses: tok(p, r), repeats, 3, 0.2)
        rows.append({"batch": batch, "seq_len": seq_len, "p50_ms": round(float(np.median(samples)) * 1e3, 4)})
    return rows


def bench_rerank(artifact: Artifact, ns: Sequence[int], seq_len: int, threads: int | None, precision: str,
                 repeats: int, warmup: int, min_time_s: float, store: str) -> list[dict]:
    from rfm.runtime import RewardModel

    model = RewardModel.load(artifact.root, device="cpu", precision=precision, threads=threads, store=store)
    rows = []
    for n in ns:
        prompts, responses = texts_of_length(model.extractor.tokenizer, n, seq_len, seed=n)
        samples = time_calls(lambda r=responses, p=prompts[0]: model.rerank("bench-user", p, r), repeats, warmup,
                             min_time_s)
        rows.append({"n": n, "seq_len": seq_len, "precision": model.extractor.precision, "threads": threads,
                     **percentiles(samples, n, seq_len)})
    return rows


COLD_START = """
import resource, sys, time
t0 = float(sys.argv[2])
from rfm.runtime import RewardModel
rm = RewardModel.load(sys.argv[1], device="cpu", precision=sys.argv[3], store=sys.argv[4])
rm.features(["a prompt"], ["a response"])
first = time.time() - t0
rm.features(["word " * 150] * 8, ["answer " * 100] * 8)
bad = [m for m in ("torch", "transformers", "optimum", "sklearn") if m in sys.modules]
# VmHWM is this process's own peak; ru_maxrss would include the parent's peak from before exec.
try:
    peak = next(int(l.split()[1]) / 1024.0 for l in open("/proc/self/status") if l.startswith("VmHWM"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 * (1024.0 if sys.platform == "darwin" else 1))
print(first, peak, ",".join(bad))
"""


def cold_start(artifact: Artifact, precision: str, store: str) -> tuple[float, float, str]:
    """Process start -> first features (seconds), and the runtime-only process's peak RSS (MB)."""
    env = {**os.environ, "RFM_QUIET": "1"}
    started = time.time()
    out = subprocess.run([sys.executable, "-c", COLD_START, str(artifact.root), repr(started), precision, store],
                         capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"cold-start probe failed: {out.stderr.strip().splitlines()[-1:]}")
    parts = out.stdout.strip().split(" ")
    return float(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else ""


def run_bench(artifact_dir: str | os.PathLike, devices: Sequence[str], precisions: Sequence[str],
              batches: Sequence[int], seq_lens: Sequence[int], threads: int | None = None, repeats: int = 20,
              warmup: int = 3, min_time_s: float = 0.5, compare_torch: str | None = None,
              rerank_ns: Sequence[int] = (4, 8, 16), adapt_ms: Sequence[int] = (10, 50, 200),
              progress: Callable[[str], None] = lambda m: None) -> dict:
    """Everything `rfm bench` measures, as the JSON object of docs/DESIGN.md §3.5."""
    import tempfile

    artifact = load_artifact(artifact_dir)
    available = [d for d in devices if d == "cpu" or (d == "cuda" and cuda_available())]
    missing = [d for d in devices if d not in available]
    torch_model = torch_timer(compare_torch, threads) if compare_torch else None
    result = {"artifact": str(artifact_dir), "fingerprint": artifact.fingerprint, "features": artifact.features,
              "machine": machine(), "threads": threads, "devices_missing": missing}
    result.update(bench_grid(artifact, available, precisions, batches, seq_lens, threads, repeats, warmup,
                             min_time_s, bare=True, torch_model=torch_model, progress=progress))
    cpu_precision = "int8" if "int8" in artifact.precisions else "fp32"
    progress("tokenisation, rerank, adaptation, cold start")
    result["tokenize"] = bench_tokenize(artifact, max(batches), seq_lens, repeats)
    with tempfile.TemporaryDirectory() as store:
        result["rerank"] = bench_rerank(artifact, rerank_ns, 256, threads, cpu_precision, repeats, warmup,
                                        min_time_s, store)
        first, rss, bad = cold_start(artifact, cpu_precision, store)
    result["adapt"] = bench_adapt(artifact.features, adapt_ms, max(repeats, 50), True, artifact.population())
    result["cold_start_s"] = round(first, 3)
    result["peak_rss_mb"] = round(rss, 1)
    result["runtime_imports_training_stack"] = bad or None
    return result


def timed_rows(result: dict) -> list[dict]:
    """rfm's grid rows and PyTorch's (CPU, then CUDA), as the table and the plot show them."""
    return result["runs"] + (result["torch_fp32"] or []) + (result.get("torch_cuda") or [])


def markdown_table(result: dict) -> str:
    """The readable table `rfm bench` prints."""
    m = result["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores']} cores; {' '.join(m['isa']) or 'no AVX flags'}), gpu: {m['gpu']}, "
             f"onnxruntime {m['onnxruntime']}, threads: {result['threads'] or 'default'}", "",
             "| device | precision | batch | seq_len | p50 ms | p90 ms | p99 ms | seq/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    rows = timed_rows(result) + [
        {**r, "precision": r["precision"] + " (bare run)"} for r in (result["bare_session"] or [])]
    for r in rows:
        flag = "" if r.get("stable", True) else " (unstable)"
        lines.append(f"| {r['device']} | {r['precision']} | {r['batch']} | {r['seq_len']} | {r['p50_ms']:.2f}{flag} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['seq_per_s']:.1f} |")
    unstable = sum(not r.get("stable", True) for r in rows)
    if unstable:
        lines += ["", f"{unstable} of {len(rows)} cells are unstable (p90 > {UNSTABLE_P90_OVER_P50:g} x p50): the "
                      "machine was busy; re-run when it is quiet, or with --repeats higher"]
    if result.get("skipped"):
        lines += ["", "skipped: " + "; ".join(result["skipped"])]
    lines += ["", "| rerank n | seq_len | precision | p50 ms | p90 ms |", "|---:|---:|---|---:|---:|"]
    lines += [f"| {r['n']} | {r['seq_len']} | {r['precision']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} |"
              for r in result["rerank"]]
    lines += ["", "| adapt d | m | fit ms (MAP) | fit ms (L2) | +1 feedback ms | scikit-learn ms |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in result["adapt"]:
        sk = f"{r['sklearn_ms']:.3f}" if r["sklearn_ms"] is not None else "n/a"
        lines.append(f"| {r['d']} | {r['m']} | {r['fit_ms']:.3f} | {r['fit_l2_ms']:.3f} | {r['update_ms']:.3f} | {sk} |")
    lines += ["", f"cold start (process start -> first features): {result['cold_start_s']:.2f} s; "
                  f"runtime peak RSS: {result['peak_rss_mb']:.0f} MB"]
    return "\n".join(lines)


def plot(result: dict, path: str | os.PathLike) -> None:
    """p50 latency vs sequence length: one panel per batch size, one colour per device/precision."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib (pip install 'rfm[train]')") from None
    rows = timed_rows(result)
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.8), squeeze=False, sharey=False)
    kinds = sorted({f"{r['device']} {r['precision']}" for r in rows})
    colours = {kind: f"C{i}" for i, kind in enumerate(kinds)}
    for ax, batch in zip(axes[0], batches, strict=True):
        for kind in kinds:
            points = sorted((r["seq_len"], r["p50_ms"]) for r in rows
                            if r["batch"] == batch and f"{r['device']} {r['precision']}" == kind)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colours[kind], label=kind)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("p50 ms per batch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    m = result["machine"]
    fig.suptitle(f"{m['cpu'][:48]}{' + ' + m['gpu'] if m.get('gpu') else ''}, threads {result['threads'] or 'default'}, "
                 f"onnxruntime {m['onnxruntime']}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_json(result: dict, path: str | os.PathLike) -> None:
    from rfm.fileio import atomic_open

    with atomic_open(path) as handle:
        json.dump(result, handle, indent=1)
