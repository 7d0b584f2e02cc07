//! `ChatStore` in SQL: rooms, participants, messages, read watermarks.
//!
//! Sending is one transaction of three statements (four with media; on
//! PostgreSQL the same four as one statement, see `send_in_one_statement`): the
//! room's `last_seq` is incremented with `UPDATE … RETURNING`, which on
//! PostgreSQL locks the room's row until commit, so concurrent senders to
//! one room take seqs one after the other and a seq is only ever seen
//! committed (no gaps, no repeats); SQLite has one writer anyway. The same
//! statement checks that the sender is a participant of an active room and,
//! in a private room, that no block stands between the two, so the common
//! path needs no read first. The message insert is `ON CONFLICT DO NOTHING`
//! on the idempotency index: a retry rolls back (giving its seq back) and
//! returns the original. The sender's watermark moves to their own message,
//! so unread counts are `last_seq - last_read_seq`, with no count query.
//!
//! Membership changes (join, leave, removal, rename) store their system
//! message in the same transaction, so the announcement and the change are
//! never seen apart.
//!
//! Group commit (`send_messages`): the chat service queues concurrent sends
//! and stores them in batches, one transaction each, with a fixed number of
//! statements whatever the batch's size (`batch.rs` holds the shared part):
//! read the batch's room heads (on PostgreSQL locked `FOR UPDATE` in id
//! order, so batches never deadlock each other; SQLite has one writer),
//! then, seeing everything committed before, check every sender's
//! membership and blocks and look up retried keys in one query; seqs are
//! numbered in Rust from the heads, bodies sealed to them, and the heads,
//! the messages, the watermarks and attached media written with one
//! statement each. The rows go to the database as arrays for `unnest` on
//! PostgreSQL (`postgres.rs`) and as one JSON array for `json_each` on
//! SQLite (`sqlite.rs`). A message the batch cannot store fails the
//! transaction, and then each message is sent on its own, so only that one
//! fails.

/// Columns of a message as `MessageRow` reads them. Needs
/// `messages m JOIN users su ON su.id = m.sender_id`.
macro_rules! message_cols {
    () => {
        "m.id, m.room_id, m.seq, m.sender_id, su.display_name AS sender_name, su.avatar AS sender_avatar, \
         m.client_msg_id, m.message_type, m.body, m.body_key_id, m.media_id, m.reply_to_id, m.shared_moment_id, \
         m.is_edited, m.is_deleted, m.created_at, m.updated_at"
    };
}
pub(crate) use message_cols;

/// A batch's checks of one message (see "Group commit"): whether the
/// sender is a participant, whether a block stands in a private room, and
/// the original of a retried key. Needs `t(room_id, sender_id, key)`.
macro_rules! batch_checks {
    () => {
        "EXISTS (SELECT 1 FROM chat_participants s WHERE s.room_id = t.room_id AND s.user_id = t.sender_id), \
         EXISTS (SELECT 1 FROM chat_rooms r JOIN chat_participants o ON o.room_id = r.id JOIN blocks b \
           ON (b.blocker_id = o.user_id AND b.blocked_id = t.sender_id) \
           OR (b.blocker_id = t.sender_id AND b.blocked_id = o.user_id) \
           WHERE r.id = t.room_id AND r.room_type = 'private' AND o.user_id <> t.sender_id), \
         (SELECT m.id FROM messages m WHERE m.room_id = t.room_id AND m.sender_id = t.sender_id \
           AND m.client_msg_id = t.key)"
    };
}
pub(crate) use batch_checks;

/// A room with viewer `$1`'s watermark and its newest message, as `RoomRow`
/// reads it. One row per room, one query per page: the newest message is
/// found by the unique `(room_id, seq)` index.
macro_rules! room_select {
    () => {
        "SELECT r.id, r.room_type, r.name, r.created_by, r.last_seq, r.last_message_at, r.created_at, \
         r.updated_at, p.last_read_seq, \
         m.id AS lm_id, m.seq AS lm_seq, m.sender_id AS lm_sender_id, su.display_name AS lm_sender_name, \
         su.avatar AS lm_sender_avatar, m.client_msg_id AS lm_client_msg_id, m.message_type AS lm_message_type, \
         m.body AS lm_body, m.body_key_id AS lm_body_key_id, m.media_id AS lm_media_id, \
         m.reply_to_id AS lm_reply_to_id, m.shared_moment_id AS lm_shared_moment_id, \
         m.is_edited AS lm_is_edited, m.is_deleted AS lm_is_deleted, m.created_at AS lm_created_at, \
         m.updated_at AS lm_updated_at \
         FROM chat_participants p JOIN chat_rooms r ON r.id = p.room_id \
         LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq \
         LEFT JOIN users su ON su.id = m.sender_id \
         WHERE p.user_id = $1 AND r.is_active"
    };
}
pub(crate) use room_select;

