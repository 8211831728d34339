//! `onair-bench media`: many light viewers of one live stream over RTMP play or
//! HTTP-FLV, for OnAir and nginx-rtmp alike.
//!
//! The reader must cost less than the server: a viewer does not decode or copy media.
//! RTMP viewers run a small chunk-header parser (all four header formats, extended
//! timestamps, any chunk size: nginx-rtmp compresses headers, OnAir does not) that
//! skips payloads and only looks at the first bytes of each message; HTTP-FLV viewers
//! ask with HTTP/1.0 (close-delimited body, no de-chunking) and skip FLV tag bodies.
//! The parent starts `--procs` worker processes (each limited to 20,000 open files),
//! each with a single-threaded runtime, and reads the server's CPU and RSS from
//! `/proc` over the measurement window.
//!
//! A viewer "keeps up" when, over the window, the video timestamps it received
//! advanced by at least 90 % of the wall-clock window and it is still connected.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::procfs::{CpuMark, rss_bytes};

/// `onair-bench media` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// `rtmp://HOST:PORT/APP/STREAM` or `http://HOST:PORT/live/STREAM.flv`.
    #[arg(long)]
    pub url: String,
    /// Concurrent viewers.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// Seconds after the connect phase before the window opens.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Seconds allowed for connecting every viewer.
    #[arg(long, default_value_t = 15)]
    pub connect_secs: u64,
    /// Delay between viewer starts in one worker, ms (spreads joins over the GOP for
    /// time-to-first-frame runs).
    #[arg(long, default_value_t = 0)]
    pub stagger_ms: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Server process for CPU and RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a worker process is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaWorkerSpec {
    url: String,
    viewers: usize,
    connect_until_ms: u64,
    window_start_ms: u64,
    window_end_ms: u64,
    stagger_ms: u64,
}

/// One viewer's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ViewerResult {
    connected: bool,
    alive: bool,
    bytes: u64,
    video_frames: u64,
    audio_frames: u64,
    first_frame_ms: Option<u64>,
    ts_at_start: Option<u64>,
    ts_at_end: Option<u64>,
    error: Option<String>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) async fn sleep_until_ms(t: u64) {
    let now = now_ms();
    if t > now {
        tokio::time::sleep(Duration::from_millis(t - now)).await;
    }
}

