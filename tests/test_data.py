"""The data layer on the real shared files: converters, reader, split, synth, malformed input."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfm.cli.main import cli
from rfm.data.convert import ConvertReport, convert
from rfm.data.jsonl import Pair, load_pairs, read_pairs, write_pairs
from rfm.data.split import split_by_user
from rfm.data.synth import SyntheticRaters, sidecar_path, synthesise
from rfm.errors import DataError, UsageError


def run_convert(fmt, *paths):
    report = ConvertReport()
    pairs = list(convert(fmt, [shared(*p) for p in paths], report))
    return pairs, report


def test_tldr_converts_to_1771_pairs_from_30_users():
    pairs, report = run_convert("tldr", ("tldr", "batch13.jsonl"), ("tldr", "batch18.jsonl"))
    assert len(pairs) == 1771 and report.rows == 1771 and not report.dropped
    assert len({p.user_id for p in pairs}) == 30
    first = pairs[0]
    assert first.prompt and first.chosen != first.rejected and first.user_id


def test_hh_rlhf_drops_the_four_empty_final_turns():
    pairs, report = run_convert("hh-rlhf", ("hh-rlhf", "harmless-base-test.jsonl.gz"))
    assert report.rows == 2312 and len(pairs) == 2308
    assert report.dropped == Counter({"empty response": 4})
    assert all(p.prompt.endswith("Assistant:") for p in pairs)
    assert all("\n\nHuman:" not in p.chosen for p in pairs[:50])


def test_ultrafeedback_drops_six_and_keeps_scores():
    pairs, report = run_convert("ultrafeedback", ("ultrafeedback", "train.jsonl"))
    assert report.rows == 1000 and len(pairs) == 994 and sum(report.dropped.values()) == 6
    assert {"score_chosen", "score_rejected"} <= set(pairs[0].extra)


def test_cnndm_rows_use_the_article_as_prompt():
    pairs, _ = run_convert("tldr", ("tldr", "cnndm0.jsonl"))
    assert pairs and all(len(p.prompt) > 200 for p in pairs[:20])


@pytest.mark.parametrize("record, reason", [
    ({"prompt": "p", "chosen": "same", "rejected": " same "}, "identical"),
    ({"prompt": "p", "chosen": "  ", "rejected": "x"}, "empty"),
    ({"prompt": "p", "chosen": "a"}, "missing field 'rejected'"),
    ({"prompt": 3, "chosen": "a", "rejected": "b"}, "must be a string"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "user_id": ""}, "user_id"),
    ([1, 2], "JSON object"),
    ({"prompt": "p\ud800", "chosen": "a", "rejected": "b"}, "lone surrogate"),
    ({"prompt": "p", "chosen": "a\x00", "rejected": "b"}, "NUL"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_reader_rejects_bad_pairs_with_path_and_line(tmp_path, record, reason):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})
    line = record if isinstance(record, str) else json.dumps(record)
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{reason}"):
        list(read_pairs(path))


def test_split_is_disjoint_deterministic_and_complete(tldr_pairs_path, tmp_path):
    a = split_by_user(tldr_pairs_path, tmp_path / "a", 0.3, seed=7, min_pairs=20)
    split_by_user(tldr_pairs_path, tmp_path / "b", 0.3, seed=7, min_pairs=20)
    c = split_by_user(tldr_pairs_path, tmp_path / "c", 0.3, seed=8, min_pairs=20)
    for name in ("train.jsonl", "heldout.jsonl", "seen_test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.heldout_users != c.heldout_users
    train_users = {p.user_id for p in load_pairs(tmp_path / "a" / "train.jsonl")}
    heldout_users = {p.user_id for p in load_pairs(tmp_path / "a" / "heldout.jsonl")}
    seen_users = {p.user_id for p in load_pairs(tmp_path / "a" / "seen_test.jsonl")}
    assert not train_users & heldout_users and seen_users <= train_users
    total = sum(a.counts.values()) + sum(a.dropped.values())
    assert total == 1771
    assert a.dropped_users and all(u not in train_users | heldout_users for u in a.dropped_users)



def test_item_holdout_keeps_every_heldout_response_out_of_training(ultrafeedback_path, tmp_path):
    synthesise(ultrafeedback_path, tmp_path / "s.jsonl", 3, 10, seed=0, pairs_per_rater=120)
    # a held-out-side pair that re-uses a training-side response must be dropped, whoever labelled it
    pairs = load_pairs(tmp_path / "s.jsonl")
    reuse = [Pair(f"new prompt {i}", p.chosen, "an unrelated response", p.user_id) for i, p in enumerate(pairs[:30])]
    write_pairs(tmp_path / "all.jsonl", pairs + reuse)
    report = split_by_user(tmp_path / "all.jsonl", tmp_path / "out", 0.3, seed=0, item_holdout=0.5)
    train = load_pairs(tmp_path / "out" / "train.jsonl") + load_pairs(tmp_path / "out" / "seen_test.jsonl")
    held = load_pairs(tmp_path / "out" / "heldout.jsonl")
    assert train and held and not {p.user_id for p in train} & {p.user_id for p in held}
    trained_prompts = {p.prompt for p in train}
    trained_responses = {r for p in train for r in (p.chosen, p.rejected)}
    assert not any(p.prompt in trained_prompts or {p.chosen, p.rejected} & trained_responses for p in held)
    assert report.dropped["held-out user's pair on a training prompt"] > 0
    assert report.dropped["training rater's pair on a held-out prompt"] > 0
    assert sum(report.counts.values()) + sum(report.dropped.values()) == len(pairs) + len(reuse)
    # deterministic, and 0 is the plain split by user, byte for byte
    split_by_user(tmp_path / "all.jsonl", tmp_path / "again", 0.3, seed=0, item_holdout=0.5)
    assert (tmp_path / "again" / "heldout.jsonl").read_bytes() == (tmp_path / "out" / "heldout.jsonl").read_bytes()
    split_by_user(tmp_path / "all.jsonl", tmp_path / "plain", 0.3, seed=0)
    split_by_user(tmp_path / "all.jsonl", tmp_path / "zero", 0.3, seed=0, item_holdout=0.0)
    for name in ("train.jsonl", "heldout.jsonl", "seen_test.jsonl"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "zero" / name).read_bytes()
    with pytest.raises(UsageError, match="held-out users"):
        split_by_user(tmp_path / "all.jsonl", tmp_path / "bad", 0.0, item_holdout=0.5)


def test_item_holdout_by_response_for_one_prompt(tmp_path):
    # Jester's shape: one prompt, every person rates the same items
    items = [f"joke {i}" for i in range(30)]
    pairs = [Pair("Tell me a joke.", items[i], items[j], f"u{u}") for u in range(10) for i in range(30)
             for j in range(i + 1, 30) if (i + j + u) % 7 == 0]
    write_pairs(tmp_path / "jokes.jsonl", pairs)
    with pytest.raises(UsageError, match="--items responses"):
        split_by_user(tmp_path / "jokes.jsonl", tmp_path / "bad", 0.3, item_holdout=0.5)
    report = split_by_user(tmp_path / "jokes.jsonl", tmp_path / "out", 0.3, item_holdout=0.5, items="responses")
    train = load_pairs(tmp_path / "out" / "train.jsonl") + load_pairs(tmp_path / "out" / "seen_test.jsonl")
    held = load_pairs(tmp_path / "out" / "heldout.jsonl")
    trained = {r for p in train for r in (p.chosen, p.rejected)}
    tested = {r for p in held for r in (p.chosen, p.rejected)}
    assert train and held and not trained & tested
    assert report.dropped["pair of a held-out and a training response"] > 0
    assert sum(report.counts.values()) + sum(report.dropped.values()) == len(pairs)


def _agreement(path, user_a, user_b) -> tuple[int, int]:
    labels: dict[str, dict] = {}
    for p in load_pairs(path):
        labels.setdefault(p.user_id, {})[p.extra["source_pair"]] = p.chosen
    shared_items = set(labels[user_a]) & set(labels[user_b])
    agree = sum(labels[user_a][k] == labels[user_b][k] for k in shared_items)
    return agree, len(shared_items)


def test_synth_scenarios(ultrafeedback_path, tmp_path):
    synthesise(ultrafeedback_path, tmp_path / "s2.jsonl", 2, 4, seed=1, pairs_per_rater=400, deterministic=True)
    raters = SyntheticRaters.load(sidecar_path(tmp_path / "s2.jsonl"))
    group0 = [u for u, g in raters.groups.items() if g == 0]
    group1 = [u for u, g in raters.groups.items() if g == 1]
    agree, n = _agreement(tmp_path / "s2.jsonl", group0[0], group1[0])
    assert n > 50 and agree / n < 0.3  # opposing groups disagree on most shared pairs
    synthesise(ultrafeedback_path, tmp_path / "s1.jsonl", 1, 4, seed=1, pairs_per_rater=400, deterministic=True)
    raters1 = SyntheticRaters.load(sidecar_path(tmp_path / "s1.jsonl"))
    users = sorted(raters1.weights)
    agree, n = _agreement(tmp_path / "s1.jsonl", users[0], users[1])
    assert n > 50 and agree / n > 0.7
    # same seed, same bytes
    synthesise(ultrafeedback_path, tmp_path / "again.jsonl", 1, 4, seed=1, pairs_per_rater=400, deterministic=True)
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "s1.jsonl").read_bytes()
    # true rewards are defined for any response
    assert raters1.rewards(users[0], ["- a list\n- of items", "Maybe, perhaps?"]).shape == (2,)


def test_cli_convert_stats_split(tmp_path):
    runner = CliRunner()
    out = tmp_path / "uf.jsonl"
    result = runner.invoke(cli, ["data", "convert", "--format", "ultrafeedback",
                                 str(shared("ultrafeedback", "eval.jsonl")), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pairs"] == len(load_pairs(out))
    result = runner.invoke(cli, ["data", "stats", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["length_unit"] == "tokens"


line_strategy = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b and b.strip()),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
        st.sampled_from(["prompt", "chosen", "rejected", "user_id"]),
        st.one_of(st.integers(), st.none(), st.just(""), st.just(" "), st.lists(st.integers())), min_size=1)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=line_strategy, position=st.integers(0, 3))
def test_malformed_lines_give_path_line_errors_and_no_output(tmp_path, bad, position):
    good = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "user_id": "u"}).encode()
    lines = [good] * 4
    lines.insert(position, bad)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "split_out"
    result = CliRunner().invoke(cli, ["data", "split", str(src), "--holdout-users", "0", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert f"in.jsonl:{position + 1}:" in result.stderr
    assert "Traceback" not in result.output
    assert not (out / "train.jsonl").exists()


def test_jester_pairs_are_deterministic_gapped_and_bounded(tmp_path):
    from rfm.data.jester import PROMPT, jester_pairs

    report = ConvertReport()
    pairs = list(jester_pairs(shared("jester"), report, min_gap=3.0, max_pairs=40, seed=0))
    again = list(jester_pairs(shared("jester"), ConvertReport(), min_gap=3.0, max_pairs=40, seed=0))
    assert pairs == again and report.rows == 22268
    per_user = Counter(p.user_id for p in pairs)
    assert max(per_user.values()) == 40 and len(per_user) > 300
    for p in pairs[:500]:
        win, lose = p.extra["ratings"]
        assert p.prompt == PROMPT and win - lose >= 3.0 and p.chosen != p.rejected
    other_seed = list(jester_pairs(shared("jester"), ConvertReport(), min_gap=3.0, max_pairs=40, seed=1))
    assert [p.id for p in other_seed] != [p.id for p in pairs]


def test_jester_bad_rows_name_file_and_line(tmp_path):
    from rfm.data.jester import jester_pairs

    (tmp_path / "jokes.csv").write_text("joke_id,text\n1,a joke\n2,another joke\n")
    (tmp_path / "ratings.csv").write_text("user_id,joke_id,rating\n1,1,5.0\n1,2,high\n")
    with pytest.raises(DataError, match=r"ratings.csv:3: 'rating' is not a number"):
        list(jester_pairs(tmp_path, ConvertReport()))
    (tmp_path / "ratings.csv").write_text("user_id,joke_id,rating\n1,1,5.0\n1,9,-5.0\n")
    with pytest.raises(DataError, match=r"ratings.csv:3: joke 9 is not in"):
        list(jester_pairs(tmp_path, ConvertReport()))
    result = CliRunner().invoke(cli, ["data", "convert", "--format", "jester", str(tmp_path / "nowhere"),
                                      "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "ratings.csv" in result.stderr and not (tmp_path / "out.jsonl").exists()


def test_taste_scenario_raters_have_checkable_tastes(ultrafeedback_path, tmp_path):
    from rfm.data.synth import ATTRIBUTE_NAMES, TASTE_NAMES, TASTES, raw_attributes

    out = tmp_path / "taste.jsonl"
    raters = synthesise(ultrafeedback_path, out, 3, 16, seed=0, pairs_per_rater=30, deterministic=True)
    loaded = SyntheticRaters.load(sidecar_path(out))
    assert {loaded.taste(u) for u in loaded.weights} == set(TASTE_NAMES)
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["tastes"]["brief"] == {"attribute": "length", "sign": -1.0}
    for pair in load_pairs(out):
        attribute, sign = TASTES[raters.taste(pair.user_id)]
        w = raters.weights[pair.user_id]
        k = ATTRIBUTE_NAMES.index(attribute)
        assert abs(w[k]) == np.abs(w).max() and np.sign(w[k]) == sign  # the taste dominates the weights
    brief = [p for p in load_pairs(out) if raters.taste(p.user_id) == "brief"]
    shorter = [raw_attributes(p.chosen)[0] < raw_attributes(p.rejected)[0] for p in brief]
    assert np.mean(shorter) > 0.8


TLDR_ROW = {"info": {"id": "t1", "post": "a post", "title": "a title"}, "summaries": [{"text": "one"}, {"text": "two"}],
            "choice": 0, "worker": "w1", "batch": "b"}


@pytest.mark.parametrize("change, reason", [
    ({"choice": 0.0}, "choice"),
    ({"choice": True}, "choice"),
    ({"extra": "high"}, "'extra'"),
    ({"worker": ["w1"]}, "'worker'"),
    ({"summaries": [{"text": "one\x00"}, {"text": "two"}]}, "NUL"),
    ({"info": {"post": "a post", "title": 5}}, "title"),
])
def test_converters_reject_wrongly_typed_fields(tmp_path, change, reason):
    src = tmp_path / "tldr.jsonl"
    src.write_text(json.dumps({**TLDR_ROW, **change}) + "\n")
    with pytest.raises(DataError, match=rf"tldr\.jsonl:1: .*{reason}"):
        list(convert("tldr", [src], ConvertReport()))


def test_convert_of_an_input_without_pairs_fails_and_writes_nothing(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli, ["data", "convert", "--format", "tldr", str(src), "-o", str(out)])
    assert result.exit_code == 2 and "no pairs" in result.output and not out.exists()
