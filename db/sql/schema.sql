-- Heartbeat HQ schema: every piece of state the company has.
--
-- Conventions: money is numeric (never float), times are timestamptz, people and
-- agents appear in audit columns as an "actor" string ('agent:qa-lead',
-- 'human:alice', 'sql:postgres'), and runs are identified by a uuid run_id.

CREATE TABLE agents (
    id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug               text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{0,62}$'),
    title              text NOT NULL,
    manager_id         integer REFERENCES agents (id),
    reviewer_id        integer REFERENCES agents (id),
    tier               text NOT NULL DEFAULT 'execution' CHECK (tier IN ('reasoning', 'execution', 'utility')),
    heartbeat_seconds  integer NOT NULL DEFAULT 1800 CHECK (heartbeat_seconds > 0),
    jitter_seconds     integer NOT NULL DEFAULT 0 CHECK (jitter_seconds >= 0),
    workflows          text[] NOT NULL DEFAULT '{}',
    toolsets           text[] NOT NULL DEFAULT '{}',
    skills             jsonb NOT NULL DEFAULT '[]',
    checklist          jsonb NOT NULL DEFAULT '[]',
    monthly_budget_usd numeric(12, 4) CHECK (monthly_budget_usd >= 0),
    -- 'paused' agents never wake; paused_reason says whether a human or a roster removal did it.
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    paused_reason      text CHECK (paused_reason IN ('human', 'removed')),
    source_path        text,
    definition_sha256  text,
    -- The heartbeat lease: whichever `hq run` process holds it runs this agent's beat.
    lease_owner        uuid,
    lease_until        timestamptz,
    last_beat_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (manager_id IS DISTINCT FROM id)
);
CREATE INDEX agents_manager_idx ON agents (manager_id);

CREATE TABLE goals (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title       text NOT NULL CHECK (btrim(title) <> '' AND length(title) <= 500),
    description text NOT NULL DEFAULT '',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'achieved', 'dropped')),
    priority    smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    owner_id    integer REFERENCES agents (id),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The statuses an issue can be in. Transitions between them live in issue_transitions.
CREATE TABLE issue_statuses (
    name        text PRIMARY KEY,
    is_terminal boolean NOT NULL DEFAULT false,
    -- Statuses an issue may be created in.
    is_initial  boolean NOT NULL DEFAULT false,
    position    smallint NOT NULL UNIQUE
);

CREATE TABLE issue_transitions (
    from_status text NOT NULL REFERENCES issue_statuses (name),
    to_status   text NOT NULL REFERENCES issue_statuses (name),
    description text NOT NULL DEFAULT '',
    PRIMARY KEY (from_status, to_status),
    CHECK (from_status <> to_status)
);

CREATE TABLE issues (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title             text NOT NULL CHECK (btrim(title) <> '' AND length(title) <= 500),
    body              text NOT NULL DEFAULT '' CHECK (length(body) <= 200000),
    status            text NOT NULL DEFAULT 'backlog' REFERENCES issue_statuses (name),
    -- 0 is the most urgent, 9 the least; claims take the lowest number first.
    priority          smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    assignee_id       integer REFERENCES agents (id),
    reviewer_id       integer REFERENCES agents (id),
    goal_id           bigint REFERENCES goals (id),
    parent_id         bigint REFERENCES issues (id),
    playbook          text,
    module_key        text,
    labels            text[] NOT NULL DEFAULT '{}',
    needs_approval    boolean NOT NULL DEFAULT false,
    -- Money: the budget, what was spent, and what in-flight model calls have reserved.
    budget_usd        numeric(12, 4) NOT NULL DEFAULT 2 CHECK (budget_usd >= 0),
    spent_usd         numeric(14, 6) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
    reserved_usd      numeric(14, 6) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    -- Work accounting and the poison-pill guard.
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    review_rounds     integer NOT NULL DEFAULT 0 CHECK (review_rounds >= 0),
    quality_score     numeric(4, 3) CHECK (quality_score BETWEEN 0 AND 1),
    -- Why an issue is blocked, and who is handling it.
    blocked_reason    text CHECK (blocked_reason IN ('agent', 'budget', 'max_attempts', 'review_rounds',
                                                     'circuit_breaker', 'waiting', 'verify', 'human',
                                                     'provider_auth')),  -- provider_auth: migration 0009
    escalated_to_id   integer REFERENCES agents (id),
    escalation_chain  text[] NOT NULL DEFAULT '{}',
    -- Dependencies not yet finished; maintained by triggers so claims can use a partial index.
    unmet_deps        integer NOT NULL DEFAULT 0 CHECK (unmet_deps >= 0),
    -- The work lease: a claim sets both, a compare-and-set on lease_owner finishes.
    lease_owner       uuid,
    lease_until       timestamptz,
    created_by        text NOT NULL,
    idempotency_key   text UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now(),
    done_at           timestamptz,
    CHECK (parent_id IS DISTINCT FROM id)
);
CREATE INDEX issues_parent_idx ON issues (parent_id) WHERE parent_id IS NOT NULL;

