"""An OpenAI-compatible chat server on 127.0.0.1 for tests: real sockets, scripted faults.

``script`` is a list of actions consumed one per request (then ``default``):
  ("ok", None) reply via the responder; ("status", (code, retry_after)) an error status;
  ("sleep", seconds) hang before replying; ("malformed", None) a 200 with a broken body.
The default responder answers deterministically from the request, returning schema-valid JSON
when the request carries a json_schema response_format. A responder may also return a whole
assistant message with ``tool_calls`` (``tool_calling_responder`` scripts native tool calls). For faults at rates, latency, limits
and outages, use :class:`agentinstruct.testing.FaultServer` (an asyncio server).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# the scripted content lives in the package, shared with the fault-injecting server
from agentinstruct.testing.fault_server import (  # noqa: F401
    Responder,
    default_responder,
    reply_message,
    reply_text,
    tool_call_reply,
    tool_calling_responder,
    value_for_schema,
)


class FakeOpenAIServer:
    def __init__(self, responder: Responder = default_responder, delay: float = 0.0):
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
                reply = server.responder(body)  # text, or a message with scripted tool_calls
                message, finish = reply_message(reply)
                text = reply_text(reply)
                payload = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": finish, "message": message}],
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
