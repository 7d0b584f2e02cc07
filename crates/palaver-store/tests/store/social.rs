use palaver_core::social::Visibility;
use palaver_core::time::now;
use palaver_store::{FeedKind, LikeOp, NewComment, NewMoment, PageRequest};

use crate::{conformance, user};

async fn moment(store: &dyn palaver_store::Store, author: i64, visibility: Visibility) -> i64 {
    store
        .create_moment(&NewMoment { user_id: author, content: "m".into(), media_ids: vec![], visibility, now: now() })
        .await
        .unwrap()
}

conformance! {
    /// The SQL visibility filter says what `Visibility::allows` says, for
    /// every visibility and every relationship, on single reads and feeds.
    async fn sql_visibility_matches_the_rule(store) {
        let author = user(&*store, "author@example.org").await.id;
        let follower = user(&*store, "follower@example.org").await.id;
        let stranger = user(&*store, "stranger@example.org").await.id;
        let blocked = user(&*store, "blocked@example.org").await.id;
        let blocker = user(&*store, "blocker@example.org").await.id;
        let blocked_follower = user(&*store, "blocked-follower@example.org").await.id;
        let t = now();
        for fan in [follower, blocked_follower, blocker] {
            assert_eq!(store.set_follow(fan, author, LikeOp::Set, t).await.unwrap(), (true, true));
        }
        store.set_block(author, blocked, LikeOp::Set, t).await.unwrap();
        store.set_block(blocker, author, LikeOp::Set, t).await.unwrap();
        store.set_block(author, blocked_follower, LikeOp::Set, t).await.unwrap();
        let cases = [
            (author, true, false, false),
            (follower, false, true, false),
            (stranger, false, false, false),
            (blocked, false, false, true),
            (blocker, false, false, true),
            (blocked_follower, false, false, true),
        ];
        for visibility in [Visibility::Public, Visibility::Followers, Visibility::Private] {
            let id = moment(&*store, author, visibility).await;
            for (viewer, is_author, follows, blocks) in cases {
                let expected = visibility.allows(is_author, follows, blocks);
                let access = store.moment_access(viewer, id).await.unwrap().unwrap();
                assert_eq!(access.visible, expected, "{visibility:?} for viewer {viewer}");
                let read = store.moments_for(viewer, &[id]).await.unwrap();
                assert_eq!(read.len() == 1, expected, "{visibility:?} read by {viewer}");
                let page = PageRequest { cursor: None, limit: 100 };
                let feed = store.feed(viewer, FeedKind::User(author), page).await.unwrap();
                assert_eq!(feed.iter().any(|m| m.id == id), expected, "{visibility:?} in user feed of {viewer}");
                let home = store.feed(viewer, FeedKind::Home, page).await.unwrap();
                assert_eq!(home.iter().any(|m| m.id == id), expected, "{visibility:?} in home feed of {viewer}");
            }
        }
        // A suspended author's moments and comments disappear for everyone.
        let public = moment(&*store, author, Visibility::Public).await;
        let comment = store
            .create_comment(&NewComment { moment_id: public, user_id: author, parent_comment_id: None, content: "c".into(), now: t })
            .await
            .unwrap();
        assert_eq!(store.comments_by_ids(stranger, &[comment]).await.unwrap().len(), 1);
        store.set_suspended(author, true, now()).await.unwrap();
        let page = PageRequest { cursor: None, limit: 100 };
        for viewer in [follower, stranger] {
            assert!(!store.moment_access(viewer, public).await.unwrap().unwrap().visible);
            assert!(store.feed(viewer, FeedKind::Public, page).await.unwrap().is_empty());
            assert!(store.feed(viewer, FeedKind::Home, page).await.unwrap().is_empty());
            assert!(store.comments_by_ids(viewer, &[comment]).await.unwrap().is_empty());
        }
    }
}

