//! Playout: files played as a live stream ("VOD as live") and slates ("Starting soon"
//! / "Thanks for watching"), published by the server itself — a *house* publisher.
//!
//! Like renditions, an `ffmpeg` child reads the input in real time (`-re`) and
//! publishes it back over loopback RTMP with a signed push URL, so what it plays is an
//! ordinary stream (HTTP-FLV, LL-HLS, recording, relays, renditions, the room's live
//! state) with no special case downstream. The push URL also carries this process's
//! house token, which marks the publish as a house one ([`HouseKind`]):
//!
//! * a real, authorised publish of the same name takes over
//!   ([`MediaService::preempt_house`]): the house child is stopped, the anchor goes on
//!   air, and when the anchor's stream ends the show is handed back and resumes where
//!   it was (`-ss` at the position reached);
//! * a slate is silent: not reported to the room layer, callbacks or recordings, and
//!   it yields to a file as well as to the anchor.
//!
//! Inputs are checked at scheduling time: a path must resolve inside the data dir (no
//! `..`, no symlink out), and every file is probed with `ffprobe`; one without a
//! decodable video stream is refused with ffprobe's reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::registry::HouseKind;
use onair_shell::now_ms;

/// Most items in one playlist.
pub const MAX_ITEMS: usize = 50;

/// Why a playout request was refused (each maps to an HTTP status in the face).
#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    /// Bad request (400): names the field.
    #[error("{0}")]
    Bad(String),
    /// A file that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// A path outside the data dir (403).
    #[error("{0}")]
    Forbidden(String),
    /// A file ffprobe cannot read as video (422).
    #[error("{0}")]
    Unplayable(String),
    /// An upload larger than `[media] max_upload_mb` (413).
    #[error("{0}")]
    TooLarge(String),
    /// Playout needs ffmpeg/ffprobe and the RTMP listener (503).
    #[error("playout is off: {0}")]
    Off(String),
    /// Disk trouble (500).
    #[error("{0}")]
    Io(String),
}

/// One input of a show, as the API names it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Item {
    /// A file uploaded through the API (`uploads/{name}` in the data dir).
    Upload(String),
    /// A path relative to the data dir.
    Path(String),
    /// A past recording of the stream (`recordings/{stream}/{id}/index.m3u8`).
    Recording(String),
}

/// A request to play files as a stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShowRequest {
    /// The playlist, played in order.
    pub items: Vec<Item>,
    /// Start again from the first item after the last one, until stopped.
    #[serde(default, rename = "loop")]
    pub looped: bool,
    /// Unix seconds to start at; absent or past = now.
    #[serde(default)]
    pub start_at: Option<u64>,
    /// End the room when the playlist is over (once only): the room layer's choice,
    /// carried to the finish callback.
    #[serde(default)]
    pub end_room: bool,
}

/// A slate: text on a plain background, or an image (with optional text).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slate {
    /// Text shown while the room is upcoming ("Starting soon").
    #[serde(default)]
    pub text: String,
    /// Text shown while the room is paused or between shows ("We'll be right back").
    #[serde(default)]
    pub paused_text: String,
    /// An image (an upload name) under the text; empty = a plain background.
    #[serde(default)]
    pub image: String,
}

/// Which slate variant is wanted for a stream now (decided by the room layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlateVariant {
    /// The room is announced, not started.
    Upcoming,
    /// The room is paused.
    Paused,
}

/// Facts ffprobe gave about a file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probed {
    /// The item as named in the request.
    pub name: String,
    /// Seconds (0 when unknown, e.g. a still image).
    pub duration: f64,
    /// Video codec.
    pub video: String,
    /// Audio codec (empty when none).
    pub audio: String,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum ShowState {
    Scheduled,
    Playing,
    /// The anchor took over; resumes when the anchor's stream ends.
    Yielded,
    Finished,
    Failed,
}

struct Show {
    kind: HouseKind,
    variant: Option<SlateVariant>,
    items: Vec<Probed>,
    looped: bool,
    end_room: bool,
    start_at_ms: u64,
    state: ShowState,
    /// Seconds of the playlist played so far (where a hand-back resumes).
    position: f64,
    error: String,
    /// A slate's text (empty for files).
    text: String,
    stop: CancellationToken,
    /// Tells this show from one that replaced it under the same stream.
    id: u64,
}

