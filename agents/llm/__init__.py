"""The model layer: tiers, the router, budgets, the offline model, and the tool-use loop.

Only agents/llm/router.py and agents/llm/offline.py import LiteLLM, and only when
a call is about to be made.
"""
