"""Can a folder be written? Checked before a stage loads data or models, so an unusable
output path is a one-line error at once, not a traceback after minutes of work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _existing_ancestor(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(path.anchor or ".")


def check_writable_dir(path: str | Path, label: str = "output") -> None:
    """Raise ValueError (one line) unless ``path`` is, or can be created as, a writable folder.

    Nothing is left behind: the probe is an actual write (permission bits say nothing for
    root or read-only file systems) of a temporary folder that is removed at once."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{label} {path}: exists and is not a folder")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise ValueError(f"{label} {path}: cannot create it, {base} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".agentinstruct-probe-", dir=base))
    except OSError as exc:
        raise ValueError(f"{label} {path}: not writable ({exc.strerror or type(exc).__name__} in {base})") from None
