"""The offline model's mind: deterministic, role-aware answers to every workflow's prompt.

It reads the task and JSON context out of the conversation (models/protocol)
and answers in the shape the workflow expects: tool calls and a final line for
work, JSON for reviews, assignments, plans, escalations and playbooks. The same
input always gives the same output.

Directives in an issue's title or body make it walk a particular path, for
demos and tests (documented in the README):

- ``[offline:block]``          the worker marks the issue blocked
- ``[offline:research]``       the worker asks the researcher first, then resumes
- ``[offline:fail-review]``    the first review round fails, the rework passes
- ``[offline:fail-review-always]`` every review fails (too many rounds → blocked)
- ``[offline:fail-verify]``    the first deliverable has an unfilled placeholder,
                               so deploy verification fails once
- ``[offline:escalate]``       every manager escalates; a human decides
- ``[offline:slow]``           the first step of each work run takes two seconds
                               (to catch a worker in the middle of a task)

An issue of a git project is worked from the code it spells out: fenced blocks
that name a file (```` ```python file=src/calc.py ````) in the newest review,
revision or guidance comment by a person that has any, else in the body. The worker writes
exactly those files, runs the gate once and submits; with no such block, or when
a review has failed since that code was given, it says it is blocked.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from config.vocabulary import is_person
from models import schemas
from models.protocol import parse_user_message

DIRECTIVE = re.compile(r"\[offline:([a-z-]+)\]")
WORD = re.compile(r"[a-z0-9][a-z0-9-]+")

CONTENT_ROLES = ("writer", "editor", "seo", "video", "social")
ANALYSIS_ROLES = ("product", "ux", "analyst", "research", "finance")


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def directives(context: dict[str, Any]) -> set[str]:
    """The issue's directives, minus those a human has already answered with guidance."""
    issue = context.get("issue") or {}
    found = set(DIRECTIVE.findall(f"{issue.get('title', '')}\n{issue.get('body', '')}"))
    if any(c.get("kind") == "guidance" and is_person(c.get("author")) for c in context.get("comments") or []):
        found -= {"block", "escalate"}
    if "research" in (issue.get("labels") or []):
        found.discard("research")  # a research issue answers questions; it does not ask them
    return found


def plain_title(issue: dict[str, Any]) -> str:
    return " ".join(DIRECTIVE.sub("", str(issue.get("title", ""))).split())


