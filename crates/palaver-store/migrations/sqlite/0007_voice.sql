-- Voice rooms: liveness of participants (a participant whose connection
-- dropped is removed by a sweeper once its last heartbeat is too old), and
-- the indexes the sweeper and the idle-room closer read.

ALTER TABLE voice_room_participants ADD COLUMN last_heartbeat_at TEXT;
UPDATE voice_room_participants SET last_heartbeat_at = joined_at;
-- Where the media node takes UDP (host:port), beside its name.
ALTER TABLE voice_rooms ADD COLUMN media_addr TEXT;
CREATE INDEX voice_room_participants_heartbeat ON voice_room_participants (last_heartbeat_at);
CREATE INDEX voice_rooms_idle ON voice_rooms (empty_since) WHERE is_active AND current_participants = 0;
