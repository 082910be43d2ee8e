"""The ``claude-code`` runtime: the Claude Code CLI does the editing, HQ keeps the state, the sandbox and the money.

For a role with ``runtime: claude-code`` (AGENTS.md), execute runs the CLI
non-interactively on the issue's worktree instead of HQ's own tool loop. What
HQ keeps:

* **the sandbox**: the CLI runs inside the same bubblewrap sandbox as project
  commands (no network, the worktree at ``/workspace`` the only writable tree,
  a new PID namespace that dies with HQ). The CLI's executable, the gateway's
  socket and the MCP bridge are mounted in read-only (the sockets writable,
  as connecting needs); nothing else of the host is;
* **the wallet**: the CLI's only model is HQ's gateway (runtimes/gateway.py)
  on a socket, with a token made for this run. Every call is reserved and
  settled by the router; ``--max-budget-usd`` is passed as a second fence,
  set above what HQ's own fence allows;
* **no host configuration**: ``--setting-sources ""``, ``--strict-mcp-config``,
  a fresh ``HOME`` in the sandbox's private /tmp, no session saved: no user
  settings, hooks, plugins or MCP servers of the host apply;
* **the tools**: the CLI's file and shell tools (no web tool, ever), and HQ's
  issue tools as an MCP server bound to the run (runtimes/mcp_tools.py)
  through the same dispatcher and ``tool_calls`` rows as the built-in loop;
* **the state machine**: the CLI's result is parsed into the same result the
  built-in loop gives; execute commits, pushes and submits exactly as it does
  for the built-in runtime, and review and deploy do not know the difference.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from agents.roster import RuntimeOptions
from agents.tools.catalog import tools_for
from agents.tools.context import ToolContext
from config.log import get_logger
from config.secrets import redact
from config.settings import Settings
from db.storable import storable_text
from models.config import ModelMap
from models.forwarder import Forwarder, anthropic_deployments, forwarder_for, provider_model
from models.router import CallContext
from projects.repo.work import RepoWork
from projects.sandbox import Limits, Mount
from projects.watch import Limit, Watch
from runtimes import RunRequest, RunResult, RuntimeFailed
from runtimes.gateway import Gateway
from runtimes.install import claude_binary
from runtimes.mcp_tools import BRIDGE_PATH, SERVER_NAME, TOKEN_ENV, ToolServer, mcp_config

RUN_DIR = "/run/hq"  # where the run's sockets and the bridge appear inside the sandbox
CLAUDE_IN_SANDBOX = "/opt/hq/claude"
CLI_TOOLS = ("Read", "Glob", "Grep", "Edit", "Write", "Bash")
"""What the ``code`` toolset gives the CLI; Bash runs in the sandbox, like everything the CLI starts."""
NEVER = ("WebFetch", "WebSearch")
CLI_COVERS = frozenset({"read_file", "write_file", "list_files", "edit_file", "search", "diff"})
"""HQ tools the CLI has its own, better versions of: not offered over MCP."""
BUDGET_FENCE_FACTOR = Decimal(2)  # the CLI prices calls by its own table: its fence must stay behind HQ's
MAX_PROMPT_CHARS = 100_000  # one argument; Linux allows 128 KiB
OUTPUT_BYTES = 1024 * 1024  # the JSON result is the output's last line

CLI_INSTRUCTIONS = (
    "Make the change this issue asks for in this repository (your working directory). Read the code first, "
    "change it, and run the project's gate commands (listed under project.gate; the hq run_command tool runs "
    "any of project.commands by name) until they pass. HQ commits and pushes what you leave; do not use git. "
    "If project lists merge_conflicts, the base branch was merged in and those files hold conflict markers: "
    "resolve them first. If you cannot finish, call the hq mark_blocked tool with what is missing. End with a "
    "one-sentence summary of what you did."
)

log = get_logger(__name__)


def serves(models: ModelMap, tier: str) -> bool:
    """Whether the gateway can serve this tier: the CLI speaks only Anthropic's API (offline runs use builtin)."""
    return bool(anthropic_deployments(models, tier))


