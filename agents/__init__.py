"""Agents as data: the roster of roles, their tools, and the one door to the models."""
