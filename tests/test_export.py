"""rfm export: shapes, dynamic axes, manifest hashes, validation figures, tamper detection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
from conftest import train_tiny
from rfm.export.build import export_run
from rfm.runtime.artifact import ArtifactError, load_artifact, sha256_file
from rfm.runtime.manifest import graphs_fingerprint


def test_artifact_files_and_manifest(tiny_artifact):
    manifest = json.loads((tiny_artifact / "rfm.json").read_text())
    assert manifest["format_version"] == 1 and manifest["features"] == 8
    assert set(manifest["precisions"]) == {"fp32", "int8", "fp16"}
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    for name, digest in manifest["files"].items():
        assert sha256_file(tiny_artifact / name) == digest
    assert manifest["fingerprint_scheme"] == "graphs-sha256"
    assert manifest["fingerprint"] == graphs_fingerprint(manifest["precisions"], manifest["files"])
    assert {"tokenizer.json", "conformance.json", "population.npz"} <= set(manifest["files"])
    val = manifest["validation"]
    assert val["fp32_vs_torch_max_abs_diff"] <= 1e-4
    assert val["int8"]["mean_cosine"] >= 0.99 and val["int8"]["pair_agreement"] >= 0.98
    assert manifest["truncation"] == {"strategy": "longest_first", "direction": "right"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("batch, length", [(1, 5), (7, 5), (1, 300), (7, 300)])
def test_dynamic_batch_and_sequence_axes(tiny_artifact, precision, batch, length):
    name = {"fp32": "model.onnx", "int8": "model_int8.onnx"}[precision]
    session = ort.InferenceSession(str(tiny_artifact / name), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(1000, 2000, size=(batch, length)).astype(np.int64),
             "attention_mask": np.ones((batch, length), np.int64),
             "token_type_ids": np.zeros((batch, length), np.int64)}
    (features,) = session.run(["features"], feeds)
    assert features.shape == (batch, 8) and np.all(np.isfinite(features))


def test_tampered_file_is_refused_naming_it(tiny_artifact, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    with open(copy / "model_int8.onnx", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    load_artifact(copy, verify="used")  # model files are checked when a session opens them
    with pytest.raises(ArtifactError, match=r"model_int8\.onnx: sha256 does not match"):
        load_artifact(copy, verify="all")
    from rfm.runtime import RewardModel

    with pytest.raises(ArtifactError, match=r"model_int8\.onnx"):
        RewardModel.load(copy, precision="int8")
    (copy / "population.npz").write_bytes(b"junk")
    with pytest.raises(ArtifactError, match=r"population\.npz"):
        load_artifact(copy)


def test_unknown_format_version_is_refused(tiny_artifact, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "rfm.json").read_text())
    manifest["format_version"] = 99
    (copy / "rfm.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown format version 99"):
        load_artifact(copy)


def test_baseline_and_linear_probe_export_through_the_same_command(tiny_backbone, scenario2_split, tmp_path,
                                                                     tiny_baseline_run):
    manifest = export_run(tiny_baseline_run, tmp_path / "bt", ["fp32", "int8"], log=lambda m: None)
    assert manifest.features == 1 and manifest.adaptive is False
    train_tiny(tiny_backbone, scenario2_split / "train.jsonl", tmp_path / "probe_run", kind="linear-probe")
    manifest = export_run(tmp_path / "probe_run", tmp_path / "probe", ["fp32"], log=lambda m: None)
    assert manifest.features == 193 and manifest.kind == "linear-probe"  # layers: 3 x 64 + log length
    assert load_artifact(tmp_path / "probe", verify="all").features == 193


def test_existing_output_needs_overwrite(tiny_run, tiny_artifact):
    from rfm.errors import UsageError

    with pytest.raises(UsageError, match="--overwrite"):
        export_run(tiny_run, tiny_artifact, ["fp32"], log=lambda m: None)


def test_stored_graph_fuses_attention_but_keeps_layer_norm_and_gelu_standard(tiny_artifact):
    import onnx

    manifest = json.loads((tiny_artifact / "rfm.json").read_text())
    assert manifest["validation"]["fused"] is True
    ops = {node.op_type for node in onnx.load(str(tiny_artifact / "model.onnx")).graph.node}
    assert "Attention" in ops and "LayerNormalization" in ops and "Erf" in ops
    assert not ops & {"SkipLayerNormalization", "BiasGelu", "Gelu"}
    int8_ops = {node.op_type for node in onnx.load(str(tiny_artifact / "model_int8.onnx")).graph.node}
    assert "QAttention" in int8_ops and "SkipLayerNormalization" not in int8_ops


def test_backbone_without_token_types_trains_exports_and_runs(scenario2_split, tmp_path, caplog):
    """DistilBERT-style backbones: no segment ids, so response pooling falls back to mean (said once)."""
    import torch
    from conftest import make_tiny_distilbert
    from rfm.runtime import FeatureExtractor
    from rfm.runtime.tokenize import PairTokenizer
    from rfm.train.rundir import load_run

    backbone = make_tiny_distilbert(tmp_path / "tiny_distilbert")
    summary = train_tiny(backbone, scenario2_split / "train.jsonl", tmp_path / "run", epochs=2, pooling="response")
    assert summary["config"]["pooling"] == "mean"
    assert "no token_type_ids" in caplog.text
    manifest = export_run(tmp_path / "run", tmp_path / "art", ["fp32", "int8"], log=lambda m: None)
    assert manifest.inputs == ["input_ids", "attention_mask"]
    extractor = FeatureExtractor(load_artifact(tmp_path / "art"), device="cpu", precision="fp32")
    prompts, responses = ["a prompt", "another, longer prompt " * 20], ["short", "a longer answer " * 10]
    ours = extractor(prompts, responses)
    model, tokenizer, config = load_run(tmp_path / "run")
    tok = PairTokenizer(tokenizer.backend_tokenizer, config.rfm_max_length)
    with torch.inference_mode():
        for i in range(len(prompts)):
            batch = {k: torch.from_numpy(v) for k, v in tok([prompts[i]], [responses[i]]).items()}
            np.testing.assert_allclose(ours[i], model(**batch)["features"].numpy()[0], atol=1e-4)


def _edited(tiny_artifact, tmp_path, edit) -> object:
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    manifest = json.loads((copy / "rfm.json").read_text())
    edit(manifest)
    (copy / "rfm.json").write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("edit, field", [
    (lambda m: m["precisions"].update(int8="../other/model_int8.onnx"), "precisions"),
    (lambda m: m["files"].update({"../x.onnx": "0" * 64}), "files"),
    (lambda m: m.update(features="8"), "features"),
    (lambda m: m.update(features=0), "features"),
    (lambda m: m.update(max_length=10 ** 9), "max_length"),
    (lambda m: m.update(truncation={"strategy": ""}), "truncation"),
    (lambda m: m.update(precisions={}), "precisions"),
    (lambda m: m.update(inputs="input_ids"), "inputs"),
    (lambda m: m.update(adaptive="yes"), "adaptive"),
    (lambda m: m.update(training=[1]), "training"),
])
def test_hand_edited_manifest_is_refused_naming_the_field(tiny_artifact, tmp_path, edit, field):
    with pytest.raises(ArtifactError, match=f"field '{field}'"):
        load_artifact(_edited(tiny_artifact, tmp_path, edit))


def test_a_graph_cannot_be_swapped_under_users_weights(tiny_artifact, tmp_path):
    """Pointing int8 at another graph and fixing its hash changes what the fingerprint must be."""
    def swap(manifest):
        manifest["files"]["model_int8.onnx"] = manifest["files"]["model.onnx"]
    with pytest.raises(ArtifactError, match="field 'fingerprint'"):
        load_artifact(_edited(tiny_artifact, tmp_path, swap))


def test_what_is_verified_is_what_runs(tiny_artifact, tmp_path, monkeypatch):
    """The extractor hashes the bytes it hands to onnxruntime: no second read of the path."""
    import rfm.runtime.features as features

    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    artifact = load_artifact(copy)
    seen = []
    real = features.make_session
    monkeypatch.setattr(features, "make_session", lambda model, *a, **k: seen.append(model) or real(model, *a, **k))
    features.FeatureExtractor(artifact, device="cpu", precision="int8")
    assert isinstance(seen[0], bytes) and sha256_file(copy / "model_int8.onnx") == artifact.manifest.files[
        "model_int8.onnx"]


def test_tokenizer_json_encodes_like_the_runtime_and_conformance_holds(tiny_artifact):
    """Another runtime loading tokenizer.json gets the runtime's token ids; this runtime passes conformance."""
    from rfm.runtime.conformance import check_conformance
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_artifact / "tokenizer.json"))
    assert tok.padding is None and tok.truncation["max_length"] == load_artifact(tiny_artifact).max_length
    data = json.loads((tiny_artifact / "conformance.json").read_text())
    for case in data["cases"]:
        assert tok.encode(case["prompt"], case["response"]).ids == case["input_ids"]
    long = tok.encode("p " * 400, "r " * 400)
    assert len(long.ids) == load_artifact(tiny_artifact).max_length
    for precision in ("fp32", "int8"):
        report = check_conformance(load_artifact(tiny_artifact), precision)
        assert report["ok"] and report["tokens_match"] and report["cases"] == 4


