"""Every command has --help; the README's CLI reference matches the commands."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT

from rfm.cli.main import cli

COMMANDS = [["data", "convert"], ["data", "split"], ["data", "synth"], ["data", "stats"], ["train"], ["export"],
            ["eval"], ["adapt"], ["feedback"], ["ask"], ["score"], ["rerank"], ["users", "list"], ["users", "migrate"], ["users", "export"],
            ["users", "import"], ["check"], ["serve"], ["bench"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_option_says_what_it_does():
    undocumented = [f"rfm {' '.join(path)} {option.opts[0]}" for path, command in _leaf_commands(cli)
                    for option in command.params
                    if isinstance(option, click.Option) and not option.hidden and not option.help]
    assert not undocumented, f"options without help text: {undocumented}"


def test_readme_cli_reference_is_in_sync():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check",
                          str(ROOT / "README.md")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unknown_option_is_usage_error():
    result = CliRunner().invoke(cli, ["train", "x.jsonl", "-o", "y", "--nope"])
    assert result.exit_code == 2


def test_a_malformed_weight_decay_grid_is_one_usage_line_before_any_work(tmp_path):
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "run"),
                                      "--weight-decay-grid", "0.1,x"])
    assert result.exit_code == 2 and "rfm: error: --weight-decay-grid: expected comma-separated numbers" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_check_verifies_an_artifact_and_fails_with_exit_1_when_features_differ(tiny_artifact, tmp_path):
    import json
    import shutil

    from rfm.runtime.artifact import sha256_file

    result = CliRunner().invoke(cli, ["check", str(tiny_artifact), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and [r["precision"] for r in report["conformance"]] == ["fp32", "int8"]
    copy = tmp_path / "art"
    shutil.copytree(tiny_artifact, copy)
    data = json.loads((copy / "conformance.json").read_text())
    data["cases"][0]["input_ids"][1] += 1
    (copy / "conformance.json").write_text(json.dumps(data))
    manifest = json.loads((copy / "rfm.json").read_text())
    manifest["files"]["conformance.json"] = sha256_file(copy / "conformance.json")
    (copy / "rfm.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["check", str(copy)])
    assert result.exit_code == 1 and "tokens DIFFER" in result.output


def test_os_errors_are_one_line_naming_the_path(tmp_path):
    (tmp_path / "a_file").write_text("x")
    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    result = CliRunner().invoke(cli, ["data", "synth", str(src), "--scenario", "2", "-o",
                                      str(tmp_path / "a_file" / "out.jsonl")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("rfm: error:")]
    assert len(lines) == 1 and "a_file" in lines[0] and "Traceback" not in result.output


def test_library_errors_name_the_parameter_and_the_cli_names_the_option(tmp_path):
    from rfm.data.synth import synthesise
    from rfm.errors import UsageError

    src = tmp_path / "src.jsonl"
    src.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(UsageError) as caught:
        synthesise(src, tmp_path / "o.jsonl", scenario=2, n_raters=2, temperature=-1.0)
    assert str(caught.value).startswith("temperature: ") and caught.value.param == "temperature"
    result = CliRunner().invoke(cli, ["data", "synth", str(src), "--scenario", "2", "--temperature", "-1",
                                      "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "rfm: error: --temperature: must be > 0" in result.output


@pytest.mark.parametrize("command, config", [
    (["serve"], "ServeOptions"), (["serve"], "RuntimeOptions"), (["eval"], "EvalOptions"), (["export"], "ExportOptions"),
    (["bench"], "BenchOptions"), (["adapt"], "AdaptOptions"), (["rerank"], "RuntimeOptions"), (["demo"], "DemoConfig"),
    (["train"], "TrainConfig")])
def test_each_commands_defaults_and_help_come_from_its_config(command, config):
    """One source of defaults: every CLI field of the config is an option with the field's default and help."""
    from dataclasses import fields

    import rfm.train.config

    import rfm.demo
    import rfm.options

    cls = getattr(rfm.options, config, None) or getattr(rfm.demo, config, None) or getattr(rfm.train.config, config)
    group = cli
    for name in command:
        group = group.commands[name]
    params = {p.name: p for p in group.params}
    for f in fields(cls):
        if not f.metadata.get("cli"):
            assert f.name not in params
            continue
        option = params[f.name]
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        assert option.default == default and option.help == f.metadata["help"], f.name


def test_demo_shots_parse_to_integers_and_bad_ones_are_usage_errors():
    demo = cli.commands["demo"]
    ctx = demo.make_context("demo", ["--shots", "0,5,50"])
    assert ctx.params["shots"] == (0, 5, 50) and ctx.params["bench"] is True
    assert demo.make_context("demo", ["--no-bench"]).params["bench"] is False
    result = CliRunner().invoke(cli, ["demo", "--shots", "0,five"])
    assert result.exit_code == 2 and "--shots" in result.output
