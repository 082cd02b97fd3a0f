"""``agentinstruct skill new | check``: write your own skill file and see what the teacher sees.

``new NAME`` copies the commented template (``recipes/skills/_template.yaml``, shipped as
package data) or, with ``--from``, a shipped skill (by name or split) or any skill file, with a
header comment saying where it came from. ``check FILE`` validates it the way a run loads it
(schema, known check names, instruction types with descriptions, template variables) and
reports every problem as ``FILE:LINE: key: message``, the line found from the YAML nodes'
marks; then it renders each prompt of the skill on a sample seed (``--seed-file``, or the
shipped example documents), values the flow would fill from earlier steps shown as
examples (the task is the first type's example, the suggestion the first proposal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from agentinstruct.resources import data_path

skill_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Write your own skill file (new) and validate / preview it (check).")
console = Console(stderr=True)
TEMPLATE = "_template.yaml"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Problem:
    key: str
    line: int | None
    message: str

    def render(self, path: Path) -> str:
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: {self.key or '(top level)'}: {self.message}"


# -- locating keys in the YAML ------------------------------------------------------------------

def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(part):
                return v
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def line_of(root: yaml.Node | None, path: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest node of ``path`` that exists (a missing key: its parent's)."""
    if root is None:
        return None
    node, key_line = root, root.start_mark.line + 1
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            key_line, node = match[0].start_mark.line + 1, match[1]
        else:
            nxt = _child(node, part)
            if nxt is None:
                break
            node, key_line = nxt, nxt.start_mark.line + 1
    return key_line


def _dotted_path(data: dict[str, Any], dotted: str) -> tuple[str | int, ...]:
    """``transformation.agents.summary.prompt`` -> ("transformation", "agents", 1, "prompt"):
    a list item named by its ``name``."""
    parts: list[str | int] = []
    node: Any = data
    for part in dotted.split("."):
        if isinstance(node, list):
            idx = next((i for i, x in enumerate(node) if isinstance(x, dict) and x.get("name") == part), None)
            if idx is None and part.isdigit():
                idx = int(part)
            if idx is None:
                break
            parts.append(idx)
            node = node[idx]
        elif isinstance(node, dict) and part in node:
            parts.append(part)
            node = node[part]
        else:
            parts.append(part)
            break
    return tuple(parts)


# -- checking -----------------------------------------------------------------------------------

def check_skill(path: Path) -> tuple[list[Problem], Any]:
    """Every problem of a skill file, each with its key and line; and the Skill when it loads."""
    from agentinstruct.generate.skills import Skill, template_problem, template_variables

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [Problem("", None, f"cannot read ({exc.strerror})")], None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return [Problem("", mark.line + 1 if mark else None, f"not valid YAML: {exc.problem}")], None
    if not isinstance(data, dict):
        return [Problem("", 1, "a skill file is a YAML mapping (name, split, transformation, ...)")], None
    try:
        skill = Skill.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if not loc:  # a whole-skill rule: its message starts with the key it is about
                head = msg.split(":", 1)[0]
                if re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", head):
                    loc = _dotted_path(data, head)
            if err["type"] == "missing":
                msg = "required key missing"
            problems.append(Problem(".".join(map(str, loc)), line_of(root, loc), msg))
        return problems, None
    problems = []
    for field, source in skill.templates().items():
        problem = template_problem(source, template_variables(field))
        if problem:
            loc = _dotted_path(data, field)
            problems.append(Problem(field, template_line(root, loc, problem), problem))
    return problems, skill


def template_line(root: yaml.Node, loc: tuple[str | int, ...], problem: str) -> int | None:
    """The file line of a template problem: a block scalar's (``|``/``>``) template line N is
    N lines below its key; otherwise the key's line."""
    node = root
    for part in loc:
        node = _child(node, part) if node is not None else None
    line = line_of(root, loc)
    found = re.search(r"template line (\d+)", problem)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") and found:
        return node.start_mark.line + 1 + int(found.group(1))
    return line


# -- previews -----------------------------------------------------------------------------------

