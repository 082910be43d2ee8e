"""The one door to the models: tier → deployment, fallback, budget, one cost row per attempt.

Each call:
1. counts its input tokens and reserves the worst-case cost (the dearest
   deployment it could land on, with all its output tokens) against the issue,
   the agent's month and the company's month — or refuses, writing a
   ``budget_refused`` row and raising ``BudgetExceeded``;
2. asks LiteLLM's Router which deployment serves the tier (lowest ``order``
   among those not cooling down) and calls it; the Router counts failures and
   cools a deployment down after ``allowed_fails``. Transient failures retry
   with backoff (tenacity; ``retry-after`` honoured), then the tier's fallback
   tiers are tried;
3. writes one ``llm_calls`` row per attempt and settles the reservation to the
   actual cost in the same statement (db/sql/budget.sql), so a retried write
   can never count twice.

The router only raises: what a failure does to the issue (refund, count, block)
is the failure policy's to decide and write (workflows/lib/failures.py). A
deployment that answers 401/403 is paused in this process: its key is wrong,
and asking again cannot help until someone changes it (a new key is a new router,
see ``get_router``).

The call itself is ``litellm.completion`` on the chosen deployment rather than
``Router.completion``, whose sync path spins up an event loop per call and
costs as much again as the call; the Router still does what it is for:
ordering, failure counting and cooldown. Every attempt is seen directly, which
is what the cost rows need.

LiteLLM is imported here and only here, lazily: it costs seconds and ~165 MiB,
and `hq issues` / `hq approve` must never pay that.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError as SAOperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from config.errors import HQError
from config.log import ensure_configured, get_logger, requiet
from config.secrets import redact, redact_obj
from config.settings import Settings
from db.engine import get_engine
from db.storable import storable_text
from models.budget import BudgetExceeded, CallRow, Payer, Reservation, record, reserve
from models.config import Deployment, ModelMap, resolve_models

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

INPUT_MARGIN = Decimal("1.10")  # tokenizers differ between providers; reserve a little more
ERROR_LIMIT = 500
MAX_RETRY_AFTER = 60.0

log = get_logger(__name__)


class ModelError(HQError):
    """A model call failed; the subclass says whose fault it was."""


class ModelUnavailable(ModelError):
    """Every deployment failed for reasons that may pass (5xx, 429, timeouts, none healthy or unpaused)."""


class ModelRequestError(ModelError):
    """The provider refused this request itself (4xx): retrying it unchanged will not help."""


class ProviderAuthError(ModelError):
    """The provider refused our credentials (401/403): no call to that deployment can succeed until a human acts."""

    def __init__(self, message: str, *, deployment: str, key_fingerprint: str) -> None:
        super().__init__(message)
        self.deployment = deployment
        self.key_fingerprint = key_fingerprint  # which key failed, without the key: a new key may fail anew


AUTH_STATUSES = (401, 403)


@dataclass
class CallContext:
    """Who is calling and on whose money. One per workflow run; ``seq`` numbers its calls."""

    run_id: uuid.UUID
    workflow: str
    agent_id: int | None = None
    agent_slug: str | None = None
    agent_monthly_limit: Decimal | None = None
    issue_id: int | None = None
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @property
    def actor(self) -> str:
        return f"agent:{self.agent_slug}" if self.agent_slug else "system:router"

    def next_seq(self) -> int:
        return next(self._seq)

    def row(self, tier: str, deployment: Deployment | None, outcome: str, **values: Any) -> CallRow:
        return CallRow(
            run_id=self.run_id,
            seq=self.next_seq(),
            issue_id=self.issue_id,
            agent_id=self.agent_id,
            workflow=self.workflow,
            tier=tier,
            provider=deployment.provider if deployment else None,
            model=deployment.model if deployment else None,
            deployment=deployment.id if deployment else None,
            outcome=outcome,
            **values,
        )


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Completion:
    text: str
    tool_calls: list[ToolCallRequest]
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    deployment: Deployment
    outcome: str
    latency_ms: int


@dataclass(frozen=True)
class _Attempt:
    deployment: Deployment
    error: BaseException
    seconds: float


class _NoDeployment(Exception):
    """Every deployment of every tier this call may use is cooling down."""


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, _NoDeployment):
        return True
    status = getattr(error, "status_code", None)
    if status is None:
        return True  # connection errors and timeouts
    return int(status) in (408, 409, 429) or int(status) >= 500


NEVER_SENT = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "UnsupportedProtocol", "WriteError", "WriteTimeout"}
)
"""httpx's failures before the provider could hold a whole request: no connection, or the request cut while written."""
LOST_AFTER_SENDING = frozenset({"ReadTimeout", "ReadError", "RemoteProtocolError"})
"""httpx's failures after the whole request was written: the provider may have run it, and bills what it ran."""


