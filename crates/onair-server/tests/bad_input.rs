//! Every kind of bad client input gets its error code, and the connection survives
//! (proved by a ping after each), except a frame over 64 KiB, which closes with 1009.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

fn send_frame(id: u64, extra: Value) -> Message {
    let mut v = json!({"op":"send","id":id,"roomId":"r"});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    text(v.to_string())
}

fn custom(data: &str) -> Value {
    json!({"MsgType":"TIMCustomElem","MsgContent":{"Data":data}})
}

/// (case, frame, expected code, expected echoed id)
fn logged_in_cases() -> Vec<(&'static str, Message, u64, Value)> {
    let big_text = "x".repeat(12 * 1024 + 10);
    vec![
        ("not JSON", text("{nope"), 90001, Value::Null),
        ("JSON array", text("[1,2]"), 90001, Value::Null),
        ("JSON string", text("\"ping\""), 90001, Value::Null),
        ("empty text frame", text(""), 90001, Value::Null),
        ("binary frame", Message::binary(br#"{"op":"ping","id":1}"#.to_vec()), 90001, Value::Null),
        ("missing op", text(r#"{"id":7}"#), 10004, json!(7)),
        ("op not a string", text(r#"{"id":"s","op":5}"#), 10004, json!("s")),
        ("unknown op", text(r#"{"op":"dance","id":8}"#), 10003, json!(8)),
        ("join without roomId", text(r#"{"op":"join","id":9}"#), 10004, json!(9)),
        ("leave without roomId", text(r#"{"op":"leave","id":10}"#), 10004, json!(10)),
        ("members without roomId", text(r#"{"op":"members","id":11}"#), 10004, json!(11)),
        ("send without body", send_frame(12, json!({})), 10004, json!(12)),
        ("unknown priority", send_frame(13, json!({"priority":"Urgent","body":[text_elem("x")]})), 10004, json!(13)),
        ("lowercase priority", send_frame(14, json!({"priority":"high","body":[text_elem("x")]})), 10004, json!(14)),
        (
            "unknown MsgType",
            send_frame(15, json!({"body":[{"MsgType":"TIMBogusElem","MsgContent":{}}]})),
            10004,
            json!(15),
        ),
        (
            "Text not a string",
            send_frame(16, json!({"body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":5}}]})),
            10004,
            json!(16),
        ),
        ("negative random", send_frame(17, json!({"random":-1,"body":[text_elem("x")]})), 10004, json!(17)),
        (
            "random over u32",
            send_frame(18, json!({"random":4_294_967_296u64,"body":[text_elem("x")]})),
            10004,
            json!(18),
        ),
        ("body not an array", send_frame(19, json!({"body":"hi"})), 10004, json!(19)),
        ("empty body", send_frame(20, json!({"body":[]})), 90002, json!(20)),
        ("two custom elements", send_frame(21, json!({"body":[custom("a"), custom("b")]})), 90002, json!(21)),
        ("body over 12 KB", send_frame(22, json!({"body":[text_elem(&big_text)]})), 80002, json!(22)),
        (
            "body + cloudCustomData over 12 KB",
            send_frame(23, json!({"body":[text_elem("x")],"cloudCustomData":"c".repeat(12 * 1024)})),
            80002,
            json!(23),
        ),
        (
            "frame over 16 KiB",
            text(format!(r#"{{"op":"ping","id":24,"pad":"{}"}}"#, "p".repeat(17 * 1024))),
            93000,
            Value::Null,
        ),
        (
            "frame of 60 KiB",
            text(format!(r#"{{"op":"ping","id":25,"pad":"{}"}}"#, "p".repeat(60 * 1024))),
            93000,
            Value::Null,
        ),
        (
            "send to unknown room",
            text(
                r#"{"op":"send","id":26,"roomId":"ghost","body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}"#,
            ),
            10010,
            json!(26),
        ),
        (
            "send to a room not joined",
            text(
                r#"{"op":"send","id":27,"roomId":"other","body":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}"#,
            ),
            10007,
            json!(27),
        ),
        ("join unknown room", text(r#"{"op":"join","id":28,"roomId":"ghost"}"#), 10010, json!(28)),
        ("leave unknown room", text(r#"{"op":"leave","id":29,"roomId":"ghost"}"#), 10010, json!(29)),
        ("leave a room not joined", text(r#"{"op":"leave","id":30,"roomId":"other"}"#), 10007, json!(30)),
        ("members of unknown room", text(r#"{"op":"members","id":31,"roomId":"ghost"}"#), 10010, json!(31)),
        (
            "second login on one connection",
            text(format!(
                r#"{{"op":"login","id":32,"sdkappid":{SDKAPPID},"userId":"alice","userSig":"{}"}}"#,
                sig("alice")
            )),
            10004,
            json!(32),
        ),
        (
            "nick over 64 bytes",
            text(format!(r#"{{"op":"setProfile","id":33,"nick":"{}"}}"#, "n".repeat(65))),
            10004,
            json!(33),
        ),
        (
            "avatar over 500 bytes",
            text(format!(r#"{{"op":"setProfile","id":34,"avatar":"{}"}}"#, "a".repeat(501))),
            10004,
            json!(34),
        ),
        ("string id echoed", text(r#"{"op":"dance","id":"abc-1"}"#), 10003, json!("abc-1")),
        ("object id echoed", text(r#"{"op":"dance","id":{"k":[1]}}"#), 10003, json!({"k":[1]})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_code_and_the_connection_survives() {
    let server = Server::start("").await;
    server.create_room("r").await;
    server.create_room("other").await;
    let mut c = server.login_client("alice", "Android").await;
    c.join_ok("r").await;
    let mut failures = Vec::new();
    for (name, frame, code, id) in logged_in_cases() {
        c.send_raw(frame).await;
        let reply = c.wait_for(&format!("reply to '{name}'"), T, |v| v["op"] == "ack" && v["code"] != 0).await.v;
        if reply["code"] != code || reply["id"] != id || reply["message"].as_str().is_none_or(|m| m.is_empty()) {
            failures.push(format!("{name}: expected code {code} id {id}, got {reply}"));
        }
        c.assert_alive().await;
    }
    assert!(failures.is_empty(), "wrong replies:\n{}", failures.join("\n"));
    // After all of it the connection still works for real traffic.
    let ack = c.send_text("r", "still here", "Normal", 1).await;
    assert_eq!((ack["code"].clone(), ack["dropReason"].clone()), (json!(0), json!("")), "{ack}");
    let got = c.collect_msgs("r", 1, T).await;
    assert_eq!(got[0].1["body"], json!([text_elem("still here")]));
    let (_, h) = server.http("GET", &server.admin("/api/v1/rooms/r/messages"), None).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1, "only the valid message was stored: {h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_get_the_cloud_codes_and_the_connection_survives() {
    let server = Server::start("").await;
    server.create_room("r").await;
    let now = now_secs();
    let expired = onair_auth::gen_usersig(SDKAPPID, SECRET_KEY, "alice", 60, now - 3600);
    let forged = onair_auth::gen_usersig(SDKAPPID, "some-other-secret-key", "alice", 86_400, now);
    let other_app = onair_auth::gen_usersig(1_400_000_999, SECRET_KEY, "alice", 86_400, now);
    let mut tampered = sig("alice");
    let mid = tampered.len() / 2;
    let flipped = if &tampered[mid..=mid] == "A" { "B" } else { "A" };
    tampered.replace_range(mid..=mid, flipped);
    let cases: Vec<(&str, Value, u64)> = vec![
        ("expired UserSig", json!({"userId":"alice","userSig":expired,"sdkappid":SDKAPPID}), 70001),
        ("empty UserSig", json!({"userId":"alice","userSig":"","sdkappid":SDKAPPID}), 70002),
        ("forged UserSig (other key)", json!({"userId":"alice","userSig":forged,"sdkappid":SDKAPPID}), 70003),
        ("garbage UserSig", json!({"userId":"alice","userSig":"not-a-usersig","sdkappid":SDKAPPID}), 70003),
        ("tampered UserSig", json!({"userId":"alice","userSig":tampered,"sdkappid":SDKAPPID}), 70003),
        ("UserSig of another user", json!({"userId":"alice","userSig":sig("bob"),"sdkappid":SDKAPPID}), 70013),
        (
            "wrong sdkappid in request",
            json!({"userId":"alice","userSig":sig("alice"),"sdkappid":1_400_000_999u64}),
            70014,
        ),
        ("UserSig of another app", json!({"userId":"alice","userSig":other_app,"sdkappid":SDKAPPID}), 70014),
        ("userId over 32 bytes", json!({"userId":"u".repeat(33),"userSig":sig("alice"),"sdkappid":SDKAPPID}), 10004),
        ("empty userId", json!({"userId":"","userSig":sig("alice"),"sdkappid":SDKAPPID}), 10004),
        (
            "platform over 16 bytes",
            json!({"userId":"alice","userSig":sig("alice"),"sdkappid":SDKAPPID,"platform":"P".repeat(17)}),
            10004,
        ),
        ("missing userSig", json!({"userId":"alice","sdkappid":SDKAPPID}), 10004),
        ("sdkappid not a number", json!({"userId":"alice","userSig":sig("alice"),"sdkappid":"x"}), 10004),
    ];
    let mut c = server.ws().await;
    // Before login: read-only.
    for req in [json!({"op":"send","roomId":"r","body":[text_elem("x")]}), json!({"op":"setProfile","nick":"n"})] {
        let ack = c.request(req.clone()).await;
        assert_eq!(ack["code"], 70002, "{req}: {ack}");
        c.assert_alive().await;
    }
    let mut failures = Vec::new();
    for (name, req, code) in cases {
        let ack = c.login_with(req).await;
        if ack["code"] != code {
            failures.push(format!("{name}: expected {code}, got {ack}"));
        }
        c.assert_alive().await;
    }
    assert!(failures.is_empty(), "wrong login replies:\n{}", failures.join("\n"));
    // None of the failures left a half-login behind: a valid login still works.
    let ack = c.login("alice", "Web").await;
    assert_eq!(ack["code"], 0, "{ack}");
    c.join_ok("r").await;
    let ack = c.send_text("r", "ok", "Normal", 5).await;
    assert_eq!(ack["dropReason"], "", "{ack}");
    // logout makes the connection anonymous again: send is refused.
    let ack = c.request(json!({"op":"logout"})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let ack = c.request(json!({"op":"send","roomId":"r","body":[text_elem("x")]})).await;
    assert_eq!(ack["code"], 70002, "{ack}");
    c.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_64_kib_closes_with_1009_and_the_server_keeps_serving() {
    let server = Server::start("").await;
    server.create_room("r").await;
    let mut bystander = server.login_client("bob", "Web").await;
    bystander.join_ok("r").await;
    let mut c = server.login_client("alice", "Web").await;
    c.join_ok("r").await;
    let huge = format!(r#"{{"op":"ping","id":1,"pad":"{}"}}"#, "z".repeat(70 * 1024));
    c.send_raw(Message::text(huge)).await;
    let ended = c.wait_closed(T).await;
    assert!(is_code(&ended, 1009), "expected close 1009, got {ended:?}");
    // The others are unaffected and new connections work.
    bystander.assert_alive().await;
    let ack = bystander.send_text("r", "after", "Normal", 1).await;
    assert_eq!(ack["dropReason"], "", "{ack}");
    let mut again = server.login_client("alice", "Web").await;
    let join = again.join_ok("r").await;
    assert_eq!(join["room"]["online"], 2, "the closed connection left the room: {join}");
    again.assert_alive().await;
    let (status, h) = server.http("GET", "/healthz", None).await;
    assert_eq!((status, h["status"].clone()), (200, json!("ok")));
}
