"""`rfm train`: the reward-feature model and its baselines (needs the [train] extra)."""

from __future__ import annotations

import click

from rfm.cli.common import echo_json, info
from rfm.errors import UsageError


def require_train_extra() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise UsageError("this command needs the training extra: pip install 'rfm[train]'") from None


@click.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True, help="Run dir to write.")
@click.option("--features", type=int, default=32, show_default=True, help="Feature dimension d.")
@click.option("--backbone", default="minilm", show_default=True,
              help="'minilm' (bundled all-MiniLM-L6-v2), a local Hugging Face folder, or a hub name.")
@click.option("--tune", type=click.Choice(["head", "full"]), default="head", show_default=True,
              help="head: frozen cached encoder (CPU default); full: fine-tune everything (GPU).")
@click.option("--head", type=click.Choice(["linear", "mlp"]), default="linear", show_default=True)
@click.option("--pooling", type=click.Choice(["layers", "response", "mean", "mean+response"]), default="layers",
              show_default=True, help="layers: mean over the response's tokens of every encoder layer plus log "
              "response length (reads surface cues: length, lists, hedges, tone); response: last layer's mean over "
              "the response; mean: over all tokens; mean+response: both. Backbones without segment ids "
              "(RoBERTa, DistilBERT) pool over all tokens.")
@click.option("--baseline", type=click.Choice(["bt", "linear-probe"]), default=None, is_flag=False,
              flag_value="bt", help="Train a baseline instead: 'bt' (bare --baseline) = non-adaptive "
              "Bradley-Terry reward model; 'linear-probe' = frozen encoder embeddings as features.")
@click.option("--epochs", type=int, default=40, show_default=True, help="Maximum epochs (early stopping).")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Learning rate of the head and W.")
@click.option("--backbone-lr", type=float, default=3e-5, show_default=True, help="With --tune full.")
@click.option("--weight-decay", type=float, default=0.1, show_default=True, help="AdamW decay of the head.")
@click.option("--w-l2", type=float, default=0.3, show_default=True,
              help="L2 penalty on each rater's deviation from the shared weights.")
@click.option("--dropout", type=float, default=0.2, show_default=True, help="Dropout on pooled embeddings.")
@click.option("--max-length", type=int, default=256, show_default=True, help="Tokens per (prompt, response).")
@click.option("--val-frac", type=float, default=0.15, show_default=True,
              help="Share of each rater's pairs used for validation and early stopping.")
@click.option("--patience", type=int, default=6, show_default=True, help="Epochs without a better score before stopping.")
@click.option("--min-epochs", type=int, default=10, show_default=True, help="Never stop early before this epoch.")
@click.option("--selection", type=click.Choice(["fewshot", "loss"]), default="fewshot", show_default=True,
              help="What picks the epoch that ships (RFM): fewshot = accuracy of training raters adapted from "
              "0-20 of their choices (0 = the prior mean) on validation pairs with new responses; loss = "
              "validation log-loss.")
@click.option("--w-init", type=float, default=0.0, show_default=True,
              help="Scale of random initial rater deviations (breaks the symmetry of opposing groups).")
@click.option("--w-lr-scale", type=float, default=1.0, show_default=True, help="Learning rate of W relative to --lr.")
@click.option("--min-pairs", type=int, default=5, show_default=True,
              help="Raters with fewer pairs are left out (reported).")
@click.option("--population-loss", type=float, default=1.0, show_default=True,
              help="Weight of the BT loss of the shared weights alone (keeps the new-user prior strong).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing run dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train(data: str, output: str, baseline: str | None, as_json: bool, quiet: bool, overwrite: bool,
          **options) -> None:
    """Train reward features phi(x, y) and per-rater weights W on DATA (JSONL with user_id).

    The objective is the Bradley-Terry likelihood sigmoid(<phi(x,y) - phi(x,y'), w_h>) with an L2
    penalty on W. The epoch kept is the one whose features serve a new user best: training raters
    adapted from a few of their choices, scored on validation pairs with responses they never
    judged. Writes a Hugging Face style run dir for `rfm export`.
    """
    require_train_extra()
    from rfm.train.run import describe
    from rfm.train.run import train as run_train
    from rfm.train.trainer import TrainConfig

    kind = {"bt": "baseline", "linear-probe": "linear-probe", None: "rfm"}[baseline]
    cfg = TrainConfig(kind=kind, **options)
    summary = run_train(data, output, cfg, overwrite=overwrite, progress=not quiet and not as_json)
    if as_json:
        echo_json({"output": output, **{k: v for k, v in summary.items() if k != "history"}})
    else:
        info(f"wrote {output}: {describe(summary)}")
    collapse = summary.get("collapse") or {}
    if collapse.get("collapsed"):
        click.echo(f"rfm: WARNING: no personalisation learned: {collapse['advice']}.", err=True)
