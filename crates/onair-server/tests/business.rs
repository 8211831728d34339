//! The live-room business layer through the real binary: live state, gifts and
//! wallets (with a concurrency test), combos, likes, levels, statistics, the
//! lottery (re-drawn here from its published seed) and co-hosting — each seen by a
//! real WebSocket client.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const CONFIG: &str = "[live]\npause_grace_secs = 1\n[likes]\nper_user_per_sec = 20\nwindow_ms = 200\n";

async fn room_with_owner(server: &Server, id: &str, owner: &str) {
    let (status, v) = server
        .http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": id, "name": id, "owner": owner})))
        .await;
    assert_eq!(status, 201, "{v}");
}

async fn post_as(server: &Server, user: &str, path: &str, body: Value) -> (u16, Value) {
    server.http("POST", &server.as_user(path, user), Some(&body)).await
}

async fn top_up(server: &Server, user: &str, amount: i64, key: &str) -> (u16, Value) {
    let path = server.admin(&format!("/api/v1/users/{user}/wallet/topup"));
    server.http("POST", &path, Some(&json!({"amount": amount, "idempotencyKey": key}))).await
}

async fn add_rose(server: &Server) {
    let body = json!({"name": "Rose", "price": 10, "icon": "https://cdn.example/rose.png", "animation": ""});
    let (status, v) = server.http("PUT", &server.admin("/api/v1/gifts/rose"), Some(&body)).await;
    assert_eq!(status, 200, "{v}");
}

