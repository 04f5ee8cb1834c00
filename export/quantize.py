"""int8 (dynamic, Optimum's ORTQuantizer, matched to the host ISA) and fp16 (onnxruntime) variants."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

QUANT_TARGETS = ("auto", "avx512_vnni", "avx512", "avx2", "arm64")


def host_quant_target() -> str:
    """The Optimum quantisation config that fits this machine."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    flags = ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def quantize_int8(src: Path, dst: Path, target: str = "auto", config=None, operators: list[str] | None = None) -> str:
    """Dynamic int8 quantisation of `src` into `dst` (all supported ops, or only `operators`); returns the target."""
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    target = host_quant_target() if target == "auto" else target
    # Per-channel weight scales: per-tensor ones cost ~4 points of feature cosine on MiniLM.
    extra = {"operators_to_quantize": operators} if operators else {}
    qconfig = getattr(AutoQuantizationConfig, target)(is_static=False, per_channel=True, **extra)
    work = Path(tempfile.mkdtemp(prefix="rfm-quant-"))
    try:
        # Symbolic shape inference gives the fused contrib ops' outputs a type the quantizer needs.
        from onnxruntime.quantization.shape_inference import quant_pre_process

        # auto_merge reconciles dims that symbolic inference would otherwise give up on (DistilBERT's).
        quant_pre_process(str(src), str(work / "model.onnx"), skip_optimization=True, auto_merge=True)
        quantizer = ORTQuantizer(work / "model.onnx", config=config)
        quantizer.quantize(save_dir=work / "out", quantization_config=qconfig)
        produced = next((work / "out").glob("*.onnx"))
        os.replace(produced, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations, fp32 inputs/outputs kept (what the runtime feeds and reads)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dst))
