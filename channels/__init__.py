"""The human channels: Telegram in one home — the notify job that delivers the outbox (or prints it to
the console), what a message says, the signed buttons, and deciding from Telegram (poller, webhook,
desk, replies). Its rows are in db/store/telegram.py. Not named ``telegram``: that is
python-telegram-bot's package.
"""
