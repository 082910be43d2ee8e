"""The fake Anthropic API against the real ``anthropic`` SDK: if the SDK takes its answers, so will HQ's gateway.

The SDK parses streams strictly (event order, block indexes, usage fields), so these tests are the evidence
that the fake's wire format is the real one, before any other test relies on it.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2  # the anthropic SDK 2.x client; plain httpx is what LiteLLM uses
import pytest
from anthropic.types import MessageParam

from tests.fakes.anthropic_server import FakeAnthropic, Reply, error

MODEL = "claude-haiku-4-5"  # not one the SDK warns is deprecated (warnings are errors here)
KEY = "sk-ant-test-key"
HI: list[MessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture()
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    try:
        yield server
    finally:
        server.stop()


_opened: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every SDK client a test made is closed after it: a pooled keep-alive socket left open would be
    finalised whenever the collector next runs, failing whichever test runs then (warnings are errors)."""
    yield
    while _opened:
        _opened.pop().close()


def client(fake: FakeAnthropic, **kwargs: Any) -> anthropic.Anthropic:
    options: dict[str, Any] = {"api_key": KEY, **kwargs}
    opened = anthropic.Anthropic(base_url=fake.url, max_retries=0, timeout=5.0, **options)
    _opened.append(opened)
    return opened


def raw_request(fake: FakeAnthropic, request: bytes) -> bytes:
    """One request on a plain socket, for what an HTTP client would smooth over (HEAD, stray methods)."""
    host, port = fake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_streamed_text_reports_usage_with_cache_tokens(fake: FakeAnthropic) -> None:
    text = "A reply long enough to span several text deltas."
    fake.default(
        MODEL,
        Reply(
            text=text, input_tokens=120, output_tokens=42, cache_creation_input_tokens=30, cache_read_input_tokens=900
        ),
    )
    with client(fake).messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.model == MODEL
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens) == (120, 42)
    assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (30, 900)
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("text") > 1  # the SDK's own event per text delta: the text came in pieces
    assert fake.requests[-1]["body"]["stream"] is True and fake.requests[-1]["key"] == KEY


def test_stream_wire_format(fake: FakeAnthropic) -> None:
    """The raw bytes: an event-stream content type, chunked, ``event:``/``data:`` pairs in the API's order."""
    fake.default(MODEL, Reply(text="hi", tool_calls=[{"name": "noop"}]))
    with httpx.Client() as http:
        response = http.post(
            f"{fake.url}/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": HI, "stream": True},
            headers={"x-api-key": KEY},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    kinds = [lines[0].removeprefix("event: ") for lines in events]
    data = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert kinds == [
        "message_start",
        "ping",
        *["content_block_start", "content_block_delta", "content_block_stop"] * 2,
        "message_delta",
        "message_stop",
    ]
    assert all(d["type"] == k for k, d in zip(kinds, data, strict=True))
    assert data[0]["message"]["usage"] == {
        "input_tokens": 10,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }
    assert data[5]["content_block"]["input"] == {} and data[6]["delta"]["partial_json"] == "{}"
    assert data[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert data[-2]["usage"]["output_tokens"] == 5


def test_streamed_tool_use_is_parsed(fake: FakeAnthropic) -> None:
    arguments = {"path": "notes.md", "content": "# Notes\nwith enough text to need several json chunks\n"}
    fake.script(MODEL, Reply(text="", tool_calls=[{"name": "write_file", "input": arguments}]))
    with client(fake).messages.stream(model=MODEL, max_tokens=100, messages=HI) as stream:
        final = stream.get_final_message()
    (block,) = final.content
    assert block.type == "tool_use" and block.name == "write_file" and block.input == arguments
    assert block.id.startswith("toolu_") and final.stop_reason == "tool_use"


def test_non_streamed_reply(fake: FakeAnthropic) -> None:
    fake.default(MODEL, Reply(text="plain", input_tokens=7, output_tokens=3, cache_read_input_tokens=11))
    message = client(fake).messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert message.content[0].type == "text" and message.content[0].text == "plain"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 3)
    assert message.usage.cache_read_input_tokens == 11 and message.usage.cache_creation_input_tokens == 0
    assert fake.calls_for(MODEL) == 1


