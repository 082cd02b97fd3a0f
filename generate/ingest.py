"""Raw inputs -> Seeds, streamed: folders/globs of files or a Hugging Face dataset.

Unreadable inputs (binary, empty, undecodable, unsupported) are skipped with one line each and
counted; the run goes on. Long documents are cut into token-bounded, overlapping chunks.
Text and code files are read and chunked block by block (:func:`chunk_stream`), so memory stays
bounded whatever a file's size, with the same chunks (and seed ids) as cutting the whole text.
"""

from __future__ import annotations

import codecs
import glob
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agentinstruct.language import detect as detect_language
from agentinstruct.records import Seed, content_id

TEXT_EXTENSIONS = {".txt", ".md", ".markdown", ".rst"}
HTML_EXTENSIONS = {".html", ".htm"}
PDF_EXTENSIONS = {".pdf"}

Tokenize = Callable[[str], list[tuple[int, int]]]  # text -> token character spans

READ_BLOCK_BYTES = 256 * 1024  # text files are read and tokenised this much at a time
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first this many bytes: a binary file
LOOKAHEAD_TOKENS = 8  # a streamed window is cut only this many tokens before the buffer's end


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


def _windows(text: str, spans: list[tuple[int, int]], max_tokens: int, overlap: int,
             final: bool) -> Iterator[tuple[str, int]]:
    """The chunking loop over one buffer: yields (chunk, character offset where the next window
    starts). With ``final`` false it stops before any window that could still change when more
    text is appended (its end, or the paragraph-end look-ahead, within ``LOOKAHEAD_TOKENS`` of
    the buffer's end), so a streamed document gets the chunks of the whole text."""
    step = max(1, max_tokens - overlap)
    start = 0
    while start < len(spans):
        if not final and start + max_tokens + LOOKAHEAD_TOKENS >= len(spans):
            return
        end = min(len(spans), start + max_tokens)
        if end < len(spans):  # prefer to end at a sentence/paragraph inside the last quarter
            for j in range(end - 1, start + (3 * max_tokens) // 4, -1):
                if text[spans[j][0]:spans[j][1]] in {".", "!", "?", "\n"} or \
                        "\n\n" in text[spans[j][1]:spans[min(j + 1, len(spans) - 1)][0]]:
                    end = j + 1
                    break
        chunk = text[spans[start][0]:spans[end - 1][1]].strip()
        if end >= len(spans):
            if chunk:
                yield chunk, len(text)
            return
        start = max(start + 1, end - overlap) if end - start < step else start + step
        if chunk:
            yield chunk, spans[start][0]


def chunk_text(text: str, tokenize: Tokenize, max_tokens: int, overlap: int) -> list[str]:
    """Windows of at most ``max_tokens`` tokens, ``overlap`` tokens shared between neighbours.

    Chunk boundaries are token boundaries and, where one is near, paragraph or sentence ends;
    each chunk is an exact substring of ``text``.
    """
    return list(chunk_stream(iter([text]), tokenize, max_tokens, overlap))


def chunk_stream(blocks: Iterator[str], tokenize: Tokenize, max_tokens: int, overlap: int) -> Iterator[str]:
    """:func:`chunk_text` over a document given as consecutive blocks (ending at line breaks),
    lazily: only the current block and the unfinished window are held and tokenised, so memory
    is bounded by the block size, not the document size."""
    buffer, emitted = "", False
    block = next(blocks, None)
    while block is not None:
        buffer += block
        block = next(blocks, None)
        final = block is None
        spans = tokenize(buffer)
        if final and not emitted and len(spans) <= max_tokens:
            if buffer.strip():
                yield buffer.strip()
            return
        carry = 0
        for chunk, next_start in _windows(buffer, spans, max_tokens, overlap, final):
            emitted, carry = True, next_start
            yield chunk
        buffer = buffer[carry:]


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


def check_text_file(path: Path, block_bytes: int = READ_BLOCK_BYTES) -> None:
    """Whole-file checks before any chunk is made (so a bad file is skipped whole), streamed:
    binary (NUL in the first 8 KiB), not UTF-8 (with the byte offset), or only whitespace."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed, blank = 0, True
    with open(path, "rb") as fh:
        while data := fh.read(block_bytes):
            if consumed == 0 and b"\x00" in data[:BINARY_SNIFF_BYTES]:
                raise InputError("binary file")
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data)
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid UTF-8 (byte {consumed - pending + exc.start})") from None
            blank = blank and not text.strip()
            consumed += len(data)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise InputError(f"not valid UTF-8 (byte {consumed - len(exc.object) + exc.start})") from None
    if blank:
        raise InputError("empty")


def text_blocks(path: Path, block_bytes: int = READ_BLOCK_BYTES) -> Iterator[str]:
    """The decoded text of a checked file in blocks of about ``block_bytes``, each extended to
    the next line break (at most one more block) so that blocks rarely cut a word."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as fh:
        while data := fh.read(block_bytes):
            if not data.endswith(b"\n"):
                data += fh.readline(block_bytes)
            if text := decoder.decode(data):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail


def read_file(path: Path, code_extensions: set[str],
              block_bytes: int = READ_BLOCK_BYTES) -> tuple[Iterator[str], str]:
    """Return (text blocks, kind). Raises InputError with a one-line reason when unreadable.

    Text and code files are checked, then streamed block by block; HTML and PDF need the whole
    document for parsing and come back as one block."""
    ext = path.suffix.lower()
    if ext in PDF_EXTENSIONS:
        try:
            text = pdf_to_text(path)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a skip reason
            raise InputError(f"unreadable PDF ({type(exc).__name__})") from None
        if not text.strip():
            raise InputError("empty")
        return iter([text]), "text"
    if ext not in TEXT_EXTENSIONS | HTML_EXTENSIONS | code_extensions:
        raise InputError(f"unsupported file type {ext or '(none)'}")
    check_text_file(path, block_bytes)
    if ext in HTML_EXTENSIONS:
        text = html_to_text(path.read_text(encoding="utf-8"))
        if not text.strip():
            raise InputError("empty")
        return iter([text]), "text"
    return text_blocks(path, block_bytes), "code" if ext in code_extensions else "text"


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
        try:
            ds = datasets.load_dataset(name, split=split or "train", streaming=True)
        except (OSError, ValueError) as exc:  # offline, unknown dataset, unknown split
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"input {spec!r}: cannot load the dataset: {reason}") from None
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


