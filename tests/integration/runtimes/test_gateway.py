"""The model gateway driven as Claude Code drives it: the real anthropic SDK over the run's Unix socket.

Behind the socket, the forwarder reserves each call's worst case, sends it upstream (the fake
Anthropic server) with HQ's provider key, relays the answer byte for byte and settles one
``llm_calls`` row from the usage the upstream reported, cache tokens included. These tests are
the evidence that a coding agent's calls are paid for exactly as HQ's own are: every call
reserved before it is sent, every answer (whole, refused or cut) settled once, the run's token
never leaving HQ and HQ's key never reaching the sandbox.
"""

from __future__ import annotations

import http.client
import json
import socket
import types
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.budget import BudgetExceeded
from models.forwarder import Forwarder
from models.router import CallContext, ModelRequestError, ModelRouter, ProviderAuthError
from runtimes.gateway import Gateway
from tests.fakes import anthropic_server
from tests.fakes.anthropic_server import FakeAnthropic, Reply, error, stream_events
from tests.support import gateway
from tests.support.gateway import (
    HI,
    MAX_TOKENS,
    MODEL,
    PRICE,
    UTILITY,
    assert_settled,
    billed,
    calls,
    deployment,
    micro,
    models,
    money,
)
from tests.support.models import KEY, call_context, router_for
from tests.support.rows import new_issue, one

# The gateway tests' fixtures: the fake provider, a router priced on it, the run's agent, a short socket path.
fake, router, boss, socket_path = gateway.fake, gateway.router, gateway.boss, gateway.socket_path


class _Tee(httpx2.SyncByteStream):
    def __init__(self, inner: httpx2.SyncByteStream, sink: bytearray) -> None:
        self.inner, self.sink = inner, sink

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.sink += chunk
            yield chunk

    def close(self) -> None:
        self.inner.close()


@dataclass
class Seen:
    """One response as it reached the client: status, headers and the body bytes (after chunked decoding)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class Recorder(httpx2.BaseTransport):
    """The SDK's transport over the socket, keeping a copy of every response the client was given."""

    def __init__(self, path: Path) -> None:
        self.inner = httpx2.HTTPTransport(uds=str(path))
        self.seen: list[Seen] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        seen = Seen(response.status_code, list(response.headers.multi_items()))
        self.seen.append(seen)
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _Tee(response.stream, seen.body)
        return response

    def close(self) -> None:
        self.inner.close()


@contextmanager
def serving(
    router: ModelRouter, ctx: CallContext, path: Path, *, token: str | None = None
) -> Iterator[tuple[Gateway, anthropic.Anthropic, Recorder]]:
    """A run's gateway and a client holding what the CLI holds: the socket and (unless told) the run's token."""
    forwarder = Forwarder(router)
    with Gateway(forwarder, ctx, "execution", path, fast_tier="utility") as gateway:
        recorder = Recorder(path)
        client = anthropic.Anthropic(
            api_key=token if token is not None else gateway.token,  # never None: the SDK would read the env's key
            base_url="http://localhost",
            max_retries=0,
            timeout=10.0,
            http_client=httpx2.Client(transport=recorder),
        )
        try:
            yield gateway, client, recorder
        finally:
            client.close()
    forwarder.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.path))
        self.sock = sock


def raw_request(
    path: Path, method: str, url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a plain connection, for what the SDK will not send (no credential, a bare HEAD)."""
    connection = _UnixConnection(path)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, url, body=data, headers={"content-type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def deterministic_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake's message and request ids from a constant, so two answers to one script are byte-identical."""
    monkeypatch.setattr(anthropic_server, "uuid", types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=7)))


