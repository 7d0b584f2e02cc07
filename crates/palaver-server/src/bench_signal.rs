//! `palaver bench signal`: call signaling relay latency against a real
//! server process.
//!
//! Starts `palaver` (this executable) as a child on a fresh database (SQLite
//! in a temporary folder, or PostgreSQL + Redis when `DATABASE_URL` and
//! `REDIS_URL` are set), registers two users per call, connects both over
//! `/ws`, and sets every call up as a browser does: the caller places it
//! (`POST /calls`), both subscribe to `call:{id}`, the receiver accepts on
//! its socket (`call_accept`), the caller reports media connected. Then
//! `signal` frames (`ice_candidate`, shaped like a browser's trickled
//! candidate, with the send time in the payload) go both ways over every
//! call at a target rate in total. The relay time is from the sender
//! writing the frame to the peer reading the relayed `signal` event; both
//! clients are in this process, so they share one clock. The server's CPU
//! time (`/proc/<pid>/stat`) over the measured window gives its CPU per
//! relayed frame.
//!
//! Each run starts a fresh server; the report has one row per run and the
//! median of the runs. The load generator shares the machine's cores with
//! the server.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use palaver_realtime::tokio_tungstenite::WebSocketStream;
use palaver_realtime::tokio_tungstenite::tungstenite::Message;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::bench_ws::{connect_from, cpu_ticks, register_all, spawn_driver, wait_ready};

/// `palaver bench signal` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SignalBench {
    /// Calls held at once (two users and two WebSocket connections each).
    #[arg(long, default_value = "100")]
    pub calls: usize,
    /// Signal frames sent per second, in total over all calls (half each way).
    #[arg(long, default_value = "2000")]
    pub rate: u32,
    /// Length of each measured window (after a warm-up of 2 s).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Runs, each on a fresh server; the report gives every run and the
    /// median.
    #[arg(long, default_value = "3")]
    pub runs: usize,
    /// Markdown file whose `signal-<backend>` section is replaced with the
    /// results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// What one run measured.
struct RunResult {
    sent_per_sec: f64,
    acked_per_sec: f64,
    relayed_per_sec: f64,
    /// Relay times in microseconds, sorted.
    latencies: Vec<u32>,
    cpu_us_per_frame: f64,
    errors: u64,
}

