"""One recipe loader for every stage: YAML -> typed pydantic objects.

An unknown key or a wrong type is a :class:`RecipeError` whose message names the file, the
key path and what was expected, on one line.

Paths: a recipe's input paths (fields typed :data:`InputPath`, :data:`DataSpec` or
:data:`NameOrFile`) are resolved against the folder of the recipe file, so a recipe works from
any working directory, and one that does not exist is an error at load time. Output paths
(``output``, ``output_dir``) stay relative to the working directory, as in TRL. A model built in
code (no recipe file) keeps its paths as given.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

T = TypeVar("T", bound=BaseModel)


class RecipeError(ValueError):
    """A recipe file could not be read or does not match its schema."""


class StrictModel(BaseModel):
    """Base for every recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


BASE_DIR = "base_dir"  # validation-context key: the folder relative input paths resolve against
GLOB_CHARS = "*?["
SKILL_FILE_SUFFIXES = (".yaml", ".yml")


def resolve_path(value: str, base: Path) -> str:
    """``value`` joined to ``base`` unless it is absolute (``~`` is expanded)."""
    path = Path(value).expanduser()
    return str(path) if path.is_absolute() else os.path.normpath(base / path)


def _checked(value: str, info: ValidationInfo, *, data_spec: bool) -> str:
    base = info.context.get(BASE_DIR) if isinstance(info.context, dict) else None
    if base is None:
        return value
    if data_spec and value.startswith("hf:"):
        return value
    resolved = resolve_path(value, base)
    if data_spec and any(c in value for c in GLOB_CHARS):
        found = bool(glob.glob(resolved, recursive=True))
    else:
        found = Path(resolved).exists()
    if not found:
        raise PydanticCustomError("path_missing", "path {path} does not exist", {"path": resolved})
    return resolved


def _input_path(value: str, info: ValidationInfo) -> str:
    return _checked(value, info, data_spec=False)


def _data_spec(value: str, info: ValidationInfo) -> str:
    return _checked(value, info, data_spec=True)


def _name_or_file(value: str, info: ValidationInfo) -> str:
    return _checked(value, info, data_spec=False) if value.endswith(SKILL_FILE_SUFFIXES) else value


InputPath = Annotated[str, AfterValidator(_input_path)]
"""A file or folder the recipe reads: relative to the recipe file, and it must exist."""
DataSpec = Annotated[str, AfterValidator(_data_spec)]
"""Like :data:`InputPath`, but also a glob (at least one match) or ``hf:NAME[:split]`` (kept)."""
NameOrFile = Annotated[str, AfterValidator(_name_or_file)]
"""A shipped item's name (kept as is) or a user's ``.yaml`` file (an :data:`InputPath`)."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise RecipeError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def format_validation_error(source: str, exc: ValidationError) -> str:
    """Render pydantic errors as `file: key.path: message` lines (first line is the headline)."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"]
            if "input" in err and kind not in ("model_type",):
                msg += f" (got {err['input']!r})"[:200]
        lines.append(f"{source}: {loc}: {msg}")
    return "; ".join(lines)


def parse_recipe(data: dict[str, Any], model: type[T], source: str = "<recipe>",
                 base_dir: Path | None = None) -> T:
    """Validate ``data``; with ``base_dir``, input paths resolve against it and must exist."""
    try:
        return model.model_validate(data, context={BASE_DIR: base_dir} if base_dir is not None else None)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(source, exc)) from None


def load_recipe(path: str | Path, model: type[T]) -> T:
    """Read ``path`` and validate it as ``model``; errors name the file and key."""
    return parse_recipe(read_yaml(path), model, str(path), recipe_dir(path))


def recipe_dir(path: str | Path) -> Path:
    """The folder a recipe file's relative input paths resolve against."""
    return Path(path).absolute().parent


def recipe_hash(obj: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a recipe's content (provenance on every generated row)."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
