//! The encryption keyring from configuration.
//!
//! Keys come from `PALAVER_ENCRYPTION_KEYS` or the file
//! `PALAVER_ENCRYPTION_KEYS_FILE` (`id:base64` entries, newest last). In
//! development, with neither set, a key is generated once into
//! `<data dir>/secrets/encryption-keys` and the log says so; a development
//! key stays readable after keys are configured, so data written with it
//! can still be read (and re-encrypted by `palaver admin rotate-keys`).
//! Production refuses to start without keys (`Config::validate`).

use anyhow::Context as _;
use palaver_crypto::{KeyId, Keyring, generate_key_spec};
use secrecy::ExposeSecret as _;

use crate::config::{Config, Mode};

/// Name of the development key file under `<data dir>/secrets/`.
pub const DEV_KEYS_FILE: &str = "encryption-keys";

/// The keyring the config names (generating the development key if needed).
pub fn load_keyring(config: &Config) -> anyhow::Result<Keyring> {
    let configured = match (&config.encryption_keys, &config.encryption_keys_file) {
        (Some(keys), _) => Some((keys.expose_secret().to_owned(), "PALAVER_ENCRYPTION_KEYS")),
        (None, Some(path)) => Some((
            std::fs::read_to_string(path).with_context(|| {
                format!("invalid setting PALAVER_ENCRYPTION_KEYS_FILE: cannot read {}", path.display())
            })?,
            "PALAVER_ENCRYPTION_KEYS_FILE",
        )),
        (None, None) => None,
    };
    let dev_path = crate::secrets::path(&config.data_dir, DEV_KEYS_FILE);
    match configured {
        Some((spec, setting)) => {
            let ring = Keyring::parse(&spec).with_context(|| format!("invalid setting {setting}"))?;
            if config.env == Mode::Development && dev_path.exists() {
                let dev = std::fs::read_to_string(&dev_path)
                    .with_context(|| format!("cannot read the development key {}", dev_path.display()))?;
                let dev = Keyring::parse(&dev)
                    .with_context(|| format!("the development key {} is malformed", dev_path.display()))?;
                return Ok(ring.with_older(dev));
            }
            Ok(ring)
        }
        None if config.env == Mode::Production => {
            anyhow::bail!("invalid setting PALAVER_ENCRYPTION_KEYS: is required in production")
        }
        None => {
            let existed = dev_path.exists();
            let suffix = uuid::Uuid::new_v4().simple().to_string();
            let fresh = generate_key_spec(&KeyId::new(&format!("dev-{}", &suffix[..8]))?);
            let spec = crate::secrets::load_or_generate_with(&config.data_dir, DEV_KEYS_FILE, move || fresh)
                .context("cannot create the development encryption key in the data folder")?;
            let ring = Keyring::parse(spec.expose_secret())
                .with_context(|| format!("the development key {} is malformed", dev_path.display()))?;
            if !existed {
                tracing::warn!(
                    path = %dev_path.display(),
                    key_id = %ring.active(),
                    "generated a development encryption key for data at rest; in production set \
                     PALAVER_ENCRYPTION_KEYS (keep this key in it to read what was written with it)"
                );
            }
            Ok(ring)
        }
    }
}
