use chrono::TimeDelta;
use palaver_core::call::{CallStatus, CallType};
use palaver_core::time::now;
use palaver_store::{
    AcceptOutcome, CallQualityReport, CallRecord, FinishOutcome, NewCall, NewCallOutcome, PageRequest, RelationOp,
    Store,
};

use crate::{conformance, user};

fn new_call(caller: i64, receiver: i64, reachable: bool) -> NewCall {
    let at = now();
    NewCall {
        caller_id: caller,
        receiver_id: receiver,
        call_type: CallType::Voice,
        is_match: false,
        reachable,
        ring_deadline: at + TimeDelta::seconds(30),
        now: at,
    }
}

async fn place(store: &dyn Store, call: NewCall) -> CallRecord {
    match store.create_call(&call).await.unwrap() {
        NewCallOutcome::Created(record) => record,
        other => panic!("call not created: {other:?}"),
    }
}

async fn accept(store: &dyn Store, id: i64, conn: &str) -> AcceptOutcome {
    let at = now();
    store.accept_call(id, Some(conn), at + TimeDelta::seconds(20), at).await.unwrap()
}

conformance! {
    async fn ring_accept_end_with_duration(store) {
        let ana = user(&*store, "call-ana@example.org").await;
        let bob = user(&*store, "call-bob@example.org").await;
        let call = place(&*store, new_call(ana.id, bob.id, true)).await;
        assert_eq!(call.status, CallStatus::Ringing);
        assert_eq!(call.caller.display_name, "call-ana");
        assert_eq!(call.receiver.id, bob.id);
        assert!(call.ringing_at.is_some() && call.ring_deadline.is_some());
        assert_eq!(store.call_by_id(call.id).await.unwrap().unwrap(), call, "reads back as written");

        let AcceptOutcome::Accepted(active) = accept(&*store, call.id, "dev-1").await else { panic!("not accepted") };
        assert_eq!(active.status, CallStatus::Active);
        assert_eq!(active.receiver_connection.as_deref(), Some("dev-1"));
        assert!(active.ring_deadline.is_none() && active.media_deadline.is_some());
        // A second accept (another device) loses and changes nothing.
        let AcceptOutcome::NotRinging(again) = accept(&*store, call.id, "dev-2").await else { panic!("accepted twice") };
        assert_eq!(again.receiver_connection.as_deref(), Some("dev-1"));

        assert!(store.mark_media_connected(call.id, now()).await.unwrap());
        assert!(!store.mark_media_connected(call.id, now()).await.unwrap(), "only once");

        let end_at = active.accepted_at.unwrap() + TimeDelta::seconds(75);
        let FinishOutcome::Changed(ended) =
            store.finish_call(call.id, &[CallStatus::Active], CallStatus::Ended, "hangup", end_at).await.unwrap()
        else {
            panic!("not ended")
        };
        assert_eq!((ended.status, ended.duration), (CallStatus::Ended, 75));
        assert_eq!(ended.end_reason.as_deref(), Some("hangup"));
        let FinishOutcome::Unchanged(same) =
            store.finish_call(call.id, &[CallStatus::Active], CallStatus::Ended, "hangup", now()).await.unwrap()
        else {
            panic!("ended twice")
        };
        assert_eq!(same, ended);
    }
}

