"""Where neighcheck keeps things on the harness host between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Prepared Wine prefixes and built agents: $NEIGHCHECK_CACHE_DIR, else
    $XDG_CACHE_HOME/neighcheck, else ~/.cache/neighcheck."""
    if os.environ.get("NEIGHCHECK_CACHE_DIR"):
        return Path(os.environ["NEIGHCHECK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neighcheck"
