//! A worker process (`onair-bench worker --spec JSON`), started by the parent.
//!
//! Two kinds exist. *Viewer* workers hold thousands of raw-socket viewers:
//! no JSON, no per-connection task; groups of connections are polled with
//! non-blocking reads every `read_interval_ms` (plain sockets, outside the runtime's
//! epoll set: nothing wakes for them), and a [`Scanner`] counts
//! `"seq":` keys (= messages) and bytes, answering pings. The *probe* worker
//! holds everything that needs timing and so must not share a busy event
//! loop: the senders and the sampled viewers, which decode every push and
//! record publish→receive latency from the send time in `cloudCustomData`.
//!
//! Protocol with the parent: the worker connects, prints one `ready` JSON
//! line, reads one [`Timeline`] line on stdin, runs it, prints one `result`
//! line and exits.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use memchr::memmem::Finder;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::frame::{Counts, Event, OP_CLOSE, OP_PING, OP_TEXT, Scanner, client_frame, parse_frame};
use crate::hist::Histogram;
use crate::net::{WsUrl, connect_from, source_addrs, ws_upgrade};
use crate::target::{self, MSG_PATTERN, Target};

const OP_PONG: u8 = 0xa;

/// What the parent tells a worker to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub index: usize,
    /// Probe worker: senders + sampled viewers. Otherwise raw viewers.
    pub probe: bool,
    pub target: Target,
    /// Server URLs (cluster nodes); connection `i` goes to `urls[(i + index) % len]`
    /// unless `only` pins the whole worker to one of them.
    pub urls: Vec<String>,
    /// Index into `urls` every connection of this worker goes to.
    #[serde(default)]
    pub only: Option<usize>,
    pub room: String,
    pub viewers: usize,
    pub senders: usize,
    /// Total messages per second over all senders.
    pub rate: f64,
    pub sdkappid: u64,
    pub secret_key: String,
    pub src_addrs: usize,
    pub connect_concurrency: usize,
    pub connect_timeout_secs: u64,
    pub read_interval_ms: u64,
    pub group_size: usize,
}

