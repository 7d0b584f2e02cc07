//! The call service: every transition, every refusal, timeouts, signaling.

use std::time::Duration;

use palaver_core::Error;
use palaver_core::call::{CallStatus, CallType};
use palaver_core::user::Role;
use palaver_rtc::{QualityInput, SignalTarget};
use palaver_service::DomainEvent;
use palaver_store::{PageRequest, RelationOp};
use serde_json::json;

use crate::{both_stores, drain, wait_for};

fn is<T: std::fmt::Debug>(result: Result<T, Error>, code: &str) {
    match result {
        Err(e) => assert_eq!(e.code(), code, "{e}"),
        Ok(v) => panic!("expected {code}, got {v:?}"),
    }
}

both_stores! {
    async fn ring_accept_hang_up_broadcasts_every_state(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let mut rx = h.realtime.subscribe();
        let mut events = h.events.subscribe();

        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        assert_eq!(call.status, CallStatus::Ringing);
        assert_eq!(call.media.opus.useinbandfec, 1, "the call carries the audio policy");
        let incoming = wait_for(&mut rx, "call_incoming", |p| p.event_type == "call_incoming").await;
        assert_eq!(incoming.topic, format!("user:{}", bob.id()));
        assert_eq!(incoming.data["id"], call.id);
        assert_eq!(incoming.data["caller"]["display_name"], "ana");
        assert!(matches!(events.recv().await.unwrap(), DomainEvent::CallIncoming { call_id, .. } if call_id == call.id));

        let states = |rx: &mut _| -> Vec<(String, String)> {
            drain(rx)
                .into_iter()
                .filter(|p| p.event_type == "call_state")
                .map(|p| (p.topic, p.data["status"].as_str().unwrap().to_owned()))
                .collect()
        };
        let mut rx = h.realtime.subscribe();
        let active = h.calls.accept(&bob, call.id, Some("bob-phone")).await.unwrap();
        assert_eq!(active.status, CallStatus::Active);
        let topics = |status: &str| {
            vec![
                (format!("user:{}", ana.id()), status.to_owned()),
                (format!("user:{}", bob.id()), status.to_owned()),
                (format!("call:{}", call.id), status.to_owned()),
            ]
        };
        assert_eq!(states(&mut rx), topics("active"), "both parties and the call topic");

        h.clock.advance(Duration::from_secs(95));
        let ended = h.calls.end(&ana, call.id).await.unwrap();
        assert_eq!((ended.status, ended.duration), (CallStatus::Ended, 95), "duration from accept to end");
        assert_eq!(ended.end_reason.as_deref(), Some("hangup"));
        assert_eq!(states(&mut rx), topics("ended"));

        let history = h.calls.history(&bob, PageRequest { cursor: None, limit: 20 }).await.unwrap();
        assert_eq!(history.items.len(), 1);
        assert_eq!(history.items[0].duration, 95);
    }
}

both_stores! {
    async fn forbidden_transitions(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let eve = h.user("eve", Role::User, true).await;
        let call = h.calls.place_call(&ana, bob.id(), CallType::Video).await.unwrap();

        // A third party can do nothing, and learns nothing.
        is(h.calls.accept(&eve, call.id, None).await, "not_found");
        is(h.calls.decline(&eve, call.id).await, "not_found");
        is(h.calls.end(&eve, call.id).await, "not_found");
        is(h.calls.call(&eve, call.id).await, "not_found");
        is(h.calls.relay_signal(&eve, "eve-1", call.id, "offer", json!({})).await, "not_found");
        // The caller cannot accept or decline.
        is(h.calls.accept(&ana, call.id, None).await, "forbidden");
        is(h.calls.decline(&ana, call.id).await, "forbidden");
        // Media before the accept is a conflict.
        is(h.calls.media_connected(&bob, call.id).await, "conflict");

        h.calls.accept(&bob, call.id, Some("bob-1")).await.unwrap();
        is(h.calls.accept(&bob, call.id, Some("bob-2")).await, "conflict");
        is(h.calls.decline(&bob, call.id).await, "conflict");
        h.calls.end(&bob, call.id).await.unwrap();
        // Everything after the end is a conflict.
        is(h.calls.end(&ana, call.id).await, "conflict");
        is(h.calls.accept(&bob, call.id, None).await, "conflict");
        is(h.calls.relay_signal(&ana, "ana-1", call.id, "offer", json!({"sdp": "v=0"})).await, "conflict");
        is(h.calls.relay_signal(&bob, "bob-1", call.id, "ice_candidate", json!({})).await, "conflict");

        // Declining, and cancelling, ringing calls.
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        let declined = h.calls.decline(&bob, call.id).await.unwrap();
        assert_eq!((declined.status, declined.duration), (CallStatus::Declined, 0));
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        let cancelled = h.calls.end(&ana, call.id).await.unwrap();
        assert_eq!((cancelled.status, cancelled.end_reason.as_deref()), (CallStatus::Ended, Some("cancelled")));
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        assert_eq!(h.calls.end(&bob, call.id).await.unwrap().status, CallStatus::Declined, "end while ringing declines");

        // Bad input.
        is(h.calls.place_call(&ana, ana.id(), CallType::Voice).await, "bad_request");
        is(h.calls.place_call(&ana, 987_654_321, CallType::Voice).await, "not_found");
        is(h.calls.accept(&bob, 987_654_321, None).await, "not_found");
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        is(h.calls.accept(&bob, call.id, Some("")).await, "validation_failed");
        is(h.calls.accept(&bob, call.id, Some("has space")).await, "validation_failed");
        assert_eq!(h.calls.call(&bob, call.id).await.unwrap().status, CallStatus::Ringing, "bad input changes nothing");
    }
}

