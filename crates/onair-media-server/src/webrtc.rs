//! WebRTC in the media service: WHIP publishers enter the stream registry like RTMP
//! ones, WHEP players read from it like HTTP-FLV ones. The engine (`onair-webrtc`: one
//! muxed UDP port, str0m sessions, the ffmpeg audio bridge) knows no registry; this
//! module is the wiring its crate header specifies.
//!
//! - **WHIP**: [`WebRtc::whip`] checks the push signature (401), the offer (400/406),
//!   takes the name through [`MediaService::begin_publish`] (409), then hands the offer
//!   to the engine. One task per publisher moves its frames: video tags straight into
//!   `LivePublish::ingest`, Opus into an `OpusToAac` bridge whose AAC tags are ingested
//!   as audio (FLV/RTMP/HLS players and the recorder have no Opus), and into a small
//!   per-stream broadcast so WHEP players of a WHIP stream get Opus untouched. Video
//!   waits (bounded) for the first AAC configuration, so LL-HLS and the recorder, which
//!   fix their tracks at the first frames, get both.
//! - **WHEP**: [`WebRtc::whep`] opens the stream with [`MediaService::open`]
//!   (`Protocol::WebRtc`: counted, an edge pulls) and keeps only the count
//!   (`Subscription::into_mark`); the frames come from the stream's one shared
//!   [`Feed`]: one registry subscription per played stream turned into the engine's
//!   `FrameSource` (video tags with their dts, `Recv::Skipped` → `PlayFrame::Gap`; audio
//!   from the Opus broadcast of a WHIP stream or from one shared `AacToOpus` bridge per
//!   RTMP stream), packetised once for all viewers. The feed starts with the first
//!   viewer and stops a few seconds after the last (and its bridge with it). A viewer
//!   that wants a keyframe re-starts at the feed's last keyframe; a WHIP publisher is
//!   also asked with a PLI by the engine itself.
//! - **Resources**: `Location` paths carry the session id plus a random token, so the
//!   session a `DELETE` ends cannot be guessed from the (sequential) engine ids.
//! - **Stats**: [`WebRtc::stream_sessions`] for `/api/v1/streams/{name}` (each session's
//!   transport, UDP or ICE-TCP, among its numbers); a metrics task exports
//!   low-cardinality gauges (sessions by role and state, sessions on ICE-TCP, ICE-TCP
//!   connections and dropped packets, summed NACKs/PLIs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use onair_media::frame::TrackKind;
use onair_media::rtmp::StreamKey;
use onair_webrtc::bridge::{AudioBridge, AudioPacket, BridgeKind};
use onair_webrtc::sdp::{self, Role};
use onair_webrtc::{
    EngineError, Feed, FrameSource, IceServer, IngestFrame, Limits, PlayFrame, SessionId, SessionState, SessionStats,
    Transport, WebRtcConfig, WebRtcEngine,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::publish::{EndReason, PublishRefused};
use crate::registry::{Media, Protocol, Recv, Subscription};

/// `[webrtc]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebRtcSettings {
    /// WHIP/WHEP on (needs the UDP port below).
    pub enabled: bool,
    /// The one UDP socket every WebRTC session is muxed on. 8189 is what other WebRTC
    /// servers (mediamtx, str0m's examples) use, is registered to nothing common and
    /// keeps 8443 free for an HTTPS proxy in front of the HTTP port.
    pub listen: String,
    /// IPs or host names announced as ICE candidates (with the listen port). Empty:
    /// the listen address when it is a specific one, else 127.0.0.1 plus this host's
    /// address on its default route. Behind NAT put the public IP here.
    pub announce: Vec<String>,
    /// STUN/TURN servers handed to clients (`Link: rel="ice-server"`); OnAir is none.
    pub ice_servers: Vec<IceServerSettings>,
    /// WebRTC sessions of all kinds.
    pub max_sessions: usize,
    /// Sessions from one client IP.
    pub max_sessions_per_ip: usize,
    /// WHEP players of one stream.
    pub max_players_per_stream: usize,
    /// ICE + DTLS must complete within this, and a session silent this long is closed.
    pub timeout_secs: u64,
    /// A connected WHIP publisher silent this long is closed (its stream ends, a co-host
    /// leaves the mix).
    pub publisher_timeout_secs: u64,
    /// Opus <-> AAC transcode bitrate, kbit/s.
    pub audio_kbps: u32,
    /// The ffmpeg the audio bridge runs (no ffmpeg: WHIP video only, WHEP without
    /// audio for RTMP streams).
    pub ffmpeg: String,
    /// Engine tasks the sessions are spread over (SRTP for many viewers needs more than
    /// one core); all share the one UDP port. 0: one per core.
    pub engine_tasks: usize,
    /// Passive ICE-TCP beside UDP (RFC 6544): a TCP listener, and a TCP candidate per
    /// announced address (ranked below UDP) in every answer, so clients whose networks
    /// block UDP still connect. Off by default.
    pub ice_tcp: bool,
    /// The ICE-TCP port; unset: the same number as the UDP port of `listen`.
    pub tcp_port: Option<u16>,
}

