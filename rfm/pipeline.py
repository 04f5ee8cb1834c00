"""Cached pipeline stages (train -> export -> evaluate) shared by `rfm demo` and the benchmarks.

A stage's output is reused when a stamp beside it records the same key: a digest of rfm's own
source, the stage's input files and its options, so a re-run redoes only what changed (and an
upgrade of rfm redoes everything).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rfm.fileio import atomic_open

if TYPE_CHECKING:
    from rfm.runtime.manifest import Manifest

STAMP = ".rfm-stage-stamp"
# rfm's own modules that no stage runs (the service, the bench, the demo's printing, plots): editing them
# must not retrain every cached model.
NOT_IN_STAGES = frozenset({"service.py", "bench.py", "demo.py", "plots.py"})


@functools.cache
def code_version() -> str:
    """A digest of the rfm code the stages run (docstrings and comments aside), so a stage built by older
    code is not reused after an upgrade."""
    import importlib

    digest = hashlib.sha256()
    for name in ("rfm", "rfm.data", "rfm.train", "rfm.export", "rfm.runtime", "rfm.adapt"):
        root = Path(importlib.import_module(name).__file__).parent
        for source in sorted(root.glob("*.py")):
            if name == "rfm" and source.name in NOT_IN_STAGES:
                continue
            digest.update(source.name.encode() + _code_only(source.read_text()).encode())
    return digest.hexdigest()


def _code_only(source: str) -> str:
    """The module's syntax tree without docstrings (comments are not in it): editing prose retrains nothing."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def stage_key(*parts: object) -> str:
    """The key of a stage: rfm's source, then each part (a file's bytes, or any JSON-able value)."""
    digest = hashlib.sha256(code_version().encode())
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            digest.update(hashlib.sha256(part.read_bytes()).digest())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path / STAMP if path.is_dir() else path.with_name(path.name + STAMP)


def is_fresh(path: Path, key: str) -> bool:
    stamp = _stamp_path(path)
    return path.exists() and stamp.is_file() and stamp.read_text() == key


def mark_fresh(path: Path, key: str) -> None:
    _stamp_path(path).write_text(key)


def train_stage(data: Path, run_dir: Path, cfg, progress: bool = True) -> tuple[dict, bool]:
    """`rfm train` unless run_dir already holds this training; returns (summary, reused)."""
    from rfm.train.run import train
    from rfm.train.rundir import read_summary

    key = stage_key(data, cfg.__dict__)
    if is_fresh(run_dir, key):
        return read_summary(run_dir), True
    summary = train(data, run_dir, cfg, overwrite=True, progress=progress)
    mark_fresh(run_dir, key)
    return summary, False


def export_stage(run_dir: Path, art: Path, precisions: Sequence[str], validation_data: Path | None = None,
                 fallback: Sequence[str] | None = None, log: Callable[[str], None] = lambda m: None
                 ) -> tuple[Manifest, bool]:
    """`rfm export` unless art already holds this export; returns (manifest, reused).

    With `fallback`, an export that misses a validation bound (int8, say) is retried with those
    precisions and the manifest records why under `export_refused`.
    """
    from rfm.errors import RfmError
    from rfm.export.build import export_run
    from rfm.runtime.artifact import MANIFEST, load_artifact

    key = stage_key(run_dir / "model.safetensors", run_dir / "population.npz", list(precisions),
                    validation_data and Path(validation_data))
    if is_fresh(art, key):
        return load_artifact(art, verify="none").manifest, True
    validation = str(validation_data) if validation_data else None
    try:
        manifest = export_run(run_dir, art, list(precisions), validation_data=validation, overwrite=True, log=log)
    except RfmError as exc:
        if fallback is None:
            raise
        manifest = export_run(run_dir, art, list(fallback), validation_data=validation, overwrite=True, log=log)
        manifest.extra["export_refused"] = str(exc)
        with atomic_open(art / MANIFEST) as handle:
            json.dump(manifest.to_json(), handle, indent=1)
    mark_fresh(art, key)
    return manifest, False


def cached_json(path: Path, key_parts: Sequence[object], compute: Callable[[], dict]) -> dict:
    """compute() once per key; the result is kept as JSON at `path`."""
    key = stage_key(*key_parts)
    if is_fresh(path, key):
        return json.loads(path.read_text())
    result = compute()
    with atomic_open(path) as handle:
        json.dump(result, handle, indent=1)
    mark_fresh(path, key)
    return result
