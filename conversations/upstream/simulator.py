"""A simulated OpenAI-compatible upstream over real HTTP (no Django here).

Deterministic replies that depend on the conversation, usage counted from the
text, `n`, `stop` and `max_tokens` honoured, `stream: true` as Server-Sent Events.

Cues in the last user message (simulated_text.reply_text):
  /echo X                answers exactly X
  /think R /answer A     thinks R (`reasoning_content`: streamed deltas before the
                         answer's, or the message's field), then answers A
  /thinktag R /answer A  answers "<think>R</think>A" in the content (Qwen, R1 distills)
Without "/answer", a thinking cue's answer is the usual reply.
Tests and benchmarks steer it through `/_control` (faults, delays) and read what
it saw from `/_requests` and `/_stats` (`timings`: id, received, answered and, for
streamed replies, first_token, as Unix times). It is never presented as a real model.

Control (POST /_control, JSON, every key optional):
  {"latency": 0.2,            # seconds before each answer
   "token_delay": 0.05,       # seconds between streamed tokens
   "faults": [                # applied to the next requests, in order
     {"status": 429, "retry_after": 1, "times": 2},
     {"status": 500, "message": "boom"},
     {"kind": "not_json"},
     {"kind": "break_stream", "after_tokens": 3},
     {"delay": 3.0},
     # Hostile output, for the worker's defences (stream and plain alike):
     {"kind": "content", "content": "a\u0000b"},  # the reply's content: any JSON value
     {"kind": "finish_reason", "finish_reason": "x" * 100},
     {"kind": "invalid_utf8"},                     # bytes that are not UTF-8 in the reply
     {"kind": "error_body", "message": "overloaded"},  # 200 carrying an error object
     {"kind": "tokens", "tokens": 500}],           # a reply of that many tokens
   "reset": true}             # forget requests, stats, faults and delays
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .simulated_text import (
    INVALID_UTF8_BYTES,
    INVALID_UTF8_MARK,
    SIMULATED_MODELS,
    count_tokens,
    error_object,
    prompt_tokens,
    reasoning_text,
    replies_for,
    split_tokens,
)


class SimulatorState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.latency = 0.0
        self.token_delay = 0.0
        self.stats = {
            "requests": 0,
            "completions": 0,
            "streams_completed": 0,
            "streams_disconnected": 0,
            "in_flight": 0,
            "connections": 0,
        }
        self.timings: list[dict[str, Any]] = []

    def next_fault(self) -> dict[str, Any] | None:
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            times = int(fault.get("times", 1)) - 1
            if times <= 0:
                self.faults.pop(0)
            else:
                fault["times"] = times
            return dict(fault)

    def bump(self, key: str, by: int = 1) -> None:
        with self.lock:
            self.stats[key] += by


class SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this every keep-alive reply waits ~40 ms on delayed ACK.
    disable_nagle_algorithm = True
    server: SimulatorServer

    def setup(self) -> None:
        super().setup()
        self.server.state.bump("connections")  # TCP connections accepted

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # --- plumbing ---
    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self._send_bytes(status, body, "application/json", headers)

    def _send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status, "server_error")
        self._send_json(
            status, {"error": {"message": message, "type": kind, "code": kind}}, headers
        )

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    # --- routes ---
    def do_GET(self) -> None:
        state = self.server.state
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "simulator"}
                        for m in SIMULATED_MODELS
                    ],
                },
            )
        elif self.path == "/_requests":
            with state.lock:
                self._send_json(200, state.requests)
        elif self.path == "/_stats":
            with state.lock:
                self._send_json(200, {**state.stats, "timings": state.timings[-10000:]})
        elif self.path == "/_health":
            self._send_json(200, {"ok": True})
        else:
            self._error(404, f"Unknown path {self.path}")

    def do_POST(self) -> None:
        try:
            payload = self._read_json()
        except ValueError:
            self._error(400, "Request body is not valid JSON.")
            return
        if self.path == "/_control":
            self._control(payload)
        elif self.path.rstrip("/") == "/v1/chat/completions":
            self._completions(payload)
        else:
            self._error(404, f"Unknown path {self.path}")

    def _control(self, payload: dict[str, Any]) -> None:
        state = self.server.state
        with state.lock:
            if payload.get("reset"):
                state.reset()
            if "latency" in payload:
                state.latency = float(payload["latency"])
            if "token_delay" in payload:
                state.token_delay = float(payload["token_delay"])
            if "faults" in payload:
                state.faults.extend(dict(f) for f in payload["faults"])
        self._send_json(200, {"ok": True})

    def _completions(self, body: dict[str, Any]) -> None:
        state = self.server.state
        received = time.time()
        # When the first token of a streamed reply went out (for time-to-first-token figures).
        self._first_token: float | None = None
        with state.lock:
            state.requests.append(
                {"body": body, "authorization": self.headers.get("Authorization"), "at": received}
            )
            state.stats["requests"] += 1
        fault = self._refused_or_fault()
        if fault is False:
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not body.get("model"):
            self._error(400, "'model' and a non-empty 'messages' list are required.")
            return
        replies = replies_for(body, fault, rich=self.server.rich)
        # Every choice thinks the same, and its reasoning is billed as its answer is.
        self._reasoning = reasoning_text(messages)
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": sum(
                count_tokens(str(text)) + count_tokens(self._reasoning) for text, _ in replies
            ),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        meta = {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "created": int(received),
            "model": f"{body['model']}-simulated",
        }
        with state.lock:
            state.stats["in_flight"] += 1
        try:
            if body.get("stream"):
                self._stream(body, meta, replies, usage, fault)
            else:
                self._plain(meta, replies, usage, fault)
                state.bump("completions")
        finally:
            with state.lock:
                state.stats["in_flight"] -= 1
                state.timings.append(
                    {
                        "id": meta["id"],
                        "received": received,
                        "answered": time.time(),
                        "first_token": self._first_token,
                    }
                )

    def _refused_or_fault(self) -> dict[str, Any] | bool | None:
        """Answers what ends a call before any reply (a wrong key, an HTTP error fault, a
        body that is not JSON) and returns False then; else the fault for the reply, if any,
        after the latency (or the fault's delay)."""
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or (
            self.server.api_key and auth != f"Bearer {self.server.api_key}"
        ):
            self._error(401, "Incorrect API key provided.")
            return False
        fault = state.next_fault()
        if fault and fault.get("delay"):
            time.sleep(float(fault["delay"]))
        elif state.latency:
            time.sleep(state.latency)
        if fault and fault.get("status"):
            headers = {}
            if fault.get("retry_after") is not None:
                headers["Retry-After"] = str(fault["retry_after"])
            self._error(int(fault["status"]), fault.get("message") or "Simulated failure.", headers)
            return False
        if fault and fault.get("kind") == "not_json":
            self._send_bytes(200, b"<html>upstream proxy error</html>", "text/html")
            return False
        return fault

    def _plain(
        self,
        meta: dict[str, Any],
        replies: list[tuple[Any, str]],
        usage: dict[str, int],
        fault: dict[str, Any] | None,
    ) -> None:
        kind = fault.get("kind") if fault else None
        if kind == "error_body":
            self._send_json(200, error_object(fault))
            return
        payload = {
            **meta,
            "object": "chat.completion",
            "choices": [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        **({"reasoning_content": self._reasoning} if self._reasoning else {}),
                    },
                    "finish_reason": finish,
                }
                for i, (text, finish) in enumerate(replies)
            ],
            "usage": usage,
        }
        raw = json.dumps(payload).encode()
        if kind == "invalid_utf8":
            raw = raw.replace(INVALID_UTF8_MARK.encode(), INVALID_UTF8_BYTES)
        self._send_bytes(200, raw, "application/json")

    def _stream(
        self,
        body: dict[str, Any],
        meta: dict[str, Any],
        replies: list[tuple[Any, str]],
        usage: dict[str, int],
        fault: dict[str, Any] | None,
    ) -> None:
        state = self.server.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        # Kept alive, as providers do: a chunked body ends on its own. A fault's stream is
        # the last on its connection.
        if fault:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._meta, self._kind = meta, fault.get("kind") if fault else None
        try:
            self._event(
                [
                    {"index": i, "delta": {"role": "assistant", "content": ""}}
                    for i in range(len(replies))
                ]
            )
            if self._kind == "error_body":
                self._chunk(f"data: {json.dumps(error_object(fault))}\n\n".encode())
            else:
                if not self._tokens(replies, fault):
                    return
                self._event(
                    [
                        {"index": i, "delta": {}, "finish_reason": f}
                        for i, (_, f) in enumerate(replies)
                    ]
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    self._event([], usage=usage)
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            if self._kind != "error_body":
                state.bump("streams_completed")
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
            state.bump("streams_disconnected")

    def _tokens(self, replies: list[tuple[Any, str]], fault: dict[str, Any] | None) -> bool:
        """Every choice's reasoning then its text, a token per event; False when a fault
        broke the stream."""
        state = self.server.state
        break_after = int(fault.get("after_tokens", 3)) if self._kind == "break_stream" else None
        thought = [{"reasoning_content": p} for p in split_tokens(self._reasoning)]
        # A reply that is not text goes out as one delta, as a hostile server would.
        pieces = [
            thought
            + [{"content": p} for p in (split_tokens(text) if isinstance(text, str) else [text])]
            for text, _ in replies
        ]
        for step in range(max((len(p) for p in pieces), default=0)):
            if break_after is not None and step >= break_after:
                # Drop the connection mid-reply, as a crashed proxy would.
                self.connection.shutdown(2)
                return False
            if state.token_delay:
                time.sleep(state.token_delay)
            self._event(
                [
                    {"index": i, "delta": p[step], "finish_reason": None}
                    for i, p in enumerate(pieces)
                    if step < len(p)
                ]
            )
            if self._first_token is None:
                self._first_token = time.time()
        return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {**self._meta, "object": "chat.completion.chunk", "choices": choices, **extra}
        data = f"data: {json.dumps(chunk)}\n\n".encode()
        if self._kind == "invalid_utf8":
            data = data.replace(INVALID_UTF8_MARK.encode(), INVALID_UTF8_BYTES)
        self._chunk(data)


# Put into a reply by the "invalid_utf8" fault, and swapped for bytes that are not UTF-8.


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(
        self,
        address: tuple[str, int],
        *,
        api_key: str = "",
        verbose: bool = False,
        rich: bool = False,
    ) -> None:
        super().__init__(address, SimulatorHandler)
        self.state = SimulatorState()
        self.api_key = api_key
        self.verbose = verbose
        self.rich = rich  # replies show Markdown (simulated_text.reply_text)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


def start_in_thread(host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> SimulatorServer:
    """Start a simulator on a background thread (port 0 picks a free one)."""
    server = SimulatorServer((host, port), **kwargs)
    threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--plain", action="store_true", help="replies without Markdown")
    args = vars(parser.parse_args(argv))
    rich = not args.pop("plain")
    serve(**args, rich=rich)


def serve(
    *,
    host: str,
    port: int,
    latency: float = 0.0,
    token_delay: float = 0.0,
    api_key: str = "",
    verbose: bool = False,
    rich: bool = True,
) -> None:
    server = SimulatorServer((host, port), api_key=api_key, verbose=verbose, rich=rich)
    server.state.latency = latency
    server.state.token_delay = token_delay
    print(f"Simulated upstream on {server.base_url} (not a real model)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
