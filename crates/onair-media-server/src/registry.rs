//! The stream registry: one entry per published stream, holding its codec
//! configuration, metadata, GOP cache and the broadcast ring its viewers read from.
//!
//! Every frame is muxed once when it arrives ([`Packet`] carries the pre-built FLV tag
//! and RTMP chunks) and shared by all viewers as refcounted bytes. Viewers read a
//! bounded broadcast ring (`tokio::sync::broadcast`): each has its own cursor into the
//! ring, so the ring is every viewer's bounded queue at the cost of one queue. A
//! viewer whose cursor is overtaken ("lagged") is moved to the head of the ring and
//! skips to the next keyframe ([`Recv::Skipped`]); its protocol task decides when to
//! cut it off. The publisher never waits for a viewer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use onair_media::flv::{self, FlvError, Parsed};
use onair_media::frame::{CodecConfig, MediaFrame, TrackKind};
use onair_media::gop::{GopCache, GopLimits};
use onair_media::mix::{Decision, Offer, ProgramSwitch, Source};
use onair_media::monitor::{MonitorConfig, StreamMonitor};
use onair_media::rtmp::{self as rtmpmux, Metadata};
use onair_media::stats::{RateMeter, Rates};
use onair_media::timestamp::TimestampExtender;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use onair_media::pacing::{Behind, ViewerPacing};
use onair_shell::{monotonic_ms, now_ms};

/// What a packet carries, for muxers that need the parsed form (fMP4/HLS).
#[derive(Debug, Clone)]
pub enum Media {
    /// Codec configuration (sequence header).
    Config(CodecConfig),
    /// A coded frame.
    Frame(MediaFrame),
    /// `onMetaData` from the publisher.
    Metadata(Metadata),
}

/// One message of a stream, parsed and pre-muxed once for every viewer.
#[derive(Debug)]
pub struct Packet {
    /// Parsed content.
    pub media: Media,
    /// Decode timestamp in ms (64-bit, unwrapped).
    pub dts: u64,
    /// The FLV tag body as received (also the RTMP message payload).
    pub body: Bytes,
    /// The complete FLV tag (header, body, previous-tag-size) for HTTP-FLV.
    pub flv: Bytes,
    /// The message chunked for RTMP players (message stream id 1).
    pub rtmp: Bytes,
}

impl Packet {
    fn new(media: Media, dts: u64, body: Bytes) -> Packet {
        let (tag, csid) = match &media {
            Media::Config(CodecConfig::Avc { .. }) => (flv::TAG_VIDEO, rtmpmux::CSID_VIDEO),
            Media::Config(CodecConfig::Aac { .. }) => (flv::TAG_AUDIO, rtmpmux::CSID_AUDIO),
            Media::Frame(f) if f.kind == TrackKind::Video => (flv::TAG_VIDEO, rtmpmux::CSID_VIDEO),
            Media::Frame(_) => (flv::TAG_AUDIO, rtmpmux::CSID_AUDIO),
            Media::Metadata(_) => (flv::TAG_SCRIPT, rtmpmux::CSID_DATA),
        };
        Packet {
            flv: flv::write_tag(tag, dts, &body),
            rtmp: rtmpmux::chunk_message(csid, rtmpmux::PLAY_STREAM_ID, tag, dts, &body),
            media,
            dts,
            body,
        }
    }

    /// The same content at another timestamp (configs sent to a viewer joining late).
    fn restamped(&self, dts: u64) -> Packet {
        // Metadata stays at 0: FFmpeg reads a script tag with another timestamp as
        // an extra data stream.
        let dts = if matches!(self.media, Media::Metadata(_)) { 0 } else { dts };
        let media = match &self.media {
            Media::Frame(f) => Media::Frame(MediaFrame { dts, ..f.clone() }),
            other => other.clone(),
        };
        Packet::new(media, dts, self.body.clone())
    }

    /// This packet at program time `dts` (the same packet when nothing moves).
    fn at(self: &Arc<Self>, dts: u64) -> Arc<Packet> {
        if dts == self.dts { self.clone() } else { Arc::new(self.restamped(dts)) }
    }

    /// A video keyframe: where a viewer may start.
    pub fn is_video_keyframe(&self) -> bool {
        matches!(&self.media, Media::Frame(f) if f.kind == TrackKind::Video && f.keyframe)
    }

    /// A frame (not a config or metadata).
    pub fn is_frame(&self) -> bool {
        matches!(self.media, Media::Frame(_))
    }
}

