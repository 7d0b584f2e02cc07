//! Accounts and profiles.

use std::sync::Arc;

use palaver_core::time::now;
use palaver_core::user::{NewUser, ProfilePatch, Role, User};
use palaver_core::{Error, Result, UserId};
use palaver_store::{NewUserRecord, Profile, Store, StoreError};
use secrecy::SecretString;

use crate::auth::Principal;
use crate::password::PasswordHasher;

/// Profiles, and account creation shared by registration and the admin CLI.
pub struct UserService {
    store: Arc<dyn Store>,
    hasher: Arc<PasswordHasher>,
}

impl std::fmt::Debug for UserService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserService").finish_non_exhaustive()
    }
}

impl UserService {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>, hasher: Arc<PasswordHasher>) -> Self {
        Self { store, hasher }
    }

    /// Validates, hashes the password and stores a new account.
    pub async fn create_account(&self, new: NewUser) -> Result<User> {
        let new = new.validate()?;
        let password_hash = self.hasher.hash(SecretString::from(new.password)).await?;
        let record = NewUserRecord {
            email: new.email,
            password_hash,
            display_name: new.display_name,
            native_languages: new.native_languages,
            learning_languages: new.learning_languages,
            role: new.role,
            now: now(),
        };
        self.store.create_user(&record).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::Conflict("an account with this email already exists".into()),
            other => other.into(),
        })
    }

    /// Changes the caller's own profile.
    pub async fn update_me(&self, who: &Principal, patch: ProfilePatch) -> Result<User> {
        let patch = patch.validate()?;
        if patch.is_empty() {
            return Ok(who.user.clone());
        }
        Ok(self.store.update_profile(who.id(), &patch, now()).await?)
    }

    /// Another user's profile as the caller sees it. A user who blocked the
    /// caller, or a suspended user, is not found (moderators see everyone).
    pub async fn profile(&self, viewer: &Principal, id: UserId) -> Result<Profile> {
        let profile = self.store.profile(viewer.id(), id).await?.ok_or_else(|| Error::not_found("user", id))?;
        let moderator = viewer.user.role.is_moderator();
        if !moderator && (profile.blocked_you || profile.user.is_suspended) {
            return Err(Error::not_found("user", id));
        }
        Ok(profile)
    }

    /// Changes a user's role (admin tooling).
    pub async fn set_role(&self, id: UserId, role: Role) -> Result<User> {
        self.store.set_role(id, role, now()).await.map_err(|e| match e {
            StoreError::NotFound => Error::not_found("user", id),
            other => other.into(),
        })
    }
}
