//! The push outbox worker: claims due pushes under a lease, sends them
//! concurrently through the providers, and records each result in one
//! transaction per batch.
//!
//! Delivery is at least once: a worker that dies after a push service
//! accepted a push but before recording it leaves the row to be claimed again
//! when its lease ends. Collapse keys make such a rare duplicate replace the
//! first on the device. Two live workers never send one row twice: a row is
//! held by exactly one claim until it is finished or its lease ends, and the
//! lease is longer than a request can take.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use palaver_core::time::{Timestamp, now};
use palaver_store::{OutboxItem, PushResult, Store};
use rand::Rng as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::providers::{Providers, SendOutcome};

/// How the outbox is drained.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Rows claimed per batch.
    pub batch_size: u32,
    /// Sends in flight per worker.
    pub concurrency: usize,
    /// How often an idle worker looks for due rows (it is also woken when
    /// this node queues a push).
    pub poll_interval: Duration,
    /// How long a claim holds its rows; longer than a send can take.
    pub lease: Duration,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows claimed.
    pub claimed: usize,
    /// Accepted by a push service.
    pub sent: usize,
    /// To be tried again.
    pub retried: usize,
    /// Dropped: rejected, expired, or no provider configured.
    pub failed: usize,
    /// Tokens pruned.
    pub pruned: u64,
}

/// One outbox worker. Several may run per node and on many nodes.
#[derive(Clone)]
pub struct OutboxWorker {
    store: Arc<dyn Store>,
    providers: Providers,
    settings: OutboxSettings,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker").field("providers", &self.providers).finish_non_exhaustive()
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl OutboxWorker {
    /// A worker; `wake` is notified when this node queues pushes.
    pub fn new(store: Arc<dyn Store>, providers: Providers, settings: OutboxSettings, wake: Arc<Notify>) -> Self {
        Self { store, providers, settings, wake }
    }

    /// Drains the outbox until `shutdown`: whole batches while there is
    /// work, then waits for a wake-up or the poll interval. A batch in
    /// progress finishes before the worker stops.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let claimed = match self.drain_once().await {
                Ok(report) => report.claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "push outbox batch failed");
                    0
                }
            };
            if claimed > 0 {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Claims one batch, sends it and records the results.
    pub async fn drain_once(&self) -> palaver_store::Result<BatchReport> {
        let claim_id = uuid::Uuid::new_v4().to_string();
        let start = now();
        let items = self
            .store
            .claim_pushes(&claim_id, start, start + delta(self.settings.lease), self.settings.batch_size)
            .await?;
        let mut report = BatchReport { claimed: items.len(), ..BatchReport::default() };
        if items.is_empty() {
            return Ok(report);
        }
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.settings.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for item in items {
            let worker = self.clone();
            let semaphore = semaphore.clone();
            tasks.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let result = worker.process(&item).await;
                (item, result)
            });
        }
        let mut results = Vec::with_capacity(report.claimed);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(done) => results.push(done),
                Err(e) => tracing::error!(error = %e, "push send task failed"),
            }
        }
        for (_, result) in &results {
            match result {
                PushResult::Delivered => report.sent += 1,
                PushResult::Retry { .. } => report.retried += 1,
                PushResult::Drop { .. } => report.failed += 1,
                PushResult::PruneToken => {}
            }
        }
        report.pruned = self.store.finish_pushes(&claim_id, &results).await?;
        metrics::counter!("push_tokens_pruned_total").increment(report.pruned);
        Ok(report)
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let base = self.settings.retry_base.saturating_mul(2u32.saturating_pow(exponent));
        let capped = base.min(self.settings.retry_max);
        // ±20% jitter so retries of one outage do not arrive together.
        let factor = rand::rng().random_range(0.8..1.2);
        capped.mul_f64(factor).min(self.settings.retry_max)
    }

    async fn process(&self, item: &OutboxItem) -> PushResult {
        let Some(payload) = &item.payload else {
            metrics::counter!("push_failed_total", "provider" => "none", "reason" => "corrupt").increment(1);
            return PushResult::Drop { error: "unreadable payload".into() };
        };
        let current = now();
        if item.expires_at.is_some_and(|e| e <= current) {
            metrics::counter!("push_failed_total", "provider" => "none", "reason" => "expired").increment(1);
            return PushResult::Drop { error: "expired".into() };
        }
        let Some(provider) = self.providers.for_device(item.device_type) else {
            metrics::counter!("push_skipped_total", "device_type" => item.device_type.as_str()).increment(1);
            return PushResult::Drop { error: format!("no {} provider configured", item.device_type) };
        };
        let name = provider.name();
        match provider.send(item, payload).await {
            SendOutcome::Delivered => {
                metrics::counter!("push_sent_total", "provider" => name).increment(1);
                let latency = (now() - payload.event_at).to_std().unwrap_or_default();
                metrics::histogram!("push_event_to_send_seconds", "provider" => name).record(latency.as_secs_f64());
                PushResult::Delivered
            }
            SendOutcome::Retry { after, reason } => {
                let wait = self.backoff(item.attempts).max(after.unwrap_or_default());
                let at: Timestamp = now() + delta(wait);
                if item.expires_at.is_some_and(|e| at > e) {
                    metrics::counter!("push_failed_total", "provider" => name, "reason" => "expired").increment(1);
                    return PushResult::Drop { error: format!("expired after: {reason}") };
                }
                tracing::debug!(provider = name, attempts = item.attempts, %reason, ?wait, "push will be retried");
                metrics::counter!("push_retried_total", "provider" => name).increment(1);
                PushResult::Retry { at, error: reason }
            }
            SendOutcome::InvalidToken { reason } => {
                tracing::info!(provider = name, %reason, "push token pruned");
                metrics::counter!("push_pruned_total", "provider" => name).increment(1);
                PushResult::PruneToken
            }
            SendOutcome::Rejected { reason } => {
                tracing::warn!(provider = name, %reason, "push rejected");
                metrics::counter!("push_failed_total", "provider" => name, "reason" => "rejected").increment(1);
                PushResult::Drop { error: reason }
            }
        }
    }
}

/// Describes the push metrics for the Prometheus exporter.
pub fn describe_metrics() {
    metrics::describe_counter!("push_sent_total", "Pushes accepted by a push service, by provider.");
    metrics::describe_counter!("push_failed_total", "Pushes given up on (rejected, expired, unreadable).");
    metrics::describe_counter!("push_retried_total", "Push attempts that failed and were rescheduled.");
    metrics::describe_counter!("push_pruned_total", "Pushes whose token the push service declared dead.");
    metrics::describe_counter!("push_tokens_pruned_total", "Push tokens deleted because they are dead.");
    metrics::describe_counter!("push_skipped_total", "Pushes to device types without a configured provider.");
    metrics::describe_histogram!(
        "push_event_to_send_seconds",
        metrics::Unit::Seconds,
        "Time from the event to the push service accepting the push."
    );
    metrics::describe_counter!(
        "notification_events_lagged_total",
        "Domain events the notification fan-out missed because it fell behind the bus."
    );
    metrics::describe_counter!("notifications_recorded_total", "Notifications created or updated, by type.");
}
