//! The Live Director end to end, with real peers: ffmpeg publishes a solid blue
//! picture; the server's own ffmpeg children burn chat (solid-colour test mode) and a
//! PNG watermark into their outputs, which an ffmpeg reader decodes to raw pixels to
//! compare regions; a webhook receiver in the test gets the monitoring alerts when a
//! publisher stops sending keyframes and when one goes; the history API reads
//! plausible numbers for an ffmpeg push. Skips with a message without ffmpeg.

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use common::*;
use media_util::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const W: usize = 640;
const H: usize = 360;

/// ffmpeg publishing a solid blue 640x360 picture (1 s GOP) with a tone.
fn publish_blue(url: &str, secs: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "color=c=blue:size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p"])
        .args(["-b:v", "300k", "-c:a", "aac", "-t", &secs.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// One decoded frame of a live HTTP-FLV stream as RGB24 (640x360).
async fn grab(s: &Server, stream: &str) -> Vec<u8> {
    let url = format!("http://127.0.0.1:{}/live/{stream}.flv", s.port);
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "8000000", "-i", &url])
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.stdout.len(), W * H * 3, "a {W}x{H} frame of {stream}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Share of the pixels of the rectangle [x0,x1)×[y0,y1) for which `is` holds.
fn share(rgb: &[u8], (x0, y0, x1, y1): (usize, usize, usize, usize), is: impl Fn(u8, u8, u8) -> bool) -> f64 {
    let mut hit = 0;
    for y in y0..y1 {
        for x in x0..x1 {
            let i = (y * W + x) * 3;
            if is(rgb[i], rgb[i + 1], rgb[i + 2]) {
                hit += 1;
            }
        }
    }
    hit as f64 / ((x1 - x0) * (y1 - y0)) as f64
}

fn red(r: u8, g: u8, b: u8) -> bool {
    r > 180 && g < 80 && b < 80
}

fn blue(r: u8, g: u8, b: u8) -> bool {
    b > 180 && r < 80 && g < 80
}

fn green(r: u8, g: u8, b: u8) -> bool {
    g > 180 && r < 80 && b < 80
}

/// One raw HTTP/1.1 request with a binary body; status and body as JSON.
async fn send_bytes(s: &Server, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

/// A PNG made by ffmpeg: a solid square of `color`.
async fn png(dir: &std::path::Path, color: &str, size: u32) -> Vec<u8> {
    let file = dir.join(format!("{color}.png"));
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi"])
        .args(["-i", &format!("color=c={color}:size={size}x{size}"), "-frames:v", "1", "-y"])
        .arg(&file)
        .status()
        .await
        .unwrap();
    assert!(ok.success());
    std::fs::read(&file).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sent_during_the_stream_is_burned_into_the_chat_output() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start_with_env(
        &media_toml(
            "record = false\nsnapshot_secs = 0\n\
             [media.director]\nchat_height = 360\nchat_kbps = 400\nchat_test_color = \"red\"\nchat_per_sec = 5.0\n",
        ),
        &[("ONAIR_LOG", "warn,onair_media_server::renditions=info,onair_media_server::director=info")],
    )
    .await;
    s.create_room("show").await;
    let (status, v) = s.http("PUT", &s.admin("/api/v1/rooms/show/stream"), Some(&json!({"stream": "cam"}))).await;
    assert_eq!(status, 200, "{v}");
    // Only the room's managers switch it.
    let (status, _) =
        s.http("PUT", &s.as_user("/api/v1/rooms/show/chat-overlay", "mallory"), Some(&json!({"enabled": true}))).await;
    assert_eq!(status, 403);
    // A word list: what it refuses is never drawn.
    let (status, v) = s
        .http(
            "PUT",
            &s.admin("/api/v1/rooms/show/filter"),
            Some(&json!({"words": ["forbiddenword"], "action": "reject"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    // Switched on before the anchor pushes: the output starts with the stream.
    let (status, v) = s.http("PUT", &s.admin("/api/v1/rooms/show/chat-overlay"), Some(&json!({"enabled": true}))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["enabled"].as_bool(), v["output"].as_str()), (Some(true), Some("cam_chat")), "{v}");
    let _src = publish_blue(&push_url(&s, "cam"), 60);
    wait_live(&s, "cam").await;
    wait_live(&s, "cam_chat").await;

    // Bottom left, where the lines are drawn: blue before any chat.
    let region = (12, H - 26, 60, H - 18);
    let before = grab(&s, "cam_chat").await;
    assert!(share(&before, region, blue) > 0.9, "no chat yet: blue");

    let mut viewer = s.login_client("viewer", "Web").await;
    viewer.join_ok("show").await;
    let refused = viewer.send_text("show", "forbiddenword", "Normal", 1).await;
    assert_ne!(refused["code"], 0, "{refused}");
    // Hostile text: filter-graph syntax and a line break are drawn as text, never run.
    let hostile = "x'],drawtext=PWN:s=9[a];\n[b]";
    let ack = viewer.send_text("show", hostile, "Normal", 2).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let (_, v) = s.http("GET", "/api/v1/rooms/show/chat-overlay", None).await;
    let lines: Vec<String> = v["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    assert_eq!(lines, vec!["viewer: x'],drawtext=PWN:s=9[a]; [b]".to_string()], "{v}");
    // The frames after the next keyframe (the HTTP-FLV reader starts at one) carry it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = grab(&s, "cam_chat").await;
    let red_share = share(&after, region, red);
    assert!(red_share > 0.9, "chat drawn as a solid red block: {red_share}");
    // The source itself is untouched (the web page draws its own danmaku).
    let source = grab(&s, "cam").await;
    assert!(share(&source, region, blue) > 0.9, "the source has no chat");

    // The child kept running on the hostile text (no restart), and switching off ends the output.
    let (status, v) =
        s.http("PUT", &s.admin("/api/v1/rooms/show/chat-overlay"), Some(&json!({"enabled": false}))).await;
    assert_eq!((status, v["enabled"].as_bool()), (200, Some(false)), "{v}");
    eventually("the chat output ends when switched off", Duration::from_secs(10), || async {
        s.http("GET", "/api/v1/streams/cam_chat", None).await.0 == 404
    })
    .await;
    let log = s.stderr();
    assert!(!log.iter().any(|l| l.contains("restarting") || l.contains("giving up")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_png_watermark_is_burned_in_and_non_images_are_refused() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml(
        "record = false\nsnapshot_secs = 0\nrenditions = [{ name = \"low\", height = 360, video_kbps = 400 }]\n",
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = "/api/v1/admin/watermark?position=top-left&scale=1&opacity=1&margin=10";

    // Admins only.
    let (status, _) = send_bytes(&s, "PUT", path, "image/png", b"x").await;
    assert_eq!(status, 401);
    // Not an image: refused by its first bytes, with a reason.
    let (status, v) = send_bytes(&s, "PUT", &s.admin(path), "image/png", b"GIF89a hello, not a png").await;
    assert_eq!(status, 415, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not a PNG image"), "{v}");
    // Over the 4 MiB limit: 413 in the API's JSON shape, the limit named (not axum's
    // plain text). One byte over, so the server has read all of it when it answers.
    let big = vec![0u8; 4 * 1024 * 1024 + 1];
    let (status, v) = send_bytes(&s, "PUT", &s.admin(path), "image/png", &big).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["code"], 93000, "{v}");
    assert!(v["message"].as_str().unwrap().contains("4 MiB"), "{v}");
    // A JSON body over the JSON limit anywhere: the same answer, its own limit named.
    let json_body = format!("{{\"enabled\": true{}}}", " ".repeat(2 * 1024 * 1024));
    let (status, v) =
        send_bytes(&s, "PUT", &s.admin("/api/v1/rooms/any/chat-overlay"), "application/json", json_body.as_bytes())
            .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["code"], 93000, "{v}");
    assert!(v["message"].as_str().unwrap().contains("2 MiB"), "{v}");
    // PNG magic bytes but no image behind them: ffprobe says no.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend_from_slice(&[0u8; 200]);
    let (status, v) = send_bytes(&s, "PUT", &s.admin(path), "image/png", &fake).await;
    assert_eq!(status, 415, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not a readable PNG image"), "{v}");
    // Bad placement and paths outside the data dir.
    let lime = png(dir.path(), "lime", 64).await;
    let (status, v) =
        send_bytes(&s, "PUT", &s.admin("/api/v1/admin/watermark?position=middle"), "image/png", &lime).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) =
        s.http("PUT", &s.admin("/api/v1/admin/watermark"), Some(&json!({"path": "../../etc/passwd"}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("inside the data dir"), "{v}");
    let (_, v) = s.http("GET", &s.admin("/api/v1/admin/watermark"), None).await;
    assert_eq!(v["watermark"], Value::Null, "nothing refused was kept: {v}");

    // A real PNG: kept, then burned into every overlay child started from now on.
    let (status, v) = send_bytes(&s, "PUT", &s.admin(path), "image/png", &lime).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["watermark"]["width"].as_u64(), v["watermark"]["position"].as_str()), (Some(64), Some("top-left")));

    let _src = publish_blue(&push_url(&s, "cam"), 40);
    wait_live(&s, "cam").await;
    wait_live(&s, "cam_low").await;
    let square = (16, 16, 68, 68);
    let out = grab(&s, "cam_low").await;
    let g = share(&out, square, green);
    assert!(g > 0.9, "the lime watermark at the top left: {g}");
    let source = grab(&s, "cam").await;
    assert!(share(&source, square, blue) > 0.9, "the source has none");

    let (status, v) = s.http("DELETE", &s.admin("/api/v1/admin/watermark"), None).await;
    assert_eq!((status, v["removed"].as_bool()), (200, Some(true)), "{v}");
}

/// Received stream callbacks.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<Value>>>);

impl Hooks {
    async fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.0.lock().unwrap().iter().find(|v| pred(v)).cloned() {
                return v;
            }
            assert!(Instant::now() < deadline, "no {what}; got {:?}", self.0.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn hook(State(h): State<Hooks>, body: String) -> &'static str {
    h.0.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
    "{}"
}

fn alert(v: &Value, stream: &str, kind: &str) -> bool {
    v["event_type"] == 400 && v["stream_id"] == stream && v["alert"] == kind && v["state"] == "raised"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_an_ffmpeg_push_and_alerts_fire_on_lost_keyframes_and_a_gone_publisher() {
    if !have_ffmpeg() {
        return;
    }
    let hooks = Hooks::default();
    let app = axum::Router::new().route("/cb", axum::routing::post(hook)).with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let s = Server::start(&media_toml(&format!(
        "record = false\nsnapshot_secs = 0\ncallback_url = \"http://127.0.0.1:{port}/cb\"\n\
         [media.monitor]\nsample_secs = 1\nkeyframe_timeout_secs = 3\n"
    )))
    .await;

    // An ordinary push: 30 fps, 1 s GOP, 500 kbit/s video.
    let mut cam = publish(&push_url(&s, "cam"), 60);
    // One that sends a single keyframe and never another.
    let _long = publish_with(
        &push_url(&s, "longgop"),
        60,
        &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "100000",
            "-sc_threshold",
            "0",
            "-b:v",
            "300k",
            "-c:a",
            "aac",
        ],
    );
    wait_live(&s, "cam").await;
    wait_live(&s, "longgop").await;
    // A viewer, counted by protocol in the samples.
    let dir = tempfile::tempdir().unwrap();
    let flv = format!("http://127.0.0.1:{}/live/cam.flv", s.port);
    let out = dir.path().join("v.flv");
    let viewer = tokio::spawn(async move { record(&flv, 6.0, &out).await });

    let v = hooks.wait("a no_keyframe alert", |v| alert(v, "longgop", "no_keyframe")).await;
    assert!(v["detail"].as_str().unwrap().contains("no video keyframe"), "{v}");
    assert!(v["sign"].is_string() && v["t"].is_u64(), "the stream callbacks' envelope: {v}");
    assert!(hooks.0.lock().unwrap().iter().all(|v| !alert(v, "cam", "no_keyframe")), "cam has keyframes");

    eventually("4 samples of cam", Duration::from_secs(15), || async {
        let (_, h) = s.http("GET", "/api/v1/streams/cam/history", None).await;
        h["samples"].as_array().is_some_and(|a| a.len() >= 4)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, h) = s.http("GET", "/api/v1/streams/cam/history", None).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!((h["live"].as_bool(), h["sampleSecs"].as_u64()), (Some(true), Some(1)), "{h}");
    let samples = h["samples"].as_array().unwrap();
    // The newest full windows (the first is the encoder's start).
    let last = &samples[samples.len() - 2];
    let kbps = last["bitrateBps"].as_u64().unwrap() / 1000;
    assert!((150..=2000).contains(&kbps), "bitrate {kbps} kbit/s for a 500k push: {last}");
    let fps = last["videoFps"].as_f64().unwrap();
    assert!((24.0..=36.0).contains(&fps), "video fps {fps}: {last}");
    let gop = last["keyframeIntervalMs"].as_u64().unwrap();
    assert!((900..=1100).contains(&gop), "keyframe interval {gop} ms for -g 30 at 30 fps: {last}");
    assert!(last["avDriftMs"].as_i64().unwrap().abs() < 500, "{last}");
    assert!(samples.iter().any(|s| s["viewers"]["flv"] == 1), "the FLV viewer is counted: {samples:?}");
    let (_, lh) = s.http("GET", "/api/v1/streams/longgop/history", None).await;
    assert_eq!(lh["alerts"]["active"], json!(["no_keyframe"]), "{lh}");
    assert!(viewer.await.unwrap());

    // The publisher goes.
    cam.start_kill().unwrap();
    let v = hooks.wait("a publisher_gone alert", |v| alert(v, "cam", "publisher_gone")).await;
    assert!(v["detail"].as_str().unwrap().contains("the publisher left"), "{v}");
    let (status, h) = s.http("GET", "/api/v1/streams/cam/history", None).await;
    assert_eq!((status, h["live"].as_bool()), (200, Some(false)), "kept after the end: {h}");
    assert_eq!(h["alerts"]["active"], json!(["publisher_gone"]), "{h}");
    let (status, _) = s.http("GET", "/api/v1/streams/never/history", None).await;
    assert_eq!(status, 404);

    let m = s.metrics().await;
    assert!(parse_metric(&m, "onair_stream_alerts_total{alert=\"no_keyframe\"}") >= 1.0, "{m}");
    assert!(parse_metric(&m, "onair_stream_alerts_total{alert=\"publisher_gone\"}") >= 1.0, "{m}");
    assert!(m.contains("onair_stream_keyframe_interval_ms{stream=\"longgop\"}"), "{m}");
    assert!(m.contains("onair_stream_alert_active{stream=\"longgop\",alert=\"no_keyframe\"} 1"), "{m}");
}

/// The Grafana dashboard under docs/ is valid JSON and every series it queries is one
/// the server exports (named in the media service's source).
#[test]
fn the_grafana_dashboard_queries_real_metrics() {
    let dash: Value = serde_json::from_str(include_str!("../../../docs/grafana-streams.json")).expect("valid JSON");
    let source =
        [include_str!("../../onair-media-server/src/lib.rs"), include_str!("../../onair-media-server/src/hooks.rs")]
            .concat();
    let mut names = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for part in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if part.starts_with("onair_") {
                    names.push(part.to_string());
                }
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(source.contains(&format!("\"{name}\"")), "{name} is queried by the dashboard but not exported");
    }
}