/// Called when a show of files ended by itself: `(stream, end_room)`.
pub type OnFinished = Box<dyn Fn(&str, bool) + Send + Sync>;

/// Every stream's show and slate.
pub struct Playout {
    media: Arc<MediaService>,
    ffmpeg: String,
    ffprobe: String,
    data_dir: PathBuf,
    off: Option<String>,
    shows: Mutex<HashMap<String, Show>>,
    slates: Mutex<HashMap<String, Slate>>,
    on_finished: OnceLock<OnFinished>,
    max_upload: u64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Playout {
    /// Checks the tools and loads the stored slates.
    pub async fn start(
        media: Arc<MediaService>,
        data_dir: &Path,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Playout> {
        let ffmpeg = media.cfg.hls.ffmpeg.clone();
        let ffprobe = ffprobe_beside(&ffmpeg);
        let off = if media.rtmp_addr.is_none() {
            Some("it needs the RTMP listener ([rtmp] listen)".to_string())
        } else if !crate::hls::ffmpeg_available(&ffmpeg).await {
            Some(format!("ffmpeg not found at {ffmpeg:?}"))
        } else {
            None
        };
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        let slates = std::fs::read_to_string(data_dir.join("slates.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Arc::new(Playout {
            max_upload: media.cfg.max_upload_mb.saturating_mul(1024 * 1024),
            media,
            ffmpeg,
            ffprobe,
            data_dir,
            off,
            shows: Mutex::new(HashMap::new()),
            slates: Mutex::new(slates),
            on_finished: OnceLock::new(),
            shutdown,
            tasks,
        })
    }

    /// Sets what happens when a show ends by itself (the room layer's hook).
    pub fn on_finished(&self, f: OnFinished) {
        let _ = self.on_finished.set(f);
    }

    fn check_on(&self) -> Result<(), PlayoutError> {
        match &self.off {
            Some(why) => Err(PlayoutError::Off(why.clone())),
            None => Ok(()),
        }
    }

    /// Stores an upload as `uploads/{name}` (at most `[media] max_upload_mb`), probes
    /// it and removes it again if it is not a playable file.
    pub async fn upload<S, E>(&self, name: &str, mut body: S) -> Result<Value, PlayoutError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.check_on()?;
        if !upload_name_ok(name) {
            return Err(PlayoutError::Bad(
                "upload name: 1-100 of A-Z a-z 0-9 - _ . with an extension, not starting with '.'".into(),
            ));
        }
        let dir = self.data_dir.join("uploads");
        tokio::fs::create_dir_all(&dir).await.map_err(|e| PlayoutError::Io(format!("{}: {e}", dir.display())))?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.part"));
        let mut file =
            tokio::fs::File::create(&tmp).await.map_err(|e| PlayoutError::Io(format!("{}: {e}", tmp.display())))?;
        let mut size = 0u64;
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| PlayoutError::Bad(format!("upload interrupted: {e}")))?;
                size += chunk.len() as u64;
                if size > self.max_upload {
                    return Err(PlayoutError::TooLarge(format!(
                        "upload larger than [media] max_upload_mb ({} MiB)",
                        self.max_upload / (1024 * 1024)
                    )));
                }
                file.write_all(&chunk).await.map_err(|e| PlayoutError::Io(e.to_string()))?;
            }
            file.flush().await.map_err(|e| PlayoutError::Io(e.to_string()))?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if size == 0 {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(PlayoutError::Bad("empty upload".into()));
        }
        if let Err(e) = self.probe(name, &tmp, true).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, &path).await.map_err(|e| PlayoutError::Io(e.to_string()))?;
        let probed = self.probe(name, &path, true).await?;
        tracing::info!(upload = name, bytes = size, "upload stored");
        Ok(json!({"upload": name, "bytes": size, "probe": probed}))
    }

    /// Where an item is on disk: inside the data dir, or refused.
    fn resolve(&self, stream: &str, item: &Item) -> Result<(String, PathBuf), PlayoutError> {
        let (name, rel) = match item {
            Item::Upload(n) => {
                if !upload_name_ok(n) {
                    return Err(PlayoutError::Bad(format!("upload {n:?}: not an upload name")));
                }
                (format!("upload:{n}"), PathBuf::from("uploads").join(n))
            }
            Item::Path(p) => (format!("path:{p}"), PathBuf::from(p)),
            Item::Recording(id) => {
                if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || id.is_empty() {
                    return Err(PlayoutError::Bad(format!("recording {id:?}: not a recording id")));
                }
                (format!("recording:{id}"), PathBuf::from("recordings").join(stream).join(id).join("index.m3u8"))
            }
        };
        if rel.is_absolute() {
            return Err(PlayoutError::Forbidden(format!("{name}: give a path relative to the data dir")));
        }
        let joined = self.data_dir.join(&rel);
        let real =
            std::fs::canonicalize(&joined).map_err(|_| PlayoutError::NotFound(format!("{name}: no such file")))?;
        if !real.starts_with(&self.data_dir) {
            return Err(PlayoutError::Forbidden(format!("{name}: outside the data dir")));
        }
        if !real.is_file() {
            return Err(PlayoutError::NotFound(format!("{name}: not a file")));
        }
        Ok((name, real))
    }

    /// ffprobe's view of a file: refused unless it has a video stream ffprobe decodes
    /// (or, for a slate image, any image).
    async fn probe(&self, name: &str, path: &Path, need_duration: bool) -> Result<Probed, PlayoutError> {
        let run = tokio::process::Command::new(&self.ffprobe)
            .args(["-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json"])
            .arg(path)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(15), run)
            .await
            .map_err(|_| PlayoutError::Unplayable(format!("{name}: ffprobe took longer than 15 s")))?
            .map_err(|e| PlayoutError::Off(format!("ffprobe not runnable ({}): {e}", self.ffprobe)))?;
        let err = String::from_utf8_lossy(&out.stderr).trim().chars().take(300).collect::<String>();
        // ffprobe names the path it read; the data dir is not the caller's business.
        let err = err.replace(&path.display().to_string(), name);
        if !out.status.success() {
            return Err(PlayoutError::Unplayable(format!("{name}: not a playable media file: {err}")));
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let streams = v["streams"].as_array().cloned().unwrap_or_default();
        let codec = |t: &str| {
            streams
                .iter()
                .find(|s| s["codec_type"] == t)
                .and_then(|s| s["codec_name"].as_str())
                .unwrap_or("")
                .to_string()
        };
        let (video, audio) = (codec("video"), codec("audio"));
        if video.is_empty() {
            return Err(PlayoutError::Unplayable(format!(
                "{name}: no video stream ffprobe can read{}",
                if err.is_empty() { String::new() } else { format!(": {err}") }
            )));
        }
        let duration = v["format"]["duration"].as_str().and_then(|d| d.parse::<f64>().ok()).unwrap_or(0.0);
        if need_duration && duration <= 0.0 && !err.is_empty() {
            return Err(PlayoutError::Unplayable(format!("{name}: {err}")));
        }
        Ok(Probed { name: name.to_string(), duration, video, audio, path: path.to_path_buf() })
    }

    /// Checks and probes every item, then plays them as `stream` (replacing a show
    /// already there).
    pub async fn schedule(self: &Arc<Self>, stream: &str, req: ShowRequest) -> Result<Value, PlayoutError> {
        self.check_on()?;
        if !crate::valid_stream_name(stream) {
            return Err(PlayoutError::Bad("invalid stream name".into()));
        }
        if req.items.is_empty() || req.items.len() > MAX_ITEMS {
            return Err(PlayoutError::Bad(format!("items: 1 to {MAX_ITEMS} files")));
        }
        let mut items = Vec::with_capacity(req.items.len());
        for item in &req.items {
            let (name, path) = self.resolve(stream, item)?;
            items.push(self.probe(&name, &path, true).await?);
        }
        let now = now_ms();
        let start_at_ms = req.start_at.map_or(now, |s| s.saturating_mul(1000).max(now));
        let show = Show {
            kind: HouseKind::Vod,
            variant: None,
            items,
            looped: req.looped,
            end_room: req.end_room && !req.looped,
            start_at_ms,
            state: ShowState::Scheduled,
            position: 0.0,
            error: String::new(),
            text: String::new(),
            stop: self.shutdown.child_token(),
            id: onair_shell::seed(),
        };
        self.install(stream, show);
        tracing::info!(stream, items = req.items.len(), looped = req.looped, start_at_ms, "playout scheduled");
        Ok(self.status(stream).unwrap_or_default())
    }

    fn install(self: &Arc<Self>, stream: &str, show: Show) {
        let (token, id) = (show.stop.clone(), show.id);
        if let Some(old) = self.shows.lock().insert(stream.to_string(), show) {
            old.stop.cancel();
        }
        let me = self.clone();
        let stream = stream.to_string();
        self.tasks.spawn(async move { me.run(&stream, token, id).await });
    }

    /// Stops `stream`'s show or slate. False when there was none.
    pub fn stop(&self, stream: &str) -> bool {
        match self.shows.lock().remove(stream) {
            Some(show) => {
                show.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// The show of `stream`, if any.
    pub fn status(&self, stream: &str) -> Option<Value> {
        let shows = self.shows.lock();
        let s = shows.get(stream)?;
        Some(json!({
            "stream": stream,
            "kind": s.kind,
            "variant": s.variant,
            "state": s.state,
            "items": s.items,
            "loop": s.looped,
            "endRoom": s.end_room,
            "startAtMs": s.start_at_ms,
            "positionSecs": (s.position * 10.0).round() / 10.0,
            "error": s.error,
            "text": s.text,
        }))
    }

    /// The slate configured for `stream`.
    pub fn slate(&self, stream: &str) -> Option<Slate> {
        self.slates.lock().get(stream).cloned()
    }

    /// Streams with a slate configured.
    pub fn slate_streams(&self) -> Vec<String> {
        self.slates.lock().keys().cloned().collect()
    }

    /// Sets (Some) or removes (None) `stream`'s slate; an image must be an upload that
    /// probes as one.
    pub async fn set_slate(&self, stream: &str, slate: Option<Slate>) -> Result<(), PlayoutError> {
        if !crate::valid_stream_name(stream) {
            return Err(PlayoutError::Bad("invalid stream name".into()));
        }
        if let Some(s) = &slate {
            self.check_on()?;
            if s.text.chars().count() > 200 || s.paused_text.chars().count() > 200 {
                return Err(PlayoutError::Bad("slate text: at most 200 characters".into()));
            }
            if s.text.trim().is_empty() && s.paused_text.trim().is_empty() && s.image.is_empty() {
                return Err(PlayoutError::Bad("a slate needs text, pausedText or an image".into()));
            }
            if !s.image.is_empty() {
                let (name, path) = self.resolve(stream, &Item::Upload(s.image.clone()))?;
                self.probe(&name, &path, false).await?;
            }
        }
        let text = {
            let mut slates = self.slates.lock();
            match slate {
                Some(s) => slates.insert(stream.to_string(), s),
                None => slates.remove(stream),
            };
            serde_json::to_string_pretty(&*slates).unwrap_or_default()
        };
        let path = self.data_dir.join("slates.json");
        tokio::fs::write(&path, text).await.map_err(|e| PlayoutError::Io(format!("{}: {e}", path.display())))?;
        // A change of text shows at once: the running slate is restarted by the next
        // `want_slate`.
        let mut shows = self.shows.lock();
        if shows.get(stream).is_some_and(|s| s.kind == HouseKind::Slate)
            && let Some(s) = shows.remove(stream)
        {
            s.stop.cancel();
        }
        Ok(())
    }

    /// The room layer says which slate variant `stream` should show now (None: none).
    /// Starts, switches or stops the slate; never touches a show of files.
    pub fn want_slate(self: &Arc<Self>, stream: &str, variant: Option<SlateVariant>) {
        if self.off.is_some() {
            return;
        }
        let slate = self.slate(stream);
        let text = match (&slate, variant) {
            (Some(s), Some(SlateVariant::Upcoming)) => {
                Some(if s.text.is_empty() { s.paused_text.clone() } else { s.text.clone() })
            }
            (Some(s), Some(SlateVariant::Paused)) => {
                Some(if s.paused_text.is_empty() { s.text.clone() } else { s.paused_text.clone() })
            }
            _ => None,
        };
        {
            let mut shows = self.shows.lock();
            match shows.get(stream) {
                Some(s)
                    if s.kind == HouseKind::Vod
                        && matches!(s.state, ShowState::Scheduled | ShowState::Playing | ShowState::Yielded) =>
                {
                    return;
                }
                Some(s) if s.kind == HouseKind::Slate && s.variant == variant && text.is_some() => return,
                Some(_) => {
                    if let Some(s) = shows.remove(stream) {
                        s.stop.cancel();
                    }
                }
                None => {}
            }
        }
        let (Some(slate), Some(text)) = (slate, text) else { return };
        let image = if slate.image.is_empty() {
            None
        } else {
            self.resolve(stream, &Item::Upload(slate.image.clone())).ok().map(|(_, p)| p)
        };
        let show = Show {
            kind: HouseKind::Slate,
            variant,
            items: vec![Probed {
                name: "slate".into(),
                duration: 0.0,
                video: "h264".into(),
                audio: "aac".into(),
                path: image.unwrap_or_default(),
            }],
            looped: true,
            end_room: false,
            start_at_ms: now_ms(),
            state: ShowState::Scheduled,
            position: 0.0,
            error: String::new(),
            text,
            stop: self.shutdown.child_token(),
            id: onair_shell::seed(),
        };
        self.install(stream, show);
    }

    fn set_state(&self, stream: &str, id: u64, state: ShowState, error: Option<String>) {
        let mut shows = self.shows.lock();
        if let Some(s) = shows.get_mut(stream).filter(|s| s.id == id) {
            s.state = state;
            if let Some(e) = error {
                s.error = e;
            }
        }
    }

    /// Whether `stream` is published by someone a `kind` house publisher yields to (a
    /// real publisher, or a house one of a higher rank).
    fn held_by_other(&self, stream: &str, kind: HouseKind) -> bool {
        self.media.registry.get(stream).is_some_and(|s| s.info.house.is_none_or(|k| k > kind))
    }

    /// One show: wait for its start, play, yield to the anchor and resume, end.
    async fn run(self: Arc<Self>, stream: &str, stop: CancellationToken, id: u64) {
        if self.media.rtmp_addr.is_none() {
            return;
        }
        let Some((kind, start_at)) = self.shows.lock().get(stream).map(|s| (s.kind, s.start_at_ms)) else { return };
        let wait = start_at.saturating_sub(now_ms());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            _ = stop.cancelled() => return,
        }
        let mut events = self.media.registry.watch();
        let mut failures = 0u32;
        let scratch = tempfile_dir(&self.data_dir, stream, kind);
        loop {
            // Someone else holds the name (the anchor, or a file over a slate): wait
            // for it to end, then play (the hand-back).
            while self.held_by_other(stream, kind) {
                self.set_state(stream, id, ShowState::Yielded, None);
                let ev = tokio::select! {
                    ev = events.recv() => ev,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.cancelled() => return,
                };
                if matches!(ev, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            let Some((items, looped, position, text)) =
                self.shows.lock().get(stream).map(|s| (s.items.clone(), s.looped, s.position, s.text.clone()))
            else {
                return;
            };
            let yield_token = stop.child_token();
            self.media.house.lock().insert(stream.to_string(), (kind, yield_token.clone(), id));
            let mut dst = self.media.loopback_push(stream);
            dst.push_str(&format!(
                "&onair_house={}&onair_kind={}",
                self.media.house_token,
                if kind == HouseKind::Slate { "slate" } else { "vod" }
            ));
            let args = match kind {
                HouseKind::Slate => slate_args(items.first().map(|p| p.path.as_path()), &text, &dst),
                HouseKind::Vod => {
                    let total: f64 = items.iter().map(|p| p.duration).sum();
                    let offset = if looped && total > 0.0 { position % total } else { position };
                    let input = match write_playlist(&scratch, &items).await {
                        Ok(i) => i,
                        Err(e) => {
                            self.set_state(stream, id, ShowState::Failed, Some(e));
                            break;
                        }
                    };
                    let copy = items.iter().all(|p| p.video == "h264" && (p.audio.is_empty() || p.audio == "aac"));
                    vod_args(&input, items.len() > 1, looped, offset, copy, &dst)
                }
            };
            let started = tokio::time::Instant::now();
            let child = crate::spawn_ffmpeg(&self.ffmpeg, &args, false);
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    self.set_state(stream, id, ShowState::Failed, Some(format!("cannot start ffmpeg: {e}")));
                    break;
                }
            };
            self.set_state(stream, id, ShowState::Playing, None);
            tracing::info!(stream, kind = ?kind, offset = position, "playout playing");
            let tail = tokio::spawn(crate::stderr_tail(child.stderr.take()));
            enum End {
                Exited(Option<std::process::ExitStatus>),
                Yielded,
                Stopped,
            }
            let end = tokio::select! {
                s = child.wait() => End::Exited(s.ok()),
                _ = yield_token.cancelled() => if stop.is_cancelled() { End::Stopped } else { End::Yielded },
            };
            if !matches!(end, End::Exited(_)) {
                let _ = child.kill().await;
                tail.abort();
            }
            {
                let mut house = self.media.house.lock();
                if house.get(stream).is_some_and(|(_, _, i)| *i == id) {
                    house.remove(stream);
                }
            }
            let played = started.elapsed().as_secs_f64();
            if let Some(s) = self.shows.lock().get_mut(stream).filter(|s| s.id == id) {
                s.position += played;
            }
            match end {
                End::Stopped => return,
                End::Yielded => {
                    tracing::info!(stream, "playout yielded to a publish; resumes when it ends");
                    self.set_state(stream, id, ShowState::Yielded, None);
                    // The publish that asked takes the name right after it is free: do
                    // not race it for the name (wait until it holds it, or 10 s if it
                    // never does), then wait for its end like any holder's.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                    while tokio::time::Instant::now() < deadline && !self.held_by_other(stream, kind) {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                    continue;
                }
                End::Exited(status) => {
                    let err = tail.await.unwrap_or_default();
                    if stop.is_cancelled() {
                        return;
                    }
                    let ok = status.is_some_and(|s| s.success());
                    if ok && kind == HouseKind::Vod && !looped {
                        self.set_state(stream, id, ShowState::Finished, None);
                        tracing::info!(stream, "playout finished");
                        let end_room = self.shows.lock().get(stream).is_some_and(|s| s.end_room);
                        if let Some(f) = self.on_finished.get() {
                            f(stream, end_room);
                        }
                        break;
                    }
                    // A real publish may have taken the name first (the child was then
                    // refused): yield rather than count it as a failure.
                    if self.held_by_other(stream, kind) {
                        continue;
                    }
                    if played > 30.0 {
                        failures = 0;
                    }
                    failures += 1;
                    tracing::warn!(stream, ?status, stderr = %err, failures, "playout ffmpeg ended unexpectedly");
                    if failures > 3 {
                        self.set_state(stream, id, ShowState::Failed, Some(err));
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1 << failures)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        // Finished/failed shows stay visible (state) until replaced or stopped; a slate
        // is simply gone.
        if kind == HouseKind::Slate {
            let mut shows = self.shows.lock();
            if shows.get(stream).is_some_and(|s| s.id == id) {
                shows.remove(stream);
            }
        }
    }
}

fn tempfile_dir(data_dir: &Path, stream: &str, kind: HouseKind) -> PathBuf {
    data_dir.join("playout").join(format!("{stream}-{kind:?}-{}", onair_shell::random_hex(4)))
}

/// The input to give ffmpeg: the file itself, or an `ffconcat` list of the items.
async fn write_playlist(dir: &Path, items: &[Probed]) -> Result<PathBuf, String> {
    if let [one] = items {
        return Ok(one.path.clone());
    }
    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("list.ffconcat");
    tokio::fs::write(&path, ffconcat(items.iter().map(|p| p.path.as_path())))
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// An `ffconcat` playlist of `paths` (single-quoted; a quote inside is `'\''`).
pub fn ffconcat<'a>(paths: impl Iterator<Item = &'a Path>) -> String {
    let mut s = String::from("ffconcat version 1.0\n");
    for p in paths {
        s.push_str(&format!("file '{}'\n", p.display().to_string().replace('\'', "'\\''")));
    }
    s
}

/// ffmpeg arguments that play `input` in real time from `offset` seconds and publish
/// it to `dst`: copied when it is already H.264/AAC, else encoded like a rendition.
pub fn vod_args(input: &Path, concat: bool, looped: bool, offset: f64, copy: bool, dst: &str) -> Vec<String> {
    let mut a: Vec<String> =
        ["-hide_banner", "-loglevel", "error", "-nostdin", "-re"].iter().map(|s| s.to_string()).collect();
    if looped {
        a.extend(["-stream_loop".into(), "-1".into()]);
    }
    if offset > 0.5 {
        a.extend(["-ss".into(), format!("{offset:.3}")]);
    }
    if concat {
        a.extend(["-f".into(), "concat".into(), "-safe".into(), "0".into()]);
    }
    a.extend(["-i".into(), input.display().to_string(), "-map".into(), "0:v:0".into(), "-map".into(), "0:a:0?".into()]);
    if copy {
        a.extend(["-c".into(), "copy".into(), "-f".into(), "flv".into(), dst.into()]);
    } else {
        a.extend(crate::renditions::live_encode_args(1500, 128, 44_100, dst));
    }
    a
}

/// ffmpeg arguments for a slate: `image` (scaled into 1280x720) or a dark background,
/// `text` centred, silent audio (players expect both tracks), low bitrate.
pub fn slate_args(image: Option<&Path>, text: &str, dst: &str) -> Vec<String> {
    let mut a: Vec<String> =
        ["-hide_banner", "-loglevel", "error", "-nostdin", "-re"].iter().map(|s| s.to_string()).collect();
    match image.filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => a.extend([
            "-loop".into(),
            "1".into(),
            "-framerate".into(),
            "15".into(),
            "-i".into(),
            p.display().to_string(),
        ]),
        None => a.extend(["-f".into(), "lavfi".into(), "-i".into(), "color=c=0x14202c:s=1280x720:r=15".into()]),
    }
    a.extend(["-f".into(), "lavfi".into(), "-i".into(), "anullsrc=r=44100:cl=stereo".into()]);
    let mut vf = "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,format=yuv420p"
        .to_string();
    if !text.trim().is_empty() {
        vf.push_str(&format!(
            ",drawtext=text={}:expansion=none:fontcolor=white:fontsize=56:box=1:boxcolor=black@0.4:boxborderw=20:x=(w-tw)/2:y=(h-th)/2",
            crate::renditions::escape_drawtext(text.trim())
        ));
    }
    a.extend(["-vf".into(), vf, "-map".into(), "0:v".into(), "-map".into(), "1:a".into()]);
    // A still picture needs little.
    a.extend(crate::renditions::live_encode_args(400, 64, 44_100, dst));
    a
}

/// `ffprobe` next to the configured `ffmpeg` (same directory, or the PATH one).
pub fn ffprobe_beside(ffmpeg: &str) -> String {
    match ffmpeg.strip_suffix("ffmpeg") {
        Some(prefix) => format!("{prefix}ffprobe"),
        None => "ffprobe".to_string(),
    }
}

/// Upload names: a plain file name with an extension.
fn upload_name_ok(name: &str) -> bool {
    (3..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.contains('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_and_args() {
        let list = ffconcat([Path::new("/d/a.mp4"), Path::new("/d/it's.mp4")].into_iter());
        assert_eq!(list, "ffconcat version 1.0\nfile '/d/a.mp4'\nfile '/d/it'\\''s.mp4'\n");
        let a = vod_args(Path::new("/d/list.ffconcat"), true, true, 12.5, false, "rtmp://x/live/s?k=1");
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(at("-stream_loop"), Some("-1"));
        assert_eq!(at("-ss"), Some("12.500"));
        assert_eq!(at("-safe"), Some("0"));
        assert_eq!(at("-c:v"), Some("libx264"));
        assert!(a.iter().position(|s| s == "-re") < a.iter().position(|s| s == "-i"));
        let c = vod_args(Path::new("/d/a.mp4"), false, false, 0.0, true, "d");
        assert!(!c.iter().any(|s| s == "-stream_loop" || s == "-ss" || s == "concat"));
        assert!(c.windows(2).any(|w| w[0] == "-c" && w[1] == "copy"));
        let s = slate_args(None, "Starting soon", "d");
        assert!(s.iter().any(|x| x.starts_with("color=")));
        assert!(s.iter().any(|x| x.contains("drawtext=text=Starting soon")));
        assert_eq!(ffprobe_beside("/usr/bin/ffmpeg"), "/usr/bin/ffprobe");
        assert_eq!(ffprobe_beside("ffmpeg"), "ffprobe");
        assert!(upload_name_ok("clip.mp4"));
        assert!(!upload_name_ok("../x.mp4") && !upload_name_ok(".x.mp4") && !upload_name_ok("noext"));
    }
}
