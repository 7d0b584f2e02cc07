use std::collections::HashSet;

use chrono::TimeDelta;
use palaver_core::chat::{MessageType, ParticipantRole, RoomType};
use palaver_core::notification::NotificationType;
use palaver_core::social::{AuthorSummary, Visibility};
use palaver_core::time::now;
use palaver_core::user::User;
use palaver_store::{
    AddResult, BodySealer, LikeOp, MessageRange, NewMessage, NewMoment, NewNotification, RenderInput, Rendered,
    SendResult, Store, StoredMessage,
};
use serde_json::json;

use crate::{conformance, user};

fn who(u: &User) -> AuthorSummary {
    AuthorSummary { id: u.id, display_name: u.display_name.clone(), avatar: u.avatar.clone() }
}

fn text(room: i64, sender: &User, body: &str) -> NewMessage {
    NewMessage {
        room_id: room,
        sender: who(sender),
        client_msg_id: None,
        message_type: MessageType::Text,
        body: body.as_bytes().to_vec(),
        sealer: BodySealer::plain(),
        media_id: None,
        reply_to: None,
        shared_moment_id: None,
        now: now(),
    }
}

fn system(room: i64, sender: &User, body: &str) -> NewMessage {
    NewMessage { message_type: MessageType::System, ..text(room, sender, body) }
}

async fn send(store: &dyn Store, m: NewMessage) -> StoredMessage {
    match store.send_message(&m).await.unwrap() {
        SendResult::Sent(stored) => stored,
        other => panic!("not sent: {other:?}"),
    }
}

async fn group(store: &dyn Store, creator: &User, members: &[&User]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|u| u.id).collect();
    store.create_group_room("group", &ids, &system(0, creator, "created")).await.unwrap().0
}

fn range(after: Option<i64>, before: Option<i64>, limit: i64) -> MessageRange {
    MessageRange { after_seq: after, before_seq: before, limit }
}

fn seqs(messages: &[StoredMessage]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

conformance! {
    /// A pair has one private room whichever of them creates it, even
    /// when both do at once.
    async fn private_rooms_are_unique_per_pair(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let (room, created) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        assert!(created);
        assert_eq!(store.create_private_room(ben.id, ana.id, now()).await.unwrap(), (room, false));
        assert_eq!(store.create_private_room(ana.id, ben.id, now()).await.unwrap(), (room, false));
        assert!(store.create_private_room(ana.id, ana.id, now()).await.is_err());

        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            let (a, b) = if i % 2 == 0 { (ana.id, cleo.id) } else { (cleo.id, ana.id) };
            tasks.push(tokio::spawn(async move { store.create_private_room(a, b, now()).await.unwrap() }));
        }
        let mut ids = HashSet::new();
        let mut created = 0;
        for task in tasks {
            let (id, new) = task.await.unwrap();
            ids.insert(id);
            created += usize::from(new);
        }
        assert_eq!(ids.len(), 1);
        assert_eq!(created, 1);
        let id = *ids.iter().next().unwrap();
        assert_eq!(store.participant_ids(id).await.unwrap(), {
            let mut v = vec![ana.id, cleo.id];
            v.sort();
            v
        });
        let membership = store.membership(id, cleo.id).await.unwrap().unwrap();
        assert_eq!(membership.room_type, RoomType::Private);
        assert_eq!(membership.role, ParticipantRole::Member);
        assert!(store.membership(id, ben.id).await.unwrap().is_none());
    }
}

