"""Deciding from Telegram: the poller that receives updates, the desk that handles them, the webhook receiver."""
