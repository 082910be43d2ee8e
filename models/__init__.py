"""The one door to the models: tiers → deployments, the router, budgets, the gateway's forwarder,
the offline model, and the structured answers workflows ask for.

Only models/router.py and models/offline.py import LiteLLM, and only when
a call is about to be made.
"""
