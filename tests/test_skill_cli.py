"""``agentinstruct skill new | check``: a skill file from the template or a shipped skill, its
problems reported with key and line, and every prompt rendered on a sample seed. No model runs."""

from pathlib import Path

from agentinstruct.generate.skills import available_skills, load_skill
from typer.testing import CliRunner

from agentinstruct.cli import app

runner = CliRunner()


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_new_from_template_loads_and_renders(tmp_path):
    target = tmp_path / "my_qa.yaml"
    res = runner.invoke(app, ["skill", "new", "my_qa", "--output", str(target)])
    assert res.exit_code == 0, res.output
    text = target.read_text()
    assert text.startswith("#") and "name: my_qa" in text and "split: my_qa" in text
    skill = load_skill(str(target))  # what a run does with it
    assert skill.name == "my_qa" and "_template" not in available_skills()
    res = runner.invoke(app, ["skill", "check", str(target)])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output
    # every prompt the teacher gets, rendered on a shipped example document
    for name in ("transformation.agents.summary.prompt", "instruction.prompt", "refinement.suggester_prompt",
                 "refinement.editor_prompt", "answer (the teacher answers"):
        assert name in res.output, name
    assert "Copperwing" in res.output or "Lindmark" in res.output  # the sample seed's text
    assert "{{" not in res.output
    # a second `new` never overwrites
    res = runner.invoke(app, ["skill", "new", "my_qa", "--output", str(target)])
    assert res.exit_code == 2 and "already exists" in res.output


def test_new_from_a_shipped_skill_by_split_keeps_its_content(tmp_path):
    target = tmp_path / "my_rc.yaml"
    res = runner.invoke(app, ["skill", "new", "my_rc", "--from", "rc", "--output", str(target)])
    assert res.exit_code == 0, res.output
    text = target.read_text()
    assert text.splitlines()[0].startswith("# Skill my_rc: started from reading_comprehension.yaml")
    mine, shipped = load_skill(str(target)), load_skill("reading_comprehension")
    assert (mine.name, mine.split) == ("my_rc", "my_rc")
    assert mine.instruction == shipped.instruction and mine.answer == shipped.answer
    res = runner.invoke(app, ["skill", "new", "x", "--from", "nope", "--output", str(tmp_path / "x.yaml")])
    assert res.exit_code == 2 and "--from nope" in res.output


def test_check_names_key_and_line_of_each_problem(tmp_path):
    target = tmp_path / "bad.yaml"
    runner.invoke(app, ["skill", "new", "bad", "--output", str(target)])
    text = target.read_text()
    text = text.replace("checks: [non_empty, not_truncated, answerable]", "checks: [non_empty, not_truncted]")
    text = text.replace("      description: a question whose answer follows", "      descr: a question whose answer follows")
    target.write_text(text)
    res = runner.invoke(app, ["skill", "check", str(target)])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert f"bad.yaml:{line_of(target, 'not_truncted')}: answer.checks.1: unknown validator 'not_truncted'" in out
    assert f"bad.yaml:{line_of(target, 'descr:')}: instruction.types.1.descr: Extra inputs" in out
    assert "instruction.types.1.description: required key missing" in out


def test_check_points_at_the_line_of_a_bad_template_variable(tmp_path, repo):
    target = tmp_path / "typo.yaml"
    runner.invoke(app, ["skill", "new", "typo", "--output", str(target)])
    text = target.read_text().replace("Passage:\n    {{ text }}\n\n    Write one", "Passage:\n    {{ txet }}\n\n    Write one")
    target.write_text(text)
    res = runner.invoke(app, ["skill", "check", str(target)])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert f"typo.yaml:{line_of(target, '{{ txet }}')}: instruction.prompt: unknown template variable 'txet'" in out
    # a valid file renders on the seed the author gives
    seed = tmp_path / "seed.txt"
    seed.write_text("The lighthouse of Brenn was built of granite in 1871 by the harbour board.")
    res = runner.invoke(app, ["skill", "check", str(repo / "recipes" / "skills" / "text_modification.yaml"),
                              "--seed-file", str(seed)])
    assert res.exit_code == 0, res.output
    assert "lighthouse of Brenn" in res.output and "transformation.agents.email.prompt" in res.output


def test_check_reports_yaml_syntax_errors_with_their_line(tmp_path):
    target = tmp_path / "broken.yaml"
    target.write_text("name: x\nsplit: x\ndescription: [unclosed\n")
    res = runner.invoke(app, ["skill", "check", str(target)])
    assert res.exit_code == 2 and "broken.yaml:" in res.output and "not valid YAML" in res.output
