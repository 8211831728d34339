//! The engine's refusals and clean-ups, with real clients on loopback: bad offers (400 /
//! 406), a second publisher (409), the per-IP bound (503), sessions whose ICE never
//! completes or that go silent (closed by the configured timeouts), and `close`; and
//! ICE-TCP: TCP-only peers playing and publishing, a connection bound by its first STUN
//! request and closed with its session, strangers refused, the per-IP connection bound
//! and the first-frame timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{Client, LOCALHOST};
use onair_webrtc::{EngineError, Limits, PlayFrame, SessionState};
use str0m::media::Direction;

fn quick_limits() -> Limits {
    Limits {
        max_sessions_per_ip: 3,
        connect_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    }
}

fn never(stream: &str) -> std::sync::Arc<onair_webrtc::Feed> {
    onair_webrtc::Feed::spawn(stream, Box::pin(futures_util::stream::pending::<PlayFrame>()))
}

#[tokio::test]
async fn refusals_carry_their_status() {
    let engine = common::engine(quick_limits()).await;
    let (_c, offer) = Client::new(Direction::SendOnly).await;

    let e = engine.publish("v=0\r\nnonsense", "s", LOCALHOST).await.unwrap_err();
    assert_eq!(e.http_status(), 400, "{e}");

    let vp8 = offer.replace("H264/90000", "VP8/90000");
    let e = engine.publish(&vp8, "s", LOCALHOST).await.unwrap_err();
    assert_eq!(e.http_status(), 406, "{e}");
    assert!(e.to_string().contains("VP8/90000"), "{e}");

    // A publish offer cannot be played and the other way round.
    let e = engine.play(&offer, "s", LOCALHOST, never("s")).await.unwrap_err();
    assert_eq!(e.http_status(), 400, "{e}");

    let first = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    let (_c2, offer2) = Client::new(Direction::SendOnly).await;
    let e = engine.publish(&offer2, "s", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))).await.unwrap_err();
    assert!(matches!(e, EngineError::AlreadyPublished(_)), "{e}");
    assert_eq!(e.http_status(), 409);

    // Per IP: 3 sessions, the 4th is refused; closing one makes room.
    let mut ids = vec![first.id];
    for _ in 0..2 {
        let (_c, o) = Client::new(Direction::RecvOnly).await;
        ids.push(engine.play(&o, "s", LOCALHOST, never("s")).await.unwrap().id);
    }
    let (_c, o) = Client::new(Direction::RecvOnly).await;
    let e = engine.play(&o, "s", LOCALHOST, never("s")).await.unwrap_err();
    assert!(matches!(e, EngineError::TooManySessions(_)), "{e}");
    assert_eq!(e.http_status(), 503);
    engine.close(ids[2]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_c, o) = Client::new(Direction::RecvOnly).await;
    engine.play(&o, "s", LOCALHOST, never("s")).await.unwrap();
}

#[tokio::test]
async fn sessions_that_never_connect_are_closed() {
    let engine = common::engine(quick_limits()).await;
    let (_client, offer) = Client::new(Direction::SendOnly).await;
    let mut published = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    assert_eq!(engine.stats(published.id).unwrap().state, SessionState::Connecting);
    // The client never runs: no ICE. Closed after connect_timeout (+ the 0.5 s sweep).
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), published.frames.recv()).await.unwrap();
    assert!(end.is_none(), "the frame stream ends with the session");
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_millis(2000), "{took:?}");
    assert!(engine.stats(published.id).is_none());
    assert!(!engine.is_published("s"), "the stream name is free again");
}

#[tokio::test]
async fn silent_sessions_are_closed() {
    let engine = common::engine(quick_limits()).await;
    let (mut client, offer) = Client::new(Direction::SendOnly).await;
    let mut published = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    client.accept(&published.answer);
    client.connect().await;
    assert_eq!(engine.stats(published.id).unwrap().state, SessionState::Connected);
    // The client goes quiet (stops running, like a closed laptop lid).
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), published.frames.recv()).await.unwrap();
    assert!(end.is_none());
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_millis(6000), "{took:?}");
    assert!(engine.sessions().is_empty());
}

