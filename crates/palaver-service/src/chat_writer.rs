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
    /// Starts the writer tasks: on PostgreSQL on the current Tokio runtime,
    /// on SQLite on a thread of their own (see [`spawn_own_thread`]).
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        match store.backend() {
            Backend::Postgres => {
                let lanes = (0..PG_LANES)
                    .map(|_| {
                        let (tx, rx) = mpsc::channel(QUEUE);
                        tokio::spawn(run(store.clone(), rx));
                        tx
                    })
                    .collect();
                Self { lanes }
            }
            Backend::Sqlite => {
                let (tx, rx) = mpsc::channel(QUEUE);
                if let Err(e) = spawn_own_thread(store.clone(), rx) {
                    tracing::warn!(error = %e, "no thread for the chat writer; it runs with the other tasks");
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(run(store, rx));
                    return Self { lanes: vec![tx] };
                }
                Self { lanes: vec![tx] }
            }
        }
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

/// Runs a lane on a single-threaded runtime of its own, ending with it.
///
/// A batch is a few calls into the SQLite driver, each a hand-off to the
/// connection's thread and back. On the shared runtime, the lane's task
/// woken by each answer waits behind every task that became ready
/// meanwhile: with thousands of WebSocket connections delivering events,
/// that queue made a 256-message batch take 50 to 250 ms and capped the
/// gateway at about 2,500 messages/s while the CPU was not busy. On its own
/// thread the lane runs as soon as the operating system schedules it. (The
/// PostgreSQL driver's sockets belong to the runtime that opened them, and
/// its pool is shared with every request, so its lanes stay on the shared
/// runtime.)
fn spawn_own_thread(store: Arc<dyn Store>, rx: mpsc::Receiver<Job>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("chat-writer".into()).spawn(move || runtime.block_on(run(store, rx)))?;
    Ok(())
}

/// Describes the writer's metrics.
pub fn describe_metrics() {
    metrics::describe_histogram!("chat_batch_messages", "Chat messages stored per group-commit transaction.");
    metrics::describe_histogram!(
        "chat_batch_seconds",
        metrics::Unit::Seconds,
        "Time to store one batch of chat messages and read its rooms' participants."
    );
}

async fn run(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let (messages, replies): (Vec<NewMessage>, Vec<_>) = jobs.drain(..).map(|j| (j.message, j.reply)).unzip();
        let start = std::time::Instant::now();
        let results = store.send_messages(&messages).await;
        let recipients = recipients(&*store, &results).await;
        metrics::histogram!("chat_batch_messages").record(messages.len() as f64);
        metrics::histogram!("chat_batch_seconds").record(start.elapsed().as_secs_f64());
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