def sample_seed_text(skill: Any, seed_file: Path | None) -> tuple[str, str, str]:
    """(text, kind, source) of a sample seed: the given file, else a shipped example document
    of a kind the skill takes (its first chunk)."""
    if seed_file is not None:
        kind = "code" if seed_file.suffix in {".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".cpp"} else "text"
        return seed_file.read_text(encoding="utf-8", errors="replace")[:2000], kind, str(seed_file)
    docs = sorted(p for p in data_path("examples", "docs").rglob("*") if p.is_file())
    want_code = "text" not in skill.seed_kinds
    for p in docs:
        is_code = p.suffix == ".py"
        if is_code == want_code and p.suffix in (".txt", ".md", ".py"):
            return p.read_text(encoding="utf-8")[:2000], "code" if is_code else "text", str(p)
    raise ValueError("no sample seed found: pass --seed-file")


def previews(skill: Any, text: str, kind: str, source: str) -> list[tuple[str, str, str]]:
    """(template name, system prompt, rendered prompt) for every prompt of the skill."""
    from agentinstruct.generate.skills import render

    first_type = skill.instruction.types[0]
    task = first_type.example
    r = skill.refinement
    base = {"text": text, "language": "English", "passages": []}
    values: dict[str, dict[str, Any]] = {
        "instruction.prompt": {"type": first_type},
        "instruction.user_template": {"task": task},
        "refinement.suggester_prompt": {"task": task, "proposals": r.proposals, "n": r.suggestions},
        "refinement.editor_prompt": {"task": task, "suggestion": r.proposals[0]},
        "refinement.harder_prompt": {"previous_task": task, "task": task + " (edited)"},
        "refinement.best_prompt": {"task": task, "candidates": [task + " (edit 1)", task + " (edit 2)"]},
        "answer.answerable_prompt": {"task": task},
        "answer.context_template": {"task": task, "target": None},
        "conversation.follow_up_prompt": {"task": task, "turn": 2, "history": [
            {"role": "user", "content": task}, {"role": "assistant", "content": "(the teacher's answer)"}]},
    }
    systems = {"instruction.prompt": skill.instruction.system, "refinement.suggester_prompt": r.suggester_system,
               "refinement.editor_prompt": r.editor_system, "conversation.follow_up_prompt":
               skill.conversation.follow_up_system}
    out = []
    for agent in skill.transformation.agents:
        if not agent.passthrough:
            out.append((f"transformation.agents.{agent.name}.prompt", agent.system,
                        render(agent.prompt, **base, kind=kind, source=source)))
    for name, source_text in skill.templates().items():
        if name.startswith("transformation.") or name not in values:
            continue
        if name in ("refinement.harder_prompt",) and not r.check_harder:
            continue
        if name == "refinement.best_prompt" and r.branches != "best":
            continue
        if name == "conversation.follow_up_prompt" and skill.conversation.turns < 2:
            continue
        out.append((name, systems.get(name, ""), render(source_text, **base, **values[name])))
    out.append(("answer (the teacher answers the user turn)", skill.answer.system,
                render(skill.instruction.user_template, **base, task=task)))
    return out


# -- commands -----------------------------------------------------------------------------------

def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(2)


def _source_file(ref: str) -> Path:
    """A shipped skill by name or split, or a skill file path."""
    from agentinstruct.generate.skills import SKILLS_DIR, available_skills, skill_path

    path = skill_path(ref)
    if path.exists():
        return path
    for name in available_skills():
        if name.startswith("_"):
            continue
        text = (SKILLS_DIR / f"{name}.yaml").read_text(encoding="utf-8")
        if re.search(rf"^split:\s*{re.escape(ref)}\s*(#.*)?$", text, re.M):
            return SKILLS_DIR / f"{name}.yaml"
    shipped = [n for n in available_skills() if not n.startswith("_")]
    raise ValueError(f"--from {ref}: no shipped skill or split of that name, and no such file; "
                     f"shipped: {', '.join(shipped)}")


def new_skill_text(name: str, source: str | None) -> str:
    if source is None:
        return data_path("recipes", "skills", TEMPLATE).read_text(encoding="utf-8").replace("__NAME__", name)
    path = _source_file(source)
    text = path.read_text(encoding="utf-8")
    for key in ("name", "split"):
        text, n = re.subn(rf"^{key}:.*$", f"{key}: {name}", text, count=1, flags=re.M)
        if not n:
            text = f"{key}: {name}\n" + text
    header = (f"# Skill {name}: started from {path.name} by `agentinstruct skill new {name} --from {source}`.\n"
              f"# Check it with `agentinstruct skill check {name}.yaml` (the README's skill-file reference\n"
              "# describes every key).\n")
    return header + text


@skill_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="skill name (lowercase letters, digits, _); also its split")],
    from_: Annotated[Optional[str], typer.Option("--from", help="start from a shipped skill (name or split) or a skill file")] = None,
    output: Annotated[Optional[Path], typer.Option(help="file to write (default: ./NAME.yaml)")] = None,
) -> None:
    """Write a commented skill file from the template or an existing skill."""
    if not NAME_RE.match(name):
        _fail(f"skill name {name!r}: use lowercase letters, digits and _ (starting with a letter)")
    target = output or Path(f"{name}.yaml")
    if target.exists():
        _fail(f"{target}: already exists; choose another --output")
    try:
        text = new_skill_text(name, from_)
    except ValueError as exc:
        _fail(str(exc))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    console.print(f"wrote {target}; next: agentinstruct skill check {target}")


@skill_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="the skill file")],
    seed_file: Annotated[Optional[Path], typer.Option(help="a document to render the prompts on")] = None,
    render_prompts: Annotated[bool, typer.Option("--render/--no-render", help="show every prompt rendered")] = True,
) -> None:
    """Validate a skill file (errors name the key and line) and render each prompt on a sample seed."""
    if not file.exists():
        _fail(f"{file}: no such file")
    problems, skill = check_skill(file)
    for p in problems:
        console.print(f"[red]error:[/] {escape(p.render(file))}", soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    out = Console()
    out.print(f"[green]ok[/]: {file} (skill {skill.name}, split {skill.split}, "
              f"{len(skill.instruction.types)} instruction type(s), checks: {', '.join(skill.answer.checks)})")
    if not render_prompts:
        return
    try:
        text, kind, source = sample_seed_text(skill, seed_file)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    out.print(f"prompts rendered on the sample seed {source} (values from earlier steps are examples):")
    for name, system, prompt in previews(skill, text, kind, source):
        out.rule(escape(name))
        if system:
            out.print(f"[bold]system:[/] {escape(system)}")
        out.print(escape(prompt), highlight=False)
