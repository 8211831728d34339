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
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
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
    #[serde(default = "default_kbps")]
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

/// Escapes `text` for a `drawtext=text=…` value inside a `-vf` filter graph: first the
/// option level (`\ ' :`), then the filter-graph level (`\ ' [ ] , ;`), as the ffmpeg
/// filter docs describe. No shell is involved (the graph is one argv entry).
pub fn escape_drawtext(text: &str) -> String {
    let mut level1 = String::with_capacity(text.len() * 2);
    for c in text.chars().filter(|c| !c.is_control()) {
        if matches!(c, '\\' | '\'' | ':') {
            level1.push('\\');
        }
        level1.push(c);
    }
    let mut level2 = String::with_capacity(level1.len() * 2);
    for c in level1.chars() {
        if matches!(c, '\\' | '\'' | '[' | ']' | ',' | ';') {
            level2.push('\\');
        }
        level2.push(c);
    }
    level2
}

/// The ffmpeg arguments that read `src`, scale to `r.height`, burn in `overlay` (empty =
/// none), encode H.264 (veryfast, zerolatency, 1 s-ish GOP) + AAC and publish to `dst`.
pub fn rendition_args(src: &str, dst: &str, r: &Rendition, overlay: &str) -> Vec<String> {
    let mut vf = format!("scale=-2:{}", r.height);
    if !overlay.trim().is_empty() {
        // expansion=none: a `%` in the text is literal, not a drawtext function.
        let size = (r.height / 12).max(10);
        vf.push_str(&format!(
            ",drawtext=text={}:expansion=none:fontcolor=white:fontsize={size}:box=1:boxcolor=black@0.5:x=w-tw-{pad}:y={pad}",
            escape_drawtext(overlay.trim()),
            pad = size / 2,
        ));
    }
    let kbps = r.video_kbps;
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "10000000", "-i", src]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["-vf".to_string(), vf]);
    a.extend(live_encode_args(kbps, 96, dst));
    a
}

/// The encoder half of a transcoding child's arguments (renditions and co-host mixes):
/// H.264 (x264 veryfast, zerolatency, a keyframe every second, `kbps` capped) and AAC
/// 44.1 kHz at `audio_kbps`, published as FLV to `dst`.
pub(crate) fn live_encode_args(kbps: u32, audio_kbps: u32, dst: &str) -> Vec<String> {
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
        "44100".into(),
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
}

impl Renditions {
    /// Starts the feature when renditions are configured, ffmpeg is present and the RTMP
    /// listener is on; otherwise logs why it is off and returns None.
    pub async fn start(media: Arc<MediaService>, shutdown: CancellationToken, tasks: TaskTracker) -> Option<Arc<Self>> {
        let cfg = &media.cfg;
        if cfg.renditions.is_empty() {
            return None;
        }
        if let Err(e) = validate(&cfg.renditions) {
            tracing::error!("renditions off: {e}");
            return None;
        }
        if media.rtmp_addr.is_none() {
            tracing::warn!("renditions off: they need the RTMP listener ([rtmp] listen)");
            return None;
        }
        let ffmpeg = cfg.hls.ffmpeg.clone();
        if !crate::hls::ffmpeg_available(&ffmpeg).await {
            tracing::warn!(ffmpeg = %ffmpeg, "renditions off: ffmpeg not found (install ffmpeg or set [media] ffmpeg)");
            return None;
        }
        let names: Vec<&str> = cfg.renditions.iter().map(|r| r.name.as_str()).collect();
        tracing::info!(?names, overlay = %cfg.overlay_text, max = cfg.max_transcodes, "renditions on");
        let me = Arc::new(Renditions { media: media.clone(), ffmpeg, running: Mutex::new(HashMap::new()) });
        let r = me.clone();
        let mut events = media.registry.watch();
        tasks.clone().spawn(async move {
            for s in r.media.registry.list() {
                r.source_up(&s.name, &shutdown, &tasks);
            }
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(RegistryEvent::Published(name)) => r.source_up(&name, &shutdown, &tasks),
                    Ok(RegistryEvent::Unpublished(name)) => r.source_down(&name),
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
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            for (_, (tok, n)) in r.running.lock().drain() {
                tok.cancel();
                r.media.give_back_transcodes(n);
            }
        });
        Some(me)
    }

    fn source_up(self: &Arc<Self>, source: &str, shutdown: &CancellationToken, tasks: &TaskTracker) {
        let list = &self.media.cfg.renditions;
        if is_rendition(source, list) || onair_media::mix::is_internal(source) {
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
            tasks.spawn(async move { me.run(&source, &r, token).await });
        }
    }

    fn source_down(&self, source: &str) {
        if let Some((tok, n)) = self.running.lock().remove(source) {
            tok.cancel();
            self.media.give_back_transcodes(n);
        }
    }

    /// One rendition child for the life of the source, restarted a few times with
    /// backoff if it dies while the source is still live.
    async fn run(&self, source: &str, r: &Rendition, stop: CancellationToken) {
        let out = rendition_stream(source, r);
        if self.media.rtmp_addr.is_none() {
            return;
        }
        let mut restarts = 0;
        loop {
            // Fresh signatures every attempt (they are checked only at connect).
            let src = self.media.loopback_play(source);
            let dst = self.media.loopback_push(&out);
            let args = rendition_args(&src, &dst, r, &self.media.cfg.overlay_text);
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
    let mut child = tokio::process::Command::new(ffmpeg)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // Keep only the tail of ffmpeg's stderr (it is `-loglevel error`, but bounded anyway).
    let mut stderr = child.stderr.take();
    let tail = tokio::spawn(async move {
        let mut keep = Vec::new();
        let mut buf = [0u8; 4096];
        if let Some(e) = stderr.as_mut() {
            while let Ok(n) = e.read(&mut buf).await {
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
    });
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
            "OnAir",
        );
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(at("-i"), Some("rtmp://127.0.0.1:1935/live/cam"));
        let vf = at("-vf").unwrap_or_default();
        assert!(vf.starts_with("scale=-2:240,drawtext=text=OnAir:"), "{vf}");
        assert_eq!(at("-c:v"), Some("libx264"));
        assert_eq!(at("-preset"), Some("veryfast"));
        assert_eq!(at("-tune"), Some("zerolatency"));
        assert_eq!(at("-b:v"), Some("600k"));
        assert_eq!(at("-c:a"), Some("aac"));
        assert_eq!(at("-f"), Some("flv"));
        assert_eq!(a.last().map(String::as_str), Some("rtmp://127.0.0.1:1935/live/cam_240p?x=1"));
        let plain = rendition_args("s", "d", &r("360p", 360), "  ");
        assert_eq!(plain.iter().position(|s| s == "-vf").map(|i| plain[i + 1].as_str()), Some("scale=-2:360"));
    }

    #[test]
    fn drawtext_escaping() {
        // The ffmpeg filter docs' own example.
        assert_eq!(
            escape_drawtext("this is a 'string': may contain one, or more, special characters"),
            r"this is a \\\'string\\\'\\: may contain one\, or more\, special characters"
        );
        assert_eq!(escape_drawtext("a[b];c\n"), r"a\[b\]\;c");
    }
}
