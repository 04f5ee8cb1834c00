"""`rfm train`'s options: one dataclass holds every default and its help text (no torch import).

The click options of `rfm train` are generated from these fields (`rfm.options.click_options`), as TRL
builds its argument parsers from `field(metadata={"help": ...})`, so a default or a help line lives in
one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rfm.options import click_options, opt


class Kind(str, Enum):
    """What `rfm train` trains."""

    RFM = "rfm"
    BASELINE = "baseline"  # one Bradley-Terry reward for everyone (d = 1, non-adaptive)
    LINEAR_PROBE = "linear-probe"  # the frozen encoder's embedding as features


class Pooling(str, Enum):
    LAYERS = "layers"
    RESPONSE = "response"
    MEAN = "mean"
    MEAN_RESPONSE = "mean+response"


# What `--val-split` may hold out; all but raters hold out texts (the trainer's TEXT_HOLDOUT_SPLITS).
VAL_SPLITS = ("raters", "prompts", "responses")


@dataclass
class TrainConfig:
    """Every knob of `rfm train`, with defaults that work on the shared data (see benchmarks/)."""

    kind: str = opt(Kind.RFM.value, "What to train.", tuple(k.value for k in Kind), cli=False)
    backbone: str = opt("minilm", "'minilm' (bundled all-MiniLM-L6-v2), a local Hugging Face folder, or a hub name.")
    features: int = opt(32, "Feature dimension d.")
    head: str = opt("linear", "Feature head. linear: on the pooled vector; mlp: a small MLP on it; tokens: linear "
                    "on the pooled vector plus the mean over the response's tokens of a small MLP of each token's "
                    "embedding-layer state (counts kinds of words: hedges, contractions, list markers).",
                    ("linear", "mlp", "tokens"))
    head_hidden: int = opt(256, "Hidden units of --head mlp and of --head tokens' per-token MLP.")
    tune: str = opt("head", "head: frozen cached encoder (CPU default); full: fine-tune everything (GPU).",
                     ("head", "full"))
    epochs: int = opt(40, "Maximum epochs (early stopping).")
    batch_size: int = opt(64, "Pairs per minibatch.")
    lr: float = opt(3e-3, "Learning rate of the head and W.")
    backbone_lr: float = opt(3e-5, "Learning rate of the encoder with --tune full.")
    weight_decay: float = opt(0.1, "AdamW decay of the head.")
    weight_decay_grid: str = opt("", "Comma-separated decays to try instead (e.g. 0.1,1,3,10; --tune head only). They "
                                 "are compared on validation pairs holding responses no training pair contains "
                                 "(--val-split responses, or prompts if given; RFM: few-shot accuracy, --baseline "
                                 "bt: log-loss), a winning largest value extends the grid, and the chosen decay is "
                                 "then trained on --val-split's own split and ships.")
    w_l2: float = opt(0.3, "L2 penalty on each rater's deviation from the shared weights.")
    dropout: float = opt(0.2, "Dropout on pooled embeddings.")
    max_length: int = opt(256, "Tokens per (prompt, response).")
    prompt_budget: int | None = opt(None, "Keep at most N tokens of each prompt (its beginning; the response keeps "
                                    "its tokens), in training and in the exported artifact: reranking costs "
                                    "what the shorter pairs cost (README: Speed). Default: no budget.")
    pooling: str = opt(Pooling.LAYERS.value,
                        "layers: mean over the response's tokens of every encoder layer plus log response length "
                        "(reads surface cues: length, lists, hedges, tone); response: last layer's mean over the "
                        "response; mean: over all tokens; mean+response: both. Backbones without segment ids "
                        "(RoBERTa, DistilBERT) pool over all tokens.", tuple(p.value for p in Pooling))
    standardize: bool = opt(False, "Standardise the pooled vector before the head (off: it overfits the "
                             "2,689-d layers vector on TL;DR).", cli=False)
    val_frac: float = opt(0.15, "Share of each rater's pairs used for validation and early stopping.")
    val_split: str = opt("raters", "What validation holds out. raters: --val-frac of each rater's pairs (their "
                         "responses may be in other raters' training pairs); prompts: every pair of --val-frac of "
                         "the prompts, so epochs and the prior are judged on responses no training pair contains, "
                         "as a newly generated candidate is (needs >= 20 distinct prompts); responses: every pair "
                         "holding one of --val-frac of the distinct responses, which no training pair contains "
                         "(works with a single prompt, e.g. Jester).", VAL_SPLITS)
    judge_frac: float = opt(0.15, "With 40 or more raters: share of raters (at least 8) kept out of training to "
                             "judge the epochs and the prior as new people (then adapted from all their pairs and "
                             "saved like the others); only they may shrink the prior. 0, or fewer raters: the "
                             "training raters' validation pairs judge.")
    patience: int = opt(6, "Epochs without a better score before stopping.")
    min_epochs: int = opt(10, "Never stop early before this epoch.")
    max_time: float = opt(0.0, "Stop training after this many seconds, keeping the best epoch so far (0: no limit).")
    w_init: float = opt(0.0, "Scale of random initial rater deviations (breaks the symmetry of opposing groups).")
    w_lr_scale: float = opt(1.0, "Learning rate of W relative to --lr.")
    selection: str = opt("fewshot", "What picks the epoch that ships (RFM): fewshot = accuracy of training raters "
                          "adapted from 0-20 of their choices (0 = the prior mean) on validation pairs with new "
                          "responses; loss = validation log-loss.", ("fewshot", "loss"))
    episodic_loss: float = opt(0.0, "Weight of the episodic term (RFM): raters adapted from 5-20 of their training "
                               "pairs by one Newton step of the MAP adapter, scored on their pairs that share no "
                               "response with those; trains features for few-shot adaptation to new responses. "
                               "0: off.")
    episode_raters: int = opt(8, "Raters adapted per minibatch by --episodic-loss.")
    min_pairs: int = opt(5, "Raters with fewer pairs are left out (reported).")
    probe_l2: float = opt(1.0, "Prior variance of --baseline linear-probe's per-user weights.", cli=False)
    population_loss: float = opt(1.0, "Weight of the BT loss of the shared weights alone (keeps the new-user "
                                  "prior strong).")
    warm_start: bool = opt(True, "Start the RFM from the fitted population reward (linear head).", cli=False)
    seed: int = opt(0, "Seed of the splits, initialisation and minibatch order.")


def cli_options():
    """click options for every CLI field of TrainConfig, defaults and help taken from the dataclass."""
    return click_options(TrainConfig)
