//! `NotificationStore` in SQL.
//!
//! Aggregation works on a partial unique index: at most one notification per
//! (user, aggregation key) has `aggregating` set (unread, window open), and an
//! event merges into it with `INSERT ... ON CONFLICT (user_id,
//! aggregation_key) WHERE aggregating DO UPDATE`, which both dialects accept
//! and which serialises concurrent events on that one row. The people it
//! stands for are rows of `notification_actors`, so `actor_count` changes in
//! the same transaction as the actor row that justifies it.
//!
//! Outbox claiming is the one query whose SQL differs: PostgreSQL locks the
//! candidate rows with `FOR UPDATE SKIP LOCKED` so concurrent workers on many
//! nodes take disjoint batches without waiting for each other; SQLite has a
//! single writer connection, so its claim statement is atomic as it is.

/// Columns of `notifications` as `model::NotificationRow` reads them.
macro_rules! notification_cols {
    () => {
        "notifications.id, notifications.user_id, notifications.notification_type, notifications.title, \
         notifications.message, notifications.data, notifications.actor_count, notifications.event_count, \
         notifications.is_read, notifications.is_sent, notifications.created_at, notifications.updated_at, \
         notifications.read_at"
    };
}
pub(crate) use notification_cols;

/// Columns of `push_tokens` as `model::PushTokenRow` reads them.
macro_rules! push_token_cols {
    () => {
        "push_tokens.id, push_tokens.user_id, push_tokens.token, push_tokens.device_type, \
         push_tokens.web_endpoint, push_tokens.web_p256dh, push_tokens.web_auth, push_tokens.created_at, \
         push_tokens.updated_at"
    };
}
pub(crate) use push_token_cols;

/// Selects the rows to claim: due, and not held by a live lease.
macro_rules! claim_candidates {
    () => {
        "SELECT id FROM push_outbox WHERE next_attempt_at <= $3 \
         AND (claimed_until IS NULL OR claimed_until < $3) ORDER BY next_attempt_at, id LIMIT $4"
    };
}

/// PostgreSQL: concurrent workers skip each other's locked candidates.
pub(crate) const CLAIM_PG: &str = concat!(
    "UPDATE push_outbox SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 WHERE id IN (",
    claim_candidates!(),
    " FOR UPDATE SKIP LOCKED)"
);

/// SQLite: one writer connection makes the statement atomic.
pub(crate) const CLAIM_SQLITE: &str = concat!(
    "UPDATE push_outbox SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1 WHERE id IN (",
    claim_candidates!(),
    ")"
);

