//! Records the store reads and writes that are not plain domain types.

use palaver_core::UserId;
use palaver_core::time::Timestamp;
use palaver_core::user::{LearningLanguage, Role, User};
use serde::Serialize;
use sqlx::types::Json;

use crate::StoreError;

/// A validated account ready to insert.
#[derive(Debug, Clone)]
pub struct NewUserRecord {
    /// Lowercased email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Name shown to others.
    pub display_name: String,
    /// Native language codes.
    pub native_languages: Vec<String>,
    /// Learning languages with levels.
    pub learning_languages: Vec<LearningLanguage>,
    /// Role.
    pub role: Role,
    /// Creation time.
    pub now: Timestamp,
}

/// A refresh token to store (its hash, never the token).
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    /// SHA-256 of the token, hex.
    pub hash: String,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The token was valid and is now spent; the new one is stored.
    Rotated {
        /// Owner of the session.
        user_id: UserId,
        /// The session (token family).
        session_id: String,
    },
    /// The token was already spent: the session is now revoked.
    Reused {
        /// The revoked session.
        session_id: String,
    },
    /// Unknown, expired, or its session was revoked.
    Invalid,
}

/// Whether a login session still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Usable.
    Active,
    /// Logged out or revoked.
    Revoked,
}

/// A user as another user sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The user.
    pub user: User,
    /// How many follow them.
    pub followers_count: i64,
    /// How many they follow.
    pub following_count: i64,
    /// How many visible moments they have.
    pub moments_count: i64,
    /// The viewer follows them.
    pub is_following: bool,
    /// They follow the viewer.
    pub follows_you: bool,
    /// The viewer blocked them.
    pub is_blocked: bool,
    /// They blocked the viewer.
    pub blocked_you: bool,
}

/// A `users` row as read.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub avatar: Option<String>,
    pub bio: String,
    pub native_languages: Json<Vec<String>>,
    pub learning_languages: Json<Vec<LearningLanguage>>,
    pub role: String,
    pub is_suspended: bool,
    pub last_seen_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            avatar: row.avatar,
            bio: row.bio,
            native_languages: row.native_languages.0,
            learning_languages: row.learning_languages.0,
            role: row.role.parse().map_err(StoreError::Corrupt)?,
            is_suspended: row.is_suspended,
            last_seen_at: row.last_seen_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}
