//! The SQLite store: one file, zero setup.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{Backend, ConnectOptions, Result, Store, StoreError};

/// SQLite with WAL: many readers, and one writer connection so that write
/// transactions wait their turn in the pool rather than failing with
/// `SQLITE_BUSY` (SQLite allows one writer at a time anyway).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file named by `options.url`.
    pub async fn connect(options: &ConnectOptions) -> Result<Self> {
        if options.url.contains(":memory:") || options.url.contains("mode=memory") {
            return Err(StoreError::Config(
                "in-memory SQLite is not supported: readers and the writer must share a file".into(),
            ));
        }
        let base = SqliteConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Config(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a process crash; an OS crash may lose the
            // last commits. Production runs on PostgreSQL.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await?;
        Ok(Self { reader, writer })
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The driver the shared SQL (`crate::sql`) is compiled for here.
type Db = sqlx::Sqlite;

crate::sql::impl_all_stores!(SqliteStore);

/// Group commit on SQLite: a batch of messages (any rooms) stored with a
/// fixed number of statements, whatever its size, the rows passed as one
/// JSON array to `json_each` (SQLite has no array parameters). Statements
/// are not free here even in process: the driver runs each call on the
/// connection's own thread, a hand-off and two thread wake-ups per call,
/// which made three statements per message the larger part of a send's
/// cost. So a batch is four calls whatever its size: begin, one query
/// (heads, checks and retries), the four writes sent as one multi-statement
/// query, commit. The writer connection is the only writer, so the heads
/// read at the start cannot move before the commit. See `sql/chat.rs`,
/// "Group commit", and `batch.rs`.
mod batch {
    use std::collections::HashMap;

    use chrono::SecondsFormat;
    use palaver_core::Id;
    use palaver_core::time::Timestamp;
    use serde_json::{Value, json};

    use super::SqliteStore;
    use crate::batch::{Check, Writes};
    use crate::chat_model::MessageRow;
    use crate::{NewMessage, Result, SendResult, StoreError, StoredMessage};

    /// A time as the driver stores it (so stored times compare as text).
    fn at(t: &Timestamp) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }

    fn json_text(v: &Value) -> Result<String> {
        serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("a batch does not encode: {e}")))
    }

    impl SqliteStore {
        /// Stores `batch` in one transaction; the results in batch order.
        /// Keys repeated within the batch were removed by the caller.
        pub(crate) async fn send_batch(&self, batch: &[&NewMessage]) -> Result<Vec<SendResult>> {
            let mut tx = self.writer().begin().await?;
            // 1. Per message, by index: its room's head (when active), who
            //    may send, and retries.
            let probes: Vec<Value> =
                batch.iter().map(|m| json!({"r": m.room_id, "s": m.sender.id, "k": m.client_msg_id})).collect();
            // (index, room head, member, blocked, original)
            type Probed = (i64, Option<i64>, bool, bool, Option<Id>);
            let rows: Vec<Probed> = sqlx::query_as(concat!(
                "SELECT t.i, (SELECT h.last_seq FROM chat_rooms h WHERE h.id = t.room_id AND h.is_active), ",
                crate::sql::chat::batch_checks!(),
                " FROM (SELECT key AS i, value ->> 'r' AS room_id, value ->> 's' AS sender_id, value ->> 'k' AS key \
                   FROM json_each($1)) AS t"
            ))
            .bind(json_text(&Value::Array(probes))?)
            .fetch_all(&mut *tx)
            .await?;
            let mut heads: HashMap<Id, i64> = HashMap::new();
            let mut checks: Vec<Option<Check>> = vec![None; batch.len()];
            for (i, head, member, blocked, original) in rows {
                let Some((m, slot)) = usize::try_from(i).ok().and_then(|i| batch.get(i).zip(checks.get_mut(i))) else {
                    continue;
                };
                if let Some(head) = head {
                    heads.insert(m.room_id, head);
                }
                *slot = Some(Check { member, blocked, original });
            }

            // 2. Seqs, in batch order per room, and the bodies sealed to them.
            let fates = crate::batch::decide(batch, &mut heads, checks)?;

            // 3. The rooms' new heads, the messages, the senders'
            //    watermarks and attached media: one statement each, sent
            //    together (`$n` names the same argument in every statement).
            let writes = Writes::of(batch, &fates);
            let mut ids: HashMap<(Id, i64), Id> = HashMap::new();
            if !writes.rows.is_empty() {
                let heads: Vec<Value> =
                    writes.heads.iter().map(|(id, (seq, t))| json!({"id": id, "seq": seq, "at": at(t)})).collect();
                let rows: Vec<Value> = writes
                    .rows
                    .iter()
                    .map(|r| {
                        json!({
                            "r": r.m.room_id, "s": r.m.sender.id, "q": r.seq, "k": r.m.client_msg_id,
                            "t": r.m.message_type.as_str(), "b": hex::encode(r.body), "kid": r.body_key_id,
                            "md": r.m.media_id, "rp": r.m.reply_to, "sm": r.m.shared_moment_id, "at": at(&r.m.now),
                        })
                    })
                    .collect();
                let marks: Vec<Value> = writes
                    .watermarks
                    .iter()
                    .map(|((room, user), seq)| json!({"r": room, "u": user, "q": seq}))
                    .collect();
                // Attached media is kept by the upload clean-up.
                let media: Vec<Value> = writes.media.iter().map(|(id, t)| json!({"id": id, "at": at(t)})).collect();
                let inserted: Vec<(Id, Id, i64)> = sqlx::query_as(
                    "UPDATE chat_rooms SET last_seq = h.seq, last_message_at = h.at, updated_at = h.at \
                     FROM (SELECT value ->> 'id' AS id, value ->> 'seq' AS seq, value ->> 'at' AS at \
                       FROM json_each($1)) AS h WHERE chat_rooms.id = h.id; \
                     INSERT INTO messages (room_id, sender_id, seq, client_msg_id, message_type, body, body_key_id, \
                       media_id, reply_to_id, shared_moment_id, created_at, updated_at) \
                     SELECT value ->> 'r', value ->> 's', value ->> 'q', value ->> 'k', value ->> 't', \
                       unhex(value ->> 'b'), value ->> 'kid', value ->> 'md', value ->> 'rp', value ->> 'sm', \
                       value ->> 'at', value ->> 'at' \
                     FROM json_each($2) ORDER BY key \
                     RETURNING id, room_id, seq; \
                     UPDATE chat_participants SET last_read_seq = w.seq \
                     FROM (SELECT value ->> 'r' AS room_id, value ->> 'u' AS user_id, value ->> 'q' AS seq \
                       FROM json_each($3)) AS w \
                     WHERE chat_participants.room_id = w.room_id AND chat_participants.user_id = w.user_id \
                       AND chat_participants.last_read_seq < w.seq; \
                     UPDATE media SET attached_at = a.at \
                     FROM (SELECT value ->> 'id' AS id, value ->> 'at' AS at FROM json_each($4)) AS a \
                     WHERE media.id = a.id AND media.attached_at IS NULL",
                )
                .bind(json_text(&Value::Array(heads))?)
                .bind(json_text(&Value::Array(rows))?)
                .bind(json_text(&Value::Array(marks))?)
                .bind(json_text(&Value::Array(media))?)
                .fetch_all(&mut *tx)
                .await?;
                ids.extend(inserted.into_iter().map(|(id, room, seq)| ((room, seq), id)));
            }

            // 4. The originals of retries.
            let originals = crate::batch::originals(&fates);
            let originals: HashMap<Id, StoredMessage> = if originals.is_empty() {
                HashMap::new()
            } else {
                let rows: Vec<MessageRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    crate::sql::chat::message_cols!(),
                    " FROM messages m JOIN users su ON su.id = m.sender_id \
                      WHERE m.id IN (SELECT value FROM json_each($1))"
                ))
                .bind(json_text(&json!(originals))?)
                .fetch_all(&mut *tx)
                .await?;
                rows.into_iter().map(|r| StoredMessage::try_from(r).map(|m| (m.id, m))).collect::<Result<_>>()?
            };
            tx.commit().await?;
            crate::batch::results(batch, fates, &ids, &originals)
        }

        /// (room, user) of every participant of `rooms`, by room and user.
        pub(crate) async fn participant_pairs(&self, rooms: &[Id]) -> Result<Vec<(Id, palaver_core::UserId)>> {
            Ok(sqlx::query_as(
                "SELECT room_id, user_id FROM chat_participants WHERE room_id IN (SELECT value FROM json_each($1)) \
                 ORDER BY room_id, user_id",
            )
            .bind(json_text(&json!(rooms))?)
            .fetch_all(self.reader())
            .await?)
        }
    }
}