/// One `[[webrtc.ice_servers]]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IceServerSettings {
    /// `stun:host:3478`, `turn:host:3478?transport=udp`, …
    pub urls: Vec<String>,
    /// TURN username.
    pub username: String,
    /// TURN credential.
    pub credential: String,
}

impl Default for WebRtcSettings {
    fn default() -> Self {
        WebRtcSettings {
            enabled: true,
            listen: "0.0.0.0:8189".into(),
            announce: Vec::new(),
            ice_servers: Vec::new(),
            max_sessions: 2000,
            max_sessions_per_ip: 16,
            max_players_per_stream: 1000,
            timeout_secs: 30,
            publisher_timeout_secs: 5,
            audio_kbps: 64,
            ffmpeg: "ffmpeg".into(),
            engine_tasks: 0,
            ice_tcp: false,
            tcp_port: None,
        }
    }
}

/// Why a WHIP/WHEP request was refused: the HTTP status and a reason for the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Why, in words.
    pub message: String,
}

impl Refused {
    fn new(status: u16, message: impl Into<String>) -> Refused {
        Refused { status, message: message.into() }
    }
}

impl From<EngineError> for Refused {
    fn from(e: EngineError) -> Refused {
        Refused::new(e.http_status(), e.to_string())
    }
}

/// A session created by WHIP or WHEP.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The SDP answer.
    pub sdp: String,
    /// The resource path (`/whip/{stream}/{resource}` or `/whep/…`).
    pub location: String,
}

struct Resource {
    id: SessionId,
    stream: String,
    role: Role,
    /// When the server ended the session (its stream stopped, ICE died): the client's
    /// own `DELETE` still answers 200 for `ENDED_KEEP`, then the entry goes.
    ended: Option<Instant>,
}

/// How long a session the server ended still answers its client's `DELETE` with 200
/// (a watch page leaving a stream that just stopped should not see a 404).
const ENDED_KEEP: Duration = Duration::from_secs(60);

/// Opus packets (ms timestamp, packet) of a WHIP stream or of an RTMP stream's bridge.
type OpusTx = broadcast::Sender<(u64, Bytes)>;

