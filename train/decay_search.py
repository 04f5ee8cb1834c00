"""`--weight-decay-grid`: compare weight decays on held-out responses, then train the chosen one.

No single decay suits every dataset (benchmarks/results/personalization.md: weight decay 10 helps the
one-size reward on new jokes by 4 points and costs it 2.7 on Scenario 1), so a run can choose its own.
The decays are compared on validation pairs that hold a response no training pair contains (the run's
own `--val-split` when it is `prompts` or `responses`, else `responses`): on pairs whose responses
training saw, less decay wins by memorising them. The score is the one that picks epochs (an RFM's
few-shot accuracy of adapted raters, a baseline's validation log-loss). Holding out responses costs
training pairs (a quarter of them at the default --val-frac), so under `--val-split raters` the
chosen decay is trained once more on the run's own split, and that fit ships.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

from rfm.train.config import TrainConfig
from rfm.train.trainer import MIN_TEXTS_FOR_RESPONSE_SPLIT, TEXT_HOLDOUT_SPLITS, FitResult

from rfm.errors import UsageError

# A grid whose largest value wins grows by this factor, at most this many times.
EXTEND_FACTOR = 3.0
MAX_EXTENSIONS = 2


def parse_grid(text: str) -> tuple[float, ...]:
    """'0.1,1,3,10' -> (0.1, 1.0, 3.0, 10.0), sorted and distinct; '' -> ()."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}", param="weight_decay_grid") from None
    if any(v < 0 for v in values):
        raise UsageError("decays must be >= 0", param="weight_decay_grid")
    return tuple(values)


def search_split(cfg: TrainConfig) -> str:
    """The validation split the decays are compared on: the run's own if it holds out texts, else responses."""
    return cfg.val_split if cfg.val_split in TEXT_HOLDOUT_SPLITS else "responses"


def search_weight_decay(fit: Callable[[TrainConfig], FitResult], head, cfg: TrainConfig, n_texts: int
                        ) -> tuple[FitResult, TrainConfig, dict]:
    """Fit once per decay of `cfg.weight_decay_grid` from the head's current state, on `search_split`; returns
    the fit that ships (its state left in `head`), the config with the chosen decay, and what was tried."""
    split = search_split(cfg)
    if split == "responses" and n_texts < MIN_TEXTS_FOR_RESPONSE_SPLIT:
        raise UsageError(f"decays are compared on held-out responses, and the data has only {n_texts} distinct "
                         f"responses (at least {MIN_TEXTS_FOR_RESPONSE_SPLIT}); drop the grid",
                         param="weight_decay_grid")
    grid = list(parse_grid(cfg.weight_decay_grid))
    initial = copy.deepcopy(head.state_dict())
    tried: list[dict] = []
    best: tuple[FitResult, dict, float] | None = None
    extensions = 0
    while grid:
        decay = grid.pop(0)
        head.load_state_dict(initial)
        result = fit(dataclasses.replace(cfg, weight_decay=decay, val_split=split))
        tried.append({"weight_decay": decay, "score": result.score, "best_epoch": result.best_epoch,
                      **{k: result.metrics[k] for k in ("val_acc", "val_loss", "fewshot_acc") if k in result.metrics}})
        if best is None or result.score > best[0].score:
            best = (result, copy.deepcopy(head.state_dict()), decay)
        if not grid and best[2] == decay and extensions < MAX_EXTENSIONS and decay > 0:
            grid.append(decay * EXTEND_FACTOR)  # the edge won: the best decay may lie beyond it
            extensions += 1
    result, state, chosen = best
    chosen_cfg = dataclasses.replace(cfg, weight_decay=chosen)
    refit = split != cfg.val_split
    if refit:  # the search held out responses; train the chosen decay on the run's own split
        head.load_state_dict(initial)
        result = fit(chosen_cfg)
    else:
        head.load_state_dict(state)
    criterion = "few-shot accuracy on new responses" if "fewshot_acc" in result.metrics else "validation log-loss"
    search = {"tried": tried, "chosen": chosen, "criterion": criterion, "compared_on": f"--val-split {split}",
              "refit": refit, "extended": extensions}
    return result, chosen_cfg, search
