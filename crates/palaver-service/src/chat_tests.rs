//! Tests of the chat service on both databases: who may do what, what is
//! published live (through a recording `Realtime`) and which domain events
//! follow each write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::sync::Arc;

use chrono::TimeDelta;
use palaver_core::chat::{MessageType, ParticipantRole, RoomType};
use palaver_core::notification::NotificationType;
use palaver_core::social::Visibility;
use palaver_core::time::now;
use palaver_core::user::{Role, User};
use palaver_core::{Error, Id};
use palaver_store::testing::{self, TestDb};
use palaver_store::{LikeOp, NewMedia, NewMoment, NewNotification, NewUserRecord, RenderInput, Rendered, Store};
use serde_json::json;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;

use super::*;
use crate::events::EventBus;
use crate::ratelimit::MemoryRateLimiter;
use crate::realtime::{Published, RealtimeHandle, RecordingRealtime};

struct Fixture {
    store: Arc<dyn Store>,
    chat: ChatService,
    rt: Arc<RecordingRealtime>,
    live: Receiver<Published>,
    events: Receiver<DomainEvent>,
}

impl Fixture {
    fn new(store: Arc<dyn Store>) -> Self {
        let bus = EventBus::new(256);
        let handle = RealtimeHandle::default();
        let rt = Arc::new(RecordingRealtime::default());
        assert!(handle.set(rt.clone()));
        let chat = ChatService::new(
            store.clone(),
            bus.clone(),
            handle,
            Arc::new(MemoryRateLimiter::new()),
            ChatRates::default(),
        );
        let live = rt.subscribe();
        let events = bus.subscribe();
        Self { store, chat, rt, live, events }
    }

    async fn user(&self, name: &str) -> Principal {
        let user: User = self
            .store
            .create_user(&NewUserRecord {
                email: format!("{name}@example.org"),
                password_hash: "x".into(),
                display_name: name.into(),
                native_languages: vec![],
                learning_languages: vec![],
                role: Role::User,
                now: now(),
            })
            .await
            .unwrap();
        Principal { user, session_id: "s".into() }
    }

    /// Everything published live since the last call.
    fn published(&mut self) -> Vec<Published> {
        let mut out = Vec::new();
        loop {
            match self.live.try_recv() {
                Ok(p) => out.push(p),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Every domain event since the last call.
    fn domain_events(&mut self) -> Vec<DomainEvent> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    async fn private(&self, a: &Principal, b: &Principal) -> Id {
        let new = NewRoom { room_type: RoomType::Private, participant_ids: vec![b.id()], name: None };
        self.chat.create_room(a, new).await.unwrap().0.id
    }

    async fn group(&self, admin: &Principal, members: &[&Principal]) -> Id {
        let new = NewRoom {
            room_type: RoomType::Group,
            participant_ids: members.iter().map(|m| m.id()).collect(),
            name: Some("Tertulia".into()),
        };
        self.chat.create_room(admin, new).await.unwrap().0.id
    }
}

/// Runs `body` on SQLite and, when configured, on PostgreSQL.
async fn on_both<F, Fut>(body: F)
where
    F: Fn(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = testing::sqlite().await.unwrap();
    body(Fixture::new(db.store.clone())).await;
    db.cleanup().await;
    let pg: Option<TestDb> = testing::postgres().await.unwrap();
    if let Some(db) = pg {
        body(Fixture::new(db.store.clone())).await;
        db.cleanup().await;
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::NotFound(_)))
}

/// A new message is published on its room with its seq and becomes a
/// `MessageSent` naming the participants not viewing the room; a retry
/// answers the original and publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_publishes_and_notifies_once() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let cleo = f.user("cleo").await;
        let room = f.group(&ana, &[&ben, &cleo]).await;
        f.published();
        f.domain_events();
        f.rt.set_viewing(&format!("chat:{room}"), cleo.id());

        let m = SendMessage { client_msg_id: Some("k-1".into()), ..SendMessage::text("¿Hablamos?") };
        let sent = f.chat.send(&ana, room, m.clone()).await.unwrap();
        assert!(!sent.duplicate);
        assert_eq!(sent.message.seq, 2, "after the group's first message");
        assert_eq!(sent.message.content.as_deref(), Some("¿Hablamos?"));
        let live = f.published();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].topic.as_str(), live[0].event_type.as_str()), (format!("chat:{room}").as_str(), "message"));
        assert_eq!(live[0].seq, Some(2));
        assert_eq!(live[0].data["id"], sent.message.id);
        assert_eq!(live[0].data["content"], "¿Hablamos?");
        assert_eq!(
            f.domain_events(),
            vec![DomainEvent::MessageSent {
                room_id: room,
                message_id: sent.message.id,
                seq: 2,
                sender_id: ana.id(),
                sender_name: "ana".into(),
                preview: "¿Hablamos?".into(),
                notify_user_ids: vec![ben.id()],
            }]
        );

        let retry = f.chat.send(&ana, room, m).await.unwrap();
        assert!(retry.duplicate);
        assert_eq!((retry.message.id, retry.message.seq), (sent.message.id, 2));
        assert!(f.published().is_empty());
        assert!(f.domain_events().is_empty());
    })
    .await;
}