/// The WebRTC side of the media service.
pub struct WebRtc {
    engine: WebRtcEngine,
    svc: Arc<MediaService>,
    settings: WebRtcSettings,
    /// Whether the audio bridge can run.
    ffmpeg: bool,
    /// Resource token → session.
    resources: Mutex<HashMap<String, Resource>>,
    /// WHIP streams' Opus, for their WHEP players.
    whip_opus: Mutex<HashMap<String, OpusTx>>,
    /// RTMP streams' shared AAC → Opus bridges' output.
    bridged: Mutex<HashMap<String, OpusTx>>,
    /// Played streams' shared feeds (frames packetised once for all their viewers).
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    announce_note: String,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Opus packets kept for a slow WHEP player before it skips (~2.5 s).
const OPUS_RING: usize = 128;
/// How long a WHIP publisher's video waits for its audio's AAC configuration.
const AUDIO_CONFIG_WAIT: Duration = Duration::from_secs(3);
/// Video frames held meanwhile at most (3 s of 60 fps with room to spare).
const HOLD_MAX_FRAMES: usize = 256;

impl WebRtc {
    /// Starts the engine from `[webrtc]` (None when disabled). An error (port taken,
    /// bad announce) is the caller's to report.
    pub async fn start(
        settings: WebRtcSettings,
        svc: Arc<MediaService>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<Option<Arc<WebRtc>>, EngineError> {
        if !settings.enabled {
            return Ok(None);
        }
        let bind: SocketAddr = settings
            .listen
            .parse()
            .map_err(|e| EngineError::Config(format!("[webrtc] listen {:?}: {e}", settings.listen)))?;
        let mut announce_ips = Vec::new();
        let mut announce_hosts = Vec::new();
        for a in &settings.announce {
            match a.parse::<IpAddr>() {
                Ok(ip) => announce_ips.push(ip),
                Err(_) => announce_hosts.push(a.clone()),
            }
        }
        let mut announce_note = String::new();
        if settings.announce.is_empty() && bind.ip().is_unspecified() {
            announce_ips.push(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
            match default_route_ip() {
                Some(ip) => announce_ips.push(ip),
                None => announce_note = " (no non-loopback address found: set [webrtc] announce)".into(),
            }
        }
        let cfg = WebRtcConfig {
            bind,
            announce_ips,
            announce_hosts,
            ice_servers: settings
                .ice_servers
                .iter()
                .map(|s| IceServer {
                    urls: s.urls.clone(),
                    username: (!s.username.is_empty()).then(|| s.username.clone()),
                    credential: (!s.credential.is_empty()).then(|| s.credential.clone()),
                })
                .collect(),
            limits: Limits {
                max_sessions: settings.max_sessions.max(1),
                max_sessions_per_ip: settings.max_sessions_per_ip.max(1),
                max_players_per_stream: settings.max_players_per_stream.max(1),
                connect_timeout: Duration::from_secs(settings.timeout_secs.max(1)),
                idle_timeout: Duration::from_secs(settings.timeout_secs.max(1)),
                publisher_idle_timeout: Duration::from_secs(
                    settings.publisher_timeout_secs.clamp(1, settings.timeout_secs.max(1)),
                ),
                // A browser may open an ICE-TCP connection per candidate pair it checks.
                max_tcp_connections: settings.max_sessions.max(1),
                max_tcp_connections_per_ip: settings.max_sessions_per_ip.max(1).saturating_mul(2),
                ..Limits::default()
            },
            shards: settings.engine_tasks,
            ice_tcp: settings.ice_tcp,
            tcp_port: settings.tcp_port,
        };
        let engine = WebRtcEngine::start(cfg).await?;
        let ffmpeg = crate::hls::ffmpeg_available(&settings.ffmpeg).await;
        if !ffmpeg {
            tracing::warn!(ffmpeg = %settings.ffmpeg, "no ffmpeg: WHIP streams get no AAC audio, WHEP players of RTMP streams no audio");
        }
        let me = Arc::new(WebRtc {
            engine,
            svc,
            settings,
            ffmpeg,
            resources: Mutex::new(HashMap::new()),
            whip_opus: Mutex::new(HashMap::new()),
            bridged: Mutex::new(HashMap::new()),
            feeds: Mutex::new(HashMap::new()),
            announce_note,
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        let weak = Arc::downgrade(&me);
        me.svc.set_keyframe_asker(Box::new(move |stream: &str| {
            if let Some(w) = weak.upgrade() {
                w.engine.request_keyframe(stream);
            }
        }));
        let m = me.clone();
        tasks.spawn(async move { m.export_metrics().await });
        let m = me.clone();
        tasks.spawn(async move {
            m.shutdown.cancelled().await;
            m.engine.shutdown().await;
        });
        Ok(Some(me))
    }

    /// The engine (stats, keyframe requests).
    pub fn engine(&self) -> &WebRtcEngine {
        &self.engine
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }

    /// The ICE-TCP listener's address, when `[webrtc] ice_tcp` is on.
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.engine.tcp_local_addr()
    }

    /// The announced candidates, with a note when only loopback could be found.
    pub fn candidates_text(&self) -> String {
        let c: Vec<String> = self.engine.candidates().iter().map(|a| a.to_string()).collect();
        format!("{}{}", c.join(", "), self.announce_note)
    }

    /// `Link` header values for the configured STUN/TURN servers (RFC 9725 §4.6).
    pub fn link_headers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.engine.ice_servers() {
            for url in &s.urls {
                let mut v = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                    v.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        u.replace('"', ""),
                        c.replace('"', "")
                    ));
                }
                out.push(v);
            }
        }
        out
    }

