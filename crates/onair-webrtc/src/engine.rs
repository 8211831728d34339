//! The async shell: [`WebRtcEngine`] owns one UDP socket (one muxed port, ICE-lite), one
//! receive task, N shard tasks that each drive their share of the sessions' str0m `Rtc`s
//! — datagrams in, timeouts, RTP headers and SRTP, datagrams out (in `sendmmsg`
//! batches, [`crate::sendbatch`]) — plus one small pump task per player that hands its
//! stream's shared, already packetised frames ([`crate::feed`]) to the player's shard.
//!
//! Why shards: SRTP encryption per viewer is the cost of WebRTC fan-out, and one task
//! doing it for every session used at most one core (BENCHMARKS.md, "WebRTC: WHEP
//! viewers"). A session lives on shard `id % N` (N = `WebRtcConfig::shards`, one per core
//! by default); shards run in parallel on the runtime's worker threads and all send on
//! the one socket (sending needs only `&UdpSocket`), so the one-port promise holds.
//!
//! Demultiplexing follows str0m's advice for servers: the receive task sends a datagram
//! from a known remote address to the session that address belongs to; a STUN binding
//! request names its session by our ICE username fragment (read in one lookup, see
//! [`crate::demux`]); the session's shard checks `Rtc::accepts` and remembers the new
//! address. Incoming traffic of viewers is small (RTCP, consent checks), so one receive
//! task and a copy per datagram cost little next to the outgoing media.
//!
//! Bounded everywhere: sessions in total / per client IP / players per stream
//! ([`Limits`]); each publisher's frame queue (full → frames dropped, video until the
//! next keyframe, which is requested); per shard, one queue of frames from its players'
//! pumps (full → a pump waits; its stream's feed ring then overtakes it and it resumes
//! at the feed's last keyframe), the command queue (callers wait) and the datagram queue
//! from the receive task (full → the datagram is dropped, as a full socket buffer
//! would); the kernel's UDP send buffer (full → the datagram is dropped, NACK/RTX
//! recovers it).
//!
//! ICE-TCP (optional, `WebRtcConfig::ice_tcp`) lives in [`crate::tcp`]: its connections
//! feed the same shards as the receive task (`Datagram::proto` says which transport),
//! and a shard hands a `Transmit` whose `proto` is TCP to that connection's writer
//! instead of the UDP socket. Those two hooks are all this module knows of it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use parking_lot::Mutex;
use str0m::change::SdpOffer;
use str0m::net::{DatagramRecv, Protocol, Receive, TcpType};
use str0m::{Candidate, Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::{IceServer, Limits, WebRtcConfig};
use crate::error::EngineError;
use crate::feed::{Feed, FeedRx};
use crate::packetize::RtpFrame;
use crate::sdp::{self, OfferError, Role};
use crate::sendbatch::{SendBatch, UdpStats};
use crate::session::{Action, Session, SessionParts};
use crate::stats::{SessionState, SessionStats};
use crate::tcp::{TcpSide, TcpStats};

/// A session's id: unique for the engine's life; shown in WHIP/WHEP `Location` URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for SessionId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(SessionId)
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// H.264.
    Video,
    /// Opus.
    Audio,
}

/// What a WebRTC publisher yields, on one millisecond timeline starting near 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestFrame {
    /// An FLV video tag body (AVC sequence header or picture), ready for
    /// `Publisher::ingest(TrackKind::Video, timestamp, body)`.
    Video {
        /// Milliseconds (32-bit like RTMP; the registry unwraps it).
        timestamp: u32,
        /// The FLV video tag body.
        body: Bytes,
    },
    /// One Opus packet as received (for the audio bridge or WebRTC players).
    Opus {
        /// Milliseconds on the same timeline as video.
        timestamp: u32,
        /// The Opus packet.
        data: Bytes,
    },
}

/// What a player's source yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayFrame {
    /// An FLV video tag body as the registry holds it (`Packet::body`), sequence headers
    /// included; `timestamp` is its dts in ms.
    FlvVideo {
        /// Decode timestamp, ms.
        timestamp: u64,
        /// The FLV video tag body.
        body: Bytes,
    },
    /// One Opus packet at `timestamp` ms.
    Opus {
        /// Presentation timestamp, ms.
        timestamp: u64,
        /// The Opus packet.
        data: Bytes,
    },
    /// The source skipped frames (a lagged viewer): video resumes at the next keyframe.
    Gap,
}

/// A publisher's frames; ends when the session closes.
#[derive(Debug)]
pub struct IngestStream {
    rx: mpsc::Receiver<IngestFrame>,
}

