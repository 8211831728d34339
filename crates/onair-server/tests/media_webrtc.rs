//! WebRTC against the real `onair` binary, with real peers on both ends:
//! - GStreamer's webrtcbin (not our stack) publishes over WHIP; ffprobe reads the same
//!   stream over HTTP-FLV and LL-HLS with H.264 video and AAC audio (the Opus → AAC
//!   bridge), and the
//!   stream API shows it live with its WebRTC session.
//! - An ffmpeg RTMP push plays over WHEP in a str0m player: H.264 from a keyframe on,
//!   and Opus from the shared AAC → Opus bridge. With `[webrtc] ice_tcp` on, a player
//!   that offers no UDP path gets the same over ICE-TCP (and the stream API and
//!   `/metrics` say so); with it off (the default) no TCP candidate is offered.
//! - Refusals: 401 (no / bad signature), 409 (name taken over RTMP), 400 (garbage SDP),
//!   415 (content type), 404 (WHEP of nothing), 405 (PATCH: no trickle).
//!
//! Needs ffmpeg (and, for the WHIP test, /usr/bin/python3 with python3-gi and GStreamer
//! base/good/bad/ugly + gstreamer1.0-nice); each test skips with a message otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod media_util;

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use common::Server;
use media_util::{PUSH_KEY, have_ffmpeg, media_toml, publish, wait_live};
use onair_webrtc::test_util::{Peer, tcp_candidates};
use str0m::Event;
use str0m::media::Direction;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `?txSecret=…&txTime=…` for `name`, valid for an hour.
fn push_query(name: &str) -> String {
    let tx_time = format!("{:X}", common::now_secs() + 3600);
    format!("txSecret={}&txTime={tx_time}", onair_auth::tx_secret(PUSH_KEY, name, &tx_time))
}

