//! The live video service: RTMP ingest and play, the stream registry every output
//! reads from, LL-HLS/fMP4/recording/snapshots, renditions, stream callbacks and
//! media edges.
//!
//! The sans-IO parts (RTMP sessions, FLV tags, GOP cache, timestamp unwrapping, rate
//! meters, the LL-HLS segmenter) live in `onair-media`; this crate owns the sockets,
//! tasks and timers. It knows nothing of rooms (it reports stream lifecycles to a
//! [`StreamObserver`] the room layer implements) nor of a web framework (HTTP answers
//! are [`reply::MediaReply`] values the server's faces route and render):
//!
//! * [`registry`]: published streams, the GOP cache and the per-stream broadcast ring
//!   viewers read pre-muxed packets from (the subscription API other muxers use).
//! * [`rtmp`]: the RTMP listener: publish (with `txSecret` auth) and play.
//! * [`publish`]: a live publish of any protocol: checks, registry ingest, lifecycle.
//! * [`hls`]: LL-HLS, live fMP4, recordings and snapshots; [`reply`]: its HTTP answers.
//! * [`renditions`]: ffmpeg children publishing lower renditions (and chat outputs)
//!   back as streams, with the text overlay, the watermark and burned-in chat.
//! * [`director`]: the watermark and the chat outputs' state and text files.
//! * stream monitoring: [`MediaService::history`] (the pure part is
//!   `onair_media::monitor`), alerts through [`hooks`].
//! * [`renditions`]: ffmpeg children publishing lower renditions back as streams.
//! * [`relays`]: forwarding live streams to external RTMP(S) destinations.
//! * [`playout`]: files played as a live stream (VOD as live, slates) by a "house"
//!   publisher that yields to a real, authorised publish.
//! * [`mixer`]: co-host mixes: one ffmpeg child per mixed stream composing its
//!   publisher and guests, switched into the stream's program.
//! * [`hooks`]: stream callbacks to the business backend in the streaming service's
//!   format, and the [`StreamObserver`] the room layer implements.
//! * [`webrtc`]: WHIP publish and WHEP play (the `onair-webrtc` engine wired to the
//!   registry, the audio bridges, per-stream session stats).
//! * [`edge`]: with `[media] origin`, streams this node does not have are pulled from
//!   the origin on the first viewer ([`MediaService::want`], the one path every
//!   protocol opens a stream through).

pub mod director;
pub mod edge;
pub mod hls;
pub mod hooks;
pub mod mixer;
pub mod playout;
pub mod publish;
pub mod registry;
pub mod relays;
pub mod renditions;
pub mod reply;
pub mod rtmp;
pub mod webrtc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use onair_media::gop::GopLimits;
use onair_media::monitor::{AlertKind, MonitorConfig, StreamMonitor};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use hooks::StreamObserver;
pub use registry::{Protocol, StreamRegistry, Subscription};

use onair_shell::{now_ms, now_secs};

/// `[rtmp]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RtmpConfig {
    /// Listen address; empty = no RTMP listener.
    pub listen: String,
    /// The one application name accepted (`rtmp://host/{app}/{stream}`).
    pub app: String,
    /// Require a valid, unexpired `txSecret`/`txTime` on publish. Turn off only for
    /// local use: anyone who can reach the port can then publish any stream.
    pub auth: bool,
    /// Most concurrent RTMP connections (publishers + players).
    pub max_connections: usize,
    /// A publisher silent this long is dropped; also the handshake deadline.
    pub idle_timeout_secs: u64,
    /// Kernel send buffer per RTMP socket, bytes (0 = OS default, which auto-grows to
    /// megabytes and hides a stalled player for minutes).
    pub send_buffer: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            listen: "0.0.0.0:1935".into(),
            app: "live".into(),
            auth: true,
            max_connections: 50_000,
            idle_timeout_secs: 20,
            send_buffer: 256 * 1024,
        }
    }
}

