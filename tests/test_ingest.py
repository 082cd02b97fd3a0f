from agentinstruct.generate.ingest import (
    IngestReport,
    chunk_text,
    html_to_text,
    iter_seeds,
    regex_tokenize,
)


def seeds_of(path, **kw):
    report = IngestReport()
    lines = []
    seeds = list(iter_seeds(str(path), tokenize=regex_tokenize, max_tokens=kw.get("max_tokens", 200),
                            overlap=kw.get("overlap", 10), min_chars=20, code_extensions={".py"},
                            report=report, log=lines.append))
    return seeds, report, lines


def test_bad_inputs_are_skipped_with_one_line_each(tmp_path):
    (tmp_path / "good.txt").write_text("A perfectly fine document about lakes and rivers and the sea.")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\x03binary")
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait is a drink".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    seeds, report, lines = seeds_of(tmp_path)
    assert [s.source for s in seeds] == [str(tmp_path / "good.txt")]
    assert report.read == 5 and report.seeds == 1
    assert report.skipped == {"binary file": 1, "empty": 1, "not valid UTF-8 (byte 3)": 1,
                              "unsupported file type .png": 1}
    assert len(lines) == 4 and all(line.startswith("skipped ") for line in lines)
    assert any("binary.txt: binary file" in line for line in lines)


def test_sample_docs_kinds_and_stable_ids(repo):
    a, _, _ = seeds_of(repo / "examples" / "docs")
    b, _, _ = seeds_of(repo / "examples" / "docs")
    assert [s.id for s in a] == [s.id for s in b]
    kinds = {s.source.rsplit(".", 1)[1]: s.kind for s in a}
    assert kinds["py"] == "code" and kinds["txt"] == "text" and kinds["html"] == "text"
    assert [s.order for s in a] == list(range(len(a)))


def test_html_main_text_only(repo):
    text = html_to_text((repo / "examples" / "docs" / "harbor_festival.html").read_text())
    assert "3,000 paper lanterns" in text
    assert "analytics" not in text and "Copyright" not in text and "Home" not in text


def test_chunks_are_bounded_overlapping_substrings():
    text = " ".join(f"word{i}." for i in range(500))
    chunks = chunk_text(text, regex_tokenize, max_tokens=100, overlap=20)
    assert len(chunks) > 5
    for c in chunks:
        assert c in text and len(regex_tokenize(c)) <= 100
    assert chunks[0][-30:] in text and chunks[1].split()[0] in chunks[0]  # overlap


def test_duplicate_content_is_one_seed(tmp_path):
    body = "The same document text appears twice in this corpus, word for word."
    (tmp_path / "a.txt").write_text(body)
    (tmp_path / "b.txt").write_text(body)
    seeds, report, _ = seeds_of(tmp_path)
    assert len(seeds) == 1 and report.skipped["duplicate of an earlier seed"] == 1


def test_local_saved_dataset_input(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["First document about the harbour town.", ""],
                                "id": [1, 2]}).save_to_disk(str(tmp_path / "ds"))
    seeds, report, _ = seeds_of(tmp_path / "ds")
    assert len(seeds) == 1 and seeds[0].source.endswith("#0") and report.skipped["empty"] == 1


