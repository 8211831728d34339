//! The LL-HLS / live-fMP4 / recording / snapshot shell around the pure
//! [`onair_media::hls::Segmenter`].
//!
//! One task per published stream reads the stream registry (as an internal consumer),
//! feeds the segmenter and publishes what it cuts: every part and segment is muxed once
//! and shared as [`Bytes`] by every HTTP response, the live fMP4 viewers and the
//! recorder. Waiters (blocking playlist reloads, preload-hinted parts) sleep on a
//! `watch` version counter bumped after each cut, each with a bounded hold.
//!
//! URLs (`{sid}` is the publish session, so a re-published stream never reuses a cached
//! segment URL — which is what lets segments and parts be `immutable` for a CDN):
//! - `/live/{stream}.m3u8` LL-HLS media playlist (`_HLS_msn`, `_HLS_part`, `_HLS_skip`)
//! - `/live/{stream}/{sid}/init.mp4`, `/live/{stream}/{sid}/{msn}.m4s`, `/live/{stream}/{sid}/{msn}.{part}.m4s`
//! - `/live/{stream}.mp4` live fMP4 for MediaSource (codec string in `X-Codecs`)
//! - `/live/{stream}.json` codecs, size and URLs for a player
//! - `/live/{stream}/snapshot.jpg` latest thumbnail (ffmpeg)
//! - `/vod/{stream}/{id}/index.m3u8` (+ `init.mp4`, `{msn}.m4s`) finished recordings

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use onair_media::codec::StreamConfig;
use onair_media::frame::TrackKind;
use onair_media::hls::{HlsConfig, HlsEvent, Reload, Segmenter, VodSegment, init_name, vod_playlist};
use onair_media::pacing::{Behind, ViewerPacing};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::hooks::{RecordingInfo, SnapshotInfo};
use crate::registry::{Media, Protocol, Recv, RegistryEvent, StreamRegistry};
use crate::reply::{MediaBody, MediaReply, reply, status, with_body};
use onair_shell::now_ms;

/// `[media]` keys of the HLS side (flattened into `[media]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HlsSettings {
    /// Record every stream to the data dir (fMP4 segments + VOD playlist).
    pub record: bool,
    /// Seconds between thumbnails (0 = off); needs ffmpeg.
    pub snapshot_secs: u64,
    /// LL-HLS part target in ms (200..=1000).
    pub hls_part_ms: u64,
    /// Segment target in ms (segments are cut at the first keyframe after it).
    pub hls_segment_ms: u64,
    /// Segments kept in the live playlist.
    pub hls_window: usize,
    /// How long a finished stream's playlist (with ENDLIST) stays served, seconds.
    pub linger_secs: u64,
    /// The ffmpeg binary (name on PATH or a path).
    pub ffmpeg: String,
}

impl Default for HlsSettings {
    fn default() -> Self {
        HlsSettings {
            record: true,
            snapshot_secs: 10,
            hls_part_ms: 500,
            hls_segment_ms: 2000,
            hls_window: 10,
            linger_secs: 30,
            ffmpeg: "ffmpeg".into(),
        }
    }
}

impl HlsSettings {
    fn hls_config(&self) -> HlsConfig {
        HlsConfig {
            segment_target_ms: self.hls_segment_ms,
            part_target_ms: self.hls_part_ms,
            window: self.hls_window,
            ..HlsConfig::default()
        }
    }
}

/// A finished recording (reported through [`MediaService::recording_ready`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDone {
    /// Stream name.
    pub stream: String,
    /// Recording id (the publish start, Unix ms).
    pub id: String,
    /// Path of the VOD playlist on this server, e.g. `/vod/cam/1764110000000/index.m3u8`.
    pub url: String,
    /// Total duration, ms.
    pub duration_ms: u64,
}

/// A part as handed to live-fMP4 viewers.
#[derive(Debug, Clone)]
struct LivePart {
    data: Bytes,
    independent: bool,
    /// Its init segment's generation: a viewer started on another one cannot go on.
    generation: u64,
}

struct Inner {
    config: StreamConfig,
    seg: Option<Segmenter>,
    ended: bool,
}

/// The HLS state of one publish session.
struct LiveHls {
    sid: String,
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    live: broadcast::Sender<LivePart>,
    snapshot: Mutex<Option<Bytes>>,
}

