use chrono::TimeDelta;
use palaver_core::notification::{DeviceType, NotificationType, WebPushKeys, WebPushSubscription};
use palaver_core::time::{Timestamp, now};
use palaver_store::{NewNotification, NewPushToken, PushPlan, PushResult, RenderInput, Rendered, Retracted, Store};
use serde_json::json;

use crate::{conformance, user};

/// A renderer that shows what it was given, so tests see the inputs.
fn render(input: &RenderInput<'_>) -> Rendered {
    Rendered {
        title: format!("{} x{}", input.actor_names.join(","), input.actor_count),
        message: format!("events {}", input.event_count),
    }
}

fn like(user_id: i64, actor: i64, moment: i64, at: Timestamp, push: bool) -> NewNotification {
    NewNotification {
        user_id,
        notification_type: NotificationType::Like,
        data: json!({"moment_id": moment, "actor_id": actor}),
        aggregation_key: Some(format!("like:moment:{moment}")),
        actor_id: Some(actor),
        aggregate_since: at - TimeDelta::hours(1),
        in_app: true,
        push: push.then(|| PushPlan {
            collapse_key: Some(format!("like:moment:{moment}")),
            high_priority: false,
            ttl_secs: 3600,
            not_before: at,
            expires_at: at + TimeDelta::days(1),
        }),
        now: at,
    }
}

fn android(token: &str) -> NewPushToken {
    NewPushToken { token: token.into(), device_type: DeviceType::Android, web_push: None }
}

conformance! {
    async fn likes_aggregate_into_one_notification(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let t0 = now();
        let first = store.record_notification(&like(ana.id, ben.id, 7, t0, false), &render).await.unwrap();
        assert!(first.created);
        let n = first.notification.unwrap();
        assert_eq!(n.title, "ben x1");
        assert_eq!(first.unread_count, 1);

        let t1 = t0 + TimeDelta::seconds(5);
        let second = store.record_notification(&like(ana.id, cleo.id, 7, t1, false), &render).await.unwrap();
        assert!(!second.created, "merged into the open aggregate");
        let merged = second.notification.unwrap();
        assert_eq!(merged.id, n.id);
        assert_eq!(merged.title, "cleo,ben x2", "newest actor first");
        assert_eq!(merged.actor_count, 2);
        assert_eq!(merged.updated_at, t1);
        assert_eq!(second.unread_count, 1);

        // The same person again counts once but becomes the newest.
        let again = store
            .record_notification(&like(ana.id, ben.id, 7, t1 + TimeDelta::seconds(1), false), &render)
            .await
            .unwrap();
        assert_eq!(again.notification.unwrap().title, "ben,cleo x2");

        // Another moment is another notification.
        let other = store.record_notification(&like(ana.id, ben.id, 8, t1, false), &render).await.unwrap();
        assert!(other.created);
        assert_eq!(other.unread_count, 2);
    }
}

conformance! {
    async fn aggregation_window_and_reading_close_the_aggregate(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let t0 = now();
        let first = store.record_notification(&like(ana.id, ben.id, 7, t0, false), &render).await.unwrap();
        let first = first.notification.unwrap();
        // Two hours later the one-hour window has closed: a new notification.
        let later = t0 + TimeDelta::hours(2);
        let fresh = store.record_notification(&like(ana.id, cleo.id, 7, later, false), &render).await.unwrap();
        assert!(fresh.created);
        let fresh = fresh.notification.unwrap();
        assert_ne!(fresh.id, first.id);

        // Reading closes it too.
        let read = store.mark_notification_read(ana.id, fresh.id, later).await.unwrap().unwrap();
        assert!(read.is_read);
        assert_eq!(read.read_at, Some(later));
        let after = store
            .record_notification(&like(ana.id, ben.id, 7, later + TimeDelta::seconds(1), false), &render)
            .await
            .unwrap();
        assert!(after.created, "a read notification does not absorb new likes");
        // Someone else's notification cannot be marked.
        assert!(store.mark_notification_read(ben.id, after.notification.unwrap().id, later).await.unwrap().is_none());
    }
}

