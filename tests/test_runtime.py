"""The runtime: torch-free, tokenises like transformers, matches torch, reranks, adapts, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import shared
from rfm.runtime import FeatureExtractor, RewardModel, load_artifact
from rfm.runtime.tokenize import PairTokenizer, minilm_dir
from rfm.train.rundir import load_run
from transformers import AutoTokenizer

from rfm.cli.main import cli
from rfm.data.jsonl import load_pairs
from rfm.errors import UsageError


def test_runtime_never_imports_the_training_stack():
    code = ("import sys, rfm.runtime, rfm.adapt, rfm.evaluation, rfm.cli.main\n"
            "bad = [m for m in ('torch', 'transformers', 'optimum', 'sklearn', 'accelerate') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_runtime_writes_nothing_outside_its_store(tiny_artifact, tmp_path):
    """onnxruntime's device id and telemetry queue are never created: rfm opts out before it initialises."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"),
               RFM_HOME=str(tmp_path / "store"))
    code = ("from rfm.runtime import RewardModel\n"
            f"rm = RewardModel.load({str(tiny_artifact)!r}, device='cpu')\n"
            "rm.feedback('u', 'p', 'a good answer', 'a bad one')\n"
            "print(rm.rerank('u', 'p', ['x', 'y'])[0].text)")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    written = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.parts[0] == "store" for p in written), written


@pytest.mark.parametrize("max_length", [64, 256])
def test_token_ids_match_transformers_on_real_text(tldr_pairs_path, max_length):
    from rfm.data.convert import ConvertReport, convert

    hf = AutoTokenizer.from_pretrained(minilm_dir())
    ours = PairTokenizer.from_file("minilm", max_length)
    hh = list(convert("hh-rlhf", [shared("hh-rlhf", "harmless-base-test.jsonl.gz")], ConvertReport()))[:40]
    tldr = load_pairs(tldr_pairs_path)[:40]
    long_response = [(p.prompt[:50], p.prompt) for p in tldr[:5]]  # responses longer than max_length
    texts = [(p.prompt, p.chosen) for p in tldr + hh] + long_response + [("", "empty prompt")]
    for prompt, response in texts:
        expected = hf(prompt, response, truncation="longest_first", max_length=max_length)
        enc = ours.encode([prompt], [response])[0]
        assert enc.ids == expected["input_ids"]
        assert enc.type_ids == expected["token_type_ids"]


def test_runtime_features_match_torch(tiny_run, tiny_artifact):
    model, tokenizer, config = load_run(tiny_run)
    extractor = FeatureExtractor(load_artifact(tiny_artifact), device="cpu", precision="fp32", batch_size=3)
    prompts = ["", "a prompt", "another prompt " * 40, "x"]
    responses = ["resp " * 200, "short", "medium length answer here", "y"]
    ours = extractor(prompts, responses)
    tok = PairTokenizer(tokenizer.backend_tokenizer, config.rfm_max_length)
    with torch.inference_mode():
        for i in range(len(prompts)):
            batch = {k: torch.from_numpy(v) for k, v in tok([prompts[i]], [responses[i]]).items()}
            np.testing.assert_allclose(ours[i], model(**batch)["features"].numpy()[0], atol=1e-4)


def test_rerank_order_matches_scores_and_feedback_adapts(tiny_artifact, tmp_path):
    rm = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path)
    candidates = ["- one\n- two\n- three", "Maybe, perhaps, I think?", "A plain answer.", "1 2 3 4 5 6"]
    scores = rm.score("u", "prompt", candidates)
    ranked = rm.rerank("u", "prompt", candidates)
    assert [r.index for r in ranked] == list(np.argsort(-scores, kind="stable"))
    assert len(rm.rerank("u", "prompt", candidates, top_k=2)) == 2
    worst, best = ranked[-1].text, ranked[0].text
    for _ in range(5):
        rm.feedback("u", "prompt", chosen=worst, rejected=best)
    after = rm.score("u", "prompt", candidates)
    assert after[candidates.index(worst)] - after[candidates.index(best)] > \
        scores[candidates.index(worst)] - scores[candidates.index(best)]
    assert rm.store.read("u").feedback_total == 5
    i, j = rm.next_question("u", "prompt", candidates)
    assert 0 <= i < j < len(candidates)