/// Outsiders get 404 for everything about a room; suspended users are
/// refused; a block closes a private conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization() {
    on_both(|f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let eve = f.user("eve").await;
        let room = f.private(&ana, &ben).await;
        let msg = f.chat.send(&ana, room, SendMessage::text("private")).await.unwrap().message.id;

        assert!(is_not_found(f.chat.room_of(&eve, room).await));
        assert!(is_not_found(f.chat.history(&eve, room, HistoryQuery::default()).await));
        assert!(is_not_found(f.chat.send(&eve, room, SendMessage::text("hi")).await));
        assert!(is_not_found(f.chat.thread(&eve, msg, None, None).await));
        assert!(is_not_found(f.chat.read(&eve, room, 1).await));
        assert!(is_not_found(f.chat.read_by(&eve, msg).await));
        assert!(is_not_found(f.chat.edit(&eve, msg, "mine now").await));
        assert!(is_not_found(f.chat.delete(&eve, msg).await));
        assert!(is_not_found(f.chat.replay(&eve, room, 0, 100).await));
        assert!(!f.chat.is_participant(&eve, room).await.unwrap());
        assert!(f.chat.is_participant(&ben, room).await.unwrap());
        assert!(f.chat.rooms(&eve, None, None).await.unwrap().items.is_empty());

        let mut suspended = ben.clone();
        suspended.user.is_suspended = true;
        assert!(matches!(f.chat.send(&suspended, room, SendMessage::text("x")).await, Err(Error::Suspended)));
        assert!(matches!(f.chat.is_participant(&suspended, room).await, Err(Error::Suspended)));
        assert!(matches!(f.chat.rooms(&suspended, None, None).await, Err(Error::Suspended)));

        // Edits and deletes: the sender only.
        assert!(matches!(f.chat.edit(&ben, msg, "changed").await, Err(Error::Forbidden(_))));
        assert!(matches!(f.chat.delete(&ben, msg).await, Err(Error::Forbidden(_))));

        // Blocks: either way, the private room is closed for writing.
        f.store.set_block(ben.id(), ana.id(), LikeOp::Set, now()).await.unwrap();
        assert!(matches!(f.chat.send(&ana, room, SendMessage::text("hello?")).await, Err(Error::Forbidden(_))));
        assert!(matches!(f.chat.send(&ben, room, SendMessage::text("go away")).await, Err(Error::Forbidden(_))));
        // Opening a private room: with someone who blocked you, they do not
        // exist (404); with someone you blocked, unblock first (422).
        let new = |id| NewRoom { room_type: RoomType::Private, participant_ids: vec![id], name: None };
        f.store.set_block(eve.id(), ana.id(), LikeOp::Set, now()).await.unwrap();
        assert!(is_not_found(f.chat.create_room(&ana, new(eve.id())).await));
        assert!(matches!(f.chat.create_room(&eve, new(ana.id())).await, Err(Error::Unprocessable(_))));
        // Suspended and unknown users cannot be talked to.
        let sam = f.user("sam").await;
        f.store.set_suspended(sam.id(), true, now()).await.unwrap();
        assert!(is_not_found(f.chat.create_room(&ana, new(sam.id())).await));
        assert!(is_not_found(f.chat.create_room(&ana, new(999_999)).await));
    })
    .await;
}

