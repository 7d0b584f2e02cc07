//! `/users`: one's own profile and other users' profiles.

use axum::extract::State;
use chrono::{DateTime, Utc};
use palaver_core::user::{LearningLanguage, ProfilePatch, Role, User};
use palaver_core::{Error, UserId};
use palaver_store::Profile;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, Auth};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, patch_me)).routes(routes!(get_user))
}

/// The caller's own account, with private fields (email) and counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub avatar: Option<String>,
    pub bio: String,
    pub native_languages: Vec<String>,
    pub learning_languages: Vec<LearningLanguage>,
    pub role: Role,
    pub followers_count: i64,
    pub following_count: i64,
    pub moments_count: i64,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Me {
    /// The account with its counts (zero when not known).
    pub fn new(user: User, counts: Option<&Profile>) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            avatar: user.avatar,
            bio: user.bio,
            native_languages: user.native_languages,
            learning_languages: user.learning_languages,
            role: user.role,
            followers_count: counts.map_or(0, |p| p.followers_count),
            following_count: counts.map_or(0, |p| p.following_count),
            moments_count: counts.map_or(0, |p| p.moments_count),
            last_seen_at: user.last_seen_at,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// Another user as the caller sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserProfile {
    pub id: UserId,
    pub display_name: String,
    pub avatar: Option<String>,
    pub bio: String,
    pub native_languages: Vec<String>,
    pub learning_languages: Vec<LearningLanguage>,
    pub role: Role,
    pub followers_count: i64,
    pub following_count: i64,
    pub moments_count: i64,
    /// The caller follows this user.
    pub is_following: bool,
    /// This user follows the caller.
    pub follows_you: bool,
    /// The caller blocked this user.
    pub is_blocked: bool,
    pub created_at: DateTime<Utc>,
}

impl From<Profile> for UserProfile {
    fn from(p: Profile) -> Self {
        Self {
            id: p.user.id,
            display_name: p.user.display_name,
            avatar: p.user.avatar,
            bio: p.user.bio,
            native_languages: p.user.native_languages,
            learning_languages: p.user.learning_languages,
            role: p.user.role,
            followers_count: p.followers_count,
            following_count: p.following_count,
            moments_count: p.moments_count,
            is_following: p.is_following,
            follows_you: p.follows_you,
            is_blocked: p.is_blocked,
            created_at: p.user.created_at,
        }
    }
}

/// A change to one's profile; absent fields stay as they are, `avatar: null`
/// removes the avatar.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchMe {
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub avatar: Option<Option<String>>,
    pub bio: Option<String>,
    pub native_languages: Option<Vec<String>>,
    pub learning_languages: Option<Vec<LearningLanguage>>,
}

/// Distinguishes `"avatar": null` (Some(None)) from no `avatar` (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The caller's account.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_me(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<ApiJson<Me>> {
    let counts = state.services.store.profile(me.id(), me.id()).await?;
    Ok(ApiJson(Me::new(me.user, counts.as_ref())))
}

/// Changes the caller's profile.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = PatchMe,
    responses((status = 200, body = Me), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn patch_me(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiJson(body): ApiJson<PatchMe>,
) -> ApiResult<ApiJson<Me>> {
    let patch = ProfilePatch {
        display_name: body.display_name,
        avatar: body.avatar,
        bio: body.bio,
        native_languages: body.native_languages,
        learning_languages: body.learning_languages,
    };
    let user = state.services.users.update_me(&me, patch).await?;
    let counts = state.services.store.profile(user.id, user.id).await?;
    Ok(ApiJson(Me::new(user, counts.as_ref())))
}

/// A user's profile, with the relationship to the caller.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = i64, Path, description = "User id")),
    responses((status = 200, body = UserProfile), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(state): State<AppState>,
    Auth(me): Auth,
    ApiPath(id): ApiPath<UserId>,
) -> ApiResult<ApiJson<UserProfile>> {
    if id <= 0 {
        return Err(Error::not_found("user", id).into());
    }
    Ok(ApiJson(state.services.users.profile(&me, id).await?.into()))
}
