"""What each per-record gate checked and removed, as typed counters.

A unit's :class:`GateTally` goes to the journal as JSON (``to_json``/``from_json``); the run's
tally is the sum over the journal, and ``report`` is the form the summary, manifest and card
show. Journals written before this (gate counters as ``"gate:NAME:..."`` stage keys) are read
by :meth:`GateTally.from_stages`, so an old run still resumes with the same report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOP_REASONS = 5  # reasons kept per gate in the report


def reason_class(reason: str) -> str:
    """Group reasons for the summary: drop details after a colon or parenthesis."""
    return reason.split(":")[0].split(" (")[0][:80]


@dataclass
class GateCounts:
    """One gate: records checked and removed, removal reasons (by class), and both per skill."""

    checked: int = 0
    removed: int = 0
    reasons: Counter = field(default_factory=Counter)
    by_skill: dict[str, Counter] = field(default_factory=dict)  # skill -> Counter(checked=, removed=)

    def count(self, skill: str, reason: str | None) -> None:
        """One record checked by this gate; ``reason``: why it was removed, None if kept."""
        per_skill = self.by_skill.setdefault(skill, Counter())
        self.checked += 1
        per_skill["checked"] += 1
        if reason is not None:
            self.removed += 1
            per_skill["removed"] += 1
            self.reasons[reason_class(reason)] += 1

    def merge(self, other: GateCounts) -> None:
        self.checked += other.checked
        self.removed += other.removed
        self.reasons.update(other.reasons)
        for skill, c in other.by_skill.items():
            self.by_skill.setdefault(skill, Counter()).update(c)

    def to_json(self) -> dict[str, Any]:
        # reasons as [reason, n] pairs: every string is a value, so the journal's redaction sees it
        return {"checked": self.checked, "removed": self.removed,
                "reasons": [[r, n] for r, n in self.reasons.items()],
                "by_skill": {s: {"checked": c["checked"], "removed": c["removed"]} for s, c in self.by_skill.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateCounts:
        reasons = data.get("reasons", [])
        pairs = reasons.items() if isinstance(reasons, Mapping) else reasons
        return cls(int(data.get("checked", 0)), int(data.get("removed", 0)), Counter({r: int(n) for r, n in pairs}),
                   {s: Counter({k: int(v) for k, v in c.items()}) for s, c in data.get("by_skill", {}).items()})

    def report(self) -> dict[str, Any]:
        """The summary/manifest form: top reasons, and each skill's share that passed."""
        return {"checked": self.checked, "removed": self.removed,
                "reasons": dict(sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]),
                "by_skill": {s: {"checked": c["checked"], "removed": c["removed"],
                                 "passed_share": round(1 - c["removed"] / c["checked"], 3) if c["checked"] else None}
                             for s, c in self.by_skill.items()}}


@dataclass
class GateTally:
    """Every gate's counts, by gate name, in the order the gates first counted."""

    gates: dict[str, GateCounts] = field(default_factory=dict)

    def gate(self, name: str) -> GateCounts:
        return self.gates.setdefault(name, GateCounts())

    def merge(self, other: GateTally) -> None:
        for name, counts in other.gates.items():
            self.gate(name).merge(counts)

    def to_json(self) -> dict[str, Any]:
        return {name: g.to_json() for name, g in self.gates.items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateTally:
        return cls({name: GateCounts.from_json(g) for name, g in data.items()})

    @classmethod
    def from_stages(cls, stages: Mapping[str, int]) -> GateTally:
        """Read the ``"gate:NAME:checked|removed|reason:R|skill:S|checked"`` stage keys of a
        journal written before gate counts were typed."""
        tally = cls()
        for key, n in stages.items():
            if not key.startswith("gate:"):
                continue
            _, name, what, *rest = key.split(":", 3)
            g = tally.gate(name)
            if what == "reason":
                g.reasons[rest[0]] += n
            elif what == "skill":
                skill, kind = rest[0].rsplit("|", 1)
                g.by_skill.setdefault(skill, Counter())[kind] += n
            elif what in ("checked", "removed"):
                setattr(g, what, getattr(g, what) + n)
        return tally

    @classmethod
    def from_journal_line(cls, line: Mapping[str, Any]) -> GateTally:
        """A journal line's gate counts: its ``gates`` JSON, else (an old journal) its stage keys."""
        if "gates" in line:
            return cls.from_json(line["gates"] or {})
        return cls.from_stages(line.get("stages", {}))

    def report(self) -> dict[str, dict[str, Any]]:
        return {name: g.report() for name, g in self.gates.items()}