    /// `POST /whip/{stream}`: `query` is the request's query string and `bearer` the
    /// `Authorization: Bearer` token, either may carry `txSecret`/`txTime`.
    pub async fn whip(
        self: &Arc<Self>,
        stream: &str,
        query: &str,
        bearer: Option<&str>,
        offer: &str,
        client_ip: IpAddr,
    ) -> Result<Answer, Refused> {
        if !crate::valid_stream_name(stream) {
            return Err(Refused::new(404, "invalid stream name"));
        }
        let query = match bearer {
            Some(token) if !query.contains("txSecret=") => bearer_query(token),
            _ => query.to_string(),
        };
        let key = StreamKey { name: stream.to_string(), query };
        // Credentials first: an unauthorised client learns nothing about the offer.
        self.svc.check_push(&key).map_err(|e| Refused::new(401, format!("bad signature: {e}")))?;
        let summary =
            sdp::validate_offer(offer, Role::Publish).map_err(|e| Refused::new(e.http_status(), e.to_string()))?;
        self.svc.preempt_house(&key).await;
        let live = self.svc.begin_publish(&key, client_ip.to_string()).map_err(|e| match e {
            PublishRefused::BadName => Refused::new(404, e.to_string()),
            PublishRefused::BadSignature(_) => Refused::new(401, e.to_string()),
            PublishRefused::InUse(_) => Refused::new(409, e.to_string()),
        })?;
        // A refusal here drops `live` before it ingested anything: no hooks fire.
        let published = self.engine.publish(offer, stream, client_ip).await?;
        let resource = self.add_resource(published.id, stream, Role::Publish);
        let (opus_tx, _) = broadcast::channel(OPUS_RING);
        self.whip_opus.lock().insert(stream.to_string(), opus_tx.clone());
        let me = self.clone();
        let name = stream.to_string();
        let id = published.id;
        let res = resource.clone();
        self.tasks.spawn(async move {
            me.run_publisher(live, published.frames, opus_tx.clone(), id, summary.has_audio()).await;
            let mut m = me.whip_opus.lock();
            if m.get(&name).is_some_and(|t| t.same_channel(&opus_tx)) {
                m.remove(&name);
            }
            drop(m);
            me.end_resource(&res);
        });
        Ok(Answer { sdp: published.answer, location: format!("/whip/{stream}/{resource}") })
    }

