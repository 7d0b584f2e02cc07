//! The hub's two-implementation parts, each suite run on both: the broker
//! (in memory, Redis) and the presence store (in memory, Redis). Redis
//! variants run when `PALAVER_TEST_REDIS_URL` is set, each test under a
//! key prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
mod nodes;
mod presence;

use std::time::Duration;

/// The Redis URL tests may use, if any.
pub fn redis_url() -> Option<String> {
    std::env::var("PALAVER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// A Redis client and connection, and a fresh prefix; `None` (the test is
/// skipped, and says so) without Redis.
pub async fn redis() -> Option<(redis::Client, redis::aio::ConnectionManager, String)> {
    let Some(url) = redis_url() else {
        eprintln!("PALAVER_TEST_REDIS_URL not set: Redis variant skipped");
        return None;
    };
    let client = redis::Client::open(url).unwrap();
    let conn = client.get_connection_manager().await.unwrap();
    Some((client, conn, format!("palaver-test-{}", uuid::Uuid::new_v4().simple())))
}

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Deletes a test's Redis keys.
pub async fn cleanup(conn: &mut redis::aio::ConnectionManager, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(conn).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(conn).await.unwrap();
    }
}
