//! Group commit for chat messages: concurrent sends are queued to a writer
//! that stores a batch of them (any rooms) in one transaction, and each
//! sender gets its result only after that transaction committed: an acked
//! message is durable, as before, but a commit (the fsync on PostgreSQL,
//! the write lock and its hand-offs on SQLite) is paid once per batch
//! rather than once per message.
//!
//! Batches form by themselves: a lane's writer takes whatever is queued
//! (up to [`MAX_BATCH`]) when its previous batch has committed, never
//! waiting for more. At low load a batch is one message and costs what a
//! lone send did; under load the batch grows with the commit time, which
//! is what keeps throughput up. Rooms are spread over lanes by id (one
//! lane on SQLite, whose single writer would serialise more anyway;
//! [`PG_LANES`] on PostgreSQL), so sends to different rooms commit in
//! parallel, and the messages of one room stay in one lane, in the order
//! they were queued.
//!
//! The store decides each message on its own inside the batch (see
//! `ChatStore::send_messages`): a refused or repeated message does not
//! fail the others.
//!
//! After the commit the writer reads the participants of the batch's rooms
//! in one query, for the senders' notifications (who to notify is decided
//! per message from them); one read per batch rather than one per message.

use std::collections::HashMap;
use std::sync::Arc;

use palaver_core::{Error, Id, Result, UserId};
use palaver_store::{Backend, NewMessage, SendResult, Store};
use tokio::sync::{mpsc, oneshot};

/// Most messages one transaction stores.
pub const MAX_BATCH: usize = 256;

/// Writers on PostgreSQL (each holds at most one pool connection at a time).
pub const PG_LANES: usize = 4;

/// How many sends may wait in one lane before senders wait to queue.
const QUEUE: usize = 4096;

/// A stored message's room's participants right after the commit; `None`
/// when they could not be read (the sender reads them itself).
pub(crate) type Recipients = Option<Arc<[UserId]>>;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<(palaver_store::Result<SendResult>, Recipients)>,
}

/// The queues of the lanes' writer tasks; the tasks end when it is dropped.
pub(crate) struct MessageWriter {
    lanes: Vec<mpsc::Sender<Job>>,
}

impl MessageWriter {
    /// Starts the writer tasks (on the current Tokio runtime).
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let n = match store.backend() {
            Backend::Postgres => PG_LANES,
            Backend::Sqlite => 1,
        };
        let lanes = (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(store.clone(), rx));
                tx
            })
            .collect();
        Self { lanes }
    }

    /// Stores `message` in the next batch of its room's lane; returns once
    /// that batch has committed, with the room's participants when it was
    /// stored.
    pub(crate) async fn send(&self, message: NewMessage) -> Result<(SendResult, Recipients)> {
        let lane = usize::try_from(message.room_id.rem_euclid(self.lanes.len() as i64)).unwrap_or(0);
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Unavailable("the server is shutting down; retry".into());
        self.lanes[lane].send(Job { message, reply }).await.map_err(|_| stopped())?;
        let (result, recipients) = answer.await.map_err(|_| stopped())?;
        Ok((result?, recipients))
    }
}

async fn run(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<_>) = jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        let results = store.send_messages(&messages).await;
        let recipients = recipients(&*store, &results).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let to = match &result {
                Ok(SendResult::Sent(m)) => recipients.get(&m.room_id).cloned(),
                _ => None,
            };
            // A sender that gave up (its request timed out) learns nothing;
            // its retry finds the message by its client_msg_id.
            let _ = reply.send((result, to));
        }
    }
}

/// The participants of the rooms that got a message, by room.
async fn recipients(store: &dyn Store, results: &[palaver_store::Result<SendResult>]) -> HashMap<Id, Arc<[UserId]>> {
    let mut rooms: Vec<Id> =
        results.iter().filter_map(|r| if let Ok(SendResult::Sent(m)) = r { Some(m.room_id) } else { None }).collect();
    rooms.sort_unstable();
    rooms.dedup();
    if rooms.is_empty() {
        return HashMap::new();
    }
    match store.participant_ids_of(&rooms).await {
        Ok(by_room) => by_room.into_iter().map(|(room, users)| (room, Arc::from(users))).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "participants of a batch's rooms unknown; each sender reads its own");
            HashMap::new()
        }
    }
}