    async fn run_publisher(
        &self,
        mut live: crate::publish::LivePublish,
        mut frames: onair_webrtc::IngestStream,
        opus_tx: OpusTx,
        id: SessionId,
        has_audio: bool,
    ) {
        let mut bridge = if self.ffmpeg {
            match AudioBridge::spawn(BridgeKind::OpusToAac, &self.settings.ffmpeg, self.settings.audio_kbps) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(stream = %live.stream().name, error = %e, "audio bridge did not start");
                    None
                }
            }
        } else {
            None
        };
        let mut reason = (EndReason::Closed, "WebRTC session closed".to_string());
        // Video waits (bounded) for the bridge's AAC configuration: LL-HLS and the
        // recorder fix their tracks from the configurations known when the first frames
        // arrive, and the AAC one comes out of ffmpeg a few hundred ms after the video.
        let mut hold_until = (has_audio && bridge.is_some()).then(|| Instant::now() + AUDIO_CONFIG_WAIT);
        let mut held: Vec<(u32, Bytes)> = Vec::new();
        loop {
            tokio::select! {
                f = frames.recv() => match f {
                    Some(IngestFrame::Video { timestamp, body }) => {
                        if hold_until.is_some_and(|t| Instant::now() < t) && held.len() < HOLD_MAX_FRAMES {
                            held.push((timestamp, body));
                            continue;
                        }
                        hold_until = None;
                        held.push((timestamp, body));
                        if let Err(e) = ingest_video(&mut live, &mut held) {
                            reason = (EndReason::ProtocolError, format!("unsupported video: {e}"));
                            self.engine.close(id).await;
                            break;
                        }
                    }
                    Some(IngestFrame::Opus { timestamp, data }) => {
                        // No receivers is the usual case (no WHEP players): not an error.
                        let _ = opus_tx.send((u64::from(timestamp), data.clone()));
                        if let Some(b) = &bridge {
                            b.send(AudioPacket { timestamp: u64::from(timestamp), data });
                        }
                    }
                    None => break,
                },
                a = recv_bridge(&mut bridge) => match a {
                    // The registry's timeline is 32-bit ms like RTMP's; it unwraps it.
                    Some(p) => {
                        if let Err(e) = live.ingest(TrackKind::Audio, p.timestamp as u32, p.data) {
                            tracing::warn!(stream = %live.stream().name, error = %e, "bridged audio refused; audio off");
                            bridge = None;
                        }
                        hold_until = None;
                        if let Err(e) = ingest_video(&mut live, &mut held) {
                            reason = (EndReason::ProtocolError, format!("unsupported video: {e}"));
                            self.engine.close(id).await;
                            break;
                        }
                    }
                    None => {
                        tracing::warn!(stream = %live.stream().name, "audio bridge ended; audio off");
                        bridge = None;
                        hold_until = None;
                    }
                },
                _ = self.shutdown.cancelled() => break,
            }
        }
        live.finish(reason.0, &reason.1);
    }

    /// `POST /whep/{stream}`.
    pub async fn whep(
        self: &Arc<Self>,
        stream: &str,
        query: &str,
        offer: &str,
        client_ip: IpAddr,
    ) -> Result<Answer, Refused> {
        if !crate::valid_stream_name(stream) {
            return Err(Refused::new(404, "no such stream"));
        }
        let key = StreamKey { name: stream.to_string(), query: query.to_string() };
        self.svc.check_play(&key).map_err(|e| Refused::new(403, format!("play refused: {e}")))?;
        sdp::validate_offer(offer, Role::Play).map_err(|e| Refused::new(e.http_status(), e.to_string()))?;
        let Some(sub) = self.svc.open(stream, Protocol::WebRtc, query, "").await else {
            return Err(Refused::new(404, "stream is not live"));
        };
        // Counted as one of the stream's WebRTC viewers (and an edge's pull kept) for as
        // long as the session lasts; the frames come from the stream's shared feed.
        let mark = sub.into_mark();
        let feed = self.feed_for(stream).ok_or_else(|| Refused::new(404, "stream is not live"))?;
        let playing = match self.engine.play(offer, stream, client_ip, feed).await {
            Ok(p) => p,
            Err(e) => return Err(e.into()),
        };
        let resource = self.add_resource(playing.id, stream, Role::Play);
        let location = format!("/whep/{stream}/{resource}");
        // The session's end (its keyframe channel closes) ends the resource.
        let me = self.clone();
        let mut wanted = playing.keyframe_wanted;
        self.tasks.spawn(async move {
            while wanted.changed().await.is_ok() {}
            drop(mark);
            me.end_resource(&resource);
        });
        Ok(Answer { sdp: playing.answer, location })
    }

    /// The shared feed of `stream`'s WebRTC viewers: the running one, or a new one
    /// reading the registry (uncounted: its viewers are counted one by one) and the
    /// stream's Opus. `None` when the stream is not live.
    fn feed_for(self: &Arc<Self>, stream: &str) -> Option<Arc<Feed>> {
        let mut feeds = self.feeds.lock();
        if let Some(f) = feeds.get(stream)
            && f.is_live()
        {
            return Some(f.clone());
        }
        feeds.retain(|_, f| f.is_live());
        let sub = self.svc.registry.subscribe(stream, Protocol::Internal)?;
        let feed = Feed::spawn(stream, merge(VideoSource { sub }, self.audio_for(stream)));
        feeds.insert(stream.to_string(), feed.clone());
        Some(feed)
    }

    /// `DELETE /whip/{stream}/{resource}` or `/whep/…`: false when no such session.
    pub async fn delete(&self, stream: &str, resource: &str, publish: bool) -> bool {
        let role = if publish { Role::Publish } else { Role::Play };
        let id = {
            let mut m = self.resources.lock();
            match m.get(resource) {
                Some(r) if r.stream == stream && r.role == role && r.ended.is_some() => {
                    m.remove(resource);
                    return true;
                }
                Some(r) if r.stream == stream && r.role == role => r.id,
                _ => return false,
            }
        };
        self.engine.close(id).await;
        self.resources.lock().remove(resource);
        true
    }

    /// The WebRTC sessions of `stream` for the stream API (no client addresses).
    pub fn stream_sessions(&self, stream: &str) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .engine
            .sessions()
            .into_iter()
            .filter(|(_, s)| s.stream == stream)
            .map(|(id, s)| session_json(id, &s))
            .collect();
        serde_json::Value::Array(list)
    }

    fn add_resource(&self, id: SessionId, stream: &str, role: Role) -> String {
        let token = format!("{id}{}", onair_shell::random_hex(8));
        self.resources.lock().insert(token.clone(), Resource { id, stream: stream.to_string(), role, ended: None });
        token
    }

    /// The session behind `token` ended on the server's side: keep a tombstone (see
    /// `ENDED_KEEP`), and drop the tombstones that are older.
    fn end_resource(&self, token: &str) {
        let now = Instant::now();
        let mut m = self.resources.lock();
        m.retain(|_, r| r.ended.is_none_or(|t| now.saturating_duration_since(t) < ENDED_KEEP));
        if let Some(r) = m.get_mut(token) {
            r.ended = Some(now);
        }
    }

    /// The audio a WHEP player of `stream` gets: the WHIP publisher's Opus, or the
    /// shared AAC → Opus bridge of an RTMP stream, or nothing.
    fn audio_for(self: &Arc<Self>, stream: &str) -> Option<broadcast::Receiver<(u64, Bytes)>> {
        if let Some(tx) = self.whip_opus.lock().get(stream) {
            return Some(tx.subscribe());
        }
        if !self.ffmpeg {
            return None;
        }
        let s = self.svc.registry.get(stream)?;
        // Only streams with AAC have anything to bridge.
        s.stats(onair_shell::now_ms()).audio_codec?;
        let mut bridged = self.bridged.lock();
        if let Some(tx) = bridged.get(stream) {
            return Some(tx.subscribe());
        }
        let sub = self.svc.registry.subscribe(stream, Protocol::Internal)?;
        let bridge = match AudioBridge::spawn(BridgeKind::AacToOpus, &self.settings.ffmpeg, self.settings.audio_kbps) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(stream, error = %e, "AAC → Opus bridge did not start");
                return None;
            }
        };
        let (tx, rx) = broadcast::channel(OPUS_RING);
        bridged.insert(stream.to_string(), tx.clone());
        drop(bridged);
        let me = self.clone();
        let name = stream.to_string();
        self.tasks.spawn(async move {
            run_aac_bridge(sub, bridge, tx.clone(), me.shutdown.clone()).await;
            let mut m = me.bridged.lock();
            if m.get(&name).is_some_and(|t| t.same_channel(&tx)) {
                m.remove(&name);
            }
        });
        Some(rx)
    }

    async fn export_metrics(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let sessions = self.engine.sessions();
            let mut counts: HashMap<(&'static str, &'static str), u64> = HashMap::new();
            for role in ["publish", "play"] {
                for state in ["connecting", "connected"] {
                    counts.insert((role, state), 0);
                }
            }
            let (mut nacks_rx, mut nacks_tx, mut plis_rx, mut plis_tx) = (0u64, 0u64, 0u64, 0u64);
            let mut on_tcp = 0u64;
            for (_, s) in &sessions {
                let state = match s.state {
                    SessionState::Connecting => "connecting",
                    SessionState::Connected => "connected",
                    SessionState::Closed => continue,
                };
                *counts.entry((role_label(s.role), state)).or_default() += 1;
                on_tcp += u64::from(s.transport == Some(Transport::Tcp));
                nacks_rx += s.nacks_received;
                nacks_tx += s.nacks_sent;
                plis_rx += s.plis_received;
                plis_tx += s.plis_sent;
            }
            for ((role, state), n) in counts {
                metrics::gauge!("onair_webrtc_sessions", "role" => role, "state" => state).set(n as f64);
            }
            // Sums over the live sessions (a gauge: sessions come and go).
            metrics::gauge!("onair_webrtc_nacks", "direction" => "received").set(nacks_rx as f64);
            metrics::gauge!("onair_webrtc_nacks", "direction" => "sent").set(nacks_tx as f64);
            metrics::gauge!("onair_webrtc_plis", "direction" => "received").set(plis_rx as f64);
            metrics::gauge!("onair_webrtc_plis", "direction" => "sent").set(plis_tx as f64);
            let udp = self.engine.udp_stats();
            metrics::counter!("onair_webrtc_udp_datagrams_dropped_total").absolute(udp.dropped_datagrams);
            metrics::counter!("onair_webrtc_udp_datagrams_refused_total").absolute(udp.refused_datagrams);
            if let Some(t) = self.engine.tcp_stats() {
                metrics::gauge!("onair_webrtc_tcp_sessions").set(on_tcp as f64);
                metrics::gauge!("onair_webrtc_tcp_connections").set(t.connections as f64);
                metrics::gauge!("onair_webrtc_tcp_refused").set(t.refused as f64);
                metrics::gauge!("onair_webrtc_tcp_dropped_packets").set(t.dropped_packets as f64);
            }
        }
    }
}

