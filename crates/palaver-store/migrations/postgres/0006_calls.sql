-- Calls: the deadlines that drive timeouts from the store (any node's
-- sweeper moves a due call on, exactly once), the devices bound to a call,
-- and the indexes that find live calls and due deadlines.

-- A ringing call becomes `missed` at ring_deadline.
ALTER TABLE call_sessions ADD COLUMN ring_deadline TIMESTAMPTZ;
-- An active call whose media has not connected by media_deadline becomes `failed`.
ALTER TABLE call_sessions ADD COLUMN media_deadline TIMESTAMPTZ;
-- When a party reported media flowing.
ALTER TABLE call_sessions ADD COLUMN media_connected_at TIMESTAMPTZ;
-- The real-time connection of each party the call is bound to: the
-- receiver's is the device that accepted; the caller's the device that sent
-- the first signal. Signals go to these devices only.
ALTER TABLE call_sessions ADD COLUMN caller_connection TEXT;
ALTER TABLE call_sessions ADD COLUMN receiver_connection TEXT;

CREATE INDEX call_sessions_live_caller ON call_sessions (caller_id) WHERE status IN ('initiated', 'ringing', 'active');
CREATE INDEX call_sessions_live_receiver ON call_sessions (receiver_id) WHERE status IN ('initiated', 'ringing', 'active');
CREATE INDEX call_sessions_ring_due ON call_sessions (ring_deadline) WHERE status = 'ringing';
CREATE INDEX call_sessions_media_due ON call_sessions (media_deadline) WHERE status = 'active' AND media_connected_at IS NULL;

CREATE INDEX call_quality_call_user ON call_quality (call_id, user_id, id DESC);
