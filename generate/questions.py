"""Answer-first question writing: a tool for teachers too small to write questions.

Measured on the embedded SmolLM2-135M: asked to write a question about a sentence (free text,
few-shot, JSON- or pattern-constrained) it writes "What is the answer to this question?" or
copies the few-shot example; asked to reorder an in-situ question it returns the example.
It does answer well when given a sentence and a well-formed question. So for small teachers
the question is written by this module and the teacher writes (and the gates verify) the
answer: every clause of a sentence is split off with its subject restored, each content span
after the subject (a number, a name, a noun phrase) becomes an answer target, and two
questions that ask for it in different words are built:

- ``fronted``: the wh-phrase moved to the front with subject-auxiliary inversion
  ("Through which river does Lake Veyra drain to the south?"), using lemminflect for verb
  lemmas (do-support) and inflections;
- ``in_situ``: the target replaced by its wh-phrase where it stands
  ("Lake Veyra drains through which river to the south?").

It is English-only and rule-based: a question that comes out wrong is caught downstream,
where the teacher's answer must contain the target span and pass the grounding gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

from lemminflect import getAllLemmas, getInflection

FUNCTION_WORDS = frozenset("""
a an the and or but nor of in on at to for from by with without into onto over under about
above below along across around near through throughout since until during after before
between among against toward towards within beyond via per as than then also only just
every each all any some no not very more most much many such own same other another
is are was were be been being am has have had do does did can could will would may might
must shall should it its they them their this that these those there here which who whom
whose what when where why how he she his her we our you your i me my one's so if while
""".split())
AUXILIARIES = frozenset("is are was were can could will would may might must shall should".split())
HAVE = frozenset({"has", "have", "had"})
PRONOUN_SUBJECTS = frozenset({"it", "they", "its", "their"})
NUMBER_WORDS = frozenset("""one two three four five six seven eight nine ten eleven twelve
thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty
seventy eighty ninety hundred thousand million dozen""".split())
MONTHS = frozenset("""january february march april may june july august september october
november december""".split())
WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())
PREPOSITIONS = frozenset("""in on at to for from by with into onto over under about above below
along across around near through since until during after before between among against toward
towards within beyond via per""".split())
NO_FRONTING = frozenset({"of", "as", "than"})  # "the town of what" stays in situ
# heads that make a name a "which <head>" question ("Orrin River" -> which river); any other
# multi-word name is asked with "what", or "whom" after "by"
NAME_HEADS = frozenset("""river lake sea ocean bay island mountain mountains hill valley forest
park street road square bridge city town village county region province state country institute
university college school academy museum library hospital church cathedral station airport
harbour harbor port band orchestra choir company cooperative society club council committee
festival party team group foundation agency ministry department highlands islands""".split())
TIME_UNITS = frozenset("second minute hour day week month year decade century".split())
APPROXIMATORS = frozenset({"about", "around", "roughly", "nearly", "almost", "approximately", "over"})
_WORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9'’\-]|[.,](?=\d))*%?")
_CLAUSE_SPLIT = re.compile(r"\s*(?:[;:]|,\s+(?:and|but|while)\b|\s\band\b)\s*")
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n\s*\n")


@dataclass(frozen=True)
class Question:
    """A question about one clause, the span of the clause that answers it, and its form."""

    text: str
    target: str
    clause: str
    form: str  # "fronted" | "in_situ"
    sentence: str = ""  # the sentence of the text the clause is from (set by questions_for_text)


@dataclass(frozen=True)
class _Tok:
    text: str
    start: int
    end: int

    @property
    def low(self) -> str:
        return self.text.lower()


def _tokens(text: str) -> list[_Tok]:
    return [_Tok(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]


@lru_cache(maxsize=4096)
def _lemmas(word: str) -> dict[str, tuple[str, ...]]:
    return getAllLemmas(word)


def _is_number(word: str) -> bool:
    return bool(re.fullmatch(r"\d[\d,.]*%?", word)) or word.lower() in NUMBER_WORDS


def _is_year(word: str) -> bool:
    return bool(re.fullmatch(r"(1[5-9]|20)\d\d", word))


def _finite_verb(toks: list[_Tok]) -> int | None:
    """Index of the clause's finite verb: the first auxiliary or inflected verb after a subject."""
    for i, t in enumerate(toks[1:], start=1):
        w = t.low
        if w in AUXILIARIES or w in HAVE:
            return i
        if t.text[0].isupper() or w in FUNCTION_WORDS or _is_number(w):
            continue
        verb = _lemmas(w).get("VERB")
        if not verb:
            continue
        if _is_number(toks[i - 1].text):  # "2,140 metres": a unit, not a verb
            continue
        lemma = verb[-1]
        inflected = w in {_inflect(lemma, "VBZ"), _inflect(lemma, "VBD")}
        plural_present = w == lemma and toks[i - 1].low.endswith("s")
        if inflected or plural_present:
            # "The design described here was developed": the auxiliary that follows a
            # participle is the finite verb
            if w.endswith("ed"):
                for k in range(i + 1, min(i + 5, len(toks))):
                    if toks[k].low in AUXILIARIES:
                        return k
            return i
    return None