/// Wall-clock instants (unix µs) shared by all workers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timeline {
    /// Senders start.
    pub start_us: u64,
    pub measure_start_us: u64,
    /// Senders stop.
    pub measure_end_us: u64,
    /// Viewers stop counting (after a drain period) and the worker reports.
    pub stop_us: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Ready {
    /// Connections that completed their join (viewers + senders).
    pub connected: u64,
    pub viewers: u64,
    pub senders: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub connect_secs: f64,
    /// Viewers (raw and sampled) that joined, per server URL.
    #[serde(default)]
    pub viewers_by_node: Vec<u64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerResult {
    pub viewers: u64,
    /// Connections (any kind) closed by the server or failing after connect.
    pub dropped: u64,
    pub drop_reasons: BTreeMap<String, u64>,
    /// Chat messages / data frames / payload bytes received by viewers in the
    /// measurement window, and from start until stop (`*_total`).
    pub msgs_window: u64,
    pub frames_window: u64,
    pub bytes_window: u64,
    pub msgs_total: u64,
    pub frames_total: u64,
    pub bytes_total: u64,
    /// Sampled viewers (probe only).
    pub sampled_viewers: u64,
    pub sampled_msgs_total: u64,
    pub latency_us: Histogram,
    pub seq_gaps: u64,
    pub seq_dups: u64,
    pub parse_errors: u64,
    /// Senders (probe only).
    pub senders: u64,
    pub sent: u64,
    pub sent_window: u64,
    pub acked_ok: u64,
    pub ack_errors: BTreeMap<String, u64>,
    pub freq_dropped: u64,
    pub ack_missing: u64,
    pub ack_rtt_us: Histogram,
    pub send_skipped_ticks: u64,
    /// Chat messages received from start until stop, per server URL.
    #[serde(default)]
    pub msgs_by_node: Vec<u64>,
    /// Publish→receive latency of sampled viewers, per server URL.
    #[serde(default)]
    pub latency_by_node_us: Vec<Histogram>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Report {
    Ready(Ready),
    Result(Box<WorkerResult>),
}

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn instant_at(unix_us: u64) -> Instant {
    let now = now_us();
    if unix_us >= now {
        Instant::now() + Duration::from_micros(unix_us - now)
    } else {
        Instant::now() - Duration::from_micros((now - unix_us).min(3_600_000_000))
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn short(e: &anyhow::Error) -> String {
    format!("{e:#}").chars().take(120).collect()
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

fn emit(report: &Report) {
    // One line per report; the parent reads stdout line by line.
    if let Ok(line) = serde_json::to_string(report) {
        println!("{line}");
    }
}

/// Counters shared by all tasks of a worker.
#[derive(Default)]
struct Shared {
    msgs: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    drop_reasons: Mutex<BTreeMap<String, u64>>,
    /// Messages per server URL (only the totals are split by node).
    node_msgs: Vec<AtomicU64>,
}

impl Shared {
    fn new(nodes: usize) -> Self {
        Self { node_msgs: (0..nodes).map(|_| AtomicU64::new(0)).collect(), ..Default::default() }
    }

    fn add(&self, node: usize, c: &Counts) {
        if c.frames > 0 || c.bytes > 0 {
            self.msgs.fetch_add(c.msgs, Relaxed);
            self.frames.fetch_add(c.frames, Relaxed);
            self.bytes.fetch_add(c.bytes, Relaxed);
            if let Some(n) = self.node_msgs.get(node) {
                n.fetch_add(c.msgs, Relaxed);
            }
        }
    }

    fn node_snapshot(&self) -> Vec<u64> {
        self.node_msgs.iter().map(|n| n.load(Relaxed)).collect()
    }

    fn snapshot(&self) -> Counts {
        Counts { msgs: self.msgs.load(Relaxed), frames: self.frames.load(Relaxed), bytes: self.bytes.load(Relaxed) }
    }

    fn drop_conn(&self, reason: String) {
        self.dropped.fetch_add(1, Relaxed);
        bump(&self.drop_reasons, reason);
    }
}

struct Ctx {
    spec: WorkerSpec,
    /// The servers, parsed and resolved, in `spec.urls` order.
    dsts: Vec<(WsUrl, SocketAddr)>,
    srcs: Vec<Ipv4Addr>,
    shared: Shared,
    timeline: watch::Receiver<Option<Timeline>>,
}

impl Ctx {
    fn src(&self, i: usize) -> Ipv4Addr {
        self.srcs[(i + self.spec.index) % self.srcs.len()]
    }

    /// The server connection `i` of this worker goes to (round-robin over the URLs).
    fn node(&self, i: usize) -> usize {
        self.spec.only.unwrap_or((i + self.spec.index) % self.dsts.len())
    }
}

pub async fn run(spec: WorkerSpec) -> Result<()> {
    let mut dsts = Vec::new();
    for u in &spec.urls {
        let url = WsUrl::parse(u)?;
        let dst = url.resolve()?;
        dsts.push((url, dst));
    }
    if dsts.is_empty() || spec.only.is_some_and(|o| o >= dsts.len()) {
        bail!("worker spec: no usable server URL");
    }
    let (tl_tx, tl_rx) = watch::channel(None);
    let srcs = source_addrs(spec.src_addrs);
    let shared = Shared::new(dsts.len());
    let ctx = Arc::new(Ctx { spec, dsts, srcs, shared, timeline: tl_rx });

    let mut tasks: JoinSet<Partial> = JoinSet::new();
    let started = Instant::now();
    let mut ready = if ctx.spec.probe {
        connect_probe(&ctx, &mut tasks).await
    } else {
        connect_raw_viewers(&ctx, &mut tasks).await
    };
    ready.connect_secs = started.elapsed().as_secs_f64();
    emit(&Report::Ready(ready.clone()));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let Some(line) = lines.next_line().await? else {
        // The parent went away before the run started.
        return Ok(());
    };
    let tl: Timeline = serde_json::from_str(&line).context("timeline from parent")?;
    tl_tx.send_replace(Some(tl));

    sleep_until(instant_at(tl.start_us)).await;
    let at_start = ctx.shared.snapshot();
    let nodes_at_start = ctx.shared.node_snapshot();
    sleep_until(instant_at(tl.measure_start_us)).await;
    let a = ctx.shared.snapshot();
    sleep_until(instant_at(tl.measure_end_us)).await;
    let b = ctx.shared.snapshot();

    let mut res = WorkerResult { viewers: ready.viewers, ..Default::default() };
    while let Some(p) = tasks.join_next().await {
        if let Ok(p) = p {
            p.merge_into(&mut res);
        }
    }
    let end = ctx.shared.snapshot();
    res.msgs_by_node = ctx.shared.node_snapshot().iter().zip(&nodes_at_start).map(|(e, s)| e - s).collect();
    res.msgs_window = b.msgs - a.msgs;
    res.frames_window = b.frames - a.frames;
    res.bytes_window = b.bytes - a.bytes;
    res.msgs_total = end.msgs - at_start.msgs;
    res.frames_total = end.frames - at_start.frames;
    res.bytes_total = end.bytes - at_start.bytes;
    res.dropped = ctx.shared.dropped.load(Relaxed);
    res.drop_reasons = ctx.shared.drop_reasons.lock().map(|m| m.clone()).unwrap_or_default();
    emit(&Report::Result(Box::new(res)));
    Ok(())
}

/// What a finished task contributes to the result.
#[derive(Default)]
struct Partial {
    sampled: Option<SampleStats>,
    sender: Option<SenderStats>,
}

impl Partial {
    fn merge_into(self, r: &mut WorkerResult) {
        if let Some(s) = self.sampled {
            r.sampled_viewers += 1;
            r.sampled_msgs_total += s.msgs;
            r.latency_us.merge(&s.latency);
            if r.latency_by_node_us.len() <= s.node {
                r.latency_by_node_us.resize_with(s.node + 1, Histogram::default);
            }
            r.latency_by_node_us[s.node].merge(&s.latency);
            r.seq_gaps += s.gaps;
            r.seq_dups += s.dups;
            r.parse_errors += s.parse_errors;
        }
        if let Some(s) = self.sender {
            r.senders += 1;
            r.sent += s.sent;
            r.sent_window += s.sent_window;
            r.acked_ok += s.acked_ok;
            for (k, v) in s.ack_errors {
                *r.ack_errors.entry(k).or_default() += v;
            }
            r.freq_dropped += s.freq_dropped;
            r.ack_missing += s.missing;
            r.ack_rtt_us.merge(&s.rtt);
            r.send_skipped_ticks += s.skipped;
        }
    }
}

// ---------------------------------------------------------------- raw viewers

struct RawConn {
    /// Out of the runtime's epoll set once joined (see [`connect_raw`]).
    stream: Option<std::net::TcpStream>,
    /// Index of the server URL.
    node: usize,
    scan: Scanner,
    out: Vec<u8>,
    mask: u32,
}

async fn connect_raw_viewers(ctx: &Arc<Ctx>, tasks: &mut JoinSet<Partial>) -> Ready {
    let mut ready = Ready { viewers_by_node: vec![0; ctx.dsts.len()], ..Default::default() };
    let n = ctx.spec.viewers;
    let timeout = Duration::from_secs(ctx.spec.connect_timeout_secs);
    let mut attempts = futures_util::stream::iter(0..n)
        .map(|i| {
            let ctx = ctx.clone();
            async move {
                tokio::time::timeout(timeout, connect_raw(&ctx, i))
                    .await
                    .map_err(|_| anyhow!("connect timed out"))
                    .and_then(|r| r)
            }
        })
        .buffer_unordered(ctx.spec.connect_concurrency.max(1));
    let mut group = Vec::new();
    let mut groups = 0u64;
    while let Some(r) = attempts.next().await {
        match r {
            Ok(c) => {
                ready.connected += 1;
                ready.viewers += 1;
                ready.viewers_by_node[c.node] += 1;
                group.push(c);
                if group.len() >= ctx.spec.group_size {
                    spawn_group(ctx, tasks, std::mem::take(&mut group), groups);
                    groups += 1;
                }
            }
            Err(e) => {
                ready.failed += 1;
                *ready.errors.entry(short(&e)).or_default() += 1;
            }
        }
    }
    if !group.is_empty() {
        spawn_group(ctx, tasks, group, groups);
    }
    ready
}

async fn connect_raw(ctx: &Ctx, i: usize) -> Result<RawConn> {
    let spec = &ctx.spec;
    let node = ctx.node(i);
    let (server, dst) = &ctx.dsts[node];
    let mut stream = connect_from(ctx.src(i), *dst).await?;
    let url = WsUrl { authority: server.authority.clone(), path: spec.target.ws_path(&server.path, &spec.room, "") };
    let mut buf = ws_upgrade(&mut stream, &url).await?;
    let mask = i as u32;
    match spec.target {
        Target::Onair | Target::Ws => {
            stream.write_all(&client_frame(OP_TEXT, target::onair_join(1, &spec.room).as_bytes(), mask)).await?;
            read_until(&mut stream, &mut buf, |t| match target::onair_ack(t) {
                Some(a) if a.id == Some(1) && a.code == Some(0) => Ok(true),
                Some(a) if a.id == Some(1) => {
                    bail!("join refused: code {:?} {}", a.code, a.message)
                }
                _ => Ok(false),
            })
            .await?;
        }
        Target::Socketio => {
            read_until(&mut stream, &mut buf, |t| Ok(t.starts_with('0'))).await?;
            stream.write_all(&client_frame(OP_TEXT, b"40", mask)).await?;
            read_until(&mut stream, &mut buf, |t| {
                if t.starts_with("44") {
                    bail!("socket.io connect error: {t}");
                }
                Ok(t.starts_with("40"))
            })
            .await?;
        }
    }
    // Polled from here on, never awaited: a socket left in the runtime's epoll set
    // makes every arriving frame run epoll's callback and, when this process is
    // idle, wake it — on loopback that work runs in the *server's* send path and
    // is charged to the server (over a third of its CPU at 10,000 viewers), where a
    // remote viewer's wake-ups would cost its own machine.
    let stream = stream.into_std().context("taking the socket out of the runtime")?;
    stream.set_nonblocking(true)?;
    let mut conn = RawConn { stream: Some(stream), node, scan: Scanner::new(), out: Vec::new(), mask };
    // Frames that came right behind the ack: scan them (counts before the
    // start are discarded anyway) so the scanner is aligned.
    let finder = Finder::new(MSG_PATTERN);
    let mut events = Vec::new();
    let mut counts = Counts::default();
    conn.scan.feed(&buf, &finder, &mut counts, &mut events);
    for ev in events {
        if let Some(reason) = conn.on_event(ev, spec.target) {
            bail!("{reason}");
        }
    }
    Ok(conn)
}

/// Reads whole frames (answering pings) until `done` accepts a text frame.
/// Bytes after that frame stay in `buf`.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(&str) -> Result<bool>,
) -> Result<()> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some(f) = parse_frame(buf).map_err(|e| anyhow!(e))? {
            let payload = buf[f.payload.clone()].to_vec();
            buf.drain(..f.len);
            match f.opcode {
                OP_PING => stream.write_all(&client_frame(OP_PONG, &payload, 1)).await?,
                OP_CLOSE => {
                    let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 0 };
                    bail!("closed by server: {code} {}", String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])));
                }
                OP_TEXT if f.fin => {
                    let text = std::str::from_utf8(&payload).context("non-UTF-8 text")?;
                    if text == "2" {
                        stream.write_all(&client_frame(OP_TEXT, b"3", 1)).await?;
                    } else if done(text)? {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed during join");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl RawConn {
    /// Reacts to a scanner event; returns a reason if the connection is over.
    fn on_event(&mut self, ev: Event, target: Target) -> Option<String> {
        match ev {
            Event::Ping(p) => {
                self.mask = self.mask.wrapping_add(1);
                self.out.extend_from_slice(&client_frame(OP_PONG, &p, self.mask));
                None
            }
            Event::SmallText(t) => {
                if target == Target::Socketio {
                    if t == b"2" {
                        self.mask = self.mask.wrapping_add(1);
                        self.out.extend_from_slice(&client_frame(OP_TEXT, b"3", self.mask));
                    } else if t.first() == Some(&b'1') || t.starts_with(b"41") {
                        return Some("engine.io/socket.io close packet".into());
                    }
                }
                None
            }
            Event::Close(code, reason) => Some(format!("close frame {code} {reason}")),
            Event::Protocol(e) => Some(format!("protocol error: {e}")),
        }
    }

    /// Reads everything pending without waiting; returns a reason when the
    /// connection ended.
    fn poll(
        &mut self,
        scratch: &mut [u8],
        finder: &Finder<'_>,
        counts: &mut Counts,
        events: &mut Vec<Event>,
        target: Target,
    ) -> Option<String> {
        let mut stream = self.stream.as_ref()?;
        loop {
            match stream.read(scratch) {
                Ok(0) => return Some("closed by server (EOF)".into()),
                Ok(n) => {
                    self.scan.feed(&scratch[..n], finder, counts, events);
                    if n < scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Some(format!("read error: {:?}", e.kind())),
            }
        }
        for ev in events.drain(..) {
            if let Some(reason) = self.on_event(ev, target) {
                return Some(reason);
            }
        }
        if !self.out.is_empty() {
            let mut stream = self.stream.as_ref()?;
            match stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(format!("write error: {:?}", e.kind())),
            }
        }
        None
    }
}

fn spawn_group(ctx: &Arc<Ctx>, tasks: &mut JoinSet<Partial>, mut conns: Vec<RawConn>, n: u64) {
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let period = Duration::from_millis(ctx.spec.read_interval_ms.max(1));
        // Stagger groups so they do not all wake at once.
        let phase = Duration::from_micros((n * 7919 % 97) * period.as_micros() as u64 / 97);
        let mut ticker = tokio::time::interval_at(Instant::now() + phase, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let finder = Finder::new(MSG_PATTERN);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        let mut stop_us = u64::MAX;
        let mut counts = vec![Counts::default(); ctx.dsts.len()];
        loop {
            ticker.tick().await;
            counts.fill(Counts::default());
            for c in conns.iter_mut().filter(|c| c.stream.is_some()) {
                let node = c.node;
                if let Some(reason) = c.poll(&mut scratch, &finder, &mut counts[node], &mut events, ctx.spec.target) {
                    c.stream = None;
                    events.clear();
                    ctx.shared.drop_conn(reason);
                }
            }
            for (node, c) in counts.iter().enumerate() {
                ctx.shared.add(node, c);
            }
            if stop_us == u64::MAX {
                if let Some(tl) = *ctx.timeline.borrow() {
                    stop_us = tl.stop_us;
                }
            } else if now_us() >= stop_us {
                break;
            }
        }
        Partial::default()
    });
}

// ---------------------------------------------------------------- probe

type Ws = WebSocketStream<TcpStream>;

async fn connect_ws(ctx: &Ctx, i: usize, node: usize, user: &str) -> Result<Ws> {
    let (server, dst) = &ctx.dsts[node];
    let stream = connect_from(ctx.src(i), *dst).await?;
    let url = server.with_path(&ctx.spec.target.ws_path(&server.path, &ctx.spec.room, user));
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await.context("websocket upgrade")?;
    Ok(ws)
}

/// Sends a request and waits for the text frame `done` accepts.
async fn request(ws: &mut Ws, text: Option<String>, mut done: impl FnMut(&str) -> Result<bool>) -> Result<()> {
    if let Some(t) = text {
        ws.send(Message::text(t)).await?;
    }
    while let Some(m) = ws.next().await {
        match m? {
            Message::Text(t) => {
                if t.as_str() == "2" {
                    ws.send(Message::text("3")).await?;
                } else if done(t.as_str())? {
                    return Ok(());
                }
            }
            Message::Close(f) => bail!("closed by server: {f:?}"),
            _ => {}
        }
    }
    bail!("connection closed")
}

fn ack_ok(id: u64, what: &'static str) -> impl FnMut(&str) -> Result<bool> {
    move |t| match target::onair_ack(t) {
        Some(a) if a.id == Some(id) && a.code == Some(0) => Ok(true),
        Some(a) if a.id == Some(id) => bail!("{what} refused: code {:?} {}", a.code, a.message),
        _ => Ok(false),
    }
}

async fn sio_handshake(ws: &mut Ws) -> Result<()> {
    request(ws, None, |t| Ok(t.starts_with('0'))).await?;
    request(ws, Some("40".into()), |t| {
        if t.starts_with("44") {
            bail!("socket.io connect error: {t}");
        }
        Ok(t.starts_with("40"))
    })
    .await
}

async fn connect_probe(ctx: &Arc<Ctx>, tasks: &mut JoinSet<Partial>) -> Ready {
    let mut ready = Ready { viewers_by_node: vec![0; ctx.dsts.len()], ..Default::default() };
    let timeout = Duration::from_secs(ctx.spec.connect_timeout_secs);
    // Senders first, one by one: a failing login should be visible early.
    for s in 0..ctx.spec.senders {
        let user = format!("bench-sender-{s}");
        let r = tokio::time::timeout(timeout, connect_sender(ctx, s, &user))
            .await
            .map_err(|_| anyhow!("connect timed out"))
            .and_then(|r| r);
        match r {
            Ok(ws) => {
                ready.connected += 1;
                ready.senders += 1;
                let ctx = ctx.clone();
                tasks.spawn(
                    async move { Partial { sender: Some(run_sender(&ctx, ws, s).await), ..Default::default() } },
                );
            }
            Err(e) => {
                eprintln!("onair-bench: sender {user}: {e:#}");
                ready.failed += 1;
                *ready.errors.entry(format!("sender: {}", short(&e))).or_default() += 1;
            }
        }
    }
    let base = ctx.spec.senders;
    let mut attempts = futures_util::stream::iter(0..ctx.spec.viewers)
        .map(|i| {
            let ctx = ctx.clone();
            async move {
                let node = ctx.node(i);
                let r = tokio::time::timeout(timeout, connect_sampled(&ctx, base + i, node))
                    .await
                    .map_err(|_| anyhow!("connect timed out"))
                    .and_then(|r| r);
                (node, r)
            }
        })
        .buffer_unordered(ctx.spec.connect_concurrency.max(1));
    while let Some((node, r)) = attempts.next().await {
        match r {
            Ok(ws) => {
                ready.connected += 1;
                ready.viewers += 1;
                ready.viewers_by_node[node] += 1;
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    Partial { sampled: Some(run_sampled(&ctx, ws, node).await), ..Default::default() }
                });
            }
            Err(e) => {
                ready.failed += 1;
                *ready.errors.entry(short(&e)).or_default() += 1;
            }
        }
    }
    ready
}

