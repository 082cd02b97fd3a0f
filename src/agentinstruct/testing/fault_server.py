"""A fault-injecting OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

It answers ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` with scripted
content that satisfies a requested ``response_format`` JSON schema (so full generate flows run
through it), after a configurable lognormal latency, and injects faults at given rates:

``rate_limit``   429 with ``Retry-After``
``server_error`` 500 / 502 / 503
``hang``         no reply for ``hang_s`` (past the client's timeout)
``drop``         headers and half the body, then the connection is closed
``malformed``    a 200 whose JSON body is cut short
``html``         a 200 with an HTML page (what a misconfigured proxy sends)
``length``       the reply cut in half with ``finish_reason: length``
``bad_schema``   a JSON reply that breaks the requested schema

Above ``max_in_flight`` concurrent requests, or past the requests/tokens per minute it is told
the client may use, it answers 429 and records a violation, so a test can assert that the
client's own limits held. Every request is counted. It is an asyncio (aiohttp) server on its own
event loop in a background thread, so it holds thousands of open connections at once.
``down()`` closes the listening socket and every open connection (new connections are refused)
and ``up()`` listens again on the same port: an outage and its recovery.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agentinstruct.llm.limits import estimate_tokens

FAULT_KINDS = ("rate_limit", "server_error", "hang", "drop", "malformed", "html", "length", "bad_schema")
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"

# a responder's reply: the text, or a whole assistant message ({"content", "tool_calls"}) for
# scripted native tool calls (see :func:`tool_calling_responder`)
Reply = str | dict[str, Any]
Responder = Callable[[dict[str, Any]], Reply]


def _words(seed: str, n: int) -> str:
    vocab = ["river", "stone", "bakery", "lantern", "moth", "oak", "harbour", "kiln", "glass",
             "eel", "storm", "bread", "valley", "survey", "council", "timber"]
    h = hashlib.sha256(seed.encode()).digest()
    return " ".join(vocab[b % len(vocab)] for b in h[:n])


def value_for_schema(schema: dict[str, Any], seed: str) -> Any:
    """A deterministic value that validates against a (simple) JSON schema."""
    if "enum" in schema:
        return schema["enum"][int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    if schema.get("anyOf"):  # the first alternative
        return value_for_schema(schema["anyOf"][0], seed)
    kind = schema.get("type")
    if kind == "object":
        return {k: value_for_schema(v, seed + k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(schema.get("minItems", 2), 1)
        n = min(n, schema.get("maxItems", n))
        return [value_for_schema(schema.get("items", {"type": "string"}), f"{seed}{i}") for i in range(n)]
    if kind == "boolean":
        return True
    if kind == "integer":
        return max(schema.get("minimum", 7), min(schema.get("maximum", 7), 7))
    if kind == "number":
        return 7.0
    return _words(seed, 6).capitalize() + "?"


def requested_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a chat request asks for (OpenAI ``json_schema`` or llama.cpp style)."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") == "json_object" and "schema" in fmt:
        return fmt["schema"]
    return None


def default_responder(body: dict[str, Any]) -> str:
    """A deterministic reply to a chat request: schema-valid JSON when a schema is requested."""
    seed = json.dumps(body["messages"], sort_keys=True)
    schema = requested_schema(body)
    if schema is None:
        return "Answer: " + _words(seed, 12) + "."
    if "calls" in schema.get("properties", {}):  # tool use: a valid "no call" reply
        return json.dumps({"calls": [], "reason": "Which city do you mean? " + _words(seed, 3)})
    return json.dumps(value_for_schema(schema, seed))


def tool_call_reply(calls: list[tuple[str, dict[str, Any] | str]], content: str = "") -> dict[str, Any]:
    """An assistant message calling ``calls`` (name, arguments: an object, or raw text to script
    malformed arguments), OpenAI format, ids ``call_<i>``."""
    return {"content": content, "tool_calls": [
        {"id": f"call_{i}", "type": "function",
         "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]}


def tool_calling_responder(
    decide: Callable[[dict[str, Any]], list[tuple[str, dict[str, Any] | str]] | None],
    fallback: Responder = default_responder,
) -> Responder:
    """A responder hook for native tool calling: a request that offers ``tools`` (and does not
    forbid them with ``tool_choice: "none"``) is answered with the calls ``decide(body)`` returns
    (None or []: answer as ``fallback`` does); other requests go to ``fallback`` unchanged."""

    def respond(body: dict[str, Any]) -> Reply:
        calls = decide(body) if body.get("tools") and body.get("tool_choice") != "none" else None
        return tool_call_reply(calls) if calls else fallback(body)

    return respond


def reply_message(reply: Reply) -> tuple[dict[str, Any], str]:
    """The assistant message of a chat completion for ``reply``, and its finish reason."""
    if isinstance(reply, str):
        return {"role": "assistant", "content": reply}, "stop"
    message = {"role": "assistant", "content": reply.get("content") or None}
    if reply.get("tool_calls"):
        message["tool_calls"] = reply["tool_calls"]
        return message, "tool_calls"
    message["content"] = reply.get("content") or ""
    return message, "stop"


def reply_text(reply: Reply) -> str:
    return reply if isinstance(reply, str) else json.dumps(reply)


@dataclass
class FaultConfig:
    """What the server does. Rates are probabilities per request, drawn from an RNG seeded by
    (``seed``, request number), so a given request count always meets the same faults."""

    faults: dict[str, float] = field(default_factory=dict)
    latency_median_s: float = 0.0
    latency_sigma: float = 0.0
    max_in_flight: int | None = None  # above it: 429 and a recorded violation
    requests_per_minute: float | None = None  # what the client may use (token bucket, as OpenAI)
    tokens_per_minute: float | None = None
    limit_slack_requests: float = 2.0  # arrival jitter tolerated before a rate violation
    retry_after_s: float = 0.05
    hang_s: float = 30.0
    seed: int = 0
    model: str = "fake"
    responder: Responder = default_responder
    # a fault chosen from the request itself, before the random draw: e.g. every request
    # about one document fails, so a test knows which units meet it
    rule: Callable[[dict[str, Any]], str | None] | None = None
    down_after: int | None = None  # an outage mid-run: after this many requests, go down
    record_bodies: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {list(FAULT_KINDS)}")
        if any(p < 0 for p in self.faults.values()) or sum(self.faults.values()) > 1:
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1, got {self.faults}")

    @classmethod
    def every_fault(cls, total: float, **kw: Any) -> FaultConfig:
        """``total`` of the requests faulty, split evenly over every kind."""
        return cls(faults={k: total / len(FAULT_KINDS) for k in FAULT_KINDS}, **kw)


@dataclass
class ServerCounters:
    """What the server saw. ``violations`` counts breaches of the client's contract."""

    requests: int = 0
    estimated_tokens: int = 0  # what the requests cost by the client's estimate (TPM)
    by_endpoint: Counter = field(default_factory=Counter)
    by_outcome: Counter = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0
    violations: Counter = field(default_factory=Counter)
    # the lowest share of each rate bucket left (0: the client used its whole allowance)
    limit_low_water: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "estimated_tokens": self.estimated_tokens,
                "by_endpoint": dict(self.by_endpoint),
                "by_outcome": dict(self.by_outcome), "peak_in_flight": self.peak_in_flight,
                "violations": dict(self.violations), "limit_low_water": dict(self.limit_low_water)}


