//! Media rows (uploads, who may see them, clean-up, re-encryption) and
//! message bodies sealed in the storing transaction.

use std::sync::Arc;

use palaver_core::chat::MessageType;
use palaver_core::social::{AuthorSummary, Visibility};
use palaver_core::time::now;
use palaver_store::{
    BodyCipher, BodySealer, MediaReseal, NewMessage, NewMoment, NewUpload, SendResult, StoreError, UploadDone,
};

use crate::{conformance, user};

fn upload(owner: i64, key: &str) -> NewUpload {
    NewUpload {
        owner_id: owner,
        kind: "image".into(),
        content_type: "image/png".into(),
        storage_key: key.into(),
        key_id: Some("k1".into()),
        now: now(),
    }
}

conformance! {
    /// An upload is not ready (not attachable, not visible) until finished;
    /// then its owner, viewers of its moments and members of its rooms may
    /// see it, and nobody else.
    async fn uploads_and_visibility(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let eve = user(&*store, "eve@example.org").await;
        let id = store.begin_upload(&upload(ana.id, "aa/bb/one")).await.unwrap();
        assert!(store.owned_media(ana.id, &[id]).await.unwrap().is_empty(), "not ready");
        assert!(!store.media_visible_to(ana.id, id).await.unwrap());
        let done = UploadDone {
            size_bytes: 1234,
            width: Some(10),
            height: Some(20),
            thumbnail_key: Some("aa/bb/thumb".into()),
            thumbnail_size_bytes: Some(99),
            filename: Some(b"sealed-name".to_vec()),
            ..UploadDone::default()
        };
        let media = store.finish_upload(id, &done, now()).await.unwrap();
        assert_eq!((media.size_bytes, media.width, media.thumbnail_size_bytes), (1234, Some(10), Some(99)));
        assert_eq!(media.key_id.as_deref(), Some("k1"));
        assert!(media.ready_at.is_some());
        assert!(matches!(store.finish_upload(id, &done, now()).await, Err(StoreError::NotFound)), "only once");
        assert_eq!(store.owned_media(ana.id, &[id]).await.unwrap(), vec![id]);
        assert!(store.media_visible_to(ana.id, id).await.unwrap());
        assert!(!store.media_visible_to(ben.id, id).await.unwrap());

        // On a followers-only moment: Ben follows, Eve does not.
        store.set_follow(ben.id, ana.id, palaver_store::LikeOp::Set, now()).await.unwrap();
        store.create_moment(&NewMoment { user_id: ana.id, content: "m".into(), media_ids: vec![id], visibility: Visibility::Followers, now: now() }).await.unwrap();
        assert!(store.media_visible_to(ben.id, id).await.unwrap());
        assert!(!store.media_visible_to(eve.id, id).await.unwrap());

        // In a message of a room Eve is in.
        let other = store.begin_upload(&upload(ana.id, "aa/bb/two")).await.unwrap();
        store.finish_upload(other, &UploadDone::default(), now()).await.unwrap();
        let (room, _) = store.create_private_room(ana.id, eve.id, now()).await.unwrap();
        let m = NewMessage {
            room_id: room,
            sender: AuthorSummary { id: ana.id, display_name: "ana".into(), avatar: None },
            client_msg_id: None,
            message_type: MessageType::Image,
            body: Vec::new(),
            sealer: BodySealer::plain(),
            media_id: Some(other),
            reply_to: None,
            shared_moment_id: None,
            now: now(),
        };
        assert!(matches!(store.send_message(&m).await.unwrap(), SendResult::Sent(_)));
        assert!(store.media_visible_to(eve.id, other).await.unwrap());
        assert!(!store.media_visible_to(ben.id, other).await.unwrap());
        assert!(store.media_by_id(other).await.unwrap().unwrap().attached_at.is_some(), "attached by the message");
    }
}

