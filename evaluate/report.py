"""Compare evaluation runs: ``report.md`` and a self-contained ``report.html`` with charts."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Quoted, not measured: relative improvement of Orca-3 (Mistral-7B + AgentInstruct data) over
# Mistral-7B-Instruct, from the abstract of arXiv 2407.03502 (AgentInstruct, Mitra et al., 2024).
ORCA3_QUOTED = [
    ("AGIEval", "+40%"), ("MMLU", "+19%"), ("GSM8K", "+54%"), ("BBH", "+38%"), ("AlpacaEval", "+45%"),
    ("Summarisation hallucination", "-31% (lower is better)"),
]
RAW_SCALE_METRICS = {"quality"}  # shown as they are; everything else is a fraction shown in points
FAILED_CALLS_RULE = (
    "Failed calls are counted and shown next to the score (\"k failed\": model calls, \"k judge failed\": "
    "judge calls). A failed model call counts as wrong: a held-out question as a wrong answer, an AlpacaEval "
    "output as a loss to the reference (score over all n). Failed summaries and failed judge calls are left "
    "out of the hallucination and quality scores, and failed AlpacaEval judge calls out of the win rate.")


@dataclass
class Section:
    """Extra report content (the pipeline adds dataset summary, training curve, held-out CI)."""

    title: str
    markdown: str
    html: str
    images: dict[str, bytes] = field(default_factory=dict)


def load_runs(run_dirs: list[str | Path]) -> list[dict[str, Any]]:
    runs = []
    for d in run_dirs:
        path = Path(d) / "results.json"
        if not path.exists():
            raise FileNotFoundError(f"{d}: no results.json (not an evaluation run directory)")
        runs.append(read_results(path))
    return runs


def read_results(path: Path) -> dict[str, Any]:
    """One run's results.json, checked: a file that cannot be reported on is a one-line error."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(run, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(run).__name__}")
    scores = run.get("scores")
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"{path}: no scores (the run measured nothing: every benchmark disabled, "
                         "or it did not finish)")
    for name, score in scores.items():
        if not isinstance(score, dict) or not isinstance(score.get("value"), (int, float)):
            raise ValueError(f"{path}: scores.{name}: expected an object with a numeric value")
    missing = [k for k in ("run_name", "model", "created") if k not in run]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    return run


