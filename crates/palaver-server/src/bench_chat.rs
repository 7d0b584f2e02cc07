//! `palaver bench chat`: message ingest through `ChatService::send`, the
//! path the REST handler and the WebSocket hub share (validation, the
//! one-transaction store write with its seq, the live publication and the
//! notification event), without HTTP or socket framing in front.
//!
//! Two runs on a fresh database: many conversations at once (the usual
//! load: sends to different rooms proceed in parallel) and one busy group
//! (every sender in one room: sends serialise on the room's row, the
//! ceiling of a single conversation). Afterwards every room's seqs are
//! checked to be exactly 1..n.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use palaver_core::chat::RoomType;
use palaver_service::chat::{ChatRates, ChatService, NewRoom, SendMessage};
use palaver_service::{EventBus, MemoryRateLimiter, Principal, RateSpec, RealtimeHandle};
use palaver_store::{ConnectOptions, MessageRange, NewUserRecord, Store};

use crate::bench_push::{drop_schema, process_usage};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatBench {
    /// Messages per run.
    pub messages: usize,
    /// Concurrent senders.
    pub senders: usize,
    /// Conversations in the many-rooms run.
    pub rooms: usize,
    /// `postgres://…` to run on PostgreSQL (a scratch schema); SQLite otherwise.
    pub database_url: Option<String>,
    /// How bodies are sealed (plain unless `palaver bench media` compares).
    pub codec: palaver_service::chat::BodyCodec,
}

pub(crate) struct RunResult {
    label: String,
    messages: usize,
    pub(crate) per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
    gapless: bool,
}

