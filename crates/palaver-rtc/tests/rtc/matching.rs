//! One suite for both queues (memory, and Redis shared by two matcher
//! instances), plus the matching service on both stores.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use palaver_core::call::{CallStatus, CallType};
use palaver_core::user::{Level, Role};
use palaver_rtc::matching::{excluded, tier};
use palaver_rtc::{MatchRules, Matcher, MemoryMatcher, QueueRequest, RedisMatcher, Ticket, Tier};
use palaver_service::Principal;
use rand::{Rng as _, SeedableRng as _};

use crate::{Harness, both_stores, new_user, wait_for};

/// Two handles on one queue: the same memory matcher twice, or two Redis
/// matchers (two connections, as two nodes would have) on one key space.
struct Queues {
    a: Arc<dyn Matcher>,
    b: Arc<dyn Matcher>,
    rules: MatchRules,
    cleanup: Option<(redis::aio::ConnectionManager, String)>,
}

impl Queues {
    async fn done(self) {
        if let Some((mut conn, prefix)) = self.cleanup {
            let keys: Vec<String> =
                redis::cmd("KEYS").arg(format!("{{{prefix}:match}}*")).query_async(&mut conn).await.unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await.unwrap();
            }
        }
    }
}

fn memory() -> Queues {
    let rules = MatchRules::default();
    let m: Arc<dyn Matcher> = Arc::new(MemoryMatcher::new(rules));
    Queues { a: m.clone(), b: m, rules, cleanup: None }
}

async fn redis_queues() -> Option<Queues> {
    let Some(url) = std::env::var("PALAVER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        palaver_store::testing::note_skipped("Redis", "PALAVER_TEST_REDIS_URL");
        return None;
    };
    let rules = MatchRules::default();
    let prefix = format!("palaver-test-{}", uuid::Uuid::new_v4().simple());
    let connect = || async { redis::Client::open(url.as_str()).unwrap().get_connection_manager().await.unwrap() };
    let (c1, c2) = (connect().await, connect().await);
    Some(Queues {
        a: Arc::new(RedisMatcher::new(c1.clone(), &prefix, rules)),
        b: Arc::new(RedisMatcher::new(c2, &prefix, rules)),
        rules,
        cleanup: Some((c1, prefix)),
    })
}

macro_rules! matcher_test {
    (async fn $name:ident($q:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($q: &Queues) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                let q = super::memory();
                run(&q).await;
                q.done().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let Some(q) = super::redis_queues().await else { return };
                run(&q).await;
                q.done().await;
            }
        }
    };
}

const T0: i64 = 1_800_000_000_000;

fn ticket(user: i64, learns: &str, natives: &[&str], level: Level, enqueued_ms: i64) -> Ticket {
    Ticket {
        user_id: user,
        call_type: CallType::Voice,
        language: learns.into(),
        level,
        natives: natives.iter().map(|s| (*s).to_owned()).collect(),
        excluded: Vec::new(),
        enqueued_ms,
    }
}

use Level::{Advanced as Adv, Beginner as Beg, Intermediate as Mid};

matcher_test! {
    async fn complementary_pairs_are_preferred(q) {
        // Waiting: S learns Spanish like Ana (earlier); C is Ana's
        // complement (learns English, native Spanish).
        assert!(q.a.enqueue(ticket(1, "es", &["fr"], Mid, T0), T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(2, "en", &["es"], Mid, T0 + 1), T0 + 1).await.unwrap().is_none(), "S and C do not pair yet");
        let ana = ticket(3, "es", &["en"], Mid, T0 + 2);
        let p = q.a.enqueue(ana, T0 + 2).await.unwrap().expect("paired");
        assert_eq!(p.tier, Tier::Complementary);
        assert_eq!((p.caller.user_id, p.callee.user_id), (2, 3), "the one who waited longer calls");
        // The next Spanish learner gets S, at the same-language tier.
        let p = q.b.enqueue(ticket(4, "es", &["en"], Beg, T0 + 3), T0 + 3).await.unwrap().expect("paired");
        assert_eq!((p.tier, p.caller.user_id, p.callee.user_id), (Tier::SameLanguage, 1, 4));
        assert!(q.a.waiting().await.unwrap().is_empty());
    }
}

