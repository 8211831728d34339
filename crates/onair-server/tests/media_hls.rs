//! LL-HLS, live fMP4, snapshots and recordings, black-box: ffmpeg publishes a test
//! pattern with a tone over RTMP to the real binary; ffprobe/ffmpeg and a plain HTTP
//! client read every output. Skips with a message when ffmpeg is not installed (CI
//! installs it).

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use media_util::have_ffmpeg;
use serde_json::Value;
use tokio::process::{Child, Command};

async fn start(extra: &str) -> (Server, u16) {
    let server =
        Server::start(&format!("[rtmp]\nauth = false\n\n[media]\nhls_part_ms = 500\nlinger_secs = 20\n{extra}\n"))
            .await;
    let rtmp = server.rtmp_port;
    assert_ne!(rtmp, 0, "RTMP listener port not printed");
    (server, rtmp)
}

/// ffmpeg publishing `secs` of 640x360@30 (1 s GOP) + 44.1 kHz AAC; real time when `realtime`.
fn publish(rtmp: u16, name: &str, secs: u32, realtime: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440"])
        .args(["-t", &secs.to_string(), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"])
        .args(["-g", "30", "-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{rtmp}/live/{name}"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

struct Got {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
    took: Duration,
}

async fn get(port: u16, path: &str) -> Got {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let t0 = Instant::now();
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.unwrap().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got { status, headers, body, took: t0.elapsed() }
}

/// One raw HTTP/1.1 request with extra headers; the status and the response head.
async fn raw_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let head = text.split_once("\r\n\r\n").map(|(h, _)| h.to_string()).unwrap_or(text);
    (status, head)
}

async fn raw_get(port: u16, path: &str, agent: &str) -> (u16, String) {
    raw_request(port, "GET", path, &[("User-Agent", agent)]).await
}

fn text(g: &Got) -> String {
    String::from_utf8_lossy(&g.body).into_owned()
}

/// Waits for a playlist with at least `segments` complete segments.
async fn wait_playlist(port: u16, name: &str, segments: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let g = get(port, &format!("/live/{name}.m3u8")).await;
        if g.status == 200 && text(&g).matches("#EXTINF").count() >= segments {
            return text(&g);
        }
        assert!(Instant::now() < deadline, "no playlist with {segments} segments: {} {}", g.status, text(&g));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn attr(playlist: &str, name: &str) -> f64 {
    let i = playlist.find(name).unwrap_or_else(|| panic!("{name} missing:\n{playlist}")) + name.len() + 1;
    playlist[i..].split([',', '\n']).next().unwrap().parse().unwrap()
}

/// `(msn, part)` of the preload hint.
fn preload_hint(playlist: &str) -> (u64, u64) {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:")).expect("preload hint");
    let uri = line.split("URI=\"").nth(1).unwrap().trim_end_matches('"');
    let file = uri.rsplit('/').next().unwrap().trim_end_matches(".m4s");
    let (m, p) = file.split_once('.').unwrap();
    (m.parse().unwrap(), p.parse().unwrap())
}

async fn ffprobe(url: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_streams", "-show_format", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "ffprobe {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_av(probe: &Value) {
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs.len(), 2, "{probe}");
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");
}

fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0)
}

/// Packet dts per stream strictly increasing.
async fn assert_monotonic(path: &str) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_entries", "packet=stream_index,dts_time", "-show_packets", path])
        .output()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut last = [f64::MIN; 2];
    let packets = v["packets"].as_array().unwrap();
    assert!(packets.len() > 50, "{} packets", packets.len());
    for p in packets {
        let i = p["stream_index"].as_u64().unwrap() as usize;
        let dts: f64 = p["dts_time"].as_str().unwrap().parse().unwrap();
        assert!(dts > last[i], "stream {i}: dts {dts} after {}", last[i]);
        last[i] = dts;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_playlist_blocking_reload_parts_and_fmp4_stream() {
    if !have_ffmpeg() {
        return;
    }
    let (server, rtmp) = start("snapshot_secs = 1").await;
    let port = server.port;
    let mut ff = publish(rtmp, "cam", 20, true);
    let playlist = wait_playlist(port, "cam", 1).await;

    // HLS players hold no connection: each client reading the playlist counts as a
    // viewer (address + user agent), and the stats give one total across protocols.
    for agent in ["player-one", "player-two", "player-two"] {
        let (status, _) = raw_get(port, "/live/cam.m3u8", agent).await;
        assert_eq!(status, 200);
    }
    let (_, stats) = server.http("GET", "/api/v1/streams/cam", None).await;
    // The two agents (one of them twice) and the client that waited for the playlist.
    assert_eq!(stats["viewers"]["hls"], 3, "{stats}");
    assert_eq!(stats["viewersTotal"], 3, "{stats}");
    // A preflight from a player on another site that adds a header is answered.
    let (status, head) = raw_request(
        port,
        "OPTIONS",
        "/live/cam.m3u8",
        &[
            ("Origin", "https://other.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(status, 204, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("access-control-allow-headers: authorization"), "{head}");

    // Invariants of an LL-HLS playlist (RFC 8216bis).
    let td = attr(&playlist, "#EXT-X-TARGETDURATION");
    let part_target = attr(&playlist, "PART-TARGET");
    assert_eq!(part_target, 0.5);
    assert!(attr(&playlist, "PART-HOLD-BACK") >= 3.0 * part_target, "{playlist}");
    assert!(attr(&playlist, ",HOLD-BACK") >= 3.0 * td, "{playlist}");
    assert!(attr(&playlist, "CAN-SKIP-UNTIL") >= 6.0 * td, "{playlist}");
    assert!(playlist.contains("CAN-BLOCK-RELOAD=YES"));
    assert!(playlist.contains("#EXT-X-PART:DURATION="), "{playlist}");
    assert!(playlist.contains(",INDEPENDENT=YES"));
    assert!(playlist.contains("#EXT-X-MAP:URI=\"cam/"));
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"));
    for line in playlist.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        assert!(attr(line, "DURATION") <= part_target, "{line}");
    }

    // A blocking request for the preload-hinted part waits for it, then lists it.
    let fresh = text(&get(port, "/live/cam.m3u8").await);
    let (msn, part) = preload_hint(&fresh);
    let g = get(port, &format!("/live/cam.m3u8?_HLS_msn={msn}&_HLS_part={part}")).await;
    assert_eq!(g.status, 200);
    let body = text(&g);
    assert!(
        body.contains(&format!("/{msn}.{part}.m4s\"")) || body.contains(&format!("/{}.0.m4s\"", msn + 1)),
        "blocked reload did not return the part {msn}.{part}:\n{body}"
    );
    assert!(g.took < Duration::from_millis(2500), "held {:?}", g.took);
    // Far ahead of the live edge: 400 at once.
    let g = get(port, &format!("/live/cam.m3u8?_HLS_msn={}", msn + 10)).await;
    assert_eq!(g.status, 400);
    assert!(g.took < Duration::from_millis(500));
    let g = get(port, "/live/cam.m3u8?_HLS_part=1").await;
    assert_eq!(g.status, 400);
    assert!(text(&g).contains("_HLS_part needs _HLS_msn"), "the 400 says what is wrong: {}", text(&g));

    // The preload-hinted part itself: requested before it exists, answered when it does.
    let now = text(&get(port, "/live/cam.m3u8").await);
    let (msn, part) = preload_hint(&now);
    let uri_prefix = now.lines().find(|l| l.starts_with("#EXT-X-MAP")).unwrap();
    let base = uri_prefix.split("URI=\"").nth(1).unwrap().trim_end_matches("init.mp4\"").to_string();
    let g = get(port, &format!("/live/{base}{msn}.{part}.m4s")).await;
    assert_eq!(g.status, 200, "{}", text(&g));
    assert_eq!(&g.body[4..8], b"moof");
    assert!(g.headers["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(g.took < Duration::from_millis(2500));
    let init = get(port, &format!("/live/{base}init.mp4")).await;
    assert_eq!((init.status, &init.body[4..8]), (200, &b"ftyp"[..]));
    assert_eq!(get(port, &format!("/live/{base}{}.0.m4s", msn + 50)).await.status, 404);
    // Two parts past the preload hint: not hinted, so 404 at once (docs/media.md).
    let fresh = text(&get(port, "/live/cam.m3u8").await);
    let (msn, part) = preload_hint(&fresh);
    let g = get(port, &format!("/live/{base}{msn}.{}.m4s", part + 2)).await;
    assert_eq!(g.status, 404);
    assert!(g.took < Duration::from_millis(300), "answered at once, not held: {:?}", g.took);

    // Delta update.
    let delta = text(&get(port, "/live/cam.m3u8?_HLS_skip=YES").await);
    assert!(delta.starts_with("#EXTM3U"));
    // `v2` also asks to skip date ranges, which the playlist does not advertise
    // (no CAN-SKIP-DATERANGES): the full playlist, never a delta update.
    let v2 = text(&get(port, "/live/cam.m3u8?_HLS_skip=v2").await);
    assert!(!v2.contains("CAN-SKIP-DATERANGES") && !v2.contains("#EXT-X-SKIP"), "{v2}");

    // Player info and the live fMP4 stream for MediaSource.
    let info: Value = serde_json::from_slice(&get(port, "/live/cam.json").await.body).unwrap();
    assert_eq!(info["codecs"], "avc1.42c01e,mp4a.40.2", "{info}");
    assert_eq!((info["width"].as_u64(), info["height"].as_u64()), (Some(640), Some(360)));
    let dir = tempfile::TempDir::new().unwrap();
    let mp4 = dir.path().join("live.mp4");
    let grab = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-t", "3", "-i"])
        .arg(format!("http://127.0.0.1:{port}/live/cam.mp4"))
        .args(["-c", "copy"])
        .arg(&mp4)
        .status();
    // LL-HLS read by ffmpeg (ignores parts; reads segments).
    let hls = dir.path().join("hls.mp4");
    let grab_hls = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(format!("http://127.0.0.1:{port}/live/cam.m3u8"))
        .args(["-t", "3", "-c", "copy"])
        .arg(&hls)
        .status();
    let (a, b) = tokio::join!(grab, grab_hls);
    assert!(a.unwrap().success() && b.unwrap().success());
    for f in [&mp4, &hls] {
        let p = ffprobe(f.to_str().unwrap()).await;
        assert_av(&p);
        assert!(duration(&p) >= 2.5, "{}: {}", f.display(), duration(&p));
        assert_monotonic(f.to_str().unwrap()).await;
    }
    assert_av(&ffprobe(&format!("http://127.0.0.1:{port}/live/cam.m3u8")).await);

    // The fMP4 response names its codecs.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client.get(format!("http://127.0.0.1:{port}/live/cam.mp4").parse().unwrap()).await.unwrap();
    assert_eq!(resp.headers()["x-codecs"], "avc1.42c01e,mp4a.40.2");
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    drop(resp);

    // A thumbnail (ffmpeg child, every second here).
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let g = get(port, "/live/cam/snapshot.jpg").await;
        if g.status == 200 {
            assert_eq!(&g.body[..2], &[0xff, 0xd8], "JPEG");
            assert_eq!(g.headers["content-type"], "image/jpeg");
            break;
        }
        assert!(Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Bad input: clear errors, nothing held.
    assert_eq!(get(port, "/live/nothere.m3u8").await.status, 404);
    assert_eq!(get(port, "/live/cam.m3u8?_HLS_msn=abc").await.status, 400);
    assert_eq!(get(port, "/live/cam.m3u8?_HLS_msn=18446744073709551615&_HLS_part=99999999999").await.status, 400);
    assert_eq!(get(port, "/live/cam/1/0.m4s").await.status, 404, "wrong session id");
    assert_eq!(get(port, &format!("/live/{base}x.m4s")).await.status, 404);
    assert_eq!(get(port, &format!("/live/{base}1.2.3.m4s")).await.status, 404);
    assert_eq!(get(port, "/live/..%2Fcam.m3u8").await.status, 404);
    let _ = ff.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_served_as_vod_when_the_stream_ends() {
    if !have_ffmpeg() {
        return;
    }
    let (server, rtmp) = start("snapshot_secs = 0").await;
    let port = server.port;
    // Faster than real time: 6 s of media in about a second.
    let status = publish(rtmp, "rec", 6, false).wait().await.unwrap();
    assert!(status.success());

    // The ended stream's playlist is still served for a while, with ENDLIST.
    let deadline = Instant::now() + Duration::from_secs(10);
    let index = loop {
        let found = std::fs::read_dir(server.data_dir().join("recordings/rec"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("index.m3u8"))
            .filter(|p| p.exists());
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "no recording written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let live = text(&get(port, "/live/rec.m3u8").await);
    assert!(live.ends_with("#EXT-X-ENDLIST\n"), "{live}");
    assert!(!live.contains("PRELOAD-HINT"));

    let id = index.parent().unwrap().file_name().unwrap().to_str().unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}/vod/rec/{id}/index.m3u8");
    let g = get(port, &format!("/vod/rec/{id}/index.m3u8")).await;
    assert_eq!(g.status, 200);
    assert!(text(&g).contains("#EXT-X-PLAYLIST-TYPE:VOD") && text(&g).ends_with("#EXT-X-ENDLIST\n"));
    let probe = ffprobe(&url).await;
    assert_av(&probe);
    let d = duration(&probe);
    assert!((5.0..=7.0).contains(&d), "recording lasts {d} s");
    assert_monotonic(&url).await;
    // Path tricks get nothing.
    assert_eq!(get(port, &format!("/vod/rec/{id}/..%2F..%2Fonair.toml")).await.status, 404);
    assert_eq!(get(port, "/vod/rec/..%2F../index.m3u8").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_held_requests_and_a_stalled_fmp4_viewer_do_not_hurt_others() {
    if !have_ffmpeg() {
        return;
    }
    let (server, rtmp) = start("snapshot_secs = 0\nrecord = false").await;
    let port = server.port;
    let mut ff = publish(rtmp, "busy", 15, true);
    let playlist = wait_playlist(port, "busy", 1).await;

    // A viewer that opens the fMP4 stream and never reads.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"GET /live/busy.mp4 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();

    // 100 players blocking on the next part at once: all answered with it, within the hold.
    let (msn, part) = preload_hint(&playlist);
    let held = (0..100).map(|_| {
        let path = format!("/live/busy.m3u8?_HLS_msn={msn}&_HLS_part={part}");
        tokio::spawn(async move { get(port, &path).await })
    });
    for h in futures_util::future::join_all(held).await {
        let g = h.unwrap();
        assert_eq!(g.status, 200);
        assert!(g.took < Duration::from_millis(3000), "held {:?}", g.took);
        let body = text(&g);
        // The part asked for is listed (or its segment already closed and the next began).
        assert!(
            body.contains(&format!("/{msn}.{part}.m4s\"")) || body.contains(&format!("/{}.0.m4s\"", msn + 1)),
            "{body}"
        );
    }

    // Another fMP4 viewer still gets a steady stream: ≥ 3 s of media in about 3 s.
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("ok.mp4");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-i"])
        .arg(format!("http://127.0.0.1:{port}/live/busy.mp4"))
        .args(["-t", "3", "-c", "copy"])
        .arg(&out)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let p = ffprobe(out.to_str().unwrap()).await;
    assert_av(&p);
    assert!(duration(&p) >= 2.5);
    drop(stalled);
    let _ = ff.kill().await;
}