impl IngestStream {
    /// The next frame, `None` once the session has closed.
    pub async fn recv(&mut self) -> Option<IngestFrame> {
        self.rx.recv().await
    }
}

impl Stream for IngestStream {
    type Item = IngestFrame;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IngestFrame>> {
        self.rx.poll_recv(cx)
    }
}

/// The result of [`WebRtcEngine::publish`].
#[derive(Debug)]
pub struct Published {
    /// The SDP answer (the WHIP response body).
    pub answer: String,
    /// The session (for `DELETE`, stats, keyframe requests).
    pub id: SessionId,
    /// The publisher's frames.
    pub frames: IngestStream,
}

/// The result of [`WebRtcEngine::play`].
#[derive(Debug)]
pub struct Playing {
    /// The SDP answer (the WHEP response body).
    pub answer: String,
    /// The session.
    pub id: SessionId,
    /// Bumped each time this viewer needs a keyframe (connected, PLI/FIR from the
    /// viewer, a gap in the source). A WebRTC-published source is asked by the engine
    /// itself; an RTMP-published one should answer from its GOP cache.
    pub keyframe_wanted: watch::Receiver<u64>,
}

/// A player's frame source.
pub type FrameSource = Pin<Box<dyn Stream<Item = PlayFrame> + Send>>;

enum Cmd {
    Add(SessionId, Box<Session>),
    Close(SessionId),
    Keyframe(String),
    Shutdown,
}

/// A datagram the receive task (or a packet an ICE-TCP connection) hands to its
/// session's shard.
pub(crate) struct Datagram {
    pub(crate) id: SessionId,
    pub(crate) src: SocketAddr,
    /// UDP, or TCP for a packet from an ICE-TCP connection.
    pub(crate) proto: Protocol,
    pub(crate) at: Instant,
    pub(crate) data: Vec<u8>,
}

/// Frame writes a shard takes in one wake-up (their datagrams share batches).
const WRITES_PER_WAKE: usize = 256;

/// Datagrams queued from the receive task to one shard.
const DATAGRAM_QUEUE: usize = 4096;

/// Which session a remote address or an ICE ufrag belongs to: read by the receive task
/// for every datagram, written by the shards as sessions come, learn an address and go.
#[derive(Default)]
pub(crate) struct Routes {
    by_addr: HashMap<SocketAddr, SessionId>,
    /// Our ICE ufrag → session: finds the session of a first STUN request.
    pub(crate) by_ufrag: HashMap<String, SessionId>,
}

/// The way into one shard task.
#[derive(Clone)]
struct ShardHandle {
    cmd_tx: mpsc::Sender<Cmd>,
    write_tx: mpsc::Sender<Write>,
}

/// The shard of session `id` among `shards`.
pub(crate) fn shard_of(id: SessionId, shards: usize) -> usize {
    (id.0 % shards.max(1) as u64) as usize
}

struct Write {
    id: SessionId,
    /// The shared payloads of one frame.
    frame: Arc<RtpFrame>,
    /// The viewer lost frames before this one: video waits for a keyframe again.
    resync: bool,
}

/// Bookkeeping shared by the API (admission) and the engine task (release).
#[derive(Default)]
struct Table {
    sessions: HashMap<SessionId, Arc<Mutex<SessionStats>>>,
    per_ip: HashMap<IpAddr, usize>,
    publishers: HashMap<String, SessionId>,
    players: HashMap<String, usize>,
}

struct Shared {
    limits: Limits,
    table: Mutex<Table>,
    /// UDP datagrams the shards' batches dropped (a full send buffer) or the kernel
    /// refused, since start: folded in from every shard's [`SendBatch`].
    udp_dropped: AtomicU64,
    udp_refused: AtomicU64,
}

impl Shared {
    fn admit(
        &self,
        id: SessionId,
        role: Role,
        stream: &str,
        ip: IpAddr,
    ) -> Result<Arc<Mutex<SessionStats>>, EngineError> {
        let mut t = self.table.lock();
        let l = &self.limits;
        if t.sessions.len() >= l.max_sessions {
            return Err(EngineError::TooManySessions("engine"));
        }
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= l.max_sessions_per_ip {
            return Err(EngineError::TooManySessions("per client IP"));
        }
        match role {
            Role::Publish if t.publishers.contains_key(stream) => {
                return Err(EngineError::AlreadyPublished(stream.to_string()));
            }
            Role::Publish => {
                t.publishers.insert(stream.to_string(), id);
            }
            Role::Play => {
                let n = t.players.entry(stream.to_string()).or_default();
                if *n >= l.max_players_per_stream {
                    return Err(EngineError::TooManySessions("players of this stream"));
                }
                *n += 1;
            }
        }
        *t.per_ip.entry(ip).or_default() += 1;
        let stats = Arc::new(Mutex::new(SessionStats::new(role, stream.to_string(), ip)));
        t.sessions.insert(id, stats.clone());
        Ok(stats)
    }

