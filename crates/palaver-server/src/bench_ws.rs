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
    /// Messages sent per second, in total.
    #[arg(long, default_value = "200")]
    pub rate: u32,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Protocol.
    #[arg(long, value_enum, default_value = "native")]
    pub protocol: WsProtocol,
    /// Source addresses 127.0.0.1 to 127.0.0.N to connect from.
    #[arg(long, default_value = "4", value_parser = clap::value_parser!(u8).range(1..=250))]
    pub sources: u8,
    /// Markdown file whose `ws-<protocol>-<connections>` section is replaced
    /// with the results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

struct Shared {
    start: Instant,
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

    // Connections.
    let shared = Arc::new(Shared {
        start: Instant::now(),
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
        tokio::spawn(client(i.to_string(), socket, bench.protocol, room, rx, shared.clone(), ready_tx.clone()));
    }
    for _ in 0..users.len() {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await.context("subscriptions not ready")?;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    // Let the server settle (allocator, tasks) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib(pid)?;

    // Load: warm-up, then the measured window.
    let interval = Duration::from_secs_f64(1.0 / f64::from(bench.rate.max(1)));
    let warmup = Duration::from_secs(2);
    let driver = {
        let shared = shared.clone();
        let total = bench.duration + warmup;
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
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(warmup).await;
    let (cpu_before, received_before, acked_before) =
        (cpu_ticks(pid)?, shared.received.load(Ordering::Relaxed), shared.acked.load(Ordering::Relaxed));
    shared.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    driver.await?;
    let elapsed = window.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    let cpu_after = cpu_ticks(pid)?;
    let received = shared.received.load(Ordering::Relaxed) - received_before;
    let acked = shared.acked.load(Ordering::Relaxed) - acked_before;
    let held = users.len();
    let _ = child.kill().await;

    let mut lat = std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    lat.sort_unstable();
    let pick = |q: f64| lat.get(((lat.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
    let ms = |us: u32| format!("{:.1} ms", f64::from(us) / 1000.0);
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_secs = (cpu_after - cpu_before) as f64 / ticks_per_sec;
    let per_conn_kib = (rss_connected.saturating_sub(rss_idle)) as f64 / held as f64;
    let members_per_room = bench.connections as f64 / bench.rooms as f64;
    let db_env = match backend {
        "PostgreSQL + Redis" => "DATABASE_URL=postgres://… REDIS_URL=redis://… ",
        "PostgreSQL, in-memory broker" => "DATABASE_URL=postgres://… ",
        _ => "",
    };
    let protocol = match bench.protocol {
        WsProtocol::Native => "native",
        WsProtocol::Legacy => "legacy",
    };
    let report = format!(
        "Command: `{db_env}palaver bench ws --connections {} --rooms {} --rate {} --duration {} --protocol {protocol} --sources {}` \
         (release build; {backend}; server and load generator on the same 2 cores)\n\n\
         | connections held | members/room | msgs sent/s (acked) | deliveries/s | latency p50 | p99 | p99.9 | server RSS/connection | server CPU/delivery | connect time |\n\
         |---|---|---|---|---|---|---|---|---|---|\n\
         | {held} | {members_per_room:.0} | {:.0} | {:.0} | {} | {} | {} | {per_conn_kib:.1} KiB | {:.1} µs | {connect_secs:.1} s |\n\n\
         Errors: {}. Server RSS {:.1} MiB idle, {:.1} MiB with the connections open.\n",
        bench.connections,
        bench.rooms,
        bench.rate,
        humantime::format_duration(bench.duration),
        bench.sources,
        acked as f64 / elapsed,
        received as f64 / elapsed,
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(pick(0.999)),
        cpu_secs * 1e6 / received.max(1) as f64,
        shared.errors.load(Ordering::Relaxed),
        rss_idle as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
    );
    println!("{report}");
    if let Some(path) = &bench.write {
        crate::bench::write_section(path, &format!("ws-{protocol}-{}", bench.connections), &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
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
async fn client(
    me: String,
    mut ws: WebSocketStream<TcpStream>,
    protocol: WsProtocol,
    room: i64,
    mut sends: mpsc::Receiver<u64>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) {
    let topic = format!("chat:{room}");
    let mut ready = Some(ready);
    match protocol {
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
                let sent_at = shared.start.elapsed().as_micros();
                let content = format!("{sent_at} {me} bench message {n}");
                let frame = match protocol {
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
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let content = match protocol {
                    WsProtocol::Native => match frame["op"].as_str() {
                        Some("event") if frame["type"] == "message" => frame["data"]["content"].as_str(),
                        Some("ack") => {
                            if frame["ref"] == "s" {
                                if let Some(ready) = ready.take() {
                                    let _ = ready.send(()).await;
                                }
                            } else {
                                shared.acked.fetch_add(1, Ordering::Relaxed);
                            }
                            None
                        }
                        Some("error") => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        _ => None,
                    },
                    WsProtocol::Legacy => {
                        let is_message = frame.get("id").is_some() && frame.get("type") != Some(&json!("typing"));
                        if is_message { frame["content"].as_str() } else { None }
                    }
                };
                let Some(content) = content else { continue };
                let Some(sent_at) = content.split(' ').next().and_then(|t| t.parse::<u128>().ok()) else { continue };
                shared.received.fetch_add(1, Ordering::Relaxed);
                // The original protocol has no acks: a sender counts its own
                // message coming back as the ack.
                if protocol == WsProtocol::Legacy && content.split(' ').nth(1) == Some(me.as_str()) {
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

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("cannot read the server's status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// The server's user + system CPU time, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read the server's stat")?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok(utime + stime)
}