/// Ingests the held video frames in order (emptying `held`).
fn ingest_video(
    live: &mut crate::publish::LivePublish,
    held: &mut Vec<(u32, Bytes)>,
) -> Result<(), onair_media::flv::FlvError> {
    for (timestamp, body) in held.drain(..) {
        live.ingest(TrackKind::Video, timestamp, body)?;
    }
    Ok(())
}

fn role_label(r: Role) -> &'static str {
    match r {
        Role::Publish => "publish",
        Role::Play => "play",
    }
}

fn session_json(id: SessionId, s: &SessionStats) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "role": role_label(s.role),
        "state": match s.state {
            SessionState::Connecting => "connecting",
            SessionState::Connected => "connected",
            SessionState::Closed => "closed",
        },
        "transport": s.transport.map(|t| t.as_str()),
        "rttMs": s.rtt.map(|d| d.as_secs_f64() * 1000.0),
        "loss": s.loss,
        "bitrateRx": s.bitrate_rx,
        "bitrateTx": s.bitrate_tx,
        "bytesRx": s.bytes_rx,
        "bytesTx": s.bytes_tx,
        "nacksSent": s.nacks_sent,
        "nacksReceived": s.nacks_received,
        "plisSent": s.plis_sent,
        "plisReceived": s.plis_received,
        "frames": s.frames,
        "framesDropped": s.frames_dropped,
        "connectMs": s.connect_time.map(|d| d.as_millis() as u64),
    })
}

