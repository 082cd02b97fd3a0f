"""Compare evaluation runs: ``report.md`` and a self-contained ``report.html`` with charts."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentinstruct.evaluate.stats import (
    BOOTSTRAP,
    BOOTSTRAP_ITERS,
    BOOTSTRAP_SEED,
    EXACT,
    NORMAL,
    OVERLAP,
    PAIRED,
    Interval,
    Verdict,
    interval_of,
    verdict,
)

from agentinstruct.embedded import EMBEDDED_MODELS

# Quoted, not measured: relative improvement of Orca-3 (Mistral-7B + AgentInstruct data) over
# Mistral-7B-Instruct, from the abstract of arXiv 2407.03502 (AgentInstruct, Mitra et al., 2024).
ORCA3_QUOTED = [
    ("AGIEval", "+40%"), ("MMLU", "+19%"), ("GSM8K", "+54%"), ("BBH", "+38%"), ("AlpacaEval", "+45%"),
    ("Summarisation hallucination", "-31% (lower is better)"),
]
RAW_SCALE_METRICS = {"quality"}  # shown as they are; everything else is a fraction shown in points
# A score is flagged as saying nothing when it rests on fewer items than MIN_ITEMS or its 95%
# interval is wider than MAX_CI_SHARE of its scale (50 points of a fraction; 2 of the 1-5 quality).
MIN_ITEMS = 10
MAX_CI_SHARE = 0.5
SCALE_RANGE = {"quality": 4.0}  # span of a raw scale; fractions span 1
TOO_WIDE = Verdict("interval too wide to tell", "")
METHOD_SHORT = {EXACT: "exact binomial", BOOTSTRAP: "bootstrap", NORMAL: "normal (stderr)"}
VERDICT_SHORT = {PAIRED: "paired", OVERLAP: "intervals"}
INTERVALS_RULE = (
    "Every score shows its 95% interval [low–high] and n, the items it rests on: exact binomial "
    "(Clopper–Pearson) for accuracies and rates of right/wrong items, percentile bootstrap "
    f"({BOOTSTRAP_ITERS:,} resamples, seed {BOOTSTRAP_SEED}) for win rates and mean scores, and a normal "
    "interval (value ± 1.96 standard errors, so it can pass 0 or 100) where only a standard error was reported; "
    "the interval column names the method of each row. "
    f"A score from fewer than {MIN_ITEMS} items or with an interval wider than {MAX_CI_SHARE:.0%} of its scale "
    "is flagged ⚠ \"says nothing\": almost any true value fits it.")
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
    return _points(score, score["value"])


def _points(score: dict[str, Any], v: float) -> float:
    return v if score.get("metric") in RAW_SCALE_METRICS else 100.0 * v


def embedded_judge(score: dict[str, Any] | None) -> str | None:
    """The embedded model's label when it judged this score (e.g. ``SmolLM2-135M-Instruct``), else None."""
    name = str((score or {}).get("judge") or "").lower()
    if not name:
        return None
    for key, (_, label) in EMBEDDED_MODELS.items():
        if key in name:  # embedded:KEY, or the same model served under its key
            return label
    return None


