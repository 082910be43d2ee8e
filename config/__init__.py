"""Settings, secrets redaction and logging: the things every process sets up first."""
