//! The outbox worker with real stores and a stand-in FCM: outages, dead
//! tokens, crashed workers and two workers draining one outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use palaver_core::notification::DeviceType;
use palaver_push::providers::{Fcm, http_client};
use palaver_push::testing::FcmStandIn;
use palaver_push::{NotificationService, NotificationSettings, OutboxSettings, OutboxWorker, Providers};
use palaver_service::DomainEvent;
use palaver_store::{NewPushToken, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{on_both, user};

const WAIT: Duration = Duration::from_secs(30);

fn fast() -> OutboxSettings {
    OutboxSettings {
        batch_size: 10,
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
    }
}

fn providers(fcm: &FcmStandIn) -> Providers {
    Providers {
        fcm: Some(Arc::new(Fcm::new(fcm.config(), http_client(Duration::from_secs(10)).unwrap()).unwrap())),
        ..Providers::default()
    }
}

async fn android(store: &dyn Store, user_id: i64, token: &str) {
    let t = NewPushToken { token: token.into(), device_type: DeviceType::Android, web_push: None };
    store.register_push_token(user_id, &t, 10, palaver_core::time::now()).await.unwrap();
}

/// `n` users each followed by `fan`, each with one Android token; returns
/// their ids.
async fn followed_users(service: &NotificationService, store: &dyn Store, fan: i64, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = user(store, &format!("u{i}")).await;
        android(store, id, &format!("token-{id}")).await;
        service.handle(DomainEvent::Followed { follower_id: fan, followee_id: id }).await.unwrap();
        ids.push(id);
    }
    ids
}

async fn wait_until_empty(store: &dyn Store) {
    let deadline = Instant::now() + WAIT;
    while store.pending_push_count().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn per_notification(fcm: &FcmStandIn) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for d in fcm.stand_in.deliveries() {
        *counts.entry(d.notification_id.expect("payload names its notification")).or_insert(0) += 1;
    }
    counts
}

on_both! {
    async fn provider_down_then_up_delivers_each_exactly_once(db) {
        let store = db.store.clone();
        let fcm = FcmStandIn::start().await;
        fcm.stand_in.set_down(true);
        let service = NotificationService::new(store.clone(), NotificationSettings::default());
        let fan = user(&*store, "fan").await;
        let users = followed_users(&service, &*store, fan, 12).await;

        let shutdown = CancellationToken::new();
        let worker = OutboxWorker::new(store.clone(), providers(&fcm), fast(), service.outbox_wake());
        let running = tokio::spawn(worker.run(shutdown.clone()));
        // Every push fails at least twice while the service is down.
        fcm.stand_in.wait_for_requests(users.len() * 2, WAIT).await;
        assert!(fcm.stand_in.deliveries().is_empty());
        assert_eq!(store.pending_push_count().await.unwrap(), 12, "nothing lost while down");

        fcm.stand_in.set_down(false);
        fcm.stand_in.wait_for_deliveries(users.len(), WAIT).await;
        wait_until_empty(&*store).await;
        shutdown.cancel();
        running.await.unwrap();

        let counts = per_notification(&fcm);
        assert_eq!(counts.len(), 12, "every notification delivered");
        assert!(counts.values().all(|c| *c == 1), "exactly once each: {counts:?}");
        let tokens: Vec<String> = fcm.stand_in.deliveries().into_iter().map(|d| d.token).collect();
        for id in users {
            assert!(tokens.contains(&format!("token-{id}")));
            let list = store.list_notifications(id, false, None, 1).await.unwrap();
            assert!(list[0].is_sent, "marked sent");
        }
        assert!(fcm.stand_in.violations().is_empty());
    }
}

on_both! {
    async fn unregistered_token_is_pruned_after_its_first_failure(db) {
        let store = db.store.clone();
        let fcm = FcmStandIn::start().await;
        let service = NotificationService::new(store.clone(), NotificationSettings::default());
        let ana = user(&*store, "ana").await;
        let ben = user(&*store, "ben").await;
        android(&*store, ana, "dead-token").await;
        android(&*store, ana, "live-token").await;
        fcm.stand_in.kill_token("dead-token");
        // Two notifications with different keys: four pushes queued.
        service.handle(DomainEvent::Followed { follower_id: ben, followee_id: ana }).await.unwrap();
        service.handle(DomainEvent::MomentLiked { moment_id: 1, author_id: ana, actor_id: ben }).await.unwrap();
        assert_eq!(store.pending_push_count().await.unwrap(), 4);

        let worker = OutboxWorker::new(store.clone(), providers(&fcm), fast(), service.outbox_wake());
        let mut report = worker.drain_once().await.unwrap();
        while store.pending_push_count().await.unwrap() > 0 {
            let more = worker.drain_once().await.unwrap();
            report.sent += more.sent;
            report.pruned += more.pruned;
        }
        assert_eq!(report.sent, 2, "the live token got both");
        assert!(report.pruned >= 1);
        let tokens: Vec<String> = store.push_tokens(ana).await.unwrap().into_iter().map(|t| t.token).collect();
        assert_eq!(tokens, vec!["live-token"]);
        let dead_requests = fcm.stand_in.requests() - fcm.stand_in.deliveries().len();
        assert!(dead_requests <= 2, "no retries to a dead token: {dead_requests} failed requests");
        assert!(fcm.stand_in.deliveries().iter().all(|d| d.token == "live-token"));

        // Nothing more goes to it.
        service.handle(DomainEvent::MomentLiked { moment_id: 2, author_id: ana, actor_id: ben }).await.unwrap();
        assert_eq!(store.pending_push_count().await.unwrap(), 1);
    }
}

