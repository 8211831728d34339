//! The Live Director's state shared by the API and the overlay children: the image
//! watermark (validated, stored in the data dir) and the chat-in-the-picture outputs
//! (which streams have one, and the text each draws).
//!
//! The children themselves are run by [`crate::renditions`] (the one overlay
//! pipeline): a rendition burns the text overlay and the watermark in; a chat output
//! (`{stream}_chat`, switched per stream by the room layer through
//! [`ChatOverlaySink`]) burns those and the room's recent chat. The chat text reaches
//! its child through a file `drawtext` re-reads every frame (`reload=1`), rewritten
//! atomically (temp file + rename) by one writer task: the filter graph is fixed at
//! start, so chat text can never become filter syntax, and no child restarts when a
//! line changes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use onair_media::overlay::ChatOverlaySink;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The suffix of a chat output: `{stream}_chat`.
pub const CHAT_SUFFIX: &str = "_chat";

/// The chat output of `stream`.
pub fn chat_stream(stream: &str) -> String {
    format!("{stream}{CHAT_SUFFIX}")
}

/// `[media.director]`: the chat output's bounds and look.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DirectorSettings {
    /// Lines of chat shown at once.
    pub chat_lines: usize,
    /// Characters per line.
    pub chat_chars: usize,
    /// Chat messages drawn per second (the rest are not drawn; gifts count apart).
    pub chat_per_sec: f64,
    /// Seconds a line stays.
    pub chat_hold_secs: u64,
    /// Output height of the chat output, pixels.
    pub chat_height: u32,
    /// Its video bitrate, kbit/s.
    pub chat_kbps: u32,
    /// Test mode: draw every line as a solid block of this colour (text and box the
    /// same colour, e.g. `red`), so a test can find chat in a decoded frame without
    /// OCR. Empty = normal (white text on a translucent box).
    pub chat_test_color: String,
}

impl Default for DirectorSettings {
    fn default() -> Self {
        DirectorSettings {
            chat_lines: 6,
            chat_chars: 48,
            chat_per_sec: 2.0,
            chat_hold_secs: 15,
            chat_height: 720,
            chat_kbps: 2500,
            chat_test_color: String::new(),
        }
    }
}

impl DirectorSettings {
    /// The board bounds the room layer applies.
    pub fn board(&self) -> onair_media::overlay::ChatBoardConfig {
        onair_media::overlay::ChatBoardConfig {
            max_lines: self.chat_lines.clamp(1, 20),
            max_chars: self.chat_chars.clamp(8, 200),
            per_sec: self.chat_per_sec.clamp(0.1, 50.0),
            hold_ms: self.chat_hold_secs.clamp(1, 3600) * 1000,
        }
    }

    /// Checks the values (at start).
    pub fn validate(&self) -> Result<(), String> {
        if !(16..=4320).contains(&self.chat_height) {
            return Err(format!("[media.director] chat_height {} not in 16..=4320", self.chat_height));
        }
        if !(32..=100_000).contains(&self.chat_kbps) {
            return Err(format!("[media.director] chat_kbps {} not in 32..=100000", self.chat_kbps));
        }
        if !self.chat_test_color.chars().all(|c| c.is_ascii_alphanumeric() || c == '#' || c == '@' || c == '.') {
            return Err(format!(
                "[media.director] chat_test_color {:?}: a colour name or 0xRRGGBB",
                self.chat_test_color
            ));
        }
        Ok(())
    }
}

/// Where a watermark sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    /// Top left corner.
    TopLeft,
    /// Top right corner.
    TopRight,
    /// Bottom left corner.
    BottomLeft,
    /// Bottom right corner.
    BottomRight,
    /// Centred.
    Center,
}

