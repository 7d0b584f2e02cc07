use palaver_core::time::now;
use palaver_core::user::{LearningLanguage, Level, ProfilePatch, Role};
use palaver_store::StoreError;

use crate::{conformance, user};

conformance! {
    async fn create_and_read_back(store) {
        let created = user(&*store, "ana@example.org").await;
        assert_eq!(created.email, "ana@example.org");
        assert_eq!(created.role, Role::User);
        assert_eq!(created.native_languages, vec!["es"]);
        assert!(!created.is_suspended);

        let read = store.user_by_id(created.id).await.unwrap().unwrap();
        assert_eq!(read, created, "a row reads back exactly as written");

        let (by_email, hash) = store.credentials_by_email("ana@example.org").await.unwrap().unwrap();
        assert_eq!(by_email.id, created.id);
        assert_eq!(hash, "$argon2id$not-a-real-hash");

        assert!(store.user_by_id(created.id + 1000).await.unwrap().is_none());
        assert!(store.credentials_by_email("nobody@example.org").await.unwrap().is_none());
    }
}

conformance! {
    async fn duplicate_email_is_a_conflict(store) {
        user(&*store, "dup@example.org").await;
        let err = store
            .create_user(&palaver_store::NewUserRecord {
                email: "dup@example.org".into(),
                password_hash: "x".into(),
                display_name: "Dup".into(),
                native_languages: vec![],
                learning_languages: vec![],
                role: Role::User,
                now: now(),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    }
}

conformance! {
    async fn profile_patch_changes_only_given_fields(store) {
        let ana = user(&*store, "patch@example.org").await;
        let later = now();
        let patched = store
            .update_profile(
                ana.id,
                &ProfilePatch {
                    bio: Some("Hola".into()),
                    learning_languages: Some(vec![LearningLanguage { code: "fr".into(), level: Level::Beginner }]),
                    avatar: Some(Some("https://cdn.example.org/a.png".into())),
                    ..Default::default()
                },
                later,
            )
            .await
            .unwrap();
        assert_eq!(patched.bio, "Hola");
        assert_eq!(patched.display_name, ana.display_name);
        assert_eq!(patched.native_languages, ana.native_languages);
        assert_eq!(patched.learning_languages[0].code, "fr");
        assert_eq!(patched.avatar.as_deref(), Some("https://cdn.example.org/a.png"));
        assert_eq!(patched.updated_at, later);

        let cleared = store
            .update_profile(ana.id, &ProfilePatch { avatar: Some(None), ..Default::default() }, now())
            .await
            .unwrap();
        assert_eq!(cleared.avatar, None);
        assert_eq!(cleared.bio, "Hola");

        let missing = store.update_profile(ana.id + 999, &ProfilePatch::default(), now()).await;
        assert!(matches!(missing, Err(StoreError::NotFound)));
    }
}

conformance! {
    async fn role_suspension_password_and_last_seen(store) {
        let u = user(&*store, "mod@example.org").await;
        assert_eq!(store.set_role(u.id, Role::Moderator, now()).await.unwrap().role, Role::Moderator);
        assert!(store.set_suspended(u.id, true, now()).await.unwrap().is_suspended);
        assert!(!store.set_suspended(u.id, false, now()).await.unwrap().is_suspended);
        store.set_password_hash(u.id, "new-hash", now()).await.unwrap();
        let (_, hash) = store.credentials_by_email("mod@example.org").await.unwrap().unwrap();
        assert_eq!(hash, "new-hash");
        assert!(matches!(store.set_password_hash(u.id + 99, "h", now()).await, Err(StoreError::NotFound)));
        let seen = now();
        store.touch_last_seen(u.id, seen).await.unwrap();
        assert_eq!(store.user_by_id(u.id).await.unwrap().unwrap().last_seen_at, Some(seen));
    }
}

conformance! {
    async fn profile_of_another_user(store) {
        let a = user(&*store, "a@example.org").await;
        let b = user(&*store, "b@example.org").await;
        let p = store.profile(a.id, b.id).await.unwrap().unwrap();
        assert_eq!(p.user.id, b.id);
        assert_eq!((p.followers_count, p.following_count, p.moments_count), (0, 0, 0));
        assert!(!p.is_following && !p.follows_you && !p.is_blocked && !p.blocked_you);
        assert!(store.profile(a.id, b.id + 99).await.unwrap().is_none());
    }
}
