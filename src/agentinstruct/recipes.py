"""One recipe loader for every stage: YAML -> typed pydantic objects.

An unknown key or a wrong type is a :class:`RecipeError` whose message names the file, the
key path and what was expected, on one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class RecipeError(ValueError):
    """A recipe file could not be read or does not match its schema."""


class StrictModel(BaseModel):
    """Base for every recipe section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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


def parse_recipe(data: dict[str, Any], model: type[T], source: str = "<recipe>") -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(format_validation_error(source, exc)) from None


def load_recipe(path: str | Path, model: type[T]) -> T:
    """Read ``path`` and validate it as ``model``; errors name the file and key."""
    return parse_recipe(read_yaml(path), model, str(path))


def recipe_hash(obj: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a recipe's content (provenance on every generated row)."""
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
