"""Runtime commands (no torch needed): adapt, feedback, score, rerank, users."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from rfm.cli.common import RfmGroup, echo_json, info
from rfm.errors import UsageError
from rfm.options import AdaptOptions, BenchOptions, EvalOptions, RuntimeOptions, click_options


def runtime_options(func: Callable | None = None, *, prior: bool = True) -> Callable:
    """--store, --device, --precision, --threads (and --prior where choices are fitted): the runtime commands'."""
    if func is None:
        return lambda f: runtime_options(f, prior=prior)
    func = click_options(AdaptOptions)(func) if prior else func
    return click_options(RuntimeOptions)(func)


store_option = click_options(RuntimeOptions, exclude=("device", "precision", "threads"))


def load_model(artifact: str, store, device, precision, threads, prior=None):
    from rfm.runtime import RewardModel

    return RewardModel.load(artifact, device=device, precision=precision, threads=threads, store=store, prior=prior)


def read_candidates(source: str, fmt: str = "auto") -> list[str]:
    """Candidates from a file or '-' (stdin). `fmt` lines: every non-empty line is one candidate, verbatim;
    jsonl: one JSON string or object with a 'text' (or 'response') field per line; auto: jsonl for
    files ending in .jsonl/.json, lines otherwise (stdin included), so no plain text is ever read as JSON."""
    name = "<stdin>" if source == "-" else source
    if fmt == "auto":
        fmt = "jsonl" if source != "-" and Path(source).suffix.lower() in (".jsonl", ".json") else "lines"
    try:
        if source == "-":
            raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        else:
            path = Path(source)
            if not path.is_file():
                raise UsageError(f"{source}: no such candidates file")
            raw = path.read_bytes()
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text (byte {exc.start}); save the candidates as UTF-8") from None
    candidates = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if fmt == "lines":
            candidates.append(line)
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UsageError(f"{name}:{n}: bad JSON ({getattr(exc, 'msg', 'too deeply nested')}); "
                             "use --format lines for plain text") from None
        if isinstance(value, dict):
            value = value.get("text", value.get("response"))
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{name}:{n}: expected a string or an object with a 'text' field")
        candidates.append(value)
    if not candidates:
        raise UsageError(f"{name}: no candidates")
    return candidates


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--user", required=True, help="User id (any string).")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--replace", is_flag=True, help="Forget the user's earlier choices first.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (user, pairs, stored, file, w) as one JSON object.")
@runtime_options
def adapt(artifact, user, data, replace, as_json, **rt) -> None:
    """Adapt USER's weights from their choices in DATA (JSONL pairs; user_id ignored)."""
    from rfm.data.jsonl import load_pairs

    pairs = [(p.prompt, p.chosen, p.rejected) for p in load_pairs(data)]
    model = load_model(artifact, **rt)
    w = model.adapt(user, pairs, replace=replace)
    record = model.store.read(user)
    result = {"user": user, "pairs": len(pairs), "stored": len(record.deltas), "file": str(model.store.path(user)),
              "w": w.tolist()}
    if as_json:
        echo_json(result)
    else:
        info(f"adapted {user!r} on {len(pairs)} choices ({result['stored']} stored) -> {result['file']}")


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--user", required=True, help="User id (any string); a new id starts from the population prior.")
@click.option("--prompt", required=True, help="The prompt both responses answer.")
@click.option("--chosen", required=True, help="The response the user preferred.")
@click.option("--rejected", required=True, help="The response the user passed over.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (user, stored, feedback_total, w) as one JSON object.")
@runtime_options
def feedback(artifact, user, prompt, chosen, rejected, as_json, **rt) -> None:
    """Record one choice of USER and refit their weights on the device."""
    model = load_model(artifact, **rt)
    w = model.feedback(user, prompt, chosen, rejected)
    record = model.store.read(user)
    if as_json:
        echo_json({"user": user, "stored": len(record.deltas), "feedback_total": record.feedback_total,
                   "w": w.tolist()})
    else:
        info(f"recorded; {user!r} has {record.feedback_total} choices ({len(record.deltas)} stored)")