    fn release(&self, id: SessionId) {
        let mut t = self.table.lock();
        let Some(stats) = t.sessions.remove(&id) else { return };
        let (role, stream, ip) = {
            let s = stats.lock();
            (s.role, s.stream.clone(), s.client_ip)
        };
        if let Some(n) = t.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&ip);
            }
        }
        match role {
            Role::Publish => {
                if t.publishers.get(&stream) == Some(&id) {
                    t.publishers.remove(&stream);
                }
            }
            Role::Play => {
                if let Some(n) = t.players.get_mut(&stream) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        t.players.remove(&stream);
                    }
                }
            }
        }
    }
}

/// The WebRTC media engine: WHIP publishers and WHEP players on one UDP port.
///
/// Cheap to clone; the engine's tasks stop on [`WebRtcEngine::shutdown`] or when the
/// last clone (and every player's pump) is dropped.
#[derive(Clone)]
pub struct WebRtcEngine {
    shared: Arc<Shared>,
    shards: Arc<Vec<ShardHandle>>,
    candidates: Arc<Vec<SocketAddr>>,
    ice_servers: Arc<Vec<IceServer>>,
    local: SocketAddr,
    next_id: Arc<AtomicU64>,
    tcp: Option<Arc<TcpSide>>,
}

impl WebRtcEngine {
    /// Binds the UDP socket, resolves announce hosts and starts the receive task and the
    /// shard tasks (on the current tokio runtime).
    pub async fn start(cfg: WebRtcConfig) -> Result<WebRtcEngine, EngineError> {
        let socket = bind_udp(cfg.bind, SOCKET_BUFFER_BYTES)?;
        let local = socket.local_addr()?;
        let mut ips = cfg.announce_ips.clone();
        for host in &cfg.announce_hosts {
            let found = tokio::net::lookup_host((host.as_str(), local.port())).await?;
            ips.extend(found.map(|a| a.ip()));
        }
        if ips.is_empty() {
            if local.ip().is_unspecified() {
                return Err(EngineError::Config(
                    "bound to an unspecified address: set announce_ips or announce_hosts".into(),
                ));
            }
            ips.push(local.ip());
        }
        ips.dedup();
        let tcp = match cfg.ice_tcp {
            true => {
                let bind = SocketAddr::new(cfg.bind.ip(), cfg.tcp_port.unwrap_or(local.port()));
                let side = TcpSide::bind(bind, &ips, cfg.limits.clone()).await;
                Some(side.map_err(|e| EngineError::Config(format!("ICE-TCP listener on {bind}: {e}")))?)
            }
            false => None,
        };
        let candidates: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, local.port())).collect();
        for c in &candidates {
            Candidate::host(*c, "udp").map_err(|e| EngineError::Config(format!("announce address {c}: {e}")))?;
        }
        let n = match cfg.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let socket = Arc::new(socket);
        let shared = Arc::new(Shared {
            limits: cfg.limits.clone(),
            table: Mutex::new(Table::default()),
            udp_dropped: AtomicU64::new(0),
            udp_refused: AtomicU64::new(0),
        });
        let routes = Arc::new(Mutex::new(Routes::default()));
        let mut handles = Vec::with_capacity(n);
        let mut inputs = Vec::with_capacity(n);
        let mut dgram_txs = Vec::with_capacity(n);
        for _ in 0..n {
            let (cmd_tx, cmd_rx) = mpsc::channel(256);
            let (write_tx, write_rx) = mpsc::channel(cfg.limits.play_queue_frames.max(1));
            let (dgram_tx, dgram_rx) = mpsc::channel(DATAGRAM_QUEUE);
            handles.push(ShardHandle { cmd_tx, write_tx });
            dgram_txs.push(dgram_tx);
            inputs.push((cmd_rx, write_rx, dgram_rx));
        }
        // Every shard knows every other: a player's keyframe request goes to the shard of
        // its stream's publisher.
        let shards = Arc::new(handles);
        for (index, (cmd_rx, write_rx, dgram_rx)) in inputs.into_iter().enumerate() {
            let shard = Shard {
                index,
                socket: socket.clone(),
                local,
                candidates: candidates.clone(),
                shared: shared.clone(),
                routes: routes.clone(),
                shards: shards.clone(),
                tcp: tcp.as_ref().map(|(side, _)| side.clone()),
                sessions: HashMap::new(),
                out: SendBatch::new(),
                timers: BinaryHeap::new(),
            };
            tokio::spawn(shard.run(cmd_rx, write_rx, dgram_rx));
        }
        let tcp = tcp.map(|(side, listener)| {
            let inbound = crate::tcp::Inbound { routes: routes.clone(), shards: dgram_txs.clone() };
            tokio::spawn(crate::tcp::listen(side.clone(), listener, inbound));
            side
        });
        tokio::spawn(receive(socket, routes, dgram_txs));
        let tcp_local = tcp.as_ref().map(|t| t.local_addr());
        tracing::info!(%local, ?tcp_local, candidates = ?candidates, shards = n, "webrtc engine listening");
        Ok(WebRtcEngine {
            shared,
            shards,
            candidates: Arc::new(candidates),
            ice_servers: Arc::new(cfg.ice_servers),
            local,
            next_id: Arc::new(AtomicU64::new(1)),
            tcp,
        })
    }

    /// The bound UDP address (its port is what candidates announce).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The host candidates put into every answer.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The ICE-TCP listener's address, when ICE-TCP is on.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|t| t.local_addr())
    }

    /// The ICE-TCP (`tcptype passive`) host candidates put into every answer.
    pub fn tcp_candidates(&self) -> &[SocketAddr] {
        self.tcp.as_ref().map(|t| t.candidates()).unwrap_or(&[])
    }

    /// ICE-TCP connection and drop counts, when ICE-TCP is on.
    pub fn tcp_stats(&self) -> Option<TcpStats> {
        self.tcp.as_ref().map(|t| t.stats())
    }

    /// UDP datagrams dropped and refused since start (counted within half a second).
    pub fn udp_stats(&self) -> UdpStats {
        UdpStats {
            dropped_datagrams: self.shared.udp_dropped.load(Ordering::Relaxed),
            refused_datagrams: self.shared.udp_refused.load(Ordering::Relaxed),
        }
    }

    /// STUN/TURN servers to hand to clients (WHIP/WHEP `Link: rel="ice-server"` headers).
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice_servers
    }

    /// Accepts a WHIP offer for `stream` from `client_ip`: the answer, the session id and
    /// the stream of the publisher's frames (video as FLV tag bodies, audio as Opus).
    pub async fn publish(&self, offer: &str, stream: &str, client_ip: IpAddr) -> Result<Published, EngineError> {
        let summary = sdp::validate_offer(offer, Role::Publish)?;
        if !summary.has_video() {
            // The registry and every output are built around a video track.
            return Err(OfferError::Direction(Role::Publish, "no video section with an acceptable codec".into()).into());
        }
        let (ingest_tx, ingest_rx) = mpsc::channel(self.shared.limits.ingest_queue_frames.max(1));
        let (answer, id, _state) = self.open(offer, Role::Publish, stream, client_ip, Some(ingest_tx), None).await?;
        Ok(Published { answer, id, frames: IngestStream { rx: ingest_rx } })
    }

    /// Accepts a WHEP offer for `stream`: frames of `feed` (the stream's shared
    /// packetised frames, see [`Feed`]) are sent to the viewer once it is connected,
    /// starting at the feed's last keyframe.
    pub async fn play(
        &self,
        offer: &str,
        stream: &str,
        client_ip: IpAddr,
        feed: Arc<Feed>,
    ) -> Result<Playing, EngineError> {
        sdp::validate_offer(offer, Role::Play)?;
        let (kf_tx, kf_rx) = watch::channel(0u64);
        let kf_tx = Arc::new(kf_tx);
        let (answer, id, state) = self.open(offer, Role::Play, stream, client_ip, None, Some(kf_tx.clone())).await?;
        let pump = Pump { id, state, shard: self.shard(id).clone(), keyframe: kf_tx.subscribe() };
        tokio::spawn(pump.run(feed));
        Ok(Playing { answer, id, keyframe_wanted: kf_rx })
    }

    async fn open(
        &self,
        offer: &str,
        role: Role,
        stream: &str,
        client_ip: IpAddr,
        ingest_tx: Option<mpsc::Sender<IngestFrame>>,
        keyframe_tx: Option<Arc<watch::Sender<u64>>>,
    ) -> Result<(String, SessionId, watch::Receiver<SessionState>), EngineError> {
        let parsed = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let stats = self.shared.admit(id, role, stream, client_ip)?;
        let built = self.build_rtc(parsed, role);
        let (rtc, answer) = match built {
            Ok(v) => v,
            Err(e) => {
                self.shared.release(id);
                return Err(e);
            }
        };
        let (state_tx, state_rx) = watch::channel(SessionState::Connecting);
        let ufrag = crate::demux::sdp_ice_ufrag(&answer).unwrap_or_default().to_string();
        let session = Session::new(SessionParts {
            ufrag,
            rtc,
            role,
            stream: stream.to_string(),
            now: Instant::now(),
            stats,
            state_tx,
            ingest_tx,
            keyframe_tx,
            pli_interval: self.shared.limits.pli_interval,
        });
        if self.shard(id).cmd_tx.send(Cmd::Add(id, Box::new(session))).await.is_err() {
            self.shared.release(id);
            return Err(EngineError::Stopped);
        }
        Ok((answer, id, state_rx))
    }

    fn build_rtc(&self, offer: SdpOffer, role: Role) -> Result<(Rtc, String), EngineError> {
        let mut cfg = Rtc::builder()
            .set_ice_lite(true)
            // Players are written RTP packets made once per stream (`packetize`);
            // publishers' packets are depacketised into frames by str0m.
            .set_rtp_mode(role == Role::Play)
            .clear_codecs()
            .enable_opus(true, false)
            .set_stats_interval(Some(Duration::from_secs(1)));
        // The policy of `sdp`: H.264 packetization-mode 1 in the profiles browsers offer
        // (str0m matches profiles exactly, so constrained variants are listed too). Each
        // has an RTX payload type: NACKed packets are resent on RTX.
        for (pt, rtx, profile) in [
            (108u8, 109u8, 0x42e01f_u32),
            (127, 121, 0x42001f),
            (123, 119, 0x4d001f),
            (114, 115, 0x64001f),
            (112, 113, 0x640c1f),
        ] {
            cfg.codec_config().add_h264(pt.into(), Some(rtx.into()), true, profile);
        }
        let mut rtc = cfg.build(Instant::now());
        for c in self.candidates.iter() {
            let cand = Candidate::host(*c, "udp").map_err(|e| EngineError::Config(e.to_string()))?;
            rtc.add_local_candidate(cand);
        }
        // After UDP, and ranked below it by type preference: ICE-TCP is the fallback.
        for c in self.tcp_candidates() {
            let cand = Candidate::builder()
                .tcp()
                .host(*c)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| EngineError::Config(e.to_string()))?;
            rtc.add_local_candidate(cand);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| EngineError::Rejected(e.to_string()))?;
        Ok((rtc, answer.to_sdp_string()))
    }

    /// Ends a session (WHIP/WHEP `DELETE`). Unknown ids are ignored.
    pub async fn close(&self, id: SessionId) {
        let _ = self.shard(id).cmd_tx.send(Cmd::Close(id)).await;
    }

    /// Asks the WebRTC publisher of `stream` (if any) for a keyframe (rate-limited).
    pub fn request_keyframe(&self, stream: &str) {
        let Some(id) = self.shared.table.lock().publishers.get(stream).copied() else { return };
        let _ = self.shard(id).cmd_tx.try_send(Cmd::Keyframe(stream.to_string()));
    }

    /// The shard task session `id` lives on.
    fn shard(&self, id: SessionId) -> &ShardHandle {
        &self.shards[shard_of(id, self.shards.len())]
    }

    /// One session's numbers (`None` once it is closed and gone).
    pub fn stats(&self, id: SessionId) -> Option<SessionStats> {
        let t = self.shared.table.lock();
        t.sessions.get(&id).map(|s| s.lock().clone())
    }

    /// Every live session's numbers, for `/api/v1/streams` and `/metrics`.
    pub fn sessions(&self) -> Vec<(SessionId, SessionStats)> {
        let t = self.shared.table.lock();
        let mut v: Vec<_> = t.sessions.iter().map(|(id, s)| (*id, s.lock().clone())).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Whether `stream` has a WebRTC publisher on this engine.
    pub fn is_published(&self, stream: &str) -> bool {
        self.shared.table.lock().publishers.contains_key(stream)
    }

    /// Stops the engine's tasks; every session is closed.
    pub async fn shutdown(&self) {
        for s in self.shards.iter() {
            let _ = s.cmd_tx.send(Cmd::Shutdown).await;
        }
    }
}