macro_rules! impl_chat_store {
    ($store:ty) => {
        /// What [`insert_message`] did.
        #[allow(clippy::large_enum_variant)]
        enum Inserted {
            Stored($crate::StoredMessage),
            /// The idempotency key is taken: roll back and read the original.
            Conflict,
            /// Not a participant of an active room, or blocked.
            Refused,
        }

        /// Takes the room's next seq and stores the message, in the
        /// caller's transaction (see the module docs).
        async fn insert_message(
            conn: &mut <Db as sqlx::Database>::Connection,
            m: &$crate::NewMessage,
        ) -> $crate::Result<Inserted> {
            let seq: Option<i64> = sqlx::query_scalar(
                "UPDATE chat_rooms SET last_seq = last_seq + 1, last_message_at = $3, updated_at = $3 \
                 WHERE id = $1 AND is_active \
                 AND EXISTS (SELECT 1 FROM chat_participants s WHERE s.room_id = $1 AND s.user_id = $2) \
                 AND (room_type <> 'private' OR NOT EXISTS (SELECT 1 FROM chat_participants o JOIN blocks b \
                   ON (b.blocker_id = o.user_id AND b.blocked_id = $2) OR (b.blocker_id = $2 AND b.blocked_id = o.user_id) \
                   WHERE o.room_id = $1 AND o.user_id <> $2)) \
                 RETURNING last_seq",
            )
            .bind(m.room_id)
            .bind(m.sender.id)
            .bind(m.now)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(seq) = seq else { return Ok(Inserted::Refused) };
            let (body, body_key_id) = m.sealer.seal(m.room_id, seq, &m.body)?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO messages (room_id, sender_id, seq, client_msg_id, message_type, body, body_key_id, \
                 media_id, reply_to_id, shared_moment_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                 ON CONFLICT (room_id, sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING \
                 RETURNING id",
            )
            .bind(m.room_id)
            .bind(m.sender.id)
            .bind(seq)
            .bind(m.client_msg_id.as_deref())
            .bind(m.message_type.as_str())
            .bind(&body)
            .bind(body_key_id.as_deref())
            .bind(m.media_id)
            .bind(m.reply_to)
            .bind(m.shared_moment_id)
            .bind(m.now)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(id) = id else { return Ok(Inserted::Conflict) };
            // Sending reads everything before: the sender's watermark
            // moves to their own message.
            sqlx::query(
                "UPDATE chat_participants SET last_read_seq = $3 \
                 WHERE room_id = $1 AND user_id = $2 AND last_read_seq < $3",
            )
            .bind(m.room_id)
            .bind(m.sender.id)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
            if let Some(media) = m.media_id {
                // Attached media is kept by the upload clean-up.
                sqlx::query("UPDATE media SET attached_at = $2 WHERE id = $1 AND attached_at IS NULL")
                    .bind(media)
                    .bind(m.now)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(Inserted::Stored(m.stored(id, seq, body, body_key_id)))
        }

        /// After a participant left: an admin-less group gets its oldest
        /// member as admin, and an empty room closes.
        async fn after_departure(
            conn: &mut <Db as sqlx::Database>::Connection,
            room: palaver_core::Id,
        ) -> $crate::Result<()> {
            sqlx::query(
                "UPDATE chat_participants SET role = 'admin' WHERE room_id = $1 AND user_id = \
                 (SELECT user_id FROM chat_participants WHERE room_id = $1 ORDER BY joined_at, user_id LIMIT 1) \
                 AND NOT EXISTS (SELECT 1 FROM chat_participants WHERE room_id = $1 AND role = 'admin')",
            )
            .bind(room)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE chat_rooms SET is_active = FALSE \
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM chat_participants WHERE room_id = $1)",
            )
            .bind(room)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        impl $store {
            /// The message with this id, with its sender.
            async fn stored_message(
                &self,
                conn: impl sqlx::Executor<'_, Database = Db>,
                id: palaver_core::Id,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let row: Option<$crate::chat_model::MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::chat::message_cols!(),
                    " FROM messages m JOIN users su ON su.id = m.sender_id WHERE m.id = $1"
                ))
                .bind(id)
                .fetch_optional(conn)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            /// The original of a retried send.
            async fn original_message(
                &self,
                conn: impl sqlx::Executor<'_, Database = Db>,
                m: &$crate::NewMessage,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let row: Option<$crate::chat_model::MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::chat::message_cols!(),
                    " FROM messages m JOIN users su ON su.id = m.sender_id \
                     WHERE m.room_id = $1 AND m.sender_id = $2 AND m.client_msg_id = $3"
                ))
                .bind(m.room_id)
                .bind(m.sender.id)
                .bind(m.client_msg_id.as_deref())
                .fetch_optional(conn)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            /// Why a send was refused: blocked (a participant of an active
            /// room) or not a participant.
            async fn refusal(
                &self,
                conn: impl sqlx::Executor<'_, Database = Db>,
                m: &$crate::NewMessage,
            ) -> $crate::Result<$crate::SendResult> {
                let member: Option<bool> = sqlx::query_scalar(
                    "SELECT r.is_active FROM chat_rooms r JOIN chat_participants p \
                     ON p.room_id = r.id AND p.user_id = $2 WHERE r.id = $1",
                )
                .bind(m.room_id)
                .bind(m.sender.id)
                .fetch_optional(conn)
                .await?;
                Ok(if member == Some(true) { $crate::SendResult::Blocked } else { $crate::SendResult::NotParticipant })
            }

            /// On PostgreSQL, for plain bodies: [`insert_message`] as one statement (data-
            /// modifying CTEs, which SQLite lacks), run outside an explicit
            /// transaction, so a send is one round trip and the room's row
            /// is locked only while that statement runs and commits. A
            /// retry's key makes the insert fail on the idempotency index,
            /// which undoes the whole statement (its seq included); the
            /// original is then read.
            async fn send_in_one_statement(&self, m: &$crate::NewMessage) -> $crate::Result<$crate::SendResult> {
                let stored: Result<Option<(i64, i64)>, sqlx::Error> = sqlx::query_as(
                    "WITH room AS (UPDATE chat_rooms SET last_seq = last_seq + 1, last_message_at = $3, updated_at = $3 \
                       WHERE id = $1 AND is_active \
                       AND EXISTS (SELECT 1 FROM chat_participants s WHERE s.room_id = $1 AND s.user_id = $2) \
                       AND (room_type <> 'private' OR NOT EXISTS (SELECT 1 FROM chat_participants o JOIN blocks b \
                         ON (b.blocker_id = o.user_id AND b.blocked_id = $2) OR (b.blocker_id = $2 AND b.blocked_id = o.user_id) \
                         WHERE o.room_id = $1 AND o.user_id <> $2)) \
                       RETURNING last_seq), \
                     msg AS (INSERT INTO messages (room_id, sender_id, seq, client_msg_id, message_type, body, \
                       body_key_id, media_id, reply_to_id, shared_moment_id, created_at, updated_at) \
                       SELECT $1, $2, room.last_seq, $4, $5, $6, $7, $8, $9, $10, $3, $3 FROM room RETURNING id, seq), \
                     watermark AS (UPDATE chat_participants p SET last_read_seq = msg.seq FROM msg \
                       WHERE p.room_id = $1 AND p.user_id = $2 AND p.last_read_seq < msg.seq), \
                     attached AS (UPDATE media SET attached_at = $3 \
                       WHERE id = $8 AND attached_at IS NULL AND EXISTS (SELECT 1 FROM msg)) \
                     SELECT id, seq FROM msg",
                )
                .bind(m.room_id)
                .bind(m.sender.id)
                .bind(m.now)
                .bind(m.client_msg_id.as_deref())
                .bind(m.message_type.as_str())
                .bind(&m.body)
                .bind(None::<&str>)
                .bind(m.media_id)
                .bind(m.reply_to)
                .bind(m.shared_moment_id)
                .fetch_optional(self.writer())
                .await;
                match stored.map_err($crate::StoreError::from) {
                    Ok(Some((id, seq))) => Ok($crate::SendResult::Sent($crate::StoredMessage {
                        id,
                        room_id: m.room_id,
                        seq,
                        sender: m.sender.clone(),
                        client_msg_id: m.client_msg_id.clone(),
                        message_type: m.message_type,
                        body: m.body.clone(),
                        body_key_id: None,
                        media_id: m.media_id,
                        reply_to: m.reply_to,
                        shared_moment_id: m.shared_moment_id,
                        is_edited: false,
                        is_deleted: false,
                        created_at: m.now,
                        updated_at: m.now,
                    })),
                    Ok(None) => self.refusal(self.writer(), m).await,
                    Err($crate::StoreError::Conflict(what)) if m.client_msg_id.is_some() => {
                        match self.original_message(self.writer(), m).await? {
                            Some(original) => Ok($crate::SendResult::Duplicate(original)),
                            None => Err($crate::StoreError::Conflict(what)),
                        }
                    }
                    Err(other) => Err(other),
                }
            }

            /// Sends `m`, and in the same transaction counts a share of
            /// `moment` when given.
            async fn send(
                &self,
                m: &$crate::NewMessage,
                moment: Option<palaver_core::Id>,
            ) -> $crate::Result<$crate::SendResult> {
                // A sealed body is bound to its seq, which only the
                // transaction below knows before the insert: sealed sends
                // take the transactional path on PostgreSQL too.
                if moment.is_none()
                    && !m.sealer.is_sealing()
                    && <$store as $crate::Store>::backend(self) == $crate::Backend::Postgres
                {
                    return self.send_in_one_statement(m).await;
                }
                let mut tx = self.writer().begin().await?;
                match insert_message(&mut tx, m).await? {
                    Inserted::Stored(stored) => {
                        if let Some(moment) = moment {
                            record_share(&mut tx, moment, m.sender.id, "chat", None, Some(m.room_id), Some(stored.id), m.now)
                                .await?;
                        }
                        tx.commit().await?;
                        Ok($crate::SendResult::Sent(stored))
                    }
                    Inserted::Conflict => {
                        tx.rollback().await?;
                        match self.original_message(self.writer(), m).await? {
                            Some(original) => Ok($crate::SendResult::Duplicate(original)),
                            // The conflicting row vanished (its room was
                            // deleted meanwhile).
                            None => Ok($crate::SendResult::NotParticipant),
                        }
                    }
                    Inserted::Refused => {
                        tx.rollback().await?;
                        self.refusal(self.writer(), m).await
                    }
                }
            }

            /// Participants of `rooms`, grouped by room, in joining order.
            async fn participants_of(
                &self,
                rooms: &[palaver_core::Id],
            ) -> $crate::Result<std::collections::HashMap<palaver_core::Id, Vec<palaver_core::chat::Participant>>> {
                let mut by_room: std::collections::HashMap<palaver_core::Id, Vec<palaver_core::chat::Participant>> =
                    std::collections::HashMap::new();
                if rooms.is_empty() {
                    return Ok(by_room);
                }
                let sql = format!(
                    "SELECT p.room_id, p.user_id, u.display_name, u.avatar, p.role, p.last_read_seq, p.joined_at \
                     FROM chat_participants p JOIN users u ON u.id = p.user_id WHERE p.room_id IN ({}) \
                     ORDER BY p.room_id, p.joined_at, p.user_id",
                    $crate::sql::placeholders(1, rooms.len())
                );
                let mut query = sqlx::query_as::<_, $crate::chat_model::ParticipantRow>(sqlx::AssertSqlSafe(sql));
                for room in rooms {
                    query = query.bind(*room);
                }
                for row in query.fetch_all(self.reader()).await? {
                    let (room, participant) = row.into_participant()?;
                    by_room.entry(room).or_default().push(participant);
                }
                Ok(by_room)
            }

            /// Rooms from their rows, with participants (one more query).
            async fn complete_rooms(
                &self,
                rows: Vec<$crate::chat_model::RoomRow>,
            ) -> $crate::Result<Vec<$crate::RoomRecord>> {
                let mut rooms: Vec<$crate::RoomRecord> =
                    rows.into_iter().map(TryInto::try_into).collect::<$crate::Result<_>>()?;
                let ids: Vec<i64> = rooms.iter().map(|r| r.id).collect();
                let mut participants = self.participants_of(&ids).await?;
                for room in &mut rooms {
                    room.participants = participants.remove(&room.id).unwrap_or_default();
                }
                Ok(rooms)
            }
        }

        #[async_trait::async_trait]
        impl $crate::ChatStore for $store {
            async fn chat_candidates(
                &self,
                actor: palaver_core::UserId,
                ids: &[palaver_core::UserId],
            ) -> $crate::Result<Vec<$crate::ChatCandidate>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT u.id, u.display_name, u.avatar, u.is_suspended, \
                     EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = $1 AND b.blocked_id = u.id) AS blocked_by_actor, \
                     EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1) AS blocks_actor \
                     FROM users u WHERE u.id IN ({}) ORDER BY u.id",
                    $crate::sql::placeholders(2, ids.len())
                );
                let mut query = sqlx::query_as::<_, (i64, String, Option<String>, bool, bool, bool)>(
                    sqlx::AssertSqlSafe(sql),
                )
                .bind(actor);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query
                    .fetch_all(self.reader())
                    .await?
                    .into_iter()
                    .map(|(id, display_name, avatar, is_suspended, blocked_by_actor, blocks_actor)| {
                        $crate::ChatCandidate {
                            user: palaver_core::social::AuthorSummary { id, display_name, avatar },
                            is_suspended,
                            blocked_by_actor,
                            blocks_actor,
                        }
                    })
                    .collect())
            }

            async fn create_private_room(
                &self,
                creator: palaver_core::UserId,
                other: palaver_core::UserId,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<(palaver_core::Id, bool)> {
                if creator == other {
                    return Err($crate::StoreError::Check("a private room needs two users".into()));
                }
                let key = format!("{}:{}", creator.min(other), creator.max(other));
                let mut tx = self.writer().begin().await?;
                let created: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO chat_rooms (name, room_type, private_key, created_by, created_at, updated_at) \
                     VALUES ('', 'private', $1, $2, $3, $3) ON CONFLICT (private_key) DO NOTHING RETURNING id",
                )
                .bind(&key)
                .bind(creator)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = created else {
                    let existing: i64 = sqlx::query_scalar("SELECT id FROM chat_rooms WHERE private_key = $1")
                        .bind(&key)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok((existing, false));
                };
                sqlx::query(
                    "INSERT INTO chat_participants (room_id, user_id, role, last_read_seq, joined_at) \
                     VALUES ($1, $2, 'member', 0, $4), ($1, $3, 'member', 0, $4)",
                )
                .bind(id)
                .bind(creator)
                .bind(other)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok((id, true))
            }

            async fn create_group_room(
                &self,
                name: &str,
                members: &[palaver_core::UserId],
                announce: &$crate::NewMessage,
            ) -> $crate::Result<(palaver_core::Id, $crate::StoredMessage)> {
                let creator = announce.sender.id;
                let mut ids: Vec<i64> = members.iter().copied().filter(|id| *id != creator).collect();
                ids.sort_unstable();
                ids.dedup();
                ids.push(creator);
                let mut tx = self.writer().begin().await?;
                let room: i64 = sqlx::query_scalar(
                    "INSERT INTO chat_rooms (name, room_type, created_by, created_at, updated_at) \
                     VALUES ($1, 'group', $2, $3, $3) RETURNING id",
                )
                .bind(name)
                .bind(creator)
                .bind(announce.now)
                .fetch_one(&mut *tx)
                .await?;
                let sql = format!(
                    "INSERT INTO chat_participants (room_id, user_id, role, last_read_seq, joined_at) \
                     SELECT $1, u.id, CASE WHEN u.id = $2 THEN 'admin' ELSE 'member' END, 0, $3 \
                     FROM users u WHERE u.id IN ({})",
                    $crate::sql::placeholders(4, ids.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room).bind(creator).bind(announce.now);
                for id in &ids {
                    query = query.bind(*id);
                }
                let added = query.execute(&mut *tx).await?.rows_affected();
                if added != ids.len() as u64 {
                    return Err($crate::StoreError::NotFound);
                }
                let announce = $crate::NewMessage { room_id: room, ..announce.clone() };
                let Inserted::Stored(message) = insert_message(&mut tx, &announce).await? else {
                    return Err($crate::StoreError::Corrupt("a new group refused its first message".into()));
                };
                tx.commit().await?;
                Ok((room, message))
            }

            async fn membership(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
            ) -> $crate::Result<Option<$crate::Membership>> {
                let row: Option<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT r.room_type, p.role, p.last_read_seq, r.last_seq FROM chat_rooms r \
                     JOIN chat_participants p ON p.room_id = r.id AND p.user_id = $2 WHERE r.id = $1 AND r.is_active",
                )
                .bind(room)
                .bind(user)
                .fetch_optional(self.reader())
                .await?;
                row.map(|(room_type, role, last_read_seq, last_seq)| {
                    Ok($crate::Membership {
                        room_type: room_type.parse().map_err($crate::StoreError::Corrupt)?,
                        role: role.parse().map_err($crate::StoreError::Corrupt)?,
                        last_read_seq,
                        last_seq,
                    })
                })
                .transpose()
            }

            async fn room_for(
                &self,
                user: palaver_core::UserId,
                room: palaver_core::Id,
            ) -> $crate::Result<Option<$crate::RoomRecord>> {
                let rows: Vec<$crate::chat_model::RoomRow> =
                    sqlx::query_as(concat!($crate::sql::chat::room_select!(), " AND r.id = $2"))
                        .bind(user)
                        .bind(room)
                        .fetch_all(self.reader())
                        .await?;
                Ok(self.complete_rooms(rows).await?.pop())
            }

            async fn rooms_for(
                &self,
                user: palaver_core::UserId,
                cursor: Option<$crate::RoomCursor>,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::RoomRecord>> {
                let rows: Vec<$crate::chat_model::RoomRow> = match cursor {
                    None => {
                        sqlx::query_as(concat!(
                            $crate::sql::chat::room_select!(),
                            " ORDER BY COALESCE(r.last_message_at, r.created_at) DESC, r.id DESC LIMIT $2"
                        ))
                        .bind(user)
                        .bind(limit)
                        .fetch_all(self.reader())
                        .await?
                    }
                    Some(c) => {
                        sqlx::query_as(concat!(
                            $crate::sql::chat::room_select!(),
                            " AND (COALESCE(r.last_message_at, r.created_at) < $2 \
                             OR (COALESCE(r.last_message_at, r.created_at) = $2 AND r.id < $3)) \
                             ORDER BY COALESCE(r.last_message_at, r.created_at) DESC, r.id DESC LIMIT $4"
                        ))
                        .bind(user)
                        .bind(c.activity_at)
                        .bind(c.id)
                        .bind(limit)
                        .fetch_all(self.reader())
                        .await?
                    }
                };
                self.complete_rooms(rows).await
            }

            async fn participant_ids(&self, room: palaver_core::Id) -> $crate::Result<Vec<palaver_core::UserId>> {
                Ok(sqlx::query_scalar("SELECT user_id FROM chat_participants WHERE room_id = $1 ORDER BY user_id")
                    .bind(room)
                    .fetch_all(self.reader())
                    .await?)
            }

            async fn participant_ids_of(
                &self,
                rooms: &[palaver_core::Id],
            ) -> $crate::Result<std::collections::HashMap<palaver_core::Id, Vec<palaver_core::UserId>>> {
                let mut by_room: std::collections::HashMap<palaver_core::Id, Vec<palaver_core::UserId>> =
                    std::collections::HashMap::new();
                if rooms.is_empty() {
                    return Ok(by_room);
                }
                for (room, user) in self.participant_pairs(rooms).await? {
                    by_room.entry(room).or_default().push(user);
                }
                Ok(by_room)
            }

            async fn add_participant(
                &self,
                user: palaver_core::UserId,
                announce: &$crate::NewMessage,
                max_participants: i64,
            ) -> $crate::Result<$crate::AddResult> {
                let mut tx = self.writer().begin().await?;
                // The announcement first: it locks the room's row, so
                // concurrent additions are counted one after the other.
                let message = match insert_message(&mut tx, announce).await? {
                    Inserted::Stored(message) => message,
                    _ => return Ok($crate::AddResult::NotParticipant),
                };
                // The new participant has read up to (not including) their
                // announcement.
                let added = sqlx::query(
                    "INSERT INTO chat_participants (room_id, user_id, role, last_read_seq, joined_at) \
                     SELECT $1, $2, 'member', $3, $4 \
                     WHERE (SELECT COUNT(*) FROM chat_participants WHERE room_id = $1) < $5 \
                     ON CONFLICT (room_id, user_id) DO NOTHING",
                )
                .bind(announce.room_id)
                .bind(user)
                .bind(message.seq - 1)
                .bind(announce.now)
                .bind(max_participants)
                .execute(&mut *tx)
                .await?;
                if added.rows_affected() == 0 {
                    let present: Option<i64> = sqlx::query_scalar(
                        "SELECT user_id FROM chat_participants WHERE room_id = $1 AND user_id = $2",
                    )
                    .bind(announce.room_id)
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Ok(if present.is_some() {
                        $crate::AddResult::AlreadyParticipant
                    } else {
                        $crate::AddResult::Full
                    });
                }
                tx.commit().await?;
                Ok($crate::AddResult::Added(message))
            }

            async fn remove_participant(
                &self,
                user: palaver_core::UserId,
                announce: &$crate::NewMessage,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let mut tx = self.writer().begin().await?;
                let Inserted::Stored(message) = insert_message(&mut tx, announce).await? else {
                    return Ok(None);
                };
                let removed = sqlx::query("DELETE FROM chat_participants WHERE room_id = $1 AND user_id = $2")
                    .bind(announce.room_id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                if removed.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                after_departure(&mut tx, announce.room_id).await?;
                tx.commit().await?;
                Ok(Some(message))
            }

            async fn rename_room(
                &self,
                name: &str,
                announce: &$crate::NewMessage,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let mut tx = self.writer().begin().await?;
                let Inserted::Stored(message) = insert_message(&mut tx, announce).await? else {
                    return Ok(None);
                };
                sqlx::query("UPDATE chat_rooms SET name = $2, updated_at = $3 WHERE id = $1")
                    .bind(announce.room_id)
                    .bind(name)
                    .bind(announce.now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(message))
            }

            async fn send_message(&self, message: &$crate::NewMessage) -> $crate::Result<$crate::SendResult> {
                self.send(message, None).await
            }

            async fn send_messages(&self, batch: &[$crate::NewMessage]) -> Vec<$crate::Result<$crate::SendResult>> {
                // A key repeated within the batch: only its first message
                // is stored; the others get what the first got.
                let mut first: std::collections::HashMap<(palaver_core::Id, palaver_core::UserId, &str), usize> =
                    std::collections::HashMap::new();
                let mut repeat_of = vec![None; batch.len()];
                let mut unique = Vec::with_capacity(batch.len());
                for (i, m) in batch.iter().enumerate() {
                    if let Some(key) = m.client_msg_id.as_deref() {
                        match first.entry((m.room_id, m.sender.id, key)) {
                            std::collections::hash_map::Entry::Occupied(e) => {
                                repeat_of[i] = Some(*e.get());
                                continue;
                            }
                            std::collections::hash_map::Entry::Vacant(e) => {
                                e.insert(i);
                            }
                        }
                    }
                    unique.push(i);
                }
                let messages: Vec<&$crate::NewMessage> = unique.iter().map(|&i| &batch[i]).collect();
                let mut results: Vec<Option<$crate::Result<$crate::SendResult>>> =
                    (0..batch.len()).map(|_| None).collect();
                match self.send_batch(&messages).await {
                    Ok(done) if done.len() == messages.len() => {
                        for (&i, result) in unique.iter().zip(done) {
                            results[i] = Some(Ok(result));
                        }
                    }
                    outcome => {
                        // One message the batch cannot store (a reference
                        // deleted meanwhile, a deadlock with another node)
                        // must not fail the others: each is sent on its own.
                        if let Err(e) = outcome {
                            tracing::warn!(error = %e, size = messages.len(), "a message batch failed; sending one by one");
                        }
                        for &i in &unique {
                            results[i] = Some(self.send(&batch[i], None).await);
                        }
                    }
                }
                for (i, f) in repeat_of.iter().enumerate() {
                    let Some(f) = *f else { continue };
                    let repeated = match &results[f] {
                        Some(Ok($crate::SendResult::Sent(m) | $crate::SendResult::Duplicate(m))) => {
                            Ok($crate::SendResult::Duplicate(m.clone()))
                        }
                        Some(Ok(other)) => Ok(other.clone()),
                        // The first failed: this one tries on its own.
                        _ => self.send(&batch[i], None).await,
                    };
                    results[i] = Some(repeated);
                }
                results
                    .into_iter()
                    .map(|r| r.unwrap_or_else(|| Err($crate::StoreError::Corrupt("a batched message has no result".into()))))
                    .collect()
            }

            async fn share_moment_to_chat(
                &self,
                message: &$crate::NewMessage,
                moment: palaver_core::Id,
            ) -> $crate::Result<$crate::SendResult> {
                self.send(message, Some(moment)).await
            }

            async fn message_by_id(&self, id: palaver_core::Id) -> $crate::Result<Option<$crate::StoredMessage>> {
                self.stored_message(self.reader(), id).await
            }

            async fn messages(
                &self,
                room: palaver_core::Id,
                range: $crate::MessageRange,
            ) -> $crate::Result<Vec<$crate::StoredMessage>> {
                let before = range.before_seq.unwrap_or(i64::MAX);
                let rows: Vec<$crate::chat_model::MessageRow> = match range.after_seq {
                    Some(after) => {
                        sqlx::query_as(concat!(
                            "SELECT ",
                            $crate::sql::chat::message_cols!(),
                            " FROM messages m JOIN users su ON su.id = m.sender_id \
                             WHERE m.room_id = $1 AND m.seq > $2 AND m.seq < $3 ORDER BY m.seq LIMIT $4"
                        ))
                        .bind(room)
                        .bind(after)
                        .bind(before)
                        .bind(range.limit)
                        .fetch_all(self.reader())
                        .await?
                    }
                    None => {
                        let mut rows: Vec<$crate::chat_model::MessageRow> = sqlx::query_as(concat!(
                            "SELECT ",
                            $crate::sql::chat::message_cols!(),
                            " FROM messages m JOIN users su ON su.id = m.sender_id \
                             WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
                        ))
                        .bind(room)
                        .bind(before)
                        .bind(range.limit)
                        .fetch_all(self.reader())
                        .await?;
                        rows.reverse();
                        rows
                    }
                };
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn thread(
                &self,
                message: palaver_core::Id,
                after_seq: i64,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::StoredMessage>> {
                let rows: Vec<$crate::chat_model::MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::chat::message_cols!(),
                    " FROM messages m JOIN users su ON su.id = m.sender_id \
                     WHERE m.reply_to_id = $1 AND m.seq > $2 ORDER BY m.seq LIMIT $3"
                ))
                .bind(message)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn edit_message(
                &self,
                id: palaver_core::Id,
                sender: palaver_core::UserId,
                body: &[u8],
                body_key_id: Option<&str>,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let mut tx = self.writer().begin().await?;
                let edited = sqlx::query(
                    "UPDATE messages SET body = $3, body_key_id = $4, is_edited = TRUE, updated_at = $5 \
                     WHERE id = $1 AND sender_id = $2 AND NOT is_deleted AND message_type <> 'system'",
                )
                .bind(id)
                .bind(sender)
                .bind(body)
                .bind(body_key_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if edited.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let message = self.stored_message(&mut *tx, id).await?;
                tx.commit().await?;
                Ok(message)
            }

            async fn delete_message(
                &self,
                id: palaver_core::Id,
                sender: palaver_core::UserId,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Option<$crate::StoredMessage>> {
                let mut tx = self.writer().begin().await?;
                let deleted = sqlx::query(
                    "UPDATE messages SET body = $3, body_key_id = NULL, media_id = NULL, shared_moment_id = NULL, \
                     is_deleted = TRUE, updated_at = $4 \
                     WHERE id = $1 AND sender_id = $2 AND NOT is_deleted AND message_type <> 'system'",
                )
                .bind(id)
                .bind(sender)
                .bind(Vec::<u8>::new())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if deleted.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                // A moment shared by this message is no longer shared by
                // it, as a deleted repost is no longer a share.
                let shared: Option<i64> =
                    sqlx::query_scalar("DELETE FROM moment_shares WHERE message_id = $1 RETURNING moment_id")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(moment) = shared {
                    sqlx::query("UPDATE moments SET shares_count = shares_count - 1 WHERE id = $1")
                        .bind(moment)
                        .execute(&mut *tx)
                        .await?;
                }
                let message = self.stored_message(&mut *tx, id).await?;
                tx.commit().await?;
                Ok(message)
            }

            async fn mark_read(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
                seq: i64,
            ) -> $crate::Result<Option<i64>> {
                Ok(sqlx::query_scalar(
                    "UPDATE chat_participants SET last_read_seq = CASE \
                       WHEN $3 < (SELECT r.last_seq FROM chat_rooms r WHERE r.id = $1) THEN $3 \
                       ELSE (SELECT r.last_seq FROM chat_rooms r WHERE r.id = $1) END \
                     WHERE room_id = $1 AND user_id = $2 AND last_read_seq < $3 \
                     AND last_read_seq < (SELECT r.last_seq FROM chat_rooms r WHERE r.id = $1) \
                     RETURNING last_read_seq",
                )
                .bind(room)
                .bind(user)
                .bind(seq)
                .fetch_optional(self.writer())
                .await?)
            }

            async fn read_by(
                &self,
                message: palaver_core::Id,
            ) -> $crate::Result<Vec<palaver_core::social::AuthorSummary>> {
                let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                    "SELECT u.id, u.display_name, u.avatar FROM messages m \
                     JOIN chat_participants p ON p.room_id = m.room_id \
                     JOIN users u ON u.id = p.user_id \
                     WHERE m.id = $1 AND p.user_id <> m.sender_id AND p.last_read_seq >= m.seq ORDER BY u.id",
                )
                .bind(message)
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, display_name, avatar)| palaver_core::social::AuthorSummary { id, display_name, avatar })
                    .collect())
            }

            async fn mark_room_notifications_read(
                &self,
                user: palaver_core::UserId,
                room: palaver_core::Id,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Vec<palaver_core::Id>> {
                Ok(sqlx::query_scalar(
                    "UPDATE notifications SET is_read = TRUE, aggregating = FALSE, read_at = $3 \
                     WHERE user_id = $1 AND aggregation_key = $2 AND NOT is_read \
                     AND EXISTS (SELECT 1 FROM chat_participants p JOIN chat_rooms r ON r.id = p.room_id \
                       WHERE p.room_id = $4 AND p.user_id = $1 AND p.last_read_seq >= r.last_seq) \
                     RETURNING id",
                )
                .bind(user)
                .bind(palaver_core::chat::message_notification_key(room))
                .bind(now)
                .bind(room)
                .fetch_all(self.writer())
                .await?)
            }

            async fn bodies_to_reseal(
                &self,
                active_key: &str,
                after: palaver_core::Id,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::SealedBody>> {
                Ok(sqlx::query_as(
                    "SELECT id, room_id, seq, body, body_key_id FROM messages \
                     WHERE id > $1 AND NOT is_deleted AND (body_key_id IS NULL OR body_key_id <> $2) \
                     ORDER BY id LIMIT $3",
                )
                .bind(after)
                .bind(active_key)
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn reseal_body(
                &self,
                id: palaver_core::Id,
                old_body: &[u8],
                body: &[u8],
                key_id: &str,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE messages SET body = $3, body_key_id = $4 WHERE id = $1 AND body = $2 AND NOT is_deleted",
                )
                .bind(id)
                .bind(old_body)
                .bind(body)
                .bind(key_id)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn message_key_counts(&self) -> $crate::Result<Vec<(Option<String>, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT body_key_id, COUNT(*) FROM messages WHERE NOT is_deleted \
                     GROUP BY body_key_id ORDER BY body_key_id",
                )
                .fetch_all(self.reader())
                .await?)
            }
        }
    };
}
pub(crate) use impl_chat_store;
