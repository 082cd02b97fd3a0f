"""The run folder of ``generate``: checked before anything runs, deleted only when it is ours.

A folder this tool creates gets a marker file (:data:`MARKER`); ``--overwrite`` deletes only
a marked folder. An output that equals, contains or lies inside the input is refused (with
``--overwrite`` it would delete the documents), and so is a non-empty folder without the
marker unless ``--force`` is given. Every refusal is one line and leaves the disk as it was.
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

from agentinstruct.outdir import check_writable_dir

MARKER = ".agentinstruct-run"


class OutputError(ValueError):
    """The output folder cannot or must not be used; nothing was written or deleted."""


def input_root(spec: str) -> Path | None:
    """The local folder/file an input spec reads (a glob's fixed leading part), else None."""
    if spec.startswith("hf:"):
        return None
    parts = Path(spec).parts
    fixed = parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    return Path(*fixed).resolve() if fixed else Path.cwd().resolve()


def is_run_dir(path: Path) -> bool:
    return (path / MARKER).is_file()


def check_output(out: Path, input_spec: str, *, overwrite: bool, force: bool) -> None:
    """Raise :class:`OutputError` (one line) when ``out`` must not be used as the run folder."""
    target = out.resolve()
    root = input_root(input_spec)
    if root is not None:
        if target == root:
            raise OutputError(f"output {out} is the input folder; choose another output folder")
        if root.is_relative_to(target) and (overwrite or not force):
            raise OutputError(f"output {out} contains the input {input_spec}; choose another output folder")
        if target.is_relative_to(root) and (overwrite or not force):
            raise OutputError(f"output {out} lies inside the input {input_spec} (its files would be read "
                              "as documents next time); choose a folder outside it")
    if out.is_dir() and not is_run_dir(out) and any(out.iterdir()) and not force:
        action = "delete" if overwrite else "write into"
        raise OutputError(f"output {out}: not empty and not made by agentinstruct (no {MARKER} file); "
                          f"refusing to {action} it: choose a new folder or pass --force")
    try:
        check_writable_dir(out)
    except ValueError as exc:
        raise OutputError(str(exc)) from None


def prepare_run_dir(out: Path, *, overwrite: bool) -> None:
    """Create ``out`` with its marker (after :func:`check_output`); ``overwrite`` empties it first."""
    try:
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).touch()
    except OSError as exc:
        raise OutputError(f"output {out}: cannot create the run folder ({exc.strerror or exc})") from None


def discard_unused_run_dir(out: Path) -> None:
    """Remove a run folder this run just created when it failed before journaling any unit
    (missing dataset, unreadable input): a failed start leaves the disk as it was."""
    journal = out / "records.jsonl"
    if is_run_dir(out) and (not journal.exists() or journal.stat().st_size == 0):
        shutil.rmtree(out, ignore_errors=True)
