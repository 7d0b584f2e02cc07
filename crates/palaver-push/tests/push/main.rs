//! Tests of the push providers against local stand-ins of FCM, APNs and a
//! Web Push service, and of the outbox worker on both databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fanout;
mod outbox;
mod providers;
mod rfc8291;

use std::future::Future;
use std::sync::Arc;

use palaver_store::Store;
use palaver_store::testing::{self, TestDb};

/// Runs `body` on a fresh SQLite store and, when configured, PostgreSQL.
macro_rules! on_both {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: std::sync::Arc<palaver_store::testing::TestDb>) $body

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
pub(crate) use on_both;

pub(crate) async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = Arc::new(testing::sqlite().await.expect("sqlite store"));
    body(db.clone()).await;
    if let Ok(db) = Arc::try_unwrap(db) {
        db.cleanup().await;
    }
}

pub(crate) async fn with_postgres<F, Fut>(body: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = testing::postgres().await.expect("postgres store") else {
        return;
    };
    let db = Arc::new(db);
    body(db.clone()).await;
    if let Ok(db) = Arc::try_unwrap(db) {
        db.cleanup().await;
    }
}

/// A user straight in the store.
pub(crate) async fn user(store: &dyn Store, name: &str) -> i64 {
    use palaver_core::user::Role;
    store
        .create_user(&palaver_store::NewUserRecord {
            email: format!("{name}@example.org"),
            password_hash: "$argon2id$not-a-real-hash".into(),
            display_name: name.into(),
            native_languages: vec![],
            learning_languages: vec![],
            role: Role::User,
            now: palaver_core::time::now(),
        })
        .await
        .unwrap()
        .id
}
