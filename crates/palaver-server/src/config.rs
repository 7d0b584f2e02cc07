//! Configuration: one typed struct, loaded from defaults, then an optional
//! `palaver.toml`, then `PALAVER_*` environment variables (plus
//! `DATABASE_URL` and `REDIS_URL`), then command-line flags; each later source
//! overrides the earlier. `palaver --help` lists every setting with its
//! variable and default. A bad value stops start-up with a message naming
//! the setting.
//!
//! The settings are clap arguments, so the help text, the environment names
//! and the parsing live in one place. The TOML file is applied by
//! re-parsing: every key of the file whose setting still has its default
//! value (not set by variable or flag) is passed as a flag.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use palaver_service::RateSpec;
use secrecy::SecretString;

/// Palaver: the social and real-time server for language exchange.
///
/// Every setting can be given as a flag, as the environment variable shown,
/// or as a key of palaver.toml (the flag name with underscores, such as
/// `access_token_ttl = "15m"`). Durations take units: 30s, 15m, 12h, 30d.
#[derive(Debug, Parser)]
#[command(name = "palaver", version, max_term_width = 100)]
pub struct Cli {
    /// All settings.
    #[command(flatten)]
    pub config: Config,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Load generators and measurements; they print what they measure.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// `palaver admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an account, for example the first admin.
    CreateUser {
        /// Email address (login name).
        #[arg(long)]
        email: String,
        /// Password (at least 8 characters). Read from PALAVER_ADMIN_PASSWORD if not given.
        #[arg(long, env = "PALAVER_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Role: user, teacher, moderator or admin.
        #[arg(long, default_value = "user")]
        role: palaver_core::user::Role,
        /// Name shown to others (default: the part of the email before @).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Re-encrypt every stored message body and media file still sealed
    /// with an older key (or not at all) under the newest key in
    /// PALAVER_ENCRYPTION_KEYS. Runs beside serving nodes, in batches; safe
    /// to stop and run again (it continues where work remains). When it
    /// reports no data left under a key, that key can be removed.
    RotateKeys {
        /// Items per batch.
        #[arg(long, default_value = "100")]
        batch: i64,
        /// Only report how much data each key seals.
        #[arg(long)]
        status: bool,
    },
    /// Print a new random encryption key entry (`id:base64`) for
    /// PALAVER_ENCRYPTION_KEYS.
    GenerateKey {
        /// The key's id (1 to 32 letters, digits, dots, dashes, underscores).
        #[arg(long)]
        id: String,
    },
    /// Change an existing account's role.
    SetRole {
        /// The user's id.
        #[arg(long)]
        user_id: i64,
        /// New role: user, teacher, moderator or admin.
        #[arg(long)]
        role: palaver_core::user::Role,
    },
}

/// Development generates missing secrets into the data folder; production
/// refuses to start without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Zero setup: secrets are generated into the data folder if missing.
    Development,
    /// Every secret must be configured.
    Production,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Configuration file (TOML). Missing is fine unless set explicitly.
    #[arg(long, env = "PALAVER_CONFIG", default_value = "palaver.toml", global = true, help_heading = "General")]
    pub config: PathBuf,

    /// Address to listen on for HTTP and WebSocket.
    #[arg(long, env = "PALAVER_LISTEN", default_value = "127.0.0.1:8080", global = true, help_heading = "General")]
    pub listen: SocketAddr,

    /// Folder for the SQLite database, generated development secrets and local media.
    #[arg(long, env = "PALAVER_DATA_DIR", default_value = "./data", global = true, help_heading = "General")]
    pub data_dir: PathBuf,