def _do_form(word: str) -> tuple[str, str]:
    """(do-auxiliary, bare verb) for a finite main verb: drains -> (does, drain)."""
    w = word.lower()
    verbs = _lemmas(w).get("VERB", (w,))
    if w in verbs:  # "lay" after a plural subject is present tense, not the past of "lie"
        return "do", w
    lemma = verbs[-1]
    for cand in verbs:
        if _inflect(cand, "VBD") == w:
            return "did", cand
    return ("does" if _inflect(lemma, "VBZ") == w else "do"), lemma


def _inflect(lemma: str, tag: str) -> str:
    forms = getInflection(lemma, tag)
    return forms[0] if forms else ""


def _lower_first(subject: str) -> str:
    """Lower-case a subject's first word when its capital is only the sentence's:
    "The bakery" -> "the bakery", "Females" -> "females", but "Lake Veyra" stays."""
    words = subject.split()
    if not words or (len(words[0]) > 1 and words[0].isupper()):
        return subject
    first, nxt = words[0], (words[1] if len(words) > 1 else "")
    common = first.lower() in FUNCTION_WORDS or (nxt[:1].islower() if nxt else bool(_lemmas(first.lower())))
    return first[0].lower() + subject[1:] if common else subject


def _is_plural(subject: str) -> bool:
    head = subject.split()[-1].lower() if subject.strip() else ""
    nouns = _lemmas(head).get("NOUN", ())
    return head in {"they", "we", "you"} or (head.endswith("s") and not head.endswith("ss")
                                              and bool(nouns) and nouns[0] != head)


def wh_phrase(target: str, after_preposition: str = "") -> str:
    """The wh-phrase that asks for a target span: 2009 -> which year, four months -> how many
    months, 6 degrees Celsius -> what temperature, Orrin River -> which river."""
    words = target.split()
    low = [w.lower() for w in words]
    if _is_year(words[0]) and len(words) == 1:
        return "which year"
    if _is_number(words[0]):
        rest = words[1:]
        if words[0].endswith("%") or (rest and low[1] in {"percent", "per"}):
            return "what percentage"
        if rest and low[1] == "degrees":
            return "what temperature" if {"celsius", "fahrenheit"} & set(low) else "how many degrees"
        return "how many " + " ".join(rest) if rest else "how many"
    if len(words) == 1 and low[0] in MONTHS:
        return "which month"
    if len(words) == 1 and low[0] in WEEKDAYS:
        return "which day"
    if all(w[:1].isupper() for w in words):
        head = low[-1]
        if len(words) > 1 and head in NAME_HEADS:
            return "which " + head
        if len(words) > 1 and after_preposition == "by":
            return "whom"
    return "what"


def _split_keeping(text: str) -> list[tuple[str, str]]:
    """(separator before, part) pairs of a sentence split at clause boundaries."""
    pieces = _CLAUSE_SPLIT.split(text)
    seps = [m.group(0) for m in _CLAUSE_SPLIT.finditer(text)]
    return list(zip([""] + seps, pieces))