def candidates_input(func: Callable) -> Callable:
    """CANDIDATES (a file, or - for stdin) and --format: how rerank, score and ask read candidates."""
    func = click.option("--format", "fmt", type=click.Choice(["auto", "lines", "jsonl"]), default="auto",
                        show_default=True, help="How CANDIDATES is read: lines (one candidate per line, verbatim), "
                        "jsonl (a JSON string or {\"text\": ...} per line); auto: jsonl for .jsonl/.json files, "
                        "lines otherwise (stdin too).")(func)
    return click.argument("candidates", default="-")(func)


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--user", required=True, help="User id; one with no stored choices starts from the population prior.")
@click.option("--prompt", required=True, help="The prompt every candidate answers.")
@candidates_input
@click.option("--method", type=click.Choice(["information", "uncertainty"]), default="information",
              show_default=True, help="information: the pair whose answer is expected to teach the most about the "
              "user's weights; uncertainty: the pair whose choice is closest to a coin flip. Measured against random "
              "questions on held-out users (benchmarks/results/questions.md): after 5 answers information is "
              "2.7-4.5 points better where people disagree (synthetic tastes), level on TL;DR and Jester; "
              "uncertainty is no better than random.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: user, method, pair (two candidates "
              "with index and text).")
@runtime_options
def ask(artifact, user, prompt, candidates, fmt, method, as_json, **rt) -> None:
    """Which two of CANDIDATES (a file, or - for stdin) to show USER next: the comparison whose answer
    teaches the most about their taste, given their stored choices. Record the answer with `rfm feedback`."""
    texts = read_candidates(candidates, fmt)
    model = load_model(artifact, **rt)
    pair = model.next_question(user, prompt, texts, method)
    rows = [{"index": i, "text": texts[i]} for i in pair]
    if as_json:
        echo_json({"user": user, "method": method, "pair": rows})
        return
    click.echo(f"ask {user!r}: which is better?")
    for row in rows:
        click.echo(f"  [{row['index']}] {row['text'].replace(chr(10), ' ')[:100]}")
    info("then record the answer: rfm feedback ARTIFACT --user USER --prompt PROMPT --chosen ... --rejected ...")


def _score_command(name: str, doc: str, top_k_option: bool) -> click.Command:
    @click.argument("artifact", type=click.Path(file_okay=False))
    @click.option("--user", required=True, help="User id; one with no stored choices gets the population prior.")
    @click.option("--prompt", required=True, help="The prompt every candidate answers.")
    @candidates_input
    @click.option("--json", "as_json", is_flag=True,
                  help="Print one JSON object: user, personalised, candidates (index, score, text).")
    @runtime_options(prior=False)  # scores use the user's stored w; the prior matters only when fitting
    def command(artifact, user, prompt, candidates, fmt, as_json, top_k=None, **rt) -> None:
        texts = read_candidates(candidates, fmt)
        model = load_model(artifact, **rt)
        ranked = model.rerank(user, prompt, texts, top_k=top_k)
        if not top_k_option:
            ranked.sort(key=lambda r: r.index)
        rows = [{"index": r.index, "score": r.score, "text": r.text} for r in ranked]
        personal = model.store.read(user) is not None
        if as_json:
            echo_json({"user": user, "personalised": personal, "candidates": rows})
            return
        if not personal:
            info(f"note: no stored choices for {user!r}; using the population prior")
        for rank, r in enumerate(rows, start=1):
            text = r["text"].replace("\n", " ")
            click.echo(f"{rank:>3}  {r['score']:+8.3f}  [{r['index']}] {text[:100]}")

    if top_k_option:
        command = click.option("--top-k", type=click.IntRange(1), default=None,
                               help="Show only the best K.")(command)
    command.__doc__ = doc
    return click.command(name)(command)