def test_count_tokens(fake: FakeAnthropic) -> None:
    sdk = client(fake)
    estimated = sdk.messages.count_tokens(model=MODEL, messages=HI)
    assert estimated.input_tokens == max(1, len(json.dumps(fake.requests[-1]["body"])) // 4)
    fake.count_tokens_answer = 1234
    assert sdk.messages.count_tokens(model=MODEL, messages=HI).input_tokens == 1234
    assert fake.calls_for(MODEL) == 0  # counting tokens is not a Messages call
    assert fake.requests[-1]["path"].split("?")[0] == "/v1/messages/count_tokens"


def test_required_key_refuses_others_and_records_them(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # else the bearer client would send it as x-api-key too
    fake.required_key = KEY
    fake.default(MODEL, Reply(text="for the right key"))
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client(fake, api_key="sk-ant-wrong").messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert refused.value.status_code == 401
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    wrong = client(fake, api_key="sk-ant-wrong")
    # A stream is refused with the JSON envelope, too.
    with pytest.raises(anthropic.AuthenticationError), wrong.messages.stream(model=MODEL, max_tokens=10, messages=HI):
        pass
    bearer = anthropic.Anthropic(base_url=fake.url, auth_token=KEY, max_retries=0, timeout=5.0)
    assert bearer.messages.create(model=MODEL, max_tokens=10, messages=HI).content[0].type == "text"
    sent = {name.lower(): value for name, value in fake.requests[-1]["headers"].items()}
    assert sent["authorization"] == f"Bearer {KEY}" and "x-api-key" not in sent
    assert fake.keys_seen() == {"sk-ant-wrong", KEY}
    assert len(fake.requests) == 3


def test_cut_stream_breaks_the_sdk(fake: FakeAnthropic) -> None:
    fake.script(MODEL, Reply(text="this stream will never finish", cut_after_events=4))
    fake.default(MODEL, Reply(text="whole"))
    sdk = client(fake)
    seen: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError), sdk.messages.stream(model=MODEL, max_tokens=10, messages=HI) as s:
        seen.extend(event.type for event in s)
    assert "message_stop" not in seen and seen[0] == "message_start"
    with sdk.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:  # the fake itself is unharmed
        assert stream.get_final_message().content[0].type == "text"


def test_query_string_path_and_unknown_paths(fake: FakeAnthropic) -> None:
    fake.default(MODEL, Reply(text="beta"))
    with httpx.Client(base_url=fake.url, headers={"x-api-key": KEY}) as http:
        answer = http.post("/v1/messages?beta=true", json={"model": MODEL, "max_tokens": 10, "messages": HI})
        assert answer.status_code == 200 and answer.json()["content"][0]["text"] == "beta"
        counted = http.post("/v1/messages/count_tokens?beta=true", json={"model": MODEL, "messages": HI})
        assert counted.status_code == 200 and counted.json()["input_tokens"] >= 1
        missing = http.post("/v1/complete", json={"model": MODEL})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        assert http.get("/v1/models").status_code == 404
    assert fake.requests[0]["path"] == "/v1/messages?beta=true"
    assert fake.calls_for(MODEL) == 1


def test_head_and_get_root_answer_empty(fake: FakeAnthropic) -> None:
    with httpx.Client(base_url=fake.url) as http:
        head = http.head("/")
        got = http.get("/")
    assert head.status_code == 200 and head.content == b""
    assert got.status_code == 200 and got.content == b"" and got.headers["content-length"] == "0"
    assert raw_request(fake, b"DELETE /v1/messages HTTP/1.1\r\nhost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert fake.requests == [] and [p["method"] for p in fake.probes] == ["HEAD", "GET", "DELETE"]


def test_responder_and_wildcard(fake: FakeAnthropic) -> None:
    fake.default("*", Reply(text="anyone"))
    fake.default(MODEL, Reply(text="its own"))
    fake.responder = lambda body: Reply(text="computed") if body["messages"][0]["content"] == "compute" else None
    sdk = client(fake)

    def ask(model: str, content: str = "hi") -> str:
        block = sdk.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": content}])
        assert block.content[0].type == "text"
        return block.content[0].text

    assert ask("claude-opus-4-1") == "anyone"
    assert ask(MODEL) == "its own"
    assert ask(MODEL, "compute") == "computed"
    fake.script("*", error(529, "busy"))
    with pytest.raises(anthropic.APIStatusError) as busy:
        ask("claude-opus-4-1")
    assert busy.value.status_code == 529
    assert ask("claude-opus-4-1") == "anyone"


def test_delay(fake: FakeAnthropic) -> None:
    fake.default(MODEL, Reply(delay_seconds=0.3))
    started = time.monotonic()
    client(fake).messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert time.monotonic() - started >= 0.3
