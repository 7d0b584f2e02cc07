//! `MomentStore` in SQL: moments, feeds, likes, comments and shares.
//!
//! Feeds are keyset-paginated by moment id (ids only grow, so a page never
//! repeats or skips an item while new moments arrive, and page 500 costs
//! what page 1 costs). Each feed page is one query: a CTE picks the page's
//! ids through the indexes, the outer select adds authors, counts and the
//! viewer's flags. Media and the originals of reposts take one query each
//! for the whole page. No query per item.

macro_rules! impl_moment_store {
    ($store:ty) => {
        /// Marks a moment deleted or hidden if it is active, uncounting it
        /// from its author's profile and, for a repost, its share. True when
        /// it was active.
        async fn deactivate_moment(
            conn: &mut <Db as sqlx::Database>::Connection,
            id: palaver_core::Id,
            hide: bool,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<bool> {
            let sql = if hide {
                "UPDATE moments SET hidden_at = $2 WHERE id = $1 AND is_active RETURNING user_id"
            } else {
                "UPDATE moments SET deleted_at = $2 WHERE id = $1 AND is_active RETURNING user_id"
            };
            let author: Option<i64> = sqlx::query_scalar(sql).bind(id).bind(now).fetch_optional(&mut *conn).await?;
            let Some(author) = author else { return Ok(false) };
            sqlx::query("UPDATE users SET moments_count = moments_count - 1 WHERE id = $1")
                .bind(author)
                .execute(&mut *conn)
                .await?;
            let original: Option<i64> =
                sqlx::query_scalar("DELETE FROM moment_shares WHERE repost_id = $1 RETURNING moment_id")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(original) = original {
                sqlx::query("UPDATE moments SET shares_count = shares_count - 1 WHERE id = $1")
                    .bind(original)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(true)
        }

        /// Marks a comment and its replies deleted or hidden and uncounts
        /// those that were active. Returns how many were.
        async fn deactivate_comment(
            conn: &mut <Db as sqlx::Database>::Connection,
            id: palaver_core::Id,
            hide: bool,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<u64> {
            let sql = if hide {
                "UPDATE moment_comments SET hidden_at = $2 \
                 WHERE (id = $1 OR parent_comment_id = $1) AND is_active RETURNING moment_id"
            } else {
                "UPDATE moment_comments SET deleted_at = $2 \
                 WHERE (id = $1 OR parent_comment_id = $1) AND is_active RETURNING moment_id"
            };
            let moments: Vec<i64> = sqlx::query_scalar(sql).bind(id).bind(now).fetch_all(&mut *conn).await?;
            if let Some(moment) = moments.first() {
                let n = i64::try_from(moments.len()).unwrap_or(i64::MAX);
                sqlx::query("UPDATE moments SET comments_count = comments_count - $2 WHERE id = $1")
                    .bind(moment)
                    .bind(n)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(moments.len() as u64)
        }

        /// Counts one share of `moment` (a repost now; a share into a chat
        /// later, from the chat store's own transaction): the share row and
        /// `shares_count` change together. NotFound when the moment is not
        /// an active public moment.
        #[allow(dead_code, clippy::too_many_arguments)]
        pub(crate) async fn record_share(
            conn: &mut <Db as sqlx::Database>::Connection,
            moment: palaver_core::Id,
            user: palaver_core::UserId,
            target: &str,
            repost_id: Option<palaver_core::Id>,
            room_id: Option<palaver_core::Id>,
            message_id: Option<palaver_core::Id>,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<()> {
            let counted = sqlx::query(
                "UPDATE moments SET shares_count = shares_count + 1 \
                 WHERE id = $1 AND is_active AND visibility = 'public'",
            )
            .bind(moment)
            .execute(&mut *conn)
            .await?;
            if counted.rows_affected() == 0 {
                return Err($crate::StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO moment_shares (moment_id, user_id, target, repost_id, room_id, message_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(moment)
            .bind(user)
            .bind(target)
            .bind(repost_id)
            .bind(room_id)
            .bind(message_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        impl $store {
            /// Moments among `ids` visible to `viewer`, without media or originals.
            async fn moment_rows(
                &self,
                viewer: palaver_core::UserId,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<palaver_core::social::Moment>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    concat!(
                        "SELECT ",
                        $crate::sql::moment_cols!(),
                        " FROM moments m JOIN users au ON au.id = m.user_id WHERE m.id IN ({}) AND ",
                        $crate::sql::moment_visible!(),
                        " ORDER BY m.id DESC"
                    ),
                    $crate::sql::placeholders(2, ids.len())
                );
                let mut query = sqlx::query_as::<_, $crate::model::MomentRow>(sqlx::AssertSqlSafe(sql)).bind(viewer);
                for id in ids {
                    query = query.bind(*id);
                }
                query.fetch_all(self.reader()).await?.into_iter().map(TryInto::try_into).collect()
            }

            /// Fills in media and the originals of reposts: at most two
            /// more queries, whatever the number of moments.
            async fn complete_moments(
                &self,
                viewer: palaver_core::UserId,
                mut moments: Vec<palaver_core::social::Moment>,
            ) -> $crate::Result<Vec<palaver_core::social::Moment>> {
                use std::collections::HashMap;
                let mut originals_wanted: Vec<i64> = moments.iter().filter_map(|m| m.shared_moment_id).collect();
                originals_wanted.sort_unstable();
                originals_wanted.dedup();
                let originals = self.moment_rows(viewer, &originals_wanted).await?;
                let mut all_ids: Vec<i64> = moments.iter().map(|m| m.id).collect();
                all_ids.extend(originals.iter().map(|m| m.id));
                all_ids.sort_unstable();
                all_ids.dedup();
                let mut media: HashMap<i64, Vec<palaver_core::social::MediaRef>> = HashMap::new();
                if !all_ids.is_empty() {
                    let sql = format!(
                        "SELECT mm.moment_id, md.id, md.kind, md.content_type, md.size_bytes, md.width, md.height, \
                         md.duration_ms, md.thumbnail_key IS NOT NULL AS has_thumbnail \
                         FROM moment_media mm JOIN media md ON md.id = mm.media_id \
                         WHERE mm.moment_id IN ({}) ORDER BY mm.moment_id, mm.position",
                        $crate::sql::placeholders(1, all_ids.len())
                    );
                    let mut query = sqlx::query_as::<_, $crate::model::MomentMediaRow>(sqlx::AssertSqlSafe(sql));
                    for id in &all_ids {
                        query = query.bind(*id);
                    }
                    for row in query.fetch_all(self.reader()).await? {
                        media.entry(row.moment_id).or_default().push(palaver_core::social::MediaRef {
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
                        });
                    }
                }
                let mut originals: HashMap<i64, palaver_core::social::Moment> = originals
                    .into_iter()
                    .map(|mut m| {
                        m.media = media.get(&m.id).cloned().unwrap_or_default();
                        (m.id, m)
                    })
                    .collect();
                for moment in &mut moments {
                    moment.media = media.remove(&moment.id).unwrap_or_default();
                    if let Some(original) = moment.shared_moment_id {
                        moment.shared_moment = originals.get(&original).cloned().map(Box::new);
                    }
                }
                originals.clear();
                Ok(moments)
            }
        }

        #[async_trait::async_trait]
        impl $crate::MomentStore for $store {
            async fn create_moment(&self, new: &$crate::NewMoment) -> $crate::Result<palaver_core::Id> {
                let mut tx = self.writer().begin().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO moments (user_id, content, visibility, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) RETURNING id",
                )
                .bind(new.user_id)
                .bind(&new.content)
                .bind(new.visibility.as_str())
                .bind(new.now)
                .fetch_one(&mut *tx)
                .await?;
                for (position, media_id) in new.media_ids.iter().enumerate() {
                    let attached = sqlx::query(
                        "UPDATE media SET attached_at = COALESCE(attached_at, $3) \
                         WHERE id = $1 AND owner_id = $2 AND ready_at IS NOT NULL",
                    )
                    .bind(media_id)
                    .bind(new.user_id)
                    .bind(new.now)
                    .execute(&mut *tx)
                    .await?;
                    if attached.rows_affected() == 0 {
                        return Err($crate::StoreError::Check(format!("media {media_id} is not the author's")));
                    }
                    sqlx::query("INSERT INTO moment_media (moment_id, media_id, position) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(media_id)
                        .bind(i32::try_from(position).unwrap_or(i32::MAX))
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("UPDATE users SET moments_count = moments_count + 1 WHERE id = $1")
                    .bind(new.user_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn moment_access(
                &self,
                viewer: palaver_core::UserId,
                id: palaver_core::Id,
            ) -> $crate::Result<Option<$crate::MomentAccess>> {
                let row: Option<(i64, i64, String, Option<i64>, bool)> = sqlx::query_as(concat!(
                    "SELECT m.id, m.user_id, m.visibility, m.shared_moment_id, ",
                    $crate::sql::moment_visible!(),
                    " AS visible FROM moments m WHERE m.id = $2 AND m.is_active"
                ))
                .bind(viewer)
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                let Some((id, author_id, visibility, shared_moment_id, visible)) = row else { return Ok(None) };
                Ok(Some($crate::MomentAccess {
                    id,
                    author_id,
                    visibility: visibility.parse().map_err($crate::StoreError::Corrupt)?,
                    shared_moment_id,
                    visible,
                }))
            }

            async fn moments_for(
                &self,
                viewer: palaver_core::UserId,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<palaver_core::social::Moment>> {
                let rows = self.moment_rows(viewer, ids).await?;
                self.complete_moments(viewer, rows).await
            }

            async fn feed(
                &self,
                viewer: palaver_core::UserId,
                kind: $crate::FeedKind,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<palaver_core::social::Moment>> {
                // The outer select: the page's moments with everything shown.
                macro_rules! outer {
                    () => {
                        concat!(
                            " SELECT ",
                            $crate::sql::moment_cols!(),
                            " FROM page JOIN moments m ON m.id = page.id JOIN users au ON au.id = m.user_id \
                             ORDER BY m.id DESC"
                        )
                    };
                }
                // Public moments, newest first, through moments_public_feed.
                macro_rules! public_ids {
                    () => {
                        concat!(
                            "SELECT m.id FROM moments m WHERE m.is_active AND m.visibility = 'public' AND m.id < $2 \
                             AND (SELECT NOT su.is_suspended FROM users su WHERE su.id = m.user_id) AND ",
                            $crate::sql::moment_not_blocked!(),
                            " ORDER BY m.id DESC LIMIT $3"
                        )
                    };
                }
                let rows: Vec<$crate::model::MomentRow> = match kind {
                    $crate::FeedKind::Public => {
                        sqlx::query_as(concat!("WITH page AS (", public_ids!(), ")", outer!()))
                            .bind(viewer)
                            .bind(page.below())
                            .bind(page.limit)
                            .fetch_all(self.reader())
                            .await?
                    }
                    $crate::FeedKind::User(user) => {
                        sqlx::query_as(concat!(
                            "WITH page AS (SELECT m.id FROM moments m \
                             WHERE m.user_id = $4 AND m.id < $2 AND ",
                            $crate::sql::moment_visible!(),
                            " ORDER BY m.id DESC LIMIT $3)",
                            outer!()
                        ))
                        .bind(viewer)
                        .bind(page.below())
                        .bind(page.limit)
                        .bind(user)
                        .fetch_all(self.reader())
                        .await?
                    }
                    $crate::FeedKind::Home => {
                        // Three index-ordered branches, each limited, merged:
                        // public moments; the viewer's own; followers-only
                        // moments of the people the viewer follows.
                        sqlx::query_as(concat!(
                            "WITH page AS (SELECT id FROM (",
                            "SELECT id FROM (",
                            public_ids!(),
                            ") AS pub UNION \
                             SELECT id FROM (SELECT m.id FROM moments m WHERE m.user_id = $1 AND m.is_active \
                             AND m.id < $2 ORDER BY m.id DESC LIMIT $3) AS own UNION \
                             SELECT id FROM (SELECT m.id FROM follows f JOIN moments m ON m.user_id = f.following_id \
                             WHERE f.follower_id = $1 AND m.is_active AND m.visibility = 'followers' AND m.id < $2 \
                             AND (SELECT NOT su.is_suspended FROM users su WHERE su.id = m.user_id) AND ",
                            $crate::sql::moment_not_blocked!(),
                            " ORDER BY m.id DESC LIMIT $3) AS fol",
                            ") AS merged ORDER BY id DESC LIMIT $3)",
                            outer!()
                        ))
                        .bind(viewer)
                        .bind(page.below())
                        .bind(page.limit)
                        .fetch_all(self.reader())
                        .await?
                    }
                };
                let moments = rows.into_iter().map(TryInto::try_into).collect::<$crate::Result<Vec<_>>>()?;
                self.complete_moments(viewer, moments).await
            }

            async fn update_moment(
                &self,
                id: palaver_core::Id,
                content: Option<&str>,
                visibility: Option<palaver_core::social::Visibility>,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE moments SET content = COALESCE($2, content), visibility = COALESCE($3, visibility), \
                     is_edited = TRUE, updated_at = $4 WHERE id = $1 AND is_active",
                )
                .bind(id)
                .bind(content)
                .bind(visibility.map(|v| v.as_str()))
                .bind(now)
                .execute(self.writer())
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_moment(
                &self,
                id: palaver_core::Id,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = deactivate_moment(&mut tx, id, false, now).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn hide_moment(&self, id: palaver_core::Id, now: palaver_core::time::Timestamp) -> $crate::Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = deactivate_moment(&mut tx, id, true, now).await?;
                tx.commit().await?;
                Ok(done)
            }

            async fn like_moment(
                &self,
                user: palaver_core::UserId,
                moment: palaver_core::Id,
                op: $crate::LikeOp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::LikeOutcome> {
                let mut tx = self.writer().begin().await?;
                let outcome = set_like(
                    &mut tx,
                    "INSERT INTO moment_likes (user_id, moment_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    "DELETE FROM moment_likes WHERE user_id = $1 AND moment_id = $2",
                    "UPDATE moments SET likes_count = likes_count + $2 WHERE id = $1 RETURNING likes_count",
                    "SELECT likes_count FROM moments WHERE id = $1",
                    user,
                    moment,
                    op,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(outcome)
            }

            async fn share_to_feed(
                &self,
                user: palaver_core::UserId,
                original: palaver_core::Id,
                content: &str,
                visibility: palaver_core::social::Visibility,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<palaver_core::Id> {
                let mut tx = self.writer().begin().await?;
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO moments (user_id, content, visibility, shared_moment_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                )
                .bind(user)
                .bind(content)
                .bind(visibility.as_str())
                .bind(original)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                record_share(&mut tx, original, user, "feed", Some(id), None, None, now).await?;
                sqlx::query("UPDATE users SET moments_count = moments_count + 1 WHERE id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn comment_access(&self, id: palaver_core::Id) -> $crate::Result<Option<$crate::CommentAccess>> {
                let row: Option<(i64, i64, i64, Option<i64>, bool)> = sqlx::query_as(
                    "SELECT id, moment_id, user_id, parent_comment_id, is_active FROM moment_comments WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?;
                Ok(row.map(|(id, moment_id, author_id, parent_comment_id, active)| $crate::CommentAccess {
                    id,
                    moment_id,
                    author_id,
                    parent_comment_id,
                    active,
                }))
            }

            async fn create_comment(&self, c: &$crate::NewComment) -> $crate::Result<palaver_core::Id> {
                let mut tx = self.writer().begin().await?;
                let counted =
                    sqlx::query("UPDATE moments SET comments_count = comments_count + 1 WHERE id = $1 AND is_active")
                        .bind(c.moment_id)
                        .execute(&mut *tx)
                        .await?;
                if counted.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                // A reply goes in only under a live top-level comment of
                // the same moment (checked again here, inside the write).
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO moment_comments (moment_id, user_id, parent_comment_id, content, created_at, \
                     updated_at) SELECT $1, $2, $3, $4, $5, $5 WHERE $3 IS NULL OR EXISTS (SELECT 1 FROM \
                     moment_comments p WHERE p.id = $3 AND p.moment_id = $1 AND p.parent_comment_id IS NULL \
                     AND p.is_active) RETURNING id",
                )
                .bind(c.moment_id)
                .bind(c.user_id)
                .bind(c.parent_comment_id)
                .bind(&c.content)
                .bind(c.now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else { return Err($crate::StoreError::NotFound) };
                tx.commit().await?;
                Ok(id)
            }

            async fn comments_by_ids(
                &self,
                viewer: palaver_core::UserId,
                ids: &[palaver_core::Id],
            ) -> $crate::Result<Vec<palaver_core::social::Comment>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    concat!(
                        "SELECT ",
                        $crate::sql::comment_cols!(),
                        " FROM moment_comments c JOIN users cu ON cu.id = c.user_id WHERE c.id IN ({}) AND ",
                        $crate::sql::comment_visible!(),
                        " ORDER BY c.id"
                    ),
                    $crate::sql::placeholders(2, ids.len())
                );
                let mut query = sqlx::query_as::<_, $crate::model::CommentRow>(sqlx::AssertSqlSafe(sql)).bind(viewer);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(self.reader()).await?.into_iter().map(Into::into).collect())
            }

            async fn comments(
                &self,
                viewer: palaver_core::UserId,
                moment: palaver_core::Id,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<palaver_core::social::Comment>> {
                let rows: Vec<$crate::model::CommentRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::comment_cols!(),
                    " FROM moment_comments c JOIN users cu ON cu.id = c.user_id \
                     WHERE c.moment_id = $2 AND c.parent_comment_id IS NULL AND c.id > $3 AND ",
                    $crate::sql::comment_visible!(),
                    " ORDER BY c.id LIMIT $4"
                ))
                .bind(viewer)
                .bind(moment)
                .bind(page.above())
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                let mut top: Vec<palaver_core::social::Comment> = rows.into_iter().map(Into::into).collect();
                if top.is_empty() {
                    return Ok(top);
                }
                // The first replies of every comment on the page, in one query.
                let sql = format!(
                    concat!(
                        "SELECT id, moment_id, parent_comment_id, user_id, display_name, avatar, content, \
                         likes_count, created_at, is_liked FROM (SELECT ",
                        $crate::sql::comment_cols!(),
                        ", ROW_NUMBER() OVER (PARTITION BY c.parent_comment_id ORDER BY c.id) AS rn \
                         FROM moment_comments c JOIN users cu ON cu.id = c.user_id \
                         WHERE c.parent_comment_id IN ({}) AND ",
                        $crate::sql::comment_visible!(),
                        ") AS r WHERE rn <= $2 ORDER BY parent_comment_id, id"
                    ),
                    $crate::sql::placeholders(3, top.len())
                );
                let mut query = sqlx::query_as::<_, $crate::model::CommentRow>(sqlx::AssertSqlSafe(sql))
                    .bind(viewer)
                    .bind(palaver_core::social::limits::INLINE_REPLIES + 1);
                for c in &top {
                    query = query.bind(c.id);
                }
                let replies = query.fetch_all(self.reader()).await?;
                let mut by_parent: std::collections::HashMap<i64, Vec<palaver_core::social::Comment>> =
                    std::collections::HashMap::new();
                for reply in replies {
                    if let Some(parent) = reply.parent_comment_id {
                        by_parent.entry(parent).or_default().push(reply.into());
                    }
                }
                let inline = usize::try_from(palaver_core::social::limits::INLINE_REPLIES).unwrap_or(20);
                for comment in &mut top {
                    let mut replies = by_parent.remove(&comment.id).unwrap_or_default();
                    comment.has_more_replies = replies.len() > inline;
                    replies.truncate(inline);
                    comment.replies = replies;
                }
                Ok(top)
            }

            async fn replies(
                &self,
                viewer: palaver_core::UserId,
                parent: palaver_core::Id,
                page: $crate::PageRequest,
            ) -> $crate::Result<Vec<palaver_core::social::Comment>> {
                let rows: Vec<$crate::model::CommentRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    $crate::sql::comment_cols!(),
                    " FROM moment_comments c JOIN users cu ON cu.id = c.user_id \
                     WHERE c.parent_comment_id = $2 AND c.id > $3 AND ",
                    $crate::sql::comment_visible!(),
                    " ORDER BY c.id LIMIT $4"
                ))
                .bind(viewer)
                .bind(parent)
                .bind(page.above())
                .bind(page.limit)
                .fetch_all(self.reader())
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn delete_comment(&self, id: palaver_core::Id, now: palaver_core::time::Timestamp) -> $crate::Result<u64> {
                let mut tx = self.writer().begin().await?;
                let n = deactivate_comment(&mut tx, id, false, now).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn hide_comment(&self, id: palaver_core::Id, now: palaver_core::time::Timestamp) -> $crate::Result<u64> {
                let mut tx = self.writer().begin().await?;
                let n = deactivate_comment(&mut tx, id, true, now).await?;
                tx.commit().await?;
                Ok(n)
            }

            async fn like_comment(
                &self,
                user: palaver_core::UserId,
                comment: palaver_core::Id,
                op: $crate::LikeOp,
                now: palaver_core::time::Timestamp,
            ) -> $crate::Result<$crate::LikeOutcome> {
                let mut tx = self.writer().begin().await?;
                let outcome = set_like(
                    &mut tx,
                    "INSERT INTO comment_likes (user_id, comment_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    "DELETE FROM comment_likes WHERE user_id = $1 AND comment_id = $2",
                    "UPDATE moment_comments SET likes_count = likes_count + $2 WHERE id = $1 RETURNING likes_count",
                    "SELECT likes_count FROM moment_comments WHERE id = $1",
                    user,
                    comment,
                    op,
                    now,
                )
                .await?;
                tx.commit().await?;
                Ok(outcome)
            }
        }

        /// One like change inside a transaction: the like row and the
        /// counter move together, and only when the row really changed, so
        /// the counter always equals the rows under any concurrency.
        #[allow(clippy::too_many_arguments)]
        async fn set_like(
            conn: &mut <Db as sqlx::Database>::Connection,
            insert: &'static str,
            delete: &'static str,
            bump: &'static str,
            read: &'static str,
            user: palaver_core::UserId,
            target: palaver_core::Id,
            op: $crate::LikeOp,
            now: palaver_core::time::Timestamp,
        ) -> $crate::Result<$crate::LikeOutcome> {
            async fn bump_by(
                conn: &mut <Db as sqlx::Database>::Connection,
                bump: &'static str,
                target: palaver_core::Id,
                by: i64,
            ) -> $crate::Result<i64> {
                Ok(sqlx::query_scalar(bump).bind(target).bind(by).fetch_one(&mut *conn).await?)
            }
            async fn unlike(
                conn: &mut <Db as sqlx::Database>::Connection,
                delete: &'static str,
                bump: &'static str,
                read: &'static str,
                user: palaver_core::UserId,
                target: palaver_core::Id,
            ) -> $crate::Result<$crate::LikeOutcome> {
                let deleted = sqlx::query(delete).bind(user).bind(target).execute(&mut *conn).await?;
                if deleted.rows_affected() > 0 {
                    let likes_count = bump_by(conn, bump, target, -1).await?;
                    return Ok($crate::LikeOutcome { liked: false, changed: true, likes_count });
                }
                let likes_count: i64 = sqlx::query_scalar(read).bind(target).fetch_one(&mut *conn).await?;
                Ok($crate::LikeOutcome { liked: false, changed: false, likes_count })
            }
            if op == $crate::LikeOp::Clear {
                return unlike(conn, delete, bump, read, user, target).await;
            }
            let inserted = sqlx::query(insert).bind(user).bind(target).bind(now).execute(&mut *conn).await?;
            if inserted.rows_affected() > 0 {
                let likes_count = bump_by(conn, bump, target, 1).await?;
                return Ok($crate::LikeOutcome { liked: true, changed: true, likes_count });
            }
            if op == $crate::LikeOp::Toggle {
                return unlike(conn, delete, bump, read, user, target).await;
            }
            let likes_count: i64 = sqlx::query_scalar(read).bind(target).fetch_one(&mut *conn).await?;
            Ok($crate::LikeOutcome { liked: true, changed: false, likes_count })
        }
    };
}
pub(crate) use impl_moment_store;
