"""The edge runtime: onnxruntime + tokenizers + numpy, nothing else (no torch, ever).

    from rfm.runtime import RewardModel
    rm = RewardModel.load("artifact/")
    rm.rerank("alice", prompt, candidates, top_k=3)
"""

from rfm.runtime.artifact import Artifact, ArtifactError, load_artifact
from rfm.runtime.features import FeatureExtractor
from rfm.runtime.model import Ranked, RewardModel
from rfm.runtime.store import StoreError, UserStore
from rfm.runtime.tokenize import PairTokenizer

__all__ = ["Artifact", "ArtifactError", "FeatureExtractor", "PairTokenizer", "Ranked", "RewardModel",
           "StoreError", "UserStore", "load_artifact"]