# --- 1, 2: a call's answer and its one cost row ----------------------------------------------------------------
def test_a_streamed_call_is_relayed_byte_for_byte_and_settled_to_its_usage(
    router: ModelRouter,
    fake: FakeAnthropic,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Claude Code does on every turn: a stream, with cache tokens. The client must get the upstream's
    events unchanged (the SDK parses them strictly), and the ledger the upstream's usage at each token's price."""
    deterministic_ids(monkeypatch)
    tool = {"id": "toolu_01calc", "name": "read_file", "input": {"path": "calc.py", "why": "to see add() first"}}
    reply = Reply(
        text="I will read calc.py before changing it.",
        tool_calls=[tool],
        input_tokens=1201,
        output_tokens=87,
        cache_creation_input_tokens=3001,
        cache_read_input_tokens=40003,
    )
    fake.script(MODEL, reply)
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, recorder):
        with client.messages.stream(model=MODEL, max_tokens=4096, messages=HI) as stream:
            final = stream.get_final_message()
        assert gateway.calls == 1 and gateway.failure is None
    text, used = final.content
    assert text.type == "text" and text.text == reply.text
    assert used.type == "tool_use" and (used.id, used.name, used.input) == (tool["id"], tool["name"], tool["input"])
    assert final.stop_reason == "tool_use" and final.model == MODEL
    assert (final.usage.input_tokens, final.usage.output_tokens) == (1201, 87)
    assert (final.usage.cache_creation_input_tokens, final.usage.cache_read_input_tokens) == (3001, 40003)

    (row,) = calls(raw, ctx.run_id)
    expected = micro(deployment(router).cost(1201, 87, 3001, 40003))
    assert expected == billed(1201, 87, 3001, 40003)  # the models file's prices, cache at 1.25x and 0.1x of input
    assert {k: row[k] for k in ("outcome", "tier", "deployment", "model", "error")} == {
        "outcome": "ok",
        "tier": "execution",
        "deployment": "execution-1",
        "model": f"anthropic/{MODEL}",
        "error": None,
    }
    assert (row["input_tokens"], row["output_tokens"], row["cache_write_tokens"], row["cache_read_tokens"]) == (
        1201,
        87,
        3001,
        40003,
    )
    assert row["cost_usd"] == expected and row["reserved_usd"] > 0
    assert_settled(raw, issue, [row])
    assert money(raw, issue)[1] == expected

    (answer,) = recorder.seen
    assert answer.status == 200 and dict(answer.headers)["content-type"] == "text/event-stream"
    assert fake.requests[-1]["body"]["stream"] is True and fake.requests[-1]["body"]["max_tokens"] == MAX_TOKENS
    # The same script answered straight to a client: what the upstream sends, to the byte.
    fake.script(MODEL, reply)
    upstream = httpx2.post(
        f"{fake.url}/v1/messages",
        json={"model": MODEL, "max_tokens": MAX_TOKENS, "messages": HI, "stream": True},
        headers={"x-api-key": KEY},
    )
    assert upstream.status_code == 200 and upstream.content.count(b"\n\n") > 8
    assert bytes(answer.body) == upstream.content


def test_a_non_streamed_beta_call_is_settled_the_same_way(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Claude Code also sends plain JSON calls, on ``?beta=true`` with an ``anthropic-beta`` header: same
    accounting, the header forwarded (it changes what the provider does) and the path the SDK's own."""
    reply = Reply(
        text="Done.", input_tokens=333, output_tokens=21, cache_creation_input_tokens=77, cache_read_input_tokens=5
    )
    fake.script(MODEL, reply)
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, recorder):
        message = client.beta.messages.create(
            model=MODEL, max_tokens=64, messages=HI, betas=["interleaved-thinking-2025-05-14"]
        )
        assert gateway.calls == 1
    assert message.content[0].type == "text" and message.content[0].text == "Done."
    assert (message.usage.input_tokens, message.usage.output_tokens) == (333, 21)
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (77, 5)
    assert recorder.seen[0].status == 200 and json.loads(recorder.seen[0].body)["id"] == message.id
    sent = fake.requests[-1]
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    assert headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent["body"]["stream"] is False and sent["body"]["max_tokens"] == 64  # under the tier's maximum: as asked

    (row,) = calls(raw, ctx.run_id)
    assert row["outcome"] == "ok" and row["deployment"] == "execution-1"
    assert (row["input_tokens"], row["output_tokens"], row["cache_write_tokens"], row["cache_read_tokens"]) == (
        333,
        21,
        77,
        5,
    )
    assert row["cost_usd"] == micro(deployment(router).cost(333, 21, 77, 5)) == billed(333, 21, 77, 5)
    assert_settled(raw, issue, [row])