rerank = _score_command("rerank", "Rank CANDIDATES (a file, or - for stdin; see --format) for USER, best first.",
                        True)
score = _score_command("score", "Score CANDIDATES (file or -) for USER, in input order.", False)


@click.group(cls=RfmGroup)
def users() -> None:
    """List, show or delete the users stored for an artifact."""


def _store(artifact: str, store: str | None):
    from rfm.runtime import UserStore, load_artifact

    art = load_artifact(artifact)
    return UserStore(art.fingerprint, art.features, store)


@users.command("list")
@click.argument("artifact", type=click.Path(file_okay=False))
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: users, and files that could not be read.")
def users_list(artifact, store, as_json) -> None:
    """Users with stored weights for ARTIFACT."""
    records, problems = _store(artifact, store).scan()
    rows = [{"user": r.user_id, "stored": len(r.deltas), "feedback_total": r.feedback_total,
             "updated": r.updated} for r in records]
    if as_json:
        echo_json({"users": rows, "unreadable": [str(p) for p in problems]})
    else:
        for row in rows:
            click.echo(f"{row['user']}\t{row['feedback_total']} choices")
    for problem in problems:
        info(f"rfm: warning: {problem}")


@users.command("show")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("user")
@store_option
def users_show(artifact, user, store) -> None:
    """Everything stored for USER, as JSON."""
    user_store = _store(artifact, store)
    record = user_store.read(user)
    if record is None:
        raise UsageError(f"no stored data for user {user!r} in {user_store.folder}")
    echo_json({**record.to_json(), "file": str(user_store.path(user))})


@users.command("delete")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("user")
@store_option
def users_delete(artifact, user, store) -> None:
    """Delete everything stored for USER."""
    if _store(artifact, store).delete(user):
        info(f"deleted {user!r}")
    else:  # deleting is idempotent: a script that deletes twice (or a user never seen) is not an error
        info(f"nothing was stored for {user!r}")


@users.command("migrate")
@click.argument("artifact", type=click.Path(file_okay=False))
@store_option
def users_migrate(artifact, store) -> None:
    """Refit, for ARTIFACT, every user stored under an earlier artifact in the same store (from their stored
    choices). Happens by itself on a user's first use of ARTIFACT; this does all of them at once."""
    model = load_model(artifact, store, "auto", "auto", None)
    moved = []
    for user in model.store.others():
        if model.store.read(user) is None:
            model.record(user)  # refits them from their newest stored choices
            moved.append(user)
    info(f"refitted {len(moved)} user(s) for {artifact}" + (f": {', '.join(moved[:10])}" if moved else ""))


@users.command("export")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("user")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="JSON file to write ('-': stdout).")
@store_option
def users_export(artifact, user, output, store) -> None:
    """Everything stored for USER (weights, choices, counts) as one JSON file, to move to another machine."""
    from rfm.fileio import atomic_open

    record = _store(artifact, store).read(user)
    if record is None:
        raise UsageError(f"no stored data for user {user!r}")
    if output == "-":
        echo_json(record.to_json())
        return
    with atomic_open(output, private=True) as handle:
        json.dump(record.to_json(), handle)
    info(f"wrote {output}")


@users.command("import")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("source", type=click.Path(dir_okay=False))
@store_option
@click.option("--replace", is_flag=True, help="Replace what this store holds for the user (default: refuse).")
def users_import(artifact, source, store, replace) -> None:
    """Load a user exported with `rfm users export`: as is for the same artifact, else refitted from their
    choices."""
    from rfm.runtime.store import StoreError, parse_user_file

    model = load_model(artifact, store, "auto", "auto", None)
    try:
        raw = Path(source).read_bytes() if source != "-" else sys.stdin.buffer.read()
        record = parse_user_file(raw, source)  # validated exactly as the store reads its own files
    except OSError as exc:
        raise UsageError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    except StoreError as exc:
        raise UsageError(f"{source}: not a user file from `rfm users export` ({str(exc).split(': ', 1)[-1]})") from None
    user = record.user_id
    if model.store.read(user) is not None and not replace:
        raise UsageError(f"{user!r} already has data for this artifact; pass --replace to overwrite it")
    if record.fingerprint == model.artifact.fingerprint:
        with model.store.locked(user):
            model.store.write(record)
        info(f"imported {user!r} ({len(record.deltas)} choices, weights as exported)")
    elif record.choices:
        model.adapt(user, record.choices, replace=True, prior=record.prior)
        info(f"imported {user!r}: refitted from {len(record.choices)} stored choices (exported from another model)")
    else:
        raise UsageError(f"{source}: exported from another model and holds no choices to refit from")