/// `Authorization: Bearer` → a push query. The documented form is the push URL's
/// query, `txSecret=HEX&txTime=HEX`; `HEX?txTime=HEX` (secret first) is taken too.
pub fn bearer_query(token: &str) -> String {
    let token = token.trim();
    if token.contains("txSecret=") {
        return token.trim_start_matches('?').to_string();
    }
    match token.split_once('?') {
        Some((secret, rest)) => format!("txSecret={secret}&{rest}"),
        None => format!("txSecret={token}"),
    }
}

/// This host's address on its default route: a UDP `connect` picks the route without
/// sending anything (TEST-NET-1 is never reached).
fn default_route_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

async fn recv_bridge(bridge: &mut Option<AudioBridge>) -> Option<AudioPacket> {
    match bridge {
        Some(b) => b.recv().await,
        None => std::future::pending().await,
    }
}

/// One RTMP stream's AAC → Opus bridge: fed the stream's AAC tags, its Opus broadcast
/// to the stream's WHEP players. Ends with the stream, at shutdown, or when no player
/// has listened for a while.
async fn run_aac_bridge(mut sub: Subscription, mut bridge: AudioBridge, tx: OpusTx, shutdown: CancellationToken) {
    let mut check = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Recv::Packet(p) => {
                    let audio = match &p.media {
                        Media::Config(onair_media::frame::CodecConfig::Aac { .. }) => true,
                        Media::Frame(f) => f.kind == TrackKind::Audio,
                        _ => false,
                    };
                    if audio {
                        bridge.send(AudioPacket { timestamp: p.dts, data: p.body.clone() });
                    }
                }
                Recv::Skipped(_) => {}
                Recv::Ended => return,
            },
            o = bridge.recv() => match o {
                Some(p) => {
                    let _ = tx.send((p.timestamp, p.data));
                }
                None => return,
            },
            _ = check.tick() => {
                if tx.receiver_count() == 0 {
                    return;
                }
            }
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The video of a stream's WebRTC feed: the registry subscription as `PlayFrame`s.
struct VideoSource {
    sub: Subscription,
}

