//! Palaver's application services: each use case (register, log in, update a
//! profile, ...) as a method that checks permissions, validates input, talks
//! to the store and returns domain types or a domain [`Error`].
//!
//! HTTP handlers and WebSocket gateways are thin adapters over these
//! services, and tests call them directly. This crate depends on the core and
//! the store; it must not depend on axum or any transport.

pub mod auth;
pub mod chat;
pub mod chat_writer;
pub mod events;
pub mod media_hosts;
pub mod media_links;
pub mod moderation;
pub mod nodes;
pub mod pagination;
pub mod password;
pub mod ratelimit;
pub mod realtime;
pub mod social;
pub mod users;
pub mod voice;

use std::sync::Arc;

pub use palaver_core::{Error, Result};
use palaver_store::Store;

pub use auth::{AuthService, AuthSettings, Principal, TokenPair};
pub use chat::{ChatRates, ChatService};
pub use events::{DomainEvent, EventBus};
pub use moderation::ModerationService;
pub use pagination::Page;
pub use password::{PasswordHasher, PasswordParams};
pub use ratelimit::{MemoryRateLimiter, RateLimiter, RateSpec, RedisRateLimiter};
pub use realtime::{Realtime, RealtimeHandle, RecordingRealtime};
pub use social::{SocialRates, SocialService};
pub use users::UserService;
pub use voice::{VoiceService, VoiceSettings};

/// Every service, cheap to clone, shared by all transports.
#[derive(Clone)]
pub struct Services {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Registration, login, tokens.
    pub auth: Arc<AuthService>,
    /// Profiles and account administration.
    pub users: Arc<UserService>,
    /// Moments, comments, likes, shares, follows, blocks.
    pub social: Arc<SocialService>,
    /// Reports and the moderation queue.
    pub moderation: Arc<ModerationService>,
    /// Chat rooms and messages (REST and the WebSocket hub both call it).
    pub chat: Arc<ChatService>,
    /// Per-key request budgets.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Domain events, for services that react to others.
    pub events: EventBus,
    /// The real-time hub, installed by the server once it is built.
    pub realtime: RealtimeHandle,
    /// Public voice rooms and their media signaling.
    pub voice: Arc<VoiceService>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("backend", &self.store.backend()).finish_non_exhaustive()
    }
}

/// Settings the services need, gathered by the server from its config.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Token and password settings.
    pub auth: AuthSettings,
    /// Per-user budgets for social actions.
    pub social_rates: SocialRates,
    /// Content reported by this many distinct users is hidden pending review.
    pub auto_hide_reports: u32,
    /// Signs the media URLs services hand out.
    pub media_urls: palaver_crypto::MediaUrls,
    /// Voice rooms.
    pub voice: VoiceSettings,
    /// Per-user budgets for chat.
    pub chat_rates: ChatRates,
    /// How message bodies are sealed at rest.
    pub body_codec: chat::BodyCodec,
}

impl Services {
    /// Builds every service on one store.
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings, rate_limiter: Arc<dyn RateLimiter>) -> Result<Self> {
        let hasher = Arc::new(PasswordHasher::new(settings.auth.password)?);
        let users = Arc::new(UserService::new(store.clone(), hasher.clone()));
        let auth = Arc::new(AuthService::new(store.clone(), users.clone(), hasher, settings.auth)?);
        let events = EventBus::default();
        let realtime = RealtimeHandle::default();
        let social = Arc::new(SocialService::new(
            store.clone(),
            events.clone(),
            rate_limiter.clone(),
            settings.social_rates,
            settings.media_urls.clone(),
        ));
        let moderation = Arc::new(ModerationService::new(
            store.clone(),
            rate_limiter.clone(),
            settings.social_rates.reports,
            settings.auto_hide_reports,
        ));
        let chat = Arc::new(
            ChatService::new(
                store.clone(),
                events.clone(),
                realtime.clone(),
                rate_limiter.clone(),
                settings.chat_rates,
            )
            .with_codec(settings.body_codec.clone())
            .with_media_urls(settings.media_urls.clone()),
        );
        let voice = Arc::new(VoiceService::new(store.clone(), realtime.clone(), settings.voice));
        Ok(Self { store, auth, users, social, moderation, chat, rate_limiter, events, realtime, voice })
    }
}
