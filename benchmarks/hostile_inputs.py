"""Hostile and careless inputs through the CLI, counted: handled cleanly, and data lost (must stay 0).

    .venv/bin/python benchmarks/hostile_inputs.py [--artifact ART] [--kills 20]

Every input runs a real `rfm` command in this process (click's runner). "Handled cleanly": the command
ends with exit code 0, 1 or 2, and a failure prints exactly one `rfm: error:` line and no traceback;
a command that writes a file leaves it complete or absent. "Data lost": a user file that was readable
before and is not (or is changed) after an input that should not have touched it, and user files
broken by killing writers with SIGKILL mid-write. Writes benchmarks/results/hostile_inputs.{json,md}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rfm.runtime.store import UserRecord, UserStore  # noqa: E402

from rfm.cli.main import cli  # noqa: E402
from rfm.data.jsonl import read_pairs  # noqa: E402

GOOD = {"prompt": "What is a good name for a cat?", "chosen": "Mochi, short and friendly.", "rejected": "cat",
        "user_id": "u1"}


def hostile_lines() -> list[tuple[str, bytes]]:
    """(label, file content) for preference files."""
    good = json.dumps(GOOD).encode()
    cases = [
        ("empty file", b""), ("blank lines only", b"\n\n\n"), ("not JSON", b"hello world"),
        ("truncated JSON", good[:20]), ("JSON array", b"[1, 2, 3]"), ("JSON string", b'"text"'),
        ("deep nesting", b"[" * 50_000 + b"]" * 50_000), ("non-UTF-8 bytes", b'{"prompt": "caf\xe9"}'),
        ("lone surrogate", json.dumps({**GOOD, "prompt": "a\ud800"}).encode()),
        ("NUL in a response", json.dumps({**GOOD, "chosen": "a\x00b"}).encode()),
        ("identical responses", json.dumps({**GOOD, "rejected": GOOD["chosen"]}).encode()),
        ("empty response", json.dumps({**GOOD, "chosen": "  "}).encode()),
        ("huge line (40 MB)", json.dumps({**GOOD, "chosen": "x" * (40 << 20)}).encode()),
        ("5 MB response", json.dumps({**GOOD, "chosen": "word " * (1 << 20)}).encode()),
        ("BOM", b"\xef\xbb\xbf" + good), ("CRLF", good + b"\r\n" + good + b"\r\n"),
    ]
    for key in ("prompt", "chosen", "rejected", "user_id"):
        for label, value in (("number", 3), ("float", 1.5), ("list", ["a"]), ("object", {"a": 1}), ("null", None),
                             ("bool", True), ("NaN", float("nan"))):
            cases.append((f"{key} as {label}", json.dumps({**GOOD, key: value}).encode()))
        missing = {k: v for k, v in GOOD.items() if k != key}
        cases.append((f"{key} missing", json.dumps(missing).encode()))
    return [(label, good + b"\n" + body + b"\n") for label, body in cases]


def tldr_rows() -> list[tuple[str, dict]]:
    row = {"info": {"id": "t1", "post": "a post", "title": "a title"}, "summaries": [{"text": "one"}, {"text": "two"}],
           "choice": 0, "worker": "w1", "batch": "b"}
    changes = [("choice 0.0", {"choice": 0.0}), ("choice true", {"choice": True}), ("choice 2", {"choice": 2}),
               ("extra as string", {"extra": "x"}), ("worker as list", {"worker": ["w"]}),
               ("three summaries", {"summaries": [{"text": "a"}] * 3}), ("summary not object", {"summaries": [1, 2]}),
               ("NUL in summary", {"summaries": [{"text": "a\x00"}, {"text": "b"}]}), ("info missing", {"info": None}),
               ("title as number", {"info": {"post": "p", "title": 5}}), ("post missing", {"info": {"title": "t"}}),
               ("identical summaries", {"summaries": [{"text": "a"}, {"text": "a"}]})]
    return [(label, {**row, **change}) for label, change in changes]


def manifest_edits() -> list[tuple[str, object]]:
    return [("precision path escapes", lambda m: m["precisions"].update(int8="../x/model_int8.onnx")),
            ("file name with folder", lambda m: m["files"].update({"a/b.onnx": "0" * 64})),
            ("features as string", lambda m: m.update(features="8")), ("features 0", lambda m: m.update(features=0)),
            ("features huge", lambda m: m.update(features=10 ** 9)), ("max_length 1", lambda m: m.update(max_length=1)),
            ("max_length beyond positions", lambda m: m.update(max_length=4096)),
            ("truncation empty", lambda m: m.update(truncation={})), ("precisions empty", lambda m: m.update(precisions={})),
            ("inputs wrong", lambda m: m.update(inputs="input_ids")), ("adaptive as string", lambda m: m.update(adaptive="y")),
            ("fingerprint edited", lambda m: m.update(fingerprint="0" * 64)),
            ("int8 hash swapped", lambda m: m["files"].update({"model_int8.onnx": m["files"]["model.onnx"]})),
            ("format version 99", lambda m: m.update(format_version=99)), ("not an object", lambda m: None),
            ("manifest deleted", lambda m: "delete"), ("tokenizer hash wrong", lambda m: m["files"].update(
                {"tokenizer.json": "0" * 64}))]


def user_file_damage() -> list[tuple[str, bytes | None]]:
    return [("empty", b""), ("truncated", None), ("not JSON", b"garbage"), ("number too large", b"1e999"),
            ("a folder", b"DIR"), ("NaN weight", b"NAN"), ("other user's data", b"OTHER"), ("deep nesting", b"[" * 50000)]


def candidate_files() -> list[tuple[str, bytes, str]]:
    return [("plain line starting with a quote", b'"Quoted" answer\nplain\n', "lines"),
            ("JSONL strings", b'"a"\n"b"\n', "jsonl"), ("JSONL bad", b'{"text": \n', "jsonl"),
            ("non-UTF-8", b"caf\xe9\n", "lines"), ("empty", b"", "lines"), ("only blank lines", b"\n \n", "lines"),
            ("5 MB candidate", b"word " * (1 << 20) + b"\n", "lines"), ("5000 candidates", b"x\n" * 5000, "lines"),
            ("JSONL object without text", b'{"a": 1}\n', "jsonl"), ("deep JSON", b"[" * 50000 + b"\n", "jsonl")]


def bad_options(art: str) -> list[tuple[str, list[str]]]:
    return [("--top-k 0", ["rerank", art, "--user", "u", "--prompt", "p", "--top-k", "0", "-"]),
            ("--threads 0", ["score", art, "--user", "u", "--prompt", "p", "--threads", "0", "-"]),
            ("--precision fp64", ["score", art, "--user", "u", "--prompt", "p", "--precision", "fp64", "-"]),
            ("--device tpu", ["score", art, "--user", "u", "--prompt", "p", "--device", "tpu", "-"]),
            ("--shots x", ["eval", art, "nope.jsonl", "--shots", "x"]),
            ("--temperature nan", ["data", "synth", "--scenario", "2", "x.jsonl", "-o", "y.jsonl", "--temperature", "nan"]),
            ("--holdout-users 2", ["data", "split", "x.jsonl", "-o", "out", "--holdout-users", "2"]),
            ("artifact is a file", ["score", __file__, "--user", "u", "--prompt", "p", "-"]),
            ("artifact missing", ["score", "/nonexistent/art", "--user", "u", "--prompt", "p", "-"]),
            ("store under a file", ["feedback", art, "--user", "u", "--prompt", "p", "--chosen", "a", "--rejected", "b",
                                    "--store", __file__ + "/s"]),
            ("empty user id", ["feedback", art, "--user", "", "--prompt", "p", "--chosen", "a", "--rejected", "b"]),
            ("identical choice", ["feedback", art, "--user", "u", "--prompt", "p", "--chosen", "a", "--rejected", "a"]),
            ("unknown command", ["frobnicate"]), ("unknown option", ["train", "x", "--nope"])]


def clean(result) -> bool:
    """Exit 0/1/2, no escaped exception, and a failure says exactly one `rfm: error:` line."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return False
    if result.exit_code not in (0, 1, 2) or "Traceback" in result.output:
        return False
    errors = [line for line in result.output.splitlines() if line.startswith("rfm: error:")]
    usage = result.exit_code == 2 and "Usage:" in result.output  # click's own usage errors
    return result.exit_code == 0 or len(errors) == 1 or usage


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.json")} if folder.is_dir() else {}


