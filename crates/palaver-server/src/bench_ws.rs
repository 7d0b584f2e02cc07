//! `palaver bench ws`: a WebSocket load generator against a real server
//! process.
//!
//! Starts `palaver` (this executable) as a child on a fresh database (SQLite
//! in a temporary folder, or PostgreSQL + Redis when `DATABASE_URL` and
//! `REDIS_URL` are set), registers one user per connection, spreads them
//! over group chat rooms, opens every connection (from several 127.0.0.x
//! source addresses, so one source address's ephemeral ports are not the
//! limit) and sends chat messages at a target rate from random members.
//! Each message carries its send time; every receiver records the
//! end-to-end latency (sender's `send` frame to the receiver reading the
//! event). The server's resident memory (`VmRSS` in `/proc/<pid>/status`)
//! is read before and after the connections open, and its CPU time
//! (`/proc/<pid>/stat`) over the measured window.
//!
//! The client runs in this process on the same machine, so CPU figures of
//! the machine as a whole are shared between the two.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_realtime::tokio_tungstenite::tungstenite::Message;
use palaver_realtime::tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use palaver_realtime::tokio_tungstenite::{WebSocketStream, client_async_with_config};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WsProtocol {
    /// `/ws`: subscribe to `chat:{id}`, `send` ops.
    Native,
    /// The original design's `/ws/chat/{room_id}/`.
    Legacy,
}

/// `palaver bench ws` options.
#[derive(Debug, Clone, clap::Args)]
pub struct WsBench {
    /// WebSocket connections (one user each).
    #[arg(long, default_value = "1000")]
    pub connections: usize,
    /// Group rooms the users are spread over (at most 256 members each).
    #[arg(long, default_value = "20")]
    pub rooms: usize,
    /// Messages sent per second, in total; 0 holds the connections idle
    /// for --duration (memory per connection, pings answered).
    #[arg(long, default_value = "200")]
    pub rate: u32,
    /// Size of each message's content in bytes (its send time and sender
    /// first, padded).
    #[arg(long, default_value = "100")]
    pub size: usize,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Protocol.
    #[arg(long, value_enum, default_value = "native")]
    pub protocol: WsProtocol,
    /// Source addresses 127.0.0.1 to 127.0.0.N to connect from.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u8).range(1..=250))]
    pub sources: u8,
    /// Markdown file whose `ws-<backend>-<protocol>-<connections>[-idle]`
    /// section is replaced with the results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

struct Shared {
    start: Instant,
    /// Client connections still open.
    open: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    errors: AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
    latencies: std::sync::Mutex<Vec<u32>>,
}

/// Runs the benchmark; `database_url` and `redis_url` pick the backend.
pub async fn run(bench: WsBench, database_url: Option<String>, redis_url: Option<String>) -> anyhow::Result<()> {
    if bench.rooms == 0 || bench.connections < 2 * bench.rooms {
        bail!("need at least two connections per room");
    }
    if bench.connections.div_ceil(bench.rooms) > 256 {
        bail!("at most 256 members per room: raise --rooms");
    }
    let exe = std::env::current_exe().context("cannot find the palaver executable")?;
    let dir = tempfile::tempdir()?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let prefix = format!("palaver-bench-{}", uuid::Uuid::new_v4().simple());
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.env_clear()
        .env("PALAVER_DATA_DIR", dir.path())
        .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALAVER_LOG", "warn")
        .env("PALAVER_ARGON2_MEMORY_KIB", "256")
        .env("PALAVER_ARGON2_ITERATIONS", "1")
        .env("PALAVER_RATE_REGISTER", "1000000/1m")
        .env("PALAVER_RATE_LOGIN", "1000000/1m")
        .env("PALAVER_RATE_MESSAGES", "1000000/1m")
        .env("PALAVER_WS_RATE", "100000/1s")
        .env("PALAVER_WS_MAX_CONNECTIONS", (bench.connections + 100).to_string())
        .env("PALAVER_DB_MAX_CONNECTIONS", "32")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // PostgreSQL: a fresh database of the bench's own next to the one
    // named, so runs never meet each other's users or the tests' data.
    let database_url = match database_url {
        Some(url) => Some(fresh_pg_database(&url).await?),
        None => None,
    };
    let backend = match (&database_url, &redis_url) {
        (Some(db), Some(redis)) => {
            cmd.env("DATABASE_URL", db).env("REDIS_URL", redis).env("PALAVER_REDIS_PREFIX", &prefix);
            "PostgreSQL + Redis"
        }
        (Some(db), None) => {
            cmd.env("DATABASE_URL", db);
            "PostgreSQL, in-memory broker"
        }
        _ => "SQLite, in-memory broker",
    };
    let mut child = cmd.spawn().context("cannot start palaver")?;
    let pid = child.id().context("no server pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    wait_ready(&http, &base).await?;
    let rss_idle = rss_kib(pid)?;

    // Users and rooms.
    let t = Instant::now();
    let users = register_all(&http, &base, bench.connections).await?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); bench.rooms];
    for i in 0..users.len() {
        members[i % bench.rooms].push(i);
    }
    let mut rooms = Vec::with_capacity(bench.rooms);
    for (r, list) in members.iter().enumerate() {
        let creator = &users[list[0]];
        let ids: Vec<i64> = list[1..].iter().map(|&i| users[i].0).collect();
        let body: Value = http
            .post(format!("{base}/api/v1/chat/rooms"))
            .bearer_auth(&creator.1)
            .json(&json!({"room_type": "group", "participant_ids": ids, "name": format!("bench {r}")}))
            .send()
            .await?
            .error_for_status()
            .context("cannot create a chat room")?
            .json()
            .await?;
        rooms.push(body["id"].as_i64().context("room without id")?);
    }
    eprintln!("{} users and {} rooms in {:.1} s", users.len(), rooms.len(), t.elapsed().as_secs_f64());
    // The baseline for memory per connection: after the users and rooms
    // exist (their caches, the registration's argon2 buffers), before any
    // socket opens.
    let rss_before = rss_kib(pid)?;