impl Position {
    /// Parses the API's name.
    pub fn parse(s: &str) -> Option<Position> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }

    /// The `overlay` filter's `x:y` for a margin of `m` pixels.
    pub fn overlay_xy(self, m: u32) -> String {
        match self {
            Position::TopLeft => format!("x={m}:y={m}"),
            Position::TopRight => format!("x=W-w-{m}:y={m}"),
            Position::BottomLeft => format!("x={m}:y=H-h-{m}"),
            Position::BottomRight => format!("x=W-w-{m}:y=H-h-{m}"),
            Position::Center => "x=(W-w)/2:y=(H-h)/2".into(),
        }
    }
}

/// The watermark in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watermark {
    /// The stored PNG (in the data dir).
    pub path: PathBuf,
    /// Where.
    pub position: Position,
    /// Size factor of the image's own pixels (0.05..=4).
    pub scale: f32,
    /// 0 (invisible) ..= 1 (as drawn).
    pub opacity: f32,
    /// Margin from the edges, pixels.
    pub margin: u32,
    /// The image's size as ffprobe read it.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Watermark {
    /// The API's view (the path relative to nothing a client can use: only the name).
    pub fn view(&self) -> Value {
        json!({
            "position": self.position, "scale": self.scale, "opacity": self.opacity, "margin": self.margin,
            "width": self.width, "height": self.height,
        })
    }
}

/// A refused watermark: the API answers 400 with this sentence (415 when `media`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WatermarkError {
    /// The reason.
    pub message: String,
    /// True when the file is not a PNG image at all.
    pub not_image: bool,
}

fn refuse(message: impl Into<String>, not_image: bool) -> WatermarkError {
    WatermarkError { message: message.into(), not_image }
}

/// The eight bytes every PNG file starts with.
pub const PNG_MAGIC: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Largest watermark file accepted.
pub const MAX_WATERMARK_BYTES: usize = 4 * 1024 * 1024;

/// Checks the placement numbers.
pub fn check_placement(scale: f32, opacity: f32, margin: u32) -> Result<(), WatermarkError> {
    if !(0.05..=4.0).contains(&scale) {
        return Err(refuse(format!("scale {scale} not in 0.05..=4 (a factor of the image's own size)"), false));
    }
    if !(0.0..=1.0).contains(&opacity) {
        return Err(refuse(format!("opacity {opacity} not in 0..=1"), false));
    }
    if margin > 1000 {
        return Err(refuse(format!("margin {margin} not in 0..=1000 pixels"), false));
    }
    Ok(())
}

/// The director's state.
pub struct Director {
    /// `[media.director]`.
    pub settings: DirectorSettings,
    dir: PathBuf,
    ffprobe: String,
    watermark: RwLock<Option<Watermark>>,
    /// Streams whose chat output is switched on.
    chat_on: Mutex<HashSet<String>>,
    /// The text each chat output draws now, and which changed since the last write.
    texts: Mutex<(HashMap<String, String>, HashSet<String>)>,
    write: Notify,
    /// Signalled when the set of chat outputs changes (the renditions task reconciles).
    pub changed: Notify,
}