macro_rules! impl_notification_store {
    ($store:ty) => {
        impl $store {
            /// Renders a notification from its current row (plus
            /// `actor_delta` actors just added) and the newest actors'
            /// names, and stores the text and the count in one statement.
            async fn render_notification<'c>(
                tx: &mut sqlx::Transaction<'c, <Self as $crate::sql::notifications::HasDb>::Db>,
                row: $crate::model::NotificationRow,
                actor_delta: i64,
                render: &$crate::Renderer,
            ) -> $crate::Result<palaver_core::notification::Notification> {
                let id = row.id;
                let names: Vec<(String,)> = sqlx::query_as(
                    "SELECT users.display_name FROM notification_actors \
                     JOIN users ON users.id = notification_actors.actor_id \
                     WHERE notification_actors.notification_id = $1 \
                     ORDER BY notification_actors.created_at DESC, notification_actors.actor_id DESC LIMIT 2",
                )
                .bind(id)
                .fetch_all(&mut **tx)
                .await?;
                let names: Vec<String> = names.into_iter().map(|(n,)| n).collect();
                let current: palaver_core::notification::Notification = row.try_into()?;
                let text = render(&$crate::RenderInput {
                    notification_type: current.notification_type,
                    actor_names: &names,
                    actor_count: current.actor_count + actor_delta,
                    event_count: current.event_count,
                    data: &current.data,
                });
                let row: $crate::model::NotificationRow = sqlx::query_as(concat!(
                    "UPDATE notifications SET title = $2, message = $3, actor_count = actor_count + $4 \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::notifications::notification_cols!()
                ))
                .bind(id)
                .bind(&text.title)
                .bind(&text.message)
                .bind(actor_delta)
                .fetch_one(&mut **tx)
                .await?;
                row.try_into()
            }

            async fn unread_in<'c>(
                tx: &mut sqlx::Transaction<'c, <Self as $crate::sql::notifications::HasDb>::Db>,
                user_id: palaver_core::UserId,
            ) -> $crate::Result<i64> {
                let (count,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND NOT is_read")
                        .bind(user_id)
                        .fetch_one(&mut **tx)
                        .await?;
                Ok(count)
            }
        }

        #[async_trait::async_trait]
        impl $crate::NotificationStore for $store {
            async fn record_notification(
                &self,
                new: &$crate::NewNotification,
                render: &$crate::Renderer,
            ) -> $crate::Result<$crate::RecordedNotification> {
                let mut tx = self.writer().begin().await?;
                if let Some(key) = &new.aggregation_key {
                    sqlx::query(
                        "UPDATE notifications SET aggregating = FALSE \
                         WHERE user_id = $1 AND aggregation_key = $2 AND aggregating AND created_at < $3",
                    )
                    .bind(new.user_id)
                    .bind(key)
                    .bind(new.aggregate_since)
                    .execute(&mut *tx)
                    .await?;
                }
                let mut notification = None;
                let mut created = false;
                if new.in_app {
                    let row: $crate::model::NotificationRow = sqlx::query_as(concat!(
                        "INSERT INTO notifications (user_id, notification_type, title, message, data, \
                         aggregation_key, actor_count, event_count, aggregating, created_at, updated_at) \
                         VALUES ($1, $2, '', '', $3, $4, 0, 1, $5, $6, $6) \
                         ON CONFLICT (user_id, aggregation_key) WHERE aggregating DO UPDATE SET \
                         event_count = notifications.event_count + 1, data = excluded.data, \
                         notification_type = excluded.notification_type, updated_at = excluded.updated_at \
                         RETURNING ",
                        $crate::sql::notifications::notification_cols!()
                    ))
                    .bind(new.user_id)
                    .bind(new.notification_type.as_str())
                    .bind(sqlx::types::Json(&new.data))
                    .bind(new.aggregation_key.as_deref())
                    .bind(new.aggregation_key.is_some())
                    .bind(new.now)
                    .fetch_one(&mut *tx)
                    .await?;
                    let id = row.id;
                    created = row.event_count == 1;
                    let mut added = 0;
                    if let Some(actor) = new.actor_id {
                        let inserted = sqlx::query(
                            "INSERT INTO notification_actors (notification_id, actor_id, created_at) \
                             VALUES ($1, $2, $3) ON CONFLICT (notification_id, actor_id) DO NOTHING",
                        )
                        .bind(id)
                        .bind(actor)
                        .bind(new.now)
                        .execute(&mut *tx)
                        .await?;
                        if inserted.rows_affected() == 1 {
                            added = 1;
                        } else {
                            // The same person again: they become the newest actor.
                            sqlx::query(
                                "UPDATE notification_actors SET created_at = $3 \
                                 WHERE notification_id = $1 AND actor_id = $2",
                            )
                            .bind(id)
                            .bind(actor)
                            .bind(new.now)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    notification = Some(Self::render_notification(&mut tx, row, added, render).await?);
                }
                let unread_count = Self::unread_in(&mut tx, new.user_id).await?;
                let mut pushes_queued = 0;
                if let Some(plan) = &new.push {
                    let payload = match &notification {
                        Some(n) => $crate::PushPayload {
                            notification_id: Some(n.id),
                            notification_type: n.notification_type,
                            title: n.title.clone(),
                            body: n.message.clone(),
                            data: n.data.clone(),
                            badge: Some(unread_count),
                            high_priority: plan.high_priority,
                            ttl_secs: plan.ttl_secs,
                            event_at: new.now,
                        },
                        None => {
                            // Push only: render from the actor alone.
                            let names: Vec<String> = match new.actor_id {
                                Some(actor) => {
                                    let name: Option<(String,)> =
                                        sqlx::query_as("SELECT display_name FROM users WHERE id = $1")
                                            .bind(actor)
                                            .fetch_optional(&mut *tx)
                                            .await?;
                                    name.map(|(n,)| n).into_iter().collect()
                                }
                                None => Vec::new(),
                            };
                            let text = render(&$crate::RenderInput {
                                notification_type: new.notification_type,
                                actor_names: &names,
                                actor_count: i64::from(new.actor_id.is_some()),
                                event_count: 1,
                                data: &new.data,
                            });
                            $crate::PushPayload {
                                notification_id: None,
                                notification_type: new.notification_type,
                                title: text.title,
                                body: text.message,
                                data: new.data.clone(),
                                badge: Some(unread_count),
                                high_priority: plan.high_priority,
                                ttl_secs: plan.ttl_secs,
                                event_at: new.now,
                            }
                        }
                    };
                    if let Some(key) = &plan.collapse_key {
                        // A burst collapses: pending pushes with the key are replaced.
                        sqlx::query(
                            "DELETE FROM push_outbox WHERE collapse_key = $2 AND claimed_by IS NULL \
                             AND push_token_id IN (SELECT id FROM push_tokens WHERE user_id = $1)",
                        )
                        .bind(new.user_id)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let queued = sqlx::query(
                        "INSERT INTO push_outbox (notification_id, push_token_id, payload, collapse_key, attempts, \
                         next_attempt_at, created_at, expires_at) \
                         SELECT $1, id, $2, $3, 0, $4, $5, $6 FROM push_tokens WHERE user_id = $7 AND is_active",
                    )
                    .bind(payload.notification_id)
                    .bind(sqlx::types::Json(&payload))
                    .bind(plan.collapse_key.as_deref())
                    .bind(plan.not_before)
                    .bind(new.now)
                    .bind(plan.expires_at)
                    .bind(new.user_id)
                    .execute(&mut *tx)
                    .await?;
                    pushes_queued = queued.rows_affected();
                }
                tx.commit().await?;
                Ok($crate::RecordedNotification { notification, created, unread_count, pushes_queued })
            }

            async fn retract_notification(
                &self,
                user_id: palaver_core::UserId,
                aggregation_key: &str,
                actor_id: palaver_core::UserId,
                render: &$crate::Renderer,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::Retracted> {
                let mut tx = self.writer().begin().await?;
                let found: Option<(i64,)> = sqlx::query_as(
                    "SELECT notifications.id FROM notifications JOIN notification_actors \
                     ON notification_actors.notification_id = notifications.id \
                     WHERE notifications.user_id = $1 AND notifications.aggregation_key = $2 \
                     AND notification_actors.actor_id = $3 AND NOT notifications.is_read \
                     ORDER BY notifications.id DESC LIMIT 1",
                )
                .bind(user_id)
                .bind(aggregation_key)
                .bind(actor_id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((id,)) = found else {
                    tx.commit().await?;
                    return Ok($crate::Retracted::Unchanged);
                };
                let removed =
                    sqlx::query("DELETE FROM notification_actors WHERE notification_id = $1 AND actor_id = $2")
                        .bind(id)
                        .bind(actor_id)
                        .execute(&mut *tx)
                        .await?;
                if removed.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok($crate::Retracted::Unchanged);
                }
                let row: $crate::model::NotificationRow = sqlx::query_as(concat!(
                    "UPDATE notifications SET actor_count = actor_count - 1, updated_at = $2 WHERE id = $1 RETURNING ",
                    $crate::sql::notifications::notification_cols!()
                ))
                .bind(id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                if row.actor_count <= 0 {
                    // Its pending pushes go with it (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM notifications WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    let unread_count = Self::unread_in(&mut tx, user_id).await?;
                    tx.commit().await?;
                    return Ok($crate::Retracted::Deleted { id, unread_count });
                }
                let notification = Self::render_notification(&mut tx, row, 0, render).await?;
                let unread_count = Self::unread_in(&mut tx, user_id).await?;
                // Pending pushes carry the new text.
                let pending: Vec<(i64, sqlx::types::Json<serde_json::Value>)> = sqlx::query_as(
                    "SELECT id, payload FROM push_outbox WHERE notification_id = $1 AND claimed_by IS NULL",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                for (row_id, payload) in pending {
                    if let Ok(mut payload) = serde_json::from_value::<$crate::PushPayload>(payload.0) {
                        payload.title = notification.title.clone();
                        payload.body = notification.message.clone();
                        payload.badge = Some(unread_count);
                        sqlx::query("UPDATE push_outbox SET payload = $2 WHERE id = $1")
                            .bind(row_id)
                            .bind(sqlx::types::Json(&payload))
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok($crate::Retracted::Updated { notification, unread_count })
            }

            async fn list_notifications(
                &self,
                user_id: palaver_core::UserId,
                unread_only: bool,
                before: Option<palaver_core::Id>,
                limit: u32,
            ) -> $crate::Result<Vec<palaver_core::notification::Notification>> {
                let rows: Vec<$crate::model::NotificationRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::notifications::notification_cols!(),
                    " FROM notifications WHERE user_id = $1 AND (NOT $2 OR NOT is_read) \
                     AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
                ))
                .bind(user_id)
                .bind(unread_only)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn unread_notification_count(&self, user_id: palaver_core::UserId) -> $crate::Result<i64> {
                let (count,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM notifications WHERE user_id = $1 AND NOT is_read")
                        .bind(user_id)
                        .fetch_one(self.reader())
                        .await?;
                Ok(count)
            }

            async fn mark_notification_read(
                &self,
                user_id: palaver_core::UserId,
                id: palaver_core::Id,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<Option<palaver_core::notification::Notification>> {
                let row: Option<$crate::model::NotificationRow> = sqlx::query_as(concat!(
                    "UPDATE notifications SET is_read = TRUE, aggregating = FALSE, read_at = COALESCE(read_at, $3) \
                     WHERE id = $1 AND user_id = $2 RETURNING ",
                    $crate::sql::notifications::notification_cols!()
                ))
                .bind(id)
                .bind(user_id)
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn mark_all_notifications_read(
                &self,
                user_id: palaver_core::UserId,
                up_to: Option<palaver_core::Id>,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE notifications SET is_read = TRUE, aggregating = FALSE, read_at = $2 \
                     WHERE user_id = $1 AND NOT is_read AND ($3 IS NULL OR id <= $3)",
                )
                .bind(user_id)
                .bind(now)
                .bind(up_to)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected())
            }

            async fn notification_preferences(
                &self,
                user_id: palaver_core::UserId,
            ) -> $crate::Result<Option<serde_json::Value>> {
                let row: Option<(sqlx::types::Json<serde_json::Value>,)> =
                    sqlx::query_as("SELECT preferences FROM notification_preferences WHERE user_id = $1")
                        .bind(user_id)
                        .fetch_optional(self.reader())
                        .await?;
                Ok(row.map(|(p,)| p.0))
            }

            async fn set_notification_preferences(
                &self,
                user_id: palaver_core::UserId,
                preferences: &serde_json::Value,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO notification_preferences (user_id, preferences, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences, \
                     updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(sqlx::types::Json(preferences))
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn register_push_token(
                &self,
                user_id: palaver_core::UserId,
                token: &$crate::NewPushToken,
                max_per_user: u32,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::notification::PushToken> {
                let mut tx = self.writer().begin().await?;
                let previous: Option<(i64, i64)> =
                    sqlx::query_as("SELECT id, user_id FROM push_tokens WHERE token = $1")
                        .bind(&token.token)
                        .fetch_optional(&mut *tx)
                        .await?;
                let web = token.web_push.as_ref();
                let row: $crate::model::PushTokenRow = sqlx::query_as(concat!(
                    "INSERT INTO push_tokens (user_id, token, device_type, web_endpoint, web_p256dh, web_auth, \
                     is_active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7) \
                     ON CONFLICT (token) DO UPDATE SET user_id = excluded.user_id, \
                     device_type = excluded.device_type, web_endpoint = excluded.web_endpoint, \
                     web_p256dh = excluded.web_p256dh, web_auth = excluded.web_auth, is_active = TRUE, \
                     updated_at = excluded.updated_at RETURNING ",
                    $crate::sql::notifications::push_token_cols!()
                ))
                .bind(user_id)
                .bind(&token.token)
                .bind(token.device_type.as_str())
                .bind(web.map(|w| w.endpoint.as_str()))
                .bind(web.map(|w| w.keys.p256dh.as_str()))
                .bind(web.map(|w| w.keys.auth.as_str()))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                if let Some((id, owner)) = previous
                    && owner != user_id
                {
                    // The device changed hands: nothing of the previous
                    // owner's may reach it.
                    sqlx::query("DELETE FROM push_outbox WHERE push_token_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "DELETE FROM push_tokens WHERE user_id = $1 AND id NOT IN \
                     (SELECT id FROM push_tokens WHERE user_id = $1 ORDER BY updated_at DESC, id DESC LIMIT $2)",
                )
                .bind(user_id)
                .bind(i64::from(max_per_user.max(1)))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                row.try_into()
            }

            async fn delete_push_token(&self, user_id: palaver_core::UserId, token: &str) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM push_tokens WHERE user_id = $1 AND token = $2")
                    .bind(user_id)
                    .bind(token)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn push_tokens(
                &self,
                user_id: palaver_core::UserId,
            ) -> $crate::Result<Vec<palaver_core::notification::PushToken>> {
                let rows: Vec<$crate::model::PushTokenRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::notifications::push_token_cols!(),
                    " FROM push_tokens WHERE user_id = $1 AND is_active ORDER BY id"
                ))
                .bind(user_id)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn claim_pushes(
                &self,
                claim_id: &str,
                now: palaver_core::time::Timestamp,
                lease_until: palaver_core::time::Timestamp,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::OutboxItem>> {
                let claim = match <Self as $crate::Store>::backend(self) {
                    $crate::Backend::Postgres => $crate::sql::notifications::CLAIM_PG,
                    $crate::Backend::Sqlite => $crate::sql::notifications::CLAIM_SQLITE,
                };
                let claimed = sqlx::query(claim)
                    .bind(claim_id)
                    .bind(lease_until)
                    .bind(now)
                    .bind(i64::from(limit))
                    .execute(self.writer())
                    .await?;
                if claimed.rows_affected() == 0 {
                    return Ok(Vec::new());
                }
                let rows: Vec<$crate::model::OutboxRow> = sqlx::query_as(
                    "SELECT push_outbox.id, push_outbox.push_token_id, push_tokens.token, push_tokens.device_type, \
                     push_tokens.web_endpoint, push_tokens.web_p256dh, push_tokens.web_auth, push_outbox.payload, \
                     push_outbox.collapse_key, push_outbox.attempts, push_outbox.created_at, push_outbox.expires_at \
                     FROM push_outbox JOIN push_tokens ON push_tokens.id = push_outbox.push_token_id \
                     WHERE push_outbox.claimed_by = $1 ORDER BY push_outbox.id",
                )
                .bind(claim_id)
                .fetch_all(self.writer())
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn finish_pushes(
                &self,
                claim_id: &str,
                results: &[($crate::OutboxItem, $crate::PushResult)],
            ) -> $crate::Result<u64> {
                let mut tx = self.writer().begin().await?;
                let mut pruned = 0;
                // Deliveries and drops are the bulk of a batch: one
                // statement each per chunk of rows, not one per row (each is a
                // round trip on PostgreSQL).
                let mut delivered = Vec::new();
                let mut dropped = Vec::new();
                for (item, result) in results {
                    match result {
                        $crate::PushResult::Delivered => delivered.push(item.id),
                        $crate::PushResult::Drop { .. } => dropped.push(item.id),
                        $crate::PushResult::Retry { at, error } => {
                            sqlx::query(
                                "UPDATE push_outbox SET claimed_by = NULL, claimed_until = NULL, \
                                 next_attempt_at = $3, last_error = $4 WHERE id = $1 AND claimed_by = $2",
                            )
                            .bind(item.id)
                            .bind(claim_id)
                            .bind(*at)
                            .bind(error)
                            .execute(&mut *tx)
                            .await?;
                        }
                        $crate::PushResult::PruneToken => {
                            // Everything queued for the token goes with it.
                            let done = sqlx::query("DELETE FROM push_tokens WHERE id = $1")
                                .bind(item.push_token_id)
                                .execute(&mut *tx)
                                .await?;
                            pruned += done.rows_affected();
                        }
                    }
                }
                for chunk in delivered.chunks(500) {
                    let sql = format!(
                        "DELETE FROM push_outbox WHERE claimed_by = $1 AND id IN ({}) RETURNING notification_id",
                        $crate::sql::notifications::placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query_as::<_, (Option<i64>,)>(sqlx::AssertSqlSafe(sql)).bind(claim_id);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    let mut sent: Vec<i64> = query.fetch_all(&mut *tx).await?.into_iter().filter_map(|(n,)| n).collect();
                    sent.sort_unstable();
                    sent.dedup();
                    if sent.is_empty() {
                        continue;
                    }
                    let sql = format!(
                        "UPDATE notifications SET is_sent = TRUE WHERE NOT is_sent AND id IN ({})",
                        $crate::sql::notifications::placeholders(1, sent.len())
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for id in &sent {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                }
                for chunk in dropped.chunks(500) {
                    let sql = format!(
                        "DELETE FROM push_outbox WHERE claimed_by = $1 AND id IN ({})",
                        $crate::sql::notifications::placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(claim_id);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(pruned)
            }

            async fn pending_push_count(&self) -> $crate::Result<i64> {
                let (count,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM push_outbox").fetch_one(self.reader()).await?;
                Ok(count)
            }
        }
    };
}
pub(crate) use impl_notification_store;

/// `$first, $first+1, ...`: `count` numbered placeholders. The SQL built
/// with it contains only these and fixed text, never a value.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

/// The sqlx database behind a store type, so helpers inside the macro can
/// name their transaction type.
pub(crate) trait HasDb {
    type Db: sqlx::Database;
}

impl HasDb for crate::SqliteStore {
    type Db = sqlx::Sqlite;
}

impl HasDb for crate::PgStore {
    type Db = sqlx::Postgres;
}
