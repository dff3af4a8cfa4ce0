"""Files that hold people's conversations (the log's exports, exported training pairs) are
readable by their owner only, like the log itself."""

from __future__ import annotations

import os
from pathlib import Path


def private_directory(path: Path) -> Path:
    """`path` as a directory, created readable by its owner only when it is new."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path`, which is created or truncated as owner-only (0600): a file
    that existed keeps none of its wider permissions."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as f:
            f.write(text)
    finally:
        os.close(fd)
    return Path(path)
