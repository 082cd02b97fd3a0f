"""The data the package ships: skills, chat templates, recipes, the judge prompt, example data.

The repository's top-level ``recipes/`` and ``examples/`` folders are the user-facing copies.
A wheel carries the same folders as ``agentinstruct/_data/recipes`` and
``agentinstruct/_data/examples`` (mapped in pyproject's ``[tool.setuptools]``, so nothing is
duplicated in the source tree); a checkout or an editable install reads the repository folders.
Both layouts keep ``recipes/`` next to ``examples/``, so the relative paths between shipped
recipes and shipped examples (``../../examples/docs``) hold in either.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

DATA_FOLDERS = ("recipes", "examples")


def checkout_root(package: Path) -> Path | None:
    """The repository root when ``package`` is ``<root>/src/agentinstruct`` of a checkout, else None."""
    root = package.parent.parent
    return root if package.parent.name == "src" and (root / "pyproject.toml").is_file() else None


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The folder holding ``recipes/`` and ``examples/`` for this installation."""
    package = Path(str(files("agentinstruct")))  # a regular (unzipped) install: a real folder
    for root in (package / "_data", checkout_root(package)):  # a wheel; a checkout / editable install
        if root is not None and all((root / name).is_dir() for name in DATA_FOLDERS):
            return root
    raise RuntimeError(f"agentinstruct's shipped data ({', '.join(DATA_FOLDERS)}) is missing next to {package}")


def data_path(*parts: str) -> Path:
    """A shipped file or folder, e.g. ``data_path("recipes", "skills")``."""
    return data_root().joinpath(*parts)
