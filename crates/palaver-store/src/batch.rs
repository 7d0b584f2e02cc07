//! Group commit, the part both backends share: what a batch of messages
//! (any rooms) becomes once the store has locked or read the rooms' heads
//! and checked every sender. Each backend runs the same fixed number of
//! statements per batch, whatever its size (`postgres.rs` passes rows as
//! arrays to `unnest`, `sqlite.rs` as one JSON array to `json_each`); see
//! `sql/chat.rs`, "Group commit".

use std::collections::HashMap;

use palaver_core::time::Timestamp;
use palaver_core::{Id, UserId};

use crate::{NewMessage, Result, SendResult, StoreError, StoredMessage};

/// What the store found about one message of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    /// The sender is a participant of the room.
    pub member: bool,
    /// A private room whose two participants are in a block.
    pub blocked: bool,
    /// The message the sender already stored with this `client_msg_id`.
    pub original: Option<Id>,
}

/// What happens to one message of a batch.
pub(crate) enum Fate {
    Refused(SendResult),
    Duplicate(Id),
    Store { seq: i64, body: Vec<u8>, body_key_id: Option<String> },
}

/// Decides each message in batch order: refused, a retry of `original`, or
/// stored with its room's next seq (`heads` holds the last seq of each
/// active room and is moved forward) and its body sealed to that seq.
/// `checks[i]` is message `i`'s check.
pub(crate) fn decide(
    batch: &[&NewMessage],
    heads: &mut HashMap<Id, i64>,
    checks: Vec<Option<Check>>,
) -> Result<Vec<Fate>> {
    let mut fates = Vec::with_capacity(batch.len());
    for (m, check) in batch.iter().zip(checks) {
        let check = check.ok_or_else(|| StoreError::Corrupt("a batch check is missing".into()))?;
        let fate = match heads.get_mut(&m.room_id) {
            Some(_) if !check.member => Fate::Refused(SendResult::NotParticipant),
            Some(_) if check.blocked => Fate::Refused(SendResult::Blocked),
            Some(_) if check.original.is_some() => Fate::Duplicate(check.original.unwrap_or_default()),
            Some(last) => {
                *last += 1;
                let (body, body_key_id) = m.sealer.seal(m.room_id, *last, &m.body)?;
                Fate::Store { seq: *last, body, body_key_id }
            }
            None => Fate::Refused(SendResult::NotParticipant),
        };
        fates.push(fate);
    }
    Ok(fates)
}

/// One message to insert.
pub(crate) struct Row<'a> {
    pub m: &'a NewMessage,
    pub seq: i64,
    pub body: &'a [u8],
    pub body_key_id: Option<&'a str>,
}

/// Everything a batch writes: the rooms' new heads (seq and time), the
/// messages, the senders' watermarks and the media attached.
#[derive(Default)]
pub(crate) struct Writes<'a> {
    pub heads: HashMap<Id, (i64, Timestamp)>,
    pub rows: Vec<Row<'a>>,
    pub watermarks: HashMap<(Id, UserId), i64>,
    pub media: HashMap<Id, Timestamp>,
}

impl<'a> Writes<'a> {
    /// The writes of the messages to store.
    pub(crate) fn of(batch: &[&'a NewMessage], fates: &'a [Fate]) -> Self {
        let mut w = Writes::default();
        for (m, fate) in batch.iter().zip(fates) {
            let Fate::Store { seq, body, body_key_id } = fate else { continue };
            w.heads.insert(m.room_id, (*seq, m.now));
            let mark = w.watermarks.entry((m.room_id, m.sender.id)).or_insert(*seq);
            *mark = (*mark).max(*seq);
            if let Some(id) = m.media_id {
                w.media.entry(id).or_insert(m.now);
            }
            w.rows.push(Row { m, seq: *seq, body, body_key_id: body_key_id.as_deref() });
        }
        w
    }
}

/// The ids of the originals the batch's retries need.
pub(crate) fn originals(fates: &[Fate]) -> Vec<Id> {
    fates.iter().filter_map(|f| if let Fate::Duplicate(id) = f { Some(*id) } else { None }).collect()
}

/// The results in batch order, from the ids the insert returned (by room
/// and seq) and the originals read.
pub(crate) fn results(
    batch: &[&NewMessage],
    fates: Vec<Fate>,
    ids: &HashMap<(Id, i64), Id>,
    originals: &HashMap<Id, StoredMessage>,
) -> Result<Vec<SendResult>> {
    batch
        .iter()
        .zip(fates)
        .map(|(m, fate)| match fate {
            Fate::Refused(result) => Ok(result),
            Fate::Duplicate(id) => originals
                .get(&id)
                .cloned()
                .map(SendResult::Duplicate)
                .ok_or_else(|| StoreError::Corrupt(format!("the original message {id} vanished"))),
            Fate::Store { seq, body, body_key_id } => {
                let id = ids
                    .get(&(m.room_id, seq))
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt("a batched insert returned no id".into()))?;
                Ok(SendResult::Sent(m.stored(id, seq, body, body_key_id)))
            }
        })
        .collect()
}