def may_have_reached_provider(error: BaseException) -> bool:
    """Whether a failed attempt may have been received, run and billed by the provider.

    The transport's own failure decides where there is one, found down the chain of causes (LiteLLM and the
    anthropic SDK wrap httpx's, and LiteLLM gives its wrappers a status code of its own: 408 for a read
    timeout, 500 for a refused connection). Without one, an error status is the provider's answer, which it
    does not bill; anything else is taken to have reached it. Such an attempt is charged its worst case and
    never sent again blindly: a retry could be billed twice.
    """
    cause: BaseException | None = error
    while cause is not None:
        name = type(cause).__name__
        if name in NEVER_SENT:
            return False
        if name in LOST_AFTER_SENDING:
            return True
        cause = cause.__cause__ or cause.__context__
    return not isinstance(error, _NoDeployment) and getattr(error, "status_code", None) is None


def _is_auth_failure(error: BaseException) -> bool:
    return getattr(error, "status_code", None) in AUTH_STATUSES


def key_fingerprint(deployment: Deployment) -> str:
    """A short, one-way name for the credentials a deployment sends: tells a replaced key from the old one."""
    credential = "\0".join((deployment.provider or "", deployment.api_base or "", deployment.api_key or ""))
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(getattr(error, "response", None), "headers", None) or getattr(
        error, "litellm_response_headers", None
    )
    value = headers.get("retry-after") if headers is not None else None
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return min(seconds, MAX_RETRY_AFTER) if seconds is not None and seconds >= 0 else None


def _text_of(message: dict[str, Any]) -> str:
    """Everything in a chat message that costs input tokens."""
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content) if content else ""
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"])
    return text


