//! `CallStore` in SQL.
//!
//! Placing and accepting a call lock both parties' user rows (lower id
//! first, with a no-op update, as follows and blocks do), so "is this user
//! already in a call?" and the insert or update that depends on the answer
//! happen as one step: two calls cannot both find a party free, and a party
//! is never in two active calls. Every other transition is a compare-and-set
//! on `status` (`UPDATE ... WHERE status = ...`), so of two concurrent
//! actions on one call exactly one takes effect, on both backends, whichever
//! node runs it. Timeouts are deadlines in the row; any node's sweeper moves
//! due calls with the same compare-and-set.

/// Columns of a call as `calls::CallRow` reads them. Needs `call_sessions c
/// JOIN users cu ON cu.id = c.caller_id JOIN users ru ON ru.id = c.receiver_id`.
macro_rules! call_select {
    () => {
        "SELECT c.id, c.caller_id, cu.display_name AS caller_name, cu.avatar AS caller_avatar, \
         c.receiver_id, ru.display_name AS receiver_name, ru.avatar AS receiver_avatar, c.call_type, c.status, \
         c.is_match, c.started_at, c.ringing_at, c.accepted_at, c.media_connected_at, c.ended_at, c.duration, \
         c.end_reason, c.ring_deadline, c.media_deadline, c.caller_connection, c.receiver_connection \
         FROM call_sessions c JOIN users cu ON cu.id = c.caller_id JOIN users ru ON ru.id = c.receiver_id "
    };
}
pub(crate) use call_select;

/// Live statuses, for SQL.
macro_rules! live_statuses {
    () => {
        "('initiated', 'ringing', 'active')"
    };
}
pub(crate) use live_statuses;

