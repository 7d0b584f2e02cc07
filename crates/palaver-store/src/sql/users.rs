//! `UserStore` in SQL.

macro_rules! impl_user_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::UserStore for $store {
            async fn create_user(
                &self,
                u: &$crate::NewUserRecord,
            ) -> $crate::Result<palaver_core::user::User> {
                let row: $crate::model::UserRow = sqlx::query_as(concat!(
                    "INSERT INTO users (email, password_hash, display_name, native_languages, \
                     learning_languages, role, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
                    $crate::sql::user_cols!()
                ))
                .bind(&u.email)
                .bind(&u.password_hash)
                .bind(&u.display_name)
                .bind(sqlx::types::Json(&u.native_languages))
                .bind(sqlx::types::Json(&u.learning_languages))
                .bind(u.role.as_str())
                .bind(u.now)
                .fetch_one(self.writer())
                .await?;
                row.try_into()
            }

            async fn user_by_id(
                &self,
                id: palaver_core::UserId,
            ) -> $crate::Result<Option<palaver_core::user::User>> {
                let row: Option<$crate::model::UserRow> =
                    sqlx::query_as(concat!("SELECT ", $crate::sql::user_cols!(), " FROM users WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(self.reader())
                        .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn credentials_by_email(
                &self,
                email: &str,
            ) -> $crate::Result<Option<(palaver_core::user::User, String)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::sql::user_cols!(),
                    ", users.password_hash FROM users WHERE email = $1"
                ))
                .bind(email)
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                use sqlx::{FromRow, Row};
                let hash: String = row.try_get("password_hash")?;
                Ok(Some(($crate::model::UserRow::from_row(&row)?.try_into()?, hash)))
            }

            async fn update_profile(
                &self,
                id: palaver_core::UserId,
                p: &palaver_core::user::ProfilePatch,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::user::User> {
                let row: $crate::model::UserRow = sqlx::query_as(concat!(
                    "UPDATE users SET \
                     display_name = COALESCE($2, display_name), \
                     bio = COALESCE($3, bio), \
                     native_languages = COALESCE($4, native_languages), \
                     learning_languages = COALESCE($5, learning_languages), \
                     avatar = CASE WHEN $6 THEN $7 ELSE avatar END, \
                     updated_at = $8 \
                     WHERE id = $1 RETURNING ",
                    $crate::sql::user_cols!()
                ))
                .bind(id)
                .bind(p.display_name.as_deref())
                .bind(p.bio.as_deref())
                .bind(p.native_languages.as_ref().map(sqlx::types::Json))
                .bind(p.learning_languages.as_ref().map(sqlx::types::Json))
                .bind(p.avatar.is_some())
                .bind(p.avatar.clone().flatten())
                .bind(now)
                .fetch_one(self.writer())
                .await?;
                row.try_into()
            }

            async fn set_role(
                &self,
                id: palaver_core::UserId,
                role: palaver_core::user::Role,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::user::User> {
                let row: $crate::model::UserRow = sqlx::query_as(concat!(
                    "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING ",
                    $crate::sql::user_cols!()
                ))
                .bind(id)
                .bind(role.as_str())
                .bind(now)
                .fetch_one(self.writer())
                .await?;
                row.try_into()
            }

            async fn set_suspended(
                &self,
                id: palaver_core::UserId,
                suspended: bool,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::user::User> {
                let row: $crate::model::UserRow = sqlx::query_as(concat!(
                    "UPDATE users SET is_suspended = $2, updated_at = $3 WHERE id = $1 RETURNING ",
                    $crate::sql::user_cols!()
                ))
                .bind(id)
                .bind(suspended)
                .bind(now)
                .fetch_one(self.writer())
                .await?;
                row.try_into()
            }

            async fn set_password_hash(
                &self,
                id: palaver_core::UserId,
                hash: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(hash)
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn touch_last_seen(
                &self,
                id: palaver_core::UserId,
                at: palaver_core::time::Timestamp,
            ) -> $crate::Result<()> {
                sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn profile(
                &self,
                viewer: palaver_core::UserId,
                id: palaver_core::UserId,
            ) -> $crate::Result<Option<$crate::Profile>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::sql::user_cols!(),
                    ", users.followers_count, users.following_count, users.moments_count, \
                     EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND following_id = users.id) AS is_following, \
                     EXISTS (SELECT 1 FROM follows WHERE follower_id = users.id AND following_id = $1) AS follows_you, \
                     EXISTS (SELECT 1 FROM blocks WHERE blocker_id = $1 AND blocked_id = users.id) AS is_blocked, \
                     EXISTS (SELECT 1 FROM blocks WHERE blocker_id = users.id AND blocked_id = $1) AS blocked_you \
                     FROM users WHERE users.id = $2"
                ))
                .bind(viewer)
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                use sqlx::{FromRow, Row};
                Ok(Some($crate::Profile {
                    user: $crate::model::UserRow::from_row(&row)?.try_into()?,
                    followers_count: row.try_get("followers_count")?,
                    following_count: row.try_get("following_count")?,
                    moments_count: row.try_get("moments_count")?,
                    is_following: row.try_get("is_following")?,
                    follows_you: row.try_get("follows_you")?,
                    is_blocked: row.try_get("is_blocked")?,
                    blocked_you: row.try_get("blocked_you")?,
                }))
            }

            async fn blocked_either(&self, a: palaver_core::UserId, b: palaver_core::UserId) -> $crate::Result<bool> {
                let (blocked,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2) \
                     OR (blocker_id = $2 AND blocked_id = $1))",
                )
                .bind(a)
                .bind(b)
                .fetch_one(self.reader())
                .await?;
                Ok(blocked)
            }
        }
    };
}
pub(crate) use impl_user_store;
