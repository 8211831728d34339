//! Safe to expose (issue 14): slow and idle HTTP connections are closed, one address
//! cannot take every socket, and at the connection limit the probes and the admin
//! API still answer while refusals are counted.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to the server from a chosen loopback address (all of 127/8
/// reaches `lo` on Linux), so a test can be several "clients".
async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
}

/// Whether the server closed `stream` within `within` (EOF or reset on read).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response (e.g. 408/400): keep reading until the close
        }
    }
}

/// One request on an open connection; returns the status and the whole response.
async fn request_on(stream: &mut TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(T, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keepalive_connections_are_closed() {
    let server = Server::start_with_env(
        "",
        &[("ONAIR_HTTP__HEADER_READ_TIMEOUT_SECS", "1"), ("ONAIR_HTTP__KEEPALIVE_TIMEOUT_SECS", "2")],
    )
    .await;
    // 100 slowloris connections: a header that never ends, one byte every 200 ms.
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = connect_from([127, 0, 0, 1], server.port).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(s);
    }
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..30 {
            for s in slow.iter_mut() {
                if s.write_all(b"a").await.is_err() {
                    continue;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        slow
    });
    let mut slow = trickle.await.unwrap();
    let mut closed = 0;
    for s in slow.iter_mut() {
        if closed_within(s, Duration::from_millis(100)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 100, "every never-ending header is cut by the header-read timeout ({:?})", start.elapsed());

    // Idle keep-alive: one request answered, then silence.
    let mut idle = connect_from([127, 0, 0, 1], server.port).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let start = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "an idle keep-alive connection is closed");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "not at once: {took:?}");

    // A connection that sends nothing at all is closed too.
    let mut silent = connect_from([127, 0, 0, 1], server.port).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await, "a silent connection is closed");
    assert_eq!(server.http("GET", "/healthz", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_is_capped_and_the_reserve_keeps_probes_and_admin_api_answering() {
    let server = Server::start_with_env(
        "",
        &[
            ("ONAIR_HTTP__MAX_CONNECTIONS_PER_IP", "20"),
            ("ONAIR_HTTP__MAX_OPEN_CONNECTIONS", "50"),
            ("ONAIR_HTTP__RESERVED_CONNECTIONS", "10"),
            ("ONAIR_HTTP__HEADER_READ_TIMEOUT_SECS", "60"),
            ("ONAIR_HTTP__KEEPALIVE_TIMEOUT_SECS", "60"),
        ],
    )
    .await;
    let port = server.port;

    // Per-address cap: the 21st connection from 127.0.0.2 is closed at once, while
    // another address is served.
    let mut hold = Vec::new();
    for _ in 0..20 {
        hold.push(connect_from([127, 0, 0, 2], port).await);
    }
    let mut extra = connect_from([127, 0, 0, 2], port).await;
    assert!(closed_within(&mut extra, Duration::from_secs(3)).await, "over the per-IP cap: closed");
    assert_eq!(server.http("GET", "/healthz", None).await.0, 200);

    // Fill up to the reserve: 20 more from a second address (40 open of 50, 10 kept).
    for _ in 0..20 {
        hold.push(connect_from([127, 0, 0, 3], port).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A reserved connection: the probe and the admin API answer, the rest is 503.
    let mut c = connect_from([127, 0, 0, 4], port).await;
    let (status, _) = request_on(&mut c, "/api/v1/rooms").await;
    assert_eq!(status, 503, "past max - reserve, ordinary requests are refused");
    let mut c = connect_from([127, 0, 0, 4], port).await;
    assert_eq!(request_on(&mut c, "/healthz").await.0, 200, "the health check answers from the reserve");
    let mut c = connect_from([127, 0, 0, 4], port).await;
    let (status, body) = request_on(&mut c, &server.admin("/api/v1/admin/config")).await;
    assert_eq!(status, 200, "the admin API answers from the reserve: {body}");
    let mut c = connect_from([127, 0, 0, 4], port).await;
    let (status, metrics) = request_on(&mut c, "/metrics").await;
    assert_eq!(status, 200);
    assert!(parse_metric(&metrics, "onair_http_connections_refused_total") >= 2.0, "refusals are counted: {metrics}");
    assert!(metrics.contains("reason=\"per_ip\""), "{metrics}");
    assert!(metrics.contains("reason=\"reserve\""), "{metrics}");

    // Past the whole limit, connections are closed at once.
    for _ in 0..10 {
        hold.push(connect_from([127, 0, 0, 5], port).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from([127, 0, 0, 6], port).await;
    assert!(closed_within(&mut over, Duration::from_secs(3)).await, "over the limit: closed");
    drop(hold);
    // Freed: the server serves as before.
    let mut ok = false;
    for _ in 0..50 {
        let mut c = connect_from([127, 0, 0, 7], port).await;
        if request_on(&mut c, "/api/v1/rooms").await.0 != 503 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the slots come back once the connections close");
    let text = server.metrics().await;
    assert!(text.contains("reason=\"limit\""), "{text}");
}
