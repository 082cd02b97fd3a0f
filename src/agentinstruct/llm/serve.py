"""An OpenAI-compatible ``/v1/chat/completions`` server over any :class:`ChatModel`.

Tools that speak only the OpenAI protocol (alpaca_eval's judge, lm-eval's
``local-chat-completions``) can then use the embedded model or any local backend. The server
runs on its own event loop in a background thread; requests arriving together are batched by
the backend as usual.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from agentinstruct.llm.base import ChatModel, LLMError


def make_app(model: ChatModel) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            messages = [{"role": m["role"], "content": m.get("content") or ""} for m in body["messages"]]
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": {"message": f"bad request: {exc}", "type": "invalid_request"}},
                                     status=400)
        try:
            out = await model.chat(
                messages,
                max_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 512),
                temperature=float(body.get("temperature") or 0.0),
                response_format=body.get("response_format"),
                seed=body.get("seed"),
            )
        except LLMError as exc:
            return web.json_response({"error": {"message": str(exc), "type": "server_error"}}, status=500)
        usage = {"prompt_tokens": out.usage.prompt_tokens, "completion_tokens": out.usage.completion_tokens,
                 "total_tokens": out.usage.prompt_tokens + out.usage.completion_tokens}
        return web.json_response({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", model.name),
            "choices": [{"index": 0, "finish_reason": out.finish_reason,
                         "message": {"role": "assistant", "content": out.text}}],
            "usage": usage,
        })

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model.name, "object": "model"}]})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


@contextmanager
def serve_in_thread(model: ChatModel, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``model`` until the block exits; yields the base URL (``http://host:port/v1``)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start() -> None:
        runner = web.AppRunner(make_app(model), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        state["runner"] = runner
        state["port"] = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the bound port

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            state["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="agentinstruct-serve")
    thread.start()
    ready.wait()
    if "error" in state:
        raise LLMError(f"cannot serve on {host}:{port}: {state['error']}")
    try:
        yield f"http://{host}:{state['port']}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