/// One HTTP/1.1 request with headers; (status, head, body).
async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), sock.read_to_end(&mut out)).await.expect("HTTP answer").unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // Bodies may be chunked; the tests only look for words in them.
    (status, head.to_string(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A Python with GStreamer's bindings and the elements whip_publish.py uses.
fn gst_python() -> Option<&'static str> {
    let check = "import gi; gi.require_version('Gst','1.0'); from gi.repository import Gst; Gst.init(None); \
                 assert all(Gst.ElementFactory.find(e) for e in ['webrtcbin','x264enc','opusenc','nicesrc'])";
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| StdCommand::new(p).args(["-c", check]).output().is_ok_and(|o| o.status.success()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_whip_publish_plays_over_flv_and_hls_with_aac() {
    if !have_ffmpeg() {
        return;
    }
    let Some(python) = gst_python() else {
        eprintln!("SKIPPED: needs /usr/bin/python3 with python3-gi and GStreamer webrtcbin/x264enc/opusenc/nice");
        return;
    };
    // webrtcbin gathers no loopback candidates: bind every interface, announce the
    // default ones (loopback + this host's address).
    let s = Server::start_with_env(&media_toml(""), &[("ONAIR_WEBRTC__LISTEN", "0.0.0.0:0")]).await;
    let name = "gstwhip";
    let url = format!("http://127.0.0.1:{}/whip/{name}?{}", s.port, push_query(name));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../onair-webrtc/tests/gst/whip_publish.py");
    let started = Instant::now();
    let mut publisher = tokio::process::Command::new(python)
        .args([script, &url, "10"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let live = wait_live(&s, name).await;
    eprintln!("WHIP stream live after {:?}", started.elapsed());
    // The AAC configuration comes out of the bridge a little after the first video.
    let deadline = Instant::now() + Duration::from_secs(8);
    let v = loop {
        let (_, v) = s.http("GET", &format!("/api/v1/streams/{name}"), None).await;
        if v["audioCodec"] == "aac" || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["audioCodec"], "aac", "bridged audio: {v}");
    assert_eq!(live["videoCodec"], "h264");
    let sessions = v["webrtc"].as_array().expect("webrtc sessions in the stream view");
    assert!(sessions.iter().any(|x| x["role"] == "publish" && x["state"] == "connected"), "{v}");

    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("whip.flv");
    let flv = format!("http://127.0.0.1:{}/live/{name}.flv", s.port);
    assert!(media_util::record(&flv, 3.0, &out).await, "recording HTTP-FLV failed");
    let p = media_util::probe(&out).await;
    let codecs: Vec<&str> = p.streams.iter().filter_map(|x| x["codec_name"].as_str()).collect();
    eprintln!("HTTP-FLV of the WHIP stream: {codecs:?}, {:.1} s", p.duration);
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "codecs {codecs:?}");
    let video = p.streams.iter().find(|x| x["codec_name"] == "h264").unwrap();
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(320), Some(240)));
    let metrics = s.metrics().await;
    assert!(metrics.contains("onair_webrtc_sessions"), "webrtc gauges in /metrics");
    // A quiet loopback drops nothing: the counters are there, and at zero.
    for counter in ["onair_webrtc_udp_datagrams_dropped_total", "onair_webrtc_udp_datagrams_refused_total"] {
        assert!(metrics.lines().any(|l| l.starts_with(&format!("{counter} "))), "{counter} in /metrics: {metrics}");
        assert_eq!(common::parse_metric(&metrics, counter), 0.0, "{counter}");
    }
    // And over LL-HLS (fMP4): the same two tracks.
    let hls = format!("http://127.0.0.1:{}/live/{name}.m3u8", s.port);
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", &hls])
        .output()
        .await
        .unwrap();
    // ffprobe lists the HLS program's streams and the streams: one of each kind.
    let mut hls_codecs: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    hls_codecs.sort();
    hls_codecs.dedup();
    eprintln!("LL-HLS of the WHIP stream: {hls_codecs:?}");
    assert_eq!(hls_codecs, ["aac", "h264"], "{}", String::from_utf8_lossy(&out.stderr));

    let status =
        tokio::time::timeout(Duration::from_secs(30), publisher.wait()).await.expect("publisher ends").unwrap();
    let mut err = String::new();
    if let Some(mut e) = publisher.stderr.take() {
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(status.success(), "whip_publish.py failed: {err}");
    // The DELETE at the end ended the publish: the name is free.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.http("GET", &format!("/api/v1/streams/{name}"), None).await.0 != 404 {
        assert!(Instant::now() < deadline, "stream still live after DELETE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a WHEP player got.
struct Played {
    connected: Option<Duration>,
    /// Whether the first video frame was a keyframe, and when it came.
    first_video: Option<(bool, Duration)>,
    video_frames: u32,
    opus_packets: u32,
}

/// Runs a player (answer accepted) until it has 60 video frames and 50 Opus packets, or
/// 12 s; times are since `asked`.
async fn play(peer: &mut Peer, asked: Instant) -> Played {
    let video_mid = peer.video;
    let mut p = Played { connected: None, first_video: None, video_frames: 0, opus_packets: 0 };
    peer.run(Instant::now() + Duration::from_secs(12), &mut |_, e| {
        match e {
            Event::Connected => p.connected = Some(asked.elapsed()),
            Event::MediaData(d) if d.mid == video_mid => {
                if p.first_video.is_none() {
                    let idr = onair_media::nal::split_annexb(&d.data)
                        .into_iter()
                        .any(|n| onair_media::nal::nal_type(n) == Some(5));
                    p.first_video = Some((idr, asked.elapsed()));
                }
                p.video_frames += 1;
            }
            Event::MediaData(_) => p.opus_packets += 1,
            _ => {}
        }
        p.video_frames >= 60 && p.opus_packets >= 50
    })
    .await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_plays_over_whep_from_a_keyframe_with_opus() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml("")).await;
    let name = "rtmpwhep";
    let mut ffmpeg = publish(&media_util::push_url(&s, name), 30);
    wait_live(&s, name).await;
    // Mid-GOP on purpose: the viewer must still start at a keyframe.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (mut peer, offer) = Peer::new(Direction::RecvOnly).await;
    let asked = Instant::now();
    let (status, head, answer) =
        request(s.port, "POST", &format!("/whep/{name}"), &[("Content-Type", "application/sdp")], &offer).await;
    assert_eq!(status, 201, "{head}\n{answer}");
    let location = header(&head, "location").expect("Location").to_string();
    assert!(location.starts_with(&format!("/whep/{name}/")), "{location}");
    assert!(tcp_candidates(&answer).is_empty(), "ICE-TCP is off by default: {answer}");
    peer.accept(&answer);

    let Played { connected, first_video, video_frames, opus_packets } = play(&mut peer, asked).await;
    eprintln!(
        "WHEP of an RTMP stream: connected after {connected:?}, first video {first_video:?}, \
         {video_frames} video frames, {opus_packets} Opus packets"
    );
    let (idr, _) = first_video.expect("video over WHEP");
    assert!(idr, "the first frame a WHEP viewer gets is a keyframe");
    assert!(video_frames >= 60, "{video_frames} video frames");
    assert!(opus_packets >= 50, "{opus_packets} Opus packets (AAC → Opus bridge)");

    let (_, v) = s.http("GET", &format!("/api/v1/streams/{name}"), None).await;
    assert_eq!(v["viewers"]["webrtc"], 1, "{v}");
    assert!(v["webrtc"].as_array().unwrap().iter().any(|x| x["role"] == "play"), "{v}");

    let (status, _, _) = request(s.port, "DELETE", &location, &[], "").await;
    assert_eq!(status, 200);
    let (status, _, _) = request(s.port, "DELETE", &location, &[], "").await;
    assert_eq!(status, 404, "a session ends once");
    let _ = ffmpeg.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmp_push_plays_over_whep_through_ice_tcp() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&format!("{}\n[webrtc]\nice_tcp = true\n", media_toml(""))).await;
    let name = "tcpwhep";
    let mut ffmpeg = publish(&media_util::push_url(&s, name), 30);
    wait_live(&s, name).await;

    // A player behind a network that blocks UDP: no UDP candidate, one TCP connection.
    let (mut peer, offer) = Peer::new_tcp_only(Direction::RecvOnly).await;
    let asked = Instant::now();
    let (status, head, answer) =
        request(s.port, "POST", &format!("/whep/{name}"), &[("Content-Type", "application/sdp")], &offer).await;
    assert_eq!(status, 201, "{head}\n{answer}");
    let location = header(&head, "location").expect("Location").to_string();
    let tcp = tcp_candidates(&answer);
    assert!(!tcp.is_empty(), "a tcptype passive candidate: {answer}");
    // Same port number as UDP by default.
    let udp_port = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:") && l.split_whitespace().nth(2) == Some("udp"))
        .and_then(|l| l.split_whitespace().nth(5))
        .expect("a UDP candidate too");
    assert_eq!(tcp[0].port().to_string(), udp_port, "{answer}");
    peer.accept(&answer);
    peer.connect_tcp(&answer).await;

    let Played { connected, first_video, video_frames, opus_packets } = play(&mut peer, asked).await;
    eprintln!(
        "WHEP over ICE-TCP: connected after {connected:?}, first video {first_video:?}, \
         {video_frames} video frames, {opus_packets} Opus packets"
    );
    assert_eq!(first_video.map(|(idr, _)| idr), Some(true), "video over ICE-TCP, from a keyframe");
    assert!(video_frames >= 60, "{video_frames} video frames");
    assert!(opus_packets >= 50, "{opus_packets} Opus packets");

    // The stream API names the transport; /metrics counts the session (both refresh
    // every second or two).
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (_, v) = s.http("GET", &format!("/api/v1/streams/{name}"), None).await;
        let on_tcp = v["webrtc"].as_array().is_some_and(|a| a.iter().any(|x| x["transport"] == "tcp"));
        let counted = s.metric("onair_webrtc_tcp_sessions").await;
        if on_tcp && counted == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "transport tcp in {v}, onair_webrtc_tcp_sessions {counted}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.metric("onair_webrtc_tcp_connections").await, 1.0);

    // DELETE closes the session and its TCP connection.
    assert_eq!(request(s.port, "DELETE", &location, &[], "").await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(6);
    while s.metric("onair_webrtc_tcp_connections").await != 0.0 {
        assert!(Instant::now() < deadline, "the TCP connection outlived its session");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = ffmpeg.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_refusals() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml("")).await;
    let (_peer, offer) = Peer::new(Direction::SendOnly).await;
    let sdp = [("Content-Type", "application/sdp")];
    let post = |path: String, headers: Vec<(&'static str, String)>, body: String| {
        let port = s.port;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(port, "POST", &path, &h, &body).await
        }
    };
    let ct = || vec![("Content-Type", "application/sdp".to_string())];

    // 401: nothing, a bad secret, an expired time, a bad bearer.
    let (st, _, body) = post("/whip/a1".into(), ct(), offer.clone()).await;
    assert_eq!(st, 401, "{body}");
    let (st, _, body) = post("/whip/a1?txSecret=00&txTime=FFFFFFFF".into(), ct(), offer.clone()).await;
    assert_eq!(st, 401, "{body}");
    let mut h = ct();
    h.push(("Authorization", "Bearer txSecret=00&txTime=FFFFFFFF".into()));
    let (st, _, body) = post("/whip/a1".into(), h, offer.clone()).await;
    assert_eq!(st, 401, "{body}");

    // 415 before anything else is read.
    let (st, _, body) =
        post(format!("/whip/a1?{}", push_query("a1")), vec![("Content-Type", "text/plain".into())], offer.clone())
            .await;
    assert_eq!(st, 415, "{body}");
    // 400 with the reason for garbage SDP (bearer credentials this time).
    let mut h = ct();
    h.push(("Authorization", format!("Bearer {}", push_query("a1"))));
    let (st, _, body) = post("/whip/a1".into(), h, "v=0\r\nthis is not sdp\r\n".into()).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("SDP"), "{body}");

    // 409: the name is published over RTMP.
    let mut ffmpeg = publish(&media_util::push_url(&s, "busy"), 20);
    wait_live(&s, "busy").await;
    let (st, _, body) = post(format!("/whip/busy?{}", push_query("busy")), ct(), offer.clone()).await;
    assert_eq!(st, 409, "{body}");
    // The RTMP publish is untouched.
    assert_eq!(s.http("GET", "/api/v1/streams/busy", None).await.0, 200);
    let _ = ffmpeg.kill().await;

    // A good offer with good credentials is taken (then deleted).
    let (st, head, body) = post(format!("/whip/fine?{}", push_query("fine")), ct(), offer.clone()).await;
    assert_eq!(st, 201, "{body}");
    let location = header(&head, "location").unwrap().to_string();
    let (st, _, _) = request(s.port, "PATCH", &location, &sdp, "a=end-of-candidates\r\n").await;
    assert_eq!(st, 405, "no trickle ICE");
    assert_eq!(request(s.port, "DELETE", &location, &[], "").await.0, 200);

    // WHEP: a stream that is not live, garbage, wrong type.
    let (_viewer, play_offer) = Peer::new(Direction::RecvOnly).await;
    let (st, _, _) = post("/whep/nothing".into(), ct(), play_offer.clone()).await;
    assert_eq!(st, 404);
    let (st, _, _) = post("/whep/nothing".into(), vec![("Content-Type", "application/json".into())], "{}".into()).await;
    assert_eq!(st, 415);
}