@click.command("eval")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click_options(EvalOptions)
@click.option("--adapter", type=click.Choice(["map", "l2"]), default=None, hidden=True,
              help="Old name of --prior: map = population, l2 = none.")
@click.option("--disjoint-responses", is_flag=True, hidden=True,
              help="Kept for old scripts: new-response accuracy is now always the headline.")
@click_options(RuntimeOptions, exclude=("store",))
@click.option("--json", "as_json", is_flag=True, help="Print all figures as one JSON object.")
def evaluate_command(artifact, data, shots, repeats, seed, prior, adapter, C, disjoint_responses, seen, versus,
                     questions, device, precision, threads, as_json) -> None:
    """Accuracy of personalised rewards on DATA: held-out users adapted from m of their choices.

    The headline is accuracy on pairs whose responses the user never judged while adapting (what a
    reranker meets); accuracy on pairs that may re-use judged responses is shown beside it. Every
    column covers the same users.
    """
    from rfm.cli.common import int_list
    from rfm.evaluation import evaluate

    prior = {"map": "population", "l2": "none"}[adapter] if adapter else prior
    result = evaluate(artifact, data, int_list(shots, "--shots"), repeats, seed, prior, precision, device,
                      threads, seen, C, progress=not as_json, versus=versus, questions=questions)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['artifact']} ({result['kind']}, {result['precision']}, adapter {result['adapter']})")
    if result["seen"]:
        s = result["seen"]
        click.echo(f"seen users: {s['users']}, accuracy {s['accuracy']:.3f} on {s['pairs']} pairs")
    else:
        heldout, shared = result["heldout"], result["heldout_shared_responses"]
        click.echo(f"held-out users: {heldout['users']} at every m ({heldout['excluded_users']} left out: too few "
                   "pairs for the largest m with a new-response test pair)")
        click.echo(f"{'m':>5}  {'new responses':>13}  {'95% CI':>15}  {'shared responses':>16}")
        for m, row in heldout["shots"].items():
            lo, hi = row["ci95"]
            click.echo(f"{m:>5}  {row['accuracy']:13.3f}  [{lo:.3f}, {hi:.3f}]  "
                       f"{shared['shots'][m]['accuracy']:16.3f}")
        if result.get("versus"):
            versus = result["versus"]
            click.echo(f"minus {versus['artifact']} ({versus['kind']}), paired over the same users, new responses:")
            for m, row in versus["shots"].items():
                lo, hi = row["ci95"]
                click.echo(f"{m:>5}  {100 * row['diff']:+6.1f} points  [{100 * lo:+.1f}, {100 * hi:+.1f}]  "
                           f"({row['users']} users)")
        if result.get("questions"):
            _echo_questions(result["questions"])
        width = result.get("prior_width")
        if width:
            click.echo(f"prior width: +{width['margin_variance']:g} logit^2 (chosen at training)")


