//! `onair-bench whep`: many WebRTC viewers (WHEP) of one live stream.
//!
//! Each viewer is a real WebRTC peer: a str0m `Rtc` (full ICE agent) on its own UDP
//! socket that POSTs an SDP offer to `/whep/{stream}`, runs ICE, DTLS and SRTP with the
//! server and counts what it decrypts. To cost the load tool less than the server, the
//! viewers run str0m in RTP mode: packets are decrypted (as a browser would) but not
//! reassembled into frames; keyframes are spotted from the H.264 payload headers
//! (single NAL, STAP-A, FU-A start). Worker processes (`--procs`) each run one
//! single-threaded runtime; the parent reads the server's CPU (whole process and its
//! busiest thread) from `/proc`, and the source's bitrate from the server's `/metrics`.
//!
//! `--light` makes viewers cheaper still: once a viewer has decrypted its first complete
//! keyframe (so ICE, DTLS and SRTP demonstrably work end to end), it reads only the
//! clear-text RTP header of each further packet (SRTP encrypts payloads only) — the
//! video SSRC's timestamps and the bytes — and hands str0m only what is not RTP (STUN
//! consent, DTLS, RTCP). A sample of viewers (`--verify-every`) keeps decrypting
//! everything, so a server sending garbage would still be caught. The server's work is
//! the same either way; only the load tool's cost falls.
//!
//! A viewer *keeps up* when, over the window, the RTP timestamps of the video it
//! received advanced by ≥ 90 % of the wall-clock window, it received ≥ 90 % of the
//! source's bitrate (when `--metrics-url` gives it) and its session is still up.
//! Time to first frame is from sending the WHEP `POST` to the last packet (marker bit)
//! of the first access unit holding an IDR picture.
//!
//! `--janus-mountpoint ID` points the same viewers at a Janus WebRTC Gateway's streaming
//! plugin instead (the comparison peer, `bench/webrtc/janus.sh`): `--url` is then Janus'
//! HTTP API (`http://HOST:8088/janus`), and each viewer creates a session, attaches the
//! plugin, asks to `watch` the mountpoint, answers Janus' offer and sends `start`; time
//! to first frame counts from the `watch` request.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::media::{count_errors, gather, host_port_path, now_ms, sleep_until_ms, spawn_workers};
use crate::procfs::{CpuMark, busiest_thread_secs, machine_busy_pct, machine_jiffies, rss_bytes};

/// `onair-bench whep` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct WhepArgs {
    /// `http://HOST:PORT/whep/STREAM` (a query such as a play signature is kept).
    #[arg(long)]
    pub url: String,
    /// Concurrent viewers.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 15)]
    pub secs: u64,
    /// Seconds after the connect phase before the window opens.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Seconds allowed for connecting every viewer.
    #[arg(long, default_value_t = 20)]
    pub connect_secs: u64,
    /// Delay between viewer starts in one worker, ms (spreads joins over the GOP for
    /// time-to-first-frame runs).
    #[arg(long, default_value_t = 0)]
    pub stagger_ms: u64,
    /// WHEP offers in flight at once per worker process.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Server process for CPU and RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's `/metrics` URL, for the source's bitrate (`onair_stream_bitrate_bps`).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Watch this Janus streaming mountpoint (`--url` is Janus' HTTP API) instead of WHEP.
    #[arg(long)]
    pub janus_mountpoint: Option<u64>,
    /// Light viewers: after its first complete keyframe a viewer stops decrypting media
    /// and checks RTP headers only (see the module header); every `N`th viewer
    /// (`--verify-every N`, 0: none) keeps decrypting everything as a control.
    #[arg(long)]
    pub light: bool,
    /// With `--light`: every `N`th viewer still decrypts all it receives.
    #[arg(long, default_value_t = 50)]
    pub verify_every: usize,
}

/// What a worker process is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhepWorkerSpec {
    url: String,
    viewers: usize,
    window_start_ms: u64,
    window_end_ms: u64,
    stagger_ms: u64,
    concurrency: usize,
    janus_mountpoint: Option<u64>,
    light: bool,
    verify_every: usize,
}