impl Director {
    /// Loads the stored watermark and starts the chat text writer.
    pub fn start(
        settings: DirectorSettings,
        data_dir: &Path,
        ffmpeg: &str,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Arc<Director> {
        let dir = data_dir.join("director");
        let watermark = std::fs::read(dir.join("watermark.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Watermark>(&b).ok())
            .filter(|w| w.path.is_file());
        let d = Arc::new(Director {
            settings,
            dir,
            ffprobe: ffprobe_of(ffmpeg),
            watermark: RwLock::new(watermark),
            chat_on: Mutex::new(HashSet::new()),
            texts: Mutex::new((HashMap::new(), HashSet::new())),
            write: Notify::new(),
            changed: Notify::new(),
        });
        let w = d.clone();
        tasks.spawn(async move { w.write_texts(shutdown).await });
        d
    }

    /// The watermark in force.
    pub fn watermark(&self) -> Option<Watermark> {
        self.watermark.read().clone()
    }

    /// Validates `png` (magic bytes, then ffprobe must read one PNG image), stores it
    /// in the data dir and makes it the watermark of every overlay child started from
    /// now on.
    pub async fn set_watermark(
        &self,
        png: &[u8],
        position: Position,
        scale: f32,
        opacity: f32,
        margin: u32,
    ) -> Result<Watermark, WatermarkError> {
        check_placement(scale, opacity, margin)?;
        if png.len() > MAX_WATERMARK_BYTES {
            return Err(refuse(format!("{} bytes: the limit is {MAX_WATERMARK_BYTES}", png.len()), false));
        }
        if !png.starts_with(PNG_MAGIC) {
            return Err(refuse("not a PNG image (the file does not start with the PNG signature)", true));
        }
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| refuse(format!("cannot store it: {e}"), false))?;
        let tmp = self.dir.join(format!("upload-{}.png", onair_shell::random_hex(6)));
        tokio::fs::write(&tmp, png).await.map_err(|e| refuse(format!("cannot store it: {e}"), false))?;
        let probed = probe_png(&self.ffprobe, &tmp).await;
        let (width, height) = match probed {
            Ok(size) => size,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let path = self.dir.join("watermark.png");
        tokio::fs::rename(&tmp, &path).await.map_err(|e| refuse(format!("cannot store it: {e}"), false))?;
        let w = Watermark { path, position, scale, opacity, margin, width, height };
        let json = serde_json::to_vec_pretty(&w).unwrap_or_default();
        atomic_write(&self.dir.join("watermark.json"), &json)
            .await
            .map_err(|e| refuse(format!("cannot store it: {e}"), false))?;
        *self.watermark.write() = Some(w.clone());
        tracing::info!(width, height, ?position, scale, opacity, "watermark set");
        Ok(w)
    }

    /// Removes the watermark (children started from now on have none).
    pub async fn clear_watermark(&self) -> bool {
        let had = self.watermark.write().take().is_some();
        let _ = tokio::fs::remove_file(self.dir.join("watermark.json")).await;
        let _ = tokio::fs::remove_file(self.dir.join("watermark.png")).await;
        had
    }

    /// Whether `stream` has its chat output switched on.
    pub fn chat_enabled(&self, stream: &str) -> bool {
        self.chat_on.lock().contains(stream)
    }

    /// The streams with a chat output switched on.
    pub fn chat_streams(&self) -> Vec<String> {
        self.chat_on.lock().iter().cloned().collect()
    }

    /// The file the chat output of `stream` reads its text from.
    pub fn chat_file(&self, stream: &str) -> PathBuf {
        self.dir.join("chat").join(format!("{stream}.txt"))
    }

    /// Writes the current text of `stream`'s chat output now (before its child
    /// starts: `drawtext` needs the file to exist).
    pub async fn prepare_chat_file(&self, stream: &str) -> std::io::Result<PathBuf> {
        let path = self.chat_file(stream);
        let text = self.texts.lock().0.get(stream).cloned().unwrap_or_default();
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        atomic_write(&path, text.as_bytes()).await?;
        Ok(path)
    }

    async fn write_texts(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.write.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            let batch: Vec<(String, String)> = {
                let mut t = self.texts.lock();
                let (texts, dirty) = &mut *t;
                dirty.drain().map(|s| (texts.get(&s).cloned().unwrap_or_default(), s)).map(|(x, s)| (s, x)).collect()
            };
            for (stream, text) in batch {
                // Only for outputs that exist: a switched-off stream's file is gone.
                if !self.chat_enabled(&stream) {
                    continue;
                }
                let path = self.chat_file(&stream);
                if let Some(parent) = path.parent() {
                    let _ = tokio::fs::create_dir_all(parent).await;
                }
                if let Err(e) = atomic_write(&path, text.as_bytes()).await {
                    tracing::warn!(stream, error = %e, "chat output: cannot write its text file");
                }
            }
        }
    }
}

impl ChatOverlaySink for Director {
    fn set_enabled(&self, stream: &str, on: bool) {
        if !crate::valid_stream_name(&chat_stream(stream)) {
            return;
        }
        let changed = {
            let mut set = self.chat_on.lock();
            if on { set.insert(stream.to_string()) } else { set.remove(stream) }
        };
        if !on {
            // The file goes when the child has stopped (renditions.rs): removed now, a
            // child still reading it would fail and be taken for a crash.
            self.texts.lock().0.remove(stream);
        }
        if changed {
            tracing::info!(stream, on, "chat output switched");
            self.changed.notify_one();
        }
    }

    fn set_text(&self, stream: &str, text: &str) {
        let mut t = self.texts.lock();
        if t.0.get(stream).is_some_and(|old| old == text) {
            return;
        }
        t.0.insert(stream.to_string(), text.to_string());
        t.1.insert(stream.to_string());
        drop(t);
        self.write.notify_one();
    }
}

/// Temp file + rename: a reader (ffmpeg re-reading every frame) sees the old or the
/// new content, never half of one.
pub async fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", onair_shell::random_hex(4)));
    tokio::fs::write(&tmp, bytes).await?;
    match tokio::fs::rename(&tmp, path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// The ffprobe beside the configured ffmpeg (`/opt/ff/ffmpeg` → `/opt/ff/ffprobe`).
pub fn ffprobe_of(ffmpeg: &str) -> String {
    match ffmpeg.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{}", name.replacen("ffmpeg", "ffprobe", 1)),
        None => ffmpeg.replacen("ffmpeg", "ffprobe", 1),
    }
}

/// ffprobe must find exactly one PNG video stream; its size.
async fn probe_png(ffprobe: &str, file: &Path) -> Result<(u32, u32), WatermarkError> {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::process::Command::new(ffprobe)
            .args(["-v", "error", "-show_entries", "stream=codec_name,codec_type,width,height", "-of", "json"])
            .arg(file)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let out = match out {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Err(refuse(format!("cannot check the image: ffprobe ({ffprobe}) did not run: {e}"), false));
        }
        Err(_) => return Err(refuse("cannot check the image: ffprobe took longer than 10 s", false)),
    };
    let why = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("").trim().to_string();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    match streams.as_slice() {
        [s] if out.status.success() && s["codec_name"] == "png" && s["codec_type"] == "video" => {
            let w = s["width"].as_u64().unwrap_or(0) as u32;
            let h = s["height"].as_u64().unwrap_or(0) as u32;
            if w == 0 || h == 0 {
                return Err(refuse("not a readable PNG image (ffprobe: no picture size in it)", true));
            }
            if w > 4096 || h > 4096 {
                return Err(refuse(format!("a {w}x{h} image: each side must be 1..=4096 pixels"), false));
            }
            Ok((w, h))
        }
        _ => Err(refuse(
            format!(
                "not a readable PNG image (ffprobe: {})",
                if why.is_empty() { "no PNG image stream".to_string() } else { why }
            ),
            true,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_placements_and_names() {
        assert_eq!(Position::parse("top-right"), Some(Position::TopRight));
        assert_eq!(Position::parse("middle"), None);
        assert_eq!(Position::BottomRight.overlay_xy(8), "x=W-w-8:y=H-h-8");
        assert!(check_placement(0.5, 0.8, 10).is_ok());
        assert!(check_placement(0.0, 0.8, 10).is_err());
        assert!(check_placement(1.0, 1.5, 10).is_err());
        assert_eq!(ffprobe_of("ffmpeg"), "ffprobe");
        assert_eq!(ffprobe_of("/opt/ffmpeg-7/bin/ffmpeg"), "/opt/ffmpeg-7/bin/ffprobe");
        assert_eq!(chat_stream("cam"), "cam_chat");
        assert!(DirectorSettings::default().validate().is_ok());
        let bad = DirectorSettings { chat_test_color: "red:x=1".into(), ..Default::default() };
        assert!(bad.validate().is_err(), "the colour goes into a filter graph");
    }
}
