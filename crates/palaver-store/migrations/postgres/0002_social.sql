-- Social: shares as rows (so shares_count always equals them, whether the
-- share is a repost or, later, a share into a chat) and the index the home
-- feed's "followers-only moments of people I follow" branch reads.

CREATE TABLE moment_shares (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    moment_id  BIGINT NOT NULL REFERENCES moments (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    target     TEXT NOT NULL CHECK (target IN ('feed', 'chat')),
    -- The repost (target = 'feed').
    repost_id  BIGINT UNIQUE REFERENCES moments (id) ON DELETE CASCADE,
    -- The conversation and message (target = 'chat').
    room_id    BIGINT REFERENCES chat_rooms (id) ON DELETE SET NULL,
    message_id BIGINT REFERENCES messages (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX moment_shares_moment ON moment_shares (moment_id);

CREATE INDEX moments_followers_feed ON moments (user_id, id DESC) WHERE is_active AND visibility = 'followers';
CREATE INDEX moment_comments_moment ON moment_comments (moment_id, id);
CREATE INDEX moderation_actions_report ON moderation_actions (report_id);
