//! Local HTTP servers standing in for the push services, for tests (and the
//! benchmark) of this and other crates. Each checks requests strictly (auth
//! headers and JWTs verified with the test keys, payload shape, TTL and
//! urgency headers), records what it accepted, and can answer with the
//! service's real error codes. Anything it refuses as malformed is also
//! written to [`StandIn::violations`], which tests assert is empty.
//!
//! The Web Push stand-in decrypts payloads with [`decrypt_aes128gcm`], an
//! RFC 8291 implementation independent of the sender's (`ring` for HKDF and
//! AES-GCM, checked against the RFC's test vector).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
use palaver_core::notification::{WebPushKeys, WebPushSubscription};
use serde_json::{Value, json};

use crate::providers::fcm::FCM_SCOPE;
use crate::providers::{ApnsConfig, FcmConfig, ServiceAccount, VapidKey};

/// One push a stand-in accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The device token (or web subscription id).
    pub token: String,
    /// The notification id the payload names, if any.
    pub notification_id: Option<i64>,
    /// Headline.
    pub title: String,
    /// Detail line.
    pub body: String,
    /// The collapse key the request carried (FCM collapse_key, APNs
    /// apns-collapse-id, Web Push Topic).
    pub collapse_key: Option<String>,
    /// Sent as high priority / urgency.
    pub high_priority: bool,
    /// The whole payload as the device would see it (decrypted for Web
    /// Push).
    pub payload: Value,
    /// The TTL it asked for, in seconds.
    pub ttl_secs: Option<u64>,
    /// When it arrived.
    pub received_at: Instant,
}

/// A scripted failure for the next request(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 503 with the service's "unavailable" error.
    Unavailable,
    /// 429 with `Retry-After` (seconds).
    TooManyRequests(u64),
    /// 500 with the service's internal error.
    Internal,
}

/// State every stand-in shares: behaviour switches and what it saw.
#[derive(Clone, Default)]
pub struct StandIn {
    down: Arc<AtomicBool>,
    dead: Arc<Mutex<HashSet<String>>>,
    script: Arc<Mutex<VecDeque<Failure>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    violations: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicUsize>,
    delay: Arc<Mutex<Duration>>,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn").field("requests", &self.requests()).finish_non_exhaustive()
    }
}

impl StandIn {
    /// While down, every push request gets the service's 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// From now on this token is unregistered (FCM `UNREGISTERED`, APNs 410
    /// `Unregistered`, Web Push 410 Gone).
    pub fn kill_token(&self, token: &str) {
        self.dead.lock().unwrap().insert(token.to_owned());
    }

    /// The next push requests fail like this, in order.
    pub fn fail_next(&self, failure: Failure) {
        self.script.lock().unwrap().push_back(failure);
    }

