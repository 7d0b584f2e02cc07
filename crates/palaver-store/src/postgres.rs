//! The PostgreSQL store: production, shared by every node.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{Backend, ConnectOptions, Result, Store, StoreError};

/// PostgreSQL through one connection pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to the database named by `options.url`, in `pg_schema` when
    /// given (created if missing).
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?;
        if let Some(schema) = &options.pg_schema {
            if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::Config(format!("bad schema name `{schema}`")));
            }
            let mut conn = connect.connect().await?;
            // The name was checked to be [A-Za-z0-9_]+ above, so quoting is safe.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// The driver the shared SQL (`crate::sql`) is compiled for here.
type Db = sqlx::Postgres;

crate::sql::impl_all_stores!(PgStore);

/// Group commit on PostgreSQL: a batch of messages (any rooms) stored with
/// a fixed number of statements, whatever its size, the rows passed as
/// arrays to `unnest`. See `sql/chat.rs`, "Group commit", and `batch.rs`.
mod batch {
    use std::collections::HashMap;

    use palaver_core::time::Timestamp;
    use palaver_core::{Id, UserId};

    use super::PgStore;
    use crate::batch::{Check, Row, Writes};
    use crate::chat_model::MessageRow;
    use crate::{NewMessage, Result, SendResult, StoredMessage};

