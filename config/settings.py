"""Settings: one validated object, loaded once, that fails fast and lists every problem.

Everything configurable comes from the environment (``HQ_`` prefix) or a ``.env``
file. A few variables keep the names other tools already use (``DATABASE_URL``,
provider keys, the Telegram token) so an existing shell setup just works.
"""

from __future__ import annotations

import os
import string
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.datalocation import DataLocation, locate_data_dir
from config.errors import ConfigError
from config.urls import url_problem

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

# --- bounds shared with the CLI ---------------------------------------------------
# A value that passes here must also pass the CLI and fit its column, so a bad setting stops the
# program at start instead of failing at the first reservation, INSERT or deploy.

MAX_ID = 2**63 - 1
"""Every id is a PostgreSQL bigint."""

MIN_AMOUNT_USD = Decimal("0.01")
"""Less is a typo (``--add 1e-9``) that would still close an approval and write a comment."""

MAX_BUDGET_USD = Decimal("100000")
"""The most one issue may be given at once (``--budget``, ``--add``, HQ_DEFAULT_ISSUE_BUDGET_USD)."""

MAX_PG_TIMEOUT_MS = 2**31 - 1
"""PostgreSQL's timeout settings are C ints of milliseconds; anything larger refuses every connection."""

MAX_DURATION_SECONDS = 366 * 24 * 3600
MAX_RUN_SECONDS = 4 * 3600  # longest one agent run may be told to work: a runaway session costs money
"""Leases, deadlines and waits longer than a year are mistakes, and far larger ones overflow intervals."""

BudgetUSD = Annotated[Decimal, Field(ge=MIN_AMOUNT_USD, le=MAX_BUDGET_USD, decimal_places=4)]
"""An amount given to one issue; the scale is that of ``issues.budget_usd numeric(12, 4)``."""

MonthlyUSD = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=4)]
"""A monthly limit: whatever ``budget_accounts.limit_usd numeric(12, 4)`` holds (finite, unlike a float)."""

