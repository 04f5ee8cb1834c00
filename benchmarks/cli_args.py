"""The options the benchmark scripts share: where the data, the work dir and the results live, and the seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The artifact the CPU latency benchmarks time by default: personalization.py's seed-0 TL;DR RFM.
TLDR_ARTIFACT = ROOT / "benchmarks" / "work" / "models" / "tldr" / "rfm-s0" / "artifact"


def benchmark_parser(doc: str | None, data_dir: bool = True, seeds: bool = True,
                     work: Path = ROOT / "benchmarks" / "work") -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as its help and --data-dir, --work, --out, --seeds."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data_dir:
        parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"),
                            help="The shared data (default: %(default)s).")
    parser.add_argument("--work", default=str(work), help="Splits, cached models and stages (default: %(default)s).")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="Where the results are written (default: %(default)s).")
    if seeds:
        parser.add_argument("--seeds", default="0,1,2", help="Comma-separated training seeds (default: %(default)s).")
    return parser


def command_line(script: str, parser: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]) -> str:
    """How a results file says it was made: the script and each of `names` that differs from its default."""
    return f"python benchmarks/{script}" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in names
        if getattr(args, name) != parser.get_default(name))


def add_artifact_options(parser: argparse.ArgumentParser) -> None:
    """--artifact (default: TLDR_ARTIFACT) and --threads (default 2): what the CPU latency benchmarks time."""
    parser.add_argument("--artifact", default=str(TLDR_ARTIFACT), help="Artifact to time (default: %(default)s).")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: %(default)s).")
