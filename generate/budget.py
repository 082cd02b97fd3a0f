"""The recipe's budget (``budget: {max_cost, max_tokens}``) and what calls cost.

The engine asks :meth:`BudgetGuard.reached` before it starts each seed; once a limit is
reached no new seed starts, the seeds in flight finish, and the run exports what it made (the
summary, manifest and card say the budget stopped it). Spending is what this invocation's
models report (``LLMStats``): calls answered from the call cache cost nothing, so a rerun of a
stopped run spends its budget again on the seeds still to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentinstruct.generate.config import Budget, Price

from agentinstruct.llm import ChatModel


@dataclass(frozen=True)
class Spend:
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None: a model the run called has no price

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def token_cost(prices: Mapping[str, Price], model: str, prompt_tokens: float,
               completion_tokens: float) -> float | None:
    """Cost of these tokens on ``model``, or None when the price table has no entry for it."""
    price = prices.get(model)
    if price is None:
        return None
    return (prompt_tokens * price.input + completion_tokens * price.output) / 1_000_000


def spend(models: Iterable[ChatModel], prices: Mapping[str, Price]) -> Spend:
    """Tokens and cost of every model's calls so far (models sharing counters counted once)."""
    seen: set[int] = set()
    prompt = completion = 0
    cost: float | None = 0.0
    for m in models:
        if id(m.stats) in seen:
            continue
        seen.add(id(m.stats))
        prompt += m.stats.prompt_tokens
        completion += m.stats.completion_tokens
        part = token_cost(prices, m.name, m.stats.prompt_tokens, m.stats.completion_tokens)
        cost = None if cost is None or part is None else cost + part
    return Spend(prompt, completion, cost)


class BudgetGuard:
    """Consulted before each seed is started; latches the first limit it sees reached."""

    def __init__(self, budget: Budget, prices: Mapping[str, Price], models: list[ChatModel]):
        self.budget = budget
        self.prices = prices
        self.models = models
        self.stopped: str | None = None  # the line saying which limit stopped the run
        self.skipped_units = 0  # units not started because of it

    def reached(self) -> bool:
        if self.stopped is not None:
            return True
        b = self.budget
        if b.max_cost is None and b.max_tokens is None:
            return False
        s = spend(self.models, self.prices)
        if b.max_tokens is not None and s.tokens >= b.max_tokens:
            self.stopped = f"stopped at budget: {s.tokens} tokens used, max_tokens {b.max_tokens}"
        elif b.max_cost is not None and s.cost is not None and s.cost >= b.max_cost:
            self.stopped = f"stopped at budget: cost {s.cost:.4f} reached max_cost {b.max_cost}"
        return self.stopped is not None

    def skip(self, units: int) -> None:
        self.skipped_units += units

    def report(self) -> dict[str, Any]:
        s = spend(self.models, self.prices)
        return {"max_cost": self.budget.max_cost, "max_tokens": self.budget.max_tokens,
                "stopped": self.stopped, "units_not_started": self.skipped_units,
                "tokens": s.tokens, "cost": None if s.cost is None else round(s.cost, 6)}