/// How a viewer watches (for the per-protocol viewer counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RTMP play.
    Rtmp,
    /// HTTP-FLV.
    HttpFlv,
    /// HLS / fMP4 viewers (counted by the HLS part).
    Hls,
    /// An edge node relaying the stream (its pull over HTTP-FLV, see `media::edge`).
    Relay,
    /// A WebRTC (WHEP) player (see `webrtc`).
    WebRtc,
    /// An internal consumer (a muxer, a recorder): not a viewer.
    Internal,
}

impl Protocol {
    /// All counted protocols with their label.
    pub const COUNTED: [(Protocol, &'static str); 5] = [
        (Protocol::Rtmp, "rtmp"),
        (Protocol::HttpFlv, "flv"),
        (Protocol::Hls, "hls"),
        (Protocol::Relay, "relay"),
        (Protocol::WebRtc, "webrtc"),
    ];

    /// The metrics label (`internal` for internal consumers).
    pub fn label(self) -> &'static str {
        self.index().map_or("internal", |i| Self::COUNTED[i].1)
    }

    fn index(self) -> Option<usize> {
        match self {
            Protocol::Rtmp => Some(0),
            Protocol::HttpFlv => Some(1),
            Protocol::Hls => Some(2),
            Protocol::Relay => Some(3),
            Protocol::WebRtc => Some(4),
            Protocol::Internal => None,
        }
    }
}

/// Facts about a publish session fixed at its start.
#[derive(Debug, Clone)]
pub struct PublishInfo {
    /// Publisher's address.
    pub client_ip: String,
    /// The push URL's query string (may hold the signature: never shown publicly).
    pub stream_param: String,
    /// Unix ms of the start.
    pub started_at_ms: u64,
    /// Number shared by this session's publish and unpublish callbacks.
    pub sequence: u64,
    /// The session's id in media URLs (`/live/NAME/{session}/…`): unique on this node
    /// for good (start times are strictly increasing), and for a relayed stream also
    /// marked with the node, so a segment URL is never reused for other bytes.
    pub session: String,
    /// For a stream relayed from an origin server (this node is an edge): the origin's
    /// base URL. `None` for a stream published here.
    pub origin: Option<String>,
    /// Set when the server itself publishes the stream (a file played as live, a
    /// slate: see `playout`); such a publisher yields to a real, authorised one.
    pub house: Option<HouseKind>,
}

/// What a house publisher plays (see `playout`), in the order a publish may take a
/// name over: a slate yields to a file, a file yields to the anchor's real push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HouseKind {
    /// A "starting soon" / "thanks for watching" slate: not reported to the room layer,
    /// callbacks or recordings (the room is not on air because of it).
    Slate,
    /// A file played as the room's live stream: reported like any publish.
    Vod,
}

struct StreamState {
    tx: Option<broadcast::Sender<Arc<Packet>>>,
    video_config: Option<Arc<Packet>>,
    audio_config: Option<Arc<Packet>>,
    metadata: Option<Arc<Packet>>,
    meta: Metadata,
    gop: GopCache<Arc<Packet>>,
    has_video: bool,
    meter: RateMeter,
    /// Which feed the stream's viewers get (the publisher's or a co-host mix).
    switch: ProgramSwitch,
    /// The latest (video, audio) configuration of each source the switch may still
    /// take: the anchor and the mix generations on air or wanted (at most three).
    source_configs: Vec<(Source, SourceConfigs)>,
    /// While a mix is wanted: the publisher's own feed copied to `{name}.raw`.
    tap: Option<Publisher>,
}

/// A source's latest (video, audio) sequence headers.
type SourceConfigs = (Option<Arc<Packet>>, Option<Arc<Packet>>);

impl StreamState {
    /// `from`'s cached configurations; sources the switch can no longer take (an ended
    /// mix generation) are forgotten.
    fn configs(&mut self, from: Source) -> &mut SourceConfigs {
        let (on, want) = (self.switch.on(), self.switch.wanted());
        self.source_configs.retain(|(s, _)| *s == Source::Anchor || *s == on || *s == want || *s == from);
        let i = match self.source_configs.iter().position(|(s, _)| *s == from) {
            Some(i) => i,
            None => {
                self.source_configs.push((from, (None, None)));
                self.source_configs.len() - 1
            }
        };
        &mut self.source_configs[i].1
    }

