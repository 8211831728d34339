//! Media test helpers: ffmpeg publishers and readers, ffprobe checks.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::common::Server;

/// Whether ffmpeg and ffprobe run here (tests that need them skip, saying so, when not).
pub fn have_ffmpeg() -> bool {
    let ok = |t: &str| std::process::Command::new(t).arg("-version").output().is_ok_and(|o| o.status.success());
    if ok("ffmpeg") && ok("ffprobe") {
        true
    } else {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        false
    }
}

/// The push key the media tests configure.
pub const PUSH_KEY: &str = "testpushkey0123";

/// Config enabling push auth with [`PUSH_KEY`].
pub fn media_toml(extra_media: &str) -> String {
    format!("[media]\npush_key = \"{PUSH_KEY}\"\n{extra_media}\n")
}

/// `rtmp://127.0.0.1:PORT/live/NAME?txSecret=…&txTime=…`, valid for an hour.
pub fn push_url(s: &Server, name: &str) -> String {
    let tx_time = format!("{:X}", crate::common::now_secs() + 3600);
    signed(s, name, &tx_time, PUSH_KEY)
}

/// A push URL signed with `key` and `tx_time` as given.
pub fn signed(s: &Server, name: &str, tx_time: &str, key: &str) -> String {
    let secret = onair_auth::tx_secret(key, name, tx_time);
    format!("rtmp://127.0.0.1:{}/live/{name}?txSecret={secret}&txTime={tx_time}", s.rtmp_port)
}

/// ffmpeg publishing a 640x360 30 fps test pattern with a 440 Hz tone (H.264 + AAC,
/// 1 s GOP) for `secs` seconds in real time.
pub fn publish(url: &str, secs: u32) -> Child {
    publish_with(
        url,
        secs,
        &["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30", "-b:v", "500k", "-c:a", "aac"],
    )
}

/// ffmpeg publishing with the given codec arguments.
pub fn publish_with(url: &str, secs: u32, codec_args: &[&str]) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(codec_args)
        .args(["-t", &secs.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is needed for the media tests (apt-get install ffmpeg)")
}

/// Waits until `name` shows in the stream list.
pub async fn wait_live(s: &Server, name: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, v) = s.http("GET", &format!("/api/v1/streams/{name}"), None).await;
        if status == 200 && v["videoCodec"] == "h264" && v["gopFrames"].as_u64().unwrap_or(0) > 0 {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "stream {name} did not go live: {v}; stderr {:?}", s.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Copies `secs` seconds of `url` into an FLV file with ffmpeg; returns whether it worked.
pub async fn record(url: &str, secs: f64, out: &Path) -> bool {
    let status = tokio::time::timeout(
        Duration::from_secs_f64(secs + 12.0),
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "8000000", "-i", url])
            .args(["-t", &secs.to_string(), "-c", "copy", "-f", "flv", "-y"])
            .arg(out)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    matches!(status, Ok(Ok(s)) if s.success())
}

/// What ffprobe says about a recorded file.
pub struct Probe {
    pub streams: Vec<Value>,
    pub duration: f64,
    /// (stream index, dts seconds) of every packet in file order.
    pub packets: Vec<(u64, f64)>,
}

pub async fn probe(file: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-show_packets", "-of", "json"])
        .arg(file)
        .output()
        .await
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packets = v["packets"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((p["stream_index"].as_u64()?, p["dts_time"].as_str()?.parse::<f64>().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    Probe {
        streams: v["streams"].as_array().cloned().unwrap_or_default(),
        duration: v["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0),
        packets,
    }
}

/// The SRS-style assertion on a recorded output: two streams, H.264 640x360 + AAC,
/// at least `min_secs` long, timestamps monotonic per stream.
pub fn assert_av(p: &Probe, min_secs: f64, what: &str) {
    let codecs: Vec<&str> = p.streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert_eq!(p.streams.len(), 2, "{what}: streams {codecs:?}");
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{what}: codecs {codecs:?}");
    let video = p.streams.iter().find(|s| s["codec_name"] == "h264").unwrap();
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(640), Some(360)), "{what}");
    assert!(p.duration >= min_secs, "{what}: duration {} < {min_secs}", p.duration);
    for idx in 0..2u64 {
        let dts: Vec<f64> = p.packets.iter().filter(|(i, _)| *i == idx).map(|(_, d)| *d).collect();
        assert!(dts.len() > 20, "{what}: stream {idx} has {} packets", dts.len());
        assert!(dts.windows(2).all(|w| w[1] >= w[0]), "{what}: stream {idx} timestamps go backwards");
    }
}

/// `ffmpeg` exit status within `timeout` (None if still running).
pub async fn exit_within(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    tokio::time::timeout(timeout, child.wait()).await.ok().and_then(|r| r.ok())
}