async fn connect_sender(ctx: &Ctx, i: usize, user: &str) -> Result<Ws> {
    // Senders spread over the servers too (sender i on server i mod n).
    let mut ws = connect_ws(ctx, i, ctx.node(i), user).await?;
    match ctx.spec.target {
        Target::Onair => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            let sig = onair_auth::gen_usersig(ctx.spec.sdkappid, &ctx.spec.secret_key, user, 86_400, now);
            request(&mut ws, Some(target::onair_login(1, ctx.spec.sdkappid, user, &sig)), ack_ok(1, "login")).await?;
            request(&mut ws, Some(target::onair_join(2, &ctx.spec.room)), ack_ok(2, "join")).await?;
        }
        Target::Ws => {
            // No auth: the login only names the sender in its MSGs.
            request(&mut ws, Some(target::onair_login(1, ctx.spec.sdkappid, user, "")), ack_ok(1, "login")).await?;
            request(&mut ws, Some(target::onair_join(2, &ctx.spec.room)), ack_ok(2, "join")).await?;
        }
        Target::Socketio => sio_handshake(&mut ws).await?,
    }
    Ok(ws)
}

async fn connect_sampled(ctx: &Ctx, i: usize, node: usize) -> Result<Ws> {
    let mut ws = connect_ws(ctx, i, node, "").await?;
    match ctx.spec.target {
        Target::Onair | Target::Ws => {
            request(&mut ws, Some(target::onair_join(1, &ctx.spec.room)), ack_ok(1, "join")).await?
        }
        Target::Socketio => sio_handshake(&mut ws).await?,
    }
    Ok(ws)
}