conformance! {
    async fn unreachable_is_missed_and_busy_receiver_is_busy(store) {
        let ana = user(&*store, "mb-ana@example.org").await;
        let bob = user(&*store, "mb-bob@example.org").await;
        let cat = user(&*store, "mb-cat@example.org").await;
        let missed = place(&*store, new_call(ana.id, bob.id, false)).await;
        assert_eq!(missed.status, CallStatus::Missed);
        assert_eq!(missed.end_reason.as_deref(), Some("unreachable"));
        assert!(missed.ended_at.is_some() && missed.ring_deadline.is_none());

        let dan = user(&*store, "mb-dan@example.org").await;
        // Cat rings Ana; then Ana calls Bob, who answers.
        let waiting = place(&*store, new_call(cat.id, ana.id, true)).await;
        assert_eq!(waiting.status, CallStatus::Ringing);
        let call = place(&*store, new_call(ana.id, bob.id, true)).await;
        assert_eq!(call.status, CallStatus::Ringing, "an incoming ringing call does not stop an outgoing one");
        assert!(matches!(accept(&*store, call.id, "b").await, AcceptOutcome::Accepted(_)));
        // Ana, talking, cannot take Cat's call; it keeps ringing.
        assert_eq!(accept(&*store, waiting.id, "a").await, AcceptOutcome::PartyInCall);
        assert_eq!(store.call_by_id(waiting.id).await.unwrap().unwrap().status, CallStatus::Ringing);
        // Dan calls Bob, who is talking to Ana.
        let busy = place(&*store, new_call(dan.id, bob.id, true)).await;
        assert_eq!((busy.status, busy.end_reason.as_deref()), (CallStatus::Busy, Some("busy")));
        // Ana, in a call, cannot place another; nothing is stored.
        assert_eq!(store.create_call(&new_call(ana.id, dan.id, true)).await.unwrap(), NewCallOutcome::PartyInCall);
        // Cat, whose call rings, cannot place a second.
        assert_eq!(store.create_call(&new_call(cat.id, dan.id, true)).await.unwrap(), NewCallOutcome::PartyInCall);
        assert_eq!(store.live_call_of(bob.id).await.unwrap().map(|c| c.id), Some(call.id));
        assert_eq!(store.live_call_of(dan.id).await.unwrap(), None);
    }
}

conformance! {
    async fn matches_refuse_parties_in_live_calls(store) {
        let ana = user(&*store, "mm-ana@example.org").await;
        let bob = user(&*store, "mm-bob@example.org").await;
        let cat = user(&*store, "mm-cat@example.org").await;
        place(&*store, new_call(ana.id, bob.id, true)).await;
        let mut m = new_call(cat.id, bob.id, true);
        m.is_match = true;
        assert_eq!(store.create_call(&m).await.unwrap(), NewCallOutcome::PartyInCall, "bob's phone is ringing");
        let mut m = new_call(cat.id, ana.id, true);
        m.is_match = true;
        assert_eq!(store.create_call(&m).await.unwrap(), NewCallOutcome::PartyInCall);
        let dan = user(&*store, "mm-dan@example.org").await;
        let mut m = new_call(cat.id, dan.id, true);
        m.is_match = true;
        let matched = place(&*store, m).await;
        assert!(matched.is_match && matched.status == CallStatus::Ringing);
        let since = now() - TimeDelta::hours(24);
        assert_eq!(store.recent_match_partners(dan.id, since).await.unwrap(), vec![cat.id]);
        assert_eq!(store.recent_match_partners(cat.id, since).await.unwrap(), vec![dan.id]);
        assert!(store.recent_match_partners(ana.id, since).await.unwrap().is_empty(), "ordinary calls are no match");
        assert!(store.recent_match_partners(dan.id, now() + TimeDelta::seconds(1)).await.unwrap().is_empty());
    }
}

conformance! {
    async fn concurrent_accepts_one_wins(store) {
        let ana = user(&*store, "ca-ana@example.org").await;
        let bob = user(&*store, "ca-bob@example.org").await;
        for _ in 0..5 {
            let call = place(&*store, new_call(ana.id, bob.id, true)).await;
            let (a, b) = tokio::join!(accept(&*store, call.id, "one"), accept(&*store, call.id, "two"));
            let winners = [&a, &b].iter().filter(|o| matches!(o, AcceptOutcome::Accepted(_))).count();
            assert_eq!(winners, 1, "{a:?} {b:?}");
            store.finish_call(call.id, &[CallStatus::Active], CallStatus::Ended, "hangup", now()).await.unwrap();
        }
    }
}