#[tokio::test]
async fn a_silent_publisher_is_closed_long_before_the_session_timeout() {
    // A co-host whose laptop closes must leave the mix in seconds, not after the
    // 30 s that an unfinished handshake or a quiet player is given.
    let limits = Limits {
        connect_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        publisher_idle_timeout: Duration::from_millis(1200),
        ..Limits::default()
    };
    let engine = common::engine(limits).await;
    let (mut client, offer) = Client::new(Direction::SendOnly).await;
    let mut published = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    client.accept(&published.answer);
    client.connect().await;
    let t0 = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), published.frames.recv()).await.unwrap();
    assert!(end.is_none());
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_millis(5000), "{took:?}");
    assert!(!engine.is_published("s"), "the stream name is free again");
}

#[tokio::test]
async fn close_ends_a_connected_session() {
    let engine = common::engine(Limits::default()).await;
    let (mut client, offer) = Client::new(Direction::SendOnly).await;
    let mut published = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    client.accept(&published.answer);
    client.connect().await;
    engine.close(published.id).await;
    let end = tokio::time::timeout(Duration::from_secs(2), published.frames.recv()).await.unwrap();
    assert!(end.is_none());
    assert!(engine.stats(published.id).is_none());
    // The engine still serves new sessions after a close.
    let (mut c2, offer) = Client::new(Direction::SendOnly).await;
    let p2 = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    c2.accept(&p2.answer);
    c2.connect().await;
    engine.shutdown().await;
}

#[tokio::test]
async fn answer_is_ice_lite_with_rtx_nack_pli_and_congestion_feedback() {
    let engine = common::engine(Limits::default()).await;
    let (_c, offer) = Client::new(Direction::SendOnly).await;
    let p = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    let a = p.answer;
    for want in [
        "a=ice-lite",
        "a=recvonly",
        "H264/90000",
        "packetization-mode=1",
        "rtx/90000",
        "a=rtcp-fb:102 nack\r\n",
        "nack pli",
        "ccm fir",
        "transport-cc",
        "goog-remb",
        "opus/48000/2",
        "a=setup:passive",
    ] {
        assert!(a.contains(want), "answer lacks {want:?}:\n{a}");
    }
    // One host candidate per announced address, on the engine's one port.
    let port = engine.local_addr().port();
    assert!(a.contains(&format!("127.0.0.1 {port} typ host")), "{a}");
}

/// An engine with ICE-TCP on (its own port) and `limits`.
async fn tcp_engine(limits: Limits) -> onair_webrtc::WebRtcEngine {
    let cfg = onair_webrtc::WebRtcConfig {
        bind: std::net::SocketAddr::new(LOCALHOST, 0),
        announce_ips: vec![LOCALHOST],
        limits,
        shards: 2,
        ice_tcp: true,
        tcp_port: Some(0),
        ..onair_webrtc::WebRtcConfig::default()
    };
    onair_webrtc::WebRtcEngine::start(cfg).await.unwrap()
}