/// A player's pump: waits until the viewer is connected, then hands the shared frames
/// of its stream's [`Feed`] to its shard, starting at a keyframe.
struct Pump {
    id: SessionId,
    state: watch::Receiver<SessionState>,
    /// The session's shard: frames and commands go there.
    shard: ShardHandle,
    /// Bumped when the viewer needs a keyframe (PLI/FIR from the viewer).
    keyframe: watch::Receiver<u64>,
}

/// Least time between two re-starts of one viewer at the feed's last keyframe: a viewer
/// that keeps asking (every lost packet NACK could not repair) is not sent a GOP burst
/// each time.
const RESTART_EVERY: Duration = Duration::from_secs(2);

impl Pump {
    async fn run(mut self, feed: Arc<Feed>) {
        // Holding a place on the feed while ICE and DTLS run keeps the feed from
        // stopping for want of viewers (a slow TURN path can take seconds).
        let Some(holding) = feed.subscribe() else {
            let _ = self.shard.cmd_tx.send(Cmd::Close(self.id)).await;
            return;
        };
        // Reading starts only once the viewer is connected, so the first frames it gets
        // are the feed's GOP (a keyframe first).
        loop {
            match *self.state.borrow_and_update() {
                SessionState::Connected => break,
                SessionState::Closed => return,
                SessionState::Connecting => {}
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
        drop(holding);
        let Some(FeedRx { backlog, mut rx }) = feed.subscribe() else {
            let _ = self.shard.cmd_tx.send(Cmd::Close(self.id)).await;
            return;
        };
        self.keyframe.mark_unchanged();
        // The last frame sent: frames the ring still holds from before a re-start are
        // not sent twice.
        let mut last = 0u64;
        let mut restarted = Instant::now();
        // Lagged with no GOP to restart from: the next frame tells the session to wait
        // for a keyframe.
        let mut resync_next = false;
        if !self.send_all(&backlog, false, &mut last).await {
            return;
        }
        loop {
            let frame = tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() || *self.state.borrow() == SessionState::Closed {
                        return;
                    }
                    continue;
                }
                wish = self.keyframe.changed() => {
                    if wish.is_err() {
                        return;
                    }
                    if restarted.elapsed() >= RESTART_EVERY {
                        // Start the viewer over at the last keyframe (the publisher of a
                        // WebRTC stream is asked for a fresh one by the session itself).
                        restarted = Instant::now();
                        let gop = feed.gop();
                        if !self.send_all(&gop, false, &mut 0).await {
                            return;
                        }
                    }
                    continue;
                }
                r = rx.recv() => r,
            };
            let ok = match frame {
                Ok(f) if f.seq <= last => true,
                Ok(f) => self.send_all(std::slice::from_ref(&f), std::mem::take(&mut resync_next), &mut last).await,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Behind by a whole ring: resume at the last keyframe.
                    restarted = Instant::now();
                    let gop = feed.gop();
                    resync_next = gop.is_empty();
                    self.send_all(&gop, true, &mut last).await
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The stream ended: so does the viewer's session.
                    let _ = self.shard.cmd_tx.send(Cmd::Close(self.id)).await;
                    return;
                }
            };
            if !ok {
                return;
            }
        }
    }

    /// Hands `frames` to the shard (the first with `resync` when asked); false once the
    /// shard is gone.
    async fn send_all(&self, frames: &[Arc<RtpFrame>], mut resync: bool, last: &mut u64) -> bool {
        for f in frames {
            *last = (*last).max(f.seq);
            let w = Write { id: self.id, frame: f.clone(), resync };
            resync = false;
            if self.shard.write_tx.send(w).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Socket buffers asked for on the one UDP port (the kernel caps them at
/// `net.core.{r,w}mem_max`). Every viewer's packets leave through this one socket, so
/// the default ~200 KiB fills within a millisecond of a burst at a few hundred viewers
/// (a keyframe is ~100 datagrams per viewer) and `try_send_to` then drops datagrams.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// Binds a non-blocking UDP socket with receive and send buffers of `buffer_bytes`
/// (capped by the kernel; a refusal leaves the default), for the tokio runtime.
pub fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The receive task: every datagram on the port goes to its session's shard (see the
/// module header); one nobody claims is dropped. Ends when the shards have.
async fn receive(socket: Arc<UdpSocket>, routes: Arc<Mutex<Routes>>, shards: Vec<mpsc::Sender<Datagram>>) {
    let Some(first) = shards.first().cloned() else { return };
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                // Per-datagram errors (ICMP reports on some systems): nothing to do.
                Err(e) => {
                    tracing::trace!(error = %e, "webrtc udp recv");
                    continue;
                }
            },
            () = first.closed() => return,
        };
        let Some(data) = buf.get(..n) else { continue };
        let id = {
            let r = routes.lock();
            // A STUN request names its session (a new address, or a known one reused by
            // a new session); anything else must come from an address already accepted.
            match crate::demux::stun_local_ufrag(data) {
                Some(u) => r.by_ufrag.get(u).or_else(|| r.by_addr.get(&src)).copied(),
                None => r.by_addr.get(&src).copied(),
            }
        };
        let Some(id) = id else { continue };
        if let Some(tx) = shards.get(shard_of(id, shards.len())) {
            // A shard that is behind loses the datagram, as a full socket buffer would.
            let _ = tx.try_send(Datagram { id, src, proto: Protocol::Udp, at: Instant::now(), data: data.to_vec() });
        }
    }
}

