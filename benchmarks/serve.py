"""`rfm serve` under load: rerank 8 x 256 over loopback with 1, 4 and 16 concurrent clients, with
`--coalesce off` and `on`, next to the in-process `RewardModel` figure; start-up to the first answered request; idle RSS; every feedback
accounted for.

    .venv/bin/python benchmarks/serve.py [--artifact ART] [--seconds 10] [--threads 2]

Writes benchmarks/results/serve.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime import RewardModel  # noqa: E402

from rfm.bench import machine, texts_of_length  # noqa: E402


def post(base: str, path: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS")) / 1024


def measure_service(args: argparse.Namespace, coalesce: str, home: Path) -> dict:
    """Start `rfm serve` in its own process and drive it: start-up, idle RSS, 1/4/16 clients, feedback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RFM_HOME": str(home), "RFM_QUIET": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rfm.cli.main", "serve", args.artifact, "--port", str(port),
                             "--threads", str(args.threads), "--device", args.device, "--coalesce", coalesce], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/v1/health", timeout=1).read()
                break
            except OSError:
                if time.perf_counter() - started > 60 or proc.poll() is not None:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.05)
        token = (home / "serve-token").read_text().strip()
        body = {"user": "bench", "prompt": args.prompt, "candidates": args.responses}
        post(base, "/v1/rerank", token, body)
        result: dict = {"start_to_first_rerank_s": round(time.perf_counter() - started, 2),
                        "idle_rss_mb": round(rss_mb(proc.pid), 1), "clients": {}}
        for clients in (1, 4, 16):
            latencies: list[float] = []
            errors: list[str] = []
            deadline = time.perf_counter() + args.seconds

            def worker(_: int, deadline: float = deadline, latencies: list = latencies, errors: list = errors) -> None:
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    try:
                        post(base, "/v1/rerank", token, body)
                    except urllib.error.HTTPError as exc:
                        errors.append(str(exc.code))
                        continue
                    latencies.append(time.perf_counter() - t)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(worker, range(clients)))
            ms = np.asarray(latencies) * 1e3
            result["clients"][str(clients)] = {"requests": len(ms), "errors": len(errors),
                                               "rerank_per_s": round(len(ms) / (time.perf_counter() - t0), 2),
                                               "p50_ms": round(float(np.median(ms)), 1),
                                               "p99_ms": round(float(np.percentile(ms, 99)), 1)}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: post(base, "/v1/feedback", token, {"user": "fb", "prompt": f"p{i}",
                                                                        "chosen": f"answer {i}", "rejected": "no"}),
                          range(40)))
        summary = urllib.request.urlopen(urllib.request.Request(base + "/v1/users/fb", headers={
            "Authorization": f"Bearer {token}"}), timeout=30).read()
        result["feedback_sent"], result["feedback_stored"] = 40, json.loads(summary)["choices"]
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default=str(ROOT / "benchmarks" / "work" / "models" / "tldr" / "rfm-s0" / "artifact"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rfm-serve-bench-"))
    prompts, args.responses = texts_of_length(RewardModel.load(args.artifact, device="cpu").extractor.tokenizer, 8, 256)
    args.prompt = prompts[0]
    result: dict = {"command": "python benchmarks/serve.py", "machine": machine(), "device": args.device,
                    "threads": args.threads,
                    "modes": {mode: measure_service(args, mode, home / mode) for mode in ("off", "on")}}
    model = RewardModel.load(args.artifact, device=args.device, threads=args.threads, store=home / "inproc")
    for _ in range(2):
        model.rerank("bench", args.prompt, args.responses)
    samples = []
    for _ in range(max(5, result["modes"]["off"]["clients"]["1"]["requests"])):
        t = time.perf_counter()
        model.rerank("bench", args.prompt, args.responses)
        samples.append(time.perf_counter() - t)
    result["in_process_p50_ms"] = round(float(np.median(samples)) * 1e3, 1)
    for mode in result["modes"].values():
        mode["overhead_at_1_client"] = round(mode["clients"]["1"]["p50_ms"] / result["in_process_p50_ms"] - 1, 4)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    off, on = result["modes"]["off"], result["modes"]["on"]
    lines = ["# `rfm serve` under load: rerank 8 x 256 over loopback", "",
             f"Command: `{result['command']}`; {m['cpu']} ({m['cores']} cores, {' '.join(m['isa'])}), "
             f"{args.device}, {args.threads} onnxruntime threads, client threads in the same machine; {args.seconds:g} s per row.", "",
             "| `--coalesce` | clients | requests | errors | rerank/s | p50 ms | p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {c} | {r['requests']} | {r['errors']} | {r['rerank_per_s']:.2f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} |" for name, mode in result["modes"].items() for c, r in mode["clients"].items()]
    lines += ["", f"- in-process `RewardModel.rerank`, same batch: p50 {result['in_process_p50_ms']:.0f} ms; service "
                  f"overhead at 1 client: {off['overhead_at_1_client']:+.1%} (coalescing off), "
                  f"{on['overhead_at_1_client']:+.1%} (on)",
              f"- start-up to the first answered rerank: {off['start_to_first_rerank_s']:.2f} s; idle RSS "
              f"{off['idle_rss_mb']:.0f} MB",
              f"- feedback: {off['feedback_sent']} sent from 8 threads, {off['feedback_stored']} stored (off), "
              f"{on['feedback_stored']} stored (on)", ""]
    (out / "serve.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