#[derive(Default)]
struct SampleStats {
    /// Index of the server URL.
    node: usize,
    msgs: u64,
    latency: Histogram,
    gaps: u64,
    dups: u64,
    parse_errors: u64,
}

async fn run_sampled(ctx: &Ctx, mut ws: Ws, node: usize) -> SampleStats {
    let mut st = SampleStats { node, ..Default::default() };
    let mut tl_rx = ctx.timeline.clone();
    let mut tl: Option<Timeline> = None;
    let mut deadline = far_future();
    let mut last_seq: Option<u64> = None;
    let target = ctx.spec.target;
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => break,
            r = tl_rx.changed(), if tl.is_none() => {
                if r.is_err() { break; }
                tl = *tl_rx.borrow();
                if let Some(t) = tl { deadline = instant_at(t.stop_us); }
            }
            m = ws.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => { ctx.shared.drop_conn(format!("sampled viewer: {}", short(&anyhow::Error::from(e)))); break; }
                    None => { ctx.shared.drop_conn("sampled viewer: closed".into()); break; }
                };
                let text = match m {
                    Message::Text(t) => t,
                    Message::Close(f) => {
                        let reason = f.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        ctx.shared.drop_conn(format!("close frame {reason}"));
                        break;
                    }
                    _ => continue,
                };
                let now = now_us();
                if text.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                    continue;
                }
                let Some(parsed) = target::parse_msgs(target, text.as_str()) else { continue };
                let msgs = match parsed {
                    Ok(m) => m,
                    Err(_) => { st.parse_errors += 1; continue; }
                };
                ctx.shared.add(node, &Counts { msgs: msgs.len() as u64, frames: 1, bytes: text.len() as u64 });
                for m in msgs {
                    st.msgs += 1;
                    if let Some(last) = last_seq {
                        if m.seq <= last { st.dups += 1; } else { st.gaps += m.seq - last - 1; }
                    }
                    last_seq = Some(last_seq.map_or(m.seq, |l| l.max(m.seq)));
                    if let (Some(t), Ok(sent)) = (tl, m.cloud_custom_data.parse::<u64>())
                        && (t.measure_start_us..t.measure_end_us).contains(&sent)
                    {
                        st.latency.record(now.saturating_sub(sent));
                    }
                }
            }
        }
    }
    st
}

