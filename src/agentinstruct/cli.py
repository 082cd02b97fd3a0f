"""``agentinstruct`` command line: generate | train | evaluate | report | pipeline | chat."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from agentinstruct.recipes import RecipeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Generative Teaching: documents -> instruction data -> fine-tuned model -> report.")
console = Console(stderr=True)


EXIT_UNITS_FAILED = 3  # generate: too many units' LLM calls failed for good; rerun to retry them


def fail(message: str) -> None:
    """One line on stderr, exit code 2: bad input never ends in a traceback."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _csv(value: Optional[str]) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


@app.command()
def generate(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="recipes/generate/<name>.yaml")],
    input: Annotated[Optional[str], typer.Option(help="folder, glob, file, hf:NAME[:split] or saved dataset")] = None,
    output: Annotated[Optional[Path], typer.Option(help="run directory (default: the recipe's)")] = None,
    skills: Annotated[Optional[str], typer.Option(help="comma-separated skill names or splits")] = None,
    limit: Annotated[Optional[int], typer.Option(help="at most this many seeds")] = None,
    format: Annotated[Optional[list[str]], typer.Option("--format", help="also write parquet / jsonl")] = None,
    push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Hub dataset repo id")] = None,
    overwrite: Annotated[bool, typer.Option(help="delete the run directory first (only one agentinstruct made)")] = False,
    force: Annotated[bool, typer.Option(help="use (with --overwrite: delete) an output folder agentinstruct did not make")] = False,
    progress: Annotated[bool, typer.Option(help="show the live progress display")] = True,
    progress_interval: Annotated[Optional[float], typer.Option(
        help="seconds between progress lines when stderr is not a terminal (default: the recipe's, 30)")] = None,
) -> None:
    """Turn raw documents into an instruction dataset with the three AgentInstruct flows.

    Exit 3: too many units' LLM calls failed for good (see max_failed_units); rerun to retry.
    """
    from agentinstruct.generate.engine import UnitsFailed
    from agentinstruct.generate.runner import empty_run_reason, load_generate_recipe, run_generate

    try:
        rec = load_generate_recipe(recipe, input=input, output=output, limit=limit, formats=format,
                                   progress_interval_s=progress_interval)
        summary = run_generate(rec, skills=_csv(skills), console=console, show_progress=progress,
                               overwrite=overwrite, force=force, push_to_hub=push_to_hub)
    except UnitsFailed as exc:  # outputs hold what was made; the failed units wait for a rerun
        Console().print(exc.summary.table())
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_UNITS_FAILED) from None
    except (RecipeError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    Console().print(summary.table())
    empty = empty_run_reason(summary, rec.input)
    if empty:  # written (the rejected split explains it), but nothing usable: not a success
        fail(empty)
    if summary.stopped:  # usable data was made: exit 0, but say the budget cut the run short
        console.print(f"[yellow]{escape(summary.stopped)}[/] (finished units exported; rerun with a "
                      "larger budget to continue)", soft_wrap=True)


@app.command()
def estimate(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="recipes/generate/<name>.yaml")],
    input: Annotated[Optional[str], typer.Option(help="folder, glob, file, hf:NAME[:split] or saved dataset")] = None,
    sample: Annotated[Optional[int], typer.Option(min=1, help="seeds to run (default: the recipe's estimate.sample)")] = None,
    live: Annotated[bool, typer.Option(help="run the sample against the real teacher (spends calls)")] = False,
    latency: Annotated[Optional[float], typer.Option(help="assumed seconds per call (default: recipe estimate.latency_s)")] = None,
    skills: Annotated[Optional[str], typer.Option(help="comma-separated skill names or splits")] = None,
    output: Annotated[Optional[Path], typer.Option(
        help="run folder to store the projection in (RUN/estimate.json), shown against the actuals after generate")] = None,
) -> None:
    """Project calls, tokens per skill, wall time and cost of a generate run from a small sample.

    Without --live the sample runs on the package's scripted server (or the embedded model when
    it is the teacher): completion tokens are then an upper bound from max_tokens caps.
    """
    from agentinstruct.generate import estimate as est
    from agentinstruct.generate.runner import load_generate_recipe

    try:
        rec = load_generate_recipe(recipe, input=input)
        result = est.estimate(rec, sample=sample, live=live, latency_s=latency, skills=_csv(skills))
        saved = est.save(result, output) if output is not None else None
    except (RecipeError, ValueError, RuntimeError) as exc:
        fail(str(exc))
    Console().print(result.table())
    for line in result.lines():
        console.print(escape(line), soft_wrap=True)
    if saved is not None:
        console.print(f"projection saved: {saved}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", help="recipes/<model>/sft/<variant>.yaml")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan (parameters, trainable "
                                          "parameters, effective batch, tokens/step, memory) on CPU; train nothing")] = False,
    accelerate_config: Annotated[Optional[Path], typer.Option(
        "--accelerate-config", help="with --dry-run: the accelerate config the run will use (world size)")] = None,
) -> None:
    """Fine-tune with TRL (same code as `accelerate launch train/sft.py`); extra flags go to TrlParser."""
    from agentinstruct.train.sft import main as sft_main

    if not config.exists():
        fail(f"{config}: recipe file not found")
    plan_args = ["--dry_run", "true"] if dry_run else []
    if accelerate_config is not None:
        if not dry_run:
            fail("--accelerate-config only applies with --dry-run (a run takes it from `accelerate launch`)")
        plan_args += ["--dry_run_accelerate_config", str(accelerate_config)]
    try:
        result = sft_main(["--config", str(config), *plan_args, *ctx.args])
    except (RecipeError, ValueError) as exc:
        fail(str(exc))
    if result.get("dry_run"):
        console.print("[green]dry run[/]: nothing was trained")
        return
    console.print(f"[green]trained[/] {result['global_step']} steps -> {result['output_dir']}")