impl RunResult {
    fn pick(&self, q: f64) -> u32 {
        let n = self.latencies.len();
        self.latencies.get(((n as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0)
    }
}

struct Shared {
    start: Instant,
    sent: AtomicU64,
    acked: AtomicU64,
    relayed: AtomicU64,
    errors: AtomicU64,
    measuring: AtomicBool,
    latencies: std::sync::Mutex<Vec<u32>>,
}

/// Runs the benchmark; `database_url` and `redis_url` pick the backend.
pub async fn run(bench: SignalBench, database_url: Option<String>, redis_url: Option<String>) -> anyhow::Result<()> {
    if bench.calls == 0 || bench.runs == 0 {
        bail!("--calls and --runs must be at least 1");
    }
    let backend = match (&database_url, &redis_url) {
        (Some(_), Some(_)) => "PostgreSQL + Redis",
        (Some(_), None) => "PostgreSQL, in-memory broker",
        _ => "SQLite, in-memory broker",
    };
    let mut results = Vec::with_capacity(bench.runs);
    for i in 0..bench.runs {
        eprintln!("run {} of {}", i + 1, bench.runs);
        results.push(run_once(&bench, database_url.as_deref(), redis_url.as_deref()).await?);
    }

    let ms = |us: u32| format!("{:.2} ms", f64::from(us) / 1000.0);
    let mut rows = String::new();
    for (i, r) in results.iter().enumerate() {
        rows.push_str(&format!(
            "| {} | {:.0} ({:.0}) | {:.0} | {} | {} | {} | {} | {:.1} µs | {} |\n",
            i + 1,
            r.sent_per_sec,
            r.acked_per_sec,
            r.relayed_per_sec,
            ms(r.pick(0.5)),
            ms(r.pick(0.99)),
            ms(r.pick(0.999)),
            ms(r.pick(1.0)),
            r.cpu_us_per_frame,
            r.errors,
        ));
    }
    let median_of = |f: &dyn Fn(&RunResult) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let median_ms = |q: f64| format!("{:.2} ms", median_of(&|r: &RunResult| f64::from(r.pick(q))) / 1000.0);
    rows.push_str(&format!(
        "| **median** | {:.0} ({:.0}) | {:.0} | **{}** | **{}** | **{}** | {} | **{:.1} µs** | |\n",
        median_of(&|r| r.sent_per_sec),
        median_of(&|r| r.acked_per_sec),
        median_of(&|r| r.relayed_per_sec),
        median_ms(0.5),
        median_ms(0.99),
        median_ms(0.999),
        median_ms(1.0),
        median_of(&|r| r.cpu_us_per_frame),
    ));
    let db_env = match backend {
        "PostgreSQL + Redis" => "DATABASE_URL=postgres://… REDIS_URL=redis://… ",
        "PostgreSQL, in-memory broker" => "DATABASE_URL=postgres://… ",
        _ => "",
    };
    let report = format!(
        "Command: `{db_env}palaver bench signal --calls {} --rate {} --duration {} --runs {}` \
         (release build; {backend}; {} WebSocket connections; server and load generator on the same 2 cores)\n\n\
         | run | signals sent/s (acked) | relayed/s | relay p50 | p99 | p99.9 | max | server CPU/relayed frame | errors |\n\
         |---|---|---|---|---|---|---|---|---|\n{rows}",
        bench.calls,
        bench.rate,
        humantime::format_duration(bench.duration),
        bench.runs,
        bench.calls * 2,
    );
    println!("{report}");
    if let Some(path) = &bench.write {
        let name = if database_url.is_some() { "signal-postgres" } else { "signal-sqlite" };
        crate::bench::write_section(path, name, &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}

async fn run_once(
    bench: &SignalBench,
    database_url: Option<&str>,
    redis_url: Option<&str>,
) -> anyhow::Result<RunResult> {
    let exe = std::env::current_exe().context("cannot find the palaver executable")?;
    let dir = tempfile::tempdir()?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let connections = bench.calls * 2;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.env_clear()
        .env("PALAVER_DATA_DIR", dir.path())
        .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("PALAVER_LOG", "warn")
        .env("PALAVER_ARGON2_MEMORY_KIB", "256")
        .env("PALAVER_ARGON2_ITERATIONS", "1")
        .env("PALAVER_RATE_REGISTER", "1000000/1m")
        .env("PALAVER_RATE_LOGIN", "1000000/1m")
        .env("PALAVER_RATE_CALLS", "1000000/1m")
        .env("PALAVER_WS_RATE", "100000/1s")
        .env("PALAVER_WS_MAX_CONNECTIONS", (connections + 100).to_string())
        .env("PALAVER_DB_MAX_CONNECTIONS", "32")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(db) = database_url {
        cmd.env("DATABASE_URL", db);
        if let Some(redis) = redis_url {
            let prefix = format!("palaver-bench-{}", uuid::Uuid::new_v4().simple());
            cmd.env("REDIS_URL", redis).env("PALAVER_REDIS_PREFIX", prefix);
        }
    }
    let mut child = cmd.spawn().context("cannot start palaver")?;
    let pid = child.id().context("no server pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    wait_ready(&http, &base).await?;

    let t = Instant::now();
    let users = register_all(&http, &base, connections).await?;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        relayed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        latencies: std::sync::Mutex::new(Vec::new()),
    });
    // Calls, set up a few at a time; each yields its two sockets.
    let mut pending =
        futures_util::stream::iter(0..bench.calls)
            .map(|i| {
                let http = http.clone();
                let base = base.clone();
                let caller = users[2 * i].clone();
                let receiver = users[2 * i + 1].clone();
                async move {
                    set_up_call(&http, &base, port, i, caller, receiver).await.with_context(|| format!("call {i}"))
                }
            })
            .buffer_unordered(8);
    let mut senders = Vec::with_capacity(connections);
    while let Some(result) = pending.next().await {
        let (call_id, caller_ws, receiver_ws) = result?;
        for ws in [caller_ws, receiver_ws] {
            let (tx, rx) = mpsc::channel::<u64>(64);
            senders.push(tx);
            tokio::spawn(client(ws, call_id, rx, shared.clone()));
        }
    }
    eprintln!("{} calls set up in {:.1} s", bench.calls, t.elapsed().as_secs_f64());

    // Load: warm-up, then the measured window.
    let interval = Duration::from_secs_f64(1.0 / f64::from(bench.rate.max(1)));
    let warmup = Duration::from_secs(2);
    // Any party of any call: both directions of every call.
    let driver = {
        let shared = shared.clone();
        spawn_driver(senders, interval, bench.duration + warmup, move || {
            shared.sent.fetch_add(1, Ordering::Relaxed);
        })
    };
    tokio::time::sleep(warmup).await;
    let before = (
        cpu_ticks(pid)?,
        shared.sent.load(Ordering::Relaxed),
        shared.acked.load(Ordering::Relaxed),
        shared.relayed.load(Ordering::Relaxed),
    );
    shared.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    // The clients stop when their queues close.
    drop(driver.await?);
    let elapsed = window.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    let cpu_after = cpu_ticks(pid)?;
    let sent = shared.sent.load(Ordering::Relaxed) - before.1;
    let acked = shared.acked.load(Ordering::Relaxed) - before.2;
    let relayed = shared.relayed.load(Ordering::Relaxed) - before.3;
    let _ = child.kill().await;

    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    latencies.sort_unstable();
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let cpu_secs = (cpu_after - before.0) as f64 / ticks_per_sec;
    Ok(RunResult {
        sent_per_sec: sent as f64 / elapsed,
        acked_per_sec: acked as f64 / elapsed,
        relayed_per_sec: relayed as f64 / elapsed,
        latencies,
        cpu_us_per_frame: cpu_secs * 1e6 / relayed.max(1) as f64,
        errors: shared.errors.load(Ordering::Relaxed),
    })
}

type Socket = WebSocketStream<TcpStream>;

/// Connects both parties, places the call, subscribes both to it, accepts
/// it on the receiver's socket and reports media connected: the call is
/// `active` and bound to both sockets, as in a browser.
async fn set_up_call(
    http: &reqwest::Client,
    base: &str,
    port: u16,
    i: usize,
    caller: (i64, String),
    receiver: (i64, String),
) -> anyhow::Result<(i64, Socket, Socket)> {
    // Spread over source addresses so one address's ephemeral ports are no
    // limit.
    let source = |k: usize| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (k % 4) as u8));
    let mut receiver_ws = connect_from(source(2 * i + 1), port, &format!("/ws?token={}", receiver.1)).await?;
    let mut caller_ws = connect_from(source(2 * i), port, &format!("/ws?token={}", caller.1)).await?;
    // The receiver's device is registered once its socket answers.
    request(&mut receiver_ws, json!({"op": "ping", "ref": "p"})).await?;
    let call: Value = http
        .post(format!("{base}/api/v1/calls"))
        .bearer_auth(&caller.1)
        .json(&json!({"receiver_id": receiver.0, "call_type": "voice"}))
        .send()
        .await?
        .error_for_status()
        .context("cannot place a call")?
        .json()
        .await?;
    let call_id = call["id"].as_i64().context("call without id")?;
    if call["status"] != "ringing" {
        bail!("call {call_id} is {} instead of ringing", call["status"]);
    }
    let topic = format!("call:{call_id}");
    request(&mut caller_ws, json!({"op": "subscribe", "ref": "s", "topic": topic})).await?;
    request(&mut receiver_ws, json!({"op": "subscribe", "ref": "s", "topic": topic})).await?;
    let ack = request(&mut receiver_ws, json!({"op": "call_accept", "ref": "a", "call_id": call_id})).await?;
    if ack["status"] != "active" {
        bail!("call {call_id} is {} after the accept", ack["status"]);
    }
    http.post(format!("{base}/api/v1/calls/{call_id}/connected"))
        .bearer_auth(&caller.1)
        .send()
        .await?
        .error_for_status()
        .context("cannot report media connected")?;
    Ok((call_id, caller_ws, receiver_ws))
}

/// Sends a frame and waits for its ack (or pong); other frames are skipped.
async fn request(ws: &mut Socket, frame: Value) -> anyhow::Result<Value> {
    let reference = frame["ref"].clone();
    ws.send(Message::Text(frame.to_string().into())).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .context("no answer within 30 s")?
            .context("the server closed the socket")??;
        let Message::Text(text) = message else { continue };
        let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        if reply["ref"] != reference {
            continue;
        }
        match reply["op"].as_str() {
            Some("ack" | "pong") => return Ok(reply),
            Some("error") => bail!("{} refused: {}", frame["op"], reply["message"]),
            _ => {}
        }
    }
}

