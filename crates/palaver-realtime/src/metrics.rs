//! The hub's metrics, as handles made once (a lookup per frame would cost
//! more than the frame).

use metrics::{Counter, Gauge};

/// Handles to the hub's metrics.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub refused_total: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub slow_consumers: Counter,
    pub events_published: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        describe();
        Self {
            connections: metrics::gauge!("ws_connections"),
            connections_total: metrics::counter!("ws_connections_total"),
            refused_total: metrics::counter!("ws_connections_refused_total"),
            frames_in: metrics::counter!("ws_frames_in_total"),
            frames_out: metrics::counter!("ws_frames_out_total"),
            slow_consumers: metrics::counter!("ws_slow_consumers_total"),
            events_published: metrics::counter!("realtime_events_published_total"),
        }
    }
}

/// Describes the hub's metrics to the installed recorder.
pub fn describe() {
    metrics::describe_gauge!("ws_connections", "Open WebSocket connections on this node.");
    metrics::describe_counter!("ws_connections_total", "WebSocket connections accepted.");
    metrics::describe_counter!(
        "ws_connections_refused_total",
        "WebSocket connections closed at once: node or per-user cap reached."
    );
    metrics::describe_counter!("ws_frames_in_total", "Text frames received from WebSocket clients.");
    metrics::describe_counter!("ws_frames_out_total", "Frames sent to WebSocket clients.");
    metrics::describe_counter!(
        "ws_slow_consumers_total",
        "Connections closed with 4008 because their outbound queue was full."
    );
    metrics::describe_counter!("realtime_events_published_total", "Events published to the broker by this node.");
    metrics::describe_counter!(
        "realtime_broker_dropped_total",
        "Events the Redis broker dropped (publish queue full or Redis unavailable)."
    );
}