# --- 3, 4: who may call, and what is free --------------------------------------------------------------------------
def test_only_the_runs_token_gets_in_and_only_hqs_key_goes_out(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """The sandbox holds a token that is good for this gateway only; the provider key stays in HQ. A wrong or
    missing token is refused before anything is priced or sent; a right one is never passed on."""
    fake.required_key = KEY  # the upstream refuses (and records) any other credential
    fake.default(MODEL, Reply(text="fine", input_tokens=12, output_tokens=3))
    ctx = call_context(raw, None)
    with serving(router, ctx, socket_path) as (gateway, client, recorder):
        with serving(router, ctx, socket_path.with_name("w.sock"), token="sk-ant-not-the-token") as (_, wrong, _):
            with pytest.raises(anthropic.AuthenticationError) as refused:
                wrong.messages.create(model=MODEL, max_tokens=10, messages=HI)
            with (
                pytest.raises(anthropic.AuthenticationError),
                wrong.messages.stream(model=MODEL, max_tokens=10, messages=HI),
            ):
                pass
        assert refused.value.status_code == 401
        assert refused.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        }
        request = {"model": MODEL, "max_tokens": 10, "messages": HI}
        for headers in ({}, {"authorization": "Bearer not-the-token"}, {"x-api-key": ""}):
            status, _, body = raw_request(socket_path, "POST", "/v1/messages", request, headers)
            assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
        status, _, body = raw_request(socket_path, "POST", "/v1/messages/count_tokens", request)
        assert status == 401
        assert fake.requests == [] and calls(raw, ctx.run_id) == [] and gateway.calls == 0

        # The run's token, as x-api-key (the SDK) and as a bearer token (raw): answered, with HQ's key upstream.
        assert client.messages.create(model=MODEL, max_tokens=10, messages=HI).content[0].type == "text"
        with client.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:
            assert stream.get_final_message().usage.output_tokens == 3
        status, bearer_headers, bearer_body = raw_request(
            socket_path, "POST", "/v1/messages", request, {"authorization": f"Bearer {gateway.token}"}
        )
        assert status == 200 and json.loads(bearer_body)["content"][0]["text"] == "fine"
        token = gateway.token
    assert fake.keys_seen() == {KEY} and len(fake.requests) == 3
    assert token not in json.dumps(fake.requests)  # in no header and no body the upstream saw
    assert [r["outcome"] for r in calls(raw, ctx.run_id)] == ["ok", "ok", "ok"]
    answers = [(s.headers, bytes(s.body)) for s in recorder.seen] + [(list(bearer_headers.items()), bearer_body)]
    assert len(answers) == 3 and all(body for _, body in answers)
    for headers_seen, body_seen in answers:
        assert KEY not in json.dumps(headers_seen) and KEY.encode() not in body_seen


