"""The bundled playbooks, and the roles they may name."""

from __future__ import annotations

from agents.roster import load_roster
from config.settings import PACKAGE_ROOT

PLAYBOOKS = PACKAGE_ROOT / "agents" / "playbooks"
ROLES = set(load_roster(PACKAGE_ROOT / "agents" / "roles").roles)
