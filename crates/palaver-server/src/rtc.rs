//! Calls and matching as the server runs them: the services built from the
//! config, the queue in Redis when configured (so users on different nodes
//! match each other) or in memory, and the background sweeper and ticker.

use std::sync::Arc;

use palaver_rtc::{
    AudioPolicy, CallService, CallSettings, IceSettings, MatchRules, MatchService, MatchSettings, Matcher,
    MemoryMatcher, RedisMatcher, SystemClock,
};
use palaver_service::Services;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The call and matching services, and the ICE settings.
#[derive(Clone, Debug)]
pub struct Rtc {
    /// Calls: place, accept, end, signals, quality, history.
    pub calls: Arc<CallService>,
    /// The random-matching queue.
    pub matching: Arc<MatchService>,
    /// STUN/TURN for clients.
    pub ice: Arc<IceSettings>,
}

/// The audio policy from the config: calls and voice rooms hand out the same.
pub fn audio_policy(config: &Config) -> AudioPolicy {
    AudioPolicy {
        echo_cancellation: config.audio_echo_cancellation,
        noise_suppression: config.audio_noise_suppression,
        auto_gain_control: config.audio_auto_gain_control,
        opus_fec: config.opus_fec,
        opus_dtx: config.opus_dtx,
        opus_max_average_bitrate: config.opus_max_average_bitrate,
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Rtc {
    /// Builds the services on `services`' store, hub seam and limiter.
    pub fn build(config: &Config, services: &Services, redis: Option<redis::aio::ConnectionManager>) -> Self {
        let clock = Arc::new(SystemClock);
        let realtime: Arc<dyn palaver_service::Realtime> = Arc::new(services.realtime.clone());
        let audio = audio_policy(config);
        let calls = Arc::new(CallService::new(
            services.store.clone(),
            realtime.clone(),
            services.events.clone(),
            services.rate_limiter.clone(),
            clock.clone(),
            CallSettings {
                ring_timeout: config.call_ring_timeout,
                media_timeout: config.call_media_timeout,
                sweep_interval: config.call_sweep_interval,
                rate: config.rate_calls,
                quality_rate: config.rate_call_quality,
                media: audio.into(),
            },
        ));
        let rules = MatchRules {
            widen_level_after_ms: millis(config.match_widen_level_after),
            widen_language_after_ms: millis(config.match_widen_language_after),
            repeat_after_ms: millis(config.match_repeat_after),
        };
        let matcher: Arc<dyn Matcher> = match redis {
            Some(conn) => Arc::new(RedisMatcher::new(conn, &config.redis_prefix, rules)),
            None => Arc::new(MemoryMatcher::new(rules)),
        };
        let matching = Arc::new(MatchService::new(
            services.store.clone(),
            matcher,
            calls.clone(),
            realtime,
            services.rate_limiter.clone(),
            clock,
            MatchSettings { rules, tick: config.match_tick, rate: config.rate_match_queue },
        ));
        let ice = Arc::new(IceSettings {
            stun_urls: config.stun_urls.clone(),
            turn_urls: config.turn_urls.clone(),
            turn_secret: config.turn_secret.clone(),
            turn_ttl: config.turn_ttl,
        });
        Self { calls, matching, ice }
    }

    /// Starts the call sweeper and the matching ticker; both stop with
    /// `shutdown`.
    pub fn spawn_workers(&self, shutdown: &CancellationToken) {
        tokio::spawn(self.calls.clone().run_sweeper(shutdown.clone()));
        tokio::spawn(self.matching.clone().run_ticker(shutdown.clone()));
    }
}