conformance! {
    /// A group starts with its creator as admin and a first message;
    /// a member that does not exist creates nothing.
    async fn groups_have_an_admin_and_a_first_message(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let (room, first) =
            store.create_group_room("Spanish club", &[ben.id, cleo.id, ben.id], &system(0, &ana, "hi all")).await.unwrap();
        assert_eq!((first.room_id, first.seq, first.message_type), (room, 1, MessageType::System));
        let record = store.room_for(ana.id, room).await.unwrap().unwrap();
        assert_eq!(record.name, "Spanish club");
        assert_eq!(record.room_type, RoomType::Group);
        assert_eq!(record.created_by, ana.id);
        assert_eq!(record.participants.len(), 3);
        let roles: Vec<(i64, ParticipantRole)> = record.participants.iter().map(|p| (p.user.id, p.role)).collect();
        assert!(roles.contains(&(ana.id, ParticipantRole::Admin)));
        assert!(roles.contains(&(ben.id, ParticipantRole::Member)));
        assert_eq!(record.last_seq, 1);
        assert_eq!(record.last_read_seq, 1, "the creator has read their own message");
        assert_eq!(store.room_for(ben.id, room).await.unwrap().unwrap().last_read_seq, 0);
        assert_eq!(record.last_message.unwrap().body, b"hi all");

        let before = store.rooms_for(ana.id, None, 100).await.unwrap().len();
        assert!(store.create_group_room("ghosts", &[ben.id, 999_999], &system(0, &ana, "x")).await.is_err());
        assert_eq!(store.rooms_for(ana.id, None, 100).await.unwrap().len(), before);
        assert!(store.room_for(cleo.id, room).await.unwrap().is_some());
        assert!(store.room_for(999_999, room).await.unwrap().is_none());
    }
}