conformance! {
    async fn retracting_updates_or_deletes(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let cleo = user(&*store, "cleo@example.org").await;
        let t0 = now();
        store.register_push_token(ana.id, &android("tok-a"), 10, t0).await.unwrap();
        store.record_notification(&like(ana.id, ben.id, 7, t0, true), &render).await.unwrap();
        let both = store.record_notification(&like(ana.id, cleo.id, 7, t0, true), &render).await.unwrap();
        assert_eq!(store.pending_push_count().await.unwrap(), 1, "the burst collapsed to one pending push");

        let retracted = store.retract_notification(ana.id, "like:moment:7", cleo.id, &render, t0).await.unwrap();
        let Retracted::Updated { notification, unread_count } = retracted else { panic!("{retracted:?}") };
        assert_eq!(notification.id, both.notification.unwrap().id);
        assert_eq!(notification.title, "ben x1");
        assert_eq!(unread_count, 1);
        let claimed = store.claim_pushes("c1", t0, t0 + TimeDelta::minutes(1), 10).await.unwrap();
        assert_eq!(claimed[0].payload.as_ref().unwrap().title, "ben x1", "the pending push was rewritten");
        store.finish_pushes("c1", &[(claimed[0].clone(), PushResult::Delivered)]).await.unwrap();

        // Unknown actor: nothing.
        let none = store.retract_notification(ana.id, "like:moment:7", ana.id, &render, t0).await.unwrap();
        assert!(matches!(none, Retracted::Unchanged));

        let gone = store.retract_notification(ana.id, "like:moment:7", ben.id, &render, t0).await.unwrap();
        let Retracted::Deleted { id, unread_count } = gone else { panic!("{gone:?}") };
        assert_eq!(id, notification.id);
        assert_eq!(unread_count, 0);
        assert!(store.list_notifications(ana.id, false, None, 10).await.unwrap().is_empty());

        // A read notification is history: an unlike leaves it alone.
        let kept = store.record_notification(&like(ana.id, ben.id, 9, t0, false), &render).await.unwrap();
        let kept = kept.notification.unwrap();
        store.mark_notification_read(ana.id, kept.id, t0).await.unwrap();
        let after = store.retract_notification(ana.id, "like:moment:9", ben.id, &render, t0).await.unwrap();
        assert!(matches!(after, Retracted::Unchanged));
    }
}

conformance! {
    async fn listing_paging_and_reading(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let t0 = now();
        let mut ids = Vec::new();
        for moment in 1..=5 {
            let r = store.record_notification(&like(ana.id, ben.id, moment, t0, false), &render).await.unwrap();
            ids.push(r.notification.unwrap().id);
        }
        let page = store.list_notifications(ana.id, false, None, 2).await.unwrap();
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), vec![ids[4], ids[3]]);
        let next = store.list_notifications(ana.id, false, Some(ids[3]), 10).await.unwrap();
        assert_eq!(next.iter().map(|n| n.id).collect::<Vec<_>>(), vec![ids[2], ids[1], ids[0]]);

        store.mark_notification_read(ana.id, ids[1], t0).await.unwrap();
        assert_eq!(store.unread_notification_count(ana.id).await.unwrap(), 4);
        let unread = store.list_notifications(ana.id, true, None, 10).await.unwrap();
        assert!(unread.iter().all(|n| !n.is_read && n.id != ids[1]));
        assert_eq!(unread.len(), 4);

        // Mark all read up to the third: the two newer stay unread.
        assert_eq!(store.mark_all_notifications_read(ana.id, Some(ids[2]), t0).await.unwrap(), 2);
        assert_eq!(store.unread_notification_count(ana.id).await.unwrap(), 2);
        assert_eq!(store.mark_all_notifications_read(ana.id, None, t0).await.unwrap(), 2);
        assert_eq!(store.unread_notification_count(ana.id).await.unwrap(), 0);
        assert_eq!(store.unread_notification_count(ben.id).await.unwrap(), 0);
    }
}

conformance! {
    async fn preferences_round_trip(store) {
        let ana = user(&*store, "ana@example.org").await;
        assert!(store.notification_preferences(ana.id).await.unwrap().is_none());
        let prefs = json!({"types": {"like": {"in_app": true, "push": false}}});
        store.set_notification_preferences(ana.id, &prefs, now()).await.unwrap();
        assert_eq!(store.notification_preferences(ana.id).await.unwrap(), Some(prefs));
        let replaced = json!({"types": {}});
        store.set_notification_preferences(ana.id, &replaced, now()).await.unwrap();
        assert_eq!(store.notification_preferences(ana.id).await.unwrap(), Some(replaced));
    }
}

conformance! {
    async fn push_tokens_belong_to_one_user(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let t0 = now();
        let web = NewPushToken {
            token: "https://push.example.org/sub/1".into(),
            device_type: DeviceType::Web,
            web_push: Some(WebPushSubscription {
                endpoint: "https://push.example.org/sub/1".into(),
                keys: WebPushKeys { p256dh: "BP".into(), auth: "au".into() },
            }),
        };
        let stored = store.register_push_token(ana.id, &web, 10, t0).await.unwrap();
        assert_eq!(stored.web_push, web.web_push);
        store.register_push_token(ana.id, &android("device-1"), 10, t0).await.unwrap();
        assert_eq!(store.push_tokens(ana.id).await.unwrap().len(), 2);

        // A push queued for Ana on device-1 ...
        store.record_notification(&like(ana.id, ben.id, 1, t0, true), &render).await.unwrap();
        assert_eq!(store.pending_push_count().await.unwrap(), 2);
        // ... is dropped when Ben registers the same device.
        let moved = store.register_push_token(ben.id, &android("device-1"), 10, t0).await.unwrap();
        assert_eq!(moved.user_id, ben.id);
        assert_eq!(store.push_tokens(ana.id).await.unwrap().len(), 1);
        assert_eq!(store.pending_push_count().await.unwrap(), 1, "only the web push for Ana remains");

        assert!(!store.delete_push_token(ana.id, "device-1").await.unwrap(), "not Ana's any more");
        assert!(store.delete_push_token(ben.id, "device-1").await.unwrap());
        assert!(store.push_tokens(ben.id).await.unwrap().is_empty());

        // At most N per user: the least recently registered goes.
        for i in 0..4 {
            store.register_push_token(ben.id, &android(&format!("d{i}")), 3, t0 + TimeDelta::seconds(i)).await.unwrap();
        }
        let kept: Vec<String> = store.push_tokens(ben.id).await.unwrap().into_iter().map(|t| t.token).collect();
        assert_eq!(kept, vec!["d1", "d2", "d3"]);
    }
}