def _error_text(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return redact(f"{type(error).__name__}" + (f" {status}" if status else "") + f": {first}")[:ERROR_LIMIT]


_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_litellm_hooks(litellm: Any) -> None:
    """Once per process: quiet LiteLLM and register the offline provider."""
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        from models.offline import OfflineModel  # imports LiteLLM

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.custom_provider_map = [{"provider": "hq-offline", "custom_handler": OfflineModel()}]
        # The Router's cooldown also schedules an alerting coroutine that a sync call never awaits.
        warnings.filterwarnings("ignore", message="coroutine '.*' was never awaited", category=RuntimeWarning)
        ensure_configured()
        requiet()  # importing LiteLLM reset a few library loggers' levels
        _hooks_installed = True


class ModelRouter:
    """Process-wide router over the resolved model map (thread-safe; one per process)."""

    def __init__(self, settings: Settings, models: ModelMap | None = None) -> None:
        self.settings = settings
        self.models = models or resolve_models(settings)
        self._router: Any = None
        self._litellm: Any = None
        self._encoding: Any = None
        self._lock = threading.Lock()
        self._failed_at: dict[str, float] = {}  # deployment id -> when it last failed in this process
        self.paused: set[str] = set()  # deployments whose credentials the provider refused

    # --- LiteLLM, built on first use -------------------------------------------------
    def _build(self) -> Any:
        with self._lock:
            if self._router is not None:
                return self._router
            import litellm  # seconds and ~165 MiB: only when a model is really called

            _install_litellm_hooks(litellm)
            spec = self.models.router
            model_list = [
                {
                    "model_name": d.tier,
                    "litellm_params": {"model": d.model, "order": d.order},
                    "model_info": {"id": d.id},
                }
                for deployments in self.models.tiers.values()
                for d in deployments
            ]
            self._router = litellm.Router(
                model_list=model_list,
                allowed_fails=spec.allowed_fails,
                cooldown_time=spec.cooldown_seconds,
                num_retries=spec.num_retries,
            )
            self._litellm = litellm
            self._encoding = litellm.encoding  # LiteLLM's bundled tokenizer: real counts, no network
            return self._router

    def _pick(self, tiers: list[str], messages: list[dict[str, Any]]) -> Deployment:
        """The serving deployment: the first tier with one not cooling down, by LiteLLM's order.

        LiteLLM's cooldowns are in-process state fed only by failures seen in this
        process; while none of the tier's deployments has failed within a cooldown
        period, the Router's answer is known to be the tier's first deployment, and
        asking it (a fifth of a millisecond) is skipped.
        """
        first = self.models.tiers.get(tiers[0]) or []
        window = self.models.router.cooldown_seconds
        now = time.monotonic()
        if first and not self.paused and all(now - self._failed_at.get(d.id, -1e9) > window for d in first):
            return first[0]
        for tier in tiers:
            try:
                chosen = self._router.get_available_deployment(model=tier, messages=messages)
            except Exception:
                continue
            deployment = self.models.by_id(str((chosen.get("model_info") or {}).get("id")))
            if deployment is not None and deployment.id in self.paused:  # LiteLLM knows nothing of our pauses
                deployment = next((d for d in self.models.tiers.get(tier) or [] if d.id not in self.paused), None)
            if deployment is not None:
                return deployment
        raise _NoDeployment("every deployment is cooling down or paused")

    # --- money -----------------------------------------------------------------------
    def estimate(
        self, tier: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, max_tokens: int
    ) -> Decimal:
        """The worst case: the dearest deployment the call could land on, with every output token used."""
        self._build()
        input_tokens = sum(self.count_tokens(_text_of(m)) + 4 for m in messages)
        if tools:
            input_tokens += self.count_tokens(json.dumps(tools))
        input_tokens = int(Decimal(input_tokens) * INPUT_MARGIN) + 16
        return max(d.cost(input_tokens, max_tokens) for d in self.models.candidates(tier))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by LiteLLM's bundled tokenizer: an estimate for any provider, no network."""
        self._build()
        return len(self._encoding.encode(text, disallowed_special=()))

    def reserve(self, ctx: CallContext, tier: str, estimate: Decimal) -> Reservation:
        """Set the call's worst case aside for its issue, agent and company, or record the refusal and raise."""
        payer = Payer(
            ctx.issue_id,
            ctx.agent_slug,
            ctx.agent_monthly_limit,
            Decimal(str(self.settings.company_monthly_budget_usd)),
        )
        try:
            return reserve(
                get_engine(self.settings), payer, estimate, ctx.run_id, self.settings.reservation_ttl_seconds
            )
        except BudgetExceeded as refused:
            self._refuse(ctx, tier, refused, estimate)
            raise

    def note_failure(
        self, deployment: Deployment, error: BaseException, *, credentials_refused: bool | None = None
    ) -> None:
        """A failed attempt: a deployment that could not serve it cools down, and refused credentials pause
        their key. A request the provider refused (400, 404, 413, ...) is that request's fault and says nothing
        of the deployment: counting it would let one bad request (a sandbox's, made on purpose, unbilled) send
        every run of the process to the backup.

        ``credentials_refused`` overrides the default reading (any 401/403): a forwarded request HQ did not
        compose may earn a 403 of its own, which says nothing of the key.
        """
        refused = _is_auth_failure(error) if credentials_refused is None else credentials_refused
        if _is_transient(error) or refused:
            self._failed_at[deployment.id] = time.monotonic()
        if refused:
            self._pause_credentials(deployment, error)

    def cooling(self, deployment: Deployment) -> bool:
        """Failed within the cooldown period in this process, or its credentials were refused."""
        if deployment.id in self.paused:
            return True
        return time.monotonic() - self._failed_at.get(deployment.id, -1e9) <= self.models.router.cooldown_seconds

    def _refuse(self, ctx: CallContext, tier: str, refused: BudgetExceeded, estimate: Decimal) -> None:
        """The refusal's cost row; what it does to the issue is the failure policy's."""
        record(
            get_engine(self.settings), ctx.row(tier, None, "budget_refused", reserved=estimate, error=refused.message)
        )
        log.warning(
            "llm.budget_refused",
            scope=refused.scope,
            tier=tier,
            issue_id=ctx.issue_id,
            agent=ctx.agent_slug,
            run_id=str(ctx.run_id),
            workflow=ctx.workflow,
        )

    # --- the call --------------------------------------------------------------------
    def complete(
        self,
        ctx: CallContext,
        tier: str,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        self._build()
        if tier not in self.models.tiers:
            raise ValueError(f"unknown tier {tier!r}")
        messages = redact_obj(messages)
        max_tokens = max_tokens or self.models.max_output_tokens[tier]
        estimate = self.estimate(tier, messages, tools, max_tokens)
        reservation = self.reserve(ctx, tier, estimate)
        attempts: list[_Attempt] = []
        started = time.monotonic()
        try:
            response, deployment = self._call(tier, messages, tools, max_tokens, attempts)
        except Exception as failure:
            self._record(ctx, tier, reservation, None, attempts, failure, estimate)
            message = _error_text(failure)
            log.warning(
                "llm.call_failed",
                tier=tier,
                error=message,
                attempts=len(attempts),
                issue_id=ctx.issue_id,
                agent=ctx.agent_slug,
                run_id=str(ctx.run_id),
                workflow=ctx.workflow,
            )
            raise self._error(failure, attempts, message) from None
        completion = self._completion(tier, deployment, response, int((time.monotonic() - started) * 1000))
        self._record(ctx, tier, reservation, completion, attempts, None, estimate)
        return completion

    def _error(self, failure: BaseException, attempts: list[_Attempt], message: str) -> ModelError:
        """The call failed: refused credentials (if that is why nothing was left to try), or whose fault it was."""
        refused = next((a for a in reversed(attempts) if _is_auth_failure(a.error)), None)
        if refused is not None and (_is_auth_failure(failure) or isinstance(failure, _NoDeployment)):
            return ProviderAuthError(
                _error_text(refused.error),
                deployment=refused.deployment.id,
                key_fingerprint=key_fingerprint(refused.deployment),
            )
        return (ModelUnavailable if _is_transient(failure) else ModelRequestError)(message)

    def _pause_credentials(self, deployment: Deployment, error: BaseException) -> None:
        """Every deployment that sends the same key to the same provider would be refused alike."""
        fingerprint = key_fingerprint(deployment)
        same_key = [d.id for tier in self.models.tiers.values() for d in tier if key_fingerprint(d) == fingerprint]
        self.paused.update(same_key)
        log.error(
            "llm.deployments_paused", deployments=same_key, reason="credentials refused", error=_error_text(error)
        )

    def _may_retry(self, error: BaseException, tiers: list[str]) -> bool:
        """Transient failures retry; refused credentials only move on to a deployment with other ones."""
        if _is_auth_failure(error):
            return any(d.id not in self.paused for tier in tiers for d in self.models.tiers.get(tier) or [])
        return _is_transient(error) and not may_have_reached_provider(error)

    def _call(
        self,
        tier: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int,
        attempts: list[_Attempt],
    ) -> tuple[Any, Deployment]:
        tiers = [tier, *self.models.router.tier_fallbacks.get(tier, [])]  # type: ignore[call-overload]

        def wait(state: RetryCallState) -> float:
            """No wait when another deployment can take over; else retry-after, else exponential backoff."""
            error = state.outcome.exception() if state.outcome else None
            try:
                if attempts and self._pick(tiers, messages).id != attempts[-1].deployment.id:
                    return 0.0
            except _NoDeployment:
                pass
            after = _retry_after(error) if error is not None else None
            return after if after is not None else min(8.0, 0.5 * 2 ** (state.attempt_number - 1))

        for attempt in Retrying(
            stop=stop_after_attempt(self.models.router.num_retries + 1),
            wait=wait,
            retry=retry_if_exception(lambda error: self._may_retry(error, tiers)),
            reraise=True,
        ):
            with attempt:
                deployment = self._pick(tiers, messages)
                started = time.monotonic()
                try:
                    response = self._litellm.completion(
                        model=deployment.model,
                        messages=messages,
                        max_tokens=max_tokens,
                        tools=tools or None,
                        api_key=deployment.api_key,
                        api_base=deployment.api_base,
                        mock_response=deployment.mock_response,
                        timeout=self.models.router.timeout_seconds,
                        max_retries=0,
                        # model_info and model_group let the Router's failure callback count this attempt.
                        model_info={"id": deployment.id},
                        metadata={"model_group": deployment.tier},
                        # LiteLLM otherwise imports its MCP gateway (an optional dependency) when tools are passed.
                        _skip_mcp_handler=True,
                    )
                except Exception as error:
                    attempts.append(_Attempt(deployment, error, time.monotonic() - started))
                    self.note_failure(deployment, error)
                    raise
                return response, deployment
        raise AssertionError("unreachable")  # pragma: no cover

    def _completion(self, tier: str, deployment: Deployment, response: Any, latency_ms: int) -> Completion:
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        choice = response.choices[0]
        message = choice.message
        calls = [
            ToolCallRequest(call.id, call.function.name, redact(call.function.arguments or "{}"))
            for call in (getattr(message, "tool_calls", None) or [])
        ]
        primary = deployment.tier == tier and deployment.order == 1
        return Completion(
            text=storable_text(redact(message.content or "")),
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=deployment.cost(input_tokens, output_tokens),
            deployment=deployment,
            outcome="ok" if primary else "fallback",
            latency_ms=latency_ms,
        )

    def _record(
        self,
        ctx: CallContext,
        tier: str,
        reservation: Reservation,
        completion: Completion | None,
        attempts: list[_Attempt],
        failure: BaseException | None,
        estimate: Decimal = Decimal(0),
    ) -> None:
        """A row per failed attempt, then the call's own row, which settles the reservation."""
        rows = [
            ctx.row(tier, a.deployment, "error", latency_ms=int(a.seconds * 1000), error=_error_text(a.error))
            for a in attempts
        ]
        if completion is not None:
            final = ctx.row(
                tier,
                completion.deployment,
                completion.outcome,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost=completion.cost_usd,
                reserved=estimate,
                latency_ms=completion.latency_ms,
            )
        elif not attempts:  # failed before any deployment was tried (all cooling down): still one row
            final = ctx.row(tier, None, "error", error=_error_text(failure or RuntimeError("failed")))
        elif attempts[-1].error is failure and failure is not None and may_have_reached_provider(failure):
            rows.pop()  # sent, and no answer came: it settles at the reserved worst case, never at nothing
            last = attempts[-1]
            final = ctx.row(
                tier,
                last.deployment,
                "error",
                cost=estimate,
                reserved=estimate,
                latency_ms=int(last.seconds * 1000),
                error=f"{_error_text(failure)}; sent, no answer: charged its worst case"[:ERROR_LIMIT],
            )
        else:  # the last failed attempt's row settles (to nothing): the provider answered it, or never got it
            final = rows.pop()
        write_call_rows(get_engine(self.settings), rows, final, reservation)


@retry(
    retry=retry_if_exception_type((SAOperationalError, psycopg.OperationalError)),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.2, max=5),
    reraise=True,
)
def write_call_rows(engine: Engine, rows: list[CallRow], final: CallRow, reservation: Reservation) -> None:
    """Retried if the database blinks: sequence numbers are fixed, so a rewrite cannot count twice."""
    for row in rows:
        record(engine, row)
    record(engine, final, reservation)


_routers: dict[tuple[str, str], ModelRouter] = {}
_routers_lock = threading.Lock()


def get_router(settings: Settings) -> ModelRouter:
    """The process's router for these settings (models file and keys)."""
    fingerprint = hashlib.sha256("\0".join(sorted(settings.secret_values())).encode()).hexdigest()
    key = (str(settings.models_path), fingerprint)
    with _routers_lock:
        if key not in _routers:
            _routers[key] = ModelRouter(settings)
        return _routers[key]
