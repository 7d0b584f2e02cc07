use chrono::TimeDelta;
use palaver_core::time::now;
use palaver_store::{NewRefreshToken, RotateOutcome, SessionState};

use crate::{conformance, user};

fn token(hash: &str, ttl_secs: i64) -> NewRefreshToken {
    NewRefreshToken { hash: hash.into(), expires_at: now() + TimeDelta::seconds(ttl_secs) }
}

conformance! {
    async fn refresh_tokens_rotate_and_reuse_revokes_the_family(store) {
        let u = user(&*store, "auth@example.org").await;
        store.create_session("s1", u.id, &token("t1", 3600), now()).await.unwrap();
        let (who, state) = store.session_user(u.id, "s1").await.unwrap().unwrap();
        assert_eq!((who.id, state), (u.id, SessionState::Active));

        let out = store.rotate_refresh_token("t1", &token("t2", 3600), now()).await.unwrap();
        assert_eq!(out, RotateOutcome::Rotated { user_id: u.id, session_id: "s1".into() });
        let out = store.rotate_refresh_token("t2", &token("t3", 3600), now()).await.unwrap();
        assert!(matches!(out, RotateOutcome::Rotated { .. }));

        // t1 was spent: presenting it again is theft; the family dies.
        let out = store.rotate_refresh_token("t1", &token("t4", 3600), now()).await.unwrap();
        assert_eq!(out, RotateOutcome::Reused { session_id: "s1".into() });
        assert_eq!(store.session_user(u.id, "s1").await.unwrap().unwrap().1, SessionState::Revoked);
        // ...including the newest token, which was never spent.
        let out = store.rotate_refresh_token("t3", &token("t5", 3600), now()).await.unwrap();
        assert_eq!(out, RotateOutcome::Invalid);
        // t4 was never stored.
        assert_eq!(store.rotate_refresh_token("t4", &token("t6", 3600), now()).await.unwrap(), RotateOutcome::Invalid);
    }
}

conformance! {
    async fn unknown_and_expired_tokens_are_invalid(store) {
        let u = user(&*store, "exp@example.org").await;
        assert_eq!(store.rotate_refresh_token("nope", &token("n2", 60), now()).await.unwrap(), RotateOutcome::Invalid);
        store.create_session("s-exp", u.id, &token("old", -1), now()).await.unwrap();
        assert_eq!(store.rotate_refresh_token("old", &token("o2", 60), now()).await.unwrap(), RotateOutcome::Invalid);
        // An expired token is not "spent": the session stays usable otherwise.
        assert_eq!(store.session_user(u.id, "s-exp").await.unwrap().unwrap().1, SessionState::Active);
    }
}

conformance! {
    async fn revoking_sessions(store) {
        let u = user(&*store, "rev@example.org").await;
        store.create_session("a", u.id, &token("ta", 60), now()).await.unwrap();
        store.create_session("b", u.id, &token("tb", 60), now()).await.unwrap();
        store.create_session("c", u.id, &token("tc", 60), now()).await.unwrap();
        assert!(store.revoke_session("a", "logout", now()).await.unwrap());
        assert!(!store.revoke_session("a", "logout", now()).await.unwrap(), "second revoke is a no-op");
        assert!(!store.revoke_session("zzz", "logout", now()).await.unwrap());
        assert_eq!(store.rotate_refresh_token("ta", &token("ta2", 60), now()).await.unwrap(), RotateOutcome::Invalid);
        assert_eq!(store.revoke_user_sessions(u.id, "suspended", now()).await.unwrap(), 2);
        for s in ["a", "b", "c"] {
            assert_eq!(store.session_user(u.id, s).await.unwrap().unwrap().1, SessionState::Revoked);
        }
        let other = user(&*store, "other@example.org").await;
        assert!(store.session_user(other.id, "b").await.unwrap().is_none(), "a session belongs to its user only");
    }
}

conformance! {
    async fn concurrent_refresh_with_one_token_has_one_winner(store) {
        let u = user(&*store, "race@example.org").await;
        store.create_session("race", u.id, &token("r0", 600), now()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.rotate_refresh_token("r0", &token(&format!("r1-{i}"), 600), now()).await.unwrap()
            }));
        }
        let mut rotated = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), RotateOutcome::Rotated { .. }) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1, "exactly one concurrent presenter wins");
    }
}
