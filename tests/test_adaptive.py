"""Concurrency control: the in-flight limit (fixed and adaptive AIMD), the connection pool, and
the engine admitting seeds by requests. The server tests use the fault-injecting server
(``agentinstruct.testing.FaultServer``, real sockets on 127.0.0.1, no model): it answers 429
above its concurrency cap, and the cap is changed mid-run."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from pydantic import ValidationError

from agentinstruct.llm import ModelSpec, create_model
from agentinstruct.llm.limits import AIMDSettings, ConcurrencyLimit
from agentinstruct.testing import FaultConfig, FaultServer

MSG = [{"role": "user", "content": "hi"}]


def test_fixed_limit_is_a_semaphore():
    """A fixed limit never lets more than its size in flight and hands slots out in order."""
    async def go():
        limit = ConcurrencyLimit(3)
        peak = 0

        async def job():
            nonlocal peak
            ticket = await limit.acquire()
            peak = max(peak, limit.in_flight)
            await asyncio.sleep(0.001)
            limit.release(ticket, overloaded=True)  # moves nothing when not adaptive

        await asyncio.gather(*(job() for _ in range(20)))
        return peak, limit.limit, limit.in_flight
    assert asyncio.run(go()) == (3, 3, 0)


def test_aimd_slow_start_then_one_cut_per_round_trip():
    """Slow start doubles per round trip; the first overload halves; overloads of requests sent
    before a cut do not cut again; after it the limit climbs back to the known cap."""
    lim = ConcurrencyLimit(64, AIMDSettings(start=4, minimum=1, maximum=64))

    def round_trip(overload_at: int | None = None) -> None:
        """One round trip of replies at full demand: every reply is followed by a new request."""
        tickets = [lim._epoch for _ in range(lim.limit)]
        for i, t in enumerate(tickets):
            lim.in_flight = lim.limit
            lim.release(t, overloaded=overload_at is not None and i >= overload_at)

    round_trip()
    assert lim.limit == 8
    round_trip()
    assert lim.limit == 16
    round_trip(overload_at=12)  # 12 replies grow it to 28, then 4 over the cap: one cut
    assert lim.limit == 14 and lim.cuts == 1 and lim.overloads == 4
    for _ in range(10):
        round_trip()
    assert 22 <= lim.limit <= 26  # + about 1 a round trip back toward the known cap (27)
    for _ in range(15):
        round_trip()
    assert lim.limit > 30  # past it, probing faster and faster: a risen cap is found


def test_aimd_does_not_grow_an_unused_limit():
    lim = ConcurrencyLimit(64, AIMDSettings(start=8, minimum=1, maximum=64))
    for _ in range(100):
        lim.in_flight = 1  # one request at a time: no sign the server would take more
        lim.release(lim._epoch)
    assert lim.limit == 8


def test_spec_auto_concurrency_fields():
    spec = ModelSpec(backend="openai", model="m", max_concurrency="auto", concurrency_limit=300)
    assert spec.adaptive_concurrency and spec.concurrency_ceiling() == 300
    assert ModelSpec(max_concurrency=12).concurrency_ceiling() == 12
    with pytest.raises(ValidationError, match="max_concurrency"):
        ModelSpec(max_concurrency=0)
    with pytest.raises(ValidationError, match="initial_concurrency"):
        ModelSpec(max_concurrency="auto", initial_concurrency=50, concurrency_limit=10)


def test_connection_pool_is_at_least_the_concurrency():
    """The SDK's pool holds 1,000 connections; a higher limit would wait on it, not the server."""
    async def go():
        model = create_model(ModelSpec(backend="openai", model="m", base_url="http://127.0.0.1:9/v1",
                                       max_concurrency=1500))
        client, _ = model._ensure_client()
        pool = client._client._transport.limits.max_connections
        await model.aclose()
        return pool
    assert asyncio.run(go()) >= 1500


def test_auto_concurrency_converges_and_follows_the_cap():
    """No hand-set limit: the client finds the server's cap (8), with few 429s once it has,
    climbs when the cap rises (16) and comes down when it falls (4)."""
    config = FaultConfig(latency_median_s=0.2, max_in_flight=8, retry_after_s=0.02, record_bodies=False)
    phases = [(8, 4.0), (16, 3.5), (4, 2.5)]

    async def go(server: FaultServer) -> list[dict]:
        model = create_model(ModelSpec(
            backend="openai", base_url=server.base_url, model="f", max_concurrency="auto",
            initial_concurrency=2, max_retries=50, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=10))
        stop = False

        async def worker() -> None:
            while not stop:
                await model.chat(MSG, max_tokens=8)

        workers = [asyncio.create_task(worker()) for _ in range(32)]
        seen = []
        for cap, seconds in phases:
            server.config.max_in_flight = cap
            start = time.monotonic()
            limits, base = [], None
            while time.monotonic() - start < seconds:
                await asyncio.sleep(0.05)
                limits.append(model.slots.limit)
                if base is None and time.monotonic() - start >= seconds / 2:
                    base = (server.counters.requests, server.counters.by_outcome["over_capacity"])
            requests = server.counters.requests - base[0]
            rejected = server.counters.by_outcome["over_capacity"] - base[1]
            seen.append({"cap": cap, "limits": limits, "late_429_share": rejected / max(requests, 1)})
        stop = True
        await asyncio.gather(*workers)
        await model.aclose()
        return seen

    with FaultServer(config) as server:
        first, risen, fallen = asyncio.run(go(server))
    half = len(first["limits"]) // 2
    assert 6 <= statistics.median(first["limits"][half:]) <= 9, first
    assert first["late_429_share"] < 0.08, first
    assert max(risen["limits"][-10:]) >= 14, risen
    assert fallen["limits"][-1] <= 5, fallen
    assert fallen["late_429_share"] < 0.15, fallen
