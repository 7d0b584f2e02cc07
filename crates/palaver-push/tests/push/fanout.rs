//! The fan-out from the event bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palaver_push::{NotificationService, NotificationSettings};
use palaver_service::{DomainEvent, EventBus};
use tokio_util::sync::CancellationToken;

use crate::user;

/// On a single-threaded runtime nothing runs between the publishes, so a
/// bus of two slots overflows: the fan-out learns it missed events
/// (`Lagged`), keeps the newest, and goes on handling later ones.
#[tokio::test(flavor = "current_thread")]
async fn the_fanout_keeps_going_after_falling_behind_the_bus() {
    let db = palaver_store::testing::sqlite().await.unwrap();
    let store = db.store.clone();
    let service = Arc::new(NotificationService::new(store.clone(), NotificationSettings::default()));
    let bus = EventBus::new(2);
    let shutdown = CancellationToken::new();
    service.spawn_fanout(bus.subscribe(), shutdown.clone());
    let ana = user(&*store, "ana").await;
    let ben = user(&*store, "ben").await;
    let mut fans = Vec::new();
    for i in 0..10 {
        fans.push(user(&*store, &format!("fan{i}")).await);
    }
    for fan in &fans {
        bus.publish(DomainEvent::Followed { follower_id: *fan, followee_id: ana });
    }
    bus.publish(DomainEvent::MomentLiked { moment_id: 1, author_id: ben, actor_id: ana });

    // The like and the follows go to different fan-out lanes, so either may
    // be stored first: wait for both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (liked, follows) = loop {
        let liked = store.list_notifications(ben, false, None, 10).await.unwrap();
        let follows = store.list_notifications(ana, false, None, 10).await.unwrap();
        if !liked.is_empty() && !follows.is_empty() {
            break (liked, follows);
        }
        assert!(Instant::now() < deadline, "the events after the overflow were never handled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(liked.len(), 1);
    assert_eq!(liked[0].message, "ana liked your moment");
    assert_eq!(follows.len(), 1, "the follows are aggregated into one notification");
    assert!(follows[0].actor_count < 10, "events beyond the buffer were missed, as documented");
    assert!(follows[0].actor_count >= 1, "the newest survived");
    shutdown.cancel();
    db.cleanup().await;
}
