"""What the workflows share: their context, claiming, escalation, prompts and the outbox."""
