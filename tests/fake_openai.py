"""An OpenAI-compatible chat server on 127.0.0.1 for tests: real sockets, scripted faults.

``script`` is a list of actions consumed one per request (then ``default``):
  ("ok", None) reply via the responder; ("status", (code, retry_after)) an error status;
  ("sleep", seconds) hang before replying; ("malformed", None) a 200 with a broken body.
The default responder answers deterministically from the request, returning schema-valid JSON
when the request carries a json_schema response_format.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _words(seed: str, n: int) -> str:
    vocab = ["river", "stone", "bakery", "lantern", "moth", "oak", "harbour", "kiln", "glass",
             "eel", "storm", "bread", "valley", "survey", "council", "timber"]
    h = hashlib.sha256(seed.encode()).digest()
    return " ".join(vocab[b % len(vocab)] for b in h[:n])


def value_for_schema(schema: dict[str, Any], seed: str) -> Any:
    """A deterministic value that validates against a (simple) JSON schema."""
    if "enum" in schema:
        return schema["enum"][int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(schema["enum"])]
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


def default_responder(body: dict[str, Any]) -> str:
    seed = json.dumps(body["messages"], sort_keys=True)
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {}
    if "calls" in schema.get("properties", {}):  # tool use: a valid "no call" reply
        return json.dumps({"calls": [], "reason": "Which city do you mean? " + _words(seed, 3)})
    if fmt.get("type") == "json_schema":
        return json.dumps(value_for_schema(fmt["json_schema"]["schema"], seed))
    if fmt.get("type") == "json_object" and "schema" in fmt:  # llama.cpp server style
        return json.dumps(value_for_schema(fmt["schema"], seed))
    return "Answer: " + _words(seed, 12) + "."


class FakeOpenAIServer:
    def __init__(self, responder: Callable[[dict[str, Any]], str] = default_responder, delay: float = 0.0):
        self.responder = responder
        self.delay = delay
        self.script: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    action = server.script.pop(0) if server.script else ("ok", None)
                kind, arg = action
                if server.delay:
                    time.sleep(server.delay)
                if kind == "sleep":
                    time.sleep(arg)
                    kind = "ok"
                if kind == "status":
                    code, retry_after = arg
                    payload = json.dumps({"error": {"message": f"scripted {code}", "type": "x"}}).encode()
                    self.send_response(code)
                    if retry_after is not None:
                        self.send_header("Retry-After", str(retry_after))
                    self._send(payload)
                    return
                if kind == "malformed":
                    self.send_response(200)
                    self._send(b'{"id": "x", "choices": [ {"mess')
                    return
                text = server.responder(body)
                payload = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": max(1, len(text) // 4),
                              "total_tokens": 11 + max(1, len(text) // 4)},
                }
                self.send_response(200)
                self._send(json.dumps(payload).encode())

            def _send(self, payload: bytes) -> None:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":  # serve for manual runs: python tests/fake_openai.py
    with FakeOpenAIServer() as s:
        print(s.base_url, flush=True)
        threading.Event().wait()