    // Connections.
    let shared = Arc::new(Shared {
        start: Instant::now(),
        open: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        received: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: std::sync::atomic::AtomicBool::new(false),
        latencies: std::sync::Mutex::new(Vec::new()),
    });
    let t = Instant::now();
    let mut senders = Vec::with_capacity(users.len());
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(users.len());
    for (i, (_, token)) in users.iter().enumerate() {
        let room = rooms[i % bench.rooms];
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(bench.sources)) as u8));
        let path = match bench.protocol {
            WsProtocol::Native => format!("/ws?token={token}"),
            WsProtocol::Legacy => format!("/ws/chat/{room}/?token={token}"),
        };
        let socket = connect_from(source, port, &path).await.with_context(|| format!("connection {i}"))?;
        let (tx, rx) = mpsc::channel::<u64>(64);
        senders.push(tx);
        shared.open.fetch_add(1, Ordering::Relaxed);
        let client = Client { me: i.to_string(), protocol: bench.protocol, room, size: bench.size };
        tokio::spawn(client.run(socket, rx, shared.clone(), ready_tx.clone()));
    }
    for _ in 0..users.len() {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.context("subscriptions not ready")?;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    // Let the server settle (allocator, tasks) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib(pid)?;

    let db_env = match backend {
        "PostgreSQL + Redis" => "DATABASE_URL=postgres://… REDIS_URL=redis://… ",
        "PostgreSQL, in-memory broker" => "DATABASE_URL=postgres://… ",
        _ => "",
    };
    let backend_key = match backend {
        "PostgreSQL + Redis" => "postgres-redis",
        "PostgreSQL, in-memory broker" => "postgres",
        _ => "sqlite",
    };
    let protocol = match bench.protocol {
        WsProtocol::Native => "native",
        WsProtocol::Legacy => "legacy",
    };
    let command = format!(
        "Command: `{db_env}palaver bench ws --connections {} --rooms {} --rate {} --size {} --duration {} --protocol {protocol} --sources {}` \
         (release build; {backend}; server and load generator on the same 2 cores)",
        bench.connections,
        bench.rooms,
        bench.rate,
        bench.size,
        humantime::format_duration(bench.duration),
        bench.sources,
    );

    if bench.rate == 0 {
        // Idle: hold the connections (the server pings each every ping
        // interval; the clients answer) and read the server's memory and
        // CPU at the end.
        let cpu_before = cpu_ticks(pid)?;
        let window = Instant::now();
        tokio::time::sleep(bench.duration).await;
        let elapsed = window.elapsed().as_secs_f64();
        let cpu_secs = (cpu_ticks(pid)? - cpu_before) as f64 / TICKS_PER_SEC;
        let rss_end = rss_kib(pid)?;
        let held = shared.open.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        let _ = child.kill().await;
        let opened = users.len() as f64;
        let per_conn = |rss: u64| rss.saturating_sub(rss_before) as f64 / opened;
        let report = format!(
            "{command}\n\n\
             | connections opened | held after {} | server RSS/connection (connected) | (end of hold) | server CPU while idle | connect time |\n\
             |---|---|---|---|---|---|\n\
             | {} | {held} | {:.1} KiB | {:.1} KiB | {:.1}% of a core | {connect_secs:.1} s |\n\n\
             Errors (connections lost while holding): {}. Server RSS {:.1} MiB at start, {:.1} MiB with users and rooms created, {:.1} MiB with the \
             connections open, {:.1} MiB at the end of the hold.\n",
            humantime::format_duration(bench.duration),
            users.len(),
            per_conn(rss_connected),
            per_conn(rss_end),
            cpu_secs * 100.0 / elapsed,
            errors,
            rss_idle as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            rss_connected as f64 / 1024.0,
            rss_end as f64 / 1024.0,
        );
        println!("{report}");
        if let Some(path) = &bench.write {
            let section = format!("ws-{backend_key}-{protocol}-{}-idle", bench.connections);
            crate::bench::write_section(path, &section, &report)?;
            println!("written to {}", path.display());
        }
        return Ok(());
    }

    // Load: warm-up, then the measured window.
    let interval = Duration::from_secs_f64(1.0 / f64::from(bench.rate.max(1)));
    let warmup = Duration::from_secs(2);
    let driver = {
        let shared = shared.clone();
        spawn_driver(senders, interval, bench.duration + warmup, move || {
            shared.sent.fetch_add(1, Ordering::Relaxed);
        })
    };
    tokio::time::sleep(warmup).await;
    let me = std::process::id();
    let (cpu_before, own_before, received_before, acked_before, sent_before) = (
        cpu_ticks(pid)?,
        cpu_ticks(me)?,
        shared.received.load(Ordering::Relaxed),
        shared.acked.load(Ordering::Relaxed),
        shared.sent.load(Ordering::Relaxed),
    );
    shared.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    // Handed back, so the clients keep running until counted.
    let senders = driver.await?;
    let elapsed = window.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    let cpu_after = cpu_ticks(pid)?;
    let own_secs = (cpu_ticks(me)? - own_before) as f64 / TICKS_PER_SEC;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    let received = shared.received.load(Ordering::Relaxed) - received_before;
    let acked = shared.acked.load(Ordering::Relaxed) - acked_before;
    let sent = shared.sent.load(Ordering::Relaxed) - sent_before;
    let held = shared.open.load(Ordering::Relaxed);
    let errors = shared.errors.load(Ordering::Relaxed);
    let _ = child.kill().await;
    drop(senders);

    let mut lat = std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    let pick = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let ms = |us: u32| format!("{:.1} ms", f64::from(us) / 1000.0);
    let cpu_secs = (cpu_after - cpu_before) as f64 / TICKS_PER_SEC;
    let per_conn_kib = (rss_connected.saturating_sub(rss_before)) as f64 / users.len() as f64;
    let members_per_room = bench.connections as f64 / bench.rooms as f64;
    let report = format!(
        "{command}\n\n\
         | connections held | members/room | sent/s | acked/s | deliveries/s | latency p50 | p99 | p99.9 | server CPU | server CPU/delivery | server RSS/connection | connect time |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n\
         | {held} | {members_per_room:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.0}% of a core | {:.1} µs | {per_conn_kib:.1} KiB | {connect_secs:.1} s |\n\n\
         Errors (error frames and connections lost while measuring): {}. Latency: from the sender building its frame to a receiver reading the event, every receiver \
         counted ({} samples). Server RSS {:.1} MiB with users and rooms created, {:.1} MiB with the connections \
         open. Load generator CPU {:.0}% of a core; load average {load} at the end.\n",
        sent as f64 / elapsed,
        acked as f64 / elapsed,
        received as f64 / elapsed,
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(pick(0.999)),
        cpu_secs * 100.0 / elapsed,
        cpu_secs * 1e6 / received.max(1) as f64,
        errors,
        lat.len(),
        rss_before as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
        own_secs * 100.0 / elapsed,
    );
    println!("{report}");
    if let Some(path) = &bench.write {
        let section = format!("ws-{backend_key}-{protocol}-{}", bench.connections);
        crate::bench::write_section(path, &section, &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// USER_HZ on Linux: the unit of the CPU times in `/proc/<pid>/stat`.
const TICKS_PER_SEC: f64 = 100.0;

async fn fresh_pg_database(url: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.context("cannot connect to DATABASE_URL")?;
    sqlx::query("DROP DATABASE IF EXISTS palaver_bench_ws WITH (FORCE)").execute(&mut conn).await?;
    sqlx::query("CREATE DATABASE palaver_bench_ws").execute(&mut conn).await?;
    conn.close().await?;
    let (base, _) = url.rsplit_once('/').context("DATABASE_URL must name a database")?;
    Ok(format!("{base}/palaver_bench_ws"))
}

/// The load: one tick per `interval` for `total` (missed ticks are made up
/// in a burst), each handed to a random client's queue (a full queue skips
/// it) and counted with `sent`. The senders are handed back at the end, so
/// the caller decides when the clients stop.
pub(crate) fn spawn_driver(
    senders: Vec<mpsc::Sender<u64>>,
    interval: Duration,
    total: Duration,
    sent: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<Vec<mpsc::Sender<u64>>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        let mut n: u64 = 0;
        while started.elapsed() < total {
            tick.tick().await;
            n += 1;
            let who = rand::random_range(0..senders.len());
            if senders[who].try_send(n).is_ok() {
                sent();
            }
        }
        senders
    })
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not become ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn register_all(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<Vec<(i64, String)>> {
    let mut users = Vec::with_capacity(n);
    let mut pending = futures_util::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/api/v1/auth/register");
            async move {
                let body: Value = http
                    .post(url)
                    .json(&json!({
                        "email": format!("bench{i}@example.org"),
                        "password": "bench-password",
                        "display_name": format!("bench {i}"),
                    }))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let id = body["user"]["id"].as_i64().context("no user id")?;
                let token = body["access_token"].as_str().context("no token")?.to_owned();
                anyhow::Ok((i, id, token))
            }
        })
        .buffer_unordered(16);
    let mut slots = vec![None; n];
    while let Some(result) = pending.next().await {
        let (i, id, token) = result?;
        slots[i] = Some((id, token));
    }
    for slot in slots {
        users.push(slot.context("a registration is missing")?);
    }
    Ok(users)
}

pub(crate) async fn connect_from(source: IpAddr, port: u16, path: &str) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0);
    let (ws, _) = client_async_with_config(format!("ws://127.0.0.1:{port}{path}"), stream, Some(config)).await?;
    Ok(ws)
}

