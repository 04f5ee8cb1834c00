"""The artifact dir (docs/DESIGN.md §3.3): manifest rfm.json, ONNX feature graphs, tokenizer, population prior.

Loading checks the manifest's format version and the sha256 of every file it will use, and refuses
a mismatch with a one-line reason naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rfm.runtime.manifest import FORMAT, FORMAT_VERSION, PRECISIONS, ArtifactError, Manifest

from rfm.errors import UsageError

MANIFEST = "rfm.json"
MAX_MANIFEST_BYTES = 4 << 20

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "PRECISIONS", "Artifact", "ArtifactError", "Manifest",
           "NotAnArtifactError", "load_artifact", "sha256_file"]


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
    """A verified artifact: its folder and its typed manifest."""

    root: Path
    manifest: Manifest

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint

    @property
    def features(self) -> int:
        return self.manifest.features

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    @property
    def adaptive(self) -> bool:
        return self.manifest.adaptive

    @property
    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if p in self.manifest.precisions]

    def model_path(self, precision: str) -> Path:
        if precision not in self.manifest.precisions:
            raise ArtifactError(f"{self.root}: no {precision} model in this artifact "
                                f"(has {', '.join(self.precisions)}; re-export with --precision)")
        return self.root / self.manifest.precisions[precision]  # a plain name: Manifest refuses anything else

    def read_verified(self, name: str) -> bytes:
        """The bytes of a manifest-listed file, checked against its sha256 (what is checked is what is used)."""
        path = self.root / name
        if name not in self.manifest.files:
            raise ArtifactError(f"{path}: not listed in {MANIFEST}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"{path}: missing from the artifact") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if hashlib.sha256(data).hexdigest() != self.manifest.files[name]:
            raise ArtifactError(f"{path}: sha256 does not match {MANIFEST} (file changed or corrupt; re-export)")
        return data

    def verify(self, *names: str) -> None:
        """Check sha256 of the named files (all files of the manifest if none given)."""
        files = self.manifest.files
        for name in names or tuple(files):
            path = self.root / name
            if name not in files:
                raise ArtifactError(f"{path}: not listed in {MANIFEST}")
            if not path.is_file():
                raise ArtifactError(f"{path}: missing from the artifact")
            if sha256_file(path) != files[name]:
                raise ArtifactError(f"{path}: sha256 does not match {MANIFEST} (file changed or corrupt; re-export)")

    def _npz(self, name: str, what: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
        """These arrays of an .npz side file, sha-checked when the manifest lists it; ArtifactError names `what`."""
        path = self.root / name
        data = self.read_verified(name) if name in self.manifest.files else None
        try:
            with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as z:
                return {key: z[key] for key in keys}
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ArtifactError(f"{path}: unreadable {what} ({type(exc).__name__}; re-export)") from None

    def population(self) -> dict[str, np.ndarray]:
        """The population prior over user weights: mean (d,), cov (d, d), count."""
        path = self.root / "population.npz"
        z = self._npz("population.npz", "population prior", ("mean", "cov", "count"))
        prior = {"mean": z["mean"].astype(np.float64), "cov": z["cov"].astype(np.float64), "count": int(z["count"])}
        d = self.features
        if prior["mean"].shape != (d,) or prior["cov"].shape != (d, d):
            raise ArtifactError(f"{path}: population prior has shape {prior['mean'].shape} / {prior['cov'].shape}, "
                                f"the manifest says d = {d}")
        if not (np.all(np.isfinite(prior["mean"])) and np.all(np.isfinite(prior["cov"]))):
            raise ArtifactError(f"{path}: population prior holds NaN or inf")
        return prior

    def raters(self) -> tuple[list[str], np.ndarray] | None:
        """Training raters' ids and weight rows (n, d), if the artifact carries them."""
        path = self.root / "raters.npz"
        if not path.is_file():
            return None
        z = self._npz("raters.npz", "rater weights", ("user_ids", "weights"))
        ids, weights = [str(u) for u in z["user_ids"]], z["weights"].astype(np.float64)
        if weights.ndim != 2 or weights.shape[1] != self.features or len(ids) != len(weights):
            raise ArtifactError(f"{path}: rater weights have shape {weights.shape} for {len(ids)} ids, "
                                f"the manifest says d = {self.features}")
        if not np.all(np.isfinite(weights)):
            raise ArtifactError(f"{path}: rater weights hold NaN or inf")
        return ids, weights


def load_artifact(root: str | os.PathLike, verify: str = "used") -> Artifact:
    """Read and check an artifact dir. `verify`: 'all' files, 'used' (manifest-listed non-model files), 'none'.

    Graphs are checked when a precision is loaded (`FeatureExtractor` verifies the bytes it runs).
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise NotAnArtifactError(f"{path}: no manifest (is {root} an artifact made by `rfm export`?)")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{path}: manifest larger than {MAX_MANIFEST_BYTES >> 20} MB; not an rfm manifest")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NotAnArtifactError(f"{path}: not an rfm artifact manifest")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: unknown format version {version!r} (this rfm reads version {FORMAT_VERSION}; "
                            "upgrade rfm or re-export)")
    artifact = Artifact(root, Manifest.from_json(data, str(path)))
    if verify == "all":
        artifact.verify()
    elif verify == "used":
        artifact.verify(*[n for n in artifact.manifest.files if not n.endswith(".onnx")])
    return artifact