/// A shard task's state: its sessions and their timers.
struct Shard {
    index: usize,
    /// The one socket, shared for sending.
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    candidates: Vec<SocketAddr>,
    shared: Arc<Shared>,
    routes: Arc<Mutex<Routes>>,
    shards: Arc<Vec<ShardHandle>>,
    /// ICE-TCP, when on: where `Protocol::Tcp` transmits go.
    tcp: Option<Arc<TcpSide>>,
    sessions: HashMap<SessionId, Session>,
    /// UDP datagrams waiting for the next `sendmmsg`.
    out: SendBatch,
    /// Sessions' str0m timeouts, soonest first. An entry is stale when its session has
    /// gone or rescheduled (at most two entries per session: see `schedule`).
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
}

impl Shard {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::Receiver<Cmd>,
        mut write_rx: mpsc::Receiver<Write>,
        mut dgram_rx: mpsc::Receiver<Datagram>,
    ) {
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        loop {
            let next = self.next_timeout();
            tokio::select! {
                Some(d) = dgram_rx.recv() => self.on_datagram(d),
                cmd = cmd_rx.recv() => match cmd {
                    None | Some(Cmd::Shutdown) => break,
                    Some(c) => self.on_cmd(c),
                },
                Some(w) = write_rx.recv() => {
                    self.on_write(w);
                    // The same frame is usually waiting for this shard's other viewers:
                    // write those too, so their datagrams leave in shared batches.
                    for _ in 0..WRITES_PER_WAKE {
                        match write_rx.try_recv() {
                            Ok(w) => self.on_write(w),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => self.on_timeouts(),
                _ = housekeeping.tick() => self.housekeeping(),
            }
            // Nothing is held back past the event that made it.
            self.out.flush(&self.socket);
        }
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(id, "engine shut down");
        }
    }

    fn next_timeout(&self) -> Instant {
        let cap = Instant::now() + Duration::from_secs(1);
        self.timers.peek().map_or(cap, |Reverse((t, _))| (*t).min(cap))
    }

    /// Puts a session's timeout on the heap when it is sooner than the one already
    /// there (a later one is found when that entry comes due and is re-pushed then).
    fn schedule(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if s.scheduled.is_none_or(|at| s.next_timeout < at) {
            s.scheduled = Some(s.next_timeout);
            self.timers.push(Reverse((s.next_timeout, id)));
        }
    }

    /// The local address a datagram from `src` was sent to: the announced candidate of
    /// the same family (without IP_PKTINFO the socket does not say which one).
    fn destination(&self, src: SocketAddr) -> SocketAddr {
        self.candidates.iter().find(|c| c.is_ipv4() == src.is_ipv4()).copied().unwrap_or(self.local)
    }

    fn on_datagram(&mut self, d: Datagram) {
        let Ok(contents) = DatagramRecv::try_from(d.data.as_slice()) else { return };
        let destination = match (&self.tcp, d.proto) {
            (Some(tcp), Protocol::Tcp) => tcp.destination(d.src),
            _ => self.destination(d.src),
        };
        let input = Input::Receive(d.at, Receive { proto: d.proto, source: d.src, destination, contents });
        let Some(s) = self.sessions.get_mut(&d.id) else { return };
        if !s.rtc.accepts(&input) {
            return;
        }
        if !s.addrs.contains(&d.src) {
            // Only a STUN request naming this session's ufrag gets here from a new
            // address (the receive task's rule): ICE consent before anything else.
            s.addrs.push(d.src);
            // A TCP connection is bound to its session already (and its address means
            // nothing on the UDP port).
            if d.proto == Protocol::Udp {
                self.routes.lock().by_addr.insert(d.src, d.id);
            }
        }
        if let Err(e) = s.handle_input(input) {
            tracing::debug!(session = %d.id, error = %e, "webrtc input refused");
            self.close(d.id, "protocol error");
            return;
        }
        self.drive(d.id);
    }

    fn drive(&mut self, id: SessionId) {
        let mut actions = Vec::new();
        let socket = &self.socket;
        let out = &mut self.out;
        let tcp = self.tcp.as_deref();
        if let Some(s) = self.sessions.get_mut(&id) {
            s.drive(
                &mut |t| {
                    if let (Protocol::Tcp, Some(tcp)) = (t.proto, tcp) {
                        // ICE-TCP: that connection's writer queue (full: dropped).
                        tcp.send(t.destination, &t.contents);
                        return;
                    }
                    // UDP: queued for the next batch; a full send buffer drops datagrams
                    // (NACK/RTX recovers).
                    out.push(socket, t.destination, t.contents.into());
                },
                &mut actions,
            );
        }
        self.schedule(id);
        for a in actions {
            match a {
                Action::Close(why) => self.close(id, why),
                Action::WantKeyframe(stream) => self.keyframe_for(&stream),
            }
        }
    }

    fn keyframe_for(&mut self, stream: &str) {
        let Some(pid) = self.shared.table.lock().publishers.get(stream).copied() else { return };
        match self.sessions.get_mut(&pid) {
            Some(p) => {
                p.request_keyframe(Instant::now());
                self.drive(pid);
            }
            None => {
                // Another shard's publisher (never back to this one: a publisher that
                // is not here any more is simply gone).
                let owner = shard_of(pid, self.shards.len());
                if owner != self.index
                    && let Some(h) = self.shards.get(owner)
                {
                    let _ = h.cmd_tx.try_send(Cmd::Keyframe(stream.to_string()));
                }
            }
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add(id, s) => {
                if !s.ufrag.is_empty() {
                    self.routes.lock().by_ufrag.insert(s.ufrag.clone(), id);
                }
                self.sessions.insert(id, *s);
                self.drive(id);
            }
            Cmd::Close(id) => self.close(id, "closed by the server"),
            Cmd::Keyframe(stream) => self.keyframe_for(&stream),
            Cmd::Shutdown => {}
        }
    }

    fn on_write(&mut self, w: Write) {
        let Some(s) = self.sessions.get_mut(&w.id) else { return };
        s.write_rtp(&w.frame, w.resync);
        self.drive(w.id);
    }

    fn on_timeouts(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let result = match self.sessions.get_mut(&id) {
                // Only the entry the session last scheduled counts.
                Some(s) if s.scheduled == Some(at) => {
                    s.scheduled = None;
                    if s.next_timeout > now {
                        // str0m moved its timeout later since: wait for that instead.
                        self.schedule(id);
                        continue;
                    }
                    s.handle_input(Input::Timeout(now))
                }
                _ => continue,
            };
            if result.is_err() {
                self.close(id, "protocol error");
                continue;
            }
            self.drive(id);
        }
    }

    fn housekeeping(&mut self) {
        self.shared.udp_dropped.fetch_add(std::mem::take(&mut self.out.dropped), Ordering::Relaxed);
        self.shared.udp_refused.fetch_add(std::mem::take(&mut self.out.refused), Ordering::Relaxed);
        let now = Instant::now();
        let l = &self.shared.limits;
        let mut doomed = Vec::new();
        for (id, s) in &self.sessions {
            if !s.rtc.is_alive() {
                doomed.push((*id, "ended"));
            } else if s.connected_at.is_none() && now.saturating_duration_since(s.created) > l.connect_timeout {
                doomed.push((*id, "ICE/DTLS did not complete in time"));
            } else if now.saturating_duration_since(s.last_rx) > l.idle_timeout {
                doomed.push((*id, "silent"));
            } else if s.role == Role::Publish
                && s.connected_at.is_some()
                && now.saturating_duration_since(s.last_rx) > l.publisher_idle_timeout
            {
                doomed.push((*id, "publisher silent"));
            }
        }
        for (id, why) in doomed {
            self.close(id, why);
        }
    }

    fn close(&mut self, id: SessionId, why: &'static str) {
        let Some(mut s) = self.sessions.remove(&id) else { return };
        tracing::debug!(session = %id, stream = %s.stream, why, "webrtc session closed");
        s.mark_closed();
        {
            let mut r = self.routes.lock();
            for a in &s.addrs {
                if r.by_addr.get(a) == Some(&id) {
                    r.by_addr.remove(a);
                }
            }
            if r.by_ufrag.get(&s.ufrag) == Some(&id) {
                r.by_ufrag.remove(&s.ufrag);
            }
        }
        if let Some(tcp) = &self.tcp {
            tcp.close_session(id, &s.addrs);
        }
        self.shared.release(id);
    }
}
