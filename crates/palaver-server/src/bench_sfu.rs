//! `palaver bench sfu`: the media plane under synthetic load. Real WebRTC
//! client peers (str0m over UDP on loopback, DTLS-SRTP) join rooms of
//! speakers and listeners; every speaker publishes 20 ms audio packets; the
//! SFU forwards each to everyone else in its room. Measured: forwarded
//! packets per second, and per second of the media thread's CPU time
//! (`getrusage(RUSAGE_THREAD)` on the SFU thread, so the clients' own work
//! is not counted), and the forwarding latency (send to receive, the
//! send time travels in the payload) at the listeners.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use palaver_sfu::client::{ClientOptions, SfuClient};
use palaver_sfu::{PeerPolicy, Sfu, SfuConfig, SfuEvent};
use tokio_util::sync::CancellationToken;

/// `palaver bench sfu` settings.
#[derive(Debug, Clone, Args)]
pub struct SfuBench {
    /// Rooms.
    #[arg(long, default_value = "2")]
    pub rooms: usize,
    /// Speakers per room (each publishes audio).
    #[arg(long, default_value = "10")]
    pub speakers: usize,
    /// Listeners per room.
    #[arg(long, default_value = "5")]
    pub listeners: usize,
    /// Audio packets per second per speaker (50: 20 ms frames).
    #[arg(long, default_value = "50")]
    pub rate: u32,
    /// Measured seconds (after a warm-up of 2 s).
    #[arg(long, default_value = "10")]
    pub seconds: u64,
    /// Markdown file whose sfu section is replaced with the results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// Runs the benchmark.
pub async fn run(bench: SfuBench) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (sfu, mut events) = Sfu::start(SfuConfig::default(), shutdown.clone()).context("cannot start the SFU")?;
    let clients: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i64, SfuClient>>> = Default::default();
    {
        let sfu = sfu.clone();
        let clients = clients.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let SfuEvent::Offer { room, user, sdp, tracks } = event {
                    let client = clients.lock().ok().and_then(|c| c.get(&user).cloned());
                    if let Some(client) = client
                        && let Ok(answer) = client.accept_offer(sdp, tracks).await
                    {
                        let _ = sfu.answer(room, user, answer).await;
                    }
                }
            }
        });
    }
    let mut speakers = Vec::new();
    let mut listeners = Vec::new();
    let mut user = 0_i64;
    for room in 1..=bench.rooms as i64 {
        for i in 0..bench.speakers + bench.listeners {
            user += 1;
            let speaks = i < bench.speakers;
            let options =
                ClientOptions { audio: speaks, video: false, audio_rate: bench.rate, record_latency: !speaks };
            let client = SfuClient::spawn(options).await?;
            if let Ok(mut c) = clients.lock() {
                c.insert(user, client.clone());
            }
            let policy = PeerPolicy { audio: speaks, video: false, muted: false };
            let offer = client.create_offer().await.map_err(anyhow::Error::msg)?;
            let outcome = sfu.offer(room, user, offer, policy).await?;
            client.accept_answer(outcome.answer).await.map_err(anyhow::Error::msg)?;
            if let Some(SfuEvent::Offer { sdp, tracks, .. }) = outcome.followup {
                let answer = client.accept_offer(sdp, tracks).await.map_err(anyhow::Error::msg)?;
                let _ = sfu.answer(room, user, answer).await;
            }
            if speaks { speakers.push(client) } else { listeners.push(client) }
        }
    }
    for c in speakers.iter().chain(&listeners) {
        anyhow::ensure!(c.wait_connected(Duration::from_secs(30)).await, "a client did not connect");
    }
    for s in &speakers {
        s.set_audio_level(Some(-30));
    }
    // Warm-up: every track negotiated and flowing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for l in &listeners {
        l.take_latencies();
    }
    let before = sfu.stats().await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(bench.seconds)).await;
    let after = sfu.stats().await?;
    let elapsed = started.elapsed().as_secs_f64();
    for s in &speakers {
        s.set_audio_level(None);
    }
    let mut latencies: Vec<u32> = listeners.iter().flat_map(|l| l.take_latencies()).collect();
    latencies.sort_unstable();
    let forwarded = after.forwarded_packets.saturating_sub(before.forwarded_packets) as f64;
    let received = after.received_packets.saturating_sub(before.received_packets) as f64;
    let cpu = (after.cpu_seconds - before.cpu_seconds).max(1e-9);
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().map_or(0.0, |us| f64::from(us) / 1000.0)
    };
    let peers = bench.rooms * (bench.speakers + bench.listeners);
    let expected = (bench.rooms * bench.speakers * (bench.speakers + bench.listeners - 1)) as f64
        * f64::from(bench.rate)
        * elapsed;
    let report = format!(
        "Command: `palaver bench sfu --rooms {} --speakers {} --listeners {} --rate {} --seconds {}` \
         (release build; {} str0m client peers in this process on their own UDP sockets, DTLS-SRTP over loopback; \
         the SFU on its own thread; 2 shared cores)\n\n\
         | measure | value |\n|---|---|\n\
         | packets received by the SFU | {:.0}/s |\n\
         | packets forwarded | {:.0}/s ({:.1}% of the {:.0}/s the room sizes call for) |\n\
         | SFU thread CPU | {:.2} s over {:.1} s ({:.0}% of one core) |\n\
         | forwarded packets per CPU-second (per core) | {:.0} |\n\
         | latency send-to-receive at listeners, p50 / p99 / max | {:.2} / {:.2} / {:.2} ms ({} samples) |\n\
         | ingress loss (receiver reports) | {:.2}% |\n",
        bench.rooms,
        bench.speakers,
        bench.listeners,
        bench.rate,
        bench.seconds,
        peers,
        received / elapsed,
        forwarded / elapsed,
        100.0 * forwarded / expected.max(1.0),
        expected / elapsed,
        cpu,
        elapsed,
        100.0 * cpu / elapsed,
        forwarded / cpu,
        pick(0.5),
        pick(0.99),
        pick(1.0),
        latencies.len(),
        100.0 * after.ingress_loss,
    );
    println!("{report}");
    if let Some(path) = bench.write {
        crate::bench::write_section(&path, "sfu", &report)?;
        println!("written to {}", path.display());
    }
    shutdown.cancel();
    Ok(())
}