/// The parent: starts the workers, samples the server, prints the report.
pub async fn run(args: MediaArgs) -> Result<()> {
    if !(args.url.starts_with("rtmp://") || args.url.starts_with("http://")) {
        bail!("--url must be rtmp:// or http://");
    }
    let procs = args.procs.max(1);
    let per = args.viewers.div_ceil(procs);
    if per > 19_000 {
        bail!("{per} viewers per process exceeds the open-file limit; use more --procs");
    }
    // Server memory with the publisher but no viewers: the per-viewer figure is the growth.
    let rss_idle = args.server_pid.and_then(rss_bytes);
    let start = now_ms();
    let connect_until = start + args.connect_secs * 1000;
    let window_start = connect_until + args.warmup * 1000;
    let window_end = window_start + args.secs * 1000;
    let exe = std::env::current_exe().context("current_exe")?;
    let children = spawn_workers(&exe, "media-worker", args.viewers, procs, |n| MediaWorkerSpec {
        url: args.url.clone(),
        viewers: n,
        connect_until_ms: connect_until,
        window_start_ms: window_start,
        window_end_ms: window_end,
        stagger_ms: args.stagger_ms,
    })?;
    let worker_pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    sleep_until_ms(window_start).await;
    let mut pids: Vec<u32> = args.server_pid.into_iter().collect();
    pids.extend(&worker_pids);
    let mark0 = CpuMark::take(&pids);
    let rss0 = args.server_pid.and_then(rss_bytes);
    sleep_until_ms(window_end).await;
    let mark1 = CpuMark::take(&pids);
    let rss1 = args.server_pid.and_then(rss_bytes);
    let cpu = mark1.percent_since(&mark0);
    let results: Vec<ViewerResult> = gather(children).await?;
    let window_ms = (window_end - window_start) as f64;
    let connected = results.iter().filter(|r| r.connected).count();
    let kept_up = results
        .iter()
        .filter(|r| {
            r.alive
                && matches!((r.ts_at_start, r.ts_at_end), (Some(a), Some(b)) if (b.saturating_sub(a)) as f64 >= 0.9 * window_ms)
        })
        .count();
    let mut ttff: Vec<u64> = results.iter().filter_map(|r| r.first_frame_ms).collect();
    ttff.sort_unstable();
    let pct =
        |p: f64| -> Option<u64> { (!ttff.is_empty()).then(|| ttff[((ttff.len() as f64 - 1.0) * p).round() as usize]) };
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let errors = count_errors(results.iter().filter_map(|r| r.error.as_ref()));
    let server_cpu = args.server_pid.and(cpu.first().copied().flatten());
    let tool_cpu: f64 = cpu.iter().skip(usize::from(args.server_pid.is_some())).flatten().sum();
    let report = serde_json::json!({
        "url": args.url,
        "viewers": args.viewers,
        "connected": connected,
        "keptUp": kept_up,
        "keptUpFraction": kept_up as f64 / args.viewers.max(1) as f64,
        "windowSecs": args.secs,
        "serverCpuPct": server_cpu,
        "serverRssMiB": rss1.map(|r| r as f64 / 1048576.0),
        "serverRssIdleMiB": rss_idle.map(|r| r as f64 / 1048576.0),
        "serverRssWindowStartMiB": rss0.map(|r| r as f64 / 1048576.0),
        "rssPerViewerKiB": rss1.zip(rss_idle).map(|(a, b)| a.saturating_sub(b) as f64 / 1024.0 / connected.max(1) as f64),
        "toolCpuPct": tool_cpu,
        "mbitPerSecReceived": bytes as f64 * 8.0 / 1e6 / ((window_end - start) as f64 / 1000.0),
        "ttffMs": {"p50": pct(0.5), "p99": pct(0.99), "max": ttff.last()},
        "errors": errors,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// A worker process: runs its viewers and prints their results as JSON.
pub async fn worker(spec: MediaWorkerSpec) -> Result<()> {
    let mut handles = Vec::with_capacity(spec.viewers);
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    for i in 0..spec.viewers {
        let spec = spec.clone();
        let limit = limit.clone();
        handles.push(tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(spec.stagger_ms * i as u64)).await;
            let mut r = ViewerResult::default();
            let permit = limit.acquire_owned().await.ok();
            let outcome = tokio::time::timeout(
                Duration::from_millis(spec.window_end_ms.saturating_sub(now_ms())),
                viewer(&spec, &mut r, permit),
            )
            .await;
            match outcome {
                Err(_) => r.alive = true,
                Ok(Ok(())) => {}
                Ok(Err(e)) => r.error = Some(e.to_string()),
            }
            r
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap_or_default());
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

pub(crate) fn host_port_path(url: &str, default_port: u16) -> Result<(String, String)> {
    let rest = url.split_once("://").map(|x| x.1).context("url")?;
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:{default_port}") };
    Ok((hostport, format!("/{path}")))
}

async fn viewer(
    spec: &MediaWorkerSpec,
    r: &mut ViewerResult,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let started = now_ms();
    let mut counter = Counter { spec, r, started };
    if spec.url.starts_with("rtmp://") {
        rtmp_viewer(&spec.url, &mut counter, permit).await
    } else {
        flv_viewer(&spec.url, &mut counter, permit).await
    }
}

struct Counter<'a> {
    spec: &'a MediaWorkerSpec,
    r: &'a mut ViewerResult,
    started: u64,
}

impl Counter<'_> {
    fn video(&mut self, ts: u32) {
        let now = now_ms();
        self.r.video_frames += 1;
        if self.r.first_frame_ms.is_none() {
            self.r.first_frame_ms = Some(now - self.started);
        }
        if now < self.spec.window_start_ms || self.r.ts_at_start.is_none() {
            self.r.ts_at_start = Some(u64::from(ts));
        }
        if now <= self.spec.window_end_ms {
            self.r.ts_at_end = Some(u64::from(ts));
        }
    }
}

// ---------------------------------------------------------------- HTTP-FLV

async fn flv_viewer(url: &str, c: &mut Counter<'_>, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Result<()> {
    let (hostport, path) = host_port_path(url, 80)?;
    let mut s = TcpStream::connect(&hostport).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes()).await?;
    c.r.connected = true;
    drop(permit);
    let mut buf = vec![0u8; 16 * 1024];
    // Response head.
    let mut head = Vec::new();
    let body_start = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("closed before the response head");
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if head.len() > 8192 {
            bail!("response head too long");
        }
    };
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        bail!("HTTP status {}", String::from_utf8_lossy(&head[..12.min(head.len())]));
    }
    let mut p = FlvSkipper::default();
    c.r.bytes += (head.len() - body_start) as u64;
    p.feed(&head[body_start..], c);
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("server closed the stream");
        }
        c.r.bytes += n as u64;
        p.feed(&buf[..n], c);
    }
}