/// One party: sends a candidate when told, reads everything, records the
/// relay time of what the peer sent.
async fn client(mut ws: Socket, call_id: i64, mut sends: mpsc::Receiver<u64>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            n = sends.recv() => {
                let Some(n) = n else { return };
                let sent_us = shared.start.elapsed().as_micros() as u64;
                // What a browser trickles (RTCIceCandidateInit), plus the send time.
                let frame = json!({
                    "op": "signal", "ref": n, "call_id": call_id, "kind": "ice_candidate",
                    "payload": {
                        "candidate": format!("candidate:842163049 1 udp 1677729535 203.0.113.7 {} typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sGa4 network-cost 999", 40000 + n % 20000),
                        "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "sGa4",
                        "sent_us": sent_us,
                    },
                });
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
                match frame["op"].as_str() {
                    Some("event") if frame["type"] == "signal" => {
                        let Some(sent_us) = frame["data"]["payload"]["sent_us"].as_u64() else { continue };
                        shared.relayed.fetch_add(1, Ordering::Relaxed);
                        if shared.measuring.load(Ordering::Relaxed) {
                            let now = shared.start.elapsed().as_micros() as u64;
                            let latency = u32::try_from(now.saturating_sub(sent_us)).unwrap_or(u32::MAX);
                            shared.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(latency);
                        }
                    }
                    Some("ack") => {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("error") => {
                        let first = shared.errors.fetch_add(1, Ordering::Relaxed) == 0;
                        if first {
                            eprintln!("first error: {frame}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
