"""Who may take a project issue: engineers (roles with the `code` toolset), of the project's team if it names one.

A project issue is a change to a git repository, so only a role that can work a
worktree should end up owning it, whatever words its body happens to use. The
team (``projects.team_id``, a manager) narrows that to the engineers anywhere
below it: a team is the manager's whole subtree, so naming a VP gives every
engineering team under it. Routing still goes down the chain of command one
level at a time; at each level the candidates are the reports on a path to an
eligible engineer, and keywords choose among them using only the skills of the
agents on those paths. When the manager holding the issue has no such report,
the fallback hands it to the team's manager (who does), else to the nearest
engineer in the org chart, never to a role that cannot code. With no active
engineer at all (in the team, then in the company) there is nobody to route to.
Pure: no database, so it is tested as data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from db.store import AgentRecord

CODE_TOOLSET = "code"


def can_code(agent: AgentRecord) -> bool:
    return agent.active and CODE_TOOLSET in agent.toolsets


def active_subtree(agents: dict[int, AgentRecord], root: AgentRecord) -> list[AgentRecord]:
    """``root`` and every active agent below it, reached through active managers only."""
    found = [root]
    stack = [root]
    while stack:
        agent = stack.pop()
        below = [a for a in agents.values() if a.manager_id == agent.id and a.active]
        found.extend(below)
        stack.extend(below)
    return found


@dataclass(frozen=True)
class Reach:
    """The engineers a project issue may go to and every agent on the chain of command above them."""

    engineers: frozenset[int]
    paths: frozenset[int]
    team_staffed: bool  # False: the team has no active engineer and the company's engineers stand in

    def vocabulary(self, agents: dict[int, AgentRecord], candidate: AgentRecord) -> set[str]:
        """A candidate's routing words: the skills of the agents below it that lead to an engineer."""
        words: set[str] = set()
        for agent in active_subtree(agents, candidate):
            if agent.id in self.paths:
                for skill in agent.skills:
                    words.update(k.lower() for k in skill.get("keywords", []))
        return words


def reach(agents: dict[int, AgentRecord], team: AgentRecord | None) -> Reach:
    """The engineers of ``team`` (its whole active subtree), or of the company when it has none or none is active."""
    pool: Iterable[AgentRecord] = active_subtree(agents, team) if team is not None else agents.values()
    engineers = {a.id for a in pool if can_code(a)}
    staffed = bool(engineers)
    if not engineers:
        engineers = {a.id for a in agents.values() if can_code(a)}
    paths = set(engineers)
    for engineer in engineers:
        manager = agents[engineer].manager_id
        while manager is not None and manager in agents and manager not in paths:
            paths.add(manager)
            manager = agents[manager].manager_id
    return Reach(frozenset(engineers), frozenset(paths), staffed or team is None)


def candidates(reports: Iterable[AgentRecord], found: Reach) -> list[AgentRecord]:
    """The manager's active reports that are engineers or lead to one."""
    return [r for r in reports if r.id in found.paths]


def fallback(
    agents: dict[int, AgentRecord], holder: AgentRecord, team: AgentRecord | None, found: Reach
) -> AgentRecord | None:
    """Whom to hand a project issue when ``holder`` has no report on a path to an engineer.

    The team's manager when it is active, is not the holder and has engineers below it; else the engineer
    nearest to the holder in the org chart (fewest reporting lines between them; ties by slug); None when
    the company has no active engineer.
    """
    if team is not None and team.active and team.id != holder.id and found.team_staffed:
        return team
    if not found.engineers:
        return None
    neighbours: dict[int, list[int]] = {a.id: [] for a in agents.values()}
    for agent in agents.values():
        if agent.manager_id is not None and agent.manager_id in neighbours:
            neighbours[agent.id].append(agent.manager_id)
            neighbours[agent.manager_id].append(agent.id)
    distance = {holder.id: 0}
    queue = deque([holder.id])
    while queue:
        current = queue.popleft()
        for other in neighbours.get(current, []):
            if other not in distance:
                distance[other] = distance[current] + 1
                queue.append(other)
    reachable = [agents[i] for i in found.engineers if i in distance]
    if not reachable:
        return None
    return min(reachable, key=lambda a: (distance[a.id], a.slug))
