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

/// How long a refused connection may take to be closed: its server may be slow to
/// accept when tests and builds share the machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(10);

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
    // Refused at accept, so closed as soon as the server runs; admitted, it would wait
    // 60 s for a request: 10 s tells the two apart even on a loaded machine.
    assert!(closed_within(&mut extra, REFUSED_WITHIN).await, "over the per-IP cap: closed");
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

    // Past the whole limit, connections are closed at once. Fill up to it: how many
    // more fit depends on whether the server has let go of the reserved requests'
    // sockets yet, so add until one is refused.
    let mut filled = false;
    for _ in 0..15 {
        let mut c = connect_from([127, 0, 0, 5], port).await;
        if closed_within(&mut c, Duration::from_millis(500)).await {
            filled = true;
            break;
        }
        hold.push(c);
    }
    assert!(filled, "the limit of 50 sockets was never reached");
    let mut over = connect_from([127, 0, 0, 6], port).await;
    assert!(closed_within(&mut over, REFUSED_WITHIN).await, "over the limit: closed");
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

/// One request with extra header lines; returns the status, the head and the body.
async fn raw_request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_outbox_byte_budget_the_slowest_readers_are_cut_and_the_room_goes_on() {
    use futures_util::SinkExt;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::Message;
    // Frame caps far away (1000 frames) and a long grace: only bytes can cut anyone.
    let server = Server::start_with_env(
        "[chat]\nrate_per_sec = 1000\noutbox_frames = 1000\nslow_consumer_grace_ms = 60000\n\
         outbox_bytes = 32768\noutbox_budget_bytes = 150000\n",
        &[("ONAIR_HTTP__SOCKET_SEND_BUFFER", "4096"), ("ONAIR_LOG", "warn,onair_hub::outbox=info")],
    )
    .await;
    server.create_room("big").await;
    // Six readers that never read, with tiny receive buffers.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(format!("127.0.0.1:{}", server.port).parse().unwrap()).await.unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .unwrap();
        ws.send(Message::text(json!({"op":"join","id":1,"roomId":"big"}).to_string())).await.unwrap();
        stalled.push(ws);
    }
    let mut viewer = server.ws().await;
    viewer.join_ok("big").await;
    let mut sender = server.login_client("flooder", "Android").await;
    sender.join_ok("big").await;
    // 2 KB messages, a few per tick: push frames of ~10 KB, so the two readers that
    // keep up hold little while each stalled one fills to its 32 KB.
    let padding = "w".repeat(2 * 1024 - 64);
    let start = Instant::now();
    let mut cut = 0.0;
    let mut i = 0u32;
    while start.elapsed() < Duration::from_secs(20) {
        for _ in 0..5 {
            i += 1;
            sender.send_text_nowait("big", &format!("{i} {padding}"), "Normal", i).await;
        }
        viewer.collect_pushes(Duration::from_millis(50)).await;
        sender.clear();
        cut = server.metric("onair_ws_budget_disconnects_total").await;
        if cut >= 1.0 && i >= 100 {
            break;
        }
    }
    if cut < 1.0 {
        let text = server.metrics().await;
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("onair_ws")).collect();
        panic!("the byte budget cut no stalled reader (sent {i} × 2 KB): {lines:#?}");
    }
    let queued = server.metric("onair_ws_outbox_bytes").await;
    assert!(queued <= 300_000.0, "queued bytes stay near the budget: {queued}");
    // The room and the reading viewer are fine.
    viewer.clear();
    let ack = sender.send_text("big", "still here", "High", 999_999).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let got = viewer.collect_msgs("big", 1, T).await;
    assert!(!got.is_empty(), "the healthy viewer still gets messages");
    assert_eq!(server.http("GET", "/api/v1/rooms/big", None).await.0, 200, "the room is not cut");
}

