"""Summarisation hallucination: the model summarises documents; an LLM judge marks each summary
for claims the document does not support (rubric below), giving a hallucination rate and a
quality score. Optionally Vectara's HHEM-2.1-Open classifier when it is available locally."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.config import HallucinationSection
from agentinstruct.evaluate.stats import per_item
from agentinstruct.generate.ingest import IngestReport, iter_seeds, regex_tokenize

from agentinstruct.llm import ChatModel, LLMError, create_model
from agentinstruct.llm.structured import extract_json

SUMMARY_PROMPT = "Summarise the following document in three sentences.\n\nDocument:\n{document}"
JUDGE_PROMPT = """You check a summary against its source document.

Document:
{document}

Summary:
{summary}

List every claim in the summary that the document does not support. Then rate the summary.
Reply in JSON: {{"unsupported_claims": [...], "hallucinated": true or false, "quality": 1 to 5}}
"hallucinated" is true when at least one claim is unsupported; "quality" rates faithfulness and coverage (5 best)."""

JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "unsupported_claims": {"type": "array", "items": {"type": "string", "maxLength": 300}, "maxItems": 8},
        "hallucinated": {"type": "boolean"},
        "quality": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["unsupported_claims", "hallucinated", "quality"],
    "additionalProperties": False,
}

_YES = {"true", "yes", "1"}


def parse_verdict(text: str) -> dict[str, Any] | None:
    """Robust judge parsing: JSON first, then 'hallucinated: yes' / 'quality: 4' lines.
    Returns None when the reply says neither (counted as unparseable)."""
    try:
        value = extract_json(text)
        if isinstance(value, dict) and "hallucinated" in value:
            h = value["hallucinated"]
            h = h if isinstance(h, bool) else str(h).strip().lower() in _YES
            q = value.get("quality")
            try:
                q = min(5, max(1, int(q))) if q is not None else None
            except (TypeError, ValueError):
                q = None
            claims = value.get("unsupported_claims") or []
            return {"hallucinated": h, "quality": q, "unsupported_claims": claims if isinstance(claims, list) else []}
    except ValueError:
        pass
    m = re.search(r"hallucinat\w*\W{0,5}(true|false|yes|no)\b", text, re.IGNORECASE)
    if not m:
        return None
    q = re.search(r"quality\W{0,5}([1-5])\b", text, re.IGNORECASE)
    return {"hallucinated": m.group(1).lower() in _YES, "quality": int(q.group(1)) if q else None,
            "unsupported_claims": []}


def load_documents(section: HallucinationSection) -> list[tuple[str, str]]:
    seeds = iter_seeds(section.documents, tokenize=regex_tokenize, max_tokens=section.max_doc_tokens,
                       overlap=0, min_chars=80, code_extensions=set(), text_column=section.text_column,
                       report=IngestReport())
    docs = [(s.source, s.text) for s in seeds if s.kind == "text"]
    return docs[: section.max_documents] if section.max_documents else docs


def hhem_scores(pairs: list[tuple[str, str]]) -> list[float] | None:
    """HHEM-2.1-Open consistency scores in [0, 1], or None when the model is not available locally."""
    try:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            "vectara/hallucination_evaluation_model", trust_remote_code=True, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means: not available offline
        return None
    return [float(s) for s in model.predict(pairs)]


async def _summaries_and_verdicts(model: ChatModel, judge: ChatModel, docs, section
                                  ) -> tuple[list[str | LLMError], list[str | LLMError | None]]:
    """Summaries (text or the LLMError of a failed call) and judge replies (text, LLMError, or
    None where the summary failed and there was nothing to judge)."""
    summaries = await model.chat_batch(
        [[{"role": "user", "content": SUMMARY_PROMPT.format(document=d)}] for _, d in docs],
        max_tokens=section.summary_max_tokens, temperature=0.0)
    texts: list[str | LLMError] = [s if isinstance(s, LLMError) else s.text for s in summaries]
    todo = [i for i, t in enumerate(texts) if isinstance(t, str)]
    verdicts = await judge.chat_batch(
        [[{"role": "user", "content": JUDGE_PROMPT.format(document=docs[i][1], summary=texts[i])}] for i in todo],
        max_tokens=section.judge_max_tokens, temperature=0.0,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": JUDGE_SCHEMA}})
    replies: list[str | LLMError | None] = [None] * len(texts)
    for i, v in zip(todo, verdicts):
        replies[i] = v if isinstance(v, LLMError) else v.text
    return texts, replies


def _failure_note(what: str, errors: list[LLMError], total: int, rule: str) -> str:
    return f"hallucination: {len(errors)} of {total} {what} failed ({rule}; first error: {str(errors[0])[:160]})"


def run_hallucination(section: HallucinationSection, model: ChatModel, out_dir: Path, notes: list[str],
                      judge: ChatModel | None = None) -> dict[str, dict[str, Any]]:
    docs = load_documents(section)
    if not docs:
        raise ValueError(f"hallucination.documents {section.documents!r}: no documents to summarise")
    judge = judge or create_model(section.judge)
    outs, replies = asyncio.run(_summaries_and_verdicts(model, judge, docs, section))
    summaries = [o if isinstance(o, str) else "" for o in outs]
    parsed = [parse_verdict(r) if isinstance(r, str) else None for r in replies]
    rows = [{"source": src, "summary": s, "judge_reply": r if isinstance(r, str) else None, "verdict": v,
             **({"failed": "summary", "error": str(o)} if isinstance(o, LLMError) else {}),
             **({"failed": "judge", "error": str(r)} if isinstance(r, LLMError) else {})}
            for (src, _), s, o, r, v in zip(docs, summaries, outs, replies, parsed)]
    ok = [v for v in parsed if v is not None]
    failed = [o for o in outs if isinstance(o, LLMError)]
    judge_failed = [r for r in replies if isinstance(r, LLMError)]
    unparsed = sum(isinstance(r, str) for r in replies) - len(ok)
    if failed:
        notes.append(_failure_note("summaries", failed, len(docs), "not judged, left out of the scores"))
    if judge_failed:
        notes.append(_failure_note("judge calls", judge_failed, len(docs) - len(failed), "left out of the scores"))
    if unparsed:
        notes.append(f"hallucination: {unparsed} of {len(docs) - len(failed) - len(judge_failed)} judge replies "
                     "could not be parsed (not counted)")
    scores: dict[str, dict[str, Any]] = {}
    base = {"benchmark": "Summarisation hallucination", "judge": judge.name, "n_unparsed": unparsed,
            "failed": len(failed), "judge_failed": len(judge_failed), "attempted": len(docs)}
    # per document, named by position and source (a long document's chunks share their source)
    judged = [(f"{i}:{src}", v) for i, ((src, _), v) in enumerate(zip(docs, parsed)) if v is not None]
    if ok:
        rate = sum(v["hallucinated"] for v in ok) / len(ok)
        scores["hallucination rate (judge)"] = {"value": rate, "stderr": (rate * (1 - rate) / len(ok)) ** 0.5,
                                                "metric": "hallucination_rate", "lower_is_better": True, **base,
                                                **per_item([int(v["hallucinated"]) for _, v in judged],
                                                           [src for src, _ in judged], "proportion")}
        qualities = [(src, v["quality"]) for src, v in judged if v["quality"] is not None]
        if qualities:
            scores["summary quality (judge, 1-5)"] = {
                "value": sum(q for _, q in qualities) / len(qualities), "stderr": None, "metric": "quality", **base,
                **per_item([q for _, q in qualities], [src for src, _ in qualities], "mean")}
    if section.hhem:
        hhem = hhem_scores([(d, s) for (_, d), s in zip(docs, outs) if isinstance(s, str)])
        if hhem is None:
            notes.append("hallucination: HHEM-2.1-Open is not available locally; skipped "
                         "(agentinstruct prefetch fetches it)")
        else:
            for row, h in zip((r for r, o in zip(rows, outs) if isinstance(o, str)), hhem):
                row["hhem_consistency"] = h
            rate = sum(h < 0.5 for h in hhem) / len(hhem)
            sources = [f"{i}:{src}" for i, ((src, _), o) in enumerate(zip(docs, outs)) if isinstance(o, str)]
            scores["hallucination rate (HHEM-2.1)"] = {"value": rate, "stderr": None, "metric": "hhem_rate",
                                                       **per_item([int(h < 0.5) for h in hhem], sources, "proportion"),
                                                       "lower_is_better": True,
                                                       "benchmark": "Summarisation hallucination",
                                                       "failed": len(failed), "attempted": len(docs)}
    samples = out_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    with open(samples / "hallucination.jsonl", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return scores
