"""The one door to the models: tier → deployment, fallback, budget, one cost row per attempt.

Each call:
1. counts its input tokens and reserves the worst-case cost (the dearest
   deployment it could land on, with all its output tokens) against the issue,
   the agent's month and the company's month — or refuses, writing a
   ``budget_refused`` row, blocking the issue and opening a budget approval;
2. goes through LiteLLM's Router: deployments tried by ``order``, a failing one
   cools down after ``allowed_fails``, ``retry-after`` honoured, then the tier's
   fallback tiers;
3. writes one ``llm_calls`` row per attempt (the failed ones from LiteLLM's
   failure callback, the answer with ``ok`` or ``fallback``) and settles the
   reservation to the actual cost, in one transaction that a retry cannot count
   twice.

LiteLLM is imported here and only here, lazily: it costs seconds and ~165 MiB,
and `hq issues` / `hq approve` must never pay that.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from agents.llm.budget import BudgetExceeded, Payer, Reservation, reserve, settle
from agents.llm.config import Deployment, ModelMap, resolve_models
from config.errors import HQError
from config.log import get_logger, requiet
from config.secrets import redact, redact_obj
from config.settings import Settings
from db.engine import transaction
from db.models import LLMCall

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

INPUT_MARGIN = Decimal("1.10")  # tokenizers differ between providers; reserve a little more
RESERVATION_TTL_SECONDS = 900
ERROR_LIMIT = 500

log = get_logger(__name__)


class ModelUnavailable(HQError):
    """Every deployment failed for reasons that may pass (5xx, 429, timeouts, no healthy deployment)."""


class ModelRequestError(HQError):
    """The provider refused this request itself (4xx): retrying it unchanged will not help."""


@dataclass
class CallContext:
    """Who is calling and on whose money. One per workflow run; ``seq`` numbers its calls."""

    run_id: uuid.UUID
    workflow: str
    agent_id: int | None = None
    agent_slug: str | None = None
    agent_monthly_limit: Decimal | None = None
    issue_id: int | None = None
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)  # type: ignore[type-arg]

    @property
    def actor(self) -> str:
        return f"agent:{self.agent_slug}" if self.agent_slug else "system:router"

    def next_seq(self) -> int:
        return next(self._seq)


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
    deployment_id: str | None
    error: BaseException
    seconds: float


class _AttemptLog:
    """Failed attempts reported by LiteLLM's failure callback, keyed by our per-call token."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[str, list[_Attempt]] = {}

    def add(self, token: str, attempt: _Attempt) -> None:
        with self._lock:
            self._attempts.setdefault(token, []).append(attempt)

    def pop(self, token: str) -> list[_Attempt]:
        with self._lock:
            return self._attempts.pop(token, [])


_ATTEMPTS = _AttemptLog()
_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_litellm_hooks(litellm: Any) -> None:
    """Once per process: quiet LiteLLM, register the offline provider and the attempt recorder.

    LiteLLM copies its callback list into internal registries on first use, so the
    recorder is a process-wide singleton keyed by each call's token, never per router.
    """
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        from litellm.integrations.custom_logger import CustomLogger

        from agents.llm.offline import OfflineModel

        class AttemptRecorder(CustomLogger):  # type: ignore[misc]
            """Called synchronously, in the calling thread, for each failed attempt."""

            # LiteLLM passes these by keyword: the parameter names are part of its interface.
            def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                                  end_time: Any) -> None:
                params = kwargs.get("litellm_params") or {}
                token = (params.get("metadata") or {}).get("hq_token")
                if token:
                    seconds = (end_time - start_time).total_seconds() if start_time and end_time else 0.0
                    deployment = (params.get("model_info") or {}).get("id")
                    _ATTEMPTS.add(token, _Attempt(deployment, kwargs.get("exception") or RuntimeError("failed"),
                                                  seconds))

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        litellm.custom_provider_map = [{"provider": "hq-offline", "custom_handler": OfflineModel()}]
        litellm.callbacks = [*litellm.callbacks, AttemptRecorder()]
        requiet()  # importing LiteLLM reset a few library loggers' levels
        _hooks_installed = True


def _is_transient(error: BaseException) -> bool:
    status = getattr(error, "status_code", None)
    if status is None:
        return True  # connection errors, timeouts, "no deployments available"
    return int(status) in (401, 403, 408, 409, 429) or int(status) >= 500


def _error_text(error: BaseException) -> str:
    status = getattr(error, "status_code", None)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return redact(f"{type(error).__name__}" + (f" {status}" if status else "") + f": {first}")[:ERROR_LIMIT]


