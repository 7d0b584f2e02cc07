//! `palaver bench media`: upload throughput and the server's peak memory
//! during uploads of growing size, with encryption at rest on and off.
//!
//! Each run starts a fresh `palaver serve` process (SQLite and media in a
//! temporary folder), registers a user, and streams one video-typed upload
//! of the given size over a plain HTTP/1.1 connection (the body is
//! generated on the fly, so the client holds no copy either). The server's
//! peak resident memory (`VmHWM`) is reset through `/proc/{pid}/clear_refs`
//! once the server is up and the user registered (password hashing alone
//! takes more memory than an upload should, and would hide it), and read
//! after the upload: it must not grow with the file size. Then the file is
//! downloaded once, in full, to time decryption on the way out, with the
//! peak reset and read around it the same way.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
const BOUNDARY: &str = "palaver-bench-boundary";
const MIB: u64 = 1024 * 1024;

/// `palaver bench media` settings.
#[derive(Debug, Clone, Args)]
pub struct MediaBench {
    /// Upload sizes in MiB.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub sizes: Vec<u64>,
    /// Runs per size and mode (the median is reported).
    #[arg(long, default_value = "3")]
    pub runs: usize,
    /// Messages per chat run (encryption on vs off, through the chat service).
    #[arg(long, default_value = "10000")]
    pub messages: usize,
    /// Chat runs per mode, alternating on and off (the median is reported).
    #[arg(long, default_value = "5")]
    pub chat_runs: usize,
    /// Markdown file whose media section is replaced with the results.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// One measured upload.
#[derive(Debug, Clone, Copy)]
struct Sample {
    upload: Duration,
    download: Duration,
    rss_before_kib: u64,
    peak_kib: u64,
    download_peak_kib: u64,
}

/// Runs the benchmark.
pub async fn run(bench: MediaBench) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for encrypt in [true, false] {
        for &size in &bench.sizes {
            let mut samples = Vec::new();
            for _ in 0..bench.runs.max(1) {
                samples.push(once(size * MIB, encrypt).await?);
            }
            rows.push((encrypt, size, samples));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let mut table = String::from(
        "| encryption | size | upload | upload MB/s | download MB/s | server RSS before | peak RSS, upload | peak RSS, download |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (encrypt, size, samples) in &rows {
        let mb = (*size * MIB) as f64 / 1e6;
        let up = median(samples.iter().map(|s| s.upload.as_secs_f64()).collect());
        let down = median(samples.iter().map(|s| s.download.as_secs_f64()).collect());
        let before = median(samples.iter().map(|s| s.rss_before_kib as f64).collect());
        let peak = median(samples.iter().map(|s| s.peak_kib as f64).collect());
        let download_peak = median(samples.iter().map(|s| s.download_peak_kib as f64).collect());
        table.push_str(&format!(
            "| {} | {size} MiB | {:.2} s | {:.0} | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB |\n",
            if *encrypt { "on" } else { "off" },
            up,
            mb / up,
            mb / down,
            before / 1024.0,
            peak / 1024.0,
            download_peak / 1024.0,
        ));
    }
    let chat = chat_cost(&bench).await?;
    let report = format!(
        "Command: `palaver bench media --sizes {} --runs {} --messages {} --chat-runs {}` (release build; server \
         and client on the same 2 cores; SQLite and the local media store in a temporary folder; medians of {} \
         runs, each on a fresh server process). \"Peak RSS\" is the server's highest resident memory while \
         it took the upload (or served the download), its high-water mark reset just before.\n\n{table}\n{chat}",
        bench.sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        bench.runs,
        bench.messages,
        bench.chat_runs,
        bench.runs,
    );
    println!("{report}");
    if let Some(path) = bench.write {
        crate::bench::write_section(&path, "media", &report)?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// Message sends through the chat service with bodies sealed and in plain,
/// alternating runs so both see the same machine, on fresh SQLite files.
async fn chat_cost(bench: &MediaBench) -> anyhow::Result<String> {
    let keys =
        palaver_crypto::Keyring::parse(&palaver_crypto::generate_key_spec(&palaver_crypto::KeyId::new("bench")?))?;
    let keys = std::sync::Arc::new(keys);
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..bench.chat_runs.max(1) {
        for encrypt in [true, false] {
            let chat = crate::bench_chat::ChatBench {
                messages: bench.messages,
                senders: 16,
                rooms: 64,
                database_url: None,
                codec: palaver_service::chat::BodyCodec::new(keys.clone(), encrypt),
            };
            let result = crate::bench_chat::one_run(&chat, false).await?;
            if encrypt { on.push(result.per_sec) } else { off.push(result.per_sec) }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let (on, off) = (median(on), median(off));
    Ok(format!(
        "Message sends through the chat service (validation, the one-transaction store write, publication; 16 \
         senders over 64 private rooms, {} messages per run, SQLite), median of {} runs each:\n\n\
         | bodies | messages/s |\n|---|---|\n| plain | {off:.0} |\n| sealed (XChaCha20-Poly1305) | {on:.0} |\n\n\
         Encryption costs **{:.1} %** of send throughput (target: under 10 %).\n",
        bench.messages,
        bench.chat_runs,
        (1.0 - on / off.max(1e-9)) * 100.0,
    ))
}

async fn once(size: u64, encrypt: bool) -> anyhow::Result<Sample> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path(), encrypt, size).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let body: Value = client
        .post(server.url("/api/v1/auth/register"))
        .json(&json!({"email": "bench@example.org", "password": "bench-password",
                      "display_name": "Bench", "native_languages": [], "learning_languages": []}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = body["access_token"].as_str().context("no access token")?.to_owned();
    server.reset_peak()?;
    let (rss_before_kib, _) = server.memory()?;

    let started = Instant::now();
    let answer = server.upload(&token, size).await?;
    let upload = started.elapsed();
    let (_, peak_kib) = server.memory()?;
    let media: Value = serde_json::from_str(&answer).with_context(|| format!("upload failed: {answer}"))?;
    anyhow::ensure!(media["size"].as_u64() == Some(size), "upload answered {media}");

    let url = media["url"].as_str().context("no url")?;
    server.reset_peak()?;
    let started = Instant::now();
    let mut response = client.get(server.url(url)).send().await?.error_for_status()?;
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await? {
        received += chunk.len() as u64;
    }
    let download = started.elapsed();
    anyhow::ensure!(received == size, "downloaded {received} of {size} bytes");
    let (_, download_peak_kib) = server.memory()?;
    Ok(Sample { upload, download, rss_before_kib, peak_kib, download_peak_kib })
}

struct Server {
    child: tokio::process::Child,
    port: u16,
}

impl Server {
    async fn start(data_dir: &std::path::Path, encrypt: bool, size: u64) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the palaver executable")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = tokio::process::Command::new(exe)
            .env_clear()
            .env("PALAVER_DATA_DIR", data_dir)
            .env("PALAVER_LISTEN", format!("127.0.0.1:{port}"))
            .env("PALAVER_JWT_SECRET", JWT_SECRET)
            .env("PALAVER_LOG", "warn")
            .env("PALAVER_ENCRYPT_AT_REST", encrypt.to_string())
            .env("PALAVER_MEDIA_MAX_VIDEO_BYTES", (size + MIB).to_string())
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

    /// Streams a `size`-byte MP4-typed upload; returns the response body.
    async fn upload(&self, token: &str, size: u64) -> anyhow::Result<String> {
        let head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.mp4\"\r\n\
             Content-Type: video/mp4\r\n\r\n"
        );
        let tail = format!("\r\n--{BOUNDARY}--\r\n");
        let length = head.len() as u64 + size + tail.len() as u64;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(
                format!(
                    "POST /api/v1/media HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\
                     Connection: close\r\n\r\n{head}"
                )
                .as_bytes(),
            )
            .await?;
        // An ISO media header, then pseudo-random bytes (not compressible,
        // like real video).
        let mut block = vec![0u8; 256 * 1024];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut sent = 0u64;
        while sent < size {
            for b in block.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = (state >> 24) as u8;
            }
            if sent == 0 {
                let ftyp = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2";
                block[..ftyp.len()].copy_from_slice(ftyp);
            }
            let n = usize::try_from((size - sent).min(block.len() as u64)).unwrap_or(block.len());
            stream.write_all(&block[..n]).await?;
            sent += n as u64;
        }
        stream.write_all(tail.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.lines().next().unwrap_or_default().to_owned();
        anyhow::ensure!(status.contains(" 201 "), "upload answered {status}: {text}");
        Ok(text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default())
    }

    /// Resets the server's peak resident memory (`VmHWM`) to its current
    /// resident memory (Linux: writing 5 to `/proc/{pid}/clear_refs`).
    fn reset_peak(&self) -> anyhow::Result<()> {
        let pid = self.child.id().context("server exited")?;
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
            .with_context(|| format!("cannot reset the peak memory of process {pid} through /proc"))
    }

    /// Resident and peak resident memory of the server, in KiB.
    fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.child.id().context("server exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
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
