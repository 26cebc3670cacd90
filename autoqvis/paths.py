"""Where autoqvis keeps files it did not get passed: the weights cache.

``$AUTOQVIS_HOME`` (default ``~/.cache/autoqvis``) holds ``weights/``. Nothing is ever downloaded: files
get there only through ``autoqvis weights ...`` commands or by the user copying them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["home_dir", "weights_dir"]


def home_dir() -> Path:
    return Path(os.environ.get("AUTOQVIS_HOME") or Path.home() / ".cache" / "autoqvis").expanduser()


def weights_dir() -> Path:
    return home_dir() / "weights"
