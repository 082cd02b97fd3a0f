"""Incremental runs over a changing corpus, through the scripted OpenAI-compatible test server
(tests/fake_openai.py): a rerun pays only for new or edited documents, drops the rows of removed
or edited-away seeds, and the dataset card records the version and its parent manifest."""

import hashlib
import json
from pathlib import Path

import datasets
import yaml
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from fake_openai import FakeOpenAIServer

DOCS = {
    "a.txt": "The harbour of Velmo was dredged in 1911 so that steamers could dock at the new stone quay.",
    "b.txt": "Oak bark from the Lindmark valley was sold to tanneries in the town until the mill closed.",
    "c.txt": "The survey of 1932 counted four hundred kilns along the river, most of them for bricks.",
    "d.txt": "Glassmakers of the old quarter used sand from the eastern dunes and ash from beech wood.",
}
ADDED = {
    "e.txt": "A storm in March 1950 flooded the lower bakery street and closed the market for a week.",
    "f.txt": "The council planted timber along the valley road to hold the soil after the great fire.",
}
EDITED_C = "The survey of 1933 counted five hundred kilns along the river, most of them for roof tiles."


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for p in folder.iterdir():
        p.unlink()
    for name, text in docs.items():
        (folder / name).write_text(text + "\n")


def recipe(tmp_path: Path, base_url: str, docs: Path, out: Path):
    data = {"teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher",
                        "max_concurrency": 8, "backoff_base_s": 0.01},
            "input": str(docs), "output": str(out), "skills": ["text_modification"],
            "gates": {"decontamination": {"enabled": False}}}
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_generate_recipe(path)


def rows(out: Path) -> list[dict]:
    dd = datasets.load_from_disk(str(out / "dataset"))
    return [r for split in dd.values() for r in split.to_list()]


def mentions(requests: list[dict], text: str) -> bool:
    return any(text in json.dumps(r["messages"], ensure_ascii=False) for r in requests)


def test_rerun_pays_only_for_changed_seeds_and_drops_removed_rows(tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "run"
    write_docs(docs, DOCS)
    with FakeOpenAIServer() as server:
        run_generate(recipe(tmp_path, server.base_url, docs, out), show_progress=False)
        first_calls = len(server.requests)
    v1_rows = rows(out)
    old_ids = {Path(r["source"]).name: r["seed_id"] for r in v1_rows}
    assert set(old_ids) == set(DOCS) and first_calls > 0
    v1_manifest = (out / "manifest.json").read_bytes()
    assert json.loads(v1_manifest)["dataset_version"]["version"] == 1

    # grow the corpus by two documents, edit one, remove one
    current = {**{k: v for k, v in DOCS.items() if k != "d.txt"}, **ADDED, "c.txt": EDITED_C}
    write_docs(docs, current)
    with FakeOpenAIServer() as server:
        summary = run_generate(recipe(tmp_path, server.base_url, docs, out), show_progress=False)
        second = list(server.requests)
    changed = [ADDED["e.txt"], ADDED["f.txt"], EDITED_C]
    assert all(mentions(second, t) for t in changed)
    assert not any(mentions(second, DOCS[k]) for k in ("a.txt", "b.txt", "c.txt", "d.txt"))
    assert summary.resumed_units == 2  # a and b came from the journal

    # exactly the calls a fresh run over the three changed documents makes
    fresh_docs, fresh_out = tmp_path / "fresh_docs", tmp_path / "fresh"
    write_docs(fresh_docs, {"e.txt": ADDED["e.txt"], "f.txt": ADDED["f.txt"], "c.txt": EDITED_C})
    with FakeOpenAIServer() as server:
        run_generate(recipe(tmp_path, server.base_url, fresh_docs, fresh_out), show_progress=False)
        assert len(second) == len(server.requests)

    # the removed document's and the old text's rows are gone; the kept ones are still there
    v2_rows = rows(out)
    seed_ids = {r["seed_id"] for r in v2_rows}
    assert old_ids["c.txt"] not in seed_ids and old_ids["d.txt"] not in seed_ids
    assert {old_ids["a.txt"], old_ids["b.txt"]} <= seed_ids
    assert {Path(r["source"]).name for r in v2_rows} == set(current)

    manifest = json.loads((out / "manifest.json").read_text())
    version = manifest["dataset_version"]
    assert version["version"] == 2
    assert version["previous_manifest_sha256"] == hashlib.sha256(v1_manifest).hexdigest()
    assert (version["seeds_added"], version["seeds_removed"]) == (3, 2)
    removed_rows = sum(1 for r in v1_rows if r["seed_id"] in (old_ids["c.txt"], old_ids["d.txt"]))
    assert version["rows_removed"] == removed_rows > 0
    assert version["rows_added"] == sum(1 for r in v2_rows if Path(r["source"]).name in ("c.txt", "e.txt", "f.txt"))
    card = (out / "dataset" / "README.md").read_text()
    assert "- version: 2" in card and hashlib.sha256(v1_manifest).hexdigest() in card
    assert "seeds added / removed: 3 / 2" in card

    # a rerun that changes nothing makes no call and keeps the version
    v2_manifest = (out / "manifest.json").read_bytes()
    with FakeOpenAIServer() as server:
        run_generate(recipe(tmp_path, server.base_url, docs, out), show_progress=False)
        assert server.requests == []
    assert json.loads((out / "manifest.json").read_text())["dataset_version"] == json.loads(v2_manifest)["dataset_version"]
    assert sorted(p.name for p in out.glob("seed_ids.v*.txt")) == ["seed_ids.v2.txt"]