/// One client: sends when told, reads everything, records latencies.
struct Client {
    me: String,
    protocol: WsProtocol,
    room: i64,
    size: usize,
}

/// Takes one off the open count when a client ends, however it ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Client {
    /// The content of message `n`: send time (µs since the start) and
    /// sender first, padded to `size` bytes.
    fn content(&self, sent_at: u128, n: u64) -> String {
        let mut content = format!("{sent_at} {} bench message {n} ", self.me);
        while content.len() < self.size {
            content.push('x');
        }
        content
    }

    /// The content of a delivered message, without parsing the whole
    /// frame: at 100k+ deliveries a second the generator's own CPU is the
    /// limit, and the content (digits, a space, digits, ...) needs no
    /// unescaping.
    fn delivered<'a>(&self, text: &'a str) -> Option<&'a str> {
        let is_message = match self.protocol {
            WsProtocol::Native => text.contains(r#""op":"event""#) && text.contains(r#""type":"message""#),
            WsProtocol::Legacy => text.contains(r#""type":"chat_message""#),
        };
        if !is_message {
            return None;
        }
        let start = text.find(r#""content":""#)? + r#""content":""#.len();
        let rest = &text[start..];
        Some(&rest[..rest.find('"')?])
    }

    async fn run(
        self,
        mut ws: WebSocketStream<TcpStream>,
        mut sends: mpsc::Receiver<u64>,
        shared: Arc<Shared>,
        ready: mpsc::Sender<()>,
    ) {
        let _open = OpenGuard(shared.clone());
        let topic = format!("chat:{}", self.room);
        let mut ready = Some(ready);
        match self.protocol {
            WsProtocol::Native => {
                let frame = json!({"op": "subscribe", "ref": "s", "topic": topic});
                if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            WsProtocol::Legacy => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(()).await;
                }
            }
        }
        loop {
            tokio::select! {
                n = sends.recv() => {
                    let Some(n) = n else { return };
                    let content = self.content(shared.start.elapsed().as_micros(), n);
                    let frame = match self.protocol {
                        WsProtocol::Native => json!({
                            "op": "send", "ref": n, "topic": topic, "client_msg_id": uuid::Uuid::new_v4().to_string(),
                            "content": content, "message_type": "text",
                        }),
                        WsProtocol::Legacy => json!({"type": "chat_message", "message": content}),
                    };
                    if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                message = ws.next() => {
                    let Some(Ok(message)) = message else {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let Message::Text(text) = message else { continue };
                    let text = text.as_str();
                    let Some(content) = self.delivered(text) else {
                        if self.protocol == WsProtocol::Native {
                            self.control(text, &shared, &mut ready).await;
                        }
                        continue;
                    };
                    let mut words = content.split(' ');
                    let Some(sent_at) = words.next().and_then(|t| t.parse::<u128>().ok()) else { continue };
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    // The original protocol has no acks: a sender counts its
                    // own message coming back as the ack.
                    if self.protocol == WsProtocol::Legacy && words.next() == Some(self.me.as_str()) {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    if shared.measuring.load(Ordering::Relaxed) {
                        let latency = shared.start.elapsed().as_micros().saturating_sub(sent_at);
                        let latency = u32::try_from(latency).unwrap_or(u32::MAX);
                        shared.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(latency);
                    }
                }
            }
        }
    }

    /// Acks and errors of the `/ws` protocol.
    async fn control(&self, text: &str, shared: &Shared, ready: &mut Option<mpsc::Sender<()>>) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else { return };
        match frame["op"].as_str() {
            Some("ack") if frame["ref"] == "s" => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(()).await;
                }
            }
            Some("ack") => {
                shared.acked.fetch_add(1, Ordering::Relaxed);
            }
            Some("error") => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if shared.errors.load(Ordering::Relaxed) <= 5 {
                    eprintln!("error frame: {text}");
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read the server's status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// A process's user + system CPU time, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read a process stat")?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok(utime + stime)
}
