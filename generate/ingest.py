"""Raw inputs -> Seeds, streamed: folders/globs of files or a Hugging Face dataset.

Unreadable inputs (binary, empty, undecodable, unsupported) are skipped with one line each and
counted; the run goes on. Long documents are cut into token-bounded, overlapping chunks.
"""

from __future__ import annotations

import glob
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentinstruct.records import Seed, content_id

TEXT_EXTENSIONS = {".txt", ".md", ".markdown", ".rst"}
HTML_EXTENSIONS = {".html", ".htm"}
PDF_EXTENSIONS = {".pdf"}

Tokenize = Callable[[str], list[tuple[int, int]]]  # text -> token character spans


@dataclass
class IngestReport:
    read: int = 0
    seeds: int = 0
    skipped: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)

    def skip(self, source: str, reason: str, log: Callable[[str], None] | None = None) -> None:
        self.skipped[reason] += 1
        line = f"skipped {source}: {reason}"
        self.messages.append(line)
        if log:
            log(line)


class InputError(ValueError):
    pass


def regex_tokenize(text: str) -> list[tuple[int, int]]:
    """Fallback tokenizer: words and punctuation (roughly 1.3 per BPE token on English)."""
    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


def hf_tokenizer_spans(tokenizer) -> Tokenize:
    def spans(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        return [tuple(o) for o in enc["offset_mapping"]]

    return spans


def chunk_text(text: str, tokenize: Tokenize, max_tokens: int, overlap: int) -> list[str]:
    """Windows of at most ``max_tokens`` tokens, ``overlap`` tokens shared between neighbours.

    Chunk boundaries are token boundaries and, where one is near, paragraph or sentence ends;
    each chunk is an exact substring of ``text``.
    """
    spans = tokenize(text)
    if len(spans) <= max_tokens:
        return [text.strip()] if text.strip() else []
    step = max(1, max_tokens - overlap)
    chunks, start = [], 0
    while start < len(spans):
        end = min(len(spans), start + max_tokens)
        if end < len(spans):  # prefer to end at a sentence/paragraph inside the last quarter
            for j in range(end - 1, start + (3 * max_tokens) // 4, -1):
                if text[spans[j][0]:spans[j][1]] in {".", "!", "?", "\n"} or \
                        "\n\n" in text[spans[j][1]:spans[min(j + 1, len(spans) - 1)][0]]:
                    end = j + 1
                    break
        chunk = text[spans[start][0]:spans[end - 1][1]].strip()
        if chunk:
            chunks.append(chunk)
        if end >= len(spans):
            break
        start = max(start + 1, end - overlap) if end - start < step else start + step
    return chunks


def html_to_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "aside", "noscript", "form"]):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks = [el.get_text(" ", strip=True) for el in root.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "td"])]
    text = "\n\n".join(b for b in blocks if b)
    return text or root.get_text("\n", strip=True)


def pdf_to_text(path: Path) -> str:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    return "\n\n".join((page.extract_text() or "") for page in reader.pages)


def read_file(path: Path, code_extensions: set[str]) -> tuple[str, str]:
    """Return (text, kind). Raises InputError with a one-line reason when unreadable."""
    ext = path.suffix.lower()
    if ext in PDF_EXTENSIONS:
        try:
            text = pdf_to_text(path)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a skip reason
            raise InputError(f"unreadable PDF ({type(exc).__name__})") from None
        kind = "text"
    else:
        if ext not in TEXT_EXTENSIONS | HTML_EXTENSIONS | code_extensions:
            raise InputError(f"unsupported file type {ext or '(none)'}")
        data = path.read_bytes()
        if b"\x00" in data[:8192]:
            raise InputError("binary file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 (byte {exc.start})") from None
        if ext in HTML_EXTENSIONS:
            text = html_to_text(text)
        kind = "code" if ext in code_extensions else "text"
    if not text.strip():
        raise InputError("empty")
    return text, kind


def iter_files(spec: str) -> Iterator[Path]:
    path = Path(spec)
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    elif path.is_file():
        yield path
    else:
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise InputError(f"input {spec!r}: no such file, folder or glob match")
        yield from (Path(m) for m in matches if Path(m).is_file())


def iter_dataset_texts(spec: str, text_column: str) -> Iterator[tuple[str, str]]:
    """(source id, text) from ``hf:NAME[:split]`` or a local ``save_to_disk`` folder."""
    import datasets

    if spec.startswith("hf:"):
        name, _, split = spec[3:].partition(":")
        ds = datasets.load_dataset(name, split=split or "train", streaming=True)
        label = name
    else:
        loaded = datasets.load_from_disk(spec)
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            loaded = loaded[split]
        ds, label = loaded, spec
    columns = ds.column_names or []
    if columns and text_column not in columns:
        raise InputError(f"input {spec!r}: no column {text_column!r} (columns: {', '.join(columns)})")
    for i, row in enumerate(ds):
        yield f"{label}#{i}", row.get(text_column) or ""


def is_dataset_input(spec: str) -> bool:
    p = Path(spec)
    return spec.startswith("hf:") or (p.is_dir() and (
        (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()))


def iter_seeds(
    spec: str,
    *,
    tokenize: Tokenize,
    max_tokens: int,
    overlap: int,
    min_chars: int,
    code_extensions: set[str],
    text_column: str = "text",
    report: IngestReport,
    log: Callable[[str], None] | None = None,
) -> Iterator[Seed]:
    """Stream seeds in a stable order; the same content always gets the same id."""
    seen: set[str] = set()
    order = 0

    def documents() -> Iterator[tuple[str, str, str]]:
        if is_dataset_input(spec):
            for source, text in iter_dataset_texts(spec, text_column):
                report.read += 1
                if not str(text).strip():
                    report.skip(source, "empty", log)
                    continue
                yield source, str(text), "text"
            return
        for path in iter_files(spec):
            report.read += 1
            try:
                text, kind = read_file(path, code_extensions)
            except InputError as exc:
                report.skip(str(path), str(exc), log)
                continue
            except OSError as exc:
                report.skip(str(path), f"cannot read ({exc.strerror})", log)
                continue
            yield str(path), text, kind

    for source, text, kind in documents():
        for i, chunk in enumerate(chunk_text(text, tokenize, max_tokens, overlap)):
            if len(chunk) < min_chars:
                report.skip(f"{source} chunk {i}", "too short", log)
                continue
            sid = content_id(chunk)
            if sid in seen:
                report.skip(f"{source} chunk {i}", "duplicate of an earlier seed", log)
                continue
            seen.add(sid)
            report.seeds += 1
            yield Seed(id=sid, text=chunk, kind=kind, source=source, chunk=i, order=order)
            order += 1