/// Bad messages are refused with the field named and store nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_validation() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let room = f.private(&ana, &ben).await;
        let other = f.private(&ana, &f.user("cleo").await).await;
        let elsewhere = f.chat.send(&ana, other, SendMessage::text("other room")).await.unwrap().message.id;
        let field = |r: Result<Sent>| match r {
            Err(Error::Validation(fields)) => fields.fields().keys().cloned().collect::<Vec<_>>(),
            other => panic!("expected a validation error: {other:?}"),
        };
        let with = |f: fn(&mut SendMessage)| {
            let mut m = SendMessage::text("hi");
            f(&mut m);
            m
        };
        assert_eq!(
            field(f.chat.send(&ana, room, with(|m| m.message_type = MessageType::System)).await),
            ["message_type"]
        );
        assert_eq!(field(f.chat.send(&ana, room, with(|m| m.content = Some("   ".into()))).await), ["content"]);
        assert_eq!(field(f.chat.send(&ana, room, with(|m| m.content = None)).await), ["content"]);
        assert_eq!(field(f.chat.send(&ana, room, with(|m| m.content = Some("x".repeat(4001)))).await), ["content"]);
        assert_eq!(
            field(f.chat.send(&ana, room, with(|m| m.client_msg_id = Some(String::new()))).await),
            ["client_msg_id"]
        );
        assert_eq!(field(f.chat.send(&ana, room, with(|m| m.media_id = Some(1))).await), ["media_id"]);
        assert_eq!(field(f.chat.send(&ana, room, with(|m| m.message_type = MessageType::Image)).await), ["media_id"]);

        // Media: the sender's own upload, of the right kind.
        let upload = |owner: i64, kind: &str, key: &str| NewMedia {
            owner_id: owner,
            kind: kind.into(),
            content_type: "image/png".into(),
            size_bytes: 10,
            width: Some(1),
            height: Some(1),
            storage_key: key.into(),
            now: now(),
        };
        let bens = f.store.create_media(&upload(ben.id(), "image", "k1")).await.unwrap().id;
        let audio = f.store.create_media(&upload(ana.id(), "audio", "k2")).await.unwrap().id;
        let image = f.store.create_media(&upload(ana.id(), "image", "k3")).await.unwrap().id;
        let media = |id: Id, t: MessageType| SendMessage {
            message_type: t,
            media_id: Some(id),
            content: None,
            client_msg_id: None,
            reply_to: None,
        };
        assert_eq!(field(f.chat.send(&ana, room, media(bens, MessageType::Image)).await), ["media_id"]);
        assert_eq!(field(f.chat.send(&ana, room, media(audio, MessageType::Image)).await), ["media_id"]);
        let sent = f.chat.send(&ana, room, media(image, MessageType::Image)).await.unwrap().message;
        assert_eq!((sent.media_id, sent.content.as_deref()), (Some(image), Some("")));
        let file = f.chat.send(&ana, room, media(audio, MessageType::File)).await.unwrap().message;
        assert_eq!(file.message_type, MessageType::File);
        assert!(f.store.media_by_id(image).await.unwrap().unwrap().attached_at.is_some());

        // Replies stay in their room.
        let reply = SendMessage { reply_to: Some(elsewhere), ..SendMessage::text("re") };
        assert!(matches!(f.chat.send(&ana, room, reply).await, Err(Error::Unprocessable(_))));
        let history = f.chat.history(&ana, room, HistoryQuery::default()).await.unwrap();
        assert_eq!(history.items.len(), 2, "only the two media messages were stored");
        f.published();
    })
    .await;
}

