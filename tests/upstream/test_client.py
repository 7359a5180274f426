"""The Chat Completions client against the simulator over real HTTP (no database)."""

import http.server
import json
import threading
import time

import pytest
import requests

from conversations.upstream import client, protocol
from conversations.upstream.client import StopSignal
from conversations.upstream.simulated_text import count_tokens
from tests.support import Simulator


@pytest.fixture
def sim(simulator_server) -> Simulator:
    handle = Simulator(simulator_server.base_url)
    handle.reset()
    return handle


@pytest.fixture
def chat(sim) -> client.ChatClient:
    return client.ChatClient(base_url=sim.base_url, api_key="sk-abc", timeout=5)


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about the history of AI."},
]


def test_it_sends_every_set_parameter_exactly_and_no_unset_ones(chat, sim):
    body = protocol.build_request(
        model="gpt-4o-mini",
        messages=MESSAGES,
        temperature=0.7,
        top_p=0.9,
        max_tokens=200,
        n=2,
        stop=["END", "STOP"],
        presence_penalty=-1.5,
        frequency_penalty=2,
    )
    chat.create(body)
    [seen] = sim.requests()
    assert seen["body"] == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 200,
        "n": 2,
        "stop": ["END", "STOP"],
        "presence_penalty": -1.5,
        "frequency_penalty": 2,
    }
    assert seen["authorization"] == "Bearer sk-abc"


def test_it_leaves_out_parameters_that_are_not_set(chat, sim):
    body = protocol.build_request(
        model="gpt-4o", messages=MESSAGES, temperature=None, top_p=None, stop=None, n=None
    )
    chat.create(body)
    assert sim.bodies() == [{"model": "gpt-4o", "messages": MESSAGES}]


def test_it_keeps_every_response_field(chat):
    response = chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))
    assert response.id.startswith("chatcmpl-sim-")
    assert response.model == "gpt-4o-simulated"  # as returned, not as asked
    assert response.object == "chat.completion"
    assert isinstance(response.created, int)
    [choice] = response.choices
    assert (choice.index, choice.role, choice.finish_reason) == (0, "assistant", "stop")
    assert response.usage.completion_tokens == count_tokens(choice.content)
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_it_returns_n_choices(chat):
    response = chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES, n=3))
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len({c.content for c in response.choices}) == 3


def test_max_tokens_cut_gives_finish_reason_length(chat):
    response = chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES, max_tokens=3))
    [choice] = response.choices
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_stop_sequence_cuts_the_reply(chat):
    messages = [{"role": "user", "content": "/echo alpha beta STOP gamma"}]
    response = chat.create(protocol.build_request(model="gpt-4o", messages=messages, stop="STOP"))
    assert response.choices[0].content == "alpha beta "
    assert response.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 2.1}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 1.5}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": -2.5}, "presence_penalty"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"logit_bias": {}}, "logit_bias"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_field(params, field, chat, sim):
    with pytest.raises(protocol.ParameterError) as raised:
        protocol.build_request(model="gpt-4o", messages=MESSAGES, **params)
    assert raised.value.field == field
    assert field in str(raised.value)
    assert sim.requests() == []


def test_range_edges_are_accepted():
    body = protocol.build_request(
        model="m",
        messages=MESSAGES,
        temperature=0,
        top_p=1,
        n=1,
        max_tokens=1,
        presence_penalty=-2,
        frequency_penalty=2,
        stop=["a", "b", "c", "d"],
    )
    assert body["temperature"] == 0 and body["stop"] == ["a", "b", "c", "d"]


def test_429_is_retryable_with_its_retry_after(chat, sim):
    sim.control(faults=[{"status": 429, "retry_after": 7, "message": "Slow down"}])
    with pytest.raises(protocol.RetryableError) as raised:
        chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))
    assert raised.value.http_status == 429
    assert raised.value.retry_after == 7
    assert raised.value.message == "Slow down"


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
def test_server_and_conflict_errors_are_retryable(status, chat, sim):
    sim.control(faults=[{"status": status}])
    with pytest.raises(protocol.RetryableError):
        chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_permanent_with_the_upstream_message(status, chat, sim):
    sim.control(faults=[{"status": status, "message": f"nope {status}"}])
    with pytest.raises(protocol.PermanentError) as raised:
        chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))
    assert raised.value.message == f"nope {status}"
    assert raised.value.http_status == status


def test_a_200_that_is_not_json_is_retryable(chat, sim):
    sim.control(faults=[{"kind": "not_json"}])
    with pytest.raises(protocol.RetryableError) as raised:
        chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))
    assert raised.value.error_type == "bad_response"


def test_a_200_with_the_wrong_shape_is_retryable():
    with pytest.raises(protocol.RetryableError):
        protocol.parse_response({"id": "x", "object": "chat.completion"})


def test_connection_refused_is_retryable():
    unused = client.ChatClient(base_url="http://127.0.0.1:9/v1", api_key="k", timeout=1)
    with pytest.raises(protocol.RetryableError) as raised:
        unused.create(protocol.build_request(model="m", messages=MESSAGES))
    assert raised.value.error_type == "connection_error"