conformance! {
    async fn deadlines_move_calls_once(store) {
        let ana = user(&*store, "dl-ana@example.org").await;
        let bob = user(&*store, "dl-bob@example.org").await;
        let cat = user(&*store, "dl-cat@example.org").await;
        let ringing = place(&*store, new_call(ana.id, bob.id, true)).await;
        let talking = place(&*store, new_call(cat.id, ana.id, true)).await;
        // Ana, ringing Bob, takes a call from Cat.
        assert!(matches!(accept(&*store, talking.id, "a").await, AcceptOutcome::Accepted(_)));
        assert!(store.expire_due_calls(now(), 100).await.unwrap().is_empty(), "nothing is due yet");

        let later = now() + TimeDelta::seconds(31);
        let (first, second) = tokio::join!(store.expire_due_calls(later, 100), store.expire_due_calls(later, 100));
        let mut moved: Vec<(i64, CallStatus)> =
            first.unwrap().into_iter().chain(second.unwrap()).map(|c| (c.id, c.status)).collect();
        moved.sort_by_key(|(id, _)| *id);
        assert_eq!(moved, vec![(ringing.id, CallStatus::Missed), (talking.id, CallStatus::Failed)], "each once");
        let missed = store.call_by_id(ringing.id).await.unwrap().unwrap();
        assert_eq!(missed.end_reason.as_deref(), Some("no_answer"));
        let failed = store.call_by_id(talking.id).await.unwrap().unwrap();
        assert_eq!((failed.end_reason.as_deref(), failed.duration), (Some("media_timeout"), 0));

        // Media that connected in time keeps the call.
        let ok = place(&*store, new_call(ana.id, cat.id, true)).await;
        accept(&*store, ok.id, "c").await;
        store.mark_media_connected(ok.id, now()).await.unwrap();
        assert!(store.expire_due_calls(now() + TimeDelta::seconds(60), 100).await.unwrap().is_empty());
    }
}

conformance! {
    async fn history_quality_and_bindings(store) {
        let ana = user(&*store, "hq-ana@example.org").await;
        let bob = user(&*store, "hq-bob@example.org").await;
        let cat = user(&*store, "hq-cat@example.org").await;
        let mut ids = Vec::new();
        for (caller, receiver) in [(ana.id, bob.id), (bob.id, ana.id), (cat.id, bob.id), (ana.id, cat.id)] {
            let call = place(&*store, new_call(caller, receiver, false)).await;
            ids.push(call.id);
        }
        let page = |cursor| PageRequest { cursor, limit: 2 };
        let first: Vec<i64> = store.call_history(ana.id, page(None)).await.unwrap().iter().map(|c| c.id).collect();
        assert_eq!(first, vec![ids[3], ids[1]]);
        let second: Vec<i64> =
            store.call_history(ana.id, page(Some(ids[1]))).await.unwrap().iter().map(|c| c.id).collect();
        assert_eq!(second, vec![ids[0]]);

        let call = place(&*store, new_call(ana.id, bob.id, true)).await;
        assert_eq!(store.bind_call_connection(call.id, true, "ana-1").await.unwrap().as_deref(), Some("ana-1"));
        assert_eq!(store.bind_call_connection(call.id, true, "ana-2").await.unwrap().as_deref(), Some("ana-1"));
        assert_eq!(store.bind_call_connection(call.id + 1000, true, "x").await.unwrap(), None);

        for (user_id, rtt) in [(ana.id, 40.0), (ana.id, 55.5), (bob.id, 60.0)] {
            let report = CallQualityReport {
                user_id,
                rtt_ms: Some(rtt),
                jitter_ms: Some(3.0),
                packet_loss: Some(0.01),
                audio_level: None,
                codec: Some("opus".into()),
                created_at: now(),
            };
            store.add_call_quality(call.id, &report).await.unwrap();
        }
        let latest = store.latest_call_quality(&[call.id, ids[0]]).await.unwrap();
        let got: Vec<(i64, Option<f64>)> = latest.iter().map(|q| (q.report.user_id, q.report.rtt_ms)).collect();
        assert_eq!(got, vec![(ana.id, Some(55.5)), (bob.id, Some(60.0))], "the latest of each party");

        store.set_block(bob.id, ana.id, RelationOp::Set, now()).await.unwrap();
        store.set_block(ana.id, cat.id, RelationOp::Set, now()).await.unwrap();
        let mut partners = store.block_partners(ana.id).await.unwrap();
        partners.sort_unstable();
        assert_eq!(partners, vec![bob.id, cat.id], "both directions");
    }
}
