"""The models file: tiers → ordered deployments, resolved against the keys that are set.

Resolution happens before any call, so a deployment without a known price (which
would make budgets unenforceable) stops the program at start, with every
problem listed. Prices are read from LiteLLM's bundled price table file without
importing LiteLLM itself, keeping `hq models` and `hq config check` quick.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.errors import ConfigError, validation_problems
from config.settings import Settings
from config.vocabulary import TIERS, Tier

OFFLINE_PROVIDER = "hq-offline"
MILLION = Decimal(1_000_000)
# Anthropic's published multipliers of the input price, used when neither the models file nor the table says:
# a cache write with the default 5-minute lifetime, one with ``ttl: "1h"``, and a cache read.
CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_WRITE_1H_FACTOR = Decimal(2)
CACHE_READ_FACTOR = Decimal("0.1")


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(pattern=r"^[a-z0-9_.-]+/[A-Za-z0-9_.:/@-]+$")]
    api_key_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")] | None = None
    api_base: Annotated[str, Field(pattern=r"^https?://")] | None = None
    api_base_env: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*$")] | None = None
    input_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)] | None = None
    output_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)] | None = None
    # Prompt caching (Anthropic's Messages API): writing to the cache and reading from it are priced apart.
    cache_write_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)] | None = None
    cache_read_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)] | None = None
    cache_write_1h_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)] | None = None  # ttl "1h" writes
    # LiteLLM answers with this text instead of calling the provider (benchmarks, dry runs).
    mock_response: Annotated[str, Field(max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _prices_together(self) -> DeploymentSpec:
        if (self.input_usd_per_mtok is None) != (self.output_usd_per_mtok is None):
            raise ValueError("set both input_usd_per_mtok and output_usd_per_mtok, or neither")
        return self


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)]
    output_usd_per_mtok: Annotated[float, Field(ge=0, le=10_000)]


class RouterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_retries: Annotated[int, Field(ge=0, le=10)] = 2
    allowed_fails: Annotated[int, Field(ge=0, le=1000)] = 1
    cooldown_seconds: Annotated[float, Field(ge=0, le=3600)] = 30
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120
    tier_fallbacks: dict[Tier, list[Tier]] = Field(default_factory=dict)


_DEFAULT_MAX_OUTPUT_TOKENS: dict[Tier, int] = {"reasoning": 4096, "execution": 4096, "utility": 1024}


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    router: RouterSpec = Field(default_factory=RouterSpec)
    max_output_tokens: dict[Tier, Annotated[int, Field(ge=16, le=200_000)]] = Field(
        default_factory=_DEFAULT_MAX_OUTPUT_TOKENS.copy
    )
    tiers: dict[Tier, list[DeploymentSpec]]
    offline: dict[Tier, Price]

    @model_validator(mode="after")
    def _complete(self) -> ModelsFile:
        for tier in TIERS:
            if tier not in self.offline:
                raise ValueError(f"offline: a price for the {tier} tier is required")
            if tier not in self.max_output_tokens:
                raise ValueError(f"max_output_tokens: {tier} is required")
        for tier, targets in self.router.tier_fallbacks.items():
            if tier in targets:
                raise ValueError(f"router.tier_fallbacks: {tier} cannot fall back to itself")
        return self


@dataclass(frozen=True)
class Deployment:
    """One concrete model behind a tier, with its key and per-token prices resolved."""

    id: str
    tier: str
    order: int
    model: str
    api_key: str | None
    api_base: str | None
    input_price: Decimal  # USD per token
    output_price: Decimal
    price_source: str
    mock_response: str | None = None
    cache_write_price: Decimal | None = None  # USD per token; None: CACHE_WRITE_FACTOR times input_price
    cache_read_price: Decimal | None = None
    cache_write_1h_price: Decimal | None = None  # None: CACHE_WRITE_1H_FACTOR times input_price

    @property
    def cache_write(self) -> Decimal:
        return self.cache_write_price if self.cache_write_price is not None else self.input_price * CACHE_WRITE_FACTOR

    @property
    def cache_write_1h(self) -> Decimal:
        """A write with the 1-hour lifetime (``cache_control: {ttl: "1h"}``): 2x input where nothing says."""
        if self.cache_write_1h_price is not None:
            return self.cache_write_1h_price
        return self.input_price * CACHE_WRITE_1H_FACTOR

    @property
    def cache_read(self) -> Decimal:
        return self.cache_read_price if self.cache_read_price is not None else self.input_price * CACHE_READ_FACTOR

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]

    @property
    def offline(self) -> bool:
        return self.provider == OFFLINE_PROVIDER

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_write_tokens: int = 0,
        cache_read_tokens: int = 0,
        *,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal:
        """Each kind of token at its own price: what the provider bills for the usage it reports.

        ``cache_write_tokens`` counts every cache write (the API's ``cache_creation_input_tokens``);
        ``cache_write_1h_tokens`` says how many of them had the 1-hour lifetime, billed at its own price.
        """
        long_lived = min(max(cache_write_1h_tokens, 0), cache_write_tokens)
        return (
            self.input_price * input_tokens
            + self.output_price * output_tokens
            + self.cache_write * (cache_write_tokens - long_lived)
            + self.cache_write_1h * long_lived
            + self.cache_read * cache_read_tokens
        )

    @property
    def dearest_input(self) -> Decimal:
        """The most an input token can cost: a prompt may be written to the 1-hour cache whole."""
        return max(self.input_price, self.cache_write, self.cache_write_1h)


@dataclass(frozen=True)
class ModelMap:
    tiers: dict[str, list[Deployment]]
    router: RouterSpec
    max_output_tokens: dict[str, int]
    source: Path

    @property
    def offline(self) -> bool:
        return all(d.offline for deployments in self.tiers.values() for d in deployments)

    def candidates(self, tier: str) -> list[Deployment]:
        """Every deployment a call on ``tier`` may end up on, fallback tiers included."""
        seen, result = set(), []
        for name in [tier, *self.router.tier_fallbacks.get(tier, [])]:  # type: ignore[call-overload]
            for deployment in self.tiers.get(name, []):
                if deployment.id not in seen:
                    seen.add(deployment.id)
                    result.append(deployment)
        return result

    def by_id(self, deployment_id: str) -> Deployment | None:
        for deployments in self.tiers.values():
            for deployment in deployments:
                if deployment.id == deployment_id:
                    return deployment
        return None


def _per_token(usd_per_mtok: float) -> Decimal:
    return Decimal(str(usd_per_mtok)) / MILLION


@lru_cache(maxsize=1)
def litellm_price_table() -> dict[str, dict[str, object]]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def table_price(model: str) -> tuple[Decimal, Decimal] | None:
    entry = _table_entry(model)
    if entry and "input_cost_per_token" in entry and "output_cost_per_token" in entry:
        return Decimal(repr(entry["input_cost_per_token"])), Decimal(repr(entry["output_cost_per_token"]))
    return None


def table_cache_prices(model: str) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(cache write, cache read, 1-hour cache write) USD per token from the table, each None when it does not say."""
    entry = _table_entry(model) or {}
    keys = (
        "cache_creation_input_token_cost",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost_above_1hr",
    )
    write, read, long_write = (entry.get(key) for key in keys)
    return tuple(Decimal(repr(v)) if v is not None else None for v in (write, read, long_write))  # type: ignore[return-value]


def _table_entry(model: str) -> dict[str, object] | None:
    table = litellm_price_table()
    for key in (model, model.split("/", 1)[1]):
        if key in table:
            return table[key]
    return None


def load_models_file(path: Path) -> ModelsFile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"models file {path}: unreadable ({error.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"models file {path}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"models file {path}: must be a mapping with 'tiers' and 'offline'")
    try:
        return ModelsFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"models file {path}: " + "; ".join(validation_problems(error, "file"))) from None


