"""`rfm data ...`: convert, split, synth and describe preference files."""

from __future__ import annotations

from pathlib import Path

import click

from rfm.cli.common import RfmGroup, echo_json, info


@click.group(cls=RfmGroup)
def data() -> None:
    """Convert, split, synthesise and describe preference data (JSONL: prompt, chosen, rejected, user_id)."""


@data.command()
@click.option("--format", "fmt", type=click.Choice(["tldr", "ultrafeedback", "hh-rlhf", "jester"]), required=True,
              help="Source format (see ../shared/data/README.md). jester: SRC is the jester folder (ratings.csv "
              "+ jokes.csv); two jokes one user rated --min-gap apart make a pair.")
@click.argument("src", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Output JSONL file.")
@click.option("--min-gap", type=float, default=3.0, show_default=True,
              help="jester: smallest rating difference (on -10..+10) that counts as a preference.")
@click.option("--max-pairs", type=click.IntRange(1), default=100, show_default=True,
              help="jester: pairs kept per user at most (a seeded, deterministic subset).")
@click.option("--seed", type=int, default=0, show_default=True, help="jester: seed of the per-user subset.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def convert(fmt: str, src: tuple[str, ...], output: str, min_gap: float, max_pairs: int, seed: int,
            as_json: bool) -> None:
    """Convert public preference files (.jsonl or .jsonl.gz, or the Jester folder) to rfm's JSONL contract.

    Rows whose two responses are identical or empty carry no preference: they are dropped and counted.
    """
    from rfm.data.convert import ConvertReport
    from rfm.data.convert import convert as run_convert
    from rfm.data.jester import jester_pairs
    from rfm.data.jsonl import write_pairs
    from rfm.errors import UsageError

    report = ConvertReport()
    if fmt == "jester":
        if len(src) != 1:
            raise UsageError("--format jester takes one SRC: the jester folder (or its ratings.csv)")
        pairs = jester_pairs(src[0], report, min_gap, max_pairs, seed)
    else:
        pairs = run_convert(fmt, src, report)
    pairs = list(pairs)  # a bad row stops the conversion before anything is written
    if not pairs:
        raise UsageError(f"{', '.join(src)}: no pairs to convert ({report.summary()}); nothing written")
    write_pairs(output, pairs)
    if as_json:
        echo_json({"output": output, "rows": report.rows, "pairs": report.pairs, "dropped": dict(report.dropped)})
    else:
        info(f"wrote {output}: {report.summary()}")


@data.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--holdout-users", type=float, default=0.3, show_default=True,
              help="Fraction of users held out (never trained on).")
@click.option("--min-pairs", type=int, default=1, show_default=True,
              help="Users with fewer pairs go to neither side (reported).")
@click.option("--seen-frac", type=float, default=0.2, show_default=True,
              help="Share of each training rater's pairs kept for seen-user evaluation.")
@click.option("--item-holdout", type=float, default=0.0, show_default=True,
              help="Share of the prompts reserved for held-out users: training raters keep only their pairs on "
              "the other prompts, held-out users only theirs on these that share no response with the others "
              "(the rest is dropped, reported), so `rfm eval` scores responses no training pair contains, as a "
              "newly generated candidate is. 0: split by user only.")
