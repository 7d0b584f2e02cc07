//! One WebSocket connection: a reader and a writer joined with `select!`.
//!
//! The reader parses client frames, enforces the rate limit, authorizes
//! and dispatches ops; answers go to the writer through a small control
//! queue. The writer owns everything sent to the client: the bounded event
//! queue the fan-out fills (a full queue is a slow consumer, closed with
//! 4008 by the fan-out itself), pings, the idle timeout, and per topic the
//! subscription state. For sequenced topics that state delivers each event
//! once and in `seq` order: events that arrive early wait in a small
//! buffer, a gap that does not fill within `gap_wait` is loaded from the
//! topic's history, and a `subscribe` with `since_seq` registers for live
//! events first, buffers them, replays history, then continues live, with
//! duplicates at the seam dropped by `seq`.
//!
//! Memory: a connection mostly waits, so waiting is kept cheap (see
//! docs/ARCHITECTURE.md, "Memory per connection"): one task holding only
//! this future, frame handling and writes boxed while they run, queues and
//! buffers allocated by traffic and freed when it stops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_channel::mpsc as queue;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use governor::clock::{Clock as _, DefaultClock};
use governor::{Quota, RateLimiter};
use palaver_core::Error;
use palaver_service::Principal;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsErr, Message, Utf8Bytes};

use crate::close;
use crate::frame::{self, ClientFrame, EventFrame, FrameError, WsError};
use crate::hub::Hub;
use crate::outbox;
use crate::registry::{Conn, Item};
use crate::topic::{Action, OpContext, Replayed, Topic, TopicKind};

/// A connection's id on this node.
pub type ConnId = u64;

/// Events loaded from history per round trip.
const REPLAY_PAGE: usize = 500;
/// Longest wait for the broker to confirm a new topic subscription.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest an op handler, an authorizer or a history load may take.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Most fan-out items taken from the queue for one write.
const ITEM_BATCH: usize = 64;

/// The wire shape a connection speaks. The native `/ws` protocol uses the
/// defaults; the original design's routes reshape events and frames.
pub trait Protocol: Send + Sync + 'static {
    /// Turns a client text frame into an op.
    fn decode(&self, text: &str) -> Result<ClientFrame, FrameError> {
        ClientFrame::parse(text)
    }
    /// The frame sent for an event; `None` skips it.
    fn event(&self, event: &EventFrame) -> Option<Utf8Bytes> {
        Some(event.text.clone())
    }
    /// The frame sent when an op succeeded.
    fn ack(&self, reference: Option<&Value>, fields: Map<String, Value>) -> Option<Utf8Bytes> {
        Some(frame::ack(reference, fields))
    }
    /// The frame sent when an op failed.
    fn error(&self, reference: Option<&Value>, topic: Option<&Topic>, err: &WsError) -> Option<Utf8Bytes> {
        Some(frame::error(reference, topic, err))
    }
    /// The answer to a `ping` op.
    fn pong(&self, reference: Option<&Value>) -> Option<Utf8Bytes> {
        Some(frame::pong(reference))
    }
}

/// The `/ws` protocol (docs/API.md).
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeProtocol;

impl Protocol for NativeProtocol {}

/// Who is connecting and what they get without asking.
pub struct ConnectParams {
    /// The authenticated user and session.
    pub principal: Principal,
    /// The wire shape.
    pub protocol: Arc<dyn Protocol>,
    /// Subscribe to `user:{id}` at once (the native protocol does).
    pub user_topic: bool,
    /// Further topics subscribed at once, already authorized by the
    /// caller, each with an optional `since_seq` to replay from.
    pub topics: Vec<(Topic, Option<i64>)>,
}

impl std::fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams").field("user", &self.principal.id()).field("topics", &self.topics).finish()
    }
}

enum Control {
    Reply(Utf8Bytes),
    Subscribe { topic: Topic, since: Option<i64>, reference: Option<Value>, quiet: bool, kind: Arc<dyn TopicKind> },
    Unsubscribe { topic: Topic, reference: Option<Value> },
}

