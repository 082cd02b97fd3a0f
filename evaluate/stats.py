"""95% intervals for every score, and the base-vs-tuned verdict.

A score computed from per-item values keeps them (``items``, with ``item_ids`` naming the items,
so two runs can be paired item by item) and gets its interval here at evaluation time:

- a proportion of 0/1 items (accuracy, a hallucination rate): exact binomial (Clopper-Pearson);
- a mean of per-item values (a win rate with draws as 0.5, a 1-5 quality): percentile bootstrap
  with a fixed seed;
- a score that comes only as value and standard error (an lm-eval group, the length-controlled
  win rate): a normal interval, labelled as such.

Two runs are compared by a paired bootstrap of the per-item difference when both scored the same
items, else by whether their intervals overlap (cruder, and said so in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import beta, norm

LEVEL = 0.95  # every interval in the results and the report
BOOTSTRAP_ITERS = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same items give the same interval on every run
_CHUNK = 2_000_000  # resampled values held in memory at once (rows x items)

EXACT = "exact binomial (Clopper-Pearson)"
BOOTSTRAP = f"percentile bootstrap ({BOOTSTRAP_ITERS:,} resamples, seed {BOOTSTRAP_SEED})"
NORMAL = "normal (value ± 1.96 stderr)"

BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference the interval can show"
PAIRED, OVERLAP = "paired bootstrap of the per-item difference", "overlap of the two 95% intervals"


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def _bootstrap_means(values: Sequence[float], iters: int, seed: int) -> np.ndarray:
    """Sorted means of ``iters`` resamples (with replacement) of ``values``."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(1, n))
    out = [x[rng.integers(0, n, size=(min(rows, iters - done), n))].mean(axis=1)
           for done in range(0, iters, rows)]
    return np.sort(np.concatenate(out))


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float]:
    a, iters = (1 - level) / 2, len(stats)
    return float(stats[int(a * iters)]), float(stats[min(iters - 1, int((1 - a) * iters))])


def bootstrap_mean(values: Sequence[float], iters: int = BOOTSTRAP_ITERS, seed: int = BOOTSTRAP_SEED,
                   level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (non-empty)."""
    return _percentiles(_bootstrap_means(values, iters, seed), level)


def paired_bootstrap(base: Sequence[float], tuned: Sequence[float], iters: int = BOOTSTRAP_ITERS,
                     seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean difference (tuned - base) and its percentile bootstrap interval over paired items."""
    if len(base) != len(tuned) or not base:
        raise ValueError(f"paired bootstrap needs the same non-empty items in both runs "
                         f"(got {len(base)} and {len(tuned)})")
    diffs = [t - b for b, t in zip(base, tuned)]
    lo, hi = _percentiles(_bootstrap_means(diffs, iters, seed), level)
    return sum(diffs) / len(diffs), lo, hi


def normal_interval(value: float, stderr: float, level: float = LEVEL) -> tuple[float, float]:
    z = float(norm.ppf(1 - (1 - level) / 2))
    return value - z * stderr, value + z * stderr


def per_item(values: Sequence[float], ids: Sequence[Any], kind: Literal["proportion", "mean"]) -> dict[str, Any]:
    """The fields a score computed from per-item values carries: n, ci95, ci_method, items, item_ids.
    ``proportion``: 0/1 items, exact binomial; ``mean``: any values, percentile bootstrap."""
    if len(values) != len(ids):
        raise ValueError(f"{len(values)} item values but {len(ids)} item ids")
    fields: dict[str, Any] = {"n": len(values), "items": list(values), "item_ids": list(ids)}
    if not values:
        return {**fields, "ci95": None, "ci_method": None}
    if kind == "proportion":
        if any(v not in (0, 1) for v in values):
            raise ValueError("a proportion needs 0/1 items")
        return {**fields, "ci95": list(clopper_pearson(int(sum(values)), len(values))), "ci_method": EXACT}
    return {**fields, "ci95": list(bootstrap_mean(values)), "ci_method": BOOTSTRAP}


def from_stderr(value: float, stderr: float | None) -> dict[str, Any]:
    """ci95/ci_method for a score that has only value and standard error (None: no interval)."""
    if stderr is None:
        return {"ci95": None, "ci_method": None}
    return {"ci95": list(normal_interval(value, stderr)), "ci_method": NORMAL}


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str


def items_of(score: dict[str, Any]) -> list[float] | None:
    """Per-item values of a score (held-out parts written before ``items`` existed keep ``correct``)."""
    items = score.get("items", score.get("correct"))
    return list(items) if isinstance(items, list) and items else None


def interval_of(score: dict[str, Any]) -> Interval | None:
    """The score's stored interval; for results written without one, computed from its per-item
    values or its standard error; None when it has neither."""
    ci = score.get("ci95")
    if isinstance(ci, list) and len(ci) == 2:
        return Interval(float(ci[0]), float(ci[1]), score.get("ci_method") or EXACT)
    items = items_of(score)
    if items:
        binary = all(v in (0, 1) for v in items) and score.get("metric") != "win_rate"
        fields = per_item(items, list(range(len(items))), "proportion" if binary else "mean")
        return Interval(*fields["ci95"], fields["ci_method"])
    if isinstance(score.get("stderr"), (int, float)):
        return Interval(*normal_interval(float(score["value"]), float(score["stderr"])), NORMAL)
    return None


def paired_items(base: dict[str, Any], tuned: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    """Both runs' per-item values on the items they share, aligned; None unless both have per-item
    values and score exactly the same items (by ``item_ids``, else by position and count)."""
    b, t = items_of(base), items_of(tuned)
    if b is None or t is None:
        return None
    b_ids, t_ids = base.get("item_ids"), tuned.get("item_ids")
    if b_ids is None or t_ids is None:
        return (b, t) if len(b) == len(t) and b_ids is None and t_ids is None else None
    if sorted(map(str, b_ids)) != sorted(map(str, t_ids)) or len(set(map(str, b_ids))) != len(b_ids):
        return None
    by_id = dict(zip(map(str, t_ids), t))
    return b, [by_id[str(i)] for i in b_ids]


@dataclass(frozen=True)
class Verdict:
    label: str  # BETTER, WORSE or NO_DIFFERENCE
    method: str  # PAIRED or OVERLAP
    ci: tuple[float, float] | None = None  # the paired difference's interval (tuned - base)


def verdict(base: dict[str, Any], tuned: dict[str, Any], lower_is_better: bool = False) -> Verdict | None:
    """Better / worse / no difference, for ``tuned`` against ``base``; None when neither per-item
    values on the same items nor two intervals are there to decide it."""
    pair = paired_items(base, tuned)
    if pair is not None:
        _, lo, hi = paired_bootstrap(*pair)
        up, down, ci, method = lo > 0, hi < 0, (lo, hi), PAIRED
    else:
        b, t = interval_of(base), interval_of(tuned)
        if b is None or t is None:
            return None
        up, down, ci, method = t.lo > b.hi, t.hi < b.lo, None, OVERLAP
    if not (up or down):
        return Verdict(NO_DIFFERENCE, method, ci)
    return Verdict(BETTER if up != lower_is_better else WORSE, method, ci)
