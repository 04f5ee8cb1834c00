"""`rfm train`: the reward-feature model and its baselines (needs the [train] extra)."""

from __future__ import annotations

import click

from rfm.cli.common import echo_json, info
from rfm.errors import UsageError
from rfm.train.config import TrainConfig, cli_options


def require_train_extra() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise UsageError("this command needs the training extra: pip install 'rfm[train]'") from None


@click.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True, help="Run dir to write.")
@click.option("--baseline", type=click.Choice(["bt", "linear-probe"]), default=None, is_flag=False,
              flag_value="bt", help="Train a baseline instead: 'bt' (bare --baseline) = non-adaptive "
              "Bradley-Terry reward model; 'linear-probe' = frozen encoder embeddings as features.")
@cli_options()
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
    from rfm.train.run import describe, is_main_process
    from rfm.train.run import train as run_train

    kind = {"bt": "baseline", "linear-probe": "linear-probe", None: "rfm"}[baseline]
    cfg = TrainConfig(kind=kind, **options)
    summary = run_train(data, output, cfg, overwrite=overwrite, progress=not quiet and not as_json)
    if not is_main_process():
        return
    if as_json:
        echo_json({"output": output, **{k: v for k, v in summary.items() if k != "history"}})
    else:
        info(f"wrote {output}: {describe(summary)}")
    collapse = summary.get("collapse") or {}
    if collapse.get("collapsed"):
        click.echo(f"rfm: WARNING: no personalisation learned: {collapse['advice']}.", err=True)
