//! The real binary on PostgreSQL (`[store] url`, here through `ONAIR_STORE__URL`):
//! a room, chat over WebSocket, money, and all of it after a restart on the same
//! database; many gifts at once against one wallet; and a clear start-up failure
//! when the database is unreachable.
//!
//! Each test makes a database of its own (`fresh_postgres`), so they run in
//! parallel with everything else. If PostgreSQL is not running they say so loudly
//! and skip, unless `ONAIR_REQUIRE_POSTGRES` is set.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn seqs_of(list: &Value) -> Vec<u64> {
    list.as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

async fn post_as(server: &Server, user: &str, path: &str, body: Value) -> (u16, Value) {
    server.http("POST", &server.as_user(path, user), Some(&body)).await
}

async fn top_up(server: &Server, user: &str, amount: u64, key: &str) -> Value {
    let path = server.admin(&format!("/api/v1/users/{user}/wallet/topup"));
    let (status, v) = server.http("POST", &path, Some(&json!({"amount": amount, "idempotencyKey": key}))).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn wallet(server: &Server, user: &str) -> Value {
    let (status, v) = server.http("GET", &server.admin(&format!("/api/v1/users/{user}/wallet")), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn setup_room_and_rose(server: &Server, room: &str) {
    let body = json!({"roomId": room, "name": "On Postgres", "owner": "anchor", "notification": "hi"});
    let (status, v) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&body)).await;
    assert_eq!(status, 201, "{v}");
    let rose = json!({"name": "Rose", "price": 10, "icon": "https://cdn.example/rose.png", "animation": ""});
    let (status, v) = server.http("PUT", &server.admin("/api/v1/gifts/rose"), Some(&rose)).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_chat_and_money_survive_a_restart_on_postgres() {
    let Some(pg) = fresh_postgres().await else { return };
    let env = [("ONAIR_STORE__URL", pg.url.as_str()), ("ONAIR_LOG", "info,sqlx=warn")];
    let mut server = Server::start_with_env("", &env).await;
    // The log says which database it uses, and the SQLite file is never made.
    eventually("the backend in the log", T, || {
        let logged = server.stderr().iter().any(|l| l.contains("store opened") && l.contains("postgres"));
        async move { logged }
    })
    .await;
    assert!(!server.data_dir().join("onair.db").exists(), "no SQLite file with [store] url set");

    setup_room_and_rose(&server, "pg").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("pg").await;
    for i in 1..=30u32 {
        let ack = alice.send_text("pg", &format!("message {i}"), "Normal", i).await;
        assert_eq!((ack["seq"].clone(), ack["dropReason"].clone()), (json!(i), json!("")), "{ack}");
    }
    assert_eq!(top_up(&server, "alice", 100, "t1").await["balance"], 100);
    let gift = json!({"giftId": "rose", "count": 3, "idempotencyKey": "g1"});
    let (status, v) = post_as(&server, "alice", "/api/v1/rooms/pg/gifts", gift.clone()).await;
    assert_eq!((status, v["balance"].as_u64(), v["replayed"].as_bool()), (200, Some(70), Some(false)), "{v}");
    // The gift's message is the room's next seq.
    let frame = alice
        .wait_for("gift message", Duration::from_secs(5), |f| {
            msgs(f).iter().any(|m| m["body"][0]["MsgType"] == "TIMCustomElem")
        })
        .await;
    let gift_msg = msgs(&frame.v).into_iter().find(|m| m["body"][0]["MsgType"] == "TIMCustomElem").unwrap();
    assert_eq!(gift_msg["seq"], 31, "{gift_msg}");
    drop(alice);

    // What the server acknowledged is in PostgreSQL (read with the store itself).
    let scratch = tempfile::tempdir().unwrap();
    let direct = onair_store::Store::connect(&pg.url, scratch.path()).await.unwrap();
    assert_eq!(direct.backend(), "postgres");
    eventually("history committed", T, || {
        let direct = direct.clone();
        async move { direct.max_seq("pg").await.unwrap() == 31 }
    })
    .await;
    assert_eq!(direct.wallet("alice").await.unwrap().balance, 70);
    direct.close().await;

    server.stop().await; // SIGTERM; asserts a clean exit
    server.restart().await;

    // The room, its history and its sequence.
    let (status, room) = server.http("GET", "/api/v1/rooms/pg", None).await;
    assert_eq!((status, room["name"].as_str()), (200, Some("On Postgres")), "{room}");
    let mut bob = server.login_client("bob", "Web").await;
    let join = bob.join_ok("pg").await;
    assert_eq!(seqs_of(&join["history"]), (12..=31).collect::<Vec<_>>(), "last 20, oldest first: {join}");
    let texts = join["history"].as_array().unwrap();
    assert_eq!(texts[0]["body"], json!([text_elem("message 12")]));
    assert_eq!(texts[19]["body"][0]["MsgType"], "TIMCustomElem");
    assert_eq!(join["room"]["notification"], "hi");
    assert_eq!(join["room"]["nextSeq"], 32);
    let ack = bob.send_text("pg", "after restart", "Normal", 1).await;
    assert_eq!(ack["seq"], 32, "{ack}");
    // Resume across the restart.
    let mut carol = server.ws().await;
    let join = carol.request(json!({"op":"join","roomId":"pg","lastSeq":25})).await;
    assert_eq!(join["resume"], json!({"ok":true}), "{join}");
    assert_eq!(seqs_of(&join["history"]), (26..=32).collect::<Vec<_>>());
    // Older history is pageable.
    let (status, page) = server.http("GET", &server.admin("/api/v1/rooms/pg/messages?limit=5&before=6"), None).await;
    assert_eq!((status, seqs_of(&page["messages"])), (200, vec![5, 4, 3, 2, 1]), "{page}");

    // The money, the ledger, and the idempotency keys.
    let w = wallet(&server, "alice").await;
    assert_eq!(w["balance"], 70, "{w}");
    let (status, v) = post_as(&server, "alice", "/api/v1/rooms/pg/gifts", gift).await;
    assert_eq!((status, v["replayed"].as_bool(), v["balance"].as_u64()), (200, Some(true), Some(70)), "{v}");
    let (_, earnings) = server.http("GET", &server.admin("/api/v1/users/anchor/earnings"), None).await;
    assert_eq!(earnings["earnings"], 30, "{earnings}");
    let (_, ledger) = server.http("GET", &server.admin("/api/v1/users/alice/ledger"), None).await;
    let kinds: Vec<(&str, i64)> = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(kinds, vec![("gift", -30), ("topup", 100)], "{ledger}");
    let (_, board) = server.http("GET", "/api/v1/rooms/pg/gifts/leaderboard", None).await;
    assert_eq!(board["entries"][0]["total"], 30, "{board}");
    server.stop().await;
}

/// The business suite's concurrency test, on PostgreSQL: one wallet, 150 gifts at
/// once (100 affordable), and 20 requests with one key (debited once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_gifts_against_one_wallet_end_exact_on_postgres() {
    let Some(pg) = fresh_postgres().await else { return };
    let server = Arc::new(Server::start_with_env("", &[("ONAIR_STORE__URL", pg.url.as_str())]).await);
    setup_room_and_rose(&server, "p").await;
    top_up(&server, "carol", 1_000, "t").await; // 100 roses
    top_up(&server, "dave", 100, "t").await;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"giftId": "rose", "idempotencyKey": format!("p{i}")});
            post_as(&server, "carol", "/api/v1/rooms/p/gifts", body).await
        }));
    }
    let mut same = Vec::new();
    for _ in 0..20 {
        let server = server.clone();
        same.push(tokio::spawn(async move {
            let body = json!({"giftId": "rose", "count": 2, "idempotencyKey": "same"});
            post_as(&server, "dave", "/api/v1/rooms/p/gifts", body).await
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for t in tasks {
        *codes.entry(t.await.unwrap().0).or_insert(0) += 1;
    }
    assert_eq!((codes.get(&200), codes.get(&402), codes.len()), (Some(&100), Some(&50), 2), "{codes:?}");
    let mut dave_ledger_ids = std::collections::BTreeSet::new();
    let mut first = 0;
    for t in same {
        let (status, v) = t.await.unwrap();
        assert_eq!((status, v["balance"].as_u64()), (200, Some(80)), "the same key never fails: {v}");
        dave_ledger_ids.insert(v["ledgerId"].to_string());
        first += usize::from(v["replayed"] == false);
    }
    assert_eq!(first, 1, "one request moved the money, the others replayed it");
    assert_eq!(wallet(&server, "carol").await["balance"], 0);
    assert_eq!(wallet(&server, "dave").await["balance"], 80, "the same key debited once");
    assert_eq!(dave_ledger_ids.len(), 1, "every answer for the key names one ledger row: {dave_ledger_ids:?}");
    let (_, ledger) = server.http("GET", &server.admin("/api/v1/users/carol/ledger?limit=500"), None).await;
    let gifts = ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "gift").count();
    assert_eq!(gifts, 100);
    let (_, ledger) = server.http("GET", &server.admin("/api/v1/users/dave/ledger"), None).await;
    assert_eq!(ledger["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "gift").count(), 1);
    let (_, earnings) = server.http("GET", &server.admin("/api/v1/users/anchor/earnings"), None).await;
    assert_eq!(earnings["earnings"], 1_020, "{earnings}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_the_start_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_onair"))
        .arg("serve")
        .env("ONAIR_DATA_DIR", dir.path())
        .env("ONAIR_HTTP__LISTEN", "127.0.0.1:0")
        .env("ONAIR_RTMP__LISTEN", "127.0.0.1:0")
        .env("ONAIR_WEBRTC__LISTEN", "127.0.0.1:0")
        // Nothing listens on port 1.
        .env("ONAIR_STORE__URL", "postgres://onair:hunter2@127.0.0.1:1/onair")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run).await.expect("exits by itself").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot connect to the database postgres://onair@127.0.0.1:1/onair"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password is not printed: {stderr}");
}
