"""The one text normaliser: every place that compares texts (answer checks, the grounding gate,
dedup, decontamination, held-out scoring, the seed filter) splits words with :func:`words`.

- Unicode NFKC (full-width and compatibility forms fold: "ｆｕｌｌ" -> "full", "ﬁ" -> "fi"), then
  ``casefold`` (the Unicode lower case: "Straße" -> "strasse").
- A word is a run of letters, digits and combining marks of any script (``\\p{L}\\p{N}\\p{M}``,
  via the ``regex`` module: Python's ``\\w`` lacks the marks, which would cut Devanagari or
  Thai words apart, and has ``_``); accents stay ("café" stays "café"), punctuation and ``_``
  separate words.
- Scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) have no
  word boundaries to find, so each of their characters is a word. Characters, not bigrams: a
  sequence of characters keeps every n-gram comparison working as character n-grams (dedup
  shingles, decontamination n-grams, "the answer states the span" substring checks, even for a
  one-character span). Where words are compared as a bag (the grounding gate's lexical support)
  single characters would match nearly any source, so :func:`content_words` uses character
  bigrams for those scripts.
- Stop words: one list, English (the grounding gate's original one); other languages have none,
  and only one-character words are dropped.

On ASCII English text this is exactly the old ``[a-z0-9]+`` over ``lower()``.
"""

from __future__ import annotations

import unicodedata

import regex

_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
_WORD = regex.compile(rf"[{_NO_SPACE}]|(?:(?![{_NO_SPACE}])[\p{{L}}\p{{N}}\p{{M}}])+")
_NO_SPACE_CHAR = regex.compile(rf"[{_NO_SPACE}]")

ENGLISH_STOPWORDS = frozenset(
    "the a an and or of to in on at for by with from is are was were be been it its this that these those "
    "as not no yes can could should would will which who whom what when where why how than then there "
    "their they them he she his her we you your our i me my do does did has have had so such also into "
    "about over under more most less only other some any each all both".split()
)
STOPWORDS: dict[str, frozenset[str]] = {"en": ENGLISH_STOPWORDS}


def fold(text: str) -> str:
    """NFKC and case folding, nothing removed."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> list[str]:
    """The words of ``text`` (see the module docstring), folded."""
    return _WORD.findall(fold(text))


def normalise(text: str) -> str:
    """The words of ``text`` joined by single spaces: the comparable form of a text."""
    return " ".join(words(text))


def stopwords(language: str | None) -> frozenset[str]:
    """The stop words of a language (ISO 639-1); ``None`` or "" means English, the old default."""
    return STOPWORDS.get(language or "en", frozenset())


def is_no_space(word: str) -> bool:
    """A one-character word of a script written without spaces (Han, kana, Thai, ...)."""
    return len(word) == 1 and bool(_NO_SPACE_CHAR.match(word))


def content_words(text: str, language: str | None = None) -> list[str]:
    """Words for bag-of-words comparison: stop words of ``language`` and one-character words
    dropped, runs of characters of no-space scripts turned into their character bigrams (a run
    of one character stays)."""
    stop = stopwords(language)
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        out.extend(a + b for a, b in zip(run, run[1:]))
        run.clear()

    for w in words(text):
        if is_no_space(w):
            run.append(w)
            continue
        flush()
        if w not in stop and len(w) > 1:
            out.append(w)
    flush()
    return out