matcher_test! {
    async fn fifo_within_a_bucket(q) {
        // Three of a bucket, kept apart from each other by exclusions.
        for (user, at, excl) in [(10, T0, vec![11, 12]), (11, T0 + 5, vec![12]), (12, T0 + 9, vec![])] {
            let mut t = ticket(user, "en", &["es"], Mid, at);
            t.excluded = excl;
            assert!(q.a.enqueue(t, at).await.unwrap().is_none());
        }
        let p = q.b.enqueue(ticket(20, "es", &["en"], Mid, T0 + 20), T0 + 20).await.unwrap().unwrap();
        assert_eq!(p.caller.user_id, 10);
        let p = q.a.enqueue(ticket(21, "es", &["en"], Adv, T0 + 21), T0 + 21).await.unwrap().unwrap();
        assert_eq!(p.caller.user_id, 11);
        let waiting: Vec<i64> = q.b.waiting().await.unwrap().iter().map(|t| t.user_id).collect();
        assert_eq!(waiting, vec![12]);
    }
}

matcher_test! {
    async fn levels_widen_after_ten_seconds(q) {
        assert!(q.a.enqueue(ticket(1, "es", &["en"], Beg, T0), T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(2, "en", &["es"], Adv, T0), T0).await.unwrap().is_none(), "levels 2 apart");
        assert!(q.a.rescan(T0 + 9_999).await.unwrap().is_empty());
        let pairs = q.b.rescan(T0 + 10_000).await.unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].tier, Tier::Complementary);
        assert!(q.a.rescan(T0 + 10_001).await.unwrap().is_empty(), "matched once");

        // A newcomer meets a ticket that has waited long enough at once.
        assert!(q.a.enqueue(ticket(3, "de", &["it"], Beg, T0), T0).await.unwrap().is_none());
        assert!(q.a.rescan(T0 + 12_000).await.unwrap().is_empty());
        let p = q.b.enqueue(ticket(4, "it", &["de"], Adv, T0 + 12_000), T0 + 12_000).await.unwrap().unwrap();
        assert_eq!((p.caller.user_id, p.callee.user_id), (3, 4));
    }
}

matcher_test! {
    async fn one_way_pairings_after_thirty_seconds(q) {
        // Bob is native in what Ana learns; Ana teaches Bob nothing.
        assert!(q.a.enqueue(ticket(1, "es", &["en"], Mid, T0), T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(2, "fr", &["es"], Mid, T0 + 1_000), T0 + 1_000).await.unwrap().is_none());
        assert!(q.a.rescan(T0 + 10_000).await.unwrap().is_empty(), "not at the level widening");
        assert!(q.a.rescan(T0 + 29_999).await.unwrap().is_empty());
        let pairs = q.b.rescan(T0 + 30_000).await.unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].tier, pairs[0].caller.user_id), (Tier::OneWay, 1));
    }
}

matcher_test! {
    async fn blocked_and_recent_partners_never_meet(q) {
        // Ana excludes Bob; Fin is excluded by Eve (each side's list counts).
        let mut ana = ticket(1, "es", &["en"], Mid, T0);
        ana.excluded = vec![2];
        assert!(q.a.enqueue(ana, T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(2, "en", &["es"], Mid, T0), T0).await.unwrap().is_none(), "Ana excludes Bob");
        let mut eve = ticket(5, "fr", &["de"], Mid, T0);
        eve.excluded = vec![6];
        assert!(q.a.enqueue(eve, T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(6, "de", &["fr"], Mid, T0), T0).await.unwrap().is_none(), "Eve excludes Fin");
        for at in [T0 + 10_000, T0 + 30_000, T0 + 60_000] {
            assert!(q.a.rescan(at).await.unwrap().is_empty(), "never, however long they wait");
        }
        // Dan meets Bob; they then queue again and do not meet twice.
        let p = q.b.enqueue(ticket(4, "es", &["en"], Mid, T0 + 61_000), T0 + 61_000).await.unwrap().unwrap();
        assert_eq!((p.caller.user_id, p.callee.user_id), (2, 4));
        assert!(q.b.leave(1).await.unwrap());
        let later = T0 + 120_000;
        assert!(q.a.enqueue(ticket(2, "en", &["es"], Mid, later), later).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(4, "es", &["en"], Mid, later + 1), later + 1).await.unwrap().is_none(), "matched within 24 h");
        assert!(q.a.rescan(later + 60_000).await.unwrap().is_empty());
        // A day later they may.
        let day = later + q.rules.repeat_after_ms + 1;
        let p = q.b.enqueue(ticket(4, "es", &["en"], Mid, day), day).await.unwrap().expect("a day later");
        assert_eq!(p.caller.user_id, 2);
    }
}