/// Walks FLV tags without keeping bodies.
#[derive(Default)]
struct FlvSkipper {
    header_left: Option<usize>,
    hdr: [u8; 11],
    hdr_len: usize,
    skip: usize,
}

impl FlvSkipper {
    fn feed(&mut self, mut data: &[u8], c: &mut Counter<'_>) {
        let header_left = self.header_left.get_or_insert(13);
        let h = (*header_left).min(data.len());
        *header_left -= h;
        data = &data[h..];
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            let k = (11 - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + k].copy_from_slice(&data[..k]);
            self.hdr_len += k;
            data = &data[k..];
            if self.hdr_len == 11 {
                self.hdr_len = 0;
                let size =
                    (usize::from(self.hdr[1]) << 16) | (usize::from(self.hdr[2]) << 8) | usize::from(self.hdr[3]);
                let ts = (u32::from(self.hdr[4]) << 16)
                    | (u32::from(self.hdr[5]) << 8)
                    | u32::from(self.hdr[6])
                    | (u32::from(self.hdr[7]) << 24);
                match self.hdr[0] & 0x1F {
                    9 => c.video(ts),
                    8 => c.r.audio_frames += 1,
                    _ => {}
                }
                self.skip = size + 4;
            }
        }
    }
}

// ---------------------------------------------------------------- RTMP

#[derive(Clone, Copy, Default)]
struct Csid {
    ts: u32,
    delta: u32,
    len: u32,
    type_id: u8,
    ext: bool,
    left: u32,
}

/// Parses RTMP chunk headers, skipping payloads except the first bytes of each
/// message (enough to spot frames, `_result`, and chunk-size changes).
struct ChunkParser {
    chunk_size: u32,
    csids: HashMap<u32, Csid>,
    hdr: [u8; 18],
    hdr_len: usize,
    /// (csid, bytes left in this chunk) while inside a payload.
    payload: Option<(u32, u32)>,
    first: [u8; 16],
    first_len: usize,
}

enum Msg {
    Video(u32),
    Audio,
    Result,
    Other,
}

impl ChunkParser {
    fn new() -> ChunkParser {
        ChunkParser {
            chunk_size: 128,
            csids: HashMap::new(),
            hdr: [0; 18],
            hdr_len: 0,
            payload: None,
            first: [0; 16],
            first_len: 0,
        }
    }

