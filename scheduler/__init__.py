"""Heartbeats: APScheduler jobs per agent, Postgres leases across processes, LISTEN/NOTIFY wake-ups."""
