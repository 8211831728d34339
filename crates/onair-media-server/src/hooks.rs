//! Stream lifecycle fan-out: to the room layer ([`StreamObserver`]) and to the
//! business backend as stream callbacks in the streaming service's format
//! (docs/cloud-compat.md, "Stream callbacks"): `POST` JSON with `event_type` 1 (publish), 0 (unpublish),
//! 100 (recording), 200 (snapshot), `t` (signature expiry) and `sign = MD5(key + t)`.
//! OnAir adds `event_type` 400 (a monitoring alert raised or cleared: `alert`,
//! `state`, `detail`; see `onair_media::monitor`) in the same envelope.
//!
//! Callbacks go through the shells' one webhook dispatcher (a bounded queue, one
//! worker, a timeout and a couple of retries): they never block media, and when the
//! queue is full they are dropped and counted (`onair_stream_callbacks_dropped_total`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onair_shell::http::HttpClient;
use onair_shell::webhook::{Delivery, Dispatcher, RetryPolicy};
use serde_json::{Value, json};

use crate::MediaConfig;
use crate::registry::Stream;
use onair_shell::{now_ms, now_secs};

pub use onair_media::lifecycle::{StreamLifecycle, StreamObserver};
use onair_media::monitor::AlertChange;

/// A finished recording (callback 100).
#[derive(Debug, Clone, Default)]
pub struct RecordingInfo {
    /// Replay URL.
    pub url: String,
    /// File id / name.
    pub file_id: String,
    /// `flv`, `hls`, `mp4`.
    pub file_format: String,
    /// Unix seconds.
    pub start_time: u64,
    /// Unix seconds.
    pub end_time: u64,
    /// Seconds.
    pub duration: u64,
    /// Bytes.
    pub file_size: u64,
}

/// A snapshot (callback 200).
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// Path on this server.
    pub pic_url: String,
    /// Absolute URL.
    pub pic_full_url: String,
    /// Bytes.
    pub file_size: u64,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
}

/// Observer + callback queue.
pub struct Hooks {
    observer: Arc<dyn StreamObserver>,
    dispatcher: Option<Dispatcher>,
    url: String,
    key: String,
    sdkappid: u64,
}

impl Hooks {
    /// Starts the callback worker when a URL is configured.
    pub fn start(cfg: &MediaConfig, sdkappid: u64, observer: Arc<dyn StreamObserver>) -> Hooks {
        let dispatcher = (!cfg.callback_url.is_empty()).then(|| {
            let timeout = Duration::from_millis(cfg.callback_timeout_ms.max(100));
            let policy = RetryPolicy { attempts: 3, first_delay: Duration::from_millis(500), timeout };
            Dispatcher::start(HttpClient::new(timeout), policy, 1024, 1, "onair_stream_callbacks_dropped_total")
        });
        Hooks { observer, dispatcher, url: cfg.callback_url.clone(), key: cfg.callback_key.clone(), sdkappid }
    }

    fn send(&self, event_type: u32, mut body: Value) {
        let Some(dispatcher) = &self.dispatcher else { return };
        let t = now_secs() + 600;
        if let Value::Object(map) = &mut body {
            map.insert("event_type".into(), json!(event_type));
            map.insert("t".into(), json!(t));
            map.insert("sign".into(), json!(onair_auth::stream_callback_sign(&self.key, t)));
            map.insert("appid".into(), json!(self.sdkappid));
            map.insert("appname".into(), json!("live"));
        }
        let label = match event_type {
            1 => "stream_publish",
            0 => "stream_unpublish",
            100 => "stream_recording",
            400 => "stream_alert",
            _ => "stream_snapshot",
        };
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let url = self.url.clone();
        dispatcher.send(Delivery { url: Box::new(move || url.clone()), body, label });
    }

    fn base(stream: &Stream) -> Value {
        let m = stream.metadata();
        json!({
            "app": "",
            "stream_id": stream.name,
            "channel_id": stream.name,
            "event_time": now_secs(),
            "sequence": stream.info.sequence.to_string(),
            "node": "onair",
            "user_ip": stream.info.client_ip,
            "stream_param": stream.info.stream_param,
            "width": m.width.unwrap_or(0),
            "height": m.height.unwrap_or(0),
            "set_id": 1,
            "errcode": 0,
            "errmsg": "ok",
        })
    }