def _secret_for(name: str, settings: Settings) -> str | None:
    """A key by its env var name: known provider keys come from settings (.env included)."""
    field = {
        "ANTHROPIC_API_KEY": settings.anthropic_api_key,
        "OPENAI_API_KEY": settings.openai_api_key,
        "GEMINI_API_KEY": settings.gemini_api_key,
    }.get(name)
    if field is not None:
        return field.get_secret_value() or None
    return os.environ.get(name) or None


def resolve_models(settings: Settings) -> ModelMap:
    """The effective map: configured deployments whose keys are set, or the offline model everywhere."""
    spec = load_models_file(settings.models_path)
    problems: list[str] = []
    tiers: dict[str, list[Deployment]] = {}
    for tier in TIERS:
        resolved: list[Deployment] = []
        for index, deployment in enumerate(spec.tiers.get(tier, [])):
            key = _secret_for(deployment.api_key_env, settings) if deployment.api_key_env else None
            if deployment.api_key_env and key is None:
                continue  # that provider is not configured on this machine
            base = deployment.api_base
            if deployment.api_base_env:
                base = (
                    settings.anthropic_api_base
                    if deployment.api_base_env == "ANTHROPIC_API_BASE"
                    else os.environ.get(deployment.api_base_env)
                ) or base
            if deployment.input_usd_per_mtok is not None and deployment.output_usd_per_mtok is not None:
                prices, source = (
                    (_per_token(deployment.input_usd_per_mtok), _per_token(deployment.output_usd_per_mtok)),
                    "models file",
                )
                cache: tuple[Decimal | None, Decimal | None, Decimal | None] = (None, None, None)
            else:
                prices, source = table_price(deployment.model), "litellm price table"  # type: ignore[assignment]
                cache = table_cache_prices(deployment.model)
            if deployment.cache_write_usd_per_mtok is not None:
                cache = (_per_token(deployment.cache_write_usd_per_mtok), cache[1], cache[2])
            if deployment.cache_read_usd_per_mtok is not None:
                cache = (cache[0], _per_token(deployment.cache_read_usd_per_mtok), cache[2])
            if deployment.cache_write_1h_usd_per_mtok is not None:
                cache = (cache[0], cache[1], _per_token(deployment.cache_write_1h_usd_per_mtok))
            if prices is None:
                problems.append(
                    f"tiers.{tier}.{index}: no price known for {deployment.model}; "
                    "set input_usd_per_mtok and output_usd_per_mtok"
                )
                continue
            resolved.append(
                Deployment(
                    f"{tier}-{len(resolved) + 1}",
                    tier,
                    len(resolved) + 1,
                    deployment.model,
                    key,
                    base,
                    prices[0],
                    prices[1],
                    source,
                    deployment.mock_response,
                    *cache,
                )
            )
        tiers[tier] = resolved
    if problems:
        raise ConfigError(f"models file {settings.models_path}: " + "; ".join(problems))
    if not any(tiers.values()):
        tiers = {
            tier: [
                Deployment(
                    f"{tier}-offline",
                    tier,
                    1,
                    f"{OFFLINE_PROVIDER}/{tier}",
                    None,
                    None,
                    _per_token(spec.offline[tier].input_usd_per_mtok),
                    _per_token(spec.offline[tier].output_usd_per_mtok),
                    "simulated",
                )
            ]
            for tier in TIERS
        }
    else:
        for tier in TIERS:
            if not tiers[tier]:
                raise ConfigError(
                    f"models file {settings.models_path}: tier {tier} has no deployment with a key "
                    "set; add one or remove the keys to run offline"
                )
    return ModelMap(tiers, spec.router, {t: n for t, n in spec.max_output_tokens.items()}, settings.models_path)