def says_nothing(score: dict[str, Any], ci: Interval | None) -> str | None:
    """'n=4: interval 6.8-93.2, says nothing' when too few items or too wide an interval make the
    score uninformative; None otherwise (and for a score without an interval: shown as such)."""
    n = score.get("n")
    span = SCALE_RANGE.get(score.get("metric"), 1.0)
    if ci is None or not ((isinstance(n, int) and n < MIN_ITEMS) or (ci.hi - ci.lo) > MAX_CI_SHARE * span):
        return None
    return f"n={n if n is not None else '?'}: interval {_fmt(_points(score, ci.lo))}–{_fmt(_points(score, ci.hi))}, says nothing"


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of benchmark x runs: values (points) with n, 95% intervals and a flag where they say
    nothing; deltas, and verdicts (stats.verdict) against the first run."""
    names: list[str] = []
    for r in runs:
        for n in r["scores"]:
            if n not in names:
                names.append(n)
    rows = []
    for n in names:
        first = next(r["scores"][n] for r in runs if n in r["scores"])
        scores = [r["scores"].get(n) for r in runs]
        values = [scale(sc) if sc else None for sc in scores]
        intervals = [interval_of(sc) if sc else None for sc in scores]
        flags = [says_nothing(sc, ci) if sc else None for sc, ci in zip(scores, intervals)]
        lower = bool(first.get("lower_is_better"))
        base = values[0]
        deltas, verdicts = [], []
        for v, sc, flag in zip(values[1:], scores[1:], flags[1:]):
            if v is None or base is None:
                deltas.append((None, None))
                verdicts.append(None)
                continue
            deltas.append((v - base, (v - base) / base * 100.0 if base else None))
            verdicts.append(TOO_WIDE if flag or flags[0] else verdict(scores[0], sc, lower))
        rows.append({"name": n, "benchmark": first.get("benchmark", n), "values": values, "deltas": deltas,
                     "failures": [failures(sc) for sc in scores],
                     "ns": [sc.get("n") if sc else None for sc in scores],
                     "intervals": [(_points(sc, ci.lo), _points(sc, ci.hi), ci.method) if ci else None
                                   for sc, ci in zip(scores, intervals)],
                     "flags": flags, "verdicts": verdicts,
                     "judge": next((j for j in map(embedded_judge, scores) if j), None),
                     "unit": "" if first.get("metric") in RAW_SCALE_METRICS else "pts",
                     "lower_is_better": lower})
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


def score_cell(row: dict[str, Any], i: int) -> str:
    """'40.0 (2 failed) [12.2–73.8] n=30'; a flagged score: '50.0 ⚠ n=4: interval 6.8–93.2, says nothing'."""
    v, ci, n, flag = row["values"][i], row["intervals"][i], row["ns"][i], row["flags"][i]
    if v is None:
        return "n/a"
    text = _cell(v, row["failures"][i])
    if flag:
        return f"{text} ⚠ {flag}"
    if ci is None:
        return f"{text} n={n if n is not None else '?'}, no interval"
    return f"{text} [{_fmt(ci[0])}–{_fmt(ci[1])}] n={n if n is not None else '?'}"


def method_cell(row: dict[str, Any]) -> str:
    methods = dict.fromkeys(METHOD_SHORT.get(ci[2], ci[2]) for ci in row["intervals"] if ci)
    return ", ".join(methods) or "none"


def verdict_cell(v: Verdict | None) -> str:
    if v is None:
        return "n/a (no interval)"
    return v.label + (f" ({VERDICT_SHORT.get(v.method, v.method)})" if v.method else "")


def name_cell(row: dict[str, Any]) -> str:
    text = row["name"] + (" ↓" if row["lower_is_better"] else "")
    return text + (f" — {judge_tag(row['judge'])}" if row["judge"] else "")


def judge_tag(label: str) -> str:
    return f"judge: embedded {label} — smoke test, not a measurement"


def judge_note(labels: list[str]) -> str:
    who = ", ".join(f"the embedded {x}" for x in labels)
    return (f"Judge: the rows marked \"{judge_tag(labels[0])}\" were decided by {who} acting as the judge "
            "(AlpacaEval preferences, hallucination verdicts and quality). A model this small cannot judge "
            "answers or summaries reliably, so those figures show that the benchmark runs end to end; they do not "
            "measure the model. Set `alpaca_eval.judge` and `hallucination.judge` to a capable model to measure.")


def verdict_rule(rows: list[dict[str, Any]]) -> str:
    """How the verdicts were decided, with the count of rows decided each way in this report."""
    used = [v.method for r in rows for v in r["verdicts"] if v is not None and v.method]
    counts = ", ".join(f"{used.count(m)} {VERDICT_SHORT[m]}" for m in (PAIRED, OVERLAP) if m in used)
    return ("Verdicts (each run against the first; ↓: lower is better): \"better\" or \"worse\" when the 95% "
            "interval shows a difference, \"no difference the interval can show\" when it does not. \"paired\": "
            f"a paired bootstrap of the per-item difference ({BOOTSTRAP_ITERS:,} resamples), used where both runs "
            "scored the same items, and a difference is shown when its interval excludes zero; \"intervals\": the "
            "two runs' 95% intervals do not overlap, used where per-item values are missing (a cruder test that "
            "misses some real differences). A flagged row gets \"interval too wide to tell\"."
            + (f" In this report: {counts}." if counts else ""))


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
        cis = [r["intervals"][i] for r in rows]  # error bars: each score's 95% interval
        err = [[max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(vals, cis)],
               [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(vals, cis)]]
        ax.bar([x + i * width for x in range(len(labels))], vals, width, yerr=err, capsize=2, label=run["run_name"])
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(labels))])
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("score (points; quality 1-5)")
    ax.legend(fontsize=8)
    ax.set_title("Benchmarks by run (bars: 95% intervals)")
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
    header = ["benchmark", "score", "95% interval"] + heads + [f"Δ {h}" for h in heads[1:]] + \
        [f"verdict {h}" for h in heads[1:]]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        deltas = [f"{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)" if d is not None else "n/a"
                  for d, p in r["deltas"]]
        cells = [score_cell(r, i) for i in range(len(runs))]
        md.append("| " + " | ".join([r["benchmark"], name_cell(r), method_cell(r)] + cells + deltas
                                    + [verdict_cell(v) for v in r["verdicts"]]) + " |")
    judges = list(dict.fromkeys(r["judge"] for r in rows if r["judge"]))
    rules = [INTERVALS_RULE] + ([verdict_rule(rows)] if len(runs) > 1 else []) + \
        ([judge_note(judges)] if judges else [])
    counts_failures = any("failed" in sc for run in runs for sc in run["scores"].values())
    if counts_failures:  # the rule is stated whenever a score counts failed calls, failures or not
        rules.append(FAILED_CALLS_RULE)
    for rule in rules:
        md += ["", rule]
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
         ".flag{background:#fde2e2}.judge{color:#a00;font-size:90%}"
         ".quoted{background:#fff8e0}img{max-width:100%}</style></head><body>",
         f"<h1>{e(title)}</h1>", *([f"<p><strong>{e(headline)}</strong></p>"] if headline else []),
         "<h2>Measured scores</h2>", "<table><tr>" + "".join(f"<th>{e(x)}</th>" for x in header) + "</tr>"]
    for r in rows:
        cells = [e(r["benchmark"]), e(r["name"] + (" ↓" if r["lower_is_better"] else ""))
                 + (f"<br><span class='judge'>{e(judge_tag(r['judge']))}</span>" if r["judge"] else ""),
                 e(method_cell(r))]
        cells += [f"<span class='flag'>{e(score_cell(r, i))}</span>" if r["flags"][i] else e(score_cell(r, i))
                  for i in range(len(runs))]
        for d, p in r["deltas"]:
            cells.append(f"{_fmt(d, sign=True)} {r['unit']} ({_fmt(p, 0, sign=True)}%)" if d is not None else "n/a")
        for v in r["verdicts"]:
            cls = {"better": "pos", "worse": "neg"}.get(v.label if v else "", "")
            cells.append(f"<span class='{cls}'>{e(verdict_cell(v))}</span>")
        h.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    h.append("</table>")
    h += [f"<p>{e(rule)}</p>" for rule in rules]
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
