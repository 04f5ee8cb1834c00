"""The CUDA path (fp16 graph, IO binding): runs where onnxruntime has CUDAExecutionProvider, i.e. on a
GPU machine with onnxruntime-gpu (`pytest -m gpu`); CI machines have no GPU, so there it is skipped."""

from __future__ import annotations

import numpy as np
import pytest
from rfm.runtime import FeatureExtractor, RewardModel, load_artifact
from rfm.runtime.session import cuda_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu with CUDAExecutionProvider")]

PROMPTS = ["", "a prompt", "another prompt " * 40, "x", "what is the capital of France?"]
RESPONSES = ["resp " * 200, "short", "medium length answer here", "y", "Paris."]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cuda_features_match_cpu_fp32(tiny_artifact, precision):
    artifact = load_artifact(tiny_artifact)
    cpu = FeatureExtractor(artifact, device="cpu", precision="fp32")(PROMPTS, RESPONSES)
    gpu_extractor = FeatureExtractor(artifact, device="cuda", precision=precision, batch_size=2)
    assert gpu_extractor.session.get_providers()[0] == "CUDAExecutionProvider"
    gpu = gpu_extractor(PROMPTS, RESPONSES)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    cosine = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cosine.min() > (0.999 if precision == "fp16" else 0.99999), cosine


def test_auto_device_picks_cuda_fp16_and_reranks(tiny_artifact, tmp_path):
    model = RewardModel.load(tiny_artifact, store=tmp_path)
    assert model.extractor.device == "cuda" and model.extractor.precision == "fp16"
    ranked = model.rerank("u", "prompt", RESPONSES)
    assert sorted(r.index for r in ranked) == list(range(len(RESPONSES)))
    model.feedback("u", "prompt", chosen=RESPONSES[0], rejected=RESPONSES[1])
    assert model.store.read("u").feedback_total == 1
