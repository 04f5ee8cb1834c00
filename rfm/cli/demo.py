"""`rfm demo`: the whole pipeline on real data, offline."""

from __future__ import annotations

import click

from rfm.cli.common import info
from rfm.cli.train import require_train_extra
from rfm.demo import DemoConfig
from rfm.options import click_options


@click.command()
@click_options(DemoConfig)
def demo(**options) -> None:
    """Run the whole pipeline on real data, offline.

    Part 1, real TL;DR raters: convert -> split workers -> train the RFM and the one-size baseline ->
    export (fp32 + int8) -> evaluate held-out workers on responses they never judged. Part 2,
    synthetic people with one taste each over real UltraFeedback responses, held-out people judged on
    prompts no training rater labelled: the same pipeline, then one held-out person adapted from a few
    choices and their ranking of candidates nobody trained on, before and after. Then latency. Re-runs
    reuse what has not changed.
    """
    require_train_extra()
    from rfm.demo import run_demo
    from rfm.train.backbone import hub_offline

    hub_offline()
    cfg = DemoConfig(**options)
    summary = run_demo(cfg, say=info)
    info(f"\ndone in {summary['total_seconds']:.0f}s. Everything is in {cfg.output.resolve()}/ "
         f"(summary.json, accuracy_vs_shots.png, taste_accuracy_vs_shots.png, artifacts/, runs/)")
