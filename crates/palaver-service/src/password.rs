//! Password hashing with Argon2id, off the async runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use palaver_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy)]
pub struct PasswordParams {
    /// Memory per hash in KiB (OWASP minimum: 19456).
    pub memory_kib: u32,
    /// Passes over memory (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// Hashes and verifies passwords on the blocking thread pool. Hashing is
/// deliberately expensive (tens of ms and MiBs of memory), so at most a few
/// run at once: a login flood queues here instead of exhausting memory or
/// starving the async workers.
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when an email is
    /// unknown so that response time does not reveal which emails exist.
    dummy_hash: String,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher").finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the given costs.
    pub fn new(params: PasswordParams) -> Result<Self> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| Error::internal(format!("argon2 parameters: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon2.hash_password(uuid::Uuid::new_v4().as_bytes()).map_err(Error::internal)?.to_string();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Ok(Self { argon2, permits: Arc::new(Semaphore::new(workers)), dummy_hash })
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$...`).
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        let argon2 = self.argon2.clone();
        self.run(move || {
            argon2.hash_password(password.expose_secret().as_bytes()).map(|h| h.to_string()).map_err(Error::internal)
        })
        .await
    }

    /// True when `password` matches `hash`. A malformed stored hash is an
    /// internal error, not a mismatch.
    pub async fn verify(&self, password: SecretString, hash: String) -> Result<bool> {
        let argon2 = self.argon2.clone();
        self.run(move || match argon2.verify_password(password.expose_secret().as_bytes(), hash.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(Error::internal(format!("stored password hash unusable: {e}"))),
        })
        .await
    }

    /// Spends the same time as a real verification, for unknown accounts.
    pub async fn verify_dummy(&self, password: SecretString) {
        let _ = self.verify(password, self.dummy_hash.clone()).await;
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(job).await.map_err(Error::internal)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHasher {
        PasswordHasher::new(PasswordParams { memory_kib: 64, iterations: 1, parallelism: 1 }).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(hasher.verify("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!hasher.verify("wrong horse".into(), hash).await.unwrap());
        assert!(hasher.verify("x".into(), "not a phc string".into()).await.is_err());
    }

    #[tokio::test]
    async fn hashes_made_with_other_costs_still_verify() {
        let strong = PasswordHasher::new(PasswordParams { memory_kib: 128, iterations: 2, parallelism: 1 }).unwrap();
        let hash = strong.hash("pw-pw-pw-pw".into()).await.unwrap();
        assert!(cheap().verify("pw-pw-pw-pw".into(), hash).await.unwrap());
    }
}
