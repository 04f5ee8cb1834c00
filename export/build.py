"""Build an artifact dir from a run dir: ONNX graphs per precision, tokenizer, prior, manifest."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rfm.export.onnx_export import (
    cpu_session,
    export_fp32,
    fuse_transformer,
    onnx_features,
    torch_features,
    validation_batches,
)
from rfm.export.quantize import convert_fp16, host_isa, quantize_int8
from rfm.export.sample import sample_pairs
from rfm.runtime.artifact import MANIFEST, load_artifact, sha256_file
from rfm.runtime.conformance import CONFORMANCE_FILE, check_conformance, row_cosines, write_conformance
from rfm.runtime.manifest import FINGERPRINT_SCHEME, Manifest, Truncation, graphs_fingerprint
from rfm.runtime.tokenize import PairTokenizer

from rfm import __version__
from rfm.errors import RfmError, UsageError
from rfm.fileio import atomic_open, check_output_dir, publish, staging_dir

FP32_TOL = 1e-4
INT8_MIN_COSINE = 0.99
INT8_MIN_AGREEMENT = 0.98
# Pairs whose fp32 preference probability lies within 0.5 +- TIE_BAND are coin flips for the model
# itself; quantisation noise decides them either way, so the agreement bound counts the other pairs.
TIE_BAND = 0.05
FILE_OF = {"fp32": "model.onnx", "int8": "model_int8.onnx", "fp16": "model_fp16.onnx"}


def _validation_texts(path: str | None, limit: int = 96) -> tuple[list[tuple[str, str]], list[tuple[int, int]]]:
    """Distinct (prompt, response) texts and the index pairs to compare preferences on."""
    if path:
        from itertools import islice

        from rfm.data.jsonl import index_texts, read_pairs

        texts, a, b = index_texts(islice(read_pairs(path), limit))
        if not texts:
            raise UsageError(f"--validation-data {path}: no pairs")
        return texts, list(zip(a, b, strict=True))
    sample = sample_pairs()
    pairs = [(i, j) for i in range(len(sample)) for j in range(i + 1, len(sample)) if sample[i][0] == sample[j][0]]
    return sample, pairs


def _features(path: Path, pair_tok: PairTokenizer, texts, batch: int = 16) -> np.ndarray:
    session = cpu_session(path)
    out = []
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        out.append(onnx_features(session, pair_tok([p for p, _ in chunk], [r for _, r in chunk])))
    return np.concatenate(out)


def _max_diff_vs_torch(path: Path, model, batches) -> float:
    session = cpu_session(path)
    return max(float(np.abs(onnx_features(session, b) - torch_features(model, b)).max()) for b in batches)


def _compare(reference: np.ndarray, other: np.ndarray, pairs, w: np.ndarray) -> dict:
    cosine = row_cosines(reference, other)
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    margin = (reference[a] - reference[b]) @ w
    agree = np.sign(margin) == np.sign((other[a] - other[b]) @ w)
    decisive = np.abs(1.0 / (1.0 + np.exp(-margin)) - 0.5) >= TIE_BAND
    return {"mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min()),
            "max_abs_diff": float(np.abs(reference - other).max()),
            "pair_agreement": float(agree[decisive].mean()) if decisive.any() else 1.0,
            "pair_agreement_all": float(agree.mean()), "pairs": len(pairs), "decisive_pairs": int(decisive.sum()),
            "tie_band": TIE_BAND}


@dataclass
class _Export:
    """What the stages of one export share: the staging folder, the model and its validation texts."""

    staging: Path
    model: object
    config: object
    pair_tok: PairTokenizer
    texts: list
    pairs: list
    mean_w: np.ndarray
    log: object
    validation: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # precision -> file name
    features: dict = field(default_factory=dict)  # precision -> features of the validation texts


def export_run(run: str | os.PathLike, out: str | os.PathLike, precisions: list[str], opset: int = 18,
               validation_data: str | None = None, quant_target: str = "auto", overwrite: bool = False,
               log=print) -> Manifest:
    """Export, validate and write the artifact; raises RfmError naming the bound that was missed.

    Stages: the fp32 graph (Optimum, fused where that stays exact), int8, fp16, the files beside them
    (tokenizer, conformance, prior), the manifest; then the artifact must load and reproduce itself.
    """
    from rfm.train.rundir import POPULATION_FILE, load_run

    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]  # every other precision is derived from and checked against fp32
    started = time.perf_counter()
    check_output_dir(out, overwrite)
    model, hf_tokenizer, config = load_run(run)
    run = Path(run)
    staging = staging_dir(out, overwrite)
    try:
        budget = getattr(config, "rfm_prompt_budget", None)
        pair_tok = PairTokenizer(hf_tokenizer.backend_tokenizer, config.rfm_max_length,
                                 config.rfm_truncation, pad_id=hf_tokenizer.pad_token_id, prompt_budget=budget)
        texts, pairs = _validation_texts(validation_data)
        with np.load(run / POPULATION_FILE) as z:
            mean_w = z["mean"]
        job = _Export(staging, model, config, pair_tok, texts, pairs, mean_w, log)
        inputs = _export_fp32_stage(job, opset, validation_data)
        quant_used = _int8_stage(job, quant_target) if "int8" in precisions else None
        if "fp16" in precisions:
            _fp16_stage(job)
        listed = _side_files_stage(job, run)
        hashes = {name: sha256_file(staging / name) for name in listed}
        manifest = Manifest(
            features=int(config.rfm_features), max_length=int(config.rfm_max_length), inputs=list(inputs),
            precisions=job.files, files=hashes, fingerprint=graphs_fingerprint(job.files, hashes),
            fingerprint_scheme=FINGERPRINT_SCHEME, truncation=Truncation(config.rfm_truncation, "right", budget),
            kind=config.rfm_kind, adaptive=config.rfm_kind != "baseline",
            pad_token_id=int(hf_tokenizer.pad_token_id or 0), rfm_version=__version__,
            backbone={"name": config.rfm_backbone, "model_type": config.model_type}, validation=job.validation,
            training=_training_facts(run, config),
            export={"source_run": str(run.resolve()), "opset": opset, "optimum_exporter": "optimum.exporters.onnx.export",
                    "int8_quantization": quant_used, "validated_on": host_isa(),
                    "seconds": round(time.perf_counter() - started, 2)},
            sizes_bytes={name: (staging / name).stat().st_size for name in listed})
        with atomic_open(staging / MANIFEST) as handle:
            json.dump(manifest.to_json(), handle, indent=1)
        _check_loads(staging, job.files)
        publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _export_fp32_stage(job: _Export, opset: int, validation_data: str | None) -> list[str]:
    """The fp32 graph through Optimum, fused where the fusion stays within FP32_TOL of torch; its inputs."""
    job.log("exporting the feature graph through Optimum ...")
    raw, fused = job.staging / "raw.onnx", job.staging / "fused.onnx"
    inputs, _ = export_fp32(job.model, raw, opset)
    batches = validation_batches(job.pair_tok, job.texts)
    fusion = fuse_transformer(raw, fused, job.config) and _max_diff_vs_torch(fused, job.model, batches) <= FP32_TOL
    fp32_path = job.staging / FILE_OF["fp32"]
    os.replace(fused if fusion else raw, fp32_path)
    for leftover in (raw, fused):
        leftover.unlink(missing_ok=True)
    max_diff = _max_diff_vs_torch(fp32_path, job.model, batches)
    job.validation.update({"fp32_vs_torch_max_abs_diff": max_diff, "fp32_tolerance": FP32_TOL,
                           "batch_shapes": [list(b["input_ids"].shape) for b in batches],
                           "data": validation_data or "built-in sample", "fused": bool(fusion)})
    if max_diff > FP32_TOL:
        raise RfmError(f"fp32 ONNX differs from torch by {max_diff:.2e} > {FP32_TOL:g}; export refused")
    job.files["fp32"] = FILE_OF["fp32"]
    job.features["fp32"] = _features(fp32_path, job.pair_tok, job.texts)
    return inputs


def _int8_passes(report: dict) -> bool:
    return report["mean_cosine"] >= INT8_MIN_COSINE and report["pair_agreement"] >= INT8_MIN_AGREEMENT


def _int8_stage(job: _Export, quant_target: str) -> dict:
    """Everything quantised first (smallest, fastest); if that misses a bound, attention stays fp32 and
    only the dense layers are quantised; if that misses too, the export fails."""
    fp32_path, int8_path = job.staging / FILE_OF["fp32"], job.staging / FILE_OF["int8"]
    for scope, operators in (("all", None), ("dense-only", ["MatMul"])):
        job.log(f"quantising to int8 ({scope}) ...")
        quant_used = quantize_int8(fp32_path, int8_path, quant_target, job.config, operators)
        features = _features(int8_path, job.pair_tok, job.texts)
        report = {**_compare(job.features["fp32"], features, job.pairs, job.mean_w), "scope": scope}
        if _int8_passes(report):
            job.validation["int8"], job.files["int8"], job.features["int8"] = report, FILE_OF["int8"], features
            return quant_used
    job.validation["int8"] = report
    raise RfmError(f"int8 model misses the bounds: mean cosine {report['mean_cosine']:.4f} "
                   f"(>= {INT8_MIN_COSINE}), pair agreement {report['pair_agreement']:.3f} "
                   f"(>= {INT8_MIN_AGREEMENT}); export refused (try --precision fp32)")


def _fp16_stage(job: _Export) -> None:
    """The fp16 graph (a GPU precision: checked on the CPU only where its kernels exist there)."""
    job.log("converting to fp16 ...")
    fp16_path = job.staging / FILE_OF["fp16"]
    convert_fp16(job.staging / FILE_OF["fp32"], fp16_path)
    try:
        job.validation["fp16"] = _compare(job.features["fp32"], _features(fp16_path, job.pair_tok, job.texts),
                                          job.pairs, job.mean_w)
    except Exception as exc:  # fp16 kernels are a GPU feature; CPU builds may lack some
        job.validation["fp16"] = {"cpu_check": f"not run on CPU: {type(exc).__name__}"}
    job.files["fp16"] = FILE_OF["fp16"]


def _side_files_stage(job: _Export, run: Path) -> list[str]:
    """tokenizer.json (encoding exactly as the runtime), conformance.json, the prior and rater weights;
    returns every file the manifest lists."""
    from rfm.train.rundir import POPULATION_FILE, RATERS_FILE

    job.pair_tok.save(job.staging / "tokenizer.json")
    write_conformance(job.staging / CONFORMANCE_FILE, job.pair_tok, job.texts,
                      {p: f for p, f in job.features.items() if p in ("fp32", "int8")})
    shutil.copy(run / POPULATION_FILE, job.staging / POPULATION_FILE)
    listed = [*job.files.values(), "tokenizer.json", CONFORMANCE_FILE, POPULATION_FILE]
    if (run / RATERS_FILE).is_file():
        shutil.copy(run / RATERS_FILE, job.staging / RATERS_FILE)
        listed.append(RATERS_FILE)
    return listed


def _training_facts(run: Path, config) -> dict:
    """What a reader of the artifact needs to know of its training: pooling, selection, prior width."""
    from rfm.train.rundir import read_summary

    summary = read_summary(run)
    width = summary.get("prior_width") or {}
    return {"pooling": config.rfm_pooling, "selection": summary.get("config", {}).get("selection"),
            "best_epoch": summary.get("best_epoch"),
            "prior_width": {k: width.get(k) for k in ("margin_variance", "tau", "grid_extended", "fewshot_acc")}
            if width else None,
            "collapsed": (summary.get("collapse") or {}).get("collapsed")}


def _check_loads(root: Path, files: dict[str, str]) -> None:
    """The artifact verifies, and this runtime reproduces its conformance file with every CPU graph."""
    artifact = load_artifact(root, verify="all")
    for precision in files:
        if precision == "fp16":
            continue
        try:
            report = check_conformance(artifact, precision, "cpu")
        except RfmError:
            raise
        except Exception as exc:
            raise RfmError(f"{files[precision]}: does not load in a fresh onnxruntime session ({exc})") from None
        if not report["ok"]:
            raise RfmError(f"{files[precision]}: the runtime does not reproduce the exported features "
                           f"(tokens match: {report['tokens_match']}, min cosine {report['min_cosine']:.5f})")