conformance! {
    /// Seqs go 1, 2, 3 per room; a retry with the same client_msg_id is the
    /// original and stores nothing; outsiders and blocked users are refused
    /// without using a seq.
    async fn sending_assigns_seqs_and_is_idempotent(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let eve = user(&*store, "eve@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        let (other, _) = store.create_private_room(ana.id, eve.id, now()).await.unwrap();
        let m1 = send(&*store, text(room, &ana, "hola")).await;
        let m2 = send(&*store, text(room, &ben, "qué tal")).await;
        let o1 = send(&*store, text(other, &ana, "hi eve")).await;
        assert_eq!((m1.seq, m2.seq, o1.seq), (1, 2, 1));
        assert_eq!(m1.sender, who(&ana));

        let keyed = NewMessage { client_msg_id: Some("c-1".into()), ..text(room, &ana, "once") };
        let first = send(&*store, keyed.clone()).await;
        assert_eq!(first.seq, 3);
        let retry = NewMessage { body: b"changed on retry".to_vec(), ..keyed.clone() };
        match store.send_message(&retry).await.unwrap() {
            SendResult::Duplicate(original) => {
                assert_eq!(original.id, first.id);
                assert_eq!(original.seq, 3);
                assert_eq!(original.body, b"once");
            }
            other => panic!("expected the original: {other:?}"),
        }
        // The same key from another sender, or in another room, is another message.
        let bens = send(&*store, NewMessage { client_msg_id: Some("c-1".into()), ..text(room, &ben, "mine") }).await;
        assert_eq!(bens.seq, 4);
        let next = send(&*store, text(room, &ana, "after the retry")).await;
        assert_eq!(next.seq, 5, "the retry used no seq");

        assert_eq!(store.send_message(&text(room, &eve, "let me in")).await.unwrap(), SendResult::NotParticipant);
        assert_eq!(store.send_message(&text(999_999, &eve, "?")).await.unwrap(), SendResult::NotParticipant);
        store.set_block(ben.id, ana.id, LikeOp::Set, now()).await.unwrap();
        assert_eq!(store.send_message(&text(room, &ana, "hello?")).await.unwrap(), SendResult::Blocked);
        assert_eq!(store.send_message(&text(room, &ben, "bye")).await.unwrap(), SendResult::Blocked);
        store.set_block(ben.id, ana.id, LikeOp::Clear, now()).await.unwrap();
        assert_eq!(send(&*store, text(room, &ana, "friends again")).await.seq, 6);
        let all = store.messages(room, range(None, None, 100)).await.unwrap();
        assert_eq!(seqs(&all), (1..=6).collect::<Vec<_>>());
    }
}

conformance! {
    /// Concurrent senders (some retrying) in one room: every seq from 1 to
    /// n exactly once, one message per key.
    async fn concurrent_sends_have_no_gaps_or_repeats(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let room = group(&*store, &ana, &[&ben, &cleo]).await;
        let senders = [ana.clone(), ben.clone(), cleo.clone()];
        let mut tasks = Vec::new();
        for (i, sender) in senders.iter().enumerate() {
            for batch in 0..4 {
                let store = store.clone();
                let sender = sender.clone();
                tasks.push(tokio::spawn(async move {
                    let mut sent = 0;
                    for k in 0..25 {
                        let key = format!("{i}-{batch}-{k}");
                        let m = NewMessage { client_msg_id: Some(key), ..text(room, &sender, "x") };
                        // Every message is sent twice: the second is a retry.
                        if matches!(store.send_message(&m).await.unwrap(), SendResult::Sent(_)) {
                            sent += 1;
                        }
                        assert!(matches!(store.send_message(&m).await.unwrap(), SendResult::Duplicate(_)));
                    }
                    sent
                }));
            }
        }
        let mut sent = 0;
        for task in tasks {
            sent += task.await.unwrap();
        }
        assert_eq!(sent, 300);
        let all = store.messages(room, range(Some(0), None, 1000)).await.unwrap();
        assert_eq!(seqs(&all), (1..=301).collect::<Vec<_>>(), "the group's first message, then 300");
        let keys: HashSet<_> = all.iter().filter_map(|m| m.client_msg_id.clone()).collect();
        assert_eq!(keys.len(), 300);
        assert_eq!(store.membership(room, ana.id).await.unwrap().unwrap().last_seq, 301);
    }
}

conformance! {
    /// History reads: newest page, older pages, newer pages, and a range.
    async fn history_ranges(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        for i in 0..10 {
            send(&*store, text(room, &ana, &format!("m{i}"))).await;
        }
        let get = |after, before, limit| {
            let store = store.clone();
            async move { seqs(&store.messages(room, range(after, before, limit)).await.unwrap()) }
        };
        assert_eq!(get(None, None, 3).await, vec![8, 9, 10]);
        assert_eq!(get(None, Some(8), 3).await, vec![5, 6, 7]);
        assert_eq!(get(None, Some(2), 3).await, vec![1]);
        assert_eq!(get(Some(7), None, 100).await, vec![8, 9, 10]);
        assert_eq!(get(Some(0), None, 2).await, vec![1, 2]);
        assert_eq!(get(Some(3), Some(7), 100).await, vec![4, 5, 6], "the range fetch that fills a gap");
        assert_eq!(get(Some(3), Some(7), 2).await, vec![4, 5]);
        assert_eq!(get(Some(10), None, 5).await, Vec::<i64>::new());
    }
}

conformance! {
    /// The room list: most recent activity first, each room with its newest
    /// message and the caller's unread count, paged by an activity cursor.
    async fn room_list_order_previews_and_unread(store) {
        let ana = user(&*store, "ana@example.org").await;
        let mut rooms = Vec::new();
        let mut others = Vec::new();
        for i in 0..5 {
            let other = user(&*store, &format!("u{i}@example.org")).await;
            let (room, _) = store.create_private_room(ana.id, other.id, now()).await.unwrap();
            rooms.push(room);
            others.push(other);
        }
        // Activity: room 2 then room 0 get messages; the rest only exist.
        send(&*store, text(rooms[2], &others[2], "from 2")).await;
        send(&*store, text(rooms[2], &others[2], "again from 2")).await;
        send(&*store, text(rooms[0], &ana, "to 0")).await;
        let list = store.rooms_for(ana.id, None, 100).await.unwrap();
        let order: Vec<i64> = list.iter().map(|r| r.id).collect();
        assert_eq!(order, vec![rooms[0], rooms[2], rooms[4], rooms[3], rooms[1]]);
        let r0 = &list[0];
        assert_eq!(r0.last_message.as_ref().unwrap().body, b"to 0");
        assert_eq!(r0.last_seq - r0.last_read_seq, 0, "own messages are read");
        let r2 = &list[1];
        assert_eq!(r2.last_message.as_ref().unwrap().body, b"again from 2");
        assert_eq!(r2.last_message.as_ref().unwrap().sender.display_name, "u2");
        assert_eq!(r2.last_seq - r2.last_read_seq, 2);
        assert_eq!(r2.participants.len(), 2);
        assert!(list[2].last_message.is_none());

        // Pages of two follow the same order without repeats.
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.rooms_for(ana.id, cursor, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|r| r.cursor());
            paged.extend(page.iter().map(|r| r.id));
        }
        assert_eq!(paged, order);

        // Reading moves the watermark forward only, never past the end.
        assert_eq!(store.mark_read(rooms[2], ana.id, 1).await.unwrap(), Some(1));
        assert_eq!(store.mark_read(rooms[2], ana.id, 1).await.unwrap(), None);
        assert_eq!(store.mark_read(rooms[2], ana.id, 0).await.unwrap(), None, "never backwards");
        assert_eq!(store.mark_read(rooms[2], ana.id, 99).await.unwrap(), Some(2), "clamped to the newest");
        assert_eq!(store.mark_read(rooms[2], ana.id, 100).await.unwrap(), None);
        assert_eq!(store.mark_read(rooms[2], 999_999, 1).await.unwrap(), None);
        let r2 = store.room_for(ana.id, rooms[2]).await.unwrap().unwrap();
        assert_eq!((r2.last_read_seq, r2.last_seq), (2, 2));
        // The other side sees the receipt.
        let m1 = store.messages(rooms[2], range(None, None, 1)).await.unwrap().remove(0);
        assert_eq!(store.read_by(m1.id).await.unwrap(), vec![who(&ana)]);
        let own = store.messages(rooms[0], range(None, None, 1)).await.unwrap().remove(0);
        assert!(store.read_by(own.id).await.unwrap().is_empty(), "nobody read ana's message yet");
        store.mark_read(rooms[0], others[0].id, 1).await.unwrap();
        assert_eq!(store.read_by(own.id).await.unwrap(), vec![who(&others[0])]);
    }
}