    /// A stream started publishing.
    pub fn published(&self, stream: &Stream) {
        let m = stream.metadata();
        let info = json!({
            "codecs": {"video": m.video_codec_id.map(codec_name_video), "audio": m.audio_codec_id.map(codec_name_audio)},
            "width": m.width,
            "height": m.height,
            "frameRate": m.frame_rate,
            "startedAt": stream.info.started_at_ms,
        });
        self.observer.on_stream(&stream.name, StreamLifecycle::Published { info });
        if onair_media::mix::is_internal(&stream.name) {
            // The mixer's own streams (`S.raw`, `S.mix`, one per mix generation) are
            // plumbing: the business backend hears of `S`, not of them.
            return;
        }
        self.send(1, Self::base(stream));
    }

    /// A stream stopped (the mixer's internal streams send no callback and raise no
    /// alert); `errcode`/`errmsg` say why (1 = the client closed, 8 = no
    /// data, 6 = protocol error, as in the streaming service's list).
    pub fn unpublished(&self, stream: &Stream, errcode: u32, errmsg: &str) {
        self.observer.on_stream(&stream.name, StreamLifecycle::Unpublished);
        if onair_media::mix::is_internal(&stream.name) {
            return;
        }
        let changes = stream.monitor().lock().end(now_ms(), errmsg);
        self.alerts(&stream.name, &changes);
        let mut body = Self::base(stream);
        body["push_duration"] = json!(now_ms().saturating_sub(stream.info.started_at_ms).to_string());
        body["errcode"] = json!(errcode);
        body["errmsg"] = json!(errmsg);
        self.send(0, body);
    }

    /// Monitoring alerts raised or cleared for `stream`: the metrics, a log line and
    /// callback 400 each (none for the mixer's internal streams).
    pub fn alerts(&self, stream: &str, changes: &[AlertChange]) {
        if onair_media::mix::is_internal(stream) {
            // A mix generation ending is not a publisher gone (see `published`).
            return;
        }
        for c in changes {
            let alert = c.kind.name();
            metrics::gauge!("onair_stream_alert_active", "stream" => stream.to_string(), "alert" => alert)
                .set(if c.raised { 1.0 } else { 0.0 });
            if c.raised {
                metrics::counter!("onair_stream_alerts_total", "alert" => alert).increment(1);
                tracing::warn!(stream, alert, detail = %c.detail, "stream alert");
            } else {
                tracing::info!(stream, alert, detail = %c.detail, "stream alert cleared");
            }
            self.send(
                400,
                json!({
                    "stream_id": stream, "channel_id": stream, "event_time": c.at_ms / 1000,
                    "alert": alert, "state": if c.raised { "raised" } else { "cleared" }, "detail": c.detail,
                }),
            );
        }
    }

    /// See [`crate::MediaService::recording_ready`].
    pub fn recording_ready(&self, stream: &str, r: RecordingInfo) {
        self.observer.on_stream(stream, StreamLifecycle::RecordingReady { url: r.url.clone() });
        self.send(
            100,
            json!({
                "stream_id": stream, "channel_id": stream, "file_id": r.file_id, "file_format": r.file_format,
                "start_time": r.start_time, "end_time": r.end_time, "duration": r.duration,
                "file_size": r.file_size, "stream_param": "", "video_url": r.url,
            }),
        );
    }

    /// See [`crate::MediaService::snapshot_taken`].
    pub fn snapshot_taken(&self, stream: &str, s: SnapshotInfo) {
        self.send(
            200,
            json!({
                "stream_id": stream, "channel_id": stream, "create_time": now_secs(), "file_size": s.file_size,
                "width": s.width, "height": s.height, "pic_url": s.pic_url, "pic_full_url": s.pic_full_url,
            }),
        );
    }
}

fn codec_name_video(id: u32) -> String {
    if id == 7 { "h264".into() } else { format!("flv-video-{id}") }
}

fn codec_name_audio(id: u32) -> String {
    if id == 10 { "aac".into() } else { format!("flv-audio-{id}") }
}