def test_explicit_cuda_without_provider_is_a_usage_error(tiny_artifact):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the error path cannot be reached")
    with pytest.raises(UsageError, match="device: cuda"):
        RewardModel.load(tiny_artifact, device="cuda")


def test_int8_is_never_chosen_or_offered_on_cuda(tiny_artifact):
    from rfm.runtime.session import choose_precision

    art = load_artifact(tiny_artifact)
    assert choose_precision(art, "cuda", "auto") in ("fp16", "fp32")
    with pytest.raises(UsageError, match="precision: int8 graphs are CPU graphs"):
        choose_precision(art, "cuda", "int8")


def test_auto_picks_int8_on_cpu(tiny_artifact):
    rm = RewardModel.load(tiny_artifact, device="auto")
    assert rm.extractor.precision == "int8" and rm.extractor.device == "cpu"


def test_cli_rerank_feedback_users(tiny_artifact, tmp_path):
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store")]
    result = runner.invoke(cli, ["rerank", str(tiny_artifact), "--user", "zoe", "--prompt", "p", "-", "--json",
                                 *store], input="first answer\nsecond answer\n\"quoted\" third\n")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["candidates"]
    assert sorted(r["text"] for r in rows) == ['"quoted" third', "first answer", "second answer"]
    (tmp_path / "c.jsonl").write_text('{"text": "from jsonl"}\n"a string"\n')
    result = runner.invoke(cli, ["score", str(tiny_artifact), "--user", "zoe", "--prompt", "p",
                                 str(tmp_path / "c.jsonl"), "--json", *store])
    assert [r["text"] for r in json.loads(result.stdout)["candidates"]] == ["from jsonl", "a string"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    result = runner.invoke(cli, ["score", str(tiny_artifact), "--user", "zoe", "--prompt", "p",
                                 str(tmp_path / "latin1.txt"), *store])
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    result = runner.invoke(cli, ["feedback", str(tiny_artifact), "--user", "zoe", "--prompt", "p",
                                 "--chosen", "second answer", "--rejected", "first answer", *store])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["users", "list", str(tiny_artifact), "--json", *store])
    assert json.loads(result.stdout)["users"][0]["user"] == "zoe"
    result = runner.invoke(cli, ["users", "delete", str(tiny_artifact), "zoe", *store])
    assert result.exit_code == 0
    result = runner.invoke(cli, ["users", "show", str(tiny_artifact), "zoe", *store])
    assert result.exit_code == 2 and "no stored data" in result.stderr


def test_cli_ask_names_the_pair_next_question_picks(tiny_artifact, tmp_path):
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store")]
    drafts = "a short answer\na much longer and more detailed answer with lists\nsomething else\n"
    result = runner.invoke(cli, ["ask", str(tiny_artifact), "--user", "zoe", "--prompt", "p", "-", "--json", *store],
                           input=drafts)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    expected = RewardModel.load(tiny_artifact, store=tmp_path / "store").next_question("zoe", "p", drafts.splitlines())
    assert [r["index"] for r in out["pair"]] == list(expected) and out["method"] == "information"
    assert [r["text"] for r in out["pair"]] == [drafts.splitlines()[i] for i in expected]
    result = runner.invoke(cli, ["ask", str(tiny_artifact), "--user", "zoe", "--prompt", "p", "-", *store],
                           input=drafts)
    assert result.exit_code == 0 and "which is better?" in result.stdout and "rfm feedback" in result.stderr
    result = runner.invoke(cli, ["ask", str(tiny_artifact), "--user", "zoe", "--prompt", "p", "-", *store],
                           input="only one\n")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "at least 2" in result.stderr


