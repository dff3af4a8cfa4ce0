"""Files that hold people's conversations (the log's exports, exported training pairs) are
readable by their owner only, like the log itself."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.i18n import tr


def private_directory(path: Path) -> Path:
    """`path` as a directory, created readable by its owner only when it is new."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` as a new owner-only (0600) file: a temporary file beside
    it, renamed into place. A regular file there is replaced, never written through; a symlink,
    device, FIFO or directory there is refused, so nothing the path resolves to is changed."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise ChatbotError(tr("{path}: not a regular file: refusing to write over it", path=path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