COMMAND_PLACEHOLDERS = ("issue_id", "workspace", "published")
"""The only ``{name}`` a deploy or verify command may use: projects/document/commands.py fills in exactly these."""


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """The effective configuration of one `hq` process."""

    model_config = SettingsConfigDict(
        env_prefix="HQ_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- storage -------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("DATABASE_URL", "database_url"),
        description="PostgreSQL URL; unset means the embedded server under the data dir.",
    )
    listen_database_url: SecretStr | None = Field(
        default=None,
        description="A direct URL for LISTEN (wake-ups), where DATABASE_URL goes through a transaction pooler; "
        "default: DATABASE_URL.",
    )
    db_pooler: Literal["none", "session", "transaction"] = Field(
        default="none",
        description="What stands between hq and PostgreSQL: with `transaction` (PgBouncer's transaction mode) "
        "session settings are set per transaction and server-side prepared statements are off.",
    )
    db_schema: str = Field(
        default="public",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The schema hq's tables, functions and views live in (it must exist, or hq must be allowed "
        "to create it); where PUBLIC may not create in `public`, give hq a schema of its own.",
    )
    data_dir: Path | None = Field(
        default=None,
        validate_default=True,
        description="Embedded Postgres, workspaces, published artifacts: one data dir is one company. Unset: the "
        "var/ of the checkout hq runs from, else $XDG_DATA_HOME/heartbeat-hq (~/.local/share/heartbeat-hq); "
        "a relative path is taken from the directory hq starts in.",
    )
    statement_timeout_ms: int = Field(
        default=30_000, ge=0, le=MAX_PG_TIMEOUT_MS, description="Longest statement hq's sessions allow (0: none)."
    )
    idle_in_transaction_timeout_ms: int = Field(
        default=60_000,
        ge=0,
        le=MAX_PG_TIMEOUT_MS,
        description="How long a session may sit idle in a transaction before PostgreSQL ends it.",
    )
    reporter_connection_limit: int = Field(
        default=10, ge=0, le=10_000, description="Connections hq_reporter may hold at once (set by migrations)."
    )

    # --- company ---------------------------------------------------------------
    roles_dir: Path | None = Field(default=None, description="Roster folder; default: the bundled 33 roles.")
    playbooks_dir: Path | None = Field(default=None, description="Playbooks folder; default: the bundled playbooks.")
    models_file: Path | None = Field(
        default=None, description="The models file (tiers, deployments, prices); default: config/models.yaml."
    )
    default_issue_budget_usd: BudgetUSD = Field(
        default=Decimal("2.00"), description="Budget of an issue created without --budget."
    )
    company_monthly_budget_usd: MonthlyUSD = Field(
        default=Decimal("500.00"), description="What every model call together may cost in a calendar month."
    )
    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Failed attempts before an issue blocks and escalates."
    )
    max_review_rounds: int = Field(
        default=3, ge=1, le=100, description="Failed reviews before an issue blocks and escalates."
    )
    lease_ttl_seconds: int = Field(
        default=300,
        ge=5,
        le=MAX_DURATION_SECONDS,
        description="How long a claimed issue stays its worker's without a renewal; a working run renews it "
        "every third of this, so a killed worker's issue is taken back within this long.",
    )
    agent_lease_ttl_seconds: int = Field(
        default=600,
        ge=5,
        le=MAX_DURATION_SECONDS,
        description="How long a beat keeps its agent's row without a renewal (renewed like the issue's).",
    )
    tool_loop_max_seconds: int = Field(
        default=1800,
        ge=1,
        le=MAX_RUN_SECONDS,
        description="Longest HQ's own tool loop may work one issue (its model calls and the commands it runs).",
    )
    claude_code_max_seconds: int = Field(
        default=2400, ge=1, le=MAX_RUN_SECONDS, description="Longest one Claude Code session may work one issue."
    )
    reservation_ttl_seconds: int = Field(
        default=900,
        ge=5,
        le=MAX_DURATION_SECONDS,
        description="A model call's budget reservation is charged in full by the sweeper after this long unsettled "
        "(its process died); a late settlement still corrects it.",
    )
    circuit_breaker_touches: int = Field(
        default=6, ge=2, description="Moves of one issue within an hour before the sweeper stops its churn."
    )
    approval_deadline_hours: float = Field(
        default=24.0,
        gt=0,
        le=MAX_DURATION_SECONDS / 3600,
        allow_inf_nan=False,
        description="How long an approval waits before its deadline policy applies.",
    )
    heartbeat_scale: float = Field(
        default=1.0, gt=0, le=1000, allow_inf_nan=False, description="Multiply every heartbeat; the demo uses ~0.001."
    )
    sweep_interval_seconds: float = Field(
        default=15.0, gt=0, le=3600, allow_inf_nan=False, description="How often the sweeper runs in `hq run`."
    )
    upkeep_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 86400,
        allow_inf_nan=False,
        description="How often `hq run` tidies its projects on this host: branches of done and cancelled issues "
        "deleted from the remote, dead runs' worktrees removed, clones garbage-collected, old environments pruned.",
    )

    # --- the project the company ships -------------------------------------------
    # Argument lists (JSON in the environment), never shell strings. Placeholders:
    # {issue_id}, {workspace} (a staging copy of the issue's last submission, taken
    # from the database, so any host can deploy any issue), {published}. Unset: the
    # built-in project, which publishes that copy and verifies checksums.
    deploy_command: list[str] | None = Field(
        default=None, description="The document project's deploy, a JSON argument list; unset: the built-in publish."
    )
    verify_command: list[str] | None = Field(
        default=None, description="The document project's verify, a JSON argument list; unset: the built-in checksums."
    )
    command_timeout_seconds: int = Field(
        default=120, ge=1, le=3600, description="Time limit of the document project's deploy and verify commands."
    )

    # --- projects: real repositories ---------------------------------------------
    default_project: str | None = Field(
        default=None, description="The project of `hq issue create` without --project; unset: the document project."
    )
    sandbox: Literal["bwrap", "none"] = Field(
        default="bwrap",
        description="Where project commands run: `bwrap` (bubblewrap) or `none`, unconfined (warned about at start).",
    )
    sandbox_memory_mb: int = Field(default=2048, ge=64, le=1024 * 1024, description="Address-space limit.")
    sandbox_cpu_seconds: int = Field(default=600, ge=1, le=MAX_DURATION_SECONDS, description="CPU-time limit.")
    sandbox_max_processes: int = Field(
        default=1024, ge=8, le=1_000_000, description="Processes (threads included) one sandboxed command may hold."
    )
    sandbox_process_cap: Literal["auto", "cgroup", "rlimit", "none"] = Field(
        default="auto",
        description="What caps a sandboxed command's processes: `cgroup` (a pids cgroup per run; runs refuse to "
        "start without one), `rlimit` (RLIMIT_NPROC; when HQ is root, the command runs as a uid of its own from "
        "HQ_SANDBOX_UID_BASE, so the limit binds), `none`, or `auto`: a pids cgroup where the host offers one, "
        "else rlimit (as root only where unprivileged user namespaces work), else none.",
    )
    sandbox_uid_base: int = Field(
        default=61000,
        ge=1000,
        le=2**31 - 1_000_000,
        description="First uid (and gid) of the range that root's sandboxes run as under RLIMIT_NPROC, one per "
        "concurrent run: reserve it for HQ (no account may use it; a run's leftover processes are killed by uid).",
    )
    sandbox_uid_count: int = Field(
        default=64, ge=1, le=65536, description="How many uids from HQ_SANDBOX_UID_BASE: concurrent sandboxed runs."
    )

    # --- coding agents (runtime: claude-code) -------------------------------------
    claude_bin: str | None = Field(
        default=None,
        description="The Claude Code executable: a path or a name on PATH; unset: `claude` on PATH, else the "
        "pinned copy `make claude-code` installs under tools/.",
    )
    claude_memory_mb: int = Field(
        default=8192, ge=512, le=1024 * 1024, description="Address-space limit of a Claude Code run's sandbox."
    )

    # --- model providers -------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("ANTHROPIC_API_KEY"),
        description="Anthropic key; with no provider key set, every tier uses the offline model.",
    )
    anthropic_api_base: str | None = Field(
        default=None,
        validation_alias=_alias("ANTHROPIC_API_BASE"),
        description="Another Anthropic Messages API root URL.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("OPENAI_API_KEY"),
        description="OpenAI key, for deployments of the models file that use it.",
    )
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("GEMINI_API_KEY"),
        description="Gemini key, for deployments of the models file that use it.",
    )

    # --- notifications ---------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        default=None,
        validation_alias=_alias("TELEGRAM_BOT_TOKEN"),
        description="The bot's token; unset: notifications go to the log.",
    )
    telegram_chat_id: str | None = Field(
        default=None,
        validation_alias=_alias("TELEGRAM_CHAT_ID"),
        description="The company chat: where notifications go, and the only chat the desk listens to.",
    )
    telegram_api_base: str | None = Field(
        default=None, validation_alias=_alias("TELEGRAM_API_BASE"), description="Another Bot API root URL."
    )
    telegram_approvers: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(),
        description="Telegram user ids (comma-separated) who may decide from Telegram; nobody when empty.",
    )
    telegram_callback_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Signs the approval buttons (32 characters or more); default: a key derived from the bot token.",
    )
    telegram_webhook_url: str | None = Field(
        default=None,
        description="Receive updates on this public https URL instead of long polling (served on "
        "HQ_TELEGRAM_WEBHOOK_LISTEN, behind your TLS proxy).",
    )
    telegram_webhook_listen: str = Field(
        default="127.0.0.1:8443", pattern=r"^[^\s:]+:[0-9]{1,5}$", description="host:port the webhook is served on."
    )
    telegram_poll_seconds: int = Field(default=25, ge=1, le=50, description="Long-poll wait of one getUpdates.")
    telegram_lease_seconds: int = Field(
        default=60, ge=2, le=3600, description="How long a silent poller keeps the right to receive updates."
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Sends of one notification before it is dead-lettered."
    )
    notify_send_retries: int = Field(default=4, ge=1, le=20, description="Tries per run before a row waits.")
    notify_inflight_seconds: float = Field(
        default=60.0,
        gt=0,
        le=MAX_DURATION_SECONDS,
        allow_inf_nan=False,
        description="When a `sending` row counts as abandoned.",
    )

    # --- logging ---------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="debug, info, warning or error (`hq run` logs at info; other commands only when asked).",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="json, console, or auto (console on a terminal)."
    )

    _location: DataLocation | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _leases_outlive_runs(self) -> Settings:
        # The poller renews its lease between long polls: one poll (its wait, plus the client's own read
        # timeout and a connect) must end well inside the lease.
        if self.telegram_lease_seconds < self.telegram_poll_seconds + 10:
            raise ValueError("HQ_TELEGRAM_LEASE_SECONDS must exceed HQ_TELEGRAM_POLL_SECONDS by at least 10")
        return self

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        scheme, sep, rest = raw.partition("://")
        if not sep or not rest or scheme.split("+")[0] not in {"postgresql", "postgres"}:
            # The value itself may hold a password, so it is never echoed back.
            raise ValueError("must be a postgresql:// URL")
        problem = url_problem(raw)
        if problem:
            raise ValueError(problem)
        return SecretStr(raw)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir")
    @classmethod
    def _usable_data_dir(cls, value: Path | None) -> Path | None:
        # Checked whether it was given or found (validate_default): a data dir hq cannot write stops it here.
        location = _locate(value)
        try:
            path = location.path.resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop, an unknown ~user
            raise ValueError(f"cannot resolve {location.path}: {error}") from None
        problem = _directory_problem(path)
        if problem:
            raise ValueError(
                problem if value is not None else f"unset, and the data dir found ({location.how()}): {problem}"
            )
        return value

    @field_validator("deploy_command", "verify_command")
    @classmethod
    def _command_template(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # An empty list used to mean "the default" silently; a typo'd placeholder only failed at deploy.
        if value is None:
            return None
        if not value:
            raise ValueError(f"must not be an empty list (omit HQ_{str(info.field_name).upper()} to use the default)")
        if not value[0].strip():
            raise ValueError("the program (the first element) must not be empty")
        problems = [
            f"element {index}: {problem}" for index, part in enumerate(value, 1) if (problem := _template_problem(part))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("telegram_chat_id")
    @classmethod
    def _chat_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not (value.lstrip("-").isdigit() or value.startswith("@")):
            raise ValueError("must be a numeric chat id or an @channel name")
        return value

    @field_validator("telegram_approvers", mode="before")
    @classmethod
    def _user_ids(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = [part.strip() for part in value.split(",") if part.strip()]
        bad = [part for part in parts if not (part.isdigit() and 0 < int(part) < 2**63)]
        if bad:
            raise ValueError(f"not Telegram user ids: {', '.join(bad)} (comma-separated numbers)")
        return tuple(dict.fromkeys(int(part) for part in parts))

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Telegram delivers webhooks over TLS only)")
        return value.strip()

    @field_validator("telegram_api_base", "anthropic_api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    # --- derived paths -----------------------------------------------------------
    @property
    def data_location(self) -> DataLocation:
        """The data dir and why it is that one (config/datalocation.py), found once per value of HQ_DATA_DIR."""
        if self._location is None or self._location.given != self.data_dir:
            self._location = _locate(self.data_dir)
        return self._location

    @property
    def data_path(self) -> Path:
        return self.data_location.path.resolve()

    @property
    def roles_path(self) -> Path:
        return (self.roles_dir or PACKAGE_ROOT / "agents" / "roles").expanduser().resolve()

    @property
    def playbooks_path(self) -> Path:
        return (self.playbooks_dir or PACKAGE_ROOT / "agents" / "playbooks").expanduser().resolve()

    @property
    def models_path(self) -> Path:
        return (self.models_file or PACKAGE_ROOT / "config" / "models.yaml").expanduser().resolve()

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for the redaction registry."""
        values = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        return values


def _locate(given: Path | None) -> DataLocation:
    """The data dir for this process: HQ_DATA_DIR, else found from where hq is installed (config/datalocation.py)."""
    home = Path(os.path.expanduser("~"))
    return locate_data_dir(given, package_root=PACKAGE_ROOT, environ=os.environ, home=home, cwd=Path.cwd())


def _directory_problem(path: Path) -> str | None:
    """Why the data dir could not be used, if it can't: found at start, not by the first write under it."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    if existing == path:
        return None
    # It will be created on first use. Permission bits cannot tell (root passes them all, and /proc or a
    # read-only mount still refuses), so try: a probe directory, removed at once.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hq-probe-", dir=existing))
    except OSError as error:
        return f"cannot create {path}: {error.strerror}"
    return None


def _template_problem(part: str) -> str | None:
    """Why ``part.format(issue_id=..., workspace=..., published=...)`` would fail or mislead, if it would."""
    known = ", ".join(f"{{{name}}}" for name in COMMAND_PLACEHOLDERS)
    if "\x00" in part:
        return "must not contain NUL bytes"
    try:
        fields = [
            (name, spec, conversion)
            for _text, name, spec, conversion in string.Formatter().parse(part)
            if name is not None
        ]
    except ValueError as error:
        return f"is not a valid template ({error}); write {{{{ and }}}} for literal braces"
    for name, spec, conversion in fields:
        if name == "" or name.isdigit():
            return f"positional placeholder {{{name}}}: name one of {known}"
        if name not in COMMAND_PLACEHOLDERS:
            # `${HOME}` lands here too: no shell runs the command, so it would be the placeholder {HOME}.
            return (
                f"unknown placeholder {{{name}}} (known: {known}; commands run without a shell, "
                "so $VARIABLES are not expanded; write {{ and }} for literal braces)"
            )
        if spec or conversion:
            return f"placeholder {{{name}}} takes no format spec or conversion"
    return None


def _env_name(location: str) -> str:
    """The environment variable a user sets for a field (errors may name the field or its alias)."""
    for name, field in Settings.model_fields.items():
        choices = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
        if location == name or location in choices:
            return str(choices[0]) if choices else f"HQ_{name.upper()}"
    return location


def describe_errors(error: ValidationError) -> str:
    """One line naming every bad variable, so a user fixes them all in one go."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{_env_name(field)}: {message}")
    return "invalid settings: " + "; ".join(problems)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, raising ConfigError with every problem listed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(describe_errors(error)) from None


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings: those set by ``use_settings``, else loaded from the environment."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use_settings(settings: Settings) -> Settings:
    """Make ``settings`` the process-wide settings (the CLI does this once, with its options applied)."""
    global _current
    _current = settings
    return settings


def reset_settings() -> None:
    """Forget the process-wide settings; the next ``get_settings`` reads the environment again."""
    global _current
    _current = None


def os_user() -> str:
    """The default human actor name: who is at the keyboard."""
    for var in ("HQ_USER", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import pwd  # POSIX only: imported where it is needed

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - exotic platforms
        return "human"