def test_cli_bad_input_is_one_line_exit_2(tiny_artifact, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["rerank", str(tiny_artifact), "--user", "a", "--prompt", "p",
                                 str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "missing.txt" in result.stderr
    result = runner.invoke(cli, ["rerank", str(tmp_path), "--user", "a", "--prompt", "p", "-"], input="x\n")
    assert result.exit_code == 2 and "rfm.json" in result.stderr  # not an artifact dir: a usage mistake
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_artifact, tampered)
    (tampered / "population.npz").write_bytes(b"changed")
    result = runner.invoke(cli, ["rerank", str(tampered), "--user", "a", "--prompt", "p", "-"], input="x\n")
    assert result.exit_code == 1 and "population.npz" in result.stderr  # a broken artifact: a failure


def test_readme_desktop_example_runs(tiny_artifact, tmp_path):
    import os

    from conftest import ROOT

    env = {**os.environ, "RFM_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "desktop_app.py"), str(tiny_artifact)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ask alice to choose between" in out.stdout and "best draft now" in out.stdout
    assert list(tmp_path.rglob("*.json"))  # her weights were stored
    env.pop("RFM_HOME")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "desktop_app.py"), str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "make demo" in out.stderr and "Traceback" not in out.stderr


def test_cpu_sessions_leave_layer_norm_unfused(tmp_path):
    """onnxruntime would fuse Add + LayerNormalization into its slower CPU SkipLayerNormalization."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from rfm.runtime.session import make_session

    shape = [2, 4, 8]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "skip"], ["sum"]),
         helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)],
        "add_ln", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(np.ones(8, np.float32), "gamma"), numpy_helper.from_array(np.zeros(8, np.float32), "beta")])
    path = tmp_path / "add_ln.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))

    def optimised_ops(make) -> set[str]:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
        make(options)
        return {node.op_type for node in onnx.load(str(tmp_path / "optimised.onnx")).graph.node}

    plain = optimised_ops(lambda o: ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"]))
    assert "SkipLayerNormalization" in plain  # what we avoid: onnxruntime fuses by default
    ours = optimised_ops(lambda o: make_session(path, "cpu", options=o))
    assert "SkipLayerNormalization" not in ours and "LayerNormalization" in ours


def test_huge_texts_are_cut_before_tokenising_without_changing_ordinary_ones():
    from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file

    tok = PairTokenizer(load_tokenizer_file("minilm"), 256)
    uncapped = PairTokenizer(load_tokenizer_file("minilm"), 256, max_chars=10 ** 9)
    ordinary = ("What should I cook tonight? " * 40, "A long, careful answer with some detail. " * 300)
    assert tok.encode(*map(list, zip(ordinary)))[0].ids == uncapped.encode(*map(list, zip(ordinary)))[0].ids
    huge = "word " * 1_000_000  # 5 MB
    cut = tok.max_chars
    assert cut == 64 * 256
    assert tok.encode(["p"], [huge])[0].ids == uncapped.encode(["p"], [huge[:cut]])[0].ids


def test_data_stats_counts_each_texts_own_tokens(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text('{"prompt": "hi", "chosen": "a short answer", "rejected": "no"}\n')
    result = CliRunner().invoke(cli, ["data", "stats", str(src), "--json"])
    stats = json.loads(result.output)
    assert stats["prompt_length"]["max"] == 1 and stats["response_length"]["max"] == 3


def test_api_refuses_bad_arguments_with_usage_errors(tiny_artifact, tmp_path):
    rm = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path)
    for bad in (-1, 0, 1.5, True):
        with pytest.raises(UsageError, match="top_k"):
            rm.rerank("u", "p", ["a", "b"], top_k=bad)
    with pytest.raises(UsageError, match="three strings"):
        rm.feedback("u", "p", None, "b")
    with pytest.raises(UsageError, match="list of strings"):
        rm.score("u", "p", ["a", 3])
    with pytest.raises(UsageError, match="prompt must be a string"):
        rm.score("u", None, ["a"])
    with pytest.raises(UsageError, match="at most"):
        rm.score("u", "p", ["x"] * 5000)


def test_a_users_prior_is_remembered_by_later_feedback(tiny_artifact, tmp_path):
    RewardModel.load(tiny_artifact, device="cpu", store=tmp_path, prior="none").feedback("u", "p", "a good one", "bad")
    later = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path)  # no prior named: the user's own
    w = later.feedback("u", "p", "another good one", "worse")
    record = later.store.read("u")
    assert record.prior == "none"
    assert np.allclose(w, later.adapter("none").fit(record.deltas))
    assert not np.allclose(w, later.adapter("population").fit(record.deltas))


def test_mixture_prior_adapts_from_the_artifacts_rater_rows_and_is_remembered(tiny_artifact, tmp_path):
    from rfm.runtime.model import artifact_adapter

    model = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path, prior="mixture")
    model.feedback("u", "p", "a good one", "bad")
    w = model.feedback("u", "p", "another good one", "worse")
    record = RewardModel.load(tiny_artifact, device="cpu", store=tmp_path).store.read("u")
    assert record.prior == "mixture"
    rows = model.artifact.raters()[1]
    assert model.adapter("mixture").estimator.responsibilities_.shape == (len(rows),)
    assert np.allclose(w, model.adapter("mixture").fit(record.deltas))
    assert not np.allclose(w, model.adapter("population").fit(record.deltas))
    mean, cov = model.adapter("mixture").posterior(record.deltas)
    assert np.allclose(mean, w) and np.all(np.linalg.eigvalsh(cov) > 0)

    class NoRaters:  # an artifact exported without raters.npz
        adaptive, root = True, tiny_artifact

        def raters(self):
            return None

    with pytest.raises(UsageError, match=r"raters\.npz") as info:
        artifact_adapter(NoRaters(), "mixture")
    assert info.value.param == "prior"
    with pytest.raises(UsageError, match="must be one of"):
        RewardModel.load(tiny_artifact, device="cpu", store=tmp_path, prior="gaussian")


def test_adapt_reads_stdin_and_delete_is_idempotent(tiny_artifact, tmp_path):
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store")]
    line = json.dumps({"prompt": "p", "chosen": "a kind answer", "rejected": "no"})
    result = runner.invoke(cli, ["adapt", str(tiny_artifact), "--user", "eve", "-", *store], input=line + "\n")
    assert result.exit_code == 0, result.output
    for _ in range(2):
        result = runner.invoke(cli, ["users", "delete", str(tiny_artifact), "eve", *store])
        assert result.exit_code == 0
    assert "nothing was stored" in result.output


def test_a_max_length_the_graph_cannot_take_is_an_artifact_error(tiny_artifact, tmp_path):
    import shutil

    from rfm.runtime.artifact import ArtifactError

    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "rfm.json").read_text())
    manifest["max_length"] = 4096  # more positions than the encoder has
    (copy / "rfm.json").write_text(json.dumps(manifest))
    rm = RewardModel.load(copy, device="cpu", precision="fp32", store=tmp_path / "s")
    with pytest.raises(ArtifactError, match="max_length"):
        rm.score("u", "p " * 3000, ["r " * 3000])


@pytest.mark.parametrize("max_length", [32, 256])
def test_candidates_tokenise_the_prompt_once_with_identical_results(tldr_pairs_path, max_length):
    from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file

    tok = PairTokenizer(load_tokenizer_file("minilm"), max_length)
    pairs = load_pairs(tldr_pairs_path)[:40]
    for pair in pairs:
        responses = [pair.chosen, pair.rejected, "", "a very long answer " * 200]
        fast = tok.encode_candidates(pair.prompt, responses)
        slow = tok.encode([pair.prompt] * len(responses), responses)
        assert [(e.ids, e.type_ids) for e in fast] == [(e.ids, e.type_ids) for e in slow]


def test_coalescing_merges_waiting_batches_and_keeps_each_callers_rows():
    import threading

    from rfm.runtime.batching import CoalescingRunner

    calls: list[tuple[int, int]] = []
    gate = threading.Event()

    def run(batch):
        gate.wait(5)  # the first call blocks until every caller has queued behind it
        calls.append(batch["input_ids"].shape)
        ids = batch["input_ids"].astype(np.float32)
        return np.stack([ids.sum(1), (batch["attention_mask"]).sum(1)], 1)

    runner = CoalescingRunner(run, pad_id=0, max_rows=64)
    batches = [{"input_ids": np.full((k, 3 + k), k, np.int64), "attention_mask": np.ones((k, 3 + k), np.int64)}
               for k in range(1, 6)]
    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(runner, b) for b in batches]
        time.sleep(0.3)
        gate.set()
        results = [f.result(10) for f in futures]
    runner.close()
    for k, out in zip(range(1, 6), results, strict=True):
        assert out.shape == (k, 2) and (out[:, 0] == k * (3 + k)).all() and (out[:, 1] == 3 + k).all()
    assert len(calls) < 5 and runner.batches == 5  # merged: fewer session calls than callers
    assert max(c[0] for c in calls) > 1 and max(c[1] for c in calls) >= 8  # rows stacked, padded to the widest


def test_one_bad_batch_does_not_fail_the_batches_merged_with_it():
    from rfm.runtime.batching import CoalescingRunner, _Job

    def run(batch):
        if (batch["input_ids"] < 0).any():
            raise ValueError("bad ids")
        return batch["input_ids"].sum(1, keepdims=True).astype(np.float32)

    runner = CoalescingRunner(run, pad_id=0)
    good, bad = {"input_ids": np.ones((2, 4), np.int64)}, {"input_ids": -np.ones((1, 4), np.int64)}
    jobs = [_Job(good), _Job(bad), _Job(good)]
    runner._answer(jobs)  # as if all three had queued together
    assert [j.error is None for j in jobs] == [True, False, True] and isinstance(jobs[1].error, ValueError)
    assert (jobs[0].result == 4).all() and (jobs[2].result == 4).all()
    runner.close()


def test_a_coalescing_extractor_gives_the_same_features_under_concurrency(tiny_artifact):
    art = load_artifact(tiny_artifact)
    plain = FeatureExtractor(art, device="cpu", precision="fp32")
    merged = FeatureExtractor(art, device="cpu", precision="fp32")
    merged.coalesce()
    requests = [(f"prompt {i}", [f"answer {j} " * (1 + (i * j) % 7) for j in range(4)]) for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda r: merged.candidates(*r), requests))
    for (prompt, responses), features in zip(requests, got, strict=True):
        np.testing.assert_allclose(features, plain.candidates(prompt, responses), atol=2e-5)
    assert merged.coalescing and merged._coalescer.calls <= merged._coalescer.batches == 12


def test_overlapped_tokenising_gives_the_same_features_in_input_order(tiny_artifact):
    """The GPU path (tokenise batch k+1 while batch k runs) forced on the CPU: same rows, same order."""
    art = load_artifact(tiny_artifact)
    plain = FeatureExtractor(art, device="cpu", precision="fp32", batch_size=4)
    overlapped = FeatureExtractor(art, device="cpu", precision="fp32", batch_size=4)
    assert not plain.pipelined
    overlapped.pipelined = True
    prompts = [f"prompt {i} " * (1 + (7 * i) % 5) for i in range(23)]
    responses = [f"answer {i} " * (1 + (3 * i) % 11) for i in range(23)]
    calls = []
    run = overlapped.run_batch
    overlapped.run_batch = lambda batch: calls.append(len(batch["input_ids"])) or run(batch)
    np.testing.assert_allclose(overlapped(prompts, responses), plain(prompts, responses), atol=2e-5)
    assert sorted(calls) == [3] + [4] * 5


def test_a_prompt_budget_is_trained_exported_and_run_the_same_way(tiny_backbone, scenario2_split, tmp_path):
    """--prompt-budget N: the run, the manifest and the runtime all keep the prompt's first N tokens."""
    from conftest import train_tiny
    from rfm.export.build import export_run
    from rfm.runtime.conformance import check_conformance

    run = tmp_path / "run"
    train_tiny(tiny_backbone, scenario2_split / "train.jsonl", run, epochs=3, prompt_budget=6)
    model, tokenizer, config = load_run(run)
    assert config.rfm_prompt_budget == 6
    art = export_run(run, tmp_path / "art", ["fp32"], log=lambda m: None)
    assert art.truncation.prompt_budget == 6
    artifact = load_artifact(tmp_path / "art")
    extractor = FeatureExtractor(artifact, device="cpu", precision="fp32")
    prompt = "one two three four five six seven eight nine ten eleven"
    responses = ["a fine short answer", "another answer " * 3]
    enc = extractor.tokenizer.encode([prompt] * 2, responses)
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"][:6]
    for e, response in zip(enc, responses, strict=True):
        tail = tokenizer(response, add_special_tokens=False)["input_ids"]
        assert e.ids == [tokenizer.cls_token_id, *head, tokenizer.sep_token_id, *tail, tokenizer.sep_token_id]
    assert [e.ids for e in extractor.tokenizer.encode_candidates(prompt, responses)] == [e.ids for e in enc]
    tok = PairTokenizer(tokenizer.backend_tokenizer, config.rfm_max_length, prompt_budget=6)
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in tok([prompt] * 2, responses).items()})["features"]
    np.testing.assert_allclose(extractor([prompt] * 2, responses), expected.numpy(), atol=1e-4)
    assert check_conformance(artifact, "fp32", "cpu", None)["ok"]


