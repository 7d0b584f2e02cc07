//! `palaver bench feed`: seeds a large social graph (by default 100k users,
//! 1M moments, ~100 follows per user) with bulk SQL, starts a real
//! `palaver serve` process on it, and measures over HTTP the home feed's
//! page latency (page 1 and page 500) and like throughput, plus the
//! server process's CPU time and memory.
//!
//! Seeding is bulk SQL written for the job (PostgreSQL `generate_series`,
//! SQLite recursive CTEs, each in one transaction); it bypasses the services
//! on purpose and then recomputes the profile counters from the rows.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use palaver_store::{ConnectOptions, FeedKind, PageRequest};
use rand::Rng as _;
use secrecy::SecretString;
use serde_json::{Value, json};

/// Which database to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// PostgreSQL (a database of its own, dropped and created again).
    Postgres,
    /// SQLite (a file in a temporary folder).
    Sqlite,
}

/// `palaver bench feed` settings.
#[derive(Debug, Clone, Args)]
pub struct FeedBench {
    /// Database to run on.
    #[arg(long, value_enum, default_value = "postgres")]
    pub backend: BenchBackend,
    /// PostgreSQL server URL of a maintenance database; the benchmark creates
    /// (and first drops) the database `palaver_bench` on that server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub pg_url: String,
    /// Users to seed.
    #[arg(long, default_value = "100000")]
    pub users: i64,
    /// Moments to seed (60% public, 30% followers-only, 10% private).
    #[arg(long, default_value = "1000000")]
    pub moments: i64,
    /// Follows per user.
    #[arg(long, default_value = "100")]
    pub follows: i64,
    /// Distinct viewers whose feeds are read.
    #[arg(long, default_value = "50")]
    pub viewers: i64,
    /// Timed requests per measured page (spread over the viewers).
    #[arg(long, default_value = "500")]
    pub samples: usize,
    /// Concurrent clients in the like-throughput run.
    #[arg(long, default_value = "16")]
    pub like_clients: usize,
    /// Length of the like-throughput run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub like_duration: Duration,
    /// Markdown file whose `feed-<backend>` section is replaced with the results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

const PAGE: i64 = 20;
const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
const PASSWORD: &str = "bench password";

/// Runs the benchmark.
pub async fn run(bench: FeedBench) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = match bench.backend {
        BenchBackend::Sqlite => format!("sqlite://{}", dir.path().join("bench.db").display()),
        BenchBackend::Postgres => fresh_pg_database(&bench.pg_url).await?,
    };
    let options = ConnectOptions {
        url: url.clone(),
        max_connections: 8,
        pg_schema: None,
        connect_timeout: Duration::from_secs(30),
    };
    let store = palaver_store::connect(&options).await?;
    store.migrate().await?;
    let seeded = Instant::now();
    match bench.backend {
        BenchBackend::Postgres => seed_pg(&url, &bench).await?,
        BenchBackend::Sqlite => seed_sqlite(&url, &bench).await?,
    }
    let seed_time = seeded.elapsed();
    println!("seeded in {:.1} s", seed_time.as_secs_f64());

