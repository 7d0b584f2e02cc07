//! `palaver bench ...`: measurements that write their figures, with the
//! command that produced them, into `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::Config;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time from process start to a ready server (GET /readyz answers 200),
    /// on a fresh SQLite data folder (cold: creates and migrates the database)
    /// and on an existing one (warm).
    Startup {
        /// Runs of each kind.
        #[arg(long, default_value = "15")]
        runs: usize,
        /// Markdown file whose startup section is replaced with the results.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Home-feed latency (page 1 and page 500) and like throughput over HTTP
    /// on a seeded social graph (100k users, 1M moments, ~100 follows each).
    Feed(crate::bench_feed::FeedBench),
    /// Upload throughput and the server's peak memory during uploads of
    /// growing size, with encryption at rest on and off.
    Media(crate::bench_media::MediaBench),
    /// The matchmaking queue: enqueue-to-match latency and operations per
    /// second at 1,000 and 10,000 users, in memory and (with REDIS_URL) in
    /// Redis.
    Match {
        /// Numbers of users, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        users: Vec<usize>,
        /// Repetitions of each measurement (rows give the medians).
        #[arg(long, default_value = "3")]
        runs: usize,
        /// Markdown file whose match section is replaced with the results.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Push outbox throughput and event-to-push latency against a local FCM
    /// stand-in: one paced run at --rate and one burst.
    Push {
        /// Events (each a push to a different user) per run.
        #[arg(long, default_value = "5000")]
        events: usize,
        /// Events per second in the paced run.
        #[arg(long, default_value = "1000")]
        rate: u32,
        /// Outbox workers (PostgreSQL only; SQLite runs one).
        #[arg(long, default_value = "2")]
        workers: usize,
        /// Markdown file whose push section is replaced with the results.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Chat message ingest through the chat service (the path REST and the
    /// WebSocket share): many conversations at once, then one busy group;
    /// checks every room's seqs are 1..n afterwards.
    Chat {
        /// Messages per run.
        #[arg(long, default_value = "20000")]
        messages: usize,
        /// Concurrent senders.
        #[arg(long, default_value = "64")]
        senders: usize,
        /// Conversations in the many-rooms run (at least one per sender).
        #[arg(long, default_value = "256")]
        rooms: usize,
        /// Markdown file whose chat section is replaced with the results.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// WebSocket chat load: N connections over M rooms at a target send
    /// rate against a server process; latency percentiles, throughput, the
    /// server's memory per connection and CPU per delivered message.
    Ws(crate::bench_ws::WsBench),
    /// Voice-room media: real WebRTC client peers in rooms of speakers and
    /// listeners through the SFU; forwarded packets per second and per
    /// CPU-second of the SFU thread, and forwarding latency.
    Sfu(crate::bench_sfu::SfuBench),
    /// Call signaling: real WebSocket clients in many active calls relay
    /// `signal` frames both ways; relay time percentiles and the server's
    /// CPU per relayed frame, over several runs on fresh servers.
    Signal(crate::bench_signal::SignalBench),
}

/// Runs a benchmark.
pub async fn run(command: BenchCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        BenchCommand::Startup { runs, write } => startup(runs, write.as_deref()).await,
        BenchCommand::Feed(bench) => crate::bench_feed::run(bench).await,
        BenchCommand::Media(bench) => crate::bench_media::run(bench).await,
        BenchCommand::Match { users, runs, write } => {
            let bench = crate::bench_match::MatchBench { sizes: users, redis_url: config.redis_url.clone(), runs };
            crate::bench_match::main(bench, write.as_deref()).await
        }
        BenchCommand::Push { events, rate, workers, write } => {
            // PostgreSQL when DATABASE_URL names one (a scratch schema is
            // made and dropped); SQLite in a temporary folder otherwise.
            let database_url = config.database_url.clone().filter(|u| u.starts_with("postgres"));
            let bench = crate::bench_push::PushBench { events, rate, database_url, workers };
            crate::bench_push::main(bench, write.as_deref()).await
        }
        BenchCommand::Chat { messages, senders, rooms, write } => {
            let database_url = config.database_url.clone().filter(|u| u.starts_with("postgres"));
            let bench = crate::bench_chat::ChatBench {
                messages,
                senders,
                rooms,
                database_url,
                codec: palaver_service::chat::BodyCodec::default(),
            };
            crate::bench_chat::main(bench, write.as_deref()).await
        }
        BenchCommand::Ws(bench) => {
            let database_url = config.database_url.clone().filter(|u| u.starts_with("postgres"));
            crate::bench_ws::run(bench, database_url, config.redis_url.clone()).await
        }
        BenchCommand::Sfu(bench) => crate::bench_sfu::run(bench).await,
        BenchCommand::Signal(bench) => {
            let database_url = config.database_url.clone().filter(|u| u.starts_with("postgres"));
            crate::bench_signal::run(bench, database_url, config.redis_url.clone()).await
        }
    }
}

async fn startup(runs: usize, write: Option<&Path>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the palaver executable")?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let mut cold = Vec::with_capacity(runs);
    let mut warm = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        cold.push(start_once(&exe, dir.path(), &client).await?);
        warm.push(start_once(&exe, dir.path(), &client).await?);
    }
    let report = format!(
        "Command: `palaver bench startup --runs {runs}` (release build; each run a fresh process; \
         SQLite in a temporary data folder)\n\n\
         | start | median | p90 | min | max |\n|---|---|---|---|---|\n{}\n{}\n",
        row("cold (new database, migrations run)", &mut cold),
        row("warm (existing database)", &mut warm),
    );
    println!("{report}");
    if let Some(path) = write {
        write_section(path, "startup", &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}

async fn start_once(exe: &Path, data_dir: &Path, client: &reqwest::Client) -> anyhow::Result<Duration> {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let started = Instant::now();
    let mut child = tokio::process::Command::new(exe)
        .env_clear()
        .env("PALAVER_DATA_DIR", data_dir)
        .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALAVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start palaver")?;
    let url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = started + Duration::from_secs(30);
    let elapsed = loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            anyhow::bail!("palaver did not become ready within 30 s");
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("palaver exited during start-up: {status}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    child.kill().await.ok();
    Ok(elapsed)
}

fn row(name: &str, samples: &mut [Duration]) -> String {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    format!("| {name} | {} | {} | {} | {} |", ms(pick(0.5)), ms(pick(0.9)), ms(pick(0.0)), ms(pick(1.0)))
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`
/// in a markdown file (appending the section if it is missing).
pub fn write_section(path: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let section = format!("{open}\n{body}\n{close}");
    let updated = match (text.find(&open), text.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{}{}", &text[..start], section, &text[end + close.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))
}
