"""Who the agents are and what they may do: the roles (roles/*/AGENTS.md), the roster and its sync,
playbooks, and the tools (tools/)."""
