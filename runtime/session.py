"""onnxruntime sessions, the lean way: pick device and precision once, then reuse the session."""

from __future__ import annotations

import logging
import os
import shutil

import onnxruntime as ort
from rfm.runtime.artifact import Artifact

from rfm.errors import UsageError

_fallback_told = False


def _nvidia_gpu_present() -> bool:
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def cuda_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose_device(device: str) -> str:
    """'auto' -> cuda when onnxruntime offers it, else cpu (said once); explicit cuda must exist."""
    global _fallback_told
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"must be auto, cpu or cuda, got {device!r}", param="device")
    if device == "cuda" and not cuda_available():
        raise UsageError("cuda: this onnxruntime has no CUDAExecutionProvider "
                         "(install rfm[gpu] on a machine with an NVIDIA GPU, or use the cpu)", param="device")
    if device == "auto":
        if cuda_available():
            return "cuda"
        if not _fallback_told and _nvidia_gpu_present():  # on a machine without one, CPU is simply the plan
            logging.getLogger("rfm").warning("this machine has an NVIDIA GPU but onnxruntime has no CUDA; running "
                                             "on the CPU (pip install 'rfm[gpu]' for the GPU)")
            _fallback_told = True
        return "cpu"
    return device


def choose_precision(artifact: Artifact, device: str, precision: str) -> str:
    """'auto' -> int8 on CPU, fp16 (else fp32) on GPU; an explicit precision must be in the artifact."""
    if precision == "auto":
        order = ("int8", "fp32") if device == "cpu" else ("fp16", "fp32")
        return next(p for p in order if p in artifact.precisions)
    if device == "cuda" and precision == "int8":
        raise UsageError("int8 graphs are CPU graphs (onnxruntime runs them on CUDA with slow fallback "
                         "kernels); use fp16 or fp32 on cuda", param="precision")
    if precision not in artifact.precisions:
        raise UsageError(f"{precision} is not in {artifact.root} (has {', '.join(artifact.precisions)})",
                         param="precision")
    return precision


# onnxruntime re-fuses Add + LayerNormalization into SkipLayerNormalization and Add + Gelu into
# BiasGelu at load time. On CPU those fused kernels are slower than what they replace (onnxruntime
# 1.32, MiniLM int8 at 8 x 256 tokens on 2 cores: 125 ms with these fusions off vs 145 ms with them on;
# `rfm bench` measures it). GPU kernels for them are fast, so CUDA sessions keep every fusion.
CPU_SKIPPED_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")


def make_session(path: str | os.PathLike | bytes, device: str, threads: int | None = None,
                 options: ort.SessionOptions | None = None) -> ort.InferenceSession:
    """An InferenceSession with full graph optimisation in memory (nothing hardware-specific is saved).

    `options` may carry the caller's own settings (profiling, say); graph level and threads are set here.
    """
    options = options or ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4  # fatal only: a failing run is reported once, as an rfm error
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if device == "cuda":
        providers, skipped = ["CUDAExecutionProvider", "CPUExecutionProvider"], []
    else:
        providers, skipped = ["CPUExecutionProvider"], list(CPU_SKIPPED_FUSIONS)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=providers, disabled_optimizers=skipped)
