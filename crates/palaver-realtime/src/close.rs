//! Close codes the hub ends connections with. 1000-1015 are the standard
//! ones (RFC 6455 section 7.4.1); 4000-4999 are ours. Every close carries a
//! reason a developer can read.

/// The client or server closed normally.
pub const NORMAL: u16 = 1000;
/// The server is shutting down; reconnect (to another node).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the WebSocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A frame was larger than the configured limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server failed (for example, history could not be loaded); reconnect
/// and resume with `since_seq`.
pub const INTERNAL_ERROR: u16 = 1011;
/// This node holds as many connections as it is allowed; retry later,
/// perhaps on another node.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Nothing arrived from the client (not even a pong) within the idle
/// timeout: the connection is presumed dead.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The session ended or the account was suspended.
pub const UNAUTHORIZED: u16 = 4001;
/// The client did not read fast enough and its outbound queue filled up.
/// Events were dropped: reconnect and resubscribe with `since_seq`.
pub const SLOW_CONSUMER: u16 = 4008;
/// The user already has as many connections as allowed.
pub const TOO_MANY_CONNECTIONS: u16 = 4009;
/// The client kept sending far above its rate limit.
pub const FLOOD: u16 = 4029;

/// The reason sent with [`SLOW_CONSUMER`].
pub const SLOW_CONSUMER_REASON: &str = "slow consumer: events were dropped; reconnect and resubscribe with since_seq";