@pytest.mark.parametrize("budget", [0, -3, "8", True])
def test_a_manifest_with_a_bad_prompt_budget_is_refused(tiny_artifact, tmp_path, budget):
    from rfm.runtime.manifest import ArtifactError, Manifest

    data = json.loads((tiny_artifact / "rfm.json").read_text())
    data["truncation"]["prompt_budget"] = budget
    with pytest.raises(ArtifactError, match="prompt_budget"):
        Manifest.from_json(data)


def test_pad_is_right_padding_of_each_row():
    tok = PairTokenizer.from_file("minilm", 32, pad_id=7)
    encodings = tok.encode(["a prompt", "", "a much longer prompt " * 10], ["yes", "an answer", "no"])
    batch = tok.pad(encodings)
    width = max(len(e.ids) for e in encodings)
    for row, enc in enumerate(encodings):
        k = len(enc.ids)
        assert batch["input_ids"][row].tolist() == enc.ids + [7] * (width - k)
        assert batch["token_type_ids"][row].tolist() == enc.type_ids + [0] * (width - k)
        assert batch["attention_mask"][row].tolist() == [1] * k + [0] * (width - k)
    assert all(v.dtype == np.int64 and v.shape == (3, width) for v in batch.values())


HOSTILE_TEXTS = ["", " ", "[SEP]", "[sep] x", "a[CLS]b", "\x00\x01", "tab\there", "\x0b\x0c", "ﬁ ligature",
                 "日本語テキスト", "é", "A" * 150, "a" * 100, "a" * 101, "x " * 500, "Ünïcödé", "emoji 😀 ok",
                 "\u200b zero width", "<s> </s>", "[UNK] [MASK] [PAD]", "a\x1cb", "$100 + 5% = ~?", "\r\n\r\n",
                 "e.g. U.S.A. don't", "snake_case and CamelCase42", "pneumonoultramicroscopicsilicovolcanoconiosis",
                 "naïve café, déjà vu " * 120, "日本語の テキスト " * 200, "\u200b " * 600 + "end of it",
                 "x\xa0" * 400 + "é", "word " * 300 + "[SEP] " + "after " * 10]


