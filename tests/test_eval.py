"""rfm eval: deterministic, m = 0 is the prior, disjoint responses really are, skipped users counted."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from rfm.adapt import UserAdapter
from rfm.runtime import load_artifact

from rfm.cli.main import cli
from rfm.data.jsonl import Pair, load_pairs, write_pairs
from rfm.evaluation import UserPairs, accuracy, evaluate, evaluate_questions, question_split, split_shots


def heldout_file(tmp_path, scenario2, tiny_user: bool = True) -> str:
    """The same responses, relabelled under new user ids (held-out users of the artifact)."""
    pairs = [Pair(p.prompt, p.chosen, p.rejected, "new-" + p.user_id) for p in load_pairs(scenario2)]
    if tiny_user:
        pairs += [Pair("q", "a", "b", "tiny-user"), Pair("q", "c", "d", "tiny-user")]
    write_pairs(tmp_path / "heldout.jsonl", pairs)
    return str(tmp_path / "heldout.jsonl")


def test_eval_is_deterministic_and_counts_skipped_users(tiny_artifact, scenario2, tmp_path):
    data = heldout_file(tmp_path, scenario2)
    a = evaluate(tiny_artifact, data, shots=(0, 5, 20), repeats=2, seed=3, precision="fp32")
    b = evaluate(tiny_artifact, data, shots=(0, 5, 20), repeats=2, seed=3, precision="fp32")
    assert a == b
    # tiny-user has 2 pairs: too few for m = 20, so it is left out of every column (same users at every m)
    assert a["heldout"]["users"] == 2 and a["heldout"]["excluded_users"] == 1
    assert all(row["users"] == 2 and row["skipped_users"] == 1 for row in a["heldout"]["shots"].values())
    assert a["heldout"]["protocol"] == "new-responses"
    assert a["heldout_shared_responses"]["protocol"] == "shared-responses"
    lo, hi = a["heldout"]["shots"]["5"]["ci95"]
    assert lo <= a["heldout"]["shots"]["5"]["accuracy"] <= hi


def test_zero_shots_equals_the_population_prior(tiny_artifact, scenario2, tmp_path):
    from rfm.runtime import FeatureExtractor

    from rfm.evaluation import featurise_pairs, group_by_user

    data = heldout_file(tmp_path, scenario2)
    result = evaluate(tiny_artifact, data, shots=(0,), repeats=1, precision="fp32")
    art = load_artifact(tiny_artifact)
    pairs = load_pairs(data)
    users = group_by_user(pairs, featurise_pairs(FeatureExtractor(art, precision="fp32"), pairs))
    mean = art.population()["mean"]
    expected = np.mean([accuracy(u.deltas, mean) for u in users.values()])
    assert abs(result["heldout"]["shots"]["0"]["accuracy"] - expected) < 1e-12


def test_adaptation_helps_opposing_raters(tiny_artifact, scenario2, tmp_path):
    data = heldout_file(tmp_path, scenario2, tiny_user=False)
    result = evaluate(tiny_artifact, data, shots=(0, 50), repeats=2, precision="fp32")
    shots = result["heldout"]["shots"]
    assert shots["50"]["accuracy"] > shots["0"]["accuracy"] + 0.1


def test_disjoint_responses_keeps_them_apart():
    texts = [(f"r{i}", f"r{i + 1}") for i in range(30)]  # neighbouring pairs share a response
    data = UserPairs(np.zeros((30, 2)), texts)
    for repeat in range(5):
        train, test = split_shots("u", data, 5, repeat, 0, disjoint=True)
        adapt_texts = {t for i in train for t in texts[i]}
        assert len(test) and all(not set(texts[i]) & adapt_texts for i in test)
        _, plain = split_shots("u", data, 5, repeat, 0, disjoint=False)
        assert len(plain) == 25 > len(test)


def test_question_pools_share_no_response_with_the_test_pairs():
    sparse = UserPairs(np.zeros((40, 2)), [(f"a{i}", f"b{i}") for i in range(40)])  # every response once
    chain = UserPairs(np.zeros((30, 2)), [(f"r{i}", f"r{i + 1}") for i in range(30)])
    dense = UserPairs(np.zeros((60, 2)), [(f"j{i % 12}", f"j{(i * 5 + 1) % 12}") for i in range(60)])  # 12 jokes
    for data, how in ((sparse, {"pairs"}), (chain, {"pairs", "responses"}), (dense, {"responses"})):
        for repeat in range(4):
            pool, test, used = question_split("u", data, repeat, 0)
            asked = {t for i in pool for t in data.texts[i]}
            assert used in how and len(pool) and len(test)
            assert all(not set(data.texts[i]) & asked for i in test) and not set(pool) & set(test)
        assert question_split("u", data, 1, 0)[0].tolist() == question_split("u", data, 1, 0)[0].tolist()
    assert len(question_split("u", sparse, 0, 0)[1]) == 20  # nothing shared: the other half is the test


def test_informative_questions_beat_random_choices_on_new_responses():
    """People differ along one feature that few of their pairs vary: asking finds those pairs."""
    rng = np.random.default_rng(0)
    adapter = UserAdapter({"mean": np.array([1.0, 0.0]), "cov": np.diag([0.01, 4.0])})
    users = {}
    for u in range(12):
        w = np.array([1.0, 3.0 * (1 if u % 2 else -1)])
        x = np.column_stack([rng.normal(size=80), np.where(rng.random(80) < 0.15, rng.normal(size=80) * 2, 0.0)])
        x = x * np.sign(x @ w + 1e-9)[:, None]  # oriented chosen - rejected under w
        users[f"u{u}"] = UserPairs(x, [(f"{u}a{i}", f"{u}b{i}") for i in range(80)])
    result = evaluate_questions(users, adapter, (0, 3, 8), 2, 0, ("random", "information", "uncertainty"))
    acc = {s: {m: v["accuracy"] for m, v in r["shots"].items()} for s, r in result["strategies"].items()}
    assert result["users"] == 12 and result["splits"] == {"pairs": 24}
    assert acc["random"]["0"] == acc["information"]["0"]  # m = 0: the prior, the same test pairs
    assert acc["information"]["3"] > acc["random"]["3"] + 0.03
    gain = result["strategies"]["information"]["minus_random"]["3"]
    assert gain["users"] == 12 and gain["ci95"][0] > 0


def test_seen_users_and_cli_json(tiny_artifact, scenario2_split):
    result = CliRunner().invoke(cli, ["eval", str(tiny_artifact), str(scenario2_split / "seen_test.jsonl"),
                                      "--seen", "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["seen"]["users"] == 2 and 0.0 <= obj["seen"]["accuracy"] <= 1.0
    assert {"artifact", "precision", "adapter", "heldout", "seen"} <= set(obj)
    result = CliRunner().invoke(cli, ["eval", str(tiny_artifact), str(scenario2_split / "seen_test.jsonl")])
    assert result.exit_code == 2 and "--seen" in result.stderr


def test_heldout_user_ranks_responses_nobody_trained_on_better_after_adapting(ultrafeedback_path, tmp_path):
    """The product's claim end to end, with the bundled MiniLM (a random tiny encoder cannot generalise):
    people the model never saw, adapted from their choices, on responses no training pair contained."""
    from conftest import train_tiny
    from rfm.export.build import export_run

    from rfm.data.synth import synthesise

    synthesise(ultrafeedback_path, tmp_path / "s2.jsonl", scenario=2, n_raters=10, seed=1, pairs_per_rater=300,
               deterministic=True)
    pairs = load_pairs(tmp_path / "s2.jsonl")
    heldout_users = {"s2-r008", "s2-r009"}  # one of each opposing group
    train = [p for p in pairs if p.user_id not in heldout_users and p.extra["source_pair"] < 500]
    trained_texts = {t for p in train for t in (p.chosen, p.rejected)}
    test = [p for p in pairs if p.user_id in heldout_users and p.extra["source_pair"] >= 500
            and p.chosen not in trained_texts and p.rejected not in trained_texts]
    write_pairs(tmp_path / "train.jsonl", train)
    write_pairs(tmp_path / "heldout.jsonl", test)
    train_tiny("minilm", tmp_path / "train.jsonl", tmp_path / "run", lr=3e-3)
    export_run(tmp_path / "run", tmp_path / "art", ["fp32"], log=lambda m: None)
    result = evaluate(tmp_path / "art", tmp_path / "heldout.jsonl", shots=(0, 20, 50), repeats=3, precision="fp32")
    shots = {m: row["accuracy"] for m, row in result["heldout"]["shots"].items()}
    assert result["heldout"]["users"] == 2 and result["heldout"]["protocol"] == "new-responses"
    assert abs(shots["0"] - 0.5) < 0.1, shots  # opposing groups: one reward for both is near chance
    assert shots["20"] >= shots["0"] + 0.08 and shots["50"] >= shots["0"] + 0.1, shots  # measured +0.11 / +0.16


def test_cli_reports_new_responses_first_and_shared_beside(tiny_artifact, scenario2, tmp_path):
    data = heldout_file(tmp_path, scenario2)
    result = CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--shots", "0,5", "--repeats", "1",
                                      "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert "new responses" in result.stdout and "shared responses" in result.stdout
    assert "2 at every m (1 left out" in result.stdout
    result = CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--shots", "0,5", "--repeats", "1",
                                      "--precision", "fp32", "--json", "--prior", "none"])
    obj = json.loads(result.stdout)
    assert obj["heldout"]["protocol"] == "new-responses" and obj["heldout_shared_responses"]["users"] == 2
    assert obj["adapter"] == "map, prior none" and "margin_variance" in obj["prior_width"]
    runs = {prior: json.loads(CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--shots", "0,5", "--repeats",
                                                       "2", "--precision", "fp32", "--json", "--prior", prior]).stdout)
            for prior in ("population", "mixture")}
    assert runs["mixture"]["adapter"] == "map, prior mixture"
    shots = {prior: r["heldout"]["shots"] for prior, r in runs.items()}
    assert shots["mixture"]["0"] == shots["population"]["0"]  # no choices: both give the population mean
    assert shots["mixture"]["5"]["users"] == shots["population"]["5"]["users"] == 2


def test_cli_eval_questions_compares_asked_with_random_on_one_pool(tiny_artifact, scenario2, tmp_path):
    data = heldout_file(tmp_path, scenario2)
    args = ["eval", str(tiny_artifact), data, "--shots", "0,5", "--repeats", "2", "--precision", "fp32", "--questions"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    q = json.loads(result.stdout)["questions"]
    assert set(q["strategies"]) == {"random", "information"} and q["users"] == 2 and q["excluded_users"] == 1
    random, asked = q["strategies"]["random"]["shots"], q["strategies"]["information"]["shots"]
    assert random["0"]["accuracy"] == asked["0"]["accuracy"] and "by_user" not in random["5"]
    diff = q["strategies"]["information"]["minus_random"]["5"]
    assert diff["users"] == 2 and abs(diff["diff"] - (asked["5"]["accuracy"] - random["5"]["accuracy"])) < 1e-9
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "asked vs random, 2 users" in result.stdout
    result = CliRunner().invoke(cli, [*args, "--seen"])
    assert result.exit_code == 2 and "--questions" in result.stderr


def test_per_user_accuracies_pair_two_models(tiny_artifact, scenario2, tmp_path):
    import importlib.util
    from pathlib import Path

    from rfm.runtime import FeatureExtractor

    from rfm.evaluation import evaluate_heldout, featurise_pairs, group_by_user, user_adapter

    art = load_artifact(tiny_artifact)
    pairs = load_pairs(heldout_file(tmp_path, scenario2))
    users = group_by_user(pairs, featurise_pairs(FeatureExtractor(art, precision="fp32"), pairs))
    result = evaluate_heldout(users, user_adapter(art), (0, 5), repeats=2, seed=1, by_user=True)
    for row in result["shots"].values():
        assert len(row["by_user"]) == row["users"] == 2
        assert abs(np.mean(list(row["by_user"].values())) - row["accuracy"]) < 1e-12
    spec = importlib.util.spec_from_file_location("report", Path(__file__).parents[1] / "benchmarks" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    run = {"new_responses": result}
    same = report.paired_differences([run], [run])
    assert same["5"]["diff"] == 0 and same["5"]["ci95"] == [0, 0] and same["5"]["users"] == 2
    worse = {"new_responses": {"shots": {m: {**row, "by_user": {u: a - 0.1 for u, a in row["by_user"].items()}}
                                          for m, row in result["shots"].items()}}}
    assert abs(report.paired_differences([worse], [run])["0"]["diff"] + 0.1) < 1e-12
    assert report.paired_differences([{"new_responses": {"shots": {"0": {"accuracy": 0.5}}}}], [run]) is None
    assert report._kept_rows({"a": "run 1", "b": "run 2", "c": "run 1"}) == "a, c (`run 1`); b (`run 2`)"


def test_versus_pairs_two_artifacts_on_the_same_users_and_draws(tiny_artifact, scenario2, tmp_path):
    from rfm.evaluation import paired_difference

    data = heldout_file(tmp_path, scenario2, tiny_user=False)
    result = evaluate(tiny_artifact, data, shots=(0, 5), repeats=2, precision="fp32", versus=tiny_artifact)
    for m, row in result["versus"]["shots"].items():
        assert row["diff"] == 0 and row["ci95"] == [0, 0] and row["users"] == result["heldout"]["users"] == 2
        assert "by_user" not in result["heldout"]["shots"][m]
    shifted = paired_difference({"a": 0.7, "b": 0.6, "c": 0.9}, {"a": 0.6, "b": 0.6, "d": 0.1})
    assert shifted["users"] == 2 and abs(shifted["diff"] - 0.05) < 1e-12
    assert shifted["ci95"][0] <= 0.05 <= shifted["ci95"][1]
    cli_result = CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--shots", "0,5", "--repeats", "1",
                                          "--precision", "fp32", "--versus", str(tiny_artifact)])
    assert cli_result.exit_code == 0, cli_result.output
    assert "paired over the same users" in cli_result.output and "+0.0 points" in cli_result.output
    missing = CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--versus", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope" in missing.stderr
    seen = CliRunner().invoke(cli, ["eval", str(tiny_artifact), data, "--seen", "--versus", str(tiny_artifact)])
    assert seen.exit_code == 2 and "--versus" in seen.stderr
