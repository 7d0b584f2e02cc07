//! Each provider against its stand-in: strict request checks, and the
//! service's real error codes classified.

use std::time::Duration;

use palaver_core::notification::{DeviceType, NotificationType};
use palaver_push::providers::{Apns, Fcm, VapidKey, WebPush, WebPushConfig, http_client};
use palaver_push::testing::{ApnsStandIn, Failure, FcmStandIn, WebPushStandIn};
use palaver_push::{PushProvider, SendOutcome};
use palaver_store::{OutboxItem, PushPayload};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(10);

fn payload(id: i64, high: bool) -> PushPayload {
    PushPayload {
        notification_id: Some(id),
        notification_type: NotificationType::Like,
        title: format!("title {id}"),
        body: "Ana and 3 others liked your moment".into(),
        data: json!({"kind": "like_moment", "moment_id": 42}),
        badge: Some(3),
        high_priority: high,
        ttl_secs: 600,
        event_at: palaver_core::time::now(),
    }
}

fn item(token: &str, device: DeviceType, collapse: Option<&str>) -> OutboxItem {
    OutboxItem {
        id: 1,
        push_token_id: 1,
        token: token.into(),
        device_type: device,
        web_push: None,
        payload: None,
        collapse_key: collapse.map(str::to_owned),
        attempts: 1,
        created_at: palaver_core::time::now(),
        expires_at: None,
    }
}

fn apns_token(n: u8) -> String {
    format!("{:064x}", u128::from(n) * 0x1234_5678_9abc_def1)
}

#[tokio::test]
async fn fcm_sends_with_one_cached_oauth_token() {
    let fcm_stand_in = FcmStandIn::start().await;
    let fcm = Fcm::new(fcm_stand_in.config(), http_client(TIMEOUT).unwrap()).unwrap();
    for i in 0..3 {
        let outcome = fcm
            .send(&item(&format!("fcm-token-{i}"), DeviceType::Android, Some("like:moment:42")), &payload(i, i == 0))
            .await;
        assert_eq!(outcome, SendOutcome::Delivered);
    }
    assert_eq!(fcm_stand_in.token_grants(), 1, "the access token is cached");
    let got = fcm_stand_in.stand_in.deliveries();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].token, "fcm-token-0");
    assert_eq!(got[0].notification_id, Some(0));
    assert_eq!(got[0].body, "Ana and 3 others liked your moment");
    assert!(got[0].high_priority);
    assert!(!got[1].high_priority);
    assert_eq!(got[1].collapse_key.as_deref(), Some("like:moment:42"));
    assert_eq!(got[1].ttl_secs, Some(600));
    assert_eq!(got[1].payload["data"]["moment_id"], "42", "data values are strings");
    assert!(fcm_stand_in.stand_in.violations().is_empty(), "{:?}", fcm_stand_in.stand_in.violations());
}

#[tokio::test]
async fn fcm_fetches_a_new_token_when_the_old_one_is_refused() {
    let fcm_stand_in = FcmStandIn::start().await;
    let fcm = Fcm::new(fcm_stand_in.config(), http_client(TIMEOUT).unwrap()).unwrap();
    assert_eq!(fcm.send(&item("t", DeviceType::Android, None), &payload(1, false)).await, SendOutcome::Delivered);
    fcm_stand_in.revoke_tokens();
    let refused = fcm.send(&item("t", DeviceType::Android, None), &payload(2, false)).await;
    assert!(matches!(refused, SendOutcome::Retry { .. }), "{refused:?}");
    assert_eq!(fcm.send(&item("t", DeviceType::Android, None), &payload(3, false)).await, SendOutcome::Delivered);
    assert_eq!(fcm_stand_in.token_grants(), 2);
    assert!(fcm_stand_in.stand_in.violations().is_empty());
}

#[tokio::test]
async fn fcm_error_codes_are_classified() {
    let fcm_stand_in = FcmStandIn::start().await;
    let fcm = Fcm::new(fcm_stand_in.config(), http_client(TIMEOUT).unwrap()).unwrap();
    fcm_stand_in.stand_in.kill_token("gone");
    fcm_stand_in.mismatch_token("foreign");
    let gone = fcm.send(&item("gone", DeviceType::Android, None), &payload(1, false)).await;
    assert!(matches!(&gone, SendOutcome::InvalidToken { reason } if reason.contains("UNREGISTERED")), "{gone:?}");
    let foreign = fcm.send(&item("foreign", DeviceType::Android, None), &payload(1, false)).await;
    assert!(matches!(&foreign, SendOutcome::InvalidToken { reason } if reason.contains("SENDER_ID_MISMATCH")));

    fcm_stand_in.stand_in.fail_next(Failure::TooManyRequests(7));
    let limited = fcm.send(&item("t", DeviceType::Android, None), &payload(1, false)).await;
    assert!(matches!(limited, SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(7)), "{limited:?}");
    fcm_stand_in.stand_in.fail_next(Failure::Internal);
    assert!(matches!(
        fcm.send(&item("t", DeviceType::Android, None), &payload(1, false)).await,
        SendOutcome::Retry { .. }
    ));
    fcm_stand_in.stand_in.set_down(true);
    assert!(matches!(
        fcm.send(&item("t", DeviceType::Android, None), &payload(1, false)).await,
        SendOutcome::Retry { .. }
    ));
    fcm_stand_in.stand_in.set_down(false);
    assert_eq!(fcm.send(&item("t", DeviceType::Android, None), &payload(1, false)).await, SendOutcome::Delivered);
    assert!(fcm_stand_in.stand_in.violations().is_empty());
}

