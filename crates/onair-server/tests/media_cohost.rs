//! Co-hosting people can see, end to end with real peers: the anchor publishes a red
//! picture with a tone, an accepted guest publishes a blue one, and the room's own
//! stream — what every FLV, LL-HLS and WHEP viewer and the recorder read — becomes the
//! server's mix: decoded frames show red on the left and blue on the right (side by
//! side), a blue window bottom right (picture in picture) after the anchor switches
//! layout, audio is there, and once the guest's stream stops the guest is dropped from
//! the session and the picture is all red again; the recording marks both switches
//! with a discontinuity and a new init, and plays. A layout change is made before the
//! old mix breaks: a viewer's HTTP-FLV keeps getting video frames throughout, and one
//! mixer child is left. Skips when ffmpeg is missing.

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use media_util::*;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// ffmpeg publishing a plain `color` 640x360 25 fps picture with a `freq` Hz tone.
fn publish_color(url: &str, color: &str, freq: u32, secs: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", &format!("color=c={color}:s=640x360:r=25")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency={freq}:sample_rate=44100")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-t", &secs.to_string(), "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg is needed for the media tests (apt-get install ffmpeg)")
}

const W: usize = 64;
const H: usize = 36;

/// The first picture ffmpeg decodes from `url` (a viewer joining now), scaled to
/// 64x36 RGB.
async fn frame(url: &str, extra: &[&str]) -> Option<Vec<u8>> {
    let out = tokio::time::timeout(
        Duration::from_secs(15),
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "8000000"])
            .args(extra)
            .args(["-i", url, "-frames:v", "1", "-vf", &format!("scale={W}:{H}"), "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24", "pipe:1"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    (out.stdout.len() == W * H * 3).then_some(out.stdout)
}

/// Mean colour of the region `[x0, x1) × [y0, y1)` (fractions of the picture).
fn mean(rgb: &[u8], (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> (u32, u32, u32) {
    let (xa, xb) = ((x0 * W as f64) as usize, (x1 * W as f64) as usize);
    let (ya, yb) = ((y0 * H as f64) as usize, (y1 * H as f64) as usize);
    let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
    for y in ya..yb {
        for x in xa..xb {
            let i = (y * W + x) * 3;
            r += rgb[i] as u32;
            g += rgb[i + 1] as u32;
            b += rgb[i + 2] as u32;
            n += 1;
        }
    }
    (r / n.max(1), g / n.max(1), b / n.max(1))
}

fn red((r, g, b): (u32, u32, u32)) -> bool {
    r > 150 && g < 90 && b < 90
}

fn blue((r, g, b): (u32, u32, u32)) -> bool {
    b > 150 && r < 90 && g < 90
}

/// What a picture shows, for the assertions' messages.
#[derive(Debug, PartialEq)]
enum Shows {
    AllRed,
    RedLeftBlueRight,
    RedWithBlueCorner,
    Other((u32, u32, u32), (u32, u32, u32), (u32, u32, u32)),
}

fn shows(rgb: &[u8]) -> Shows {
    // Away from the tile edges (scaling blurs them).
    let left = mean(rgb, (0.05, 0.4), (0.1, 0.9));
    let right = mean(rgb, (0.6, 0.7), (0.1, 0.5));
    let corner = mean(rgb, (0.8, 0.95), (0.8, 0.92));
    if red(left) && blue(right) {
        Shows::RedLeftBlueRight
    } else if red(left) && red(right) && blue(corner) {
        Shows::RedWithBlueCorner
    } else if red(left) && red(right) && red(corner) {
        Shows::AllRed
    } else {
        Shows::Other(left, right, corner)
    }
}

/// Polls the picture at `url` until it shows `want`; returns how long that took.
async fn until_shows(url: &str, extra: &[&str], want: Shows, timeout: Duration, s: &Server) -> Duration {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Some(rgb) = frame(url, extra).await {
            let now = shows(&rgb);
            if now == want {
                return start.elapsed();
            }
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log: Vec<String> = s.stderr().into_iter().filter(|l| l.contains("mix") || l.contains("ERROR")).collect();
    panic!("{url} never showed {want:?} within {timeout:?}; last {last:?}; log {log:?}");
}

async fn post_as(server: &Server, user: &str, path: &str, body: Value) -> (u16, Value) {
    server.http("POST", &server.as_user(path, user), Some(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_guest_is_mixed_into_the_rooms_stream_and_leaves_it_when_their_stream_drops() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start_with_env(
        &media_toml("record = true\nsnapshot_secs = 0\n"),
        &[("ONAIR_LOG", "warn,onair_media_server::mixer=info,onair_media_server::hls=info")],
    )
    .await;
    let (status, v) = s
        .http("POST", &s.admin("/api/v1/rooms"), Some(&json!({"roomId": "duo", "name": "Duo", "owner": "anchor"})))
        .await;
    assert_eq!(status, 201, "{v}");
    let mut viewer = s.ws().await;
    viewer.join_ok("duo").await;

    let mut anchor = publish_color(&push_url(&s, "duo"), "red", 440, 90);
    wait_live(&s, "duo").await;
    let flv = format!("http://127.0.0.1:{}/live/duo.flv", s.port);
    until_shows(&flv, &[], Shows::AllRed, T, &s).await;

    // The guest asks, the anchor accepts: a WHIP URL for the guest's camera (the RTMP
    // push URL stays as an alternative) and the anchor's own feed to watch.
    assert_eq!(post_as(&s, "guest", "/api/v1/rooms/duo/cohost/request", json!({})).await.0, 200);
    let (status, ans) = post_as(&s, "anchor", "/api/v1/rooms/duo/cohost/guest/accept", json!({})).await;
    assert_eq!(status, 200, "{ans}");
    let whip = ans["whipUrl"].as_str().unwrap();
    assert!(whip.starts_with("/whip/duo-cohost-guest?txSecret=") && whip.contains("&txTime="), "{ans}");
    assert!(ans["pushUrl"].as_str().unwrap().starts_with("rtmp://"), "{ans}");
    assert_eq!((ans["anchorStream"].as_str(), ans["layout"].as_str()), (Some("duo.raw"), Some("side-by-side")));
    let started = viewer.wait_event_where("duo", "cohost", |e| e["phase"] == "started").await;
    assert_eq!(
        (started["layout"].as_str(), started["picture"].as_array().map(Vec::len)),
        (Some("side-by-side"), Some(0))
    );
    assert!(started.get("whipUrl").is_none(), "only the guest gets the signed URL: {started}");

    // The guest goes on air (blue, another tone): the room's stream becomes the mix.
    let mut guest = publish_color(&push_url(&s, "duo-cohost-guest"), "blue", 880, 90);
    let live = viewer.wait_event_where("duo", "cohost", |e| e["phase"] == "live").await;
    assert_eq!(live["picture"], json!([{"userId": "guest", "stream": "duo-cohost-guest"}]), "{live}");
    let took = until_shows(&flv, &[], Shows::RedLeftBlueRight, Duration::from_secs(40), &s).await;
    eprintln!("guest in the FLV picture {took:?} after the guest went on air");

    // The anchor's own feed stays reachable for the guest (WHEP/FLV of `duo.raw`).
    let raw = format!("http://127.0.0.1:{}/live/duo.raw.flv", s.port);
    until_shows(&raw, &[], Shows::AllRed, T, &s).await;

    // Audio and video both in the mixed program, timestamps running forward.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mix.flv");
    assert!(record(&flv, 3.0, &out).await, "{:?}", s.stderr());
    let p = probe(&out).await;
    let codecs: Vec<&str> = p.streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");
    for idx in 0..2u64 {
        let dts: Vec<f64> = p.packets.iter().filter(|(i, _)| *i == idx).map(|(_, d)| *d).collect();
        assert!(dts.len() > 10 && dts.windows(2).all(|w| w[1] >= w[0]), "stream {idx}: {} packets", dts.len());
    }

    // LL-HLS follows the switch (a new init segment after a discontinuity).
    let hls = format!("http://127.0.0.1:{}/live/duo.m3u8", s.port);
    until_shows(&hls, &["-live_start_index", "-1"], Shows::RedLeftBlueRight, Duration::from_secs(30), &s).await;
    let (_, playlist) = s.http_raw("GET", "/live/duo.m3u8", None).await;
    assert!(playlist.contains("init-1.mp4") || playlist.contains("DISCONTINUITY-SEQUENCE"), "{playlist}");

    // The anchor switches to picture in picture.
    assert_eq!(post_as(&s, "guest", "/api/v1/rooms/duo/cohost/layout", json!({"layout": "pip"})).await.0, 403);
    let (status, bad) = post_as(&s, "anchor", "/api/v1/rooms/duo/cohost/layout", json!({"layout": "mosaic"})).await;
    assert_eq!(status, 400, "{bad}");
    let (status, v) = post_as(&s, "anchor", "/api/v1/rooms/duo/cohost/layout", json!({"layout": "pip"})).await;
    assert_eq!(status, 200, "{v}");
    let ev = viewer.wait_event_where("duo", "cohost", |e| e["phase"] == "layout").await;
    assert_eq!(ev["layout"], "pip");
    until_shows(&flv, &[], Shows::RedWithBlueCorner, Duration::from_secs(30), &s).await;

    // The guest's stream stops: dropped from the session and from the picture.
    guest.start_kill().unwrap();
    let dropped_at = Instant::now();
    let ended = viewer.wait_event_where("duo", "cohost", |e| e["phase"] == "ended").await;
    assert_eq!((ended["userId"].as_str(), ended["reason"].as_str()), (Some("guest"), Some("dropped")), "{ended}");
    assert_eq!(ended["picture"], json!([]));
    until_shows(&flv, &[], Shows::AllRed, Duration::from_secs(20), &s).await;
    eprintln!("guest out of the picture {:?} after their stream stopped", dropped_at.elapsed());
    eventually("the mixer's internal streams end", Duration::from_secs(15), || async {
        mix_streams(&s, "duo").await.is_empty() && s.http("GET", "/api/v1/streams/duo.raw", None).await.0 == 404
    })
    .await;
    let (_, list) = s.http("GET", &s.as_user("/api/v1/rooms/duo/cohost", "anchor"), None).await;
    assert_eq!(list["active"], json!([]), "{list}");

    // The recording holds the co-host part: a new init after a discontinuity each way.
    anchor.start_kill().unwrap();
    let rec = viewer.wait_event_where("duo", "stream", |e| e["phase"] == "recording").await;
    let url = rec["url"].as_str().unwrap();
    let (status, vod) = s.http_raw("GET", url, None).await;
    assert_eq!(status, 200, "{vod}");
    assert!(vod.matches("#EXT-X-DISCONTINUITY\n").count() >= 2 && vod.contains("init-1.mp4"), "{vod}");
    let full = format!("http://127.0.0.1:{}{url}", s.port);
    let out = dir.path().join("vod.flv");
    assert!(record(&full, 2.0, &out).await, "the recording plays: {full}");
    let p = probe(&out).await;
    let codecs: Vec<&str> = p.streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");
}

/// Reads `url` (an HTTP-FLV stream) like a player and notes, for every video tag, when
/// it arrived and whether it was a sequence header; stops after `secs`.
async fn flv_video_arrivals(port: u16, path: String, secs: f64) -> Vec<(Instant, bool)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // HTTP/1.0: the body is the FLV bytes up to the close (no chunking to undo).
    sock.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).await.unwrap();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf: Vec<u8> = Vec::new();
    let mut at = None; // where the FLV body starts
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while Instant::now() < end {
        let n = match tokio::time::timeout(end - Instant::now(), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let now = Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        if at.is_none() {
            let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            assert!(buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200"), "{:?}", &buf[..i]);
            at = Some(i + 4 + 9 + 4); // headers, the FLV header, PreviousTagSize0
        }
        let mut pos = at.unwrap_or(0);
        while buf.len() >= pos + 11 {
            let size = u32::from_be_bytes([0, buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
            if buf.len() < pos + 11 + size + 4 {
                break;
            }
            if buf[pos] == 9 && size >= 2 {
                out.push((now, buf[pos + 12] == 0));
            }
            pos += 11 + size + 4;
        }
        buf.drain(..pos);
        at = Some(0);
    }
    out
}

/// The ffmpeg mixer children of the server on `rtmp_port` working for `program` (they
/// read `{program}.raw` from that port), from the process list.
fn mixer_children(rtmp_port: u16, program: &str) -> usize {
    let (host, raw) = (format!("rtmp://127.0.0.1:{rtmp_port}/"), format!("/{program}.raw"));
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"ffmpeg"))
                && args.windows(2).any(|w| {
                    let url = String::from_utf8_lossy(w[1]);
                    w[0] == b"-i" && url.starts_with(&host) && url.split('?').next().is_some_and(|u| u.ends_with(&raw))
                })
        })
        .count()
}

/// The mixer's output streams for `program` in the stream list.
async fn mix_streams(s: &Server, program: &str) -> Vec<String> {
    let (_, v) = s.http("GET", "/api/v1/streams", None).await;
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str())
                .filter(|n| n.starts_with(&format!("{program}.")) && n.ends_with(".mix"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (≤ 10 s) until `program` has one mixer child and one mix stream.
async fn one_mixer_child(s: &Server, program: &str, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (children, streams) = (mixer_children(s.rtmp_port, program), mix_streams(s, program).await);
        if children == 1 && streams.len() == 1 {
            return;
        }
        assert!(Instant::now() < deadline, "{when}: {children} mixer children, mix streams {streams:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A server with `[media] max_transcodes = slots` whose room `swap` has its red anchor
/// and blue guest mixed side by side (FLV viewers see it); the two publishers go with
/// the returned children.
/// Stream callbacks received (`stream_id`, `event_type`).
type Callbacks = std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>>;

/// A stream-callback receiver on a free port: its URL and what it got.
async fn callback_receiver() -> (String, Callbacks) {
    let got = Callbacks::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |body: axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                let id = body.0["stream_id"].as_str().unwrap_or_default().to_string();
                keep.lock().unwrap().push((id, body.0["event_type"].as_u64().unwrap_or(0)));
                axum::Json(json!({"code": 0}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/cb", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn mixed_room(slots: usize) -> (Server, [Child; 2], Callbacks) {
    let (callback_url, callbacks) = callback_receiver().await;
    let s = Server::start_with_env(
        &media_toml(&format!(
            "record = false\nsnapshot_secs = 0\nmax_transcodes = {slots}\ncallback_url = \"{callback_url}\"\n"
        )),
        &[("ONAIR_LOG", "warn,onair_media_server::mixer=info")],
    )
    .await;
    let (status, v) = s
        .http("POST", &s.admin("/api/v1/rooms"), Some(&json!({"roomId": "swap", "name": "Swap", "owner": "anchor"})))
        .await;
    assert_eq!(status, 201, "{v}");
    let anchor = publish_color(&push_url(&s, "swap"), "red", 440, 80);
    wait_live(&s, "swap").await;
    assert_eq!(post_as(&s, "guest", "/api/v1/rooms/swap/cohost/request", json!({})).await.0, 200);
    assert_eq!(post_as(&s, "anchor", "/api/v1/rooms/swap/cohost/guest/accept", json!({})).await.0, 200);
    let guest = publish_color(&push_url(&s, "swap-cohost-guest"), "blue", 880, 80);
    let flv = format!("http://127.0.0.1:{}/live/swap.flv", s.port);
    until_shows(&flv, &[], Shows::RedLeftBlueRight, Duration::from_secs(30), &s).await;
    (s, [anchor, guest], callbacks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_keeps_the_picture_moving_and_leaves_one_mixer_child() {
    if !have_ffmpeg() {
        return;
    }
    let test_start = Instant::now();
    let (s, _publishers, callbacks) = mixed_room(4).await;
    let flv = format!("http://127.0.0.1:{}/live/swap.flv", s.port);

    // A viewer watches through a layout change: the picture keeps moving.
    let viewer = tokio::spawn(flv_video_arrivals(s.port, "/live/swap.flv".into(), 11.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let (status, v) = post_as(&s, "anchor", "/api/v1/rooms/swap/cohost/layout", json!({"layout": "pip"})).await;
    assert_eq!(status, 200, "{v}");
    // Make-before-break: the new child runs next to the old one for a while.
    let mut most = 0;
    while !viewer.is_finished() {
        most = most.max(mixer_children(s.rtmp_port, "swap"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most, 2, "the old and the new mixer child side by side during the change");
    let frames = viewer.await.unwrap();
    let headers: Vec<Duration> =
        frames.iter().filter(|(t, h)| *h && *t > asked).map(|(t, _)| t.duration_since(asked)).collect();
    assert!(!headers.is_empty(), "the new mix went on air within 9 s (fresh sequence headers): {:?}", s.stderr());
    let gaps: Vec<Duration> =
        frames.windows(2).filter(|w| w[1].0 > asked).map(|w| w[1].0.duration_since(w[0].0)).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();
    eprintln!(
        "layout change: new mix on air {:?} after the request; {} video tags; max gap between video tags {max_gap:?}",
        headers[0],
        frames.len()
    );
    assert!(max_gap < Duration::from_millis(1000), "viewers saw a {max_gap:?} freeze at the layout change");
    until_shows(&flv, &[], Shows::RedWithBlueCorner, T, &s).await;

    // The old child is gone: one mixer child and one mix stream for the program.
    one_mixer_child(&s, "swap", "after the change").await;

    // Quick clicks: no pile-up, the last layout wins.
    for layout in ["grid", "pip", "side-by-side"] {
        assert_eq!(post_as(&s, "anchor", "/api/v1/rooms/swap/cohost/layout", json!({"layout": layout})).await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await; // a replaced child's kill
        let n = mixer_children(s.rtmp_port, "swap");
        assert!(n <= 2, "at most a live and a pending child, not {n}");
    }
    until_shows(&flv, &[], Shows::RedLeftBlueRight, Duration::from_secs(20), &s).await;
    one_mixer_child(&s, "swap", "after quick clicks").await;

    // The backend heard of the room's and the guest's streams, never of the mixer's own
    // (`swap.raw`, one `*.mix` per generation) coming and going.
    let got = callbacks.lock().unwrap().clone();
    assert!(got.contains(&("swap".to_string(), 1)), "{got:?}");
    assert!(got.contains(&("swap-cohost-guest".to_string(), 1)), "{got:?}");
    assert!(got.iter().all(|(id, _)| !id.contains('.')), "callbacks for internal streams: {got:?}");
    eprintln!("test took {:?}", test_start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_transcode_slot_a_layout_change_stops_the_old_mixer_first() {
    if !have_ffmpeg() {
        return;
    }
    let test_start = Instant::now();
    let (s, _publishers, _callbacks) = mixed_room(1).await;
    let flv = format!("http://127.0.0.1:{}/live/swap.flv", s.port);
    let (status, v) = post_as(&s, "anchor", "/api/v1/rooms/swap/cohost/layout", json!({"layout": "pip"})).await;
    assert_eq!(status, 200, "{v}");
    let start = Instant::now();
    let mut most = 0;
    while start.elapsed() < Duration::from_secs(6) {
        most = most.max(mixer_children(s.rtmp_port, "swap"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(most, 1, "never more children than [media] max_transcodes");
    until_shows(&flv, &[], Shows::RedWithBlueCorner, Duration::from_secs(20), &s).await;
    one_mixer_child(&s, "swap", "after the change").await;
    eprintln!("test took {:?}", test_start.elapsed());
}