    /// Every push request waits this long before it is answered (a slow
    /// service, so concurrent senders overlap).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Every push accepted so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Requests refused as malformed, with the reason.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    /// Push requests received (accepted or not).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` pushes were accepted; panics after `timeout`.
    pub async fn wait_for_deliveries(&self, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.deliveries();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "expected {n} deliveries within {timeout:?}, got {}", seen.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` requests arrived (accepted or not).
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.requests() < n {
            assert!(Instant::now() < deadline, "expected {n} requests within {timeout:?}, got {}", self.requests());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn violation(&self, what: String) -> Response {
        self.violations.lock().unwrap().push(what.clone());
        (StatusCode::BAD_REQUEST, what).into_response()
    }

    /// Counts the request, waits the configured delay, and returns a
    /// scripted failure if one is due.
    async fn begin(&self) -> Option<Failure> {
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.scripted()
    }

    fn scripted(&self) -> Option<Failure> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Some(Failure::Unavailable);
        }
        self.script.lock().unwrap().pop_front()
    }

    fn is_dead(&self, token: &str) -> bool {
        self.dead.lock().unwrap().contains(token)
    }

    fn record(&self, delivery: Delivery) {
        self.deliveries.lock().unwrap().push(delivery);
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn bearer(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim().to_owned())
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------- FCM ----

struct RsaKeys {
    private_pem: String,
    public_pem: String,
}

/// One throwaway RSA key per test process (generating one takes a moment).
fn rsa_keys() -> &'static RsaKeys {
    static KEYS: OnceLock<RsaKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        RsaKeys {
            private_pem: key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap().to_string(),
            public_pem: key.to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap(),
        }
    })
}

#[derive(Default)]
struct FcmTokens {
    issued: HashMap<String, Instant>,
    grants: usize,
    lifetime_secs: u64,
}

#[derive(Clone)]
struct FcmState {
    stand_in: StandIn,
    tokens: Arc<Mutex<FcmTokens>>,
    project_id: String,
    client_email: String,
    key_id: String,
    token_url: String,
    mismatched: Arc<Mutex<HashSet<String>>>,
}

/// FCM's OAuth2 token endpoint and HTTP v1 send endpoint.
#[derive(Clone)]
pub struct FcmStandIn {
    /// Behaviour and records.
    pub stand_in: StandIn,
    /// Where it listens.
    pub addr: SocketAddr,
    state: FcmState,
}

impl std::fmt::Debug for FcmStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FcmStandIn {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = FcmState {
            stand_in: StandIn::default(),
            tokens: Arc::new(Mutex::new(FcmTokens { lifetime_secs: 3600, ..FcmTokens::default() })),
            project_id: "palaver-test".into(),
            client_email: "push@palaver-test.iam.gserviceaccount.com".into(),
            key_id: "test-key-1".into(),
            token_url: format!("http://{addr}/token"),
            mismatched: Arc::default(),
        };
        let router = Router::new()
            .route("/token", post(fcm_token))
            .route("/v1/projects/{project}/messages:send", post(fcm_send))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { stand_in: state.stand_in.clone(), addr, state }
    }

    /// The service account key file a deployment would have.
    pub fn service_account(&self) -> ServiceAccount {
        serde_json::from_value(self.service_account_json()).unwrap()
    }

    /// The key file as JSON, as Google issues it.
    pub fn service_account_json(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.state.project_id,
            "private_key_id": self.state.key_id,
            "private_key": rsa_keys().private_pem,
            "client_email": self.state.client_email,
            "token_uri": self.state.token_url,
        })
    }

    /// Provider settings pointing here.
    pub fn config(&self) -> FcmConfig {
        FcmConfig {
            service_account: self.service_account(),
            project_id: self.state.project_id.clone(),
            base_url: format!("http://{}", self.addr),
            token_url: None,
        }
    }

    /// Access tokens issued so far.
    pub fn token_grants(&self) -> usize {
        self.state.tokens.lock().unwrap().grants
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.tokens.lock().unwrap().lifetime_secs = secs;
    }

    /// Every issued access token stops working (sends get 401).
    pub fn revoke_tokens(&self) {
        self.state.tokens.lock().unwrap().issued.clear();
    }

    /// This token belongs to another sender (403 `SENDER_ID_MISMATCH`).
    pub fn mismatch_token(&self, token: &str) {
        self.state.mismatched.lock().unwrap().insert(token.to_owned());
    }
}

fn form_decode(s: &str) -> HashMap<String, String> {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (unescape(k), unescape(v))).collect()
}

async fn fcm_token(State(state): State<FcmState>, headers: HeaderMap, body: Bytes) -> Response {
    let s = &state.stand_in;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return s.violation(format!("token request content-type {content_type}"));
    }
    let form = form_decode(&String::from_utf8_lossy(&body));
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return s.violation(format!("grant_type {:?}", form.get("grant_type")));
    }
    let Some(assertion) = form.get("assertion") else {
        return s.violation("no assertion".into());
    };
    let header = match jsonwebtoken::decode_header(assertion) {
        Ok(h) => h,
        Err(e) => return s.violation(format!("assertion header: {e}")),
    };
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(state.key_id.as_str()) {
        return s.violation(format!("assertion alg {:?} kid {:?}", header.alg, header.kid));
    }
    let key = DecodingKey::from_rsa_pem(rsa_keys().public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&state.token_url]);
    validation.set_issuer(&[&state.client_email]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return s.violation(format!("assertion rejected: {e}")),
    };
    let iat = claims["iat"].as_i64().unwrap_or_default();
    let exp = claims["exp"].as_i64().unwrap_or_default();
    if claims["scope"] != FCM_SCOPE || exp - iat > 3600 || exp <= iat || (iat - now_secs()).abs() > 60 {
        return s.violation(format!("assertion claims {claims}"));
    }
    let mut tokens = state.tokens.lock().unwrap();
    tokens.grants += 1;
    let token = format!("ya29.test-{}-{}", tokens.grants, uuid::Uuid::new_v4().simple());
    let lifetime = tokens.lifetime_secs;
    tokens.issued.insert(token.clone(), Instant::now() + Duration::from_secs(lifetime));
    axum::Json(json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})).into_response()
}

fn fcm_error(status: u16, name: &str, code: Option<&str>) -> Response {
    let mut error = json!({"code": status, "message": name, "status": name});
    if let Some(code) = code {
        error["details"] = json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]);
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"error": error}))).into_response()
}

async fn fcm_send(
    State(state): State<FcmState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &state.stand_in;
    if let Some(failure) = s.begin().await {
        return match failure {
            Failure::Unavailable => fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE")),
            Failure::Internal => fcm_error(500, "INTERNAL", Some("INTERNAL")),
            Failure::TooManyRequests(secs) => {
                let mut r = fcm_error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"));
                r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
                r
            }
        };
    }
    let token_ok = bearer(&headers, "bearer")
        .is_some_and(|t| state.tokens.lock().unwrap().issued.get(&t).is_some_and(|expires| Instant::now() < *expires));
    if !token_ok {
        return fcm_error(401, "UNAUTHENTICATED", None);
    }
    if project != state.project_id {
        return s.violation(format!("project {project}"));
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return s.violation(format!("send content-type {content_type}"));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return s.violation("body is not JSON".into());
    };
    let m = &body["message"];
    let Some(token) = m["token"].as_str() else {
        return s.violation(format!("message.token missing: {body}"));
    };
    let (Some(title), Some(text)) = (m["notification"]["title"].as_str(), m["notification"]["body"].as_str()) else {
        return s.violation(format!("message.notification: {body}"));
    };
    let data_ok = m["data"].as_object().is_some_and(|d| d.values().all(Value::is_string));
    if !data_ok {
        return s.violation(format!("message.data must map strings to strings: {body}"));
    }
    let priority = m["android"]["priority"].as_str().unwrap_or_default();
    if priority != "HIGH" && priority != "NORMAL" {
        return s.violation(format!("android.priority {priority}"));
    }
    let ttl = m["android"]["ttl"].as_str().and_then(|t| t.strip_suffix('s')).and_then(|t| t.parse::<u64>().ok());
    if ttl.is_none() {
        return s.violation(format!("android.ttl {}", m["android"]["ttl"]));
    }
    let collapse = m["android"]["collapse_key"].as_str().map(str::to_owned);
    if collapse.is_some() && m["android"]["notification"]["tag"].as_str() != collapse.as_deref() {
        return s.violation("android.notification.tag differs from collapse_key".into());
    }
    if s.is_dead(token) {
        return fcm_error(404, "NOT_FOUND", Some("UNREGISTERED"));
    }
    if state.mismatched.lock().unwrap().contains(token) {
        return fcm_error(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"));
    }
    s.record(Delivery {
        token: token.to_owned(),
        notification_id: m["data"]["notification_id"].as_str().and_then(|n| n.parse().ok()),
        title: title.to_owned(),
        body: text.to_owned(),
        collapse_key: collapse,
        high_priority: priority == "HIGH",
        payload: m.clone(),
        ttl_secs: ttl,
        received_at: Instant::now(),
    });
    axum::Json(json!({"name": format!("projects/{project}/messages/{}", s.requests())})).into_response()
}

// --------------------------------------------------------------- APNs ----

#[derive(Clone)]
struct ApnsState {
    stand_in: StandIn,
    public_point: Vec<u8>,
    key_id: String,
    team_id: String,
    topic: String,
    jwts: Arc<Mutex<HashSet<String>>>,
}

/// APNs over HTTP/2 (cleartext, prior knowledge).
#[derive(Clone)]
pub struct ApnsStandIn {
    /// Behaviour and records.
    pub stand_in: StandIn,
    /// Where it listens.
    pub addr: SocketAddr,
    key_pem: String,
    state: ApnsState,
}

impl std::fmt::Debug for ApnsStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl ApnsStandIn {
    /// Starts it with a fresh `.p8` key.
    pub async fn start() -> Self {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let key_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let state = ApnsState {
            stand_in: StandIn::default(),
            public_point: secret.public_key().to_encoded_point(false).as_bytes().to_vec(),
            key_id: "KEY1234567".into(),
            team_id: "TEAM123456".into(),
            topic: "org.palaver.app".into(),
            jwts: Arc::default(),
        };
        let router = Router::new().route("/3/device/{token}", post(apns_send)).with_state(state.clone());
        let addr = serve(router).await;
        Self { stand_in: state.stand_in.clone(), addr, key_pem, state }
    }

    /// Provider settings pointing here.
    pub fn config(&self) -> ApnsConfig {
        ApnsConfig {
            key_pem: self.key_pem.as_bytes().to_vec(),
            key_id: self.state.key_id.clone(),
            team_id: self.state.team_id.clone(),
            topic: self.state.topic.clone(),
            base_url: format!("http://{}", self.addr),
        }
    }

    /// How many different provider tokens (JWTs) were presented.
    pub fn distinct_jwts(&self) -> usize {
        self.state.jwts.lock().unwrap().len()
    }
}

fn apns_error(status: u16, reason: &str) -> Response {
    let mut body = json!({"reason": reason});
    if status == 410 {
        body["timestamp"] = (chrono::Utc::now().timestamp_millis()).into();
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

async fn apns_send(
    State(state): State<ApnsState>,
    Path(token): Path<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = &state.stand_in;
    if version != Version::HTTP_2 {
        s.requests.fetch_add(1, Ordering::SeqCst);
        return s.violation(format!("APNs requires HTTP/2, got {version:?}"));
    }
    if let Some(failure) = s.begin().await {
        return match failure {
            Failure::Unavailable => apns_error(503, "ServiceUnavailable"),
            Failure::Internal => apns_error(500, "InternalServerError"),
            Failure::TooManyRequests(secs) => {
                let mut r = apns_error(429, "TooManyRequests");
                r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
                r
            }
        };
    }
    let Some(jwt) = bearer(&headers, "bearer") else {
        return apns_error(403, "MissingProviderToken");
    };
    let header = match jsonwebtoken::decode_header(&jwt) {
        Ok(h) => h,
        Err(_) => return apns_error(403, "InvalidProviderToken"),
    };
    if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(state.key_id.as_str()) {
        return s.violation(format!("provider token alg {:?} kid {:?}", header.alg, header.kid));
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_required_spec_claims(&["iss", "iat"]);
    validation.set_issuer(&[&state.team_id]);
    let claims = match jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_ec_der(&state.public_point), &validation)
    {
        Ok(data) => data.claims,
        Err(e) => return s.violation(format!("provider token rejected: {e}")),
    };
    let iat = claims["iat"].as_i64().unwrap_or_default();
    if now_secs() - iat > 3600 {
        return apns_error(403, "ExpiredProviderToken");
    }
    if (iat - now_secs()) > 60 {
        return s.violation(format!("provider token from the future: {claims}"));
    }
    state.jwts.lock().unwrap().insert(jwt);
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if h("apns-topic").as_deref() != Some(state.topic.as_str()) {
        return apns_error(400, "BadTopic");
    }
    if h("apns-push-type").as_deref() != Some("alert") {
        return s.violation(format!("apns-push-type {:?}", h("apns-push-type")));
    }
    let priority = h("apns-priority");
    if !matches!(priority.as_deref(), Some("10" | "5")) {
        return apns_error(400, "BadPriority");
    }
    let expiration = h("apns-expiration").and_then(|e| e.parse::<i64>().ok());
    let Some(expiration) = expiration else {
        return apns_error(400, "BadExpirationDate");
    };
    let collapse = h("apns-collapse-id");
    if collapse.as_ref().is_some_and(|c| c.len() > 64) {
        return apns_error(400, "BadCollapseId");
    }
    if token.len() < 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return apns_error(400, "BadDeviceToken");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return apns_error(400, "PayloadEmpty");
    };
    let alert = &payload["aps"]["alert"];
    let (Some(title), Some(text)) = (alert["title"].as_str(), alert["body"].as_str()) else {
        return s.violation(format!("aps.alert: {payload}"));
    };
    if body.len() > 4096 {
        return apns_error(413, "PayloadTooLarge");
    }
    if s.is_dead(&token) {
        return apns_error(410, "Unregistered");
    }
    s.record(Delivery {
        token: token.clone(),
        notification_id: payload["notification_id"].as_i64(),
        title: title.to_owned(),
        body: text.to_owned(),
        collapse_key: collapse,
        high_priority: priority.as_deref() == Some("10"),
        ttl_secs: u64::try_from(expiration - now_secs()).ok(),
        payload,
        received_at: Instant::now(),
    });
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert("apns-id", uuid::Uuid::new_v4().to_string().parse().unwrap());
    r
}

// ----------------------------------------------------------- Web Push ----

struct Subscriber {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

#[derive(Clone)]
struct WebState {
    stand_in: StandIn,
    origin: String,
    vapid_public: Arc<Mutex<Option<String>>>,
    subscribers: Arc<Mutex<HashMap<String, Arc<Subscriber>>>>,
}

/// A Web Push service: hands out subscriptions, decrypts what it receives.
#[derive(Clone)]
pub struct WebPushStandIn {
    /// Behaviour and records.
    pub stand_in: StandIn,
    /// Where it listens.
    pub addr: SocketAddr,
    state: WebState,
}

impl std::fmt::Debug for WebPushStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl WebPushStandIn {
    /// Starts it; pushes must be signed with `vapid`'s key.
    pub async fn start(vapid: &VapidKey) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = WebState {
            stand_in: StandIn::default(),
            origin: format!("http://{addr}"),
            vapid_public: Arc::new(Mutex::new(Some(vapid.public_key_base64()))),
            subscribers: Arc::default(),
        };
        let router = Router::new().route("/push/{id}", post(web_push)).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { stand_in: state.stand_in.clone(), addr, state }
    }

    /// A new browser subscription (what `pushManager.subscribe` returns).
    pub fn subscribe(&self) -> WebPushSubscription {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let auth: [u8; 16] = rand::random();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let keys = WebPushKeys {
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        self.state.subscribers.lock().unwrap().insert(id.clone(), Arc::new(Subscriber { secret, auth }));
        WebPushSubscription { endpoint: format!("http://{}/push/{id}", self.addr), keys }
    }
}

fn web_error(status: StatusCode) -> Response {
    (status, "").into_response()
}

async fn web_push(State(state): State<WebState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let s = &state.stand_in;
    if let Some(failure) = s.begin().await {
        return match failure {
            Failure::Unavailable => web_error(StatusCode::SERVICE_UNAVAILABLE),
            Failure::Internal => web_error(StatusCode::INTERNAL_SERVER_ERROR),
            Failure::TooManyRequests(secs) => {
                let mut r = web_error(StatusCode::TOO_MANY_REQUESTS);
                r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
                r
            }
        };
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // RFC 8292: Authorization: vapid t=<jwt>, k=<public key>.
    let Some(auth) = h("authorization") else {
        return web_error(StatusCode::UNAUTHORIZED);
    };
    let Some(params) = auth.strip_prefix("vapid ") else {
        return s.violation(format!("authorization scheme: {auth}"));
    };
    let mut t = None;
    let mut k = None;
    for part in params.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("k", v)) => k = Some(v.to_owned()),
            _ => return s.violation(format!("vapid parameter: {part}")),
        }
    }
    let (Some(t), Some(k)) = (t, k) else {
        return s.violation(format!("vapid t/k missing: {auth}"));
    };
    if state.vapid_public.lock().unwrap().as_deref() != Some(k.as_str()) {
        return web_error(StatusCode::FORBIDDEN);
    }
    let Ok(k_bytes) = URL_SAFE_NO_PAD.decode(&k) else {
        return s.violation("k is not base64url".into());
    };
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&state.origin]);
    validation.set_required_spec_claims(&["aud", "exp", "sub"]);
    let claims = match jsonwebtoken::decode::<Value>(&t, &DecodingKey::from_ec_der(&k_bytes), &validation) {
        Ok(data) => data.claims,
        Err(e) => return s.violation(format!("VAPID token rejected: {e}")),
    };
    let exp = claims["exp"].as_i64().unwrap_or_default();
    let sub = claims["sub"].as_str().unwrap_or_default();
    if exp > now_secs() + 24 * 3600 || !(sub.starts_with("mailto:") || sub.starts_with("https:")) {
        return s.violation(format!("VAPID claims {claims}"));
    }
    if h("content-type").as_deref() != Some("application/octet-stream") {
        return s.violation(format!("content-type {:?}", h("content-type")));
    }
    if h("content-encoding").as_deref() != Some("aes128gcm") {
        return s.violation(format!("content-encoding {:?}", h("content-encoding")));
    }
    let Some(ttl) = h("ttl").and_then(|v| v.parse::<u64>().ok()) else {
        return s.violation(format!("TTL header {:?}", h("ttl")));
    };
    let urgency = h("urgency");
    if !matches!(urgency.as_deref(), None | Some("very-low" | "low" | "normal" | "high")) {
        return s.violation(format!("urgency {urgency:?}"));
    }
    let topic = h("topic");
    if topic
        .as_ref()
        .is_some_and(|t| t.len() > 32 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return s.violation(format!("topic {topic:?}"));
    }
    if s.is_dead(&id) {
        return web_error(StatusCode::GONE);
    }
    let Some(subscriber) = state.subscribers.lock().unwrap().get(&id).cloned() else {
        return web_error(StatusCode::NOT_FOUND);
    };
    let plaintext = match decrypt_aes128gcm(&body, &subscriber.secret, &subscriber.auth) {
        Ok(p) => p,
        Err(e) => return s.violation(format!("cannot decrypt: {e}")),
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&plaintext) else {
        return s.violation("plaintext is not JSON".into());
    };
    s.record(Delivery {
        token: id.clone(),
        notification_id: payload["notification_id"].as_i64(),
        title: payload["title"].as_str().unwrap_or_default().to_owned(),
        body: payload["body"].as_str().unwrap_or_default().to_owned(),
        collapse_key: topic,
        high_priority: urgency.as_deref() == Some("high"),
        payload,
        ttl_secs: Some(ttl),
        received_at: Instant::now(),
    });
    let mut r = StatusCode::CREATED.into_response();
    r.headers_mut().insert("location", format!("/message/{}", uuid::Uuid::new_v4()).parse().unwrap());
    r
}

/// HKDF-SHA-256 with `ring`.
fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, String> {
    struct Len(usize);
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).map_err(|_| "hkdf expand".to_owned())?;
    let mut out = vec![0; len];
    okm.fill(&mut out).map_err(|_| "hkdf fill".to_owned())?;
    Ok(out)
}

/// Decrypts an `aes128gcm` Web Push message (RFC 8291 over RFC 8188) for
/// the subscriber holding `ua_secret` and `auth_secret`. Written for tests,
/// independently of the sender's implementation.
pub fn decrypt_aes128gcm(message: &[u8], ua_secret: &p256::SecretKey, auth_secret: &[u8]) -> Result<Vec<u8>, String> {
    use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    // RFC 8188 2.1: salt (16) | rs (4) | idlen (1) | keyid (idlen) | records.
    if message.len() < 21 {
        return Err("header too short".into());
    }
    let salt = &message[..16];
    let rs = u32::from_be_bytes([message[16], message[17], message[18], message[19]]) as usize;
    let idlen = message[20] as usize;
    if rs < 18 || message.len() < 21 + idlen {
        return Err(format!("bad header: rs {rs}, idlen {idlen}"));
    }
    let keyid = &message[21..21 + idlen];
    let records = &message[21 + idlen..];
    // RFC 8291 3.1: the key id is the application server's public key.
    let as_public = p256::PublicKey::from_sec1_bytes(keyid).map_err(|_| "keyid is not a P-256 point".to_owned())?;
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let ua_public = ua_secret.public_key().to_encoded_point(false);
    // RFC 8291 3.3/3.4: IKM from the ECDH secret, keyed by the auth secret.
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(keyid);
    let ikm = hkdf(auth_secret, shared.raw_secret_bytes(), &key_info, 32)?;
    // RFC 8188 2.2/2.3: content encryption key and nonce.
    let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16)?;
    let nonce_base = hkdf(salt, &ikm, b"Content-Encoding: nonce\0", 12)?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| "cek".to_owned())?);
    let chunks: Vec<&[u8]> = records.chunks(rs).collect();
    let mut plaintext = Vec::new();
    for (seq, chunk) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&nonce_base);
        for (i, b) in (seq as u64).to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let mut buf = chunk.to_vec();
        let opened = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| format!("record {seq} does not authenticate"))?;
        // Strip padding: zeros after the delimiter (2 = last record, 1 = more).
        let end = opened.iter().rposition(|b| *b != 0).ok_or("record without delimiter")?;
        let last = seq + 1 == chunks.len();
        match (opened[end], last) {
            (2, true) | (1, false) => plaintext.extend_from_slice(&opened[..end]),
            (d, _) => return Err(format!("record {seq}: delimiter {d}, last {last}")),
        }
    }
    Ok(plaintext)
}