def test_a_provider_refusing_hqs_key_is_not_a_401_for_the_cli(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Upstream 401 means HQ's key is wrong, not the CLI's token: the CLI must stop (a request error), not
    ask its user to log in, and the failure policy must see refused credentials."""
    fake.required_key = "sk-ant-some-other-key"
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, recorder):
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        assert isinstance(gateway.failure, ProviderAuthError)
    assert refused.value.status_code == 400 and refused.value.message.count("HQ could not reach a model") == 1
    assert KEY.encode() not in bytes(recorder.seen[0].body)
    assert fake.keys_seen() == {KEY} and len(fake.requests) == 1  # refused credentials are not retried
    (row,) = calls(raw, ctx.run_id)
    assert row["outcome"] == "error" and "401" in row["error"] and row["cost_usd"] == 0
    assert_settled(raw, issue, [row])


def test_count_tokens_and_the_preflight_are_answered_here(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Claude Code counts tokens and probes ``HEAD /`` often: both are answered by HQ, free and offline."""
    ctx = call_context(raw, None)
    with serving(router, ctx, socket_path) as (gateway, client, _):
        short = client.messages.count_tokens(model=MODEL, messages=HI)
        longer = client.beta.messages.count_tokens(  # ?beta=true, as the CLI sends it
            model=MODEL, messages=HI, system="You are a careful engineer. " * 50
        )
        status, headers, body = raw_request(socket_path, "HEAD", "/")
        got = raw_request(socket_path, "GET", "/")
        stray = raw_request(socket_path, "HEAD", "/v1/models")
        assert gateway.calls == 0
    assert 0 < short.input_tokens < longer.input_tokens
    assert (status, headers["content-length"], body) == (200, "0", b"")
    assert got[0] == 200 and stray[0] == 404
    assert fake.requests == [] and fake.probes == []
    assert calls(raw, ctx.run_id) == []


# --- 5: no reservation, no call ------------------------------------------------------------------------------------
def test_a_budget_that_cannot_cover_the_worst_case_refuses_before_sending(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """The worst case (every input token at the cache-write price, max_tokens of output) is reserved before the
    request leaves; what the budget cannot cover is refused in the API's shape, so the CLI stops."""
    fake.default(MODEL, Reply(text="paid for", input_tokens=10, output_tokens=MAX_TOKENS))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, recorder):
        client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=HI)
        (first,) = calls(raw, ctx.run_id)
        worst = first["reserved_usd"]
        # Left: half the same request's worst case (budget_usd keeps 4 places, so a little more or less).
        spent = money(raw, issue)[1]
        raw.execute("UPDATE issues SET budget_usd = round(%s + %s / 2, 4) WHERE id = %s", (spent, worst, issue))
        assert money(raw, issue)[0] - spent < worst
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=MODEL, max_tokens=MAX_TOKENS, messages=HI)
        with (
            pytest.raises(anthropic.BadRequestError),
            client.messages.stream(model=MODEL, max_tokens=MAX_TOKENS, messages=HI),
        ):
            pass
        failure = gateway.failure
        assert gateway.calls == 1
    assert refused.value.status_code == 400
    assert isinstance(refused.value.body, dict) and refused.value.body["error"]["type"] == "invalid_request_error"
    assert refused.value.body["error"]["message"].startswith("budget exhausted: issue")
    assert isinstance(failure, BudgetExceeded) and failure.scope == "issue" and failure.issue_id == issue
    assert fake.calls_for(MODEL) == 1  # only the call that fitted went upstream
    rows = calls(raw, ctx.run_id)
    assert [r["outcome"] for r in rows] == ["ok", "budget_refused", "budget_refused"]
    assert all(r["cost_usd"] == 0 and r["deployment"] is None for r in rows[1:])
    assert "budget exhausted" in rows[1]["error"]
    assert [s.status for s in recorder.seen] == [200, 400, 400]
    budget, spent, _, _ = money(raw, issue)
    assert spent <= budget
    assert_settled(raw, issue, rows)


def test_an_issue_that_cannot_afford_one_call_makes_none(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """The refusal of a first call: one budget_refused row, nothing upstream, nothing spent."""
    issue = new_issue(raw, status="todo", budget_usd=Decimal("0.001"))  # the worst case is ~0.0026 USD
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, _):
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=MODEL, max_tokens=4096, messages=HI)
        assert isinstance(gateway.failure, BudgetExceeded) and gateway.failure.scope == "issue"
    assert isinstance(refused.value.body, dict)
    assert "budget exhausted" in refused.value.body["error"]["message"]
    assert fake.requests == []
    (row,) = calls(raw, ctx.run_id)
    assert row["outcome"] == "budget_refused" and row["reserved_usd"] > Decimal("0.001")
    assert money(raw, issue) == (Decimal("0.001"), 0, 0, 0)


# --- 6: failures before the first byte -----------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "stream"), [(529, True), (500, False)])
def test_a_failure_before_the_first_byte_is_retried(
    status: int,
    stream: bool,
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """Nothing has reached the CLI yet, so HQ may try again: the failed attempt gets its own (free) row."""
    router = router_for(models(tmp_path, fake, retries=1), monkeypatch)
    fake.script(MODEL, error(status, "overloaded", **{"retry-after": "0"}))
    fake.default(MODEL, Reply(text="second time lucky", input_tokens=40, output_tokens=9))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, _):
        message: Any
        if stream:
            with client.messages.stream(model=MODEL, max_tokens=50, messages=HI) as answer:
                message = answer.get_final_message()
        else:
            message = client.messages.create(model=MODEL, max_tokens=50, messages=HI)
        assert gateway.failure is None
    assert message.content[0].type == "text" and message.content[0].text == "second time lucky"
    assert fake.calls_for(MODEL) == 2
    failed, served = calls(raw, ctx.run_id)
    assert (failed["outcome"], failed["deployment"], failed["cost_usd"]) == ("error", "execution-1", 0)
    assert str(status) in failed["error"]
    assert (served["outcome"], served["deployment"]) == ("ok", "execution-1")
    assert served["cost_usd"] == billed(40, 9)
    assert_settled(raw, issue, [failed, served])


