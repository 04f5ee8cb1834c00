"""The reward-feature model in torch: backbone -> pooling -> feature head -> phi(x, y) in R^d."""

from __future__ import annotations

import torch
from rfm.train.config import Pooling
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

POOLINGS = tuple(p.value for p in Pooling)


class Standardize(nn.Module):
    """A fixed affine map (x - shift) / scale, set from the training embeddings and saved with the model.

    Pooled vectors from different layers (and the length feature) live on different scales; a
    standardised input lets one learning rate and one weight decay suit every coordinate.
    """

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    def fit(self, embeddings: torch.Tensor) -> None:
        self.shift.copy_(embeddings.mean(0))
        self.scale.copy_(embeddings.std(0).clamp(min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


def build_head(hidden: int, features: int, head: str, head_hidden: int, dropout: float,
               standardize: bool = False) -> nn.Module:
    """Linear, small MLP, or identity (linear probe) from pooled embeddings to features."""
    if head == "identity":
        return nn.Identity()
    first = [Standardize(hidden)] if standardize else []
    if head == "linear":
        return nn.Sequential(*first, nn.Dropout(dropout), nn.Linear(hidden, features))
    if head == "mlp":
        return nn.Sequential(*first, nn.Dropout(dropout), nn.Linear(hidden, head_hidden), nn.GELU(),
                             nn.Linear(head_hidden, features))
    raise ValueError(f"unknown head {head!r}")


def pooled_size(hidden_size: int, num_layers: int, pooling: str) -> int:
    """Length of the pooled vector the head reads."""
    if pooling == "layers":
        return hidden_size * (num_layers + 1) + 1
    return hidden_size * (2 if pooling == "mean+response" else 1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None,
         pooling: str) -> torch.Tensor:
    """Mean over all tokens, over the response's tokens (segment B), or both concatenated.

    The encoder sees prompt and response together either way; response pooling keeps a long prompt
    from drowning out the difference between two responses to it.
    """
    full = mean_pool(hidden, attention_mask)
    if pooling == "mean" or token_type_ids is None:
        return full if pooling != "mean+response" else torch.cat([full, full], dim=-1)
    response_mask = attention_mask * token_type_ids
    has_response = (response_mask.sum(1, keepdim=True) > 0).to(hidden.dtype)
    response = has_response * mean_pool(hidden, response_mask) + (1 - has_response) * full
    return response if pooling == "response" else torch.cat([full, response], dim=-1)


def response_mask(attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """The response's tokens (segment B); every token where there are no segment ids or no response tokens."""
    mask = attention_mask if token_type_ids is None else attention_mask * token_type_ids
    return torch.where(mask.sum(1, keepdim=True) > 0, mask, attention_mask)


def pool_layers(hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """Mean over the response's tokens of every layer's states (embeddings included), and log(1 + tokens).

    Lower layers keep the lexical and surface cues (hedge words, contractions, list markers, question
    marks) that the last layer's mean mostly washes out; the token count carries length, which a mean
    cannot. Without segment ids (RoBERTa, DistilBERT) every token counts as the response's.
    """
    mask = response_mask(attention_mask, token_type_ids)
    count = mask.sum(1, keepdim=True).to(hidden_states[-1].dtype)
    means = [mean_pool(h, mask) for h in hidden_states]
    return torch.cat([*means, torch.log1p(count)], dim=-1)


class TokenHead(nn.Module):
    """`--head tokens`: a linear map of the pooled vector plus the mean, over the response's tokens, of a
    small MLP of each token's embedding-layer state (the encoder's input, before any attention).

    A mean of a per-token non-linear function can count kinds of tokens (hedges, contractions, list
    markers, exclamations) that a linear map of mean-pooled states blurs: on the taste benchmark's texts
    it reads hedging and informality with R^2 0.63 where a linear map of the pooled layers reads 0.38 and
    0.44 (benchmarks/results/decodability.md).
    The MLP's last layer starts at zero, so a warm-started linear part is where training begins.
    """

    def __init__(self, pooled_head: nn.Module, token_size: int, hidden: int, features: int, dropout: float):
        super().__init__()
        self.pooled = pooled_head
        self.tokens = nn.Sequential(nn.Dropout(dropout), nn.Linear(token_size, hidden), nn.GELU(),
                                    nn.Linear(hidden, features))
        nn.init.zeros_(self.tokens[-1].weight)
        nn.init.zeros_(self.tokens[-1].bias)

    def forward(self, pooled: torch.Tensor, token_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features from padded token states (batch, length, hidden) and the response mask (the ONNX graph)."""
        return self.pooled(pooled) + mean_pool(self.tokens(token_states), mask)

    def packed(self, pooled: torch.Tensor, values: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """The same features from the response tokens of all rows stacked (tokens, hidden), `segments`
        naming each token's row: what training on cached states uses (no padding)."""
        per_token = self.tokens(values)
        sums = per_token.new_zeros(len(pooled), per_token.shape[1]).index_add_(0, segments, per_token)
        counts = torch.bincount(segments, minlength=len(pooled)).clamp(min=1).unsqueeze(1).to(per_token.dtype)
        return self.pooled(pooled) + sums / counts


class RewardFeatureModel(PreTrainedModel):
    """phi_theta(x, y): the whole feature graph that `rfm export` turns into ONNX.

    The config is the backbone's own config with `rfm_*` fields added (features, head, pooling,
    max_length, truncation, kind), so the run dir is a plain Hugging Face folder.
    """

    config_class = PretrainedConfig
    base_model_prefix = "rfm"
    main_input_name = "input_ids"

    def __init__(self, config: PretrainedConfig, backbone: nn.Module | None = None):
        super().__init__(config)
        self.backbone = backbone if backbone is not None else AutoModel.from_config(config)
        size = pooled_size(config.hidden_size, config.num_hidden_layers, config.rfm_pooling)
        tokens = config.rfm_head == "tokens"
        self.head = build_head(size, config.rfm_features, "linear" if tokens else config.rfm_head,
                               config.rfm_head_hidden, config.rfm_dropout,
                               standardize=getattr(config, "rfm_standardize", False))
        if tokens:
            self.head = TokenHead(self.head, config.hidden_size, config.rfm_head_hidden, config.rfm_features,
                                  config.rfm_dropout)
        self.uses_token_types = takes_token_types(self.backbone)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> RewardFeatureModel:
        """Load a run dir the Hugging Face way: `RewardFeatureModel.from_pretrained("runs/rfm")` (eval mode)."""
        from transformers import AutoConfig

        config = kwargs.pop("config", None) or AutoConfig.from_pretrained(pretrained_model_name_or_path)
        if not hasattr(config, "rfm_features"):
            raise ValueError(f"{pretrained_model_name_or_path}: config.json has no rfm fields (not made by `rfm train`)")
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled vector the (linear part of the) head reads."""
        return self._encode(input_ids, attention_mask, token_type_ids)[0]

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(pooled vector, embedding-layer token states or None, the segment ids the backbone used)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        types = token_type_ids if self.uses_token_types else None
        if self.config.rfm_pooling == "layers" or self.config.rfm_head == "tokens":
            outputs = self.backbone(**kwargs, output_hidden_states=True)
            states = outputs.hidden_states
            pooled = (pool_layers(states, attention_mask, types) if self.config.rfm_pooling == "layers"
                      else pool(states[-1], attention_mask, types, self.config.rfm_pooling))
            return pooled, states[0], types
        hidden = self.backbone(**kwargs).last_hidden_state
        return pool(hidden, attention_mask, types, self.config.rfm_pooling), None, types

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pooled, token_states, types = self._encode(input_ids, attention_mask, token_type_ids)
        if isinstance(self.head, TokenHead):
            return {"features": self.head(pooled, token_states, response_mask(attention_mask, types))}
        return {"features": self.head(pooled)}


def takes_token_types(backbone: nn.Module) -> bool:
    """Whether the backbone's forward accepts segment ids (BERT does; RoBERTa and DistilBERT do not)."""
    import inspect

    return "token_type_ids" in inspect.signature(backbone.forward).parameters


def rfm_config(backbone_config: PretrainedConfig, *, kind: str, features: int, head: str, head_hidden: int,
               dropout: float, max_length: int, truncation: str, backbone_name: str,
               pooling: str = "layers", standardize: bool = False,
               prompt_budget: int | None = None) -> PretrainedConfig:
    """The backbone config with the RFM fields recorded (what export and runtime reproduce)."""
    config = backbone_config.__class__.from_dict(backbone_config.to_dict())
    config.rfm_kind = kind
    size = pooled_size(backbone_config.hidden_size, backbone_config.num_hidden_layers, pooling)
    config.rfm_features = size if head == "identity" else features
    config.rfm_head = head
    config.rfm_head_hidden = head_hidden
    config.rfm_dropout = dropout
    config.rfm_pooling = pooling
    config.rfm_standardize = standardize and head != "identity"
    config.rfm_max_length = max_length
    config.rfm_truncation = truncation
    config.rfm_prompt_budget = prompt_budget
    config.rfm_backbone = backbone_name
    return config
