"""The response tokens' embedding-layer states of every distinct text, packed, for training `--head tokens`.

The embedding layer is a lookup (word + position + segment, then LayerNorm), so these are computed
for all texts in seconds, with no cache: only the encoder's attention layers are expensive, and the
pooled vectors they feed are cached (`embed_cache`). Stored as float16 (half the memory; training
reads them back as float32).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rfm.runtime.tokenize import PairTokenizer
from rfm.train.model import response_mask


@dataclass
class TokenStates:
    """Row i's tokens are values[offsets[i]:offsets[i + 1]]."""

    values: torch.Tensor  # (tokens, hidden), float16
    offsets: np.ndarray  # (texts + 1,)

    def gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(stacked float32 states of these rows' tokens, the position in `rows` of each token's row)."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        index = np.repeat(ends - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        segments = np.repeat(np.arange(len(rows)), lengths)
        return self.values[torch.from_numpy(index)].float(), torch.from_numpy(segments)


def embedding_output(backbone: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """hidden_states[0] of the backbone (its embedding layer's output), without running the encoder layers
    when the backbone exposes its embedding module (BERT, RoBERTa, DistilBERT do)."""
    embeddings = getattr(backbone, "embeddings", None)
    if embeddings is not None:
        accepted = inspect.signature(embeddings.forward).parameters
        if "input_ids" in accepted:
            kwargs = {"input_ids": input_ids}
            if token_type_ids is not None and "token_type_ids" in accepted:
                kwargs["token_type_ids"] = token_type_ids
            return embeddings(**kwargs)
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    return backbone(**kwargs, output_hidden_states=True).hidden_states[0]


def token_states(backbone: torch.nn.Module, pair_tok: PairTokenizer, texts: Sequence[tuple[str, str]],
                 uses_token_types: bool, batch_size: int = 256) -> TokenStates:
    """Embedding-layer states of every text's response tokens (the tokens `TokenHead` averages over)."""
    chunks, lengths = [], []
    backbone.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            part = texts[start : start + batch_size]
            batch = {k: torch.from_numpy(v) for k, v in pair_tok([p for p, _ in part], [r for _, r in part]).items()}
            types = batch["token_type_ids"] if uses_token_types else None
            states = embedding_output(backbone, batch["input_ids"], batch["attention_mask"], types)
            mask = response_mask(batch["attention_mask"], types).bool()
            chunks.append(states[mask].half())
            lengths.extend(mask.sum(1).tolist())
    hidden = backbone.config.hidden_size
    values = torch.cat(chunks) if chunks else torch.zeros((0, hidden), dtype=torch.float16)
    return TokenStates(values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
