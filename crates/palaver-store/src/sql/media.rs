//! `MediaStore` in SQL: the small part of media that moments need.

macro_rules! impl_media_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::MediaStore for $store {
            async fn create_media(&self, m: &$crate::NewMedia) -> $crate::Result<$crate::Media> {
                let media: $crate::Media = sqlx::query_as(
                    "INSERT INTO media (owner_id, kind, content_type, size_bytes, width, height, storage_key, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     RETURNING id, owner_id, kind, content_type, size_bytes, width, height, storage_key, \
                     attached_at, created_at",
                )
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

            async fn media_by_id(&self, id: palaver_core::Id) -> $crate::Result<Option<$crate::Media>> {
                let media: Option<$crate::Media> = sqlx::query_as(
                    "SELECT id, owner_id, kind, content_type, size_bytes, width, height, storage_key, attached_at, \
                     created_at FROM media WHERE id = $1",
                )
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
                    "SELECT id FROM media WHERE owner_id = $1 AND id IN ({})",
                    $crate::sql::placeholders(2, ids.len())
                );
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(owner);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(self.reader()).await?)
            }
        }
    };
}
pub(crate) use impl_media_store;
