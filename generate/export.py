"""Journal -> ``DatasetDict`` (one split per skill + ``rejected``), files, card, Hub."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
from agentinstruct.generate.journal import Journal
from agentinstruct.generate.validators.counts import reason_class

from agentinstruct.records import PROVENANCE_COLUMNS, TOOL_TRACE_KEYS, messages_feature

REJECTED = "rejected"

# explicit, so every split (single-turn, with tool turns, empty) has one schema and splits concatenate
FEATURES = datasets.Features({
    "messages": messages_feature(),
    "instruction": datasets.Value("string"),
    "seed_id": datasets.Value("string"),
    "source": datasets.Value("string"),
    "skill": datasets.Value("string"),
    "split": datasets.Value("string"),
    "instruction_type": datasets.Value("string"),
    "transformation": datasets.Value("string"),
    "refinement_round": datasets.Value("int32"),
    "teacher_model": datasets.Value("string"),
    "recipe_hash": datasets.Value("string"),
    "language": datasets.Value("string"),
    "question_method": datasets.Value("string"),
    "answer_span": datasets.Value("string"),
    "source_sentence": datasets.Value("string"),
    "passage_ids": datasets.List(datasets.Value("string")),
    "suggestions": datasets.List(datasets.Value("string")),
    "tool_trace": datasets.List({k: datasets.Value("string") for k in TOOL_TRACE_KEYS}),
    "turns": datasets.Value("int32"),
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
                # the split the row would have gone to (a journal from before `split` existed: `skill`)
                counts[row.get("split") or row["skill"]]["rejected"] += 1
                counts["_reasons"][f"{row['reject_gate']}: {reason_class(row['reject_reason'])}"] += 1
            else:
                counts[split]["accepted"] += 1
                counts[f"_types:{split}"][row["instruction_type"]] += 1
                counts["_languages"][row.get("language", "en")] += 1
            if split not in handles:  # a skill not in this run's list (should not happen)
                handles[split] = open(staging / f"{split}.jsonl", "w", encoding="utf-8")
            handles[split].write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        for h in handles.values():
            h.close()
    return counts


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


def write_outputs(dd: datasets.DatasetDict, out: Path, staging: Path, formats: list[str],
                  card: str | None = None) -> None:
    """Write ``dataset/`` (with its ``README.md`` card) and the extra formats.

    Every file appears by a rename, so a run killed at any point leaves each output either
    absent or complete, never half written: ``dataset/`` is saved to ``dataset.tmp`` and
    swapped in (the old one, if any, is set aside first), parquet/jsonl files go through a
    ``.tmp`` name. The rerun rebuilds them from the journal.
    """
    target, tmp, old = out / "dataset", out / "dataset.tmp", out / "dataset.old"
    shutil.rmtree(tmp, ignore_errors=True)
    # an empty split saved with 0 shards cannot be read back by datasets: give it one
    dd.save_to_disk(str(tmp), num_shards={name: 1 for name, ds in dd.items() if len(ds) == 0})
    if card is not None:
        (tmp / "README.md").write_text(card, encoding="utf-8")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    if "parquet" in formats:
        (out / "parquet").mkdir(exist_ok=True)
        for name, ds in dd.items():
            part = out / "parquet" / f"{name}.parquet.tmp"
            ds.to_parquet(str(part))
            os.replace(part, part.with_suffix(""))
    if "jsonl" in formats:
        (out / "jsonl").mkdir(exist_ok=True)
        for path in staging.glob("*.jsonl"):
            part = out / "jsonl" / f"{path.name}.tmp"
            shutil.copy(path, part)
            os.replace(part, part.with_suffix(""))


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary name and rename: a kill leaves the old file or the new one."""
    part = path.with_name(f"{path.name}.tmp")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


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
    version = (manifest.get("versions") or {}).get("agentinstruct", "unknown version")
    lines += ["---", "", "# AgentInstruct synthetic dataset", "",
              f"Generated with the agentinstruct toolkit, version {version} (its README.md describes the "
              "stages and recipes). Method: Generative Teaching ("
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
    languages = counts.get("_languages", Counter())
    if languages:
        lines += ["", "Accepted rows by language: " + ", ".join(f"{c} ({n})" for c, n in languages.most_common())]
    lines += ["", "### Instruction types", ""]
    for s in splits:
        types = counts.get(f"_types:{s}", Counter())
        if types:
            lines.append(f"- **{s}**: " + ", ".join(f"{t} ({n})" for t, n in types.most_common()))
    if manifest.get("seed_filter"):  # seeds removed before generation, per rule, with examples
        from agentinstruct.generate.seed_filter import card_lines as seed_filter_lines

        lines += seed_filter_lines(manifest["seed_filter"])
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
    if decon:  # one row per evaluation set: checked or not, items, removals
        from agentinstruct.generate.decontam import card_lines

        lines += card_lines(decon)
    from agentinstruct.generate import estimate, incremental  # version, projected vs actual, budget

    lines += incremental.card_lines(manifest.get("dataset_version"))
    lines += estimate.card_lines(manifest.get("estimate"), manifest.get("budget"))
    lines += ["", "## Schema", "",
              "- `messages`: list of `{role, content, tool_calls, tool_call_id, name}` turns (OpenAI chat "
              "format; roles system/user/assistant/tool, `tool_calls` on assistant turns, null where absent; "
              "loads directly in TRL's `SFTTrainer`)"]
    lines += [f"- `{c}`: provenance" for c in PROVENANCE_COLUMNS]
    lines += ["- `language`: ISO 639-1 code of the language the pair is written in (the recipe's `language`, "
              "or the seed's detected language with `auto`)"]
    lines += ["- `question_method`: `llm` (the teacher wrote the task) or `rule` (built around an answer "
              "span by the answer_first method); `answer_span` and `source_sentence`: for `rule` rows, "
              "the span the question asks for and the sentence it comes from (empty otherwise)"]
    lines += ["- `passage_ids`: retrieved passages shown to the teacher; `suggestions`: refinement "
              "suggestions applied, in order; `tool_trace`: the tool rounds while answering "
              "(`{name, arguments, result}`); `turns`: user turns in `messages`"]
    lines += ["- `reject_gate`, `reject_reason`: why a row is in `rejected` (empty otherwise)",
              "- `instruction`: the task alone (the user turn adds its passage or API context)",
              "- `judge_score`, `judge_rationale`: LLM judge score 1-10 (-1 when not judged) and its reason", ""]
    return "\n".join(lines)


def push_to_hub(dd: datasets.DatasetDict, repo: str, card: str, private: bool = False) -> None:
    """Push with the token from the environment (``HF_TOKEN``); it is never written anywhere."""
    from huggingface_hub import DatasetCard

    dd.push_to_hub(repo, private=private)
    DatasetCard(card).push_to_hub(repo, repo_type="dataset")