matcher_test! {
    async fn one_queue_per_user_and_leaving(q) {
        assert!(q.a.enqueue(ticket(1, "es", &["en"], Mid, T0), T0).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(1, "fr", &["en"], Beg, T0 + 5), T0 + 5).await.unwrap().is_none());
        let waiting = q.a.waiting().await.unwrap();
        assert_eq!(waiting.len(), 1, "a new ticket replaces the old one");
        assert_eq!(waiting[0].language, "fr");
        assert_eq!(q.b.ticket(1).await.unwrap().map(|t| t.level), Some(Beg));
        // The old ticket's buckets are gone too: a Spanish native learning
        // English does not find it.
        assert!(q.a.enqueue(ticket(2, "en", &["es"], Mid, T0 + 6), T0 + 6).await.unwrap().is_none());
        assert!(q.b.leave(1).await.unwrap());
        assert!(!q.a.leave(1).await.unwrap(), "already gone");
        assert_eq!(q.a.ticket(1).await.unwrap(), None);
        assert!(q.a.enqueue(ticket(3, "es", &["en"], Mid, T0 + 7), T0 + 7).await.unwrap().is_some());
        // Voice and video never mix.
        let mut video = ticket(4, "es", &["en"], Mid, T0 + 8);
        video.call_type = CallType::Video;
        assert!(q.a.enqueue(video, T0 + 8).await.unwrap().is_none());
        assert!(q.b.enqueue(ticket(5, "en", &["es"], Mid, T0 + 9), T0 + 9).await.unwrap().is_none());
    }
}

matcher_test! {
    async fn a_thousand_concurrent_users_are_matched_once(q) {
        let langs = ["en", "es", "fr", "de", "pt", "it", "ja", "zh"];
        let levels = [Beg, Mid, Adv];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut tickets = Vec::new();
        for user in 1..=1000_i64 {
            let native = langs[rng.random_range(0..langs.len())];
            let mut learns = langs[rng.random_range(0..langs.len())];
            while learns == native {
                learns = langs[rng.random_range(0..langs.len())];
            }
            let mut t = ticket(user, learns, &[native], levels[rng.random_range(0..3)], T0);
            if rng.random_range(0..10) == 0 {
                t.excluded = (0..3).map(|_| rng.random_range(1..=1000)).collect();
            }
            tickets.push(t);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, t) in tickets.iter().cloned().enumerate() {
            let m = if i % 2 == 0 { q.a.clone() } else { q.b.clone() };
            tasks.spawn(async move { m.enqueue(t, T0).await.unwrap() });
        }
        let mut matched = HashSet::new();
        let mut pairs = 0;
        while let Some(result) = tasks.join_next().await {
            if let Some(p) = result.unwrap() {
                pairs += 1;
                assert!(tier(&p.caller, &p.callee, T0, &q.rules).is_some(), "a valid pairing: {p:?}");
                assert!(!excluded(&p.caller, &p.callee));
                for user in [p.caller.user_id, p.callee.user_id] {
                    assert!(matched.insert(user), "user {user} matched twice");
                }
            }
        }
        let waiting = q.a.waiting().await.unwrap();
        assert_eq!(matched.len() + waiting.len(), 1000, "everyone is matched or waiting");
        assert!(waiting.iter().all(|t| !matched.contains(&t.user_id)));
        assert!(pairs > 300, "most users found a partner ({pairs} pairs)");
        for (i, a) in waiting.iter().enumerate() {
            for b in &waiting[i + 1..] {
                if excluded(a, b) {
                    continue;
                }
                let t = tier(a, b, T0, &q.rules);
                assert!(t.is_none(), "{} and {} were left waiting though they pair at {t:?}", a.user_id, b.user_id);
            }
        }
    }
}

async fn principal(h: &Harness, name: &str, natives: &[&str], learns: &str) -> Principal {
    let user = new_user(&*h.store, name, Role::User, natives, learns).await;
    Principal { user, session_id: "s".into() }
}

fn request(language: &str, level: Level) -> QueueRequest {
    QueueRequest { call_type: CallType::Voice, language: language.into(), level }
}