impl VideoSource {
    async fn next(&mut self) -> Option<PlayFrame> {
        loop {
            match self.sub.recv().await {
                Recv::Packet(p) => {
                    let video = match &p.media {
                        Media::Config(onair_media::frame::CodecConfig::Avc { .. }) => true,
                        Media::Frame(f) => f.kind == TrackKind::Video,
                        _ => false,
                    };
                    if video {
                        return Some(PlayFrame::FlvVideo { timestamp: p.dts, body: p.body.clone() });
                    }
                }
                Recv::Skipped(_) => return Some(PlayFrame::Gap),
                Recv::Ended => return None,
            }
        }
    }
}

/// Video and audio as one source that ends when the video does (the stream ended or
/// the session closed).
fn merge(video: VideoSource, audio: Option<broadcast::Receiver<(u64, Bytes)>>) -> FrameSource {
    let video = futures_util::stream::unfold(video, |mut v| async move {
        let f = v.next().await;
        Some((f, v))
    });
    let audio = futures_util::stream::unfold(audio, |audio| async move {
        let mut rx = audio?;
        loop {
            match rx.recv().await {
                Ok((timestamp, data)) => return Some((Some(PlayFrame::Opus { timestamp, data }), Some(rx))),
                // A glitch, not an end: carry on from the newest packets.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    // `None` from the video is the end marker; audio never yields it.
    let merged = futures_util::stream::select(video, audio).take_while(|f| std::future::ready(f.is_some()));
    Box::pin(merged.filter_map(std::future::ready))
}
