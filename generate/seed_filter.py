"""Seed quality before generation: rules that drop bad seeds before any LLM call is spent.

The rules are data (:class:`SeedFilter`, the ``seed_filter:`` section of a generate recipe);
every threshold is a field. They follow the published web-corpus heuristics, re-implemented
here on the project's own word splitter (:mod:`agentinstruct.text`, any script):

- **Gopher quality** (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
  from Training Gopher", appendix A; the same defaults as datatrove's ``GopherQualityFilter``):
  word count 50..100,000, mean word length 3..10, symbol (``#``, ``...``) to word ratio <= 0.1,
  <= 30 % of lines ending with an ellipsis, >= 80 % of words with a letter, >= 2 English stop
  words. Our defaults loosen the word count (seeds are chunks of about 384 tokens, and a short
  document is one small chunk) and keep the others.
- **Gopher repetition** (same paper, table A1): <= 30 % of lines duplicating another line and
  <= 20 % of the characters in such lines.
- **FineWeb quality** (Penedo et al. 2024, datatrove's ``FineWebQualityFilter``): >= 12 % of
  lines ending in terminal punctuation, <= 67 % of lines shorter than 30 characters. Markdown
  documents have many short heading and list lines, so our default for the latter is 0.9.
- **Boilerplate**: cookie/consent banners, footers and navigation: phrases listed in the
  recipe; a seed whose lines holding such a phrase make up more than a share of its characters.
- **Numeric tables**: share of words that are numbers.
- **Near-duplicate seeds**: MinHash LSH with verified Jaccard over word shingles, the dedup
  gate's machinery (:class:`~agentinstruct.generate.dedup.Deduplicator`), incremental in
  stream order (the first copy is kept).
- **Language**: keep only seeds in the recipe's ``languages``.

datatrove itself is not used: its word tokenizers need NLTK/spaCy data downloads (not offline),
and importing it pulls a large dependency tree into every run.

The first failing rule removes a seed; code seeds are only checked for near-duplicates (their
symbols and short lines are not defects). Every removal is counted per rule with up to
``examples`` snippets, for the summary, the manifest and the dataset card.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentinstruct.generate.dedup import Deduplicator
from agentinstruct.generate.gates_config import DedupGate
from pydantic import Field, field_validator

from agentinstruct.language import check_code
from agentinstruct.recipes import StrictModel
from agentinstruct.records import Seed
from agentinstruct.text import fold, is_no_space, words

RULES = ("language", "boilerplate", "numeric_table", "repetition", "gopher_quality", "fineweb_quality",
         "near_duplicate")
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "»", "。", "！", "？", "…", ":", ";", ")")
ELLIPSES = ("...", "…")


class SeedFilter(StrictModel):
    """Seed quality rules, run on every seed before any LLM call (defaults: all on, loose
    enough that every shipped example document passes)."""

    enabled: bool = Field(True, description="run the seed filter at all")
    examples: int = Field(3, ge=0, description="example snippets kept per rule for the summary and card")
    example_chars: int = Field(80, ge=10, description="length of an example snippet")
    # language
    languages: list[str] | None = Field(None, description="keep only seeds detected in these ISO 639-1 "
                                        "languages (e.g. [en, de]); null keeps every language")
    # Gopher quality
    gopher_quality: bool = Field(True, description="Gopher quality rules (Rae et al. 2021)")
    min_words: int = Field(10, ge=0, description="fewest words (Gopher: 50; seeds are chunks, and a "
                           "short document is one short chunk)")
    max_words: int = Field(100_000, ge=1, description="most words (Gopher: 100,000)")
    min_mean_word_length: float = Field(3.0, ge=0, description="shortest mean word length in characters "
                                        "(Gopher: 3; not applied to scripts written without spaces)")
    max_mean_word_length: float = Field(10.0, gt=0, description="longest mean word length (Gopher: 10)")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="most '#' and '...' per word (Gopher: 0.1)")
    max_ellipsis_lines: float = Field(0.3, ge=0, le=1, description="most share of lines ending with an "
                                      "ellipsis (Gopher: 0.3)")
    min_alpha_words: float = Field(0.8, ge=0, le=1, description="least share of words with a letter "
                                   "(Gopher: 0.8)")
    min_stop_words: int = Field(2, ge=0, description="English seeds: fewest stop words (Gopher: 2 of "
                                "the, be, to, of, and, that, have, with)")
    stop_words: list[str] = Field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"],
                                  description="the Gopher stop words counted for min_stop_words")
    # Gopher repetition
    repetition: bool = Field(True, description="Gopher repetition rules")
    max_duplicate_lines: float = Field(0.3, ge=0, le=1, description="most share of lines that repeat "
                                       "another line (Gopher: 0.3)")
    max_duplicate_line_chars: float = Field(0.2, ge=0, le=1, description="most share of characters in "
                                            "repeated lines (Gopher: 0.2)")
    # FineWeb quality
    fineweb_quality: bool = Field(True, description="FineWeb line rules (Penedo et al. 2024)")
    min_punctuated_lines: float = Field(0.12, ge=0, le=1, description="least share of lines ending in "
                                        "terminal punctuation (FineWeb: 0.12)")
    short_line_chars: int = Field(30, ge=1, description="a line shorter than this is short (FineWeb: 30)")
    max_short_lines: float = Field(0.9, ge=0, le=1, description="most share of short lines (FineWeb: "
                                   "0.67; Markdown headings and lists are short lines)")
    # boilerplate
    boilerplate: bool = Field(True, description="drop cookie banners, footers and navigation")
    boilerplate_phrases: list[str] = Field(
        default_factory=lambda: [
            "we use cookies", "this site uses cookies", "this website uses cookies", "accept all cookies",
            "accept cookies", "cookie policy", "cookie settings", "manage preferences", "manage cookies",
            "all rights reserved", "privacy policy", "terms of use", "terms of service", "terms and conditions",
            "skip to content", "skip to main content", "subscribe to our newsletter", "sign up for our newsletter",
            "log in", "sign in", "back to top", "share on facebook", "follow us on", "javascript is disabled",
            "enable javascript", "your browser does not support"],
        description="phrases that mark a line as boilerplate (matched case-insensitively)")
    max_boilerplate_chars: float = Field(0.5, ge=0, le=1, description="most share of characters in "
                                         "lines holding a boilerplate phrase")
    # numeric tables
    numeric_table: bool = Field(True, description="drop tables of numbers")
    max_number_words: float = Field(0.5, ge=0, le=1, description="most share of words that are numbers")
    # near-duplicates
    near_duplicate: bool = Field(True, description="drop seeds nearly copying an earlier seed")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word "
                                            "shingles counted as a near-copy")
    near_duplicate_shingle: int = Field(5, ge=1, description="word n-gram size of the shingles")
    num_perm: int = Field(128, ge=16, description="MinHash permutations")
    num_bands: int = Field(32, ge=1, description="LSH bands (candidates are verified against the threshold)")

    @field_validator("languages")
    @classmethod
    def _known_codes(cls, value: list[str] | None) -> list[str] | None:
        for code in value or []:
            check_code(code, "seed_filter.languages")
        return value

    def dedup_gate(self) -> DedupGate:
        return DedupGate(exact=False, near=True, threshold=self.near_duplicate_threshold,
                         num_perm=self.num_perm, num_bands=self.num_bands, shingle=self.near_duplicate_shingle)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


class SeedFilterRun:
    """The seed filter over one stream of seeds: ``reason(seed)`` is None for a kept seed, else
    ``(rule, reason)``; kept seeds are remembered for the near-duplicate rule."""

    def __init__(self, cfg: SeedFilter):
        self.cfg = cfg
        self.checked = 0
        self.removed: Counter = Counter()
        self.examples: dict[str, list[str]] = {}
        self.dedup = Deduplicator(cfg.dedup_gate()) if cfg.near_duplicate else None

    def __call__(self, seed: Seed) -> tuple[str, str] | None:
        if not self.cfg.enabled:
            return None
        self.checked += 1
        verdict = self._text_rules(seed) if seed.kind == "text" else None
        if verdict is None and self.dedup is not None:
            reason = self.dedup.seen(seed.text)
            if reason:
                verdict = "near_duplicate", reason.replace("instruction", "seed")
        if verdict:
            rule = verdict[0]
            self.removed[rule] += 1
            shown = self.examples.setdefault(rule, [])
            if len(shown) < self.cfg.examples:
                snippet = " ".join(seed.text.split())
                cut = self.cfg.example_chars
                shown.append(snippet if len(snippet) <= cut else snippet[:cut - 3] + "...")
        return verdict

    def _text_rules(self, seed: Seed) -> tuple[str, str] | None:
        c, text = self.cfg, seed.text
        lines = _lines(text)
        ws = words(text)
        if c.languages is not None and seed.language not in c.languages:
            return "language", f"language {seed.language} not in {c.languages}"
        if c.boilerplate and c.boilerplate_phrases:
            phrases = [fold(p) for p in c.boilerplate_phrases]
            marked = sum(len(line) for line in lines if any(p in fold(line) for p in phrases))
            share = _share(marked, sum(len(line) for line in lines))
            if share > c.max_boilerplate_chars:
                return "boilerplate", f"boilerplate lines {share:.0%} of the text"
        if c.numeric_table and ws:
            share = _share(sum(w.isdigit() for w in ws), len(ws))
            if share > c.max_number_words:
                return "numeric_table", f"numbers are {share:.0%} of the words"
        if c.repetition and lines:
            counts = Counter(lines)
            dup = [line for line in lines if counts[line] > 1]
            share, chars = _share(len(dup), len(lines)), _share(sum(map(len, dup)), sum(map(len, lines)))
            if share > c.max_duplicate_lines or chars > c.max_duplicate_line_chars:
                return "repetition", f"repeated lines {share:.0%} ({chars:.0%} of the characters)"
        if c.gopher_quality and (reason := self._gopher(text, lines, ws, seed.language)):
            return "gopher_quality", reason
        if c.fineweb_quality and lines:
            punct = _share(sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines), len(lines))
            if punct < c.min_punctuated_lines:
                return "fineweb_quality", f"lines ending in punctuation {punct:.0%} < {c.min_punctuated_lines:.0%}"
            short = _share(sum(len(line) < c.short_line_chars for line in lines), len(lines))
            if short > c.max_short_lines:
                return "fineweb_quality", f"short lines {short:.0%} > {c.max_short_lines:.0%}"
        return None

    def _gopher(self, text: str, lines: list[str], ws: list[str], language: str) -> str | None:
        c = self.cfg
        if not c.min_words <= len(ws) <= c.max_words:
            return f"{len(ws)} words (allowed {c.min_words}..{c.max_words})"
        spaced = [w for w in ws if not is_no_space(w)]
        if len(spaced) > len(ws) // 2:  # in scripts written without spaces every character is a word
            mean = sum(map(len, spaced)) / len(spaced)
            if not c.min_mean_word_length <= mean <= c.max_mean_word_length:
                return f"mean word length {mean:.1f} (allowed {c.min_mean_word_length}..{c.max_mean_word_length})"
        symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
        if _share(symbols, len(ws)) > c.max_symbol_word_ratio:
            return f"symbol to word ratio {symbols / len(ws):.2f} > {c.max_symbol_word_ratio}"
        ellipsis = _share(sum(line.endswith(ELLIPSES) for line in lines), len(lines))
        if ellipsis > c.max_ellipsis_lines:
            return f"lines ending with an ellipsis {ellipsis:.0%} > {c.max_ellipsis_lines:.0%}"
        alpha = _share(sum(any(ch.isalpha() for ch in w) for w in ws), len(ws))
        if alpha < c.min_alpha_words:
            return f"words with a letter {alpha:.0%} < {c.min_alpha_words:.0%}"
        if language == "en":
            stops = {fold(w) for w in c.stop_words}
            n = sum(w in stops for w in ws)
            if n < c.min_stop_words:
                return f"{n} English stop words < {c.min_stop_words}"
        return None

    def report(self) -> dict[str, Any]:
        """For the manifest: seeds checked, removed in all and per rule, examples per rule."""
        return {"enabled": self.cfg.enabled, "checked": self.checked, "removed": sum(self.removed.values()),
                "by_rule": {r: self.removed[r] for r in RULES if self.removed[r]},
                "examples": {r: self.examples[r] for r in RULES if r in self.examples}}


def card_lines(section: dict[str, Any]) -> list[str]:
    """The dataset card's "Seed filter" section from :meth:`SeedFilterRun.report`."""
    lines = ["", "## Seed filter", ""]
    if not section.get("enabled", True):
        return lines + ["Seed filter off (`seed_filter.enabled: false`).", ""]
    lines.append(f"{section['checked']} seeds checked before generation, {section['removed']} removed.")
    if section["by_rule"]:
        lines += ["", "| rule | removed | examples |", "|---|---|---|"]
        for rule, n in section["by_rule"].items():
            shown = " / ".join(f"`{e.replace('|', '/').replace('`', chr(39))}`"
                               for e in section["examples"].get(rule, []))
            lines.append(f"| {rule} | {n} | {shown} |")
    return lines + [""]
