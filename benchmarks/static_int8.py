"""int8 graph choices vs the dynamic graph the exporter ships (issue 14's lever list).

- static (calibrated) int8: onnxruntime's `quantize_static` (QDQ, per-channel int8 weights with
  reduce_range like the portable dynamic graph, uint8 activations, MinMax calibration on 96 TL;DR
  training pairs) on the artifact's fp32 graph: every quantisable op, and MatMul only;
- dynamic int8 with attention in fp32: the exporter's own fallback scope (`dense-only`: the fused
  Attention op keeps its fp32 kernel, only the dense MatMuls are int8);
- dynamic int8 of a graph whose attention is left unfused: the Q, K, V projections become int8
  MatMuls and the scores and softmax plain fp32 ops, instead of one `QAttention` (the shipped graph
  spends ~41% of its time there, so a cheaper attention would matter). Needs the run dir the
  artifact came from (its manifest names it), to export the graph again without that fusion.

Each is timed beside the shipped dynamic graph and fp32 on the same 8 x 256 batch (2 threads), and
checked against fp32 on 200 held-out TL;DR pairs (feature cosine, and whether the population reward's
decision agrees).

    .venv/bin/python benchmarks/static_int8.py [--artifact ART]   # after personalization.py / prompt_budget.py

Writes benchmarks/results/static_int8.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rerank_latency import timed  # noqa: E402
from rfm.runtime import FeatureExtractor, load_artifact  # noqa: E402
from rfm.runtime.session import make_session  # noqa: E402

from rfm.bench import machine, texts_of_length  # noqa: E402
from rfm.data.jsonl import load_pairs  # noqa: E402

WORK = ROOT / "benchmarks" / "work"


def quantise(fp32: Path, out: Path, batches: list[dict], op_types: list[str] | None) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict | None:
            return next(self.left, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_optimization=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=op_types)


def unfused_attention_graph(run: Path, out: Path) -> None:
    """The run's fp32 graph exported again with every fusion the exporter uses but attention's."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from rfm.export.onnx_export import export_fp32
    from rfm.train.rundir import load_run

    model, _, config = load_run(run)
    raw = out.with_suffix(".raw.onnx")
    export_fp32(model, raw, opset=18)
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # as export.onnx_export does
    options.enable_gelu = options.enable_bias_gelu = False
    options.enable_attention = False
    optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
                   opt_level=0, use_gpu=False, optimization_options=options).save_model_to_file(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default=str(WORK / "models" / "tldr-budget" / "none" / "rfm-s0" / "artifact"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="Folder for static_int8.{json,md}.")
    args = parser.parse_args()
    from transformers import AutoConfig

    artifact = load_artifact(args.artifact)
    root = Path(args.artifact)
    tok = FeatureExtractor(artifact, device="cpu", precision="fp32").tokenizer  # the artifact's own encoding

    def feeds(prompts, responses, names) -> dict:
        batch = tok(prompts, responses)
        return {k: batch[k] for k in names}

    fp32 = make_session(root / "model.onnx", "cpu", args.threads)
    names = [i.name for i in fp32.get_inputs()]
    calibration = load_pairs(WORK / "split_tldr" / "train.jsonl")[:96]
    batches = [feeds([p.prompt for p in calibration[i:i + 8]], [p.chosen for p in calibration[i:i + 8]], names)
               for i in range(0, len(calibration), 8)]
    sessions = {"fp32": fp32, "dynamic int8 (shipped)": make_session(root / "model_int8.onnx", "cpu", args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ops in (("static int8, every op", None), ("static int8, MatMul only", ["MatMul"])):
            path = Path(tmp) / f"{len(sessions)}.onnx"
            quantise(root / "model.onnx", path, batches, ops)
            sessions[name] = make_session(path, "cpu", args.threads)
        from rfm.export.quantize import quantize_int8

        config = AutoConfig.from_pretrained(artifact.manifest.export["source_run"])
        dense = Path(tmp) / "dense.onnx"
        quantize_int8(root / "model.onnx", dense, "auto", config, ["MatMul"])
        sessions["dynamic int8, attention fp32"] = make_session(dense, "cpu", args.threads)
        unfused = Path(tmp) / "unfused.onnx"
        unfused_attention_graph(Path(artifact.manifest.export["source_run"]), unfused)
        quantize_int8(unfused, Path(tmp) / "unfused_int8.onnx", "auto", config)
        sessions["dynamic int8, attention unfused"] = make_session(Path(tmp) / "unfused_int8.onnx", "cpu", args.threads)

        prompts, responses = texts_of_length(tok, 8, 256)
        batch = feeds(prompts, responses, names)
        rounds = [{name: timed(lambda s=s: s.run(None, batch), args.repeats) for name, s in sessions.items()}
                  for _ in range(2)]
        heldout = load_pairs(WORK / "split_tldr" / "heldout.jsonl")[:200]
        texts = [(p.prompt, p.chosen) for p in heldout] + [(p.prompt, p.rejected) for p in heldout]

        def features(session) -> np.ndarray:
            return np.concatenate([session.run(None, feeds([t[0] for t in texts[i:i + 16]], [t[1] for t in texts[i:i + 16]],
                                                           names))[0] for i in range(0, len(texts), 16)])

        reference = features(fp32)
        mean = artifact.population()["mean"]
        n = len(heldout)
        ref_margin = (reference[:n] - reference[n:]) @ mean
        quality = {}
        for name, session in sessions.items():
            feats = features(session)
            cos = np.sum(feats * reference, 1) / np.linalg.norm(feats, axis=1) / np.linalg.norm(reference, axis=1)
            margin = (feats[:n] - feats[n:]) @ mean
            quality[name] = {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
                             "decisions_agree": float(np.mean((margin > 0) == (ref_margin > 0)))}
    command = "python benchmarks/static_int8.py" + (f" --repeats {args.repeats}" if args.repeats != 15 else "")
    result = {"command": command, "machine": machine(), "threads": args.threads,
              "artifact": args.artifact, "rounds": rounds, "quality": quality}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "static_int8.json").write_text(json.dumps(result, indent=1))
    lines = ["# int8 graph choices vs the shipped dynamic int8 graph", "",
             f"Command: `{result['command']}`; {result['machine'].get('cpu')}, {args.threads} threads. "
             "8 x 256 tokens; two rounds, each timing every graph in turn (p50 ms); quality vs fp32 on 200 held-out TL;DR pairs.", "",
             "| graph | p50 ms, round 1 | p50 ms, round 2 | mean cosine | min cosine | decisions agree |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, q in quality.items():
        lines.append(f"| {name} | {rounds[0][name]['p50_ms']:.0f} | {rounds[1][name]['p50_ms']:.0f} | "
                     f"{q['mean_cosine']:.4f} | {q['min_cosine']:.4f} | {100 * q['decisions_agree']:.1f}% |")
    (out / "static_int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