conformance! {
    /// Joining, being removed and leaving: each with its announcement in
    /// the same transaction; a group keeps an admin; an empty room closes.
    async fn membership_changes(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let dan = user(&*store, "dan@example.org").await;
        let room = group(&*store, &ana, &[&ben]).await;
        send(&*store, text(room, &ben, "before cleo")).await;

        let added = store.add_participant(cleo.id, &system(room, &ana, "ana added cleo"), 10).await.unwrap();
        let AddResult::Added(announcement) = added else { panic!("not added: {added:?}") };
        assert_eq!(announcement.seq, 3);
        let cleo_view = store.room_for(cleo.id, room).await.unwrap().unwrap();
        assert_eq!(cleo_view.last_read_seq, 2, "the newcomer's first unread is their announcement");
        assert_eq!(
            store.add_participant(cleo.id, &system(room, &ana, "again"), 10).await.unwrap(),
            AddResult::AlreadyParticipant
        );
        assert_eq!(store.add_participant(dan.id, &system(room, &ana, "full"), 3).await.unwrap(), AddResult::Full);
        assert_eq!(
            store.add_participant(dan.id, &system(room, &dan, "myself"), 10).await.unwrap(),
            AddResult::NotParticipant
        );
        assert_eq!(store.membership(room, ana.id).await.unwrap().unwrap().last_seq, 3, "refusals used no seq");

        assert!(store.remove_participant(dan.id, &system(room, &ana, "not here")).await.unwrap().is_none());
        let removed = store.remove_participant(ben.id, &system(room, &ana, "ana removed ben")).await.unwrap().unwrap();
        assert_eq!(removed.seq, 4);
        assert!(store.membership(room, ben.id).await.unwrap().is_none());
        assert_eq!(store.send_message(&text(room, &ben, "hey")).await.unwrap(), SendResult::NotParticipant);

        // The only admin leaves: the longest-standing member becomes admin.
        store.remove_participant(ana.id, &system(room, &ana, "ana left")).await.unwrap().unwrap();
        assert_eq!(store.membership(room, cleo.id).await.unwrap().unwrap().role, ParticipantRole::Admin);
        let renamed = store.rename_room("Club", &system(room, &cleo, "renamed")).await.unwrap().unwrap();
        assert_eq!(renamed.seq, 6);
        assert_eq!(store.room_for(cleo.id, room).await.unwrap().unwrap().name, "Club");
        assert!(store.rename_room("x", &system(room, &ana, "not in")).await.unwrap().is_none());

        // The last one out closes the room.
        store.remove_participant(cleo.id, &system(room, &cleo, "cleo left")).await.unwrap().unwrap();
        assert!(store.rooms_for(cleo.id, None, 10).await.unwrap().is_empty());
        let history = store.messages(room, range(Some(0), None, 100)).await.unwrap();
        assert_eq!(seqs(&history), (1..=7).collect::<Vec<_>>());
    }
}