enum Fetch {
    Head(i64),
    Events { events: Vec<Replayed>, full: bool },
}

enum Internal {
    Ready { topic: Topic, ok: bool },
    Fetched { topic: Topic, result: Result<Fetch, Error> },
    Snapshot { topic: Topic, events: Vec<Replayed> },
}

/// Runs a connection until it closes.
///
/// Not an `async fn`: a future keeps its arguments for its whole life,
/// beside what is made of them, so the socket is split and the parameters
/// unpacked here, before the connection's future is built.
pub(crate) fn run<S>(
    hub: Hub,
    ws: WebSocketStream<S>,
    params: ConnectParams,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let principal = Arc::new(params.principal);
    let control_capacity = 64 + params.topics.len();
    let mut initial = Vec::new();
    if params.user_topic {
        initial.push((Topic::user(principal.id()), None));
    }
    initial.extend(params.topics);
    serve(hub, sink, stream, principal, params.protocol, initial, control_capacity)
}

async fn serve<S>(
    hub: Hub,
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut stream: SplitStream<WebSocketStream<S>>,
    principal: Arc<Principal>,
    protocol: Arc<dyn Protocol>,
    initial: Vec<(Topic, Option<i64>)>,
    control_capacity: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let user = principal.id();
    let conn = match hub.registry().register(user) {
        Ok(conn) => conn,
        Err(refused) => {
            let frame = CloseFrame { code: CloseCode::from(refused.code), reason: refused.reason.into() };
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(frame)))).await;
            return;
        }
    };
    // The sender's own slot is one of the `control_capacity`.
    let (mut control_tx, control_rx) = queue::channel(control_capacity - 1);
    for (topic, since) in initial {
        if let Some(kind) = hub.kind(topic.kind()) {
            let _ = control_tx.try_send(Control::Subscribe { topic, since, reference: None, quiet: true, kind });
        }
    }
    let clock = Idle::default();
    {
        let reader = read_loop(&hub, &conn, &principal, &*protocol, &mut stream, control_tx, &clock);
        let rx = conn.outbox.receiver();
        let writer = write_loop(&hub, &conn, &principal, &*protocol, &mut sink, rx, control_rx, &clock);
        tokio::pin!(writer);
        let reader_ended = tokio::select! {
            reason = reader => Some(reason),
            () = &mut writer => None,
        };
        if let Some(reason) = reader_ended {
            // The reader is done (the client closed, broke a rule, or went
            // away); it dropped its end of the control queue, so the writer
            // sends the answers still queued (an error explaining a close)
            // and returns.
            if let Some((code, reason)) = reason {
                conn.kill.set_reason(code, reason);
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        }
    }
    let (code, reason) = conn.kill.reason().unwrap_or((close::NORMAL, String::new()));
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
    hub.registry().unregister(conn.id);
    hub.connection_closed(conn.id);
    let sent = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
    if matches!(sent, Ok(Ok(()))) {
        // The closing handshake: read (and discard) until the client's
        // Close. Dropping the socket with unread input would reset the
        // connection, and the client would lose what was sent before the
        // Close (the error frames that explain it).
        let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = stream.next().await {} })
            .await;
    }
}

/// When something last arrived from the client.
struct Idle {
    start: Instant,
    last_ms: AtomicU64,
}