def check_input(spec: str) -> None:
    """Fail early (before any model loads or output is written) on a local input that does not
    exist; ``hf:`` inputs are checked when they are opened."""
    if spec.startswith("hf:"):
        if not spec[3:].partition(":")[0]:
            raise InputError(f"input {spec!r}: expected hf:NAME[:split]")
        return
    if not Path(spec).exists() and not glob.glob(spec, recursive=True):
        raise InputError(f"input {spec!r}: no such file, folder or glob match")


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
    seed_filter: Callable[[Seed], tuple[str, str] | None] | None = None,
) -> Iterator[Seed]:
    """Stream seeds in a stable order; the same content always gets the same id. Each seed's
    language is detected; ``seed_filter`` (``generate/seed_filter.py``) returns (rule, reason)
    for a seed to drop before any LLM call, and counts its removals itself."""
    seen: set[str] = set()
    order = 0

    def documents() -> Iterator[tuple[str, Iterator[str], str]]:
        if is_dataset_input(spec):
            for source, text in iter_dataset_texts(spec, text_column):
                report.read += 1
                if not str(text).strip():
                    report.skip(source, "empty", log)
                    continue
                yield source, iter([str(text)]), "text"
            return
        for path in iter_files(spec):
            report.read += 1
            try:
                blocks, kind = read_file(path, code_extensions)
            except InputError as exc:
                report.skip(str(path), str(exc), log)
                continue
            except OSError as exc:
                report.skip(str(path), f"cannot read ({exc.strerror})", log)
                continue
            yield str(path), blocks, kind

    for source, blocks, kind in documents():
        for i, chunk in enumerate(chunk_stream(blocks, tokenize, max_tokens, overlap)):
            if len(chunk) < min_chars:
                report.skip(f"{source} chunk {i}", "too short", log)
                continue
            sid = content_id(chunk)
            if sid in seen:
                report.skip(f"{source} chunk {i}", "duplicate of an earlier seed", log)
                continue
            seen.add(sid)
            seed = Seed(id=sid, text=chunk, kind=kind, source=source, chunk=i, order=order,
                        language=detect_language(chunk))
            if seed_filter is not None and (verdict := seed_filter(seed)):
                line = f"seed filter removed {source} chunk {i}: {verdict[0]} ({verdict[1]})"
                report.messages.append(line)
                if log:
                    log(line)
                continue
            report.seeds += 1
            yield seed
            order += 1