def clauses(sentence: str, topic: str | None = None) -> list[str]:
    """Split a sentence into clauses that each have a subject and a finite verb: a part that
    starts with its verb borrows the previous clause's subject, a part without a verb stays
    with the clause before it, and a leading "It"/"They" becomes ``topic``."""
    text = _PARENTHESES.sub("", _LIST_MARK.sub("", sentence.strip())).rstrip(".!?").strip()
    out: list[str] = []
    subject: str | None = None
    for sep, part in _split_keeping(text):
        part = part.strip(" ,\"'")
        toks = _tokens(part)
        if not toks:
            continue
        if toks[0].low in PRONOUN_SUBJECTS and topic:
            part = topic + ("'s" if toks[0].low in {"its", "their"} else "") + part[toks[0].end:]
        elif part[:1].islower() and subject and _finite_verb([_Tok("X", 0, 0)] + toks) == 1:
            part = f"{subject} {part}"
        toks = _tokens(part)
        v = _finite_verb(toks)
        if v is None or len(toks) < 3:
            if out:  # no verb of its own: it belongs to the clause before
                out[-1] = f"{out[-1]}{sep if sep.strip() else ' '}{part}".strip()
            continue
        lead = _leading_adjunct(toks)
        subject = part[toks[lead].start: toks[v - 1].end] if lead < v else subject
        out.append(part[0].upper() + part[1:])
    return out


def _leading_adjunct(toks: list[_Tok]) -> int:
    """Index of the subject's first token: 1 past an opening "In 2022"-style adjunct, else 0."""
    if len(toks) > 2 and toks[0].low in PREPOSITIONS and (_is_number(toks[1].text) or toks[1].text[:1].isupper()):
        return 2
    return 0


def subject_of(sentence: str) -> str | None:
    """The subject of a sentence's first clause (the text before its finite verb)."""
    found = clauses(sentence)
    if not found:
        return None
    toks = _tokens(found[0])
    v = _finite_verb(toks)
    return found[0][toks[_leading_adjunct(toks)].start: toks[v - 1].end].strip() if v else None


def _is_verbish(tok: _Tok) -> bool:
    lem = _lemmas(tok.low)
    return ("VERB" in lem and "NOUN" not in lem) or tok.low.endswith(("ing", "ed"))


def _is_adjective_only(tok: _Tok) -> bool:
    lem = _lemmas(tok.low)
    return bool(lem) and "NOUN" not in lem and "PROPN" not in lem and not tok.text[:1].isupper()


def _has_noun(tok: _Tok) -> bool:
    """A span must end in a noun or a name: "famous", "exactly" are not answers."""
    lem = _lemmas(tok.low)
    return tok.text[:1].isupper() or "NOUN" in lem or not lem


def _spans(toks: list[_Tok], start: int) -> list[tuple[int, int]]:
    """Answer targets from token ``start`` on, as (first, last) token indices: a number with
    the unit word after it, or a run of content words that stops before a verb-like word."""
    spans: list[tuple[int, int]] = []
    i = start
    while i < len(toks):
        t = toks[i]
        if t.low in FUNCTION_WORDS or _is_verbish(t):
            i += 1
            continue
        j = i
        if not _is_year(t.text):
            while (j + 1 < len(toks) and toks[j + 1].low not in FUNCTION_WORDS and not _is_verbish(toks[j + 1])
                   and not _is_number(toks[j + 1].text) and not _is_adjective_only(toks[j + 1])):
                j += 1
        if _is_number(t.text) or _has_noun(toks[j]):
            spans.append((i, j))
        i = j + 1
    return spans


