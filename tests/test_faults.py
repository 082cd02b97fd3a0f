"""Reliability under faults, against the fault-injecting OpenAI-compatible server
(``agentinstruct.testing.FaultServer``, real sockets on 127.0.0.1, no model).

A failed *call* is not a finished *unit*: units whose calls failed after every retry are not
journaled, the run says so (exit non-zero past ``max_failed_units``), and a rerun redoes them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml
from agentinstruct.generate.engine import UnitsFailed
from agentinstruct.generate.journal import Journal
from agentinstruct.generate.runner import load_generate_recipe, run_generate
from typer.testing import CliRunner

from agentinstruct.cache import CachedChatModel, CallCache
from agentinstruct.cli import EXIT_UNITS_FAILED, app
from agentinstruct.llm import LLMError, ModelSpec, create_model
from agentinstruct.testing import FAULT_KINDS, FaultConfig, FaultServer

DOCS = Path(__file__).parent.parent / "examples" / "docs"
MSG = [{"role": "user", "content": "hello"}]


def recipe_file(tmp_path: Path, base_url: str, out: Path, teacher: dict | None = None, **extra) -> Path:
    data = {
        "teacher": {"backend": "openai", "base_url": base_url, "model": "fake-teacher",
                    "max_concurrency": 4, "timeout_s": 5, "max_retries": 2,
                    "backoff_base_s": 0.01, "backoff_max_s": 0.05, **(teacher or {})},
        "input": str(DOCS),
        "output": str(out),
        "skills": ["reading_comprehension", "text_modification"],
        "limit": 3,
        "seeds_in_flight": 3,
        **extra,
    }
    path = tmp_path / f"recipe-{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_rows(out: Path) -> dict[str, list[dict]]:
    dd = datasets.load_from_disk(str(out / "dataset"))
    return {name: dd[name].to_list() for name in dd}


def journaled_units(out: Path) -> list[str]:
    path = out / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["unit"] for line in path.read_text().splitlines() if line.strip()]


def call(model, **kw):
    async def go():
        try:
            return await model.chat(MSG, **kw)
        finally:
            await model.aclose()
    return asyncio.run(go())


def spec(server: FaultServer, **kw) -> ModelSpec:
    base = dict(backend="openai", model="fake-model", base_url=server.base_url, timeout_s=2,
                max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)
    return ModelSpec(**{**base, **kw})


def test_server_endpoints_latency_and_schema_replies():
    """The three endpoints answer like OpenAI's, after lognormal latency, and a json_schema
    request gets a reply that validates."""
    import jsonschema
    import openai

    config = FaultConfig(latency_median_s=0.05, latency_sigma=0.3)
    schema = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
              "required": ["q", "n"], "additionalProperties": False}

    async def go(base_url):
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
        try:
            models = await client.models.list()
            legacy = await client.completions.create(model="fake", prompt="say hi", max_tokens=5)
            t0 = time.monotonic()
            chat = await client.chat.completions.create(
                model="fake", messages=MSG, response_format={
                    "type": "json_schema", "json_schema": {"name": "r", "schema": schema}})
            return models, legacy, chat, time.monotonic() - t0
        finally:
            await client.close()

    with FaultServer(config) as server:
        models, legacy, chat, took = asyncio.run(go(server.base_url))
        assert [m.id for m in models.data] == ["fake"]
        assert legacy.choices[0].text.startswith("Answer:")
        jsonschema.validate(json.loads(chat.choices[0].message.content), schema)
        assert took >= 0.02 and chat.usage.prompt_tokens > 0
        assert server.counters.by_endpoint == {"/v1/models": 1, "/v1/completions": 1,
                                               "/v1/chat/completions": 1}


def test_server_holds_a_thousand_concurrent_connections():
    """An asyncio server: 1,200 requests open at once, all answered (benchmarks need this)."""
    import aiohttp

    n = 1200

    async def go(url):
        body = {"model": "fake", "messages": MSG}
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:
            async def one():
                async with session.post(url + "/chat/completions", json=body) as resp:
                    return resp.status
            return await asyncio.gather(*(one() for _ in range(n)))

    with FaultServer(FaultConfig(latency_median_s=1.0, latency_sigma=0.01)) as server:
        statuses = asyncio.run(go(server.base_url))
        assert statuses == [200] * n
        assert server.counters.peak_in_flight >= 1000, server.counters.as_dict()


def test_html_200_is_a_retried_malformed_response():
    """A 200 whose body is an HTML page (a proxy) is retried, then a counted failure, no crash."""
    with FaultServer(FaultConfig(faults={"html": 1.0})) as server:
        model = create_model(spec(server))
        with pytest.raises(LLMError, match="malformed response.*not a chat completion.*<html>"):
            call(model)
        assert server.counters.by_outcome["html"] == 3  # 1 try + 2 retries
        assert model.stats.failures == 1 and model.stats.retries == 2
        server.config.faults = {}
        assert call(create_model(spec(server))).text.startswith("Answer:")


def test_dropped_connection_mid_body_is_retried():
    """Headers and half the body, then the connection closes: retried like any transport error."""
    with FaultServer(FaultConfig(faults={"drop": 1.0})) as server:
        with pytest.raises(LLMError, match="connection error"):
            call(create_model(spec(server)))
        assert server.counters.by_outcome["drop"] == 3


def test_refused_connection_is_reported_as_refused_not_timeout():
    with FaultServer() as server:
        server.down()
        with pytest.raises(LLMError) as err:
            call(create_model(spec(server)))
        assert "connection refused" in str(err.value) and "timed out" not in str(err.value)
        server.up()  # same port again
        assert call(create_model(spec(server))).text


def test_hung_request_is_reported_as_timeout():
    with FaultServer(FaultConfig(faults={"hang": 1.0}, hang_s=5)) as server:
        with pytest.raises(LLMError, match="timed out after 0.3 s"):
            call(create_model(spec(server, timeout_s=0.3, max_retries=0)))
        assert server.counters.by_outcome["hang"] == 1


def test_failed_calls_are_never_cached(tmp_path):
    with FaultServer(FaultConfig(faults={"server_error": 1.0})) as server:
        cache = CallCache(tmp_path / "cache.sqlite")
        model = CachedChatModel(create_model(spec(server, max_retries=0)), cache)
        with pytest.raises(LLMError, match="HTTP 50"):
            call(model)
        assert len(cache) == 0
        server.config.faults = {}
        assert call(CachedChatModel(create_model(spec(server)), cache)).text and len(cache) == 1


@pytest.mark.parametrize("status, counted", [(503, True), (400, False)])
def test_which_failures_leave_a_unit_unfinished(tmp_path, fake_server, status, counted):
    """Transient failures (5xx after the retries) are noted in the unit's scope; a request the
    server refuses as sent (HTTP 400, e.g. over the context window) is a real rejection, since
    sending it again gets the same answer. Scripted fake server."""
    from agentinstruct.llm.base import track_call_failures

    fake_server.script = [("status", (status, None))] * 3
    model = CachedChatModel(create_model(ModelSpec(
        backend="openai", model="m", base_url=fake_server.base_url, max_retries=0)),
        CallCache(tmp_path / "c.sqlite"))

    async def go():
        with track_call_failures() as failed:
            try:
                await model.chat(MSG)
            except LLMError:
                pass
        await model.aclose()
        return failed

    failed = asyncio.run(go())
    assert len(failed) == (1 if counted else 0)


def test_server_records_limit_violations():
    """The server's own checks fail when a client breaks the limits (so the run test can fail):
    a client with no limits of its own, against a server told RPM 2 and a concurrency cap 1."""
    config = FaultConfig(requests_per_minute=2, max_in_flight=1, limit_slack_requests=0,
                         latency_median_s=0.2, latency_sigma=0.01)
    with FaultServer(config) as server:
        model = create_model(spec(server, max_retries=0, max_concurrency=4))

        async def burst():
            try:
                return await model.chat_batch([[{"role": "user", "content": str(i)}] for i in range(4)])
            finally:
                await model.aclose()

        asyncio.run(burst())
        assert server.counters.violations["over_max_in_flight"] >= 1
        assert server.counters.peak_in_flight > 1


def test_every_fault_kind_at_20_percent_during_a_full_run(tmp_path):
    """Two skills with refinement on, 20% of requests faulty (all kinds, client timeout 1 s):
    every unit ends journaled or listed as failed, nothing is duplicated, and the server never
    saw more in flight, or more requests/tokens a minute, than the recipe allows."""
    with FaultServer() as clean:  # the units a fault-free run makes
        base = load_generate_recipe(recipe_file(tmp_path, clean.base_url, tmp_path / "base"))
        run_generate(base, show_progress=False)
        clean_requests, clean_tokens = clean.counters.requests, clean.counters.estimated_tokens
    expected_units = set(journaled_units(tmp_path / "base"))
    assert expected_units
    # allowances the faulty run (retries, re-asks) outgrows, so the client's limiters must act
    # (a token bucket holds a minute's allowance, so the allowance is set below the run's need)
    limits = {"max_concurrency": 4, "requests_per_minute": clean_requests * 0.97,
              "tokens_per_minute": clean_tokens * 0.97}
    config = FaultConfig.every_fault(0.20, max_in_flight=4, hang_s=10, retry_after_s=0.02,
                                     latency_median_s=0.01, latency_sigma=0.5,
                                     requests_per_minute=limits["requests_per_minute"],
                                     tokens_per_minute=limits["tokens_per_minute"], seed=7)
    out = tmp_path / "faulty"
    with FaultServer(config) as server:
        recipe = load_generate_recipe(recipe_file(
            tmp_path, server.base_url, out, teacher={**limits, "timeout_s": 1, "max_retries": 6},
            max_failed_units=1.0))
        try:
            summary = run_generate(recipe, show_progress=False)
        except UnitsFailed as exc:  # only if every unit failed: the assertions below say why
            summary = exc.summary
        seen = server.counters
    # every kind of fault happened, and the server's checks held
    assert all(seen.by_outcome[k] > 0 for k in FAULT_KINDS if k != "bad_schema"), seen.by_outcome
    assert seen.by_outcome["bad_schema"] + seen.by_outcome["length"] > 0
    assert seen.peak_in_flight <= 4 and not seen.violations, seen.as_dict()
    assert seen.peak_in_flight > 1, seen.as_dict()
    assert min(seen.limit_low_water.values()) < 0.05, seen.as_dict()  # a limit was reached
    # every unit is accounted for: done (journaled) or failed with a reason; never both
    done = journaled_units(out)
    assert len(done) == len(set(done)), "a unit was journaled twice"
    assert set(done).isdisjoint(summary.failed_units)
    assert set(done) | set(summary.failed_units) == expected_units
    assert all(summary.failed_units.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["failed_units"]["units"] == sorted(summary.failed_units)
    assert summary.llm["retries"] > 0
    # the dataset holds exactly the journaled rows, each once; rejections carry reasons
    rows = all_rows(out)
    journal_rows = [r for _, line in Journal(out / "records.jsonl", "").lines() for r in line["records"]]
    assert sum(len(v) for v in rows.values()) == len(journal_rows)
    keys = Counter(json.dumps(r["messages"], sort_keys=True) for s, v in rows.items()
                   if s != "rejected" for r in v)
    assert not [k for k, n in keys.items() if n > 1], "duplicate rows"
    assert all(r["reject_reason"] and r["reject_gate"] for r in rows["rejected"])
    assert not any(r["reject_reason"].startswith("call failed") for r in rows["rejected"])
    assert {r["seed_id"] for v in rows.values() for r in v} <= {u.split("/")[0] for u in expected_units}
    assert sum(summary.accepted(s) for s in ("rc", "text_modification")) > 0


@pytest.mark.parametrize("when", ["from_the_start", "mid_run"])
def test_outage_then_recovery_equals_an_uninterrupted_run(tmp_path, when):
    """The teacher refuses connections during the first run (from its start, or from half way
    through its requests): it exits non-zero saying so, with no failed unit marked done; the
    rerun with the server back completes every unit, and the dataset is row for row the one an
    uninterrupted run makes."""
    one_seed_at_a_time = {"seeds_in_flight": 1}  # mid-run: the first seeds finish before it
    with FaultServer() as clean:
        base = load_generate_recipe(recipe_file(tmp_path, clean.base_url, tmp_path / "base",
                                                **one_seed_at_a_time))
        run_generate(base, show_progress=False)
        clean_requests = clean.counters.requests
    expected = all_rows(tmp_path / "base")
    assert sum(len(v) for v in expected.values()) > 0

    out = tmp_path / "outage"
    down_after = clean_requests // 2 if when == "mid_run" else None
    with FaultServer(FaultConfig(down_after=down_after)) as server:
        path = recipe_file(tmp_path, server.base_url, out, **one_seed_at_a_time)
        if when == "from_the_start":
            server.down()
        cli = CliRunner()
        first = cli.invoke(app, ["generate", "--recipe", str(path), "--no-progress"])
        assert first.exit_code == EXIT_UNITS_FAILED, first.output
        text = " ".join(first.output.split())
        assert "units failed: top reason connection refused" in text and "rerun the same command" in text
        manifest = json.loads((out / "manifest.json").read_text())
        failed = manifest["failed_units"]
        assert set(journaled_units(out)).isdisjoint(failed["units"])
        if when == "from_the_start":
            assert journaled_units(out) == [] and failed["count"] == failed["of"] > 0
        else:  # the units finished before the outage are kept
            assert 0 < len(journaled_units(out)) < failed["of"] and failed["count"] > 0
        server.config.down_after = None

        server.up()
        second = cli.invoke(app, ["generate", "--recipe", str(path), "--no-progress"])
        assert second.exit_code == 0, second.output
    assert sorted(journaled_units(out)) == sorted(journaled_units(tmp_path / "base"))
    assert all_rows(out) == expected
    assert json.loads((out / "manifest.json").read_text())["failed_units"]["count"] == 0


def _about_the_moth(body: dict) -> str | None:
    """Every structured request about one document (examples/docs/field_guide.md) gets a 503;
    its plain-text calls (transformations) succeed and are cached."""
    about = "Copperwing" in json.dumps(body.get("messages"))
    return "server_error" if about and body.get("response_format") else None


@pytest.mark.parametrize("share, fails", [(0.05, True), (0.9, False)])
def test_failed_units_against_the_threshold(tmp_path, share, fails):
    """One document's units fail (2 of 4): past ``max_failed_units`` the run raises after
    exporting the rest, under it the run passes; either way the failed units are listed, not
    journaled, and a rerun with the server healthy finishes only them."""
    out = tmp_path / "some"
    with FaultServer(FaultConfig(rule=_about_the_moth)) as server:
        recipe = load_generate_recipe(recipe_file(tmp_path, server.base_url, out,
                                                  max_failed_units=share))
        if fails:
            with pytest.raises(UnitsFailed, match=r"2 of 4 units failed: top reason HTTP 50"):
                run_generate(recipe, show_progress=False)
            summary = json.loads((out / "manifest.json").read_text())["failed_units"]
            failed = summary["units"]
        else:
            failed = list(run_generate(recipe, show_progress=False).failed_units)
        assert len(failed) == 2 and set(journaled_units(out)).isdisjoint(failed)
        assert {r["seed_id"] for v in all_rows(out).values() for r in v}.isdisjoint(
            {u.split("/")[0] for u in failed})  # what was made is exported; not the failed units
        server.config.rule = None
        before = server.counters.requests
        again = run_generate(recipe, show_progress=False)
        assert not again.failed_units and again.resumed_units == 2
        assert set(failed) <= set(journaled_units(out)) and len(journaled_units(out)) == 4
        # the rerun paid only for what failed: the calls that had succeeded came from the cache
        assert again.llm["cache_hits"] > 0 and server.counters.requests > before