both_stores! {
    async fn double_accept_from_two_devices_one_wins(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        for _ in 0..5 {
            let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
            let (a, b) = tokio::join!(
                h.calls.accept(&bob, call.id, Some("phone")),
                h.calls.accept(&bob, call.id, Some("laptop"))
            );
            let (winner, loser) = match (a, b) {
                (Ok(_), Err(e)) => ("phone", e),
                (Err(e), Ok(_)) => ("laptop", e),
                other => panic!("exactly one accept must win: {other:?}"),
            };
            assert_eq!(loser.code(), "conflict");
            // Signals from Ana now reach only the winning device.
            let delivery = h.calls.relay_signal(&ana, "ana-1", call.id, "offer", json!({"sdp": "v=0"})).await.unwrap();
            assert_eq!(delivery.target, SignalTarget::Device { user: bob.id(), connection: winner.into() });
            // The losing device cannot signal into the call.
            let other = if winner == "phone" { "laptop" } else { "phone" };
            is(h.calls.relay_signal(&bob, other, call.id, "answer", json!({})).await, "forbidden");
            h.calls.end(&ana, call.id).await.unwrap();
        }
    }
}

both_stores! {
    async fn ring_timeout_makes_the_call_missed(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let mut events = h.events.subscribe();
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        assert!(matches!(events.recv().await.unwrap(), DomainEvent::CallIncoming { .. }));

        h.clock.advance(Duration::from_secs(29));
        assert_eq!(h.calls.sweep().await.unwrap(), 0, "not yet");
        let mut rx = h.realtime.subscribe();
        h.clock.advance(Duration::from_secs(2));
        assert_eq!(h.calls.sweep().await.unwrap(), 1);
        assert_eq!(h.calls.sweep().await.unwrap(), 0, "once");
        let state = wait_for(&mut rx, "missed state", |p| p.event_type == "call_state").await;
        assert_eq!(state.data["status"], "missed");
        assert_eq!(state.data["end_reason"], "no_answer");
        let missed = events.recv().await.unwrap();
        assert!(matches!(missed, DomainEvent::CallMissed { call_id, receiver_id, .. }
            if call_id == call.id && receiver_id == bob.id()), "{missed:?}");
        is(h.calls.accept(&bob, call.id, None).await, "conflict");
    }
}

both_stores! {
    async fn media_timeout_fails_and_media_keeps_the_call(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let silent = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        h.calls.accept(&bob, silent.id, None).await.unwrap();
        h.clock.advance(Duration::from_secs(21));
        assert_eq!(h.calls.sweep().await.unwrap(), 1);
        let failed = h.calls.call(&ana, silent.id).await.unwrap();
        assert_eq!((failed.status, failed.end_reason.as_deref(), failed.duration), (CallStatus::Failed, Some("media_timeout"), 0));

        let talking = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        h.calls.accept(&bob, talking.id, None).await.unwrap();
        let connected = h.calls.media_connected(&ana, talking.id).await.unwrap();
        assert!(connected.media_connected_at.is_some());
        h.clock.advance(Duration::from_secs(60));
        assert_eq!(h.calls.sweep().await.unwrap(), 0);
        assert_eq!(h.calls.call(&bob, talking.id).await.unwrap().status, CallStatus::Active);
    }
}

