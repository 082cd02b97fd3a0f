"""Incremental runs: a run folder holds versions of one dataset over a changing corpus.

Seeds are named by their content (``ingest.content_id``) and units by (seed, skill), so a
second run over a grown or edited corpus finds the unchanged seeds' units in the journal and
spends calls only on new or changed seeds. What a version exports is the units of the seeds
in the *current* input (:meth:`CorpusVersion.current`): a removed document's rows, and the
rows of an edited document's old text, stay in the journal (a later run that brings the
document back reuses them) but leave the dataset.

Each export is a version (``manifest.json: dataset_version``): its number, the seeds and rows
added and removed since the previous version, and the SHA-256 of the previous version's
``manifest.json``. The version number grows only when the exported seeds or counts changed; a
rerun that changes nothing keeps the version. The seed ids of a version are kept next to the
manifest in ``seed_ids.v<N>.txt`` (written before the manifest; older ones removed after it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentinstruct.generate.journal import Journal

SEED_FILE = "seed_ids.v{version}.txt"


def unit_seed(unit: str) -> str:
    """The seed id of a journal unit id (``<seed id>/<skill>``)."""
    return unit.split("/", 1)[0]


class CurrentJournal:
    """A read view of a journal holding only the units of the given seeds (what ``export``
    and the engine's totals read: ``lines`` and ``read_at``)."""

    def __init__(self, journal: Journal, seeds: set[str]):
        self.journal = journal
        self.seeds = seeds
        self.path = journal.path

    def lines(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for offset, line in self.journal.lines():
            if unit_seed(line["unit"]) in self.seeds:
                yield offset, line

    def read_at(self, offset: int) -> dict[str, Any]:
        return self.journal.read_at(offset)


class CorpusVersion:
    """Collects the current input's seed ids during the run; versions the export."""

    def __init__(self, out: Path):
        self.out = out
        self.seeds: set[str] = set()
        self._section: dict[str, Any] | None = None

    def saw(self, seed_id: str) -> None:
        self.seeds.add(seed_id)

    def current(self, journal: Journal) -> CurrentJournal:
        return CurrentJournal(journal, self.seeds)

    def _previous(self) -> tuple[dict[str, Any] | None, str | None, set[str] | None]:
        path = self.out / "manifest.json"
        if not path.exists():
            return None, None, None
        raw = path.read_bytes()
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError:
            return None, None, None
        version = (manifest.get("dataset_version") or {}).get("version")
        seeds = None
        if version is not None:
            seed_file = self.out / SEED_FILE.format(version=version)
            if seed_file.exists():
                seeds = set(seed_file.read_text(encoding="utf-8").split())
        return manifest, hashlib.sha256(raw).hexdigest(), seeds

    def section(self, journal: Journal, counts: dict[str, Any]) -> dict[str, Any]:
        """The manifest's ``dataset_version``: compare this export with the previous one.

        ``counts``: this export's split counts (as in the manifest), so a rerun that changed
        nothing keeps the version. Writes this version's seed-id file (before the manifest)."""
        manifest, digest, before = self._previous()
        prev = (manifest or {}).get("dataset_version") or {}
        if manifest is not None and before == self.seeds and manifest.get("counts") == counts and prev:
            self._section = prev  # nothing changed: same version, same parent
        else:
            version = int(prev.get("version", 1 if manifest is not None else 0)) + 1
            before = before if before is not None else set()
            added, removed = self.seeds - before, before - self.seeds
            rows_added = rows_removed = 0
            for _, line in journal.lines():
                seed = unit_seed(line["unit"])
                if seed in added:
                    rows_added += len(line["records"])
                elif seed in removed:
                    rows_removed += len(line["records"])
            self._section = {
                "version": version, "seeds": len(self.seeds),
                "seeds_added": len(added), "seeds_removed": len(removed),
                "rows_added": rows_added, "rows_removed": rows_removed,
                "previous_manifest_sha256": digest,
                "previous_version": prev.get("version") if manifest is not None else None,
            }
        seed_file = self.out / SEED_FILE.format(version=self._section["version"])
        part = seed_file.with_name(seed_file.name + ".tmp")
        part.write_text("\n".join(sorted(self.seeds)) + "\n", encoding="utf-8")
        part.replace(seed_file)
        return self._section

    def committed(self) -> None:
        """After the manifest is written: drop the seed-id files of older versions."""
        if self._section is None:
            return
        keep = SEED_FILE.format(version=self._section["version"])
        for path in self.out.glob(SEED_FILE.format(version="*")):
            if path.name != keep:
                path.unlink(missing_ok=True)


def card_lines(section: dict[str, Any] | None) -> list[str]:
    """The dataset card's ``## Version`` section."""
    if not section:
        return []
    lines = ["", "## Version", "", f"- version: {section['version']} ({section['seeds']} seeds)"]
    if section.get("previous_manifest_sha256"):
        lines += [f"- previous version: {section.get('previous_version')} "
                  f"(manifest.json sha256 `{section['previous_manifest_sha256']}`)",
                  f"- seeds added / removed: {section['seeds_added']} / {section['seeds_removed']}",
                  f"- rows added / removed: {section['rows_added']} / {section['rows_removed']}"]
    else:
        lines.append("- first version of this run folder")
    return lines
