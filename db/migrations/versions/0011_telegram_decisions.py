"""Deciding from Telegram: the poller's lease and offset, every update handled, notes asked for, reminders sent.

``telegram_poller`` is one row: which `hq run` receives updates (a lease, like an
agent's heartbeat) and the offset of the next update, advanced in the same
transaction as the decision an update makes, so a restart neither loses nor
repeats one. ``telegram_updates`` keeps each handled update once (its id is the
key, so a second delivery changes nothing) with who sent it and what came of it:
the audit of every attempt to decide, allowed or not; its ids are what the
update asked for, which need not exist, so they reference nothing. ``telegram_prompts`` are
the "reply with your note" messages a Revise, Reject or Unblock button sends;
a reply to one decides. ``approvals.reminders_sent`` counts the in-period
reminders (at half and at 90 % of the deadline) already enqueued for the
approval's current deadline.

New tables and a column with a constant default: instant, safe while `hq run` runs.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from db.sqlfiles import run_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        op.get_bind(),
        """
        CREATE TABLE telegram_poller (
            id            boolean PRIMARY KEY DEFAULT true CHECK (id),
            lease_owner   text,
            lease_until   timestamptz,
            update_offset bigint NOT NULL DEFAULT 0 CHECK (update_offset >= 0),
            updated_at    timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO telegram_poller DEFAULT VALUES;

        CREATE TABLE telegram_updates (
            update_id   bigint PRIMARY KEY,
            received_at timestamptz NOT NULL DEFAULT now(),
            chat_id     bigint,
            user_id     bigint,
            username    text,
            kind        text NOT NULL CHECK (kind IN ('button', 'command', 'reply', 'other')),
            action      text,
            approval_id bigint,
            issue_id    bigint,
            outcome     text NOT NULL
                        CHECK (outcome IN ('decided', 'asked', 'answered', 'not_allowed', 'invalid', 'stale',
                                           'refused', 'ignored', 'failed')),
            detail      text NOT NULL DEFAULT ''
        );
        CREATE INDEX telegram_updates_user_idx ON telegram_updates (user_id, received_at);

        CREATE TABLE telegram_prompts (
            chat_id           bigint NOT NULL,
            message_id        bigint NOT NULL,
            approval_id       bigint NOT NULL REFERENCES approvals (id),
            version           integer NOT NULL,
            action            text NOT NULL,
            asked_by          bigint NOT NULL,
            origin_message_id bigint,
            origin_text       text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            used_at           timestamptz,
            PRIMARY KEY (chat_id, message_id)
        );

        ALTER TABLE approvals ADD COLUMN reminders_sent smallint NOT NULL DEFAULT 0
            CHECK (reminders_sent BETWEEN 0 AND 2);
    """,
    )


def downgrade() -> None:
    run_sql(
        op.get_bind(),
        """
        ALTER TABLE approvals DROP COLUMN reminders_sent;
        DROP TABLE telegram_prompts;
        DROP TABLE telegram_updates;
        DROP TABLE telegram_poller;
    """,
    )