    /// How many header bytes the buffered header needs in total (None: need more to know).
    fn header_need(&self) -> Option<usize> {
        if self.hdr_len == 0 {
            return None;
        }
        let fmt = self.hdr[0] >> 6;
        let basic = match self.hdr[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let msg = [11, 7, 3, 0][fmt as usize];
        if self.hdr_len < basic {
            return None;
        }
        let csid = self.csid(basic);
        let ext = if fmt == 3 {
            self.csids.get(&csid).is_some_and(|c| c.ext)
        } else {
            if self.hdr_len < basic + 3 {
                return None;
            }
            self.hdr[basic..basic + 3] == [0xFF, 0xFF, 0xFF]
        };
        Some(basic + msg + if ext { 4 } else { 0 })
    }

    fn csid(&self, basic: usize) -> u32 {
        match basic {
            2 => 64 + u32::from(self.hdr[1]),
            3 => 64 + u32::from(self.hdr[1]) + 256 * u32::from(self.hdr[2]),
            _ => u32::from(self.hdr[0] & 0x3F),
        }
    }

    fn u24(b: &[u8]) -> u32 {
        (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
    }

    fn parse_header(&mut self) -> (u32, u32) {
        let fmt = self.hdr[0] >> 6;
        let basic = match self.hdr[0] & 0x3F {
            0 => 2,
            1 => 3,
            _ => 1,
        };
        let id = self.csid(basic);
        let mut c = self.csids.get(&id).copied().unwrap_or_default();
        let h = &self.hdr[basic..];
        let new_message = fmt != 3 || c.left == 0;
        if fmt <= 2 {
            let field = Self::u24(&h[0..3]);
            c.ext = field == 0xFF_FFFF;
            let msg_len = [11, 7, 3][fmt as usize];
            let value = if c.ext {
                u32::from_be_bytes([h[msg_len], h[msg_len + 1], h[msg_len + 2], h[msg_len + 3]])
            } else {
                field
            };
            if fmt == 0 {
                c.ts = value;
                c.delta = value;
            } else {
                c.delta = value;
                c.ts = c.ts.wrapping_add(value);
            }
            if fmt <= 1 {
                c.len = Self::u24(&h[3..6]);
                c.type_id = h[6];
            }
        } else if new_message {
            c.ts = c.ts.wrapping_add(c.delta);
        }
        if new_message {
            c.left = c.len;
            self.first_len = 0;
        }
        let in_chunk = c.left.min(self.chunk_size);
        self.csids.insert(id, c);
        (id, in_chunk)
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<Msg>) {
        while !data.is_empty() {
            if let Some((id, left_in_chunk)) = self.payload {
                let k = (left_in_chunk as usize).min(data.len());
                let room = 16 - self.first_len;
                let take = room.min(k);
                self.first[self.first_len..self.first_len + take].copy_from_slice(&data[..take]);
                self.first_len += take;
                data = &data[k..];
                let c = self.csids.entry(id).or_default();
                c.left -= k as u32;
                let done_msg = c.left == 0;
                let (ts, type_id) = (c.ts, c.type_id);
                if k as u32 == left_in_chunk {
                    self.payload = None;
                } else {
                    self.payload = Some((id, left_in_chunk - k as u32));
                }
                if done_msg {
                    self.payload = None;
                    out.push(self.classify(type_id, ts));
                }
                continue;
            }
            // Header bytes, one at a time until the length is known, then the rest.
            let need = self.header_need().unwrap_or(self.hdr_len + 1);
            let k = (need - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + k].copy_from_slice(&data[..k]);
            self.hdr_len += k;
            data = &data[k..];
            if self.header_need() == Some(self.hdr_len) {
                let (id, in_chunk) = self.parse_header();
                self.hdr_len = 0;
                if in_chunk == 0 {
                    let c = self.csids.get(&id).copied().unwrap_or_default();
                    out.push(self.classify(c.type_id, c.ts));
                } else {
                    self.payload = Some((id, in_chunk));
                }
            }
        }
    }

    fn classify(&mut self, type_id: u8, ts: u32) -> Msg {
        let f = &self.first[..self.first_len];
        match type_id {
            9 if f.len() >= 2 && f[1] == 1 => Msg::Video(ts),
            8 if f.len() >= 2 && f[1] == 1 => Msg::Audio,
            1 if f.len() >= 4 => {
                self.chunk_size = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) & 0x7FFF_FFFF;
                Msg::Other
            }
            20 if f.starts_with(b"\x02\x00\x07_result") => Msg::Result,
            _ => Msg::Other,
        }
    }
}

fn amf_command(values: Vec<rml_amf0::Amf0Value>, csid: u8, stream_id: u32) -> Result<Vec<u8>> {
    let body = rml_amf0::serialize(&values).map_err(|e| anyhow::anyhow!("amf0: {e}"))?;
    // One type-0 chunk per 128 bytes (the default chunk size the server expects).
    let mut out = vec![csid];
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.push(20);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, part) in body.chunks(128).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(part);
    }
    Ok(out)
}

