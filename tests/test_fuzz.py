"""Property-based fuzzing of every reader: whatever the input, only rfm's typed errors escape, and a
command that fails leaves no partial output file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rfm.runtime.manifest import Manifest, graphs_fingerprint
from rfm.runtime.store import UserRecord, UserStore

from rfm.cli.main import cli
from rfm.cli.runtime import read_candidates
from rfm.data.convert import ConvertReport, convert
from rfm.data.jsonl import read_pairs
from rfm.errors import RfmError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
PAIR_KEYS = ["prompt", "chosen", "rejected", "user_id", "id", "info", "summaries", "choice", "worker", "extra",
             "metadata", "source_index"]
records = st.dictionaries(st.sampled_from(PAIR_KEYS), json_values | st.text(max_size=30), max_size=8)
lines = st.one_of(records.map(json.dumps), st.binary(max_size=60), st.text(max_size=60).map(str.encode),
                  json_values.map(json.dumps))


def _only_typed_errors(action) -> None:
    """Run `action`; an rfm error is a handled input, anything else fails the test."""
    with contextlib.suppress(RfmError):
        action()


def _file(data: bytes, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return Path(name)


@FUZZ
@given(st.lists(lines, min_size=1, max_size=4))
def test_jsonl_reader_and_converters(raw_lines):
    path = _file(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in raw_lines), ".jsonl")
    try:
        _only_typed_errors(lambda: list(read_pairs(path)))
        for fmt in ("tldr", "ultrafeedback", "hh-rlhf"):
            _only_typed_errors(lambda fmt=fmt: list(convert(fmt, [path], ConvertReport())))
    finally:
        path.unlink()


@FUZZ
@given(st.lists(records.map(json.dumps), min_size=1, max_size=3), st.sampled_from(["tldr", "ultrafeedback"]))
def test_convert_command_writes_all_or_nothing(raw_lines, fmt):
    src = _file("\n".join(raw_lines).encode(), ".jsonl")
    out = src.with_name(src.stem + "-out.jsonl")
    try:
        result = CliRunner().invoke(cli, ["data", "convert", "--format", fmt, str(src), "-o", str(out)])
        assert result.exit_code in (0, 2), result.exception
        if result.exit_code == 0:
            assert list(read_pairs(out))
        else:
            assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}.*.tmp"))
    finally:
        src.unlink()
        out.unlink(missing_ok=True)


def _valid_manifest() -> dict:
    files = {"model.onnx": "a" * 64, "model_int8.onnx": "b" * 64, "tokenizer.json": "c" * 64}
    precisions = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
    return {"format": "rfm-artifact", "format_version": 1, "features": 8, "max_length": 256,
            "inputs": ["input_ids", "attention_mask"], "precisions": precisions, "files": files,
            "fingerprint_scheme": "graphs-sha256", "fingerprint": graphs_fingerprint(precisions, files),
            "truncation": {"strategy": "longest_first", "direction": "right"}, "pad_token_id": 0}


@FUZZ
@given(st.sampled_from(sorted(_valid_manifest())), json_values)
def test_manifest_validation(key, value):
    data = _valid_manifest()
    data[key] = value
    _only_typed_errors(lambda: Manifest.from_json(data))
    assert Manifest.from_json(_valid_manifest()).features == 8


@FUZZ
@given(st.one_of(st.binary(max_size=80), st.sampled_from(["w", "deltas", "feedback_total", "created", "user_id",
                                                          "fingerprint", "prior", "format_version"])),
       json_values)
def test_user_file_reader(content, value):
    with tempfile.TemporaryDirectory() as root:
        store = UserStore("f" * 64, 2, root)
        with store.locked("u"):
            store.write(UserRecord("u", "f" * 64, np.zeros(2), np.zeros((1, 2))))
        path = store.path("u")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            data = json.loads(path.read_text())
            data[content] = value
            path.write_text(json.dumps(data))
        _only_typed_errors(lambda: store.read("u"))
        records, problems = store.scan()
        assert len(records) + len(problems) == 1


@FUZZ
@given(st.binary(max_size=120), st.sampled_from(["lines", "jsonl", "auto"]))
def test_candidates_reader(data, fmt):
    path = _file(data, ".jsonl")
    try:
        _only_typed_errors(lambda: read_candidates(str(path), fmt))
    finally:
        path.unlink()
