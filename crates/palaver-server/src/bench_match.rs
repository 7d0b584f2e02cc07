//! `palaver bench match`: the matchmaking queue under load, in memory and
//! (when `REDIS_URL` is set) in Redis, measured at the matcher (the part
//! every enqueue goes through; turning a pairing into a call is one store
//! transaction, measured with the other store benchmarks).
//!
//! Three runs per queue and size N:
//! - burst: N users, spread over 20 language pairs (each user native in one
//!   language of a pair and learning the other) and 3 levels, enqueued by 32
//!   concurrent clients; latency is from a user's enqueue to their match
//!   (their own enqueue pairing them, or a later arrival's).
//! - deep queue: N tickets that match nobody wait; then 2,000 users of the
//!   20 pairs arrive; latency of each enqueue call (the cost of one queue
//!   operation with N waiting).
//! - operations: N enqueues and N leaves of tickets that match nobody, 32
//!   clients; operations per second.
//!
//! Each is repeated `runs` times; a row gives the median of each figure
//! over the runs (and the range of p95).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palaver_core::call::CallType;
use palaver_core::user::Level;
use palaver_rtc::{MatchRules, Matcher, MemoryMatcher, RedisMatcher, Ticket};
use rand::{Rng as _, SeedableRng as _};

/// Clients enqueueing at once.
const CLIENTS: usize = 32;
/// Arrivals measured in the deep-queue run.
const ARRIVALS: usize = 2_000;
/// Forty languages: twenty pairs.
const LANGS: [&str; 40] = [
    "en", "es", "fr", "de", "it", "pt", "ja", "zh", "ko", "ru", "ar", "hi", "tr", "nl", "sv", "pl", "el", "he", "id",
    "vi", "th", "uk", "cs", "ro", "hu", "fi", "da", "no", "bg", "hr", "sr", "sk", "sl", "lt", "lv", "et", "fa", "ms",
    "bn", "ta",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct MatchBench {
    /// Queue sizes.
    pub sizes: Vec<usize>,
    /// Redis URL, to measure the Redis queue too.
    pub redis_url: Option<String>,
    /// Repetitions of each run; rows give medians.
    pub runs: usize,
}

fn pair_ticket(rng: &mut rand::rngs::StdRng, user: i64, now_ms: i64) -> Ticket {
    let pair = rng.random_range(0..20);
    let (a, b) = (LANGS[2 * pair], LANGS[2 * pair + 1]);
    let (native, learns) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
    let level = [Level::Beginner, Level::Intermediate, Level::Advanced][rng.random_range(0..3)];
    Ticket {
        user_id: user,
        call_type: CallType::Voice,
        language: learns.into(),
        level,
        natives: vec![native.into()],
        excluded: Vec::new(),
        enqueued_ms: now_ms,
    }
}

/// A ticket nobody matches: its languages are its own.
fn lonely_ticket(user: i64, now_ms: i64) -> Ticket {
    Ticket {
        user_id: user,
        call_type: CallType::Video,
        language: format!("x{user}"),
        level: Level::Beginner,
        natives: vec![format!("y{user}")],
        excluded: Vec::new(),
        enqueued_ms: now_ms,
    }
}

fn now_ms() -> i64 {
    palaver_core::time::now().timestamp_millis()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

struct Row {
    run: String,
    latencies: Vec<Duration>,
    ops: usize,
    wall: Duration,
    note: String,
}

/// One run's figures.
struct Figures {
    samples: usize,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    ops_per_sec: f64,
}

impl Row {
    fn figures(&mut self) -> Figures {
        self.latencies.sort_unstable();
        let l = &self.latencies;
        Figures {
            samples: l.len(),
            p50: percentile(l, 0.5),
            p95: percentile(l, 0.95),
            p99: percentile(l, 0.99),
            ops_per_sec: self.ops as f64 / self.wall.as_secs_f64().max(1e-9),
        }
    }
}

/// One table row from repeated runs of the same measurement: the median
/// of each figure, and the range of p95 when there are several runs.
fn median_row(mut rows: Vec<Row>) -> String {
    let figures: Vec<Figures> = rows.iter_mut().map(Row::figures).collect();
    fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    let p95s: Vec<Duration> = figures.iter().map(|f| f.p95).collect();
    let spread = match (p95s.iter().min(), p95s.iter().max()) {
        (Some(lo), Some(hi)) if rows.len() > 1 => {
            format!("; p95 over {} runs {:.2}–{:.2} ms", rows.len(), lo.as_secs_f64() * 1e3, hi.as_secs_f64() * 1e3)
        }
        _ => String::new(),
    };
    let last = rows.last().map(|r| (r.run.clone(), r.note.clone())).unwrap_or_default();
    format!(
        "| {} | {} | {} | {} | {} | {:.0} | {}{spread} |",
        last.0,
        median(figures.iter().map(|f| f.samples).collect()),
        ms(median(figures.iter().map(|f| f.p50).collect())),
        ms(median(p95s.clone())),
        ms(median(figures.iter().map(|f| f.p99).collect())),
        median(figures.iter().map(|f| f.ops_per_sec).collect()),
        last.1,
    )
}

async fn burst(matcher: Arc<dyn Matcher>, n: usize) -> anyhow::Result<Row> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let base = 1_000_000_000_i64;
    let tickets: Vec<Ticket> = (0..n).map(|i| pair_ticket(&mut rng, base + i as i64, now_ms())).collect();
    let queue = Arc::new(Mutex::new(tickets));
    let starts: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let begin = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (queue, starts, latencies, matcher) = (queue.clone(), starts.clone(), latencies.clone(), matcher.clone());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(mut ticket) = next else { return Ok::<(), anyhow::Error>(()) };
                let start = Instant::now();
                if let Ok(mut s) = starts.lock() {
                    s.insert(ticket.user_id, start);
                }
                ticket.enqueued_ms = now_ms();
                if let Some(p) = matcher.enqueue(ticket, now_ms()).await? {
                    let done = Instant::now();
                    let (Ok(s), Ok(mut l)) = (starts.lock(), latencies.lock()) else { continue };
                    for user in [p.caller.user_id, p.callee.user_id] {
                        if let Some(at) = s.get(&user) {
                            l.push(done - *at);
                        }
                    }
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let wall = begin.elapsed();
    let waiting = matcher.waiting().await?.len();
    for t in matcher.waiting().await? {
        matcher.leave(t.user_id).await?;
    }
    let latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(Row {
        run: format!("burst, {n} users"),
        latencies,
        ops: n,
        wall,
        note: format!("{waiting} left waiting (no compatible partner)"),
    })
}

async fn deep(matcher: Arc<dyn Matcher>, n: usize) -> anyhow::Result<Row> {
    let base = 2_000_000_000_i64;
    for i in 0..n {
        matcher.enqueue(lonely_ticket(base + i as i64, now_ms()), now_ms()).await?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut latencies = Vec::with_capacity(ARRIVALS);
    let mut matched = 0;
    let begin = Instant::now();
    for i in 0..ARRIVALS {
        let ticket = pair_ticket(&mut rng, 3_000_000_000 + i as i64, now_ms());
        let start = Instant::now();
        if matcher.enqueue(ticket, now_ms()).await?.is_some() {
            matched += 2;
        }
        latencies.push(start.elapsed());
    }
    let wall = begin.elapsed();
    for t in matcher.waiting().await? {
        matcher.leave(t.user_id).await?;
    }
    Ok(Row {
        run: format!("{n} waiting, {ARRIVALS} arrivals"),
        latencies,
        ops: ARRIVALS,
        wall,
        note: format!("enqueue call latency; {matched} of {ARRIVALS} matched"),
    })
}

async fn operations(matcher: Arc<dyn Matcher>, n: usize) -> anyhow::Result<Row> {
    let base = 4_000_000_000_i64;
    let users: Arc<Mutex<Vec<i64>>> = Arc::new(Mutex::new((0..n as i64).map(|i| base + i).collect()));
    let begin = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (users, matcher) = (users.clone(), matcher.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let next = users.lock().ok().and_then(|mut u| u.pop());
                let Some(user) = next else { break };
                let start = Instant::now();
                matcher.enqueue(lonely_ticket(user, now_ms()), now_ms()).await?;
                latencies.push(start.elapsed());
                mine.push(user);
            }
            for user in mine {
                let start = Instant::now();
                matcher.leave(user).await?;
                latencies.push(start.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r??);
    }
    let wall = begin.elapsed();
    Ok(Row { run: format!("{n} enqueues + {n} leaves"), latencies, ops: 2 * n, wall, note: "per operation".into() })
}

async fn redis_used_memory(conn: &mut redis::aio::ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await.unwrap_or_default();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Memory per waiting ticket: N lonely tickets in, measured, out.
async fn footprint(
    matcher: Arc<dyn Matcher>,
    n: usize,
    redis: Option<&mut redis::aio::ConnectionManager>,
) -> anyhow::Result<String> {
    let base = 5_000_000_000_i64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let before_rss = rss_kib();
    let mut redis = redis;
    let before_redis = match redis.as_deref_mut() {
        Some(c) => redis_used_memory(c).await,
        None => 0,
    };
    for i in 0..n {
        // Realistic tickets that pair with nobody: each learns a language
        // of its own.
        let mut t = pair_ticket(&mut rng, base + i as i64, now_ms());
        t.language = format!("q{i}");
        matcher.enqueue(t, now_ms()).await?;
    }
    let text = match redis {
        Some(c) => {
            let used = redis_used_memory(c).await.saturating_sub(before_redis);
            format!(
                "{n} waiting tickets use {:.1} MiB of Redis memory ({} bytes each)",
                used as f64 / 1048576.0,
                used / n.max(1) as u64
            )
        }
        None => {
            let used = rss_kib().saturating_sub(before_rss) * 1024;
            format!(
                "{n} waiting tickets grow the process by {:.1} MiB ({} bytes each)",
                used as f64 / 1048576.0,
                used / n.max(1) as u64
            )
        }
    };
    for t in matcher.waiting().await? {
        matcher.leave(t.user_id).await?;
    }
    Ok(text)
}

async fn one_queue(
    name: &str,
    matcher: Arc<dyn Matcher>,
    sizes: &[usize],
    runs: usize,
    mut redis: Option<redis::aio::ConnectionManager>,
) -> anyhow::Result<String> {
    let mut out =
        format!("{name}:\n\n| run | samples | p50 | p95 | p99 | ops/s | note |\n|---|---|---|---|---|---|---|\n");
    // Memory first, on a fresh heap: the allocator keeps what later runs
    // free, so a process's growth is only meaningful before them.
    let mut notes = Vec::new();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for &n in sizes {
        if redis.is_some() || n == largest {
            notes.push(footprint(matcher.clone(), n, redis.as_mut()).await?);
        }
    }
    for &n in sizes {
        eprintln!("{name}: {n} users");
        let (mut bursts, mut deeps, mut ops) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs.max(1) {
            bursts.push(burst(matcher.clone(), n).await?);
            deeps.push(deep(matcher.clone(), n).await?);
            ops.push(operations(matcher.clone(), n).await?);
        }
        for rows in [bursts, deeps, ops] {
            out.push_str(&median_row(rows));
            out.push('\n');
        }
    }
    out.push('\n');
    for note in notes {
        out.push_str(&format!("- {note}\n"));
    }
    Ok(out)
}

/// Runs the bench; returns the report.
pub async fn run(bench: &MatchBench) -> anyhow::Result<String> {
    let rules = MatchRules::default();
    let sizes = bench.sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut report = format!(
        "Command: `{}palaver bench match --users {sizes} --runs {}` ({}; the matcher alone, {CLIENTS} concurrent clients in the same process; 20 language pairs x 3 levels; each figure the median of {} runs)\n\n",
        if bench.redis_url.is_some() { "REDIS_URL=redis://… " } else { "" },
        bench.runs,
        if cfg!(debug_assertions) {
            "debug build: dependencies optimised, Palaver's crates not"
        } else {
            "release build"
        },
        bench.runs,
    );
    report.push_str(&one_queue("Memory", Arc::new(MemoryMatcher::new(rules)), &bench.sizes, bench.runs, None).await?);
    if let Some(url) = &bench.redis_url {
        let client = redis::Client::open(url.as_str())?;
        let conn = client.get_connection_manager().await?;
        let prefix = format!("palaver-bench-{}", uuid::Uuid::new_v4().simple());
        let matcher = Arc::new(RedisMatcher::new(conn.clone(), &prefix, rules));
        report.push('\n');
        report
            .push_str(&one_queue("Redis (local server)", matcher, &bench.sizes, bench.runs, Some(conn.clone())).await?);
        let mut conn = conn;
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{{prefix}:match}}*")).query_async(&mut conn).await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
        }
    }
    Ok(report)
}

/// Runs the bench and writes its section.
pub async fn main(bench: MatchBench, write: Option<&Path>) -> anyhow::Result<()> {
    let report = run(&bench).await?;
    println!("{report}");
    if let Some(path) = write {
        crate::bench::write_section(path, "match", &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
