"""The failure policy names one action per failure, and a replaced key can be reported again."""

from __future__ import annotations

from decimal import Decimal

from workflows.lib.failures import Action, decide


def test_the_policy_names_one_action_per_failure() -> None:
    from models.budget import BudgetExceeded
    from models.router import ModelRequestError, ModelUnavailable, ProviderAuthError

    def budget(scope: str) -> BudgetExceeded:
        return BudgetExceeded(scope, Decimal("0.5"), Decimal("0.1"), 1)

    assert decide(ModelUnavailable("overloaded")) is Action.REFUND
    assert decide(ModelRequestError("too long")) is Action.COUNT
    assert decide(ProviderAuthError("401", deployment="d", key_fingerprint="f")) is Action.BLOCK_FOR_AUTH
    assert decide(budget("issue")) is Action.BLOCK_FOR_BUDGET
    assert decide(budget("agent")) is Action.REFUND
    assert decide(budget("company")) is Action.REFUND


def test_a_replaced_key_can_be_reported_again() -> None:
    """The notification is deduplicated per credentials, so a later revoked key is news again."""
    from models.config import Deployment
    from models.router import key_fingerprint

    def deployment(key: str, tier: str = "reasoning") -> Deployment:
        return Deployment(f"{tier}-1", tier, 1, "anthropic/m", key, None, Decimal(0), Decimal(0), "test")

    assert key_fingerprint(deployment("sk-old")) != key_fingerprint(deployment("sk-new"))
    one_alarm = key_fingerprint(deployment("sk-old", "utility"))  # one key, whichever tier met the refusal
    assert key_fingerprint(deployment("sk-old")) == one_alarm
    assert "sk-old" not in key_fingerprint(deployment("sk-old"))
