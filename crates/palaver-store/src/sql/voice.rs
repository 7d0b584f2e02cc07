//! `VoiceStore` in SQL: voice rooms and their participants.
//!
//! `current_participants` and `current_speakers` change in the transaction
//! that inserts, deletes or re-roles the participant row, by conditional
//! `UPDATE`s on the room row: the condition (`current_participants <
//! max_participants`, `current_speakers < max_speakers`) and the increment
//! are one statement, so concurrent joins cannot overshoot. On PostgreSQL the
//! first `UPDATE` locks the room row until commit, so the rest of the
//! transaction sees a stable room; on SQLite write transactions run one at a
//! time.

macro_rules! impl_voice_store {
    ($store:ty) => {
        /// Columns of `voice_rooms` as `model::VoiceRoomRow` reads them.
        const VOICE_ROOM_COLS: &str = "id, name, description, topic, difficulty_level, max_participants, \
             max_speakers, current_participants, current_speakers, is_active, created_by, media_node, \
             media_addr, created_at, closed_at";

        /// Columns of a participant with its user, as `model::VoiceParticipantRow` reads them.
        /// Needs `voice_room_participants p JOIN users u ON u.id = p.user_id`.
        const VOICE_PARTICIPANT_COLS: &str = "p.room_id, p.user_id, u.display_name, u.avatar, p.role, \
             p.is_muted, p.is_speaking, p.hand_raised, p.joined_at";

        /// Deletes a participant row and uncounts it, in the caller's
        /// transaction. Returns the role it had.
        async fn remove_voice_participant(
            conn: &mut <Db as sqlx::Database>::Connection,
            room: palaver_core::Id,
            user: palaver_core::UserId,
            now: palaver_core::time::Timestamp,
            stale_before: Option<palaver_core::time::Timestamp>,
        ) -> $crate::Result<Option<String>> {
            let role: Option<String> = match stale_before {
                None => sqlx::query_scalar(
                    "DELETE FROM voice_room_participants WHERE room_id = $1 AND user_id = $2 RETURNING role",
                )
                .bind(room)
                .bind(user)
                .fetch_optional(&mut *conn)
                .await?,
                Some(cutoff) => sqlx::query_scalar(
                    "DELETE FROM voice_room_participants WHERE room_id = $1 AND user_id = $2 \
                     AND last_heartbeat_at < $3 RETURNING role",
                )
                .bind(room)
                .bind(user)
                .bind(cutoff)
                .fetch_optional(&mut *conn)
                .await?,
            };
            let Some(role) = role else { return Ok(None) };
            let speaks = if role == "listener" { 0_i64 } else { 1_i64 };
            sqlx::query(
                "UPDATE voice_rooms SET current_participants = current_participants - 1, \
                 current_speakers = current_speakers - $2, \
                 empty_since = CASE WHEN current_participants = 1 THEN $3 ELSE empty_since END, \
                 updated_at = $3 WHERE id = $1",
            )
            .bind(room)
            .bind(speaks)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Some(role))
        }

        impl $store {
            /// Removes each `(room, user)` row (if still there) and uncounts
            /// it, in one transaction.
            async fn remove_voice_pairs(
                &self,
                pairs: Vec<(palaver_core::Id, palaver_core::UserId)>,
                now: palaver_core::time::Timestamp,
                stale_before: Option<palaver_core::time::Timestamp>,
            ) -> $crate::Result<Vec<$crate::RemovedParticipant>> {
                if pairs.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.writer().begin().await?;
                let mut removed = Vec::new();
                for (room, user) in pairs {
                    if let Some(role) = remove_voice_participant(&mut *tx, room, user, now, stale_before).await? {
                        removed.push($crate::RemovedParticipant {
                            room_id: room,
                            user_id: user,
                            role: role.parse().map_err($crate::StoreError::Corrupt)?,
                        });
                    }
                }
                tx.commit().await?;
                Ok(removed)
            }
        }

        #[async_trait::async_trait]
        impl $crate::VoiceStore for $store {
            async fn create_voice_room(
                &self,
                creator: palaver_core::UserId,
                room: &palaver_core::voice::NewVoiceRoom,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::voice::VoiceRoom> {
                let sql = format!(
                    "INSERT INTO voice_rooms (name, description, topic, difficulty_level, max_participants, \
                     max_speakers, created_by, empty_since, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8) RETURNING {VOICE_ROOM_COLS}"
                );
                let row: $crate::model::VoiceRoomRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(&room.name)
                    .bind(&room.description)
                    .bind(&room.topic)
                    .bind(room.difficulty_level.as_str())
                    .bind(room.max_participants)
                    .bind(room.max_speakers)
                    .bind(creator)
                    .bind(now)
                    .fetch_one(self.writer())
                    .await?;
                row.try_into()
            }

            async fn voice_room(
                &self,
                id: palaver_core::Id,
            ) -> $crate::Result<Option<palaver_core::voice::VoiceRoom>> {
                let sql = format!("SELECT {VOICE_ROOM_COLS} FROM voice_rooms WHERE id = $1");
                let row: Option<$crate::model::VoiceRoomRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.reader()).await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_voice_rooms(
                &self,
                topic: Option<&str>,
                level: Option<palaver_core::user::Level>,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<palaver_core::voice::VoiceRoom>> {
                let sql = format!(
                    "SELECT {VOICE_ROOM_COLS} FROM voice_rooms WHERE is_active \
                     AND ($1 IS NULL OR topic = $1) AND ($2 IS NULL OR difficulty_level = $2) \
                     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
                );
                let rows: Vec<$crate::model::VoiceRoomRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(topic)
                    .bind(level.map(|l| l.as_str()))
                    .bind(page.cursor)
                    .bind(page.limit)
                    .fetch_all(self.reader())
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn set_voice_media(
                &self,
                room: palaver_core::Id,
                node: &str,
                media_addr: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE voice_rooms SET media_node = $2, media_addr = $3, updated_at = $4 \
                     WHERE id = $1 AND is_active",
                )
                .bind(room)
                .bind(node)
                .bind(media_addr)
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn close_voice_room(
                &self,
                id: palaver_core::Id,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Option<Vec<palaver_core::UserId>>> {
                let mut tx = self.writer().begin().await?;
                let closed = sqlx::query(
                    "UPDATE voice_rooms SET is_active = FALSE, closed_at = $2, media_node = NULL, media_addr = NULL, \
                     current_participants = 0, current_speakers = 0, empty_since = $2, updated_at = $2 \
                     WHERE id = $1 AND is_active",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if closed.rows_affected() == 0 {
                    return Ok(None);
                }
                let users: Vec<i64> =
                    sqlx::query_scalar("DELETE FROM voice_room_participants WHERE room_id = $1 RETURNING user_id")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(Some(users))
            }

            async fn join_voice_room(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
                node: &str,
                media_addr: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::VoiceJoin> {
                let mut tx = self.writer().begin().await?;
                let existing: Option<String> = sqlx::query_scalar(
                    "UPDATE voice_room_participants SET last_heartbeat_at = $3 \
                     WHERE room_id = $1 AND user_id = $2 RETURNING role",
                )
                .bind(room)
                .bind(user)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(role) = existing {
                    tx.commit().await?;
                    return Ok($crate::VoiceJoin::Already(role.parse().map_err($crate::StoreError::Corrupt)?));
                }
                // The seat: counted and checked in one statement. An empty
                // room's media moves to the joining node (its old node may be
                // gone).
                let seat: Option<i64> = sqlx::query_scalar(
                    "UPDATE voice_rooms SET current_participants = current_participants + 1, \
                     media_node = CASE WHEN current_participants = 0 OR media_node IS NULL THEN $3 \
                     ELSE media_node END, \
                     media_addr = CASE WHEN current_participants = 0 OR media_node IS NULL THEN $5 \
                     ELSE media_addr END, empty_since = NULL, updated_at = $4 \
                     WHERE id = $1 AND is_active AND current_participants < max_participants \
                     RETURNING created_by",
                )
                .bind(room)
                .bind(user)
                .bind(node)
                .bind(now)
                .bind(media_addr)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(creator) = seat else {
                    let active: Option<bool> = sqlx::query_scalar("SELECT is_active FROM voice_rooms WHERE id = $1")
                        .bind(room)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Ok(match active {
                        Some(true) => $crate::VoiceJoin::Full,
                        _ => $crate::VoiceJoin::Closed,
                    });
                };
                // A speaker seat if one is free; the creator always gets the
                // host's seat.
                let speaks = sqlx::query(
                    "UPDATE voice_rooms SET current_speakers = current_speakers + 1 \
                     WHERE id = $1 AND (created_by = $2 OR current_speakers < max_speakers)",
                )
                .bind(room)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                let role = match (creator == user, speaks) {
                    (true, _) => palaver_core::voice::VoiceRole::Host,
                    (false, true) => palaver_core::voice::VoiceRole::Speaker,
                    (false, false) => palaver_core::voice::VoiceRole::Listener,
                };
                sqlx::query(
                    "INSERT INTO voice_room_participants (room_id, user_id, role, joined_at, last_heartbeat_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(room)
                .bind(user)
                .bind(role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::VoiceJoin::Joined(role))
            }

            async fn leave_voice_room(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Option<palaver_core::voice::VoiceRole>> {
                let mut tx = self.writer().begin().await?;
                let role = remove_voice_participant(&mut *tx, room, user, now, None).await?;
                tx.commit().await?;
                role.map(|r| r.parse().map_err($crate::StoreError::Corrupt)).transpose()
            }

            async fn voice_participants(
                &self,
                room: palaver_core::Id,
            ) -> $crate::Result<Vec<palaver_core::voice::VoiceParticipant>> {
                let sql = format!(
                    "SELECT {VOICE_PARTICIPANT_COLS} FROM voice_room_participants p JOIN users u ON u.id = p.user_id \
                     WHERE p.room_id = $1 ORDER BY CASE p.role WHEN 'host' THEN 0 WHEN 'speaker' THEN 1 ELSE 2 END, \
                     p.joined_at, p.user_id"
                );
                let rows: Vec<$crate::model::VoiceParticipantRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(room).fetch_all(self.reader()).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn voice_participant(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
            ) -> $crate::Result<Option<palaver_core::voice::VoiceParticipant>> {
                let sql = format!(
                    "SELECT {VOICE_PARTICIPANT_COLS} FROM voice_room_participants p JOIN users u ON u.id = p.user_id \
                     WHERE p.room_id = $1 AND p.user_id = $2"
                );
                let row: Option<$crate::model::VoiceParticipantRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(room)
                    .bind(user)
                    .fetch_optional(self.writer())
                    .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn set_voice_role(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
                role: palaver_core::voice::VoiceRole,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::RoleChange> {
                use palaver_core::voice::VoiceRole;
                let mut tx = self.writer().begin().await?;
                let current: Option<String> =
                    sqlx::query_scalar("SELECT role FROM voice_room_participants WHERE room_id = $1 AND user_id = $2")
                        .bind(room)
                        .bind(user)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(current) = current else { return Ok($crate::RoleChange::NotParticipant) };
                let current: VoiceRole = current.parse().map_err($crate::StoreError::Corrupt)?;
                if current == role {
                    return Ok($crate::RoleChange::Unchanged);
                }
                match (current, role) {
                    (VoiceRole::Listener, VoiceRole::Speaker) => {
                        let seated = sqlx::query(
                            "UPDATE voice_rooms SET current_speakers = current_speakers + 1, updated_at = $2 \
                             WHERE id = $1 AND current_speakers < max_speakers",
                        )
                        .bind(room)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        if seated.rows_affected() == 0 {
                            return Ok($crate::RoleChange::NoSeat);
                        }
                    }
                    (VoiceRole::Speaker, VoiceRole::Listener) => {
                        sqlx::query(
                            "UPDATE voice_rooms SET current_speakers = current_speakers - 1, updated_at = $2 \
                             WHERE id = $1",
                        )
                        .bind(room)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    _ => return Ok($crate::RoleChange::NotAllowed),
                }
                // A new speaker's hand goes down; so does any mute's reason to
                // stay (a demoted speaker keeps its mute flag).
                sqlx::query(
                    "UPDATE voice_room_participants SET role = $3, hand_raised = FALSE, is_speaking = FALSE \
                     WHERE room_id = $1 AND user_id = $2",
                )
                .bind(room)
                .bind(user)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::RoleChange::Changed)
            }

            async fn set_voice_flag(
                &self,
                room: palaver_core::Id,
                user: palaver_core::UserId,
                flag: $crate::VoiceFlag,
                value: bool,
            ) -> $crate::Result<bool> {
                let sql = match flag {
                    $crate::VoiceFlag::Muted => {
                        "UPDATE voice_room_participants SET is_muted = $3 WHERE room_id = $1 AND user_id = $2"
                    }
                    $crate::VoiceFlag::HandRaised => {
                        "UPDATE voice_room_participants SET hand_raised = $3 WHERE room_id = $1 AND user_id = $2"
                    }
                    $crate::VoiceFlag::Speaking => {
                        "UPDATE voice_room_participants SET is_speaking = $3 WHERE room_id = $1 AND user_id = $2"
                    }
                };
                let done = sqlx::query(sql).bind(room).bind(user).bind(value).execute(self.writer()).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn touch_voice_participants(
                &self,
                pairs: &[(palaver_core::Id, palaver_core::UserId)],
                user: Option<palaver_core::UserId>,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<u64> {
                let mut touched = 0;
                if let Some(user) = user {
                    touched += sqlx::query(
                        "UPDATE voice_room_participants SET last_heartbeat_at = $2 WHERE user_id = $1",
                    )
                    .bind(user)
                    .bind(now)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                }
                for chunk in pairs.chunks(200) {
                    let mut conditions = Vec::with_capacity(chunk.len());
                    for i in 0..chunk.len() {
                        conditions.push(format!("(room_id = ${} AND user_id = ${})", 2 + 2 * i, 3 + 2 * i));
                    }
                    let sql = format!(
                        "UPDATE voice_room_participants SET last_heartbeat_at = $1 WHERE {}",
                        conditions.join(" OR ")
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
                    for (room, user) in chunk {
                        query = query.bind(*room).bind(*user);
                    }
                    touched += query.execute(self.writer()).await?.rows_affected();
                }
                Ok(touched)
            }

            async fn stale_voice_participants(
                &self,
                cutoff: palaver_core::time::Timestamp,
                limit: i64,
            ) -> $crate::Result<Vec<(palaver_core::Id, palaver_core::UserId)>> {
                Ok(sqlx::query_as(
                    "SELECT room_id, user_id FROM voice_room_participants WHERE last_heartbeat_at < $1 \
                     ORDER BY last_heartbeat_at LIMIT $2",
                )
                .bind(cutoff)
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn remove_voice_participants(
                &self,
                pairs: &[(palaver_core::Id, palaver_core::UserId)],
                stale_before: Option<palaver_core::time::Timestamp>,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Vec<$crate::RemovedParticipant>> {
                self.remove_voice_pairs(pairs.to_vec(), now, stale_before).await
            }

            async fn remove_voice_user(
                &self,
                user: palaver_core::UserId,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Vec<$crate::RemovedParticipant>> {
                let rooms: Vec<(i64, i64)> =
                    sqlx::query_as("SELECT room_id, user_id FROM voice_room_participants WHERE user_id = $1")
                        .bind(user)
                        .fetch_all(self.writer())
                        .await?;
                self.remove_voice_pairs(rooms, now, None).await
            }

            async fn close_idle_voice_rooms(
                &self,
                cutoff: palaver_core::time::Timestamp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Vec<palaver_core::Id>> {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "UPDATE voice_rooms SET is_active = FALSE, closed_at = $2, media_node = NULL, media_addr = NULL, updated_at = $2 \
                     WHERE is_active AND current_participants = 0 AND empty_since < $1 RETURNING id",
                )
                .bind(cutoff)
                .bind(now)
                .fetch_all(self.writer())
                .await?;
                Ok(ids)
            }

        }
    };
}
pub(crate) use impl_voice_store;