class ModelRouter:
    """Process-wide router over the resolved model map (thread-safe; one per process)."""

    def __init__(self, settings: Settings, models: ModelMap | None = None) -> None:
        self.settings = settings
        self.models = models or resolve_models(settings)
        self._router: Any = None
        self._litellm: Any = None
        self._lock = threading.Lock()

    # --- LiteLLM, built on first use -------------------------------------------------
    def _build(self) -> Any:
        with self._lock:
            if self._router is not None:
                return self._router
            import litellm

            _install_litellm_hooks(litellm)
            spec = self.models.router
            model_list = [
                {
                    "model_name": deployment.tier,
                    "litellm_params": {
                        "model": deployment.model,
                        "order": deployment.order,
                        **({"api_key": deployment.api_key} if deployment.api_key else {}),
                        **({"api_base": deployment.api_base} if deployment.api_base else {}),
                    },
                    "model_info": {"id": deployment.id},
                }
                for deployments in self.models.tiers.values()
                for deployment in deployments
            ]
            self._router = litellm.Router(
                model_list=model_list,
                num_retries=spec.num_retries,
                allowed_fails=spec.allowed_fails,
                cooldown_time=spec.cooldown_seconds,
                timeout=spec.timeout_seconds,
                retry_after=0,
                fallbacks=[{tier: targets} for tier, targets in spec.tier_fallbacks.items()],
            )
            self._litellm = litellm
            return self._router

    # --- money -----------------------------------------------------------------------
    def estimate(self, tier: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                 max_tokens: int) -> Decimal:
        """The worst case: the dearest deployment the call could land on, with every output token used."""
        self._build()
        input_tokens = self._litellm.token_counter(messages=messages)
        if tools:
            input_tokens += self._litellm.token_counter(text=json.dumps(tools))
        input_tokens = int(Decimal(input_tokens) * INPUT_MARGIN) + 16
        candidates = self.models.candidates(tier)
        return max(d.cost(input_tokens, max_tokens) for d in candidates)

    def _refuse(self, ctx: CallContext, tier: str, refused: BudgetExceeded, estimate: Decimal) -> None:
        from agents.llm.refusal import block_for_budget

        with transaction(ctx.actor, workflow=ctx.workflow, run_id=ctx.run_id) as session:
            if refused.scope == "issue" and ctx.issue_id is not None:
                block_for_budget(session, ctx.issue_id, actor=ctx.actor, needed=refused.needed,
                                 deadline_hours=self.settings.approval_deadline_hours)
            self._insert_row(session, ctx, tier, None, outcome="budget_refused", reserved=estimate,
                             error=refused.message)
        log.warning("llm.budget_refused", scope=refused.scope, tier=tier, issue_id=ctx.issue_id,
                    agent=ctx.agent_slug, run_id=str(ctx.run_id), workflow=ctx.workflow)

    # --- the call --------------------------------------------------------------------
    def complete(self, ctx: CallContext, tier: str, messages: list[dict[str, Any]], *,
                 tools: list[dict[str, Any]] | None = None, max_tokens: int | None = None) -> Completion:
        router = self._build()
        if tier not in self.models.tiers:
            raise ValueError(f"unknown tier {tier!r}")
        messages = redact_obj(messages)
        max_tokens = max_tokens or self.models.max_output_tokens[tier]
        estimate = self.estimate(tier, messages, tools, max_tokens)
        payer = Payer(ctx.issue_id, ctx.agent_slug, ctx.agent_monthly_limit,
                      Decimal(str(self.settings.company_monthly_budget_usd)))
        try:
            with transaction(ctx.actor, workflow=ctx.workflow, run_id=ctx.run_id) as session:
                reservation = reserve(session, payer, estimate, ctx.run_id, RESERVATION_TTL_SECONDS)
        except BudgetExceeded as refused:
            self._refuse(ctx, tier, refused, estimate)
            raise
        token = uuid.uuid4().hex
        started = time.monotonic()
        response, failure = None, None
        try:
            response = router.completion(
                model=tier, messages=messages, max_tokens=max_tokens, tools=tools or None,
                metadata={"hq_token": token},
                # LiteLLM otherwise imports its MCP gateway (an optional dependency) whenever tools are passed.
                _skip_mcp_handler=True,
            )
        except Exception as error:  # noqa: BLE001 - every failure is recorded and re-raised as our type
            failure = error
        latency_ms = int((time.monotonic() - started) * 1000)
        attempts = _ATTEMPTS.pop(token)
        completion = self._completion(tier, response, latency_ms) if response is not None else None
        # Sequence numbers are fixed before the write, so a retried write collides instead of counting twice.
        seqs = [ctx.next_seq() for _ in range(len(attempts) + (1 if completion or not attempts else 0))]
        self._record(ctx, tier, reservation, estimate, completion, failure, attempts, seqs, latency_ms)
        if failure is not None:
            message = _error_text(failure)
            log.warning("llm.call_failed", tier=tier, error=message, attempts=len(attempts), issue_id=ctx.issue_id,
                        agent=ctx.agent_slug, run_id=str(ctx.run_id), workflow=ctx.workflow)
            raise (ModelUnavailable if _is_transient(failure) else ModelRequestError)(message)
        assert completion is not None
        return completion

    @retry(retry=retry_if_exception_type(OperationalError), stop=stop_after_attempt(5),
           wait=wait_exponential(multiplier=0.2, max=5), reraise=True)
    def _record(self, ctx: CallContext, tier: str, reservation: Reservation, estimate: Decimal,
                completion: Completion | None, failure: BaseException | None, attempts: list[_Attempt],
                seqs: list[int], latency_ms: int) -> None:
        """Rows for every attempt and the settlement, atomically; retried if the database blinks."""
        with transaction(ctx.actor, workflow=ctx.workflow, run_id=ctx.run_id) as session:
            inserted = 0
            for seq, attempt in zip(seqs, attempts):
                deployment = self.models.by_id(attempt.deployment_id or "")
                inserted += self._insert_row(session, ctx, tier, deployment, outcome="error", seq=seq,
                                             latency_ms=int(attempt.seconds * 1000), error=_error_text(attempt.error))
            if completion is not None:
                inserted += self._insert_row(
                    session, ctx, tier, completion.deployment, outcome=completion.outcome, seq=seqs[-1],
                    input_tokens=completion.input_tokens, output_tokens=completion.output_tokens,
                    cost=completion.cost_usd, reserved=estimate, latency_ms=completion.latency_ms)
            elif not attempts:
                # Failed before any deployment was tried (e.g. all cooling down): still one row.
                inserted += self._insert_row(session, ctx, tier, None, outcome="error", seq=seqs[-1],
                                             latency_ms=latency_ms, error=_error_text(failure or RuntimeError("failed")))
            if inserted:
                settle(session, reservation, completion.cost_usd if completion else Decimal(0))

    def _completion(self, tier: str, response: Any, latency_ms: int) -> Completion:
        hidden = getattr(response, "_hidden_params", {}) or {}
        deployment = self.models.by_id(str(hidden.get("model_id", "")))
        if deployment is None:  # pragma: no cover - LiteLLM always reports the deployment id
            raise ModelUnavailable(f"response from an unknown deployment {hidden.get('model_id')!r}")
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        choice = response.choices[0]
        message = choice.message
        calls = [ToolCallRequest(call.id, call.function.name, redact(call.function.arguments or "{}"))
                 for call in (getattr(message, "tool_calls", None) or [])]
        primary = deployment.tier == tier and deployment.order == 1
        return Completion(
            text=redact(message.content or ""), tool_calls=calls, finish_reason=choice.finish_reason,
            input_tokens=input_tokens, output_tokens=output_tokens,
            cost_usd=deployment.cost(input_tokens, output_tokens), deployment=deployment,
            outcome="ok" if primary else "fallback", latency_ms=latency_ms,
        )

    def _insert_row(self, session: Session, ctx: CallContext, tier: str, deployment: Deployment | None, *,
                    outcome: str, seq: int | None = None, input_tokens: int = 0, output_tokens: int = 0,
                    cost: Decimal = Decimal(0), reserved: Decimal = Decimal(0), latency_ms: int | None = None,
                    error: str | None = None) -> int:
        row = session.scalar(
            insert(LLMCall).values(
                run_id=ctx.run_id, call_seq=seq if seq is not None else ctx.next_seq(), issue_id=ctx.issue_id,
                agent_id=ctx.agent_id, workflow=ctx.workflow, tier=tier,
                provider=deployment.provider if deployment else None,
                model=deployment.model if deployment else None, deployment=deployment.id if deployment else None,
                input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost, reserved_usd=reserved,
                latency_ms=latency_ms, outcome=outcome, error=error,
            ).on_conflict_do_nothing(index_elements=["run_id", "call_seq"]).returning(LLMCall.id)
        )
        return 0 if row is None else 1


_routers: dict[tuple[str, str], ModelRouter] = {}
_routers_lock = threading.Lock()


def get_router(settings: Settings) -> ModelRouter:
    """The process's router for these settings (models file and keys)."""
    import hashlib

    fingerprint = hashlib.sha256("\0".join(sorted(settings.secret_values())).encode()).hexdigest()
    key = (str(settings.models_path), fingerprint)
    with _routers_lock:
        if key not in _routers:
            _routers[key] = ModelRouter(settings)
        return _routers[key]


def reset_routers() -> None:
    with _routers_lock:
        _routers.clear()