/// One viewer's result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ViewerResult {
    /// The WHEP answer came back (201).
    answered: bool,
    /// ICE + DTLS completed.
    connected: bool,
    /// Still connected at the end of the window.
    alive: bool,
    /// UDP bytes received in all.
    bytes: u64,
    /// UDP bytes received inside the window.
    window_bytes: u64,
    video_packets: u64,
    audio_packets: u64,
    /// Access units with an IDR picture (starts seen).
    keyframes: u64,
    /// POST → 201.
    answer_ms: Option<u64>,
    /// POST → ICE/DTLS connected.
    connect_ms: Option<u64>,
    /// POST → the first IDR access unit complete.
    first_frame_ms: Option<u64>,
    /// Extended 90 kHz video RTP time at the window's start and end.
    vts_at_start: Option<u64>,
    vts_at_end: Option<u64>,
    error: Option<String>,
}

/// The parent: starts the workers, samples the server, prints the report.
pub async fn run(args: WhepArgs) -> Result<()> {
    if !args.url.starts_with("http://") || (!args.url.contains("/whep/") && args.janus_mountpoint.is_none()) {
        bail!("--url must be http://HOST:PORT/whep/STREAM (or Janus' http://HOST:PORT/janus with --janus-mountpoint)");
    }
    let procs = args.procs.max(1);
    let per = args.viewers.div_ceil(procs);
    if per > 9_000 {
        bail!("{per} viewers per process exceeds the open-file limit; use more --procs");
    }
    let stream =
        args.url.split("/whep/").nth(1).and_then(|s| s.split(['?', '/']).next()).unwrap_or_default().to_string();
    let rss_idle = args.server_pid.and_then(rss_bytes);
    let start = now_ms();
    let window_start = start + (args.connect_secs + args.warmup) * 1000;
    let window_end = window_start + args.secs * 1000;
    let exe = std::env::current_exe().context("current_exe")?;
    let children = spawn_workers(&exe, "whep-worker", args.viewers, procs, |n| WhepWorkerSpec {
        url: args.url.clone(),
        viewers: n,
        window_start_ms: window_start,
        window_end_ms: window_end,
        stagger_ms: args.stagger_ms,
        concurrency: args.concurrency.max(1),
        janus_mountpoint: args.janus_mountpoint,
        light: args.light,
        verify_every: args.verify_every,
    })?;
    let worker_pids: Vec<u32> = children.iter().filter_map(|c| c.id()).collect();
    sleep_until_ms(window_start).await;
    let mut pids: Vec<u32> = args.server_pid.into_iter().collect();
    pids.extend(&worker_pids);
    let source0 = match &args.metrics_url {
        Some(u) => source_bps(u, &stream).await,
        None => None,
    };
    let mark0 = CpuMark::take(&pids);
    let threads0 = args.server_pid.map(busiest_thread_secs);
    let machine0 = machine_jiffies();
    sleep_until_ms(window_end).await;
    let mark1 = CpuMark::take(&pids);
    let threads1 = args.server_pid.map(busiest_thread_secs);
    let machine1 = machine_jiffies();
    let rss1 = args.server_pid.and_then(rss_bytes);
    let source1 = match &args.metrics_url {
        Some(u) => source_bps(u, &stream).await,
        None => None,
    };
    let wall = mark1.at.duration_since(mark0.at).as_secs_f64().max(1e-9);
    let cpu = mark1.percent_since(&mark0);
    // The server thread that used the most CPU over the window, in % of one core.
    let busiest = match (threads0, threads1) {
        (Some(a), Some(b)) => b
            .iter()
            .map(|(tid, name, s)| {
                let before = a.iter().find(|(t, _, _)| t == tid).map_or(0.0, |x| x.2);
                (name.clone(), (s - before) / wall * 100.0)
            })
            .max_by(|x, y| x.1.total_cmp(&y.1)),
        _ => None,
    };
    let results: Vec<ViewerResult> = gather(children).await?;
    let window_ms = (window_end - window_start) as f64;
    let connected = results.iter().filter(|r| r.connected).count();
    let source_kbps = match (source0, source1) {
        (Some(a), Some(b)) => Some((a + b) as f64 / 2.0 / 1000.0),
        (a, b) => a.or(b).map(|x| x as f64 / 1000.0),
    };
    // Timestamps alone would pass a viewer that lost most packets but some of every
    // second: when the source's rate is known, the bytes must keep up too.
    let kept_up = results
        .iter()
        .filter(|r| {
            r.alive
                && matches!((r.vts_at_start, r.vts_at_end),
                    (Some(a), Some(b)) if b.saturating_sub(a) as f64 / 90.0 >= 0.9 * window_ms)
                && source_kbps.is_none_or(|s| r.window_bytes as f64 * 8.0 / window_ms >= 0.9 * s)
        })
        .count();
    let pct = |v: &mut Vec<u64>, p: f64| -> Option<u64> {
        v.sort_unstable();
        (!v.is_empty()).then(|| v[((v.len() as f64 - 1.0) * p).round() as usize])
    };
    let mut ttff: Vec<u64> = results.iter().filter_map(|r| r.first_frame_ms).collect();
    let mut conn: Vec<u64> = results.iter().filter_map(|r| r.connect_ms).collect();
    let mut ans: Vec<u64> = results.iter().filter_map(|r| r.answer_ms).collect();
    // Per-viewer receive rate over the window, kbit/s (connected viewers only).
    let mut kbps: Vec<u64> =
        results.iter().filter(|r| r.connected).map(|r| r.window_bytes * 8 / window_ms.max(1.0) as u64).collect();
    let total_window_bytes: u64 = results.iter().map(|r| r.window_bytes).sum();
    let mbps = total_window_bytes as f64 * 8.0 / 1e6 / (window_ms / 1000.0);
    let kbps_p50 = pct(&mut kbps, 0.5);
    let errors = count_errors(results.iter().filter_map(|r| r.error.as_ref()));
    let server_cpu = args.server_pid.and(cpu.first().copied().flatten());
    let tool_cpu: f64 = cpu.iter().skip(usize::from(args.server_pid.is_some())).flatten().sum();
    let machine = machine_busy_pct(machine0, machine1);
    let report = serde_json::json!({
        "url": args.url,
        "viewers": args.viewers,
        "answered": results.iter().filter(|r| r.answered).count(),
        "connected": connected,
        "keptUp": kept_up,
        "keptUpFraction": kept_up as f64 / args.viewers.max(1) as f64,
        "windowSecs": args.secs,
        "sourceKbps": source_kbps,
        "viewerKbps": {"p50": kbps_p50, "p1": pct(&mut kbps, 0.01), "min": kbps.first(), "max": kbps.last()},
        "viewerToSource": kbps_p50.zip(source_kbps).map(|(v, s)| v as f64 / s.max(1.0)),
        "mbitPerSecDelivered": mbps,
        "serverCpuPct": server_cpu,
        "serverCpuPctPer1000Viewers": server_cpu.map(|c| c * 1000.0 / connected.max(1) as f64),
        "serverCpuPctPerMbit": server_cpu.map(|c| c / mbps.max(1e-9)),
        "serverBusiestThread": busiest.map(|(n, p)| serde_json::json!({"name": n, "cpuPct": p})),
        "serverRssMiB": rss1.map(|r| r as f64 / 1048576.0),
        "rssPerViewerKiB": rss1.zip(rss_idle).map(|(a, b)| a.saturating_sub(b) as f64 / 1024.0 / connected.max(1) as f64),
        "toolCpuPct": tool_cpu,
        "machineBusyPct": machine.map(|m| m.0),
        "machineSoftirqPct": machine.map(|m| m.1),
        "answerMs": {"p50": pct(&mut ans, 0.5), "p99": pct(&mut ans, 0.99)},
        "connectMs": {"p50": pct(&mut conn, 0.5), "p99": pct(&mut conn, 0.99)},
        "ttffMs": {"p50": pct(&mut ttff, 0.5), "p99": pct(&mut ttff, 0.99), "max": ttff.last()},
        "keyframesPerViewerP50": pct(&mut results.iter().map(|r| r.keyframes).collect(), 0.5),
        "errors": errors,
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

/// The stream's ingest bitrate from the server's Prometheus text.
async fn source_bps(url: &str, stream: &str) -> Option<u64> {
    let (hostport, path) = host_port_path(url, 80).ok()?;
    let mut s = TcpStream::connect(&hostport).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut body)).await.ok()?.ok()?;
    let key = format!("onair_stream_bitrate_bps{{stream=\"{stream}\"}}");
    body.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse::<f64>().ok()).map(|v| v as u64)
}

