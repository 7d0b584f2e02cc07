//! `MediaStore` in SQL: upload rows, access checks, clean-up and the
//! bookkeeping of re-encryption.

/// Columns of `media` as `Media` reads them.
macro_rules! media_cols {
    () => {
        "id, owner_id, kind, content_type, size_bytes, width, height, duration_ms, storage_key, thumbnail_key, \
         thumbnail_width, thumbnail_height, thumbnail_size_bytes, filename, key_id, ready_at, attached_at, created_at"
    };
}
pub(crate) use media_cols;

macro_rules! impl_media_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::MediaStore for $store {
            async fn create_media(&self, m: &$crate::NewMedia) -> $crate::Result<$crate::Media> {
                let media: $crate::Media = sqlx::query_as(concat!(
                    "INSERT INTO media (owner_id, kind, content_type, size_bytes, width, height, storage_key, \
                     ready_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING ",
                    $crate::sql::media::media_cols!()
                ))
                .bind(m.owner_id)
                .bind(&m.kind)
                .bind(&m.content_type)
                .bind(m.size_bytes)
                .bind(m.width)
                .bind(m.height)
                .bind(&m.storage_key)
                .bind(m.now)
                .fetch_one(self.writer())
                .await?;
                Ok(media)
            }

            async fn begin_upload(&self, u: &$crate::NewUpload) -> $crate::Result<palaver_core::Id> {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO media (owner_id, kind, content_type, size_bytes, storage_key, key_id, created_at) \
                     VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING id",
                )
                .bind(u.owner_id)
                .bind(&u.kind)
                .bind(&u.content_type)
                .bind(&u.storage_key)
                .bind(&u.key_id)
                .bind(u.now)
                .fetch_one(self.writer())
                .await?;
                Ok(id)
            }

            async fn finish_upload(
                &self,
                id: palaver_core::Id,
                d: &$crate::UploadDone,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::Media> {
                let media: Option<$crate::Media> = sqlx::query_as(concat!(
                    "UPDATE media SET size_bytes = $2, width = $3, height = $4, duration_ms = $5, \
                     thumbnail_key = $6, thumbnail_width = $7, thumbnail_height = $8, thumbnail_size_bytes = $9, \
                     filename = $10, ready_at = $11 WHERE id = $1 AND ready_at IS NULL RETURNING ",
                    $crate::sql::media::media_cols!()
                ))
                .bind(id)
                .bind(d.size_bytes)
                .bind(d.width)
                .bind(d.height)
                .bind(d.duration_ms)
                .bind(&d.thumbnail_key)
                .bind(d.thumbnail_width)
                .bind(d.thumbnail_height)
                .bind(d.thumbnail_size_bytes)
                .bind(&d.filename)
                .bind(now)
                .fetch_optional(self.writer())
                .await?;
                media.ok_or($crate::StoreError::NotFound)
            }

            async fn media_by_id(&self, id: palaver_core::Id) -> $crate::Result<Option<$crate::Media>> {
                let media: Option<$crate::Media> =
                    sqlx::query_as(concat!("SELECT ", $crate::sql::media::media_cols!(), " FROM media WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?;
                Ok(media)
            }

            async fn owned_media(
                &self,
                owner: palaver_core::UserId,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<palaver_core::Id>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT id FROM media WHERE owner_id = $1 AND ready_at IS NOT NULL AND id IN ({})",
                    $crate::sql::placeholders(2, ids.len())
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(owner);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(self.reader()).await?)
            }

            async fn media_visible_to(
                &self,
                viewer: palaver_core::UserId,
                id: palaver_core::Id,
            ) -> $crate::Result<bool> {
                // The moment branch uses THE visibility rule; the message
                // branch, room membership (the same question every chat read
                // asks); moderators also see media of reported content.
                let visible: Option<bool> = sqlx::query_scalar(concat!(
                    "SELECT md.owner_id = $1 \
                     OR EXISTS (SELECT 1 FROM moment_media mm JOIN moments m ON m.id = mm.moment_id \
                                WHERE mm.media_id = md.id AND ",
                    $crate::sql::moment_visible!(),
                    ") OR EXISTS (SELECT 1 FROM messages msg JOIN chat_participants p \
                                  ON p.room_id = msg.room_id AND p.user_id = $1 \
                                  WHERE msg.media_id = md.id AND NOT msg.is_deleted) \
                     OR (EXISTS (SELECT 1 FROM users mu WHERE mu.id = $1 AND mu.role IN ('moderator', 'admin')) \
                         AND (EXISTS (SELECT 1 FROM reports r JOIN messages rm ON rm.id = r.reported_message_id \
                                      WHERE rm.media_id = md.id) \
                              OR EXISTS (SELECT 1 FROM reports r JOIN moment_media rmm \
                                         ON rmm.moment_id = r.reported_moment_id WHERE rmm.media_id = md.id))) \
                     FROM media md WHERE md.id = $2 AND md.ready_at IS NOT NULL"
                ))
                .bind(viewer)
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                Ok(visible.unwrap_or(false))
            }

            async fn delete_media(&self, id: palaver_core::Id) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM media WHERE id = $1").bind(id).execute(self.writer()).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn stale_media(
                &self,
                before: palaver_core::time::Timestamp,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::Media>> {
                let rows: Vec<$crate::Media> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::media::media_cols!(),
                    " FROM media WHERE attached_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2"
                ))
                .bind(before)
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                Ok(rows)
            }

            async fn delete_stale_media(&self, id: palaver_core::Id) -> $crate::Result<bool> {
                let done = sqlx::query("DELETE FROM media WHERE id = $1 AND attached_at IS NULL")
                    .bind(id)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn media_to_reseal(
                &self,
                active_key: &str,
                after: palaver_core::Id,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::Media>> {
                let rows: Vec<$crate::Media> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::media::media_cols!(),
                    " FROM media WHERE id > $1 AND ready_at IS NOT NULL AND (key_id IS NULL OR key_id <> $2) \
                     ORDER BY id LIMIT $3"
                ))
                .bind(after)
                .bind(active_key)
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                Ok(rows)
            }

            async fn reseal_media(&self, r: &$crate::MediaReseal) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE media SET storage_key = $3, thumbnail_key = $4, filename = $5, key_id = $6 \
                     WHERE id = $1 AND storage_key = $2",
                )
                .bind(r.id)
                .bind(&r.old_storage_key)
                .bind(&r.storage_key)
                .bind(&r.thumbnail_key)
                .bind(&r.filename)
                .bind(&r.key_id)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn media_key_counts(&self) -> $crate::Result<Vec<(Option<String>, i64)>> {
                let rows: Vec<(Option<String>, i64)> =
                    sqlx::query_as("SELECT key_id, COUNT(*) FROM media GROUP BY key_id ORDER BY key_id")
                        .fetch_all(self.reader())
                        .await?;
                Ok(rows)
            }

            async fn media_refs(
                &self,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<palaver_core::social::MediaRef>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT CAST(0 AS BIGINT) AS moment_id, id, kind, content_type, size_bytes, width, height, duration_ms, \
                     thumbnail_key IS NOT NULL AS has_thumbnail FROM media \
                     WHERE ready_at IS NOT NULL AND id IN ({})",
                    $crate::sql::placeholders(1, ids.len())
                );
                let mut query = sqlx::query_as::<_, $crate::model::MomentMediaRow>(sqlx::AssertSqlSafe(sql));
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query
                    .fetch_all(self.reader())
                    .await?
                    .into_iter()
                    .map(|row| palaver_core::social::MediaRef {
                        id: row.id,
                        kind: row.kind,
                        content_type: row.content_type,
                        size: row.size_bytes,
                        width: row.width,
                        height: row.height,
                        duration_ms: row.duration_ms,
                        has_thumbnail: row.has_thumbnail,
                        url: String::new(),
                        thumbnail_url: None,
                    })
                    .collect())
            }
        }
    };
}
pub(crate) use impl_media_store;
