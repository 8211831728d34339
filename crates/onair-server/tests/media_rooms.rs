//! A room follows its anchor's real stream: ffmpeg publishes to the room's stream
//! name and viewers on the WebSocket see `stream` events and the live state move
//! upcoming → live → paused → ended → replay (the recording becomes the replay, and
//! it plays).

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::time::Duration;

use common::*;
use media_util::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_state_follows_the_stream_and_the_recording_becomes_the_replay() {
    let s = Server::start(&format!("{}[live]\npause_grace_secs = 1\n", media_toml(""))).await;
    let (status, v) = s
        .http("POST", &s.admin("/api/v1/rooms"), Some(&json!({"roomId": "stage", "name": "Stage", "owner": "anchor"})))
        .await;
    assert_eq!(status, 201, "{v}");
    let mut viewer = s.ws().await;
    let join = viewer.join_ok("stage").await;
    assert_eq!((join["room"]["state"].as_str(), join["room"]["stream"].as_str()), (Some("upcoming"), Some("stage")));

    let mut publisher = publish(&push_url(&s, "stage"), 5);
    let ev = viewer.wait_event_where("stage", "stream", |e| e["phase"] == "published").await;
    assert_eq!(ev["stream"], "stage", "{ev}");
    let ev = viewer.wait_event_where("stage", "state", |e| e["state"] == "live").await;
    assert_eq!((ev["previous"].as_str(), ev["reason"].as_str()), (Some("upcoming"), Some("stream")));
    let (_, room) = s.http("GET", "/api/v1/rooms/stage", None).await;
    assert_eq!(room["state"], "live");

    // The publisher stops: paused at once, ended after the grace period, and the
    // recording turns the room into a replay that ffprobe can read.
    exit_within(&mut publisher, Duration::from_secs(20)).await.expect("ffmpeg ends by itself");
    viewer.wait_event_where("stage", "stream", |e| e["phase"] == "unpublished").await;
    viewer.wait_event_where("stage", "state", |e| e["state"] == "paused").await;
    viewer.wait_event_where("stage", "state", |e| e["state"] == "ended" && e["reason"] == "timeout").await;
    let rec = viewer.wait_event_where("stage", "stream", |e| e["phase"] == "recording").await;
    let url = rec["url"].as_str().unwrap().to_owned();
    viewer.wait_event_where("stage", "state", |e| e["state"] == "replay").await;
    let (_, room) = s.http("GET", "/api/v1/rooms/stage", None).await;
    assert_eq!((room["state"].as_str(), room["replayUrl"].as_str()), (Some("replay"), Some(url.as_str())));
    let full = if url.starts_with("http") { url.clone() } else { format!("http://127.0.0.1:{}{url}", s.port) };
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("replay.flv");
    assert!(record(&full, 2.0, &out).await, "the replay plays: {full}");
    assert_av(&probe(&out).await, 1.0, "replay");
}