def test_conformance_fails_when_features_differ(tiny_artifact, tmp_path):
    from rfm.runtime.conformance import check_conformance

    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    data = json.loads((copy / "conformance.json").read_text())
    data["features"]["fp32"] = (-np.asarray(data["features"]["fp32"])).tolist()
    (copy / "conformance.json").write_text(json.dumps(data))
    manifest = json.loads((copy / "rfm.json").read_text())
    manifest["files"]["conformance.json"] = sha256_file(copy / "conformance.json")
    (copy / "rfm.json").write_text(json.dumps(manifest))
    report = check_conformance(load_artifact(copy), "fp32")
    assert not report["ok"] and report["min_cosine"] < 0


def test_default_int8_is_portable_and_says_where_it_was_validated(tiny_artifact):
    import platform

    from rfm.export.quantize import portable_quant_target

    manifest = json.loads((tiny_artifact / "rfm.json").read_text())
    expected = "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_portable"
    assert manifest["export"]["int8_quantization"] == portable_quant_target() == expected
    assert manifest["export"]["validated_on"][0] == platform.machine().lower()


@pytest.mark.parametrize("backbone_kind", ["bert", "distilbert"])
def test_token_head_trains_on_packed_states_and_exports_what_it_trained(backbone_kind, tiny_backbone,
                                                                         scenario2_split, tmp_path):
    """--head tokens: features computed in training (packed embedding-layer states) are the ones the
    exported graph computes (padded, in one ONNX graph), for backbones with and without segment ids."""
    import torch
    from conftest import make_tiny_distilbert
    from rfm.runtime import FeatureExtractor
    from rfm.runtime.tokenize import PairTokenizer
    from rfm.train.model import TokenHead
    from rfm.train.rundir import load_run
    from rfm.train.token_states import token_states
    from rfm.train.trainer import head_features

    backbone = tiny_backbone if backbone_kind == "bert" else make_tiny_distilbert(tmp_path / "tiny_distilbert")
    summary = train_tiny(backbone, scenario2_split / "train.jsonl", tmp_path / "run", epochs=4, head="tokens",
                         head_hidden=16)
    assert summary["config"]["head"] == "tokens" and summary["history"]
    model, tokenizer, config = load_run(tmp_path / "run")
    assert isinstance(model.head, TokenHead)
    assert model.head.tokens[-1].weight.abs().sum() > 0  # the per-token MLP was trained, not left at its zero start
    prompts = ["a prompt", "another, longer prompt " * 20, ""]
    responses = ["short", "a longer answer, perhaps! " * 10, "I think it's fine"]
    tok = PairTokenizer(tokenizer.backend_tokenizer, config.rfm_max_length)
    batch = {k: torch.from_numpy(v) for k, v in tok(prompts, responses).items()}
    with torch.inference_mode():
        graph = model(**batch)["features"].numpy()
        states = token_states(model.backbone, tok, list(zip(prompts, responses, strict=True)), model.uses_token_types)
        pooled = model.pooled(**batch)
        packed = head_features(model.head, pooled, states, np.arange(len(prompts))).numpy()
    np.testing.assert_allclose(packed, graph, atol=2e-3)  # states are stored as float16 for training
    manifest = export_run(tmp_path / "run", tmp_path / "art", ["fp32", "int8"], log=lambda m: None)
    assert manifest.features == config.rfm_features
    ours = FeatureExtractor(load_artifact(tmp_path / "art"), device="cpu", precision="fp32")(prompts, responses)
    np.testing.assert_allclose(ours, graph, atol=1e-4)


def test_token_states_gather_the_rows_asked_for():
    import torch
    from rfm.train.token_states import TokenStates

    values = torch.arange(12, dtype=torch.float16).reshape(6, 2)  # rows of 2, 0, 3 and 1 tokens
    states = TokenStates(values, np.array([0, 2, 2, 5, 6]))
    got, segments = states.gather(np.array([3, 0, 1, 2]))
    np.testing.assert_array_equal(got.numpy(), values[[5, 0, 1, 2, 3, 4]].float().numpy())
    np.testing.assert_array_equal(segments.numpy(), [0, 1, 1, 3, 3, 3])