conformance! {
    /// Counters equal their rows after concurrent likes, comments and follows.
    async fn counters_under_concurrency(store) {
        let author = user(&*store, "popular@example.org").await.id;
        let id = moment(&*store, author, Visibility::Public).await;
        let mut fans = Vec::new();
        for i in 0..40 {
            fans.push(user(&*store, &format!("fan{i}@example.org")).await.id);
        }
        let mut tasks = Vec::new();
        for &fan in &fans {
            for op in [LikeOp::Toggle, LikeOp::Toggle, LikeOp::Set] {
                let store = store.clone();
                tasks.push(tokio::spawn(async move { store.like_moment(fan, id, op, now()).await.unwrap() }));
            }
            let store2 = store.clone();
            tasks.push(tokio::spawn(async move {
                store2.set_follow(fan, author, LikeOp::Toggle, now()).await.unwrap();
                palaver_store::LikeOutcome { liked: false, changed: false, likes_count: 0 }
            }));
            let store3 = store.clone();
            tasks.push(tokio::spawn(async move {
                store3
                    .create_comment(&NewComment {
                        moment_id: id,
                        user_id: fan,
                        parent_comment_id: None,
                        content: "c".into(),
                        now: now(),
                    })
                    .await
                    .unwrap();
                palaver_store::LikeOutcome { liked: false, changed: false, likes_count: 0 }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut liked = 0;
        for &fan in &fans {
            if store.moments_for(fan, &[id]).await.unwrap()[0].is_liked {
                liked += 1;
            }
        }
        let m = store.moments_for(author, &[id]).await.unwrap().remove(0);
        assert_eq!(m.likes_count, liked);
        assert_eq!(m.comments_count, 40);
        let profile = store.profile(author, author).await.unwrap().unwrap();
        assert_eq!(profile.followers_count, 40);
        let listed = store.followers(author, author, PageRequest { cursor: None, limit: 100 }).await.unwrap();
        assert_eq!(listed.len(), 40);
        // Blocking a follower removes the follow and its counts.
        store.set_block(author, fans[0], LikeOp::Set, now()).await.unwrap();
        assert_eq!(store.profile(author, author).await.unwrap().unwrap().followers_count, 39);
        assert_eq!(store.profile(fans[0], fans[0]).await.unwrap().unwrap().following_count, 0);
    }
}

/// Reports on messages: only participants of the message's conversation
/// may report it. Chat rows are written with plain SQL here (the chat store
/// is not part of this suite).
async fn message_reports(db: palaver_store::testing::TestDb) {
    use palaver_core::social::{ReportTarget, ReportType};
    use palaver_store::{NewReport, StoreError};
    let store = db.store.clone();
    let sender = user(&*store, "sender@example.org").await.id;
    let reader = user(&*store, "reader@example.org").await.id;
    let outsider = user(&*store, "outsider@example.org").await.id;
    let t = now();
    // Each backend's connection runs the same four statements.
    macro_rules! seed_chat {
        ($conn:expr) => {{
            let room: i64 = sqlx::query_scalar(
                "INSERT INTO chat_rooms (room_type, created_by, created_at, updated_at) \
                 VALUES ('group', $1, $2, $2) RETURNING id",
            )
            .bind(sender)
            .bind(t)
            .fetch_one(&mut $conn)
            .await
            .unwrap();
            for member in [sender, reader] {
                sqlx::query("INSERT INTO chat_participants (room_id, user_id, joined_at) VALUES ($1, $2, $3)")
                    .bind(room)
                    .bind(member)
                    .bind(t)
                    .execute(&mut $conn)
                    .await
                    .unwrap();
            }
            let message: i64 = sqlx::query_scalar(
                "INSERT INTO messages (room_id, sender_id, seq, body, created_at, updated_at) \
                 VALUES ($1, $2, 1, $3, $4, $4) RETURNING id",
            )
            .bind(room)
            .bind(sender)
            .bind(b"hello".to_vec())
            .bind(t)
            .fetch_one(&mut $conn)
            .await
            .unwrap();
            message
        }};
    }
    let url = db.options.url.clone();
    let message = if url.starts_with("sqlite:") {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        seed_chat!(conn)
    } else {
        use sqlx::ConnectOptions as _;
        use std::str::FromStr as _;
        let schema = db.options.pg_schema.clone().unwrap();
        let options =
            sqlx::postgres::PgConnectOptions::from_str(&url).unwrap().options([("search_path", schema.as_str())]);
        let mut conn = options.connect().await.unwrap();
        seed_chat!(conn)
    };
    assert_eq!(store.message_reportable_by(reader, message).await.unwrap(), Some(sender));
    assert_eq!(store.message_reportable_by(outsider, message).await.unwrap(), None);
    assert_eq!(store.message_reportable_by(reader, message + 100).await.unwrap(), None);
    let report = NewReport {
        reporter_id: reader,
        target: ReportTarget::Message(message),
        report_type: ReportType::Harassment,
        description: "rude".into(),
        auto_hide_threshold: 1,
        now: t,
    };
    let (stored, hidden) = store.create_report(&report).await.unwrap();
    assert_eq!(stored.reported_message, Some(message));
    assert_eq!(stored.target_user_id, Some(sender));
    assert!(!hidden, "messages are not auto-hidden");
    assert!(matches!(store.create_report(&report).await, Err(StoreError::Conflict(_))));
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reports_sqlite() {
    message_reports(palaver_store::testing::sqlite().await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reports_postgres() {
    if let Some(db) = palaver_store::testing::postgres().await.unwrap() {
        message_reports(db).await;
    }
}