on_both! {
    async fn a_crashed_workers_claim_is_retried_after_its_lease(db) {
        let store = db.store.clone();
        let fcm = FcmStandIn::start().await;
        let service = NotificationService::new(store.clone(), NotificationSettings::default());
        let fan = user(&*store, "fan").await;
        followed_users(&service, &*store, fan, 3).await;
        // A worker claims everything and dies without finishing.
        let now = palaver_core::time::now();
        // Long enough that the check below runs inside the lease even on a
        // loaded machine.
        let lease_end = now + TimeDelta::seconds(3);
        let claimed = store.claim_pushes("crashed", now, lease_end, 100).await.unwrap();
        assert_eq!(claimed.len(), 3);

        let worker = OutboxWorker::new(store.clone(), providers(&fcm), fast(), service.outbox_wake());
        let report = worker.drain_once().await.unwrap();
        assert_eq!(report.claimed, 0, "a live lease is respected");
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(worker.run(shutdown.clone()));
        fcm.stand_in.wait_for_deliveries(3, WAIT).await;
        assert!(palaver_core::time::now() >= lease_end, "not before the lease ended");
        wait_until_empty(&*store).await;
        shutdown.cancel();
        running.await.unwrap();
        assert!(per_notification(&fcm).values().all(|c| *c == 1));
    }
}

on_both! {
    async fn pushes_older_than_the_max_age_are_dropped(db) {
        let store = db.store.clone();
        let fcm = FcmStandIn::start().await;
        fcm.stand_in.set_down(true);
        let settings = NotificationSettings { push_max_age: Duration::from_secs(1), ..NotificationSettings::default() };
        let service = NotificationService::new(store.clone(), settings);
        let fan = user(&*store, "fan").await;
        followed_users(&service, &*store, fan, 2).await;
        let worker = OutboxWorker::new(store.clone(), providers(&fcm), fast(), service.outbox_wake());
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(worker.run(shutdown.clone()));
        wait_until_empty(&*store).await;
        shutdown.cancel();
        running.await.unwrap();
        assert!(fcm.stand_in.deliveries().is_empty());
        assert!(fcm.stand_in.requests() >= 2, "they were tried before they expired");
    }
}

// Two workers, each on its own connection pool as on two nodes, draining
// one outbox against one slow service.
on_both! {
    async fn two_workers_never_double_send(db) {
        let fcm = FcmStandIn::start().await;
        fcm.stand_in.set_delay(Duration::from_millis(5));
        let store_a = db.store.clone();
        let store_b = palaver_store::connect(&db.options).await.unwrap();
        let service = NotificationService::new(store_a.clone(), NotificationSettings::default());
        let fan = user(&*store_a, "fan").await;
        let n = 80;
        followed_users(&service, &*store_a, fan, n).await;

        let wake = Arc::new(Notify::new());
        let a = OutboxWorker::new(store_a.clone(), providers(&fcm), fast(), wake.clone());
        let b = OutboxWorker::new(store_b.clone(), providers(&fcm), fast(), wake);
        let drain = |w: OutboxWorker| async move {
            let mut sent = 0;
            loop {
                let r = w.drain_once().await.unwrap();
                if r.claimed == 0 {
                    break sent;
                }
                sent += r.sent;
            }
        };
        let (sent_a, sent_b) = tokio::join!(tokio::spawn(drain(a)), tokio::spawn(drain(b)));
        let (sent_a, sent_b) = (sent_a.unwrap(), sent_b.unwrap());
        assert_eq!(sent_a + sent_b, n);
        assert!(sent_a > 0 && sent_b > 0, "both workers took part: {sent_a} + {sent_b}");
        let counts = per_notification(&fcm);
        assert_eq!(counts.len(), n);
        assert!(counts.values().all(|c| *c == 1), "no push sent twice: {counts:?}");
        assert_eq!(fcm.stand_in.requests(), n, "no extra requests");
        store_b.close().await;
    }
}