@app.command()
def pipeline(
    config: Annotated[Path, typer.Option("--config", help="recipes/pipeline/<name>.yaml")],
    progress: Annotated[bool, typer.Option(help="show live progress")] = True,
) -> None:
    """generate -> train -> evaluate base and tuned -> report, skipping stages already done."""
    from agentinstruct.llm import LLMError
    from agentinstruct.pipeline import Pipeline, load_pipeline_recipe

    try:
        Pipeline(load_pipeline_recipe(config), console, show_progress=progress).run()
    except (RecipeError, LLMError, ValueError, RuntimeError, FileNotFoundError) as exc:
        fail(str(exc))


MODEL_HELP = "embedded:KEY, HF id or folder, FOLDER+ADAPTER, vllm:MODEL[+ADAPTER], or openai:BASE_URL:MODEL"


@app.command()
def evaluate(
    config: Annotated[Path, typer.Option("--config", help="recipes/eval/<name>.yaml")],
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "embedded:smollm2-135m-instruct",
    name: Annotated[Optional[str], typer.Option(help="run name (default: from the model)")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="parent of the run directory")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(help="env var with the API key (openai:...)")] = None,
    report: Annotated[bool, typer.Option(help="also write report.md/html for this run")] = True,
) -> None:
    """Run the benchmark suite on one model; writes RUN_DIR/results.json and per-sample logs."""
    from agentinstruct.evaluate.report import write_report
    from agentinstruct.evaluate.suite import load_eval_recipe, run_eval
    from agentinstruct.llm import LLMError, ModelSpec

    try:
        recipe = load_eval_recipe(config)
        spec = ModelSpec.from_string(model, **({"api_key_env": api_key_env} if api_key_env else {}))
        run_dir = run_eval(recipe, spec, run_name=name, output_dir=output_dir)
        if report:
            write_report([run_dir], run_dir)
    except (RecipeError, LLMError, ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    _print_scores(run_dir)


def _print_scores(run_dir: Path) -> None:
    import json

    from rich.table import Table

    results = json.loads((run_dir / "results.json").read_text())
    table = Table(title=f"{results['run_name']} ({results['model']})")
    table.add_column("benchmark")
    table.add_column("score")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")
    for name, s in results["scores"].items():
        table.add_row(s.get("benchmark", ""), name, f"{s['value']:.4f}", str(s.get("n") or ""))
    Console().print(table)
    for note in results["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print(f"results: {run_dir / 'results.json'}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="evaluation run directories; the first is the baseline")],
    output: Annotated[Path, typer.Option(help="folder for report.md / report.html")] = Path("runs/report"),
    title: Annotated[str, typer.Option()] = "agentinstruct evaluation report",
) -> None:
    """Compare runs (base vs tuned): a table with deltas, charts, and the paper's quoted rows."""
    from agentinstruct.evaluate.report import write_report
    from agentinstruct.outdir import check_writable_dir

    try:
        check_writable_dir(output, "--output")
        md, html = write_report(runs, output, title)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    console.print(f"wrote {md} and {html}")


