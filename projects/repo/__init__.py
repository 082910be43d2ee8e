"""The git project: a remote plus its `.hq/project.yaml`, one worktree per issue, commands run by name in
the sandbox, shipped by merge."""