both_stores! {
    async fn offline_receiver_is_missed_at_once_with_a_push(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, false).await;
        let mut events = h.events.subscribe();
        let mut rx = h.realtime.subscribe();
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        assert_eq!((call.status, call.end_reason.as_deref()), (CallStatus::Missed, Some("unreachable")));
        assert!(matches!(events.recv().await.unwrap(), DomainEvent::CallMissed { call_id, .. } if call_id == call.id));
        assert!(drain(&mut rx).iter().all(|p| p.event_type != "call_incoming"), "nothing rings");
    }
}

both_stores! {
    async fn busy_blocked_and_suspended(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let cat = h.user("cat", Role::User, true).await;
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        h.calls.accept(&bob, call.id, Some("b")).await.unwrap();
        let busy = h.calls.place_call(&cat, bob.id(), CallType::Voice).await.unwrap();
        assert_eq!(busy.status, CallStatus::Busy);
        is(h.calls.place_call(&ana, cat.id(), CallType::Voice).await, "conflict");
        h.calls.end(&ana, call.id).await.unwrap();

        // Blocks refuse calls both ways; nothing is stored.
        h.store.set_block(bob.id(), cat.id(), RelationOp::Set, palaver_core::time::now()).await.unwrap();
        is(h.calls.place_call(&cat, bob.id(), CallType::Voice).await, "forbidden");
        is(h.calls.place_call(&bob, cat.id(), CallType::Voice).await, "forbidden");
        let cat_calls = h.calls.history(&cat, PageRequest { cursor: None, limit: 20 }).await.unwrap();
        assert_eq!(cat_calls.items.len(), 1, "only the busy call");

        // Suspended users cannot call, nor be called.
        h.store.set_suspended(cat.id(), true, palaver_core::time::now()).await.unwrap();
        let cat = h.refresh(&cat).await;
        is(h.calls.place_call(&cat, ana.id(), CallType::Voice).await, "account_suspended");
        is(h.calls.place_call(&ana, cat.id(), CallType::Voice).await, "not_found");
    }
}

both_stores! {
    async fn signals_route_to_the_right_devices(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();

        // Before the accept: the offer reaches every device of Bob, and
        // binds the call to Ana's device.
        let offer = h.calls.relay_signal(&ana, "ana-laptop", call.id, "offer", json!({"sdp": "v=0 offer"})).await.unwrap();
        assert_eq!(offer.topic, format!("call:{}", call.id));
        assert_eq!(offer.event_type, "signal");
        assert_eq!(offer.data, json!({"call_id": call.id, "from": ana.id(), "kind": "offer", "payload": {"sdp": "v=0 offer"}}));
        assert_eq!(offer.target, SignalTarget::AllDevices(bob.id()));
        is(h.calls.relay_signal(&ana, "ana-phone", call.id, "ice_candidate", json!({})).await, "forbidden");
        // Bob's devices may all answer while ringing; answers go to Ana's device.
        let cand = h.calls.relay_signal(&bob, "bob-tablet", call.id, "ice_candidate", json!({"candidate": "c"})).await.unwrap();
        assert_eq!(cand.target, SignalTarget::Device { user: ana.id(), connection: "ana-laptop".into() });

        h.calls.accept(&bob, call.id, Some("bob-phone")).await.unwrap();
        let answer = h.calls.relay_signal(&bob, "bob-phone", call.id, "answer", json!({"sdp": "v=0 answer"})).await.unwrap();
        assert_eq!(answer.target, SignalTarget::Device { user: ana.id(), connection: "ana-laptop".into() });
        is(h.calls.relay_signal(&bob, "bob-tablet", call.id, "ice_candidate", json!({})).await, "forbidden");
        let more = h.calls.relay_signal(&ana, "ana-laptop", call.id, "ice_candidate", json!({})).await.unwrap();
        assert_eq!(more.target, SignalTarget::Device { user: bob.id(), connection: "bob-phone".into() });

        // Bad kinds and oversized payloads change nothing.
        is(h.calls.relay_signal(&ana, "ana-laptop", call.id, "sdp", json!({})).await, "validation_failed");
        let big = json!({"sdp": "x".repeat(70_000)});
        is(h.calls.relay_signal(&ana, "ana-laptop", call.id, "offer", big).await, "payload_too_large");
        is(h.calls.relay_signal(&ana, "", call.id, "offer", json!({})).await, "validation_failed");

        // Hang-up is relayed and ends the call.
        h.clock.advance(Duration::from_secs(12));
        let hangup = h.calls.relay_signal(&bob, "bob-phone", call.id, "hangup", json!({})).await.unwrap();
        assert_eq!(hangup.status, CallStatus::Ended);
        assert_eq!(hangup.target, SignalTarget::Device { user: ana.id(), connection: "ana-laptop".into() });
        let ended = h.calls.call(&ana, call.id).await.unwrap();
        assert_eq!((ended.status, ended.duration), (CallStatus::Ended, 12));
    }
}

