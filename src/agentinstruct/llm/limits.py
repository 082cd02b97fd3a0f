"""Client-side rate limits: requests per minute and tokens per minute as token buckets."""

from __future__ import annotations

import asyncio
import random
import time


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
