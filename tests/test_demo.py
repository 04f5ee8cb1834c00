"""rfm demo end to end on a tiny backbone and a slice of the real TL;DR data."""

from __future__ import annotations

import json

from click.testing import CliRunner
from conftest import SHARED

from rfm.cli.main import cli
from rfm.data.jsonl import load_pairs


def test_demo_runs_every_stage(tiny_backbone, tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--data-dir", str(SHARED), "-o", str(out), "--backbone", str(tiny_backbone), "--features", "8",
            "--max-pairs", "500", "--min-pairs", "10", "--shots", "0,5", "--repeats", "1", "--threads", "1",
            "--taste-raters", "8", "--taste-pairs", "40"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == 500 and summary["heldout_users"] >= 1 and summary["training_raters"] >= 2
    for kind in ("rfm", "baseline"):
        assert (out / "runs" / kind / "model.safetensors").is_file()
        assert (out / "artifacts" / kind / "model_int8.onnx").is_file()
        acc = summary["heldout_accuracy"][kind]
        assert set(acc) == {"0", "5"} and all(0.0 <= a <= 1.0 for a in acc.values())
        assert set(summary["taste_heldout_accuracy"][kind]) == {"0", "5"}
    assert (out / "accuracy_vs_shots.png").stat().st_size > 1000
    example = summary["personalised_example"]
    assert example["synthetic"] and example["taste"] and example["candidates"] >= 2 and example["adapted_on"] >= 1
    assert example["new_response_pairs"] >= 1 and 0.0 <= example["personalised_accuracy"] <= 1.0
    assert example["chosen_as"] == "median gain" and set(example["top_pick_normalised_reward"]) == {
        "one_size", "personalised"}
    assert example["everyone"]["people"] >= 1 and 0 <= example["everyone"]["personalised_higher"] <= example[
        "everyone"]["people"]
    asked = example["asked_vs_random"]
    assert asked["shots"] == example["adapted_on"] and "asking instead of waiting" in result.stderr
    assert asked["people"] >= 1 and asked["pools"] >= 1  # accuracies of the same people on the same test pairs
    assert 0.0 <= asked["asked"] <= 1.0 and abs(asked["diff"] - (asked["asked"] - asked["random"])) < 1e-9
    assert "synthetic; taste:" in result.stderr and "new responses" in result.stderr
    # part 2's held-out people are judged on responses no training pair contains
    assert "nobody trained on" in result.stderr and summary["taste_split"]["pairs"]["heldout"] > 0
    trained = {r for name in ("train.jsonl", "seen_test.jsonl") for p in load_pairs(out / "taste_split" / name)
               for r in (p.chosen, p.rejected)}
    held = load_pairs(out / "taste_split" / "heldout.jsonl")
    assert held and not any({p.chosen, p.rejected} & trained for p in held)
    assert summary["latency"]["rerank8_p50_ms"] > 0
    # a re-run reuses the trained runs and exported artifacts (TL;DR and taste: 2 + 2 each)
    again = CliRunner().invoke(cli, [*args, "--no-bench"])
    assert again.exit_code == 0, again.output
    assert again.stderr.count("unchanged, reusing") == 8


def test_demo_without_data_says_where_to_get_it(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--data-dir", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "RFM_DATA_DIR" in result.stderr and "Traceback" not in result.output


def test_stage_cache_key_ignores_prose_but_not_code():
    """Editing a docstring or a comment must not retrain the demo's and the benchmarks' cached stages."""
    from rfm.pipeline import _code_only

    base = 'def f(x):\n    """Old words."""\n    return x + 1\n'
    assert _code_only(base) == _code_only('def f(x):\n    """New words."""\n    # why\n    return x + 1\n')
    assert _code_only(base) == _code_only('def f(x):\n    return x + 1\n')
    assert _code_only(base) != _code_only('def f(x):\n    """Old words."""\n    return x + 2\n')
