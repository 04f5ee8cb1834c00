"""The edge runtime: onnxruntime + tokenizers + numpy, nothing else (no torch, ever).

    from rfm.runtime import RewardModel
    rm = RewardModel.load("artifact/")
    rm.rerank("alice", prompt, candidates, top_k=3)
"""
