//! The call lifecycle as an explicit state machine: which event moves a call
//! from which status to which, who may cause it, and why it ended.
//!
//! ```text
//! initiated ──ring──────────▶ ringing ──accept (receiver)──▶ active ──end (either)──▶ ended
//!     │ unreachable ▶ missed     │ decline (receiver) ▶ declined   │ media timeout ▶ failed
//!     │ receiver busy ▶ busy     │ end (caller) ▶ ended (cancelled)
//!                                │ end (receiver) ▶ declined
//!                                │ ring timeout ▶ missed
//! ```
//!
//! Every other pair is refused. The store applies each transition as a
//! compare-and-set on the status, so this table decides what may happen and
//! the store makes sure it happens once.

use palaver_core::call::CallStatus;

/// Which side of the call acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// Who placed the call.
    Caller,
    /// Who was called.
    Receiver,
}

/// Something that happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// The receiver has a connected device: ring it.
    Ring,
    /// The receiver has no connected device.
    Unreachable,
    /// The receiver is in an active call.
    ReceiverBusy,
    /// A party accepts.
    Accept(Party),
    /// A party declines.
    Decline(Party),
    /// A party ends (hangs up, or cancels while ringing).
    End(Party),
    /// Nobody answered in time.
    RingTimeout,
    /// Media never connected in time after the accept.
    MediaTimeout,
}

/// Why an event is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This party may never do this (the caller accepting its own call).
    Forbidden(&'static str),
    /// Not in this status (accepting an ended call, or twice).
    WrongState,
}

/// Where an event leads: the new status and, for a final status, the
/// reason recorded with it.
pub fn transition(from: CallStatus, event: CallEvent) -> Result<(CallStatus, Option<&'static str>), Refusal> {
    use CallEvent as E;
    use CallStatus as S;
    match (from, event) {
        (S::Initiated, E::Ring) => Ok((S::Ringing, None)),
        (S::Initiated, E::Unreachable) => Ok((S::Missed, Some("unreachable"))),
        (S::Initiated, E::ReceiverBusy) => Ok((S::Busy, Some("busy"))),
        (_, E::Accept(Party::Caller)) => Err(Refusal::Forbidden("only the receiver can accept a call")),
        (_, E::Decline(Party::Caller)) => {
            Err(Refusal::Forbidden("only the receiver can decline a call; the caller ends it"))
        }
        (S::Ringing, E::Accept(Party::Receiver)) => Ok((S::Active, None)),
        (S::Ringing, E::Decline(Party::Receiver) | E::End(Party::Receiver)) => Ok((S::Declined, Some("declined"))),
        (S::Ringing, E::End(Party::Caller)) => Ok((S::Ended, Some("cancelled"))),
        (S::Ringing, E::RingTimeout) => Ok((S::Missed, Some("no_answer"))),
        (S::Active, E::End(_)) => Ok((S::Ended, Some("hangup"))),
        (S::Active, E::MediaTimeout) => Ok((S::Failed, Some("media_timeout"))),
        _ => Err(Refusal::WrongState),
    }
}

/// Statuses from which `event` can move a call (for the store's
/// compare-and-set).
pub fn sources(event: CallEvent) -> Vec<CallStatus> {
    CallStatus::ALL.into_iter().filter(|s| transition(*s, event).is_ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallEvent as E;
    use CallStatus as S;

    const EVENTS: [CallEvent; 13] = [
        E::Ring,
        E::Unreachable,
        E::ReceiverBusy,
        E::Accept(Party::Caller),
        E::Accept(Party::Receiver),
        E::Decline(Party::Caller),
        E::Decline(Party::Receiver),
        E::End(Party::Caller),
        E::End(Party::Receiver),
        E::RingTimeout,
        E::MediaTimeout,
        E::RingTimeout,
        E::MediaTimeout,
    ];

    /// Every allowed transition, and nothing else.
    #[test]
    fn the_whole_table() {
        let allowed = [
            (S::Initiated, E::Ring, S::Ringing, None),
            (S::Initiated, E::Unreachable, S::Missed, Some("unreachable")),
            (S::Initiated, E::ReceiverBusy, S::Busy, Some("busy")),
            (S::Ringing, E::Accept(Party::Receiver), S::Active, None),
            (S::Ringing, E::Decline(Party::Receiver), S::Declined, Some("declined")),
            (S::Ringing, E::End(Party::Receiver), S::Declined, Some("declined")),
            (S::Ringing, E::End(Party::Caller), S::Ended, Some("cancelled")),
            (S::Ringing, E::RingTimeout, S::Missed, Some("no_answer")),
            (S::Active, E::End(Party::Caller), S::Ended, Some("hangup")),
            (S::Active, E::End(Party::Receiver), S::Ended, Some("hangup")),
            (S::Active, E::MediaTimeout, S::Failed, Some("media_timeout")),
        ];
        for from in S::ALL {
            for event in EVENTS {
                let expected =
                    allowed.iter().find(|(f, e, _, _)| *f == from && *e == event).map(|(_, _, to, r)| (*to, *r));
                match (transition(from, event), expected) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{from:?} + {event:?}"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from:?} + {event:?}: got {got:?}, expected {want:?}"),
                }
            }
        }
    }

    #[test]
    fn final_statuses_accept_nothing() {
        for from in S::ALL.into_iter().filter(|s| s.is_final()) {
            for event in EVENTS {
                assert!(transition(from, event).is_err(), "{from:?} + {event:?}");
            }
        }
    }

    #[test]
    fn the_caller_never_accepts_or_declines() {
        for from in S::ALL {
            assert!(matches!(transition(from, E::Accept(Party::Caller)), Err(Refusal::Forbidden(_))));
            assert!(matches!(transition(from, E::Decline(Party::Caller)), Err(Refusal::Forbidden(_))));
        }
        assert_eq!(transition(S::Active, E::Accept(Party::Receiver)), Err(Refusal::WrongState), "no double accept");
        assert_eq!(sources(E::End(Party::Caller)), vec![S::Ringing, S::Active]);
    }
}