both_stores! {
    async fn a_match_is_a_ringing_call_for_both(h) {
        let ana = principal(&h, "ana", &["en"], "es").await;
        let bob = principal(&h, "bob", &["es"], "en").await;
        let mut rx = h.realtime.subscribe();
        let first = h.matching.enqueue(&ana, request("es", Level::Intermediate)).await.unwrap();
        assert_eq!(first.status, "waiting");
        assert!(h.matching.is_waiting(ana.id()).await.unwrap());
        let second = h.matching.enqueue(&bob, request("en", Level::Beginner)).await.unwrap();
        assert_eq!(second.status, "matched");
        let m = second.r#match.unwrap();
        assert_eq!(m.peer.id, ana.id());
        assert_eq!(m.call.status, CallStatus::Ringing);
        assert!(m.call.is_match);

        let to_ana = wait_for(&mut rx, "match for ana", |p| p.event_type == "match_found" && p.topic == format!("user:{}", ana.id())).await;
        assert_eq!(to_ana.data["role"], "caller");
        assert_eq!(to_ana.data["call_id"], m.call_id);
        assert_eq!(to_ana.data["peer"]["id"], bob.id());
        let to_bob = wait_for(&mut rx, "match for bob", |p| p.event_type == "match_found" && p.topic == format!("user:{}", bob.id())).await;
        assert_eq!(to_bob.data["role"], "callee");
        assert!(!h.matching.is_waiting(ana.id()).await.unwrap());

        // The caller offers, the callee accepts: an ordinary call from here.
        let delivery = h.calls.relay_signal(&ana, "ana-1", m.call_id, "offer", serde_json::json!({"sdp": "v=0"})).await.unwrap();
        assert_eq!(delivery.target, palaver_rtc::SignalTarget::AllDevices(bob.id()));
        let active = h.calls.accept(&bob, m.call_id, Some("bob-1")).await.unwrap();
        assert_eq!(active.status, CallStatus::Active);
        // In a call, nobody queues.
        assert_eq!(h.matching.enqueue(&ana, request("es", Level::Intermediate)).await.unwrap_err().code(), "conflict");
        h.calls.end(&ana, m.call_id).await.unwrap();

        // They were matched within 24 h: never again (from the store, even
        // with a fresh queue).
        h.matching.enqueue(&ana, request("es", Level::Intermediate)).await.unwrap();
        assert_eq!(h.matching.enqueue(&bob, request("en", Level::Intermediate)).await.unwrap().status, "waiting");
        assert!(h.matching.leave(&ana).await.unwrap());
        assert!(!h.matching.leave(&ana).await.unwrap());
        h.matching.on_all_devices_disconnected(bob.id()).await.unwrap();
        assert!(!h.matching.is_waiting(bob.id()).await.unwrap());
    }
}

both_stores! {
    async fn blocked_users_are_not_matched_and_bad_requests_refused(h) {
        let ana = principal(&h, "ana", &["en"], "es").await;
        let bob = principal(&h, "bob", &["es"], "en").await;
        h.store.set_block(bob.id(), ana.id(), palaver_store::RelationOp::Set, palaver_core::time::now()).await.unwrap();
        h.matching.enqueue(&ana, request("es", Level::Intermediate)).await.unwrap();
        assert_eq!(h.matching.enqueue(&bob, request("en", Level::Intermediate)).await.unwrap().status, "waiting");
        h.clock.advance(Duration::from_secs(60));
        assert_eq!(h.matching.tick().await.unwrap(), 0);
        let err = h.matching.enqueue(&ana, request("not a language!", Level::Beginner)).await.unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert!(h.matching.is_waiting(ana.id()).await.unwrap(), "a bad request changes nothing");
    }
}

both_stores! {
    async fn the_ticker_widens_with_the_clock(h) {
        let ana = principal(&h, "ana", &["en"], "es").await;
        let bob = principal(&h, "bob", &["es"], "en").await;
        let mut rx = h.realtime.subscribe();
        h.matching.enqueue(&ana, request("es", Level::Beginner)).await.unwrap();
        assert_eq!(h.matching.enqueue(&bob, request("en", Level::Advanced)).await.unwrap().status, "waiting");
        h.clock.advance(Duration::from_secs(9));
        assert_eq!(h.matching.tick().await.unwrap(), 0);
        h.clock.advance(Duration::from_secs(1));
        assert_eq!(h.matching.tick().await.unwrap(), 1);
        let found = wait_for(&mut rx, "match_found", |p| p.event_type == "match_found").await;
        assert!(found.data["call_id"].as_i64().unwrap() > 0);
    }
}