    /// development or production (production requires every secret to be set).
    #[arg(
        long,
        env = "PALAVER_ENV",
        value_enum,
        default_value = "development",
        global = true,
        help_heading = "General"
    )]
    pub env: Mode,

    /// This node's name in a cluster (default: a random one per start).
    #[arg(long, env = "PALAVER_NODE_ID", global = true, help_heading = "General")]
    pub node_id: Option<String>,

    /// Database: postgres://… or sqlite://…; default: SQLite file palaver.db in the data folder.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true, help_heading = "Storage")]
    pub database_url: Option<String>,

    /// Largest database connection pool.
    #[arg(long, env = "PALAVER_DB_MAX_CONNECTIONS", default_value = "16", value_parser = clap::value_parser!(u32).range(1..=1000), global = true, help_heading = "Storage")]
    pub db_max_connections: u32,

    /// How long to wait for a database connection (at start-up: for the database to answer).
    #[arg(long, env = "PALAVER_DB_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "Storage")]
    pub db_connect_timeout: Duration,

    /// Redis for cross-node fan-out, presence and shared rate limits (redis://…); unset: single node, in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true, help_heading = "Storage")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so deployments can share a Redis.
    #[arg(long, env = "PALAVER_REDIS_PREFIX", default_value = "palaver", global = true, help_heading = "Storage")]
    pub redis_prefix: String,

    /// Secret for signing access tokens, at least 32 bytes (development: generated into the data folder).
    #[arg(long, env = "PALAVER_JWT_SECRET", hide_env_values = true, value_parser = parse_secret, global = true, help_heading = "Auth")]
    pub jwt_secret: Option<SecretString>,

    /// Lifetime of an access token.
    #[arg(long, env = "PALAVER_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration, global = true, help_heading = "Auth")]
    pub access_token_ttl: Duration,

    /// Lifetime of a refresh token (each use rotates it).
    #[arg(long, env = "PALAVER_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration, global = true, help_heading = "Auth")]
    pub refresh_token_ttl: Duration,

    /// Argon2id memory per password hash, in KiB.
    #[arg(long, env = "PALAVER_ARGON2_MEMORY_KIB", default_value = "19456", value_parser = clap::value_parser!(u32).range(8..=4_194_304), global = true, help_heading = "Auth")]
    pub argon2_memory_kib: u32,

    /// Argon2id passes over memory.
    #[arg(long, env = "PALAVER_ARGON2_ITERATIONS", default_value = "2", value_parser = clap::value_parser!(u32).range(1..=100), global = true, help_heading = "Auth")]
    pub argon2_iterations: u32,

    /// Budget for logins per client address.
    #[arg(long, env = "PALAVER_RATE_LOGIN", default_value = "10/1m", global = true, help_heading = "Auth")]
    pub rate_login: RateSpec,

    /// Budget for registrations per client address.
    #[arg(long, env = "PALAVER_RATE_REGISTER", default_value = "5/1h", global = true, help_heading = "Auth")]
    pub rate_register: RateSpec,

    /// Budget for token refreshes per client address.
    #[arg(long, env = "PALAVER_RATE_REFRESH", default_value = "60/1m", global = true, help_heading = "Auth")]
    pub rate_refresh: RateSpec,

    /// Budget for new moments and reposts per user.
    #[arg(long, env = "PALAVER_RATE_MOMENTS", default_value = "10/10m", global = true, help_heading = "Social")]
    pub rate_moments: RateSpec,

    /// Budget for comments and replies per user.
    #[arg(long, env = "PALAVER_RATE_COMMENTS", default_value = "60/10m", global = true, help_heading = "Social")]
    pub rate_comments: RateSpec,

    /// Budget for likes and unlikes (moments and comments) per user.
    #[arg(long, env = "PALAVER_RATE_LIKES", default_value = "300/1m", global = true, help_heading = "Social")]
    pub rate_likes: RateSpec,

    /// Budget for follows, unfollows, blocks and unblocks per user.
    #[arg(long, env = "PALAVER_RATE_FOLLOWS", default_value = "100/1h", global = true, help_heading = "Social")]
    pub rate_follows: RateSpec,

    /// Budget for reports per user.
    #[arg(long, env = "PALAVER_RATE_REPORTS", default_value = "20/1h", global = true, help_heading = "Social")]
    pub rate_reports: RateSpec,

    /// Budget for chat messages (REST and WebSocket), edits and shares into chats per user.
    #[arg(long, env = "PALAVER_RATE_MESSAGES", default_value = "120/1m", global = true, help_heading = "Chat")]
    pub rate_messages: RateSpec,

    /// Budget for chat rooms created, participants added or removed and renames per user.
    #[arg(long, env = "PALAVER_RATE_CHAT_ROOMS", default_value = "60/1h", global = true, help_heading = "Chat")]
    pub rate_chat_rooms: RateSpec,

    /// Content (moments, comments) reported by this many distinct users is hidden until a moderator reviews it.
    #[arg(long, env = "PALAVER_AUTO_HIDE_REPORTS", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=10000), global = true, help_heading = "Social")]
    pub auto_hide_reports: u32,

    /// How long a call rings before it is missed.
    #[arg(long, env = "PALAVER_CALL_RING_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub call_ring_timeout: Duration,

    /// How long after the accept media must connect before the call fails.
    #[arg(long, env = "PALAVER_CALL_MEDIA_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub call_media_timeout: Duration,

    /// How often each node looks for calls whose ring or media deadline passed.
    #[arg(long, env = "PALAVER_CALL_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub call_sweep_interval: Duration,

    /// Budget for placing calls per user.
    #[arg(long, env = "PALAVER_RATE_CALLS", default_value = "30/10m", global = true, help_heading = "Calls")]
    pub rate_calls: RateSpec,

    /// Budget for call quality reports per user.
    #[arg(long, env = "PALAVER_RATE_CALL_QUALITY", default_value = "120/1m", global = true, help_heading = "Calls")]
    pub rate_call_quality: RateSpec,

    /// Budget for joining and leaving the matching queue per user.
    #[arg(long, env = "PALAVER_RATE_MATCH_QUEUE", default_value = "60/1m", global = true, help_heading = "Calls")]
    pub rate_match_queue: RateSpec,

    /// A matching ticket waiting this long accepts partners of any level.
    #[arg(long, env = "PALAVER_MATCH_WIDEN_LEVEL_AFTER", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub match_widen_level_after: Duration,

    /// A matching ticket waiting this long accepts one-way language partners.
    #[arg(long, env = "PALAVER_MATCH_WIDEN_LANGUAGE_AFTER", default_value = "30s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub match_widen_language_after: Duration,

    /// Two users randomly matched are not matched again within this time.
    #[arg(long, env = "PALAVER_MATCH_REPEAT_AFTER", default_value = "24h", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub match_repeat_after: Duration,

    /// How often each node re-examines waiting matching tickets.
    #[arg(long, env = "PALAVER_MATCH_TICK", default_value = "1s", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub match_tick: Duration,

    /// STUN urls given to clients, comma-separated (stun:host:port).
    #[arg(long, env = "PALAVER_STUN_URLS", value_delimiter = ',', global = true, help_heading = "Calls")]
    pub stun_urls: Vec<String>,

    /// TURN urls given to clients with short-lived credentials, comma-separated (turn:host:port?transport=udp, turns:…).
    #[arg(long, env = "PALAVER_TURN_URLS", value_delimiter = ',', global = true, help_heading = "Calls")]
    pub turn_urls: Vec<String>,

    /// Secret shared with coturn (its static-auth-secret, use-auth-secret mode); unset: no TURN.
    #[arg(long, env = "PALAVER_TURN_SECRET", hide_env_values = true, value_parser = parse_secret, global = true, help_heading = "Calls")]
    pub turn_secret: Option<SecretString>,

    /// How long a TURN credential stays valid.
    #[arg(long, env = "PALAVER_TURN_TTL", default_value = "6h", value_parser = parse_duration, global = true, help_heading = "Calls")]
    pub turn_ttl: Duration,

    /// Ask clients for acoustic echo cancellation.
    #[arg(long, env = "PALAVER_AUDIO_ECHO_CANCELLATION", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Calls")]
    pub audio_echo_cancellation: bool,

    /// Ask clients for noise suppression.
    #[arg(long, env = "PALAVER_AUDIO_NOISE_SUPPRESSION", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Calls")]
    pub audio_noise_suppression: bool,

    /// Ask clients for automatic gain control.
    #[arg(long, env = "PALAVER_AUDIO_AUTO_GAIN_CONTROL", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Calls")]
    pub audio_auto_gain_control: bool,

    /// Opus in-band forward error correction (useinbandfec).
    #[arg(long, env = "PALAVER_OPUS_FEC", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Calls")]
    pub opus_fec: bool,

    /// Opus discontinuous transmission (usedtx).
    #[arg(long, env = "PALAVER_OPUS_DTX", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Calls")]
    pub opus_dtx: bool,

    /// Opus target bitrate in bits per second (maxaveragebitrate).
    #[arg(long, env = "PALAVER_OPUS_MAX_AVERAGE_BITRATE", default_value = "32000", value_parser = clap::value_parser!(u32).range(6000..=510_000), global = true, help_heading = "Calls")]
    pub opus_max_average_bitrate: u32,

    /// Largest request body for JSON endpoints, in bytes.
    #[arg(long, env = "PALAVER_MAX_BODY_BYTES", default_value = "1048576", value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824), global = true, help_heading = "HTTP")]
    pub max_body_bytes: u64,

    /// Longest time a request may take before it is answered 503.
    #[arg(long, env = "PALAVER_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true, help_heading = "HTTP")]
    pub request_timeout: Duration,

    /// Origins allowed by CORS, comma-separated, or * for any; empty: no cross-origin access.
    #[arg(long, env = "PALAVER_CORS_ORIGINS", value_delimiter = ',', global = true, help_heading = "HTTP")]
    pub cors_origins: Vec<String>,

    /// Take the client address from X-Forwarded-For (only behind a proxy you trust).
    #[arg(long, env = "PALAVER_TRUST_FORWARDED_FOR", default_value = "false", action = clap::ArgAction::Set, global = true, help_heading = "HTTP")]
    pub trust_forwarded_for: bool,

    /// How long shutdown waits for requests and connections to finish.
    #[arg(long, env = "PALAVER_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "HTTP")]
    pub shutdown_grace: Duration,

    /// WebSocket connections this node accepts; more are closed with 1013.
    #[arg(long, env = "PALAVER_WS_MAX_CONNECTIONS", default_value = "10000", value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true, help_heading = "Real time")]
    pub ws_max_connections: u32,

    /// WebSocket connections one user may hold on one node; more are closed with 4009.
    #[arg(long, env = "PALAVER_WS_MAX_CONNECTIONS_PER_USER", default_value = "16", value_parser = clap::value_parser!(u32).range(1..=10_000), global = true, help_heading = "Real time")]
    pub ws_max_connections_per_user: u32,

    /// Events queued per WebSocket connection; a client that lets it fill is closed with 4008.
    #[arg(long, env = "PALAVER_WS_QUEUE", default_value = "1024", value_parser = clap::value_parser!(u32).range(8..=1_000_000), global = true, help_heading = "Real time")]
    pub ws_queue: u32,

    /// Largest WebSocket frame a client may send, in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "PALAVER_WS_MAX_FRAME_BYTES", default_value = "65536", value_parser = clap::value_parser!(u32).range(256..=16_777_216), global = true, help_heading = "Real time")]
    pub ws_max_frame_bytes: u32,

    /// Frames a WebSocket client may send (a burst of that many per period); more get rate_limited errors.
    #[arg(long, env = "PALAVER_WS_RATE", default_value = "100/10s", global = true, help_heading = "Real time")]
    pub ws_rate: RateSpec,

    /// How often the server pings each WebSocket connection.
    #[arg(long, env = "PALAVER_WS_PING_INTERVAL", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "Real time")]
    pub ws_ping_interval: Duration,

    /// A WebSocket connection that sends nothing (not even a pong) for this long is closed with 4000.
    #[arg(long, env = "PALAVER_WS_IDLE_TIMEOUT", default_value = "25s", value_parser = parse_duration, global = true, help_heading = "Real time")]
    pub ws_idle_timeout: Duration,

    /// With Redis: a node that stops heartbeating is dead after this long and its users go offline.
    #[arg(long, env = "PALAVER_PRESENCE_TTL", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "Real time")]
    pub presence_ttl: Duration,

    /// Events with the same key within this window merge into one notification ("Ana and 3 others liked your moment").
    #[arg(long, env = "PALAVER_NOTIFICATION_AGGREGATION_WINDOW", default_value = "1h", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub notification_aggregation_window: Duration,

    /// Pushes during a user's quiet hours: drop (the in-app notification stays) or defer (pushed when they end).
    #[arg(long, env = "PALAVER_QUIET_HOURS_MODE", default_value = "drop", value_parser = parse_quiet_mode, global = true, help_heading = "Notifications")]
    pub quiet_hours_mode: palaver_push::QuietHoursMode,

    /// Push outbox workers on this node (PostgreSQL; SQLite always runs one).
    #[arg(long, env = "PALAVER_PUSH_WORKERS", default_value = "2", value_parser = clap::value_parser!(u32).range(0..=64), global = true, help_heading = "Notifications")]
    pub push_workers: u32,

    /// Pushes claimed per outbox batch.
    #[arg(long, env = "PALAVER_PUSH_BATCH_SIZE", default_value = "100", value_parser = clap::value_parser!(u32).range(1..=1000), global = true, help_heading = "Notifications")]
    pub push_batch_size: u32,

    /// Push requests in flight per worker.
    #[arg(long, env = "PALAVER_PUSH_CONCURRENCY", default_value = "32", value_parser = clap::value_parser!(u32).range(1..=1000), global = true, help_heading = "Notifications")]
    pub push_concurrency: u32,

    /// How often an idle worker looks for due pushes (workers are also woken when this node queues one).
    #[arg(long, env = "PALAVER_PUSH_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_poll_interval: Duration,

    /// How long a worker holds claimed pushes; a crashed worker's pushes are retried after it.
    #[arg(long, env = "PALAVER_PUSH_LEASE", default_value = "60s", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_lease: Duration,

    /// First retry delay of a failed push; doubles per attempt (with jitter).
    #[arg(long, env = "PALAVER_PUSH_RETRY_BASE", default_value = "2s", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_retry_base: Duration,

    /// Longest retry delay.
    #[arg(long, env = "PALAVER_PUSH_RETRY_MAX", default_value = "10m", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_retry_max: Duration,

    /// A push not sent within this time is dropped (also its TTL at the push service).
    #[arg(long, env = "PALAVER_PUSH_MAX_AGE", default_value = "1d", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_max_age: Duration,

    /// Timeout of one request to a push service.
    #[arg(long, env = "PALAVER_PUSH_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true, help_heading = "Notifications")]
    pub push_request_timeout: Duration,

    /// Most push tokens per user; registering more drops the least recently registered.
    #[arg(long, env = "PALAVER_PUSH_MAX_TOKENS_PER_USER", default_value = "20", value_parser = clap::value_parser!(u32).range(1..=1000), global = true, help_heading = "Notifications")]
    pub push_max_tokens_per_user: u32,

    /// FCM service account key (JSON file); unset: Android push disabled.
    #[arg(long, env = "PALAVER_FCM_SERVICE_ACCOUNT_FILE", global = true, help_heading = "Notifications")]
    pub fcm_service_account_file: Option<PathBuf>,

    /// Firebase project id (default: the key file's project_id).
    #[arg(long, env = "PALAVER_FCM_PROJECT_ID", global = true, help_heading = "Notifications")]
    pub fcm_project_id: Option<String>,

    /// FCM API base URL.
    #[arg(
        long,
        env = "PALAVER_FCM_BASE_URL",
        default_value = "https://fcm.googleapis.com",
        global = true,
        help_heading = "Notifications"
    )]
    pub fcm_base_url: String,

    /// OAuth2 token endpoint (default: the key file's token_uri).
    #[arg(long, env = "PALAVER_FCM_TOKEN_URL", global = true, help_heading = "Notifications")]
    pub fcm_token_url: Option<String>,

    /// APNs auth key (.p8 file); unset: iOS push disabled.
    #[arg(long, env = "PALAVER_APNS_KEY_FILE", global = true, help_heading = "Notifications")]
    pub apns_key_file: Option<PathBuf>,

    /// APNs key id (10 characters).
    #[arg(long, env = "PALAVER_APNS_KEY_ID", global = true, help_heading = "Notifications")]
    pub apns_key_id: Option<String>,

    /// Apple developer team id.
    #[arg(long, env = "PALAVER_APNS_TEAM_ID", global = true, help_heading = "Notifications")]
    pub apns_team_id: Option<String>,

    /// The app's bundle id (apns-topic).
    #[arg(long, env = "PALAVER_APNS_TOPIC", global = true, help_heading = "Notifications")]
    pub apns_topic: Option<String>,

    /// APNs environment: production or sandbox.
    #[arg(long, env = "PALAVER_APNS_ENVIRONMENT", default_value = "production", value_parser = ["production", "sandbox"], global = true, help_heading = "Notifications")]
    pub apns_environment: String,

    /// APNs base URL (overrides the environment's).
    #[arg(long, env = "PALAVER_APNS_BASE_URL", global = true, help_heading = "Notifications")]
    pub apns_base_url: Option<String>,

    /// VAPID private key for Web Push (base64url or PEM); unset: Web Push disabled.
    #[arg(long, env = "PALAVER_VAPID_PRIVATE_KEY", hide_env_values = true, value_parser = parse_secret, global = true, help_heading = "Notifications")]
    pub vapid_private_key: Option<SecretString>,

    /// File holding the VAPID private key (instead of PALAVER_VAPID_PRIVATE_KEY).
    #[arg(long, env = "PALAVER_VAPID_PRIVATE_KEY_FILE", global = true, help_heading = "Notifications")]
    pub vapid_private_key_file: Option<PathBuf>,

    /// Contact for push services, mailto: or https: (required with a VAPID key).
    #[arg(long, env = "PALAVER_VAPID_SUBJECT", global = true, help_heading = "Notifications")]
    pub vapid_subject: Option<String>,

    /// Web Push services the server will send to, comma-separated hosts (subdomains included).
    #[arg(
        long,
        env = "PALAVER_WEBPUSH_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "fcm.googleapis.com,android.googleapis.com,push.services.mozilla.com,notify.windows.com,push.apple.com",
        global = true,
        help_heading = "Notifications"
    )]
    pub webpush_allowed_hosts: Vec<String>,

    /// Accept http:// Web Push endpoints (local testing only).
    #[arg(long, env = "PALAVER_WEBPUSH_ALLOW_HTTP", default_value = "false", action = clap::ArgAction::Set, global = true, help_heading = "Notifications")]
    pub webpush_allow_http: bool,

    /// Where media bytes are stored: a folder path or file:///path, s3://bucket[/prefix], gs://bucket[/prefix] or az://container[/prefix] (credentials from the usual AWS_*, GOOGLE_*, AZURE_* variables); default: the data folder's media/.
    #[arg(long, env = "PALAVER_MEDIA_STORE", global = true, help_heading = "Media")]
    pub media_store: Option<String>,

    /// Largest image upload (bytes; KiB, MiB, GiB, kB, MB and GB suffixes accepted).
    #[arg(long, env = "PALAVER_MEDIA_MAX_IMAGE_BYTES", default_value = "16MiB", value_parser = parse_size, global = true, help_heading = "Media")]
    pub media_max_image_bytes: u64,

    /// Largest audio upload.
    #[arg(long, env = "PALAVER_MEDIA_MAX_AUDIO_BYTES", default_value = "25MiB", value_parser = parse_size, global = true, help_heading = "Media")]
    pub media_max_audio_bytes: u64,

    /// Largest video upload.
    #[arg(long, env = "PALAVER_MEDIA_MAX_VIDEO_BYTES", default_value = "100MiB", value_parser = parse_size, global = true, help_heading = "Media")]
    pub media_max_video_bytes: u64,

    /// Largest document or other file upload.
    #[arg(long, env = "PALAVER_MEDIA_MAX_FILE_BYTES", default_value = "25MiB", value_parser = parse_size, global = true, help_heading = "Media")]
    pub media_max_file_bytes: u64,

    /// Images with more pixels are refused before decoding (decompression bombs); animations count every frame.
    #[arg(long, env = "PALAVER_MEDIA_MAX_IMAGE_PIXELS", default_value = "50000000", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000), global = true, help_heading = "Media")]
    pub media_max_image_pixels: u64,

    /// Longest side of image thumbnails, in pixels.
    #[arg(long, env = "PALAVER_MEDIA_THUMBNAIL_SIZE", default_value = "320", value_parser = clap::value_parser!(u32).range(16..=4096), global = true, help_heading = "Media")]
    pub media_thumbnail_size: u32,

    /// How long signed media URLs stay valid (at least; expiries are rounded up so URLs can be cached).
    #[arg(long, env = "PALAVER_MEDIA_URL_TTL", default_value = "1h", value_parser = parse_duration, global = true, help_heading = "Media")]
    pub media_url_ttl: Duration,

    /// Longest time an upload may take (instead of PALAVER_REQUEST_TIMEOUT); an upload idle for PALAVER_REQUEST_TIMEOUT is dropped too.
    #[arg(long, env = "PALAVER_MEDIA_UPLOAD_TIMEOUT", default_value = "10m", value_parser = parse_duration, global = true, help_heading = "Media")]
    pub media_upload_timeout: Duration,

    /// Uploads not attached to a moment or message within this time are deleted.
    #[arg(long, env = "PALAVER_MEDIA_GC_AFTER", default_value = "1d", value_parser = parse_duration, global = true, help_heading = "Media")]
    pub media_gc_after: Duration,

    /// How often unattached uploads are looked for.
    #[arg(long, env = "PALAVER_MEDIA_GC_INTERVAL", default_value = "1h", value_parser = parse_duration, global = true, help_heading = "Media")]
    pub media_gc_interval: Duration,

    /// Budget for uploads per user.
    #[arg(long, env = "PALAVER_RATE_UPLOADS", default_value = "100/1h", global = true, help_heading = "Media")]
    pub rate_uploads: RateSpec,

    /// Encryption keys for message bodies and media at rest: id:base64(32 bytes) entries, comma-separated, newest last (development: generated into the data folder).
    #[arg(long, env = "PALAVER_ENCRYPTION_KEYS", hide_env_values = true, value_parser = parse_secret, global = true, help_heading = "Encryption")]
    pub encryption_keys: Option<SecretString>,

    /// File holding the encryption keys (one id:base64 entry per line, newest last), instead of PALAVER_ENCRYPTION_KEYS.
    #[arg(long, env = "PALAVER_ENCRYPTION_KEYS_FILE", global = true, help_heading = "Encryption")]
    pub encryption_keys_file: Option<PathBuf>,

    /// Encrypt new message bodies and uploads (false only in development, to measure the cost).
    #[arg(long, env = "PALAVER_ENCRYPT_AT_REST", default_value = "true", action = clap::ArgAction::Set, global = true, help_heading = "Encryption")]
    pub encrypt_at_rest: bool,
    /// UDP address of this node's SFU, shared by every voice-room peer (port 0: any free port; set a fixed one to open it in a firewall).
    #[arg(long, env = "PALAVER_MEDIA_UDP", default_value = "127.0.0.1:0", global = true, help_heading = "Voice rooms")]
    pub media_udp: SocketAddr,

    /// Address clients send media to, when not the bound one (behind NAT, or bound to 0.0.0.0).
    #[arg(long, env = "PALAVER_MEDIA_PUBLIC_ADDR", global = true, help_heading = "Voice rooms")]
    pub media_public_addr: Option<SocketAddr>,

    /// Largest max_participants a voice room may have.
    #[arg(long, env = "PALAVER_VOICE_MAX_PARTICIPANTS", default_value = "100", value_parser = clap::value_parser!(i64).range(2..=10_000), global = true, help_heading = "Voice rooms")]
    pub voice_max_participants: i64,

    /// An empty voice room closes after this long.
    #[arg(long, env = "PALAVER_VOICE_IDLE_CLOSE", default_value = "5m", value_parser = parse_duration, global = true, help_heading = "Voice rooms")]
    pub voice_idle_close: Duration,

    /// A voice-room participant without a heartbeat (WebSocket, REST or live media) for this long is removed.
    #[arg(long, env = "PALAVER_VOICE_HEARTBEAT_TIMEOUT", default_value = "8s", value_parser = parse_duration, global = true, help_heading = "Voice rooms")]
    pub voice_heartbeat_timeout: Duration,

    /// A voice room's media host lease lasts this long unless its node renews it: after a node dies, its rooms move to another node within it.
    #[arg(long, env = "PALAVER_VOICE_HOST_TTL", default_value = "15s", value_parser = parse_duration, global = true, help_heading = "Voice rooms")]
    pub voice_host_ttl: Duration,

    /// Log filter, such as info or palaver=debug,sqlx=warn.
    #[arg(long, env = "PALAVER_LOG", default_value = "info", global = true, help_heading = "Logging")]
    pub log: String,

    /// Log format: text or json.
    #[arg(
        long,
        env = "PALAVER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true,
        help_heading = "Logging"
    )]
    pub log_format: LogFormat,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use units such as 30s, 15m, 12h, 30d)"))
}