def _digest(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


def respond(messages: list[dict[str, Any]], tool_names: list[str]) -> Reply:
    """Answer the conversation so far."""
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    task, context = parse_user_message(str(first_user.get("content", "")) if first_user else "")
    handler = {
        "execute": _work,
        "stitch": _work,
        "review": _review,
        "assign": _assign,
        "plan": _plan,
        "escalate": _escalate,
        "classify": _classify,
        "adapt": _adapt,
    }.get(task or "")
    if handler is None:
        return Reply(text="I am the offline model. I answer Heartbeat HQ workflow prompts (TASK: ...).")
    return handler(context, messages, tool_names)


SLOW_SECONDS = 2.0


def delay_seconds(messages: list[dict[str, Any]]) -> float:
    """How long to think before answering: only ``[offline:slow]`` work is slow."""
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    task, context = parse_user_message(str(first_user.get("content", "")) if first_user else "")
    first_step = not any(m.get("role") == "tool" for m in messages)
    return SLOW_SECONDS if first_step and task in ("execute", "stitch") and "slow" in directives(context) else 0.0


# --- work: execute and stitch -------------------------------------------------------------


def _calls_so_far(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Tool name → results returned so far in this conversation."""
    names: dict[str, str] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            names[call.get("id", "")] = function.get("name", "")
        if message.get("role") == "tool":
            name = names.get(message.get("tool_call_id", ""), "")
            try:
                result = json.loads(message.get("content") or "{}")
            except ValueError:
                result = {"raw": message.get("content")}
            results.setdefault(name, []).append(result if isinstance(result, dict) else {"value": result})
    return results


def _work(context: dict[str, Any], messages: list[dict[str, Any]], tools: list[str]) -> Reply:
    if context.get("project"):
        return _code_work(context, messages, tools)
    done = _calls_so_far(messages)
    flags = directives(context)
    issue = context.get("issue") or {}
    agent = context.get("agent") or {}
    path = context.get("deliverable_path") or "deliverable.md"
    if "block" in flags and "mark_blocked" in tools:
        if "mark_blocked" not in done:
            return Reply(tool_calls=[("mark_blocked", {"reason": _block_reason(issue)})])
        return Reply(text=f"BLOCKED: {_block_reason(issue)}")
    wants_research = "research" in flags and not context.get("research") and "ask_research" in tools
    if wants_research:
        if "ask_research" not in done:
            question = f"What are the key facts and sources needed for: {plain_title(issue) or 'this issue'}?"
            return Reply(tool_calls=[("ask_research", {"question": question})])
        asked = done["ask_research"][-1]
        return Reply(text=f"WAITING: asked the researcher (issue #{asked.get('research_issue_id', '?')}).")
    if "write_file" in tools and "write_file" not in done:
        return Reply(tool_calls=[("write_file", {"path": path, "content": deliverable(context)})])
    if "publish" in tools and "publish" not in done and any(r in agent.get("slug", "") for r in CONTENT_ROLES):
        return Reply(tool_calls=[("publish", {"path": path})])
    summary = (
        f"{agent.get('title', agent.get('slug', 'agent'))} delivered {path} for "
        f"'{issue.get('title', '')}', covering {len(agent.get('checklist') or [])} checklist items."
    )
    return Reply(text=f"DONE: {summary}")


# ```python file=src/calc.py  ...  ``` : a file the issue (or a review) spells out whole.
FILE_BLOCK = re.compile(r"^```[\w+.-]*[ \t]+file=(\S+)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SOURCES = ("review", "revision", "guidance")


def file_blocks(text: str) -> dict[str, str]:
    """Every fenced block that names a file, as path -> content (a later block for a path wins)."""
    return {match.group(1): match.group(2) for match in FILE_BLOCK.finditer(text)}


def _code_source(context: dict[str, Any]) -> tuple[dict[str, str], bool]:
    """The newest code given (a review, revision or guidance comment, else the body), and whether a
    review has failed since it was given (so writing it again would only fail again)."""
    comments = list(context.get("comments") or [])
    for index in range(len(comments) - 1, -1, -1):
        comment = comments[index]
        # A person's words only: an agent's comment may quote a command's output, and output is never code.
        given = comment.get("kind") in CODE_SOURCES and is_person(comment.get("author"))
        blocks = file_blocks(str(comment.get("body", ""))) if given else {}
        if blocks:
            return blocks, _failed_review(comments[index + 1 :])
    return file_blocks(str((context.get("issue") or {}).get("body", ""))), _failed_review(comments)


def _failed_review(comments: list[dict[str, Any]]) -> bool:
    return any(c.get("kind") == "review" and " failed " in str(c.get("body", ""))[:80] for c in comments)


def _code_work(context: dict[str, Any], messages: list[dict[str, Any]], tools: list[str]) -> Reply:
    """A project issue: write exactly the files the issue gives, run the gate once, submit. Never invent code."""
    done = _calls_so_far(messages)
    blocks, already_failed = _code_source(context)
    gate = [str(name) for name in (context.get("project") or {}).get("gate") or []]
    if not blocks or already_failed:
        why = (
            "The review failed on the code I was given, and no corrected code has been given since."
            if blocks
            else "The issue gives no code: put each file in a fenced block naming it, like ```python file=src/app.py"
        )
        if "mark_blocked" in tools and "mark_blocked" not in done:
            return Reply(tool_calls=[("mark_blocked", {"reason": why})])
        return Reply(text=f"BLOCKED: {why}")
    if "write_file" in tools and "write_file" not in done:
        return Reply(tool_calls=[("write_file", {"path": p, "content": c}) for p, c in sorted(blocks.items())])
    if gate and "run_command" in tools and "run_command" not in done:
        return Reply(tool_calls=[("run_command", {"name": name}) for name in gate])
    results = [f"{r.get('name')} exit {r.get('exit_code')}" for r in done.get("run_command", [])]
    ran = f"; gate: {', '.join(results)}" if results else ""
    return Reply(text=f"DONE: wrote {', '.join(sorted(blocks))}{ran}.")


def _block_reason(issue: dict[str, Any]) -> str:
    return (
        f"Cannot finish '{issue.get('title', 'this issue')}': the access and decision it needs are outside "
        "my role; a manager must provide them."
    )


def deliverable(context: dict[str, Any]) -> str:
    """A role-shaped deliverable: sections for the kind of work, the checklist, and what changed."""
    agent = context.get("agent") or {}
    issue = context.get("issue") or {}
    slug = agent.get("slug", "agent")
    title = issue.get("title", "Untitled")
    body = (issue.get("body") or "").strip()
    seed = _digest(slug, title)
    lines = [
        f"# {title}",
        "",
        f"_Prepared by {agent.get('title', slug)} ({slug}) for issue #{issue.get('id', '?')}._",
        "",
    ]
    if context.get("children"):
        lines += ["## Assembled result", ""]
        for child in context["children"]:
            lines.append(f"### {child.get('title')} (#{child.get('id')}, {child.get('status')})")
            for artifact in child.get("artifacts") or []:
                excerpt = " ".join(str(artifact.get("excerpt", "")).split())[:400]
                lines.append(f"- `{artifact.get('path')}`: {excerpt}")
            lines.append("")
    if any(r in slug for r in CONTENT_ROLES):
        sections = [
            (
                "Draft",
                f"{title} explained for our readers in plain language, with one concrete example "
                f"and a clear next step (variant {seed % 7 + 1}).",
            )
        ]
    elif any(r in slug for r in ANALYSIS_ROLES):
        sections = [
            ("Findings", f"Three findings about '{title}', each with its evidence and confidence."),
            ("Recommendation", "The smallest change that tests the strongest finding."),
        ]
    else:
        sections = [
            ("Approach", f"The change for '{title}' in small, reviewable steps."),
            ("Implementation notes", "Interfaces touched, failure modes handled, migration plan."),
            ("Tests", "Success path, invalid input and a failing dependency are each covered."),
        ]
    for heading, text in sections:
        lines += [f"## {heading}", "", text, ""]
    if body:
        lines += ["## Request", "", body[:2000], ""]
    for item in context.get("research") or []:
        lines += [
            "## Research used",
            "",
            f"- Q: {item.get('question', '')}",
            f"- A: {item.get('answer', '')[:600]}",
            "",
        ]
    for dependency in context.get("dependencies") or []:
        lines.append(f"- Builds on #{dependency.get('id')} {dependency.get('title')}")
    notes = [
        c.get("body", "") for c in context.get("comments") or [] if c.get("kind") in ("review", "revision", "failure")
    ]
    if notes:
        lines += ["", "## Changes since the last round", ""] + [
            f"- Addressed: {n.splitlines()[0][:200]}" for n in notes
        ]
    lines += ["", "## Checklist", ""] + [f"- [x] {item}" for item in agent.get("checklist") or []]
    failed_verify_before = any(c.get("kind") == "failure" for c in context.get("comments") or [])
    if "fail-verify" in directives(context) and not failed_verify_before:
        lines += ["", "Release date: {{release_date}}"]
    return "\n".join(lines).rstrip() + "\n"


# --- structured answers -----------------------------------------------------------------


def _json(model: Any) -> Reply:
    return Reply(text=model.model_dump_json())


def _review(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    flags = directives(context)
    round_ = int(context.get("round") or 1)
    checklist = list(context.get("checklist") or [])
    fails = "fail-review-always" in flags or ("fail-review" in flags and round_ == 1)
    seed = _digest(context.get("issue", {}).get("title"), round_)
    if fails:
        notes = [f"Not yet met: {item}" for item in checklist[:2]] or ["The deliverable does not meet the request."]
        return _json(schemas.ReviewVerdict(score=round(0.40 + (seed % 15) / 100, 2), passed=False, notes=notes))
    artifacts = context.get("artifacts") or context.get("checks") or []  # a project issue's evidence is its checks
    if not artifacts:
        return _json(schemas.ReviewVerdict(score=0.3, passed=False, notes=["No deliverable was submitted."]))
    return _json(
        schemas.ReviewVerdict(
            score=round(0.82 + (seed % 14) / 100, 2), passed=True, notes=[f"Meets: {item}" for item in checklist[:3]]
        )
    )


def _assign(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    candidates = context.get("candidates") or []
    issue = context.get("issue") or {}
    words = _words(f"{issue.get('title', '')} {issue.get('body', '')}")

    def score(candidate: dict[str, Any]) -> tuple[int, int]:
        vocabulary = _words(
            " ".join([candidate.get("title", ""), *candidate.get("skills", []), *candidate.get("keywords", [])])
        )
        return len(words & vocabulary), -_digest(candidate.get("slug"), issue.get("title"))

    if not candidates:
        return _json(schemas.Assignment(assignee="", reason="no candidates"))
    best = max(candidates, key=score)
    return _json(schemas.Assignment(assignee=best["slug"], reason=f"closest skills to '{issue.get('title', '')}'"))


def _plan(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    issues = []
    for goal in context.get("goals") or []:
        if goal.get("open_issues"):
            continue
        issues.append(
            schemas.PlannedIssue(
                goal_id=int(goal["id"]),
                title=f"{goal['title']}: first milestone"[:500],
                body=f"Deliver the first measurable step toward the goal.\n\n{goal.get('description', '')}".strip(),
                priority=int(goal.get("priority", 5)),
            )
        )
    return _json(schemas.Plan(issues=issues))


def _escalate(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    flags = directives(context)
    issue = context.get("issue") or {}
    if "escalate" in flags or int(context.get("prior_unblocks") or 0) >= 1:
        return _json(schemas.EscalationDecision(action="escalate", reason="This needs a decision above my level."))
    reports = [r for r in context.get("reports") or [] if r != context.get("assignee")]
    if context.get("blocked_reason") == "review_rounds" and reports:
        return _json(
            schemas.EscalationDecision(
                action="reassign",
                assignee=reports[_digest(issue.get("id")) % len(reports)],
                reason="A fresh pair of hands after repeated review failures.",
            )
        )
    return _json(
        schemas.EscalationDecision(
            action="unblock",
            reason="The blocker can be worked around.",
            guidance=f"Proceed with '{issue.get('title', '')}' using the documented defaults; note assumptions.",
        )
    )


FITS = 2  # distinct keywords of a playbook a request must name before the offline model says it fits


def _classify(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    """The playbook naming most of the request's words (ties by name); none below two of them, unless the
    request was marked for decomposition, when the closest one serves."""
    issue = context.get("issue") or {}
    words = _words(f"{issue.get('title', '')} {issue.get('body', '')}")
    scored = [(len(words & set(p.get("keywords", []))), p.get("name")) for p in context.get("playbooks") or []]
    scored.sort(key=lambda pair: (-pair[0], str(pair[1])))
    requested = bool(context.get("decomposition_requested")) or "decompose" in (issue.get("labels") or [])
    choice = scored[0][1] if scored and (requested or scored[0][0] >= FITS) else None
    reason = "closest description and keywords" if choice else "no playbook's keywords fit: one agent does it"
    return _json(schemas.PlaybookChoice(playbook=choice, reason=reason))


def _adapt(context: dict[str, Any], _messages: list[dict[str, Any]], _tools: list[str]) -> Reply:
    """The playbook with the modules no offered role can take left out, their dependents waiting on what they
    waited on (so the order holds); as written when every role is offered."""
    playbook = context.get("playbook") or {}
    offered = {r.get("slug") for r in context.get("roles") or []}
    modules = list(playbook.get("modules") or [])
    dropped = {m["id"]: list(m.get("depends_on") or []) for m in modules if offered and m.get("role") not in offered}

    def kept(dependencies: list[str], seen: frozenset[str] = frozenset()) -> list[str]:
        found: list[str] = []
        for dependency in dependencies:
            if dependency not in dropped:
                found.append(dependency)
            elif dependency not in seen:
                found.extend(kept(dropped[dependency], seen | {dependency}))
        return list(dict.fromkeys(found))

    specs = [
        schemas.ModuleSpec(**(m | {"depends_on": kept(list(m.get("depends_on") or []))}))
        for m in modules
        if m["id"] not in dropped
    ] or [schemas.ModuleSpec(**m) for m in modules]
    reason = f"Left out {', '.join(sorted(dropped))}: no role offered can do it." if dropped else "Fits as written."
    return _json(schemas.PlaybookAdaptation(modules=specs, reason=reason))