/// A worker process: runs its viewers and prints their results as JSON.
pub async fn worker(spec: WhepWorkerSpec) -> Result<()> {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(spec.concurrency));
    let mut handles = Vec::with_capacity(spec.viewers);
    for i in 0..spec.viewers {
        let spec = spec.clone();
        let limit = limit.clone();
        handles.push(tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(spec.stagger_ms * i as u64)).await;
            let mut r = ViewerResult::default();
            let light = spec.light && !(spec.verify_every > 0 && i % spec.verify_every == 0);
            if let Err(e) = viewer(&spec, &mut r, limit, light).await {
                r.error = Some(format!("{e:#}"));
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

/// POSTs `offer` with HTTP/1.0 (a close-delimited, un-chunked answer); (status, body).
async fn post_offer(url: &str, offer: &str) -> Result<(u16, String)> {
    let (hostport, path) = host_port_path(url, 80)?;
    let mut s = TcpStream::connect(&hostport).await?;
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.context("WHEP answer timed out")??;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// One JSON request to Janus' HTTP API (HTTP/1.0, close-delimited answer).
async fn janus_call(url: &str, body: Option<serde_json::Value>) -> Result<serde_json::Value> {
    let (hostport, path) = host_port_path(url, 80)?;
    let mut s = TcpStream::connect(&hostport).await?;
    let req = match &body {
        Some(b) => {
            let b = b.to_string();
            format!(
                "POST {path} HTTP/1.0\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }
        None => format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n"),
    };
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(40), s.read_to_end(&mut out)).await.context("Janus timed out")??;
    let text = String::from_utf8_lossy(&out);
    let (_, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let v: serde_json::Value = serde_json::from_str(body).context("Janus answer is not JSON")?;
    if v["janus"] == "error" {
        bail!("Janus: {}", v["error"]["reason"]);
    }
    Ok(v)
}

/// Janus signalling up to its offer: (offer SDP, the handle's URL).
async fn janus_watch(base: &str, mountpoint: u64) -> Result<(String, String)> {
    let created = janus_call(base, Some(serde_json::json!({"janus": "create", "transaction": "c"}))).await?;
    let session = created["data"]["id"].as_u64().context("no Janus session id")?;
    let surl = format!("{base}/{session}");
    let attach = serde_json::json!({"janus": "attach", "plugin": "janus.plugin.streaming", "transaction": "a"});
    let handle = janus_call(&surl, Some(attach)).await?["data"]["id"].as_u64().context("no Janus handle id")?;
    let hurl = format!("{surl}/{handle}");
    let watch =
        serde_json::json!({"janus": "message", "transaction": "w", "body": {"request": "watch", "id": mountpoint}});
    janus_call(&hurl, Some(watch)).await?;
    for _ in 0..5 {
        let ev = janus_call(&format!("{surl}?maxev=1"), None).await?;
        if let Some(sdp) = ev["jsep"]["sdp"].as_str() {
            return Ok((sdp.to_string(), hurl));
        }
    }
    bail!("no offer from Janus")
}

/// What an H.264 RTP payload (RFC 6184) starts: an IDR slice (alone, in a STAP-A, or the
/// first fragment of an FU-A)?
pub fn h264_starts_idr(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else { return false };
    match first & 0x1f {
        5 => true,
        // STAP-A: 2-byte sizes, then NAL units.
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(nal) = rest.get(2..2 + n) else { return false };
                if nal.first().is_some_and(|b| b & 0x1f == 5) {
                    return true;
                }
                rest = &rest[2 + n..];
            }
            false
        }
        // FU-A: the start bit and the fragmented NAL's type.
        28 => payload.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5),
        _ => false,
    }
}

async fn viewer(
    spec: &WhepWorkerSpec,
    r: &mut ViewerResult,
    limit: std::sync::Arc<tokio::sync::Semaphore>,
    light: bool,
) -> Result<()> {
    let (hostport, _) = host_port_path(&spec.url, 80)?;
    let server: SocketAddr = tokio::net::lookup_host(&hostport).await?.next().context("resolving the server")?;
    // 1 MiB: a keyframe burst (~100 datagrams) must wait in the buffer while this
    // process serves its other viewers.
    let socket = onair_webrtc::engine::bind_udp(SocketAddr::new(server.ip(), 0), 1 << 20)?;
    let local = socket.local_addr()?;
    let mut cfg = Rtc::builder().set_rtp_mode(true).clear_codecs().enable_opus(true, false);
    // The profiles the server answers with (see onair-webrtc's engine).
    for (pt, rtx, profile) in
        [(102u8, 103u8, 0x42e01f_u32), (104, 105, 0x42001f), (106, 107, 0x4d001f), (108, 109, 0x64001f)]
    {
        cfg.codec_config().add_h264(pt.into(), Some(rtx.into()), true, profile);
    }
    let mut rtc = cfg.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| anyhow::anyhow!("candidate: {e}"))?);
    let permit = limit.acquire_owned().await?;
    let posted = Instant::now();
    let since = |t: Instant| t.saturating_duration_since(posted).as_millis() as u64;
    match spec.janus_mountpoint {
        None => {
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            let (offer, pending) = api.apply().context("no offer")?;
            let (status, body) = post_offer(&spec.url, &offer.to_sdp_string()).await?;
            if status != 201 {
                bail!("WHEP {status}: {}", body.trim().chars().take(80).collect::<String>());
            }
            let answer = SdpAnswer::from_sdp_string(&body).map_err(|e| anyhow::anyhow!("answer: {e}"))?;
            rtc.sdp_api().accept_answer(pending, answer).map_err(|e| anyhow::anyhow!("answer: {e}"))?;
        }
        Some(id) => {
            let (offer, handle) = janus_watch(&spec.url, id).await?;
            let offer = SdpOffer::from_sdp_string(&offer).map_err(|e| anyhow::anyhow!("Janus offer: {e}"))?;
            let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| anyhow::anyhow!("Janus offer: {e}"))?;
            let start = serde_json::json!({"janus": "message", "transaction": "s", "body": {"request": "start"},
                "jsep": {"type": "answer", "sdp": answer.to_sdp_string()}});
            janus_call(&handle, Some(start)).await?;
        }
    }
    r.answered = true;
    r.answer_ms = Some(since(Instant::now()));
    let mut permit = Some(permit);
    let mut buf = vec![0u8; 2048];
    let end = Instant::now() + Duration::from_millis(spec.window_end_ms.saturating_sub(now_ms()));
    let mut idr_ts: Option<u32> = None;
    // Light mode: the video SSRC and its RTP time (32-bit, and extended) last decrypted.
    let mut video_clock: Option<(u32, u32, u64)> = None;
    let mut failed = false;
    loop {
        let timeout = match rtc.poll_output().map_err(|e| anyhow::anyhow!("str0m: {e}"))? {
            Output::Transmit(t) => {
                let _ = socket.try_send_to(&t.contents, t.destination);
                continue;
            }
            Output::Event(e) => {
                match e {
                    Event::Connected => {
                        r.connected = true;
                        r.connect_ms = Some(since(Instant::now()));
                        // Connected: let the next offer go.
                        permit.take();
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => failed = true,
                    Event::RtpPacket(p) => {
                        let now = now_ms();
                        if p.time.frequency().get() == 90_000 {
                            r.video_packets += 1;
                            if h264_starts_idr(&p.payload) {
                                if idr_ts != Some(p.header.timestamp) {
                                    r.keyframes += 1;
                                }
                                idr_ts = Some(p.header.timestamp);
                            }
                            if p.header.marker && r.first_frame_ms.is_none() && idr_ts == Some(p.header.timestamp) {
                                r.first_frame_ms = Some(since(Instant::now()));
                            }
                            video_clock = Some((*p.header.ssrc, p.header.timestamp, p.time.numer()));
                            if r.first_frame_ms.is_some() {
                                let vts = p.time.numer();
                                if now < spec.window_start_ms || r.vts_at_start.is_none() {
                                    r.vts_at_start = Some(vts);
                                }
                                if now <= spec.window_end_ms {
                                    r.vts_at_end = Some(vts);
                                }
                            }
                        } else {
                            r.audio_packets += 1;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            Output::Timeout(t) => t,
        };
        if failed || !rtc.is_alive() {
            bail!("session ended");
        }
        let now = Instant::now();
        if now >= end {
            r.alive = r.connected;
            return Ok(());
        }
        let wait = timeout.min(end).saturating_duration_since(now);
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, source))) => {
                r.bytes += n as u64;
                let t = now_ms();
                if t >= spec.window_start_ms && t < spec.window_end_ms {
                    r.window_bytes += n as u64;
                }
                let Some(data) = buf.get(..n) else { continue };
                if light
                    && r.first_frame_ms.is_some()
                    && let Some(clock) = video_clock.as_mut()
                    && let Some(h) = RtpHead::parse(data)
                {
                    // Header only: SRTP leaves the RTP header in the clear.
                    if h.ssrc == clock.0 {
                        r.video_packets += 1;
                        clock.2 = clock.2.saturating_add_signed(i64::from(h.timestamp.wrapping_sub(clock.1) as i32));
                        clock.1 = h.timestamp;
                        if t < spec.window_start_ms || r.vts_at_start.is_none() {
                            r.vts_at_start = Some(clock.2);
                        }
                        if t <= spec.window_end_ms {
                            r.vts_at_end = Some(clock.2);
                        }
                    } else {
                        r.audio_packets += 1;
                    }
                    continue;
                }
                let Ok(contents) = DatagramRecv::try_from(data) else { continue };
                let input = Input::Receive(
                    Instant::now(),
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                );
                rtc.handle_input(input).map_err(|e| anyhow::anyhow!("str0m: {e}"))?;
            }
            Ok(Err(e)) => bail!("udp: {e}"),
            Err(_) => rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| anyhow::anyhow!("str0m: {e}"))?,
        }
    }
}

