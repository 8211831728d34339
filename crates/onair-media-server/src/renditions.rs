//! Renditions (the "Live Director"): lower-resolution copies of each published stream,
//! optionally with a text overlay burned in, made by one `ffmpeg` child per rendition.
//!
//! The child plays the source from this server over loopback RTMP and publishes the
//! result back over RTMP as `{stream}_{name}` with a signed push URL, so a rendition is
//! an ordinary stream: HTTP-FLV, LL-HLS, RTMP play, stats and recording all work for it
//! without any special case. Transcoding is not done in-process on purpose: x264 is
//! CPU-heavy and a crash or stall in it must never take the server down.
//!
//! The argument building and naming rules are pure functions ([`rendition_args`],
//! [`rendition_stream`], [`is_rendition`]) tested without ffmpeg.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::director::{CHAT_SUFFIX, Watermark, chat_stream};
use crate::registry::RegistryEvent;

/// Restarts of a rendition child that died while its source is still live.
const MAX_RESTARTS: u32 = 3;

/// One entry of `[media] renditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendition {
    /// Suffix of the output stream: `{stream}_{name}` (e.g. `360p`).
    pub name: String,
    /// Output video height in pixels (width follows the aspect ratio, rounded to even).
    pub height: u32,
    /// Output video bitrate, kbit/s.
    #[serde(default = "default_kbps", alias = "videoKbps")]
    pub video_kbps: u32,
}

fn default_kbps() -> u32 {
    800
}

/// Checks the configured renditions (names usable in a stream name, sane sizes).
pub fn validate(list: &[Rendition]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for r in list {
        if r.name.is_empty() || !crate::valid_stream_name(&r.name) {
            return Err(format!("[media] renditions: bad name {:?} (letters, digits, - _ . only)", r.name));
        }
        if !seen.insert(r.name.as_str()) {
            return Err(format!("[media] renditions: name {:?} used twice", r.name));
        }
        if !(16..=4320).contains(&r.height) {
            return Err(format!("[media] renditions: {}: height {} not in 16..=4320", r.name, r.height));
        }
        if !(32..=100_000).contains(&r.video_kbps) {
            return Err(format!("[media] renditions: {}: video_kbps {} not in 32..=100000", r.name, r.video_kbps));
        }
    }
    Ok(())
}

/// The stream name of `source`'s rendition `r`.
pub fn rendition_stream(source: &str, r: &Rendition) -> String {
    format!("{source}_{}", r.name)
}

/// Whether `stream` is itself a rendition (ends with `_{name}` of a configured one):
/// those are never transcoded again, so renditions cannot recurse.
pub fn is_rendition(stream: &str, list: &[Rendition]) -> bool {
    list.iter().any(|r| stream.len() > r.name.len() + 1 && stream.ends_with(&format!("_{}", r.name)))
}

pub use onair_media::overlay::escape_drawtext;

/// What an overlay child burns into its output besides scaling.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlays<'a> {
    /// Text at the top right (`[media] overlay_text`); empty = none.
    pub text: &'a str,
    /// The image watermark.
    pub watermark: Option<&'a Watermark>,
    /// The chat: the file `drawtext` re-reads every frame.
    pub chat: Option<ChatDraw<'a>>,
}

/// How the chat is drawn.
#[derive(Debug, Clone, Copy)]
pub struct ChatDraw<'a> {
    /// The text file (rewritten atomically by [`crate::director`]).
    pub file: &'a std::path::Path,
    /// Solid-colour test mode (`[media.director] chat_test_color`); empty = normal.
    pub test_color: &'a str,
}

