//! Voice rooms: seats counted exactly under concurrent joins, roles, the
//! heartbeat sweeper and idle rooms.

use std::sync::Arc;

use chrono::TimeDelta;
use palaver_core::time::now;
use palaver_core::user::Level;
use palaver_core::voice::{NewVoiceRoom, VoiceRole};
use palaver_store::{PageRequest, RoleChange, Store, VoiceFlag, VoiceJoin};

use crate::{conformance, user};

fn new_room(topic: &str, level: Level, max_participants: i64, max_speakers: i64) -> NewVoiceRoom {
    NewVoiceRoom::validate("Room", "about things", topic, level, Some(max_participants), Some(max_speakers), 1000)
        .unwrap()
}

/// The room's counters equal its participant rows.
async fn assert_counts(store: &dyn Store, room: i64) -> (i64, i64) {
    let r = store.voice_room(room).await.unwrap().unwrap();
    let people = store.voice_participants(room).await.unwrap();
    let speakers = people.iter().filter(|p| p.role.speaks()).count() as i64;
    assert_eq!(r.current_participants, people.len() as i64, "participants counter equals the rows");
    assert_eq!(r.current_speakers, speakers, "speakers counter equals the rows");
    (r.current_participants, r.current_speakers)
}

conformance! {
    async fn thirty_concurrent_joins_fill_exactly_ten_speaker_seats(store) {
        let host = user(&*store, "host@x.org").await;
        let room = store.create_voice_room(host.id, &new_room("travel", Level::Beginner, 25, 10), now()).await.unwrap();
        let mut users = Vec::new();
        for i in 0..30 {
            users.push(user(&*store, &format!("u{i}@x.org")).await.id);
        }
        let mut tasks = Vec::new();
        for u in users {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move { store.join_voice_room(room.id, u, "node-a", "127.0.0.1:1", now()).await.unwrap() }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        let speakers = outcomes.iter().filter(|o| matches!(o, VoiceJoin::Joined(VoiceRole::Speaker))).count();
        let listeners = outcomes.iter().filter(|o| matches!(o, VoiceJoin::Joined(VoiceRole::Listener))).count();
        let full = outcomes.iter().filter(|o| matches!(o, VoiceJoin::Full)).count();
        assert_eq!((speakers, listeners, full), (10, 15, 5));
        assert_eq!(assert_counts(&*store, room.id).await, (25, 10));
        assert_eq!(store.voice_room(room.id).await.unwrap().unwrap().media_node.as_deref(), Some("node-a"));
        // Another node takes the media over (node-a died); a closed room keeps none.
        assert!(store.set_voice_media(room.id, "node-b", "127.0.0.1:2", now()).await.unwrap());
        let moved = store.voice_room(room.id).await.unwrap().unwrap();
        assert_eq!((moved.media_node.as_deref(), moved.media_addr.as_deref()), (Some("node-b"), Some("127.0.0.1:2")));
        store.close_voice_room(room.id, now()).await.unwrap();
        assert!(!store.set_voice_media(room.id, "node-c", "127.0.0.1:3", now()).await.unwrap());
        assert_eq!(store.voice_room(room.id).await.unwrap().unwrap().media_node, None);
    }
}

conformance! {
    async fn rooms_list_join_leave_and_roles(store) {
        let host = user(&*store, "host@x.org").await;
        let a = user(&*store, "a@x.org").await;
        let b = user(&*store, "b@x.org").await;
        let r1 = store.create_voice_room(host.id, &new_room("travel", Level::Beginner, 10, 2), now()).await.unwrap();
        let r2 = store.create_voice_room(host.id, &new_room("business", Level::Advanced, 10, 2), now()).await.unwrap();
        let page = PageRequest { cursor: None, limit: 20 };
        let all = store.list_voice_rooms(None, None, page).await.unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r2.id, r1.id]);
        let travel = store.list_voice_rooms(Some("travel"), None, page).await.unwrap();
        assert_eq!(travel.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r1.id]);
        let advanced = store.list_voice_rooms(None, Some(Level::Advanced), page).await.unwrap();
        assert_eq!(advanced.iter().map(|r| r.id).collect::<Vec<_>>(), vec![r2.id]);
        assert!(store.list_voice_rooms(Some("travel"), Some(Level::Advanced), page).await.unwrap().is_empty());

        // Two speaker seats: A takes one, the host the other; B listens.
        assert_eq!(store.join_voice_room(r1.id, a.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Joined(VoiceRole::Speaker));
        assert_eq!(store.join_voice_room(r1.id, host.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Joined(VoiceRole::Host));
        assert_eq!(store.join_voice_room(r1.id, b.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Joined(VoiceRole::Listener));
        assert_eq!(store.join_voice_room(r1.id, b.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Already(VoiceRole::Listener));
        assert_eq!(assert_counts(&*store, r1.id).await, (3, 2));
        let people = store.voice_participants(r1.id).await.unwrap();
        assert_eq!(people.iter().map(|p| p.role).collect::<Vec<_>>(), vec![VoiceRole::Host, VoiceRole::Speaker, VoiceRole::Listener]);

        // No free seat for B until A steps down.
        assert_eq!(store.set_voice_role(r1.id, b.id, VoiceRole::Speaker, now()).await.unwrap(), RoleChange::NoSeat);
        assert_eq!(store.set_voice_role(r1.id, a.id, VoiceRole::Listener, now()).await.unwrap(), RoleChange::Changed);
        assert_eq!(store.set_voice_role(r1.id, b.id, VoiceRole::Speaker, now()).await.unwrap(), RoleChange::Changed);
        assert_eq!(store.set_voice_role(r1.id, host.id, VoiceRole::Listener, now()).await.unwrap(), RoleChange::NotAllowed);
        assert_eq!(store.set_voice_role(r1.id, 999_999, VoiceRole::Speaker, now()).await.unwrap(), RoleChange::NotParticipant);
        assert_eq!(assert_counts(&*store, r1.id).await, (3, 2));

        assert!(store.set_voice_flag(r1.id, b.id, VoiceFlag::Muted, true).await.unwrap());
        assert!(store.set_voice_flag(r1.id, a.id, VoiceFlag::HandRaised, true).await.unwrap());
        assert!(!store.set_voice_flag(r2.id, a.id, VoiceFlag::Muted, true).await.unwrap(), "not in that room");
        let bp = store.voice_participant(r1.id, b.id).await.unwrap().unwrap();
        assert!(bp.is_muted && bp.role == VoiceRole::Speaker);

        assert_eq!(store.leave_voice_room(r1.id, b.id, now()).await.unwrap(), Some(VoiceRole::Speaker));
        assert_eq!(store.leave_voice_room(r1.id, b.id, now()).await.unwrap(), None);
        assert_eq!(assert_counts(&*store, r1.id).await, (2, 1));

        // Closing removes everyone and stops joins.
        let mut removed = store.close_voice_room(r1.id, now()).await.unwrap().unwrap();
        removed.sort_unstable();
        assert_eq!(removed, vec![host.id, a.id]);
        assert!(store.close_voice_room(r1.id, now()).await.unwrap().is_none());
        assert_eq!(store.join_voice_room(r1.id, b.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Closed);
        assert_eq!(store.join_voice_room(424_242, b.id, "n", "127.0.0.1:1", now()).await.unwrap(), VoiceJoin::Closed);
        assert_eq!(assert_counts(&*store, r1.id).await, (0, 0));
        assert_eq!(store.list_voice_rooms(None, None, page).await.unwrap().len(), 1);
    }
}

conformance! {
    async fn stale_participants_are_swept_and_idle_rooms_close(store) {
        let host = user(&*store, "host@x.org").await;
        let a = user(&*store, "a@x.org").await;
        let b = user(&*store, "b@x.org").await;
        let room = store.create_voice_room(host.id, &new_room("travel", Level::Beginner, 10, 10), now()).await.unwrap();
        let old = now() - TimeDelta::seconds(30);
        store.join_voice_room(room.id, a.id, "n", "127.0.0.1:1", old).await.unwrap();
        store.join_voice_room(room.id, b.id, "n", "127.0.0.1:1", old).await.unwrap();
        // B's connection is alive (its heartbeat is fresh); A's is not.
        assert_eq!(store.touch_voice_participants(&[(room.id, b.id)], None, now()).await.unwrap(), 1);
        let cutoff = now() - TimeDelta::seconds(10);
        let stale = store.stale_voice_participants(cutoff, 100).await.unwrap();
        assert_eq!(stale, vec![(room.id, a.id)]);
        // B heartbeated since an older look: kept even when named.
        let swept = store
            .remove_voice_participants(&[(room.id, a.id), (room.id, b.id)], Some(cutoff), now())
            .await
            .unwrap();
        assert_eq!(swept.iter().map(|r| r.user_id).collect::<Vec<_>>(), vec![a.id]);
        assert_eq!(assert_counts(&*store, room.id).await, (1, 1));
        // The disconnect hook takes B out at once.
        let gone = store.remove_voice_user(b.id, now()).await.unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(assert_counts(&*store, room.id).await, (0, 0));
        // Empty now: it closes once idle past the cutoff, not before.
        assert!(store.close_idle_voice_rooms(now() - TimeDelta::seconds(60), now()).await.unwrap().is_empty());
        assert_eq!(store.close_idle_voice_rooms(now() + TimeDelta::seconds(1), now()).await.unwrap(), vec![room.id]);
        assert!(!store.voice_room(room.id).await.unwrap().unwrap().is_active);
    }
}