@pytest.mark.parametrize("max_length,budget", [(8, None), (16, 5), (256, None), (256, 32)])
def test_chunk_cache_path_gives_the_librarys_ids_on_real_and_hostile_text(tldr_pairs_path, max_length, budget):
    from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file

    fast = PairTokenizer(load_tokenizer_file("minilm"), max_length, prompt_budget=budget)
    library = PairTokenizer(load_tokenizer_file("minilm"), max_length, prompt_budget=budget, use_fast_path=False)
    assert fast.fast_path is not None and library.fast_path is None
    pairs = load_pairs(tldr_pairs_path)[:60]
    texts = [t for p in pairs for t in (p.prompt, p.chosen)] + HOSTILE_TEXTS
    prompts, responses = texts[0::2], texts[1::2][::-1]
    prompts = prompts[: len(responses)]
    ours, theirs = fast.encode(prompts, responses), library.encode(prompts, responses)
    assert [(e.ids, e.type_ids) for e in ours] == [(e.ids, e.type_ids) for e in theirs]
    padded, expected = fast.pad(ours), library.pad(theirs)
    assert all(np.array_equal(padded[k], expected[k]) for k in expected)
    for prompt in [*HOSTILE_TEXTS[:6], pairs[0].prompt]:
        assert ([e.ids for e in fast.encode_candidates(prompt, HOSTILE_TEXTS)]
                == [e.ids for e in library.encode_candidates(prompt, HOSTILE_TEXTS)])


