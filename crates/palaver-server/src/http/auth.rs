//! `/auth`: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use palaver_core::user::{LearningLanguage, NewUser, Role, User};
use palaver_service::TokenPair;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Auth, ClientIp};
use crate::http::users::Me;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// A new account. No Debug: it carries a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ana@example.org")]
    pub email: String,
    /// 8 to 256 bytes.
    pub password: String,
    #[schema(example = "Ana")]
    pub display_name: String,
    /// Language codes, such as `es`.
    #[serde(default)]
    pub native_languages: Vec<String>,
    #[serde(default)]
    pub learning_languages: Vec<LearningLanguage>,
}

/// Credentials. No Debug: it carries a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// A refresh token to spend. No Debug: it is a credential.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// The account and a fresh token pair.
#[derive(Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: Me,
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single-use token for `/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl AuthResponse {
    fn new(user: User, tokens: TokenPair) -> Self {
        Self {
            user: Me::new(user, None),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: tokens.token_type.to_owned(),
            expires_in: tokens.expires_in,
        }
    }
}

/// Creates an account and logs it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "email already registered"),
              (status = 429, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, ApiJson<AuthResponse>)> {
    state.services.rate_limiter.check(&format!("register:{ip}"), state.http.rate_register).await?;
    let new = NewUser {
        email: body.email,
        password: body.password,
        display_name: body.display_name,
        native_languages: body.native_languages,
        learning_languages: body.learning_languages,
        role: Role::User,
    };
    let (user, tokens) = state.services.auth.register(new).await?;
    Ok((StatusCode::CREATED, ApiJson(AuthResponse::new(user, tokens))))
}

/// Logs in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "account suspended"), (status = 429, body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<ApiJson<AuthResponse>> {
    state.services.rate_limiter.check(&format!("login:{ip}"), state.http.rate_login).await?;
    let (user, tokens) = state.services.auth.login(&body.email, SecretString::from(body.password)).await?;
    Ok(ApiJson(AuthResponse::new(user, tokens)))
}

/// Spends a refresh token for a new pair. Each refresh token works once;
/// presenting a spent one ends the session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = AuthResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<ApiJson<AuthResponse>> {
    state.services.rate_limiter.check(&format!("refresh:{ip}"), state.http.rate_refresh).await?;
    let (user, tokens) = state.services.auth.refresh(&body.refresh_token).await?;
    Ok(ApiJson(AuthResponse::new(user, tokens)))
}

/// Ends the caller's session: its access and refresh tokens stop working.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "logged out"), (status = 401, body = ErrorBody)))]
async fn logout(State(state): State<AppState>, Auth(me): Auth) -> ApiResult<StatusCode> {
    state.services.auth.logout(&me).await?;
    Ok(StatusCode::NO_CONTENT)
}
