"""Export time, file sizes and validation figures of the MiniLM RFM (d = 32) trained on TL;DR.

    .venv/bin/python benchmarks/export_bench.py   # after benchmarks/personalization.py prepared the data

Writes benchmarks/results/export.{json,md}; the artifact stays in benchmarks/work/export/artifact for
`rfm bench` (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.export.build import export_run  # noqa: E402
from rfm.train.run import train  # noqa: E402
from rfm.train.trainer import TrainConfig  # noqa: E402


def main() -> None:
    work = ROOT / "benchmarks" / "work"
    split = work / "split_tldr"
    run, art = work / "export" / "run", work / "export" / "artifact"
    train(split / "train.jsonl", run, TrainConfig(features=32), overwrite=True, progress=False)
    t0 = time.perf_counter()
    manifest = export_run(run, art, ["fp32", "int8", "fp16"], validation_data=str(split / "heldout.jsonl"),
                          overwrite=True, log=print)
    seconds = time.perf_counter() - t0
    result = {"command": "python benchmarks/export_bench.py", "seconds": round(seconds, 1),
              "sizes_mb": {k: round(v / 1e6, 2) for k, v in manifest.sizes_bytes.items()},
              "validation": manifest.validation, "quantization": manifest.export["int8_quantization"]}
    out = ROOT / "benchmarks" / "results"
    (out / "export.json").write_text(json.dumps(result, indent=1))
    v = manifest.validation
    lines = ["# Export: MiniLM RFM (d = 32) trained on TL;DR", "", f"Command: `{result['command']}`", "",
             f"Export time (Optimum export + fusion + int8 + fp16 + validation): {seconds:.1f} s", "",
             "| file | MB |", "|---|---:|"] + [f"| {k} | {mb:.1f} |" for k, mb in result["sizes_mb"].items()]
    lines += ["", f"- fp32 ONNX vs torch, max abs difference: {v['fp32_vs_torch_max_abs_diff']:.2e} "
                  f"(batches {v['batch_shapes']}; bound 1e-4)",
              f"- int8 ({result['quantization']}, per-channel, dynamic) vs fp32: mean cosine "
              f"{v['int8']['mean_cosine']:.4f} (min {v['int8']['min_cosine']:.4f}); preference agreement "
              f"{v['int8']['pair_agreement']:.3f} on {v['int8']['decisive_pairs']} decisive pairs, "
              f"{v['int8']['pair_agreement_all']:.3f} on all {v['int8']['pairs']} (ties within "
              f"p = 0.5 ± {v['int8']['tie_band']} excluded from the bound)"]
    if "mean_cosine" in v.get("fp16", {}):
        lines.append(f"- fp16 vs fp32 (checked on CPU): mean cosine {v['fp16']['mean_cosine']:.6f}")
    (out / "export.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
