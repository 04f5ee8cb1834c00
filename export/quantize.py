"""int8 (dynamic, Optimum's ORTQuantizer, matched to the host ISA) and fp16 (onnxruntime) variants."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

QUANT_TARGETS = ("auto", "host", "x86_portable", "avx512_vnni", "avx512", "avx2", "arm64")


def portable_quant_target() -> str:
    """The int8 config that is right on every CPU of this architecture, whatever the exporting machine has.

    x86-64 ("x86_portable"): uint8 activations x int8 weights with 7-bit weights (reduce_range). The
    VNNI config's full 8-bit weights can saturate on AVX2 CPUs without VNNI (onnxruntime's u8s8 kernels
    there add pairs of products in int16: 255 x 127 x 2 > 32767); with 7-bit weights the sum stays below
    it (255 x 63 x 2 = 32130), so the graph is exact on every x86-64 CPU and still runs the fast u8s8
    kernels (uint8 x uint8, the other safe choice, ran 26% slower on an AVX2 EPYC). arm64: its own
    config (u8s8 is exact on NEON/SDOT kernels).
    """
    return "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_portable"


def host_isa() -> list[str]:
    """This CPU's architecture and the SIMD flags that decide onnxruntime's int8 kernels."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wanted = {"avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}
    return [platform.machine().lower(), *sorted(flags & wanted)]


def host_quant_target() -> str:
    """The Optimum quantisation config that fits this machine best (`--quantization host`)."""
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

    target = {"auto": portable_quant_target, "host": host_quant_target}.get(target, lambda: target)()
    # Per-channel weight scales: per-tensor ones cost ~4 points of feature cosine on MiniLM.
    extra = {"operators_to_quantize": operators} if operators else {}
    if target == "x86_portable":
        qconfig = AutoQuantizationConfig.avx512(is_static=False, per_channel=True, reduce_range=True, **extra)
    else:
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