impl LiveHls {
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// All HLS streams, recordings and snapshots.
pub struct HlsHub {
    settings: HlsSettings,
    media: Arc<MediaService>,
    registry: Arc<StreamRegistry>,
    streams: RwLock<HashMap<String, Arc<LiveHls>>>,
    /// Playlist readers per stream: HLS players hold no connection, so a viewer is a
    /// client (address + user agent, hashed) that asked for a playlist lately.
    readers: Mutex<HashMap<String, HashMap<u64, u64>>>,
    data_dir: PathBuf,
    ffmpeg: Option<String>,
}

/// Whether `ffmpeg` (a name on PATH or a path) runs; checked once at start by each
/// feature that needs it (snapshots, renditions).
pub async fn ffmpeg_available(ffmpeg: &str) -> bool {
    tokio::process::Command::new(ffmpeg)
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Stream names, recording ids and file names: one safe path component.
fn safe_name(s: &str) -> bool {
    crate::valid_stream_name(s)
}

/// How long a playlist reader counts as watching after its last request (players
/// reload at least every target duration).
const READER_TTL_MS: u64 = 10_000;
/// Most readers remembered per stream (beyond, the oldest are forgotten first).
const MAX_READERS: usize = 100_000;

impl HlsHub {
    fn saw_reader(&self, name: &str, client: u64) {
        let now = onair_shell::monotonic_ms();
        let mut readers = self.readers.lock();
        let seen = readers.entry(name.to_owned()).or_default();
        if seen.len() >= MAX_READERS && !seen.contains_key(&client) {
            seen.retain(|_, at| now.saturating_sub(*at) < READER_TTL_MS);
            if seen.len() >= MAX_READERS {
                return;
            }
        }
        seen.insert(client, now);
    }

    /// Whether a snapshot of `name` can be served (in memory while live, or on disk).
    pub fn has_snapshot(&self, name: &str) -> bool {
        self.get(name).is_some_and(|l| l.snapshot.lock().is_some())
            || (safe_name(name) && self.data_dir.join("snapshots").join(format!("{name}.jpg")).is_file())
    }

    /// HLS viewers of `name`: clients that asked for its playlist in the last 10 s.
    pub fn hls_viewers(&self, name: &str) -> u64 {
        let now = onair_shell::monotonic_ms();
        let mut readers = self.readers.lock();
        let Some(seen) = readers.get_mut(name) else { return 0 };
        seen.retain(|_, at| now.saturating_sub(*at) < READER_TTL_MS);
        let n = seen.len() as u64;
        if n == 0 {
            readers.remove(name);
        }
        n
    }

    /// Builds the hub; checks for ffmpeg once (snapshots are off with a log line without it).
    pub async fn new(settings: HlsSettings, data_dir: &Path, media: Arc<MediaService>) -> Arc<HlsHub> {
        let ffmpeg = if settings.snapshot_secs == 0 {
            None
        } else {
            let ok = ffmpeg_available(&settings.ffmpeg).await;
            if ok {
                tracing::info!(ffmpeg = %settings.ffmpeg, every_secs = settings.snapshot_secs, "stream snapshots on");
                Some(settings.ffmpeg.clone())
            } else {
                tracing::warn!(ffmpeg = %settings.ffmpeg, "stream snapshots off: ffmpeg not found (install ffmpeg or set [media] ffmpeg)");
                None
            }
        };
        Arc::new(HlsHub {
            settings,
            registry: media.registry.clone(),
            media,
            streams: RwLock::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            data_dir: data_dir.to_path_buf(),
            ffmpeg,
        })
    }

    /// Starts following the registry: one muxing task per published stream, tracked by
    /// `tasks` so a shutdown waits for recordings to be finished (playlist written).
    pub fn spawn(self: &Arc<Self>, shutdown: CancellationToken, tasks: TaskTracker) {
        let hub = self.clone();
        let mut events = self.registry.watch();
        tokio::spawn(async move {
            for s in hub.registry.list() {
                hub.start(&s.name, &s.info.session, &shutdown, &tasks);
            }
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(RegistryEvent::Published(name)) => {
                        if let Some(s) = hub.registry.get(&name) {
                            hub.start(&name, &s.info.session, &shutdown, &tasks);
                        }
                    }
                    Ok(RegistryEvent::Unpublished(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for s in hub.registry.list() {
                            hub.start(&s.name, &s.info.session, &shutdown, &tasks);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn start(self: &Arc<Self>, name: &str, session: &str, shutdown: &CancellationToken, tasks: &TaskTracker) {
        if !safe_name(name) {
            tracing::warn!(stream = %name, "no HLS for a stream name unusable in a URL or file name");
            return;
        }
        let sid = session.to_string();
        let live = {
            let mut map = self.streams.write();
            if map.get(name).is_some_and(|l| l.sid == sid) {
                return; // already running for this session
            }
            let live = Arc::new(LiveHls {
                sid,
                inner: Mutex::new(Inner { config: StreamConfig::default(), seg: None, ended: false }),
                version: watch::channel(0).0,
                live: broadcast::channel(64).0,
                snapshot: Mutex::new(None),
            });
            map.insert(name.to_string(), live.clone());
            live
        };
        let Some(sub) = self.registry.subscribe(name, Protocol::Internal) else {
            self.streams.write().remove(name);
            return;
        };
        let hub = self.clone();
        let name = name.to_string();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let snap = hub.ffmpeg.clone().map(|ff| {
                let (hub, live, name, shutdown) = (hub.clone(), live.clone(), name.clone(), shutdown.clone());
                tokio::spawn(async move { hub.snapshots(&ff, &name, &live, shutdown).await })
            });
            hub.run(&name, &live, sub, &shutdown).await;
            if let Some(t) = snap {
                t.abort();
            }
            // Keep serving the ended playlist (ENDLIST) for a while, then forget it
            // unless a new session took the name.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(hub.settings.linger_secs)) => {}
                _ = shutdown.cancelled() => {}
            }
            let mut map = hub.streams.write();
            if map.get(&name).is_some_and(|l| Arc::ptr_eq(l, &live)) {
                map.remove(&name);
            }
        });
    }

    async fn run(
        &self,
        name: &str,
        live: &Arc<LiveHls>,
        mut sub: crate::registry::Subscription,
        shutdown: &CancellationToken,
    ) {
        // An edge does not record what it relays: the origin does (and only the
        // origin may report a recording to the room layer and the backend).
        // Nor a slate: it is not the show (and its recording must not become the
        // room's replay); nor a co-host mix's internal streams (the room's own stream
        // records the program).
        let slate = sub.stream().info.house == Some(crate::registry::HouseKind::Slate);
        let mut recorder =
            if self.settings.record && !sub.stream().is_relayed() && !slate && !onair_media::mix::is_internal(name) {
                Some(Recorder::new(self.data_dir.join("recordings").join(name).join(&live.sid)))
            } else {
                None
            };
        loop {
            let recv = tokio::select! {
                r = sub.recv() => r,
                _ = shutdown.cancelled() => Recv::Ended,
            };
            let packet = match recv {
                Recv::Packet(p) => p,
                Recv::Skipped(n) => {
                    tracing::warn!(stream = %name, packets = n, "HLS muxer fell behind; continuing at the next keyframe");
                    continue;
                }
                Recv::Ended => break,
            };
            let (events, init, changed) = {
                let mut inner = live.inner.lock();
                match &packet.media {
                    Media::Config(c) => {
                        if inner.seg.is_none() {
                            if let Err(e) = inner.config.apply(c) {
                                tracing::warn!(stream = %name, error = %e, "unusable codec configuration");
                            }
                            continue;
                        }
                        let mut next = inner.config.clone();
                        if next.apply(c).is_err() || next == inner.config {
                            continue;
                        }
                        // A new configuration mid-stream (a co-host mix switched in, an
                        // encoder restarted): a new init segment and a discontinuity.
                        let Some(seg) = inner.seg.as_mut() else { continue };
                        match seg.reconfigure(&next) {
                            Ok(events) => {
                                tracing::info!(stream = %name, generation = seg.generation(), codecs = seg.codecs(), "codec configuration changed: HLS discontinuity");
                                publish_parts(seg, &events, &live.live);
                                let init = Some((seg.generation(), seg.init().clone()));
                                let done = (collect_segments(seg, &events), init, !events.is_empty());
                                inner.config = next;
                                done
                            }
                            Err(e) => {
                                tracing::warn!(stream = %name, error = %e, "unusable codec configuration; HLS keeps the previous one");
                                continue;
                            }
                        }
                    }
                    Media::Metadata(_) => continue,
                    Media::Frame(f) => {
                        let mut init = None;
                        if inner.seg.is_none() {
                            let has_cfg = match f.kind {
                                TrackKind::Video => inner.config.video.is_some(),
                                TrackKind::Audio => inner.config.video.is_none() && inner.config.audio.is_some(),
                            };
                            if !has_cfg {
                                continue;
                            }
                            match Segmenter::new(self.settings.hls_config(), &inner.config) {
                                Ok(s) => {
                                    tracing::info!(stream = %name, codecs = s.codecs(), "LL-HLS muxing");
                                    init = Some((s.generation(), s.init().clone()));
                                    inner.seg = Some(s);
                                }
                                Err(e) => {
                                    tracing::warn!(stream = %name, error = %e, "cannot mux this stream to fMP4");
                                    continue;
                                }
                            }
                        }
                        let Some(seg) = inner.seg.as_mut() else { continue };
                        let events = seg.push(f.clone(), now_ms());
                        // Sent under the lock so a live viewer's start (taken under the same
                        // lock) and the broadcast never overlap or leave a gap.
                        publish_parts(seg, &events, &live.live);
                        (collect_segments(seg, &events), init, !events.is_empty())
                    }
                }
            };
            // Waiters only care about new parts and segments, not every frame.
            if changed {
                live.bump();
            }
            if let Some(rec) = recorder.as_mut() {
                // Segments cut by a reconfiguration belong to the previous init: they
                // are written before the new init takes over.
                for (msn, data, duration_ms) in events {
                    rec.segment(msn, &data, duration_ms).await;
                }
                if let Some((generation, init)) = init {
                    rec.init(generation, &init).await;
                }
            }
        }
        let events = {
            let mut inner = live.inner.lock();
            inner.ended = true;
            match inner.seg.as_mut() {
                Some(seg) => {
                    let ev = seg.finish();
                    collect_segments(seg, &ev)
                }
                None => Vec::new(),
            }
        };
        live.bump();
        if let Some(rec) = recorder.as_mut() {
            for (msn, data, duration_ms) in events {
                rec.segment(msn, &data, duration_ms).await;
            }
            if let Some((done, bytes)) = rec.finish(name, &live.sid).await {
                tracing::info!(stream = %name, url = %done.url, secs = done.duration_ms / 1000, "recording ready");
                let start_time = live.sid.parse::<u64>().unwrap_or(0) / 1000;
                self.media.recording_ready(
                    name,
                    RecordingInfo {
                        url: done.url.clone(),
                        file_id: format!("{name}/{}", done.id),
                        file_format: "hls".into(),
                        start_time,
                        end_time: now_ms() / 1000,
                        duration: done.duration_ms / 1000,
                        file_size: bytes,
                    },
                );
            }
        }
    }

    /// The live variants of `name`'s ABR ladder, the source first: every stream of
    /// the group `name` belongs to (as source or rendition) that is live now.
    fn ladder_group(&self, name: &str) -> Vec<String> {
        let source = self.media.rendition_source(name).unwrap_or_else(|| name.to_string());
        let ladder = self.media.ladder(&source);
        if ladder.is_empty() {
            return Vec::new();
        }
        let mut group = vec![source.clone()];
        group.extend(ladder.iter().map(|r| crate::renditions::rendition_stream(&source, r)));
        group.retain(|s| self.registry.get(s).is_some());
        group
    }

    /// `EXT-X-RENDITION-REPORT` lines for the other live variants of `name`'s ladder
    /// (empty when it has none).
    fn rendition_reports(&self, name: &str) -> String {
        let mut out = String::new();
        for other in self.ladder_group(name) {
            if other == name {
                continue;
            }
            let Some(live) = self.get(&other) else { continue };
            let last = live.inner.lock().seg.as_ref().and_then(|s| s.last_part());
            if let Some(last) = last {
                out.push_str(&onair_media::hls::rendition_report(&format!("{other}.m3u8"), last));
            }
        }
        out
    }

    fn get(&self, name: &str) -> Option<Arc<LiveHls>> {
        self.streams.read().get(name).cloned()
    }

    /// Every `snapshot_secs`, the newest independent part through `ffmpeg` → JPEG.
    async fn snapshots(&self, ffmpeg: &str, name: &str, live: &LiveHls, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.snapshot_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let dir = self.data_dir.join("snapshots");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let input = {
                let inner = live.inner.lock();
                let Some(seg) = inner.seg.as_ref() else { continue };
                let parts = seg.live_start();
                let Some(first) = parts.first() else { continue };
                let mut buf = seg.init().to_vec();
                buf.extend_from_slice(first);
                buf
            };
            match snapshot_jpeg(ffmpeg, input).await {
                Ok(jpeg) => {
                    let _ = tokio::fs::create_dir_all(&dir).await;
                    let _ = tokio::fs::write(dir.join(format!("{name}.jpg")), &jpeg).await;
                    let (width, height) = {
                        let inner = live.inner.lock();
                        inner
                            .config
                            .video
                            .as_ref()
                            .map_or((0, 0), |v| (v.width.min(640), v.height * v.width.min(640) / v.width.max(1)))
                    };
                    let pic_url = format!("/live/{name}/snapshot.jpg");
                    // Served here too, but reported (callback 200) by the origin only.
                    let relayed = self.registry.get(name).is_some_and(|s| s.is_relayed());
                    if !relayed {
                        self.media.snapshot_taken(
                            name,
                            SnapshotInfo {
                                pic_full_url: format!("http://{}{pic_url}", self.media.cfg.public_host),
                                pic_url,
                                file_size: jpeg.len() as u64,
                                width,
                                height,
                            },
                        );
                    }
                    *live.snapshot.lock() = Some(jpeg);
                }
                Err(e) => tracing::warn!(stream = %name, error = %e, "snapshot failed"),
            }
        }
    }
}

fn publish_parts(seg: &Segmenter, events: &[HlsEvent], tx: &broadcast::Sender<LivePart>) {
    for e in events {
        if let HlsEvent::Part { msn, part } = *e
            && let Some(p) = seg.part(msn, part)
        {
            let _ =
                tx.send(LivePart { data: p.data.clone(), independent: p.independent, generation: seg.generation() });
        }
    }
}

fn collect_segments(seg: &Segmenter, events: &[HlsEvent]) -> Vec<(u64, Bytes, u64)> {
    events
        .iter()
        .filter_map(|e| match *e {
            HlsEvent::Segment { msn } => seg.segment(msn).map(|s| (msn, s.data.clone(), s.duration_ms)),
            HlsEvent::Part { .. } => None,
        })
        .collect()
}

/// Runs `ffmpeg` on an init segment + one independent part, returns the JPEG (bounded time).
async fn snapshot_jpeg(ffmpeg: &str, input: Vec<u8>) -> anyhow::Result<Bytes> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(["-v", "error", "-f", "mp4", "-i", "pipe:0", "-frames:v", "1", "-q:v", "5"])
        .args(["-vf", "scale=min(640\\,iw):-2", "-f", "image2", "-c:v", "mjpeg", "pipe:1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await??;
    writer.abort();
    if !out.status.success() || out.stdout.is_empty() {
        anyhow::bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Bytes::from(out.stdout))
}

/// Writes one session's segments to `recordings/{stream}/{sid}/` and the VOD playlist at the end.
struct Recorder {
    dir: PathBuf,
    segments: Vec<VodSegment>,
    /// The current init segment's file name.
    init: String,
    bytes: u64,
    failed: bool,
}

impl Recorder {
    fn new(dir: PathBuf) -> Recorder {
        Recorder { dir, segments: Vec::new(), init: init_name(0), bytes: 0, failed: false }
    }

    async fn write(&mut self, file: &str, data: &[u8]) {
        if self.failed {
            return;
        }
        // Written aside and renamed into place: `/vod/…` serves these files as
        // immutable, so a reader (or a CDN) must never see half of one. The temporary
        // name starts with a dot, which `/vod/…` never serves.
        let res = async {
            tokio::fs::create_dir_all(&self.dir).await?;
            let tmp = self.dir.join(format!(".{file}.tmp"));
            tokio::fs::write(&tmp, data).await?;
            tokio::fs::rename(&tmp, self.dir.join(file)).await
        }
        .await;
        match res {
            Ok(()) => self.bytes += data.len() as u64,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "recording stopped: cannot write");
                self.failed = true;
            }
        }
    }

    async fn init(&mut self, generation: u64, init: &[u8]) {
        self.init = init_name(generation);
        let file = self.init.clone();
        self.write(&file, init).await;
    }

    async fn segment(&mut self, msn: u64, data: &[u8], duration_ms: u64) {
        let file = format!("{msn}.m4s");
        self.write(&file, data).await;
        if !self.failed {
            self.segments.push(VodSegment { uri: file, duration_ms, init: self.init.clone() });
        }
    }

    /// Writes the VOD playlist; the recording and its size in bytes.
    async fn finish(&mut self, stream: &str, sid: &str) -> Option<(RecordingDone, u64)> {
        if self.failed || self.segments.is_empty() {
            return None;
        }
        self.write("index.m3u8", vod_playlist(&self.segments).as_bytes()).await;
        let done = RecordingDone {
            stream: stream.to_string(),
            id: sid.to_string(),
            url: format!("/vod/{stream}/{sid}/index.m3u8"),
            duration_ms: self.segments.iter().map(|s| s.duration_ms).sum(),
        };
        (!self.failed).then_some((done, self.bytes))
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// Players on other origins (hls.js, MediaSource pages) may read everything here.
pub fn cors(mut r: MediaReply) -> MediaReply {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-codecs"));
    r
}

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Headers of a segment or part: its URL names it for good.
fn mp4_immutable() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
    ]
}

/// The LL-HLS query parameters of a playlist request.
#[derive(Debug, Default)]
struct PlaylistQuery {
    msn: Option<String>,
    part: Option<String>,
    skip: Option<String>,
}

impl PlaylistQuery {
    fn parse(raw: &str) -> PlaylistQuery {
        let mut q = PlaylistQuery::default();
        for pair in raw.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match k {
                "_HLS_msn" => &mut q.msn,
                "_HLS_part" => &mut q.part,
                "_HLS_skip" => &mut q.skip,
                _ => continue,
            };
            *slot = Some(v.to_string());
        }
        q
    }
}

/// `/live/{file}` for the extensions this module serves (`.m3u8`, `.mp4`, `.json`);
/// `None` for anything else (e.g. `.flv`, served by the FLV side). `query` is the raw
/// query string (LL-HLS parameters, and the play signature when `[media] play_auth`).
/// `client` identifies the requester (see [`HlsHub::hls_viewers`]).
pub async fn live_file(hub: &Arc<HlsHub>, file: &str, query: &str, client: u64) -> Option<MediaReply> {
    let (name, ext) = file.rsplit_once('.')?;
    if !matches!(ext, "m3u8" | "mp4" | "json") {
        return None;
    }
    if !safe_name(name) {
        return Some(status(StatusCode::NOT_FOUND, "no such stream\n"));
    }
    let key = onair_media::rtmp::StreamKey { name: name.to_string(), query: query.to_string() };
    if let Err(why) = hub.media.check_play(&key) {
        tracing::debug!(stream = %name, why = %why, "HLS play refused");
        return Some(status(StatusCode::FORBIDDEN, "play refused: bad or expired signature\n"));
    }
    // On an edge, a stream this node does not have is pulled from the origin (the
    // same path as every protocol); a relayed stream's pull is kept alive.
    hub.media.want(name, query, "").await;
    Some(cors(match ext {
        "m3u8" => {
            hub.saw_reader(name, client);
            playlist(hub, name, &PlaylistQuery::parse(query)).await
        }
        "mp4" => live_mp4(hub, name).await,
        _ => info(hub, name).await,
    }))
}

/// The HLS state of `name`'s current publish session. A session published a moment
/// ago (a new publish, or an edge's pull that just started) may not have its muxing
/// task yet, while the previous session's ended playlist still lingers: that is
/// waited for until `deadline` rather than answered with the old session or a 404.
async fn current(hub: &HlsHub, name: &str, deadline: tokio::time::Instant) -> Option<Arc<LiveHls>> {
    loop {
        let session = hub.registry.get(name).map(|s| s.info.session.clone());
        let live = hub.get(name);
        match (&live, &session) {
            (Some(l), Some(sid)) if l.sid == *sid => return live,
            (_, Some(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return live,
        }
    }
}

fn hold(hub: &HlsHub) -> Duration {
    // Three part targets plus a second: a part that is due arrives well inside it.
    Duration::from_millis(3 * hub.settings.hls_part_ms.clamp(200, 1000) + 1000)
}

/// Whether the playlist advertises `CAN-SKIP-DATERANGES=YES`. It does not (it writes no
/// `EXT-X-DATERANGE`), so `_HLS_skip=v2`, which asks for a delta update that also
/// skips date ranges, gets the full playlist: a delta update is only for a request
/// the `EXT-X-SERVER-CONTROL` line says the server honours (RFC 8216bis §6.2.5.1).
const CAN_SKIP_DATERANGES: bool = false;

/// Whether `_HLS_skip` asks for a delta update this server makes: `YES`, or `v2`
/// when date-range skipping is advertised.
fn delta_requested(skip: Option<&str>) -> bool {
    match skip {
        Some("YES") => true,
        Some("v2") => CAN_SKIP_DATERANGES,
        _ => false,
    }
}

async fn playlist(hub: &Arc<HlsHub>, name: &str, q: &PlaylistQuery) -> MediaReply {
    let parse = |v: &Option<String>| -> Result<Option<u64>, ()> {
        v.as_deref().map(|s| s.parse::<u64>().map_err(|_| ())).transpose()
    };
    let (Ok(msn), Ok(part)) = (parse(&q.msn), parse(&q.part)) else {
        return status(StatusCode::BAD_REQUEST, "bad _HLS_msn or _HLS_part\n");
    };
    let skip = delta_requested(q.skip.as_deref());
    let blocking = msn.is_some();
    let deadline = tokio::time::Instant::now() + hold(hub);
    // A blocking response names the state it waited for (its URL is unique): a CDN may
    // keep it for a HOLD-BACK (3 target durations), after which no player asks for it.
    let blocking_cache = format!("public, max-age={}", 3 * hub.settings.hls_segment_ms.div_ceil(1000).max(1));
    loop {
        let Some(live) = current(hub, name, deadline).await else {
            return status(StatusCode::NOT_FOUND, "stream not live\n");
        };
        // Taken before this stream's own lock: two variants' playlists asked at once
        // must never hold one lock each while waiting for the other.
        let reports = hub.rendition_reports(name);
        let mut rx = live.version.subscribe();
        {
            let inner = live.inner.lock();
            if let Some(seg) = inner.seg.as_ref() {
                let ready = match seg.reload(msn, part) {
                    Reload::BadRequest(why) => {
                        return status(StatusCode::BAD_REQUEST, format!("{why}\n"));
                    }
                    // A plain request waits for a first segment (players need one).
                    Reload::Ready => blocking || seg.segments().next().is_some() || seg.ended(),
                    Reload::Wait => false,
                };
                let timed_out = tokio::time::Instant::now() >= deadline;
                let has_media = seg.segments().next().is_some() || seg.next_part().is_some_and(|(_, p)| p > 0);
                if ready || (timed_out && has_media) {
                    let mut body = seg.playlist(&format!("{name}/{}/", live.sid), skip);
                    body.push_str(&reports);
                    let cache = if inner.ended {
                        // Final, but the same URL serves the next publish of this name.
                        "public, max-age=2"
                    } else if blocking && ready {
                        blocking_cache.as_str()
                    } else if blocking {
                        // Timed out: the body does not hold what the URL asked for.
                        "no-store"
                    } else {
                        // The live edge moves every part: one second shields the server
                        // from a crowd without making players late.
                        "public, max-age=1"
                    };
                    let cache = HeaderValue::from_str(cache).unwrap_or(HeaderValue::from_static("no-cache"));
                    return reply(
                        StatusCode::OK,
                        [
                            (header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_TYPE)),
                            (header::CACHE_CONTROL, cache),
                        ],
                        body,
                    );
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n");
            }
        }
        let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
    }
}

/// `init.mp4` → 0, `init-{n}.mp4` → n (see [`init_name`]).
fn parse_init_name(file: &str) -> Option<u64> {
    if file == "init.mp4" {
        return Some(0);
    }
    file.strip_prefix("init-")?.strip_suffix(".mp4")?.parse().ok().filter(|g| *g > 0)
}

fn parse_media_name(file: &str) -> Option<(u64, Option<usize>)> {
    let stem = file.strip_suffix(".m4s")?;
    match stem.split_once('.') {
        Some((m, p)) => Some((m.parse().ok()?, Some(p.parse().ok()?))),
        None => Some((stem.parse().ok()?, None)),
    }
}

/// `/live/{stream}/{sid}/{file}`: the init segment, a segment or a part of a publish
/// session (waiting a little for one that is about to exist).
pub async fn media_file(hub: &Arc<HlsHub>, name: &str, sid: &str, file: &str) -> MediaReply {
    let Some(live) = hub.get(name).filter(|l| l.sid == sid) else {
        return status(StatusCode::NOT_FOUND, "no such stream session\n");
    };
    // HLS players are stateless requests, not counted viewers: on an edge their
    // requests keep the stream's pull alive.
    hub.media.touch(name);
    if let Some(generation) = parse_init_name(file) {
        let init = live.inner.lock().seg.as_ref().and_then(|s| s.init_of(generation).cloned());
        return match init {
            Some(b) => reply(StatusCode::OK, mp4_immutable(), b),
            None => status(StatusCode::NOT_FOUND, "no media yet\n"),
        };
    }
    let Some((msn, part)) = parse_media_name(file) else {
        return status(StatusCode::NOT_FOUND, "no such file\n");
    };
    let deadline = tokio::time::Instant::now() + hold(hub);
    loop {
        let mut rx = live.version.subscribe();
        {
            let inner = live.inner.lock();
            let Some(seg) = inner.seg.as_ref() else {
                return status(StatusCode::NOT_FOUND, "no media yet\n");
            };
            let found = match part {
                Some(p) => seg.part(msn, p).map(|p| p.data.clone()),
                None => seg.segment(msn).map(|s| s.data.clone()),
            };
            if let Some(data) = found {
                return reply(StatusCode::OK, mp4_immutable(), data);
            }
            // Only what is about to exist is worth waiting for: the preload-hinted part
            // and the segment in progress (docs/media.md).
            let soon = seg.awaits(msn, part.map(|p| p as u64));
            if !soon || inner.ended || tokio::time::Instant::now() >= deadline {
                return status(StatusCode::NOT_FOUND, "no such part or segment\n");
            }
        }
        let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
    }
}

async fn live_mp4(hub: &Arc<HlsHub>, name: &str) -> MediaReply {
    let deadline = tokio::time::Instant::now() + hold(hub);
    let Some(live) = current(hub, name, deadline).await else {
        return status(StatusCode::NOT_FOUND, "stream not live\n");
    };
    // A stream that just started (an edge's fresh pull) gets its muxer with the first
    // frames: wait for it within the hold.
    let mut version = live.version.subscribe();
    while live.inner.lock().seg.is_none() && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, version.changed()).await;
    }
    let (init, start, codecs, rx, generation) = {
        let inner = live.inner.lock();
        let Some(seg) = inner.seg.as_ref() else {
            return status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n");
        };
        if inner.ended {
            return status(StatusCode::NOT_FOUND, "stream ended\n");
        }
        // Subscribing under the same lock the muxer publishes under: no gap, no repeat.
        (seg.init().clone(), seg.live_start(), seg.codecs().to_string(), live.live.subscribe(), seg.generation())
    };
    struct St {
        queued: std::collections::VecDeque<Bytes>,
        rx: broadcast::Receiver<LivePart>,
        resync: bool,
        generation: u64,
        pacing: ViewerPacing,
        // Held (never read) so the stream's stats count this viewer under "hls".
        _viewer: Option<crate::registry::Subscription>,
    }
    let mut queued: std::collections::VecDeque<Bytes> = start.into();
    let resync = queued.is_empty();
    queued.push_front(init);
    let st = St {
        queued,
        rx,
        resync,
        generation,
        // Parts are already batched by the segmenter: no merge window here.
        pacing: ViewerPacing::new(hub.media.cfg.slow_viewer_grace_ms, 0),
        _viewer: hub.registry.subscribe(name, Protocol::Hls),
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        if let Some(b) = st.queued.pop_front() {
            return Some((b, st));
        }
        loop {
            match st.rx.recv().await {
                Ok(p) => {
                    if p.generation != st.generation {
                        // A new init segment (codec change): this response's decoder
                        // cannot follow; the player reconnects and starts on the new one.
                        return None;
                    }
                    if st.resync && !p.independent {
                        continue;
                    }
                    st.resync = false;
                    return Some((p.data, st));
                }
                // Fell behind by more than the channel holds (64 parts): continue at the
                // next independent part (the player sees a jump, the server holds
                // nothing); falling behind again within the grace period ends the response.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    metrics::counter!("onair_media_viewer_skips_total", "protocol" => "hls").increment(1);
                    if st.pacing.fell_behind(onair_shell::monotonic_ms()) == Behind::Cut {
                        metrics::counter!("onair_media_viewers_cut_total", "protocol" => "hls").increment(1);
                        return None;
                    }
                    st.resync = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut resp = with_body(
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        MediaBody::Stream(Box::pin(stream)),
    );
    if let Ok(v) = HeaderValue::from_str(&codecs) {
        resp.headers_mut().insert("x-codecs", v);
    }
    resp
}

/// `/live/{stream}/master.m3u8`: the multivariant playlist of the stream's ABR ladder
/// (the source and every live rendition), with each variant's measured or configured
/// bandwidth, its resolution and codecs from its own init segment. A stream without
/// renditions gets a one-variant playlist, so players can always start here. With
/// `[media] play_auth` the request's own signature is checked and each variant URI
/// carries a fresh one (signatures are per stream name).
pub async fn master(hub: &Arc<HlsHub>, name: &str, query: &str) -> MediaReply {
    if !safe_name(name) {
        return cors(status(StatusCode::NOT_FOUND, "no such stream\n"));
    }
    let key = onair_media::rtmp::StreamKey { name: name.to_string(), query: query.to_string() };
    if let Err(why) = hub.media.check_play(&key) {
        tracing::debug!(stream = %name, why = %why, "HLS play refused");
        return cors(status(StatusCode::FORBIDDEN, "play refused: bad or expired signature\n"));
    }
    hub.media.want(name, query, "").await;
    if current(hub, name, tokio::time::Instant::now() + hold(hub)).await.is_none() {
        return cors(status(StatusCode::NOT_FOUND, "stream not live\n"));
    }
    let mut group = hub.ladder_group(name);
    if group.is_empty() {
        group.push(name.to_string());
    }
    let source = group[0].clone();
    let ladder = hub.media.ladder(&source);
    let now = onair_shell::now_ms();
    let mut variants = Vec::new();
    for stream in &group {
        let Some(live) = hub.get(stream) else { continue };
        let (codecs, resolution) = {
            let inner = live.inner.lock();
            let Some(seg) = inner.seg.as_ref() else { continue };
            (seg.codecs().to_string(), inner.config.video.as_ref().map(|v| (v.width, v.height)))
        };
        let stats = hub.registry.get(stream).map(|s| s.stats(now));
        let measured = stats.as_ref().map_or(0, |s| s.bitrate_bps);
        let configured = ladder
            .iter()
            .find(|r| crate::renditions::rendition_stream(&source, r) == *stream)
            .map_or(0, |r| u64::from(r.video_kbps) * 1000 + 96_000);
        // Peak, not average: a measured rate gets a fifth on top for its peaks.
        let bandwidth = (measured + measured / 5).max(configured).max(64_000);
        let uri = if hub.media.cfg.play_auth {
            crate::signed_url("../", &hub.media.play_key, stream, ".m3u8", 3600)
        } else {
            format!("../{stream}.m3u8")
        };
        variants.push(onair_media::hls::Variant {
            uri,
            bandwidth,
            resolution,
            codecs,
            frame_rate: stats.map(|s| s.video_fps).filter(|f| *f > 0.0),
        });
    }
    if variants.is_empty() {
        return cors(status(StatusCode::SERVICE_UNAVAILABLE, "stream has no media yet\n"));
    }
    cors(reply(
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_TYPE)),
            // Variants come and go with the renditions' children: short-lived.
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=1")),
        ],
        onair_media::hls::multivariant_playlist(&variants),
    ))
}

async fn info(hub: &Arc<HlsHub>, name: &str) -> MediaReply {
    let Some(live) = current(hub, name, tokio::time::Instant::now() + hold(hub)).await else {
        return status(StatusCode::NOT_FOUND, "stream not live\n");
    };
    // Renditions of this stream that are live right now (see `renditions`).
    let renditions: Vec<serde_json::Value> = hub
        .media
        .ladder(name)
        .iter()
        .map(|r| crate::renditions::rendition_stream(name, r))
        .filter(|s| hub.registry.get(s).is_some())
        .map(|s| serde_json::json!({ "stream": s, "flv": format!("/live/{s}.flv"), "hls": format!("/live/{s}.m3u8") }))
        .collect();
    let inner = live.inner.lock();
    let codecs = inner.seg.as_ref().map(|s| s.codecs().to_string()).unwrap_or_else(|| inner.config.codecs());
    let body = serde_json::json!({
        "stream": name,
        "live": !inner.ended,
        "codecs": codecs,
        "mime": format!("video/mp4; codecs=\"{codecs}\""),
        "width": inner.config.video.as_ref().map(|v| v.width),
        "height": inner.config.video.as_ref().map(|v| v.height),
        "audioSampleRate": inner.config.audio.as_ref().map(|a| a.sample_rate),
        "hls": format!("/live/{name}.m3u8"),
        "fmp4": format!("/live/{name}.mp4"),
        "flv": format!("/live/{name}.flv"),
        "snapshot": format!("/live/{name}/snapshot.jpg"),
        "renditions": renditions,
        "master": format!("/live/{name}/master.m3u8"),
    });
    reply(
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `/live/{stream}/snapshot.jpg`: the latest snapshot (in memory while live, else the
/// last one on disk).
pub async fn snapshot(hub: &Arc<HlsHub>, name: &str) -> MediaReply {
    if !safe_name(name) {
        return status(StatusCode::NOT_FOUND, "no snapshot\n");
    }
    let mem = hub.get(name).and_then(|l| l.snapshot.lock().clone());
    let jpeg = match mem {
        Some(j) => j,
        None => match tokio::fs::read(hub.data_dir.join("snapshots").join(format!("{name}.jpg"))).await {
            Ok(v) => Bytes::from(v),
            Err(_) => return status(StatusCode::NOT_FOUND, "no snapshot\n"),
        },
    };
    let max_age = format!("public, max-age={}", hub.settings.snapshot_secs.clamp(1, 60));
    let cache = HeaderValue::from_str(&max_age).unwrap_or(HeaderValue::from_static("no-cache"));
    reply(
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")), (header::CACHE_CONTROL, cache)],
        jpeg,
    )
}

/// `/vod/{stream}/{id}/{file}`: a file of a finished recording.
pub async fn vod_file(hub: &Arc<HlsHub>, name: &str, id: &str, file: &str) -> MediaReply {
    if !(safe_name(name) && safe_name(id) && safe_name(file)) {
        return status(StatusCode::NOT_FOUND, "no such recording\n");
    }
    let content_type = if file.ends_with(".m3u8") {
        PLAYLIST_TYPE
    } else if file.ends_with(".m4s") || file.ends_with(".mp4") {
        "video/mp4"
    } else {
        return status(StatusCode::NOT_FOUND, "no such file\n");
    };
    let path = hub.data_dir.join("recordings").join(name).join(id).join(file);
    match tokio::fs::read(&path).await {
        Ok(data) => reply(
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
            ],
            data,
        ),
        Err(_) => status(StatusCode::NOT_FOUND, "no such recording\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_names_and_safe_names() {
        assert_eq!(parse_media_name("12.m4s"), Some((12, None)));
        assert_eq!(parse_media_name("12.3.m4s"), Some((12, Some(3))));
        assert_eq!((parse_init_name("init.mp4"), parse_init_name("init-2.mp4")), (Some(0), Some(2)));
        for bad in ["init-0.mp4", "init-.mp4", "init-x.mp4", "init2.mp4", "init-1.m4s"] {
            assert_eq!(parse_init_name(bad), None, "{bad}");
        }
        for bad in ["x.m4s", "1.x.m4s", "1.2.3.m4s", "12.mp4", ".m4s", "-1.m4s"] {
            assert_eq!(parse_media_name(bad), None, "{bad}");
        }
        for ok in ["cam", "room_1-a", "a.b"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a b", "ü"] {
            assert!(!safe_name(bad), "{bad}");
        }
        let q = PlaylistQuery::parse("_HLS_msn=12&_HLS_part=3&txSecret=x&_HLS_skip=YES");
        assert_eq!((q.msn.as_deref(), q.part.as_deref(), q.skip.as_deref()), (Some("12"), Some("3"), Some("YES")));
        assert!(PlaylistQuery::parse("").msn.is_none());
    }

    #[test]
    fn v2_skips_only_when_date_range_skipping_is_advertised() {
        assert!(delta_requested(Some("YES")));
        assert!(!delta_requested(Some("v2")), "CAN-SKIP-DATERANGES is not advertised");
        assert!(!delta_requested(Some("NO")) && !delta_requested(None));
    }
}