async fn open(bench: &ChatBench) -> anyhow::Result<(Arc<dyn Store>, Option<(String, String)>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let (url, schema) = match &bench.database_url {
        Some(url) => (url.clone(), Some(format!("palaver_bench_{}", uuid::Uuid::new_v4().simple()))),
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

async fn users(store: &Arc<dyn Store>, prefix: &str, n: usize) -> anyhow::Result<Vec<Principal>> {
    let now = palaver_core::time::now();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let user = store
            .create_user(&NewUserRecord {
                email: format!("{prefix}{i}@bench.example"),
                password_hash: "$argon2id$bench".into(),
                display_name: format!("{prefix}{i}"),
                native_languages: vec![],
                learning_languages: vec![],
                role: palaver_core::user::Role::User,
                now,
            })
            .await?;
        out.push(Principal { user, session_id: "bench".into() });
    }
    Ok(out)
}

/// Whether every room's messages have seqs exactly 1..n.
async fn gapless(store: &Arc<dyn Store>, rooms: &[i64]) -> anyhow::Result<bool> {
    for room in rooms {
        let mut expected = 1;
        loop {
            let page = store
                .messages(*room, MessageRange { after_seq: Some(expected - 1), before_seq: None, limit: 1000 })
                .await?;
            if page.is_empty() {
                break;
            }
            for m in &page {
                if m.seq != expected {
                    return Ok(false);
                }
                expected += 1;
            }
        }
    }
    Ok(true)
}

pub(crate) async fn one_run(bench: &ChatBench, one_room: bool) -> anyhow::Result<RunResult> {
    let (store, schema, _dir) = open(bench).await?;
    let unlimited = RateSpec { count: u32::MAX, per: Duration::from_secs(1) };
    let chat = Arc::new(
        ChatService::new(
            store.clone(),
            EventBus::new(bench.messages + 16),
            RealtimeHandle::default(),
            Arc::new(MemoryRateLimiter::new()),
            ChatRates { messages: unlimited, rooms: unlimited },
        )
        .with_codec(bench.codec.clone()),
    );
    let senders = bench.senders.max(1);
    let people = users(&store, "sender", senders + 1).await?;
    // Who sends into which rooms: in the one-room run, every sender into a
    // group of all; otherwise each room is a private room of one sender
    // (round robin) and a partner, and each sender writes into its rooms
    // in turn.
    let mut rooms = Vec::new();
    let mut plan: Vec<(usize, Vec<i64>)> = Vec::with_capacity(senders);
    if one_room {
        let ids = people[1..].iter().map(Principal::id).collect();
        let new = NewRoom { room_type: RoomType::Group, participant_ids: ids, name: Some("bench".into()) };
        let room = chat.create_room(&people[0], new).await?.0.id;
        rooms.push(room);
        plan.extend((0..senders).map(|i| (i + 1, vec![room])));
    } else {
        let n_rooms = bench.rooms.max(senders);
        let partners = users(&store, "partner", n_rooms).await?;
        plan.extend((0..senders).map(|i| (i, Vec::new())));
        for (r, partner) in partners.iter().enumerate() {
            let new = NewRoom { room_type: RoomType::Private, participant_ids: vec![partner.id()], name: None };
            let room = chat.create_room(&people[r % senders], new).await?.0.id;
            rooms.push(room);
            plan[r % senders].1.push(room);
        }
    }
    let per_sender = bench.messages / senders;
    let people = Arc::new(people);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(senders);
    for (i, (who, owned)) in plan.into_iter().enumerate() {
        let chat = chat.clone();
        let people = people.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_sender);
            let who = &people[who];
            for k in 0..per_sender {
                let m = SendMessage {
                    client_msg_id: Some(format!("{i}-{k}")),
                    ..SendMessage::text(format!("message {k} from {i}"))
                };
                let t = Instant::now();
                chat.send(who, owned[k % owned.len()], m).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(bench.messages);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    let result = RunResult {
        label: if one_room {
            format!("one group, {senders} senders")
        } else {
            format!("{} private rooms, {senders} senders", rooms.len())
        },
        messages: latencies.len(),
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: pick(0.5),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        gapless: gapless(&store, &rooms).await?,
    };
    store.close().await;
    if let Some((url, schema)) = schema {
        drop_schema(&url, &schema).await;
    }
    Ok(result)
}

/// Runs both runs and returns the markdown report.
pub async fn run(bench: &ChatBench) -> anyhow::Result<String> {
    let (cpu_before, _) = process_usage();
    let started = Instant::now();
    let many = one_run(bench, false).await?;
    let one = one_run(bench, true).await?;
    let (cpu_after, rss_kib) = process_usage();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let row = |r: &RunResult| {
        format!(
            "| {} | {} | **{:.0}** | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            r.label,
            r.messages,
            r.per_sec,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            if r.gapless { "yes" } else { "NO" }
        )
    };
    let (db_env, backend) = if bench.database_url.is_some() {
        ("DATABASE_URL=postgres://… ", "PostgreSQL, pool of 16")
    } else {
        ("", "SQLite, one writer")
    };
    Ok(format!(
        "Command: `{db_env}palaver bench chat --messages {} --senders {} --rooms {}` (release build; {backend}; \
         senders and server code in one process)\n\n\
         | run | messages | messages/s | send p50 | p99 | max | seqs 1..n in every room |\n\
         |---|---|---|---|---|---|---|\n{}\n{}\n\n\
         Process CPU time {:.1} s over {:.1} s wall clock (setup included); peak RSS {} MiB.\n",
        bench.messages,
        bench.senders,
        bench.rooms,
        row(&many),
        row(&one),
        (cpu_after - cpu_before).as_secs_f64(),
        started.elapsed().as_secs_f64(),
        rss_kib / 1024,
    ))
}

/// Runs the bench and writes its section.
pub async fn main(bench: ChatBench, write: Option<&Path>) -> anyhow::Result<()> {
    let report = run(&bench).await?;
    println!("{report}");
    if let Some(path) = write {
        let section = if bench.database_url.is_some() { "chat-postgres" } else { "chat-sqlite" };
        crate::bench::write_section(path, section, &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}
