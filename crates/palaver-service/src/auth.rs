//! Registration, login, and the two kinds of token.
//!
//! Access tokens are short-lived JWTs (HS256) naming the user and the login
//! session. Refresh tokens are opaque random strings, stored only as SHA-256
//! hashes, that rotate on every use; presenting a spent one revokes the whole
//! session (RFC 6819 section 5.2.2.3, "refresh token rotation"). Every
//! authenticated request re-reads the user and the session in one query, so
//! logout, revocation and suspension take effect at once, not when the access
//! token expires.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::TimeDelta;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palaver_core::time::{Timestamp, now};
use palaver_core::user::{NewUser, User};
use palaver_core::{Error, Result, UserId};
use palaver_store::{NewRefreshToken, RotateOutcome, SessionState, Store};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::password::{PasswordHasher, PasswordParams};
use crate::users::UserService;

/// Shortest accepted JWT secret, in bytes (HS256 wants at least 256 bits).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Token and password settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// HMAC key for access tokens; at least 32 bytes.
    pub jwt_secret: SecretString,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token (each rotation starts a new one).
    pub refresh_token_ttl: Duration,
    /// Argon2id costs.
    pub password: PasswordParams,
}

/// What a successful login or refresh returns.
#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque token for `POST /auth/refresh`; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The authenticated caller of a request: the user as of this request, and
/// the login session the token belongs to.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, freshly read.
    pub user: User,
    /// The login session (refresh token family).
    pub session_id: String,
}

impl Principal {
    /// The caller's user id.
    pub fn id(&self) -> UserId {
        self.user.id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iat: i64,
    exp: i64,
    iss: String,
}

const ISSUER: &str = "palaver";

/// Issues and checks credentials.
pub struct AuthService {
    store: Arc<dyn Store>,
    users: Arc<UserService>,
    hasher: Arc<PasswordHasher>,
    settings: AuthSettings,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService").finish_non_exhaustive()
    }
}

impl AuthService {
    /// Builds the service; fails if the JWT secret is too short.
    pub fn new(
        store: Arc<dyn Store>,
        users: Arc<UserService>,
        hasher: Arc<PasswordHasher>,
        settings: AuthSettings,
    ) -> Result<Self> {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(Error::internal(format!("JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes")));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            store,
            users,
            hasher,
            settings,
            validation,
        })
    }

    /// Creates an account and logs it in.
    pub async fn register(&self, new: NewUser) -> Result<(User, TokenPair)> {
        let user = self.users.create_account(new).await?;
        let tokens = self.start_session(user.id).await?;
        tracing::info!(user_id = user.id, "registered");
        Ok((user, tokens))
    }

    /// Checks an email and password and starts a session. Unknown emails and
    /// wrong passwords get the same answer in the same time.
    pub async fn login(&self, email: &str, password: SecretString) -> Result<(User, TokenPair)> {
        let email = email.trim().to_lowercase();
        let invalid = || Error::Unauthorized("invalid email or password".into());
        let Some((user, hash)) = self.store.credentials_by_email(&email).await? else {
            self.hasher.verify_dummy(password).await;
            return Err(invalid());
        };
        if !self.hasher.verify(password, hash).await? {
            tracing::info!(user_id = user.id, "login failed: wrong password");
            return Err(invalid());
        }
        if user.is_suspended {
            return Err(Error::Suspended);
        }
        let tokens = self.start_session(user.id).await?;
        tracing::info!(user_id = user.id, "logged in");
        Ok((user, tokens))
    }

    /// Spends a refresh token for a new pair in the same session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(User, TokenPair)> {
        let (next_token, next) = self.new_refresh_token();
        let outcome = self.store.rotate_refresh_token(&hash_token(refresh_token), &next, now()).await?;
        match outcome {
            RotateOutcome::Rotated { user_id, session_id } => {
                let user = self.store.user_by_id(user_id).await?.ok_or_else(invalid_refresh)?;
                if user.is_suspended {
                    return Err(Error::Suspended);
                }
                let tokens = self.pair(user.id, &session_id, next_token)?;
                Ok((user, tokens))
            }
            RotateOutcome::Reused { session_id } => {
                tracing::warn!(%session_id, "spent refresh token presented again: session revoked");
                Err(Error::Unauthorized("refresh token was already used; the session is revoked, log in again".into()))
            }
            RotateOutcome::Invalid => Err(invalid_refresh()),
        }
    }

    /// Ends the caller's session: its refresh tokens and access tokens stop
    /// working at once.
    pub async fn logout(&self, who: &Principal) -> Result<()> {
        self.store.revoke_session(&who.session_id, "logout", now()).await?;
        tracing::info!(user_id = who.id(), "logged out");
        Ok(())
    }

    /// Checks an access token and loads its user and session. Suspended users
    /// are refused here, so they are refused everywhere.
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal> {
        let claims = jsonwebtoken::decode::<Claims>(access_token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Error::Unauthorized("access token expired".into()),
                _ => Error::Unauthorized("invalid access token".into()),
            })?
            .claims;
        let user_id: UserId = claims.sub.parse().map_err(|_| Error::Unauthorized("invalid access token".into()))?;
        let Some((user, state)) = self.store.session_user(user_id, &claims.sid).await? else {
            return Err(Error::Unauthorized("invalid access token".into()));
        };
        if state == SessionState::Revoked {
            return Err(Error::Unauthorized("session has ended, log in again".into()));
        }
        if user.is_suspended {
            return Err(Error::Suspended);
        }
        Ok(Principal { user, session_id: claims.sid })
    }

    async fn start_session(&self, user_id: UserId) -> Result<TokenPair> {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (token, record) = self.new_refresh_token();
        self.store.create_session(&session_id, user_id, &record, now()).await?;
        self.pair(user_id, &session_id, token)
    }

    fn pair(&self, user_id: UserId, session_id: &str, refresh_token: String) -> Result<TokenPair> {
        let issued = now();
        let ttl = self.settings.access_token_ttl;
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_owned(),
            iat: issued.timestamp(),
            exp: (issued + delta(ttl)).timestamp(),
            iss: ISSUER.into(),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(Error::internal)?;
        Ok(TokenPair { access_token, refresh_token, token_type: "Bearer", expires_in: ttl.as_secs() })
    }

    fn new_refresh_token(&self) -> (String, NewRefreshToken) {
        let bytes: [u8; 32] = rand::rng().random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let expires_at: Timestamp = now() + delta(self.settings.refresh_token_ttl);
        let record = NewRefreshToken { hash: hash_token(&token), expires_at };
        (token, record)
    }
}

fn invalid_refresh() -> Error {
    Error::Unauthorized("invalid or expired refresh token".into())
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// Refresh tokens are stored as their SHA-256: a leaked database does not
/// leak usable tokens. (A slow hash is unnecessary: the token has 256 bits of
/// entropy.)
fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
