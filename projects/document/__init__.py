"""The document project: issues without a repository, whose files the database keeps (snapshots) and
publishes (the publish script), so any host can deploy any issue."""