conformance! {
    /// Edits and deletes: only by the sender; deleting keeps the seq and
    /// empties the body; threads list replies in seq order.
    async fn edits_deletes_and_threads(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        let root = send(&*store, text(room, &ana, "question")).await;
        let r1 = send(&*store, NewMessage { reply_to: Some(root.id), ..text(room, &ben, "answer 1") }).await;
        send(&*store, text(room, &ana, "unrelated")).await;
        let r2 = send(&*store, NewMessage { reply_to: Some(root.id), ..text(room, &ana, "answer 2") }).await;
        let thread = store.thread(root.id, 0, 10).await.unwrap();
        assert_eq!(thread.iter().map(|m| m.id).collect::<Vec<_>>(), vec![r1.id, r2.id]);
        assert_eq!(store.thread(root.id, r1.seq, 10).await.unwrap().len(), 1);
        assert_eq!(store.thread(root.id, 0, 1).await.unwrap().len(), 1);

        let t = now();
        assert!(store.edit_message(root.id, ben.id, b"hijack", None, t).await.unwrap().is_none());
        let edited = store.edit_message(root.id, ana.id, b"better question", None, t).await.unwrap().unwrap();
        assert!(edited.is_edited);
        assert_eq!(edited.body, b"better question");
        assert_eq!(edited.sender, who(&ana));
        assert_eq!(edited.updated_at, t);

        assert!(store.delete_message(r1.id, ana.id, t).await.unwrap().is_none());
        let deleted = store.delete_message(r1.id, ben.id, t).await.unwrap().unwrap();
        assert!(deleted.is_deleted);
        assert!(deleted.body.is_empty());
        assert!(store.delete_message(r1.id, ben.id, t).await.unwrap().is_none(), "once");
        assert!(store.edit_message(r1.id, ben.id, b"back", None, t).await.unwrap().is_none());
        let history = store.messages(room, range(None, None, 10)).await.unwrap();
        assert_eq!(seqs(&history), vec![1, 2, 3, 4], "the deleted message keeps its place");
        assert!(history[1].is_deleted);

        let g = group(&*store, &ana, &[&ben]).await;
        let announcement = store.messages(g, range(None, None, 1)).await.unwrap().remove(0);
        assert!(store.edit_message(announcement.id, ana.id, b"x", None, t).await.unwrap().is_none());
        assert!(store.delete_message(announcement.id, ana.id, t).await.unwrap().is_none());
    }
}