/// `[media]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    /// Push signing key (`txSecret = MD5(key + stream + txTime)`). Empty = generated on
    /// first start and kept in `{data_dir}/push.key`.
    pub push_key: String,
    /// Require signed play URLs (RTMP play and HTTP-FLV).
    pub play_auth: bool,
    /// Play signing key; empty = the push key.
    pub play_key: String,
    /// Host name put in printed URLs (`onair push-url`, the banner).
    pub public_host: String,
    /// Send new viewers the frames since the last keyframe so playback starts at once.
    pub gop_cache: bool,
    /// GOP cache cap in frames.
    pub gop_max_frames: usize,
    /// Broadcast ring per stream, in packets: how far a viewer may fall behind before
    /// it is skipped to the next keyframe (1024 ≈ 14 s of 30 fps video + AAC).
    pub viewer_queue_packets: usize,
    /// A viewer that falls behind twice within this window, or whose socket accepts
    /// nothing for this long, is disconnected.
    pub slow_viewer_grace_ms: u64,
    /// Merged writes: a viewer's socket is written at most once per this many ms,
    /// with everything that arrived meanwhile in one vectored write (SRS's
    /// `mw_latency`; its default is 350 ms). Fewer wakeups and syscalls per viewer at
    /// the cost of up to this much latency; 0 = write every packet at once.
    pub merge_write_ms: u64,
    /// Stream event callbacks (publish 1, unpublish 0, recording 100, snapshot 200);
    /// empty = off.
    pub callback_url: String,
    /// Key of the callbacks' `sign = MD5(key + t)`.
    pub callback_key: String,
    /// Callback request timeout.
    pub callback_timeout_ms: u64,
    /// Renditions made of every published stream by ffmpeg children, published back
    /// as `{stream}_{name}`: `[{ name = "360p", height = 360, video_kbps = 600 }]`.
    /// Empty = off.
    pub renditions: Vec<renditions::Rendition>,
    /// Text burned into every rendition (top right); empty = none.
    pub overlay_text: String,
    /// Most transcoding ffmpeg children at once: renditions (a stream gets all its
    /// renditions or none) and co-host mixers (one per mixed stream) together.
    pub max_transcodes: usize,
    /// Media edge: the origin server's base URL (`http://HOST:PORT`, its HTTP port).
    /// A viewer asking for a stream this node does not have makes it pull the stream
    /// from there (one pull per stream, shared by every local viewer and protocol) and
    /// relay it. Empty = off (this node serves only what is published to it).
    pub origin: String,
    /// How long an edge keeps pulling a stream after its last viewer left, seconds
    /// (a viewer coming back meanwhile starts at once). At least 1.
    pub origin_idle_secs: u64,
    /// `[media.monitor]`: stream health history and alerts.
    pub monitor: MonitorSettings,
    /// `[media.director]`: the chat output's bounds and look.
    pub director: director::DirectorSettings,
    /// Largest file `PUT /api/v1/uploads/{name}` takes, MiB (files played as live).
    pub max_upload_mb: u64,
    /// Most relay children (one per live destination, see `relays`) at once.
    pub max_relays: usize,
    /// Failed relay attempts in a row after which a destination is `failed` (until its
    /// stream is published again).
    pub relay_max_attempts: u32,
    /// First relay retry delay, ms (doubled per failure).
    pub relay_backoff_ms: u64,
    /// Longest relay retry delay, ms.
    pub relay_backoff_max_ms: u64,
    /// LL-HLS, recording and snapshot keys (`record`, `snapshot_secs`, `hls_part_ms`, …).
    #[serde(flatten)]
    pub hls: hls::HlsSettings,
}

