-- Palaver's data model on SQLite (the PostgreSQL twin lives in ../postgres).
-- Types follow SQLite's affinities: INTEGER for ids, booleans and counters,
-- TEXT for timestamps (RFC 3339, UTC) and JSON, BLOB for bytes.
-- Timestamps are written by the application (microsecond precision), never by
-- DEFAULT now(), so both backends store identical values.

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    display_name       TEXT NOT NULL,
    avatar             TEXT,
    bio                TEXT NOT NULL DEFAULT '',
    native_languages   TEXT NOT NULL DEFAULT '[]',
    learning_languages TEXT NOT NULL DEFAULT '[]',
    role               TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'teacher', 'moderator', 'admin')),
    is_suspended       INTEGER NOT NULL DEFAULT FALSE,
    followers_count    INTEGER NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count    INTEGER NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    moments_count      INTEGER NOT NULL DEFAULT 0 CHECK (moments_count >= 0),
    last_seen_at       TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);

-- A login session: one family of rotating refresh tokens. Revoking the family
-- (logout, or reuse of a spent token) ends every token in it, and access
-- tokens carrying its id stop being accepted.
CREATE TABLE auth_sessions (
    id           TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    revoked_at   TEXT,
    revoke_reason TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- Refresh tokens are stored as SHA-256 hashes; the token itself is only ever
-- in the client's hands.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Uploaded files. Bytes live in object storage under storage_key (never the
-- client's filename), encrypted under key_id.
CREATE TABLE media (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL CHECK (kind IN ('image', 'audio', 'video', 'file')),
    content_type      TEXT NOT NULL,
    size_bytes        INTEGER NOT NULL,
    width             INTEGER,
    height            INTEGER,
    duration_ms       INTEGER,
    storage_key       TEXT NOT NULL UNIQUE,
    thumbnail_key     TEXT,
    original_filename TEXT,
    sha256            TEXT,
    key_id            TEXT,
    attached_at       TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX media_owner ON media (owner_id, id);
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;

CREATE TABLE moments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content         TEXT NOT NULL,
    visibility      TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'followers', 'private')),
    shared_moment_id INTEGER REFERENCES moments (id) ON DELETE SET NULL,
    likes_count     INTEGER NOT NULL DEFAULT 0 CHECK (likes_count >= 0),
    comments_count  INTEGER NOT NULL DEFAULT 0 CHECK (comments_count >= 0),
    shares_count    INTEGER NOT NULL DEFAULT 0 CHECK (shares_count >= 0),
    is_edited       INTEGER NOT NULL DEFAULT FALSE,
    deleted_at      TEXT,
    hidden_at       TEXT,
    -- Visible unless deleted or hidden by moderation.
    is_active       INTEGER GENERATED ALWAYS AS (deleted_at IS NULL AND hidden_at IS NULL) STORED,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX moments_user_feed ON moments (user_id, id DESC) WHERE is_active;
CREATE INDEX moments_public_feed ON moments (id DESC) WHERE is_active AND visibility = 'public';

CREATE TABLE moment_media (
    moment_id INTEGER NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    media_id  INTEGER NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    PRIMARY KEY (moment_id, media_id)
);
CREATE INDEX moment_media_media ON moment_media (media_id);

CREATE TABLE moment_likes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    moment_id  INTEGER NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (moment_id, user_id)
);
CREATE INDEX moment_likes_user ON moment_likes (user_id, moment_id);

CREATE TABLE moment_comments (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    moment_id         INTEGER NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_comment_id INTEGER REFERENCES moment_comments (id) ON DELETE CASCADE,
    content           TEXT NOT NULL,
    likes_count       INTEGER NOT NULL DEFAULT 0 CHECK (likes_count >= 0),
    deleted_at        TEXT,
    hidden_at         TEXT,
    is_active         INTEGER GENERATED ALWAYS AS (deleted_at IS NULL AND hidden_at IS NULL) STORED,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX moment_comments_top ON moment_comments (moment_id, id) WHERE parent_comment_id IS NULL;
CREATE INDEX moment_comments_replies ON moment_comments (parent_comment_id, id);

CREATE TABLE comment_likes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    comment_id INTEGER NOT NULL REFERENCES moment_comments (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (comment_id, user_id)
);

CREATE TABLE follows (
    follower_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    following_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (follower_id, following_id),
    CHECK (follower_id <> following_id)
);
CREATE INDEX follows_following ON follows (following_id, follower_id);

CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

CREATE TABLE chat_rooms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL DEFAULT '',
    room_type       TEXT NOT NULL DEFAULT 'private' CHECK (room_type IN ('private', 'group', 'voice_room')),
    -- "lower_id:higher_id" for private rooms, so a pair has at most one.
    private_key     TEXT UNIQUE,
    created_by      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_active       INTEGER NOT NULL DEFAULT TRUE,
    last_seq        INTEGER NOT NULL DEFAULT 0,
    last_message_at TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE chat_participants (
    room_id       INTEGER NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    -- Read watermark: everything up to this seq has been read by the user.
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    joined_at     TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_participants_user ON chat_participants (user_id, room_id);

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id       INTEGER NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    sender_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    client_msg_id TEXT,
    message_type  TEXT NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'image', 'video', 'audio', 'file', 'system')),
    -- The body: UTF-8 text when body_key_id is NULL, otherwise a ciphertext
    -- sealed under that key.
    body          BLOB NOT NULL,
    body_key_id   TEXT,
    media_id      INTEGER REFERENCES media (id) ON DELETE SET NULL,
    reply_to_id   INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    is_edited     INTEGER NOT NULL DEFAULT FALSE,
    is_deleted    INTEGER NOT NULL DEFAULT FALSE,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_reply_to ON messages (reply_to_id) WHERE reply_to_id IS NOT NULL;