conformance! {
    async fn outbox_claims_leases_and_results(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let t0 = now();
        store.register_push_token(ana.id, &android("a1"), 10, t0).await.unwrap();
        store.register_push_token(ana.id, &android("a2"), 10, t0).await.unwrap();
        let recorded = store.record_notification(&like(ana.id, ben.id, 1, t0, true), &render).await.unwrap();
        assert_eq!(recorded.pushes_queued, 2);
        let id = recorded.notification.unwrap().id;

        // Not due yet: nothing to claim.
        assert!(store.claim_pushes("early", t0 - TimeDelta::seconds(1), t0, 10).await.unwrap().is_empty());

        let lease = t0 + TimeDelta::seconds(30);
        let first = store.claim_pushes("w1", t0, lease, 1).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempts, 1);
        assert_eq!(first[0].token, "a1");
        let payload = first[0].payload.clone().unwrap();
        assert_eq!(payload.notification_id, Some(id));
        assert_eq!(payload.badge, Some(1));
        let second = store.claim_pushes("w2", t0, lease, 10).await.unwrap();
        assert_eq!(second.len(), 1, "the row held by w1 is skipped");
        assert_eq!(second[0].token, "a2");
        assert!(store.claim_pushes("w3", t0, lease, 10).await.unwrap().is_empty());

        // w2's push fails and is retried later.
        let retry_at = t0 + TimeDelta::seconds(10);
        store
            .finish_pushes("w2", &[(second[0].clone(), PushResult::Retry { at: retry_at, error: "503".into() })])
            .await
            .unwrap();
        assert!(store.claim_pushes("w3", t0, lease, 10).await.unwrap().is_empty(), "not due yet");

        // w1 stalls past its lease: its row is claimed again by w4 ...
        let after_lease = lease + TimeDelta::seconds(1);
        let reclaimed = store.claim_pushes("w4", after_lease, after_lease + TimeDelta::seconds(30), 10).await.unwrap();
        let mut tokens: Vec<_> = reclaimed.iter().map(|i| (i.token.clone(), i.attempts)).collect();
        tokens.sort();
        assert_eq!(tokens, vec![("a1".to_owned(), 2), ("a2".to_owned(), 2)]);
        // ... and w1 finishing late changes nothing.
        store.finish_pushes("w1", &[(first[0].clone(), PushResult::Delivered)]).await.unwrap();
        assert_eq!(store.pending_push_count().await.unwrap(), 2);
        let unsent = store.list_notifications(ana.id, false, None, 1).await.unwrap();
        assert!(!unsent[0].is_sent);

        let a1 = reclaimed.iter().find(|i| i.token == "a1").unwrap().clone();
        let a2 = reclaimed.iter().find(|i| i.token == "a2").unwrap().clone();
        let pruned = store.finish_pushes("w4", &[(a1, PushResult::Delivered), (a2, PushResult::PruneToken)]).await.unwrap();
        assert_eq!(pruned, 1);
        assert_eq!(store.pending_push_count().await.unwrap(), 0);
        let tokens: Vec<String> = store.push_tokens(ana.id).await.unwrap().into_iter().map(|t| t.token).collect();
        assert_eq!(tokens, vec!["a1"]);
        let sent = store.list_notifications(ana.id, false, None, 1).await.unwrap();
        assert!(sent[0].is_sent);
    }
}

conformance! {
    async fn concurrent_claims_are_disjoint(store) {
        let ana = user(&*store, "ana@example.org").await;
        let ben = user(&*store, "ben@example.org").await;
        let t0 = now();
        store.register_push_token(ana.id, &android("a1"), 10, t0).await.unwrap();
        for moment in 0..60 {
            store.record_notification(&like(ana.id, ben.id, moment, t0, true), &render).await.unwrap();
        }
        let lease = t0 + TimeDelta::minutes(1);
        let mut tasks = Vec::new();
        for w in 0..4 {
            let store: std::sync::Arc<dyn Store> = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for n in 0.. {
                    // Each batch is its own claim, as workers do it.
                    let batch = store.claim_pushes(&format!("w{w}-{n}"), t0, lease, 7).await.unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    mine.extend(batch.into_iter().map(|i| i.id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(total, 60, "every row claimed");
        assert_eq!(all.len(), 60, "no row claimed twice");
    }
}