    /// Offers one packet of `from` to the program: the switch decides whether (and at
    /// which time) viewers get it. True when the program switched to `from` here.
    fn offer(&mut self, from: Source, packet: Arc<Packet>, len: usize) -> bool {
        let configs = self.configs(from);
        match &packet.media {
            Media::Config(CodecConfig::Avc { .. }) => configs.0 = Some(packet.clone()),
            Media::Config(CodecConfig::Aac { .. }) => configs.1 = Some(packet.clone()),
            _ => {}
        }
        let offer = Offer {
            from,
            frame: packet.is_frame(),
            keyframe: packet.is_video_keyframe(),
            source_has_video: configs.0.is_some(),
            dts: packet.dts,
        };
        match self.switch.offer(offer) {
            Decision::Drop => false,
            Decision::Pass(t) => {
                self.emit(packet.at(t), len);
                false
            }
            Decision::Switch(t) => {
                // Fresh sequence headers at the switch, then the keyframe: every
                // player re-initialises its decoder there.
                let (v, a) = self.configs(from).clone();
                for c in [v, a].into_iter().flatten() {
                    self.emit(c.at(t), 0);
                }
                self.emit(packet.at(t), len);
                true
            }
        }
    }

    /// Caches and broadcasts one program packet.
    fn emit(&mut self, packet: Arc<Packet>, len: usize) {
        match &packet.media {
            Media::Config(CodecConfig::Avc { .. }) => {
                self.has_video = true;
                self.video_config = Some(packet.clone());
            }
            Media::Config(CodecConfig::Aac { .. }) => self.audio_config = Some(packet.clone()),
            Media::Frame(f) => {
                if f.kind == TrackKind::Video {
                    self.has_video = true;
                }
                let start = packet.is_video_keyframe() || !self.has_video;
                self.gop.push(packet.clone(), len, start);
            }
            Media::Metadata(_) => {}
        }
        if let Some(tx) = &self.tx {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(packet);
        }
    }
}

/// A published stream.
pub struct Stream {
    /// Stream name.
    pub name: String,
    /// Publish session facts.
    pub info: PublishInfo,
    state: Mutex<StreamState>,
    viewers: [AtomicU64; 5],
    bytes_out: AtomicU64,
    gop_cache: bool,
    /// The session's health history (outlives the stream: the media service keeps it
    /// readable for a while after the end).
    monitor: Arc<Mutex<StreamMonitor>>,
}

/// A snapshot of a stream's numbers.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// Stream name.
    pub name: String,
    /// Ingest bitrate over the last seconds, bit/s.
    pub bitrate_bps: u64,
    /// Video frames per second.
    pub video_fps: f64,
    /// Audio frames per second.
    pub audio_fps: f64,
    /// Width (from the publisher's metadata until the SPS is parsed).
    pub width: Option<u32>,
    /// Height.
    pub height: Option<u32>,
    /// `h264` when an H.264 configuration was received.
    pub video_codec: Option<&'static str>,
    /// `aac` when an AAC configuration was received.
    pub audio_codec: Option<&'static str>,
    /// Viewers by protocol.
    pub viewers: HashMap<&'static str, u64>,
    /// Unix ms of the publish start.
    pub started_at: u64,
    /// How long it has been published, seconds.
    pub publish_secs: u64,
    /// Bytes received from the publisher.
    pub bytes_in: u64,
    /// Bytes written to RTMP and HTTP-FLV viewers.
    pub bytes_out: u64,
    /// Frames in the GOP cache.
    pub gop_frames: usize,
    /// Encoder named in the metadata.
    pub encoder: Option<String>,
    /// The origin's base URL when this node relays the stream (an edge); `null` for a
    /// stream published here.
    pub origin: Option<String>,
}

impl Stream {
    /// Numbers for the API and `/metrics`.
    pub fn stats(&self, now_ms: u64) -> StreamStats {
        let st = self.state.lock();
        let Rates { bitrate_bps, video_fps, audio_fps } = st.meter.rates(now_ms);
        StreamStats {
            name: self.name.clone(),
            bitrate_bps,
            video_fps,
            audio_fps,
            width: st.meta.width,
            height: st.meta.height,
            video_codec: st.video_config.as_ref().map(|_| "h264"),
            audio_codec: st.audio_config.as_ref().map(|_| "aac"),
            viewers: Protocol::COUNTED.iter().map(|(p, label)| (*label, self.viewers(*p))).collect(),
            started_at: self.info.started_at_ms,
            publish_secs: now_ms.saturating_sub(self.info.started_at_ms) / 1000,
            bytes_in: st.meter.total_bytes,
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            gop_frames: st.gop.len(),
            encoder: st.meta.encoder.clone(),
            origin: self.info.origin.clone(),
        }
    }

    /// Viewers of every counted protocol together (what keeps an edge's pull alive).
    pub fn total_viewers(&self) -> u64 {
        self.viewers.iter().map(|v| v.load(Ordering::Relaxed)).sum()
    }

    /// Whether this node relays the stream from an origin (it is not the stream's
    /// origin: no publish hooks, recordings or renditions here).
    pub fn is_relayed(&self) -> bool {
        self.info.origin.is_some()
    }

