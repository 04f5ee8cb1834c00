"""Where things live by default: the shared data dir, the user store, caches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rfm.errors import UsageError


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def default_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $RFM_DATA_DIR, else ../shared/data beside the project (or the cwd)."""
    if explicit:
        candidates = [Path(explicit)]
    elif os.environ.get("RFM_DATA_DIR"):
        candidates = [Path(os.environ["RFM_DATA_DIR"])]
    else:
        candidates = [project_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if (candidate / "tldr").is_dir():
            return candidate
    raise UsageError(
        f"no preference data at {candidates[0]}: pass --data-dir or set RFM_DATA_DIR to a folder with "
        "tldr/batch13.jsonl and tldr/batch18.jsonl (OpenAI summarize-from-feedback comparisons)"
    )


def user_data_dir() -> Path:
    """$RFM_HOME, else the platform's per-user data dir (no third-party dependency)."""
    if os.environ.get("RFM_HOME"):
        return Path(os.environ["RFM_HOME"])
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "rfm"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "rfm"
    return Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share")) / "rfm"


def cache_dir() -> Path:
    """$RFM_CACHE, else the platform cache dir: embedding caches live here."""
    if os.environ.get("RFM_CACHE"):
        return Path(os.environ["RFM_CACHE"])
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "rfm"
    return Path(os.environ.get("XDG_CACHE_HOME", home / ".cache")) / "rfm"