conformance! {
    /// Stale unattached media are listed and deleted, unless attached
    /// meanwhile; re-encryption switches a row only if unchanged.
    async fn clean_up_and_reseal(store) {
        let ana = user(&*store, "ana@example.org").await;
        let lone = store.begin_upload(&upload(ana.id, "x/y/lone")).await.unwrap();
        let used = store.begin_upload(&upload(ana.id, "x/y/used")).await.unwrap();
        for id in [lone, used] {
            store.finish_upload(id, &UploadDone::default(), now()).await.unwrap();
        }
        store.create_moment(&NewMoment { user_id: ana.id, content: "m".into(), media_ids: vec![used], visibility: Visibility::Public, now: now() }).await.unwrap();
        let later = now() + chrono::TimeDelta::days(2);
        let stale: Vec<i64> = store.stale_media(later, 10).await.unwrap().iter().map(|m| m.id).collect();
        assert_eq!(stale, vec![lone]);
        assert!(!store.delete_stale_media(used).await.unwrap(), "attached media stay");
        assert!(store.delete_stale_media(lone).await.unwrap());
        assert!(store.media_by_id(lone).await.unwrap().is_none());

        let todo = store.media_to_reseal("k2", 0, 10).await.unwrap();
        assert_eq!(todo.iter().map(|m| m.id).collect::<Vec<_>>(), vec![used]);
        let reseal = |old: &str| MediaReseal {
            id: used,
            old_storage_key: old.into(),
            storage_key: "x/y/new".into(),
            thumbnail_key: None,
            filename: None,
            key_id: "k2".into(),
        };
        assert!(!store.reseal_media(&reseal("x/y/other")).await.unwrap(), "changed meanwhile");
        assert!(store.reseal_media(&reseal("x/y/used")).await.unwrap());
        assert!(store.media_to_reseal("k2", 0, 10).await.unwrap().is_empty());
        assert_eq!(store.media_key_counts().await.unwrap(), vec![(Some("k2".to_owned()), 1)]);
    }
}

/// A test cipher: "sealed" bodies name the place they were sealed for.
struct PlaceCipher;

impl BodyCipher for PlaceCipher {
    fn seal(&self, room_id: i64, seq: i64, text: &[u8]) -> Result<(Vec<u8>, Option<String>), StoreError> {
        let mut out = format!("room {room_id} seq {seq}: ").into_bytes();
        out.extend(text.iter().map(|b| b ^ 0x55));
        Ok((out, Some("place".into())))
    }
}

conformance! {
    /// Bodies are sealed in the storing transaction with the seq the
    /// message gets; rotation reads them back and swaps them only if
    /// unchanged.
    async fn bodies_are_sealed_at_their_place(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let (room, _) = store.create_private_room(ana.id, ben.id, now()).await.unwrap();
        let sealer = BodySealer::new(Arc::new(PlaceCipher));
        let mut ids = Vec::new();
        for text in ["uno", "dos"] {
            let m = NewMessage {
                room_id: room,
                sender: AuthorSummary { id: ana.id, display_name: "ana".into(), avatar: None },
                client_msg_id: None,
                message_type: MessageType::Text,
                body: text.as_bytes().to_vec(),
                sealer: sealer.clone(),
                media_id: None,
                reply_to: None,
                shared_moment_id: None,
                now: now(),
            };
            let SendResult::Sent(stored) = store.send_message(&m).await.unwrap() else { panic!("not sent") };
            assert!(stored.body.starts_with(format!("room {room} seq {}: ", stored.seq).as_bytes()));
            assert_eq!(stored.body_key_id.as_deref(), Some("place"));
            ids.push(stored.id);
        }
        let todo = store.bodies_to_reseal("next", 0, 10).await.unwrap();
        assert_eq!(todo.iter().map(|b| (b.id, b.seq)).collect::<Vec<_>>(), vec![(ids[0], 1), (ids[1], 2)]);
        assert!(!store.reseal_body(ids[0], b"not the body", b"new", "next").await.unwrap());
        assert!(store.reseal_body(ids[0], &todo[0].body, b"new", "next").await.unwrap());
        assert_eq!(store.bodies_to_reseal("next", 0, 10).await.unwrap().len(), 1);
        assert_eq!(
            store.message_key_counts().await.unwrap(),
            vec![(Some("next".to_owned()), 1), (Some("place".to_owned()), 1)]
        );
    }
}