conformance! {
    /// A share into a chat is a message and a counted share, together;
    /// a moment that cannot be shared stores neither; deleting the message
    /// takes the share back.
    async fn shares_into_chats_are_counted_with_their_message(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        let moment = |visibility| {
            let store = store.clone();
            let author = ana.id;
            async move {
                store
                    .create_moment(&NewMoment { user_id: author, content: "look".into(), media_ids: vec![], visibility, now: now() })
                    .await
                    .unwrap()
            }
        };
        let public = moment(Visibility::Public).await;
        let private = moment(Visibility::Private).await;
        let share = |id| NewMessage { shared_moment_id: Some(id), ..text(room, &ben, "see this") };
        let SendResult::Sent(message) = store.share_moment_to_chat(&share(public), public).await.unwrap() else {
            panic!("not shared");
        };
        assert_eq!(message.shared_moment_id, Some(public));
        let counted = |id| {
            let store = store.clone();
            let viewer = ana.id;
            async move { store.moments_for(viewer, &[id]).await.unwrap().remove(0).shares_count }
        };
        assert_eq!(counted(public).await, 1);

        assert!(store.share_moment_to_chat(&share(private), private).await.is_err());
        assert_eq!(counted(private).await, 0);
        assert_eq!(store.membership(room, ben.id).await.unwrap().unwrap().last_seq, 1, "no message either");

        store.delete_message(message.id, ben.id, now()).await.unwrap().unwrap();
        assert_eq!(counted(public).await, 0);
        let stored = store.message_by_id(message.id).await.unwrap().unwrap();
        assert_eq!(stored.shared_moment_id, None);
    }
}

fn render(input: &RenderInput<'_>) -> Rendered {
    Rendered { title: input.actor_names.join(","), message: format!("{}", input.event_count) }
}

conformance! {
    /// A room's message notifications are marked read once its reader has
    /// caught up, not before; other rooms' stay.
    async fn reading_a_room_reads_its_notifications(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        let (other, _) = store.create_private_room(ana.id, user(&*store, "cleo@example.org").await.id, now()).await.unwrap();
        let notify = |room: i64| NewNotification {
            user_id: ana.id,
            notification_type: NotificationType::Message,
            data: json!({"room_id": room}),
            aggregation_key: Some(palaver_core::chat::message_notification_key(room)),
            actor_id: Some(ben.id),
            aggregate_since: now() - TimeDelta::hours(1),
            in_app: true,
            push: None,
            now: now(),
        };
        send(&*store, text(room, &ben, "one")).await;
        send(&*store, text(room, &ben, "two")).await;
        let n = store.record_notification(&notify(room), &render).await.unwrap().notification.unwrap();
        store.record_notification(&notify(other), &render).await.unwrap();
        assert_eq!(store.unread_notification_count(ana.id).await.unwrap(), 2);

        store.mark_read(room, ana.id, 1).await.unwrap();
        assert!(store.mark_room_notifications_read(ana.id, room, now()).await.unwrap().is_empty(), "not caught up");
        store.mark_read(room, ana.id, 2).await.unwrap();
        assert_eq!(store.mark_room_notifications_read(ana.id, room, now()).await.unwrap(), vec![n.id]);
        assert_eq!(store.unread_notification_count(ana.id).await.unwrap(), 1);
        assert!(store.mark_room_notifications_read(ana.id, room, now()).await.unwrap().is_empty());
    }
}

