//! History survives a restart; reconnecting clients resume without gaps or
//! duplicates, and are told when they cannot.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn seqs_of(list: &Value) -> Vec<u64> {
    list.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_sequence_survive_a_restart() {
    let mut server = Server::start("").await;
    let (status, _) = server
        .http(
            "POST",
            &server.admin("/api/v1/rooms"),
            Some(&json!({"roomId":"keep","name":"Keeper","notification":"notice","attrs":{"k":"v"}})),
        )
        .await;
    assert_eq!(status, 201);
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("keep").await;
    for i in 1..=30u32 {
        let ack = alice.send_text("keep", &format!("message {i}"), "Normal", i).await;
        assert_eq!((ack["seq"].clone(), ack["dropReason"].clone()), (json!(i), json!("")), "{ack}");
    }
    drop(alice);
    server.stop().await; // SIGTERM; asserts a clean exit
    server.restart().await;

    let mut bob = server.login_client("bob", "Web").await;
    let join = bob.join_ok("keep").await;
    assert_eq!(seqs_of(&join["history"]), (11..=30).collect::<Vec<_>>(), "last 20, oldest first: {join}");
    for m in join["history"].as_array().unwrap() {
        let i = m["seq"].as_u64().unwrap();
        assert_eq!(m["body"], json!([text_elem(&format!("message {i}"))]));
        assert_eq!(m["from"], "alice");
        assert_eq!(m["random"], i);
    }
    assert_eq!(join["room"]["name"], "Keeper");
    assert_eq!(join["room"]["notification"], "notice");
    assert_eq!(join["room"]["attrs"], json!({"k":"v"}));
    assert_eq!(join["room"]["nextSeq"], 31);
    // The sequence continues where it stopped.
    let ack = bob.send_text("keep", "after restart", "Normal", 1).await;
    assert_eq!(ack["seq"], 31, "{ack}");
    // The full history is pageable by admins, newest first.
    let (status, page) = server.http("GET", &server.admin("/api/v1/rooms/keep/messages?limit=25"), None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(seqs_of(&page["messages"]), (7..=31).rev().collect::<Vec<_>>());
    assert_eq!(page["nextBefore"], 7);
    let (_, rest) = server.http("GET", &server.admin("/api/v1/rooms/keep/messages?limit=25&before=7"), None).await;
    assert_eq!(seqs_of(&rest["messages"]), (1..=6).rev().collect::<Vec<_>>());
    assert_eq!(rest["nextBefore"], Value::Null);
    // Resume also works across the restart (the buffer is refilled from storage).
    let mut carol = server.ws().await;
    let join = carol.request(json!({"op":"join","roomId":"keep","lastSeq":25})).await;
    assert_eq!(join["resume"], json!({"ok":true}), "{join}");
    assert_eq!(seqs_of(&join["history"]), (26..=31).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_viewers_resume_without_gap_or_duplicate_while_chat_continues() {
    let server = Server::start("[chat]\nrate_per_sec = 1000\n").await;
    server.create_room("flow").await;
    const TOTAL: u64 = 90;
    // A sender keeps talking in the background the whole time.
    let mut sender = server.login_client("talker", "Android").await;
    sender.join_ok("flow").await;
    let talk = tokio::spawn(async move {
        for i in 1..=TOTAL {
            let ack = sender.send_text("flow", &format!("m{i}"), "Normal", i as u32).await;
            assert_eq!(ack["seq"], i, "{ack}");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        sender
    });

    let mut seen: Vec<u64> = Vec::new();
    let mut viewer = server.ws().await;
    let join = viewer.join_ok("flow").await;
    seen.extend(seqs_of(&join["history"]));
    let mut reconnects = 0;
    while seen.last().copied().unwrap_or(0) < TOTAL {
        // Read a little, then drop the connection and resume from the last seq seen.
        let frames = viewer.collect_pushes(Duration::from_millis(150)).await;
        for f in &frames {
            seen.extend(msgs(&f.v).iter().map(|m| m["seq"].as_u64().unwrap()));
        }
        if seen.last().copied().unwrap_or(0) >= TOTAL {
            break;
        }
        viewer.close().await;
        drop(viewer);
        tokio::time::sleep(Duration::from_millis(60)).await; // messages arrive meanwhile
        viewer = server.ws().await;
        let last = seen.last().copied().unwrap_or(0);
        let join = viewer.request(json!({"op":"join","roomId":"flow","lastSeq": last})).await;
        assert_eq!(join["code"], 0, "{join}");
        assert_eq!(join["resume"], json!({"ok":true}), "{join}");
        let resumed = seqs_of(&join["history"]);
        assert!(resumed.first().is_none_or(|s| *s == last + 1), "resume after {last} starts at {resumed:?}");
        seen.extend(resumed);
        reconnects += 1;
    }
    talk.await.unwrap();
    assert!(reconnects >= 3, "the test should reconnect several times mid-stream ({reconnects})");
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>(), "gap-free and duplicate-free across {reconnects} reconnects");
    // Resuming when nothing is new: ok with an empty history.
    let join = viewer.request(json!({"op":"join","roomId":"flow","lastSeq": TOTAL})).await;
    assert_eq!(join["resume"], json!({"ok":true}));
    assert_eq!(join["history"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_beyond_the_buffer_is_reported_not_recoverable() {
    // history_on_join also 5, so the effective resume buffer is exactly 5.
    let server = Server::start("[chat]\nresume_buffer = 5\nhistory_on_join = 5\n").await;
    server.create_room("short").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("short").await;
    for i in 1..=30u32 {
        let ack = alice.send_text("short", &format!("m{i}"), "Normal", i).await;
        assert_eq!(ack["seq"], i);
    }
    let mut v = server.ws().await;
    // 26..=30 are buffered: lastSeq 25 is recoverable, 24 is not.
    let join = v.request(json!({"op":"join","roomId":"short","lastSeq":25})).await;
    assert_eq!(join["resume"], json!({"ok":true}), "{join}");
    assert_eq!(seqs_of(&join["history"]), vec![26, 27, 28, 29, 30]);
    for last in [24, 3, 0] {
        let join = v.request(json!({"op":"join","roomId":"short","lastSeq":last})).await;
        assert_eq!(join["code"], 0);
        assert_eq!(
            join["resume"],
            json!({"ok":false,"oldestAvailable":26,"reason":"not recoverable"}),
            "lastSeq {last}: {join}"
        );
        assert_eq!(seqs_of(&join["history"]), vec![26, 27, 28, 29, 30], "the normal recent history instead");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_resume_buffer_setting_refuses_old_gaps() {
    let server = Server::start("[chat]\nresume_buffer = 5\n").await;
    server.create_room("r").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("r").await;
    for i in 1..=30u32 {
        alice.send_text("r", "x", "Normal", i).await;
    }
    let mut v = server.ws().await;
    let join = v.request(json!({"op":"join","roomId":"r","lastSeq":3})).await;
    assert_eq!(join["resume"]["ok"], false, "{join}");
    assert_eq!(join["resume"]["reason"], "not recoverable");
    let oldest = join["resume"]["oldestAvailable"].as_u64().unwrap();
    assert!(oldest > 4 && oldest <= 26, "oldestAvailable {oldest}");
    // The reply still carries the normal recent history (20 by default).
    assert_eq!(seqs_of(&join["history"]), (11..=30).collect::<Vec<_>>());
}