class _Bucket:
    """Token bucket with the client's semantics (capacity = the per-minute rate, starts full)."""

    def __init__(self, per_minute: float):
        self.rate, self.level, self.last = per_minute, float(per_minute), time.monotonic()
        self.low_water = 1.0

    def take(self, amount: float, slack: float) -> bool:
        now = time.monotonic()
        self.level = min(self.rate, self.level + (now - self.last) * self.rate / 60.0)
        self.last = now
        if self.level - amount < -slack:
            return False
        self.level -= amount
        self.low_water = min(self.low_water, self.level / self.rate)
        return True


class FaultServer:
    """``with FaultServer(FaultConfig(...)) as server: ... server.base_url ... server.counters``."""

    def __init__(self, config: FaultConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.config = config or FaultConfig()
        self.host, self.port = host, port
        self.counters = ServerCounters()
        self.requests: list[dict[str, Any]] = []
        self._rpm = _Bucket(self.config.requests_per_minute) if self.config.requests_per_minute else None
        self._tpm = _Bucket(self.config.tokens_per_minute) if self.config.tokens_per_minute else None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-server")
        self._runner: web.AppRunner | None = None
        self.is_up = False

    # -- lifecycle (called from the test's thread) ------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> FaultServer:
        self._thread.start()
        self.up()
        return self

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def up(self) -> None:
        """Listen (again, on the same port)."""
        if not self.is_up:
            self._call(self._up())

    def down(self) -> None:
        """An outage: stop listening and close every open connection; connects are refused."""
        if self.is_up:
            self._call(self._down())

    def stop(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _up(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a client that gave up (timeout) no longer counts as in flight
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, backlog=4096)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner, self.is_up = runner, True

    async def _down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner, self.is_up = None, False

    # -- request handling (on the server's loop) --------------------------------------------
    def _fault_for(self, n: int) -> str | None:
        u = random.Random(f"{self.config.seed}:{n}").random()
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += self.config.faults.get(kind, 0.0)
            if u < acc:
                return kind
        return None

    def _latency(self, n: int) -> float:
        if self.config.latency_median_s <= 0:
            return 0.0
        rng = random.Random(f"latency:{self.config.seed}:{n}")
        return rng.lognormvariate(math.log(self.config.latency_median_s), self.config.latency_sigma)

    def _error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        return web.json_response({"error": {"message": message, "type": "fault_server"}},
                                 status=status, headers=headers)

    def _within_limits(self, body: dict[str, Any]) -> str | None:
        """The limit this request breaks, if any (recorded as a violation)."""
        slack = self.config.limit_slack_requests
        self.counters.estimated_tokens += self._cost(body)
        if self._rpm is not None and not self._rpm.take(1, slack):
            return "over_rpm"
        if self._tpm is not None:
            cost = min(self._cost(body), int(self._tpm.rate))  # the client caps it the same way
            if not self._tpm.take(cost, slack * cost):
                return "over_tpm"
        for name, bucket in (("rpm", self._rpm), ("tpm", self._tpm)):
            if bucket is not None:
                self.counters.limit_low_water[name] = round(bucket.low_water, 4)
        return None

    @staticmethod
    def _cost(body: dict[str, Any]) -> int:
        """A request's tokens as the client's limiter estimates them (prompt + max_tokens)."""
        messages = body.get("messages") or [{"content": str(body.get("prompt", ""))}]
        prompt = sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
        return prompt + int(body.get("max_tokens") or 0)

    async def _models(self, request: web.Request) -> web.Response:
        self.counters.requests += 1
        self.counters.by_endpoint["/v1/models"] += 1
        self.counters.by_outcome["ok"] += 1
        return web.json_response({"object": "list", "data": [
            {"id": self.config.model, "object": "model", "created": 0, "owned_by": "fault-server"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        c = self.counters
        c.requests += 1
        n = c.requests
        c.by_endpoint[request.path] += 1
        c.in_flight += 1
        c.peak_in_flight = max(c.peak_in_flight, c.in_flight)
        down_after = self.config.down_after
        if down_after is not None and n >= down_after:
            if n == down_after:  # this one is answered; the listener closes behind it
                self._loop.create_task(self._down())
            else:  # arrived before the listener closed: treated as refused
                c.in_flight -= 1
                c.by_outcome["refused"] += 1
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=503)
        try:
            outcome, response = await self._respond(request, n, chat)
            if outcome:  # a hang is counted when it starts: the client usually gives up first
                c.by_outcome[outcome] += 1
            return response
        finally:
            c.in_flight -= 1

    async def _respond(self, request: web.Request, n: int,
                       chat: bool) -> tuple[str | None, web.StreamResponse]:
        cfg = self.config
        try:
            body = await request.json()
        except ValueError:
            return "bad_request", self._error(400, "request body is not JSON")
        if cfg.record_bodies:
            self.requests.append(body)
        if cfg.max_in_flight is not None and self.counters.in_flight > cfg.max_in_flight:
            self.counters.violations["over_max_in_flight"] += 1
            return "over_capacity", self._error(429, "too many requests in flight", cfg.retry_after_s)
        broken = self._within_limits(body)
        if broken:
            self.counters.violations[broken] += 1
            return broken, self._error(429, f"rate limit: {broken}", cfg.retry_after_s)
        delay = self._latency(n)
        if delay:
            await asyncio.sleep(delay)
        fault = (cfg.rule(body) if cfg.rule else None) or self._fault_for(n)
        if fault == "rate_limit":
            return fault, self._error(429, "slow down", cfg.retry_after_s)
        if fault == "server_error":
            code = (500, 502, 503)[n % 3]
            return fault, self._error(code, f"injected {code}")
        counted = False
        if fault == "hang":
            self.counters.by_outcome["hang"] += 1
            counted = True
            await asyncio.sleep(cfg.hang_s)  # cancelled when the client gives up
            fault = None
        if fault == "html":
            return fault, web.Response(status=200, body=HTML_PAGE, content_type="text/html")
        if fault == "malformed":
            return fault, web.Response(status=200, body=b'{"id": "x", "choices": [ {"mess',
                                       content_type="application/json")
        schema = requested_schema(body) if chat else None
        reply = cfg.responder(body) if chat else default_responder(
            {"messages": [{"role": "user", "content": str(body.get("prompt", ""))}]})
        if not isinstance(reply, str):  # a whole message (scripted tool calls): faults leave it be
            message, finish = reply_message(reply)
            payload = json.dumps(self._completion(body, reply_text(reply), finish, chat, message)).encode()
            if fault == "drop":
                return fault, await self._drop(request, payload)
            outcome = None if counted else fault or "ok"
            return outcome, web.Response(status=200, body=payload, content_type="application/json")
        text = reply
        finish = "stop"
        if fault == "length":
            text, finish = text[: max(1, len(text) // 2)], "length"
        elif fault == "bad_schema" and schema is not None:
            text = json.dumps({"unexpected": "a reply that ignores the schema"})
        elif fault == "bad_schema":
            fault = None  # nothing to break in a plain-text request
        payload = json.dumps(self._completion(body, text, finish, chat)).encode()
        if fault == "drop":
            return fault, await self._drop(request, payload)
        outcome = None if counted else fault or "ok"
        return outcome, web.Response(status=200, body=payload, content_type="application/json")

    def _completion(self, body: dict[str, Any], text: str, finish: str, chat: bool,
                    message: dict[str, Any] | None = None) -> dict[str, Any]:
        messages = body.get("messages") or [{"content": str(body.get("prompt", ""))}]
        prompt_tokens = sum(estimate_tokens(str(m.get("content") or "")) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": estimate_tokens(text),
                 "total_tokens": prompt_tokens + estimate_tokens(text)}
        if chat:
            choice = {"index": 0, "finish_reason": finish, "logprobs": None,
                      "message": message or {"role": "assistant", "content": text}}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "finish_reason": finish, "logprobs": None, "text": text}
            kind = "text_completion"
        return {"id": "cmpl-fault-server", "object": kind, "created": int(time.time()),
                "model": body.get("model", self.config.model), "choices": [choice], "usage": usage}

    async def _drop(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        """Promise the whole body, send half, close the connection."""
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = len(payload)
        await resp.prepare(request)
        await resp.write(payload[: len(payload) // 2])
        if request.transport is not None:
            request.transport.close()
        return resp


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted: ``python -m agentinstruct.testing --faults 0.2``."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--faults", type=float, default=0.0, help="share of faulty requests, all kinds")
    ap.add_argument("--latency", type=float, default=0.0, help="median latency in seconds")
    ap.add_argument("--sigma", type=float, default=0.5, help="lognormal sigma of the latency")
    ap.add_argument("--max-in-flight", type=int, default=None)
    args = ap.parse_args(argv)
    config = FaultConfig.every_fault(args.faults, latency_median_s=args.latency,
                                     latency_sigma=args.sigma, max_in_flight=args.max_in_flight,
                                     record_bodies=False)
    with FaultServer(config, port=args.port) as server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(json.dumps(server.counters.as_dict()), flush=True)