impl Default for Idle {
    fn default() -> Self {
        Self { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }
}

impl Idle {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

// ---------------------------------------------------------------- reader

#[allow(clippy::too_many_arguments)]
async fn read_loop<S>(
    hub: &Hub,
    conn: &Arc<Conn>,
    principal: &Arc<Principal>,
    protocol: &dyn Protocol,
    stream: &mut SplitStream<WebSocketStream<S>>,
    mut control: queue::Sender<Control>,
    idle: &Idle,
) -> Option<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = hub.config();
    let burst = NonZeroU32::new(config.rate_count).unwrap_or(NonZeroU32::MIN);
    let mut rate = Rate {
        limiter: Quota::with_period(config.rate_period / burst.get())
            .map(|q| RateLimiter::direct(q.allow_burst(burst))),
        flood_after: config.rate_count.saturating_mul(2).max(10),
        refused_in_a_row: 0,
    };
    let control = &mut control;
    loop {
        let message = match stream.next().await? {
            Ok(message) => message,
            Err(WsErr::Capacity(_)) => {
                return Some((
                    close::MESSAGE_TOO_BIG,
                    format!("frame too large: at most {} bytes", config.max_frame_bytes),
                ));
            }
            Err(WsErr::Protocol(e)) => return Some((close::PROTOCOL_ERROR, e.to_string())),
            Err(WsErr::Utf8(_)) => return Some((1007, "text frames must be UTF-8".into())),
            Err(_) => return None,
        };
        idle.touch();
        if matches!(message, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) {
            continue;
        }
        // Boxed: handling a frame takes far more room than waiting for
        // one, and a connection mostly waits.
        if let Some(end) = Box::pin(on_message(hub, conn, principal, protocol, control, &mut rate, message)).await {
            return end;
        }
    }
}

/// A connection's rate limit.
struct Rate {
    limiter: Option<governor::DefaultDirectRateLimiter>,
    flood_after: u32,
    refused_in_a_row: u32,
}

/// Handles one frame from the client. `Some` ends the connection, with
/// the close code and reason to send (`None`: a normal close).
async fn on_message(
    hub: &Hub,
    conn: &Arc<Conn>,
    principal: &Arc<Principal>,
    protocol: &dyn Protocol,
    control: &mut queue::Sender<Control>,
    rate: &mut Rate,
    message: Message,
) -> Option<Option<(u16, String)>> {
    let text = match message {
        Message::Text(text) => text,
        Message::Binary(_) => {
            hub.metrics().frames_in.increment(1);
            let err = WsError::new("unsupported_frame", "binary frames are not supported; send JSON text frames");
            reply(control, protocol.error(None, None, &err)).await;
            return None;
        }
        Message::Close(_) => return Some(None),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
    };
    hub.metrics().frames_in.increment(1);
    if let Some(limiter) = &rate.limiter
        && let Err(not_until) = limiter.check()
    {
        rate.refused_in_a_row += 1;
        if rate.refused_in_a_row > rate.flood_after {
            return Some(Some((close::FLOOD, "too many messages: the rate limit was ignored".into())));
        }
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut err = WsError::new("rate_limited", "too many messages; slow down");
        err.details = json!({ "retry_after_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) });
        reply(control, protocol.error(None, None, &err)).await;
        return None;
    }
    rate.refused_in_a_row = 0;
    let frame = match protocol.decode(text.as_str()) {
        Ok(frame) => frame,
        Err(FrameError { reference, error }) => {
            reply(control, protocol.error(reference.as_ref(), None, &error)).await;
            return None;
        }
    };
    let reference = frame.reference.clone();
    if frame.op == "ping" {
        reply(control, protocol.pong(reference.as_ref())).await;
        return None;
    }
    match dispatch(hub, conn, principal, control, frame).await {
        Ok(Some(fields)) => reply(control, protocol.ack(reference.as_ref(), fields)).await,
        Ok(None) => {}
        Err((topic, err)) => reply(control, protocol.error(reference.as_ref(), topic.as_ref(), &err)).await,
    }
    None
}

async fn reply(control: &mut queue::Sender<Control>, frame: Option<Utf8Bytes>) {
    if let Some(frame) = frame {
        // `feed`, not `send`: waits for room before queuing, not after.
        let _ = control.feed(Control::Reply(frame)).await;
    }
}

type OpResult = Result<Option<Map<String, Value>>, (Option<Topic>, WsError)>;

#[derive(Deserialize)]
struct SubscribeOp {
    topic: String,
    #[serde(default)]
    since_seq: Option<i64>,
}

#[derive(Deserialize)]
struct UnsubscribeOp {
    topic: String,
}

#[derive(Deserialize)]
struct TypingOp {
    topic: String,
    is_typing: bool,
}

fn plain(err: Error) -> (Option<Topic>, WsError) {
    (None, err.into())
}

async fn dispatch(
    hub: &Hub,
    conn: &Arc<Conn>,
    principal: &Arc<Principal>,
    control: &mut queue::Sender<Control>,
    frame: ClientFrame,
) -> OpResult {
    match frame.op.as_str() {
        "subscribe" => {
            let op: SubscribeOp = frame.fields().map_err(plain)?;
            let topic = Topic::parse(&op.topic).map_err(plain)?;
            let at = |e: Error| (Some(topic.clone()), WsError::from(e));
            if op.since_seq.is_some_and(|s| s < 0) {
                return Err(at(Error::invalid("since_seq", "must be at least 0")));
            }
            let kind = hub
                .kind(topic.kind())
                .ok_or_else(|| at(Error::NotFound(format!("there is no topic kind `{}`", topic.kind()))))?;
            with_timeout(kind.authorize(principal, &topic, Action::Subscribe)).await.map_err(at)?;
            let reference = frame.reference;
            let _ =
                control.feed(Control::Subscribe { topic, since: op.since_seq, reference, quiet: false, kind }).await;
            Ok(None)
        }
        "unsubscribe" => {
            let op: UnsubscribeOp = frame.fields().map_err(plain)?;
            let topic = Topic::parse(&op.topic).map_err(plain)?;
            let _ = control.feed(Control::Unsubscribe { topic, reference: frame.reference }).await;
            Ok(None)
        }
        "typing" => {
            let op: TypingOp = frame.fields().map_err(plain)?;
            let topic = Topic::parse(&op.topic).map_err(plain)?;
            if !hub.registry().is_subscribed(conn.id, &topic) {
                return Err((Some(topic), WsError::new("not_subscribed", "subscribe to the topic first")));
            }
            if !hub.kind(topic.kind()).is_some_and(|k| k.typing()) {
                let err = Error::BadRequest(format!("typing is not supported on {topic}"));
                return Err((Some(topic), err.into()));
            }
            hub.typing_update(conn.id, conn.user, &topic, op.is_typing);
            Ok(frame.reference.map(|_| Map::new()))
        }
        op => {
            let Some(handler) = hub.op(op) else {
                return Err((None, WsError::new("unknown_op", format!("unknown op `{op}`"))));
            };
            let topic = frame.body.get("topic").and_then(Value::as_str).and_then(|t| Topic::parse(t).ok());
            let ctx = OpContext {
                user: conn.user,
                principal: principal.clone(),
                conn: conn.id,
                connection: hub.registry().key(conn.id),
                hub: hub.clone(),
            };
            with_timeout(handler.handle(&ctx, frame.body)).await.map(Some).map_err(|e| (topic, e.into()))
        }
    }
}

async fn with_timeout<T>(fut: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(OP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| Err(Error::Unavailable("the server took too long to answer; retry".into())))
}

// ---------------------------------------------------------------- writer

enum Phase {
    /// Registered for live events; waiting for the broker to confirm.
    Waiting { buffer: Vec<Arc<EventFrame>>, since: Option<i64>, reference: Option<Value>, quiet: bool },
    /// Delivering; sequenced topics track their `seq`.
    Live(Option<SeqTrack>),
}

struct TopicState {
    kind: Arc<dyn TopicKind>,
    phase: Phase,
    /// Until the snapshot of who is typing arrives: the typers whose live
    /// `typing` events this connection already got, so the snapshot does
    /// not repeat them.
    typing_seen: Option<HashSet<palaver_core::UserId>>,
}

/// Exactly-once, in-order delivery of one sequenced topic.
struct SeqTrack {
    /// Every event up to this `seq` was sent (or predates the
    /// subscription).
    last: i64,
    /// Events ahead of a gap.
    pending: BTreeMap<i64, Arc<EventFrame>>,
    /// A history load is running: live events wait in `pending`.
    fetching: bool,
    /// Since when a gap has been open.
    gap_since: Option<Instant>,
    /// Events replayed by the current load.
    replayed: usize,
    /// A subscribe without `since_seq` is acked once the head is known:
    /// every event after the ack is then delivered (the `ref`, if any).
    ack_at_head: Option<Option<Value>>,
}

struct Out<'a> {
    frames: &'a mut Vec<Message>,
    protocol: &'a dyn Protocol,
}

impl Out<'_> {
    fn event(&mut self, event: &EventFrame) {
        if let Some(text) = self.protocol.event(event) {
            self.frames.push(Message::Text(text));
        }
    }

    fn text(&mut self, text: Option<Utf8Bytes>) {
        if let Some(text) = text {
            self.frames.push(Message::Text(text));
        }
    }
}

impl SeqTrack {
    fn offer(&mut self, seq: i64, event: Arc<EventFrame>, out: &mut Out<'_>) {
        if seq <= self.last {
            return;
        }
        if self.fetching || seq != self.last + 1 {
            self.pending.insert(seq, event);
            if !self.fetching && self.gap_since.is_none() {
                self.gap_since = Some(Instant::now());
            }
            return;
        }
        out.event(&event);
        self.last = seq;
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Out<'_>) {
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq <= self.last {
                entry.remove();
            } else if seq == self.last + 1 {
                out.event(&entry.remove());
                self.last = seq;
            } else {
                break;
            }
        }
        self.gap_since = if self.pending.is_empty() { None } else { self.gap_since.or(Some(Instant::now())) };
    }
}