/// A byte count: plain, or with a KiB/MiB/GiB (binary) or kB/MB/GB
/// (decimal) suffix.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("`{s}` is not a size (such as 16MiB or 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB, GiB, kB, MB or GB)")),
    };
    number.checked_mul(factor).filter(|n| *n > 0).ok_or_else(|| format!("`{s}` is out of range"))
}

fn parse_quiet_mode(s: &str) -> Result<palaver_push::QuietHoursMode, String> {
    s.parse()
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s.to_owned()))
}

/// A setting that cannot be used, with the name a person would look for.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {name}: {message}")]
pub struct ConfigError {
    /// The variable and flag, such as `PALAVER_JWT_SECRET (--jwt-secret)`.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(env: &str, flag: &str, message: impl Into<String>) -> Self {
        Self { name: format!("{env} (--{flag})"), message: message.into() }
    }
}

impl Cli {
    /// Parses flags, environment and the configuration file. Clap prints
    /// help, version and argument errors itself and exits.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os().collect())
    }

    /// [`Cli::load`] over given arguments.
    pub fn load_from(args: Vec<OsString>) -> Result<Self, ConfigError> {
        let matches = parse_or_exit(args.clone());
        let first = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let path = &first.config.config;
        let explicit = matches.value_source("config") != Some(ValueSource::DefaultValue);
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(first),
            Err(e) => {
                return Err(ConfigError::new(
                    "PALAVER_CONFIG",
                    "config",
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        };
        let extra = file_arguments(&text, path, &matches)?;
        if extra.is_empty() {
            return Ok(first);
        }
        // File values go right after the program name: they only fill
        // settings nobody set, so their position does not matter to clap.
        let mut with_file = Vec::with_capacity(args.len() + extra.len());
        let mut args = args.into_iter();
        with_file.extend(args.next());
        with_file.extend(extra);
        with_file.extend(args);
        let matches = parse_or_exit(with_file);
        Ok(Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
    }
}

/// Parses arguments; on a bad value, exits with clap's message plus the
/// environment variable the value came from, if it came from one (clap names
/// only the flag).
fn parse_or_exit(args: Vec<OsString>) -> clap::ArgMatches {
    let mut command = Cli::command();
    match command.try_get_matches_from_mut(args) {
        Ok(matches) => matches,
        Err(err) => {
            use clap::error::{ContextKind, ContextValue, ErrorKind};
            if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                err.exit();
            }
            let arg = match err.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => Some(arg.clone()),
                _ => None,
            };
            let env = arg.and_then(|arg| {
                let long = arg.trim_start_matches("--").split([' ', '=']).next().unwrap_or_default().to_owned();
                command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long.as_str()))
                    .and_then(|a| a.get_env())
                    .map(|e| e.to_string_lossy().into_owned())
                    .filter(|e| std::env::var_os(e).is_some())
            });
            let _ = err.print();
            if let Some(env) = env {
                eprintln!("(the value came from the environment variable {env})");
            }
            std::process::exit(2);
        }
    }
}

