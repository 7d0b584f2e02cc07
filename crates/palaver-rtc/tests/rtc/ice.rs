//! TURN credentials, checked against an HMAC computed independently (ring).

use std::time::Duration;

use base64::Engine as _;
use palaver_rtc::IceSettings;
use secrecy::SecretString;

#[test]
fn turn_credentials_follow_the_coturn_rest_scheme() {
    let settings = IceSettings {
        stun_urls: vec!["stun:stun.palaver.example:3478".into()],
        turn_urls: vec![
            "turn:turn.palaver.example:3478?transport=udp".into(),
            "turns:turn.palaver.example:5349".into(),
        ],
        turn_secret: Some(SecretString::from("north-wind-shared-secret".to_owned())),
        turn_ttl: Duration::from_secs(3600),
    };
    let now = palaver_core::time::now();
    let config = settings.for_user(42, now);
    assert_eq!(config.ttl, 3600);
    assert_eq!(config.ice_servers.len(), 2);
    let stun = &config.ice_servers[0];
    assert_eq!(stun.urls, vec!["stun:stun.palaver.example:3478"]);
    assert!(stun.username.is_none() && stun.credential.is_none());

    let turn = &config.ice_servers[1];
    assert_eq!(turn.urls.len(), 2);
    let username = turn.username.as_deref().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "42");
    assert_eq!(expiry.parse::<i64>().unwrap(), now.timestamp() + 3600);

    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north-wind-shared-secret");
    let expected = base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, username.as_bytes()));
    assert_eq!(turn.credential.as_deref(), Some(expected.as_str()));

    // A known vector: HMAC-SHA1("secret", "1700000000:7").
    let (u, p) = palaver_rtc::ice::turn_credential("secret", 7, 1_700_000_000);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"secret");
    assert_eq!(u, "1700000000:7");
    assert_eq!(p, base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, b"1700000000:7")));
}

#[test]
fn no_secret_no_turn() {
    let settings = IceSettings {
        stun_urls: vec![],
        turn_urls: vec!["turn:turn.palaver.example".into()],
        turn_secret: None,
        turn_ttl: Duration::from_secs(60),
    };
    assert!(settings.for_user(1, palaver_core::time::now()).ice_servers.is_empty());
}
