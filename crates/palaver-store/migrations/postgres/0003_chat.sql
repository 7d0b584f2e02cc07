-- Chat: a message may carry a shared moment (a share into a conversation
-- keeps the reference, so clients show the moment as a card and the share
-- stays tied to its message), and the indexes threads and foreign keys read.

ALTER TABLE messages ADD COLUMN shared_moment_id BIGINT REFERENCES moments (id) ON DELETE SET NULL;

-- A thread (the replies to one message) is read in seq order.
DROP INDEX messages_reply_to;
CREATE INDEX messages_thread ON messages (reply_to_id, seq) WHERE reply_to_id IS NOT NULL;

-- Deleting a media item or a moment sets these to NULL: without an index
-- each such delete would scan every message.
CREATE INDEX messages_media ON messages (media_id) WHERE media_id IS NOT NULL;
CREATE INDEX messages_shared_moment ON messages (shared_moment_id) WHERE shared_moment_id IS NOT NULL;
