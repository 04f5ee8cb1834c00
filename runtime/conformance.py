"""conformance.json: inputs with the token ids and features an artifact must give, for any runtime.

An app that embeds onnxruntime and tokenizers itself (C#, JS, Rust) loads the artifact's
`tokenizer.json` and graph; this file lets it check itself: the same token ids for each
(prompt, response), and features whose cosine with the exported ones is at least `min_cosine`.
`rfm check ARTIFACT` runs the same check with this runtime on this machine's CPU or GPU.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from rfm.runtime.artifact import Artifact, ArtifactError
from rfm.runtime.tokenize import PairTokenizer

CONFORMANCE_FILE = "conformance.json"
CASES = 4
# Features of another machine (other kernels, ISA, provider) must stay this close to the exporter's.
MIN_COSINE = {"fp32": 0.9999, "int8": 0.99, "fp16": 0.999}


def row_cosines(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-text cosine of feature vectors; for d = 1 (a scalar reward) the cosine of the whole column."""
    if reference.shape[1] == 1:
        reference, other = reference.T, other.T
    num = (reference * other).sum(1)
    den = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    return np.where(den > 0, num / np.maximum(den, 1e-30), 1.0)


def write_conformance(path: str | os.PathLike, tokenizer: PairTokenizer, texts: Sequence[tuple[str, str]],
                      features: dict[str, np.ndarray], cases: int = CASES) -> None:
    """Write the first `cases` texts, their token ids and each precision's features (rows aligned with texts)."""
    chosen = list(texts[:cases])
    encodings = tokenizer.encode([p for p, _ in chosen], [r for _, r in chosen])
    data = {
        "about": "Each case: tokenise (prompt, response) as a pair with tokenizer.json (no padding; it truncates at "
                 "max_length, longest_first; rfm first cuts each text to 64 x max_length characters, which changes "
                 "nothing for ordinary text), run the graph on input_ids, attention_mask (all ones) and, if the "
                 "graph takes them, token_type_ids; the features' cosine with features[precision][i] must be >= "
                 "min_cosine[precision] (fp16: compare with fp32).",
        "max_length": tokenizer.max_length,
        "cases": [{"prompt": p, "response": r, "input_ids": list(e.ids), "token_type_ids": list(e.type_ids)}
                  for (p, r), e in zip(chosen, encodings, strict=True)],
        "features": {precision: np.asarray(f[: len(chosen)], dtype=np.float64).round(7).tolist()
                     for precision, f in features.items()},
        "min_cosine": MIN_COSINE,
    }
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)


def check_conformance(artifact: Artifact, precision: str, device: str = "cpu", threads: int | None = None) -> dict:
    """This runtime against the artifact's conformance.json: token ids equal, feature cosines above the bound."""
    from rfm.runtime.features import FeatureExtractor

    if CONFORMANCE_FILE not in artifact.manifest.files:
        raise ArtifactError(f"{artifact.root}: no {CONFORMANCE_FILE} (exported by an older rfm; re-export)")
    try:
        data = json.loads(artifact.read_verified(CONFORMANCE_FILE).decode("utf-8"))
        cases = data["cases"]
        prompts, responses = [c["prompt"] for c in cases], [c["response"] for c in cases]
        reference_precision = precision if precision in data["features"] else "fp32"
        expected = np.asarray(data["features"][reference_precision], dtype=np.float64)
        bound = float(data["min_cosine"][precision])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{artifact.root / CONFORMANCE_FILE}: malformed ({type(exc).__name__}: {exc})") from None
    extractor = FeatureExtractor(artifact, device=device, precision=precision, threads=threads)
    encodings = extractor.tokenizer.encode(prompts, responses)
    tokens_match = all(list(e.ids) == c["input_ids"] and list(e.type_ids) == c["token_type_ids"]
                       for e, c in zip(encodings, cases, strict=True))
    worst = float(row_cosines(expected, extractor(prompts, responses).astype(np.float64)).min())
    return {"precision": precision, "device": extractor.device, "reference": reference_precision,
            "cases": len(cases), "tokens_match": tokens_match, "min_cosine": worst, "required": bound,
            "ok": bool(tokens_match and worst >= bound)}