#[tokio::test]
async fn apns_sends_over_http2_reusing_its_provider_token() {
    let apns_stand_in = ApnsStandIn::start().await;
    let apns = Apns::new(apns_stand_in.config(), Apns::client(TIMEOUT).unwrap()).unwrap();
    for i in 0..3 {
        let outcome =
            apns.send(&item(&apns_token(i), DeviceType::Ios, Some("message:room:7")), &payload(i.into(), i == 1)).await;
        assert_eq!(outcome, SendOutcome::Delivered);
    }
    assert_eq!(apns_stand_in.distinct_jwts(), 1, "one provider token for all sends");
    let got = apns_stand_in.stand_in.deliveries();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].title, "title 1");
    assert!(got[1].high_priority && !got[0].high_priority);
    assert_eq!(got[0].collapse_key.as_deref(), Some("message:room:7"));
    assert_eq!(got[0].payload["aps"]["badge"], 3);
    assert!(got[0].ttl_secs.is_some_and(|t| (590..=600).contains(&t)), "{:?}", got[0].ttl_secs);
    assert!(apns_stand_in.stand_in.violations().is_empty(), "{:?}", apns_stand_in.stand_in.violations());

    apns_stand_in.stand_in.kill_token(&apns_token(9));
    let gone = apns.send(&item(&apns_token(9), DeviceType::Ios, None), &payload(1, false)).await;
    assert!(matches!(&gone, SendOutcome::InvalidToken { reason } if reason.contains("410")), "{gone:?}");
    let bad = apns.send(&item(&"ab".repeat(10), DeviceType::Ios, None), &payload(1, false)).await;
    assert!(matches!(&bad, SendOutcome::InvalidToken { reason } if reason.contains("BadDeviceToken")), "{bad:?}");
    apns_stand_in.stand_in.fail_next(Failure::TooManyRequests(3));
    let limited = apns.send(&item(&apns_token(1), DeviceType::Ios, None), &payload(1, false)).await;
    assert!(matches!(limited, SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)));
    apns_stand_in.stand_in.set_down(true);
    let down = apns.send(&item(&apns_token(1), DeviceType::Ios, None), &payload(1, false)).await;
    assert!(matches!(down, SendOutcome::Retry { .. }));
}

#[tokio::test]
async fn web_push_payload_decrypts_with_an_independent_implementation() {
    let vapid = VapidKey::from_secret(p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng));
    let web_stand_in = WebPushStandIn::start(&vapid).await;
    let web = WebPush::new(
        WebPushConfig { vapid: vapid.clone(), subject: "mailto:ops@palaver.example".into() },
        http_client(TIMEOUT).unwrap(),
    )
    .unwrap();
    let subscription = web_stand_in.subscribe();
    let mut push = item(&subscription.endpoint, DeviceType::Web, Some("like:moment:42"));
    push.web_push = Some(subscription.clone());
    assert_eq!(web.send(&push, &payload(5, true)).await, SendOutcome::Delivered);
    let got = web_stand_in.stand_in.deliveries();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload["title"], "title 5", "decrypted: {}", got[0].payload);
    assert_eq!(got[0].payload["body"], "Ana and 3 others liked your moment");
    assert_eq!(got[0].payload["data"]["moment_id"], 42);
    assert_eq!(got[0].notification_id, Some(5));
    assert!(got[0].high_priority, "Urgency: high");
    assert_eq!(got[0].ttl_secs, Some(600));
    assert_eq!(got[0].collapse_key.as_ref().map(String::len), Some(32), "Topic header");
    assert!(web_stand_in.stand_in.violations().is_empty(), "{:?}", web_stand_in.stand_in.violations());

    // Gone and unknown subscriptions are pruned; overload is retried.
    let id = subscription.endpoint.rsplit('/').next().unwrap();
    web_stand_in.stand_in.fail_next(Failure::TooManyRequests(2));
    let limited = web.send(&push, &payload(6, false)).await;
    assert!(matches!(limited, SendOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)));
    web_stand_in.stand_in.kill_token(id);
    assert!(matches!(web.send(&push, &payload(7, false)).await, SendOutcome::InvalidToken { .. }));
    let mut unknown = push.clone();
    let mut sub = subscription.clone();
    sub.endpoint = format!("http://{}/push/unknown", web_stand_in.addr);
    unknown.web_push = Some(sub);
    assert!(matches!(web.send(&unknown, &payload(8, false)).await, SendOutcome::InvalidToken { .. }));
}

#[tokio::test]
async fn web_push_signed_with_another_key_is_refused() {
    let vapid = VapidKey::from_secret(p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng));
    let other = VapidKey::from_secret(p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng));
    let web_stand_in = WebPushStandIn::start(&vapid).await;
    let web = WebPush::new(
        WebPushConfig { vapid: other, subject: "mailto:x@example.org".into() },
        http_client(TIMEOUT).unwrap(),
    )
    .unwrap();
    let subscription = web_stand_in.subscribe();
    let mut push = item(&subscription.endpoint, DeviceType::Web, None);
    push.web_push = Some(subscription);
    let outcome = web.send(&push, &payload(1, false)).await;
    assert!(matches!(&outcome, SendOutcome::Rejected { reason } if reason.contains("403")), "{outcome:?}");
    assert!(web_stand_in.stand_in.deliveries().is_empty());
}
