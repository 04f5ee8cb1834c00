"""The artifact dir (docs/DESIGN.md §3.3): manifest rfm.json, ONNX feature graphs, tokenizer, population prior.

Loading checks the manifest's format version and the sha256 of every file it will use, and refuses
a mismatch with a one-line reason naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfm.errors import RfmError, UsageError

MANIFEST = "rfm.json"
FORMAT = "rfm-artifact"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8", "fp16")


class ArtifactError(RfmError):
    """An artifact that is missing, tampered with, or of an unknown format."""


class NotAnArtifactError(UsageError, ArtifactError):
    """The path given is not an artifact dir at all (a usage mistake: exit code 2)."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Artifact:
    """A verified artifact: paths plus the manifest's facts."""

    root: Path
    manifest: dict

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def features(self) -> int:
        return int(self.manifest["features"])

    @property
    def max_length(self) -> int:
        return int(self.manifest["max_length"])

    @property
    def adaptive(self) -> bool:
        return bool(self.manifest.get("adaptive", True))

    @property
    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if p in self.manifest["precisions"]]

    def model_path(self, precision: str) -> Path:
        if precision not in self.manifest["precisions"]:
            raise ArtifactError(f"{self.root}: no {precision} model in this artifact "
                                f"(has {', '.join(self.precisions)}; re-export with --precision)")
        return self.root / self.manifest["precisions"][precision]

    def verify(self, *names: str) -> None:
        """Check sha256 of the named files (all files of the manifest if none given)."""
        files = self.manifest["files"]
        for name in names or tuple(files):
            path = self.root / name
            if name not in files:
                raise ArtifactError(f"{path}: not listed in {MANIFEST}")
            if not path.is_file():
                raise ArtifactError(f"{path}: missing from the artifact")
            if sha256_file(path) != files[name]:
                raise ArtifactError(f"{path}: sha256 does not match {MANIFEST} (file changed or corrupt; re-export)")

    def population(self) -> dict[str, np.ndarray]:
        """The population prior over user weights: mean (d,), cov (d, d), count."""
        path = self.root / "population.npz"
        with np.load(path) as z:
            prior = {"mean": z["mean"].astype(np.float64), "cov": z["cov"].astype(np.float64),
                     "count": int(z["count"])}
        if not (np.all(np.isfinite(prior["mean"])) and np.all(np.isfinite(prior["cov"]))):
            raise ArtifactError(f"{path}: population prior holds NaN or inf")
        return prior

    def raters(self) -> tuple[list[str], np.ndarray] | None:
        """Training raters' ids and weight rows, if the artifact carries them."""
        path = self.root / "raters.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            return [str(u) for u in z["user_ids"]], z["weights"].astype(np.float64)


def load_artifact(root: str | os.PathLike, verify: str = "used") -> Artifact:
    """Read and check an artifact dir. `verify`: 'all' files, 'used' (manifest-listed non-model files), 'none'."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise NotAnArtifactError(f"{path}: no manifest (is {root} an artifact made by `rfm export`?)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotAnArtifactError(f"{path}: not an rfm artifact manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unknown format version {version!r} (this rfm reads version {FORMAT_VERSION}; "
                            "upgrade rfm or re-export)")
    for key in ("features", "max_length", "precisions", "files", "fingerprint", "inputs", "truncation"):
        if key not in manifest:
            raise ArtifactError(f"{path}: manifest lacks '{key}'")
    artifact = Artifact(root, manifest)
    if verify == "all":
        artifact.verify()
    elif verify == "used":
        artifact.verify(*[n for n in manifest["files"] if not n.endswith(".onnx")])
    return artifact