    impl PgStore {
        /// Stores `batch` in one transaction; the results in batch order.
        /// Keys repeated within the batch were removed by the caller.
        pub(crate) async fn send_batch(&self, batch: &[&NewMessage]) -> Result<Vec<SendResult>> {
            let mut tx = self.writer().begin().await?;
            // 1. The rooms' rows, locked in id order (so two batches, here
            //    or on another node, never wait on each other in a cycle).
            //    Every other write of a message takes its room's row too.
            let mut room_ids: Vec<Id> = batch.iter().map(|m| m.room_id).collect();
            room_ids.sort_unstable();
            room_ids.dedup();
            let locked: Vec<(Id, i64)> = sqlx::query_as(
                "SELECT id, last_seq FROM chat_rooms WHERE id = ANY($1) AND is_active ORDER BY id FOR UPDATE",
            )
            .bind(&room_ids)
            .fetch_all(&mut *tx)
            .await?;
            let mut heads: HashMap<Id, i64> = locked.into_iter().collect();

            // 2. With the rows held (this statement's snapshot sees every
            //    membership change committed before; later ones wait, as
            //    they write the room's seq): who may send, and retries.
            let index: Vec<i32> = (0..batch.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
            let rooms: Vec<Id> = batch.iter().map(|m| m.room_id).collect();
            let senders: Vec<UserId> = batch.iter().map(|m| m.sender.id).collect();
            let keys: Vec<Option<&str>> = batch.iter().map(|m| m.client_msg_id.as_deref()).collect();
            let rows: Vec<(i32, bool, bool, Option<Id>)> = sqlx::query_as(concat!(
                "SELECT t.i, ",
                crate::sql::chat::batch_checks!(),
                " FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::text[]) AS t(i, room_id, sender_id, key)"
            ))
            .bind(&index)
            .bind(&rooms)
            .bind(&senders)
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?;
            let mut checks: Vec<Option<Check>> = vec![None; batch.len()];
            for (i, member, blocked, original) in rows {
                if let Some(slot) = usize::try_from(i).ok().and_then(|i| checks.get_mut(i)) {
                    *slot = Some(Check { member, blocked, original });
                }
            }

            // 3. Seqs, in batch order per room, and the bodies sealed to them.
            let fates = crate::batch::decide(batch, &mut heads, checks)?;

            // 4. The rooms' new heads, the messages, the senders'
            //    watermarks and attached media: one statement each.
            let writes = Writes::of(batch, &fates);
            let mut ids: HashMap<(Id, i64), Id> = HashMap::new();
            if !writes.rows.is_empty() {
                let (head_ids, (head_seqs, head_at)): (Vec<Id>, (Vec<i64>, Vec<Timestamp>)) =
                    writes.heads.into_iter().unzip();
                sqlx::query(
                    "UPDATE chat_rooms r SET last_seq = h.last_seq, last_message_at = h.at, updated_at = h.at \
                     FROM unnest($1::int8[], $2::int8[], $3::timestamptz[]) AS h(id, last_seq, at) WHERE r.id = h.id",
                )
                .bind(&head_ids)
                .bind(&head_seqs)
                .bind(&head_at)
                .execute(&mut *tx)
                .await?;
                let cols = InsertColumns::of(&writes.rows);
                let inserted: Vec<(Id, Id, i64)> = sqlx::query_as(
                    "INSERT INTO messages (room_id, sender_id, seq, client_msg_id, message_type, body, body_key_id, \
                     media_id, reply_to_id, shared_moment_id, created_at, updated_at) \
                     SELECT room_id, sender_id, seq, key, message_type, body, body_key_id, media_id, reply_to_id, \
                       shared_moment_id, at, at \
                     FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::bytea[], $7::text[], \
                       $8::int8[], $9::int8[], $10::int8[], $11::timestamptz[]) \
                       AS t(room_id, sender_id, seq, key, message_type, body, body_key_id, media_id, reply_to_id, \
                       shared_moment_id, at) \
                     RETURNING id, room_id, seq",
                )
                .bind(&cols.room)
                .bind(&cols.sender)
                .bind(&cols.seq)
                .bind(&cols.key)
                .bind(&cols.message_type)
                .bind(&cols.body)
                .bind(&cols.body_key_id)
                .bind(&cols.media)
                .bind(&cols.reply_to)
                .bind(&cols.shared_moment)
                .bind(&cols.at)
                .fetch_all(&mut *tx)
                .await?;
                ids.extend(inserted.into_iter().map(|(id, room, seq)| ((room, seq), id)));
                let (marks, seqs): (Vec<(Id, UserId)>, Vec<i64>) = writes.watermarks.into_iter().unzip();
                let (mark_rooms, mark_users): (Vec<Id>, Vec<UserId>) = marks.into_iter().unzip();
                sqlx::query(
                    "UPDATE chat_participants p SET last_read_seq = w.seq \
                     FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS w(room_id, user_id, seq) \
                     WHERE p.room_id = w.room_id AND p.user_id = w.user_id AND p.last_read_seq < w.seq",
                )
                .bind(&mark_rooms)
                .bind(&mark_users)
                .bind(&seqs)
                .execute(&mut *tx)
                .await?;
                if !writes.media.is_empty() {
                    // Attached media is kept by the upload clean-up.
                    let (media_ids, media_at): (Vec<Id>, Vec<Timestamp>) = writes.media.into_iter().unzip();
                    sqlx::query(
                        "UPDATE media SET attached_at = a.at FROM unnest($1::int8[], $2::timestamptz[]) AS a(id, at) \
                         WHERE media.id = a.id AND media.attached_at IS NULL",
                    )
                    .bind(&media_ids)
                    .bind(&media_at)
                    .execute(&mut *tx)
                    .await?;
                }
            }

            // 5. The originals of retries.
            let originals = crate::batch::originals(&fates);
            let originals: HashMap<Id, StoredMessage> = if originals.is_empty() {
                HashMap::new()
            } else {
                let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    crate::sql::chat::message_cols!(),
                    " FROM messages m JOIN users su ON su.id = m.sender_id WHERE m.id = ANY($1)"
                ))
                .bind(&originals)
                .fetch_all(&mut *tx)
                .await?;
                rows.into_iter().map(|r| StoredMessage::try_from(r).map(|m| (m.id, m))).collect::<Result<_>>()?
            };
            tx.commit().await?;
            crate::batch::results(batch, fates, &ids, &originals)
        }
    }

    impl PgStore {
        /// (room, user) of every participant of `rooms`, by room and user.
        pub(crate) async fn participant_pairs(&self, rooms: &[Id]) -> Result<Vec<(Id, UserId)>> {
            Ok(sqlx::query_as(
                "SELECT room_id, user_id FROM chat_participants WHERE room_id = ANY($1) ORDER BY room_id, user_id",
            )
            .bind(rooms)
            .fetch_all(self.reader())
            .await?)
        }
    }

    /// The columns of the batch insert, one array each.
    #[derive(Default)]
    struct InsertColumns<'a> {
        room: Vec<Id>,
        sender: Vec<UserId>,
        seq: Vec<i64>,
        key: Vec<Option<&'a str>>,
        message_type: Vec<&'static str>,
        body: Vec<&'a [u8]>,
        body_key_id: Vec<Option<&'a str>>,
        media: Vec<Option<Id>>,
        reply_to: Vec<Option<Id>>,
        shared_moment: Vec<Option<Id>>,
        at: Vec<Timestamp>,
    }

    impl<'a> InsertColumns<'a> {
        fn of(rows: &[Row<'a>]) -> Self {
            let mut c = Self::default();
            for r in rows {
                c.room.push(r.m.room_id);
                c.sender.push(r.m.sender.id);
                c.seq.push(r.seq);
                c.key.push(r.m.client_msg_id.as_deref());
                c.message_type.push(r.m.message_type.as_str());
                c.body.push(r.body);
                c.body_key_id.push(r.body_key_id);
                c.media.push(r.m.media_id);
                c.reply_to.push(r.m.reply_to);
                c.shared_moment.push(r.m.shared_moment_id);
                c.at.push(r.m.now);
            }
            c
        }
    }
}
