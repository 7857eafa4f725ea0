"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests and LLM-latency benchmarks.

In tests (also the `openai_server` fixture):

    with ScriptedOpenAIServer([error(429, {"Retry-After-Ms": "1"}), answer("hello")]) as server:
        client = OpenAIClient(model="m", base_url=server.base_url)
        ...
        server.requests  # every request: method, path, headers, JSON body

A step answers one request: `answer(...)`, `error(status, headers)`, `empty()` (no choices),
`invalid_json()` (a truncated body), `dropped()` (connection closed, nothing sent); each takes a
`delay` in seconds before it answers. Instead of a list, a callable `(request_json) -> Step` can
decide. With the list used up, requests get HTTP 500 with `x-should-retry: false` (a test that
made more calls than it scripted fails loudly) unless a `default` step is given.

Standalone, for benchmarks (prints its base URL on the first line, serves until Ctrl-C or SIGTERM):

    python tests/openai_server.py --port 0 --delay 2.5 --script answers.jsonl

where each line of answers.jsonl is a JSON string (the answer) or an object of Step fields
(`{"content": "...", "delay": 1.0}`, `{"status": 503}`, ...); the script is used in a cycle.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit


@dataclass
class Step:
    """How the server answers one request."""

    content: str | None = "ok"  # the assistant's answer (None: a null content)
    prompt_tokens: int | None = None  # None: words in the request's messages
    completion_tokens: int | None = None  # None: words in the answer
    finish_reason: str = "stop"
    status: int | None = None  # an HTTP error status instead of an answer
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    delay: float = 0.0  # seconds to wait before answering
    empty_choices: bool = False  # answer 200 with "choices": []
    invalid_json: bool = False  # answer 200 with a truncated JSON body
    drop: bool = False  # close the connection without a response
    include_usage: bool = True  # put a "usage" block in the answer

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> Step:
        """A step from a script line: a string is the answer; a dict names Step fields."""
        if isinstance(data, str):
            return cls(content=data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown step fields {unknown}; known: {sorted(known)}")
        return cls(**data)


def answer(content: str | None = "ok", *, prompt_tokens: int | None = None, completion_tokens: int | None = None,
           finish_reason: str = "stop", delay: float = 0.0, include_usage: bool = True) -> Step:
    """A normal chat completion."""
    return Step(content=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                finish_reason=finish_reason, delay=delay, include_usage=include_usage)


def error(status: int, headers: dict[str, str] | None = None, *, delay: float = 0.0) -> Step:
    """An HTTP error with an OpenAI-style error body."""
    return Step(status=status, headers=dict(headers or {}), delay=delay)


def empty(*, delay: float = 0.0) -> Step:
    """A 200 answer whose `choices` list is empty."""
    return Step(empty_choices=True, delay=delay)


def invalid_json(*, delay: float = 0.0) -> Step:
    """A 200 answer whose JSON body stops half-way."""
    return Step(invalid_json=True, delay=delay)


def dropped(*, delay: float = 0.0) -> Step:
    """The connection is closed without any response."""
    return Step(drop=True, delay=delay)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # header names lower-cased
    json: Any  # the parsed body (None for a GET or a body that is not JSON)


_EXHAUSTED = Step(status=500, headers={"x-should-retry": "false"}, content="the scripted server has no steps left")


class ScriptedOpenAIServer:
    """Serves POST /v1/chat/completions from a script, GET /v1/models, and records every request.

    Args:
        script: steps answered in order, or a callable `(request_json) -> Step`.
        default: the step for requests once the list is used up (None: HTTP 500, not retried).
        cycle: use the list over and over (the standalone benchmark mode).
        model_name: the model listed by GET /v1/models (answers echo the requested model).
        port: 0 for any free port.
    """

    def __init__(
        self,
        script: Iterable[Step] | Callable[[Any], Step] | None = None,
        *,
        default: Step | None = None,
        cycle: bool = False,
        model_name: str = "scripted-model",
        port: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._handler_fn: Callable[[Any], Step] | None = None
        self._steps: collections.deque[Step] = collections.deque()
        self._cycle: Iterable[Step] | None = None
        self.default = default
        self.model_name = model_name
        self.requests: list[RecordedRequest] = []
        self._counter = itertools.count(1)
        if callable(script):
            self._handler_fn = script
        elif script is not None:
            steps = list(script)
            if cycle:
                if not steps:
                    raise ValueError("cycle=True needs at least one step")
                self._cycle = itertools.cycle(steps)
            else:
                self._steps.extend(steps)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.scripted = self  # type: ignore[attr-defined]
        self._closed = False
        # a short poll interval so that close() returns at once
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    # --- scripting and inspection

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The base URL an OpenAI client is given: http://127.0.0.1:PORT/v1"""
        return self.url + "/v1"

    def push(self, *steps: Step) -> None:
        """Add steps to the end of the script."""
        with self._lock:
            self._steps.extend(steps)

    def set_handler(self, fn: Callable[[Any], Step] | None) -> None:
        """Decide every answer with `fn(request_json) -> Step` (None: back to the list)."""
        with self._lock:
            self._handler_fn = fn

    def chat_requests(self) -> list[RecordedRequest]:
        """The requests made to /v1/chat/completions, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def steps_left(self) -> int:
        with self._lock:
            return len(self._steps)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing.set()  # wakes handlers waiting out a delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Block until interrupted (the standalone mode)."""
        try:
            while not self._closing.wait(0.5):
                pass
        finally:
            self.close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- used by the handler

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_step(self, body: Any) -> Step:
        with self._lock:
            fn = self._handler_fn
            if fn is None:
                if self._cycle is not None:
                    return next(self._cycle)  # type: ignore[call-overload]
                if self._steps:
                    return self._steps.popleft()
                return self.default if self.default is not None else _EXHAUSTED
        return fn(body)

    def _wait(self, seconds: float) -> bool:
        """Wait out a delay; False when the server is closing meanwhile."""
        return not self._closing.wait(seconds) if seconds > 0 else True

    def _completion_id(self) -> str:
        with self._lock:
            return f"chatcmpl-scripted-{next(self._counter)}"


def _words(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    total = 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            total += len(content.split())
    return total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    @property
    def _server(self) -> ScriptedOpenAIServer:
        return self.server.scripted  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        self._server._record(RecordedRequest("GET", path, self._headers(), None))
        if path.rstrip("/") == "/v1/models":
            name = self._server.model_name
            self._send_json(200, {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                                              "owned_by": "scripted"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found", "code": None}})

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        server = self._server
        server._record(RecordedRequest("POST", path, self._headers(), body))
        if path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found", "code": None}})
            return
        step = server._next_step(body)
        if not server._wait(step.delay):
            self.close_connection = True
            return
        if step.drop:
            self.close_connection = True
            return
        if step.status is not None:
            message = step.content or f"scripted error {step.status}"
            self._send_json(step.status, {"error": {"message": message, "type": "scripted_error", "code": step.status}},
                            step.headers)
            return
        model = body.get("model", server.model_name) if isinstance(body, dict) else server.model_name
        messages = body.get("messages") if isinstance(body, dict) else None
        choices = []
        if not step.empty_choices:
            choices = [{"index": 0, "message": {"role": "assistant", "content": step.content},
                        "finish_reason": step.finish_reason, "logprobs": None}]
        payload: dict[str, Any] = {
            "id": server._completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
        }
        if step.include_usage:
            prompt = step.prompt_tokens if step.prompt_tokens is not None else _words(messages)
            completion = step.completion_tokens
            if completion is None:
                completion = len((step.content or "").split())
            payload["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion}
        if step.invalid_json:
            data = json.dumps(payload).encode()
            self._send_raw(200, data[: len(data) // 2], step.headers)
            return
        self._send_json(200, payload, step.headers)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


def _read_script(path: Path) -> list[Step]:
    steps = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            steps.append(Step.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise SystemExit(f"{path}:{number}: not a step: {exc}") from None
    if not steps:
        raise SystemExit(f"{path}: no steps")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A scripted OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds before each answer whose step sets no delay of its own")
    parser.add_argument("--script", type=Path, default=None,
                        help="JSON lines: an answer string or an object of Step fields, used in a cycle")
    parser.add_argument("--content", default="ok", help="the answer when no --script is given")
    parser.add_argument("--model-name", default="scripted-model", help="the model GET /v1/models lists")
    args = parser.parse_args(argv)

    steps = _read_script(args.script) if args.script else [Step(content=args.content)]
    steps = [dataclasses.replace(s, delay=args.delay) if s.delay == 0 else s for s in steps]
    server = ScriptedOpenAIServer(steps, cycle=True, model_name=args.model_name, port=args.port)
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly on Ctrl-C or kill
        signal.signal(sig, lambda *_: server._closing.set())
    print(server.base_url, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
