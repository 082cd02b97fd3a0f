"""Journal -> ``DatasetDict`` (one split per skill + ``rejected``), files, card, Hub."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
from agentinstruct.generate.journal import Journal

from agentinstruct.records import PROVENANCE_COLUMNS

REJECTED = "rejected"

FEATURES = datasets.Features({
    "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    "instruction": datasets.Value("string"),
    "seed_id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "skill": datasets.Value("string"),
    "instruction_type": datasets.Value("string"),
    "transformation": datasets.Value("string"),
    "refinement_round": datasets.Value("int32"),
    "teacher_model": datasets.Value("string"),
    "recipe_hash": datasets.Value("string"),
    "reject_reason": datasets.Value("string"),
    "reject_gate": datasets.Value("string"),
    "judge_score": datasets.Value("float32"),
    "judge_rationale": datasets.Value("string"),
})

# A post-pass over accepted rows in final order: returns (gate, reason) to reject, or None.
RowFilter = Callable[[dict[str, Any]], tuple[str, str] | None]


def ordered_rows(journal: Journal) -> Iterable[tuple[str, dict[str, Any]]]:
    """(split, row) for every record, in key order, reading the journal by offsets so only
    the small index is held in memory."""
    index = []
    for offset, line in journal.lines():
        for j, rec in enumerate(line["records"]):
            index.append((rec["key"], offset, j))
    index.sort()
    cached_offset, cached = -1, None
    for _, offset, j in index:
        if offset != cached_offset:
            cached_offset, cached = offset, journal.read_at(offset)
        rec = cached["records"][j]
        yield rec["split"], rec["row"]


def write_split_files(journal: Journal, staging: Path, splits: list[str],
                      filters: list[RowFilter] = ()) -> dict[str, Counter]:
    """Stream rows into ``staging/<split>.jsonl``; filters move accepted rows to rejected."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    handles = {s: open(staging / f"{s}.jsonl", "w", encoding="utf-8") for s in [*splits, REJECTED]}
    counts: dict[str, Counter] = defaultdict(Counter)
    try:
        for split, row in ordered_rows(journal):
            if split != REJECTED:
                for f in filters:
                    verdict = f(row)
                    if verdict:
                        row = {**row, "reject_gate": verdict[0], "reject_reason": verdict[1]}
                        split = REJECTED
                        break
            if split == REJECTED:
                counts[row["skill"]]["rejected"] += 1
                counts["_reasons"][f"{row['reject_gate']}: {reason_class(row['reject_reason'])}"] += 1
            else:
                counts[split]["accepted"] += 1
                counts[f"_types:{split}"][row["instruction_type"]] += 1
            if split not in handles:  # a skill not in this run's list (should not happen)
                handles[split] = open(staging / f"{split}.jsonl", "w", encoding="utf-8")
            handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for h in handles.values():
            h.close()
    return counts


def reason_class(reason: str) -> str:
    """Group reasons for the summary: drop details after a colon or parenthesis."""
    return reason.split(":")[0].split(" (")[0][:80]


def build_dataset(staging: Path, cache_dir: Path) -> datasets.DatasetDict:
    splits = {}
    for path in sorted(staging.glob("*.jsonl")):
        if path.stat().st_size == 0:
            splits[path.stem] = datasets.Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)
        else:
            splits[path.stem] = datasets.load_dataset(
                "json", data_files=str(path), split="train", features=FEATURES, cache_dir=str(cache_dir)
            )
    return datasets.DatasetDict(splits)


def write_outputs(dd: datasets.DatasetDict, out: Path, staging: Path, formats: list[str]) -> None:
    target = out / "dataset"
    tmp = out / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # an empty split saved with 0 shards cannot be read back by datasets: give it one
    dd.save_to_disk(str(tmp), num_shards={name: 1 for name, ds in dd.items() if len(ds) == 0})
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    if "parquet" in formats:
        (out / "parquet").mkdir(exist_ok=True)
        for name, ds in dd.items():
            ds.to_parquet(str(out / "parquet" / f"{name}.parquet"))
    if "jsonl" in formats:
        (out / "jsonl").mkdir(exist_ok=True)
        for path in staging.glob("*.jsonl"):
            shutil.copy(path, out / "jsonl" / path.name)


