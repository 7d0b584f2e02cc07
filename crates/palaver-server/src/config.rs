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

    /// Content (moments, comments) reported by this many distinct users is hidden until a moderator reviews it.
    #[arg(long, env = "PALAVER_AUTO_HIDE_REPORTS", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=10000), global = true, help_heading = "Social")]
    pub auto_hide_reports: u32,

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
