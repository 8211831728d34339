//! The native API's three ways to authenticate an admin (query UserSig like the
//! cloud, UserSig headers, a static API token) and its OpenAPI document.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request with extra headers; returns the status and the body.
async fn request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_header_auth_work_and_fail_clearly() {
    let server = Server::start("").await;
    let mut cfg = std::fs::read_to_string(server.config_path()).unwrap();
    cfg = cfg.replace("admins = [", "api_token = \"s3cret-token\"\nadmins = [");
    std::fs::write(server.config_path(), cfg).unwrap();
    let mut server = server;
    server.restart().await;

    let create = |id: &str| Some(json!({"roomId": id}));
    let bearer = |t: &str| vec![("Authorization", format!("Bearer {t}"))];
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &bearer("s3cret-token"), create("t1")).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &bearer("wrong"), create("t2")).await;
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("70003") && b.contains("invalid API token"), "{b}");

    let headers = vec![("X-OnAir-Identifier", ADMIN.to_string()), ("X-OnAir-UserSig", sig(ADMIN))];
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &headers, create("t3")).await;
    assert_eq!(s, 201, "{b}");
    let not_admin = vec![("X-OnAir-Identifier", "alice".to_string()), ("X-OnAir-UserSig", sig("alice"))];
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &not_admin, create("t4")).await;
    assert_eq!(s, 403, "{b}");
    let forged = vec![("X-OnAir-Identifier", ADMIN.to_string()), ("X-OnAir-UserSig", sig("alice"))];
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &forged, create("t5")).await;
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("70013"), "{b}");
    let (s, b) = request(&server, "POST", "/api/v1/rooms", &[], create("t6")).await;
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("Bearer"), "the error says how to authenticate: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refused_when_none_is_configured() {
    let server = Server::start("").await;
    let (s, b) =
        request(&server, "GET", "/api/v1/users/alice", &[("Authorization", "Bearer ".to_string())], None).await;
    assert_eq!(s, 401, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_its_page_are_served() {
    let server = Server::start("").await;
    let (s, b) = request(&server, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(s, 200);
    let doc: Value = serde_json::from_str(&b).expect("valid JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let (s, b) = request(&server, "GET", "/api/v1/docs", &[], None).await;
    assert_eq!(s, 200);
    assert!(b.contains("/api/v1/openapi.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_methods_answer_in_json() {
    let server = Server::start("").await;
    server.create_room("q").await;
    let (s, b) = request(&server, "GET", "/api/v1/rooms/q/members?limit=abc", &[], None).await;
    assert_eq!(s, 400, "{b}");
    let v: Value = serde_json::from_str(&b).expect("JSON error");
    assert_eq!(v["code"], 10004);
    let (s, b) = request(&server, "PUT", "/api/v1/rooms/q/members", &[], None).await;
    assert_eq!(s, 405, "{b}");
    let v: Value = serde_json::from_str(&b).expect("JSON error");
    assert_eq!(v["code"], 10003);
}

#[test]
fn every_native_route_is_in_the_openapi_document() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/openapi.json")).expect("valid JSON");
    let source = [
        include_str!("../src/http/mod.rs"),
        include_str!("../src/faces/api.rs"),
        include_str!("../src/faces/api_live.rs"),
        include_str!("../src/faces/media.rs"),
        include_str!("../src/faces/web.rs"),
        include_str!("../src/faces/director.rs"),
        include_str!("../src/faces/broadcast.rs"),
    ]
    .concat();
    let routes: Vec<&str> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter(|r| r.starts_with("/api/v1"))
        .collect();
    assert!(routes.len() > 10);
    for route in routes {
        assert!(doc["paths"].get(route).is_some(), "{route} is served but not documented in docs/openapi.json");
    }
}