struct Writer<'a> {
    hub: &'a Hub,
    conn: &'a Arc<Conn>,
    principal: &'a Arc<Principal>,
    protocol: &'a dyn Protocol,
    /// Boxed states: the map's empty slots stay small.
    topics: HashMap<Topic, Box<TopicState>>,
    frames: Vec<Message>,
    internal: queue::UnboundedSender<Internal>,
}

#[allow(clippy::too_many_arguments)]
async fn write_loop<S>(
    hub: &Hub,
    conn: &Arc<Conn>,
    principal: &Arc<Principal>,
    protocol: &dyn Protocol,
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    mut rx: outbox::Receiver<'_, Item>,
    mut control: queue::Receiver<Control>,
    idle: &Idle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = hub.config();
    let (internal, mut internal_rx) = queue::unbounded();
    let mut w = Writer { hub, conn, principal, protocol, topics: HashMap::new(), frames: Vec::new(), internal };
    // One timer, at the earliest of the next ping, the idle deadline and
    // the oldest open gap's deadline. A late ping delays the next one.
    let mut next_ping = Instant::now() + config.ping_interval;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    let shutdown = hub.conn_shutdown();
    loop {
        let gap_deadline = w.gap_deadline(config.gap_wait);
        let wake =
            gap_deadline.map_or(idle.last() + config.idle_timeout, |gap| gap.min(idle.last() + config.idle_timeout));
        if timer.is_elapsed() || timer.deadline() != wake.min(next_ping) {
            timer.as_mut().reset(wake.min(next_ping));
        }
        tokio::select! {
            biased;
            () = conn.kill.token().cancelled() => return,
            () = shutdown.cancelled() => {
                conn.kill.kill(close::GOING_AWAY, "the server is shutting down; reconnect");
                return;
            }
            c = control.next() => match c {
                Some(c) => w.control(c),
                None => return,
            },
            Some(i) = internal_rx.next() => w.internal(i),
            item = rx.recv() => {
                w.item(item);
                // What else is queued goes out in the same write.
                for _ in 1..ITEM_BATCH {
                    let Some(item) = rx.try_recv() else { break };
                    w.item(item);
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if next_ping <= now {
                    w.frames.push(Message::Ping(Bytes::new()));
                    next_ping = now + config.ping_interval;
                }
                if idle.last() + config.idle_timeout <= now {
                    conn.kill.kill(
                        close::HEARTBEAT_TIMEOUT,
                        format!("nothing received for {} s (answer pings)", config.idle_timeout.as_secs()),
                    );
                    return;
                }
                if gap_deadline.is_some_and(|gap| gap <= now) {
                    w.fill_gaps(config.gap_wait);
                }
            }
        }
        if w.frames.is_empty() {
            continue;
        }
        // The write takes the frames and frees them when done, and runs
        // boxed: an idle connection keeps neither the frames' buffer nor
        // the write's room.
        let frames = std::mem::take(&mut w.frames);
        let count = frames.len() as u64;
        let out = &mut *sink;
        let write = Box::pin(tokio::time::timeout(config.write_timeout, async move {
            for message in frames {
                out.feed(message).await?;
            }
            out.flush().await
        }));
        tokio::select! {
            biased;
            () = conn.kill.token().cancelled() => return,
            result = write => match result {
                Ok(Ok(())) => hub.metrics().frames_out.increment(count),
                Ok(Err(_)) => return,
                Err(_) => {
                    conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
                    return;
                }
            }
        }
    }
}

impl Writer<'_> {
    fn out(&mut self) -> Out<'_> {
        Out { frames: &mut self.frames, protocol: self.protocol }
    }

    fn control(&mut self, control: Control) {
        match control {
            Control::Reply(text) => self.frames.push(Message::Text(text)),
            Control::Subscribe { topic, since, reference, quiet, kind } => {
                if self.topics.contains_key(&topic) {
                    if !quiet {
                        let mut fields = Map::new();
                        fields.insert("topic".into(), Value::String(topic.as_str().to_owned()));
                        fields.insert("already_subscribed".into(), Value::Bool(true));
                        let ack = self.protocol.ack(reference.as_ref(), fields);
                        self.out().text(ack);
                    }
                    return;
                }
                let Some(ready) = self.hub.registry().subscribe(self.conn, &topic, kind.tracks_viewers()) else {
                    return;
                };
                self.topics.insert(
                    topic.clone(),
                    Box::new(TopicState {
                        kind,
                        phase: Phase::Waiting { buffer: Vec::new(), since, reference, quiet },
                        typing_seen: None,
                    }),
                );
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    let ok = tokio::time::timeout(READY_TIMEOUT, ready.wait()).await.unwrap_or(false);
                    let _ = internal.unbounded_send(Internal::Ready { topic, ok });
                });
            }
            Control::Unsubscribe { topic, reference } => {
                if self.topics.remove(&topic).is_some() {
                    self.hub.registry().unsubscribe(self.conn, &topic);
                    let mut fields = Map::new();
                    fields.insert("topic".into(), Value::String(topic.as_str().to_owned()));
                    let ack = self.protocol.ack(reference.as_ref(), fields);
                    self.out().text(ack);
                } else {
                    let err = WsError::new("not_subscribed", format!("not subscribed to {topic}"));
                    let frame = self.protocol.error(reference.as_ref(), Some(&topic), &err);
                    self.out().text(frame);
                }
            }
        }
    }

    fn internal(&mut self, internal: Internal) {
        match internal {
            Internal::Ready { topic, ok } => self.ready(topic, ok),
            Internal::Fetched { topic, result } => self.fetched(topic, result),
            Internal::Snapshot { topic, events } => {
                let Some(state) = self.topics.get_mut(&topic) else { return };
                if !matches!(state.phase, Phase::Live(_)) {
                    return;
                }
                let seen = state.typing_seen.take().unwrap_or_default();
                let typer = |e: &Replayed| e.data.get("user_id").and_then(Value::as_i64);
                for event in events {
                    if event.event_type == "typing" && typer(&event).is_some_and(|u| seen.contains(&u)) {
                        continue;
                    }
                    let frame = EventFrame::build(&topic, &event.event_type, event.seq, &event.data);
                    self.out().event(&frame);
                }
            }
        }
    }

    fn ready(&mut self, topic: Topic, ok: bool) {
        let Some(state) = self.topics.get_mut(&topic) else { return };
        let Phase::Waiting { buffer, since, reference, quiet } = std::mem::replace(&mut state.phase, Phase::Live(None))
        else {
            return;
        };
        let kind = state.kind.clone();
        // A sequenced subscribe without `since_seq` starts at the head, read
        // after registering for live events; its ack waits for the head, so
        // everything committed after the ack reaches the client.
        let ack_at_head = kind.sequenced() && since.is_none() && !quiet;
        if ok && kind.sequenced() {
            let track = SeqTrack {
                last: since.unwrap_or(0),
                pending: BTreeMap::new(),
                fetching: true,
                gap_since: None,
                replayed: 0,
                ack_at_head: ack_at_head.then(|| reference.clone()),
            };
            state.phase = Phase::Live(Some(track));
        }
        if !ok {
            self.topics.remove(&topic);
            self.hub.registry().unsubscribe(self.conn, &topic);
            let err = WsError::from(Error::Unavailable("cannot subscribe right now; retry".into()));
            let frame = self.protocol.error(reference.as_ref(), Some(&topic), &err);
            self.out().text(frame);
            return;
        }
        if !quiet && !ack_at_head {
            let mut fields = Map::new();
            fields.insert("topic".into(), Value::String(topic.as_str().to_owned()));
            let ack = self.protocol.ack(reference.as_ref(), fields);
            self.out().text(ack);
        }
        if kind.sequenced() {
            self.spawn_fetch(&kind, &topic, since);
        }
        if kind.typing()
            && let Some(state) = self.topics.get_mut(&topic)
        {
            state.typing_seen = Some(HashSet::new());
        }
        for event in buffer {
            self.event(event);
        }
        self.spawn_snapshot(kind, topic);
    }

    fn fetched(&mut self, topic: Topic, result: Result<Fetch, Error>) {
        let max_replay = self.hub.config().max_replay;
        let Writer { topics, frames, protocol, .. } = self;
        let Some(state) = topics.get_mut(&topic) else { return };
        let Phase::Live(Some(track)) = &mut state.phase else { return };
        let mut out = Out { frames, protocol: *protocol };
        let follow_up = match result {
            Err(e) => {
                tracing::warn!(error = %e, %topic, "cannot load history for a connection");
                self.conn.kill.kill(
                    close::INTERNAL_ERROR,
                    format!("cannot load the history of {topic}; reconnect and resubscribe with since_seq"),
                );
                return;
            }
            Ok(Fetch::Head(head)) => {
                if let Some(reference) = track.ack_at_head.take() {
                    let mut fields = Map::new();
                    fields.insert("topic".into(), Value::String(topic.as_str().to_owned()));
                    out.text(protocol.ack(reference.as_ref(), fields));
                }
                track.last = track.last.max(head);
                track.fetching = false;
                track.replayed = 0;
                track.drain(&mut out);
                None
            }
            Ok(Fetch::Events { events, full }) => {
                for event in events {
                    match event.seq {
                        Some(seq) if seq > track.last => {
                            out.event(&EventFrame::build(&topic, &event.event_type, Some(seq), &event.data));
                            track.last = seq;
                            track.replayed += 1;
                        }
                        Some(_) => {}
                        None => out.event(&EventFrame::build(&topic, &event.event_type, None, &event.data)),
                    }
                }
                if !full {
                    track.fetching = false;
                    track.replayed = 0;
                    track.drain(&mut out);
                    None
                } else if track.replayed >= max_replay {
                    let err = WsError::new(
                        "resync_required",
                        format!("more than {max_replay} events were missed; load the history over REST"),
                    );
                    out.text(protocol.error(None, Some(&topic), &err));
                    Some(None)
                } else {
                    Some(Some(track.last))
                }
            }
        };
        if let Some(after) = follow_up {
            let kind = state.kind.clone();
            self.spawn_fetch(&kind, &topic, after);
        }
    }

    fn item(&mut self, item: Item) {
        match item {
            Item::Event(event) => self.event(event),
            Item::Revoked(topic) => {
                if self.topics.remove(&*topic).is_some() {
                    let frame = EventFrame::build(&topic, "unsubscribed", None, &json!({"reason": "revoked"}));
                    self.out().event(&frame);
                }
            }
            Item::Direct(event) => self.out().event(&event),
            Item::Resync => {
                let mut loads = Vec::new();
                for (topic, state) in &mut self.topics {
                    if let Phase::Live(Some(track)) = &mut state.phase
                        && !track.fetching
                    {
                        track.fetching = true;
                        track.gap_since = None;
                        loads.push((state.kind.clone(), topic.clone(), track.last));
                    }
                }
                for (kind, topic, after) in loads {
                    self.spawn_fetch(&kind, &topic, Some(after));
                }
            }
        }
    }

    fn event(&mut self, event: Arc<EventFrame>) {
        let capacity = self.hub.config().queue_capacity;
        let Writer { topics, frames, protocol, conn, .. } = self;
        let Some(state) = topics.get_mut(&event.topic) else { return };
        // Only `typing` events leave a user out (the typer).
        if let (Some(seen), Some(typer)) = (&mut state.typing_seen, event.exclude_user) {
            seen.insert(typer);
        }
        let mut out = Out { frames, protocol: *protocol };
        match &mut state.phase {
            Phase::Waiting { buffer, .. } => {
                if buffer.len() >= capacity {
                    conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
                } else {
                    buffer.push(event);
                }
            }
            Phase::Live(None) => out.event(&event),
            Phase::Live(Some(track)) => match event.seq {
                None => out.event(&event),
                Some(seq) => {
                    track.offer(seq, event, &mut out);
                    if track.pending.len() > capacity {
                        conn.kill.kill(close::SLOW_CONSUMER, close::SLOW_CONSUMER_REASON);
                    }
                }
            },
        }
    }

    fn gap_deadline(&self, wait: Duration) -> Option<Instant> {
        self.topics
            .values()
            .filter_map(|s| match &s.phase {
                Phase::Live(Some(track)) if !track.fetching => track.gap_since.map(|t| t + wait),
                _ => None,
            })
            .min()
    }

    fn fill_gaps(&mut self, wait: Duration) {
        let now = Instant::now();
        let mut loads = Vec::new();
        for (topic, state) in &mut self.topics {
            if let Phase::Live(Some(track)) = &mut state.phase
                && !track.fetching
                && track.gap_since.is_some_and(|t| t + wait <= now)
            {
                track.fetching = true;
                track.gap_since = None;
                loads.push((state.kind.clone(), topic.clone(), track.last));
            }
        }
        for (kind, topic, after) in loads {
            self.spawn_fetch(&kind, &topic, Some(after));
        }
    }

    /// Loads the head (`after` = None) or a page of history after `after`.
    fn spawn_fetch(&self, kind: &Arc<dyn TopicKind>, topic: &Topic, after: Option<i64>) {
        let (kind, topic, internal, who) = (kind.clone(), topic.clone(), self.internal.clone(), self.principal.clone());
        tokio::spawn(async move {
            let result = match after {
                None => with_timeout(kind.head(&who, &topic)).await.map(Fetch::Head),
                Some(after) => with_timeout(kind.replay(&who, &topic, after, REPLAY_PAGE)).await.map(|events| {
                    let full = events.len() >= REPLAY_PAGE;
                    Fetch::Events { events, full }
                }),
            };
            let _ = internal.unbounded_send(Internal::Fetched { topic, result });
        });
    }

    fn spawn_snapshot(&self, kind: Arc<dyn TopicKind>, topic: Topic) {
        let (hub, internal, who) = (self.hub.clone(), self.internal.clone(), self.principal.clone());
        let user = who.id();
        tokio::spawn(async move {
            let mut events = with_timeout(kind.snapshot(&who, &topic)).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, %topic, "snapshot failed");
                Vec::new()
            });
            if kind.typing() {
                for typer in hub.typing_now(&topic).await {
                    if typer != user {
                        events.push(Replayed {
                            event_type: "typing".into(),
                            seq: None,
                            data: json!({"user_id": typer, "is_typing": true}),
                        });
                    }
                }
            }
            // Sent even when empty: it ends the typing de-duplication window.
            let _ = internal.unbounded_send(Internal::Snapshot { topic, events });
        });
    }
}