/// How long until the server closes `sock` (reads to end of stream), at most `max`.
async fn closed_after(sock: &mut tokio::net::TcpStream, max: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    tokio::time::timeout(max, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return t0.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn ice_tcp_session_is_bound_by_its_first_stun_request_and_closed_with_its_session() {
    let engine = tcp_engine(Limits::default()).await;
    let tcp = engine.tcp_local_addr().expect("an ICE-TCP listener");
    assert_eq!(engine.tcp_candidates(), [tcp]);
    let (mut client, offer) = Client::new_tcp_only(Direction::RecvOnly).await;
    let playing = engine.play(&offer, "s", LOCALHOST, never("s")).await.unwrap();
    // The answer has both candidates, TCP ranked below UDP.
    let prio = |proto: &str| {
        playing
            .answer
            .lines()
            .find(|l| l.starts_with("a=candidate:") && l.split_whitespace().nth(2) == Some(proto))
            .and_then(|l| l.split_whitespace().nth(3)?.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("a {proto} candidate in {}", playing.answer))
    };
    assert!(prio("tcp") < prio("udp"), "{}", playing.answer);
    assert!(playing.answer.contains("tcptype passive"), "{}", playing.answer);
    client.accept(&playing.answer);
    assert_eq!(client.connect_tcp(&playing.answer).await, tcp);
    client.connect().await;
    // The transport shows with the next stats (every second).
    client.run_until(Instant::now() + Duration::from_millis(1500), &mut |_, _| {}).await;
    let stats = engine.stats(playing.id).unwrap();
    assert_eq!(stats.state, SessionState::Connected);
    assert_eq!(stats.transport, Some(onair_webrtc::Transport::Tcp));
    assert_eq!(engine.tcp_stats().unwrap().bound, 1);
    // Closing the session closes its connection.
    engine.close(playing.id).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while engine.tcp_stats().unwrap().connections > 0 {
        assert!(Instant::now() < deadline, "{:?}", engine.tcp_stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ice_tcp_refuses_strangers_and_bounds_connections() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let engine = tcp_engine(Limits { max_tcp_connections_per_ip: 2, ..Limits::default() }).await;
    let tcp = engine.tcp_local_addr().unwrap();
    // A first frame that is not STUN, a STUN request naming no session, a length over
    // the limit: each closed at once.
    let stun_nobody = {
        let user = b"nobody:x";
        let mut m = vec![0x00, 0x01, 0x00, 12, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, user.len() as u8]);
        m.extend_from_slice(user);
        m
    };
    let mut framed_stun = vec![0, stun_nobody.len() as u8];
    framed_stun.extend_from_slice(&stun_nobody);
    for first in [vec![0, 4, 0x80, 0, 0, 1], framed_stun, vec![0xff, 0xff, 1, 2, 3]] {
        let mut s = TcpStream::connect(tcp).await.unwrap();
        s.write_all(&first).await.unwrap();
        let took = closed_after(&mut s, Duration::from_secs(2)).await;
        assert!(took.is_some(), "closed after a bad first frame {first:02x?}");
    }
    // Two silent connections from one IP are held; a third is refused at once; the
    // silent ones are closed when their 5 s for a first frame are up.
    let t0 = Instant::now();
    let mut a = TcpStream::connect(tcp).await.unwrap();
    let mut b = TcpStream::connect(tcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = TcpStream::connect(tcp).await.unwrap();
    let refused = closed_after(&mut c, Duration::from_secs(2)).await;
    assert!(refused.is_some_and(|d| d < Duration::from_secs(1)), "{refused:?}");
    assert_eq!(engine.tcp_stats().unwrap().refused, 1);
    for s in [&mut a, &mut b] {
        assert!(closed_after(s, Duration::from_secs(8)).await.is_some());
    }
    let held = t0.elapsed();
    assert!(held >= Duration::from_millis(4800) && held < Duration::from_secs(7), "{held:?}");
    assert_eq!(engine.tcp_stats().unwrap().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_publisher_frames_arrive() {
    use onair_webrtc::IngestFrame;
    use str0m::media::MediaTime;
    let engine = tcp_engine(Limits::default()).await;
    let (mut client, offer) = Client::new_tcp_only(Direction::SendOnly).await;
    let mut published = engine.publish(&offer, "s", LOCALHOST).await.unwrap();
    client.accept(&published.answer);
    client.connect_tcp(&published.answer).await;
    client.connect().await;
    // 20 frames of the fixture (keyframes every 10) at 25 fps, over TCP.
    let start = Instant::now();
    let vmid = client.video;
    for (i, au) in common::access_units().iter().take(20).enumerate() {
        client.run_until(start + Duration::from_millis(40 * i as u64), &mut |_, _| {}).await;
        let w = client.rtc.writer(vmid).unwrap();
        let pt = w.payload_params().next().unwrap().pt();
        let data = onair_media::nal::nals_to_annexb(au.iter().map(Vec::as_slice));
        w.write(pt, Instant::now(), MediaTime::from_90khz(3600 * i as u64), data).unwrap();
    }
    client.run_until(Instant::now() + Duration::from_millis(1200), &mut |_, _| {}).await;
    let mut video = 0;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), published.frames.recv()).await {
        video += usize::from(matches!(f, IngestFrame::Video { .. }));
    }
    // The sequence header plus (nearly) every picture.
    assert!(video >= 18, "{video} video tags over ICE-TCP");
    assert_eq!(engine.stats(published.id).unwrap().transport, Some(onair_webrtc::Transport::Tcp));
}