#[derive(Default)]
struct SenderStats {
    sent: u64,
    sent_window: u64,
    acked_ok: u64,
    ack_errors: BTreeMap<String, u64>,
    freq_dropped: u64,
    missing: u64,
    rtt: Histogram,
    skipped: u64,
}

async fn run_sender(ctx: &Ctx, mut ws: Ws, idx: usize) -> SenderStats {
    let mut st = SenderStats::default();
    let spec = &ctx.spec;
    let mut tl_rx = ctx.timeline.clone();
    let mut tl: Option<Timeline> = None;
    let mut deadline = far_future();
    let mut send_end = far_future();
    let mut next_tick: Option<Instant> = None;
    let rate = spec.rate.max(0.001);
    let period = Duration::from_secs_f64(spec.senders as f64 / rate);
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut id = 10u64;
    let mut counter = 0u32;
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => break,
            r = tl_rx.changed(), if tl.is_none() => {
                if r.is_err() { break; }
                tl = *tl_rx.borrow();
                if let Some(t) = tl {
                    deadline = instant_at(t.stop_us);
                    send_end = instant_at(t.measure_end_us);
                    let phase = Duration::from_secs_f64(idx as f64 / rate);
                    next_tick = Some(instant_at(t.start_us) + phase);
                }
            }
            _ = sleep_until(next_tick.unwrap_or(deadline)), if next_tick.is_some() => {
                let now = Instant::now();
                if now >= send_end { next_tick = None; continue; }
                id += 1;
                counter = counter.wrapping_add(1);
                let random = ((idx as u32) << 20) | (counter & 0xf_ffff);
                let sent_us = now_us();
                let text = match spec.target {
                    Target::Onair | Target::Ws => target::onair_send(id, &spec.room, random, sent_us),
                    Target::Socketio => target::sio_chat(id, &spec.room, random, sent_us),
                };
                if let Err(e) = ws.send(Message::text(text)).await {
                    ctx.shared.drop_conn(format!("sender: {}", short(&anyhow::Error::from(e))));
                    break;
                }
                pending.insert(id, now);
                st.sent += 1;
                if let Some(t) = tl
                    && (t.measure_start_us..t.measure_end_us).contains(&sent_us)
                {
                    st.sent_window += 1;
                }
                let mut next = next_tick.unwrap_or(now) + period;
                while next <= now {
                    next += period;
                    st.skipped += 1;
                }
                next_tick = Some(next);
            }
            m = ws.next() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(f))) => {
                        let reason = f.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        ctx.shared.drop_conn(format!("sender: close frame {reason}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => { ctx.shared.drop_conn(format!("sender: {}", short(&anyhow::Error::from(e)))); break; }
                    None => { ctx.shared.drop_conn("sender: closed".into()); break; }
                };
                if text.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                    continue;
                }
                let ack = match spec.target {
                    Target::Onair | Target::Ws => target::onair_ack(text.as_str()),
                    Target::Socketio => target::sio_ack(text.as_str()),
                };
                let Some(ack) = ack else { continue };
                let Some(sent_at) = ack.id.and_then(|i| pending.remove(&i)) else { continue };
                st.rtt.record(sent_at.elapsed().as_micros() as u64);
                match ack.code {
                    Some(0) => {
                        st.acked_ok += 1;
                        if !ack.drop_reason.is_empty() { st.freq_dropped += 1; }
                    }
                    c => *st.ack_errors.entry(format!("code {c:?} {}", ack.message)).or_default() += 1,
                }
            }
        }
    }
    st.missing = pending.len() as u64;
    st
}