-- Claim indexes: each matches one claim query's predicate and ORDER BY exactly
-- (db/sql/queries/claims.sql), so a claim reads a handful of index entries
-- however many issues the company has.
CREATE INDEX issues_claim_todo_idx ON issues (assignee_id, priority, id)
    WHERE status = 'todo' AND unmet_deps = 0;
CREATE INDEX issues_claim_stitch_idx ON issues (assignee_id, priority, id)
    WHERE status = 'todo' AND unmet_deps = 0 AND playbook IS NOT NULL;
CREATE INDEX issues_claim_expired_work_idx ON issues (assignee_id, lease_until, id)
    WHERE status = 'in_progress';
CREATE INDEX issues_claim_review_idx ON issues (reviewer_id, priority, id)
    WHERE status = 'in_review';
CREATE INDEX issues_claim_deploy_idx ON issues (priority, id)
    WHERE status = 'approved';
CREATE INDEX issues_claim_expired_deploy_idx ON issues (lease_until, id)
    WHERE status = 'deploying';
CREATE INDEX issues_claim_escalation_idx ON issues (escalated_to_id, priority, id)
    WHERE status = 'blocked';
CREATE INDEX issues_claim_routing_idx ON issues (assignee_id, priority, id)
    WHERE status IN ('backlog', 'todo') AND playbook IS NULL;
CREATE INDEX issues_claim_unowned_idx ON issues (priority, id)
    WHERE status = 'backlog' AND assignee_id IS NULL;
-- The sweeper: expired work leases and parents waiting on their sub-issues.
CREATE INDEX issues_expired_leases_idx ON issues (lease_until)
    WHERE lease_until IS NOT NULL;
CREATE INDEX issues_waiting_idx ON issues (id)
    WHERE status = 'blocked' AND blocked_reason = 'waiting';
CREATE INDEX issues_goal_idx ON issues (goal_id) WHERE goal_id IS NOT NULL;
CREATE INDEX issues_status_idx ON issues (status, id);

CREATE TABLE issue_dependencies (
    issue_id      bigint NOT NULL REFERENCES issues (id),
    depends_on_id bigint NOT NULL REFERENCES issues (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issue_id, depends_on_id),
    CHECK (issue_id <> depends_on_id)
);
CREATE INDEX issue_dependencies_depends_on_idx ON issue_dependencies (depends_on_id);

-- Append-only audit log: one row per status change, written only by the trigger.
CREATE TABLE issue_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issue_id    bigint NOT NULL REFERENCES issues (id),
    from_status text REFERENCES issue_statuses (name),
    to_status   text NOT NULL REFERENCES issue_statuses (name),
    actor       text NOT NULL,
    workflow    text,
    run_id      uuid,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX issue_events_issue_idx ON issue_events (issue_id, id);
CREATE INDEX issue_events_created_idx ON issue_events (created_at);

CREATE TABLE comments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issue_id        bigint NOT NULL REFERENCES issues (id),
    author          text NOT NULL,
    kind            text NOT NULL DEFAULT 'note'
                    CHECK (kind IN ('note', 'review', 'guidance', 'revision', 'research', 'failure', 'system')),
    body            text NOT NULL CHECK (length(body) <= 200000),
    run_id          uuid,
    idempotency_key text UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_issue_idx ON comments (issue_id, id);

CREATE TABLE artifacts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issue_id     bigint NOT NULL REFERENCES issues (id),
    path         text NOT NULL,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   integer NOT NULL CHECK (size_bytes >= 0),
    content_type text NOT NULL DEFAULT 'text/markdown',
    content      text,
    agent_id     integer REFERENCES agents (id),
    run_id       uuid,
    commit_sha   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (issue_id, path, sha256)
);

