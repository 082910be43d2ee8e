"""Canaries: secrets shaped like the real ones, which no output, log line, row or request may show."""

from __future__ import annotations

ANTHROPIC_CANARY = "sk-ant-api03-CANARYcanaryCANARYcanary0123456789"


TELEGRAM_CANARY = "987654321:AAcanaryCANARYcanaryCANARYcanary12345"
