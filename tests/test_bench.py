"""rfm bench on a tiny artifact with a minimal grid: finishes fast, JSON has every contract field."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rfm.cli.main import cli

ROW_KEYS = {"device", "precision", "batch", "seq_len", "p50_ms", "p90_ms", "p99_ms", "seq_per_s"}


def test_bench_json_has_every_field(tiny_artifact, tiny_run, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, [
        "bench", str(tiny_artifact), "--device", "cpu", "--precision", "fp32,int8", "--batch", "1,2",
        "--seq-len", "16", "--repeats", "2", "--warmup", "1", "--min-time", "0", "--threads", "1",
        "--compare", "torch", "--run", str(tiny_run), "--json", str(out), "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0, result.output
    obj = json.loads(out.read_text())
    assert {"cpu", "cores", "gpu", "onnxruntime"} <= set(obj["machine"])
    assert len(obj["runs"]) == 4 and all(set(r) >= ROW_KEYS for r in obj["runs"])
    assert all(set(r) >= ROW_KEYS for r in obj["bare_session"])
    assert obj["torch_fp32"] and all(set(r) >= ROW_KEYS for r in obj["torch_fp32"])
    # PyTorch model only and end to end (its own tokenizer), once per batch x length, on the CPU only here
    assert sorted(r["precision"] for r in obj["torch_fp32"]) == ["torch-fp32"] * 2 + ["torch-fp32 e2e"] * 2
    assert obj["torch_cuda"] is None
    assert [a["m"] for a in obj["adapt"]] == [10, 50, 200]
    assert all({"d", "m", "fit_ms", "sklearn_ms"} <= set(a) for a in obj["adapt"])
    assert obj["cold_start_s"] > 0 and obj["peak_rss_mb"] > 0
    assert obj["runtime_imports_training_stack"] is None
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert "| cpu | int8 | 2 | 16 |" in result.output


def test_default_grid_is_the_runtimes_own_precision_with_progress_and_stability(tiny_artifact, tmp_path):
    from rfm.runtime import load_artifact

    from rfm.bench import grid_cells, percentiles

    result = CliRunner().invoke(cli, ["bench", str(tiny_artifact), "--device", "cpu", "--batch", "1",
                                      "--repeats", "2", "--warmup", "0", "--min-time", "0", "--json",
                                      str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    obj = json.loads((tmp_path / "b.json").read_text())
    assert [(r["precision"], r["seq_len"]) for r in obj["runs"]] == [("int8", 256)]
    assert "[1/1] cpu int8 batch 1 x 256" in result.output
    cells, skipped = grid_cells(load_artifact(tiny_artifact), ["cpu", "cuda"], ["int8", "fp16"])
    assert ("cuda", "int8") not in cells and any("cuda/int8" in s for s in skipped)
    assert percentiles([0.01] * 9 + [0.05], 1, 1)["stable"] is True
    assert percentiles([0.01] * 7 + [0.05] * 3, 1, 1)["stable"] is False
