//! An independent WHIP publisher: GStreamer's webrtcbin (`tests/gst/whip_publish.py`)
//! POSTs its offer to a tiny WHIP endpoint in front of the engine and streams x264 video
//! and Opus audio. What comes out — FLV video tags from the engine, AAC audio tags from
//! the ffmpeg audio bridge — is written as an FLV file that `ffprobe` must decode: H.264
//! 320x240 with every frame readable, and AAC.
//!
//! Run with `RUST_LOG=onair_webrtc=debug` to see the engine's session log.
//!
//! Needs python3-gi and GStreamer (base/good/bad/ugly, nice) plus ffmpeg; skips with a
//! message when they are absent, like the other media tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use onair_media::flv;
use onair_webrtc::bridge::{AudioBridge, AudioPacket, BridgeKind};
use onair_webrtc::{IngestFrame, Limits, SessionId, WebRtcConfig, WebRtcEngine};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Python with GStreamer's bindings and the elements the publisher uses (the first
/// `python3` on PATH may be a pyenv one without Debian's `python3-gi`).
fn gst_python() -> Option<&'static str> {
    let check = "import gi; gi.require_version('Gst','1.0'); from gi.repository import Gst; Gst.init(None); \
                 assert all(Gst.ElementFactory.find(e) for e in ['webrtcbin','x264enc','opusenc','nicesrc'])";
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| Command::new(p).args(["-c", check]).output().is_ok_and(|o| o.status.success()));
    let ff = Command::new("ffprobe").arg("-version").output().is_ok_and(|o| o.status.success());
    if python.is_none() || !ff {
        eprintln!("skipped: needs python3-gi, GStreamer webrtcbin/x264enc/opusenc/nice and ffmpeg");
        return None;
    }
    python
}

/// This host's address on its default route (webrtcbin's ICE does not gather loopback).
fn host_ip() -> IpAddr {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9").ok().and_then(|_| s.local_addr().ok()).map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |a| a.ip())
}