/// Group administration: admins add, remove and rename; each change is a
/// system message and a live event; a removed user's subscription ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_administration() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let cleo = f.user("cleo").await;
        let room = f.group(&ana, &[&ben]).await;
        let created = f.published();
        let kinds: Vec<(&str, &str)> = created.iter().map(|p| (p.topic.as_str(), p.event_type.as_str())).collect();
        assert!(kinds.contains(&(format!("chat:{room}").as_str(), "message")));
        assert!(kinds.contains(&(format!("user:{}", ben.id()).as_str(), "chat_room_added")));
        assert!(f.domain_events().is_empty(), "system messages notify nobody");

        assert!(matches!(f.chat.add_participant(&ben, room, cleo.id()).await, Err(Error::Forbidden(_))));
        assert!(matches!(f.chat.rename(&ben, room, "mine").await, Err(Error::Forbidden(_))));
        assert!(matches!(f.chat.remove_participant(&ben, room, ana.id()).await, Err(Error::Forbidden(_))));

        let after = f.chat.add_participant(&ana, room, cleo.id()).await.unwrap();
        assert_eq!(after.participants.len(), 3);
        let live = f.published();
        let types: Vec<&str> = live.iter().map(|p| p.event_type.as_str()).collect();
        assert_eq!(types, ["message", "participant_joined", "chat_room_added"]);
        assert_eq!(live[0].data["message_type"], "system");
        assert_eq!(live[0].data["content"], "ana added cleo");
        assert_eq!(live[1].data["user"]["id"], cleo.id());
        // Adding again changes nothing.
        f.chat.add_participant(&ana, room, cleo.id()).await.unwrap();
        assert!(f.published().is_empty());

        let renamed = f.chat.rename(&ana, room, "  Club  ").await.unwrap();
        assert_eq!(renamed.name, "Club");
        let types: Vec<String> = f.published().into_iter().map(|p| p.event_type).collect();
        assert_eq!(types, ["message", "room_updated"]);

        f.chat.remove_participant(&ana, room, ben.id()).await.unwrap();
        let live = f.published();
        let types: Vec<&str> = live.iter().map(|p| p.event_type.as_str()).collect();
        assert_eq!(types, ["message", "participant_left", "chat_room_removed"]);
        assert_eq!(f.rt.revoked(), vec![(format!("chat:{room}"), ben.id())]);
        assert!(is_not_found(f.chat.history(&ben, room, HistoryQuery::default()).await));
        assert!(matches!(f.chat.remove_participant(&ana, room, ben.id()).await, Err(Error::NotFound(_))));

        // The admin leaves: cleo becomes admin.
        f.chat.leave(&ana, room).await.unwrap();
        let room_now = f.chat.room_of(&cleo, room).await.unwrap();
        assert_eq!(room_now.participants.len(), 1);
        assert_eq!(room_now.participants[0].role, ParticipantRole::Admin);
        assert_eq!(f.rt.revoked().len(), 2);
        let contents: Vec<String> = f
            .chat
            .history(&cleo, room, HistoryQuery::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|m| m.content)
            .collect();
        assert_eq!(
            contents,
            [
                "ana created the group “Tertulia”",
                "ana added cleo",
                "ana renamed the group to “Club”",
                "ana removed ben",
                "ana left"
            ]
        );

        // Private rooms are not administered or left.
        let private = f.private(&ana, &ben).await;
        assert!(matches!(f.chat.leave(&ana, private).await, Err(Error::Unprocessable(_))));
        assert!(matches!(f.chat.add_participant(&ana, private, cleo.id()).await, Err(Error::Unprocessable(_))));
    })
    .await;
}

fn render(input: &RenderInput<'_>) -> Rendered {
    Rendered { title: input.actor_names.join(","), message: String::new() }
}

/// Reading publishes the watermark, never moves it back, and once caught
/// up marks the room's message notifications read (live on `user:{id}`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_moves_the_watermark_and_reads_notifications() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let room = f.private(&ana, &ben).await;
        let first = f.chat.send(&ana, room, SendMessage::text("uno")).await.unwrap().message;
        f.chat.send(&ana, room, SendMessage::text("dos")).await.unwrap();
        let notification = f
            .store
            .record_notification(
                &NewNotification {
                    user_id: ben.id(),
                    notification_type: NotificationType::Message,
                    data: json!({"room_id": room}),
                    aggregation_key: Some(palaver_core::chat::message_notification_key(room)),
                    actor_id: Some(ana.id()),
                    aggregate_since: now() - TimeDelta::hours(1),
                    in_app: true,
                    push: None,
                    now: now(),
                },
                &render,
            )
            .await
            .unwrap()
            .notification
            .unwrap();
        f.published();
        let listed = f.chat.rooms(&ben, None, None).await.unwrap();
        assert_eq!(listed.items[0].unread_count, 2);

        assert_eq!(f.chat.read(&ben, room, 1).await.unwrap(), ReadState { last_read_seq: 1, unread_count: 1 });
        let live = f.published();
        assert_eq!(live.len(), 1, "no notification change before catching up");
        assert_eq!(live[0].event_type, "read");
        assert_eq!(live[0].data, json!({"user_id": ben.id(), "seq": 1}));
        assert_eq!(f.chat.read_by(&ana, first.id).await.unwrap().read_by.len(), 1);

        assert_eq!(f.chat.read(&ben, room, 0).await.unwrap().last_read_seq, 1, "never backwards");
        assert!(f.published().is_empty());
        assert!(matches!(f.chat.read(&ben, room, -1).await, Err(Error::Validation(_))));

        assert_eq!(f.chat.read(&ben, room, 50).await.unwrap(), ReadState { last_read_seq: 2, unread_count: 0 });
        let live = f.published();
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].data["seq"], 2);
        assert_eq!(
            (live[1].topic.clone(), live[1].event_type.clone()),
            (format!("user:{}", ben.id()), "notification".into())
        );
        assert_eq!(live[1].data, json!({"action": "read", "notification_id": notification.id, "unread_count": 0}));
        assert_eq!(f.store.unread_notification_count(ben.id()).await.unwrap(), 0);
    })
    .await;
}