@dataclass(frozen=True)
class CliResult:
    """The CLI's JSON result, the parts HQ uses; its cost is a cross-check only (the ledger is the gateway's)."""

    text: str
    subtype: str
    is_error: bool
    turns: int
    reported_cost_usd: Decimal | None
    permission_denials: int

    @property
    def out_of_turns(self) -> bool:
        return self.subtype == "error_max_turns"


def parse_result(output: str) -> CliResult | None:
    """The last line of the output that is the CLI's result object (stderr may come before it)."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("type") != "result":
            continue
        cost = data.get("total_cost_usd")
        turns = data.get("num_turns")
        denials = data.get("permission_denials")
        return CliResult(
            text=str(data.get("result") or ""),
            subtype=str(data.get("subtype") or ""),
            is_error=bool(data.get("is_error")),
            turns=turns if isinstance(turns, int) else 0,
            reported_cost_usd=Decimal(str(cost)) if isinstance(cost, (int, float)) else None,
            permission_denials=len(denials) if isinstance(denials, list) else 0,
        )
    return None


@dataclass(frozen=True)
class ClaudeCode:
    """The CLI as a role's runtime, on the run's worktree (projects/repo/work.py)."""

    options: RuntimeOptions
    work: RepoWork

    def limit(self, settings: Settings) -> Limit:
        return Limit.of(settings.claude_code_max_seconds, "HQ_CLAUDE_CODE_MAX_SECONDS")

    def instructions(self, project_instructions: str) -> str:
        return CLI_INSTRUCTIONS  # the CLI's own tools, and HQ's over MCP

    def run(self, request: RunRequest) -> RunResult:
        return run(
            request.settings,
            forwarder_for(request.router),
            request.call,
            request.tools,
            self.work,
            tier=request.tier,
            options=self.options,
            system=request.system,
            user=request.user,
            remaining_usd=request.remaining_usd,
            limit=request.limit,
            watch=request.watch,
        )


def offered_tools(tool_ctx: ToolContext) -> list[str]:
    """HQ's tools of the role's toolsets that the CLI lacks: comment, mark_blocked, run_command, ..."""
    return [t.name for t in tools_for(list(tool_ctx.agent.toolsets)) if t.name not in CLI_COVERS]


def cli_tools(options: RuntimeOptions) -> list[str]:
    return [*CLI_TOOLS, *(name for name in options.allowed_tools if name not in CLI_TOOLS)]


def run(
    settings: Settings,
    forwarder: Forwarder,
    call: CallContext,
    tool_ctx: ToolContext,
    work: RepoWork,
    *,
    tier: str,
    options: RuntimeOptions,
    system: str,
    user: str,
    remaining_usd: Decimal,
    limit: Limit,
    watch: Watch,
) -> RunResult:
    """One CLI run on the worktree; raises the gateway's refusal (budget, provider) for the failure policy."""
    binary = claude_binary(settings)
    if binary is None:
        raise RuntimeFailed("Claude Code is not installed: run `make claude-code` or set HQ_CLAUDE_BIN")
    models = forwarder.router.models
    main_tier = options.tier or tier
    main_model = provider_model(anthropic_deployments(models, main_tier)[0])
    fast = anthropic_deployments(models, options.fast_tier) or anthropic_deployments(models, main_tier)
    tools = cli_tools(options)
    offered = offered_tools(tool_ctx)
    with tempfile.TemporaryDirectory(prefix="hq-cc-") as scratch:  # short: a socket path has 107 bytes
        run_dir = Path(scratch)
        gateway_socket, tools_socket = run_dir / "gateway.sock", run_dir / "mcp.sock"
        with (
            Gateway(forwarder, call, main_tier, gateway_socket, fast_tier=fast[0].tier) as gateway,
            ToolServer(tool_ctx, offered, tools_socket) as server,
        ):
            interpreter = str(Path(sys.base_prefix).resolve() / "bin" / "python3")
            config = mcp_config(interpreter, f"{RUN_DIR}/mcp_bridge.py", f"{RUN_DIR}/mcp.sock")
            argv = [
                CLAUDE_IN_SANDBOX,
                "--print",
                "--output-format",
                "json",
                "--max-turns",
                str(options.max_turns),
                "--model",
                main_model,
                "--append-system-prompt",
                system[:MAX_PROMPT_CHARS],
                "--tools",
                ",".join(tools),
                "--allowedTools",
                *tools,
                f"mcp__{SERVER_NAME}",
                "--disallowedTools",
                *NEVER,
                "--setting-sources",
                "",
                "--strict-mcp-config",
                "--mcp-config",
                json.dumps(config),
                "--no-session-persistence",
                "--max-budget-usd",
                f"{max(remaining_usd, Decimal(0)) * BUDGET_FENCE_FACTOR + Decimal('0.01'):.2f}",
                "--",  # the prompt is issue text: after this, nothing in it can be read as an option
                user[:MAX_PROMPT_CHARS],
            ]
            env = {
                "HOME": "/tmp",
                "CLAUDE_CONFIG_DIR": "/tmp/.claude",
                "ANTHROPIC_BASE_URL": "http://localhost",
                "ANTHROPIC_UNIX_SOCKET": f"{RUN_DIR}/gateway.sock",
                "ANTHROPIC_API_KEY": gateway.token,
                TOKEN_ENV: server.token,  # the bridge's, for HQ's tool socket: the CLI passes it to its MCP child
                "ANTHROPIC_MODEL": main_model,
                "ANTHROPIC_SMALL_FAST_MODEL": provider_model(fast[0]),
                "ANTHROPIC_DEFAULT_HAIKU_MODEL": provider_model(fast[0]),
                "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(models.max_output_tokens[main_tier]),
                "CLAUDE_CODE_MAX_RETRIES": "2",  # a cut stream is worth a retry; HQ's refusals are not retried
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_AUTOUPDATER": "1",
                "MCP_CONNECTION_NONBLOCKING": "0",  # HQ's tools are there before the first turn
            }
            mounts = [
                Mount(binary, CLAUDE_IN_SANDBOX),
                Mount(BRIDGE_PATH, f"{RUN_DIR}/mcp_bridge.py"),
                Mount(gateway_socket, f"{RUN_DIR}/gateway.sock", writable=True),
                Mount(tools_socket, f"{RUN_DIR}/mcp.sock", writable=True),
            ]
            if work.environment is not None:  # the CLI's shell runs the project's commands against it too
                env |= work.environment.variables(work.sandbox)
                mounts += work.environment.mounts(work.sandbox)
            limits = Limits(
                timeout_seconds=max(limit.left(), 1.0),
                cpu_seconds=settings.sandbox_cpu_seconds,
                memory_bytes=settings.claude_memory_mb * 1024 * 1024,
                output_bytes=OUTPUT_BYTES,
                cancel=watch.stopped,
            )
            watch.doing("Claude Code session")
            ran = work.sandbox.run(argv, workdir=work.worktree.root, limits=limits, env=env, mounts=mounts)
            refusal = gateway.failure
            calls = list(server.calls)
    result = parse_result(ran.output)
    log.info(
        "claude_code.ran",
        exit_code=ran.exit_code,
        seconds=round(ran.seconds, 3),
        turns=result.turns if result else None,
        subtype=result.subtype if result else None,
        reported_cost_usd=str(result.reported_cost_usd) if result and result.reported_cost_usd is not None else None,
        gateway_calls=gateway.calls,
        tool_calls=len(calls),
        agent=call.agent_slug,
        issue_id=call.issue_id,
        run_id=str(call.run_id),
        workflow=call.workflow,
    )
    if ran.cancelled:
        return RunResult(text="", tool_results=calls, stopped=True)
    if ran.timed_out:
        return RunResult(text="", tool_results=calls, timed_out=True)
    if refusal is not None:
        # Budget, credentials, a provider down: the failure policy's to decide, whatever the output says
        # (code in the sandbox can write to the CLI's output; the gateway's word is HQ's own).
        raise refusal
    if result is None:
        tail = redact(ran.output.strip()[-600:]) or f"exit code {ran.exit_code}"
        raise RuntimeFailed(f"Claude Code gave no result (exit {ran.exit_code}): {tail}")
    text = storable_text(redact(result.text))[:2000]
    if result.is_error and not result.out_of_turns:
        raise RuntimeFailed(f"Claude Code stopped with an error ({result.subtype or 'error'}): {text[:600]}")
    return RunResult(text=text, tool_results=calls, exhausted=result.out_of_turns)