conformance! {
    /// Candidates carry existence, suspension and blocks both ways.
    async fn chat_candidates_report_blocks_and_suspension(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let dan = user(&*store, "dan@example.org").await;
        store.set_block(ana.id, ben.id, LikeOp::Set, now()).await.unwrap();
        store.set_block(cleo.id, ana.id, LikeOp::Set, now()).await.unwrap();
        store.set_suspended(dan.id, true, now()).await.unwrap();
        let found = store.chat_candidates(ana.id, &[ben.id, cleo.id, dan.id, 999_999]).await.unwrap();
        let flags: Vec<(i64, bool, bool, bool)> =
            found.iter().map(|c| (c.user.id, c.blocked_by_actor, c.blocks_actor, c.is_suspended)).collect();
        assert_eq!(
            flags,
            vec![(ben.id, true, false, false), (cleo.id, false, true, false), (dan.id, false, false, true)]
        );
    }
}

conformance! {
    /// A batch (group commit) decides each message on its own: stored ones
    /// take their rooms' next seqs in batch order, a retry of a stored key
    /// and a key repeated within the batch get the original, a non-member
    /// and a blocked sender are refused, and a message the insert rejects
    /// (an upload that does not exist) fails alone.
    async fn batches_decide_each_message_on_its_own(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let eve = user(&*store, "eve@example.org").await;
        let room = group(&*store, &ana, &[&ben]).await;
        let (private, _) = store.create_private_room(ana.id, eve.id, now()).await.unwrap();
        let (other, _) = store.create_private_room(ben.id, eve.id, now()).await.unwrap();
        let earlier = send(&*store, NewMessage { client_msg_id: Some("old".into()), ..text(room, &ben, "earlier") }).await;
        assert_eq!(earlier.seq, 2);
        store.set_block(eve.id, ana.id, LikeOp::Set, now()).await.unwrap();

        let keyed = |sender: &User, room: i64, key: &str, body: &str| NewMessage {
            client_msg_id: Some(key.into()),
            ..text(room, sender, body)
        };
        let batch = vec![
            keyed(&ana, room, "a-1", "first"),
            text(room, &eve, "let me in"),
            keyed(&ana, room, "a-1", "first, again"),
            keyed(&ben, room, "old", "earlier, retried"),
            text(other, &eve, "hi ben"),
            text(private, &ana, "hello?"),
            NewMessage { message_type: MessageType::Image, media_id: Some(999_999), ..text(room, &ben, "") },
            text(room, &ben, "second"),
            text(other, &ben, "hi eve"),
        ];
        let results = store.send_messages(&batch).await;
        assert_eq!(results.len(), batch.len());
        let sent = |i: usize| match &results[i] {
            Ok(SendResult::Sent(m)) => m.clone(),
            other => panic!("message {i} not sent: {other:?}"),
        };
        let first = sent(0);
        assert_eq!((first.room_id, first.seq, first.body.as_slice()), (room, 3, b"first".as_slice()));
        assert_eq!(results[1].as_ref().unwrap(), &SendResult::NotParticipant);
        assert_eq!(results[2].as_ref().unwrap(), &SendResult::Duplicate(first.clone()));
        match results[3].as_ref().unwrap() {
            SendResult::Duplicate(original) => assert_eq!((original.id, original.seq), (earlier.id, 2)),
            other => panic!("expected the earlier message: {other:?}"),
        }
        assert_eq!(sent(4).seq, 1);
        assert_eq!(results[5].as_ref().unwrap(), &SendResult::Blocked);
        assert!(results[6].is_err(), "an upload that does not exist: {:?}", results[6]);
        assert_eq!(sent(7).seq, 4);
        assert_eq!(sent(8).seq, 2);

        let all = store.messages(room, range(None, None, 100)).await.unwrap();
        assert_eq!(seqs(&all), vec![1, 2, 3, 4]);
        assert_eq!(all[2].id, first.id);
        assert_eq!(seqs(&store.messages(other, range(None, None, 100)).await.unwrap()), vec![1, 2]);
        assert!(store.messages(private, range(None, None, 100)).await.unwrap().is_empty());
        // The senders' watermarks moved to their newest message.
        let rooms = store.rooms_for(ben.id, None, 10).await.unwrap();
        let seen = rooms.iter().find(|r| r.id == room).unwrap();
        assert_eq!((seen.last_seq, seen.last_read_seq), (4, 4));
        // The head moved only as far as the stored messages.
        assert_eq!(send(&*store, text(room, &ana, "after")).await.seq, 5);
    }
}

