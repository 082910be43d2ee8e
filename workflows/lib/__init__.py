"""What the workflows share: their context, claiming, escalation, the failure policy, prompts,
decomposition, and the git project's issue handling and review evidence."""