@pytest.mark.parametrize("max_length", [8, 9, 13])
def test_pair_truncation_keeps_what_the_library_keeps_at_every_length(max_length):
    from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file

    fast = PairTokenizer(load_tokenizer_file("minilm"), max_length)
    library = PairTokenizer(load_tokenizer_file("minilm"), max_length, use_fast_path=False)
    # one token a word, and 1-4 tokens a word (the prompt is tokenised only as far as its pair keeps)
    for words in (["the"], ["cat's", "a", "xylophonists", "the", "unaffable,"]):
        def text(n: int, offset: int, words=words) -> str:
            return " ".join(words[(i + offset) % len(words)] for i in range(n))

        responses = [text(n2, 1) for n2 in range(16)]
        for n1 in range(16):
            prompt = text(n1, 0)
            ours, theirs = fast.encode([prompt] * 16, responses), library.encode([prompt] * 16, responses)
            assert [(e.ids, e.type_ids) for e in ours] == [(e.ids, e.type_ids) for e in theirs], (words, n1)
            assert [e.ids for e in fast.encode_candidates(prompt, responses)] == [e.ids for e in theirs], (words, n1)


def test_chunk_cache_stays_bounded_and_correct(monkeypatch):
    from rfm.runtime import wordpiece
    from rfm.runtime.tokenize import load_tokenizer_file

    library = load_tokenizer_file("minilm")
    library.no_padding()
    fast = wordpiece.WordPieceFastPath.for_tokenizer(library)
    baseline = max(len(fast._chunks), len(fast._pieces))
    monkeypatch.setattr(wordpiece, "MAX_CACHED_CHUNKS", baseline + 5)
    monkeypatch.setattr(wordpiece, "MAX_CACHED_CHARS", 30)
    for i in range(40):
        for text in (f"zqx{i}, unheard-of wordz{i}!", f"naïve zqx{i} – café{i}… {chr(0x4E00 + i)}{chr(0x0400 + i)}"):
            assert fast.ids(text) == library.encode(text, add_special_tokens=False).ids
        assert len(fast._chunks) <= baseline + 5 + 3 and len(fast._pieces) <= baseline + 5 + 3
        assert len(fast._chars) <= 30


