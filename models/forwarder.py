"""Messages API calls that HQ does not compose: a coding agent's, forwarded through the router.

An external CLI (Claude Code) writes its own requests to the Anthropic Messages
API. The gateway (runtimes/gateway.py) hands each one here, and it is
treated exactly like a call of HQ's own tool loop, with what it may ask for
limited to what HQ prices:

1. the request is refused (400, nothing sent) if it would make the provider
   reach out or bill what HQ does not price: ``url`` and ``file`` sources of
   images and documents anywhere (system, messages, tool results, content
   documents), block types other than the caller's own content (search
   results, container uploads, server tool blocks), the provider's tools and
   MCP connectors, body fields off ALLOWED_FIELDS (fast mode, a region, a
   container ...), ``service_tier`` other than auto / standard_only, context
   edits other than clearing, and ``anthropic-beta`` values off ALLOWED_BETAS
   (the 1M-context premium, files, anything new);
2. the role's tiers decide: the requested model name only chooses between the
   role's tier and its fast tier (``hq-reasoning`` or an opus name on an
   execution-tier run gets the execution tier); the tier's Anthropic
   deployments, fallback tiers included, may serve it;
3. the worst case is reserved before anything is sent: every input token at
   the dearest input price (a prompt may be written to the 1-hour cache whole,
   2x input), inline images at IMAGE_TOKENS each and a PDF at a whole context
   window (not the text of their base64; the input never above CONTEXT_TOKENS),
   and ``max_tokens`` of output, capped at the tier's configured maximum. No
   reservation, no call;
4. the request goes upstream with HQ's provider key (the CLI holds only the
   run's gateway token), retried as the router retries (cooldown, retry-after,
   fallback) only while it cannot have reached the provider: a failure to
   connect, or an error the provider answered (which it does not bill). A
   request that may have been received (a timeout waiting for the answer, a
   connection lost after sending) is not sent again, and is charged its
   reserved worst case. Only a 401 pauses HQ's key: a 403 may be the request's
   own doing and is passed back to the CLI;
5. the answer is passed through as it comes, its usage read on the way
   (``message_start``, ``message_delta``), and the reservation is settled to
   that usage, input, output, cache-write (5-minute and 1-hour apart, from the
   ``cache_creation`` breakdown) and cache-read tokens each at its own price,
   in one ``llm_calls`` row. A stream that ends before its final usage is
   charged at least its worst case: the ledger may over-count a call, never
   lose one.

The anthropic SDK is the client (``with_streaming_response`` hands over the raw
bytes); it is imported on first use only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from config.log import get_logger
from db.engine import get_engine
from models.budget import BudgetExceeded, CallRow, Reservation
from models.config import Deployment, ModelMap
from models.router import (
    AUTH_STATUSES,
    ERROR_LIMIT,
    INPUT_MARGIN,
    CallContext,
    ModelError,
    ModelRequestError,
    ModelRouter,
    _Attempt,
    _error_text,
    _is_transient,
    _NoDeployment,
    _retry_after,
    may_have_reached_provider,
    write_call_rows,
)

ANTHROPIC = "anthropic"
# Of the CLI's headers only ``anthropic-beta`` may reach the provider, and only with allowed values; never a credential.
# Betas that neither change what a token costs nor make the provider reach anything: what the pinned Claude Code
# CLI (2.1.197) sends on every turn (its own marker, interleaved and counted thinking, clearing old thinking,
# cache scope, effort), and prompt caching with its 1-hour lifetime (priced), token-efficient tools, fine-grained
# tool streaming and structured outputs. Anything else (context-1m's premium, files, code execution, MCP ...)
# is refused: a beta HQ has not read is a price HQ does not know.
ALLOWED_BETAS = (
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "thinking-token-count-2026-05-13",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
    "effort-2025-11-24",
    "prompt-caching-2024-07-31",
    "extended-cache-ttl-2025-04-11",
    "token-efficient-tools-2025-02-19",
    "fine-grained-tool-streaming-2025-05-14",
    "structured-outputs-2025-11-13",
)
# Body fields forwarded: the request, sampling, thinking and output settings, each priced by its tokens.
# Others (speed / fast mode, inference_geo, container, mcp_servers, anything new) change the price or reach out.
ALLOWED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "stream",
        "system",
        "tools",
        "tool_choice",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
        "thinking",
        "output_config",
        "output_format",
        "context_management",
        "service_tier",
    }
)
SERVICE_TIERS = ("auto", "standard_only")  # priority capacity is billed apart
CONTEXT_EDITS = ("clear_thinking_", "clear_tool_uses_")  # edits that only drop content (compaction makes calls)
BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"})
INLINE_SOURCES = {"image": ("base64",), "document": ("base64", "text", "content")}  # never url or file
TIER_PREFIX = "hq-"
FAMILY_TIERS = (("opus", "reasoning"), ("sonnet", "execution"), ("haiku", "utility"))
MIN_THINKING_TOKENS = 1024  # the API's smallest thinking budget
# Worst cases of inline media, counted instead of the JSON text of their base64:
# - a context window: no prompt the provider accepts (and bills) is longer; the 1M window needs a refused beta;
CONTEXT_TOKENS = 200_000
# - an image: (width x height) / 750 tokens, scaled down by the API to a 1568-pixel long edge and about 1,600
#   tokens; 1568 x 1568 / 750 = 3,278 holds even without the ~1,600 cap, so 3,300 a picture whatever its bytes;
IMAGE_TOKENS = 3_300
# - a PDF: each page costs up to about 3,000 tokens of text plus the page as an image (1,600), and its pages
#   cannot be counted from its bytes (page objects hide in compressed object streams; a comment can name a page
#   that is not there), so a PDF is reserved at a whole context window.
MAX_EVENT_BYTES = 16 * 1024 * 1024  # an SSE event longer than this is passed on unread

log = get_logger(__name__)


class ApiFailure(Exception):
    """An answer for the CLI in the API's error shape; ``cause`` is what the failure policy should see."""

    def __init__(
        self, status: int, error_type: str, message: str, cause: BudgetExceeded | ModelError | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.cause = cause

    def body(self) -> bytes:
        return json.dumps({"type": "error", "error": {"type": self.error_type, "message": self.message}}).encode()


@dataclass
class Usage:
    """A call's usage as the provider reports it; ``final`` once ``message_delta`` (or the whole body) said so."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those with the 1-hour lifetime (a dearer price)
    seen: bool = False
    final: bool = False

    def update(self, usage: Any) -> None:
        if not isinstance(usage, Mapping):
            return
        self.seen = True
        for name, key in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_write_tokens", "cache_creation_input_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
        ):
            value = usage.get(key)
            if _count(value):
                setattr(self, name, value)
        lifetimes = usage.get("cache_creation")
        if isinstance(lifetimes, Mapping):
            short, long = (_tokens(lifetimes.get(f"ephemeral_{ttl}_input_tokens")) for ttl in ("5m", "1h"))
            self.cache_write_1h_tokens = long
            self.cache_write_tokens = max(self.cache_write_tokens, short + long)  # never fewer than their parts


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _tokens(value: Any) -> int:
    return value if _count(value) else 0


@dataclass
class _Events:
    """Reads the usage out of a Messages API event stream as it passes; the bytes themselves are not changed."""

    usage: Usage
    buffer: bytearray = field(default_factory=bytearray)
    stop_reason: str | None = None
    blind: bool = False  # an event too long to keep: the rest passes unread, the output charged in full

    def feed(self, chunk: bytes) -> None:
        if self.blind:
            return
        self.buffer += chunk
        # Normalised in the buffer, not per chunk: a chunk may end between the \r and the \n of one CRLF.
        self.buffer[:] = self.buffer.replace(b"\r\n", b"\n")
        while (end := self.buffer.find(b"\n\n")) >= 0:
            event = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._event(event)
        if len(self.buffer) > MAX_EVENT_BYTES:
            self.blind, self.usage.final = True, False
            self.buffer.clear()

    def _event(self, raw: bytes) -> None:
        data = b"\n".join(line[5:].lstrip() for line in raw.split(b"\n") if line.startswith(b"data:"))
        try:
            event = json.loads(data) if data else None
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
            self.usage.update(event["message"].get("usage"))
        elif event.get("type") == "message_delta":
            self.usage.update(event.get("usage"))
            self.usage.final = True
            delta = event.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]


class StreamCut(Exception):
    """The provider's stream broke off: the CLI must see its stream end unfinished, not end well."""


class Forwarded:
    """The provider's answer on its way to the CLI: iterate it for the bytes, then close it.

    The call is settled exactly once: when the stream ends, when it breaks, or at
    ``close()`` if the CLI went away first (at the usage seen by then).
    """

    def __init__(self, status: int, content_type: str, request_id: str | None, chunks: Iterator[bytes]) -> None:
        self.status = status
        self.content_type = content_type
        self.request_id = request_id
        self._chunks = chunks
        self._close: Callable[[], None] = lambda: None

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._close()


def tier_for(model: str, tiers: Sequence[str], models: ModelMap) -> str:
    """Which of the run's tiers (the role's, then its fast tier) a requested model name asks for.

    The role's tiers decide; a name only chooses among them: a model one of them serves (what HQ tells the
    CLI to use), else ``hq-<tier>``, else a model family (opus, sonnet, haiku), of one of them; anything
    else, ``hq-reasoning`` or an opus for an execution-tier role included, gets the role's own tier.
    """
    name = model.lower()
    for tier in tiers:
        if any(provider_model(d).lower() == name for d in anthropic_deployments(models, tier)):
            return tier
    if name.startswith(TIER_PREFIX) and name[len(TIER_PREFIX) :] in tiers:
        return name[len(TIER_PREFIX) :]
    family = next((tier for family, tier in FAMILY_TIERS if family in name), tiers[0])
    return family if family in tiers else tiers[0]


def anthropic_deployments(models: ModelMap, tier: str) -> list[Deployment]:
    """Who may serve a forwarded call on ``tier``: its Anthropic deployments, then its fallback tiers'."""
    return [d for d in models.candidates(tier) if d.provider == ANTHROPIC]


def provider_model(deployment: Deployment) -> str:
    return deployment.model.split("/", 1)[1]


@cache
def forwarder_for(router: ModelRouter) -> Forwarder:
    """The process's forwarder for a router (one per router: it keeps the provider clients)."""
    return Forwarder(router)


class Forwarder:
    """Forwards Messages API requests for one process's router; thread-safe (the gateway serves in threads)."""

    def __init__(self, router: ModelRouter) -> None:
        self.router = router
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the provider clients' connections (a process's own forwarder lives as long as it does)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def count_tokens(self, body: Mapping[str, Any]) -> int:
        """``count_tokens`` answered here, free: the tokenizer's count of what the request would send."""
        try:
            media = _media_tokens(body)
        except ApiFailure:
            media = 0  # nothing is sent: a count is only a count
        return self.router.count_tokens(_prompt_text(body)) + media

    def forward(
        self,
        ctx: CallContext,
        default_tier: str,
        body: dict[str, Any],
        headers: Mapping[str, str],
        *,
        fast_tier: str | None = None,
    ) -> Forwarded:
        """Reserve, send, and hand back the answer; raises ApiFailure for anything the CLI must be told."""
        request = _valid(body)
        betas = _betas(headers)
        media = _media_tokens(request)
        tiers = (default_tier, fast_tier) if fast_tier and fast_tier != default_tier else (default_tier,)
        tier = tier_for(request["model"], tiers, self.router.models)
        deployments = anthropic_deployments(self.router.models, tier)
        if not deployments:
            raise ApiFailure(
                400,
                "invalid_request_error",
                f"no Anthropic deployment serves the {tier} tier",
                ModelRequestError(f"no Anthropic deployment serves the {tier} tier"),
            )
        request["max_tokens"] = min(request["max_tokens"], self.router.models.max_output_tokens[tier])
        _fit_thinking(request)
        text_tokens = int(Decimal(self.router.count_tokens(_prompt_text(request))) * INPUT_MARGIN) + 16
        input_tokens = min(text_tokens + media, CONTEXT_TOKENS)  # the provider bills no more than a window holds
        estimate = max(d.dearest_input * input_tokens + d.output_price * request["max_tokens"] for d in deployments)
        try:
            reservation = self.router.reserve(ctx, tier, estimate)
        except BudgetExceeded as refused:
            raise ApiFailure(400, "invalid_request_error", refused.message, refused) from None
        call = _Call(ctx, tier, deployments, reservation, estimate, request["max_tokens"], self.router)
        extra_headers = {"anthropic-beta": betas} if betas else {}
        try:
            response, deployment = self._send(call, request, extra_headers)
        except Exception as failure:
            raise call.failed(failure) from None
        return call.answer(response, deployment, bool(request.get("stream")))

    # --- upstream ------------------------------------------------------------------------
    def _client(self, deployment: Deployment) -> Any:
        with self._lock:
            client = self._clients.get(deployment.id)
            if client is None:
                import anthropic  # only a process that forwards pays for it

                client = anthropic.Anthropic(
                    api_key=deployment.api_key,
                    base_url=deployment.api_base,
                    max_retries=0,  # retries are the router's, counted and recorded
                    timeout=self.router.models.router.timeout_seconds,
                )
                self._clients[deployment.id] = client
            return client

    def _send(self, call: _Call, request: dict[str, Any], extra_headers: dict[str, str]) -> tuple[Any, Deployment]:
        """Until the first byte: pick, send, and on failure retry as the router's policy says."""
        router = self.router
        paused_all = lambda: all(d.id in router.paused for d in call.deployments)  # noqa: E731

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            if call.attempts and not paused_all() and call.pick().id != call.attempts[-1].deployment.id:
                return 0.0
            after = _retry_after(error) if error is not None else None
            return after if after is not None else min(8.0, 0.5 * 2 ** (state.attempt_number - 1))

        def may_retry(error: BaseException) -> bool:
            if _key_refused(error):
                return not paused_all()
            if may_have_reached_provider(error):
                return False  # a POST the provider may have run (and billed) is not sent again blindly
            return _is_transient(error)

        fields = {k: v for k, v in request.items() if k not in ("model", "max_tokens", "messages", "stream")}
        for attempt in Retrying(
            stop=stop_after_attempt(router.models.router.num_retries + 1),
            wait=wait,
            retry=retry_if_exception(may_retry),
            reraise=True,
        ):
            with attempt:
                deployment = call.pick()
                started = time.monotonic()
                try:
                    pending = self._client(deployment).messages.with_streaming_response.create(
                        model=provider_model(deployment),
                        max_tokens=request["max_tokens"],
                        messages=request["messages"],
                        stream=bool(request.get("stream")),
                        extra_body=fields,
                        extra_headers=extra_headers,
                    )
                    response = pending.__enter__()
                except Exception as error:
                    failed = getattr(error, "response", None)
                    if failed is not None:  # an error answer's connection goes back to the pool, not to the GC
                        failed.close()
                    call.attempts.append(_Attempt(deployment, error, time.monotonic() - started))
                    # Only the provider refusing HQ's key (401) pauses it: a 403 may be this request's own
                    # doing (a permission it asks for), and the sandbox must not switch HQ's key off.
                    router.note_failure(deployment, error, credentials_refused=_key_refused(error))
                    raise
                return response, deployment
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class _Call:
    """One forwarded call from reservation to settlement: its attempts, and the rows it writes once."""

    ctx: CallContext
    tier: str
    deployments: list[Deployment]
    reservation: Reservation
    estimate: Decimal
    max_tokens: int
    router: ModelRouter
    attempts: list[_Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def pick(self) -> Deployment:
        """The first deployment not cooling down, else the first whose key is not refused."""
        usable = [d for d in self.deployments if d.id not in self.router.paused]
        if not usable:
            raise _NoDeployment("every Anthropic deployment's credentials were refused")
        return next((d for d in usable if not self.router.cooling(d)), usable[0])

    def failed(self, failure: BaseException) -> ApiFailure:
        """Nothing was answered: the attempts' rows, and what to tell the CLI.

        A request that failed after it may have reached the provider (a timeout waiting for the answer, a
        connection lost after sending) is charged its reserved worst case: the provider may have run it
        and bills what it generated. Only a failure before sending, or an error the provider answered
        (which it does not bill), settles at $0 and releases the reservation.
        """
        last = self.attempts[-1] if self.attempts else None
        if last is not None and last.error is failure and may_have_reached_provider(failure):
            self.attempts.pop()
            self.settle(last.deployment, Usage(), error=failure, sent=True)
        else:
            rows = [
                self._row(a.deployment, "error", error=_error_text(a.error), seconds=a.seconds) for a in self.attempts
            ]
            final = rows.pop() if rows else self.ctx.row(self.tier, None, "error", error=_error_text(failure))
            write_call_rows(get_engine(self.router.settings), rows, final, self.reservation)
        status = getattr(failure, "status_code", None)
        if status in AUTH_STATUSES and not _key_refused(failure):
            cause: ModelError = ModelRequestError(_error_text(failure))  # the request's own doing, not HQ's key
        else:
            cause = self.router._error(failure, self.attempts, _error_text(failure))
        log.warning(
            "gateway.call_failed",
            tier=self.tier,
            error=cause.message,
            attempts=len(self.attempts),
            issue_id=self.ctx.issue_id,
            agent=self.ctx.agent_slug,
            run_id=str(self.ctx.run_id),
            workflow=self.ctx.workflow,
        )
        if isinstance(cause, ModelRequestError) and isinstance(status, int) and 400 <= status < 500:
            return ApiFailure(status, _upstream_error_type(failure), cause.message, cause)
        # Answered as a request error, which the CLI does not retry: HQ has retried already, and its
        # failure policy, not the CLI, decides what the issue does next.
        return ApiFailure(400, "invalid_request_error", f"HQ could not reach a model: {cause.message}", cause)

    def answer(self, response: Any, deployment: Deployment, stream: bool) -> Forwarded:
        content_type = response.headers.get("content-type", "application/json")
        request_id = response.headers.get("request-id")
        if stream:
            relay = _Relay(self, response, deployment)
            forwarded = Forwarded(response.status_code, content_type, request_id, relay)
            forwarded._close = relay.close
            return forwarded
        usage = Usage()
        try:
            data = response.read()
        except Exception as error:
            self.settle(deployment, usage, error=error)
            raise ApiFailure(400, "invalid_request_error", f"the answer was cut: {_error_text(error)}") from None
        finally:
            response.close()
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            usage.update(parsed.get("usage"))
            usage.final = usage.seen
        self.settle(deployment, usage)
        return Forwarded(response.status_code, content_type, request_id, iter([data]))

    def settle(
        self, deployment: Deployment, usage: Usage, *, error: BaseException | None = None, sent: bool = False
    ) -> None:
        """The call's one row at the provider's usage.

        Usage that never became final (a cut stream, a client gone before the first byte) is charged
        at least the reserved worst case: the provider bills the prompt it received whether or not
        HQ saw its usage, so such a call may over-count, never go free.
        """
        output = usage.output_tokens if usage.final else self.max_tokens
        primary = deployment.tier == self.tier and deployment.order == 1
        outcome = "error" if not usage.final else "ok" if primary else "fallback"
        problem = None
        if not usage.final:
            why = _error_text(error) if error is not None else "the stream ended before its final usage"
            problem = f"{why}; {'sent, no answer: ' if sent else ''}charged its worst case"
        cost = deployment.cost(
            usage.input_tokens,
            output,
            usage.cache_write_tokens,
            usage.cache_read_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
        )
        rows = [self._row(a.deployment, "error", error=_error_text(a.error), seconds=a.seconds) for a in self.attempts]
        final = self._row(
            deployment,
            outcome,
            input_tokens=usage.input_tokens,
            output_tokens=output,
            cache_write_tokens=usage.cache_write_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cost=cost if usage.final else max(cost, self.estimate),
            reserved=self.estimate,
            seconds=time.monotonic() - self.started,
            error=problem[:ERROR_LIMIT] if problem else None,
        )
        write_call_rows(get_engine(self.router.settings), rows, final, self.reservation)

    def _row(self, deployment: Deployment | None, outcome: str, *, seconds: float, **values: Any) -> CallRow:
        return self.ctx.row(self.tier, deployment, outcome, latency_ms=int(seconds * 1000), **values)


class _Relay:
    """The stream's chunks as they come, their usage read on the way; settles once, however it ends."""

    def __init__(self, call: _Call, response: Any, deployment: Deployment) -> None:
        self.call, self.response, self.deployment = call, response, deployment
        self.events = _Events(Usage())
        self.chunks = response.iter_bytes()
        self.settled = False

    def __iter__(self) -> _Relay:
        return self

    def __next__(self) -> bytes:
        try:
            chunk: bytes = next(self.chunks)
        except StopIteration:
            self._finish(None)
            raise
        except Exception as error:
            self._finish(error)
            raise StreamCut(_error_text(error)) from None
        self.events.feed(chunk)
        return chunk

    def close(self) -> None:
        """The CLI went away (or the stream was read to its end): settle at what the provider reported."""
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if self.settled:
            return
        self.settled = True
        try:
            self.response.close()
        finally:
            self.call.settle(self.deployment, self.events.usage, error=error)


def _valid(body: Any) -> dict[str, Any]:
    """The request's shape, enough to price it; the provider judges the rest."""
    if not isinstance(body, dict):
        raise ApiFailure(400, "invalid_request_error", "the request body must be a JSON object")
    model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
    if not isinstance(model, str) or not model:
        raise ApiFailure(400, "invalid_request_error", "model: a model name is required")
    if not isinstance(messages, list) or not messages:
        raise ApiFailure(400, "invalid_request_error", "messages: a non-empty list is required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ApiFailure(400, "invalid_request_error", "max_tokens: a positive integer is required")
    if not isinstance(body.get("stream", False), bool):
        raise ApiFailure(400, "invalid_request_error", "stream: must be true or false")
    # Fields that change the price or make the provider reach out (the provider's MCP connectors and
    # containers, fast mode, a region, what HQ has not read) are refused: only priced ones go through.
    unknown = sorted(key for key in body if key not in ALLOWED_FIELDS)
    if unknown:
        raise ApiFailure(400, "invalid_request_error", f"{', '.join(unknown)}: not allowed through HQ")
    if body.get("service_tier", "auto") not in SERVICE_TIERS:
        raise ApiFailure(
            400, "invalid_request_error", "service_tier: other than auto or standard_only, not allowed through HQ"
        )
    _check_context_management(body.get("context_management"))
    # The provider's own tools (web fetch and search, code execution) would reach the network the sandbox
    # has not, and are billed apart from tokens: only the caller's tools go through.
    tools = body.get("tools") or []
    if not isinstance(tools, list) or any(
        not isinstance(t, dict) or t.get("type", "custom") != "custom" for t in tools
    ):
        raise ApiFailure(400, "invalid_request_error", "tools: only custom tools are allowed through HQ")
    return dict(body)


def _check_context_management(value: Any) -> None:
    """Context editing that only drops old content is priced by the tokens left; compaction makes calls of its own."""
    if value is None:
        return
    edits = value.get("edits") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or set(value) - {"edits"}
        or not isinstance(edits, list)
        or any(not isinstance(e, dict) or not str(e.get("type", "")).startswith(CONTEXT_EDITS) for e in edits)
    ):
        raise ApiFailure(
            400, "invalid_request_error", "context_management: edits other than clearing, not allowed through HQ"
        )


def _betas(headers: Mapping[str, str]) -> str | None:
    """The ``anthropic-beta`` header to forward, if every value in it is on the allow-list; else refused."""
    header = headers.get("anthropic-beta")
    if not header:
        return None
    refused = [value for value in (v.strip() for v in header.split(",")) if value and value not in ALLOWED_BETAS]
    if refused:
        raise ApiFailure(400, "invalid_request_error", f"anthropic-beta: {', '.join(refused)} not allowed through HQ")
    return header


def _media_tokens(body: Mapping[str, Any]) -> int:
    """Refuses any content the provider would fetch; the worst case, in tokens, of the inline media left.

    Content blocks are walked where the API reads them: the system prompt, each message, tool results
    and documents made of content. Only inline sources pass (never ``url`` or ``file``), and only block
    types that carry the caller's own content (no search results, container uploads, server tool blocks).
    """
    tokens = 0
    system = body.get("system")
    if isinstance(system, list):
        tokens += _blocks(system, "system")
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            tokens += _blocks(content, f"messages.{index}.content")
    return tokens


def _blocks(blocks: list[Any], where: str) -> int:
    tokens = 0
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue  # the provider refuses a malformed block itself, unbilled
        kind, here = block.get("type"), f"{where}.{index}"
        if kind not in BLOCK_TYPES:
            raise ApiFailure(400, "invalid_request_error", f"{here}: {kind} blocks are not allowed through HQ")
        if kind == "tool_result" and isinstance(block.get("content"), list):
            tokens += _blocks(block["content"], f"{here}.content")
        elif kind in INLINE_SOURCES:
            source = block.get("source")
            source_type = source.get("type") if isinstance(source, dict) else None
            if not isinstance(source, dict) or source_type not in INLINE_SOURCES[kind]:
                raise ApiFailure(
                    400,
                    "invalid_request_error",
                    f"{here}: {kind} sources of type {source_type} are not allowed through HQ",
                )
            if source_type == "content" and isinstance(source.get("content"), list):
                tokens += _blocks(source["content"], f"{here}.source.content")
            elif kind == "image":
                tokens += IMAGE_TOKENS
            elif source_type == "base64":
                tokens += CONTEXT_TOKENS  # a PDF's pages cannot be counted from its bytes; the window bounds them
    return tokens


def _fit_thinking(request: dict[str, Any]) -> None:
    """A thinking budget must stay below max_tokens: shrink it to fit, or drop it when nothing fits."""
    thinking = request.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int) and budget < request["max_tokens"]:
        return
    if request["max_tokens"] - 1 >= MIN_THINKING_TOKENS:
        request["thinking"] = {**thinking, "budget_tokens": request["max_tokens"] - 1}
    else:
        request.pop("thinking")


def _prompt_text(body: Mapping[str, Any]) -> str:
    """Everything in a request that is billed as text input (inline media are counted apart, by _media_tokens)."""
    parts = [body.get("system"), _without_media(body.get("messages")), body.get("tools")]
    return json.dumps(parts, ensure_ascii=False, default=str)


def _without_media(value: Any) -> Any:
    """``value`` with base64 payloads emptied: their text is not what they cost (an image is tokens by its size)."""
    if isinstance(value, list):
        return [_without_media(item) for item in value]
    if isinstance(value, dict):
        if value.get("type") == "base64" and "data" in value:
            return {**value, "data": ""}
        return {key: _without_media(item) for key, item in value.items()}
    return value


def _key_refused(error: BaseException) -> bool:
    """The provider refused HQ's key itself (401): no request of the sandbox's can cause that."""
    return getattr(error, "status_code", None) == 401


def _upstream_error_type(error: BaseException) -> str:
    body = getattr(error, "body", None)
    inner = body.get("error") if isinstance(body, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    return kind if isinstance(kind, str) and kind.replace("_", "").isalnum() else "invalid_request_error"