async fn rtmp_viewer(url: &str, c: &mut Counter<'_>, permit: Option<tokio::sync::OwnedSemaphorePermit>) -> Result<()> {
    use rml_amf0::Amf0Value as A;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let (hostport, path) = host_port_path(url, 1935)?;
    let (app, stream) = path.trim_start_matches('/').rsplit_once('/').context("rtmp url needs /app/stream")?;
    let mut s = TcpStream::connect(&hostport).await?;
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1().map_err(|e| anyhow::anyhow!("{e:?}"))?).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let leftover = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("closed during handshake");
        }
        match hs.process_bytes(&buf[..n]).map_err(|e| anyhow::anyhow!("handshake: {e:?}"))? {
            HandshakeProcessResult::InProgress { response_bytes } => s.write_all(&response_bytes).await?,
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                s.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };
    let mut props = HashMap::new();
    props.insert("app".to_string(), A::Utf8String(app.to_string()));
    props.insert("tcUrl".to_string(), A::Utf8String(format!("rtmp://{hostport}/{app}")));
    props.insert("flashVer".to_string(), A::Utf8String("LNX 9,0,124,2".into()));
    props.insert("fpad".to_string(), A::Boolean(false));
    props.insert("capabilities".to_string(), A::Number(15.0));
    props.insert("audioCodecs".to_string(), A::Number(4071.0));
    props.insert("videoCodecs".to_string(), A::Number(252.0));
    props.insert("videoFunction".to_string(), A::Number(1.0));
    let connect = amf_command(vec![A::Utf8String("connect".into()), A::Number(1.0), A::Object(props)], 3, 0)?;
    s.write_all(&connect).await?;
    let mut p = ChunkParser::new();
    let mut msgs = Vec::new();
    let mut results = 0;
    let mut acked: u64 = 0;
    let mut received: u64 = 0;
    p.feed(&leftover, &mut msgs);
    let mut permit = permit;
    loop {
        for m in msgs.drain(..) {
            match m {
                Msg::Video(ts) => c.video(ts),
                Msg::Audio => c.r.audio_frames += 1,
                Msg::Result => {
                    results += 1;
                    if results == 1 {
                        let cs =
                            amf_command(vec![A::Utf8String("createStream".into()), A::Number(2.0), A::Null], 3, 0)?;
                        s.write_all(&cs).await?;
                    } else if results == 2 {
                        let play = amf_command(
                            vec![
                                A::Utf8String("play".into()),
                                A::Number(0.0),
                                A::Null,
                                A::Utf8String(stream.to_string()),
                            ],
                            8,
                            1,
                        )?;
                        s.write_all(&play).await?;
                        c.r.connected = true;
                        permit.take();
                    }
                }
                Msg::Other => {}
            }
        }
        let n = s.read(&mut buf).await?;
        if n == 0 {
            bail!("server closed the stream");
        }
        c.r.bytes += n as u64;
        received += n as u64;
        // Acknowledge every 2.5 MB like FFmpeg (servers announce ≥ 2.5 MB windows).
        if received - acked >= 2_500_000 {
            acked = received;
            let mut ack = vec![2u8, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0];
            ack.extend_from_slice(&(received as u32).to_be_bytes());
            s.write_all(&ack).await?;
        }
        p.feed(&buf[..n], &mut msgs);
    }
}

