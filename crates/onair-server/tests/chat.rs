//! Chat between real clients of the real binary: ordering, stamping, element types,
//! duplicates, delivery pacing, anonymous viewers, single-room Web sessions, presence,
//! notifications.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// No frequency cuts in these tests: they are about delivery, not overload.
const NO_CUTS: &str = "[chat]\nrate_per_sec = 2000\n";

fn seqs(msgs: &[(std::time::Instant, Value)]) -> Vec<u64> {
    msgs.iter().map(|(_, m)| m["seq"].as_u64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_an_anonymous_viewer_see_one_gap_free_order_with_stamped_profiles() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("lobby").await;
    // Level set before login is loaded at login; nick/avatar come with the login.
    let (status, v) = server.http("PUT", &server.admin("/api/v1/users/alice"), Some(&json!({"level": 7}))).await;
    assert_eq!((status, v["level"].clone()), (200, json!(7)), "{v}");

    let mut users = Vec::new();
    for (user, nick, avatar) in
        [("alice", "Alice A", "http://img/alice.png"), ("bob", "밥", "http://img/bob.png"), ("carol", "", "")]
    {
        let mut c = server.ws().await;
        let mut req = json!({"userId": user, "userSig": sig(user), "sdkappid": SDKAPPID});
        if !nick.is_empty() {
            req["nick"] = json!(nick);
            req["avatar"] = json!(avatar);
        }
        let ack = c.login_with(req).await;
        assert_eq!(ack["code"], 0, "{ack}");
        assert_eq!(ack["userId"], user);
        assert_eq!(ack["admin"], false);
        assert!(ack["expireAt"].as_u64().unwrap() > now_secs());
        let join = c.join_ok("lobby").await;
        assert_eq!(join["you"]["role"], "Member");
        assert_eq!(join["you"]["mutedUntil"], 0);
        assert_eq!(join["history"], json!([]));
        users.push(c);
    }
    // carol's level changes while she is online: stamped on her later messages.
    let (status, _) = server.http("PUT", &server.admin("/api/v1/users/carol"), Some(&json!({"level": 3}))).await;
    assert_eq!(status, 200);
    // bob renames himself over the socket.
    let ack = users[1].request(json!({"op": "setProfile", "nick": "Bobby", "avatar": "http://img/b2.png"})).await;
    assert_eq!(ack["code"], 0, "{ack}");

    let mut viewer = server.ws().await;
    let join = viewer.join_ok("lobby").await;
    assert_eq!(join["you"]["role"], "Anonymous");
    assert_eq!(join["room"]["online"], 4, "3 users + the viewer: {join}");
    assert_eq!(join["room"]["roomId"], "lobby");
    assert_eq!(join["room"]["nextSeq"], 1);

    // Interleaved sends from all three without waiting for acks.
    const ROUNDS: usize = 8;
    let mut ids = Vec::new();
    for i in 0..ROUNDS {
        for (u, c) in users.iter_mut().enumerate() {
            let random = (u * 1000 + i) as u32;
            let id = c.send_text_nowait("lobby", &format!("u{u} m{i}"), "Normal", random).await;
            ids.push((u, random, id));
        }
    }
    let mut acked = BTreeMap::new();
    for (u, random, id) in &ids {
        let ack = users[*u].expect_ack(id).await;
        assert_eq!(ack["code"], 0, "{ack}");
        assert_eq!(ack["dropReason"], "", "{ack}");
        let seq = ack["seq"].as_u64().unwrap();
        assert!(seq > 0 && ack["time"].as_u64().unwrap() >= now_secs() - 60, "{ack}");
        assert!(acked.insert(seq, (*u, *random)).is_none(), "seq {seq} acked twice");
    }
    let total = ROUNDS * 3;
    assert_eq!(acked.keys().copied().collect::<Vec<_>>(), (1..=total as u64).collect::<Vec<_>>());

    let mut seen = Vec::new();
    for c in users.iter_mut().chain(std::iter::once(&mut viewer)) {
        let got = c.collect_msgs("lobby", total, T).await;
        assert_eq!(seqs(&got), (1..=total as u64).collect::<Vec<_>>(), "gap-free, strictly increasing");
        seen.push(got.into_iter().map(|(_, m)| m).collect::<Vec<_>>());
    }
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "every receiver sees identical messages in identical order");
    }
    let expect_profile = [
        ("alice", "Alice A", "http://img/alice.png", 7),
        // No profile level: the computed level (docs/business.md), which starts at 1.
        ("bob", "Bobby", "http://img/b2.png", 1),
        ("carol", "", "", 3),
    ];
    for m in &seen[0] {
        let seq = m["seq"].as_u64().unwrap();
        let (u, random) = acked[&seq];
        let (user, nick, avatar, level) = expect_profile[u];
        assert_eq!(m["from"], user, "{m}");
        assert_eq!(m["nick"], nick, "{m}");
        assert_eq!(m["avatar"], avatar, "{m}");
        assert_eq!(m["level"], level, "{m}");
        assert_eq!(m["random"], random, "{m}");
        assert_eq!(m["priority"], "Normal");
        assert_eq!(m["cloudCustomData"], "");
        assert_eq!(m["body"], json!([text_elem(&format!("u{u} m{}", random % 1000))]));
    }
    // Per sender, the room keeps the sender's own order.
    for (u, profile) in expect_profile.iter().enumerate() {
        let mine: Vec<u32> =
            seen[0].iter().filter(|m| m["from"] == profile.0).map(|m| m["random"].as_u64().unwrap() as u32).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "sender {u}'s messages reordered");
    }

    // A newcomer gets the last 20 as history, oldest first, identical to the pushes.
    let mut late = server.ws().await;
    let join = late.join_ok("lobby").await;
    let history = join["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 20);
    assert_eq!(history, seen[0][total - 20..].to_vec());
    assert_eq!(join["room"]["nextSeq"], total as u64 + 1);
}

