//! The sensitive-word filter seen from real clients: the app's list and a room's
//! list, edited at run time and loaded from a file, against a corpus of dodges.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

/// Ways people write "badword" and "广告" to get past a filter.
const DODGES: &[&str] = &[
    "badword",
    "BadWord",
    "BADWORD!!",
    "ｂａｄｗｏｒｄ",
    "b a d w o r d",
    "b.a.d-w_o*r d",
    "bad\u{200B}word",
    "b\u{200D}adwo\u{2060}rd",
    "\u{FEFF}B a D\u{200C}w O r D",
    "you are a b-a-d-w-o-r-d really",
    "广告",
    "广 告",
    "广\u{200B}告",
    "广，告",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_list_rejects_every_dodge_and_clean_text_passes() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("words.txt");
    std::fs::write(&file, "# banned\nbadword\n广告\n").unwrap();
    let mut server =
        Server::start(&format!("[filter]\nwords_file = {:?}\naction = \"reject\"\n", file.display().to_string())).await;
    server.create_room("f").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("f").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("f").await;

    for (i, text) in DODGES.iter().enumerate() {
        let ack = alice.send_text("f", text, "Normal", i as u32).await;
        assert_eq!(ack["code"], 80001, "{text:?} got through: {ack}");
    }
    let custom = json!([{"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"say\":\"BAD word\"}"}}]);
    assert_eq!(alice.send_body("f", custom, "Normal", 100).await["code"], 80001, "custom Data is checked too");
    let ack = alice.send_text("f", "a perfectly nice comment 👍", "Normal", 101).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let got = viewer.collect_msgs("f", 1, T).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "a perfectly nice comment 👍");
    assert!(server.metric("onair_filter_hits_total").await >= DODGES.len() as f64);

    // Room profile text is checked too.
    let (s, v) =
        server.http("PATCH", &server.admin("/api/v1/rooms/f"), Some(&json!({"notification": "buy 广 告 here"}))).await;
    assert_eq!((s, v["code"].clone()), (400, json!(80001)), "{v}");

    // Edited at run time, stored: the API's list replaces the file's and outlives a restart.
    let (s, v) = server
        .http("PUT", &server.admin("/api/v1/filter"), Some(&json!({"action": "reject", "words": ["spoiler"]})))
        .await;
    assert_eq!((s, v["count"].clone()), (200, json!(1)), "{v}");
    server.stop().await;
    server.restart().await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("f").await;
    assert_eq!(alice.send_text("f", "S P O I L E R", "Normal", 200).await["code"], 80001);
    assert_eq!(alice.send_text("f", "badword is fine now", "Normal", 201).await["code"], 0);
    let (_, v) = server.http("GET", &server.admin("/api/v1/filter"), None).await;
    assert_eq!(v["words"], json!(["spoiler"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_lists_mask_or_drop_and_huge_lists_work() {
    let server = Server::start("").await;
    server.create_room("m").await;
    server.create_room("d").await;
    let (s, v) = server
        .http("PUT", &server.admin("/api/v1/rooms/m/filter"), Some(&json!({"action": "mask", "words": ["darn"]})))
        .await;
    assert_eq!(s, 200, "{v}");
    // 100,000 words for the other room, dropping silently.
    let mut words: Vec<String> = (0..100_000).map(|i| format!("w{i:06}x")).collect();
    words.push("nope".into());
    let (s, v) = server
        .http("PUT", &server.admin("/api/v1/rooms/d/filter"), Some(&json!({"action": "drop", "words": words})))
        .await;
    assert_eq!((s, v["count"].clone()), (200, json!(100_001)), "{v}");

    let mut alice = server.login_client("alice", "Android").await;
    alice.join_ok("m").await;
    alice.join_ok("d").await;
    let mut viewer = server.login_client("viewer", "Android").await;
    viewer.join_ok("m").await;
    viewer.join_ok("d").await;

    let ack = alice.send_text("m", "oh D A R N it", "Normal", 1).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let got = viewer.collect_msgs("m", 1, T).await;
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "oh *** it", "the dodge span is masked, the rest kept");

    let ack = alice.send_text("d", "n o p e", "Normal", 2).await;
    assert_eq!((ack["code"].clone(), ack["seq"].clone()), (json!(0), json!(0)), "dropped silently: {ack}");
    let ack = alice.send_text("d", "w012345x appears", "Normal", 3).await;
    assert_eq!(ack["seq"], 0, "{ack}");
    let ack = alice.send_text("d", "fine", "Normal", 4).await;
    assert!(ack["seq"].as_u64().unwrap() > 0);
    let got = viewer.collect_msgs("d", 1, T).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "fine");

    let (s, v) = server
        .http("PUT", &server.admin("/api/v1/rooms/m/filter"), Some(&json!({"action": "shout", "words": []})))
        .await;
    assert_eq!((s, v["code"].clone()), (400, json!(10004)), "{v}");
    let (s, v) = server
        .http(
            "PUT",
            &server.admin("/api/v1/rooms/m/filter"),
            Some(&json!({"action": "mask", "words": ["x".repeat(101)]})),
        )
        .await;
    assert_eq!((s, v["code"].clone()), (400, json!(10004)), "{v}");
    let (s, _) = server.http("DELETE", &server.admin("/api/v1/rooms/m/filter"), None).await;
    assert_eq!(s, 200);
    assert_eq!(alice.send_text("m", "darn", "Normal", 5).await["code"], 0);
    let got = viewer.collect_msgs("m", 1, T).await;
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "darn");
}
