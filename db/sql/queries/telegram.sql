-- Deciding from Telegram (channels/): the poller's lease and offset, the audit of every
-- update handled, the note prompts, and what the commands read. Every update is handled in one
-- transaction that first advances the offset (under the lease: the poller row's lock also
-- serialises handling across processes), then records the update (its id is the key: a second
-- delivery finds it and changes nothing), then decides.

-- name: take_lease
-- The lease is free, expired, or already ours: take or renew it. Nothing comes back when another holds it.
UPDATE telegram_poller
   SET lease_owner = :owner, lease_until = now() + make_interval(secs => :ttl), updated_at = now()
 WHERE lease_owner IS NULL OR lease_owner = :owner OR lease_until < now()
RETURNING update_offset;

-- name: release_lease
UPDATE telegram_poller SET lease_owner = NULL, lease_until = NULL, updated_at = now() WHERE lease_owner = :owner;

-- name: poller
SELECT lease_owner, lease_until, update_offset, lease_until > now() AS held FROM telegram_poller;

-- name: advance_offset
-- Only the lease holder moves the offset; a poller that lost its lease decides nothing.
UPDATE telegram_poller SET update_offset = greatest(update_offset, :update_id + 1), updated_at = now()
 WHERE lease_owner = :owner AND lease_until > clock_timestamp()
RETURNING update_offset;

-- name: record_update
INSERT INTO telegram_updates (update_id, chat_id, user_id, username, kind, outcome)
VALUES (:update_id, :chat_id, :user_id, :username, :kind, 'ignored')
ON CONFLICT (update_id) DO NOTHING
RETURNING update_id;

-- name: settle_update
UPDATE telegram_updates
   SET outcome = :outcome, action = :action, approval_id = :approval_id, issue_id = :issue_id, detail = :detail
 WHERE update_id = :update_id;

-- name: add_prompt
INSERT INTO telegram_prompts (chat_id, message_id, approval_id, version, action, asked_by, origin_message_id,
                              origin_text)
VALUES (:chat_id, :message_id, :approval_id, :version, :action, :asked_by, :origin_message_id, :origin_text)
ON CONFLICT DO NOTHING;

-- name: use_prompt
-- A prompt answers once: the reply that takes it decides.
UPDATE telegram_prompts SET used_at = now()
 WHERE chat_id = :chat_id AND message_id = :message_id AND used_at IS NULL
RETURNING approval_id, version, action, asked_by, origin_message_id, origin_text;

-- name: approval_of_issue
-- The open approval a command on an issue answers (work before budget before escalation).
SELECT * FROM approvals WHERE issue_id = :issue_id AND status = 'pending'
 ORDER BY array_position(ARRAY['work', 'budget', 'escalation'], kind) LIMIT 1;

-- name: board
SELECT status, sum(issues)::bigint AS issues FROM report_issue_board GROUP BY status ORDER BY status;

-- name: spend_today
-- From the daily summary (cheap at any size); a UTC day, like the digest's.
SELECT coalesce(sum(cost_usd), 0) FROM usage_daily WHERE day = (now() AT TIME ZONE 'UTC')::date;

-- name: approval_queue
SELECT approval_id, issue_id, title, kind, deadline, overdue FROM report_approval_queue LIMIT :limit;

-- name: approval_count
SELECT count(*) FROM approvals WHERE status = 'pending';

-- name: blocked
SELECT issue_id, title, blocked_reason, waiting_on, waiting_for FROM report_blocked_chain LIMIT :limit;

-- name: blocked_count
SELECT count(*) FROM issues WHERE status = 'blocked';
