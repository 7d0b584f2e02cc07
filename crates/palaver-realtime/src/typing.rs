//! Who is typing where, on this node: the throttle and the expiry.
//!
//! A `typing` true is forwarded to the topic at most once per throttle
//! period per user and topic; renewals in between only push the expiry
//! forward. A state not renewed within the TTL, or whose connection
//! closes, ends with a `typing` false event. The node that received the
//! `typing` frame owns the state (and its timer); with Redis the state is
//! also written there with the same expiry, so other nodes can tell new
//! subscribers who is typing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use palaver_core::UserId;

use crate::connection::ConnId;
use crate::topic::Topic;

struct Entry {
    conn: ConnId,
    expires: Instant,
    forwarded: Instant,
}

/// Typing states owned by this node.
#[derive(Default)]
pub(crate) struct Typing {
    entries: Mutex<HashMap<(Topic, UserId), Entry>>,
}

impl Typing {
    /// Applies a `typing` frame; returns the event to publish, if any.
    pub(crate) fn update(
        &self,
        conn: ConnId,
        user: UserId,
        topic: &Topic,
        is_typing: bool,
        ttl: Duration,
        throttle: Duration,
    ) -> Option<bool> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (topic.clone(), user);
        if !is_typing {
            return entries.remove(&key).map(|_| false);
        }
        match entries.get_mut(&key) {
            Some(entry) if now.duration_since(entry.forwarded) < throttle => {
                entry.expires = now + ttl;
                entry.conn = conn;
                None
            }
            Some(entry) => {
                entry.expires = now + ttl;
                entry.forwarded = now;
                entry.conn = conn;
                Some(true)
            }
            None => {
                entries.insert(key, Entry { conn, expires: now + ttl, forwarded: now });
                Some(true)
            }
        }
    }

    /// Removes and returns the states that expired.
    pub(crate) fn expired(&self) -> Vec<(Topic, UserId)> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<_> = entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
        for key in &gone {
            entries.remove(key);
        }
        gone
    }

    /// Removes and returns the states of a closed connection.
    pub(crate) fn conn_closed(&self, conn: ConnId) -> Vec<(Topic, UserId)> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<_> = entries.iter().filter(|(_, e)| e.conn == conn).map(|(k, _)| k.clone()).collect();
        for key in &gone {
            entries.remove(key);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_renewals_and_ends_on_close() {
        let t = Typing::default();
        let topic = Topic::parse("chat:1").unwrap();
        let (ttl, throttle) = (Duration::from_secs(6), Duration::from_secs(2));
        assert_eq!(t.update(1, 7, &topic, true, ttl, throttle), Some(true));
        assert_eq!(t.update(1, 7, &topic, true, ttl, throttle), None, "renewal within the throttle");
        assert_eq!(t.update(1, 7, &topic, false, ttl, throttle), Some(false));
        assert_eq!(t.update(1, 7, &topic, false, ttl, throttle), None, "already stopped");
        assert_eq!(t.update(2, 7, &topic, true, ttl, throttle), Some(true));
        assert!(t.expired().is_empty());
        assert_eq!(t.conn_closed(1), vec![], "owned by the connection that renewed it");
        assert_eq!(t.conn_closed(2), vec![(topic.clone(), 7)]);
        assert_eq!(t.update(3, 8, &topic, true, Duration::ZERO, throttle), Some(true));
        assert_eq!(t.expired(), vec![(topic, 8)]);
    }
}
