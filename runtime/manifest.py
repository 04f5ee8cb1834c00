"""`rfm.json`, the artifact's manifest, as one typed object: written by `rfm export`, read by everything else.

`Manifest.from_json` validates the whole file at load (every field's type and range, file names
that stay inside the artifact dir, a fingerprint that matches the graphs' hashes) and raises an
`ArtifactError` naming the field. Keys this version does not know are kept in `extra`, so a
manifest read and written again loses nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Any

from rfm.errors import RfmError

FORMAT = "rfm-artifact"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8", "fp16")
TRUNCATION_STRATEGIES = ("longest_first",)  # what the runtime's PairTokenizer implements
# A file the manifest names must be a plain name inside the artifact dir: no folders, no "..".
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The fingerprint (the key of every user's file) covers the sha256 of every graph the artifact ships,
# so no graph can be swapped under a user's weights. Artifacts exported before it have the fp32
# graph's sha256 alone (scheme "fp32-graph").
FINGERPRINT_SCHEME = "graphs-sha256"
MAX_FEATURES = 1 << 16
MAX_LENGTH_LIMIT = 8192


class ArtifactError(RfmError):
    """An artifact that is missing, tampered with, or of an unknown format."""


def graphs_fingerprint(precisions: dict[str, str], files: dict[str, str]) -> str:
    """sha256 over each shipped graph's precision, file name and sha256, in a fixed order."""
    digest = hashlib.sha256(FINGERPRINT_SCHEME.encode())
    for precision in PRECISIONS:
        if precision in precisions:
            name = precisions[precision]
            digest.update(f"|{precision}={name}:{files[name]}".encode())
    return digest.hexdigest()


@dataclass
class Truncation:
    strategy: str = "longest_first"
    direction: str = "right"
    # At most this many prompt tokens (its beginning) before the pair is truncated; None: no budget.
    prompt_budget: int | None = None


@dataclass
class Manifest:
    """Every fact of an artifact that a reader relies on (docs/DESIGN.md §3.3)."""

    features: int
    max_length: int
    inputs: list[str]
    precisions: dict[str, str]  # precision -> graph file name
    files: dict[str, str]  # file name -> sha256
    fingerprint: str
    truncation: Truncation = field(default_factory=Truncation)
    kind: str = "rfm"
    adaptive: bool = True
    pad_token_id: int = 0
    output: str = "features"
    fingerprint_scheme: str = "fp32-graph"
    rfm_version: str = ""
    backbone: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    training: dict | None = None
    export: dict = field(default_factory=dict)
    sizes_bytes: dict = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["truncation"] = {"strategy": self.truncation.strategy, "direction": self.truncation.direction}
        if self.truncation.prompt_budget is not None:
            data["truncation"]["prompt_budget"] = self.truncation.prompt_budget
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, data: Any, source: str = "rfm.json") -> Manifest:
        """Validate a parsed rfm.json; raises ArtifactError naming the first bad field."""

        def bad(key: str, what: str) -> ArtifactError:
            return ArtifactError(f"{source}: field '{key}' {what} (re-export the artifact)")

        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: not a JSON object")
        for key in ("features", "max_length", "precisions", "files", "fingerprint", "inputs", "truncation"):
            if key not in data:
                raise ArtifactError(f"{source}: manifest lacks '{key}'")

        def integer(key: str, low: int, high: int) -> int:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise bad(key, f"must be an integer in [{low}, {high}], got {value!r}")
            return value

        def text(key: str, default: str = "") -> str:
            value = data.get(key, default)
            if not isinstance(value, str):
                raise bad(key, f"must be a string, got {type(value).__name__}")
            return value

        def obj(key: str, default: Any, required: bool = False) -> Any:
            value = data.get(key, default)
            if (value is None and required) or (value is not None and not isinstance(value, dict)):
                raise bad(key, f"must be an object, got {type(value).__name__}")
            return value

        files = obj("files", {}, required=True)
        if not files:
            raise bad("files", "must list the artifact's files")
        for name, digest in files.items():
            if not FILE_NAME.match(name):
                raise bad("files", f"names {name!r}, which is not a plain file name inside the artifact")
            if not isinstance(digest, str) or not SHA256.match(digest):
                raise bad("files", f"has no sha256 for {name!r}")
        precisions = obj("precisions", {}, required=True)
        if "fp32" not in precisions:
            raise bad("precisions", "must name the fp32 graph")
        for precision, name in precisions.items():
            if precision not in PRECISIONS:
                raise bad("precisions", f"has unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
            if not isinstance(name, str) or name not in files:
                raise bad("precisions", f"{precision}: {name!r} is not a file listed in 'files'")
        inputs = data["inputs"]
        if (not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs)
                or "input_ids" not in inputs):
            raise bad("inputs", "must be a list of input names with 'input_ids'")
        trunc = obj("truncation", {}, required=True)
        truncation = Truncation(trunc.get("strategy"), trunc.get("direction", "right"), trunc.get("prompt_budget"))
        if truncation.strategy not in TRUNCATION_STRATEGIES or truncation.direction not in ("right", "left"):
            raise bad("truncation", f"must have a strategy in {', '.join(TRUNCATION_STRATEGIES)} and a direction "
                      f"left/right, got {trunc!r}")
        budget = truncation.prompt_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise bad("truncation", f"prompt_budget must be a positive integer, got {budget!r}")
        adaptive = data.get("adaptive", True)
        if not isinstance(adaptive, bool):
            raise bad("adaptive", "must be true or false")
        scheme = text("fingerprint_scheme", "fp32-graph")
        fingerprint = text("fingerprint")
        expected = (graphs_fingerprint(precisions, files) if scheme == FINGERPRINT_SCHEME
                    else files[precisions["fp32"]] if scheme == "fp32-graph" else None)
        if expected is None:
            raise bad("fingerprint_scheme", f"is unknown: {scheme!r}")
        if fingerprint != expected:
            raise bad("fingerprint", "does not match the sha256 of the artifact's graphs (the manifest was edited)")
        known = {f.name for f in fields(cls)}
        manifest = cls(
            features=integer("features", 1, MAX_FEATURES), max_length=integer("max_length", 8, MAX_LENGTH_LIMIT),
            inputs=list(inputs), precisions=dict(precisions), files=dict(files), fingerprint=fingerprint,
            truncation=truncation, kind=text("kind", "rfm"), adaptive=adaptive,
            pad_token_id=integer("pad_token_id", 0, 1 << 31) if "pad_token_id" in data else 0,
            output=text("output", "features"), fingerprint_scheme=scheme, rfm_version=text("rfm_version"),
            backbone=obj("backbone", {}) or {}, validation=obj("validation", {}) or {}, training=obj("training", None),
            export=obj("export", {}) or {}, sizes_bytes=obj("sizes_bytes", {}) or {}, format=text("format"),
            format_version=integer("format_version", 1, 1 << 16) if "format_version" in data else FORMAT_VERSION,
            extra={k: v for k, v in data.items() if k not in known})
        return manifest
