//! Presence in process. Several "nodes" may share one state (for tests);
//! a single server has one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use palaver_core::{Result, UserId};

use super::{Heartbeat, PresenceStore};

#[derive(Default)]
struct State {
    online: HashMap<UserId, HashSet<String>>,
    viewers: HashMap<String, HashSet<(UserId, String)>>,
    typing: HashMap<String, HashMap<UserId, Instant>>,
}

/// In-process presence.
#[derive(Clone)]
pub struct MemoryPresence {
    state: Arc<Mutex<State>>,
    node: String,
}

impl std::fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresence").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self { state: Arc::default(), node: "node".into() }
    }
}

impl MemoryPresence {
    /// Presence for one process.
    pub fn new() -> Self {
        Self::default()
    }

    /// Another node sharing this one's state.
    pub fn node(&self, name: &str) -> Self {
        Self { state: self.state.clone(), node: name.to_owned() }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn connected(&self, user: UserId) -> Result<bool> {
        Ok(self.with(|s| {
            let nodes = s.online.entry(user).or_default();
            nodes.insert(self.node.clone()) && nodes.len() == 1
        }))
    }

    async fn disconnected(&self, user: UserId) -> Result<bool> {
        Ok(self.with(|s| {
            let Some(nodes) = s.online.get_mut(&user) else { return false };
            let removed = nodes.remove(&self.node);
            let empty = nodes.is_empty();
            if empty {
                s.online.remove(&user);
            }
            removed && empty
        }))
    }

    async fn is_online(&self, user: UserId) -> Result<bool> {
        Ok(self.with(|s| s.online.contains_key(&user)))
    }

    async fn view(&self, topic: &str, user: UserId, viewing: bool) -> Result<()> {
        self.with(|s| {
            if viewing {
                s.viewers.entry(topic.to_owned()).or_default().insert((user, self.node.clone()));
            } else if let Some(set) = s.viewers.get_mut(topic) {
                set.remove(&(user, self.node.clone()));
                if set.is_empty() {
                    s.viewers.remove(topic);
                }
            }
        });
        Ok(())
    }

    async fn viewers(&self, topic: &str) -> Result<HashSet<UserId>> {
        Ok(self.with(|s| s.viewers.get(topic).map(|v| v.iter().map(|(u, _)| *u).collect()).unwrap_or_default()))
    }

    async fn set_typing(&self, topic: &str, user: UserId, ttl: Option<Duration>) -> Result<()> {
        self.with(|s| match ttl {
            Some(ttl) => {
                s.typing.entry(topic.to_owned()).or_default().insert(user, Instant::now() + ttl);
            }
            None => {
                if let Some(map) = s.typing.get_mut(topic) {
                    map.remove(&user);
                    if map.is_empty() {
                        s.typing.remove(topic);
                    }
                }
            }
        });
        Ok(())
    }

    async fn typing(&self, topic: &str) -> Result<Vec<UserId>> {
        let now = Instant::now();
        Ok(self.with(|s| {
            let mut users: Vec<UserId> = s
                .typing
                .get(topic)
                .map(|m| m.iter().filter(|(_, until)| **until > now).map(|(u, _)| *u).collect())
                .unwrap_or_default();
            users.sort_unstable();
            users
        }))
    }

    async fn heartbeat(&self) -> Result<Heartbeat> {
        Ok(Heartbeat::default())
    }

    async fn leave(&self) -> Result<Vec<UserId>> {
        Ok(self.with(|s| {
            let mut offline = Vec::new();
            s.online.retain(|user, nodes| {
                if nodes.remove(&self.node) && nodes.is_empty() {
                    offline.push(*user);
                }
                !nodes.is_empty()
            });
            for set in s.viewers.values_mut() {
                set.retain(|(_, node)| *node != self.node);
            }
            s.viewers.retain(|_, set| !set.is_empty());
            offline
        }))
    }
}
