//! The admin REST API against the real binary, including what members see when an
//! admin changes a room.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_created_listed_modified_and_validated() {
    let server = Server::start("").await;
    let req = json!({"roomId":"show-1","name":"가".repeat(10),"owner":"anchor","introduction":"intro",
        "notification":"{\"text\":\"hi\",\"img\":\"http://x\"}","faceUrl":"http://x/f.png",
        "appDefinedData":{"tier":"gold"},"attrs":{"state":"upcoming"}});
    let (status, room) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&req)).await;
    assert_eq!(status, 201, "{room}");
    for key in ["name", "owner", "introduction", "notification", "faceUrl", "appDefinedData", "attrs"] {
        assert_eq!(room[key], req[key], "{key}");
    }
    assert_eq!(room["roomId"], "show-1");
    assert_eq!(room["muteAll"], false);
    assert_eq!(room["online"], 0);
    assert_eq!(room["nextSeq"], 1);
    assert_eq!(room["state"], "upcoming");
    assert!(room["createdAt"].as_u64().unwrap() + 60 > now_secs());

    let (status, generated) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"name":"gen"}))).await;
    assert_eq!(status, 201, "{generated}");
    let gid = generated["roomId"].as_str().unwrap().to_string();
    assert!(gid.starts_with("@TGS#") && gid.len() > 5, "{gid}");

    let bad_ids: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("49 bytes", "x".repeat(49)),
        ("generated prefix", "@TGS#mine".into()),
        ("control char", "tab\there".into()),
        ("non-ASCII", "방송".into()),
    ];
    for (case, id) in bad_ids {
        let (status, v) =
            server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": id, "name":"n"}))).await;
        assert_eq!((status, v["code"].clone()), (400, json!(10015)), "{case}: {v}");
    }
    let (status, v) =
        server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId":"x".repeat(48)}))).await;
    assert_eq!(status, 201, "48 bytes is fine: {v}");
    let (status, v) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId":"show-1"}))).await;
    assert_eq!((status, v["code"].clone()), (409, json!(10021)), "{v}");
    // The cloud's limits: introduction 240 bytes, notification 300 (docs/cloud-compat.md, "Room limits").
    let too_long = [("name", "가".repeat(11)), ("notification", "n".repeat(301)), ("introduction", "i".repeat(241))];
    for (field, value) in &too_long {
        let mut body = json!({"roomId": format!("long-{field}")});
        body[*field] = json!(value);
        let (status, v) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&body)).await;
        assert_eq!((status, v["code"].clone()), (400, json!(10004)), "{field}: {v}");
        let (status, _) = server.http("GET", &format!("/api/v1/rooms/long-{field}"), None).await;
        assert_eq!(status, 404, "a refused room must not exist");
        // The same limits apply to changes.
        let mut patch = json!({});
        patch[*field] = json!(value);
        let (status, v) = server.http("PATCH", &server.admin("/api/v1/rooms/show-1"), Some(&patch)).await;
        assert_eq!((status, v["code"].clone()), (400, json!(10004)), "PATCH {field}: {v}");
    }
    for (field, limit) in [("notification", 300), ("introduction", 240)] {
        let mut patch = json!({});
        patch[field] = json!("k".repeat(limit));
        let (status, v) = server.http("PATCH", &server.admin("/api/v1/rooms/show-1"), Some(&patch)).await;
        assert_eq!(status, 200, "{field} at exactly {limit} bytes: {v}");
    }
    let (status, v) = server.http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId": 5}))).await;
    assert_eq!((status, v["code"].clone()), (400, json!(10004)), "{v}");
    let (status, v) = server.http_raw("POST", &server.admin("/api/v1/rooms"), Some("{oops".into())).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.contains("90001"), "{v}");

    // Public reads.
    let (status, list) = server.http("GET", "/api/v1/rooms", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["rooms"].as_array().unwrap().iter().map(|r| r["roomId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&"show-1") && ids.contains(&gid.as_str()));
    let (status, one) = server.http("GET", "/api/v1/rooms/show-1", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["owner"], "anchor");
    let (status, v) = server.http("GET", "/api/v1/rooms/nope", None).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10010)));

    // Modify returns the new view; info_seq grows.
    let before = one["infoSeq"].as_u64().unwrap();
    let (status, v) = server
        .http("PATCH", &server.admin("/api/v1/rooms/show-1"), Some(&json!({"name":"Renamed","faceUrl":"http://y"})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["name"].clone(), v["faceUrl"].clone()), (json!("Renamed"), json!("http://y")));
    assert!(v["infoSeq"].as_u64().unwrap() > before);
    let (status, v) = server.http("PATCH", &server.admin("/api/v1/rooms/nope"), Some(&json!({"name":"x"}))).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10010)));

    // Delete.
    let (status, _) =
        server.http("DELETE", &server.admin(&format!("/api/v1/rooms/{}", gid.replace('#', "%23"))), None).await;
    assert_eq!(status, 200);
    let (status, _) = server.http("GET", &format!("/api/v1/rooms/{}", gid.replace('#', "%23")), None).await;
    assert_eq!(status, 404);
    let (status, v) = server.http("DELETE", &server.admin("/api/v1/rooms/nope"), None).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10010)));
    let (status, v) = server.http("GET", "/api/v1/nothing-here", None).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10003)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_refuse_missing_bad_and_non_admin_credentials() {
    let server = Server::start("").await;
    server.create_room("r").await;
    let now = now_secs();
    let q = |id: &str, sig: String, app: u64| format!("sdkappid={app}&identifier={id}&usersig={sig}");
    let credentials: Vec<(&str, Option<String>, u16, u64)> = vec![
        ("none", None, 401, 70002),
        ("partial", Some(format!("sdkappid={SDKAPPID}&identifier={ADMIN}")), 401, 70002),
        ("non-admin user", Some(q("bob", sig("bob"), SDKAPPID)), 403, 10007),
        (
            "forged",
            Some(q(ADMIN, onair_auth::gen_usersig(SDKAPPID, "wrong-key", ADMIN, 3600, now), SDKAPPID)),
            401,
            70003,
        ),
        (
            "expired",
            Some(q(ADMIN, onair_auth::gen_usersig(SDKAPPID, SECRET_KEY, ADMIN, 10, now - 100), SDKAPPID)),
            401,
            70001,
        ),
        ("other user's sig", Some(q(ADMIN, sig("bob"), SDKAPPID)), 401, 70013),
        ("wrong sdkappid", Some(q(ADMIN, sig(ADMIN), 1_400_000_999)), 401, 70014),
    ];
    let endpoints: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/api/v1/rooms", Some(json!({"roomId":"new"}))),
        ("PATCH", "/api/v1/rooms/r", Some(json!({"name":"x"}))),
        ("DELETE", "/api/v1/rooms/r", None),
        ("PUT", "/api/v1/rooms/r/attrs", Some(json!({"attrs":{"a":"1"}}))),
        ("PATCH", "/api/v1/rooms/r/attrs", Some(json!({"attrs":{"a":"1"}}))),
        ("DELETE", "/api/v1/rooms/r/attrs", None),
        ("GET", "/api/v1/rooms/r/messages", None),
        ("POST", "/api/v1/rooms/r/messages", Some(json!({"body":[text_elem("x")]}))),
        ("POST", "/api/v1/rooms/r/notification", Some(json!({"content":"x"}))),
        ("POST", "/api/v1/broadcast", Some(json!({"body":[text_elem("x")]}))),
        ("GET", "/api/v1/users/bob", None),
        ("PUT", "/api/v1/users/bob", Some(json!({"level":1}))),
    ];
    let mut failures = Vec::new();
    for (cred, query, status, code) in &credentials {
        for (method, path, body) in &endpoints {
            let full = match query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            let (got, v) = server.http(method, &full, body.as_ref()).await;
            if got != *status || v["code"] != *code || !v["message"].is_string() {
                failures.push(format!("{cred} {method} {path}: expected {status}/{code}, got {got} {v}"));
            }
        }
    }
    assert!(failures.is_empty(), "auth failures:\n{}", failures.join("\n"));
    // Nothing changed; the room is still there with no attrs and no messages.
    let (status, room) = server.http("GET", "/api/v1/rooms/r", None).await;
    assert_eq!(status, 200);
    assert_eq!(room["attrs"], json!({}));
    assert_eq!(room["name"], "r");
    assert_eq!(room["nextSeq"], 1);
    // Public endpoints need no credentials.
    for path in ["/api/v1/rooms", "/api/v1/rooms/r", "/api/v1/rooms/r/attrs", "/api/v1/rooms/r/members", "/healthz"] {
        let (status, v) = server.http("GET", path, None).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    let (_, h) = server.http("GET", "/healthz", None).await;
    assert_eq!(h["status"], "ok");
    let metrics = server.metrics().await;
    assert!(metrics.contains("onair_"), "metrics text: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_changes_and_mute_all_are_pushed_and_enforced() {
    let server = Server::start("").await;
    let (status, _) = server
        .http("POST", &server.admin("/api/v1/rooms"), Some(&json!({"roomId":"m","name":"M","owner":"anchor"})))
        .await;
    assert_eq!(status, 201);
    let mut member = server.login_client("bob", "Web").await;
    member.join_ok("m").await;
    let mut anchor = server.login_client("anchor", "Web").await;
    assert_eq!(anchor.join_ok("m").await["you"]["role"], "Owner");
    let mut admin = server.login_client(ADMIN, "Web").await;
    let ack = admin.join_ok("m").await;
    assert_eq!(ack["you"]["role"], "Admin");

    // Notice change: only the changed fields are in the event.
    let notice = r#"{"text":"공지","image":"http://x/i.png"}"#;
    let (status, v) = server
        .http("PATCH", &server.admin("/api/v1/rooms/m"), Some(&json!({"notification": notice, "name": "M"})))
        .await;
    assert_eq!(status, 200, "{v}");
    let ev = member.wait_event("m", "profile").await;
    assert_eq!(ev, json!({"type":"profile","notification": notice}), "only changed fields");
    let (_, v) = server
        .http(
            "PATCH",
            &server.admin("/api/v1/rooms/m"),
            Some(&json!({"introduction":"about","appDefinedData":{"k":"v"}})),
        )
        .await;
    assert_eq!(v["appDefinedData"], json!({"k":"v"}));
    let ev = member.wait_event("m", "profile").await;
    assert_eq!(ev, json!({"type":"profile","introduction":"about","appDefinedData":{"k":"v"}}));
    // A newcomer sees the current profile on join.
    let mut late = server.ws().await;
    let join = late.join_ok("m").await;
    assert_eq!(join["room"]["notification"], notice);
    assert_eq!(join["room"]["introduction"], "about");

    // Mute all.
    let (status, v) = server.http("PATCH", &server.admin("/api/v1/rooms/m"), Some(&json!({"muteAll": true}))).await;
    assert_eq!((status, v["muteAll"].clone()), (200, json!(true)), "{v}");
    for c in [&mut member, &mut late] {
        let ev = c.wait_event("m", "muteAll").await;
        assert_eq!(ev, json!({"type":"muteAll","on":true}));
    }
    let ack = member.send_text("m", "can I talk?", "Normal", 1).await;
    assert_eq!(ack["code"], 10017, "{ack}");
    member.assert_alive().await;
    let ack = anchor.send_text("m", "owner speaks", "Normal", 2).await;
    assert_eq!((ack["code"].clone(), ack["dropReason"].clone()), (json!(0), json!("")), "owner is exempt: {ack}");
    let ack = admin.send_text("m", "admin speaks", "Normal", 3).await;
    assert_eq!((ack["code"].clone(), ack["dropReason"].clone()), (json!(0), json!("")), "app admin is exempt: {ack}");
    let join = late.join_ok("m").await;
    assert_eq!(join["room"]["muteAll"], true);
    let (status, v) = server.http("PATCH", &server.admin("/api/v1/rooms/m"), Some(&json!({"muteAll": false}))).await;
    assert_eq!(status, 200, "{v}");
    member.wait_event_where("m", "muteAll", |e| e["on"] == false).await;
    let ack = member.send_text("m", "finally", "Normal", 4).await;
    assert_eq!((ack["code"].clone(), ack["dropReason"].clone()), (json!(0), json!("")), "{ack}");
    let got = late.collect_msgs("m", 3, T).await;
    let froms: Vec<&str> = got.iter().map(|(_, m)| m["from"].as_str().unwrap()).collect();
    assert_eq!(froms, vec!["anchor", ADMIN, "bob"], "the muted message was never delivered");
    // A PATCH that changes nothing pushes nothing.
    let (status, _) = server
        .http("PATCH", &server.admin("/api/v1/rooms/m"), Some(&json!({"muteAll": false, "introduction":"about"})))
        .await;
    assert_eq!(status, 200);
    let quiet = member.collect_pushes(Duration::from_millis(400)).await;
    let evs: Vec<Value> =
        quiet.iter().flat_map(|f| events(&f.v)).filter(|e| e["type"] == "profile" || e["type"] == "muteAll").collect();
    assert!(evs.is_empty(), "no-op PATCH pushed {evs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_attributes_are_pushed_in_full_and_limited() {
    let server = Server::start("").await;
    server.create_room("a").await;
    let mut member = server.ws().await;
    member.join_ok("a").await;
    let path = server.admin("/api/v1/rooms/a/attrs");
    // (method, body, expected full set after)
    let steps: Vec<(&str, Option<Value>, Value)> = vec![
        ("PUT", Some(json!({"attrs":{"a":"1","b":"2"}})), json!({"a":"1","b":"2"})),
        ("PATCH", Some(json!({"attrs":{"c":"3","a":"10"}})), json!({"a":"10","b":"2","c":"3"})),
        ("DELETE", Some(json!({"keys":["a","zzz"]})), json!({"b":"2","c":"3"})),
        ("PUT", Some(json!({"attrs":{"only":"x"}})), json!({"only":"x"})),
        ("PATCH", Some(json!({"attrs":{"state":"live"}})), json!({"only":"x","state":"live"})),
        ("DELETE", None, json!({})),
    ];
    for (method, body, expect) in steps {
        let (status, v) = server.http(method, &path, body.as_ref()).await;
        assert_eq!(status, 200, "{method} {body:?}: {v}");
        assert_eq!(v["attrs"], expect, "{method} {body:?}");
        let ev = member.wait_event("a", "attrs").await;
        assert_eq!(ev["attrs"], expect, "pushed set after {method} {body:?}");
        let (_, got) = server.http("GET", "/api/v1/rooms/a/attrs", None).await;
        assert_eq!(got["attrs"], expect);
    }
    let (status, _) = server.http("PUT", &path, Some(&json!({"attrs":{"keep":"me"}}))).await;
    assert_eq!(status, 200);
    member.wait_event("a", "attrs").await;
    let many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let sixteen: serde_json::Map<String, Value> = (0..15).map(|i| (format!("k{i}"), json!("v"))).collect();
    let big: serde_json::Map<String, Value> = (0..5).map(|i| (format!("k{i}"), json!("v".repeat(4000)))).collect();
    let over: Vec<(&str, &str, Value)> = vec![
        ("17 keys", "PUT", json!({"attrs": many})),
        ("17 keys via modify", "PATCH", json!({"attrs": {"extra1": "x", "extra2": "y"}})),
        ("33-byte key", "PATCH", json!({"attrs": {"k".repeat(33): "v"}})),
        ("empty key", "PATCH", json!({"attrs": {"": "v"}})),
        ("4097-byte value", "PATCH", json!({"attrs": {"k": "v".repeat(4097)}})),
        ("20 KB total", "PUT", json!({"attrs": big})),
    ];
    // Fill to 16 keys first so adding two more must fail.
    let mut fill = sixteen.clone();
    fill.insert("keep".into(), json!("me"));
    let (status, v) = server.http("PUT", &path, Some(&json!({"attrs": fill}))).await;
    assert_eq!(status, 200, "16 keys are allowed: {v}");
    let current = member.wait_event("a", "attrs").await["attrs"].clone();
    assert_eq!(current.as_object().unwrap().len(), 16);
    for (case, method, body) in over {
        let (status, v) = server.http(method, &path, Some(&body)).await;
        assert_eq!((status, v["code"].clone()), (400, json!(10049)), "{case}: {v}");
    }
    let (_, got) = server.http("GET", "/api/v1/rooms/a/attrs", None).await;
    assert_eq!(got["attrs"], current, "refused writes change nothing");
    let quiet = member.collect_pushes(Duration::from_millis(400)).await;
    assert!(quiet.iter().all(|f| events(&f.v).iter().all(|e| e["type"] != "attrs")), "refused writes pushed events");
    let join = member.join_ok("a").await;
    assert_eq!(join["room"]["attrs"], current, "join carries the attributes");
    let (status, v) = server.http("PUT", &server.admin("/api/v1/rooms/nope/attrs"), Some(&json!({"attrs":{}}))).await;
    assert_eq!((status, v["code"].clone()), (404, json!(10010)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_a_room_tells_members_and_the_room_is_gone() {
    let server = Server::start("").await;
    server.create_room("doomed").await;
    let mut alice = server.login_client("alice", "Android").await;
    alice.join_ok("doomed").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("doomed").await;
    alice.send_text("doomed", "last words", "Normal", 1).await;

    let (status, v) = server.http("DELETE", &server.admin("/api/v1/rooms/doomed"), None).await;
    assert_eq!(status, 200, "{v}");
    for c in [&mut alice, &mut viewer] {
        let ev = c.wait_event("doomed", "destroyed").await;
        assert!(ev["reason"].as_str().is_some_and(|r| !r.is_empty()), "{ev}");
    }
    let ack = alice.send_text("doomed", "anyone?", "Normal", 2).await;
    assert_eq!(ack["code"], 10010, "{ack}");
    let ack = viewer.join("doomed").await;
    assert_eq!(ack["code"], 10010, "{ack}");
    viewer.assert_alive().await;
    alice.assert_alive().await;
    let (status, _) = server.http("GET", "/api/v1/rooms/doomed", None).await;
    assert_eq!(status, 404);
    let (status, _) = server.http("GET", &server.admin("/api/v1/rooms/doomed/messages"), None).await;
    assert_eq!(status, 404);
    // The id can be reused; the new room starts fresh.
    server.create_room("doomed").await;
    let join = viewer.join_ok("doomed").await;
    assert_eq!(join["history"], json!([]), "history of the destroyed room is gone: {join}");
    assert_eq!(join["room"]["nextSeq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_send_messages_on_behalf_of_users() {
    let server = Server::start("").await;
    server.create_room("r").await;
    let (status, u) = server
        .http(
            "PUT",
            &server.admin("/api/v1/users/bot"),
            Some(&json!({"nick":"Gift Bot","avatar":"http://bot","level":9})),
        )
        .await;
    assert_eq!(status, 200, "{u}");
    let (_, u) = server.http("GET", &server.admin("/api/v1/users/bot"), None).await;
    assert_eq!(
        (u["nick"].clone(), u["level"].clone(), u["platforms"].clone()),
        (json!("Gift Bot"), json!(9), json!([]))
    );
    let mut viewer = server.ws().await;
    viewer.join_ok("r").await;
    let body = json!([{"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"gift\":\"rocket\"}"}}]);
    let (status, r) = server
        .http(
            "POST",
            &server.admin("/api/v1/rooms/r/messages"),
            Some(&json!({"from":"bot","priority":"High","random":77,"body":body,"cloudCustomData":"cd"})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["seq"].clone(), r["dropReason"].clone()), (json!(1), json!("")));
    let got = viewer.collect_msgs("r", 1, T).await;
    let m = &got[0].1;
    assert_eq!(
        (&m["from"], &m["nick"], &m["avatar"], &m["level"]),
        (&json!("bot"), &json!("Gift Bot"), &json!("http://bot"), &json!(9))
    );
    assert_eq!(
        (&m["priority"], &m["random"], &m["body"], &m["cloudCustomData"]),
        (&json!("High"), &json!(77), &body, &json!("cd"))
    );
    // Retried with the same random: same seq, not delivered again.
    let (_, again) = server
        .http("POST", &server.admin("/api/v1/rooms/r/messages"), Some(&json!({"from":"bot","random":77,"body":body})))
        .await;
    assert_eq!((again["seq"].clone(), again["dropReason"].clone()), (json!(1), json!("")), "{again}");
    // Default sender is the calling admin.
    let (_, r2) =
        server.http("POST", &server.admin("/api/v1/rooms/r/messages"), Some(&json!({"body":[text_elem("hi")]}))).await;
    assert_eq!(r2["seq"], 2, "{r2}");
    let got = viewer.collect_msgs("r", 1, T).await;
    assert_eq!(got[0].1["from"], ADMIN);
    let bad: Vec<(&str, &str, Value, u16, u64)> = vec![
        ("empty body", "/api/v1/rooms/r/messages", json!({"body":[]}), 400, 90002),
        ("bad priority", "/api/v1/rooms/r/messages", json!({"priority":"Max","body":[text_elem("x")]}), 400, 10004),
        ("too long", "/api/v1/rooms/r/messages", json!({"body":[text_elem(&"x".repeat(13_000))]}), 400, 80002),
        ("unknown room", "/api/v1/rooms/zz/messages", json!({"body":[text_elem("x")]}), 404, 10010),
        ("missing body", "/api/v1/rooms/r/messages", json!({"from":"x"}), 400, 10004),
    ];
    for (case, path, body, status, code) in bad {
        let (s, v) = server.http("POST", &server.admin(path), Some(&body)).await;
        assert_eq!((s, v["code"].clone()), (status, json!(code)), "{case}: {v}");
    }
    let (_, h) = server.http("GET", &server.admin("/api/v1/rooms/r/messages"), None).await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 2, "{h}");
}