def test_a_slow_upstream_times_out_as_retryable(sim):
    sim.control(faults=[{"delay": 1.5}])
    slow = client.ChatClient(base_url=sim.base_url, api_key="k", timeout=0.3)
    with pytest.raises(protocol.RetryableError) as raised:
        slow.create(protocol.build_request(model="m", messages=MESSAGES))
    assert raised.value.error_type == "timeout"


def test_retry_after_accepts_an_http_date():
    assert protocol.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert protocol.parse_retry_after("3") == 3.0
    assert protocol.parse_retry_after("soon") is None


def test_streaming_assembles_the_same_reply_with_usage(chat, sim):
    body = protocol.build_request(model="gpt-4o", messages=MESSAGES, n=2, stream=True)
    whole = chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES, n=2))
    seen: list[str] = []
    state, stopped = chat.stream(
        body, on_delta=lambda s, deltas: seen.extend(d.content for d in deltas if d.index == 0)
    )
    assert not stopped
    assert "".join(seen) == whole.choices[0].content
    assert state.response().choices[1].content == whole.choices[1].content
    assert state.usage == whole.usage
    assert sim.bodies()[1]["stream_options"] == {"include_usage": True}


def test_a_stream_that_breaks_raises_interrupted_with_the_partial_text(chat, sim):
    sim.control(faults=[{"kind": "break_stream", "after_tokens": 2}])
    seen: list[str] = []
    with pytest.raises(protocol.StreamInterrupted):
        chat.stream(
            protocol.build_request(model="gpt-4o", messages=MESSAGES, stream=True),
            on_delta=lambda s, deltas: seen.extend(d.content for d in deltas),
        )
    assert "".join(seen)  # some text arrived before the break


def test_stopping_a_stream_closes_the_upstream_connection(chat, sim):
    sim.control(token_delay=0.05)
    stop = StopSignal()
    threading.Timer(0.2, stop.set).start()  # from another thread, while the stream goes on
    seen = []
    _, stopped = chat.stream(
        protocol.build_request(model="gpt-4o", messages=MESSAGES, stream=True),
        on_delta=lambda s, d: seen.extend(d),
        stop=stop,
    )
    assert stopped and seen

    def disconnected():
        return requests.get(f"{sim.root}/_stats", timeout=5).json()["streams_disconnected"]

    from tests.support import wait_for

    wait_for(lambda: disconnected() == 1, timeout=5, what="simulator to see the close")


def test_a_key_echoed_in_an_upstream_error_is_cut_out(chat, sim):
    """Some servers echo the key they refused; the message is kept and shown to the user."""
    sim.control(faults=[{"status": 401, "message": "Incorrect API key provided: sk-abc."}])
    with pytest.raises(protocol.PermanentError) as raised:
        chat.create(protocol.build_request(model="gpt-4o", messages=MESSAGES))
    assert raised.value.message == "Incorrect API key provided: [redacted]."
    assert "sk-abc" not in str(raised.value)


def test_a_stop_set_while_the_call_connects_ends_the_stream_at_once(chat, sim):
    sim.control(latency=0.3, token_delay=0.05, faults=[{"kind": "tokens", "tokens": 200}])
    stop = StopSignal()
    threading.Timer(0.1, stop.set).start()  # before the upstream has answered
    seen = []
    _, stopped = chat.stream(
        protocol.build_request(model="gpt-4o", messages=MESSAGES, stream=True),
        on_delta=lambda s, d: seen.extend(d),
        stop=stop,
    )
    assert stopped and len(seen) <= 1


def test_streamed_calls_of_one_client_share_one_kept_alive_connection(chat, sim):
    before = sim.stats()["connections"]  # counts the connection asking, too
    for _ in range(3):
        state, _ = chat.stream(
            protocol.build_request(model="gpt-4o", messages=MESSAGES, stream=True),
            on_delta=lambda s, d: None,
        )
        assert state.done
    # One connection for the three streams, one for asking again.
    assert sim.stats()["connections"] - before == 2


class _HoldsTheBodyOpen(http.server.BaseHTTPRequestHandler):
    """Sends a whole reply and [DONE], then neither ends the chunked body nor closes."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        for choice in (
            {"index": 0, "delta": {"role": "assistant", "content": "Hello"}},
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        ):
            data = f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n")
        self.wfile.flush()
        self.release.wait(30)


def test_a_server_that_holds_the_body_open_after_done_costs_a_moment_not_the_timeout():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HoldsTheBodyOpen)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chat = client.ChatClient(
            base_url=f"http://127.0.0.1:{server.server_port}", api_key="sk-abc", timeout=30
        )
        started = time.monotonic()
        state, stopped = chat.stream(
            protocol.build_request(model="m", messages=MESSAGES, stream=True),
            on_delta=lambda s, d: None,
        )
        assert not stopped and state.response().choices[0].content == "Hello"
        assert time.monotonic() - started < 10  # the read timeout is 30 s
    finally:
        _HoldsTheBodyOpen.release.set()
        server.shutdown()
        server.server_close()
