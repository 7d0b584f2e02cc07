//! `ModerationStore` in SQL: reports, the queue, and the audit log.

/// A report with its target's author and an excerpt of the content.
macro_rules! report_select {
    () => {
        "SELECT r.id, r.reporter_id, r.target_kind, r.target_id, r.report_type, r.description, r.status, \
         r.admin_notes, r.reviewed_by, r.created_at, r.updated_at, \
         CASE r.target_kind WHEN 'user' THEN r.target_id \
           WHEN 'moment' THEN (SELECT user_id FROM moments WHERE id = r.target_id) \
           WHEN 'comment' THEN (SELECT user_id FROM moment_comments WHERE id = r.target_id) \
           WHEN 'message' THEN (SELECT sender_id FROM messages WHERE id = r.target_id) END AS target_user_id, \
         CASE r.target_kind WHEN 'moment' THEN (SELECT substr(content, 1, 280) FROM moments WHERE id = r.target_id) \
           WHEN 'comment' THEN (SELECT substr(content, 1, 280) FROM moment_comments WHERE id = r.target_id) \
           END AS target_excerpt \
         FROM reports r"
    };
}
pub(crate) use report_select;

macro_rules! impl_moderation_store {
    ($store:ty) => {
        async fn log_action(
            conn: &mut <Db as sqlx::Database>::Connection,
            moderator: Option<palaver_core::UserId>,
            report: Option<palaver_core::Id>,
            action: &str,
            target: palaver_core::social::ReportTarget,
            notes: &str,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<()> {
            sqlx::query(
                "INSERT INTO moderation_actions (moderator_id, report_id, action, target_kind, target_id, notes, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(moderator)
            .bind(report)
            .bind(action)
            .bind(target.kind())
            .bind(target.id())
            .bind(notes)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Hides a reported moment or comment; true when it was visible.
        async fn hide_target(
            conn: &mut <Db as sqlx::Database>::Connection,
            target: palaver_core::social::ReportTarget,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<bool> {
            match target {
                palaver_core::social::ReportTarget::Moment(id) => deactivate_moment(conn, id, true, now).await,
                palaver_core::social::ReportTarget::Comment(id) => {
                    Ok(deactivate_comment(conn, id, true, now).await? > 0)
                }
                _ => Ok(false),
            }
        }

        #[async_trait::async_trait]
        impl $crate::ModerationStore for $store {
            async fn message_reportable_by(
                &self,
                user: palaver_core::UserId,
                message: palaver_core::Id,
            ) -> $crate::Result<Option<palaver_core::UserId>> {
                let sender: Option<i64> = sqlx::query_scalar(
                    "SELECT m.sender_id FROM messages m JOIN chat_participants p \
                     ON p.room_id = m.room_id AND p.user_id = $1 WHERE m.id = $2 AND NOT m.is_deleted",
                )
                .bind(user)
                .bind(message)
                .fetch_optional(self.reader())
                .await?;
                Ok(sender)
            }

            async fn create_report(
                &self,
                r: &$crate::NewReport,
            ) -> $crate::Result<(palaver_core::social::Report, bool)> {
                use palaver_core::social::ReportTarget;
                let pick = |kind: &str| (r.target.kind() == kind).then_some(r.target.id());
                let mut tx = self.writer().begin().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO reports (reporter_id, reported_user_id, reported_moment_id, reported_comment_id, \
                     reported_message_id, target_kind, target_id, report_type, description, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
                )
                .bind(r.reporter_id)
                .bind(pick("user"))
                .bind(pick("moment"))
                .bind(pick("comment"))
                .bind(pick("message"))
                .bind(r.target.kind())
                .bind(r.target.id())
                .bind(r.report_type.as_str())
                .bind(&r.description)
                .bind(r.now)
                .fetch_one(&mut *tx)
                .await?;
                let mut hidden = false;
                if matches!(r.target, ReportTarget::Moment(_) | ReportTarget::Comment(_)) {
                    let reporters: i64 = sqlx::query_scalar(
                        "SELECT COUNT(DISTINCT reporter_id) FROM reports \
                         WHERE target_kind = $1 AND target_id = $2 AND status = 'pending'",
                    )
                    .bind(r.target.kind())
                    .bind(r.target.id())
                    .fetch_one(&mut *tx)
                    .await?;
                    if reporters >= r.auto_hide_threshold && hide_target(&mut tx, r.target, r.now).await? {
                        hidden = true;
                        let notes = format!("hidden pending review: reported by {reporters} users");
                        log_action(&mut tx, None, Some(id), "auto_hide", r.target, &notes, r.now).await?;
                    }
                }
                tx.commit().await?;
                let report = self.report_by_id(id).await?.ok_or($crate::StoreError::NotFound)?;
                Ok((report, hidden))
            }

            async fn report_by_id(
                &self,
                id: palaver_core::Id,
            ) -> $crate::Result<Option<palaver_core::social::Report>> {
                let row: Option<$crate::model::ReportRow> =
                    sqlx::query_as(concat!($crate::sql::moderation::report_select!(), " WHERE r.id = $1"))
                        .bind(id)
                        .fetch_optional(self.writer())
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn reports(
                &self,
                status: Option<palaver_core::social::ReportStatus>,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<palaver_core::social::Report>> {
                let rows: Vec<$crate::model::ReportRow> = sqlx::query_as(concat!(
                    $crate::sql::moderation::report_select!(),
                    " WHERE ($1 IS NULL OR r.status = $1) AND r.id > $2 ORDER BY r.id LIMIT $3"
                ))
                .bind(status.map(|s| s.as_str()))
                .bind(page.above())
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn review_report(
                &self,
                review: &$crate::ReportReview,
            ) -> $crate::Result<palaver_core::social::Report> {
                use palaver_core::social::{ModerationAction, ReportTarget};
                let mut tx = self.writer().begin().await?;
                let target: Option<(String, i64)> =
                    sqlx::query_as("SELECT target_kind, target_id FROM reports WHERE id = $1")
                        .bind(review.report_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let (kind, target_id) = target.ok_or($crate::StoreError::NotFound)?;
                let target = ReportTarget::from_parts(&kind, target_id)
                    .ok_or_else(|| $crate::StoreError::Corrupt(format!("report target kind `{kind}`")))?;
                let mut logged_target = target;
                match review.action {
                    ModerationAction::None => {}
                    ModerationAction::HideContent => {
                        hide_target(&mut tx, target, review.now).await?;
                    }
                    ModerationAction::SuspendUser => {
                        let user = review.suspend_user_id.ok_or($crate::StoreError::NotFound)?;
                        sqlx::query("UPDATE users SET is_suspended = TRUE, updated_at = $2 WHERE id = $1")
                            .bind(user)
                            .bind(review.now)
                            .execute(&mut *tx)
                            .await?;
                        logged_target = ReportTarget::User(user);
                    }
                }
                sqlx::query(
                    "UPDATE reports SET status = $2, admin_notes = COALESCE($3, admin_notes), reviewed_by = $4, \
                     updated_at = $5 WHERE id = $1",
                )
                .bind(review.report_id)
                .bind(review.status.as_str())
                .bind(review.admin_notes.as_deref())
                .bind(review.moderator_id)
                .bind(review.now)
                .execute(&mut *tx)
                .await?;
                let notes = match &review.admin_notes {
                    Some(notes) if !notes.is_empty() => format!("status {}: {notes}", review.status.as_str()),
                    _ => format!("status {}", review.status.as_str()),
                };
                log_action(
                    &mut tx,
                    Some(review.moderator_id),
                    Some(review.report_id),
                    review.action.as_str(),
                    logged_target,
                    &notes,
                    review.now,
                )
                .await?;
                tx.commit().await?;
                self.report_by_id(review.report_id).await?.ok_or($crate::StoreError::NotFound)
            }

            async fn log_moderation(
                &self,
                moderator: palaver_core::UserId,
                action: &str,
                target_kind: &str,
                target_id: palaver_core::Id,
                notes: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<()> {
                let target = palaver_core::social::ReportTarget::from_parts(target_kind, target_id)
                    .ok_or_else(|| $crate::StoreError::Check(format!("target kind `{target_kind}`")))?;
                let mut conn = self.writer().acquire().await?;
                log_action(&mut conn, Some(moderator), None, action, target, notes, now).await
            }

            async fn moderation_log(
                &self,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::ModerationLogEntry>> {
                let rows: Vec<$crate::ModerationLogEntry> = sqlx::query_as(
                    "SELECT id, moderator_id, report_id, action, target_kind, target_id, notes, created_at \
                     FROM moderation_actions WHERE id < $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(page.below())
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                Ok(rows)
            }
        }
    };
}
pub(crate) use impl_moderation_store;
