//! The metrics calls and matching record, with their histogram buckets
//! (quality figures are not latencies, so they need buckets of their own).

/// Histogram buckets by metric name, for the Prometheus exporter.
pub const BUCKETS: [(&str, &[f64]); 4] = [
    ("palaver_call_rtt_ms", &[5.0, 10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0, 2000.0]),
    ("palaver_call_jitter_ms", &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0]),
    ("palaver_call_packet_loss_ratio", &[0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
    ("palaver_call_audio_level", &[0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0]),
];

/// Describes every metric this crate records.
pub fn describe() {
    metrics::describe_counter!(
        "palaver_calls_total",
        "Calls by outcome (ringing, missed, busy, matched, ended, failed…)."
    );
    metrics::describe_histogram!("palaver_call_rtt_ms", "Round-trip time clients report during calls, ms.");
    metrics::describe_histogram!("palaver_call_jitter_ms", "Jitter clients report during calls, ms.");
    metrics::describe_histogram!("palaver_call_packet_loss_ratio", "Packet loss clients report during calls, 0 to 1.");
    metrics::describe_histogram!("palaver_call_audio_level", "Audio level clients report during calls, 0 to 1.");
    metrics::describe_counter!("palaver_match_enqueued_total", "Joins of the random-matching queue.");
    metrics::describe_counter!(
        "palaver_matches_total",
        "Random matches made, by tier (0 complementary, 1 same language, 2 one-way)."
    );
    metrics::describe_histogram!(
        "palaver_match_wait_seconds",
        metrics::Unit::Seconds,
        "Time from joining the matching queue to being matched."
    );
}