/// Starts worker processes of this binary (`subcommand --spec JSON`), `viewers` split
/// over at most `procs` of them; `spec(n)` is what a worker with `n` viewers is told.
/// Each prints its report on stdout and is killed if the coordinator drops it.
pub(crate) fn spawn_workers<S: Serialize>(
    exe: &std::path::Path,
    subcommand: &str,
    viewers: usize,
    procs: usize,
    spec: impl Fn(usize) -> S,
) -> Result<Vec<Child>> {
    let per = viewers.div_ceil(procs.max(1));
    let mut children = Vec::new();
    let mut left = viewers;
    while left > 0 {
        let n = per.min(left);
        left -= n;
        let child = Command::new(exe)
            .arg(subcommand)
            .arg("--spec")
            .arg(serde_json::to_string(&spec(n))?)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning a worker")?;
        children.push(child);
    }
    Ok(children)
}

/// Waits for the workers and joins the lists of viewer results they printed.
pub(crate) async fn gather<R: serde::de::DeserializeOwned>(children: Vec<Child>) -> Result<Vec<R>> {
    let mut results = Vec::new();
    for child in children {
        let out = child.wait_with_output().await?;
        let mut v: Vec<R> = serde_json::from_slice(&out.stdout).context("worker output")?;
        results.append(&mut v);
    }
    Ok(results)
}

/// How many viewers ended with each error message.
pub(crate) fn count_errors<'a>(errors: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    let mut counted = HashMap::new();
    for e in errors {
        *counted.entry(e.clone()).or_default() += 1;
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_parser_reads_compressed_and_extended_headers() {
        let mut p = ChunkParser::new();
        let mut out = Vec::new();
        // Set chunk size 4 (type 1, csid 2), then a 6-byte video message on csid 6
        // (two chunks), then a type-2 header (delta 40) and a type-3 new message.
        let mut bytes = vec![2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 4];
        bytes.extend_from_slice(&[6, 0xFF, 0xFF, 0xFF, 0, 0, 6, 9, 1, 0, 0, 0, 0x01, 0x00, 0x00, 0x10]);
        bytes.extend_from_slice(&[0x17, 1, 0, 0]);
        bytes.extend_from_slice(&[0xC6, 0x01, 0x00, 0x00, 0x10, 0, 0]);
        bytes.extend_from_slice(&[0x86, 0, 0, 40, 0x27, 1, 0, 0, 0xC6, 0, 0]);
        for b in &bytes {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        let videos: Vec<u32> = out.iter().filter_map(|m| if let Msg::Video(t) = m { Some(*t) } else { None }).collect();
        assert_eq!(videos, vec![0x0100_0010, 0x0100_0010 + 40]);
    }

    #[test]
    fn flv_skipper_counts_tags() {
        let r = &mut ViewerResult::default();
        let spec = MediaWorkerSpec {
            url: String::new(),
            viewers: 1,
            connect_until_ms: 0,
            window_start_ms: 0,
            window_end_ms: u64::MAX,
            stagger_ms: 0,
        };
        let mut c = Counter { spec: &spec, r, started: 0 };
        let mut s = FlvSkipper::default();
        let mut bytes = vec![b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0];
        for (t, ts) in [(9u8, 0u32), (8, 10), (9, 33)] {
            bytes.extend_from_slice(&[t, 0, 0, 2, 0, 0, ts as u8, 0, 0, 0, 0, 0x17, 1, 0, 0, 0, 13]);
        }
        for ch in bytes.chunks(5) {
            s.feed(ch, &mut c);
        }
        assert_eq!((c.r.video_frames, c.r.audio_frames, c.r.ts_at_end), (2, 1, Some(33)));
    }
}
