"""Client-side limits: requests per minute and tokens per minute as token buckets, and the
number of requests in flight (fixed, or found at run time by AIMD)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass


class RateLimiter:
    """Two token buckets refilled continuously; ``acquire`` waits until both allow a request."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._req = float(requests_per_minute or 0)
        self._tok = float(tokens_per_minute or 0)
        self._last = time.monotonic()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        if self.rpm:
            self._req = min(self.rpm, self._req + elapsed * self.rpm / 60.0)
        if self.tpm:
            self._tok = min(self.tpm, self._tok + elapsed * self.tpm / 60.0)

    async def acquire(self, tokens: int = 0) -> None:
        if not self.rpm and not self.tpm:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # FIFO: one waiter refills at a time
            tokens = min(tokens, int(self.tpm)) if self.tpm else tokens
            while True:
                self._refill()
                wait = 0.0
                if self.rpm and self._req < 1:
                    wait = max(wait, (1 - self._req) * 60.0 / self.rpm)
                if self.tpm and self._tok < tokens:
                    wait = max(wait, (tokens - self._tok) * 60.0 / self.tpm)
                if wait <= 0:
                    if self.rpm:
                        self._req -= 1
                    if self.tpm:
                        self._tok -= tokens
                    return
                await asyncio.sleep(wait)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**attempt))."""
    rng = rng or random
    return rng.uniform(0, min(cap, base * (2**attempt)))


def estimate_tokens(text: str) -> int:
    """Cheap token estimate for rate limiting (about 4 characters a token)."""
    return max(1, len(text) // 4)


@dataclass(frozen=True)
class AIMDSettings:
    """How an adaptive limit moves (additive increase, multiplicative decrease).

    Slow start doubles the limit every round trip until the first overload, which halves it.
    After that the limit climbs back by one request per round trip up to where the last
    overload happened (the cap it knows); past that point it probes, slowly at first (few 429s
    where the cap has not moved) and faster every round trip (``probe_gain``, 2 x, 3 x, ...
    requests per round trip), so a cap that rose is found in a few round trips. An overload
    (429, timeout) cuts the limit to ``backoff`` of itself, at most once per round trip, so
    one burst of 429s is one cut."""

    start: int
    minimum: int
    maximum: int
    backoff: float = 0.85
    probe_gain: float = 0.25
    # grow only while the limit is used: in flight >= this share of it (an idle limit that kept
    # growing would overshoot the server when the load comes back)
    utilisation: float = 0.8


class ConcurrencyLimit:
    """Bounds the requests in flight, like a semaphore whose size may change (adaptive mode).

    ``acquire`` returns a ticket; ``release(ticket, overloaded=..., succeeded=...)`` reports
    how the request went. ``demand`` (in flight plus waiting) is what the model is asked for.
    """

    def __init__(self, limit: int, adaptive: AIMDSettings | None = None):
        self.adaptive = adaptive
        self._limit = float(adaptive.start if adaptive else limit)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.overloads = 0
        self.cuts = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._slow_start = adaptive is not None
        self._epoch = 0  # bumped by every cut: overloads of requests sent before it are ignored
        self._known_cap = float("inf")  # the limit at the last cut
        self._window = 0  # successes in this round trip
        self._probe = 0.0  # requests added per round trip above the known cap

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def demand(self) -> int:
        """Requests asked of this model and not answered yet (in flight or waiting for a slot)."""
        return self.in_flight + len(self._waiters)

    async def acquire(self) -> int:
        if self.in_flight >= self.limit or self._waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self.in_flight -= 1  # handed a slot as it was cancelled: pass it on
                    self._wake()
                else:
                    try:
                        self._waiters.remove(fut)
                    except ValueError:
                        pass
                raise
        else:
            self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self._epoch

    def release(self, ticket: int = 0, *, overloaded: bool = False, succeeded: bool = True) -> None:
        """One request is over. ``overloaded``: the server said it was too busy (429) or did
        not answer in time; ``succeeded``: a reply came back (other failures move nothing)."""
        if self.adaptive is not None:
            if overloaded:
                self._on_overload(ticket)
            elif succeeded:
                self._on_success()
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def _on_success(self) -> None:
        a = self.adaptive
        assert a is not None
        if self.in_flight < a.utilisation * self._limit:
            return  # not using the limit: no evidence that more would be served
        if self._slow_start:
            self._limit = min(a.maximum, self._limit + 1)
            return
        above = self._limit >= self._known_cap
        self._limit = min(a.maximum, self._limit + (self._probe if above else 1.0) / self._limit)
        self._window += 1
        if self._window >= self._limit:  # about one round trip of replies
            self._window = 0
            self._probe = self._probe + a.probe_gain if above else 0.0

    def _on_overload(self, ticket: int) -> None:
        a = self.adaptive
        assert a is not None
        self.overloads += 1
        if ticket != self._epoch:
            return  # sent before the last cut: that cut already answered this overload
        self._epoch += 1
        self.cuts += 1
        self._known_cap = max(float(a.minimum), self._limit - 1)  # the last limit that was served
        factor = 0.5 if self._slow_start else a.backoff
        self._slow_start = False
        self._limit = max(a.minimum, self._limit * factor)
        self._window, self._probe = 0, 0.0
