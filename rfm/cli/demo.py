"""`rfm demo`: the whole pipeline on real data, offline."""

from __future__ import annotations

from pathlib import Path

import click

from rfm.cli.common import info, int_list
from rfm.cli.train import require_train_extra
from rfm.train.config import TrainConfig


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with tldr/batch13.jsonl and tldr/batch18.jsonl (default: $RFM_DATA_DIR, else "
                   "../shared/data).")
@click.option("-o", "--output", type=click.Path(file_okay=False), default="rfm-demo", show_default=True,
              help="Folder for every output (runs, artifacts, evaluation, plot, summary.json).")
@click.option("--backbone", default=TrainConfig.backbone, show_default=True,
              help="As for rfm train: 'minilm' (bundled), a local Hugging Face folder, or a hub name.")
@click.option("--features", type=int, default=TrainConfig.features, show_default=True, help="Feature dimension d.")
@click.option("--shots", default="0,5,10,20", show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option("--max-pairs", type=click.IntRange(1), default=None, help="Use only the first N pairs (quick runs).")
@click.option("--min-pairs", type=click.IntRange(1), default=20, show_default=True,
              help="Workers with fewer pairs are left out of the split.")
@click.option("--taste-raters", type=click.IntRange(2), default=32, show_default=True,
              help="Synthetic people with one taste each (part 2).")
@click.option("--taste-pairs", type=click.IntRange(10), default=100, show_default=True,
              help="Choices per synthetic person (over real UltraFeedback responses).")
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--no-bench", is_flag=True, help="Skip the latency summary.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(data_dir, output, backbone, features, shots, repeats, max_pairs, min_pairs, taste_raters, taste_pairs,
         threads, no_bench, seed) -> None:
    """Run the whole pipeline on real data, offline.

    Part 1, real TL;DR raters: convert -> split workers -> train the RFM and the one-size baseline ->
    export (fp32 + int8) -> evaluate held-out workers on responses they never judged. Part 2,
    synthetic people with one taste each over real UltraFeedback responses: the same pipeline, then
    one held-out person adapted from a few choices and their ranking of new candidates before and
    after. Then latency. Re-runs reuse what has not changed.
    """
    require_train_extra()
    from rfm.demo import DemoConfig, run_demo
    from rfm.paths import default_data_dir
    from rfm.train.backbone import hub_offline

    hub_offline()
    cfg = DemoConfig(data_dir=default_data_dir(data_dir), output=Path(output), backbone=backbone, features=features,
                     shots=tuple(int_list(shots, "--shots")), repeats=repeats, max_pairs=max_pairs,
                     min_pairs=min_pairs, taste_raters=taste_raters, taste_pairs=taste_pairs, threads=threads,
                     bench=not no_bench, seed=seed)
    summary = run_demo(cfg, say=info)
    info(f"\ndone in {summary['total_seconds']:.0f}s. Everything is in {Path(output).resolve()}/ "
         f"(summary.json, accuracy_vs_shots.png, taste_accuracy_vs_shots.png, artifacts/, runs/)")
