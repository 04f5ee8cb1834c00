"""`--weight-decay-grid`: train the head once per weight decay and ship the one validation scores best.

No single decay suits every dataset (benchmarks/results/personalization.md: weight decay 10 helps the
one-size reward on new jokes by 3.7 points and costs it 2.7 on Scenario 1), so a run can choose its
own. Each value starts from the same initial head; the comparison uses the score that picks epochs
(an RFM's few-shot accuracy of adapted raters on new responses, a baseline's validation log-loss), so
it is only as honest as the validation split: with `--val-split raters` validation pairs share responses
with training pairs, and less decay wins by memorising them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

from rfm.train.config import TrainConfig
from rfm.train.trainer import FitResult

from rfm.errors import UsageError

# A grid whose largest value wins grows by this factor, at most this many times.
EXTEND_FACTOR = 3.0
MAX_EXTENSIONS = 2


def parse_grid(text: str) -> tuple[float, ...]:
    """'0.1,1,3,10' -> (0.1, 1.0, 3.0, 10.0), sorted and distinct; '' -> ()."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}",
                         param="weight_decay_grid") from None
    if any(v < 0 for v in values):
        raise UsageError("decays must be >= 0", param="weight_decay_grid")
    return tuple(values)


def search_weight_decay(fit: Callable[[TrainConfig], FitResult], head, cfg: TrainConfig
                        ) -> tuple[FitResult, TrainConfig, dict]:
    """Fit once per decay of `cfg.weight_decay_grid` from the head's current state; returns the best fit (its
    state left in `head`), the config with that decay, and what was tried."""
    grid = list(parse_grid(cfg.weight_decay_grid))
    initial = copy.deepcopy(head.state_dict())
    tried: list[dict] = []
    best: tuple[FitResult, dict, float] | None = None
    extensions = 0
    while grid:
        decay = grid.pop(0)
        head.load_state_dict(initial)
        result = fit(dataclasses.replace(cfg, weight_decay=decay))
        tried.append({"weight_decay": decay, "score": result.score, "best_epoch": result.best_epoch,
                      **{k: result.metrics[k] for k in ("val_acc", "val_loss", "fewshot_acc") if k in result.metrics}})
        if best is None or result.score > best[0].score:
            best = (result, copy.deepcopy(head.state_dict()), decay)
        if not grid and best[2] == decay and extensions < MAX_EXTENSIONS and decay > 0:
            grid.append(decay * EXTEND_FACTOR)  # the edge won: the best decay may lie beyond it
            extensions += 1
    result, state, chosen = best
    head.load_state_dict(state)
    criterion = "few-shot accuracy on new responses" if "fewshot_acc" in result.metrics else "validation log-loss"
    search = {"tried": tried, "chosen": chosen, "criterion": criterion, "val_split": cfg.val_split,
              "extended": extensions}
    return result, dataclasses.replace(cfg, weight_decay=chosen), search
