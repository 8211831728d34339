//! Three OnAir nodes on one Redis: chat across nodes in order, cluster-wide counts,
//! a ban on one node effective on the others, a node killed with its clients
//! resuming elsewhere, and Redis restarted mid-test.
//!
//! Each test runs its own `redis-server` on a free port (so it can be killed and
//! restarted without touching the machine's Redis service) and its nodes share a
//! fresh database on the local PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// A private `redis-server` on a fixed free port (restartable on the same port).
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Redis {
        let port = reserved_port();
        let mut r = Redis { port, child: None };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + T;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Three nodes `a`, `b`, `c` sharing `redis` and one database: a fresh PostgreSQL
/// database on the local server (the deployment this mode is for), or — only where
/// PostgreSQL is unreachable and `ONAIR_REQUIRE_POSTGRES` is unset — one SQLite data dir.
struct Cluster {
    nodes: Vec<Server>,
    _db: Option<onair_store::test_util::ScratchPostgres>,
}

impl std::ops::Deref for Cluster {
    type Target = Vec<Server>;
    fn deref(&self) -> &Vec<Server> {
        &self.nodes
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Vec<Server> {
        &mut self.nodes
    }
}

async fn cluster(redis: &Redis, extra_toml: &str) -> Cluster {
    let url = redis.url();
    let db = fresh_postgres().await;
    let mut shared: Vec<(&str, String)> = match &db {
        Some(db) => vec![("ONAIR_STORE__URL", db.url.clone())],
        None => {
            eprintln!("cluster tests: PostgreSQL unreachable, the nodes share one SQLite data dir instead");
            Vec::new()
        }
    };
    let mut nodes: Vec<Server> = Vec::new();
    for id in ["a", "b", "c"] {
        let mut env: Vec<(&str, &str)> =
            vec![("ONAIR_CLUSTER__REDIS", &url), ("ONAIR_CLUSTER__NODE_ID", id), ("ONAIR_CLUSTER__PREFIX", "t")];
        env.extend(shared.iter().map(|(k, v)| (*k, v.as_str())));
        let node = Server::start_with_env(extra_toml, &env).await;
        if db.is_none() && nodes.is_empty() {
            shared.push(("ONAIR_DATA_DIR", node.data_dir().display().to_string()));
        }
        nodes.push(node);
    }
    Cluster { nodes, _db: db }
}

/// Three nodes and a room created on the first, known to all.
async fn cluster_with_room(redis: &Redis, room: &str) -> Cluster {
    let nodes = cluster(redis, "").await;
    nodes[0].create_room(room).await;
    for n in &nodes[1..] {
        wait_room(n, room).await;
    }
    nodes
}

/// A logged-in member of `room` on each node; the first one's message comes first,
/// so node a holds the room's sequencer.
async fn one_member_per_node(nodes: &[Server], room: &str, users: [&str; 3]) -> [Client; 3] {
    let mut out = Vec::new();
    for (node, user) in nodes.iter().zip(users) {
        let mut c = node.login_client(user, "Web").await;
        c.join_ok(room).await;
        if out.is_empty() {
            assert_eq!(c.send_text(room, "first", "Normal", 1).await["code"], 0);
        }
        out.push(c);
    }
    match out.try_into() {
        Ok(three) => three,
        Err(_) => panic!("three nodes"),
    }
}

/// Waits until `room` exists on `node` (rooms created elsewhere arrive through Redis).
async fn wait_room(node: &Server, room: &str) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (status, _) = node.http("GET", &node.admin(&format!("/api/v1/rooms/{room}")), None).await;
        if status == 200 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "room {room} never reached node on port {}", node.port);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads pushes until `n` messages arrived; returns their (seq, text).
async fn read_msgs(c: &mut Client, room: &str, n: usize, timeout: Duration) -> Vec<(u64, String)> {
    let got = c.collect_msgs(room, n, timeout).await;
    got.into_iter()
        .map(|(_, m)| {
            (m["seq"].as_u64().unwrap(), m["body"][0]["MsgContent"]["Text"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn assert_contiguous(list: &[(u64, String)], what: &str) {
    let seqs: Vec<u64> = list.iter().map(|(s, _)| *s).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: seqs must be contiguous and in order: {seqs:?}");
    }
    let unique: HashSet<&u64> = seqs.iter().collect();
    assert_eq!(unique.len(), seqs.len(), "{what}: duplicates in {seqs:?}");
}

async fn online_on(node: &Server, room: &str) -> u64 {
    let (status, v) = node.http("GET", &node.admin(&format!("/api/v1/rooms/{room}/members")), None).await;
    assert_eq!(status, 200, "{v}");
    v["online"].as_u64().unwrap()
}

async fn wait_online(node: &Server, room: &str, want: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = online_on(node, room).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "online on port {} is {got}, want {want}", node.port);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health(node: &Server) -> Value {
    node.http("GET", "/healthz", None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_across_three_nodes_is_ordered_without_duplicates_and_counts_are_cluster_wide() {
    let redis = Redis::start().await;
    let nodes = cluster_with_room(&redis, "x").await;
    let mut clients = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.login_client(&format!("u{i}"), "Web").await;
        c.join_ok("x").await;
        clients.push(c);
    }
    // Two anonymous viewers on c.
    let mut anon = Vec::new();
    for _ in 0..2 {
        let mut v = nodes[2].ws().await;
        v.join_ok("x").await;
        anon.push(v);
    }
    // Counts are cluster-wide on every node within 5 s.
    for n in nodes.iter() {
        wait_online(n, "x", 5, Duration::from_secs(6)).await;
    }
    // So are member lists (the sequencer reports them with membership changes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, members) = nodes[1].http("GET", &nodes[1].admin("/api/v1/rooms/x/members"), None).await;
        let ids: HashSet<String> = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["userId"].as_str().map(str::to_owned))
            .collect();
        if ids == HashSet::from(["u0".to_owned(), "u1".to_owned(), "u2".to_owned()]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "member list on b: {members}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3 × 15 messages sent concurrently from the three nodes.
    let per = 15;
    let mut ids_sent = Vec::new();
    for round in 0..per {
        for (i, c) in clients.iter_mut().enumerate() {
            let id = c.send_text_nowait("x", &format!("n{i}-{round}"), "Normal", (i * 1000 + round) as u32 + 1).await;
            ids_sent.push((i, id));
        }
    }
    let total = per * clients.len();
    let mut orders = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let got = read_msgs(c, "x", total, Duration::from_secs(20)).await;
        assert_eq!(got.len(), total, "client on node {i} got {} of {total}", got.len());
        assert_contiguous(&got, &format!("node {i}"));
        orders.push(got);
    }
    for v in &mut anon {
        let got = read_msgs(v, "x", total, Duration::from_secs(20)).await;
        assert_eq!(got, orders[0], "an anonymous viewer on c sees the same sequence");
    }
    assert_eq!(orders[0], orders[1], "a and b see the same order");
    assert_eq!(orders[1], orders[2], "b and c see the same order");
    // Every sender got an ack with the seq its message was delivered with.
    for (i, c) in clients.iter_mut().enumerate() {
        for (_, id) in ids_sent.iter().filter(|(n, _)| *n == i) {
            let ack = c.expect_ack(id).await;
            assert_eq!(ack["code"], 0, "{ack}");
            let seq = ack["seq"].as_u64().unwrap();
            assert!(orders[i].iter().any(|(s, t)| *s == seq && t.starts_with(&format!("n{i}-"))), "ack {ack}");
        }
    }
    // A client that leaves lowers the count everywhere.
    for mut v in anon {
        v.close().await;
    }
    for n in nodes.iter() {
        wait_online(n, "x", 3, Duration::from_secs(6)).await;
    }
    for n in nodes.iter() {
        assert_eq!(health(n).await["status"], "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_on_one_node_applies_on_every_node_at_once() {
    let redis = Redis::start().await;
    let nodes = cluster_with_room(&redis, "m").await;
    let mut troll_b = nodes[1].login_client("troll", "Web").await;
    troll_b.join_ok("m").await;
    let mut troll_c = nodes[2].login_client("troll", "Android").await;
    troll_c.join_ok("m").await;
    let mut watcher = nodes[2].login_client("watcher", "Web").await;
    watcher.join_ok("m").await;

    let (status, v) = nodes[0]
        .http("POST", &nodes[0].admin("/api/v1/rooms/m/bans"), Some(&json!({"users": ["troll"], "seconds": 600})))
        .await;
    assert!(status == 200 || status == 201, "{status} {v}");
    for c in [&mut troll_b, &mut troll_c] {
        let ev = c.wait_event("m", "kicked").await;
        assert_eq!(ev["userId"], "troll");
    }
    // The others learn of it too.
    let ev = watcher.wait_event("m", "kicked").await;
    assert_eq!(ev["userId"], "troll");
    // Refused on every node: joining again, and sending through any node's API.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for n in nodes.iter() {
        loop {
            let mut again = n.login_client("troll", "Web").await;
            let ack = again.join("m").await;
            if ack["code"] == 10007 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "ban not applied on port {}: {ack}", n.port);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Only the watcher is left, as every node says — b too, which has no member there.
    for n in nodes.iter() {
        wait_online(n, "m", 1, Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_only_its_connections_and_its_clients_resume_elsewhere() {
    let redis = Redis::start().await;
    let mut nodes = cluster_with_room(&redis, "k").await;
    let [mut on_a, mut on_b, mut on_c] = one_member_per_node(&nodes, "k", ["alice", "bob", "carol"]).await;
    for i in 0..5 {
        assert_eq!(on_b.send_text("k", &format!("b{i}"), "Normal", 100 + i).await["code"], 0);
    }
    let seen_by_alice = read_msgs(&mut on_a, "k", 6, T).await;
    let last_seen = seen_by_alice.last().unwrap().0;

    nodes[0].kill().await;
    // Messages sent while a is dead: delivered once the lease moved (≤ ~6 s).
    let mut acked = Vec::new();
    for i in 0..5 {
        let ack = on_c
            .request(json!({"op": "send", "roomId": "k", "priority": "Normal", "random": 200 + i,
                                     "body": [text_elem(&format!("c{i}"))]}))
            .await;
        if ack["code"] == 0 {
            acked.push(ack["seq"].as_u64().unwrap());
        } else {
            // Not acknowledged (the sequencer was gone): the client retries.
            let retry = on_c.send_text("k", &format!("c{i}"), "Normal", 200 + i).await;
            assert_eq!(retry["code"], 0, "retry after the failover: {retry}");
            acked.push(retry["seq"].as_u64().unwrap());
        }
    }
    // Alice reconnects to b and resumes after the last seq she saw: exactly the gap.
    let mut alice = nodes[1].login_client("alice", "Web").await;
    let ack = alice.request(json!({"op": "join", "roomId": "k", "lastSeq": last_seen})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let resumed: Vec<u64> = ack["history"]
        .as_array()
        .or_else(|| ack["msgs"].as_array())
        .map(|a| a.iter().filter_map(|m| m["seq"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(resumed, ((last_seen + 1)..=*acked.last().unwrap()).collect::<Vec<_>>(), "resume on b: {ack}");
    // Bob (b) saw everything in order, with no duplicates.
    let seen_by_bob = read_msgs(&mut on_b, "k", 10, Duration::from_secs(20)).await;
    assert_contiguous(&seen_by_bob, "bob");
    assert!(acked.iter().all(|s| seen_by_bob.iter().any(|(x, _)| x == s)), "bob {seen_by_bob:?} acked {acked:?}");
    // a's connection is gone from the counts within the node TTL.
    wait_online(&nodes[1], "k", 3, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_test_degrades_then_recovers_without_losing_acked_messages() {
    let mut redis = Redis::start().await;
    let nodes = cluster_with_room(&redis, "r").await;
    let mut on_a = nodes[0].login_client("alice", "Web").await;
    on_a.join_ok("r").await;
    assert_eq!(on_a.send_text("r", "before", "Normal", 1).await["code"], 0);
    let mut on_b = nodes[1].login_client("bob", "Web").await;
    on_b.join_ok("r").await;
    let mut acked = vec![1u64];

    redis.kill().await;
    // Health turns degraded; the sequencer's node keeps serving its own members.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while health(&nodes[1]).await["status"] != "degraded" {
        assert!(tokio::time::Instant::now() < deadline, "b never reported degraded: {}", health(&nodes[1]).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3 {
        let id = on_a.send_text_nowait("r", &format!("during{i}"), "Normal", 10 + i).await;
        let ack = on_a.expect_ack(&id).await;
        assert_eq!(ack["code"], 0, "a serves its members while Redis is down: {ack}");
        acked.push(ack["seq"].as_u64().unwrap());
    }
    // b cannot reach the sequencer: a clear, retryable error — never a silent loss.
    let ack = on_b.send_text("r", "from-b", "Normal", 50).await;
    assert!(ack["code"] == 0 || ack["code"] == 10002, "{ack}");
    if ack["code"] == 0 {
        acked.push(ack["seq"].as_u64().unwrap());
    }

    // A room created while Redis is down: the announcement is lost, the resync after
    // the reconnect finds it.
    nodes[0].create_room("made-offline").await;

    redis.spawn().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for n in nodes.iter() {
        while health(n).await["status"] != "ok" {
            assert!(tokio::time::Instant::now() < deadline, "port {} did not recover: {}", n.port, health(n).await);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Chat across nodes works again (with a retry while the lease settles).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let seq = loop {
        let ack = on_b.send_text("r", "after", "Normal", 60).await;
        if ack["code"] == 0 {
            break ack["seq"].as_u64().unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "b never recovered: {ack}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    acked.push(seq);
    let got = on_a.wait_for("the message from b", Duration::from_secs(10), |v| {
        v["op"] == "push" && msgs(v).iter().any(|m| m["seq"].as_u64() == Some(seq))
    });
    drop(got.await);
    for n in nodes.iter() {
        wait_room(n, "made-offline").await;
    }
    // Nothing acknowledged was lost: every acked seq is in the room's history.
    let (status, hist) = nodes[2].http("GET", &nodes[2].admin("/api/v1/rooms/r/messages?limit=100"), None).await;
    assert_eq!(status, 200, "{hist}");
    let stored: HashSet<u64> = hist["messages"]
        .as_array()
        .or_else(|| hist["msgs"].as_array())
        .unwrap()
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    for s in &acked {
        assert!(stored.contains(s), "acked seq {s} missing from history {stored:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_likes_and_a_lottery_work_across_nodes() {
    let redis = Redis::start().await;
    let nodes = cluster_with_room(&redis, "biz").await;
    let [mut on_a, mut on_b, mut on_c] = one_member_per_node(&nodes, "biz", ["ua", "ub", "uc"]).await;

    // A state change made on c reaches members everywhere and every node's room JSON.
    let (s, v) =
        nodes[2].http("POST", &nodes[2].admin("/api/v1/rooms/biz/state"), Some(&json!({"state": "live"}))).await;
    assert_eq!(s, 200, "{v}");
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(c.wait_event("biz", "state").await["state"], "live");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let (_, room) = nodes[1].http("GET", "/api/v1/rooms/biz", None).await;
        if room["state"] == "live" || room["room"]["state"] == "live" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "state on b: {room}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Likes from b and c are counted once, by the sequencer: the total is exact.
    for c in [&mut on_b, &mut on_c] {
        let ack = c.request(json!({"op": "like", "roomId": "biz", "count": 7})).await;
        assert_eq!(ack["code"], 0, "{ack}");
    }
    on_a.wait_event_where("biz", "like", |e| e["total"] == 14).await;

    // A lottery started through c collects entrants from every node.
    let (s, started) = nodes[2]
        .http(
            "POST",
            &nodes[2].admin("/api/v1/rooms/biz/lotteries"),
            Some(&json!({"keyword": "rose", "durationSecs": 2, "winners": 5})),
        )
        .await;
    assert_eq!(s, 200, "{started}");
    on_b.wait_event_where("biz", "lottery", |e| e["phase"] == "started").await;
    assert_eq!(on_b.send_text("biz", "a rose for you", "Normal", 2).await["code"], 0);
    assert_eq!(on_c.send_text("biz", "ROSE", "Normal", 3).await["code"], 0);
    assert_eq!(on_a.send_text("biz", "no flower", "Normal", 4).await["code"], 0);
    let drawn = on_c.wait_event_where("biz", "lottery", |e| e["phase"] == "drawn").await;
    let mut winners: Vec<String> =
        drawn["winners"].as_array().unwrap().iter().map(|w| w["userId"].as_str().unwrap().to_owned()).collect();
    winners.sort();
    assert_eq!(winners, vec!["ub", "uc"], "{drawn}");
}

/// Issue 15: a room made on one node exists at once on the others — no waiting for
/// the announcement: a read, a WebSocket join and a `/v4` send right after the
/// creation answer as for any room; the same after a destroy and a re-creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_made_on_one_node_exists_at_once_on_the_others() {
    let redis = Redis::start().await;
    let nodes = cluster(&redis, "").await;
    for round in 0..5 {
        let id = format!("fresh{round}");
        nodes[0].create_room(&id).await;
        // No wait: straight to the other nodes.
        let (s, v) = nodes[1].http("GET", &format!("/api/v1/rooms/{id}"), None).await;
        assert_eq!(s, 200, "round {round}: GET on node b: {v}");
        let mut viewer = nodes[2].ws().await;
        let ack = viewer.join(&id).await;
        assert_eq!(ack["code"], 0, "round {round}: join on node c: {ack}");
        let sent = nodes[1]
            .v4(
                "group_open_http_svc/send_group_msg",
                &json!({"GroupId": id, "Random": round, "MsgBody": [text_elem("notice")]}),
            )
            .await;
        assert_eq!(sent["ErrorCode"], 0, "round {round}: send_group_msg on node b: {sent}");
    }

    // Destroyed on a and created again at once: every node serves the new room.
    nodes[0].v4_ok("group_open_http_svc/destroy_group", &json!({"GroupId": "fresh0"})).await;
    nodes[0].create_room("fresh0").await;
    for n in nodes.iter() {
        let (s, v) = n.http("GET", "/api/v1/rooms/fresh0", None).await;
        assert_eq!(s, 200, "{v}");
    }
    // Once the announcements settled, still there everywhere (a late "destroyed" must
    // not close the new incarnation).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in nodes.iter() {
        let (s, v) = n.http("GET", "/api/v1/rooms/fresh0", None).await;
        assert_eq!((s, v["nextSeq"].clone()), (200, json!(1)), "the new room, not the old one: {v}");
    }
}