@app.command()
def prefetch(
    config: Annotated[Path, typer.Option("--config", help="recipes/eval/<name>.yaml")],
    model: Annotated[Optional[list[str]], typer.Option(help=MODEL_HELP)] = None,
    dry_run: Annotated[bool, typer.Option(help="list what would be downloaded")] = False,
) -> None:
    """Download every dataset/model the config needs, for later runs with HF_HUB_OFFLINE=1."""
    from agentinstruct.evaluate.prefetch import plan
    from agentinstruct.evaluate.suite import load_eval_recipe
    from agentinstruct.llm import ModelSpec

    try:
        items = plan(load_eval_recipe(config), [ModelSpec.from_string(m) for m in model or []])
    except (RecipeError, ValueError) as exc:
        fail(str(exc))
    if not items:
        console.print("nothing to fetch: every input is local")
    for kind, name, fetch in items:
        console.print(f"{'would fetch' if dry_run else 'fetching'} {kind}: {name}")
        if not dry_run:
            fetch()


@app.command()
def serve(
    model: Annotated[str, typer.Option(help=MODEL_HELP)] = "embedded:smollm2-135m-instruct",
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve a local model on an OpenAI-compatible /v1/chat/completions endpoint."""
    import threading

    from agentinstruct.llm import ModelSpec, create_model
    from agentinstruct.llm.serve import serve_in_thread

    with serve_in_thread(create_model(ModelSpec.from_string(model)), host, port) as url:
        console.print(f"serving {model} at {url} (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


@app.command()
def chat(
    prompt: Annotated[str, typer.Argument(help="the user message")],
    model: Annotated[str, typer.Option(help="embedded:KEY, HF id/folder, or openai:BASE_URL:MODEL")] = "embedded:smollm2-135m-instruct",
    max_tokens: Annotated[int, typer.Option(min=1)] = 128,
    temperature: Annotated[float, typer.Option()] = 0.0,
    api_key_env: Annotated[Optional[str], typer.Option(help="env var with the API key (openai)")] = None,
) -> None:
    """One chat turn through the LLM layer (quick check of a backend)."""
    from agentinstruct.llm import LLMError, ModelSpec, create_model

    try:
        spec = ModelSpec.from_string(model, **({"api_key_env": api_key_env} if api_key_env else {}))
        m = create_model(spec)
        out = asyncio.run(m.chat([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                 temperature=temperature))
    except (LLMError, ValueError) as exc:
        fail(str(exc))
    print(out.text)
    console.print(f"[dim]finish={out.finish_reason} tokens={out.usage.prompt_tokens}+{out.usage.completion_tokens}[/]")


from agentinstruct.skill_cli import skill_app  # noqa: E402 - `agentinstruct skill new | check`

app.add_typer(skill_app, name="skill")


def run() -> None:  # pragma: no cover
    sys.exit(app())