both_stores! {
    async fn screen_share_is_for_teachers(h) {
        let teacher = h.user("tea", Role::Teacher, true).await;
        let learner = h.user("lea", Role::User, true).await;
        let admin = h.user("adm", Role::Admin, true).await;
        let call = h.calls.place_call(&learner, teacher.id(), CallType::Video).await.unwrap();
        is(h.calls.relay_signal(&teacher, "t", call.id, "screen_share", json!({"action": "start"})).await, "conflict");
        h.calls.accept(&teacher, call.id, Some("t")).await.unwrap();
        is(h.calls.relay_signal(&learner, "l", call.id, "screen_share", json!({"action": "start"})).await, "forbidden");
        is(h.calls.relay_signal(&teacher, "t", call.id, "screen_share", json!({"action": "dance"})).await, "validation_failed");
        let start = h.calls.relay_signal(&teacher, "t", call.id, "screen_share", json!({"action": "start"})).await.unwrap();
        assert_eq!(start.event_type, "screen_share");
        assert_eq!(start.data["active"], true);
        assert_eq!(start.data["from"], teacher.id());
        let stop = h.calls.relay_signal(&teacher, "t", call.id, "screen_share", json!({"action": "stop"})).await.unwrap();
        assert_eq!(stop.data["active"], false);
        h.calls.end(&teacher, call.id).await.unwrap();

        // Admins are not teachers.
        let call = h.calls.place_call(&admin, learner.id(), CallType::Video).await.unwrap();
        h.calls.accept(&learner, call.id, None).await.unwrap();
        is(h.calls.relay_signal(&admin, "a", call.id, "screen_share", json!({"action": "start"})).await, "forbidden");
    }
}

both_stores! {
    async fn quality_reports_are_checked_stored_and_listed(h) {
        let ana = h.user("ana", Role::User, true).await;
        let bob = h.user("bob", Role::User, true).await;
        let eve = h.user("eve", Role::User, true).await;
        let call = h.calls.place_call(&ana, bob.id(), CallType::Voice).await.unwrap();
        let good = QualityInput { rtt_ms: Some(48.0), jitter_ms: Some(4.5), packet_loss: Some(0.02), audio_level: Some(0.3), codec: Some("opus".into()) };
        is(h.calls.report_quality(&ana, call.id, good.clone()).await, "conflict");
        h.calls.accept(&bob, call.id, None).await.unwrap();
        is(h.calls.report_quality(&eve, call.id, good.clone()).await, "not_found");
        for bad in [
            QualityInput { rtt_ms: Some(-1.0), ..Default::default() },
            QualityInput { packet_loss: Some(1.5), ..Default::default() },
            QualityInput { jitter_ms: Some(f64::NAN), ..Default::default() },
            QualityInput { codec: Some("opus; drop table".into()), ..Default::default() },
        ] {
            is(h.calls.report_quality(&ana, call.id, bad).await, "validation_failed");
        }
        let after = h.calls.report_quality(&ana, call.id, good).await.unwrap();
        assert!(after.media_connected_at.is_some(), "a report proves media flows");
        assert_eq!(after.quality.len(), 1);
        assert_eq!(after.quality[0].rtt_ms, Some(48.0));
        h.calls.report_quality(&bob, call.id, QualityInput { rtt_ms: Some(51.0), ..Default::default() }).await.unwrap();
        h.calls.end(&bob, call.id).await.unwrap();
        let history = h.calls.history(&ana, PageRequest { cursor: None, limit: 20 }).await.unwrap();
        let reporters: Vec<i64> = history.items[0].quality.iter().map(|q| q.user_id).collect();
        assert_eq!(reporters.len(), 2);
        assert!(reporters.contains(&ana.id()) && reporters.contains(&bob.id()));
    }
}