def write_forever(root: str, fingerprint: str, d: int) -> None:
    store = UserStore(fingerprint, d, root)
    i = 0
    while True:
        with store.locked("victim"):
            record = store.read("victim") or UserRecord("victim", fingerprint, np.zeros(d), np.zeros((0, d)))
            record.deltas = np.vstack([record.deltas, np.full((1, d), float(i))])
            record.feedback_total += 1
            store.write(record)
        i += 1


def kill_writers(kills: int, fingerprint: str, d: int) -> dict:
    """Kill a writer mid-loop `kills` times; lost: the file unreadable, or fewer choices than a kill before."""
    ctx = mp.get_context("spawn")
    lost, seen = 0, 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        store = UserStore(fingerprint, d, root)
        for _ in range(kills):
            proc = ctx.Process(target=write_forever, args=(root, fingerprint, d))
            proc.start()
            time.sleep(1.0 + rng.random())  # the child needs ~0.5 s to start writing
            os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            try:
                record = store.read("victim")
                total = record.feedback_total if record is not None else 0
                lost += int(total < seen)
                seen = max(seen, total)
            except Exception:
                lost += 1
    return {"tried": kills, "clean": kills - lost, "lost": lost, "choices_written": seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", default=str(ROOT / "benchmarks" / "work" / "models" / "s2" / "rfm-s0" / "artifact"))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    os.environ["RFM_QUIET"] = "1"
    runner = CliRunner()
    tmp = Path(tempfile.mkdtemp(prefix="rfm-hostile-"))
    store = tmp / "store"
    art = str(args.artifact)
    categories: dict[str, dict] = {}
    failures: list[str] = []

    def record(category: str, label: str, ok: bool, lost: int = 0) -> None:
        entry = categories.setdefault(category, {"tried": 0, "clean": 0, "lost": 0})
        entry["tried"] += 1
        entry["clean"] += int(ok)
        entry["lost"] += lost
        if not ok or lost:
            failures.append(f"{category}: {label}")

    # A user with data that no hostile input may damage.
    runner.invoke(cli, ["feedback", art, "--user", "keeper", "--prompt", "p", "--chosen", "a fine answer",
                        "--rejected", "no", "--store", str(store)])
    before = digest(next(store.glob("*"), store))

    for label, content in hostile_lines():
        path = tmp / "data.jsonl"
        path.write_bytes(content)
        out = tmp / "split"
        shutil.rmtree(out, ignore_errors=True)
        ok = all(clean(runner.invoke(cli, cmd)) for cmd in (["data", "stats", str(path), "--tokenizer", "words"],
                                                             ["data", "split", str(path), "-o", str(out)]))
        complete = not out.exists() or all((out / f).is_file() for f in ("train.jsonl", "heldout.jsonl", "split.json"))
        result = runner.invoke(cli, ["adapt", art, "--user", "keeper2", str(path), "--store", str(store)])
        record("preference files", label, ok and complete and clean(result))
    for label, row in tldr_rows():
        path, out = tmp / "tldr.jsonl", tmp / "converted.jsonl"
        out.unlink(missing_ok=True)
        path.write_text(json.dumps(row) + "\n")
        result = runner.invoke(cli, ["data", "convert", "--format", "tldr", str(path), "-o", str(out)])
        complete = not out.exists() or bool(list(read_pairs(out)))
        record("converters", label, clean(result) and complete)
    for label, edit in manifest_edits():
        copy = tmp / "art"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(art, copy)
        manifest = json.loads((copy / "rfm.json").read_text())
        if edit(manifest) == "delete":
            (copy / "rfm.json").unlink()
        else:
            (copy / "rfm.json").write_text(json.dumps([1] if label == "not an object" else manifest))
        result = runner.invoke(cli, ["score", str(copy), "--user", "u", "--prompt", "p " * 3000, "-",
                                     "--store", str(tmp / "store2")], input="r " * 3000 + "\n")
        record("artifacts (edited manifests)", label, clean(result) and result.exit_code != 0)
    for label, damage in user_file_damage():
        victim_store = tmp / "store3"
        shutil.rmtree(victim_store, ignore_errors=True)
        for user in ("ann", "bob"):
            runner.invoke(cli, ["feedback", art, "--user", user, "--prompt", "p", "--chosen", "yes please",
                                "--rejected", "no", "--store", str(victim_store)])
        folder = next(victim_store.glob("*"))
        files = sorted(folder.glob("*.json"))
        target, other = files[0], files[1]
        original = target.read_bytes()
        if damage == b"DIR":
            target.unlink()
            target.mkdir()
        elif damage is None:
            target.write_bytes(original[: len(original) // 2])
        elif damage == b"NAN":
            target.write_bytes(original.replace(b'"w": [', b'"w": [NaN, ', 1))
        elif damage == b"OTHER":
            target.write_bytes(other.read_bytes())
        else:
            target.write_bytes(damage)
        damaged = target.read_bytes() if target.is_file() else None
        results = [runner.invoke(cli, ["users", "list", art, "--store", str(victim_store), "--json"])]
        results += [runner.invoke(cli, ["feedback", art, "--user", user, "--prompt", "p", "--chosen", "yes",
                                        "--rejected", "no", "--store", str(victim_store)]) for user in ("ann", "bob")]
        listed = json.loads(results[0].stdout) if results[0].exit_code == 0 else {"users": []}
        lost = int(not any(u["user"] in ("ann", "bob") for u in listed["users"]))  # the healthy user must list
        lost += int(target.is_file() and target.read_bytes() != damaged)  # a bad file is left untouched
        record("user files (damaged)", label, all(clean(r) for r in results), lost)
    for label, content, fmt in candidate_files():
        path = tmp / "candidates.txt"
        path.write_bytes(content)
        result = runner.invoke(cli, ["rerank", art, "--user", "u", "--prompt", "p", str(path), "--format", fmt,
                                     "--store", str(tmp / "store4")])
        record("candidates", label, clean(result))
    for label, cmd in bad_options(art):
        record("options", label, clean(runner.invoke(cli, [*cmd, *(["--store", str(tmp / "s5")] if cmd[0] in (
            "feedback",) and "--store" not in cmd else [])], input="x\n")))
    after = digest(next(store.glob("*"), store))
    kept = {k: v for k, v in after.items() if k in before}
    categories.setdefault("preference files", {})["lost"] += int(kept != before)
    fingerprint = json.loads((Path(art) / "rfm.json").read_text())["fingerprint"]
    categories["store under SIGKILL mid-write"] = kill_writers(args.kills, fingerprint, 8)
    shutil.rmtree(tmp, ignore_errors=True)

    total = {k: sum(c[k] for c in categories.values()) for k in ("tried", "clean", "lost")}
    result = {"command": "python benchmarks/hostile_inputs.py", "categories": categories, "total": total,
              "not_clean": failures}
    out = Path(args.out)
    (out / "hostile_inputs.json").write_text(json.dumps(result, indent=1))
    lines = ["# Hostile and careless inputs", "", f"Command: `{result['command']}` (artifact: the S2 benchmark's "
             "seed-0 RFM). Clean: exit 0/1/2, one `rfm: error:` line, no traceback, no partial file. Lost: a "
             "user file damaged by an input that should not touch it, or broken by SIGKILL mid-write.", "",
             "| category | inputs | handled cleanly | data lost |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {c['tried']} | {c['clean']} | {c['lost']} |" for name, c in categories.items()]
    lines += [f"| **all** | {total['tried']} | {total['clean']} | {total['lost']} |", ""]
    if failures:
        lines += ["Not clean:", *[f"- {f}" for f in failures], ""]
    (out / "hostile_inputs.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
