"""The reward-feature model in torch: backbone -> mean pooling -> feature head -> phi(x, y) in R^d."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

KINDS = ("rfm", "baseline", "linear-probe")


def build_head(hidden: int, features: int, head: str, head_hidden: int, dropout: float) -> nn.Module:
    """Linear, small MLP, or identity (linear probe) from pooled embeddings to features."""
    if head == "identity":
        return nn.Identity()
    if head == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, features))
    if head == "mlp":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, head_hidden), nn.GELU(),
                             nn.Linear(head_hidden, features))
    raise ValueError(f"unknown head {head!r}")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


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
        self.head = build_head(config.hidden_size, config.rfm_features, config.rfm_head,
                               config.rfm_head_hidden, config.rfm_dropout)
        self.uses_token_types = "token_type_ids" in _forward_args(self.backbone)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"features": self.head(self.pooled(input_ids, attention_mask, token_type_ids))}


def _forward_args(module: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(module.forward).parameters)


def rfm_config(backbone_config: PretrainedConfig, *, kind: str, features: int, head: str, head_hidden: int,
               dropout: float, max_length: int, truncation: str, backbone_name: str) -> PretrainedConfig:
    """The backbone config with the RFM fields recorded (what export and runtime reproduce)."""
    config = backbone_config.__class__.from_dict(backbone_config.to_dict())
    config.rfm_kind = kind
    config.rfm_features = backbone_config.hidden_size if head == "identity" else features
    config.rfm_head = head
    config.rfm_head_hidden = head_hidden
    config.rfm_dropout = dropout
    config.rfm_pooling = "mean"
    config.rfm_max_length = max_length
    config.rfm_truncation = truncation
    config.rfm_backbone = backbone_name
    return config
