"""Projects: real git repositories, the evidence their checks leave, and the commit each issue shipped.

``projects`` names a git remote and its base branch; an issue may belong to one
(``issues.project_id``). ``check_runs`` keeps every gate, deploy and verify command's
result against the exact commit it ran on: the review gate and deploy only trust
evidence for the commit they are about to pass on. ``issues.merged_sha`` is the merge
commit a shipped issue became. ``project_config`` is the blocked reason for a missing
or invalid ``.hq/project.yaml``. The new report view ``report_shipped`` is granted to
hq_reporter like the others.

Adding nullable columns is instant; the blocked-reason CHECK is re-added under a
lock held to the end of the upgrade: upgrade while `hq run` is stopped.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from db.sqlfiles import run_sql, run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_REASONS = (
    "'agent', 'budget', 'max_attempts', 'review_rounds', 'circuit_breaker', 'waiting', 'verify', 'human', "
    "'provider_auth'"
)
_SHA = "'^[0-9a-f]{40}([0-9a-f]{24})?$'"  # SHA-1, or SHA-256 object names


def upgrade() -> None:
    connection = op.get_bind()
    run_sql(
        connection,
        f"""
        CREATE TABLE projects (
            id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{{0,62}}$'),
            repo        text NOT NULL CHECK (length(repo) BETWEEN 1 AND 4096),
            base_branch text NOT NULL DEFAULT 'main' CHECK (base_branch ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{{0,199}}$'),
            created_by  text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            removed_at  timestamptz
        );
        CREATE UNIQUE INDEX projects_name_idx ON projects (name) WHERE removed_at IS NULL;

        ALTER TABLE issues ADD COLUMN project_id integer REFERENCES projects (id);
        ALTER TABLE issues ADD COLUMN merged_sha text CHECK (merged_sha ~ {_SHA});
        CREATE INDEX issues_project_idx ON issues (project_id) WHERE project_id IS NOT NULL;

        CREATE TABLE check_runs (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            issue_id    bigint NOT NULL REFERENCES issues (id),
            project_id  integer NOT NULL REFERENCES projects (id),
            commit_sha  text NOT NULL CHECK (commit_sha ~ {_SHA}),
            stage       text NOT NULL CHECK (stage IN ('work', 'review', 'merge', 'deploy', 'verify')),
            command     text NOT NULL CHECK (length(command) BETWEEN 1 AND 64),
            exit_code   integer NOT NULL,
            duration_ms integer NOT NULL CHECK (duration_ms >= 0),
            output_tail text NOT NULL,
            sandbox     text NOT NULL CHECK (sandbox IN ('bwrap', 'none')),
            run_id      uuid,
            agent_id    integer REFERENCES agents (id),
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX check_runs_issue_commit_idx ON check_runs (issue_id, commit_sha, id);

        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check
            CHECK (blocked_reason IN ({_REASONS}, 'project_config'));
    """,
    )
    run_sql_file(connection, "views.sql")  # adds report_shipped
    run_sql_file(connection, "reporter.sql")  # grants it


def downgrade() -> None:
    run_sql(
        op.get_bind(),
        f"""
        DROP VIEW IF EXISTS report_shipped;
        UPDATE issues SET blocked_reason = 'agent' WHERE blocked_reason = 'project_config';
        ALTER TABLE issues DROP CONSTRAINT issues_blocked_reason_check;
        ALTER TABLE issues ADD CONSTRAINT issues_blocked_reason_check CHECK (blocked_reason IN ({_REASONS}));
        DROP TABLE check_runs;
        ALTER TABLE issues DROP COLUMN merged_sha;
        ALTER TABLE issues DROP COLUMN project_id;
        DROP TABLE projects;
    """,
    )