conformance! {
    /// Concurrent batches over shared rooms (with every message sent twice,
    /// the second time as a retry in another batch): each room's seqs are
    /// 1..n exactly once, one message per key.
    async fn concurrent_batches_have_no_gaps_or_repeats(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let rooms = [group(&*store, &ana, &[&ben]).await, group(&*store, &ben, &[&ana]).await];
        let mut tasks = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            let (ana, ben) = (ana.clone(), ben.clone());
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                for b in 0..10 {
                    let batch: Vec<NewMessage> = (0..10)
                        .map(|k| {
                            let sender = if k % 2 == 0 { &ana } else { &ben };
                            // Each batch repeats the keys of the one before.
                            let key = format!("{t}-{}-{}", b - b % 2, k);
                            NewMessage { client_msg_id: Some(key), ..text(rooms[k % 2], sender, "x") }
                        })
                        .collect();
                    for result in store.send_messages(&batch).await {
                        match result.unwrap() {
                            SendResult::Sent(_) => sent += 1,
                            SendResult::Duplicate(_) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                }
                sent
            }));
        }
        let mut sent = 0;
        for task in tasks {
            sent += task.await.unwrap();
        }
        assert_eq!(sent, 4 * 5 * 10);
        for room in rooms {
            let all = store.messages(room, range(Some(0), None, 1000)).await.unwrap();
            assert_eq!(seqs(&all), (1..=101).collect::<Vec<_>>(), "the group's first message, then 100");
            let keys: HashSet<_> = all.iter().filter_map(|m| m.client_msg_id.clone()).collect();
            assert_eq!(keys.len(), 100);
        }
    }
}

conformance! {
    /// A batch stores what it was given exactly: bodies byte for byte (empty,
    /// not UTF-8), times to the microsecond (PostgreSQL's precision), and
    /// the room's head time, so
    /// messages read back equal the ones the batch returned and rooms order
    /// by their newest message.
    async fn batches_store_bodies_and_times_exactly(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let older = group(&*store, &ana, &[&ben]).await;
        let newer = group(&*store, &ana, &[&ben]).await;
        let micros = (now() + TimeDelta::seconds(5)).timestamp_micros();
        let at = chrono::DateTime::from_timestamp_micros(micros).unwrap();
        let batch = vec![
            NewMessage { body: Vec::new(), now: at, ..text(older, &ana, "") },
            NewMessage { body: vec![0, 255, 1, 128, 0], now: at + TimeDelta::microseconds(1), ..text(newer, &ben, "") },
            NewMessage { now: at + TimeDelta::microseconds(2), ..text(newer, &ana, "héllo \u{1F600}") },
        ];
        let results = store.send_messages(&batch).await;
        let sent: Vec<StoredMessage> = results
            .into_iter()
            .map(|r| match r.unwrap() {
                SendResult::Sent(m) => m,
                other => panic!("not sent: {other:?}"),
            })
            .collect();
        for (m, given) in sent.iter().zip(&batch) {
            assert_eq!((&m.body, m.created_at), (&given.body, given.now));
            let read = store.message_by_id(m.id).await.unwrap().unwrap();
            assert_eq!(&read, m);
        }
        let rooms = store.rooms_for(ana.id, None, 10).await.unwrap();
        let order: Vec<i64> = rooms.iter().map(|r| r.id).collect();
        assert_eq!(order, vec![newer, older]);
        let newest = rooms.iter().find(|r| r.id == newer).unwrap();
        assert_eq!((newest.last_seq, newest.last_message_at), (3, Some(at + TimeDelta::microseconds(2))));
    }
}