CREATE TABLE reports (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reported_user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    reported_moment_id  INTEGER REFERENCES moments (id) ON DELETE CASCADE,
    reported_comment_id INTEGER REFERENCES moment_comments (id) ON DELETE CASCADE,
    reported_message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
    -- The one target as (kind, id), for the one-pending-report rule.
    target_kind         TEXT NOT NULL CHECK (target_kind IN ('user', 'moment', 'comment', 'message')),
    target_id           INTEGER NOT NULL,
    report_type         TEXT NOT NULL CHECK (report_type IN ('spam', 'harassment', 'inappropriate', 'fake', 'other')),
    description         TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'reviewed', 'resolved', 'dismissed')),
    admin_notes         TEXT NOT NULL DEFAULT '',
    reviewed_by         INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE UNIQUE INDEX reports_one_pending ON reports (reporter_id, target_kind, target_id) WHERE status = 'pending';
CREATE INDEX reports_queue ON reports (status, id);
CREATE INDEX reports_target ON reports (target_kind, target_id);

-- Every moderator action, for accountability.
CREATE TABLE moderation_actions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    moderator_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    report_id    INTEGER REFERENCES reports (id) ON DELETE SET NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    INTEGER NOT NULL,
    notes        TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL
);

CREATE TABLE voice_rooms (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    topic                TEXT NOT NULL,
    difficulty_level     TEXT NOT NULL CHECK (difficulty_level IN ('beginner', 'intermediate', 'advanced')),
    max_participants     INTEGER NOT NULL DEFAULT 10 CHECK (max_participants > 0),
    max_speakers         INTEGER NOT NULL DEFAULT 10 CHECK (max_speakers > 0),
    current_participants INTEGER NOT NULL DEFAULT 0 CHECK (current_participants >= 0),
    current_speakers     INTEGER NOT NULL DEFAULT 0 CHECK (current_speakers >= 0),
    is_active            INTEGER NOT NULL DEFAULT TRUE,
    created_by           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    media_node           TEXT,
    empty_since          TEXT,
    closed_at            TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX voice_rooms_browse ON voice_rooms (topic, difficulty_level, id) WHERE is_active;

CREATE TABLE voice_room_participants (
    room_id     INTEGER NOT NULL REFERENCES voice_rooms (id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'listener' CHECK (role IN ('host', 'speaker', 'listener')),
    is_muted    INTEGER NOT NULL DEFAULT FALSE,
    is_speaking INTEGER NOT NULL DEFAULT FALSE,
    hand_raised INTEGER NOT NULL DEFAULT FALSE,
    joined_at   TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX voice_room_participants_user ON voice_room_participants (user_id);

CREATE TABLE call_sessions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    caller_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    receiver_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    call_type   TEXT NOT NULL CHECK (call_type IN ('voice', 'video')),
    status      TEXT NOT NULL DEFAULT 'initiated' CHECK (status IN ('initiated', 'ringing', 'active', 'ended', 'missed', 'declined', 'busy', 'failed')),
    is_match    INTEGER NOT NULL DEFAULT FALSE,
    started_at  TEXT NOT NULL,
    ringing_at  TEXT,
    accepted_at TEXT,
    ended_at    TEXT,
    duration    INTEGER NOT NULL DEFAULT 0,
    end_reason  TEXT
);
CREATE INDEX call_sessions_caller ON call_sessions (caller_id, id DESC);
CREATE INDEX call_sessions_receiver ON call_sessions (receiver_id, id DESC);

CREATE TABLE call_quality (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id      INTEGER NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rtt_ms       REAL,
    jitter_ms    REAL,
    packet_loss  REAL,
    audio_level  REAL,
    codec        TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX call_quality_call ON call_quality (call_id);

CREATE TABLE notifications (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notification_type TEXT NOT NULL CHECK (notification_type IN ('like', 'comment', 'follow', 'message', 'call', 'lesson_complete', 'achievement', 'system')),
    title             TEXT NOT NULL,
    message           TEXT NOT NULL,
    data              TEXT NOT NULL DEFAULT '{}',
    -- Notifications with the same key within the aggregation window are
    -- merged into one ("Ana and 3 others liked your moment").
    aggregation_key   TEXT,
    actor_count       INTEGER NOT NULL DEFAULT 1,
    is_read           INTEGER NOT NULL DEFAULT FALSE,
    is_sent           INTEGER NOT NULL DEFAULT FALSE,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    read_at           TEXT
);
CREATE INDEX notifications_user ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE NOT is_read;
CREATE INDEX notifications_aggregation ON notifications (user_id, aggregation_key) WHERE aggregation_key IS NOT NULL;

CREATE TABLE notification_preferences (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preferences TEXT NOT NULL DEFAULT '{}',
    updated_at  TEXT NOT NULL
);

CREATE TABLE push_tokens (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token           TEXT NOT NULL UNIQUE,
    device_type     TEXT NOT NULL CHECK (device_type IN ('ios', 'android', 'web')),
    web_endpoint    TEXT,
    web_p256dh      TEXT,
    web_auth        TEXT,
    is_active       INTEGER NOT NULL DEFAULT TRUE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX push_tokens_user ON push_tokens (user_id) WHERE is_active;

-- Push deliveries waiting to be sent; drained by the push workers.
CREATE TABLE push_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER REFERENCES notifications (id) ON DELETE CASCADE,
    push_token_id   INTEGER NOT NULL REFERENCES push_tokens (id) ON DELETE CASCADE,
    payload         TEXT NOT NULL,
    collapse_key    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_until   TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_at);
