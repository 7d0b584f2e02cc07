//! Notifications and push from the configuration: the notifications service
//! settings, the push providers whose credentials are configured (a provider
//! without credentials stays off: its tokens are kept, pushes to them
//! skipped and counted), and the outbox worker settings.

use std::sync::Arc;

use anyhow::Context as _;
use palaver_push::providers::{
    Apns, ApnsConfig, Fcm, FcmConfig, ServiceAccount, VapidKey, WebPush, WebPushConfig, apns, http_client,
};
use palaver_push::{NotificationSettings, OutboxSettings, Providers, WebPushPolicy};
use secrecy::ExposeSecret as _;

use crate::config::Config;

/// Everything the server needs to run notifications and push.
#[derive(Debug, Clone)]
pub struct PushSetup {
    /// The notifications service settings.
    pub notifications: NotificationSettings,
    /// The providers with credentials.
    pub providers: Providers,
    /// How workers drain the outbox.
    pub outbox: OutboxSettings,
    /// Workers on this node.
    pub workers: usize,
}

impl PushSetup {
    /// Reads the credential files the config names; a missing or malformed
    /// one stops start-up with the setting's name.
    pub fn from_config(config: &Config, sqlite: bool) -> anyhow::Result<Self> {
        palaver_push::providers::install_crypto_provider();
        let mut providers = Providers::default();
        if let Some(path) = &config.fcm_service_account_file {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("invalid setting PALAVER_FCM_SERVICE_ACCOUNT_FILE: cannot read {}", path.display())
            })?;
            let account: ServiceAccount = serde_json::from_str(&text)
                .context("invalid setting PALAVER_FCM_SERVICE_ACCOUNT_FILE: not a service account key file")?;
            let project_id = config
                .fcm_project_id
                .clone()
                .or_else(|| account.project_id.clone())
                .context("invalid setting PALAVER_FCM_PROJECT_ID: required (the key file names no project_id)")?;
            let fcm = Fcm::new(
                FcmConfig {
                    service_account: account,
                    project_id,
                    base_url: config.fcm_base_url.clone(),
                    token_url: config.fcm_token_url.clone(),
                },
                http_client(config.push_request_timeout)?,
            )
            .context("invalid setting PALAVER_FCM_SERVICE_ACCOUNT_FILE")?;
            providers.fcm = Some(Arc::new(fcm));
        }
        if let Some(path) = &config.apns_key_file {
            let key_pem = std::fs::read(path)
                .with_context(|| format!("invalid setting PALAVER_APNS_KEY_FILE: cannot read {}", path.display()))?;
            let base_url = config.apns_base_url.clone().unwrap_or_else(|| {
                if config.apns_environment == "sandbox" { apns::SANDBOX_URL } else { apns::PRODUCTION_URL }.to_owned()
            });
            let apns = Apns::new(
                ApnsConfig {
                    key_pem,
                    key_id: config.apns_key_id.clone().unwrap_or_default(),
                    team_id: config.apns_team_id.clone().unwrap_or_default(),
                    topic: config.apns_topic.clone().unwrap_or_default(),
                    base_url,
                },
                Apns::client(config.push_request_timeout)?,
            )
            .context("invalid setting PALAVER_APNS_KEY_FILE")?;
            providers.apns = Some(Arc::new(apns));
        }
        let vapid_text = match (&config.vapid_private_key, &config.vapid_private_key_file) {
            (Some(key), _) => Some(key.expose_secret().to_owned()),
            (None, Some(path)) => Some(std::fs::read_to_string(path).with_context(|| {
                format!("invalid setting PALAVER_VAPID_PRIVATE_KEY_FILE: cannot read {}", path.display())
            })?),
            (None, None) => None,
        };
        let mut vapid_public_key = None;
        if let Some(text) = vapid_text {
            let vapid = VapidKey::parse(&text).context("invalid setting PALAVER_VAPID_PRIVATE_KEY")?;
            vapid_public_key = Some(vapid.public_key_base64());
            let web = WebPush::new(
                WebPushConfig { vapid, subject: config.vapid_subject.clone().unwrap_or_default() },
                http_client(config.push_request_timeout)?,
            )
            .context("invalid setting PALAVER_VAPID_PRIVATE_KEY")?;
            providers.web = Some(Arc::new(web));
        }
        let notifications = NotificationSettings {
            aggregation_window: config.notification_aggregation_window,
            quiet_hours_mode: config.quiet_hours_mode,
            push_max_age: config.push_max_age,
            max_tokens_per_user: config.push_max_tokens_per_user,
            web_push: WebPushPolicy {
                allowed_hosts: config.webpush_allowed_hosts.clone(),
                allow_http: config.webpush_allow_http,
            },
            vapid_public_key,
            ..NotificationSettings::default()
        };
        let outbox = OutboxSettings {
            batch_size: config.push_batch_size,
            concurrency: usize::try_from(config.push_concurrency).unwrap_or(32),
            poll_interval: config.push_poll_interval,
            lease: config.push_lease,
            retry_base: config.push_retry_base,
            retry_max: config.push_retry_max,
        };
        let configured = usize::try_from(config.push_workers).unwrap_or(1);
        // SQLite has one writer: more workers would only queue behind it.
        let workers = if sqlite { configured.min(1) } else { configured };
        Ok(Self { notifications, providers, outbox, workers })
    }
}
