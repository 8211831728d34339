//! Mutes and bans through the cloud API (`forbid_send_msg`, `ban_group_member` …)
//! and the native API, seen by real WebSocket clients: events at once, expiry driven
//! by the server, and state that outlives a restart.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mute_is_pushed_enforced_and_ends_by_itself() {
    let server = Server::start("").await;
    server.create_room("m").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("m").await;
    let mut bob = server.login_client("bob", "Web").await;
    bob.join_ok("m").await;

    server
        .v4_ok("group_open_http_svc/forbid_send_msg", &json!({"GroupId":"m","Members_Account":["alice"],"MuteTime":2}))
        .await;
    let ev = alice.wait_event_where("m", "muted", |e| e["userId"] == "alice").await;
    let until = ev["mutedUntil"].as_u64().unwrap();
    assert!(until >= now_secs() && until <= now_secs() + 3, "{ev}");
    bob.wait_event_where("m", "muted", |e| e["userId"] == "alice").await;

    let ack = alice.send_text("m", "let me talk", "Normal", 1).await;
    assert_eq!(ack["code"], 10017, "{ack}");
    assert!(ack["message"].as_str().unwrap().contains("more seconds"), "{ack}");
    assert_eq!(bob.send_text("m", "i can", "Normal", 1).await["code"], 0);

    let list = server.v4_ok("group_open_http_svc/get_group_muted_account", &json!({"GroupId":"m"})).await;
    assert_eq!(list["MutedAccountList"][0]["Member_Account"], "alice");
    let legacy = server.v4_ok("group_open_http_svc/get_group_shutted_uin", &json!({"GroupId":"m"})).await;
    assert_eq!(legacy["ShuttedUinList"][0]["ShuttedUntil"], until);

    // A newcomer connection of alice learns it on join.
    let mut alice2 = server.login_client("alice", "Android").await;
    let join = alice2.join_ok("m").await;
    assert_eq!(join["you"]["mutedUntil"], until);

    // Nobody does anything: the server ends the mute and says so.
    let started = Instant::now();
    let ev = alice.wait_event_where("m", "muted", |e| e["userId"] == "alice" && e["mutedUntil"] == 0).await;
    assert_eq!(ev["mutedUntil"], 0);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(alice.send_text("m", "back", "Normal", 2).await["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_shut_up_time_and_unmute_and_permanent() {
    let server = Server::start("").await;
    server.create_room("m").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("m").await;
    server
        .v4_ok(
            "group_open_http_svc/forbid_send_msg",
            &json!({"GroupId":"m","Members_Account":["alice"],"ShutUpTime":4294967295u64}),
        )
        .await;
    let ev = alice.wait_event_where("m", "muted", |e| e["mutedUntil"] == 4294967295u64).await;
    assert_eq!(ev["userId"], "alice");
    assert!(alice.send_text("m", "x", "Normal", 1).await["message"].as_str().unwrap().contains("permanently"));
    server
        .v4_ok("group_open_http_svc/forbid_send_msg", &json!({"GroupId":"m","Members_Account":["alice"],"MuteTime":0}))
        .await;
    alice.wait_event_where("m", "muted", |e| e["mutedUntil"] == 0).await;
    assert_eq!(alice.send_text("m", "free", "Normal", 2).await["code"], 0);

    for (body, code) in [
        (json!({"GroupId":"nope","Members_Account":["a"],"MuteTime":5}), 10010),
        (json!({"GroupId":"m","Members_Account":[],"MuteTime":5}), 10004),
        (json!({"GroupId":"m","Members_Account":["a"],"MuteTime":-5}), 10004),
        (json!({"GroupId":"m","Members_Account":["a"]}), 10004),
        (json!({"GroupId":"m","Members_Account":["a"],"MuteTime":"5"}), 10004),
    ] {
        let v = server.v4("group_open_http_svc/forbid_send_msg", &body).await;
        assert_eq!(v["ErrorCode"], code, "{body} → {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_removes_keeps_out_and_outlives_a_restart() {
    let mut server = Server::start("").await;
    server.create_room("b").await;
    let mut troll = server.login_client("troll", "Web").await;
    troll.join_ok("b").await;
    let mut viewer = server.login_client("viewer", "Web").await;
    viewer.join_ok("b").await;

    server
        .v4_ok(
            "group_open_http_svc/ban_group_member",
            &json!({"GroupId":"b","Members_Account":["troll"],"Duration":3600,"Description":"spam"}),
        )
        .await;
    let ev = troll.wait_event_where("b", "kicked", |e| e["userId"] == "troll").await;
    assert_eq!(ev["reason"], "spam");
    viewer.wait_event_where("b", "kicked", |e| e["userId"] == "troll").await;
    eventually("troll is out", T, || async { server.http("GET", "/api/v1/rooms/b", None).await.1["online"] == 1 })
        .await;

    let ack = troll.join("b").await;
    assert_eq!(ack["code"], 10007, "{ack}");
    assert!(ack["message"].as_str().unwrap().contains("banned"), "{ack}");
    let ack = troll.send_text("b", "still here?", "Normal", 1).await;
    assert_ne!(ack["code"], 0, "{ack}");

    let list =
        server.v4_ok("group_open_http_svc/get_group_ban_member", &json!({"GroupId":"b","Offset":0,"Limit":10})).await;
    assert_eq!(list["BannedAccountList"][0]["Member_Account"], "troll");
    assert_eq!(list["NextOffset"], 0);

    server.stop().await;
    server.restart().await;
    let mut troll = server.login_client("troll", "Web").await;
    assert_eq!(troll.join("b").await["code"], 10007, "the ban outlived the restart");

    server.v4_ok("group_open_http_svc/unban_group_member", &json!({"GroupId":"b","Members_Account":["troll"]})).await;
    assert_eq!(troll.join("b").await["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_banned_in_one_native_call_and_paged() {
    let server = Server::start("").await;
    server.create_room("p").await;
    let users: Vec<String> = (0..250).map(|i| format!("u{i:03}")).collect();
    let (s, v) = server
        .http(
            "POST",
            &server.admin("/api/v1/rooms/p/bans"),
            Some(&json!({"users": users, "seconds": 600, "reason": "raid"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (s, v) =
            server.http("GET", &server.admin(&format!("/api/v1/rooms/p/bans?offset={offset}&limit=100")), None).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(v["bans"].as_array().unwrap().iter().map(|b| b["userId"].as_str().unwrap().to_owned()));
        offset = v["nextOffset"].as_u64().unwrap() as usize;
        if offset == 0 {
            break;
        }
    }
    assert_eq!(seen, users);
    let (s, _) = server.http("DELETE", &server.admin("/api/v1/rooms/p/bans"), Some(&json!({"users": ["u000"]}))).await;
    assert_eq!(s, 200);
    let (s, v) =
        server.http("POST", &server.admin("/api/v1/rooms/p/bans"), Some(&json!({"users": ["x"], "seconds": 0}))).await;
    assert_eq!((s, v["code"].clone()), (400, json!(10004)));
    let (s, v) = server
        .http("POST", &server.admin("/api/v1/rooms/p/mutes"), Some(&json!({"users": ["y"], "seconds": 60})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["muted"][0]["userId"], "y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_room_admins_moderate_from_the_websocket_within_their_rank() {
    let server = Server::start("").await;
    let (s, _) =
        server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": "w", "owner": "anchor"}))).await;
    assert_eq!(s, 201);
    server
        .v4_ok(
            "group_open_avchatroom_http_svc/modify_admin",
            &json!({"GroupId":"w","CommandType":1,"Admin_Account":["helper"]}),
        )
        .await;
    let list = server.v4_ok("group_open_avchatroom_http_svc/get_admin_list", &json!({"GroupId":"w"})).await;
    assert_eq!(list["Admin_List"], json!([{"Admin_Account": "helper"}]));
    let six: Vec<String> = (0..6).map(|i| format!("a{i}")).collect();
    let v = server
        .v4("group_open_avchatroom_http_svc/modify_admin", &json!({"GroupId":"w","CommandType":1,"Admin_Account":six}))
        .await;
    assert_eq!(v["ErrorCode"], 10004, "at most 5 admins: {v}");

    let mut anchor = server.login_client("anchor", "Web").await;
    assert_eq!(anchor.join_ok("w").await["you"]["role"], "Owner");
    let mut helper = server.login_client("helper", "Web").await;
    assert_eq!(helper.join_ok("w").await["you"]["role"], "Admin");
    let mut member = server.login_client("member", "Web").await;
    assert_eq!(member.join_ok("w").await["you"]["role"], "Member");

    // A member may not moderate; a room admin may not touch the owner.
    let ack = member.request(json!({"op":"mute","roomId":"w","userIds":["helper"],"seconds":60})).await;
    assert_eq!(ack["code"], 10007, "{ack}");
    let ack = helper.request(json!({"op":"mute","roomId":"w","userIds":["anchor"],"seconds":60})).await;
    assert_eq!(ack["code"], 10007, "{ack}");

    // The room admin mutes the member; the owner kicks them; they may come back.
    let ack = helper.request(json!({"op":"mute","roomId":"w","userIds":["member"],"seconds":60})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    member.wait_event_where("w", "muted", |e| e["userId"] == "member").await;
    assert_eq!(member.send_text("w", "hi", "Normal", 1).await["code"], 10017);
    let ack = anchor.request(json!({"op":"kick","roomId":"w","userIds":["member"],"reason":"cool down"})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let ev = member.wait_event_where("w", "kicked", |e| e["userId"] == "member").await;
    assert_eq!((ev["reason"].clone(), ev["bannedUntil"].clone()), (json!("cool down"), json!(0)));
    let rejoin = member.join_ok("w").await;
    assert!(rejoin["you"]["mutedUntil"].as_u64().unwrap() > 0, "the mute survives leaving: {rejoin}");

    // Mute-all from the WebSocket: members silenced, the room admin still speaks.
    let ack = anchor.request(json!({"op":"muteAll","roomId":"w","on":true})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    helper.wait_event_where("w", "muteAll", |e| e["on"] == true).await;
    assert_eq!(helper.send_text("w", "admins may talk", "Normal", 2).await["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recalled_message_disappears_for_everyone() {
    let server = Server::start("").await;
    let (s, _) =
        server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": "r", "owner": "anchor"}))).await;
    assert_eq!(s, 201);
    let mut anchor = server.login_client("anchor", "Web").await;
    anchor.join_ok("r").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("r").await;
    let keep = anchor.send_text("r", "keep me", "Normal", 1).await["seq"].as_u64().unwrap();
    let bad = anchor.send_text("r", "oops", "Normal", 2).await["seq"].as_u64().unwrap();
    let other = anchor.send_text("r", "another", "Normal", 3).await["seq"].as_u64().unwrap();
    viewer.collect_msgs("r", 3, T).await;

    let ack = anchor.request(json!({"op":"recall","roomId":"r","seq":bad})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let ev = viewer.wait_event("r", "recall").await;
    assert_eq!((ev["seq"].clone(), ev["operator"].clone()), (json!(bad), json!("anchor")));

    let mut newcomer = server.ws().await;
    let join = newcomer.join_ok("r").await;
    let seqs: Vec<u64> = join["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![keep, other]);
    let (_, page) = server.http("GET", &server.admin("/api/v1/rooms/r/messages"), None).await;
    assert!(page["messages"].as_array().unwrap().iter().all(|m| m["seq"] != bad), "{page}");

    let v = server
        .v4_ok(
            "group_open_http_svc/group_msg_recall",
            &json!({"GroupId":"r","MsgSeqList":[{"MsgSeq": other}, {"MsgSeq": 999}]}),
        )
        .await;
    assert_eq!(v["RecallRetList"], json!([{"MsgSeq": other, "RetCode": 0}, {"MsgSeq": 999, "RetCode": 10030}]));
    viewer.wait_event_where("r", "recall", |e| e["seq"] == other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_rate_repeats_and_slow_mode_say_how_long_to_wait() {
    let server = Server::start(
        "[chat]\nuser_rate_per_sec = 2\nuser_burst = 2\nflood_max_repeats = 2\nflood_window_ms = 60000\n",
    )
    .await;
    let (s, _) =
        server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": "s", "owner": "anchor"}))).await;
    assert_eq!(s, 201);
    let mut fan = server.login_client("fan", "Web").await;
    fan.join_ok("s").await;
    let mut anchor = server.login_client("anchor", "Web").await;
    anchor.join_ok("s").await;

    // Rate: a burst of 2, then "wait".
    assert_eq!(fan.send_text("s", "one", "Normal", 1).await["code"], 0);
    assert_eq!(fan.send_text("s", "two", "Normal", 2).await["code"], 0);
    let ack = fan.send_text("s", "three", "Normal", 3).await;
    assert_eq!(ack["code"], 10023, "{ack}");
    assert!(ack["message"].as_str().unwrap().contains("wait"), "{ack}");

    // The same text a third time within the window: refused as a flood.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fan.send_text("s", "spam!", "Normal", 10).await["code"], 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fan.send_text("s", "SPAM !", "Normal", 11).await["code"], 0, "normalised: the same text");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ack = fan.send_text("s", "spam!", "Normal", 12).await;
    assert_eq!(ack["code"], 10023, "{ack}");
    assert!(ack["message"].as_str().unwrap().contains("repeated"), "{ack}");

    // Slow mode from the owner's WebSocket: one message per 30 s, the owner exempt.
    let ack = anchor.request(json!({"op":"slowMode","roomId":"s","seconds":30})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let ev = fan.wait_event("s", "slowMode").await;
    assert_eq!(ev["seconds"], 30);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ack = fan.send_text("s", "slow one", "Normal", 20).await;
    assert_eq!(ack["code"], 10023, "the last accepted message was under 30 s ago: {ack}");
    assert!(ack["message"].as_str().unwrap().contains("slow mode"), "{ack}");
    for i in 0..5 {
        assert_eq!(anchor.send_text("s", "the owner is exempt", "Normal", 100 + i).await["code"], 0);
    }
    let (s, _) = server.http("PUT", &server.admin("/api/v1/rooms/s/slow-mode"), Some(&json!({"seconds": 0}))).await;
    assert_eq!(s, 200);
    fan.wait_event_where("s", "slowMode", |e| e["seconds"] == 0).await;
    assert_eq!(fan.send_text("s", "free again", "Normal", 21).await["code"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_marks_filter_the_member_list() {
    let server = Server::start("").await;
    server.create_room("k").await;
    let mut vip = server.login_client("vip", "Web").await;
    vip.join_ok("k").await;
    let mut other = server.login_client("other", "Web").await;
    other.join_ok("k").await;
    let v = server
        .v4_ok(
            "group_open_avchatroom_http_svc/modify_user_info",
            &json!({"GroupId":"k","CommandType":1,"MemberList":[{"Member_Account":"vip","Marks":[1001]},{"Member_Account":"ghost","Marks":[1001]}]}),
        )
        .await;
    assert_eq!(v["MemberList"], json!([{"Member_Account": "vip"}]), "offline members are not marked: {v}");
    let v = server
        .v4_ok("group_open_avchatroom_http_svc/get_members", &json!({"GroupId":"k","Timestamp":0,"Mark":1001}))
        .await;
    let names: Vec<&str> =
        v["MemberList"].as_array().unwrap().iter().map(|m| m["Member_Account"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["vip"]);
    let v = server
        .v4(
            "group_open_avchatroom_http_svc/modify_user_info",
            &json!({"GroupId":"k","CommandType":1,"MemberList":[{"Member_Account":"vip","Marks":[7]}]}),
        )
        .await;
    assert_eq!(v["ErrorCode"], 10004, "{v}");
    vip.close().await;
    eventually("vip left", T, || async {
        server.v4_ok("group_open_avchatroom_http_svc/get_members", &json!({"GroupId":"k","Mark":1001})).await["MemberList"]
            == json!([])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_reads_lists_and_sets_the_room_words_from_the_websocket() {
    let server = Server::start("").await;
    let (s, _) =
        server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": "o", "owner": "anchor"}))).await;
    assert_eq!(s, 201);
    let mut anchor = server.login_client("anchor", "Web").await;
    anchor.join_ok("o").await;
    let mut fan = server.login_client("fan", "Web").await;
    fan.join_ok("o").await;

    assert_eq!(
        anchor.request(json!({"op":"ban","roomId":"o","userIds":["t1","t2"],"seconds":600,"reason":"x"})).await["code"],
        0
    );
    assert_eq!(anchor.request(json!({"op":"mute","roomId":"o","userIds":["fan"],"seconds":600})).await["code"], 0);
    let bans = anchor.request(json!({"op":"bans","roomId":"o","limit":1})).await;
    assert_eq!((bans["bans"][0]["userId"].clone(), bans["nextOffset"].clone()), (json!("t1"), json!(1)), "{bans}");
    let mutes = anchor.request(json!({"op":"mutes","roomId":"o"})).await;
    assert_eq!(mutes["muted"][0]["userId"], "fan", "{mutes}");
    assert_eq!(anchor.request(json!({"op":"mute","roomId":"o","userIds":["fan"],"seconds":0})).await["code"], 0);

    let ack = anchor.request(json!({"op":"words","roomId":"o","action":"mask","words":["heck"]})).await;
    assert_eq!(ack["count"], 1, "{ack}");
    assert_eq!(fan.send_text("o", "what the H E C K", "Normal", 1).await["code"], 0);
    let got = anchor.collect_msgs("o", 1, T).await;
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "what the ***");
    let ack = fan.request(json!({"op":"words","roomId":"o","action":"mask","words":[]})).await;
    assert_eq!(ack["code"], 10007, "members may not edit the list: {ack}");
}