def scale(score: dict[str, Any]) -> float:
    v = score["value"]
    return v if score.get("metric") in RAW_SCALE_METRICS else 100.0 * v


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of benchmark x runs with deltas against the first run (points and percent)."""
    names: list[str] = []
    for r in runs:
        for n in r["scores"]:
            if n not in names:
                names.append(n)
    rows = []
    for n in names:
        first = next(r["scores"][n] for r in runs if n in r["scores"])
        values = [scale(r["scores"][n]) if n in r["scores"] else None for r in runs]
        base = values[0]
        deltas = []
        for v in values[1:]:
            if v is None or base is None:
                deltas.append((None, None))
            else:
                deltas.append((v - base, (v - base) / base * 100.0 if base else None))
        rows.append({"name": n, "benchmark": first.get("benchmark", n), "values": values, "deltas": deltas,
                     "failures": [failures(r["scores"].get(n)) for r in runs],
                     "unit": "" if first.get("metric") in RAW_SCALE_METRICS else "pts",
                     "lower_is_better": bool(first.get("lower_is_better"))})
    rows.sort(key=lambda r: (r["benchmark"], r["name"]))
    return rows


def failures(score: dict[str, Any] | None) -> str:
    """'2 failed, 1 judge failed' for a score with failed calls; '' otherwise."""
    if not score:
        return ""
    parts = [f"{score[k]} {label}" for k, label in (("failed", "failed"), ("judge_failed", "judge failed"))
             if score.get(k)]
    return ", ".join(parts)


def _cell(v: float | None, failed: str) -> str:
    return _fmt(v) + (f" ({failed})" if failed else "")


def _fmt(v: float | None, digits: int = 1, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def bar_chart(runs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) + 2), 4.5))
    width = 0.8 / max(1, len(runs))
    for i, run in enumerate(runs):
        vals = [r["values"][i] or 0.0 for r in rows]
        ax.bar([x + i * width for x in range(len(labels))], vals, width, label=run["run_name"])
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (points; quality 1-5)")
    ax.legend(fontsize=8)
    ax.set_title("Benchmarks by run")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(run_dirs: list[str | Path], out_dir: str | Path, title: str = "agentinstruct evaluation report",
                 sections: list[Section] | None = None, headline: str | None = None) -> tuple[Path, Path]:
    """``headline``: one paragraph under the title (the pipeline puts its held-out verdict there)."""
    runs = load_runs(run_dirs)
    rows = compare(runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {"scores.png": bar_chart(runs, rows)} if rows else {}
    for s in sections or []:
        images.update(s.images)
    for name, data in images.items():
        (out / name).write_bytes(data)

    heads = [r["run_name"] for r in runs]
    md = [f"# {title}", "", *([f"**{headline}**", ""] if headline else []),
          "Runs: " + ", ".join(f"`{r['run_name']}` ({r['model']})" for r in runs), ""]
    md += ["## Measured scores", "",
           "Points = 100 x fraction; deltas are against the first run. Lower is better where marked (↓).", ""]
    header = ["benchmark", "score"] + heads + [f"Δ {h}" for h in heads[1:]]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        deltas = [f"{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)" if d is not None else "n/a"
                  for d, p in r["deltas"]]
        arrow = " ↓" if r["lower_is_better"] else ""
        cells = [_cell(v, f) for v, f in zip(r["values"], r["failures"])]
        md.append("| " + " | ".join([r["benchmark"], r["name"] + arrow] + cells + deltas) + " |")
    counts_failures = any("failed" in sc for run in runs for sc in run["scores"].values())
    if counts_failures:  # the rule is stated whenever a score counts failed calls, failures or not
        md += ["", FAILED_CALLS_RULE]
    if images.get("scores.png"):
        md += ["", "![scores](scores.png)"]
    notes = [(r["run_name"], n) for r in runs for n in r.get("notes", [])]
    if notes:
        md += ["", "### Notes", ""] + [f"- `{run}`: {n}" for run, n in notes]
    for s in sections or []:
        md += ["", f"## {s.title}", "", s.markdown]
    md += ["", "## Published reference (quoted, not measured)", "",
           "Orca-3 (Mistral-7B fine-tuned on 25.8M AgentInstruct pairs) vs Mistral-7B-Instruct, relative "
           "improvement as stated in the AgentInstruct paper (arXiv 2407.03502). These figures are quoted "
           "from the paper, not produced by this run.", "",
           "| benchmark | Orca-3 vs Mistral-7B-Instruct (quoted) |", "|---|---|"]
    md += [f"| {b} | {v} |" for b, v in ORCA3_QUOTED]
    md += ["", "## Runs", ""]
    for r in runs:
        md.append(f"- `{r['run_name']}`: model `{r['model']}`, created {r['created']}, "
                  f"chat template hash `{r.get('chat_template_hash')}`, versions "
                  + ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()))
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")

    def img(name: str) -> str:
        return f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'

    e = html.escape
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>"
         "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child,td:nth-child(2),th{text-align:left}.pos{color:#070}.neg{color:#a00}"
         ".quoted{background:#fff8e0}img{max-width:100%}</style></head><body>",
         f"<h1>{e(title)}</h1>", *([f"<p><strong>{e(headline)}</strong></p>"] if headline else []),
         "<h2>Measured scores</h2>", "<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in header) + "</tr>"]
    for r in rows:
        cells = [e(r["benchmark"]), e(r["name"] + (" ↓" if r["lower_is_better"] else ""))]
        cells += [e(_cell(v, f)) for v, f in zip(r["values"], r["failures"])]
        for d, p in r["deltas"]:
            good = d is not None and ((d > 0) != r["lower_is_better"]) and d != 0
            cls = "pos" if good else ("neg" if d else "")
            cells.append(f"<span class='{cls}'>{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)</span>"
                         if d is not None else "n/a")
        h.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    h.append("</table>")
    if counts_failures:
        h.append(f"<p>{e(FAILED_CALLS_RULE)}</p>")
    if "scores.png" in images:
        h.append(img("scores.png"))
    if notes:
        h.append("<h3>Notes</h3><ul>" + "".join(f"<li><code>{e(run)}</code>: {e(n)}</li>" for run, n in notes) + "</ul>")
    for s in sections or []:
        body = s.html
        for name in s.images:
            body = body.replace(f"{{{{img:{name}}}}}", img(name))
        h.append(f"<h2>{e(s.title)}</h2>{body}")
    h.append("<h2>Published reference (quoted, not measured)</h2><p class='quoted'>Orca-3 vs Mistral-7B-Instruct, "
             "relative improvement quoted from the AgentInstruct paper (arXiv 2407.03502); not produced by this run.</p>"
             "<table class='quoted'><tr><th>benchmark</th><th>Orca-3 vs Mistral-7B-Instruct (quoted)</th></tr>"
             + "".join(f"<tr><td>{e(b)}</td><td>{e(v)}</td></tr>" for b, v in ORCA3_QUOTED) + "</table>")
    h.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(h), encoding="utf-8")
    return md_path, html_path