/// Every element type of docs/cloud-compat.md "Message elements", in the cloud's shape.
fn element_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("text", json!({"MsgType":"TIMTextElem","MsgContent":{"Text":"안녕 <b>not html</b> \"quoted\" \u{1F600}"}})),
        (
            "custom",
            json!({"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"cmd\":\"gift\",\"id\":9}","Desc":"a gift","Ext":"ext","Sound":"ding.aiff"}}),
        ),
        ("custom-min", json!({"MsgType":"TIMCustomElem","MsgContent":{"Data":"like"}})),
        ("face", json!({"MsgType":"TIMFaceElem","MsgContent":{"Index":12,"Data":"smile"}})),
        ("face-min", json!({"MsgType":"TIMFaceElem","MsgContent":{"Index":0}})),
        (
            "image",
            json!({"MsgType":"TIMImageElem","MsgContent":{"UUID":"img-1","ImageFormat":3,"ImageInfoArray":[
            {"Type":1,"Size":1024,"Width":640,"Height":480,"URL":"http://x/o.png"},
            {"Type":2,"Size":512,"Width":320,"Height":240,"URL":"http://x/l.png"},
            {"Type":3,"Size":64,"Width":80,"Height":60,"URL":"http://x/t.png"}]}}),
        ),
        (
            "location",
            json!({"MsgType":"TIMLocationElem","MsgContent":{"Desc":"Seoul","Latitude":37.5665,"Longitude":126.978}}),
        ),
        (
            "sound",
            json!({"MsgType":"TIMSoundElem","MsgContent":{"Url":"http://x/a.mp3","UUID":"snd","Size":2048,"Second":4,"Download_Flag":2}}),
        ),
        (
            "video",
            json!({"MsgType":"TIMVideoFileElem","MsgContent":{"VideoUrl":"http://x/v.mp4","VideoUUID":"vid","VideoSize":99999,"VideoSecond":30,"VideoFormat":"mp4","VideoDownloadFlag":2,"ThumbUrl":"http://x/t.jpg","ThumbUUID":"th","ThumbSize":300,"ThumbWidth":64,"ThumbHeight":48,"ThumbFormat":"JPG","ThumbDownloadFlag":2}}),
        ),
        (
            "file",
            json!({"MsgType":"TIMFileElem","MsgContent":{"Url":"http://x/f.pdf","UUID":"f1","FileSize":12345,"FileName":"slides.pdf","Download_Flag":2}}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_element_type_is_accepted_and_delivered_verbatim() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("elems").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("elems").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("elems").await;

    let mut cases = element_cases();
    // One message carrying every type at once (a single custom element is allowed).
    let all: Vec<Value> = cases.iter().filter(|(n, _)| *n != "custom-min").map(|(_, e)| e.clone()).collect();
    cases.push(("all-in-one", Value::Array(all)));

    let mut sent = Vec::new();
    for (i, (name, elem)) in cases.iter().enumerate() {
        let body = if elem.is_array() { elem.clone() } else { json!([elem]) };
        let ccd = format!("{{\"case\":\"{name}\"}}");
        let ack = alice
            .request(json!({"op":"send","roomId":"elems","random": i as u32 + 1,"body": body,"cloudCustomData": ccd}))
            .await;
        assert_eq!(ack["code"], 0, "case {name}: {ack}");
        assert_eq!(ack["dropReason"], "", "case {name}: {ack}");
        sent.push((name, body, ccd, ack["seq"].clone()));
    }
    let got = viewer.collect_msgs("elems", sent.len(), T).await;
    for ((name, body, ccd, seq), (_, m)) in sent.iter().zip(&got) {
        assert_eq!(&m["seq"], seq, "case {name}");
        assert_eq!(&m["body"], body, "case {name}: body must arrive verbatim");
        assert_eq!(m["cloudCustomData"], json!(ccd), "case {name}");
    }
    // And the stored history has them verbatim too (admin API, newest first).
    let (status, h) = server.http("GET", &server.admin("/api/v1/rooms/elems/messages?limit=100"), None).await;
    assert_eq!(status, 200, "{h}");
    let stored: Vec<Value> = h["messages"].as_array().unwrap().iter().rev().cloned().collect();
    assert_eq!(stored.len(), sent.len());
    for ((name, body, ccd, _), m) in sent.iter().zip(&stored) {
        assert_eq!(&m["body"], body, "stored case {name}");
        assert_eq!(m["cloudCustomData"], json!(ccd), "stored case {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_random_is_never_delivered_twice() {
    // One token per second: a third message waits, so its duplicate meets it pending.
    let server = Server::start("[chat]\nrate_per_sec = 1\nmax_wait_ms = 5000\n").await;
    server.create_room("dup").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("dup").await;
    let mut bob = server.login_client("bob", "Web").await;
    bob.join_ok("dup").await;

    let first = alice.send_text("dup", "hello", "Normal", 42).await;
    assert_eq!((first["code"].clone(), first["dropReason"].clone()), (json!(0), json!("")), "{first}");
    let seq = first["seq"].as_u64().unwrap();
    assert!(seq > 0);
    // Retry of a delivered message: same seq, empty drop reason, not delivered again.
    let again = alice.send_text("dup", "hello (retry)", "Normal", 42).await;
    assert_eq!(again["seq"], seq, "{again}");
    assert_eq!(again["dropReason"], "", "{again}");
    // The same random from another sender is another message.
    let other = bob.send_text("dup", "bob's", "Normal", 42).await;
    assert_eq!(other["dropReason"], "", "{other}");
    assert_eq!(other["seq"], seq + 1, "{other}");

    // Pending duplicate: the bucket is empty now, so random 77 waits ~1 s.
    let pending_id = alice.send_text_nowait("dup", "slow", "Normal", 77).await;
    let dup = alice.send_text("dup", "slow (retry)", "Normal", 77).await;
    assert_eq!(dup["code"], 0, "{dup}");
    assert_eq!(dup["seq"], 0, "{dup}");
    assert_eq!(dup["dropReason"], "Duplicate", "{dup}");
    let delivered = alice.expect_ack(&pending_id).await;
    assert_eq!(delivered["dropReason"], "", "{delivered}");
    assert_eq!(delivered["seq"], seq + 2, "{delivered}");
    let after = alice.send_text("dup", "slow (late retry)", "Normal", 77).await;
    assert_eq!(after["seq"], seq + 2, "{after}");

    // bob saw exactly three messages, each once.
    let got = bob.collect_msgs("dup", 3, T).await;
    assert_eq!(seqs(&got), vec![seq, seq + 1, seq + 2]);
    assert_eq!(got[0].1["body"], json!([text_elem("hello")]));
    assert_eq!(got[2].1["body"], json!([text_elem("slow")]));
    let extra = bob.collect_pushes(Duration::from_millis(600)).await;
    assert!(extra.iter().all(|f| msgs(&f.v).is_empty()), "duplicates delivered: {extra:?}");
    let (_, h) = server.http("GET", &server.admin("/api/v1/rooms/dup/messages"), None).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 3, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_pacing_shows_in_the_metrics() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("paced").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("paced").await;
    let ack = alice.send_text("paced", "hello", "Normal", 1).await;
    assert_eq!(ack["code"], 0, "{ack}");
    // The server samples its CPU clock (and publishes the pacing gauges) every second.
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = server.metrics().await;
        if parse_metric(&metrics, "onair_fanout_socket_writes_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(parse_metric(&metrics, "onair_fanout_socket_writes_total") >= 1.0, "writes counted: {metrics}");
    // Far too few writes to measure a cost: the default, and a small room keeps the
    // minimum tick within the latency target.
    assert_eq!(parse_metric(&metrics, "onair_fanout_write_cost_ns"), 5000.0, "{metrics}");
    assert_eq!(parse_metric(&metrics, "onair_fanout_tick_ms"), 50.0, "{metrics}");
    assert_eq!(parse_metric(&metrics, "onair_fanout_stretched_rooms"), 0.0, "{metrics}");
    assert_eq!(parse_metric(&metrics, "onair_fanout_over_target_rooms"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_rooms_slotted_tick_delivers_each_message_once_in_order_and_the_push_before_the_ack() {
    // A budget of 200 socket writes/s per room: 12 members tick every 60 ms, cut into
    // 6 slots of 10 ms, so the members are written in turns (docs/protocol.md).
    let server = Server::start("[chat]\nrate_per_sec = 2000\nfanout_writes_per_sec = 200\n").await;
    server.create_room("big").await;
    let mut senders = Vec::new();
    for user in ["s0", "s1", "s2"] {
        let mut c = server.login_client(user, "Web").await;
        c.join_ok("big").await;
        senders.push(c);
    }
    let mut viewers = Vec::new();
    for _ in 0..9 {
        let mut c = server.ws().await;
        c.join_ok("big").await;
        viewers.push(c);
    }
    const EACH: usize = 10;
    for i in 0..EACH {
        for (u, c) in senders.iter_mut().enumerate() {
            c.send_text_nowait("big", &format!("s{u} m{i}"), "Normal", (u * 100 + i) as u32).await;
        }
    }
    // A sender gets its own message before the ack that says it was delivered, even
    // when its turn in the tick is later.
    for (u, c) in senders.iter_mut().enumerate() {
        let (mut pushed, mut acks) = (HashSet::new(), 0);
        while acks < EACH {
            let v = c.recv_json_timeout(T).await.unwrap_or_else(|| panic!("sender {u}: acks stopped at {acks}"));
            match v["op"].as_str() {
                Some("push") => pushed.extend(v["msgs"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap())),
                Some("ack") => {
                    let seq = v["seq"].as_u64().unwrap();
                    assert!(pushed.contains(&seq), "sender {u}: ack of {seq} before its push ({pushed:?})");
                    acks += 1;
                }
                _ => {}
            }
        }
    }
    let total = (EACH * 3) as u64;
    for (i, c) in viewers.iter_mut().enumerate() {
        let got = c.collect_msgs("big", total as usize, T).await;
        assert_eq!(seqs(&got), (1..=total).collect::<Vec<_>>(), "viewer {i}: each message once, in order");
    }
    // The room's tick was stretched: members are written in turns.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.metric("onair_fanout_stretched_rooms").await, 1.0);
    assert!(server.metric("onair_fanout_tick_ms").await >= 60.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_viewers_read_but_cannot_write() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("ro").await;
    let mut anon = server.ws().await;
    let join = anon.join_ok("ro").await;
    assert_eq!(join["you"]["role"], "Anonymous");
    for req in [
        json!({"op":"send","roomId":"ro","body":[text_elem("hi")]}),
        json!({"op":"setProfile","nick":"lurker"}),
        json!({"op":"logout"}),
    ] {
        let ack = anon.request(req.clone()).await;
        assert_eq!(ack["code"], 70002, "{req} -> {ack}");
        assert!(ack["message"].as_str().unwrap().len() > 5);
    }
    let ack = anon.request(json!({"op":"send","roomId":"ro","body":[text_elem("hi")]})).await;
    assert!(ack["message"].as_str().unwrap().contains("read-only"), "{ack}");
    // It still reads.
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("ro").await;
    let ack = alice.send_text("ro", "for everyone", "Normal", 1).await;
    let got = anon.collect_msgs("ro", 1, T).await;
    assert_eq!(got[0].1["seq"], ack["seq"]);
    assert_eq!(got[0].1["from"], "alice");
    // Nothing the viewer attempted was delivered or stored.
    let (_, h) = server.http("GET", &server.admin("/api/v1/rooms/ro/messages"), None).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1, "{h}");
    anon.assert_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_session_is_in_one_room_other_platforms_in_several() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("A").await;
    server.create_room("B").await;
    let mut web = server.login_client("wendy", "Web").await;
    let mut android = server.login_client("andy", "Android").await;
    let mut carol = server.login_client("carol", "iOS").await;
    let mut anon = server.ws().await;
    for c in [&mut web, &mut android, &mut carol] {
        c.join_ok("A").await;
    }
    anon.join_ok("A").await;
    android.join_ok("B").await;
    let a = server.http("GET", "/api/v1/rooms/A", None).await.1;
    assert_eq!(a["online"], 4, "{a}");

    // Web joins B: it leaves A.
    let join_b = web.join_ok("B").await;
    // Frames of A queued before the switch precede the ack; nothing of A may follow it.
    web.clear();
    assert_eq!(join_b["room"]["online"], 2, "andy + wendy in B: {join_b}");
    let quit = carol
        .wait_event_where("A", "quit", |e| e["users"].as_array().unwrap().iter().any(|u| u["userId"] == "wendy"))
        .await;
    assert_eq!(quit["count"], 1, "{quit}");
    let a = server.http("GET", "/api/v1/rooms/A", None).await.1;
    assert_eq!(a["online"], 3, "A's online must drop when the Web user moves to B: {a}");
    let members = carol.request(json!({"op":"members","roomId":"A"})).await;
    assert!(members["members"].as_array().unwrap().iter().all(|m| m["userId"] != "wendy"), "{members}");
    // Anonymous connections are single-room too.
    anon.join_ok("B").await;
    anon.clear();
    eventually("A online drops to 2 after the anonymous viewer moves", T, || async {
        server.http("GET", "/api/v1/rooms/A", None).await.1["online"] == 2
    })
    .await;

    // A's messages no longer reach the Web user; the Android user gets both rooms.
    let in_a = carol.send_text("A", "in A", "Normal", 1).await;
    assert_eq!(in_a["dropReason"], "");
    let in_b = carol.request(json!({"op":"send","roomId":"B","random":2,"body":[text_elem("x")]})).await;
    assert_eq!(in_b["code"], 10007, "carol is not in B: {in_b}");
    let from_b = android.send_text("B", "in B", "Normal", 3).await;
    assert_eq!(from_b["dropReason"], "");
    let got_a = android.collect_msgs("A", 1, T).await;
    assert_eq!(got_a[0].1["body"], json!([text_elem("in A")]));
    let got_b = web.collect_msgs("B", 1, T).await;
    assert_eq!(got_b[0].1["body"], json!([text_elem("in B")]));
    let android_b = android.collect_msgs("B", 1, T).await;
    assert_eq!(android_b[0].1["seq"], from_b["seq"]);
    let anon_b = anon.collect_msgs("B", 1, T).await;
    assert_eq!(anon_b[0].1["seq"], from_b["seq"]);
    let late = web.collect_pushes(Duration::from_millis(500)).await;
    assert!(late.iter().all(|f| f.v["roomId"] != "A"), "Web user still receives room A: {late:?}");
    let late = anon.collect_pushes(Duration::from_millis(100)).await;
    assert!(late.iter().all(|f| f.v["roomId"] != "A"), "anonymous viewer still receives room A: {late:?}");
    // And the Web user may no longer send to A.
    let ack = web.request(json!({"op":"send","roomId":"A","random":4,"body":[text_elem("x")]})).await;
    assert_eq!(ack["code"], 10007, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_enter_quit_events_and_member_lists() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("live").await;
    let (s, _) = server
        .http("PUT", &server.admin("/api/v1/users/bob"), Some(&json!({"nick":"Bob","avatar":"http://b","level":5})))
        .await;
    assert_eq!(s, 200);
    let mut host = server.login_client("host", "Web").await;
    host.join_ok("live").await;

    let mut joined = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let mut c = server.login_client(user, "Web").await;
        c.join_ok("live").await;
        let enter = host
            .wait_event_where("live", "enter", |e| e["users"].as_array().unwrap().iter().any(|u| u["userId"] == user))
            .await;
        assert!(enter["count"].as_u64().unwrap() >= 1);
        if user == "bob" {
            let u = enter["users"].as_array().unwrap().iter().find(|u| u["userId"] == "bob").unwrap().clone();
            assert_eq!(u, json!({"userId":"bob","nick":"Bob","avatar":"http://b","level":5}));
        }
        joined.push(c);
    }
    // Anonymous viewers count but are not named.
    let mut anon = server.ws().await;
    anon.join_ok("live").await;
    // The rationed online count reaches 5 (at most one push every 2 s).
    let online = host.wait_event_where("live", "online", |e| e["count"] == 5).await;
    assert_eq!(online["count"], 5);

    let members = host.request(json!({"op":"members","roomId":"live"})).await;
    assert_eq!(members["code"], 0, "{members}");
    assert_eq!(members["online"], 5);
    let ids: Vec<&str> = members["members"].as_array().unwrap().iter().map(|m| m["userId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["carol", "bob", "alice", "host"], "newest first");
    let bob = &members["members"][1];
    assert_eq!(
        (bob["nick"].clone(), bob["avatar"].clone(), bob["level"].clone()),
        (json!("Bob"), json!("http://b"), json!(5))
    );
    assert!(bob["joinTime"].as_u64().unwrap() + 60 > now_secs());
    let limited = anon.request(json!({"op":"members","roomId":"live","limit":2})).await;
    assert_eq!(limited["members"].as_array().unwrap().len(), 2, "anonymous may list too: {limited}");
    let (status, rest) = server.http("GET", "/api/v1/rooms/live/members", None).await;
    assert_eq!(status, 200);
    assert_eq!(rest["online"], 5);
    assert_eq!(rest["members"], members["members"], "REST and WS lists agree");
    let (_, rest) = server.http("GET", "/api/v1/rooms/live/members?limit=1", None).await;
    assert_eq!(rest["members"].as_array().unwrap().len(), 1);
    assert_eq!(rest["members"][0]["userId"], "carol");

    // alice leaves explicitly, bob disconnects: both quit.
    let ack = joined[0].request(json!({"op":"leave","roomId":"live"})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let again = joined[0].request(json!({"op":"leave","roomId":"live"})).await;
    assert_eq!(again["code"], 10007, "leaving twice: {again}");
    let mut bob_client = joined.remove(1);
    bob_client.close().await;
    drop(bob_client);
    let mut quitters = HashSet::new();
    while quitters.len() < 2 {
        let q = host.wait_event("live", "quit").await;
        for u in q["users"].as_array().unwrap() {
            quitters.insert(u["userId"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(quitters, HashSet::from(["alice".to_string(), "bob".to_string()]));
    let online = host.wait_event_where("live", "online", |e| e["count"] == 3).await;
    assert_eq!(online["count"], 3);
    let (_, rest) = server.http("GET", "/api/v1/rooms/live/members", None).await;
    let ids: Vec<&str> = rest["members"].as_array().unwrap().iter().map(|m| m["userId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["carol", "host"]);
    // Unknown room.
    let ack = host.request(json!({"op":"members","roomId":"nope"})).await;
    assert_eq!(ack["code"], 10010);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_notification_and_broadcast_arrive_as_events() {
    let server = Server::start(NO_CUTS).await;
    server.create_room("one").await;
    server.create_room("two").await;
    let mut v1 = server.ws().await;
    v1.join_ok("one").await;
    let mut v2 = server.login_client("viewer2", "Web").await;
    v2.join_ok("two").await;

    let content = r#"{"text":"공지: starting soon","image":"http://x/n.png"}"#;
    let (status, v) =
        server.http("POST", &server.admin("/api/v1/rooms/one/notification"), Some(&json!({"content": content}))).await;
    assert_eq!(status, 200, "{v}");
    let ev = v1.wait_event("one", "notification").await;
    assert_eq!(ev, json!({"type":"notification","content": content}));
    let (status, v) =
        server.http("POST", &server.admin("/api/v1/rooms/nope/notification"), Some(&json!({"content":"x"}))).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10010)), "{v}");

    let body = json!([text_elem("server maintenance at 3am")]);
    let (status, b) = server
        .http(
            "POST",
            &server.admin("/api/v1/broadcast"),
            Some(&json!({"from":"ops","body": body,"cloudCustomData":"bc"})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["rooms"], 2, "{b}");
    let bseq = b["seq"].as_u64().unwrap();
    let e1 = v1.wait_event("one", "broadcast").await;
    let e2 = v2.wait_event("two", "broadcast").await;
    for e in [&e1, &e2] {
        assert_eq!(e["from"], "ops", "{e}");
        assert_eq!(e["body"], body, "{e}");
        assert_eq!(e["cloudCustomData"], "bc");
        assert_eq!(e["seq"], bseq);
        assert!(e["time"].as_u64().unwrap() + 60 > now_secs());
    }
    // The notification went to room one only; neither event is chat history.
    let rest = v2.collect_pushes(Duration::from_millis(300)).await;
    let all_events: Vec<Value> = rest.iter().flat_map(|f| events(&f.v)).collect();
    assert!(all_events.iter().all(|e| e["type"] != "notification"), "room two got room one's notice");
    assert!(v2.buffered().iter().all(|f| events(f).iter().all(|e| e["type"] != "notification")));
    let (_, h) = server.http("GET", &server.admin("/api/v1/rooms/one/messages"), None).await;
    assert_eq!(h["messages"], json!([]), "system events are not history: {h}");
    // Default sender is the admin; a second broadcast gets a larger seq.
    let (_, b2) =
        server.http("POST", &server.admin("/api/v1/broadcast"), Some(&json!({"body":[text_elem("again")]}))).await;
    assert!(b2["seq"].as_u64().unwrap() > bseq, "{b2}");
    let e = v1.wait_event_where("one", "broadcast", |e| e["seq"] == b2["seq"]).await;
    assert_eq!(e["from"], ADMIN);
    // Bad broadcast body.
    let (status, v) = server.http("POST", &server.admin("/api/v1/broadcast"), Some(&json!({"body": []}))).await;
    assert_eq!((status, v["code"].clone()), (400, json!(90002)), "{v}");
}
