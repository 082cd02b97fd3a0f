"""The dataset mixture of a training recipe: several sources, each with splits and a weight.

A source is a ``save_to_disk`` folder (e.g. what ``agentinstruct generate`` writes), a
parquet/JSONL/JSON file or glob, or a Hub dataset id. Only ``messages`` is kept for training;
provenance columns are dropped before the trainer sees the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
from agentinstruct.train.preflight import validate_dataset_messages
from pydantic import Field

from agentinstruct.recipes import RecipeError, StrictModel, parse_recipe
from agentinstruct.records import messages_feature

EXCLUDED_BY_DEFAULT = ("rejected",)


class Source(StrictModel):
    path: str = Field(description="save_to_disk folder, parquet/jsonl/json file or glob, or Hub id")
    splits: list[str] | None = Field(None, description="splits to use; default: all but 'rejected'")
    weight: float = Field(1.0, gt=0, le=1, description="fraction of the source's rows kept")
    name: str | None = Field(None, description="Hub dataset config name")


class DatasetMixture(StrictModel):
    sources: list[Source] = Field(min_length=1)
    seed: int = 0
    test_split_size: float = Field(0.0, ge=0, lt=1)


def parse_mixture(data: dict[str, Any], where: str) -> DatasetMixture:
    return parse_recipe(data, DatasetMixture, where)


def _file_format(path: str) -> str | None:
    for suffix, fmt in ((".parquet", "parquet"), (".jsonl", "json"), (".json", "json"), (".csv", "csv")):
        if path.endswith(suffix):
            return fmt
    return None


def load_source(src: Source) -> datasets.DatasetDict:
    p = Path(src.path)
    if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "dataset_info.json").exists()):
        loaded = datasets.load_from_disk(str(p))
        return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    fmt = _file_format(src.path)
    if fmt:
        return datasets.load_dataset(fmt, data_files={"train": src.path})
    if p.exists():
        raise RecipeError(f"dataset source {src.path!r}: not a saved dataset folder nor a parquet/jsonl/json file")
    return datasets.load_dataset(src.path, name=src.name)  # Hub id


def align_messages(ds: datasets.Dataset) -> datasets.Dataset:
    """Cast ``messages`` to the toolkit's message type when its turns hold a subset of those keys
    (e.g. plain ``{role, content}`` rows), so they concatenate with tool-using rows; turns of
    another shape are left as they are."""
    target = messages_feature()
    have = ds.features["messages"]
    turn = getattr(have, "feature", None)
    if have == target or not isinstance(turn, dict) or not set(turn) <= set(target.feature):
        return ds
    return ds.cast_column("messages", target)


def load_mixture(mix: DatasetMixture, where: str = "dataset_mixture") -> datasets.DatasetDict:
    parts = []
    for i, src in enumerate(mix.sources):
        label = f"{where}.sources.{i} ({src.path})"
        try:
            dd = load_source(src)
        except OSError as exc:  # missing file, unknown Hub id, offline (ConnectionError)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RecipeError(f"{label}: {reason}") from None
        names = src.splits or [s for s in dd if s not in EXCLUDED_BY_DEFAULT]
        missing = [s for s in names if s not in dd]
        if missing:
            raise RecipeError(f"{label}: no split(s) {missing}; available: {list(dd)}")
        for split in names:
            ds = dd[split]
            if "messages" not in ds.column_names:
                raise RecipeError(f"{label}: split {split!r} has no 'messages' column "
                                  f"(columns: {', '.join(ds.column_names)})")
            if len(ds) == 0:
                continue
            ds = ds.select_columns(["messages"])
            validate_dataset_messages(ds, f"{label}: split {split!r}")
            ds = align_messages(ds)
            if src.weight < 1.0:
                keep = max(1, round(len(ds) * src.weight))
                ds = ds.shuffle(seed=mix.seed).select(range(keep))
            parts.append(ds)
    if not parts:
        raise RecipeError(f"{where}: the sources hold no rows")
    try:
        train = datasets.concatenate_datasets(parts).shuffle(seed=mix.seed)
    except ValueError as exc:  # sources whose turns have different fields or types
        raise RecipeError(f"{where}: the sources' messages cannot be combined: {str(exc).splitlines()[0][:300]}") from None
    if mix.test_split_size > 0:
        split = train.train_test_split(test_size=mix.test_split_size, seed=mix.seed)
        return datasets.DatasetDict({"train": split["train"], "test": split["test"]})
    return datasets.DatasetDict({"train": train})