@pytest.mark.parametrize("normalizer", [None, {"lowercase": False, "strip_accents": False}])
def test_fast_path_agrees_with_the_library_on_every_character(normalizer):
    """Each character inside a word, doubled, and before a combining mark, for MiniLM's uncased normaliser
    and a cased one that keeps accents."""
    import json

    from rfm.runtime.tokenize import load_tokenizer_file
    from rfm.runtime.wordpiece import WordPieceFastPath
    from tokenizers import Tokenizer

    config = json.loads(load_tokenizer_file("minilm").to_str())
    config["normalizer"].update(normalizer or {})
    library = Tokenizer.from_str(json.dumps(config))
    library.no_padding()
    fast = WordPieceFastPath.for_tokenizer(library)
    codes = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and (c < 0x3400 or c % 31 == 0)]
    plain = [f"a{chr(c)}b {chr(c)}{chr(c)}x" for c in codes]
    texts = plain + [f"e{chr(c)}\u0327" for c in codes]  # then a combining mark (NFD may reorder marks)
    expected = library.encode_batch(texts, add_special_tokens=False)
    ours = [fast.ids(t) for t in texts]
    assert sum(ids is None for ids in ours[: len(plain)]) < len(plain) // 10  # only marks NFD may reorder
    assert [t for t, ids, e in zip(texts, ours, expected, strict=True) if ids is not None and ids != e.ids] == []