def _echo_questions(q: dict) -> None:
    """`rfm eval --questions`: accuracy after m random pairs vs m asked ones, and the paired difference."""
    click.echo(f"asked vs random, {q['users']} users ({q['excluded_users']} left out: a pool under the largest m or "
               f"under 5 test pairs); pool {q['pool_pairs']:.0f} pairs, test {q['test_pairs']:.0f} new-response pairs:")
    click.echo(f"{'m':>5}  {'random':>7}  {'asked':>7}  {'asked - random, paired':>30}")
    random, asked = q["strategies"]["random"], q["strategies"]["information"]
    for m, row in random["shots"].items():
        diff = asked["minus_random"][m]
        lo, hi = diff["ci95"]
        click.echo(f"{m:>5}  {row['accuracy']:7.3f}  {asked['shots'][m]['accuracy']:7.3f}  "
                   f"{100 * diff['diff']:+9.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}]")


@click.command()
@click.argument("artifact", type=click.Path(file_okay=False))
@click_options(BenchOptions)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the full result to this JSON file ('-' for stdout).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of latency vs sequence length.")
def bench(artifact, device, precision, batch, seq_len, full, threads, repeats, warmup, min_time, compare, run_dir,
          json_path, plot_path) -> None:
    """Latency and throughput of ARTIFACT: grid of device x precision x batch x length, plus tokenisation,
    rerank, adaptation, cold start and peak memory. Cells whose p90 exceeds 2 x p50 are marked unstable."""
    from rfm.bench import markdown_table, plot, run_bench, save_json
    from rfm.cli.common import int_list, str_list
    from rfm.runtime import load_artifact

    torch_run = None
    if compare == "torch":
        torch_run = run_dir or load_artifact(artifact).manifest.export.get("source_run")
        if not torch_run or not Path(torch_run).is_dir():
            raise UsageError("--compare torch: pass --run RUN (the run dir this artifact was exported from)")
    result = run_bench(artifact, str_list(device, "--device", ("cpu", "cuda")),
                       str_list(precision or ("fp32,int8,fp16" if full else "auto"), "--precision",
                                ("auto", "fp32", "int8", "fp16")), int_list(batch, "--batch"),
                       int_list(seq_len or ("64,128,256,512" if full else "256"), "--seq-len"), threads, repeats,
                       warmup, min_time, torch_run,
                       progress=lambda m: None if json_path == "-" else info(f"  {m}"))
    if json_path == "-":
        echo_json(result)
    else:
        if json_path:
            save_json(result, json_path)
        click.echo(markdown_table(result))
    if plot_path:
        plot(result, plot_path)


@click.command("check")
@click.argument("artifact", type=click.Path(file_okay=False))
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to run the conformance check (cuda needs onnxruntime-gpu and a GPU).")
@click.option("--threads", type=click.IntRange(1), default=None, help="onnxruntime intra-op threads.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(artifact, device, threads, as_json) -> None:
    """Verify ARTIFACT on this machine: the manifest, every file's sha256, and that this runtime reproduces the
    exported tokens and features (conformance.json) with each precision the device runs (CPU: fp32, int8;
    CUDA: fp16, fp32). Exits 1 if any check fails."""
    from rfm.errors import RfmError
    from rfm.runtime import load_artifact
    from rfm.runtime.conformance import check_conformance

    art = load_artifact(artifact, verify="all")
    skip = "fp16" if device == "cpu" else "int8"  # fp16 is a GPU precision; int8 graphs are CPU graphs
    runs = [p for p in art.precisions if p != skip]
    reports = [check_conformance(art, p, device, threads) for p in runs]
    result = {"artifact": str(artifact), "fingerprint": art.fingerprint, "files_verified": len(art.manifest.files),
              "conformance": reports, "ok": all(r["ok"] for r in reports)}
    if as_json:
        echo_json(result)
    else:
        info(f"{artifact}: manifest and {result['files_verified']} files verified")
        for r in reports:
            info(f"  {r['precision']} on {r['device']}: tokens {'match' if r['tokens_match'] else 'DIFFER'}, "
                 f"min cosine {r['min_cosine']:.5f} (needs >= {r['required']}): {'ok' if r['ok'] else 'FAILED'}")
    if not result["ok"]:
        raise RfmError(f"{artifact}: this runtime does not reproduce the exported features (see above)")
