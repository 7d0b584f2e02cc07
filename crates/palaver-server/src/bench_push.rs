//! `palaver bench push`: outbox throughput and event-to-push latency against
//! the local FCM stand-in (`palaver_push::testing`, which checks every
//! request as the tests do).
//!
//! In one process: a fresh database, the notifications service subscribed
//! to an event bus, the outbox workers and the stand-in. Each event is a
//! follow of a different user, so every event makes exactly one push (no
//! aggregation or collapsing); the latency of an event is the time from
//! publishing it on the bus to the stand-in receiving its push request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use palaver_core::notification::DeviceType;
use palaver_push::providers::{Fcm, http_client};
use palaver_push::testing::FcmStandIn;
use palaver_push::{NotificationService, NotificationSettings, OutboxSettings, OutboxWorker, Providers};
use palaver_service::{DomainEvent, EventBus};
use palaver_store::{ConnectOptions, NewPushToken, NewUserRecord, Store};
use tokio_util::sync::CancellationToken;

/// What to run.
#[derive(Debug, Clone)]
pub struct PushBench {
    /// Events per run.
    pub events: usize,
    /// Publishing rate of the paced run, events per second.
    pub rate: u32,
    /// `postgres://…` to run on PostgreSQL (a scratch schema); SQLite otherwise.
    pub database_url: Option<String>,
    /// Outbox workers (PostgreSQL; SQLite uses one).
    pub workers: usize,
}

struct RunResult {
    label: String,
    published_per_sec: f64,
    pushes_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    delivered: usize,
    events: usize,
}

/// Runs the paced and the saturating run and returns the markdown report.
pub async fn run(bench: &PushBench) -> anyhow::Result<String> {
    let (cpu_before, _) = process_usage();
    let started = Instant::now();
    let backend = if bench.database_url.is_some() {
        format!("PostgreSQL, {} outbox workers", bench.workers.max(1))
    } else {
        "SQLite, one outbox worker".to_owned()
    };
    let paced = one_run(bench, Some(bench.rate)).await?;
    let burst = one_run(bench, None).await?;
    let (cpu_after, rss_kib) = process_usage();
    let wall = started.elapsed();
    let row = |r: &RunResult| {
        format!(
            "| {} | {}/{} | {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
            r.label,
            r.delivered,
            r.events,
            if r.label.starts_with("burst") { "all at once".to_owned() } else { format!("{:.0}", r.published_per_sec) },
            r.pushes_per_sec,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0,
            r.max.as_secs_f64() * 1000.0
        )
    };
    let db_env = if bench.database_url.is_some() { "DATABASE_URL=postgres://… " } else { "" };
    Ok(format!(
        "Command: `{db_env}palaver bench push --events {} --rate {} --workers {}` (release build; {backend}; \
         the notifications fan-out, outbox workers and an FCM stand-in in one process, so the CPU figure \
         includes the stand-in and the event generator)\n\n\
         | run | pushes delivered/events | events/s published | pushes/s sent | event→push p50 | p99 | max |\n\
         |---|---|---|---|---|---|---|\n{}\n{}\n\n\
         Process CPU time {:.1} s over {:.1} s wall clock; peak RSS {} MiB.\n",
        bench.events,
        bench.rate,
        bench.workers,
        row(&paced),
        row(&burst),
        (cpu_after - cpu_before).as_secs_f64(),
        wall.as_secs_f64(),
        rss_kib / 1024,
    ))
}

async fn open(bench: &PushBench) -> anyhow::Result<(Arc<dyn Store>, Option<(String, String)>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let (url, schema) = match &bench.database_url {
        Some(url) => {
            let schema = format!("palaver_bench_{}", uuid::Uuid::new_v4().simple());
            (url.clone(), Some(schema))
        }
        None => (format!("sqlite://{}", dir.path().join("bench.db").display()), None),
    };
    let options = ConnectOptions {
        url: url.clone(),
        max_connections: 16,
        pg_schema: schema.clone(),
        connect_timeout: Duration::from_secs(10),
    };
    let store = palaver_store::connect(&options).await.context("cannot open the bench database")?;
    store.migrate().await?;
    Ok((store, schema.map(|s| (url, s)), dir))
}

