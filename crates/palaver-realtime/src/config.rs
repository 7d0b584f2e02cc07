//! The hub's settings (the server fills them from its configuration).

use std::time::Duration;

/// Limits and timings of the hub. [`HubConfig::default`] has the defaults
/// the server documents.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This node's name: presence and viewer entries in Redis are per node.
    pub node_id: String,
    /// Events queued per connection; a connection whose queue is full is a
    /// slow consumer and is closed with 4008 (the fan-out never waits).
    pub queue_capacity: usize,
    /// Largest client frame (and message), in bytes; larger ones close the
    /// connection with 1009.
    pub max_frame_bytes: usize,
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A connection from which nothing (frame, ping or pong) arrived for
    /// this long is closed with 4000.
    pub idle_timeout: Duration,
    /// A write to a socket that takes longer than this ends the connection.
    pub write_timeout: Duration,
    /// Client frames allowed per `rate_period`, as a burst; over it, frames
    /// get `rate_limited` errors.
    pub rate_count: u32,
    /// The period of `rate_count`.
    pub rate_period: Duration,
    /// Connections one user may hold on this node.
    pub max_connections_per_user: usize,
    /// Connections this node accepts.
    pub max_connections: usize,
    /// A Redis node entry expires this long after its last heartbeat; its
    /// users then go offline (heartbeats run every third of it).
    pub presence_ttl: Duration,
    /// How long an out-of-order event waits for the missing `seq` before
    /// the hub loads the gap from history.
    pub gap_wait: Duration,
    /// Most events replayed for one subscribe; a client further behind is
    /// told to resync over REST (`resync_required`).
    pub max_replay: usize,
    /// A `typing` state not renewed within this time ends (a `typing`
    /// false event).
    pub typing_ttl: Duration,
    /// Renewals of `typing` true within this time are not forwarded again.
    pub typing_throttle: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            node_id: "node".into(),
            queue_capacity: 1024,
            max_frame_bytes: 64 * 1024,
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            rate_count: 100,
            rate_period: Duration::from_secs(10),
            max_connections_per_user: 16,
            max_connections: 10_000,
            presence_ttl: Duration::from_secs(10),
            gap_wait: Duration::from_millis(300),
            max_replay: 5_000,
            typing_ttl: Duration::from_secs(6),
            typing_throttle: Duration::from_secs(2),
        }
    }
}

impl HubConfig {
    /// The WebSocket settings for a connection: the frame limit, and small
    /// buffers. The read buffer is allocated up front and kept (its
    /// default of 128 KiB would cost more than a gigabyte at 10k
    /// connections; client frames are small, and larger ones are read in
    /// several reads). tungstenite's write buffer is off: run the socket in
    /// a [`crate::BatchedWrites`], which gathers the frames instead and
    /// frees its buffer on every flush.
    pub fn socket_config(&self) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(512)
            .write_buffer_size(0)
            .max_message_size(Some(self.max_frame_bytes))
            .max_frame_size(Some(self.max_frame_bytes))
    }
}