macro_rules! impl_call_store {
    ($store:ty) => {
        /// Locks two users' rows, lower id first, for the rest of the
        /// transaction.
        async fn call_lock_parties(
            conn: &mut <Db as sqlx::Database>::Connection,
            a: palaver_core::UserId,
            b: palaver_core::UserId,
        ) -> $crate::Result<()> {
            for id in [a.min(b), a.max(b)] {
                sqlx::query("UPDATE users SET followers_count = followers_count WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Whether `user` is in an active call (other than `except`). The
        /// redundant `status IN (...)` terms let SQLite use the partial
        /// indexes on live calls (it only uses a partial index whose
        /// condition appears in the query).
        async fn call_user_active(
            conn: &mut <Db as sqlx::Database>::Connection,
            user: palaver_core::UserId,
            except: palaver_core::Id,
        ) -> $crate::Result<bool> {
            let (busy,): (bool,) = sqlx::query_as(concat!(
                "SELECT EXISTS (SELECT 1 FROM call_sessions WHERE caller_id = $1 AND id <> $2 AND status = 'active' \
                 AND status IN ",
                $crate::sql::calls::live_statuses!(),
                ") OR EXISTS (SELECT 1 FROM call_sessions WHERE receiver_id = $1 AND id <> $2 AND status = 'active' \
                 AND status IN ",
                $crate::sql::calls::live_statuses!(),
                ")"
            ))
            .bind(user)
            .bind(except)
            .fetch_one(&mut *conn)
            .await?;
            Ok(busy)
        }

        /// Whether `user` has an outgoing call that is ringing or active.
        async fn call_user_calling(
            conn: &mut <Db as sqlx::Database>::Connection,
            user: palaver_core::UserId,
        ) -> $crate::Result<bool> {
            let (calling,): (bool,) = sqlx::query_as(concat!(
                "SELECT EXISTS (SELECT 1 FROM call_sessions WHERE caller_id = $1 AND status IN ",
                $crate::sql::calls::live_statuses!(),
                ")"
            ))
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
            Ok(calling)
        }

        /// Whether `user` takes part in any live call.
        async fn call_user_live(
            conn: &mut <Db as sqlx::Database>::Connection,
            user: palaver_core::UserId,
        ) -> $crate::Result<bool> {
            let (live,): (bool,) = sqlx::query_as(concat!(
                "SELECT EXISTS (SELECT 1 FROM call_sessions WHERE caller_id = $1 AND status IN ",
                $crate::sql::calls::live_statuses!(),
                ") OR EXISTS (SELECT 1 FROM call_sessions WHERE receiver_id = $1 AND status IN ",
                $crate::sql::calls::live_statuses!(),
                ")"
            ))
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
            Ok(live)
        }

        async fn call_read(
            conn: &mut <Db as sqlx::Database>::Connection,
            id: palaver_core::Id,
        ) -> $crate::Result<Option<$crate::CallRecord>> {
            let row: Option<$crate::calls::CallRow> =
                sqlx::query_as(concat!($crate::sql::calls::call_select!(), "WHERE c.id = $1"))
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            row.map(TryInto::try_into).transpose()
        }

        impl $store {
            async fn call_ids_to_records(
                &self,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<$crate::CallRecord>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "{}WHERE c.id IN ({}) ORDER BY c.id DESC",
                    $crate::sql::calls::call_select!(),
                    $crate::sql::placeholders(1, ids.len())
                );
                let mut query = sqlx::query_as::<_, $crate::calls::CallRow>(sqlx::AssertSqlSafe(sql));
                for id in ids {
                    query = query.bind(*id);
                }
                query.fetch_all(self.reader()).await?.into_iter().map(TryInto::try_into).collect()
            }
        }

        #[async_trait::async_trait]
        impl $crate::CallStore for $store {
            async fn create_call(&self, call: &$crate::NewCall) -> $crate::Result<$crate::NewCallOutcome> {
                let mut tx = self.writer().begin().await?;
                call_lock_parties(&mut tx, call.caller_id, call.receiver_id).await?;
                let refused = if call.is_match {
                    call_user_live(&mut tx, call.caller_id).await? || call_user_live(&mut tx, call.receiver_id).await?
                } else {
                    call_user_active(&mut tx, call.caller_id, 0).await?
                        || call_user_calling(&mut tx, call.caller_id).await?
                };
                if refused {
                    tx.rollback().await?;
                    return Ok($crate::NewCallOutcome::PartyInCall);
                }
                let (status, reason) = if call_user_active(&mut tx, call.receiver_id, 0).await? {
                    (palaver_core::call::CallStatus::Busy, Some("busy"))
                } else if call.reachable {
                    (palaver_core::call::CallStatus::Ringing, None)
                } else {
                    (palaver_core::call::CallStatus::Missed, Some("unreachable"))
                };
                let ringing = status == palaver_core::call::CallStatus::Ringing;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO call_sessions (caller_id, receiver_id, call_type, status, is_match, started_at, \
                     ringing_at, ended_at, end_reason, ring_deadline) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(call.caller_id)
                .bind(call.receiver_id)
                .bind(call.call_type.as_str())
                .bind(status.as_str())
                .bind(call.is_match)
                .bind(call.now)
                .bind(ringing.then_some(call.now))
                .bind((!ringing).then_some(call.now))
                .bind(reason)
                .bind(ringing.then_some(call.ring_deadline))
                .fetch_one(&mut *tx)
                .await?;
                let record = call_read(&mut tx, id).await?.ok_or($crate::StoreError::NotFound)?;
                tx.commit().await?;
                Ok($crate::NewCallOutcome::Created(record))
            }

            async fn call_by_id(&self, id: palaver_core::Id) -> $crate::Result<Option<$crate::CallRecord>> {
                let mut conn = self.reader().acquire().await?;
                call_read(&mut conn, id).await
            }

            async fn calls_by_ids(&self, ids: &[palaver_core::Id]) -> $crate::Result<Vec<$crate::CallRecord>> {
                self.call_ids_to_records(ids).await
            }

            async fn accept_call(
                &self,
                id: palaver_core::Id,
                receiver_connection: Option<&str>,
                media_deadline: palaver_core::time::Timestamp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::AcceptOutcome> {
                let mut tx = self.writer().begin().await?;
                let Some(call) = call_read(&mut tx, id).await? else {
                    return Err($crate::StoreError::NotFound);
                };
                call_lock_parties(&mut tx, call.caller.id, call.receiver.id).await?;
                if call_user_active(&mut tx, call.caller.id, id).await?
                    || call_user_active(&mut tx, call.receiver.id, id).await?
                {
                    tx.rollback().await?;
                    return Ok($crate::AcceptOutcome::PartyInCall);
                }
                let changed = sqlx::query(
                    "UPDATE call_sessions SET status = 'active', accepted_at = $2, receiver_connection = $3, \
                     media_deadline = $4, ring_deadline = NULL WHERE id = $1 AND status = 'ringing'",
                )
                .bind(id)
                .bind(now)
                .bind(receiver_connection)
                .bind(media_deadline)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let record = call_read(&mut tx, id).await?.ok_or($crate::StoreError::NotFound)?;
                tx.commit().await?;
                Ok(if changed == 1 {
                    $crate::AcceptOutcome::Accepted(record)
                } else {
                    $crate::AcceptOutcome::NotRinging(record)
                })
            }

            async fn finish_call(
                &self,
                id: palaver_core::Id,
                from: &[palaver_core::call::CallStatus],
                to: palaver_core::call::CallStatus,
                reason: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::FinishOutcome> {
                // Compare-and-set on the status read: a concurrent change
                // makes the update miss, and the loop reads again.
                for _ in 0..5 {
                    let mut conn = self.writer().acquire().await?;
                    let Some(call) = call_read(&mut conn, id).await? else {
                        return Err($crate::StoreError::NotFound);
                    };
                    if !from.contains(&call.status) {
                        return Ok($crate::FinishOutcome::Unchanged(call));
                    }
                    // Only a call that was talking has a duration: a failed
                    // call (media never connected) lasted nothing.
                    let duration = match (to, call.accepted_at) {
                        (palaver_core::call::CallStatus::Ended, Some(accepted)) => {
                            (now - accepted).num_seconds().max(0)
                        }
                        _ => 0,
                    };
                    let changed = sqlx::query(
                        "UPDATE call_sessions SET status = $3, ended_at = $4, duration = $5, end_reason = $6, \
                         ring_deadline = NULL, media_deadline = NULL WHERE id = $1 AND status = $2",
                    )
                    .bind(id)
                    .bind(call.status.as_str())
                    .bind(to.as_str())
                    .bind(now)
                    .bind(duration)
                    .bind(reason)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if changed == 1 {
                        let record = call_read(&mut conn, id).await?.ok_or($crate::StoreError::NotFound)?;
                        return Ok($crate::FinishOutcome::Changed(record));
                    }
                }
                let record = self.call_by_id(id).await?.ok_or($crate::StoreError::NotFound)?;
                Ok($crate::FinishOutcome::Unchanged(record))
            }

            async fn mark_media_connected(
                &self,
                id: palaver_core::Id,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<bool> {
                let changed = sqlx::query(
                    "UPDATE call_sessions SET media_connected_at = $2, media_deadline = NULL \
                     WHERE id = $1 AND status = 'active' AND media_connected_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(changed == 1)
            }

            async fn bind_call_connection(
                &self,
                id: palaver_core::Id,
                caller_side: bool,
                connection: &str,
            ) -> $crate::Result<Option<String>> {
                let sql = if caller_side {
                    "UPDATE call_sessions SET caller_connection = COALESCE(caller_connection, $2) WHERE id = $1 \
                     RETURNING caller_connection"
                } else {
                    "UPDATE call_sessions SET receiver_connection = COALESCE(receiver_connection, $2) WHERE id = $1 \
                     RETURNING receiver_connection"
                };
                let bound: Option<(Option<String>,)> =
                    sqlx::query_as(sql).bind(id).bind(connection).fetch_optional(self.writer()).await?;
                Ok(bound.and_then(|(c,)| c))
            }

            async fn expire_due_calls(
                &self,
                now: palaver_core::time::Timestamp,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::CallRecord>> {
                // The status test in the outer WHERE is evaluated again on
                // PostgreSQL after waiting for a concurrent sweeper's row
                // lock, so a call another node already moved is skipped.
                let mut ids: Vec<i64> = sqlx::query_scalar(
                    "UPDATE call_sessions SET status = 'missed', ended_at = $1, end_reason = 'no_answer', \
                     ring_deadline = NULL WHERE id IN (SELECT id FROM call_sessions WHERE status = 'ringing' \
                     AND ring_deadline <= $1 ORDER BY ring_deadline LIMIT $2) AND status = 'ringing' RETURNING id",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(self.writer())
                .await?;
                let failed: Vec<i64> = sqlx::query_scalar(
                    "UPDATE call_sessions SET status = 'failed', ended_at = $1, end_reason = 'media_timeout', \
                     media_deadline = NULL WHERE id IN (SELECT id FROM call_sessions WHERE status = 'active' \
                     AND media_connected_at IS NULL AND media_deadline <= $1 ORDER BY media_deadline LIMIT $2) \
                     AND status = 'active' AND media_connected_at IS NULL RETURNING id",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(self.writer())
                .await?;
                ids.extend(failed);
                let mut records = self.call_ids_to_records(&ids).await?;
                records.reverse();
                Ok(records)
            }

            async fn call_history(
                &self,
                user: palaver_core::UserId,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::CallRecord>> {
                // Two index scans (placed, received), merged: an OR across
                // the two columns would scan every call.
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM (SELECT id FROM (SELECT id FROM call_sessions WHERE caller_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3) placed UNION SELECT id FROM (SELECT id FROM call_sessions \
                     WHERE receiver_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3) received) ids \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(user)
                .bind(page.below())
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                self.call_ids_to_records(&ids).await
            }

            async fn live_call_of(&self, user: palaver_core::UserId) -> $crate::Result<Option<$crate::CallRecord>> {
                let id: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT id FROM call_sessions WHERE caller_id = $1 AND status IN ",
                    $crate::sql::calls::live_statuses!(),
                    " UNION SELECT id FROM call_sessions WHERE receiver_id = $1 AND status IN ",
                    $crate::sql::calls::live_statuses!(),
                    " ORDER BY id DESC LIMIT 1"
                ))
                .bind(user)
                .fetch_optional(self.reader())
                .await?;
                match id {
                    Some(id) => self.call_by_id(id).await,
                    None => Ok(None),
                }
            }

            async fn add_call_quality(
                &self,
                call_id: palaver_core::Id,
                report: &$crate::CallQualityReport,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO call_quality (call_id, user_id, rtt_ms, jitter_ms, packet_loss, audio_level, \
                     codec, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(call_id)
                .bind(report.user_id)
                .bind(report.rtt_ms)
                .bind(report.jitter_ms)
                .bind(report.packet_loss)
                .bind(report.audio_level)
                .bind(report.codec.as_deref())
                .bind(report.created_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn latest_call_quality(
                &self,
                call_ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<$crate::StoredCallQuality>> {
                if call_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT q.call_id, q.user_id, q.rtt_ms, q.jitter_ms, q.packet_loss, q.audio_level, q.codec, \
                     q.created_at FROM call_quality q WHERE q.call_id IN ({}) AND q.id = (SELECT MAX(q2.id) \
                     FROM call_quality q2 WHERE q2.call_id = q.call_id AND q2.user_id = q.user_id) \
                     ORDER BY q.call_id DESC, q.user_id",
                    $crate::sql::placeholders(1, call_ids.len())
                );
                let mut query = sqlx::query_as::<_, $crate::calls::CallQualityRow>(sqlx::AssertSqlSafe(sql));
                for id in call_ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(self.reader()).await?.into_iter().map(Into::into).collect())
            }

            async fn block_partners(&self, user: palaver_core::UserId) -> $crate::Result<Vec<palaver_core::UserId>> {
                Ok(sqlx::query_scalar(
                    "SELECT blocked_id FROM blocks WHERE blocker_id = $1 \
                     UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1",
                )
                .bind(user)
                .fetch_all(self.reader())
                .await?)
            }

            async fn recent_match_partners(
                &self,
                user: palaver_core::UserId,
                since: palaver_core::time::Timestamp,
            ) -> $crate::Result<Vec<palaver_core::UserId>> {
                Ok(sqlx::query_scalar(
                    "SELECT receiver_id FROM call_sessions WHERE caller_id = $1 AND is_match AND started_at >= $2 \
                     UNION SELECT caller_id FROM call_sessions WHERE receiver_id = $1 AND is_match \
                     AND started_at >= $2",
                )
                .bind(user)
                .bind(since)
                .fetch_all(self.reader())
                .await?)
            }
        }
    };
}
pub(crate) use impl_call_store;