/// The ffmpeg arguments that read `src`, scale to `r.height`, lay the watermark, the
/// text overlay and the chat over it, encode H.264 (veryfast, zerolatency, 1 s-ish
/// GOP) + AAC and publish to `dst`. Only configured values and paths enter the filter
/// graph (escaped); chat text stays in its file.
pub fn rendition_args(src: &str, dst: &str, r: &Rendition, overlays: &Overlays) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000", "-i", src]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut graph = format!("[0:v]scale=-2:{}", r.height);
    if let Some(w) = overlays.watermark {
        a.extend(["-i".to_string(), w.path.to_string_lossy().into_owned()]);
        graph.push_str(&format!(
            "[base];[1:v]format=rgba,scale=iw*{s}:ih*{s},colorchannelmixer=aa={o}[wm];[base][wm]overlay={xy}",
            s = w.scale,
            o = w.opacity,
            xy = w.position.overlay_xy(w.margin),
        ));
    }
    let size = (r.height / 12).max(10);
    if !overlays.text.trim().is_empty() {
        // expansion=none: a `%` in the text is literal, not a drawtext function.
        graph.push_str(&format!(
            ",drawtext=text={}:expansion=none:fontcolor=white:fontsize={size}:box=1:boxcolor=black@0.5:x=w-tw-{pad}:y={pad}",
            escape_drawtext(overlays.text.trim()),
            pad = size / 2,
        ));
    }
    if let Some(chat) = overlays.chat {
        let size = (r.height / 24).max(10);
        let (font, boxc) = if chat.test_color.is_empty() {
            ("white".to_string(), "black@0.45".to_string())
        } else {
            (escape_drawtext(chat.test_color), escape_drawtext(chat.test_color))
        };
        graph.push_str(&format!(
            ",drawtext=textfile={}:reload=1:expansion=none:fontcolor={font}:fontsize={size}:line_spacing={ls}:box=1:boxcolor={boxc}:boxborderw={pad}:x={pad}:y=h-th-{pad}*2",
            escape_drawtext(&chat.file.to_string_lossy()),
            ls = size / 4,
            pad = size / 2,
        ));
    }
    graph.push_str("[vout]");
    a.extend(["-filter_complex".to_string(), graph]);
    a.extend(["-map", "[vout]", "-map", "0:a?"].iter().map(|s| s.to_string()));
    a.extend(live_encode_args(r.video_kbps, 96, 44_100, dst));
    a
}

/// The encoder half of a transcoding child's arguments (renditions, chat outputs,
/// co-host mixes, playout): H.264 (x264 veryfast, zerolatency, a keyframe every second,
/// `kbps` capped) and AAC at `rate` Hz and `audio_kbps`, published as FLV to `dst`.
pub(crate) fn live_encode_args(kbps: u32, audio_kbps: u32, rate: u32, dst: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-force_key_frames",
        "expr:gte(t,n_forced*1)",
        "-c:a",
        "aac",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "-b:a".into(),
        format!("{audio_kbps}k"),
        "-ar".into(),
        rate.to_string(),
        "-b:v".into(),
        format!("{kbps}k"),
        "-maxrate".into(),
        format!("{kbps}k"),
        "-bufsize".into(),
        format!("{}k", kbps * 2),
        "-f".into(),
        "flv".into(),
        dst.into(),
    ]);
    a
}

