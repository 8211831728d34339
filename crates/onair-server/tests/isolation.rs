//! One client must never hurt the others: a reader that stops reading is cut off
//! while healthy viewers keep real-time delivery; a second login kicks only the
//! session it replaces.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const GRACE_MS: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_disconnected_and_healthy_viewers_keep_real_time() {
    let server = Server::start(&format!(
        "[chat]\nrate_per_sec = 1000\noutbox_frames = 32\nslow_consumer_grace_ms = {GRACE_MS}\n"
    ))
    .await;
    server.create_room("big").await;

    // The slow consumer: a tiny receive buffer, joins, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{}", server.port).parse().unwrap()).await.unwrap();
    let (mut slow, _) =
        tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("slow client handshake");
    slow.send(Message::text(json!({"op":"join","id":1,"roomId":"big"}).to_string())).await.unwrap();

    let mut viewer = server.ws().await;
    viewer.join_ok("big").await;
    let mut sender = server.login_client("flooder", "Android").await;
    sender.join_ok("big").await;
    eventually("the slow client is in the room", T, || async {
        server.http("GET", "/api/v1/rooms/big", None).await.1["online"] == 3
    })
    .await;
    assert_eq!(server.metric("onair_ws_connections").await, 3.0);
    viewer.clear();

    // Watch the server: when the stalled client's queue first overflows (frames
    // dropped) and when it is disconnected.
    let port = server.port;
    let monitor_start = Instant::now();
    let monitor = tokio::spawn(async move {
        let probe = MetricsProbe { port };
        let mut first_drop = None;
        loop {
            let text = probe.metrics().await;
            if first_drop.is_none() && parse_metric(&text, "onair_ws_frames_dropped_total") >= 1.0 {
                first_drop = Some(monitor_start.elapsed());
            }
            if parse_metric(&text, "onair_ws_slow_consumer_disconnects_total") >= 1.0 {
                return (first_drop, monitor_start.elapsed());
            }
            assert!(monitor_start.elapsed() < Duration::from_secs(20), "no slow-consumer disconnect within 20 s");
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });

    // Flood: ~8 KB messages at ~100/s (0.8 MB/s into every member) until the slow
    // client is gone, then a little longer.
    const MAX: u32 = 1000;
    let padding = "w".repeat(8 * 1024 - 64);
    let flood_start = Instant::now();
    let mut sent_at: HashMap<u32, Instant> = HashMap::new();
    let mut ids = Vec::new();
    let mut stop_at = MAX;
    let mut i = 0;
    while i < stop_at {
        i += 1;
        sent_at.insert(i, Instant::now());
        ids.push(sender.send_text_nowait("big", &format!("{i} {padding}"), "Normal", i).await);
        tokio::time::sleep_until((flood_start + Duration::from_millis(u64::from(i) * 10)).into()).await;
        if stop_at == MAX && monitor.is_finished() {
            stop_at = i + 100;
        }
    }
    let count = i;
    let (first_drop, disconnected) = monitor.await.unwrap();
    for id in &ids {
        let ack = sender.expect_ack(id).await;
        assert_eq!(ack["dropReason"], "", "the flood stays under the room rate: {ack}");
    }
    let got = viewer.collect_msgs("big", count as usize, T).await;
    let seqs: Vec<u64> = got.iter().map(|(_, m)| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=u64::from(count)).collect::<Vec<_>>(), "the healthy viewer got every message");
    let mut latencies: Vec<Duration> =
        got.iter().map(|(at, m)| at.duration_since(sent_at[&(m["random"].as_u64().unwrap() as u32)])).collect();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    let max = *latencies.last().unwrap();
    assert!(p99 < Duration::from_secs(1), "viewer p99 latency {p99:?} (max {max:?})");

    // The stalled client was cut off: the kernel buffers (a few MB of autotuned send
    // buffer on the server side, a few KB on its side) fill within ~4 s at this
    // rate, then the grace runs.
    let bound = Duration::from_millis(4000 + GRACE_MS + 1500);
    assert!(
        disconnected <= bound,
        "disconnected {disconnected:?} into the flood (first queue drop at {first_drop:?}); expected within {bound:?}"
    );
    if let Some(first_drop) = first_drop {
        let behind_for = disconnected.saturating_sub(first_drop);
        assert!(
            behind_for <= Duration::from_millis(GRACE_MS + 1000),
            "disconnected {behind_for:?} after its queue overflowed (grace {GRACE_MS} ms)"
        );
    }
    eventually("the slow client left the room", T, || async {
        server.http("GET", "/api/v1/rooms/big", None).await.1["online"] == 2
    })
    .await;
    assert_eq!(server.metric("onair_ws_connections").await, 2.0);
    assert_eq!(
        server.metric("onair_ws_slow_consumer_disconnects_total").await,
        1.0,
        "one slow connection must count as one disconnect"
    );
    eprintln!(
        "slow consumer: first drop {first_drop:?}, disconnected {disconnected:?}, p99 {p99:?}, max {max:?}, {count} msgs"
    );
    // Reading it now: whatever was buffered, then a 4008 close or the end of the stream.
    let mut slow = Client::from_stream(slow);
    let ended = slow.wait_closed(T).await;
    assert!(
        is_code(&ended, 4008) || matches!(ended, Ended::Eof | Ended::Error(_)),
        "slow consumer should see 4008 or EOF, got {ended:?}"
    );
    let seen = slow.buffered().iter().flat_map(msgs).count();
    assert!(seen < count as usize, "the slow client cannot have received everything ({seen})");
    // Everyone else is fine.
    viewer.assert_alive().await;
    sender.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_on_the_same_platform_kicks_only_that_session() {
    let server = Server::start("").await;
    server.create_room("r").await;
    let mut web1 = server.login_client("alice", "Web").await;
    web1.join_ok("r").await;
    let mut android = server.login_client("alice", "Android").await;
    android.join_ok("r").await;
    let mut bob = server.login_client("bob", "Web").await;
    bob.join_ok("r").await;

    let mut web2 = server.login_client("alice", "Web").await;
    let kicked = web1.wait_for("kicked frame", T, |v| v["op"] == "kicked").await.v;
    assert_eq!(kicked["reason"], "KICKED_OUT_MULT_DEVICE", "{kicked}");
    assert!(kicked["message"].as_str().is_some_and(|m| !m.is_empty()));
    let ended = web1.wait_closed(T).await;
    assert!(is_code(&ended, 4001), "expected close 4001, got {ended:?}");

    // The Android session and other users are untouched.
    android.assert_alive().await;
    bob.assert_alive().await;
    assert!(android.buffered().iter().all(|v| v["op"] != "kicked"));
    let (_, user) = server.http("GET", &server.admin("/api/v1/users/alice"), None).await;
    let mut platforms: Vec<String> =
        user["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    platforms.sort();
    assert_eq!(platforms, vec!["Android", "Web"], "{user}");

    // The new Web session works; alice is still one member of the room.
    web2.join_ok("r").await;
    let ack = web2.send_text("r", "I'm back", "Normal", 9).await;
    assert_eq!(ack["dropReason"], "", "{ack}");
    let got = android.collect_msgs("r", 1, T).await;
    assert_eq!(got[0].1["seq"], ack["seq"]);
    let members = bob.request(json!({"op":"members","roomId":"r"})).await;
    assert_eq!(members["online"], 2, "alice (two connections) + bob: {members}");
    // A kick on another platform does not touch the first Web replacement.
    let mut android2 = server.login_client("alice", "Android").await;
    let kicked = android.wait_for("kicked frame", T, |v| v["op"] == "kicked").await.v;
    assert_eq!(kicked["reason"], "KICKED_OUT_MULT_DEVICE");
    assert!(is_code(&android.wait_closed(T).await, 4001));
    web2.assert_alive().await;
    android2.assert_alive().await;
}

struct MetricsProbe {
    port: u16,
}

impl MetricsProbe {
    async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
