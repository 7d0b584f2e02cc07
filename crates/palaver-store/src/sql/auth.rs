//! `AuthStore` in SQL.

macro_rules! impl_auth_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::AuthStore for $store {
            async fn create_session(
                &self,
                session_id: &str,
                user_id: palaver_core::UserId,
                token: &$crate::NewRefreshToken,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO auth_sessions (id, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(session_id)
                .bind(user_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&token.hash)
                .bind(session_id)
                .bind(now)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn rotate_refresh_token(
                &self,
                presented_hash: &str,
                next: &$crate::NewRefreshToken,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::RotateOutcome> {
                let mut tx = self.writer().begin().await?;
                // Claim the token: only one presenter can flip used_at from
                // NULL, so concurrent refreshes with one token cannot both win.
                let claimed: Option<(String, i64)> = sqlx::query_as(
                    "UPDATE refresh_tokens SET used_at = $2 \
                     WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
                     AND session_id IN (SELECT id FROM auth_sessions WHERE revoked_at IS NULL) \
                     RETURNING session_id, (SELECT user_id FROM auth_sessions WHERE auth_sessions.id = refresh_tokens.session_id)",
                )
                .bind(presented_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((session_id, user_id)) = claimed {
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&next.hash)
                    .bind(&session_id)
                    .bind(now)
                    .bind(next.expires_at)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE auth_sessions SET last_used_at = $2 WHERE id = $1")
                        .bind(&session_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok($crate::RotateOutcome::Rotated { user_id, session_id });
                }
                let spent: Option<(String, bool)> = sqlx::query_as(
                    "SELECT session_id, used_at IS NOT NULL FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(presented_hash)
                .fetch_optional(&mut *tx)
                .await?;
                let outcome = match spent {
                    Some((session_id, true)) => {
                        sqlx::query(
                            "UPDATE auth_sessions SET revoked_at = $2, revoke_reason = 'refresh_token_reuse' \
                             WHERE id = $1 AND revoked_at IS NULL",
                        )
                        .bind(&session_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        $crate::RotateOutcome::Reused { session_id }
                    }
                    _ => $crate::RotateOutcome::Invalid,
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn revoke_session(
                &self,
                session_id: &str,
                reason: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE auth_sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(session_id)
                .bind(now)
                .bind(reason)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_user_sessions(
                &self,
                user_id: palaver_core::UserId,
                reason: &str,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE auth_sessions SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL",
                )
                .bind(user_id)
                .bind(now)
                .bind(reason)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected())
            }

            async fn session_user(
                &self,
                user_id: palaver_core::UserId,
                session_id: &str,
            ) -> $crate::Result<Option<(palaver_core::user::User, $crate::SessionState)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::sql::user_cols!(),
                    ", auth_sessions.revoked_at IS NULL AS session_active \
                     FROM users JOIN auth_sessions ON auth_sessions.user_id = users.id \
                     WHERE users.id = $1 AND auth_sessions.id = $2"
                ))
                .bind(user_id)
                .bind(session_id)
                .fetch_optional(self.reader())
                .await?;
                let Some(row) = row else { return Ok(None) };
                use sqlx::{FromRow, Row};
                let user: palaver_core::user::User = $crate::model::UserRow::from_row(&row)?.try_into()?;
                let active: bool = row.try_get("session_active")?;
                let state = if active { $crate::SessionState::Active } else { $crate::SessionState::Revoked };
                Ok(Some((user, state)))
            }
        }
    };
}
pub(crate) use impl_auth_store;