@click.option("--items", type=click.Choice(["prompts", "responses"]), default="prompts", show_default=True,
              help="What --item-holdout reserves: prompts (a prompt's pairs go to one side), or responses, for "
              "data with one prompt such as Jester's jokes (a pair goes to the side holding both its responses; "
              "pairs across are dropped).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of which users are held out and which pairs go to seen_test (same seed, same split).")
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True,
              help="Output dir: train.jsonl, heldout.jsonl, seen_test.jsonl, split.json.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def split(src: str, holdout_users: float, min_pairs: int, seen_frac: float, item_holdout: float, items: str,
          seed: int, output: str, as_json: bool) -> None:
    """Split SRC by user into training raters and held-out users (no user on both sides); with
    --item-holdout also by prompt or response (no response on both sides)."""
    import json

    from rfm.data.split import split_by_user
    from rfm.fileio import atomic_open

    report = split_by_user(src, output, holdout_users, seed=seed, min_pairs=min_pairs, seen_frac=seen_frac,
                           item_holdout=item_holdout, items=items)
    summary = {"output": output, "seed": seed, "item_holdout": item_holdout, "items": items, **report.to_json()}
    with atomic_open(Path(output) / "split.json") as handle:
        json.dump(summary, handle, indent=1)
    if as_json:
        echo_json(summary)
    else:
        dropped = sum(report.dropped.values())
        info(f"wrote {output}: {len(report.train_users)} training raters ({report.counts['train']} train, "
             f"{report.counts['seen_test']} seen-test pairs), {len(report.heldout_users)} held-out users "
             f"({report.counts['heldout']} pairs); dropped {dropped} pairs")


@data.command()
@click.option("--scenario", type=click.IntRange(1, 3), required=True,
              help="1: raters broadly agree; 2: two groups with opposing weights; 3: taste: each rater has one "
              "checkable taste (detailed/brief, lists/prose, casual/formal, hedged/direct).")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--raters", type=click.IntRange(1), default=20, show_default=True, help="How many synthetic raters.")
@click.option("--pairs-per-rater", type=click.IntRange(1), default=100, show_default=True,
              help="Pairs each rater labels, drawn from SRC's pairs.")
@click.option("--temperature", type=float, default=0.1, show_default=True,
              help="Bradley-Terry temperature of the raters' choices (attributes are standardised).")
@click.option("--deterministic", is_flag=True, help="Raters always pick the higher true reward.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the raters' weights and choices.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Output JSONL; the raters' true weights go to OUT.raters.json beside it.")
def synth(scenario: int, src: str, raters: int, pairs_per_rater: int, temperature: float,
          deterministic: bool, seed: int, output: str) -> None:
    """Label SRC's real responses with synthetic raters (paper section 5.1)."""
    from rfm.data.synth import sidecar_path, synthesise

    synthesise(src, output, scenario, raters, seed=seed, pairs_per_rater=pairs_per_rater,
               temperature=temperature, deterministic=deterministic)
    info(f"wrote {output} ({raters} raters x {pairs_per_rater} pairs) and {sidecar_path(output)}")


@data.command()
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("--tokenizer", default="minilm", show_default=True,
              help="tokenizer.json path, 'minilm' (if installed) or 'words'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def stats(src: str, tokenizer: str, as_json: bool) -> None:
    """Pairs, users, pairs per user and text lengths of a preference file."""
    from rfm.data.stats import data_stats, word_count

    count, unit = word_count, "words"
    if tokenizer != "words":
        from rfm.runtime.tokenize import load_tokenizer_file

        tok = load_tokenizer_file(tokenizer)
        if tok is not None:
            tok.no_padding()  # the bundled tokenizer.json pads to 128: lengths must be the text's own
            tok.no_truncation()
            def count(text: str) -> int:
                return len(tok.encode(text, add_special_tokens=False).ids)
            unit = "tokens"
    result = data_stats(src, count, unit)
    if as_json:
        echo_json(result)
        return
    ppu, pl, rl = result["pairs_per_user"], result["prompt_length"], result["response_length"]
    click.echo(f"{src}: {result['pairs']} pairs, {result['users']} users "
               f"({result['pairs_without_user']} pairs without user_id), {result['distinct_prompts']} prompts")
    click.echo(f"  pairs per user  min {ppu['min']}  median {ppu['median']:g}  max {ppu['max']}")
    click.echo(f"  prompt {unit:<8} min {pl['min']}  median {pl['median']:g}  p90 {pl['p90']:g}  max {pl['max']}")
    click.echo(f"  response {unit:<6} min {rl['min']}  median {rl['median']:g}  p90 {rl['p90']:g}  max {rl['max']}")