/// Edits and deletes are published; a deleted message keeps its seq and
/// loses its content; threads list replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletes_threads() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let room = f.private(&ana, &ben).await;
        let root = f.chat.send(&ana, room, SendMessage::text("q")).await.unwrap().message;
        let reply = SendMessage { reply_to: Some(root.id), ..SendMessage::text("a") };
        let answer = f.chat.send(&ben, room, reply).await.unwrap().message;
        assert_eq!(answer.reply_to, Some(root.id));
        f.published();

        let edited = f.chat.edit(&ana, root.id, "q, edited").await.unwrap();
        assert!(edited.is_edited);
        let live = f.published();
        assert_eq!((live[0].event_type.as_str(), live[0].seq), ("message_edited", None));
        assert_eq!(live[0].data["content"], "q, edited");
        assert!(matches!(f.chat.edit(&ana, root.id, "").await, Err(Error::Validation(_))));

        let thread = f.chat.thread(&ben, root.id, None, None).await.unwrap();
        assert_eq!(thread.message.content.as_deref(), Some("q, edited"));
        assert_eq!(thread.items.iter().map(|m| m.id).collect::<Vec<_>>(), vec![answer.id]);

        f.chat.delete(&ben, answer.id).await.unwrap();
        let live = f.published();
        assert_eq!(live[0].event_type, "message_deleted");
        assert_eq!(live[0].data, json!({"id": answer.id, "room_id": room, "seq": 2}));
        f.chat.delete(&ben, answer.id).await.unwrap();
        assert!(f.published().is_empty(), "deleting twice changes nothing");
        assert!(matches!(f.chat.edit(&ben, answer.id, "back").await, Err(Error::Unprocessable(_))));
        let history = f.chat.history(&ana, room, HistoryQuery::default()).await.unwrap().items;
        assert_eq!(history.len(), 2);
        assert!(history[1].is_deleted);
        assert_eq!(history[1].content, None);
        let reply_to_deleted = SendMessage { reply_to: Some(answer.id), ..SendMessage::text("?") };
        assert!(matches!(f.chat.send(&ana, room, reply_to_deleted).await, Err(Error::Unprocessable(_))));
    })
    .await;
}

/// Sharing a moment sends a message referencing it and counts the share;
/// only public moments the sharer sees, only into rooms they are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_moments_into_rooms() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let eve = f.user("eve").await;
        let room = f.private(&ana, &ben).await;
        let moment = |visibility: Visibility, author: i64| {
            let store = f.store.clone();
            async move {
                store
                    .create_moment(&NewMoment {
                        user_id: author,
                        content: "A lovely day in Sevilla".into(),
                        media_ids: vec![],
                        visibility,
                        now: now(),
                    })
                    .await
                    .unwrap()
            }
        };
        let public = moment(Visibility::Public, eve.id()).await;
        let private = moment(Visibility::Private, ana.id()).await;
        let hidden = moment(Visibility::Private, eve.id()).await;
        f.published();
        f.domain_events();

        let shared = f.chat.share_moment(&ana, public, room, None).await.unwrap();
        assert_eq!(shared.shared_moment_id, Some(public));
        assert_eq!(shared.content.as_deref(), Some("eve: A lovely day in Sevilla"));
        assert_eq!(f.published()[0].event_type, "message");
        assert!(matches!(f.domain_events()[0], DomainEvent::MessageSent { .. }));
        let with_words = f.chat.share_moment(&ana, public, room, Some(" look! ")).await.unwrap();
        assert_eq!(with_words.content.as_deref(), Some("look!"));
        let counted = f.store.moments_for(ana.id(), &[public]).await.unwrap()[0].shares_count;
        assert_eq!(counted, 2);

        assert!(matches!(f.chat.share_moment(&ana, private, room, None).await, Err(Error::Unprocessable(_))));
        assert!(is_not_found(f.chat.share_moment(&ana, hidden, room, None).await));
        assert!(is_not_found(f.chat.share_moment(&eve, public, room, None).await), "eve is not in the room");
        assert_eq!(f.store.moments_for(eve.id(), &[public]).await.unwrap()[0].shares_count, 2);
    })
    .await;
}

