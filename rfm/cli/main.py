"""Entry point of the `rfm` console script."""

from __future__ import annotations

import click

from rfm import __version__
from rfm.cli.common import RfmGroup
from rfm.cli.data import data
from rfm.cli.demo import demo
from rfm.cli.export import export
from rfm.cli.runtime import adapt, ask, bench, check, evaluate_command, feedback, rerank, score, users
from rfm.cli.serve import serve
from rfm.cli.train import train


@click.group(cls=RfmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rfm")
def cli() -> None:
    """rfm: personalised reward-feature models.

    Train shared reward features on many raters (`rfm train`), export them to ONNX (`rfm export`),
    then adapt a tiny weight vector per user on their own machine (`rfm adapt`, `rfm feedback`,
    `rfm rerank`). `rfm demo` runs the whole pipeline offline on real data.
    """


cli.add_command(data)
cli.add_command(train)
cli.add_command(export)
for command in (evaluate_command, adapt, feedback, ask, score, rerank, users, check, serve, bench, demo):
    cli.add_command(command)


def _log_to_stderr() -> None:
    """Library warnings (logging "rfm") reach the terminal as `rfm: ...` lines; RFM_QUIET=1 keeps errors only."""
    import logging
    import os

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("rfm: %(message)s"))
    logger = logging.getLogger("rfm")
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if os.environ.get("RFM_QUIET") == "1" else logging.WARNING)
    logger.propagate = False


def main() -> None:
    _log_to_stderr()
    cli()


if __name__ == "__main__":
    main()
