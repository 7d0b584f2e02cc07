-- Palaver's data model on PostgreSQL (the SQLite twin lives in ../sqlite).
-- Timestamps are written by the application (microsecond precision), never by
-- DEFAULT now(), so both backends store identical values.

CREATE TABLE users (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,
    password_hash      TEXT NOT NULL,
    display_name       TEXT NOT NULL,
    avatar             TEXT,
    bio                TEXT NOT NULL DEFAULT '',
    native_languages   JSONB NOT NULL DEFAULT '[]',
    learning_languages JSONB NOT NULL DEFAULT '[]',
    role               TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'teacher', 'moderator', 'admin')),
    is_suspended       BOOLEAN NOT NULL DEFAULT FALSE,
    followers_count    BIGINT NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count    BIGINT NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    moments_count      BIGINT NOT NULL DEFAULT 0 CHECK (moments_count >= 0),
    last_seen_at       TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- A login session: one family of rotating refresh tokens. Revoking the family
-- (logout, or reuse of a spent token) ends every token in it, and access
-- tokens carrying its id stop being accepted.
CREATE TABLE auth_sessions (
    id           TEXT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    revoke_reason TEXT
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

-- Refresh tokens are stored as SHA-256 hashes; the token itself is only ever
-- in the client's hands.
CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Uploaded files. Bytes live in object storage under storage_key (never the
-- client's filename), encrypted under key_id.
CREATE TABLE media (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind              TEXT NOT NULL CHECK (kind IN ('image', 'audio', 'video', 'file')),
    content_type      TEXT NOT NULL,
    size_bytes        BIGINT NOT NULL,
    width             INTEGER,
    height            INTEGER,
    duration_ms       BIGINT,
    storage_key       TEXT NOT NULL UNIQUE,
    thumbnail_key     TEXT,
    original_filename TEXT,
    sha256            TEXT,
    key_id            TEXT,
    attached_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX media_owner ON media (owner_id, id);
CREATE INDEX media_unattached ON media (created_at) WHERE attached_at IS NULL;

CREATE TABLE moments (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content         TEXT NOT NULL,
    visibility      TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'followers', 'private')),
    shared_moment_id BIGINT REFERENCES moments (id) ON DELETE SET NULL,
    likes_count     BIGINT NOT NULL DEFAULT 0 CHECK (likes_count >= 0),
    comments_count  BIGINT NOT NULL DEFAULT 0 CHECK (comments_count >= 0),
    shares_count    BIGINT NOT NULL DEFAULT 0 CHECK (shares_count >= 0),
    is_edited       BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at      TIMESTAMPTZ,
    hidden_at       TIMESTAMPTZ,
    -- Visible unless deleted or hidden by moderation.
    is_active       BOOLEAN GENERATED ALWAYS AS (deleted_at IS NULL AND hidden_at IS NULL) STORED,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX moments_user_feed ON moments (user_id, id DESC) WHERE is_active;
CREATE INDEX moments_public_feed ON moments (id DESC) WHERE is_active AND visibility = 'public';

CREATE TABLE moment_media (
    moment_id BIGINT NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    media_id  BIGINT NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    PRIMARY KEY (moment_id, media_id)
);
CREATE INDEX moment_media_media ON moment_media (media_id);

CREATE TABLE moment_likes (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    moment_id  BIGINT NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (moment_id, user_id)
);
CREATE INDEX moment_likes_user ON moment_likes (user_id, moment_id);

CREATE TABLE moment_comments (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    moment_id         BIGINT NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    user_id           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_comment_id BIGINT REFERENCES moment_comments (id) ON DELETE CASCADE,
    content           TEXT NOT NULL,
    likes_count       BIGINT NOT NULL DEFAULT 0 CHECK (likes_count >= 0),
    deleted_at        TIMESTAMPTZ,
    hidden_at         TIMESTAMPTZ,
    is_active         BOOLEAN GENERATED ALWAYS AS (deleted_at IS NULL AND hidden_at IS NULL) STORED,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX moment_comments_top ON moment_comments (moment_id, id) WHERE parent_comment_id IS NULL;
CREATE INDEX moment_comments_replies ON moment_comments (parent_comment_id, id);

CREATE TABLE comment_likes (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    comment_id BIGINT NOT NULL REFERENCES moment_comments (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (comment_id, user_id)
);

CREATE TABLE follows (
    follower_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    following_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (follower_id, following_id),
    CHECK (follower_id <> following_id)
);
CREATE INDEX follows_following ON follows (following_id, follower_id);

CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id),
    CHECK (blocker_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

CREATE TABLE chat_rooms (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT NOT NULL DEFAULT '',
    room_type       TEXT NOT NULL DEFAULT 'private' CHECK (room_type IN ('private', 'group', 'voice_room')),
    -- "lower_id:higher_id" for private rooms, so a pair has at most one.
    private_key     TEXT UNIQUE,
    created_by      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    last_seq        BIGINT NOT NULL DEFAULT 0,
    last_message_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE chat_participants (
    room_id       BIGINT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    -- Read watermark: everything up to this seq has been read by the user.
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    joined_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX chat_participants_user ON chat_participants (user_id, room_id);

CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id       BIGINT NOT NULL REFERENCES chat_rooms (id) ON DELETE CASCADE,
    sender_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    client_msg_id TEXT,
    message_type  TEXT NOT NULL DEFAULT 'text' CHECK (message_type IN ('text', 'image', 'video', 'audio', 'file', 'system')),
    -- The body: UTF-8 text when body_key_id is NULL, otherwise a ciphertext
    -- sealed under that key.
    body          BYTEA NOT NULL,
    body_key_id   TEXT,
    media_id      BIGINT REFERENCES media (id) ON DELETE SET NULL,
    reply_to_id   BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    is_edited     BOOLEAN NOT NULL DEFAULT FALSE,
    is_deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_reply_to ON messages (reply_to_id) WHERE reply_to_id IS NOT NULL;

CREATE TABLE reports (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reporter_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reported_user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    reported_moment_id  BIGINT REFERENCES moments (id) ON DELETE CASCADE,
    reported_comment_id BIGINT REFERENCES moment_comments (id) ON DELETE CASCADE,
    reported_message_id BIGINT REFERENCES messages (id) ON DELETE CASCADE,
    -- The one target as (kind, id), for the one-pending-report rule.
    target_kind         TEXT NOT NULL CHECK (target_kind IN ('user', 'moment', 'comment', 'message')),
    target_id           BIGINT NOT NULL,
    report_type         TEXT NOT NULL CHECK (report_type IN ('spam', 'harassment', 'inappropriate', 'fake', 'other')),
    description         TEXT NOT NULL DEFAULT '',
    status              TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'reviewed', 'resolved', 'dismissed')),
    admin_notes         TEXT NOT NULL DEFAULT '',
    reviewed_by         BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX reports_one_pending ON reports (reporter_id, target_kind, target_id) WHERE status = 'pending';
CREATE INDEX reports_queue ON reports (status, id);
CREATE INDEX reports_target ON reports (target_kind, target_id);

-- Every moderator action, for accountability.
CREATE TABLE moderation_actions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    moderator_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    report_id    BIGINT REFERENCES reports (id) ON DELETE SET NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    BIGINT NOT NULL,
    notes        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE voice_rooms (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    topic                TEXT NOT NULL,
    difficulty_level     TEXT NOT NULL CHECK (difficulty_level IN ('beginner', 'intermediate', 'advanced')),
    max_participants     BIGINT NOT NULL DEFAULT 10 CHECK (max_participants > 0),
    max_speakers         BIGINT NOT NULL DEFAULT 10 CHECK (max_speakers > 0),
    current_participants BIGINT NOT NULL DEFAULT 0 CHECK (current_participants >= 0),
    current_speakers     BIGINT NOT NULL DEFAULT 0 CHECK (current_speakers >= 0),
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_by           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    media_node           TEXT,
    empty_since          TIMESTAMPTZ,
    closed_at            TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX voice_rooms_browse ON voice_rooms (topic, difficulty_level, id) WHERE is_active;

CREATE TABLE voice_room_participants (
    room_id     BIGINT NOT NULL REFERENCES voice_rooms (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT 'listener' CHECK (role IN ('host', 'speaker', 'listener')),
    is_muted    BOOLEAN NOT NULL DEFAULT FALSE,
    is_speaking BOOLEAN NOT NULL DEFAULT FALSE,
    hand_raised BOOLEAN NOT NULL DEFAULT FALSE,
    joined_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX voice_room_participants_user ON voice_room_participants (user_id);

CREATE TABLE call_sessions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    caller_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    receiver_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    call_type   TEXT NOT NULL CHECK (call_type IN ('voice', 'video')),
    status      TEXT NOT NULL DEFAULT 'initiated' CHECK (status IN ('initiated', 'ringing', 'active', 'ended', 'missed', 'declined', 'busy', 'failed')),
    is_match    BOOLEAN NOT NULL DEFAULT FALSE,
    started_at  TIMESTAMPTZ NOT NULL,
    ringing_at  TIMESTAMPTZ,
    accepted_at TIMESTAMPTZ,
    ended_at    TIMESTAMPTZ,
    duration    BIGINT NOT NULL DEFAULT 0,
    end_reason  TEXT
);
CREATE INDEX call_sessions_caller ON call_sessions (caller_id, id DESC);
CREATE INDEX call_sessions_receiver ON call_sessions (receiver_id, id DESC);

CREATE TABLE call_quality (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id      BIGINT NOT NULL REFERENCES call_sessions (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rtt_ms       DOUBLE PRECISION,
    jitter_ms    DOUBLE PRECISION,
    packet_loss  DOUBLE PRECISION,
    audio_level  DOUBLE PRECISION,
    codec        TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX call_quality_call ON call_quality (call_id);

CREATE TABLE notifications (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    notification_type TEXT NOT NULL CHECK (notification_type IN ('like', 'comment', 'follow', 'message', 'call', 'lesson_complete', 'achievement', 'system')),
    title             TEXT NOT NULL,
    message           TEXT NOT NULL,
    data              JSONB NOT NULL DEFAULT '{}',
    -- Notifications with the same key within the aggregation window are
    -- merged into one ("Ana and 3 others liked your moment").
    aggregation_key   TEXT,
    actor_count       BIGINT NOT NULL DEFAULT 1,
    is_read           BOOLEAN NOT NULL DEFAULT FALSE,
    is_sent           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    read_at           TIMESTAMPTZ
);
CREATE INDEX notifications_user ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE NOT is_read;
CREATE INDEX notifications_aggregation ON notifications (user_id, aggregation_key) WHERE aggregation_key IS NOT NULL;

CREATE TABLE notification_preferences (
    user_id     BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preferences JSONB NOT NULL DEFAULT '{}',
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE push_tokens (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token           TEXT NOT NULL UNIQUE,
    device_type     TEXT NOT NULL CHECK (device_type IN ('ios', 'android', 'web')),
    web_endpoint    TEXT,
    web_p256dh      TEXT,
    web_auth        TEXT,
    is_active       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_tokens_user ON push_tokens (user_id) WHERE is_active;

-- Push deliveries waiting to be sent; drained by the push workers.
CREATE TABLE push_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id BIGINT REFERENCES notifications (id) ON DELETE CASCADE,
    push_token_id   BIGINT NOT NULL REFERENCES push_tokens (id) ON DELETE CASCADE,
    payload         JSONB NOT NULL,
    collapse_key    TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    claimed_until   TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX push_outbox_due ON push_outbox (next_attempt_at);
