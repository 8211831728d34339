//! The engine's refusals and clean-ups, with real clients on loopback: bad offers (400 /
//! 406), a second publisher (409), the per-IP bound (503), sessions whose ICE never
//! completes or that go silent (closed by the configured timeouts), and `close`.
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