/// `[media.monitor]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorSettings {
    /// A sample of every stream's health every this many seconds (also the metrics
    /// refresh).
    pub sample_secs: u64,
    /// Samples kept per stream (300 × 2 s = the last 10 minutes).
    pub history: usize,
    /// Alert `low_bitrate` when a sample's ingest bitrate is below this (0 = off).
    pub low_bitrate_kbps: u64,
    /// Alert `no_keyframe` after this many seconds without a video keyframe (0 = off).
    pub keyframe_timeout_secs: u64,
    /// A frame arriving this much later than its timestamp promises is late.
    pub late_ms: u64,
    /// An ended stream's history stays readable this long, seconds.
    pub keep_ended_secs: u64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            sample_secs: 2,
            history: 300,
            low_bitrate_kbps: 0,
            keyframe_timeout_secs: 10,
            late_ms: 1000,
            keep_ended_secs: 600,
        }
    }
}

impl MonitorSettings {
    fn config(&self) -> MonitorConfig {
        MonitorConfig {
            history_len: self.history.clamp(1, 10_000),
            low_bitrate_bps: self.low_bitrate_kbps.saturating_mul(1000),
            keyframe_timeout_ms: self.keyframe_timeout_secs.saturating_mul(1000),
            late_ms: self.late_ms,
            recent_alerts: 50,
        }
    }
}

/// Counts a stream's HLS playlist readers (the HLS part knows them).
pub type ReaderCount = Box<dyn Fn(&str) -> u64 + Send + Sync>;

/// Asks the publisher of a stream for a keyframe, where the publisher can be asked (a
/// WebRTC publisher gets a PLI; RTMP has no way to ask).
pub type KeyframeAsker = Box<dyn Fn(&str) + Send + Sync>;

/// Most ended streams whose history is kept (the oldest go first).
const MAX_ENDED_HISTORIES: usize = 1000;

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            push_key: String::new(),
            play_auth: false,
            play_key: String::new(),
            public_host: "127.0.0.1".into(),
            gop_cache: true,
            gop_max_frames: 2500,
            viewer_queue_packets: 1024,
            slow_viewer_grace_ms: 10_000,
            merge_write_ms: 100,
            callback_url: String::new(),
            callback_key: String::new(),
            callback_timeout_ms: 5_000,
            renditions: Vec::new(),
            overlay_text: String::new(),
            max_transcodes: 4,
            origin: String::new(),
            origin_idle_secs: 5,
            monitor: MonitorSettings::default(),
            director: director::DirectorSettings::default(),
            max_upload_mb: 2048,
            max_relays: 16,
            relay_max_attempts: 20,
            relay_backoff_ms: 1_000,
            relay_backoff_max_ms: 30_000,
            hls: hls::HlsSettings::default(),
        }
    }
}

/// The push key: configured, or stored in the data dir, or created there.
pub fn push_key(cfg: &MediaConfig, data_dir: &Path, create: bool) -> anyhow::Result<String> {
    if !cfg.push_key.is_empty() {
        return Ok(cfg.push_key.clone());
    }
    let path = data_dir.join("push.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let key = text.trim();
        if !key.is_empty() {
            return Ok(key.to_string());
        }
    }
    // Say where exactly (a relative data dir depends on where the command runs) and how
    // to point at the server's own data dir.
    let looked = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    anyhow::ensure!(
        create,
        "no push key yet at {}: run `onair serve` once there, point at the server's data with \
         --config FILE or ONAIR_DATA_DIR=DIR, or set [media] push_key",
        looked.display()
    );
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key = onair_shell::random_hex(16);
    write_owner_only(&path, &format!("{key}\n")).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// Makes a panic inside the RTMP libraries (`rml_rtmp`, `rml_amf0`) one log line
/// instead of the default report with its backtrace: those calls run under
/// `catch_unwind` (the connection is dropped, the server goes on), so the report says
/// nothing an operator can act on, and malformed packets from the internet would
/// otherwise fill the log (12 KB each). Every other panic keeps the default hook.
pub fn quiet_library_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location();
        let in_library = location.is_some_and(|l| l.file().contains("rml_rtmp") || l.file().contains("rml_amf0"));
        if !in_library {
            return default(info);
        }
        metrics::counter!("onair_rtmp_library_panics_total").increment(1);
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = location.map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        tracing::warn!(at, what = %what.chars().take(200).collect::<String>(), "RTMP library panicked on malformed input; connection dropped");
    }));
}

