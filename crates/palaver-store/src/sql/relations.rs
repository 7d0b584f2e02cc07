//! `RelationStore` in SQL: follows and blocks.
//!
//! A follow and a block between the same two users could race (a follow
//! slipping in after the block removed follows). Both transactions
//! therefore first lock the two users' rows, lower id first, with a no-op
//! update: they then run one after the other, and each sees the other's
//! effect.

macro_rules! impl_relation_store {
    ($store:ty) => {
        async fn lock_pair(
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

        /// Removes a follow and uncounts it; true when there was one.
        async fn remove_follow(
            conn: &mut <Db as sqlx::Database>::Connection,
            follower: palaver_core::UserId,
            followee: palaver_core::UserId,
        ) -> $crate::Result<bool> {
            let deleted = sqlx::query("DELETE FROM follows WHERE follower_id = $1 AND following_id = $2")
                .bind(follower)
                .bind(followee)
                .execute(&mut *conn)
                .await?;
            if deleted.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("UPDATE users SET following_count = following_count - 1 WHERE id = $1")
                .bind(follower)
                .execute(&mut *conn)
                .await?;
            sqlx::query("UPDATE users SET followers_count = followers_count - 1 WHERE id = $1")
                .bind(followee)
                .execute(&mut *conn)
                .await?;
            Ok(true)
        }

        async fn remove_block(
            conn: &mut <Db as sqlx::Database>::Connection,
            blocker: palaver_core::UserId,
            blocked: palaver_core::UserId,
        ) -> $crate::Result<bool> {
            let deleted = sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
                .bind(blocker)
                .bind(blocked)
                .execute(&mut *conn)
                .await?;
            Ok(deleted.rows_affected() > 0)
        }

        impl $store {
            async fn user_list(
                &self,
                sql: &'static str,
                viewer: palaver_core::UserId,
                user: palaver_core::UserId,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::UserSummary>> {
                let rows: Vec<(i64, String, Option<String>, bool)> = sqlx::query_as(sql)
                    .bind(viewer)
                    .bind(user)
                    .bind(page.below())
                    .bind(page.limit)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, display_name, avatar, is_following)| $crate::UserSummary {
                        id,
                        display_name,
                        avatar,
                        is_following,
                    })
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::RelationStore for $store {
            async fn set_follow(
                &self,
                follower: palaver_core::UserId,
                followee: palaver_core::UserId,
                op: $crate::RelationOp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<(bool, bool)> {
                let mut tx = self.writer().begin().await?;
                lock_pair(&mut tx, follower, followee).await?;
                let outcome = if op == $crate::LikeOp::Clear {
                    (false, remove_follow(&mut tx, follower, followee).await?)
                } else {
                    let inserted = sqlx::query(
                        "INSERT INTO follows (follower_id, following_id, created_at) SELECT $1, $2, $3 \
                         WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2) \
                         OR (blocker_id = $2 AND blocked_id = $1)) ON CONFLICT DO NOTHING",
                    )
                    .bind(follower)
                    .bind(followee)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() > 0 {
                        sqlx::query("UPDATE users SET following_count = following_count + 1 WHERE id = $1")
                            .bind(follower)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("UPDATE users SET followers_count = followers_count + 1 WHERE id = $1")
                            .bind(followee)
                            .execute(&mut *tx)
                            .await?;
                        (true, true)
                    } else if op == $crate::LikeOp::Toggle {
                        (false, remove_follow(&mut tx, follower, followee).await?)
                    } else {
                        let (exists,): (bool,) = sqlx::query_as(
                            "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND following_id = $2)",
                        )
                        .bind(follower)
                        .bind(followee)
                        .fetch_one(&mut *tx)
                        .await?;
                        (exists, false)
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn set_block(
                &self,
                blocker: palaver_core::UserId,
                blocked: palaver_core::UserId,
                op: $crate::RelationOp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<(bool, bool)> {
                let mut tx = self.writer().begin().await?;
                lock_pair(&mut tx, blocker, blocked).await?;
                let outcome = if op == $crate::LikeOp::Clear {
                    (false, remove_block(&mut tx, blocker, blocked).await?)
                } else {
                    let inserted = sqlx::query(
                        "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(blocker)
                    .bind(blocked)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if inserted.rows_affected() > 0 {
                        remove_follow(&mut tx, blocker, blocked).await?;
                        remove_follow(&mut tx, blocked, blocker).await?;
                        (true, true)
                    } else if op == $crate::LikeOp::Toggle {
                        (false, remove_block(&mut tx, blocker, blocked).await?)
                    } else {
                        (true, false)
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            }

            async fn followers(
                &self,
                viewer: palaver_core::UserId,
                user: palaver_core::UserId,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::UserSummary>> {
                self.user_list(
                    "SELECT u.id, u.display_name, u.avatar, EXISTS (SELECT 1 FROM follows vf WHERE \
                     vf.follower_id = $1 AND vf.following_id = u.id) AS is_following \
                     FROM follows f JOIN users u ON u.id = f.follower_id \
                     WHERE f.following_id = $2 AND f.follower_id < $3 AND NOT u.is_suspended \
                     AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1) \
                     AND NOT EXISTS (SELECT 1 FROM blocks b2 WHERE b2.blocker_id = $1 AND b2.blocked_id = u.id) \
                     ORDER BY f.follower_id DESC LIMIT $4",
                    viewer,
                    user,
                    page,
                )
                .await
            }

            async fn following(
                &self,
                viewer: palaver_core::UserId,
                user: palaver_core::UserId,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::UserSummary>> {
                self.user_list(
                    "SELECT u.id, u.display_name, u.avatar, EXISTS (SELECT 1 FROM follows vf WHERE \
                     vf.follower_id = $1 AND vf.following_id = u.id) AS is_following \
                     FROM follows f JOIN users u ON u.id = f.following_id \
                     WHERE f.follower_id = $2 AND f.following_id < $3 AND NOT u.is_suspended \
                     AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $1) \
                     AND NOT EXISTS (SELECT 1 FROM blocks b2 WHERE b2.blocker_id = $1 AND b2.blocked_id = u.id) \
                     ORDER BY f.following_id DESC LIMIT $4",
                    viewer,
                    user,
                    page,
                )
                .await
            }

            async fn blocks(
                &self,
                user: palaver_core::UserId,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<$crate::UserSummary>> {
                self.user_list(
                    "SELECT u.id, u.display_name, u.avatar, EXISTS (SELECT 1 FROM follows vf WHERE \
                     vf.follower_id = $1 AND vf.following_id = u.id) AS is_following \
                     FROM blocks b JOIN users u ON u.id = b.blocked_id \
                     WHERE b.blocker_id = $2 AND b.blocked_id < $3 ORDER BY b.blocked_id DESC LIMIT $4",
                    user,
                    user,
                    page,
                )
                .await
            }
        }
    };
}
pub(crate) use impl_relation_store;