def test_pdf_text_is_extracted(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["pdf.fonttype"] = 42  # embedded TrueType: the text is extractable
    fig = plt.figure()
    fig.text(0.1, 0.5, "The harbour of Merrow floats 3000 lanterns every October.")
    fig.savefig(tmp_path / "doc.pdf")
    plt.close(fig)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    seeds, report, lines = seeds_of(tmp_path)
    assert [s.text for s in seeds] == ["The harbour of Merrow floats 3000 lanterns every October."]
    assert report.skipped == {"unreadable PDF (PdfReadError)": 1} or sum(report.skipped.values()) == 1


def test_hub_dataset_input_streams_text_column(monkeypatch):
    """`hf:NAME[:split]` goes through datasets.load_dataset (stubbed: no network here)."""
    import datasets

    calls = []

    def fake_load_dataset(name, split=None, streaming=False):
        calls.append((name, split, streaming))
        return datasets.Dataset.from_dict({"body": ["A first hub document about lanterns and boats.",
                                                    "A second one about oak trees and moths."]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    report = IngestReport()
    seeds = list(iter_seeds("hf:org/corpus:validation", tokenize=regex_tokenize, max_tokens=100, overlap=0,
                            min_chars=10, code_extensions=set(), text_column="body", report=report))
    assert calls == [("org/corpus", "validation", True)]
    assert [s.source for s in seeds] == ["org/corpus#0", "org/corpus#1"]
    import pytest

    with pytest.raises(ValueError, match="no column 'text'"):
        list(iter_seeds("hf:org/corpus", tokenize=regex_tokenize, max_tokens=100, overlap=0, min_chars=10,
                        code_extensions=set(), report=IngestReport()))


# Seed-id digests of examples/docs computed with the whole-file chunker before streaming ingest
# existed: content ids (journal keys, dedup, provenance) of existing inputs must never change.
SAMPLE_DOC_DIGESTS = {(384, 32): (7, "a08287b03e909b73"), (200, 10): (9, "114682f2a52594ca"),
                      (40, 8): (46, "0af63aeb62aef18a")}


def test_sample_docs_chunk_ids_unchanged(repo):
    import hashlib

    for (max_tokens, overlap), (n, digest) in SAMPLE_DOC_DIGESTS.items():
        seeds, _, _ = seeds_of(repo / "examples" / "docs", max_tokens=max_tokens, overlap=overlap)
        got = hashlib.sha256("\n".join(s.id for s in seeds).encode()).hexdigest()[:16]
        assert (len(seeds), got) == (n, digest), (max_tokens, overlap)


def test_streamed_blocks_give_the_whole_text_chunks(tmp_path, repo):
    """A file read in tiny blocks (every block boundary inside some window) is cut exactly as
    the whole text: same chunks, same order."""
    from agentinstruct.generate.ingest import chunk_stream, text_blocks

    synthetic = "\n\n".join(" ".join(f"Sentence {i} word{j}." for j in range(i % 7 + 1)) for i in range(600))
    (tmp_path / "synthetic.txt").write_text(synthetic + "\nno final newline, a last word")
    files = [tmp_path / "synthetic.txt", *sorted((repo / "examples" / "docs").glob("*.txt")),
             repo / "examples" / "docs" / "weather_api.py"]
    for path in files:
        whole = path.read_text(encoding="utf-8")
        for block_bytes, max_tokens, overlap in ((97, 40, 8), (1000, 100, 20), (5, 16, 0)):
            streamed = list(chunk_stream(text_blocks(path, block_bytes), regex_tokenize, max_tokens, overlap))
            assert streamed == chunk_text(whole, regex_tokenize, max_tokens, overlap), (path, block_bytes)
    # a multi-byte character cut by a block boundary is decoded whole
    (tmp_path / "utf8.txt").write_text("é" * 1001)
    assert "".join(text_blocks(tmp_path / "utf8.txt", 7)) == "é" * 1001


def test_bad_utf8_late_in_a_large_file_skips_the_whole_file(tmp_path):
    """The whole-file checks run before any chunk: no seeds from a file that is skipped."""
    good = b"A line of perfectly good text about the harbour.\n" * 20000
    (tmp_path / "late.txt").write_bytes(good + b"caf\xe9\n")
    seeds, report, _ = seeds_of(tmp_path)
    assert seeds == [] and report.skipped == {f"not valid UTF-8 (byte {len(good) + 3})": 1}


BOUNDED_MEMORY_SCRIPT = """
import itertools, resource, sys
from agentinstruct.generate.ingest import IngestReport, iter_seeds, regex_tokenize
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seeds = iter_seeds(sys.argv[1], tokenize=regex_tokenize, max_tokens=384, overlap=32, min_chars=40,
                   code_extensions=set(), report=IngestReport())
first = list(itertools.islice(seeds, 2))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(first), (after - before) // 1024)
"""


def test_large_file_is_streamed_with_bounded_memory(tmp_path):
    """A 50 MB text file, first 2 seeds: peak RSS grows by well under 200 MB (the whole-file
    reader held the text plus a token span per word, over 1 GB)."""
    import subprocess
    import sys

    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as fh:
        i = 0
        while fh.tell() < 50 * 1024 * 1024:
            fh.write("".join(f"Paragraph {j}: the lake keeps {j * 7} boats and {j % 13} herons.\n\n"
                             for j in range(i, i + 10000)))
            i += 10000
    out = subprocess.run([sys.executable, "-c", BOUNDED_MEMORY_SCRIPT, str(path)], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    seeds, growth_mb = int(out[0]), int(out[1])
    assert seeds == 2
    assert growth_mb < 200, f"peak RSS grew by {growth_mb} MB"