/// A minimal WHIP endpoint: `POST /whip/{stream}` → `engine.publish`, `DELETE
/// /whip/{stream}/{id}` → `engine.close`. One request per connection.
async fn whip_server(
    engine: WebRtcEngine,
    listener: TcpListener,
    frames: tokio::sync::mpsc::Sender<(SessionId, onair_webrtc::IngestStream)>,
) {
    loop {
        let Ok((mut sock, peer)) = listener.accept().await else { return };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (head_end, len) = loop {
            let n = sock.read(&mut chunk).await.unwrap();
            if n == 0 {
                break (0, 0);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                break (p + 4, len);
            }
        };
        if head_end == 0 {
            continue;
        }
        while buf.len() < head_end + len {
            let n = sock.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
        let mut parts = head.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let reply = match (method, path.strip_prefix("/whip/")) {
            ("POST", Some(stream)) => match engine.publish(&body, stream, peer.ip()).await {
                Ok(p) => {
                    let r = format!(
                        "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nLocation: /whip/{stream}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        p.id,
                        p.answer.len(),
                        p.answer
                    );
                    frames.send((p.id, p.frames)).await.unwrap();
                    r
                }
                Err(e) => {
                    let msg = e.to_string();
                    format!(
                        "HTTP/1.1 {} Refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                        e.http_status(),
                        msg.len()
                    )
                }
            },
            ("DELETE", Some(rest)) => {
                if let Some(id) = rest.rsplit('/').next().and_then(|s| s.parse::<SessionId>().ok()) {
                    engine.close(id).await;
                }
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            }
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
        };
        let _ = sock.write_all(reply.as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_webrtcbin_publishes_over_whip() {
    let Some(python) = gst_python() else { return };
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_default()).try_init();
    let ip = host_ip();
    let cfg = WebRtcConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        announce_ips: vec![ip],
        limits: Limits::default(),
        ..WebRtcConfig::default()
    };
    let engine = WebRtcEngine::start(cfg).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whip/gst", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(whip_server(engine.clone(), listener, tx));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gst/whip_publish.py");
    let publisher = tokio::process::Command::new(python).args([script, &url, "4"]).kill_on_drop(true).output();
    let collector = async move {
        let (id, mut frames) = rx.recv().await.unwrap();
        let mut bridge = AudioBridge::spawn(BridgeKind::OpusToAac, "ffmpeg", 64).unwrap();
        let mut video = Vec::new();
        let mut opus = 0;
        while let Some(f) = frames.recv().await {
            match f {
                IngestFrame::Video { timestamp, body } => video.push((u64::from(timestamp), body)),
                IngestFrame::Opus { timestamp, data } => {
                    opus += 1;
                    bridge.send(AudioPacket { timestamp: u64::from(timestamp), data });
                }
            }
        }
        bridge.finish();
        let mut audio = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(5), bridge.recv()).await {
            audio.push(p);
        }
        (id, video, opus, audio)
    };
    let collector = tokio::spawn(collector);
    // Stats while it streams: connected, bytes and frames flowing.
    let watcher = engine.clone();
    let mid = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        watcher.sessions()
    });
    let out = tokio::time::timeout(Duration::from_secs(40), publisher).await.expect("publisher finishes").unwrap();
    assert!(out.status.success(), "publisher failed: {}", String::from_utf8_lossy(&out.stderr));
    let (id, video, opus, audio) =
        tokio::time::timeout(Duration::from_secs(15), collector).await.expect("the session ends after DELETE").unwrap();
    assert!(engine.stats(id).is_none(), "DELETE closed the session");
    let during = mid.await.unwrap();
    let (_, s) = during.iter().find(|(sid, _)| *sid == id).expect("session live at 3 s");
    eprintln!("publisher stats at 3 s: {s:?}");
    assert_eq!(s.state, onair_webrtc::SessionState::Connected);
    assert!(s.bytes_rx > 20_000 && s.frames > 100, "{s:?}");

    // ~4 s at 30 fps and 50 Opus packets/s (the first ones arrive while connecting).
    assert!(video.len() > 60, "{} video tags", video.len());
    assert!(opus > 100, "{opus} opus packets");
    assert!(audio.len() > 100, "{} AAC tags", audio.len());

    // Write what a registry would hold as FLV and let ffprobe decode it.
    let mut tags: Vec<(u64, u8, bytes::Bytes)> = video.into_iter().map(|(t, b)| (t, flv::TAG_VIDEO, b)).collect();
    tags.extend(audio.into_iter().map(|p| (p.timestamp, flv::TAG_AUDIO, p.data)));
    tags.sort_by_key(|(t, kind, _)| (*t, *kind));
    let mut file = flv::file_header(true, true).to_vec();
    for (t, kind, body) in &tags {
        file.extend_from_slice(&flv::write_tag(*kind, *t, body));
    }
    let dir = tempfile_dir();
    let path = dir.join("gst.flv");
    std::fs::write(&path, &file).unwrap();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).to_string();
    eprintln!("ffprobe: {text} {}", String::from_utf8_lossy(&probe.stderr));
    assert!(probe.status.success());
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let v = lines.iter().find(|l| l.starts_with("h264")).expect("a video stream");
    let a = lines.iter().find(|l| l.starts_with("aac")).expect("an audio stream");
    let vf: Vec<&str> = v.split(',').collect();
    assert_eq!((vf[1], vf[2]), ("320", "240"), "{v}");
    assert!(vf[3].parse::<u32>().unwrap() > 60, "decoded video frames: {v}");
    assert!(a.split(',').next_back().unwrap().parse::<u32>().unwrap() > 100, "decoded audio frames: {a}");
    assert!(probe.stderr.is_empty(), "ffprobe complained: {}", String::from_utf8_lossy(&probe.stderr));
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("onair-webrtc-gst-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