def test_a_failing_deployment_falls_back_to_the_next_in_its_tier(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """The tier's second deployment serves when the first fails: outcome ``fallback``, at its own price."""
    tiers = {
        "reasoning": [f"anthropic/{MODEL}"],
        "execution": [f"anthropic/{MODEL}", f"anthropic/{UTILITY}"],
        "utility": [f"anthropic/{UTILITY}"],
    }
    router = router_for(models(tmp_path, fake, tiers, retries=1), monkeypatch)
    fake.default(MODEL, error(500, "down"))
    fake.default(UTILITY, Reply(text="from the backup", input_tokens=30, output_tokens=4, cache_read_input_tokens=9))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with (
        serving(router, ctx, socket_path) as (_, client, _),
        client.messages.stream(model=MODEL, max_tokens=50, messages=HI) as answer,
    ):
        message = answer.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == "from the backup"
    assert message.model == UTILITY  # the upstream was asked for the deployment's model
    assert (fake.calls_for(MODEL), fake.calls_for(UTILITY)) == (1, 1)
    failed, served = calls(raw, ctx.run_id)
    assert (failed["outcome"], failed["deployment"]) == ("error", "execution-1")
    assert (served["outcome"], served["deployment"], served["model"]) == (
        "fallback",
        "execution-2",
        f"anthropic/{UTILITY}",
    )
    assert served["cost_usd"] == micro(deployment(router, "execution", 2).cost(30, 4, 0, 9)) == billed(30, 4, 0, 9)
    assert_settled(raw, issue, [failed, served])


@pytest.mark.parametrize(
    ("status", "kind", "raised"),
    [(400, "invalid_request_error", anthropic.BadRequestError), (404, "not_found_error", anthropic.NotFoundError)],
)
def test_an_upstream_request_error_is_passed_through_and_not_retried(
    status: int,
    kind: str,
    raised: type[anthropic.APIStatusError],
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """A 4xx is the request's own fault: asking again cannot help, and the CLI must see what the provider said."""
    router = router_for(models(tmp_path, fake, retries=2), monkeypatch)
    fake.default(MODEL, error(status, "messages: roles must alternate"))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with serving(router, ctx, socket_path) as (gateway, client, _):
        with pytest.raises(raised) as refused:
            client.messages.create(model=MODEL, max_tokens=50, messages=HI)
        assert isinstance(gateway.failure, ModelRequestError)
    assert refused.value.status_code == status
    assert isinstance(refused.value.body, dict) and refused.value.body["error"]["type"] == kind
    assert "roles must alternate" in refused.value.body["error"]["message"]
    assert fake.calls_for(MODEL) == 1
    (row,) = calls(raw, ctx.run_id)
    assert row["outcome"] == "error" and str(status) in row["error"] and row["cost_usd"] == 0
    assert_settled(raw, issue, [row])


# --- 7: a stream that breaks off -----------------------------------------------------------------------------------
def test_a_cut_stream_breaks_for_the_client_and_is_charged_its_worst_output(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Once bytes have reached the CLI a call cannot be replayed, and its final usage never came: the CLI must
    see the break (not a short but well-ended stream) and the ledger must over-count rather than lose."""
    fake.script(
        MODEL,
        Reply(text="this will never finish " * 4, input_tokens=500, cache_read_input_tokens=800, cut_after_events=3),
    )
    fake.default(MODEL, Reply(text="whole", input_tokens=20, output_tokens=2))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    seen: list[str] = []
    with serving(router, ctx, socket_path) as (_, client, recorder):
        with (
            pytest.raises(httpx2.RemoteProtocolError),
            client.messages.stream(model=MODEL, max_tokens=100_000, messages=HI) as stream,
        ):
            seen.extend(event.type for event in stream)
        cut, *_ = calls(raw, ctx.run_id)  # settled before the client saw the break
        with client.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:  # the gateway is unharmed
            assert stream.get_final_message().content[0].type == "text"
    assert seen[0] == "message_start" and "message_stop" not in seen
    assert recorder.seen[0].body.count(b"\n\n") == 3  # the events the upstream sent before breaking off
    assert fake.requests[0]["body"]["max_tokens"] == MAX_TOKENS
    assert cut["outcome"] == "error" and "charged its worst case" in cut["error"]
    assert (cut["input_tokens"], cut["output_tokens"], cut["cache_read_tokens"]) == (500, MAX_TOKENS, 800)
    usage = micro(deployment(router).cost(500, MAX_TOKENS, 0, 800))
    assert usage == billed(500, MAX_TOKENS, 0, 800)
    assert cut["cost_usd"] == max(usage, micro(cut["reserved_usd"]))  # at least the reserved worst case
    rows = calls(raw, ctx.run_id)
    assert [r["outcome"] for r in rows] == ["error", "ok"]
    assert_settled(raw, issue, rows)


# --- 8: what the upstream is asked ---------------------------------------------------------------------------------
def test_the_request_is_fitted_to_its_tier(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """The tier, not the CLI, decides the model and the most a call may cost: the requested name only picks
    between the role's tier and its fast tier (never a dearer one), max_tokens is capped at its maximum, and a
    thinking budget is kept below max_tokens."""
    router = router_for(
        models(tmp_path, fake, max_tokens={"execution": 2000, "utility": 300, "reasoning": 4000}), monkeypatch
    )
    fake.default("*", Reply(text="fitted"))
    ctx = call_context(raw, None)
    asked: list[tuple[str, int, dict[str, Any] | None]] = [
        (MODEL, 100_000, {"type": "enabled", "budget_tokens": 50_000}),  # capped; thinking shrunk below it
        (MODEL, 1500, {"type": "enabled", "budget_tokens": 1200}),  # within both: untouched
        (UTILITY, 5000, {"type": "enabled", "budget_tokens": 2000}),  # utility's 300 leave no room to think
        ("claude-haiku-4-5-20251001", 100, None),  # a haiku, not the deployment's name: still the utility tier
        ("hq-reasoning", 9000, None),  # not the role's tiers: the role's own
        ("claude-opus-4-7", 10, None),
        ("some-other-model", 10, None),  # the role's tier
    ]
    with serving(router, ctx, socket_path) as (_, client, _):
        for model, max_tokens, thinking in asked:
            if thinking is None:
                client.messages.create(model=model, max_tokens=max_tokens, messages=HI)
            else:
                client.messages.create(
                    model=model,
                    max_tokens=max_tokens,
                    messages=HI,
                    thinking={"type": "enabled", "budget_tokens": thinking["budget_tokens"]},
                )
    sent = [(r["body"]["model"], r["body"]["max_tokens"], r["body"].get("thinking")) for r in fake.requests]
    assert sent == [
        (MODEL, 2000, {"type": "enabled", "budget_tokens": 1999}),
        (MODEL, 1500, {"type": "enabled", "budget_tokens": 1200}),
        (UTILITY, 300, None),
        (UTILITY, 100, None),
        (MODEL, 2000, None),
        (MODEL, 10, None),
        (MODEL, 10, None),
    ]
    rows = calls(raw, ctx.run_id)
    assert [(r["tier"], r["deployment"], r["outcome"]) for r in rows] == [
        ("execution", "execution-1", "ok"),
        ("execution", "execution-1", "ok"),
        ("utility", "utility-1", "ok"),
        ("utility", "utility-1", "ok"),
        ("execution", "execution-1", "ok"),
        ("execution", "execution-1", "ok"),
        ("execution", "execution-1", "ok"),
    ]
    # Each reservation was the worst case of what was really sent: its capped max_tokens of output.
    per_output = Decimal(str(PRICE[1])) / 1_000_000
    assert [r["reserved_usd"] > per_output * n for r, (_, n, _) in zip(rows, sent, strict=True)] == [True] * 7
    assert rows[0]["reserved_usd"] < per_output * 2000 + Decimal("0.001")


# --- 9: the ledger over any sequence of calls ----------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """One call of a random session: how it is asked for, what the upstream reports, and whether it breaks."""

    stream: bool
    input_tokens: int
    output_tokens: int
    cache_write: int
    cache_read: int
    cut: int | None  # streamed only: the upstream breaks off after this many events

    def reply(self) -> Reply:
        return Reply(
            text="A reply of a few deltas.",
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_creation_input_tokens=self.cache_write,
            cache_read_input_tokens=self.cache_read,
            cut_after_events=self.cut if self.stream else None,
        )

    def charged(self) -> tuple[str, int, int, int, int]:
        """(outcome, input, output, cache write, cache read) the row must say, from the events the cut let by."""
        if not self.stream or self.cut is None:
            return "ok", self.input_tokens, self.output_tokens, self.cache_write, self.cache_read
        kinds = [kind for kind, _ in stream_events(self.reply(), MODEL)]
        started = self.cut > kinds.index("message_start")
        final = self.cut > kinds.index("message_delta")
        usage = (self.input_tokens, self.cache_write, self.cache_read) if started else (0, 0, 0)
        output = self.output_tokens if final else MAX_TOKENS
        return ("ok" if final else "error"), usage[0], output, usage[1], usage[2]


EVENTS = len(list(stream_events(Plan(True, 0, 0, 0, 0, None).reply(), MODEL)))
plans = st.builds(
    Plan,
    stream=st.booleans(),
    input_tokens=st.integers(0, 60_000),
    output_tokens=st.integers(1, MAX_TOKENS),
    cache_write=st.integers(0, 60_000),
    cache_read=st.integers(0, 200_000),
    cut=st.none() | st.integers(0, EVENTS),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(session=st.lists(plans, min_size=1, max_size=6))
def test_any_session_is_charged_exactly_its_usage(
    session: list[Plan],
    router: ModelRouter,
    fake: FakeAnthropic,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """Whatever mix of streamed, plain and broken calls a session makes, the issue is charged the sum of its rows,
    each row being its usage at each token's price in whole micro-dollars (a broken stream at max_tokens of
    output), and nothing stays reserved. Each example is a fresh issue and run; the database is the test's."""
    fake.scripts.clear()
    issue = new_issue(raw, status="todo", budget_usd=100)
    ctx = call_context(raw, issue)
    company_before = raw.execute("SELECT coalesce(sum(spent_usd), 0) FROM budget_accounts WHERE scope = 'company'")
    (company_spent_before,) = one(company_before.fetchone())
    with serving(router, ctx, socket_path) as (gateway, client, _):
        for plan in session:
            fake.script(MODEL, plan.reply())
            try:
                if plan.stream:
                    with client.messages.stream(model=MODEL, max_tokens=1000, messages=HI) as stream:
                        stream.get_final_message()
                else:
                    client.messages.create(model=MODEL, max_tokens=1000, messages=HI)
                answered = True
            except (httpx2.HTTPError, anthropic.APIError):
                answered = False
            assert answered == (not plan.stream or plan.cut is None), plan  # a broken stream never ends well
        assert gateway.failure is None and gateway.calls == len(session)
    rows = calls(raw, ctx.run_id)
    assert [
        (r["outcome"], r["input_tokens"], r["output_tokens"], r["cache_write_tokens"], r["cache_read_tokens"])
        for r in rows
    ] == [plan.charged() for plan in session]
    # A call whose usage never became final is charged at least its reserved worst case (the prompt was billed).
    expected = [
        billed(*plan.charged()[1:])
        if plan.charged()[0] == "ok"
        else max(billed(*plan.charged()[1:]), micro(r["reserved_usd"]))
        for plan, r in zip(session, rows, strict=True)
    ]
    assert [r["cost_usd"] for r in rows] == expected
    _, spent, reserved, open_reservations = money(raw, issue)
    assert spent == sum(expected, Decimal(0)) == sum((r["cost_usd"] for r in rows), Decimal(0))
    assert (reserved, open_reservations) == (0, 0)
    (company_spent_after,) = one(
        raw.execute("SELECT coalesce(sum(spent_usd), 0) FROM budget_accounts WHERE scope = 'company'").fetchone()
    )
    assert company_spent_after - company_spent_before == spent
    assert one(raw.execute("SELECT count(*) FROM budget_reservations").fetchone()) == (0,)
