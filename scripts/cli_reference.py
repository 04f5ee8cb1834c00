"""Render every `rfm` command's --help as Markdown; `--check README.md` fails if the README is stale.

    python scripts/cli_reference.py --write README.md   # regenerate the README's CLI reference
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rfm.cli.main import cli

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def walk(command: click.Command, path: list[str]):
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            yield from walk(command.get_command(click.Context(command), name), [*path, name])


def reference() -> str:
    parts = []
    for path, command in walk(cli, ["rfm"]):
        if path == ["rfm"]:
            continue
        with click.Context(command, info_name=" ".join(path), terminal_width=100, max_content_width=100) as ctx:
            text = command.get_help(ctx)
        parts.append(f"#### `{' '.join(path)}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def replace_block(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}{END}{tail}"


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    text = target.read_text()
    if mode == "--write":
        target.write_text(replace_block(text))
    elif replace_block(text) != text:
        raise SystemExit(f"{target}: CLI reference is stale; run python scripts/cli_reference.py --write {target}")