/// Runs the rendition children of every published stream.
pub struct Renditions {
    media: Arc<MediaService>,
    ffmpeg: String,
    /// Source stream → (stop token, number of children).
    running: Mutex<HashMap<String, (CancellationToken, usize)>>,
    /// Source stream → its chat output's stop token.
    chat: Mutex<HashMap<String, CancellationToken>>,
    /// `{data_dir}/ladders.json`.
    path: std::path::PathBuf,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Renditions {
    /// Starts the feature when ffmpeg is present and the RTMP listener is on
    /// (otherwise logs why it is off and returns None); loads the per-stream ladders
    /// kept in `{data_dir}/ladders.json`.
    pub async fn start(
        media: Arc<MediaService>,
        data_dir: &std::path::Path,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Option<Arc<Self>> {
        let cfg = &media.cfg;
        let path = data_dir.join("ladders.json");
        let ladders: HashMap<String, Vec<Rendition>> =
            std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        let ladders: HashMap<String, Vec<Rendition>> =
            ladders.into_iter().filter(|(s, l)| crate::valid_stream_name(s) && validate(l).is_ok()).collect();
        // Renditions are wanted (configured or laddered); chat outputs may be switched
        // on at any time, so the feature starts either way.
        let wanted = !cfg.renditions.is_empty() || !ladders.is_empty();
        if let Err(e) = validate(&cfg.renditions) {
            tracing::error!("renditions off: {e}");
            return None;
        }
        if media.rtmp_addr.is_none() {
            if wanted {
                tracing::warn!("renditions off: they need the RTMP listener ([rtmp] listen)");
            }
            return None;
        }
        let ffmpeg = cfg.hls.ffmpeg.clone();
        if !crate::hls::ffmpeg_available(&ffmpeg).await {
            if wanted {
                tracing::warn!(ffmpeg = %ffmpeg, "renditions off: ffmpeg not found (install ffmpeg or set [media] ffmpeg)");
            } else {
                tracing::info!(ffmpeg = %ffmpeg, "chat outputs off: ffmpeg not found");
            }
            return None;
        }
        if wanted {
            let names: Vec<&str> = cfg.renditions.iter().map(|r| r.name.as_str()).collect();
            tracing::info!(?names, ladders = ladders.len(), overlay = %cfg.overlay_text, max = cfg.max_transcodes, "renditions on");
        }
        *media.ladders.write() = ladders;
        let me = Arc::new(Renditions {
            media: media.clone(),
            ffmpeg,
            running: Mutex::new(HashMap::new()),
            chat: Mutex::new(HashMap::new()),
            path,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        let r = me.clone();
        let mut events = media.registry.watch();
        tasks.clone().spawn(async move {
            for s in r.media.registry.list() {
                r.source_up(&s.name, &shutdown, &tasks);
            }
            r.reconcile_chat(&shutdown, &tasks);
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = r.media.director.changed.notified() => {
                        r.reconcile_chat(&shutdown, &tasks);
                        continue;
                    }
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(RegistryEvent::Published(name)) => {
                        r.source_up(&name, &shutdown, &tasks);
                        r.reconcile_chat(&shutdown, &tasks);
                    }
                    Ok(RegistryEvent::Unpublished(name)) => {
                        r.source_down(&name);
                        r.reconcile_chat(&shutdown, &tasks);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let live: Vec<String> = r.media.registry.list().iter().map(|s| s.name.clone()).collect();
                        let gone: Vec<String> =
                            r.running.lock().keys().filter(|k| !live.contains(k)).cloned().collect();
                        for g in gone {
                            r.source_down(&g);
                        }
                        for name in live {
                            r.source_up(&name, &shutdown, &tasks);
                        }
                        r.reconcile_chat(&shutdown, &tasks);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            for (_, (tok, n)) in r.running.lock().drain() {
                tok.cancel();
                r.media.give_back_transcodes(n);
            }
            for (_, tok) in r.chat.lock().drain() {
                tok.cancel();
            }
        });
        Some(me)
    }

    /// Starts the chat output of every switched-on live source that has none, and
    /// stops those of sources switched off or gone.
    fn reconcile_chat(self: &Arc<Self>, shutdown: &CancellationToken, tasks: &TaskTracker) {
        let director = &self.media.director;
        let wanted: Vec<String> = director
            .chat_streams()
            .into_iter()
            .filter(|s| self.media.registry.get(s).is_some_and(|st| !st.is_relayed()))
            .collect();
        let stale: Vec<String> = self.chat.lock().keys().filter(|k| !wanted.contains(k)).cloned().collect();
        for s in stale {
            if let Some(tok) = self.chat.lock().remove(&s) {
                tok.cancel();
            }
        }
        for source in wanted {
            if self.chat.lock().contains_key(&source) {
                continue;
            }
            // One of the `max_transcodes` slots, given back when the child's task ends.
            if !self.media.take_transcodes(1) {
                tracing::warn!(stream = %source, max = self.media.cfg.max_transcodes, "no chat output for this stream: [media] max_transcodes reached");
                continue;
            }
            let token = shutdown.child_token();
            self.chat.lock().insert(source.clone(), token.clone());
            let s = &director.settings;
            let r = Rendition {
                name: CHAT_SUFFIX.trim_start_matches('_').to_string(),
                height: s.chat_height,
                video_kbps: s.chat_kbps,
            };
            let me = self.clone();
            tasks.spawn(async move {
                me.run(&source, &r, true, token.clone()).await;
                me.media.give_back_transcodes(1);
                // Ended by itself (not switched off, which removed the entry and may
                // already have put a new one): forget it so a republish restarts it.
                if !token.is_cancelled() {
                    me.chat.lock().remove(&source);
                }
                if !me.media.director.chat_enabled(&source) {
                    let _ = tokio::fs::remove_file(me.media.director.chat_file(&source)).await;
                }
            });
        }
    }

    /// Sets (Some) or removes (None: back to `[media] renditions`) the ladder of
    /// `source`, stored on disk; a live source's children are restarted with it.
    pub fn set_ladder(self: &Arc<Self>, source: &str, ladder: Option<Vec<Rendition>>) -> Result<(), String> {
        if !crate::valid_stream_name(source) {
            return Err("invalid stream name".into());
        }
        if self.media.is_rendition(source) {
            return Err(format!("'{source}' is itself a rendition"));
        }
        if let Some(l) = &ladder {
            validate(l)?;
            if l.len() > self.media.cfg.max_transcodes {
                return Err(format!(
                    "a ladder of {} renditions exceeds [media] max_transcodes ({})",
                    l.len(),
                    self.media.cfg.max_transcodes
                ));
            }
            if let Some(bad) = l.iter().map(|r| rendition_stream(source, r)).find(|n| !crate::valid_stream_name(n)) {
                return Err(format!("rendition stream name {bad:?} is not a valid stream name (too long?)"));
            }
        }
        let text = {
            let mut ladders = self.media.ladders.write();
            match ladder {
                Some(l) => ladders.insert(source.to_string(), l),
                None => ladders.remove(source),
            };
            serde_json::to_string_pretty(&*ladders).unwrap_or_default()
        };
        std::fs::write(&self.path, text).map_err(|e| format!("ladder not stored: {}: {e}", self.path.display()))?;
        if self.media.registry.get(source).is_some() {
            self.source_down(source);
            self.source_up(source, &self.shutdown, &self.tasks);
        }
        Ok(())
    }

    fn source_up(self: &Arc<Self>, source: &str, shutdown: &CancellationToken, tasks: &TaskTracker) {
        let list = &self.media.ladder(source);
        if list.is_empty()
            || self.media.is_rendition(source)
            || source.ends_with(CHAT_SUFFIX)
            || onair_media::mix::is_internal(source)
        {
            return;
        }
        // A house slate is not worth a ladder (a still picture, played to few).
        if self.media.registry.get(source).is_some_and(|s| s.info.house == Some(crate::registry::HouseKind::Slate)) {
            return;
        }
        // A relayed stream (this node is an edge) is transcoded at its origin, whose
        // renditions an edge relays like any stream; transcoding here too would cost
        // CPU per edge and keep the pull alive with the ffmpeg children as viewers.
        if self.media.registry.get(source).is_some_and(|s| s.is_relayed()) {
            return;
        }
        if let Some(bad) = list.iter().map(|r| rendition_stream(source, r)).find(|n| !crate::valid_stream_name(n)) {
            tracing::warn!(stream = %source, rendition = %bad, "no renditions for this stream: the rendition name is not a valid stream name (too long?)");
            return;
        }
        let token = {
            let mut running = self.running.lock();
            if running.contains_key(source) {
                return;
            }
            if !self.media.take_transcodes(list.len()) {
                tracing::warn!(
                    stream = %source, used = self.media.transcodes(), max = self.media.cfg.max_transcodes,
                    "no renditions for this stream: [media] max_transcodes reached"
                );
                return;
            }
            let token = shutdown.child_token();
            running.insert(source.to_string(), (token.clone(), list.len()));
            token
        };
        for r in list.clone() {
            let me = self.clone();
            let (source, token) = (source.to_string(), token.clone());
            tasks.spawn(async move { me.run(&source, &r, false, token).await });
        }
    }

    fn source_down(&self, source: &str) {
        if let Some((tok, n)) = self.running.lock().remove(source) {
            tok.cancel();
            self.media.give_back_transcodes(n);
        }
    }

    /// One rendition (or, with `chat`, the chat output) child for the life of the
    /// source, restarted a few times with backoff if it dies while the source is still
    /// live. The watermark is read at every start.
    async fn run(&self, source: &str, r: &Rendition, chat: bool, stop: CancellationToken) {
        let out = if chat { chat_stream(source) } else { rendition_stream(source, r) };
        if self.media.rtmp_addr.is_none() {
            return;
        }
        let mut restarts = 0;
        loop {
            // Fresh signatures every attempt (they are checked only at connect).
            let src = self.media.loopback_play(source);
            let dst = self.media.loopback_push(&out);
            let watermark = self.media.director.watermark();
            let chat_file = if chat {
                match self.media.director.prepare_chat_file(source).await {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::error!(stream = %out, error = %e, "chat output: cannot write its text file");
                        break;
                    }
                }
            } else {
                None
            };
            let overlays = Overlays {
                text: &self.media.cfg.overlay_text,
                watermark: watermark.as_ref(),
                chat: chat_file
                    .as_deref()
                    .map(|file| ChatDraw { file, test_color: &self.media.director.settings.chat_test_color }),
            };
            let args = rendition_args(&src, &dst, r, &overlays);
            let started = tokio::time::Instant::now();
            tracing::info!(source = %source, stream = %out, height = r.height, "rendition started");
            let (status, err) = match run_ffmpeg(&self.ffmpeg, &args, &stop).await {
                Ok(Some(done)) => done,
                Ok(None) => {
                    tracing::info!(stream = %out, "rendition stopped");
                    return;
                }
                Err(e) => {
                    tracing::error!(stream = %out, error = %e, "rendition: cannot start ffmpeg");
                    break;
                }
            };
            if stop.is_cancelled() || self.media.registry.get(source).is_none() {
                tracing::info!(stream = %out, "rendition ended with its source");
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                restarts = 0; // it ran fine for a while: a fresh budget
            }
            restarts += 1;
            if restarts > MAX_RESTARTS {
                tracing::error!(stream = %out, ?status, stderr = %err, "rendition failed {MAX_RESTARTS} restarts; giving up until the source republishes");
                break;
            }
            let backoff = Duration::from_secs(1 << restarts);
            tracing::warn!(stream = %out, ?status, stderr = %err, restart = restarts, ?backoff, "rendition ffmpeg died; restarting");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Runs one ffmpeg child until it exits (its status and the tail of its stderr) or
/// `stop` is cancelled (`Ok(None)`: the child is killed).
pub(crate) async fn run_ffmpeg(
    ffmpeg: &str,
    args: &[String],
    stop: &CancellationToken,
) -> std::io::Result<Option<(Option<std::process::ExitStatus>, String)>> {
    let mut child = crate::spawn_ffmpeg(ffmpeg, args, false)?;
    // Keep only the tail of ffmpeg's stderr (it is `-loglevel error`, but bounded anyway).
    let tail = tokio::spawn(crate::stderr_tail(child.stderr.take()));
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = stop.cancelled() => {
            let _ = child.kill().await;
            tail.abort();
            return Ok(None);
        }
    };
    Ok(Some((status, tail.await.unwrap_or_default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, height: u32) -> Rendition {
        Rendition { name: name.into(), height, video_kbps: 600 }
    }

    #[test]
    fn names_and_recursion_guard() {
        let list = vec![r("360p", 360), r("240p", 240)];
        assert_eq!(rendition_stream("cam", &list[0]), "cam_360p");
        assert!(is_rendition("cam_360p", &list));
        assert!(is_rendition("cam_240p", &list));
        assert!(!is_rendition("cam", &list));
        assert!(!is_rendition("_360p", &list), "a bare suffix is a source name");
        assert!(!is_rendition("cam360p", &list));
        assert!(validate(&list).is_ok());
        assert!(validate(&[r("360p", 360), r("360p", 240)]).is_err());
        assert!(validate(&[r("a/b", 360)]).is_err());
        assert!(validate(&[r("tiny", 4)]).is_err());
        use figment::providers::{Format, Toml};
        let cfg: crate::MediaConfig = figment::Figment::new()
            .merge(Toml::string("renditions = [{ name = \"360p\", height = 360, video_kbps = 600 }]\n"))
            .extract()
            .unwrap_or_default();
        assert_eq!(cfg.renditions, vec![r("360p", 360)]);
        assert_eq!(cfg.max_transcodes, 4);
    }

    #[test]
    fn args_scale_overlay_and_urls() {
        let a = rendition_args(
            "rtmp://127.0.0.1:1935/live/cam",
            "rtmp://127.0.0.1:1935/live/cam_240p?x=1",
            &r("240p", 240),
            &Overlays { text: "OnAir", ..Default::default() },
        );
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(at("-i"), Some("rtmp://127.0.0.1:1935/live/cam"));
        let vf = at("-filter_complex").unwrap_or_default();
        assert!(vf.starts_with("[0:v]scale=-2:240,drawtext=text=OnAir:"), "{vf}");
        assert!(vf.ends_with("[vout]"), "{vf}");
        assert_eq!(at("-map"), Some("[vout]"));
        assert_eq!(at("-c:v"), Some("libx264"));
        assert_eq!(at("-preset"), Some("veryfast"));
        assert_eq!(at("-tune"), Some("zerolatency"));
        assert_eq!(at("-b:v"), Some("600k"));
        assert_eq!(at("-c:a"), Some("aac"));
        assert_eq!(at("-f"), Some("flv"));
        assert_eq!(a.last().map(String::as_str), Some("rtmp://127.0.0.1:1935/live/cam_240p?x=1"));
        let plain = rendition_args("s", "d", &r("360p", 360), &Overlays { text: "  ", ..Default::default() });
        assert_eq!(
            plain.iter().position(|s| s == "-filter_complex").map(|i| plain[i + 1].as_str()),
            Some("[0:v]scale=-2:360[vout]")
        );
    }

    #[test]
    fn args_watermark_and_chat() {
        let w = Watermark {
            path: "/data/director/watermark.png".into(),
            position: crate::director::Position::TopLeft,
            scale: 0.5,
            opacity: 0.8,
            margin: 10,
            width: 64,
            height: 32,
        };
        let file = std::path::Path::new("/data dir/it's:chat/cam.txt");
        let a = rendition_args(
            "src",
            "dst",
            &r("chat", 360),
            &Overlays { text: "", watermark: Some(&w), chat: Some(ChatDraw { file, test_color: "red" }) },
        );
        let inputs: Vec<&str> =
            a.iter().enumerate().filter(|(_, s)| *s == "-i").map(|(i, _)| a[i + 1].as_str()).collect();
        assert_eq!(inputs, vec!["src", "/data/director/watermark.png"]);
        let graph = a.iter().position(|s| s == "-filter_complex").map(|i| a[i + 1].as_str()).unwrap_or_default();
        assert!(
            graph.starts_with("[0:v]scale=-2:360[base];[1:v]format=rgba,scale=iw*0.5:ih*0.5,colorchannelmixer=aa=0.8[wm];[base][wm]overlay=x=10:y=10,drawtext=textfile="),
            "{graph}"
        );
        // The path is escaped at both levels; the chat text itself never is in the graph.
        assert!(graph.contains(r"textfile=/data dir/it\\\'s\\:chat/cam.txt:reload=1:"), "{graph}");
        assert!(graph.contains("fontcolor=red") && graph.contains("boxcolor=red"), "{graph}");
    }
}
