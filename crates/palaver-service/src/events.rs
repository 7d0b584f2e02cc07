//! Domain events: facts other parts of the system react to (a like becomes
//! a notification, a message becomes a push). Services publish after their
//! transaction commits; subscribers (the notifications service) receive them
//! in process. Publishing never blocks or fails the publisher.

use palaver_core::{Id, UserId};
use tokio::sync::broadcast;

/// Something that happened, with the ids a reaction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DomainEvent {
    /// `actor` liked a moment of `author`.
    MomentLiked {
        /// The moment.
        moment_id: Id,
        /// Its author (who may be notified).
        author_id: UserId,
        /// Who liked it.
        actor_id: UserId,
    },
    /// `actor` took back a like on a moment.
    MomentUnliked {
        /// The moment.
        moment_id: Id,
        /// Its author.
        author_id: UserId,
        /// Who unliked it.
        actor_id: UserId,
    },
    /// `actor` liked a comment of `author`.
    CommentLiked {
        /// The comment.
        comment_id: Id,
        /// The moment the comment is on.
        moment_id: Id,
        /// The comment's author.
        author_id: UserId,
        /// Who liked it.
        actor_id: UserId,
    },
    /// `actor` took back a like on a comment.
    CommentUnliked {
        /// The comment.
        comment_id: Id,
        /// The moment the comment is on.
        moment_id: Id,
        /// The comment's author.
        author_id: UserId,
        /// Who unliked it.
        actor_id: UserId,
    },
    /// `actor` commented on a moment, or replied to a comment.
    Commented {
        /// The new comment.
        comment_id: Id,
        /// The moment.
        moment_id: Id,
        /// The moment's author.
        moment_author_id: UserId,
        /// For a reply: the comment replied to and its author.
        parent: Option<(Id, UserId)>,
        /// Who wrote it.
        actor_id: UserId,
    },
    /// `follower` started following `followee`.
    Followed {
        /// Who follows.
        follower_id: UserId,
        /// Who is followed.
        followee_id: UserId,
    },
    /// A chat message was stored and acked.
    MessageSent {
        /// The room.
        room_id: Id,
        /// The message.
        message_id: Id,
        /// Its per-room sequence number.
        seq: i64,
        /// Who sent it.
        sender_id: UserId,
        /// The sender's display name, for notification text.
        sender_name: String,
        /// A short plain-text preview (for push and in-app text).
        preview: String,
        /// Participants to notify: everyone but the sender who is not
        /// viewing the room on a connected device when it was sent.
        notify_user_ids: Vec<UserId>,
    },
    /// A call started ringing (`receiver` has a connected device).
    CallIncoming {
        /// The call.
        call_id: Id,
        /// Who calls.
        caller_id: UserId,
        /// Who is called.
        receiver_id: UserId,
        /// `voice` or `video`.
        call_type: String,
    },
    /// A call was not answered (ring timeout, or no connected device).
    CallMissed {
        /// The call.
        call_id: Id,
        /// Who called.
        caller_id: UserId,
        /// Who missed it.
        receiver_id: UserId,
        /// `voice` or `video`.
        call_type: String,
    },
}

/// In-process fan-out of [`DomainEvent`]s. A subscriber that falls more than
/// the buffer behind misses events (and learns so from `RecvError::Lagged`);
/// publishers are never slowed by subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<DomainEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus {
    /// A bus buffering up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        Self { tx: broadcast::channel(capacity.max(1)).0 }
    }

    /// Publishes an event to every current subscriber (none is fine).
    pub fn publish(&self, event: DomainEvent) {
        let _ = self.tx.send(event);
    }

    /// Receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DomainEvent> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_receive_what_is_published_after_they_subscribe() {
        let bus = EventBus::new(8);
        bus.publish(DomainEvent::Followed { follower_id: 1, followee_id: 2 });
        let mut rx = bus.subscribe();
        let event = DomainEvent::Followed { follower_id: 3, followee_id: 4 };
        bus.publish(event.clone());
        assert_eq!(rx.recv().await.unwrap(), event);
    }
}