    // Viewers get a real password so they can log in over HTTP.
    let hasher = palaver_service::PasswordHasher::new(palaver_service::PasswordParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    })?;
    let hash = hasher.hash(SecretString::from(PASSWORD.to_owned())).await?;
    let viewers: Vec<i64> = (1..=bench.viewers).map(|i| i * (bench.users / bench.viewers).max(1)).collect();
    for &id in &viewers {
        store.set_password_hash(id, &hash, palaver_core::time::now()).await?;
    }
    // Page 500's cursor per viewer: the last id of page 499, walked through the store.
    let mut cursors = Vec::new();
    for &viewer in viewers.iter().take(10) {
        let mut cursor = None;
        for _ in 0..499 {
            let page = store.feed(viewer, FeedKind::Home, PageRequest { cursor, limit: PAGE }).await?;
            cursor = page.last().map(|m| m.id);
        }
        cursors.push((viewer, cursor.context("feed shorter than 500 pages")?));
    }
    store.close().await;

    let server = Server::start(&url, dir.path()).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut tokens = Vec::new();
    for &id in &viewers {
        let body: Value = client
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({"email": format!("u{id}@bench.example"), "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tokens.push((id, body["access_token"].as_str().context("no access token")?.to_owned()));
    }
    let token_of = |id: i64| tokens.iter().find(|(v, _)| *v == id).map(|(_, t)| t.clone()).unwrap_or_default();

    // Warm-up, then page 1 and page 500, interleaved so both see the same conditions.
    let load_before = load_average();
    let cpu_before = server.cpu_time()?;
    let mut page1 = Vec::new();
    let mut page500 = Vec::new();
    for round in 0..bench.samples + 20 {
        let (viewer, token) = &tokens[round % tokens.len()];
        let t = Instant::now();
        let items = get_feed(&client, &server, token, None).await?;
        let first = t.elapsed();
        anyhow::ensure!(items == PAGE as usize, "viewer {viewer}: page 1 has {items} items");
        let (deep_viewer, cursor) = cursors[round % cursors.len()];
        let t = Instant::now();
        let items = get_feed(&client, &server, &token_of(deep_viewer), Some(cursor)).await?;
        let deep = t.elapsed();
        anyhow::ensure!(items == PAGE as usize, "page 500 has {items} items");
        if round >= 20 {
            page1.push(first);
            page500.push(deep);
        }
    }
    let feed_cpu = server.cpu_time()? - cpu_before;
    let load_after = load_average();
    let feed_requests = 2 * bench.samples;

    // Like throughput: clients like and unlike random public moments.
    let done = Arc::new(AtomicU64::new(0));
    let cpu_before = server.cpu_time()?;
    let start = Instant::now();
    let mut workers = Vec::new();
    for i in 0..bench.like_clients {
        let (client, done) = (client.clone(), done.clone());
        let token = tokens[i % tokens.len()].1.clone();
        let base = server.url("/api/v1/moments");
        let (moments, duration) = (bench.moments, bench.like_duration);
        workers.push(tokio::spawn(async move {
            let until = Instant::now() + duration;
            while Instant::now() < until {
                // Ids whose last digit is 0-5 are public (see the seeding).
                let id = rand::rng().random_range(1..=moments / 10) * 10;
                for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
                    let r = client.request(method, format!("{base}/{id}/like")).bearer_auth(&token).send().await?;
                    anyhow::ensure!(r.status().is_success(), "like failed: {}", r.status());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for w in workers {
        w.await??;
    }
    let like_secs = start.elapsed().as_secs_f64();
    let likes = done.load(Ordering::Relaxed);
    let like_cpu = server.cpu_time()? - cpu_before;
    let (rss, peak) = server.memory()?;
    drop(server);
    let exact = check_like_counters(&url).await?;

    let backend = match bench.backend {
        BenchBackend::Postgres => "postgres",
        BenchBackend::Sqlite => "sqlite",
    };
    let report = format!(
        "Command: `palaver bench feed --backend {backend} --users {} --moments {} --follows {} --samples {} \
         --like-clients {} --like-duration {}s` (release build; server and load generator on the same 2 cores)\n\n\
         Seeded {} users, {} moments, {} follows per user in {:.0} s.\n\n\
         | home feed, {PAGE} items | p50 | p90 | p99 | max |\n|---|---|---|---|---|\n{}\n{}\n\n\
         Server CPU per feed request: {:.2} ms.\n\n\
         Likes (PUT and DELETE alternating, {} clients, {:.0} s): **{:.0} requests/s**, server CPU {:.2} ms per \
         request; afterwards every moment's likes_count equals its like rows: {exact}.\n\n\
         Server memory: RSS {} MiB at the end, peak {} MiB. Machine load average (1 min) before and after the \
         feed timings: {load_before} and {load_after} (other work shares these 2 cores).\n",
        bench.users,
        bench.moments,
        bench.follows,
        bench.samples,
        bench.like_clients,
        bench.like_duration.as_secs(),
        bench.users,
        bench.moments,
        bench.follows,
        seed_time.as_secs_f64(),
        row("page 1", &mut page1),
        row("page 500", &mut page500),
        feed_cpu.as_secs_f64() * 1000.0 / feed_requests as f64,
        bench.like_clients,
        like_secs,
        likes as f64 / like_secs,
        like_cpu.as_secs_f64() * 1000.0 / likes.max(1) as f64,
        rss / 1024,
        peak / 1024,
    );
    println!("{report}");
    if let Some(path) = bench.write {
        crate::bench::write_section(&path, &format!("feed-{backend}"), &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// The 1-minute load average, to show how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

async fn get_feed(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    cursor: Option<i64>,
) -> anyhow::Result<usize> {
    let mut url = format!("{}?feed=home&limit={PAGE}", server.url("/api/v1/moments"));
    if let Some(c) = cursor {
        url.push_str(&format!("&cursor={c}"));
    }
    let body: Value = client.get(url).bearer_auth(token).send().await?.error_for_status()?.json().await?;
    Ok(body["items"].as_array().map_or(0, Vec::len))
}

fn row(name: &str, samples: &mut [Duration]) -> String {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    format!("| {name} | {} | {} | {} | {} |", ms(pick(0.5)), ms(pick(0.9)), ms(pick(0.99)), ms(pick(1.0)))
}

/// Creates the `palaver_bench` database afresh and returns its URL.
async fn fresh_pg_database(admin_url: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url).await.context("cannot connect to --pg-url")?;
    sqlx::query("DROP DATABASE IF EXISTS palaver_bench WITH (FORCE)").execute(&mut conn).await?;
    sqlx::query("CREATE DATABASE palaver_bench").execute(&mut conn).await?;
    conn.close().await?;
    let (base, _) = admin_url.rsplit_once('/').context("--pg-url must name a database")?;
    Ok(format!("{base}/palaver_bench"))
}

/// A seeding step: SQL and what to bind (`None` stands for the timestamp).
type Step = (&'static str, Vec<Option<i64>>);

async fn seed_pg(url: &str, bench: &FeedBench) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let (users, moments, follows) = (Some(bench.users), Some(bench.moments), Some(bench.follows));
    let steps: Vec<Step> = vec![
        (
            "INSERT INTO users (email, password_hash, display_name, created_at, updated_at) \
             SELECT 'u' || g || '@bench.example', 'x', 'User ' || g, $1, $1 FROM generate_series(1, $2::bigint) g",
            vec![None, users],
        ),
        // Moment g belongs to user 1 + g % users; its last digit sets visibility.
        (
            "INSERT INTO moments (user_id, content, visibility, created_at, updated_at) \
             SELECT 1 + g % $2::bigint, 'Moment number ' || g || ': practising my Spanish today', \
             CASE WHEN g % 10 < 6 THEN 'public' WHEN g % 10 < 9 THEN 'followers' ELSE 'private' END, $1, $1 \
             FROM generate_series(1, $3::bigint) g",
            vec![None, users, moments],
        ),
        // User u follows users u + 997k (mod users), k = 1..follows: distinct, never u.
        (
            "INSERT INTO follows (follower_id, following_id, created_at) \
             SELECT u, 1 + (u + 997 * k) % $2::bigint, $1 FROM generate_series(1, $2::bigint) u, \
             generate_series(1, $3::bigint) k WHERE 1 + (u + 997 * k) % $2::bigint <> u ON CONFLICT DO NOTHING",
            vec![None, users, follows],
        ),
        // A few blocks, so the block filters have rows to look at.
        (
            "INSERT INTO blocks (blocker_id, blocked_id, created_at) \
             SELECT u, 1 + (u * 7919) % $2::bigint, $1 FROM generate_series(1, $2::bigint, 97) u \
             WHERE 1 + (u * 7919) % $2::bigint <> u ON CONFLICT DO NOTHING",
            vec![None, users],
        ),
        (
            "UPDATE users SET following_count = c FROM (SELECT follower_id, count(*) c FROM follows GROUP BY 1) f \
             WHERE users.id = f.follower_id",
            vec![],
        ),
        (
            "UPDATE users SET followers_count = c FROM (SELECT following_id, count(*) c FROM follows GROUP BY 1) f \
             WHERE users.id = f.following_id",
            vec![],
        ),
        (
            "UPDATE users SET moments_count = c FROM (SELECT user_id, count(*) c FROM moments GROUP BY 1) m \
             WHERE users.id = m.user_id",
            vec![],
        ),
    ];
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query("SET synchronous_commit = off").execute(&mut conn).await?;
    let now = palaver_core::time::now();
    for (i, (sql, binds)) in steps.into_iter().enumerate() {
        let t = Instant::now();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                None => query.bind(now),
                Some(n) => query.bind(n),
            };
        }
        query.execute(&mut conn).await.with_context(|| format!("seeding step {i}"))?;
        println!("seed step {i}: {:.1} s", t.elapsed().as_secs_f64());
    }
    sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// The same seeding on SQLite, with recursive CTEs for the series.
async fn seed_sqlite(url: &str, bench: &FeedBench) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let (users, moments, follows) = (Some(bench.users), Some(bench.moments), Some(bench.follows));
    let steps: Vec<Step> = vec![
        (
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $2) \
             INSERT INTO users (email, password_hash, display_name, created_at, updated_at) \
             SELECT 'u' || x || '@bench.example', 'x', 'User ' || x, $1, $1 FROM g",
            vec![None, users],
        ),
        (
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < $3) \
             INSERT INTO moments (user_id, content, visibility, created_at, updated_at) \
             SELECT 1 + x % $2, 'Moment number ' || x || ': practising my Spanish today', \
             CASE WHEN x % 10 < 6 THEN 'public' WHEN x % 10 < 9 THEN 'followers' ELSE 'private' END, $1, $1 FROM g",
            vec![None, users, moments],
        ),
        (
            "WITH RECURSIVE u(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM u WHERE x < $2), \
             k(y) AS (SELECT 1 UNION ALL SELECT y + 1 FROM k WHERE y < $3) \
             INSERT OR IGNORE INTO follows (follower_id, following_id, created_at) \
             SELECT x, 1 + (x + 997 * y) % $2, $1 FROM u, k WHERE 1 + (x + 997 * y) % $2 <> x",
            vec![None, users, follows],
        ),
        (
            "WITH RECURSIVE u(x) AS (SELECT 1 UNION ALL SELECT x + 97 FROM u WHERE x + 97 <= $2) \
             INSERT OR IGNORE INTO blocks (blocker_id, blocked_id, created_at) \
             SELECT x, 1 + (x * 7919) % $2, $1 FROM u WHERE 1 + (x * 7919) % $2 <> x",
            vec![None, users],
        ),
        (
            "UPDATE users SET following_count = f.c FROM (SELECT follower_id, count(*) AS c FROM follows \
             GROUP BY follower_id) AS f WHERE users.id = f.follower_id",
            vec![],
        ),
        (
            "UPDATE users SET followers_count = f.c FROM (SELECT following_id, count(*) AS c FROM follows \
             GROUP BY following_id) AS f WHERE users.id = f.following_id",
            vec![],
        ),
        (
            "UPDATE users SET moments_count = m.c FROM (SELECT user_id, count(*) AS c FROM moments \
             GROUP BY user_id) AS m WHERE users.id = m.user_id",
            vec![],
        ),
    ];
    let mut conn = sqlx::SqliteConnection::connect(url).await?;
    let now = palaver_core::time::now();
    for (i, (sql, binds)) in steps.into_iter().enumerate() {
        let t = Instant::now();
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = match bind {
                None => query.bind(now),
                Some(n) => query.bind(n),
            };
        }
        query.execute(&mut conn).await.with_context(|| format!("seeding step {i}"))?;
        println!("seed step {i}: {:.1} s", t.elapsed().as_secs_f64());
    }
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// True when every moment's likes_count equals its like rows.
async fn check_like_counters(url: &str) -> anyhow::Result<bool> {
    let sql = "SELECT COUNT(*) FROM moments m LEFT JOIN (SELECT moment_id, COUNT(*) AS c FROM moment_likes \
               GROUP BY moment_id) l ON l.moment_id = m.id WHERE m.likes_count <> COALESCE(l.c, 0)";
    use sqlx::Connection as _;
    let wrong: i64 = if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await?
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar(sql).fetch_one(&mut conn).await?
    };
    Ok(wrong == 0)
}

/// A `palaver serve` child process on the bench database.
struct Server {
    child: tokio::process::Child,
    port: u16,
}

impl Server {
    async fn start(database_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the palaver executable")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(exe)
            .env_clear()
            .env("DATABASE_URL", database_url)
            .env("PALAVER_DATA_DIR", data_dir)
            .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("PALAVER_JWT_SECRET", JWT_SECRET)
            .env("PALAVER_LOG", "warn")
            .env("PALAVER_RATE_LOGIN", "100000/1m")
            .env("PALAVER_RATE_LIKES", "10000000/1m")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start palaver serve")?;
        let server = Self { child, port };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(server.url("/readyz")).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            anyhow::ensure!(Instant::now() < deadline, "palaver serve did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("server exited")
    }

    /// User + system CPU time of the server process (Linux, USER_HZ = 100).
    fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // Fields 14 and 15 of /proc/pid/stat: utime, stime (11 and 12 after the name).
        Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
    }

    /// Resident and peak resident memory of the server, in KiB.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }
}