def dataset_card(manifest: dict[str, Any], counts: dict[str, Counter]) -> str:
    """README.md for the dataset: recipe, teacher, counts, gates, provenance schema."""
    splits = [k for k in counts if not k.startswith("_")]
    lines = [
        "---",
        "tags: [synthetic, agentinstruct, instruction-tuning]",
        "task_categories: [text-generation]",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for name in manifest["splits"]:
        lines += [f"  - split: {name}", f"    path: data/{name}-*"]
    lines += ["---", "", "# AgentInstruct synthetic dataset", "",
              "Generated with [agentinstruct](https://github.com/) (Generative Teaching, "
              "AgentInstruct arXiv 2407.03502): content transformation, seed instruction "
              "generation and Suggester-Editor refinement flows, answered by the teacher and "
              "filtered by validation gates.", "",
              "## Generation", "",
              f"- teacher: `{manifest['teacher']}`",
              f"- recipe hash: `{manifest['recipe_hash']}`",
              f"- skills: {', '.join(manifest['skills'])}",
              f"- input: `{manifest['input']}` ({manifest['ingest']['seeds']} seeds)", "",
              "## Counts", "", "| split | accepted | rejected |", "|---|---|---|"]
    for s in splits:
        lines.append(f"| {s} | {counts[s]['accepted']} | {counts[s]['rejected']} |")
    lines += ["", "### Instruction types", ""]
    for s in splits:
        types = counts.get(f"_types:{s}", Counter())
        if types:
            lines.append(f"- **{s}**: " + ", ".join(f"{t} ({n})" for t, n in types.most_common()))
    gates = manifest.get("gates") or {}
    lines += ["", "## Quality gates", ""]
    if gates:
        lines += ["| gate | checked | removed | top reasons |", "|---|---|---|---|"]
        for name, g in gates.items():
            top = "; ".join(f"{r} ({n})" for r, n in g.get("reasons", {}).items())
            lines.append(f"| {name} | {g['checked']} | {g['removed']} | {top} |")
    reasons = counts.get("_reasons", Counter())
    if reasons:
        lines += ["", "Rejections by reason:", ""]
        lines += [f"- {r}: {n}" for r, n in reasons.most_common(10)]
    decon = manifest.get("decontamination")
    if decon:
        lines += ["", "## Decontamination", "",
                  f"- n-gram size: {decon['n']}",
                  f"- benchmarks checked: {', '.join(decon['benchmarks']) or 'none'}",
                  "- removed per benchmark: " + (", ".join(f"{b}: {n}" for b, n in decon["removed"].items()) or "none")]
    lines += ["", "## Schema", "",
              "- `messages`: list of `{role, content}` (chat format; loads directly in TRL's `SFTTrainer`)"]
    lines += [f"- `{c}`: provenance" for c in PROVENANCE_COLUMNS]
    lines += ["- `reject_gate`, `reject_reason`: why a row is in `rejected` (empty otherwise)",
              "- `instruction`: the task alone (the user turn adds its passage or API context)",
              "- `judge_score`, `judge_rationale`: LLM judge score 1-10 (-1 when not judged) and its reason", ""]
    return "\n".join(lines)


def push_to_hub(dd: datasets.DatasetDict, repo: str, card: str, private: bool = False) -> None:
    """Push with the token from the environment (``HF_TOKEN``); it is never written anywhere."""
    from huggingface_hub import DatasetCard

    dd.push_to_hub(repo, private=private)
    DatasetCard(card).push_to_hub(repo, repo_type="dataset")
