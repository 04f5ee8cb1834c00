"""The benchmarks' item-disjoint split (benchmarks/unseen_items.py): held-out users' "unseen" test pairs share
no prompt and no response with anything the training raters labelled."""

from __future__ import annotations

import collections
import importlib.util
import sys
from pathlib import Path

from rfm.data.jsonl import Pair, load_pairs, write_pairs

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _unseen_items():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("unseen_items", BENCHMARKS / "unseen_items.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unseen_half_shares_nothing_with_training(tmp_path):
    unseen_items = _unseen_items()
    pool = [Pair(f"prompt {i}", f"good {i}", f"bad {i}") for i in range(40)]
    # a pair of its own prompt that re-uses another prompt's response: whichever half it lands in, the
    # unseen half may not hold it next to a training pair with that response
    pool.append(Pair("prompt reuse", "good 0", "other"))
    write_pairs(tmp_path / "pool.jsonl", pool)
    side_a, responses_a = unseen_items.halves(tmp_path / "pool.jsonl")
    assert 0 < len(side_a) < len({p.prompt for p in pool})

    def labelled(user: str, flip: bool) -> list[Pair]:
        return [Pair(p.prompt, p.rejected, p.chosen, user) if flip else Pair(p.prompt, p.chosen, p.rejected, user)
                for p in pool]

    split = tmp_path / "split"
    split.mkdir()
    write_pairs(split / "train.jsonl", labelled("t1", False) + labelled("t2", True) + labelled("t3", False))
    write_pairs(split / "seen_test.jsonl", labelled("t1", True)[:5])
    write_pairs(split / "heldout.jsonl", labelled("h1", False) + labelled("h2", True)[:25])
    folders = unseen_items.build(split, tmp_path / "out", ["t1", "t2"], 8, side_a, responses_a)

    train = load_pairs(folders["seen"] / "train.jsonl")
    assert train == load_pairs(folders["unseen"] / "train.jsonl")
    assert collections.Counter(p.user_id for p in train) == {"t1": 8, "t2": 8}  # t3 is not a chosen rater
    assert all(p.prompt in side_a for p in train)
    trained_prompts = {p.prompt for p in train}
    trained_responses = {r for p in load_pairs(split / "train.jsonl") if p.prompt in side_a for r in (p.chosen, p.rejected)}
    unseen, seen = load_pairs(folders["unseen"] / "heldout.jsonl"), load_pairs(folders["seen"] / "heldout.jsonl")
    assert unseen and seen
    for p in unseen:
        assert p.prompt not in trained_prompts and p.prompt not in side_a
        assert p.chosen not in trained_responses and p.rejected not in trained_responses
    assert all(p.prompt in side_a for p in seen)
    count = collections.Counter
    assert count(p.user_id for p in unseen) == count(p.user_id for p in seen)  # the same pairs per user in both
    # the overlap report says what the split guarantees
    assert unseen_items.overlap(folders["unseen"])["responses_in_training"] == 0.0
    assert unseen_items.overlap(folders["seen"])["responses_in_training"] > 0.5  # 16 of half A's ~20 pairs trained on
    assert unseen_items.overlap(folders["unseen"])["prompts_in_training"] == 0.0
    assert unseen_items.overlap(folders["seen"])["prompts_in_training"] > 0.5
