"""Progress where people look: the rich display in a terminal, log lines everywhere else.

A run whose stderr is a log file, a CI log or a Slurm job's output sees nothing from rich's live
display until the end. :class:`LoggedProgress` is a drop-in rich ``Progress``: with a terminal
console it is the live display; with any other console it draws nothing and instead prints one
line per stage every ``interval_s`` seconds (and a last one when the stage ends), fed by the same
``advance`` calls the bars get::

    progress generate: seeds 12 of ~40, accepted 31, calls 254, 0.41 seeds/s, 8.6 calls/s, ETA 1m08s

The total for the ETA is the recipe's ``limit`` when set, else the number of input documents
(``documents``; the share of documents read stands in for the share of seeds); without either
the ETA is ``unknown``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, TaskID


@dataclass
class ProgressLog:
    """What a stage's log line reports. ``calls``: LLM calls so far (a callable, read at each
    line); ``seed_total``: seeds the stage will do, when known; ``documents``: (documents read
    so far, documents in the input), the fallback for the ETA."""

    stage: str
    interval_s: float
    calls: Callable[[], int] = lambda: 0
    seed_total: int | None = None
    documents: Callable[[], tuple[int, int | None]] | None = None
    counts: Counter = field(default_factory=Counter)
    lines: int = 0

    def line(self, elapsed: float, final: bool = False) -> str:
        seeds, accepted, calls = self.counts["seeds"], self.counts["accepted"], self.calls()
        done = self._done_share(seeds)
        if final:
            eta = "done"
        elif done is None or done <= 0:
            eta = "ETA unknown"
        else:
            eta = f"ETA {_duration(elapsed * (1 - done) / done)}"
        total = f" of ~{self.seed_total}" if self.seed_total else ""
        rate = elapsed if elapsed > 0 else 1.0
        return (f"progress {self.stage}: seeds {seeds}{total}, accepted {accepted}, calls {calls}, "
                f"{seeds / rate:.2f} seeds/s, {calls / rate:.1f} calls/s, {eta} "
                f"(elapsed {_duration(elapsed)})")

    def _done_share(self, seeds: int) -> float | None:
        if self.seed_total:
            return min(seeds / self.seed_total, 1.0)
        if self.documents is not None:
            read, total = self.documents()
            if total:
                return min(read / total, 1.0)
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class LoggedProgress(Progress):
    """rich ``Progress`` that logs lines instead of drawing when its console is not a terminal.

    ``log``: what to report (None: a plain rich Progress). ``disable`` keeps its meaning: a
    disabled progress neither draws nor logs."""

    def __init__(self, *columns: Any, log: ProgressLog | None = None, **kwargs: Any):
        console: Console | None = kwargs.get("console")
        disabled = kwargs.get("disable", False)
        self._log = log if (log is not None and not disabled and console is not None
                            and not console.is_terminal) else None
        if self._log is not None:
            kwargs["disable"] = True  # no live display into a file: the lines say it
        super().__init__(*columns, **kwargs)
        self._log_console = console
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    @property
    def logging(self) -> bool:
        """True when this progress prints log lines (the console is not a terminal)."""
        return self._log is not None

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self._log is not None:
            with self._lock:
                name = self._tasks[task_id].description
            self._log.counts[name] += int(advance)

    def start(self) -> None:
        super().start()
        if self._log is not None and self._thread is None:
            self._started = time.monotonic()
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True, name="progress-log")
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._emit(final=True)
        super().stop()

    def _loop(self) -> None:
        while not self._stop.wait(self._log.interval_s):
            self._emit()

    def _emit(self, final: bool = False) -> None:
        self._log.lines += 1
        text = self._log.line(time.monotonic() - self._started, final=final)
        self._log_console.print(escape(text), soft_wrap=True, highlight=False)


def document_count(spec: str) -> int | None:
    """Input documents of a local folder/glob/file (a cheap listing, nothing read); None for a
    dataset input, whose size would need loading it."""
    from agentinstruct.generate.ingest import is_dataset_input, iter_files

    if is_dataset_input(spec):
        return None
    try:
        return sum(1 for _ in iter_files(spec))
    except (OSError, ValueError):
        return None


def generate_log(interval_s: float, input_spec: str, limit: int | None, documents_read: Callable[[], int],
                 calls: Callable[[], int]) -> ProgressLog:
    """The generate stage's log line: ETA from ``limit`` seeds, else from the documents read."""
    total_docs = document_count(input_spec)
    return ProgressLog("generate", interval_s, calls=calls, seed_total=limit,
                       documents=lambda: (documents_read(), total_docs))