/// The room list: newest activity first, paged with an opaque cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_pages() {
    on_both(|f| async move {
        let ana = f.user("ana").await;
        let mut rooms = Vec::new();
        let mut others = Vec::new();
        for i in 0..5 {
            let other = f.user(&format!("u{i}")).await;
            rooms.push(f.private(&ana, &other).await);
            others.push(other);
        }
        f.chat.send(&ana, rooms[1], SendMessage::text("bump")).await.unwrap();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = f.chat.rooms(&ana, Some(2), cursor.as_deref()).await.unwrap();
            seen.extend(page.items.iter().map(|r| r.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, vec![rooms[1], rooms[4], rooms[3], rooms[2], rooms[0]]);
        assert!(matches!(f.chat.rooms(&ana, None, Some("nonsense")).await, Err(Error::Validation(_))));
        assert!(matches!(f.chat.rooms(&ana, Some(0), None).await, Err(Error::Validation(_))));
        // Creating the same private room again finds it.
        let again = NewRoom { room_type: RoomType::Private, participant_ids: vec![others[0].id()], name: None };
        let (room, created) = f.chat.create_room(&ana, again).await.unwrap();
        assert!(!created);
        assert_eq!(room.id, rooms[0]);
    })
    .await;
}

/// Sends from many tasks at once go through the group-commit writer in
/// shared batches: each sender is acked with its own message, the room's
/// seqs are 1..n with no gap, every message is published once with its
/// seq, and an outsider sending in the same moment is refused alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_commit_together_without_gaps() {
    on_both(|mut f| async move {
        let ana = f.user("ana").await;
        let ben = f.user("ben").await;
        let eve = f.user("eve").await;
        let room = f.group(&ana, &[&ben]).await;
        let other = f.private(&ben, &eve).await;
        f.published();
        let Fixture { chat, mut live, .. } = f;
        let chat = Arc::new(chat);
        let mut tasks = Vec::new();
        for t in 0..8 {
            let chat = chat.clone();
            let (ana, ben, eve) = (ana.clone(), ben.clone(), eve.clone());
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for k in 0..10 {
                    let sender = if (t + k) % 2 == 0 { &ana } else { &ben };
                    let m = SendMessage { client_msg_id: Some(format!("{t}-{k}")), ..SendMessage::text("hola") };
                    let sent = chat.send(sender, room, m.clone()).await.unwrap();
                    assert!(!sent.duplicate);
                    assert_eq!(sent.message.client_msg_id.as_deref(), Some(format!("{t}-{k}").as_str()));
                    acked.push(sent.message.seq);
                    let retry = chat.send(sender, room, m).await.unwrap();
                    assert!(retry.duplicate);
                    assert_eq!(retry.message.id, sent.message.id);
                    // (Within eve's default budget of 120 a minute.)
                    if k < 3 {
                        assert!(is_not_found(chat.send(&eve, room, SendMessage::text("let me in")).await));
                        chat.send(&eve, other, SendMessage::text("elsewhere")).await.unwrap();
                    }
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for task in tasks {
            acked.extend(task.await.unwrap());
        }
        acked.sort_unstable();
        assert_eq!(acked, (2..=81).collect::<Vec<_>>(), "after the group's first message");
        let history = chat.history(&ana, room, HistoryQuery { limit: Some(100), ..Default::default() }).await.unwrap();
        let mut seqs: Vec<i64> = history.items.iter().map(|m| m.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=81).collect::<Vec<_>>());
        let mut published = Vec::new();
        while let Ok(p) = live.try_recv() {
            if p.topic == format!("chat:{room}") && p.event_type == "message" {
                published.extend(p.seq);
            }
        }
        published.sort_unstable();
        assert_eq!(published, (2..=81).collect::<Vec<_>>(), "each message published once");
        let elsewhere =
            chat.history(&eve, other, HistoryQuery { limit: Some(100), ..Default::default() }).await.unwrap();
        assert_eq!(elsewhere.items.len(), 24);
    })
    .await;
}