/// Drops a bench's scratch schema.
pub(crate) async fn drop_schema(url: &str, schema: &str) {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(url).await {
        // The name is ours: palaver_bench_ + hex.
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

async fn one_run(bench: &PushBench, rate: Option<u32>) -> anyhow::Result<RunResult> {
    let (store, schema, _dir) = open(bench).await?;
    let now = palaver_core::time::now();
    let user = |i: usize| NewUserRecord {
        email: format!("u{i}@bench.example"),
        password_hash: "$argon2id$bench".into(),
        display_name: format!("u{i}"),
        native_languages: vec![],
        learning_languages: vec![],
        role: palaver_core::user::Role::User,
        now,
    };
    let fan = store.create_user(&user(usize::MAX)).await?.id;
    let mut recipients = Vec::with_capacity(bench.events);
    for i in 0..bench.events {
        let id = store.create_user(&user(i)).await?.id;
        let token = NewPushToken { token: format!("bench-{i}"), device_type: DeviceType::Android, web_push: None };
        store.register_push_token(id, &token, 20, now).await?;
        recipients.push(id);
    }

    let stand_in = FcmStandIn::start().await;
    let providers = Providers {
        fcm: Some(Arc::new(Fcm::new(stand_in.config(), http_client(Duration::from_secs(10))?)?)),
        ..Providers::default()
    };
    let service = Arc::new(NotificationService::new(store.clone(), NotificationSettings::default()));
    let bus = EventBus::new(bench.events + 16);
    let shutdown = CancellationToken::new();
    service.spawn_fanout(bus.subscribe(), shutdown.clone());
    let workers = if schema.is_some() { bench.workers.max(1) } else { 1 };
    let outbox = OutboxSettings { poll_interval: Duration::from_millis(200), ..OutboxSettings::default() };
    for _ in 0..workers {
        let worker = OutboxWorker::new(store.clone(), providers.clone(), outbox.clone(), service.outbox_wake());
        tokio::spawn(worker.run(shutdown.clone()));
    }

    let mut published = Vec::with_capacity(bench.events);
    let start = Instant::now();
    for (i, id) in recipients.iter().enumerate() {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
        }
        published.push(Instant::now());
        bus.publish(DomainEvent::Followed { follower_id: fan, followee_id: *id });
    }
    let publish_time = start.elapsed();
    let backlog = store.pending_push_count().await.unwrap_or(-1);
    let delivered_then = stand_in.stand_in.deliveries().len();
    eprintln!("all events published: {delivered_then} pushes delivered, {backlog} queued in the outbox");
    let deadline = Instant::now() + Duration::from_secs(120);
    while stand_in.stand_in.deliveries().len() < bench.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let deliveries = stand_in.stand_in.deliveries();
    let index: HashMap<String, usize> = (0..bench.events).map(|i| (format!("bench-{i}"), i)).collect();
    let mut latencies: Vec<Duration> = deliveries
        .iter()
        .filter_map(|d| index.get(&d.token).map(|i| d.received_at.saturating_duration_since(published[*i])))
        .collect();
    latencies.sort();
    let last = deliveries.iter().map(|d| d.received_at).max().unwrap_or(start);
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    let violations = stand_in.stand_in.violations();
    anyhow::ensure!(
        violations.is_empty(),
        "the stand-in refused requests: {:?}",
        &violations[..violations.len().min(3)]
    );
    store.close().await;
    if let Some((url, schema)) = schema {
        drop_schema(&url, &schema).await;
    }
    Ok(RunResult {
        label: match rate {
            Some(r) => format!("paced at {r} events/s"),
            None => "burst (all events at once)".into(),
        },
        published_per_sec: bench.events as f64 / publish_time.as_secs_f64().max(1e-9),
        pushes_per_sec: deliveries.len() as f64 / last.saturating_duration_since(start).as_secs_f64().max(1e-9),
        p50: pick(0.5),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        delivered: deliveries.len(),
        events: bench.events,
    })
}

/// CPU time (user + system) of this process so far, and its peak RSS in KiB
/// (Linux; zeros elsewhere).
pub(crate) fn process_usage() -> (Duration, u64) {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // Fields 14 and 15 (utime, stime) are 12 and 13 after the name.
            let utime: u64 = after.get(11)?.parse().ok()?;
            let stime: u64 = after.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    let cpu = Duration::from_millis(ticks * 10);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

/// Runs the bench and writes its section.
pub async fn main(bench: PushBench, write: Option<&Path>) -> anyhow::Result<()> {
    let report = run(&bench).await?;
    println!("{report}");
    if let Some(path) = write {
        let section = if bench.database_url.is_some() { "push-postgres" } else { "push-sqlite" };
        crate::bench::write_section(path, section, &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