/// Turns the file's keys into `--flag=value` arguments for the settings that
/// still have their default value.
fn file_arguments(text: &str, path: &Path, matches: &clap::ArgMatches) -> Result<Vec<OsString>, ConfigError> {
    let file_error =
        |message: String| ConfigError::new("PALAVER_CONFIG", "config", format!("{}: {message}", path.display()));
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let command = Cli::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let id = key.replace('-', "_");
        let Some(arg) = command.get_arguments().find(|a| a.get_id() == id.as_str() && a.get_long().is_some()) else {
            return Err(file_error(format!("unknown setting `{key}` (see palaver --help)")));
        };
        if id == "config" {
            return Err(file_error("`config` cannot be set inside the configuration file".into()));
        }
        if !matches!(matches.value_source(&id), Some(ValueSource::DefaultValue) | None) {
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(file_error(format!("setting `{key}` cannot be a {}", other.type_str()))),
        };
        let long = arg.get_long().unwrap_or(key.as_str());
        out.push(OsString::from(format!("--{long}={value}")));
    }
    Ok(out)
}

impl Config {
    /// Checks rules that involve more than one value; called at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < palaver_service::auth::MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::new(
                    "PALAVER_JWT_SECRET",
                    "jwt-secret",
                    format!("must be at least {} bytes", palaver_service::auth::MIN_JWT_SECRET_BYTES),
                ));
            }
        } else if self.env == Mode::Production {
            return Err(ConfigError::new("PALAVER_JWT_SECRET", "jwt-secret", "is required in production"));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::new("DATABASE_URL", "database-url", "must start with postgres:// or sqlite://"));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("redis+unix://"))
        {
            return Err(ConfigError::new("REDIS_URL", "redis-url", "must start with redis:// or rediss://"));
        }
        if self.access_token_ttl < Duration::from_secs(30) {
            return Err(ConfigError::new("PALAVER_ACCESS_TOKEN_TTL", "access-token-ttl", "must be at least 30s"));
        }
        if self.refresh_token_ttl <= self.access_token_ttl {
            return Err(ConfigError::new(
                "PALAVER_REFRESH_TOKEN_TTL",
                "refresh-token-ttl",
                "must be longer than the access token TTL",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("PALAVER_REQUEST_TIMEOUT", "request-timeout", "must be above zero"));
        }
        let apns = [
            ("PALAVER_APNS_KEY_ID", "apns-key-id", self.apns_key_id.is_some()),
            ("PALAVER_APNS_TEAM_ID", "apns-team-id", self.apns_team_id.is_some()),
            ("PALAVER_APNS_TOPIC", "apns-topic", self.apns_topic.is_some()),
        ];
        if self.apns_key_file.is_some()
            && let Some((env, flag, _)) = apns.iter().find(|(_, _, set)| !set)
        {
            return Err(ConfigError::new(env, flag, "is required with PALAVER_APNS_KEY_FILE"));
        }
        if self.vapid_private_key.is_some() && self.vapid_private_key_file.is_some() {
            return Err(ConfigError::new(
                "PALAVER_VAPID_PRIVATE_KEY_FILE",
                "vapid-private-key-file",
                "cannot be set together with PALAVER_VAPID_PRIVATE_KEY",
            ));
        }
        if self.vapid_private_key.is_some() || self.vapid_private_key_file.is_some() {
            match &self.vapid_subject {
                Some(s) if s.starts_with("mailto:") || s.starts_with("https://") => {}
                _ => {
                    return Err(ConfigError::new(
                        "PALAVER_VAPID_SUBJECT",
                        "vapid-subject",
                        "must be a mailto: or https:// contact when a VAPID key is set",
                    ));
                }
            }
        }
        for (env, flag, url) in [
            ("PALAVER_FCM_BASE_URL", "fcm-base-url", Some(&self.fcm_base_url)),
            ("PALAVER_FCM_TOKEN_URL", "fcm-token-url", self.fcm_token_url.as_ref()),
            ("PALAVER_APNS_BASE_URL", "apns-base-url", self.apns_base_url.as_ref()),
        ] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(ConfigError::new(env, flag, "must be an http(s) URL"));
            }
        }
        if self.push_lease <= self.push_request_timeout {
            return Err(ConfigError::new(
                "PALAVER_PUSH_LEASE",
                "push-lease",
                "must be longer than PALAVER_PUSH_REQUEST_TIMEOUT, or a slow push could be sent twice",
            ));
        }
        if self.push_retry_base.is_zero() || self.push_retry_max < self.push_retry_base {
            return Err(ConfigError::new(
                "PALAVER_PUSH_RETRY_MAX",
                "push-retry-max",
                "must be at least PALAVER_PUSH_RETRY_BASE, which must be above zero",
            ));
        }
        match (&self.encryption_keys, &self.encryption_keys_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "PALAVER_ENCRYPTION_KEYS_FILE",
                    "encryption-keys-file",
                    "cannot be set together with PALAVER_ENCRYPTION_KEYS",
                ));
            }
            (Some(keys), None) => {
                use secrecy::ExposeSecret;
                if let Err(e) = palaver_crypto::Keyring::parse(keys.expose_secret()) {
                    return Err(ConfigError::new("PALAVER_ENCRYPTION_KEYS", "encryption-keys", e.to_string()));
                }
            }
            (None, None) if self.env == Mode::Production => {
                return Err(ConfigError::new(
                    "PALAVER_ENCRYPTION_KEYS",
                    "encryption-keys",
                    "is required in production (or PALAVER_ENCRYPTION_KEYS_FILE); generate one with \
                     `palaver admin generate-key`",
                ));
            }
            _ => {}
        }
        if !self.encrypt_at_rest && self.env == Mode::Production {
            return Err(ConfigError::new(
                "PALAVER_ENCRYPT_AT_REST",
                "encrypt-at-rest",
                "cannot be false in production: message bodies and media are always encrypted at rest",
            ));
        }
        if self.media_url_ttl < Duration::from_secs(60) {
            return Err(ConfigError::new("PALAVER_MEDIA_URL_TTL", "media-url-ttl", "must be at least 1m"));
        }
        if self.media_gc_interval.is_zero() {
            return Err(ConfigError::new("PALAVER_MEDIA_GC_INTERVAL", "media-gc-interval", "must be above zero"));
        }
        if self.media_upload_timeout < self.request_timeout {
            return Err(ConfigError::new(
                "PALAVER_MEDIA_UPLOAD_TIMEOUT",
                "media-upload-timeout",
                "must be at least PALAVER_REQUEST_TIMEOUT",
            ));
        }
        if self.voice_heartbeat_timeout < Duration::from_secs(2)
            || self.voice_heartbeat_timeout > Duration::from_secs(9)
        {
            return Err(ConfigError::new(
                "PALAVER_VOICE_HEARTBEAT_TIMEOUT",
                "voice-heartbeat-timeout",
                "must be between 2s and 9s, so a dropped participant leaves within 10 s",
            ));
        }
        if self.voice_host_ttl < Duration::from_secs(1) || self.voice_host_ttl > Duration::from_secs(300) {
            return Err(ConfigError::new("PALAVER_VOICE_HOST_TTL", "voice-host-ttl", "must be between 1s and 5m"));
        }
        if self.media_udp.ip().is_unspecified() && self.media_public_addr.is_none() {
            return Err(ConfigError::new(
                "PALAVER_MEDIA_PUBLIC_ADDR",
                "media-public-addr",
                "is required when PALAVER_MEDIA_UDP binds all interfaces",
            ));
        }
        if self.ws_idle_timeout <= self.ws_ping_interval {
            return Err(ConfigError::new(
                "PALAVER_WS_IDLE_TIMEOUT",
                "ws-idle-timeout",
                "must be longer than PALAVER_WS_PING_INTERVAL, or idle clients answering pings would be closed",
            ));
        }
        if self.ws_ping_interval.is_zero() {
            return Err(ConfigError::new("PALAVER_WS_PING_INTERVAL", "ws-ping-interval", "must be above zero"));
        }
        if self.presence_ttl < Duration::from_secs(1) {
            return Err(ConfigError::new("PALAVER_PRESENCE_TTL", "presence-ttl", "must be at least 1s"));
        }
        for (env, flag, d) in [
            ("PALAVER_CALL_RING_TIMEOUT", "call-ring-timeout", self.call_ring_timeout),
            ("PALAVER_CALL_MEDIA_TIMEOUT", "call-media-timeout", self.call_media_timeout),
            ("PALAVER_CALL_SWEEP_INTERVAL", "call-sweep-interval", self.call_sweep_interval),
            ("PALAVER_MATCH_TICK", "match-tick", self.match_tick),
            ("PALAVER_TURN_TTL", "turn-ttl", self.turn_ttl),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(env, flag, "must be above zero"));
            }
        }
        if self.match_widen_language_after < self.match_widen_level_after {
            return Err(ConfigError::new(
                "PALAVER_MATCH_WIDEN_LANGUAGE_AFTER",
                "match-widen-language-after",
                "must be at least PALAVER_MATCH_WIDEN_LEVEL_AFTER",
            ));
        }
        for url in &self.stun_urls {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return Err(ConfigError::new("PALAVER_STUN_URLS", "stun-urls", format!("`{url}` is not a stun: url")));
            }
        }
        for url in &self.turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return Err(ConfigError::new("PALAVER_TURN_URLS", "turn-urls", format!("`{url}` is not a turn: url")));
            }
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err(ConfigError::new("PALAVER_TURN_SECRET", "turn-secret", "is required with PALAVER_TURN_URLS"));
        }
        for origin in &self.cors_origins {
            if origin != "*" && origin.parse::<axum::http::HeaderValue>().is_err() {
                return Err(ConfigError::new(
                    "PALAVER_CORS_ORIGINS",
                    "cors-origins",
                    format!("`{origin}` is not an origin"),
                ));
            }
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("palaver.db").display()),
        }
    }

    /// Settings for tests and tools: defaults without reading the process
    /// environment or any file.
    pub fn defaults() -> Self {
        let matches = Cli::command().mut_args(|a| a.env(None::<&str>)).get_matches_from(["palaver"]);
        match Self::from_arg_matches(&matches) {
            Ok(config) => config,
            Err(e) => e.exit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::defaults();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.database_url(), "sqlite://./data/palaver.db");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert!(c.validate().is_ok(), "development defaults are valid");
    }

    #[test]
    fn production_requires_a_jwt_secret() {
        let mut c = Config::defaults();
        c.env = Mode::Production;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("PALAVER_JWT_SECRET"), "{err}");
        c.jwt_secret = Some(SecretString::from("short".to_owned()));
        assert!(c.validate().unwrap_err().to_string().contains("at least 32 bytes"));
    }

    #[test]
    fn production_requires_encryption_keys() {
        let mut c = Config::defaults();
        c.env = Mode::Production;
        c.jwt_secret = Some(SecretString::from("x".repeat(40)));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("PALAVER_ENCRYPTION_KEYS"), "{err}");
        c.encryption_keys = Some(SecretString::from("k1:tooshort".to_owned()));
        assert!(c.validate().unwrap_err().to_string().contains("32 bytes"));
        let spec = palaver_crypto::generate_key_spec(&palaver_crypto::KeyId::new("k1").unwrap());
        c.encryption_keys = Some(SecretString::from(spec));
        assert!(c.validate().is_ok());
        c.encrypt_at_rest = false;
        assert!(c.validate().unwrap_err().to_string().contains("PALAVER_ENCRYPT_AT_REST"));
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("25 MB").unwrap(), 25_000_000);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("10 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("0").is_err());
        let c = Config::defaults();
        assert_eq!((c.media_max_image_bytes, c.media_max_video_bytes), (16 << 20, 100 << 20));
    }

    #[test]
    fn push_settings_are_checked_together() {
        let mut c = Config::defaults();
        c.apns_key_file = Some(PathBuf::from("/nonexistent/key.p8"));
        c.apns_key_id = Some("KEY1234567".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("PALAVER_APNS_TEAM_ID"), "{err}");

        let mut c = Config::defaults();
        c.vapid_private_key = Some(SecretString::from("RS0WdYWWo1HajXg3NZR1olzCf31i-ZBGDkFyCs7j1jw".to_owned()));
        assert!(c.validate().unwrap_err().to_string().contains("PALAVER_VAPID_SUBJECT"));
        c.vapid_subject = Some("mailto:ops@palaver.example".into());
        assert!(c.validate().is_ok());

        let mut c = Config::defaults();
        c.push_lease = Duration::from_secs(5);
        assert!(c.validate().unwrap_err().to_string().contains("PALAVER_PUSH_LEASE"));
        let mut c = Config::defaults();
        c.fcm_base_url = "fcm.googleapis.com".into();
        assert!(c.validate().unwrap_err().to_string().contains("PALAVER_FCM_BASE_URL"));
    }

    #[test]
    fn unreadable_push_credentials_stop_start_up_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::defaults();
        c.fcm_service_account_file = Some(dir.path().join("missing.json"));
        let err = format!("{:#}", crate::push::PushSetup::from_config(&c, true).unwrap_err());
        assert!(err.contains("PALAVER_FCM_SERVICE_ACCOUNT_FILE"), "{err}");

        let file = dir.path().join("sa.json");
        std::fs::write(&file, r#"{"client_email": "x@y", "private_key": "not a key", "project_id": "p"}"#).unwrap();
        c.fcm_service_account_file = Some(file);
        let err = format!("{:#}", crate::push::PushSetup::from_config(&c, true).unwrap_err());
        assert!(err.contains("PALAVER_FCM_SERVICE_ACCOUNT_FILE") && err.contains("RSA"), "{err}");

        let mut c = Config::defaults();
        c.vapid_private_key = Some(SecretString::from("not-a-key".to_owned()));
        c.vapid_subject = Some("mailto:x@y.z".into());
        let err = format!("{:#}", crate::push::PushSetup::from_config(&c, true).unwrap_err());
        assert!(err.contains("PALAVER_VAPID_PRIVATE_KEY"), "{err}");

        // Nothing configured: every provider off, and SQLite runs one worker.
        let setup = crate::push::PushSetup::from_config(&Config::defaults(), true).unwrap();
        assert!(setup.providers.fcm.is_none() && setup.providers.apns.is_none() && setup.providers.web.is_none());
        assert_eq!(setup.workers, 1);
        assert_eq!(crate::push::PushSetup::from_config(&Config::defaults(), false).unwrap().workers, 2);
    }

    #[test]
    fn file_fills_defaults_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\naccess-token-ttl = \"20m\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n").unwrap();
        let cli = Cli::load_from(vec![
            "palaver".into(),
            format!("--config={}", path.display()).into(),
            "--access-token-ttl=5m".into(),
        ])
        .unwrap();
        assert_eq!(cli.config.listen.port(), 9999, "file value applied");
        assert_eq!(cli.config.access_token_ttl, Duration::from_secs(300), "flag beats file");
        assert_eq!(cli.config.cors_origins, ["https://a.example", "https://b.example"]);
    }

    #[test]
    fn unknown_file_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let err = Cli::load_from(vec!["palaver".into(), format!("--config={}", path.display()).into()]).unwrap_err();
        assert!(err.to_string().contains("unknown setting `lisen`"), "{err}");
    }
}
