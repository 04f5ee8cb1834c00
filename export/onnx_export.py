"""Export a run dir's feature graph to ONNX with Hugging Face Optimum, then validate it against torch."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from rfm.errors import RfmError


def onnx_config_for(model) -> object:
    """An Optimum OnnxConfig of the backbone's family whose only output is `features` [batch, d]."""
    from optimum.exporters.tasks import TasksManager

    try:
        ctor = TasksManager.get_exporter_config_constructor(
            exporter="onnx", model_type=model.config.model_type, task="feature-extraction",
            library_name="transformers")
    except (KeyError, ValueError) as exc:
        raise RfmError(f"Optimum has no ONNX config for backbone type {model.config.model_type!r} ({exc})") from None
    base = ctor.func if isinstance(ctor, functools.partial) else ctor

    class RewardFeatureOnnxConfig(base):  # type: ignore[misc, valid-type]
        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {"features": {0: "batch_size"}}

    config = RewardFeatureOnnxConfig(model.config, task="feature-extraction")
    return config


def export_fp32(model, path: Path, opset: int) -> tuple[list[str], object]:
    """Export through `optimum.exporters.onnx.export` and run Optimum's own output validation."""
    from optimum.exporters.onnx import export, validate_model_outputs

    onnx_config = onnx_config_for(model)
    inputs, outputs = export(model, onnx_config, path, opset=opset)
    validate_model_outputs(onnx_config, model, path, outputs, atol=1e-4, use_subprocess=False)
    return list(inputs), onnx_config


def fuse_transformer(src: Path, dst: Path, model_config) -> bool:
    """onnxruntime's attention and embedding fusions, as portable contrib ops.

    Residual adds, LayerNormalization and GELU stay standard ONNX: onnxruntime fuses them again when a
    session loads, and only where the fused kernel is the faster one (see runtime.session).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model_type = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert",
                  "mpnet": "bert", "deberta-v2": None}.get(model_config.model_type)
    if model_type is None:
        return False
    options = FusionOptions(model_type)
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    options.enable_gelu = options.enable_bias_gelu = False
    optimized = optimize_model(str(src), model_type=model_type, num_heads=model_config.num_attention_heads,
                               hidden_size=model_config.hidden_size, opt_level=0, use_gpu=False,
                               optimization_options=options)
    optimized.save_model_to_file(str(dst))
    return True


def cpu_session(path: Path):
    """A CPU session set up exactly as the runtime sets it up, so export checks see what users run."""
    from rfm.runtime.session import make_session

    return make_session(path, "cpu")


def onnx_features(session, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Features from an open session for a padded batch (only the inputs the graph takes are fed)."""
    names = {i.name for i in session.get_inputs()}
    return session.run(["features"], {k: v for k, v in batch.items() if k in names})[0]


def torch_features(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
        return model(**tensors)["features"].float().numpy()


def validation_batches(pair_tok, texts: list[tuple[str, str]], batch_sizes=(1, 3, 8)) -> list[dict[str, np.ndarray]]:
    """Batches of several sizes and lengths: the shortest texts, middle ones, the longest (truncated)."""
    ordered = sorted(texts, key=lambda t: len(t[0]) + len(t[1]))
    n = len(ordered)
    batches = []
    for size, start in zip(batch_sizes, (0, max(0, n // 2 - 1), max(0, n - batch_sizes[-1])), strict=False):
        chunk = ordered[start : start + size]
        batches.append(pair_tok([p for p, _ in chunk], [r for _, r in chunk]))
    return batches
