//! Users, roles and the languages they speak and learn.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;
use crate::validate;
use crate::{FieldErrors, Result, UserId};

/// What a user may do beyond the basics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A learner or native speaker.
    User,
    /// May share their screen in calls and voice rooms.
    Teacher,
    /// May review reports, hide content and suspend users.
    Moderator,
    /// Everything a moderator may, plus managing roles.
    Admin,
}

impl Role {
    /// All roles, in order of increasing privilege.
    pub const ALL: [Role; 4] = [Role::User, Role::Teacher, Role::Moderator, Role::Admin];

    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Teacher => "teacher",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// Moderators and admins work the moderation queue.
    pub fn is_moderator(self) -> bool {
        matches!(self, Role::Moderator | Role::Admin)
    }

    /// Only teachers share their screen (in calls and voice rooms).
    pub fn can_share_screen(self) -> bool {
        matches!(self, Role::Teacher)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}` (expected user, teacher, moderator or admin)"))
    }
}

/// How well a learner speaks a language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Just starting.
    Beginner,
    /// Holds a conversation.
    Intermediate,
    /// Fluent in most situations.
    Advanced,
}

impl Level {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Beginner => "beginner",
            Level::Intermediate => "intermediate",
            Level::Advanced => "advanced",
        }
    }

    /// Distance between two levels (0, 1 or 2), used by the matcher.
    pub fn distance(self, other: Level) -> u8 {
        (self as i8 - other as i8).unsigned_abs()
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "beginner" => Ok(Level::Beginner),
            "intermediate" => Ok(Level::Intermediate),
            "advanced" => Ok(Level::Advanced),
            _ => Err(format!("unknown level `{s}` (expected beginner, intermediate or advanced)")),
        }
    }
}

/// A language a user is learning, with their level in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearningLanguage {
    /// Language code such as `es` or `pt-BR`.
    #[schema(example = "es")]
    pub code: String,
    /// The learner's level.
    pub level: Level,
}

/// A user as the domain knows them (never with the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Lowercased email address; unique.
    pub email: String,
    /// Name shown to others.
    pub display_name: String,
    /// Avatar image URL, if set.
    pub avatar: Option<String>,
    /// A short self-description.
    pub bio: String,
    /// Languages the user speaks natively (codes).
    pub native_languages: Vec<String>,
    /// Languages the user learns, with levels.
    pub learning_languages: Vec<LearningLanguage>,
    /// What the user may do.
    pub role: Role,
    /// Suspended users are refused everywhere.
    pub is_suspended: bool,
    /// Last time the user was seen online.
    pub last_seen_at: Option<Timestamp>,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the profile last changed.
    pub updated_at: Timestamp,
}

/// Limits on profile fields.
pub mod limits {
    /// Shortest accepted password, in characters (NIST SP 800-63B).
    pub const PASSWORD_MIN_CHARS: usize = 8;
    /// Longest accepted password, in bytes: bounds the hashing work per request.
    pub const PASSWORD_MAX_BYTES: usize = 256;
    /// Longest display name, in characters.
    pub const DISPLAY_NAME_MAX_CHARS: usize = 50;
    /// Longest bio, in characters.
    pub const BIO_MAX_CHARS: usize = 500;
    /// Most languages in each of the native and learning lists.
    pub const MAX_LANGUAGES: usize = 10;
    /// Longest avatar URL.
    pub const AVATAR_URL_MAX_CHARS: usize = 2048;
}

/// What a new account is made from, already parsed from the request.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Email address as entered.
    pub email: String,
    /// Password in clear; hashed before it is stored, never logged.
    pub password: String,
    /// Name shown to others.
    pub display_name: String,
    /// Native language codes.
    pub native_languages: Vec<String>,
    /// Learning languages with levels.
    pub learning_languages: Vec<LearningLanguage>,
    /// Role of the new account.
    pub role: Role,
}

impl NewUser {
    /// Checks every field and normalises the email, display name and
    /// language codes. Reports every invalid field at once.
    pub fn validate(mut self) -> Result<Self> {
        let mut errors = FieldErrors::new();
        match validate::email(&self.email) {
            Ok(email) => self.email = email,
            Err(msg) => errors.add("email", msg),
        }
        if let Err(msg) = validate::password(&self.password) {
            errors.add("password", msg);
        }
        match validate::display_name(&self.display_name) {
            Ok(name) => self.display_name = name,
            Err(msg) => errors.add("display_name", msg),
        }
        self.native_languages = validate::language_list(&self.native_languages, "native_languages", &mut errors);
        self.learning_languages = validate::learning_languages(&self.learning_languages, &mut errors);
        errors.into_result()?;
        Ok(self)
    }
}

/// A change to one's own profile; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New avatar URL; `Some(None)` clears it.
    pub avatar: Option<Option<String>>,
    /// New bio.
    pub bio: Option<String>,
    /// New native languages.
    pub native_languages: Option<Vec<String>>,
    /// New learning languages.
    pub learning_languages: Option<Vec<LearningLanguage>>,
}

impl ProfilePatch {
    /// Checks and normalises every present field.
    pub fn validate(mut self) -> Result<Self> {
        let mut errors = FieldErrors::new();
        if let Some(name) = &self.display_name {
            match validate::display_name(name) {
                Ok(name) => self.display_name = Some(name),
                Err(msg) => errors.add("display_name", msg),
            }
        }
        if let Some(Some(url)) = &self.avatar
            && let Err(msg) = validate::http_url(url, limits::AVATAR_URL_MAX_CHARS)
        {
            errors.add("avatar", msg);
        }
        if let Some(bio) = &self.bio
            && let Err(msg) = validate::text(bio, 0, limits::BIO_MAX_CHARS)
        {
            errors.add("bio", msg);
        }
        if let Some(langs) = &self.native_languages {
            self.native_languages = Some(validate::language_list(langs, "native_languages", &mut errors));
        }
        if let Some(langs) = &self.learning_languages {
            self.learning_languages = Some(validate::learning_languages(langs, &mut errors));
        }
        errors.into_result()?;
        Ok(self)
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.avatar.is_none()
            && self.bio.is_none()
            && self.native_languages.is_none()
            && self.learning_languages.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user() -> NewUser {
        NewUser {
            email: "  Ana@Example.ORG ".into(),
            password: "correct horse".into(),
            display_name: "  Ana ".into(),
            native_languages: vec!["ES".into()],
            learning_languages: vec![LearningLanguage { code: "en".into(), level: Level::Beginner }],
            role: Role::User,
        }
    }

    #[test]
    fn valid_user_is_normalised() {
        let user = new_user().validate().unwrap();
        assert_eq!(user.email, "ana@example.org");
        assert_eq!(user.display_name, "Ana");
        assert_eq!(user.native_languages, vec!["es"]);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut user = new_user();
        user.email = "not-an-email".into();
        user.password = "short".into();
        user.display_name = " ".into();
        user.native_languages = vec!["english!".into()];
        let Err(crate::Error::Validation(errors)) = user.validate() else {
            panic!("expected validation errors");
        };
        let fields: Vec<_> = errors.fields().keys().cloned().collect();
        assert_eq!(fields, ["display_name", "email", "native_languages[0]", "password"]);
    }

    #[test]
    fn role_round_trips_and_rules() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
        assert!(Role::Admin.is_moderator() && !Role::Teacher.is_moderator());
        assert!(Role::Teacher.can_share_screen() && !Role::Admin.can_share_screen());
        assert_eq!(Level::Beginner.distance(Level::Advanced), 2);
    }
}
