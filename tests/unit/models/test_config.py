"""Pricing: each kind of token at its own price, and never above what the reservation counted."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.config import CACHE_WRITE_1H_FACTOR, Deployment


@given(
    input_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**5),
    five_minute=st.integers(0, 10**6),
    one_hour=st.integers(0, 10**6),
    cache_read=st.integers(0, 10**7),
    prices=st.tuples(st.decimals("0", "100", places=3), st.decimals("0", "500", places=3)),
)
def test_any_usage_is_priced_token_kind_by_token_kind(
    input_tokens: int, output_tokens: int, five_minute: int, one_hour: int, cache_read: int, prices: Any
) -> None:
    """Each kind of token at its own price, the two cache-write lifetimes apart, and never above the dearest
    input price the reservation counts every input token at."""
    per_input, per_output = (p / 1_000_000 for p in prices)
    d = Deployment("execution-1", "execution", 1, "anthropic/m", None, None, per_input, per_output, "models file")
    cost = d.cost(input_tokens, output_tokens, five_minute + one_hour, cache_read, cache_write_1h_tokens=one_hour)
    assert cost == (
        per_input * input_tokens
        + per_output * output_tokens
        + per_input * Decimal("1.25") * five_minute
        + per_input * CACHE_WRITE_1H_FACTOR * one_hour
        + per_input * Decimal("0.1") * cache_read
    )
    all_input = input_tokens + five_minute + one_hour + cache_read
    assert cost <= d.dearest_input * all_input + per_output * output_tokens