def test_chunk_cache_path_is_off_for_tokenizers_it_was_not_built_for():
    import json

    from rfm.runtime.tokenize import PairTokenizer, load_tokenizer_file
    from rfm.runtime.wordpiece import WordPieceFastPath
    from tokenizers import Tokenizer

    config = json.loads(load_tokenizer_file("minilm").to_str())
    config["pre_tokenizer"] = {"type": "Whitespace"}  # keeps "--" or "?!" together, unlike BERT's pre-tokenizer
    other = Tokenizer.from_str(json.dumps(config))
    other.no_padding()
    assert WordPieceFastPath.for_tokenizer(other) is None
    tok = PairTokenizer(other, 32)
    assert tok.fast_path is None
    assert tok.encode(["wait -- what?!"], ["x"])[0].ids == other.encode("wait -- what?!", "x").ids


def test_cpu_runs_each_row_as_its_own_call_on_concurrent_streams_unless_told(tiny_artifact, monkeypatch):
    import threading

    from rfm.runtime.features import CPU_BATCH_SIZE, FeatureExtractor

    art = load_artifact(tiny_artifact)
    default = FeatureExtractor(art, device="cpu", precision="fp32", threads=2)
    whole = FeatureExtractor(art, device="cpu", precision="fp32", batch_size=32)
    assert default.batch_size == CPU_BATCH_SIZE == 1 and default.streams == 2 and whole.streams == 0
    prompts, responses = ["p"] * 10, [f"answer {i}" for i in range(10)]
    default(prompts[:2], responses[:2])  # builds the one-thread row session
    calls, threads = [], set()
    run = default._row_session.run

    def spy(self, names, feeds):
        calls.append(feeds["input_ids"].shape[0])
        threads.add(threading.get_ident())
        return run(names, feeds)

    monkeypatch.setattr(default, "_row_session", type("S", (), {"run": spy})())
    out = default(prompts, responses)
    assert calls == [1] * 10 and len(threads) == 2 and out.shape == (10, art.features)
    assert np.allclose(out, whole(prompts, responses), atol=1e-5)  # fp32: the same rows, back in input order
    assert np.allclose(default(prompts[:1], responses[:1]), out[:1], atol=1e-6)  # one row: the all-thread session


def test_int8_scores_do_not_depend_on_the_other_candidates_or_their_order(tiny_artifact):
    """A dynamic int8 graph quantises each call's activations on that call's range: rows sharing a call
    move each other, so a reranking could change with the candidates' order. One row per call cannot."""
    from rfm.runtime.features import FeatureExtractor

    art = load_artifact(tiny_artifact)
    extractor = FeatureExtractor(art, device="cpu", precision="int8", threads=2)
    shared = FeatureExtractor(art, device="cpu", precision="int8", threads=2, batch_size=8)
    candidates = [("short", "ok"), ("a little longer answer", "with detail"), ("x " * 40, "long " * 30),
                  ("numbers 1 2 3", "and 4 5 6"), ("!!!", "???"), ("the same", "the same"), ("z", "z " * 90),
                  ("end", "fin")]
    texts = [" ".join(c) for c in candidates]
    alone = np.stack([extractor("q", [t])[0] for t in texts])
    together = extractor(["q"] * 8, texts)
    reversed_ = extractor(["q"] * 8, texts[::-1])[::-1]
    assert np.array_equal(together, alone) and np.array_equal(reversed_, alone)
    one_call = shared(["q"] * 8, texts)
    assert not np.array_equal(one_call, alone)  # the companions' effect this guards against is real here