async fn balance(server: &Server, user: &str) -> u64 {
    let (status, v) = server.http("GET", &server.admin(&format!("/api/v1/users/{user}/wallet")), None).await;
    assert_eq!(status, 200, "{v}");
    v["balance"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_state_follows_the_api_and_the_stream() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "show", "anchor").await;
    let mut viewer = server.ws().await;
    let join = viewer.join_ok("show").await;
    assert_eq!(join["room"]["state"], "upcoming", "{join}");
    assert_eq!(join["room"]["stream"], "show");

    // Schedule, then go live: pushed at once, mirrored in attributes.
    let at = now_secs() + 3600;
    let (s, v) = server
        .http("PUT", &server.as_user("/api/v1/rooms/show/schedule", "anchor"), Some(&json!({"scheduledAt": at})))
        .await;
    assert_eq!(s, 200, "{v}");
    let ev = viewer.wait_event("show", "state").await;
    assert_eq!((ev["state"].as_str(), ev["scheduledAt"].as_u64()), (Some("upcoming"), Some(at)));
    let (s, v) = post_as(&server, "anchor", "/api/v1/rooms/show/state", json!({"state": "live"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "live");
    let ev = viewer.wait_event_where("show", "state", |e| e["state"] == "live").await;
    assert_eq!((ev["previous"].as_str(), ev["reason"].as_str()), (Some("upcoming"), Some("api")));
    let attrs = viewer.wait_event_where("show", "attrs", |e| e["attrs"]["onair.state"] == "live").await;
    assert_eq!(attrs["attrs"]["onair.scheduledAt"], at.to_string());

    // Wrong moves and wrong people get clear errors and change nothing.
    let (s, v) = post_as(&server, "anchor", "/api/v1/rooms/show/state", json!({"state": "upcoming"})).await;
    assert_eq!((s, v["code"].as_u64()), (409, Some(120001)), "{v}");
    assert!(v["message"].as_str().unwrap().contains("'live' to 'upcoming'"), "{v}");
    let (s, v) = post_as(&server, "mallory", "/api/v1/rooms/show/state", json!({"state": "ended"})).await;
    assert_eq!(s, 403, "{v}");
    let (s, _) = post_as(&server, "anchor", "/api/v1/rooms/show/state", json!({"state": "onair"})).await;
    assert_eq!(s, 400);
    let (s, _) = server.http("POST", "/api/v1/rooms/show/state", Some(&json!({"state": "ended"}))).await;
    assert_eq!(s, 401);

    // Readable without login, with cache headers; the list filters by state.
    let (s, head, body) = server.http_full("GET", "/api/v1/rooms/show", None).await;
    assert_eq!(s, 200);
    assert!(head.to_ascii_lowercase().contains("cache-control: public, max-age="), "{head}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["state"], "live");
    let (_, list) = server.http("GET", "/api/v1/rooms?state=live", None).await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1, "{list}");
    let (_, list) = server.http("GET", "/api/v1/rooms?state=ended", None).await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 0);

    // Stream events (what the media service reports): unpublish pauses, the grace
    // period ends it, a recording turns it into a replay.
    let lifecycle = server.admin("/api/v1/streams/show/lifecycle");
    let (s, v) = server.http("POST", &lifecycle, Some(&json!({"event": "unpublished"}))).await;
    assert_eq!(s, 200, "{v}");
    viewer.wait_event_where("show", "stream", |e| e["phase"] == "unpublished").await;
    viewer.wait_event_where("show", "state", |e| e["state"] == "paused" && e["reason"] == "stream").await;
    let ev = viewer.wait_event_where("show", "state", |e| e["state"] == "ended").await;
    assert_eq!(ev["reason"], "timeout");
    let url = "http://127.0.0.1/vod/show/1/index.m3u8";
    server.http("POST", &lifecycle, Some(&json!({"event": "recording", "url": url}))).await;
    viewer.wait_event_where("show", "state", |e| e["state"] == "replay").await;
    let (_, room) = server.http("GET", "/api/v1/rooms/show", None).await;
    assert_eq!((room["state"].as_str(), room["replayUrl"].as_str()), (Some("replay"), Some(url)));

    // A newcomer sees the state on join; it survives a restart.
    let mut server = server;
    server.restart().await;
    let mut late = server.ws().await;
    assert_eq!(late.join_ok("show").await["room"]["state"], "replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gifts_move_money_exactly_once_and_reach_the_room() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "g", "anchor").await;
    add_rose(&server).await;
    let (_, catalog) = server.http("GET", "/api/v1/gifts", None).await;
    assert_eq!(catalog["gifts"][0]["giftId"], "rose", "{catalog}");
    let mut viewer = server.ws().await;
    viewer.join_ok("g").await;

    // Top-ups are idempotent.
    assert_eq!(top_up(&server, "alice", 100, "t1").await.1["balance"], 100);
    let (s, v) = top_up(&server, "alice", 100, "t1").await;
    assert_eq!((s, v["replayed"].as_bool(), v["balance"].as_u64()), (200, Some(true), Some(100)));
    assert_eq!(top_up(&server, "alice", 5, "t1").await.0, 409);
    assert_eq!(top_up(&server, "alice", -5, "t2").await.0, 400);
    assert_eq!(top_up(&server, "alice", 0, "t3").await.0, 400);
    let (s, _) =
        post_as(&server, "alice", "/api/v1/users/alice/wallet/topup", json!({"amount": 5, "idempotencyKey": "x"}))
            .await;
    assert_eq!(s, 403, "users cannot top themselves up");

    // One request with a count is one event; the cloud-shaped message goes with it.
    let gift = |count: i64, key: &str| json!({"giftId": "rose", "count": count, "idempotencyKey": key});
    let (s, v) = post_as(&server, "alice", "/api/v1/rooms/g/gifts", gift(3, "g1")).await;
    assert_eq!((s, v["balance"].as_u64(), v["replayed"].as_bool()), (200, Some(70), Some(false)), "{v}");
    let ev = viewer.wait_event("g", "gift").await;
    assert_eq!((ev["count"].as_u64(), ev["combo"].as_u64(), ev["end"].as_bool()), (Some(3), Some(3), Some(true)));
    assert_eq!(
        (ev["from"].as_str(), ev["to"].as_str(), ev["price"].as_u64()),
        (Some("alice"), Some("anchor"), Some(10))
    );
    let frame = viewer
        .wait_for("gift message", Duration::from_secs(5), |f| {
            msgs(f).iter().any(|m| m["body"][0]["MsgType"] == "TIMCustomElem")
        })
        .await;
    let msg = msgs(&frame.v).into_iter().find(|m| m["body"][0]["MsgType"] == "TIMCustomElem").unwrap();
    assert_eq!((msg["priority"].as_str(), msg["from"].as_str()), (Some("High"), Some("alice")), "{msg}");
    assert_eq!(msg["body"][0]["MsgContent"]["Desc"], "gift");
    let data: Value = serde_json::from_str(msg["body"][0]["MsgContent"]["Data"].as_str().unwrap()).unwrap();
    assert_eq!((data["type"].as_str(), data["count"].as_u64()), (Some("gift"), Some(3)), "{data}");

    // Replays, bad input and insufficient funds move nothing.
    let (s, v) = post_as(&server, "alice", "/api/v1/rooms/g/gifts", gift(3, "g1")).await;
    assert_eq!((s, v["replayed"].as_bool(), v["balance"].as_u64()), (200, Some(true), Some(70)), "{v}");
    let (s, v) = post_as(&server, "alice", "/api/v1/rooms/g/gifts", gift(2, "g1")).await;
    assert_eq!((s, v["code"].as_u64()), (409, Some(120004)), "{v}");
    let (s, v) =
        post_as(&server, "alice", "/api/v1/rooms/g/gifts", json!({"giftId": "tank", "idempotencyKey": "g2"})).await;
    assert_eq!((s, v["code"].as_u64()), (404, Some(120002)), "{v}");
    for bad in [0, -1, 1_000_000_000] {
        assert_eq!(post_as(&server, "alice", "/api/v1/rooms/g/gifts", gift(bad, "g3")).await.0, 400, "count {bad}");
    }
    assert_eq!(post_as(&server, "alice", "/api/v1/rooms/g/gifts", json!({"giftId": "rose"})).await.0, 400, "no key");
    let (s, v) = post_as(&server, "alice", "/api/v1/rooms/g/gifts", gift(8, "g4")).await;
    assert_eq!((s, v["code"].as_u64()), (402, Some(120003)), "{v}");
    assert_eq!(post_as(&server, "alice", "/api/v1/rooms/nowhere/gifts", gift(1, "g5")).await.0, 404);
    assert_eq!(post_as(&server, "anchor", "/api/v1/rooms/g/gifts", gift(1, "g6")).await.0, 400, "self gift");
    assert_eq!(balance(&server, "alice").await, 70);

    // The money is where it should be.
    let (_, earnings) = server.http("GET", &server.as_user("/api/v1/users/anchor/earnings", "anchor"), None).await;
    assert_eq!(earnings["earnings"], 30, "{earnings}");
    assert_eq!(earnings["byRoom"][0], json!({"roomId": "g", "total": 30}));
    let (_, board) = server.http("GET", "/api/v1/rooms/g/gifts/leaderboard", None).await;
    assert_eq!(
        (board["entries"][0]["userId"].as_str(), board["entries"][0]["total"].as_u64()),
        (Some("alice"), Some(30))
    );
    let (_, ledger) = server.http("GET", &server.as_user("/api/v1/users/alice/ledger", "alice"), None).await;
    let kinds: Vec<(&str, i64)> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("gift", -30), ("topup", 100)], "{ledger}");
    let (s, _) = server.http("GET", &server.as_user("/api/v1/users/alice/ledger", "bob"), None).await;
    assert_eq!(s, 403, "a ledger is private");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_clicks_merge_into_a_few_combo_events() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "c", "anchor").await;
    add_rose(&server).await;
    top_up(&server, "bob", 10_000, "t").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("c").await;
    for i in 0..45 {
        let (s, v) = post_as(
            &server,
            "bob",
            "/api/v1/rooms/c/gifts",
            json!({"giftId": "rose", "idempotencyKey": format!("k{i}")}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let mut events = Vec::new();
    loop {
        let ev = viewer.wait_event("c", "gift").await;
        let end = ev["end"].as_bool().unwrap();
        events.push(ev);
        if end {
            break;
        }
    }
    let counts: Vec<u64> = events.iter().map(|e| e["count"].as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), 45, "{counts:?}");
    assert!(events.len() <= 8, "45 clicks should be a handful of events, got {counts:?}");
    assert_eq!(counts[0], 1, "the first click shows at once");
    assert_eq!(events.last().unwrap()["combo"], 45);
    let combos: Vec<u64> = events.iter().map(|e| e["combo"].as_u64().unwrap()).collect();
    assert!(combos.windows(2).all(|w| w[0] <= w[1]), "running totals grow: {combos:?}");
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e["comboId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1, "one combo");
    assert_eq!(balance(&server, "bob").await, 10_000 - 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_gifts_against_one_wallet_end_exact() {
    let server = Arc::new(Server::start(CONFIG).await);
    room_with_owner(&server, "p", "anchor").await;
    add_rose(&server).await;
    top_up(&server, "carol", 1_000, "t").await; // 100 roses
    let mut tasks = Vec::new();
    for i in 0..150 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            post_as(
                &server,
                "carol",
                "/api/v1/rooms/p/gifts",
                json!({"giftId": "rose", "idempotencyKey": format!("p{i}")}),
            )
            .await
            .0
        }));
    }
    // The same key from 20 requests at once debits once.
    for _ in 0..20 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            post_as(
                &server,
                "dave",
                "/api/v1/rooms/p/gifts",
                json!({"giftId": "rose", "count": 2, "idempotencyKey": "same"}),
            )
            .await
            .0
        }));
    }
    top_up(&server, "dave", 100, "t").await;
    let mut codes = std::collections::BTreeMap::new();
    for t in tasks {
        *codes.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(balance(&server, "carol").await, 0);
    let (_, ledger) = server.http("GET", &server.admin("/api/v1/users/carol/ledger?limit=500"), None).await;
    let gifts = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "gift").count();
    assert_eq!(gifts, 100, "{codes:?}");
    let dave = balance(&server, "dave").await;
    assert!(dave == 100 || dave == 80, "dave paid at most once: {dave}");
    let (_, ledger) = server.http("GET", &server.admin("/api/v1/users/dave/ledger"), None).await;
    assert!(ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "gift").count() <= 1);
    let (_, earnings) = server.http("GET", &server.admin("/api/v1/users/anchor/earnings"), None).await;
    assert_eq!(earnings["earnings"].as_u64().unwrap(), 1_000 + (100 - dave), "{earnings}");
    assert!(codes.get(&402).copied().unwrap_or(0) >= 50, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_are_merged_capped_and_exact_across_a_restart() {
    let mut server = Server::start(CONFIG).await;
    room_with_owner(&server, "l", "anchor").await;
    let mut fan = server.login_client("fan", "Web").await;
    fan.join_ok("l").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("l").await;

    let ack = fan.request(json!({"op": "like", "roomId": "l", "count": 5})).await;
    assert_eq!((ack["code"].as_u64(), ack["accepted"].as_u64()), (Some(0), Some(5)), "{ack}");
    // A flood client gets capped (20/s here) and the cap is reported.
    let ack = fan.request(json!({"op": "like", "roomId": "l", "count": 1000})).await;
    let capped = ack["accepted"].as_u64().unwrap();
    assert!(capped <= 15, "{ack}");
    let ack = fan.request(json!({"op": "like", "roomId": "l", "count": 0})).await;
    assert_eq!(ack["code"], 10004);
    // Anonymous viewers may like too (capped per connection).
    let ack = viewer.request(json!({"op": "like", "roomId": "l", "count": 3})).await;
    assert_eq!(ack["accepted"], 3, "{ack}");
    let (_, v) = post_as(&server, "other", "/api/v1/rooms/l/likes", json!({"count": 2})).await;
    let total = 5 + capped + 3 + 2;
    assert_eq!(v["total"].as_u64(), Some(total), "{v}");

    // Events: merged, each with the exact total; the deltas add up.
    let mut seen = 0;
    let mut last = 0;
    while last < total {
        let ev = viewer.wait_event("l", "like").await;
        seen += ev["delta"].as_u64().unwrap();
        last = ev["total"].as_u64().unwrap();
        assert_eq!(last, seen, "{ev}");
    }
    assert_eq!(last, total);
    tokio::time::sleep(Duration::from_millis(1500)).await; // one flush
    server.restart().await;
    let (_, room) = server.http("GET", "/api/v1/rooms/l", None).await;
    assert_eq!(room["likes"].as_u64(), Some(total), "{room}");
    let (_, likes) = server.http("GET", "/api/v1/rooms/l/likes", None).await;
    assert_eq!(likes["total"].as_u64(), Some(total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_grow_with_activity_and_are_stamped_on_messages() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "v", "anchor").await;
    let mut talker = server.login_client("talker", "Web").await;
    talker.join_ok("v").await;
    let (_, before) = server.http("GET", "/api/v1/users/talker/level", None).await;
    assert_eq!(before["level"], 1, "{before}");
    for i in 0..6 {
        assert_eq!(talker.send_text("v", &format!("hello {i}"), "Normal", 100 + i).await["code"], 0);
        tokio::time::sleep(Duration::from_millis(250)).await; // stay under the per-user rate
    }
    // 6 messages × 2 points = 12 → level 2.
    eventually("level 2", Duration::from_secs(5), || async {
        server.http("GET", "/api/v1/users/talker/level", None).await.1["level"] == 2
    })
    .await;
    talker.clear();
    talker.send_text("v", "stamped", "Normal", 999).await;
    let frame =
        talker.wait_for("own message", Duration::from_secs(5), |f| msgs(f).iter().any(|m| m["random"] == 999)).await;
    let msg = msgs(&frame.v).into_iter().find(|m| m["random"] == 999).unwrap();
    assert!(msg["level"].as_u64().unwrap() >= 2, "{msg}");

    // Membership is admin-only and weighs in.
    let (s, _) = server
        .http("PUT", &server.as_user("/api/v1/users/talker/membership", "talker"), Some(&json!({"member": true})))
        .await;
    assert_eq!(s, 403);
    let (s, v) =
        server.http("PUT", &server.admin("/api/v1/users/talker/membership"), Some(&json!({"member": true}))).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["level"].as_u64().unwrap() >= 7 && v["member"] == true, "{v}");
    assert!(v["messages"].as_u64().unwrap() >= 7, "{v}");
}

/// The documented draw (docs/business.md): SplitMix64 + Lemire + partial Fisher–Yates.
fn redraw(pool: &[String], k: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order = pool.to_vec();
    let n = order.len();
    for i in 0..k.min(n) {
        let bound = (n - i) as u64;
        let mut m = u128::from(next()) * u128::from(bound);
        if (m as u64) < bound {
            let floor = bound.wrapping_neg() % bound;
            while (m as u64) < floor {
                m = u128::from(next()) * u128::from(bound);
            }
        }
        order.swap(i, i + (m >> 64) as usize);
    }
    order.truncate(k.min(n));
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_draws_from_chat_with_a_published_seed() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "lot", "anchor").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("lot").await;
    let body = json!({"keyword": "Lucky", "durationSecs": 3, "winners": 2});
    assert_eq!(post_as(&server, "mallory", "/api/v1/rooms/lot/lotteries", body.clone()).await.0, 403);
    assert_eq!(
        post_as(
            &server,
            "anchor",
            "/api/v1/rooms/lot/lotteries",
            json!({"keyword": "", "durationSecs": 3, "winners": 2})
        )
        .await
        .0,
        400
    );
    let (s, started) = post_as(&server, "anchor", "/api/v1/rooms/lot/lotteries", body.clone()).await;
    assert_eq!(s, 200, "{started}");
    let id = started["lotteryId"].as_str().unwrap().to_owned();
    viewer.wait_event_where("lot", "lottery", |e| e["phase"] == "started").await;
    let (s, v) = post_as(&server, "anchor", "/api/v1/rooms/lot/lotteries", body).await;
    assert_eq!((s, v["code"].as_u64()), (409, Some(120006)), "one at a time");

    let mut users: Vec<(&str, Client)> = Vec::new();
    for (i, (user, text)) in
        [("u1", "I feel lucky"), ("u2", "LUCKY me"), ("u3", "not me"), ("u4", "l u c k y!"), ("u1", "lucky again")]
            .into_iter()
            .enumerate()
    {
        if !users.iter().any(|(u, _)| *u == user) {
            let mut c = server.login_client(user, "Web").await;
            c.join_ok("lot").await;
            users.push((user, c));
        }
        let c = &mut users.iter_mut().find(|(u, _)| *u == user).unwrap().1;
        assert_eq!(c.send_text("lot", text, "Normal", i as u32 + 1).await["code"], 0);
    }
    let drawn = viewer.wait_event_where("lot", "lottery", |e| e["phase"] == "drawn").await;
    assert_eq!(drawn["entrants"], 3, "{drawn}");
    let winners: Vec<String> =
        drawn["winners"].as_array().unwrap().iter().map(|w| w["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(winners.len(), 2);

    // Anyone can re-run the draw from the stored pool and the published seed.
    let (_, stored) = server.http("GET", &format!("/api/v1/lotteries/{id}"), None).await;
    let pool: Vec<String> = serde_json::from_value(stored["pool"].clone()).unwrap();
    assert_eq!(pool, vec!["u1", "u2", "u4"], "entry order, once each");
    let seed = u64::from_str_radix(stored["seed"].as_str().unwrap(), 16).unwrap();
    assert_eq!(redraw(&pool, 2, seed), winners);
    // One shape everywhere (issue 15): the stored view, the list and the event agree
    // on `winners` ({userId, nick}) and `note`.
    assert_eq!(stored["winners"], drawn["winners"], "{stored}");
    assert!(stored["winners"][0]["nick"].is_string(), "{stored}");
    assert_eq!(stored["note"], drawn["note"]);
    assert_eq!(stored["note"], "");
    let (_, list) = server.http("GET", "/api/v1/rooms/lot/lotteries", None).await;
    assert_eq!(list["lotteries"][0]["status"], "drawn");
    assert_eq!(list["lotteries"][0]["winners"], drawn["winners"]);

    // More winners than entrants: everyone wins, and the result says so.
    let (_, l2) = post_as(
        &server,
        "anchor",
        "/api/v1/rooms/lot/lotteries",
        json!({"keyword": "zzz", "durationSecs": 60, "winners": 5}),
    )
    .await;
    let id2 = l2["lotteryId"].as_str().unwrap();
    users[0].1.send_text("lot", "zzz", "Normal", 77).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, v) = post_as(&server, "anchor", &format!("/api/v1/lotteries/{id2}/draw"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["winners"].as_array().unwrap().len(), 1);
    assert!(v["note"].as_str().unwrap().contains("every entrant wins"), "{v}");
    let (_, stored2) = server.http("GET", &format!("/api/v1/lotteries/{id2}"), None).await;
    assert_eq!((&stored2["winners"], &stored2["note"]), (&v["winners"], &v["note"]));
    assert_eq!(post_as(&server, "anchor", &format!("/api/v1/lotteries/{id2}/draw"), json!({})).await.0, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn co_hosting_is_requested_accepted_and_ended() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "co", "anchor").await;
    let mut anchor = server.login_client("anchor", "Web").await;
    anchor.join_ok("co").await;
    let mut guest = server.login_client("guest", "Web").await;
    guest.join_ok("co").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("co").await;

    assert_eq!(post_as(&server, "guest", "/api/v1/rooms/co/cohost/request", json!({})).await.0, 200);
    assert_eq!(post_as(&server, "guest", "/api/v1/rooms/co/cohost/request", json!({})).await.0, 409);
    let ev = anchor.wait_event_where("co", "cohost", |e| e["phase"] == "requested").await;
    assert_eq!(ev["userId"], "guest");
    let (_, list) = server.http("GET", &server.as_user("/api/v1/rooms/co/cohost", "anchor"), None).await;
    assert_eq!(list["requests"][0]["userId"], "guest", "{list}");
    assert_eq!(post_as(&server, "guest", "/api/v1/rooms/co/cohost/guest/accept", json!({})).await.0, 403);
    assert_eq!(post_as(&server, "anchor", "/api/v1/rooms/co/cohost/nobody/accept", json!({})).await.0, 404);

    let (s, v) = post_as(&server, "anchor", "/api/v1/rooms/co/cohost/guest/accept", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let mine = guest.wait_event_where("co", "cohost", |e| e["phase"] == "accepted").await;
    let push = mine["pushUrl"].as_str().unwrap();
    assert!(push.starts_with("rtmp://") && push.contains("txSecret=") && push.contains("txTime="), "{mine}");
    let started = viewer.wait_event_where("co", "cohost", |e| e["phase"] == "started").await;
    assert_eq!(started["stream"], "co-cohost-guest");
    assert!(started.get("pushUrl").is_none(), "only the guest sees the push URL");
    assert!(viewer.buffered().iter().all(|f| !f.to_string().contains("txSecret")));

    assert_eq!(post_as(&server, "guest", "/api/v1/rooms/co/cohost/guest/end", json!({})).await.0, 200);
    viewer.wait_event_where("co", "cohost", |e| e["phase"] == "ended").await;
    // A refused request.
    post_as(&server, "guest", "/api/v1/rooms/co/cohost/request", json!({})).await;
    assert_eq!(post_as(&server, "anchor", "/api/v1/rooms/co/cohost/guest/refuse", json!({})).await.0, 200);
    guest.wait_event_where("co", "cohost", |e| e["phase"] == "refused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_and_popularity_rank_the_room_list() {
    let server = Server::start(CONFIG).await;
    room_with_owner(&server, "quiet", "a1").await;
    room_with_owner(&server, "busy", "a2").await;
    let mut fan = server.login_client("fan", "Web").await;
    fan.join_ok("busy").await;
    fan.send_text("busy", "hi", "Normal", 1).await;
    fan.request(json!({"op": "like", "roomId": "busy", "count": 10})).await;
    let (_, list) = server.http("GET", "/api/v1/rooms", None).await;
    let order: Vec<&str> = list["rooms"].as_array().unwrap().iter().map(|r| r["roomId"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["busy", "quiet"], "{list}");
    assert!(list["rooms"][0]["popularity"].as_f64().unwrap() > 0.0);
    let (_, page) = server.http("GET", "/api/v1/rooms?sort=created&limit=1", None).await;
    assert_eq!(page["rooms"][0]["roomId"], "quiet");
    let (_, page2) = server
        .http(
            "GET",
            &format!("/api/v1/rooms?sort=created&limit=1&cursor={}", page["nextCursor"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(page2["rooms"][0]["roomId"], "busy");
    assert_eq!(server.http("GET", "/api/v1/rooms?sort=loudest", None).await.0, 400);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    fan.close().await;
    eventually("watch time", Duration::from_secs(5), || async {
        let (_, s) = server.http("GET", "/api/v1/rooms/busy/stats", None).await;
        s["watchSeconds"].as_u64().unwrap_or(0) >= 1 && s["messages"] == 1 && s["likes"] == 10 && s["peakOnline"] == 1
    })
    .await;
}
