-- Notifications and push: aggregation bookkeeping and outbox claiming.

-- How many events were merged into a notification (messages in one room).
ALTER TABLE notifications ADD COLUMN event_count INTEGER NOT NULL DEFAULT 1;
-- True while a notification still absorbs new events with its key: it is
-- unread and its aggregation window is open. At most one per (user, key), so
-- concurrent events cannot open two.
ALTER TABLE notifications ADD COLUMN aggregating INTEGER NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX notifications_open_aggregate ON notifications (user_id, aggregation_key) WHERE aggregating;

-- The people an aggregated notification stands for: an unlike removes
-- exactly its actor, and actor_count stays exact.
CREATE TABLE notification_actors (
    notification_id INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    actor_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (notification_id, actor_id)
);
CREATE INDEX notification_actors_actor ON notification_actors (actor_id);

-- Which claim (one batch of one worker) holds a row: only that claim may
-- finish it, so a worker whose lease ran out cannot undo another's work.
ALTER TABLE push_outbox ADD COLUMN claimed_by TEXT;
CREATE INDEX push_outbox_claim ON push_outbox (claimed_by) WHERE claimed_by IS NOT NULL;
-- After this the push is dropped: a late notification is worse than none.
ALTER TABLE push_outbox ADD COLUMN expires_at TEXT;
CREATE INDEX push_outbox_collapse ON push_outbox (push_token_id, collapse_key);
CREATE INDEX push_outbox_notification ON push_outbox (notification_id);
