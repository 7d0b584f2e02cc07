//! The store conformance suite: every test runs against SQLite and, when
//! `PALAVER_TEST_DATABASE_URL` is set, against PostgreSQL. Both backends must
//! behave identically.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod calls;
mod chat;
mod media;
mod notifications;
mod social;
mod users;
mod voice;

use std::future::Future;
use std::sync::Arc;

use palaver_core::time::now;
use palaver_core::user::{LearningLanguage, Level, Role, User};
use palaver_store::testing::{self, TestDb};
use palaver_store::{NewUserRecord, Store};

/// Runs `body` against a fresh SQLite store and, when configured, a fresh
/// PostgreSQL store.
macro_rules! conformance {
    ($(#[$meta:meta])* async fn $name:ident($store:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($store: std::sync::Arc<dyn palaver_store::Store>) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::with_sqlite(run).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::with_postgres(run).await;
            }
        }
    };
}
pub(crate) use conformance;

pub(crate) async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = testing::sqlite().await.expect("sqlite store");
    body(db.store.clone()).await;
    db.cleanup().await;
}

pub(crate) async fn with_postgres<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db): Option<TestDb> = testing::postgres().await.expect("postgres store") else {
        return;
    };
    body(db.store.clone()).await;
    db.cleanup().await;
}

/// Inserts a user with the given email.
pub(crate) async fn user(store: &dyn Store, email: &str) -> User {
    store
        .create_user(&NewUserRecord {
            email: email.into(),
            password_hash: "$argon2id$not-a-real-hash".into(),
            display_name: email.split('@').next().unwrap_or("x").into(),
            native_languages: vec!["es".into()],
            learning_languages: vec![LearningLanguage { code: "en".into(), level: Level::Intermediate }],
            role: Role::User,
            now: now(),
        })
        .await
        .expect("create user")
}
