//! One suite, run on in-memory and Redis presence: two nodes sharing state.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use palaver_realtime::{MemoryPresence, PresenceStore, RedisPresence};

use crate::WAIT;

async fn suite(a: Arc<dyn PresenceStore>, b: Arc<dyn PresenceStore>) {
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
    // First device anywhere is a transition; a second node's is not.
    assert!(!a.is_online(1).await.unwrap());
    assert!(a.connected(1).await.unwrap(), "first connection: online");
    assert!(!b.connected(1).await.unwrap(), "second node: already online");
    assert!(b.is_online(1).await.unwrap() && a.is_online(1).await.unwrap());
    assert!(!a.disconnected(1).await.unwrap(), "still on node b");
    assert!(a.is_online(1).await.unwrap());
    assert!(b.disconnected(1).await.unwrap(), "last device: offline");
    assert!(!a.is_online(1).await.unwrap());
    assert!(!b.disconnected(1).await.unwrap(), "disconnecting twice is no transition");

    // Viewers across nodes.
    a.view("chat:5", 1, true).await.unwrap();
    b.view("chat:5", 2, true).await.unwrap();
    b.view("chat:6", 3, true).await.unwrap();
    assert_eq!(a.viewers("chat:5").await.unwrap(), HashSet::from([1, 2]));
    a.view("chat:5", 1, false).await.unwrap();
    assert_eq!(b.viewers("chat:5").await.unwrap(), HashSet::from([2]));
    assert!(a.viewers("chat:7").await.unwrap().is_empty());

    // Typing, with expiry.
    a.set_typing("chat:5", 1, Some(Duration::from_secs(30))).await.unwrap();
    b.set_typing("chat:5", 2, Some(Duration::from_secs(30))).await.unwrap();
    assert_eq!(b.typing("chat:5").await.unwrap(), vec![1, 2]);
    a.set_typing("chat:5", 1, None).await.unwrap();
    assert_eq!(a.typing("chat:5").await.unwrap(), vec![2]);
    b.set_typing("chat:5", 3, Some(Duration::from_millis(1))).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.typing("chat:5").await.unwrap().contains(&3) {
        assert!(tokio::time::Instant::now() < deadline, "typing state never expired");
        tokio::task::yield_now().await;
    }

    // A node leaving takes its users offline unless they are elsewhere.
    assert!(a.connected(10).await.unwrap());
    assert!(a.connected(11).await.unwrap());
    assert!(!b.connected(11).await.unwrap());
    assert_eq!(a.leave().await.unwrap(), vec![10]);
    assert!(!b.is_online(10).await.unwrap() && b.is_online(11).await.unwrap());
}

#[tokio::test]
async fn memory_presence() {
    let shared = MemoryPresence::new();
    suite(Arc::new(shared.node("a")), Arc::new(shared.node("b"))).await;
}

#[tokio::test]
async fn redis_presence() {
    let Some((_, mut conn, prefix)) = crate::redis().await else { return };
    let ttl = Duration::from_secs(30);
    let a = RedisPresence::new(conn.clone(), &prefix, "a", ttl);
    let b = RedisPresence::new(conn.clone(), &prefix, "b", ttl);
    suite(Arc::new(a), Arc::new(b)).await;
    crate::cleanup(&mut conn, &prefix).await;
}

/// A node that stops heartbeating is reaped by another node's heartbeat:
/// its users go offline (those with no other device), once.
#[tokio::test]
async fn redis_dead_node_is_reaped() {
    let Some((_, mut conn, prefix)) = crate::redis().await else { return };
    let short = Duration::from_millis(300);
    let dead = RedisPresence::new(conn.clone(), &prefix, "dead", short);
    let alive = RedisPresence::new(conn.clone(), &prefix, "alive", Duration::from_secs(30));
    let also = RedisPresence::new(conn.clone(), &prefix, "also", Duration::from_secs(30));
    dead.heartbeat().await.unwrap();
    alive.heartbeat().await.unwrap();
    also.heartbeat().await.unwrap();
    assert!(dead.connected(1).await.unwrap());
    assert!(dead.connected(2).await.unwrap());
    assert!(!alive.connected(2).await.unwrap());
    dead.view("chat:1", 1, true).await.unwrap();
    assert_eq!(alive.viewers("chat:1").await.unwrap(), HashSet::from([1]));
    // `dead` heartbeats no more. Wait for a heartbeat elsewhere to reap it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let offline = loop {
        let beat = alive.heartbeat().await.unwrap();
        if !beat.offline.is_empty() {
            break beat.offline;
        }
        assert!(tokio::time::Instant::now() < deadline, "the dead node was never reaped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(offline, vec![1], "user 2 is still on node `alive`");
    assert!(also.heartbeat().await.unwrap().offline.is_empty(), "reaped once");
    assert!(!alive.is_online(1).await.unwrap() && alive.is_online(2).await.unwrap());
    assert!(alive.viewers("chat:1").await.unwrap().is_empty());
    // The node comes back: its next heartbeat says it had been reaped.
    assert!(dead.heartbeat().await.unwrap().rejoined);
    crate::cleanup(&mut conn, &prefix).await;
}