/// Starts `onair serve` with only environment settings (no `[app]`: zero config) on
/// `dir`, returns the banner and stops it.
async fn banner_of(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(onair_bin())
        .arg("serve")
        .env("ONAIR_DATA_DIR", dir)
        .env("ONAIR_HTTP__LISTEN", "127.0.0.1:0")
        .env("ONAIR_RTMP__LISTEN", "127.0.0.1:0")
        .env("ONAIR_WEBRTC__LISTEN", "127.0.0.1:0")
        .env("ONAIR_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("listening on") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.unwrap();
    child.kill().await.unwrap();
    banner
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_printed_once_and_their_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::TempDir::new().unwrap();
    let first = banner_of(dir.path(), &[]).await;
    let key_line = first.lines().find(|l| l.trim_start().starts_with("secret key")).expect(&first).to_owned();
    let secret = key_line.split_whitespace().nth(2).unwrap().to_owned();
    let push_key = std::fs::read_to_string(dir.path().join("push.key")).unwrap().trim().to_owned();
    assert!(first.contains("admin UserSig"), "{first}");
    assert!(first.contains(&push_key), "the first start shows the push key it created");

    let second = banner_of(dir.path(), &[]).await;
    assert!(!second.contains(&secret), "the secret key is not printed again:\n{second}");
    assert!(!second.contains(&push_key), "nor the push key:\n{second}");
    assert!(!second.contains("admin UserSig") && !second.contains("usersig="), "nor an admin UserSig:\n{second}");
    assert!(!second.contains("txSecret="), "nor a signed push URL:\n{second}");
    assert!(second.contains("onair usersig"), "it says how to get a login:\n{second}");

    for name in ["onair.db", "onair.db-wal", "onair.db-shm", "push.key"] {
        let path = dir.path().join(name);
        if name.ends_with("-shm") && !path.exists() {
            continue;
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_apps_never_print_secrets_and_the_admin_config_hides_url_credentials() {
    let server = Server::start(
        "[callback]\nurl = \"https://hookuser:hookpass@hooks.example/cb?auth=tok-123&room=1\"\n\
         [media]\ncallback_url = \"https://media.example/cb?token=mtok-456\"\n",
    )
    .await;
    let out = server.stdout().join("\n");
    assert!(!out.contains(SECRET_KEY), "{out}");
    assert!(!out.contains("usersig="), "{out}");
    let (status, cfg) = server.http("GET", &server.admin("/api/v1/admin/config"), None).await;
    assert_eq!(status, 200);
    let text = cfg.to_string();
    for secret in ["hookpass", "hookuser", "tok-123", "mtok-456"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(cfg["config"]["callback"]["url"], "https://***@hooks.example/cb?auth=***&room=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_gates_the_anchor_rates_guests_and_keeps_demo_coins_in_demo_rooms() {
    use serde_json::json;
    let server = Server::start("[demo]\nenabled = true\nguests_per_minute = 5\n").await;
    let banner = server.stdout().join("\n");
    let code = banner
        .lines()
        .find_map(|l| l.split("once with code ").nth(1))
        .expect("the banner prints a one-time anchor code")
        .trim()
        .to_owned();
    let anchor = r#"{"role":"anchor"}"#;
    // Through a proxy (a forwarding header) the loopback peer is not "this machine".
    let (status, _, body) =
        raw_request(server.port, "POST", "/api/v1/demo/guest", "X-Forwarded-For: 203.0.113.9\r\n", anchor).await;
    assert_eq!(status, 403, "{body}");
    let with_code = format!(r#"{{"role":"anchor","code":"{code}"}}"#);
    let (status, head, body) =
        raw_request(server.port, "POST", "/api/v1/demo/guest", "X-Forwarded-For: 203.0.113.9\r\n", &with_code).await;
    assert_eq!(status, 200, "the one-time code works: {body}");
    assert!(head.contains("cache-control: no-store"), "a login is not cached: {head}");
    let (status, _, _) =
        raw_request(server.port, "POST", "/api/v1/demo/guest", "X-Forwarded-For: 203.0.113.9\r\n", &with_code).await;
    assert_eq!(status, 403, "…once");
    // From this machine it stays easy.
    assert_eq!(raw_request(server.port, "POST", "/api/v1/demo/guest", "", anchor).await.0, 200);

    // Guests: five a minute from one address (not from this machine itself; through a
    // proxy header the peer counts as a remote client).
    let proxied = "X-Forwarded-For: 203.0.113.9\r\n";
    let mut guests = Vec::new();
    for _ in 0..5 {
        let (status, _, body) = raw_request(server.port, "POST", "/api/v1/demo/guest", proxied, "{}").await;
        assert_eq!(status, 200, "{body}");
        guests.push(serde_json::from_str::<serde_json::Value>(&body).unwrap());
    }
    let (status, _, body) = raw_request(server.port, "POST", "/api/v1/demo/guest", proxied, "{}").await;
    assert_eq!(status, 400, "the sixth guest in a minute is refused: {body}");
    assert!(body.contains("10023"), "{body}");
    assert_eq!(raw_request(server.port, "POST", "/api/v1/demo/guest", "", "{}").await.0, 200, "local: not limited");

    // Demo coins buy gifts in the demo room, not in a real room.
    let (status, v) = server
        .http(
            "POST",
            &server.admin("/api/v1/rooms"),
            Some(&json!({"roomId": "real", "name": "real", "owner": "alice"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let guest = guests[0]["userId"].as_str().unwrap();
    let gift = json!({"giftId": "rose", "count": 1, "idempotencyKey": "g1"});
    let (status, v) = server.http("POST", &server.as_user("/api/v1/rooms/real/gifts", guest), Some(&gift)).await;
    assert_eq!(status, 403, "demo coins in a real room: {v}");
    let (status, v) = server.http("POST", &server.as_user("/api/v1/rooms/demo/gifts", guest), Some(&gift)).await;
    assert_eq!(status, 200, "demo coins in the demo room: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_cannot_be_forged_streams_cannot_be_taken_and_push_urls_ignore_the_host_header() {
    use serde_json::json;
    let server = Server::start("").await;
    server.create_room("r1").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("r1").await;
    let forged = json!([{"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"giftId\":\"rocket\",\"count\":9999}","Desc":"gift","Ext":""}}]);
    let ack = alice.send_body("r1", forged, "Normal", 1).await;
    assert_eq!(ack["code"], 10007, "a user cannot author a gift message: {ack}");
    let custom = json!([{"MsgType":"TIMCustomElem","MsgContent":{"Data":"x","Desc":"poll","Ext":""}}]);
    assert_eq!(alice.send_body("r1", custom, "Normal", 2).await["code"], 0, "other custom messages pass");

    // Co-host stream names are the server's.
    let (status, v) =
        server.http("PUT", &server.admin("/api/v1/rooms/r1/stream"), Some(&json!({"stream": "r2-cohost-bob"}))).await;
    assert_eq!(status, 409, "{v}");

    // push-url: the configured public host, whatever Host the request names.
    let path = server.admin("/api/v1/rooms/r1/push-url");
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("evil.example"), "{text}");
    assert!(text.contains("rtmp://127.0.0.1:"), "{text}");
    assert!(text.to_ascii_lowercase().contains("cache-control: no-store"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_json_keys_are_refused_and_pages_and_credentials_have_safe_headers() {
    let server = Server::start("").await;
    let path = server.admin("/api/v1/users/bob/wallet/topup");
    let (status, _, body) =
        raw_request(server.port, "POST", &path, "", r#"{"amount":1,"amount":1000000,"idempotencyKey":"d1"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("90001") && body.contains("duplicate key"), "{body}");
    let (status, _, body) =
        raw_request(server.port, "POST", &path, "", r#"{"a":{"x":1,"x":2},"amount":1,"idempotencyKey":"d2"}"#).await;
    assert_eq!(status, 400, "nested objects too: {body}");
    let (_, head, body) = raw_request(server.port, "GET", &server.admin("/api/v1/users/bob/wallet"), "", "").await;
    assert!(body.contains("\"balance\":0"), "nothing was credited: {body}");
    assert!(head.contains("cache-control: no-store"), "wallet replies are not cached: {head}");
    let v4 = format!("/v4/group_open_http_svc/get_group_info?{}&random=1&contenttype=json", server.admin_query());
    let (_, _, body) = raw_request(server.port, "POST", &v4, "", r#"{"GroupIdList":["a"],"GroupIdList":["b"]}"#).await;
    assert!(body.contains("90001"), "/v4 refuses duplicates too: {body}");

    for page in ["/admin", "/studio/x"] {
        let (status, head, _) = raw_request(server.port, "GET", page, "", "").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-security-policy:") && head.contains("frame-ancestors 'none'"), "{page}: {head}");
        assert!(head.contains("x-frame-options: deny"), "{page}: {head}");
    }
    let (_, head, _) = raw_request(server.port, "GET", "/room/x", "", "").await;
    assert!(head.contains("content-security-policy:") && head.contains("script-src 'self'"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rtmp_before_login_logs_one_line_not_a_backtrace() {
    let server = Server::start_with_env("", &[("RUST_BACKTRACE", "1"), ("ONAIR_LOG", "warn")]).await;
    let before = server.stderr().iter().map(String::len).sum::<usize>();
    for _ in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", server.rtmp_port)).await.unwrap();
        // Handshake: C0 + C1, read S0 S1 S2, send C2.
        let mut c1 = vec![3u8];
        c1.extend_from_slice(&[0u8; 1536]);
        s.write_all(&c1).await.unwrap();
        let mut s012 = vec![0u8; 1 + 1536 * 2];
        tokio::time::timeout(T, s.read_exact(&mut s012)).await.unwrap().unwrap();
        s.write_all(&s012[1..1537]).await.unwrap();
        // An AMF0 command with too few values (found by fuzzing: rml_rtmp panics).
        s.write_all(&[0x33, 0, 0, 0, 0, 0, 0, 0x11, 0x11, 0x11, 0, 0x41]).await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = server.stderr();
    let added = log.iter().map(String::len).sum::<usize>() - before;
    assert!(!log.iter().any(|l| l.contains("stack backtrace") || l.contains("panicked at")), "{log:?}");
    assert!(added < 20 * 400, "at most a line per connection: {added} bytes");
    assert_eq!(server.http("GET", "/healthz", None).await.0, 200);
}

#[tokio::test]
async fn the_banner_says_which_address_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let banner = banner_of(dir.path(), &[("ONAIR_HTTP__LISTEN", "0.0.0.0:0")]).await;
    let last = banner.lines().last().unwrap_or_default();
    assert!(last.starts_with("listening on http://0.0.0.0:"), "{banner}");
    assert!(last.contains("every address") && last.contains("http://127.0.0.1:"), "{last}");
    assert!(banner.starts_with("OnAir is running."), "nothing lands inside the banner: {banner}");
}
