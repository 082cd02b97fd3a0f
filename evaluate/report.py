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
        runs.append(json.loads(path.read_text()))
    return runs


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
                     "unit": "" if first.get("metric") in RAW_SCALE_METRICS else "pts",
                     "lower_is_better": bool(first.get("lower_is_better"))})
    rows.sort(key=lambda r: (r["benchmark"], r["name"]))
    return rows


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
                 sections: list[Section] | None = None) -> tuple[Path, Path]:
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
    md = [f"# {title}", "", "Runs: " + ", ".join(f"`{r['run_name']}` ({r['model']})" for r in runs), ""]
    md += ["## Measured scores", "",
           "Points = 100 x fraction; deltas are against the first run. Lower is better where marked (↓).", ""]
    header = ["benchmark", "score"] + heads + [f"Δ {h}" for h in heads[1:]]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        deltas = [f"{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)" if d is not None else "n/a"
                  for d, p in r["deltas"]]
        arrow = " ↓" if r["lower_is_better"] else ""
        md.append("| " + " | ".join([r["benchmark"], r["name"] + arrow] + [_fmt(v) for v in r["values"]] + deltas) + " |")
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
         f"<h1>{e(title)}</h1>", "<h2>Measured scores</h2>", "<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in header) + "</tr>"]
    for r in rows:
        cells = [e(r["benchmark"]), e(r["name"] + (" ↓" if r["lower_is_better"] else ""))]
        cells += [_fmt(v) for v in r["values"]]
        for d, p in r["deltas"]:
            good = d is not None and ((d > 0) != r["lower_is_better"]) and d != 0
            cls = "pos" if good else ("neg" if d else "")
            cells.append(f"<span class='{cls}'>{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)</span>"
                         if d is not None else "n/a")
        h.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    h.append("</table>")
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