    /// Current viewers of one protocol.
    pub fn viewers(&self, p: Protocol) -> u64 {
        p.index().map(|i| self.viewers[i].load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Counts bytes written to a viewer.
    pub fn add_bytes_out(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The session's monitor (see [`onair_media::monitor`]).
    pub fn monitor(&self) -> &Arc<Mutex<StreamMonitor>> {
        &self.monitor
    }

    /// The publisher's metadata so far.
    pub fn metadata(&self) -> Metadata {
        self.state.lock().meta.clone()
    }

    /// Asks for `source` as this stream's program (effective at its next keyframe).
    pub fn want_program(&self, source: Source) {
        self.state.lock().switch.want(source);
    }

    /// The mix of generation `generation` started over (its child was restarted): if on air,
    /// viewers keep the picture until its first keyframe.
    pub fn restart_mix(&self, generation: u32) {
        self.state.lock().switch.restart(Source::Mix(generation));
    }

    /// The feed viewers get now.
    pub fn program(&self) -> Source {
        self.state.lock().switch.on()
    }

    /// A packet of the mix of generation `generation` for this stream's program (see
    /// [`onair_media::mix`]): viewers get it once that mix is wanted and has reached a
    /// keyframe. True when the program switched to this mix at this packet.
    pub fn feed_mix(&self, generation: u32, packet: &Arc<Packet>) -> bool {
        if matches!(packet.media, Media::Metadata(_)) {
            return false;
        }
        self.state.lock().offer(Source::Mix(generation), packet.clone(), packet.body.len())
    }

    /// The sample rate of this stream's AAC audio, when it has some.
    pub fn audio_sample_rate(&self) -> Option<u32> {
        let cfg = self.state.lock().audio_config.clone()?;
        match &cfg.media {
            Media::Config(CodecConfig::Aac { config }) => {
                onair_media::codec::parse_asc(config).ok().map(|c| c.sample_rate)
            }
            _ => None,
        }
    }

    /// Whether the publisher's own feed is being copied to `{name}.raw`.
    pub fn has_tap(&self) -> bool {
        self.state.lock().tap.is_some()
    }

    /// Stops copying the publisher's feed to `{name}.raw` (that stream ends).
    pub fn stop_tap(&self) {
        let tap = self.state.lock().tap.take();
        drop(tap); // outside the lock: dropping a publisher takes the registry's
    }

    /// Whether this stream carries audio (an AAC configuration arrived).
    pub fn has_audio(&self) -> bool {
        self.state.lock().audio_config.is_some()
    }
}

/// A change in the set of published streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A stream started.
    Published(String),
    /// A stream ended.
    Unpublished(String),
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Someone already publishes this stream.
    #[error("stream is already being published")]
    AlreadyPublishing,
}

/// Tuning of the registry.
#[derive(Debug, Clone, Copy)]
pub struct RegistryConfig {
    /// GOP cache on/off.
    pub gop_cache: bool,
    /// GOP cache caps.
    pub gop_limits: GopLimits,
    /// Broadcast ring length in packets (each viewer's queue bound).
    pub queue_packets: usize,
    /// Stream monitoring (history length, alert thresholds).
    pub monitor: MonitorConfig,
}

/// All published streams.
pub struct StreamRegistry {
    streams: RwLock<HashMap<String, Arc<Stream>>>,
    cfg: RegistryConfig,
    next_sequence: AtomicU64,
    last_start: AtomicU64,
    events: broadcast::Sender<RegistryEvent>,
}

impl StreamRegistry {
    /// An empty registry.
    pub fn new(cfg: RegistryConfig) -> StreamRegistry {
        StreamRegistry {
            streams: RwLock::new(HashMap::new()),
            cfg,
            next_sequence: AtomicU64::new(onair_shell::seed() % 1_000_000_000),
            last_start: AtomicU64::new(0),
            events: broadcast::channel(256).0,
        }
    }

    /// Publish/unpublish notifications (for consumers such as the HLS muxer that start
    /// a subscription per stream). Lagging receivers miss events; re-check [`Self::list`].
    pub fn watch(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    /// Takes the stream name for a publisher; refused if it is taken.
    pub fn publish(
        self: &Arc<Self>,
        name: &str,
        client_ip: String,
        stream_param: String,
    ) -> Result<Publisher, PublishError> {
        self.start(name, client_ip, stream_param, None, None)
    }

    /// [`Self::publish`] for a house publisher (see `playout`).
    pub fn publish_house(
        self: &Arc<Self>,
        name: &str,
        client_ip: String,
        stream_param: String,
        house: Option<HouseKind>,
    ) -> Result<Publisher, PublishError> {
        self.start(name, client_ip, stream_param, None, house)
    }

    /// Takes the stream name for a relay of `origin`'s stream (an edge's pull; see
    /// `media::edge`). `node` marks the session id so two edges never name different
    /// segments alike behind one CDN host.
    pub fn relay(self: &Arc<Self>, name: &str, origin: &str, node: &str) -> Result<Publisher, PublishError> {
        self.start(name, origin.to_string(), String::new(), Some((origin.to_string(), node)), None)
    }

    fn start(
        self: &Arc<Self>,
        name: &str,
        client_ip: String,
        stream_param: String,
        relay: Option<(String, &str)>,
        house: Option<HouseKind>,
    ) -> Result<Publisher, PublishError> {
        let mut streams = self.streams.write();
        if streams.contains_key(name) {
            return Err(PublishError::AlreadyPublishing);
        }
        // Strictly increasing start times: the session id (in every media URL, cached
        // as immutable) is never reused, even by a re-publish in the same millisecond.
        let wall = now_ms();
        let now =
            match self.last_start.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(wall.max(last + 1))) {
                Ok(last) | Err(last) => wall.max(last + 1),
            };
        let (session, origin) = match relay {
            Some((origin, node)) => (format!("{now}-{node}"), Some(origin)),
            None => (now.to_string(), None),
        };
        let stream = Arc::new(Stream {
            name: name.to_string(),
            info: PublishInfo {
                client_ip,
                stream_param,
                started_at_ms: now,
                sequence: self.next_sequence.fetch_add(1, Ordering::Relaxed),
                session,
                origin,
                house,
            },
            state: Mutex::new(StreamState {
                tx: Some(broadcast::channel(self.cfg.queue_packets.max(16)).0),
                video_config: None,
                audio_config: None,
                metadata: None,
                meta: Metadata::default(),
                gop: GopCache::new(self.cfg.gop_limits),
                has_video: false,
                meter: RateMeter::new(now),
                switch: ProgramSwitch::default(),
                source_configs: Vec::with_capacity(3),
                tap: None,
            }),
            viewers: Default::default(),
            bytes_out: AtomicU64::new(0),
            gop_cache: self.cfg.gop_cache,
            monitor: Arc::new(Mutex::new(StreamMonitor::new(self.cfg.monitor, now))),
        });
        streams.insert(name.to_string(), stream.clone());
        drop(streams);
        let _ = self.events.send(RegistryEvent::Published(name.to_string()));
        Ok(Publisher {
            stream,
            registry: self.clone(),
            video_ts: TimestampExtender::new(),
            audio_ts: TimestampExtender::new(),
        })
    }

    /// A published stream.
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.read().get(name).cloned()
    }

    /// Starts copying `name`'s own feed to `{name}.raw` (an ordinary stream the mixer
    /// and the guests read), primed with its codec configuration and GOP so a reader
    /// starts at once. `Ok(false)` when `name` is not published.
    pub fn start_tap(self: &Arc<Self>, name: &str) -> Result<bool, PublishError> {
        let Some(stream) = self.get(name) else { return Ok(false) };
        if stream.has_tap() {
            return Ok(true);
        }
        let raw = onair_media::mix::raw_stream(name);
        let mut tap = self.start(&raw, stream.info.client_ip.clone(), String::new(), None, None)?;
        let mut st = stream.state.lock();
        if st.tap.is_some() {
            return Ok(true); // raced with another start: that one's tap stays
        }
        let (v, a) = st.configs(Source::Anchor).clone();
        let gop = if st.switch.on() == Source::Anchor { st.gop.snapshot() } else { Vec::new() };
        tap.set_metadata(st.meta.clone());
        let configs = [v, a].into_iter().flatten().map(|p| (p.dts, p));
        // The cached GOP is on the program's clock: back on the publisher's, which the
        // tap's live packets use.
        let gop = gop.into_iter().map(|p| (st.switch.to_source(p.dts), p));
        for (dts, p) in configs.chain(gop) {
            let kind = match &p.media {
                Media::Config(CodecConfig::Avc { .. }) => TrackKind::Video,
                Media::Config(CodecConfig::Aac { .. }) => TrackKind::Audio,
                Media::Frame(f) => f.kind,
                Media::Metadata(_) => continue,
            };
            // Priming replays packets that were accepted once; they parse again. The
            // RTMP clock is 32 bits: the tap's extender unwraps it like the ingest's.
            let _ = tap.ingest(kind, dts as u32, p.body.clone());
        }
        st.tap = Some(tap);
        Ok(true)
    }

    /// All published streams.
    pub fn list(&self) -> Vec<Arc<Stream>> {
        let mut v: Vec<_> = self.streams.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Starts reading a stream: first its metadata and codec configuration, then the
    /// GOP cache (from the last keyframe), then live packets. `None` if the stream is
    /// not published.
    pub fn subscribe(&self, name: &str, protocol: Protocol) -> Option<Subscription> {
        let stream = self.get(name)?;
        let (rx, backlog, waiting_key) = {
            let st = stream.state.lock();
            let tx = st.tx.as_ref()?;
            let rx = tx.subscribe();
            let gop = if stream.gop_cache { st.gop.snapshot() } else { Vec::new() };
            // Configs go out stamped with the first frame's time so timestamps never
            // step backwards for the player.
            let start = gop.first().map(|p| p.dts).or(st.video_config.as_ref().map(|p| p.dts)).unwrap_or(0);
            let mut backlog = VecDeque::with_capacity(gop.len() + 3);
            for p in [&st.metadata, &st.video_config, &st.audio_config].into_iter().flatten() {
                backlog.push_back(Arc::new(p.restamped(start)));
            }
            let waiting_key = st.has_video && gop.is_empty();
            backlog.extend(gop);
            (rx, backlog, waiting_key)
        };
        if let Some(i) = protocol.index() {
            stream.viewers[i].fetch_add(1, Ordering::Relaxed);
        }
        Some(Subscription { stream, protocol, backlog, rx, waiting_key })
    }

    fn remove(&self, stream: &Arc<Stream>) {
        let mut streams = self.streams.write();
        let mine = streams.get(&stream.name).is_some_and(|s| Arc::ptr_eq(s, stream));
        if mine {
            streams.remove(&stream.name);
        }
        drop(streams);
        // Only for the publisher that held the name: a stale one must not announce the
        // end of the stream that replaced it.
        if mine {
            let _ = self.events.send(RegistryEvent::Unpublished(stream.name.clone()));
        }
    }
}

/// The right to publish one stream; dropping it ends the stream (viewers drain what
/// is queued, then see [`Recv::Ended`]).
pub struct Publisher {
    stream: Arc<Stream>,
    registry: Arc<StreamRegistry>,
    video_ts: TimestampExtender,
    audio_ts: TimestampExtender,
}

impl Publisher {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Takes one audio or video message (an FLV tag body) from the publisher: parses
    /// it, muxes it once, caches and broadcasts it. Unsupported codecs are errors.
    pub fn ingest(&mut self, kind: TrackKind, timestamp: u32, body: Bytes) -> Result<(), FlvError> {
        let dts = match kind {
            TrackKind::Video => self.video_ts.extend(timestamp),
            TrackKind::Audio => self.audio_ts.extend(timestamp),
        };
        let len = body.len();
        let media = match flv::parse_media(kind, &body, dts)? {
            Parsed::Config(c) => Media::Config(c),
            Parsed::Frame(f) => Media::Frame(f),
            Parsed::Nothing => return Ok(()),
        };
        let now = now_ms();
        let mut st = self.stream.state.lock();
        if let Some(tap) = st.tap.as_mut() {
            // The same message, for the mixer and the guests; a refusal there was
            // already a refusal here (same parser).
            let _ = tap.ingest(kind, timestamp, body.clone());
        }
        let packet = Arc::new(Packet::new(media, dts, body));
        st.meter.record(now, len, kind == TrackKind::Video);
        // The monitor watches what the publisher sends (not the program a mix may
        // replace it with).
        let frame = match &packet.media {
            Media::Frame(f) => Some((f.kind == TrackKind::Video, f.keyframe)),
            _ => None,
        };
        st.offer(Source::Anchor, packet, len);
        drop(st);
        if let Some((video, keyframe)) = frame {
            self.stream.monitor.lock().frame(now, video, keyframe, dts, len);
        }
        Ok(())
    }

    /// Takes the publisher's `onMetaData`.
    pub fn set_metadata(&mut self, meta: Metadata) {
        let packet = Arc::new(Packet::new(Media::Metadata(meta.clone()), 0, rtmpmux::metadata_body(&meta)));
        let mut st = self.stream.state.lock();
        if let Some(tap) = st.tap.as_mut() {
            tap.set_metadata(meta.clone());
        }
        st.meta = meta;
        st.metadata = Some(packet.clone());
        if let Some(tx) = &st.tx {
            let _ = tx.send(packet);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Dropping the sender lets every viewer drain its queue and then end.
        let tap = {
            let mut st = self.stream.state.lock();
            st.tx = None;
            st.tap.take()
        };
        drop(tap);
        self.registry.remove(&self.stream);
    }
}

/// What [`Subscription::recv`] yields.
#[derive(Debug)]
pub enum Recv {
    /// The next packet.
    Packet(Arc<Packet>),
    /// This reader fell `n` packets behind the ring; it now continues at the live
    /// edge from the next keyframe.
    Skipped(u64),
    /// The publisher stopped.
    Ended,
}

/// A viewer that fell behind the stream twice within the grace period (see
/// [`onair_media::pacing`]): it is disconnected.
#[derive(Debug, thiserror::Error)]
#[error("viewer stays behind ({skipped} packets skipped twice within the grace period)")]
pub struct ViewerBehind {
    /// Packets skipped the second time.
    pub skipped: u64,
}

/// One reader of one stream.
pub struct Subscription {
    stream: Arc<Stream>,
    protocol: Protocol,
    backlog: VecDeque<Arc<Packet>>,
    rx: broadcast::Receiver<Arc<Packet>>,
    waiting_key: bool,
}

impl Subscription {
    /// The stream read.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    fn accept(&mut self, p: Arc<Packet>) -> Option<Arc<Packet>> {
        if self.waiting_key && p.is_frame() {
            if !p.is_video_keyframe() {
                return None;
            }
            self.waiting_key = false;
        }
        Some(p)
    }

    fn on_lag(&mut self, n: u64) -> Recv {
        self.rx = self.rx.resubscribe();
        self.waiting_key = true;
        Recv::Skipped(n)
    }

    /// One write's worth for a viewer, after [`Self::recv`] gave `first`: after the
    /// pacing's merge window, whatever else is ready joins it in `out` (up to
    /// [`ViewerPacing::MAX_BATCH`]). `Ok(false)` once the stream ended; an error when
    /// the viewer fell behind twice within the grace. Every output protocol takes its
    /// packets through here, so they share one policy.
    pub async fn gather(
        &mut self,
        first: Recv,
        pacing: &mut ViewerPacing,
        out: &mut Vec<Arc<Packet>>,
    ) -> Result<bool, ViewerBehind> {
        let mut live = self.take(first, pacing, out)?;
        let wait = pacing.wait_before_batch(monotonic_ms());
        if live && wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        while live && out.len() < ViewerPacing::MAX_BATCH {
            let Some(next) = self.try_recv() else { break };
            live = self.take(next, pacing, out)?;
        }
        pacing.batch_taken(monotonic_ms());
        Ok(live)
    }

    fn take(&mut self, r: Recv, pacing: &mut ViewerPacing, out: &mut Vec<Arc<Packet>>) -> Result<bool, ViewerBehind> {
        match r {
            Recv::Packet(p) => out.push(p),
            Recv::Skipped(skipped) => {
                let protocol = self.protocol.label();
                metrics::counter!("onair_media_viewer_skips_total", "protocol" => protocol).increment(1);
                if pacing.fell_behind(monotonic_ms()) == Behind::Cut {
                    metrics::counter!("onair_media_viewers_cut_total", "protocol" => protocol).increment(1);
                    return Err(ViewerBehind { skipped });
                }
            }
            Recv::Ended => return Ok(false),
        }
        Ok(true)
    }

    /// The next packet (waits).
    pub async fn recv(&mut self) -> Recv {
        if let Some(p) = self.backlog.pop_front() {
            return Recv::Packet(p);
        }
        loop {
            match self.rx.recv().await {
                Ok(p) => {
                    if let Some(p) = self.accept(p) {
                        return Recv::Packet(p);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => return self.on_lag(n),
                Err(broadcast::error::RecvError::Closed) => return Recv::Ended,
            }
        }
    }

    /// The next packet if one is ready (for batching writes).
    pub fn try_recv(&mut self) -> Option<Recv> {
        if let Some(p) = self.backlog.pop_front() {
            return Some(Recv::Packet(p));
        }
        loop {
            match self.rx.try_recv() {
                Ok(p) => {
                    if let Some(p) = self.accept(p) {
                        return Some(Recv::Packet(p));
                    }
                }
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => return Some(self.on_lag(n)),
                Err(broadcast::error::TryRecvError::Closed) => return Some(Recv::Ended),
            }
        }
    }
}

/// A viewer counted on a stream without reading it: one shared reader (a WebRTC feed)
/// reads the stream for many viewers, each of which still counts as one of its
/// protocol's viewers. Uncounted when dropped.
pub struct ViewerMark {
    stream: Arc<Stream>,
    protocol: Protocol,
}

impl Subscription {
    /// Keeps this subscription's viewer count and drops what it would read.
    pub fn into_mark(mut self) -> ViewerMark {
        let mark = ViewerMark { stream: self.stream.clone(), protocol: self.protocol };
        // The mark uncounts the viewer now, not the subscription's drop.
        self.protocol = Protocol::Internal;
        mark
    }
}

impl Drop for ViewerMark {
    fn drop(&mut self) {
        if let Some(i) = self.protocol.index() {
            self.stream.viewers[i].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(i) = self.protocol.index() {
            self.stream.viewers[i].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reg(queue: usize) -> Arc<StreamRegistry> {
        Arc::new(StreamRegistry::new(RegistryConfig {
            gop_cache: true,
            gop_limits: GopLimits::default(),
            queue_packets: queue,
            monitor: MonitorConfig::default(),
        }))
    }

    fn video(key: bool, n: u8) -> Bytes {
        Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 0, 0, 0, 1, n])
    }

    async fn next(s: &mut Subscription) -> Arc<Packet> {
        match s.recv().await {
            Recv::Packet(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn late_viewer_starts_at_the_cached_keyframe_and_one_publisher_per_name() {
        let r = reg(64);
        let mut p = r.publish("s", "ip".into(), String::new()).unwrap();
        assert!(matches!(r.publish("s", "ip".into(), String::new()), Err(PublishError::AlreadyPublishing)));
        p.ingest(TrackKind::Video, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64])).unwrap();
        p.ingest(TrackKind::Video, 0, video(true, 1)).unwrap();
        p.ingest(TrackKind::Video, 33, video(false, 2)).unwrap();
        p.ingest(TrackKind::Video, 66, video(true, 3)).unwrap();
        p.ingest(TrackKind::Video, 99, video(false, 4)).unwrap();
        let mut s = r.subscribe("s", Protocol::HttpFlv).unwrap();
        assert_eq!(r.get("s").unwrap().viewers(Protocol::HttpFlv), 1);
        let cfg = next(&mut s).await;
        assert!(matches!(cfg.media, Media::Config(CodecConfig::Avc { .. })));
        assert_eq!(cfg.dts, 66, "config restamped to the GOP start");
        assert_eq!((next(&mut s).await.dts, next(&mut s).await.dts), (66, 99));
        p.ingest(TrackKind::Video, 132, video(false, 5)).unwrap();
        let live = next(&mut s).await;
        assert_eq!((live.dts, live.flv.len()), (132, 11 + 10 + 4));
        drop(p);
        assert!(matches!(s.recv().await, Recv::Ended));
        assert!(r.get("s").is_none());
        drop(s);
        assert!(r.publish("s", "ip".into(), String::new()).is_ok(), "name free again");
    }

    #[tokio::test]
    async fn sessions_are_never_reused_and_relays_say_their_origin() {
        let r = reg(16);
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for _ in 0..50 {
            // Re-publishing at once: same millisecond, still a new session id.
            let p = r.publish("s", "ip".into(), String::new()).unwrap();
            let info = &p.stream().info;
            assert!(info.started_at_ms > last && info.origin.is_none());
            last = info.started_at_ms;
            assert!(seen.insert(info.session.clone()), "session {} reused", info.session);
        }
        let p = r.relay("e", "http://10.0.0.1:8080", "n0de").unwrap();
        let s = p.stream().clone();
        assert!(s.is_relayed() && s.info.session.ends_with("-n0de"), "{}", s.info.session);
        assert_eq!(s.stats(now_ms()).origin.as_deref(), Some("http://10.0.0.1:8080"));
        assert!(matches!(r.relay("e", "http://x", "n"), Err(PublishError::AlreadyPublishing)));
        let _a = r.subscribe("e", Protocol::Relay).unwrap();
        let _b = r.subscribe("e", Protocol::HttpFlv).unwrap();
        let _c = r.subscribe("e", Protocol::Internal).unwrap();
        assert_eq!((s.total_viewers(), s.viewers(Protocol::Relay)), (2, 1), "internal readers are not viewers");
        assert_eq!(s.stats(now_ms()).viewers["relay"], 1);
    }

    #[tokio::test]
    async fn a_lagging_viewer_skips_to_the_next_keyframe() {
        let r = reg(16);
        let mut p = r.publish("s", "ip".into(), String::new()).unwrap();
        p.ingest(TrackKind::Video, 0, video(true, 0)).unwrap();
        let mut s = r.subscribe("s", Protocol::Rtmp).unwrap();
        assert!(next(&mut s).await.is_video_keyframe());
        for i in 1..100u32 {
            p.ingest(TrackKind::Video, i * 33, video(false, 0)).unwrap();
        }
        assert!(matches!(s.try_recv(), Some(Recv::Skipped(_))));
        assert!(s.try_recv().is_none(), "at the live edge now");
        p.ingest(TrackKind::Video, 3400, video(false, 0)).unwrap();
        p.ingest(TrackKind::Video, 3433, video(true, 0)).unwrap();
        let k = next(&mut s).await;
        assert!(k.is_video_keyframe() && k.dts == 3433, "non-keyframes skipped");
    }
}