def questions_for_clause(clause: str, max_targets: int = 3) -> list[Question]:
    """Fronted and in-situ questions for up to ``max_targets`` spans after the clause's verb,
    numbers and names first. The fronted form is left out where English does not front the
    phrase ("of what", "every what")."""
    toks = _tokens(clause)
    v = _finite_verb(toks)
    if v is None:
        return []
    lead = _leading_adjunct(toks)
    verb = toks[v]
    subject = clause[toks[lead].start: toks[v - 1].end]
    adjunct = clause[: toks[lead - 1].end] if lead else ""

    def rank(ab: tuple[int, int]) -> tuple[int, int]:
        w = toks[ab[0]].text
        return (0 if _is_number(w) else 1 if w[:1].isupper() else 2, ab[0])

    def skip(ab: tuple[int, int]) -> bool:
        a, b = ab
        rate = a == b and toks[a].low in TIME_UNITS and toks[a - 1].low in {"a", "an", "per", "every"}
        head_of = b + 1 < len(toks) and toks[b + 1].low == "of"  # "the city of Tarn": ask for Tarn
        return rate or head_of

    have_aux = verb.low in HAVE and v + 1 < len(toks) and (
        toks[v + 1].low == "been" or (toks[v + 1].low.endswith(("ed", "en")) and _is_verbish(toks[v + 1])))
    is_aux = verb.low in AUXILIARIES or have_aux
    out: list[Question] = []
    for a, b in sorted((s for s in _spans(toks, v + 1) if not skip(s)), key=rank)[:max_targets]:
        target = clause[toks[a].start: toks[b].end]
        mid = toks[v + 1: a]
        while mid and mid[-1].low in {"the", "a", "an", "its", "their"}:
            mid = mid[:-1]
        number = _is_number(toks[a].text) and not _is_year(toks[a].text)
        if mid and mid[-1].low in APPROXIMATORS and number:
            mid = mid[:-1]
        prep = mid[-1].low if mid and mid[-1].low in PREPOSITIONS | NO_FRONTING else ""
        wh = wh_phrase(target, prep)
        after = clause[toks[b].end:].strip(" ,.")
        in_situ_head = clause[: mid[-1].end if mid else verb.end]
        texts = [("in_situ", " ".join(x for x in [in_situ_head, wh, after] if x))]
        frontable = prep not in NO_FRONTING and (
            not mid or bool(prep) or (is_aux and all(_is_verbish(t) for t in mid)))
        if frontable:
            kept = mid[:-1] if prep else mid  # the preposition went to the front
            middle = clause[kept[0].start: kept[-1].end] if kept else ""
            tail = " ".join(x for x in [middle, after, adjunct[:1].lower() + adjunct[1:]] if x)
            if is_aux:
                body = [verb.low, _lower_first(subject), tail]
            else:
                do, bare = _do_form(verb.text)
                if do == "does" and _is_plural(subject):
                    do = "do"
                body = [do, _lower_first(subject), bare, tail]
            texts.insert(0, ("fronted", " ".join(x for x in [prep, wh, *body] if x)))
        for form, text in texts:
            text = re.sub(r"\s+", " ", text).strip()
            out.append(Question(text[0].upper() + text[1:] + "?", target, clause, form))
    return out


def questions_for_text(text: str, topic: str | None = None, max_targets: int = 3) -> list[Question]:
    """Questions for every clause of every sentence of ``text`` (Markdown headings skipped);
    ``topic`` (default: the first sentence's subject) replaces a leading "It"/"They"."""
    return list(_questions_for_text(text, topic, max_targets))


@lru_cache(maxsize=1024)  # the flows ask once per question form of the same text
def _questions_for_text(text: str, topic: str | None, max_targets: int) -> tuple[Question, ...]:
    if topic is None:
        topic = topic_of(text)
    return tuple(replace(q, sentence=sentence) for sentence in _sentences(text)
                 for clause in clauses(sentence, topic) for q in questions_for_clause(clause, max_targets))


def split_sentences(text: str) -> list[str]:
    """Sentences (and headings/paragraph breaks) of a text, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _sentences(text: str) -> list[str]:
    """Sentences of a text, Markdown headings and emphasis markers left out."""
    lines = [ln for ln in text.replace("*", "").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [s for ln in lines for s in split_sentences(ln)]


def topic_of(text: str) -> str | None:
    """What a document is about: the subject of its first sentence that has one
    ("Lake Veyra"), used for a later sentence's "It"/"They"."""
    for sentence in _sentences(text):
        subject = subject_of(sentence)
        if subject and subject.lower() not in PRONOUN_SUBJECTS and len(subject.split()) <= 6:
            return subject
    return None
