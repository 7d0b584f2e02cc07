//! palaver-rtc's tests: the call service on both store backends (with a
//! recording stand-in for the hub and a hand-driven clock), the matcher
//! suite on both queue implementations, and TURN credentials.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;
mod ice;
mod matching;

use std::sync::Arc;
use std::time::Duration;

use palaver_core::time::now;
use palaver_core::user::{LearningLanguage, Level, Role, User};
use palaver_rtc::{AudioPolicy, CallService, CallSettings, ManualClock, MatchRules, MatchService, MatchSettings};
use palaver_service::realtime::{Published, RecordingRealtime};
use palaver_service::{EventBus, MemoryRateLimiter, Principal, RateSpec};
use palaver_store::testing::TestDb;
use palaver_store::{NewUserRecord, Store};

/// Runs a test body on a fresh SQLite store and, when configured, a fresh
/// PostgreSQL store.
macro_rules! both_stores {
    ($(#[$meta:meta])* async fn $name:ident($h:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($h: $crate::Harness) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = palaver_store::testing::sqlite().await.unwrap();
                run($crate::Harness::new(&db).await).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = palaver_store::testing::postgres().await.unwrap() else { return };
                run($crate::Harness::new(&db).await).await;
                db.cleanup().await;
            }
        }
    };
}
pub(crate) use both_stores;

/// Services on one store, with a recording hub and a manual clock.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub realtime: Arc<RecordingRealtime>,
    pub events: EventBus,
    pub clock: Arc<ManualClock>,
    pub calls: Arc<CallService>,
    pub matching: Arc<MatchService>,
}

pub fn call_settings() -> CallSettings {
    let lots = RateSpec { count: 100_000, per: Duration::from_secs(60) };
    CallSettings {
        ring_timeout: Duration::from_secs(30),
        media_timeout: Duration::from_secs(20),
        sweep_interval: Duration::from_secs(1),
        rate: lots,
        quality_rate: lots,
        media: AudioPolicy::default().into(),
    }
}

impl Harness {
    pub async fn new(db: &TestDb) -> Self {
        let store = db.store.clone();
        let realtime = Arc::new(RecordingRealtime::default());
        let events = EventBus::default();
        let clock = Arc::new(ManualClock::new());
        let limiter = Arc::new(MemoryRateLimiter::new());
        let calls = Arc::new(CallService::new(
            store.clone(),
            realtime.clone(),
            events.clone(),
            limiter.clone(),
            clock.clone(),
            call_settings(),
        ));
        let matcher = Arc::new(palaver_rtc::MemoryMatcher::new(MatchRules::default()));
        let matching = Arc::new(MatchService::new(
            store.clone(),
            matcher,
            calls.clone(),
            realtime.clone(),
            limiter,
            clock.clone(),
            MatchSettings {
                rules: MatchRules::default(),
                tick: Duration::from_secs(1),
                rate: RateSpec { count: 100_000, per: Duration::from_secs(60) },
            },
        ));
        Self { store, realtime, events, clock, calls, matching }
    }

    /// A user with a role; `online` marks them as having a connected device.
    pub async fn user(&self, name: &str, role: Role, online: bool) -> Principal {
        let user = new_user(&*self.store, name, role, &["es"], "en").await;
        if online {
            self.realtime.set_viewing(&format!("user:{}", user.id), user.id);
        }
        Principal { user, session_id: "test-session".into() }
    }

    /// The user as stored now (after a suspension, say).
    pub async fn refresh(&self, who: &Principal) -> Principal {
        Principal { user: self.store.user_by_id(who.id()).await.unwrap().unwrap(), session_id: who.session_id.clone() }
    }
}

pub async fn new_user(store: &dyn Store, name: &str, role: Role, natives: &[&str], learns: &str) -> User {
    store
        .create_user(&NewUserRecord {
            email: format!("{name}-{}@example.org", uuid::Uuid::new_v4().simple()),
            password_hash: "$argon2id$not-a-real-hash".into(),
            display_name: name.into(),
            native_languages: natives.iter().map(|s| (*s).to_owned()).collect(),
            learning_languages: vec![LearningLanguage { code: learns.into(), level: Level::Intermediate }],
            role,
            now: now(),
        })
        .await
        .unwrap()
}

/// Waits (up to 5 s) for a publication matching `pred`.
pub async fn wait_for(
    rx: &mut tokio::sync::broadcast::Receiver<Published>,
    what: &str,
    pred: impl Fn(&Published) -> bool,
) -> Published {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(p)) if pred(&p) => return p,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publication stream failed waiting for {what}: {e}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Everything published so far that is still buffered.
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<Published>) -> Vec<Published> {
    let mut out = Vec::new();
    while let Ok(p) = rx.try_recv() {
        out.push(p);
    }
    out
}