/// The clear-text part of an SRTP packet's RTP header (RFC 3550 §5.1) that a light
/// viewer reads.
#[derive(Debug, PartialEq, Eq)]
struct RtpHead {
    timestamp: u32,
    ssrc: u32,
}

impl RtpHead {
    /// `None` for anything that is not RTP: STUN, DTLS, and RTCP (packet types 192–223
    /// in the second byte, RFC 5761 §4).
    fn parse(d: &[u8]) -> Option<RtpHead> {
        let (first, second) = (*d.first()?, *d.get(1)?);
        if !(128..=191).contains(&first) || (192..=223).contains(&second) || d.len() < 12 {
            return None;
        }
        let word = |i: usize| d.get(i..i + 4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
        Some(RtpHead { timestamp: word(4)?, ssrc: word(8)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_heads_are_told_from_rtcp_stun_and_dtls() {
        let rtp = [0x80, 0x66, 0, 1, 0, 0, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 9];
        assert_eq!(RtpHead::parse(&rtp), Some(RtpHead { timestamp: 0x1234, ssrc: 0xdeadbeef }));
        // Marker bit set: still RTP.
        let mut marked = rtp;
        marked[1] = 0xe6;
        assert!(RtpHead::parse(&marked).is_some());
        // RTCP receiver report (201), a STUN request, a DTLS record, a short packet.
        assert_eq!(RtpHead::parse(&[0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2]), None);
        assert_eq!(RtpHead::parse(&[0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]), None);
        assert_eq!(RtpHead::parse(&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(RtpHead::parse(&rtp[..11]), None);
    }

    #[test]
    fn idr_starts_in_every_packetization() {
        assert!(h264_starts_idr(&[0x65, 0x88]));
        assert!(!h264_starts_idr(&[0x41, 0x9a]));
        // STAP-A: SPS (3 bytes), PPS (2), IDR (2).
        assert!(h264_starts_idr(&[0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 1, 0, 2, 0x65, 9]));
        assert!(!h264_starts_idr(&[0x78, 0, 3, 0x67, 1, 2, 0, 2, 0x68, 1]));
        // A STAP-A that claims more than it holds.
        assert!(!h264_starts_idr(&[0x78, 0, 9, 0x65]));
        // FU-A: start of an IDR; middle of one; start of a non-IDR slice.
        assert!(h264_starts_idr(&[0x7c, 0x85, 1]));
        assert!(!h264_starts_idr(&[0x7c, 0x05, 1]));
        assert!(!h264_starts_idr(&[0x7c, 0x81, 1]));
        assert!(!h264_starts_idr(&[]));
    }
}