CREATE TABLE approvals (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issue_id     bigint NOT NULL REFERENCES issues (id),
    kind         text NOT NULL CHECK (kind IN ('work', 'budget', 'escalation')),
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'approved', 'rejected', 'revised', 'resolved', 'expired')),
    reason       text NOT NULL DEFAULT '',
    requested_by text NOT NULL,
    amount_usd   numeric(12, 4),
    deadline     timestamptz NOT NULL,
    reminded_at  timestamptz,
    escalations  integer NOT NULL DEFAULT 0,
    decided_by   text,
    decided_at   timestamptz,
    decision_note text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'pending') = (decided_at IS NULL))
);
-- At most one open approval of a kind per issue.
CREATE UNIQUE INDEX approvals_one_pending_idx ON approvals (issue_id, kind) WHERE status = 'pending';
CREATE INDEX approvals_pending_deadline_idx ON approvals (deadline) WHERE status = 'pending';

-- One row per model call attempt, whatever its outcome.
CREATE TABLE llm_calls (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        uuid NOT NULL,
    call_seq      integer NOT NULL,
    issue_id      bigint REFERENCES issues (id),
    agent_id      integer REFERENCES agents (id),
    workflow      text,
    tier          text NOT NULL,
    provider      text,
    model         text,
    deployment    text,
    input_tokens  integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    cost_usd      numeric(14, 8) NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    reserved_usd  numeric(14, 8) NOT NULL DEFAULT 0,
    latency_ms    integer,
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'fallback', 'error', 'budget_refused')),
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, call_seq)
);
CREATE INDEX llm_calls_issue_idx ON llm_calls (issue_id) WHERE issue_id IS NOT NULL;
CREATE INDEX llm_calls_agent_idx ON llm_calls (agent_id, created_at);
CREATE INDEX llm_calls_created_idx ON llm_calls (created_at);

-- Reservations against monthly budgets: the company's and each agent's.
CREATE TABLE budget_accounts (
    scope        text NOT NULL,           -- 'company' or 'agent:<slug>'
    period       date NOT NULL,           -- first day of the month
    limit_usd    numeric(12, 4) NOT NULL CHECK (limit_usd >= 0),
    spent_usd    numeric(14, 6) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
    reserved_usd numeric(14, 6) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
    PRIMARY KEY (scope, period)
);

-- Money set aside for model calls in flight. Settling deletes the row; the sweeper
-- releases rows whose process died, so a crash never strands a budget.
CREATE TABLE budget_reservations (
    id          uuid PRIMARY KEY,
    run_id      uuid NOT NULL,
    issue_id    bigint REFERENCES issues (id),
    agent_scope text,
    period      date NOT NULL,
    amount_usd  numeric(14, 6) NOT NULL CHECK (amount_usd >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX budget_reservations_expires_idx ON budget_reservations (expires_at);

CREATE TABLE tool_calls (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          uuid NOT NULL,
    step            integer NOT NULL,
    issue_id        bigint REFERENCES issues (id),
    agent_id        integer REFERENCES agents (id),
    toolset         text,
    tool            text NOT NULL,
    arguments       jsonb NOT NULL DEFAULT '{}',
    outcome         text NOT NULL CHECK (outcome IN ('ok', 'refused', 'invalid', 'error')),
    result          jsonb,
    error           text,
    idempotency_key text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_issue_idx ON tool_calls (issue_id) WHERE issue_id IS NOT NULL;

CREATE TABLE heartbeat_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         uuid NOT NULL UNIQUE,
    agent_id       integer NOT NULL REFERENCES agents (id),
    worker         text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    outcome        text CHECK (outcome IN ('ok', 'idle', 'error', 'timeout', 'interrupted')),
    workflows      text[] NOT NULL DEFAULT '{}',
    issues_touched bigint[] NOT NULL DEFAULT '{}',
    claims         integer NOT NULL DEFAULT 0,
    error          text
);
CREATE INDEX heartbeat_runs_agent_idx ON heartbeat_runs (agent_id, started_at DESC);

-- The outbox: one row per event worth telling a human, written in the same
-- transaction as the change that caused it; dedupe_key makes a replay harmless.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dedupe_key      text NOT NULL UNIQUE,
    event           text NOT NULL,
    issue_id        bigint REFERENCES issues (id),
    payload         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    channel         text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notifications_pending_idx ON notifications (next_attempt_at, id) WHERE status IN ('pending', 'sending');