/// Whether `push_key` would create the key file now (no key configured or stored):
/// the start that creates it is the one that may print it.
pub fn push_key_missing(cfg: &MediaConfig, data_dir: &Path) -> bool {
    cfg.push_key.is_empty()
        && std::fs::read_to_string(data_dir.join("push.key")).map_or(true, |text| text.trim().is_empty())
}

/// Writes a secret file readable by its owner only (0600 on Unix).
fn write_owner_only(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // `mode` applies only to a new file: tighten one left by an older version.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// A signed push URL for `stream`, valid `valid_secs` from now.
pub fn signed_url(prefix: &str, key: &str, stream: &str, suffix: &str, valid_secs: u64) -> String {
    let tx_time = format!("{:X}", now_secs() + valid_secs);
    let secret = onair_auth::tx_secret(key, stream, &tx_time);
    format!("{prefix}{stream}{suffix}?txSecret={secret}&txTime={tx_time}")
}

/// The running media service.
pub struct MediaService {
    /// Published streams.
    pub registry: Arc<StreamRegistry>,
    /// `[rtmp]`.
    pub rtmp: RtmpConfig,
    /// `[media]`.
    pub cfg: MediaConfig,
    /// Where RTMP listens (None when off).
    pub rtmp_addr: Option<SocketAddr>,
    push_key: String,
    play_key: String,
    pub(crate) hooks: hooks::Hooks,
    shutdown: CancellationToken,
    /// This process's id in relay chains ([`edge::RELAY_HEADER`]).
    node: String,
    /// The edge side (with `[media] origin`).
    edge: Option<Arc<edge::Edge>>,
    /// The watermark and chat outputs.
    pub director: Arc<director::Director>,
    /// Every stream's monitor by name: live sessions and, for a while, ended ones.
    monitors: Mutex<HashMap<String, Arc<Mutex<StreamMonitor>>>>,
    /// HLS playlist readers of a stream (the HLS part counts them).
    hls_readers: std::sync::OnceLock<ReaderCount>,
    keyframe_asker: std::sync::OnceLock<KeyframeAsker>,
    /// Marks this server's own (house) publishes in their push URL (`onair_house=`):
    /// random per process, so no outside publisher can claim to be one.
    house_token: String,
    /// The running house publishers: stream → (kind, yield token, show id). A publish that
    /// outranks the holder cancels the token and waits for the name (see `playout`).
    house: parking_lot::Mutex<std::collections::HashMap<String, (registry::HouseKind, CancellationToken, u64)>>,
    /// Per-stream ABR ladders set through the API (`renditions` keeps them on disk);
    /// a stream without one uses `[media] renditions`.
    ladders: parking_lot::RwLock<std::collections::HashMap<String, Vec<renditions::Rendition>>>,
    /// Transcoding children running (renditions and mixers), against `max_transcodes`.
    transcodes: std::sync::atomic::AtomicUsize,
}

impl MediaService {
    /// Binds the RTMP listener (if configured) and starts the stats task.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        rtmp_cfg: RtmpConfig,
        cfg: MediaConfig,
        data_dir: &Path,
        push_key: String,
        sdkappid: u64,
        observer: Arc<dyn StreamObserver>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> anyhow::Result<Arc<MediaService>> {
        let registry = Arc::new(StreamRegistry::new(registry::RegistryConfig {
            gop_cache: cfg.gop_cache,
            gop_limits: GopLimits { max_frames: cfg.gop_max_frames.max(1), ..GopLimits::default() },
            queue_packets: cfg.viewer_queue_packets,
            monitor: cfg.monitor.config(),
        }));
        cfg.director.validate().map_err(anyhow::Error::msg)?;
        let director =
            director::Director::start(cfg.director.clone(), data_dir, &cfg.hls.ffmpeg, shutdown.clone(), &tasks);
        let listener = if rtmp_cfg.listen.is_empty() {
            None
        } else {
            let l = tokio::net::TcpListener::bind(&rtmp_cfg.listen)
                .await
                .with_context(|| format!("binding the RTMP listener {} ([rtmp] listen)", rtmp_cfg.listen))?;
            Some(l)
        };
        let rtmp_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let play_key = if cfg.play_key.is_empty() { push_key.clone() } else { cfg.play_key.clone() };
        let hooks = hooks::Hooks::start(&cfg, sdkappid, observer);
        let node = onair_shell::random_hex(6);
        let edge = if cfg.origin.trim().is_empty() {
            None
        } else {
            let e = edge::Edge::new(
                &cfg.origin,
                cfg.origin_idle_secs.max(1),
                Duration::from_secs(rtmp_cfg.idle_timeout_secs.max(1)),
                node.clone(),
                registry.clone(),
                shutdown.clone(),
                tasks.clone(),
            )?;
            tracing::info!(origin = %e.origin(), idle_secs = cfg.origin_idle_secs.max(1), "media edge: relaying streams from the origin on demand");
            Some(e)
        };
        let svc = Arc::new(MediaService {
            registry,
            rtmp: rtmp_cfg,
            cfg,
            rtmp_addr,
            push_key,
            play_key,
            hooks,
            shutdown: shutdown.clone(),
            node,
            edge,
            director,
            monitors: Mutex::new(HashMap::new()),
            hls_readers: std::sync::OnceLock::new(),
            keyframe_asker: std::sync::OnceLock::new(),
            house_token: onair_shell::random_hex(16),
            house: Default::default(),
            ladders: Default::default(),
            transcodes: Default::default(),
        });
        if let Some(listener) = listener {
            let s = svc.clone();
            let t = tasks.clone();
            tasks.spawn(async move { rtmp::serve(listener, s, t).await });
        }
        let s = svc.clone();
        tasks.spawn(async move { s.export_metrics().await });
        Ok(svc)
    }

    /// The renditions made of `source`: its own ladder, else `[media] renditions`.
    pub fn ladder(&self, source: &str) -> Vec<renditions::Rendition> {
        self.ladders.read().get(source).cloned().unwrap_or_else(|| self.cfg.renditions.clone())
    }

    /// Whether `stream` is a rendition of another stream (of the global list, or of a
    /// stream's own ladder): renditions are never transcoded, relayed or given a
    /// ladder themselves.
    pub fn is_rendition(&self, stream: &str) -> bool {
        self.rendition_source(stream).is_some()
    }

    /// The source stream `stream` is a rendition of.
    pub fn rendition_source(&self, stream: &str) -> Option<String> {
        let of = |list: &[renditions::Rendition]| {
            list.iter().find_map(|r| {
                let suffix = format!("_{}", r.name);
                stream.strip_suffix(&suffix).filter(|s| !s.is_empty()).map(str::to_string)
            })
        };
        for (source, list) in self.ladders.read().iter() {
            if list.iter().any(|r| renditions::rendition_stream(source, r) == stream) {
                return Some(source.clone());
            }
        }
        // A global rendition, unless its would-be source has a ladder of its own that
        // does not make it.
        of(&self.cfg.renditions).filter(|src| !self.ladders.read().contains_key(src))
    }

    /// A loopback RTMP play URL of `stream` for a child process (signed when play
    /// needs it). Empty without the RTMP listener.
    pub(crate) fn loopback_play(&self, stream: &str) -> String {
        let Some(base) = self.loopback_base() else { return String::new() };
        if self.cfg.play_auth { signed_url(&base, &self.play_key, stream, "", 3600) } else { format!("{base}{stream}") }
    }

    /// A signed loopback RTMP push URL of `stream` for a child process.
    pub(crate) fn loopback_push(&self, stream: &str) -> String {
        self.loopback_base().map(|base| signed_url(&base, &self.push_key, stream, "", 3600)).unwrap_or_default()
    }

    fn loopback_base(&self) -> Option<String> {
        self.rtmp_addr.map(|a| format!("rtmp://127.0.0.1:{}/{}/", a.port(), self.rtmp.app))
    }

    /// Takes `n` of the `[media] max_transcodes` slots, all or none.
    pub(crate) fn take_transcodes(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        let max = self.cfg.max_transcodes;
        self.transcodes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used + n <= max).then_some(used + n))
            .is_ok()
    }

    /// Gives back slots taken by [`Self::take_transcodes`].
    pub(crate) fn give_back_transcodes(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let _ = self.transcodes.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(n)));
    }

    /// Transcoding children running now.
    pub fn transcodes(&self) -> usize {
        self.transcodes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cancelled on shutdown.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The push key (for printing signed URLs).
    pub fn push_key(&self) -> &str {
        &self.push_key
    }

    /// Checks a publish URL's signature (when `[rtmp] auth` is on).
    pub fn check_push(&self, key: &onair_media::rtmp::StreamKey) -> Result<(), String> {
        if !self.rtmp.auth {
            return Ok(());
        }
        check_sig(&self.push_key, key).map_err(|e| e.to_string())
    }

    /// Checks a play URL's signature (when `[media] play_auth` is on).
    pub fn check_play(&self, key: &onair_media::rtmp::StreamKey) -> Result<(), String> {
        if !self.cfg.play_auth {
            return Ok(());
        }
        check_sig(&self.play_key, key).map_err(|e| e.to_string())
    }

    /// The one way a viewer opens `name`, whatever the protocol: on an edge, a stream
    /// this node does not have is pulled from the origin first (bounded wait; see
    /// [`edge`]). `query` is the viewer's query string (its play signature goes to the
    /// origin), `via` the [`edge::RELAY_HEADER`] chain of a relay request (else `""`).
    /// True when the stream is published here now.
    pub async fn want(&self, name: &str, query: &str, via: &str) -> bool {
        if let Some(s) = self.registry.get(name) {
            if s.is_relayed() {
                self.touch(name);
            }
            return true;
        }
        match &self.edge {
            // Or a publisher took the name here meanwhile (the pull then gives way).
            Some(edge) => edge.pull(name, query, via).await || self.registry.get(name).is_some(),
            None => false,
        }
    }

    /// [`Self::want`], then a subscription (`None`: not live here nor at the origin).
    pub async fn open(&self, name: &str, protocol: Protocol, query: &str, via: &str) -> Option<Subscription> {
        if !self.want(name, query, via).await {
            return None;
        }
        self.registry.subscribe(name, protocol)
    }

    /// A stateless request for `name` (an HLS segment or part): on an edge it keeps the
    /// stream's pull alive like a viewer would.
    pub fn touch(&self, name: &str) {
        if let Some(edge) = &self.edge {
            edge.touch(name);
        }
    }

    /// Whether a relay request with this [`edge::RELAY_HEADER`] chain already went
    /// through this node (a loop of edges: answered 508, never pulled again).
    pub fn relay_loop(&self, via: &str) -> bool {
        edge::chain_has(via, &self.node)
    }

    /// The origin's base URL when this node is an edge.
    pub fn origin(&self) -> Option<&str> {
        self.edge.as_ref().map(|e| e.origin())
    }

    /// A recording of `stream` is ready (called by the recording part): tells the
    /// room layer and sends callback 100.
    pub fn recording_ready(&self, stream: &str, rec: hooks::RecordingInfo) {
        self.hooks.recording_ready(stream, rec);
    }

    /// A snapshot of `stream` was taken (called by the snapshot part): callback 200.
    pub fn snapshot_taken(&self, stream: &str, snap: hooks::SnapshotInfo) {
        self.hooks.snapshot_taken(stream, snap);
    }

    /// A stream's health history (live, or ended within `keep_ended_secs`): the
    /// samples oldest first, the alerts in force and the last alert changes.
    pub fn history(&self, name: &str) -> Option<serde_json::Value> {
        // A stream younger than the first sample is not in the map yet.
        let m =
            self.monitors.lock().get(name).cloned().or_else(|| self.registry.get(name).map(|s| s.monitor().clone()))?;
        let m = m.lock();
        let samples: Vec<serde_json::Value> = m.history().map(|s| s.to_json()).collect();
        Some(serde_json::json!({
            "stream": name,
            "live": m.ended_at().is_none(),
            "startedAt": m.started_at(),
            "endedAt": m.ended_at(),
            "sampleSecs": self.cfg.monitor.sample_secs.max(1),
            "samples": samples,
            "alerts": {
                "active": m.active().iter().map(|k| k.name()).collect::<Vec<_>>(),
                "recent": m.recent_alerts().map(|c| c.to_json()).collect::<Vec<_>>(),
            },
            "thresholds": {
                "lowBitrateKbps": self.cfg.monitor.low_bitrate_kbps,
                "keyframeTimeoutSecs": self.cfg.monitor.keyframe_timeout_secs,
            },
        }))
    }

    /// Every few seconds: one monitor sample per live stream (alerts out through the
    /// hooks), the per-stream gauges, and the end of histories kept too long.
    async fn export_metrics(self: Arc<Self>) {
        let period = Duration::from_secs(self.cfg.monitor.sample_secs.max(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: std::collections::HashSet<String> = Default::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let now = now_ms();
            let streams = self.registry.list();
            metrics::gauge!("onair_media_streams").set(streams.len() as f64);
            let mut live = std::collections::HashSet::new();
            for s in &streams {
                let st = s.stats(now);
                let name = st.name.clone();
                metrics::gauge!("onair_stream_bitrate_bps", "stream" => name.clone()).set(st.bitrate_bps as f64);
                metrics::gauge!("onair_stream_video_fps", "stream" => name.clone()).set(st.video_fps);
                metrics::gauge!("onair_stream_publish_seconds", "stream" => name.clone()).set(st.publish_secs as f64);
                for (p, n) in &st.viewers {
                    metrics::gauge!("onair_stream_viewers", "stream" => name.clone(), "protocol" => *p).set(*n as f64);
                }
                self.sample(s, now);
                live.insert(name);
            }
            // Streams that ended read zero rather than their last value.
            for gone in seen.difference(&live) {
                metrics::gauge!("onair_stream_bitrate_bps", "stream" => gone.clone()).set(0.0);
                metrics::gauge!("onair_stream_video_fps", "stream" => gone.clone()).set(0.0);
                metrics::gauge!("onair_stream_publish_seconds", "stream" => gone.clone()).set(0.0);
                for (_, p) in Protocol::COUNTED {
                    metrics::gauge!("onair_stream_viewers", "stream" => gone.clone(), "protocol" => p).set(0.0);
                }
                metrics::gauge!("onair_stream_keyframe_interval_ms", "stream" => gone.clone()).set(0.0);
                metrics::gauge!("onair_stream_av_drift_ms", "stream" => gone.clone()).set(0.0);
            }
            seen = live;
            self.prune_histories(now);
        }
    }

    /// One sample of `s`'s monitor, registered under its name (a new session replaces
    /// the previous one's history).
    fn sample(&self, s: &Arc<registry::Stream>, now: u64) {
        let monitor = s.monitor().clone();
        {
            let mut all = self.monitors.lock();
            let known = all.get(&s.name).is_some_and(|m| Arc::ptr_eq(m, &monitor));
            if !known {
                all.insert(s.name.clone(), monitor.clone());
            }
        }
        // Relayed streams (an edge) are watched at their origin.
        if s.is_relayed() {
            return;
        }
        let mut viewers: Vec<(&'static str, u64)> =
            Protocol::COUNTED.iter().map(|(p, l)| (*l, s.viewers(*p))).collect();
        if let Some(hls) = viewers.iter_mut().find(|(l, _)| *l == "hls") {
            hls.1 += self.hls_readers.get().map_or(0, |f| f(&s.name));
        }
        let (changes, sample, dropped_total, late_total) = {
            let mut m = monitor.lock();
            if m.ended_at().is_some() {
                return;
            }
            let changes = m.sample(now, viewers);
            (changes, m.last().cloned(), m.dropped_total, m.late_total)
        };
        let name = s.name.clone();
        if let Some(sample) = sample {
            let interval = sample.keyframe_interval_ms.unwrap_or(0) as f64;
            metrics::gauge!("onair_stream_keyframe_interval_ms", "stream" => name.clone()).set(interval);
            metrics::gauge!("onair_stream_av_drift_ms", "stream" => name.clone())
                .set(sample.av_drift_ms.unwrap_or(0) as f64);
            metrics::counter!("onair_stream_dropped_frames_total", "stream" => name.clone()).absolute(dropped_total);
            metrics::counter!("onair_stream_late_frames_total", "stream" => name.clone()).absolute(late_total);
        }
        self.hooks.alerts(&name, &changes);
    }

    fn prune_histories(&self, now: u64) {
        let keep_ms = self.cfg.monitor.keep_ended_secs.saturating_mul(1000);
        let mut all = self.monitors.lock();
        let mut ended: Vec<(u64, String)> = Vec::new();
        all.retain(|name, m| {
            let m = m.lock();
            match m.ended_at() {
                Some(at) if now.saturating_sub(at) > keep_ms => false,
                Some(at) => {
                    ended.push((at, name.clone()));
                    true
                }
                None => true,
            }
        });
        if ended.len() > MAX_ENDED_HISTORIES {
            ended.sort();
            for (_, name) in ended.iter().take(ended.len() - MAX_ENDED_HISTORIES) {
                all.remove(name);
            }
        }
    }

    /// Counts HLS playlist readers into the monitor's `hls` figure (set once by the
    /// server, which owns the HLS part).
    pub fn set_hls_readers(&self, f: ReaderCount) {
        let _ = self.hls_readers.set(f);
    }

    /// Sets how a stream's publisher is asked for a keyframe (set once by the WebRTC
    /// part, whose publishers can be asked).
    pub fn set_keyframe_asker(&self, f: KeyframeAsker) {
        let _ = self.keyframe_asker.set(f);
    }

    /// Asks `stream`'s publisher for a keyframe if it can be asked; otherwise nothing.
    pub fn ask_keyframe(&self, stream: &str) {
        if let Some(f) = self.keyframe_asker.get() {
            f(stream);
        }
    }

    /// Whether an alert kind is active for `stream` now.
    pub fn alert_active(&self, stream: &str, kind: AlertKind) -> bool {
        self.monitors.lock().get(stream).is_some_and(|m| m.lock().active().contains(&kind))
    }
}

fn check_sig(key: &str, k: &onair_media::rtmp::StreamKey) -> Result<(), onair_auth::TxSecretError> {
    let secret = k.param("txSecret").unwrap_or("");
    let time = k.param("txTime").unwrap_or("");
    onair_auth::verify_tx_secret(key, &k.name, secret, time, now_secs())
}

/// Stream names: what a URL path segment and a file name can safely hold.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// Starts an ffmpeg child of the server: no stdin, stderr piped (for
/// [`stderr_tail`]), stdout piped only when `stdout` (progress lines), killed when its
/// handle is dropped (a child never outlives the task that owns it).
pub(crate) fn spawn_ffmpeg(ffmpeg: &str, args: &[String], stdout: bool) -> std::io::Result<tokio::process::Child> {
    use std::process::Stdio;
    tokio::process::Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(if stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// The last 2 KiB of an ffmpeg child's stderr (what its failure is logged with).
pub(crate) async fn stderr_tail(mut stderr: Option<tokio::process::ChildStderr>) -> String {
    let mut keep = Vec::new();
    let mut buf = [0u8; 4096];
    if let Some(e) = stderr.as_mut() {
        while let Ok(n) = tokio::io::AsyncReadExt::read(e, &mut buf).await {
            if n == 0 {
                break;
            }
            keep.extend_from_slice(&buf[..n]);
            if keep.len() > 2048 {
                keep.drain(..keep.len() - 2048);
            }
        }
    }
    String::from_utf8_lossy(&keep).trim().to_string()
}
