//! The cloud-compatible REST face `/v4/{service}/{command}`: request bodies from the
//! reference's examples (docs/cloud-compat.md, "Server API commands"), the envelope and fields, the error
//! codes, and what WebSocket members of the room receive.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn code(v: &Value) -> u64 {
    v["ErrorCode"].as_u64().unwrap_or_else(|| panic!("no ErrorCode in {v}"))
}

fn assert_fail(v: &Value, expected: u64) {
    assert_eq!(v["ActionStatus"], "FAIL", "{v}");
    assert_eq!(code(v), expected, "{v}");
    assert!(v["ErrorInfo"].as_str().is_some_and(|s| !s.is_empty()), "ErrorInfo should explain: {v}");
}

async fn create(server: &Server, id: &str) {
    let v = server
        .v4_ok("group_open_http_svc/create_group", &json!({"Type": "AVChatRoom", "GroupId": id, "Name": id}))
        .await;
    assert_eq!(v["GroupId"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_transport_errors_use_the_cloud_codes() {
    let server = Server::start("").await;
    let body = json!({"GroupIdList": ["x"]});
    let path = "/v4/group_open_http_svc/get_group_info";
    let call = |query: String, body: Option<String>| {
        let server = &server;
        async move {
            let (status, text) = server.http_raw("POST", &format!("{path}?{query}"), body).await;
            assert_eq!(status, 200, "HTTP status must always be 200: {text}");
            serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        }
    };
    let b = Some(body.to_string());

    // No usersig / no identifier → 60004.
    assert_fail(
        &call(format!("sdkappid={SDKAPPID}&identifier={ADMIN}&random=1&contenttype=json"), b.clone()).await,
        60004,
    );
    assert_fail(&call(format!("sdkappid={SDKAPPID}&usersig={}", sig(ADMIN)), b.clone()).await, 60004);
    // Expired UserSig → 60004 with the UserSig detail.
    let expired = onair_auth::gen_usersig(SDKAPPID, SECRET_KEY, ADMIN, 10, now_secs() - 1000);
    let v = call(format!("sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={expired}"), b.clone()).await;
    assert_fail(&v, 60004);
    assert!(v["ErrorInfo"].as_str().unwrap().contains("expired"), "{v}");
    // Someone else's UserSig → 60004.
    let v = call(format!("sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={}", sig("alice")), b.clone()).await;
    assert_fail(&v, 60004);
    // A valid UserSig of a non-admin → 60010.
    let v = call(format!("sdkappid={SDKAPPID}&identifier=alice&usersig={}", sig("alice")), b.clone()).await;
    assert_fail(&v, 60010);
    // Wrong / missing / garbage sdkappid.
    assert_fail(
        &call(format!("sdkappid=1400000999&identifier={ADMIN}&usersig={}", sig(ADMIN)), b.clone()).await,
        60006,
    );
    assert_fail(&call(format!("sdkappid=abc&identifier={ADMIN}&usersig={}", sig(ADMIN)), b.clone()).await, 60006);
    assert_fail(&call(format!("identifier={ADMIN}&usersig={}", sig(ADMIN)), b.clone()).await, 60012);

    // Garbage JSON → 90001 with the cloud's text; so is a non-object or empty body.
    for bad in ["{not json", "[1,2]", ""] {
        let v = call(server.admin_query(), Some(bad.to_string())).await;
        assert_fail(&v, 90001);
        assert_eq!(v["ErrorInfo"], "Fail to Parse json data of body, Please check it");
    }
    // Over 1 MiB → 93000, the cloud's "JSON packet too long" (issue 15; was 80002).
    let huge = json!({"GroupIdList": ["x"], "pad": "p".repeat(1024 * 1024 + 10)}).to_string();
    assert_fail(&call(server.admin_query(), Some(huge)).await, 93000);

    // Unknown commands and services → 10003, never a 404 page.
    assert_fail(&server.v4("group_open_http_svc/no_such_command", &json!({})).await, 10003);
    assert_fail(&server.v4("no_such_service/create_group", &json!({})).await, 10003);
    // Wrong types and missing fields → 10004.
    assert_fail(&server.v4("group_open_http_svc/get_group_info", &json!({"GroupIdList": "x"})).await, 10004);
    assert_fail(&server.v4("group_open_http_svc/destroy_group", &json!({"GroupId": 5})).await, 10004);
    assert_fail(&server.v4("group_open_http_svc/destroy_group", &json!({})).await, 10004);
    assert_fail(&server.v4("im_open_login_svc/account_import", &json!({"UserID": "x".repeat(33)})).await, 10004);
    assert_fail(
        &server.v4("group_open_http_svc/send_group_msg", &json!({"GroupId": "x", "Random": "1", "MsgBody": []})).await,
        10004,
    );
    // The server still answers.
    let (status, _) = server.http("GET", "/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_tls_sig_api_v2_usersig_authenticates_v4() {
    let server = Server::start("").await;
    let usersig = official_sig(ADMIN, 86_400);
    let path = format!(
        "/v4/group_open_http_svc/create_group?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={usersig}&random=99999999&contenttype=json"
    );
    let (status, v) = server.http("POST", &path, Some(&json!({"Type": "AVChatRoom", "Name": "official"}))).await;
    assert_eq!(status, 200);
    assert_eq!(v["ActionStatus"], "OK", "official UserSig refused by /v4: {v}");
    assert!(v["GroupId"].as_str().unwrap().starts_with("@TGS#"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_profiles_online_status_and_kick() {
    let server = Server::start("").await;
    server
        .v4_ok(
            "im_open_login_svc/account_import",
            &json!({"UserID": "test", "Nick": "test", "FaceUrl": "http://www.qq.com"}),
        )
        .await;
    // The legacy field name.
    server.v4_ok("im_open_login_svc/account_import", &json!({"Identifier": "legacy"})).await;
    let long = "y".repeat(33);
    let v = server
        .v4_ok("im_open_login_svc/multiaccount_import", &json!({"Accounts": ["test1", "test2", "test3", long]}))
        .await;
    assert_eq!(v["FailAccounts"], json!([long]));
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    assert_fail(&server.v4("im_open_login_svc/multiaccount_import", &json!({"Accounts": many})).await, 10004);

    // Online status.
    create(&server, "acc").await;
    let mut viewer = server.login_client("viewer", "Web").await;
    viewer.join_ok("acc").await;
    let v = server
        .v4_ok("openim/query_online_status", &json!({"To_Account": ["viewer", "test1", "ghost"], "IsNeedDetail": 1}))
        .await;
    let results = v["QueryResult"].as_array().unwrap();
    assert_eq!(results[0]["To_Account"], "viewer");
    assert_eq!(results[0]["State"], "Online");
    assert_eq!(results[0]["Detail"], json!([{"Platform": "Web", "Status": "Online"}]));
    assert_eq!((&results[1]["To_Account"], &results[1]["State"]), (&json!("test1"), &json!("Offline")));
    assert_eq!(v["ErrorList"], json!([{"To_Account": "ghost", "ErrorCode": 70107}]));

    // Profile set / get; the new nick is stamped on the connected user's next message.
    server
        .v4_ok(
            "profile/portrait_set",
            &json!({"From_Account": "viewer", "ProfileItem": [
                {"Tag": "Tag_Profile_IM_Nick", "Value": "Viewer Nick"},
                {"Tag": "Tag_Profile_IM_Image", "Value": "http://img/v.png"}]}),
        )
        .await;
    let v = server
        .v4_ok(
            "profile/portrait_get",
            &json!({"To_Account": ["viewer", "test", "ghost"], "TagList": ["Tag_Profile_IM_Nick", "Tag_Profile_IM_Image"]}),
        )
        .await;
    let items = v["UserProfileItem"].as_array().unwrap();
    assert_eq!(items[0]["To_Account"], "viewer");
    assert_eq!(
        items[0]["ProfileItem"],
        json!([{"Tag": "Tag_Profile_IM_Nick", "Value": "Viewer Nick"}, {"Tag": "Tag_Profile_IM_Image", "Value": "http://img/v.png"}])
    );
    assert_eq!(items[0]["ResultCode"], 0);
    assert_eq!(items[1]["ProfileItem"][1]["Value"], "http://www.qq.com");
    assert_ne!(items[2]["ResultCode"], 0);
    assert_fail(
        &server
            .v4(
                "profile/portrait_set",
                &json!({"From_Account": "viewer", "ProfileItem": [{"Tag": "Tag_Profile_IM_Nick", "Value": 7}]}),
            )
            .await,
        10004,
    );
    let ack = viewer.send_text("acc", "hello", "Normal", 1).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let msgs = viewer.collect_msgs("acc", 1, T).await;
    assert_eq!((&msgs[0].1["nick"], &msgs[0].1["avatar"]), (&json!("Viewer Nick"), &json!("http://img/v.png")));

    // Kick: every session of the user gets `kicked` then close 4001.
    let mut phone = server.login_client("viewer", "Android").await;
    server.v4_ok("im_open_login_svc/kick", &json!({"UserID": "viewer"})).await;
    for c in [&mut viewer, &mut phone] {
        let f = c.wait_for("kicked frame", T, |v| v["op"] == "kicked").await;
        assert_eq!(f.v["reason"], "KICKED_BY_ADMIN");
        let ended = c.wait_closed(T).await;
        assert!(is_code(&ended, 4001), "{ended:?}");
    }
    eventually("viewer offline", T, || async {
        let v = server.v4_ok("openim/query_online_status", &json!({"To_Account": ["viewer"]})).await;
        v["QueryResult"][0]["State"] == "Offline"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lifecycle_info_modify_and_list() {
    let server = Server::start("").await;
    // The reference's create_group example.
    let example = json!({
        "Owner_Account": "leckie",
        "Type": "AVChatRoom",
        "GroupId": "MyFirstGroup",
        "Name": "TestGroup",
        "Introduction": "This is group Introduction",
        "Notification": "This is group Notification",
        "FaceUrl": "http://this.is.face.url",
        "MaxMemberCount": 500,
        "ApplyJoinOption": "FreeAccess",
        "AppDefinedData": [{"Key": "GroupTestData1", "Value": "xxxxx"}, {"Key": "GroupTestData2", "Value": "yyyyy"}]
    });
    let v = server.v4_ok("group_open_http_svc/create_group", &example).await;
    assert_eq!(v["GroupId"], "MyFirstGroup");
    assert_fail(&server.v4("group_open_http_svc/create_group", &example).await, 10021);
    let auto = server.v4_ok("group_open_http_svc/create_group", &json!({"Type": "AVChatRoom", "Name": "auto"})).await;
    assert!(auto["GroupId"].as_str().unwrap().starts_with("@TGS#"), "{auto}");
    let mut bad = example.clone();
    bad["GroupId"] = json!("@TGS#mine");
    assert_fail(&server.v4("group_open_http_svc/create_group", &bad).await, 10015);
    bad["GroupId"] = json!("members");
    bad["MemberList"] = json!([{"Member_Account": "bob", "Role": "Admin"}]);
    assert_fail(&server.v4("group_open_http_svc/create_group", &bad).await, 10007);
    let v = server.v4("group_open_http_svc/create_group", &json!({"Type": "Public", "Name": "p"})).await;
    assert_fail(&v, 10004);
    assert!(v["ErrorInfo"].as_str().unwrap().contains("AVChatRoom"), "{v}");

    // get_group_info: every field, per-group errors.
    let mut anchor = server.login_client("leckie", "iOS").await;
    anchor.join_ok("MyFirstGroup").await;
    let v = server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["MyFirstGroup", "nope"]})).await;
    let info = &v["GroupInfo"][0];
    for (k, want) in [
        ("GroupId", json!("MyFirstGroup")),
        ("Type", json!("AVChatRoom")),
        ("Name", json!("TestGroup")),
        ("Appid", json!(SDKAPPID)),
        ("Introduction", json!("This is group Introduction")),
        ("Notification", json!("This is group Notification")),
        ("FaceUrl", json!("http://this.is.face.url")),
        ("Owner_Account", json!("leckie")),
        ("NextMsgSeq", json!(1)),
        ("MemberNum", json!(1)),
        ("ApplyJoinOption", json!("FreeAccess")),
        ("MuteAllMember", json!("Off")),
        ("ErrorCode", json!(0)),
        (
            "AppDefinedData",
            json!([{"Key": "GroupTestData1", "Value": "xxxxx"}, {"Key": "GroupTestData2", "Value": "yyyyy"}]),
        ),
    ] {
        assert_eq!(info[k], want, "{k} in {info}");
    }
    for k in ["CreateTime", "InfoSeq", "LastInfoTime", "LastMsgTime", "MaxMemberNum"] {
        assert!(info[k].is_u64(), "{k} in {info}");
    }
    assert_eq!((&v["GroupInfo"][1]["GroupId"], code(&v["GroupInfo"][1])), (&json!("nope"), 10010));
    // ResponseFilter.
    let v = server
        .v4_ok(
            "group_open_http_svc/get_group_info",
            &json!({"GroupIdList": ["MyFirstGroup"], "ResponseFilter": {
                "GroupBaseInfoFilter": ["Type", "Name", "MemberNum"],
                "AppDefinedDataFilter_Group": ["GroupTestData2"]}}),
        )
        .await;
    let info = v["GroupInfo"][0].as_object().unwrap();
    let mut keys: Vec<&str> = info.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["AppDefinedData", "ErrorCode", "ErrorInfo", "GroupId", "MemberNum", "Name", "Type"]);
    assert_eq!(info["AppDefinedData"], json!([{"Key": "GroupTestData2", "Value": "yyyyy"}]));

    // modify_group_base_info: members see a profile event; empty Value deletes.
    let mut member = server.login_client("bob", "Android").await;
    member.join_ok("MyFirstGroup").await;
    server
        .v4_ok(
            "group_open_http_svc/modify_group_base_info",
            &json!({"GroupId": "MyFirstGroup", "Name": "NewName", "Notification": "New notice",
                    "AppDefinedData": [{"Key": "GroupTestData1", "Value": ""}, {"Key": "K3", "Value": "v3"}]}),
        )
        .await;
    let ev = member.wait_event("MyFirstGroup", "profile").await;
    assert_eq!((&ev["name"], &ev["notification"]), (&json!("NewName"), &json!("New notice")), "{ev}");
    let v = server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["MyFirstGroup"]})).await;
    assert_eq!(
        v["GroupInfo"][0]["AppDefinedData"],
        json!([{"Key": "GroupTestData2", "Value": "yyyyy"}, {"Key": "K3", "Value": "v3"}])
    );
    assert_fail(
        &server
            .v4(
                "group_open_http_svc/modify_group_base_info",
                &json!({"GroupId": "MyFirstGroup", "Name": "n".repeat(31)}),
            )
            .await,
        10004,
    );
    assert_fail(
        &server
            .v4(
                "group_open_http_svc/modify_group_base_info",
                &json!({"GroupId": "MyFirstGroup", "MuteAllMember": "on"}),
            )
            .await,
        10004,
    );

    // MuteAllMember "On": members' sends fail 10017; the owner may still speak.
    server
        .v4_ok("group_open_http_svc/modify_group_base_info", &json!({"GroupId": "MyFirstGroup", "MuteAllMember": "On"}))
        .await;
    let ev = member.wait_event("MyFirstGroup", "muteAll").await;
    assert_eq!(ev["on"], true);
    let ack = member.send_text("MyFirstGroup", "can I talk?", "Normal", 11).await;
    assert_eq!(ack["code"], 10017, "{ack}");
    let ack = anchor.send_text("MyFirstGroup", "owner talks", "Normal", 12).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let v = server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["MyFirstGroup"]})).await;
    assert_eq!(v["GroupInfo"][0]["MuteAllMember"], "On");
    // The legacy name switches it off.
    server
        .v4_ok(
            "group_open_http_svc/modify_group_base_info",
            &json!({"GroupId": "MyFirstGroup", "ShutUpAllMember": "Off"}),
        )
        .await;
    member.wait_event_where("MyFirstGroup", "muteAll", |e| e["on"] == false).await;
    let ack = member.send_text("MyFirstGroup", "now I can", "Normal", 13).await;
    assert_eq!(ack["code"], 0, "{ack}");

    // get_appid_group_list pages with Next.
    let v = server
        .v4_ok("group_open_http_svc/get_appid_group_list", &json!({"Limit": 1, "Next": 0, "GroupType": "AVChatRoom"}))
        .await;
    assert_eq!(v["TotalCount"], 2);
    assert_eq!(v["GroupIdList"], json!([{"GroupId": "MyFirstGroup"}]));
    let next = v["Next"].as_u64().unwrap();
    assert_ne!(next, 0);
    let v = server.v4_ok("group_open_http_svc/get_appid_group_list", &json!({"Limit": 1, "Next": next})).await;
    assert_eq!(v["GroupIdList"], json!([{"GroupId": auto["GroupId"]}]));
    assert_eq!(v["Next"], 0);
    let v = server.v4_ok("group_open_http_svc/get_appid_group_list", &json!({"GroupType": "Public"})).await;
    assert_eq!((&v["TotalCount"], &v["GroupIdList"]), (&json!(0), &json!([])));

    // destroy_group: members get `destroyed`; the group is gone.
    server.v4_ok("group_open_http_svc/destroy_group", &json!({"GroupId": "MyFirstGroup"})).await;
    member.wait_event("MyFirstGroup", "destroyed").await;
    assert_fail(&server.v4("group_open_http_svc/destroy_group", &json!({"GroupId": "MyFirstGroup"})).await, 10010);
    let v = server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["MyFirstGroup"]})).await;
    assert_eq!(code(&v["GroupInfo"][0]), 10010);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_attributes() {
    let server = Server::start("").await;
    create(&server, "seats").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("seats").await;
    server
        .v4_ok(
            "group_open_http_svc/modify_group_attr",
            &json!({"GroupId": "seats", "GroupAttr": [{"key": "attr_key1", "value": "attr_val1"}, {"key": "attr_key2", "value": "attr_val2"}]}),
        )
        .await;
    let ev = viewer.wait_event("seats", "attrs").await;
    assert_eq!(ev["attrs"], json!({"attr_key1": "attr_val1", "attr_key2": "attr_val2"}));
    let v = server.v4_ok("group_open_attr_http_svc/get_group_attr", &json!({"GroupId": "seats"})).await;
    assert_eq!(
        v["GroupAttrAry"],
        json!([{"key": "attr_key1", "value": "attr_val1"}, {"key": "attr_key2", "value": "attr_val2"}])
    );
    server
        .v4_ok(
            "group_open_http_svc/set_group_attr",
            &json!({"GroupId": "seats", "GroupAttr": [{"key": "only", "value": "1"}]}),
        )
        .await;
    viewer.wait_event_where("seats", "attrs", |e| e["attrs"] == json!({"only": "1"})).await;
    server
        .v4_ok(
            "group_open_http_svc/modify_group_attr",
            &json!({"GroupId": "seats", "GroupAttr": [{"key": "two", "value": "2"}]}),
        )
        .await;
    server
        .v4_ok("group_open_http_svc/delete_group_attr", &json!({"GroupId": "seats", "GroupAttr": [{"key": "only"}]}))
        .await;
    viewer.wait_event_where("seats", "attrs", |e| e["attrs"] == json!({"two": "2"})).await;
    server.v4_ok("group_open_http_svc/clear_group_attr", &json!({"GroupId": "seats"})).await;
    viewer.wait_event_where("seats", "attrs", |e| e["attrs"] == json!({})).await;
    let v = server.v4_ok("group_open_attr_http_svc/get_group_attr", &json!({"GroupId": "seats"})).await;
    assert_eq!(v["GroupAttrAry"], json!([]));

    // Limits → 10049; bad shapes → 10004; missing group → 10010.
    let many: Vec<Value> = (0..17).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    assert_fail(
        &server.v4("group_open_http_svc/set_group_attr", &json!({"GroupId": "seats", "GroupAttr": many})).await,
        10049,
    );
    let big = json!([{"key": "k", "value": "v".repeat(4097)}]);
    assert_fail(
        &server.v4("group_open_http_svc/modify_group_attr", &json!({"GroupId": "seats", "GroupAttr": big})).await,
        10049,
    );
    assert_fail(
        &server
            .v4("group_open_http_svc/modify_group_attr", &json!({"GroupId": "seats", "GroupAttr": [{"key": "k"}]}))
            .await,
        10004,
    );
    assert_fail(&server.v4("group_open_attr_http_svc/get_group_attr", &json!({"GroupId": "none"})).await, 10010);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_notifications_broadcast_and_history() {
    let server = Server::start("").await;
    create(&server, "live").await;
    create(&server, "other").await;
    server
        .v4_ok(
            "im_open_login_svc/account_import",
            &json!({"UserID": "anchor", "Nick": "The Anchor", "FaceUrl": "http://a/p.png"}),
        )
        .await;
    let mut viewer = server.login_client("viewer", "Web").await;
    viewer.join_ok("live").await;
    let mut other = server.ws().await;
    other.join_ok("other").await;

    // The reference's send_group_msg example: a High-priority gift from the anchor.
    let body = json!({
        "GroupId": "live",
        "From_Account": "anchor",
        "Random": 8912345,
        "MsgPriority": "High",
        "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "{\"gift\":\"rocket\"}", "Desc": "gift"}}],
        "CloudCustomData": "your cloud custom data",
        "ForbidCallbackControl": ["ForbidBeforeSendMsgCallback", "ForbidAfterSendMsgCallback"],
        "OnlineOnlyFlag": 1
    });
    let v = server.v4_ok("group_open_http_svc/send_group_msg", &body).await;
    assert_eq!((&v["MsgSeq"], &v["MsgDropReason"]), (&json!(1), &json!("")), "{v}");
    assert!(v["MsgTime"].as_u64().unwrap() >= now_secs() - 5, "{v}");
    let msgs = viewer.collect_msgs("live", 1, T).await;
    let m = &msgs[0].1;
    assert_eq!(
        (&m["from"], &m["nick"], &m["avatar"]),
        (&json!("anchor"), &json!("The Anchor"), &json!("http://a/p.png"))
    );
    assert_eq!((&m["priority"], &m["random"], &m["seq"]), (&json!("High"), &json!(8912345), &json!(1)));
    assert_eq!(m["cloudCustomData"], "your cloud custom data");
    assert_eq!(m["body"], body["MsgBody"]);
    // Same Random again: a duplicate, not delivered twice.
    let v = server.v4_ok("group_open_http_svc/send_group_msg", &body).await;
    assert_eq!(v["MsgSeq"], 1, "{v}");
    // Defaults: From_Account = the admin identifier, MsgPriority Normal.
    let v = server
        .v4_ok(
            "group_open_http_svc/send_group_msg",
            &json!({"GroupId": "live", "Random": 2, "MsgBody": [text_elem("hi")]}),
        )
        .await;
    assert_eq!(v["MsgSeq"], 2);
    let msgs = viewer.collect_msgs("live", 1, T).await;
    assert_eq!((&msgs[0].1["from"], &msgs[0].1["priority"]), (&json!(ADMIN), &json!("Normal")));
    // Bad input.
    let bad = |patch: Value| {
        let mut b = json!({"GroupId": "live", "Random": 3, "MsgBody": [text_elem("x")]});
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    assert_fail(&server.v4("group_open_http_svc/send_group_msg", &bad(json!({"MsgPriority": "high"}))).await, 10004);
    assert_fail(
        &server
            .v4(
                "group_open_http_svc/send_group_msg",
                &bad(json!({"MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": 5}}]})),
            )
            .await,
        10004,
    );
    assert_fail(&server.v4("group_open_http_svc/send_group_msg", &bad(json!({"GroupId": "nope"}))).await, 10010);
    assert_fail(
        &server
            .v4("group_open_http_svc/send_group_msg", &bad(json!({"MsgBody": [text_elem(&"x".repeat(13_000))]})))
            .await,
        80002,
    );

    // System notification → `notification` event in that room only.
    server
        .v4_ok(
            "group_open_http_svc/send_group_system_notification",
            &json!({"GroupId": "live", "Content": "hey everyone"}),
        )
        .await;
    let ev = viewer.wait_event("live", "notification").await;
    assert_eq!(ev["content"], "hey everyone");
    assert_fail(
        &server
            .v4("group_open_http_svc/send_group_system_notification", &json!({"GroupId": "nope", "Content": "x"}))
            .await,
        10010,
    );

    // Broadcast → every room.
    let v = server
        .v4_ok(
            "group_open_http_svc/send_broadcast_msg",
            &json!({"From_Account": "anchor", "Random": 1234, "MsgBody": [text_elem("to all rooms")], "CloudCustomData": "cc"}),
        )
        .await;
    assert!(v["MsgSeq"].as_u64().unwrap() > 0, "{v}");
    for (c, room) in [(&mut viewer, "live"), (&mut other, "other")] {
        let ev = c.wait_event(room, "broadcast").await;
        assert_eq!((&ev["from"], &ev["cloudCustomData"]), (&json!("anchor"), &json!("cc")), "{ev}");
        assert_eq!(ev["seq"], v["MsgSeq"]);
    }

    // History (an OnAir extension for AVChatRoom).
    let v =
        server.v4_ok("group_open_http_svc/group_msg_get_simple", &json!({"GroupId": "live", "ReqMsgNumber": 20})).await;
    assert_eq!((&v["GroupId"], &v["IsFinished"]), (&json!("live"), &json!(1)));
    let list = v["RspMsgList"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[1]["From_Account"], "anchor");
    assert_eq!(
        (&list[1]["MsgPriority"], &list[1]["MsgSeq"], &list[1]["MsgRandom"]),
        (&json!(1), &json!(1), &json!(8912345))
    );
    assert_eq!((&list[1]["IsPlaceMsg"], &list[1]["IsSystemMsg"]), (&json!(0), &json!(0)));
    assert_eq!(list[1]["MsgBody"], body["MsgBody"]);
    assert_eq!(list[0]["MsgPriority"], 2);
    assert!(list[0]["MsgTimeStamp"].is_u64());
    let v = server
        .v4_ok(
            "group_open_http_svc/group_msg_get_simple",
            &json!({"GroupId": "live", "ReqMsgNumber": 1, "ReqMsgSeq": 2}),
        )
        .await;
    assert_eq!((&v["IsFinished"], &v["RspMsgList"][0]["MsgSeq"]), (&json!(0), &json!(2)));
    let v = server
        .v4_ok(
            "group_open_http_svc/group_msg_get_simple",
            &json!({"GroupId": "live", "ReqMsgNumber": 1, "ReqMsgSeq": 1}),
        )
        .await;
    assert_eq!((&v["IsFinished"], &v["RspMsgList"][0]["MsgSeq"]), (&json!(1), &json!(1)));
    assert_fail(
        &server.v4("group_open_http_svc/group_msg_get_simple", &json!({"GroupId": "live", "ReqMsgNumber": "20"})).await,
        10004,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_count_members_and_check_members() {
    let server = Server::start("").await;
    create(&server, "room").await;
    server
        .v4_ok("im_open_login_svc/account_import", &json!({"UserID": "alice", "Nick": "Alice", "FaceUrl": "http://a"}))
        .await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("room").await;
    let mut bob = server.login_client("bob", "Android").await;
    bob.join_ok("room").await;
    let mut anon = server.ws().await;
    anon.join_ok("room").await;

    let v = server.v4_ok("group_open_http_svc/get_online_member_num", &json!({"GroupId": "room"})).await;
    assert_eq!(v["OnlineMemberNum"], 3);
    let v =
        server.v4_ok("group_open_avchatroom_http_svc/get_members", &json!({"GroupId": "room", "Timestamp": 0})).await;
    assert_eq!(v["NextTimestamp"], 0);
    let list = v["MemberList"].as_array().unwrap();
    let accounts: Vec<&str> = list.iter().map(|m| m["Member_Account"].as_str().unwrap()).collect();
    assert_eq!(accounts, ["bob", "alice"], "newest first: {v}");
    assert_eq!((&list[1]["NickName"], &list[1]["Avatar"]), (&json!("Alice"), &json!("http://a")));
    assert!(list[1]["JoinTime"].as_u64().unwrap() >= now_secs() - 60);
    let v = server
        .v4_ok(
            "group_open_avchatroom_http_svc/check_members",
            &json!({"GroupId": "room", "Member_Account": ["alice", "ghost", "bob"]}),
        )
        .await;
    assert_eq!(v["Member_Account"], json!(["alice", "bob"]));

    bob.close().await;
    eventually("bob left", T, || async {
        let v = server.v4_ok("group_open_http_svc/get_online_member_num", &json!({"GroupId": "room"})).await;
        v["OnlineMemberNum"] == 2
    })
    .await;
    let v = server
        .v4_ok(
            "group_open_avchatroom_http_svc/check_members",
            &json!({"GroupId": "room", "Member_Account": ["alice", "bob"]}),
        )
        .await;
    assert_eq!(v["Member_Account"], json!(["alice"]));
    assert_fail(&server.v4("group_open_http_svc/get_online_member_num", &json!({"GroupId": "nope"})).await, 10010);
    assert_fail(&server.v4("group_open_avchatroom_http_svc/get_members", &json!({"GroupId": "nope"})).await, 10010);
}

/// Issue 15: what a backend written for the cloud tripped over (group list, targeted
/// and impersonated sends, group info, recall codes, AV-unsupported member commands).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cloud_backends_tripped_over() {
    let server = Server::start("").await;
    create(&server, "live").await;
    let mut viewer = server.ws().await;
    viewer.join_ok("live").await;

    // get_appid_group_list: "GroupType": "" is one SDK's "all types"; a bodiless GET
    // is "no fields".
    let ids = |v: &Value| -> Vec<String> {
        v["GroupIdList"].as_array().unwrap().iter().map(|g| g["GroupId"].as_str().unwrap().to_owned()).collect()
    };
    let v = server.v4_ok("group_open_http_svc/get_appid_group_list", &json!({"GroupType": ""})).await;
    assert_eq!(ids(&v), vec!["live"], "{v}");
    let path =
        format!("/v4/group_open_http_svc/get_appid_group_list?{}&random=1&contenttype=json", server.admin_query());
    let (status, v) = server.http("GET", &path, None).await;
    assert_eq!((status, ids(&v)), (200, vec!["live".to_owned()]), "{v}");

    // send_group_msg with To_Account: not for AVChatRoom, refused (never delivered to all).
    let targeted = json!({"GroupId": "live", "Random": 1, "To_Account": ["someone"], "MsgBody": [text_elem("psst")]});
    assert_fail(&server.v4("group_open_http_svc/send_group_msg", &targeted).await, 10004);
    // An unknown From_Account is refused; once imported it sends.
    let from_ghost = json!({"GroupId": "live", "Random": 2, "From_Account": "ghost", "MsgBody": [text_elem("boo")]});
    assert_fail(&server.v4("group_open_http_svc/send_group_msg", &from_ghost).await, 10004);
    server.v4_ok("im_open_login_svc/account_import", &json!({"UserID": "ghost", "Nick": "Ghost"})).await;
    let sent = server.v4_ok("group_open_http_svc/send_group_msg", &from_ghost).await;
    let got = viewer.collect_msgs("live", 1, T).await;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1["from"].clone(), got[0].1["nick"].clone()), (json!("ghost"), json!("Ghost")), "{got:?}");

    // get_group_info: ShutUpAllMember (older SDKs) and a LastInfoTime that moves.
    let info = |v: &Value| v["GroupInfo"][0].clone();
    let v = server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["live"]})).await;
    let before = info(&v);
    assert_eq!((&before["ShutUpAllMember"], &before["MuteAllMember"]), (&json!("Off"), &json!("Off")), "{before}");
    assert_eq!(before["LastInfoTime"], before["CreateTime"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    server
        .v4_ok(
            "group_open_http_svc/modify_group_base_info",
            &json!({"GroupId": "live", "Name": "renamed", "ShutUpAllMember": "On"}),
        )
        .await;
    let after = info(&server.v4_ok("group_open_http_svc/get_group_info", &json!({"GroupIdList": ["live"]})).await);
    assert_eq!(after["ShutUpAllMember"], "On");
    assert!(after["LastInfoTime"].as_u64() > before["LastInfoTime"].as_u64(), "{before} → {after}");

    // group_msg_recall: an unknown seq is RetCode 10030 and pushes nothing; a real one
    // is 0, and a second recall of it 10030.
    viewer.collect_pushes(std::time::Duration::from_millis(300)).await;
    let seq = sent["MsgSeq"].as_u64().unwrap();
    let v = server
        .v4_ok("group_open_http_svc/group_msg_recall", &json!({"GroupId": "live", "MsgSeqList": [{"MsgSeq": 999}]}))
        .await;
    assert_eq!(v["RecallRetList"], json!([{"MsgSeq": 999, "RetCode": 10030}]));
    let pushes = viewer.collect_pushes(std::time::Duration::from_millis(500)).await;
    assert!(
        pushes.iter().flat_map(|f| events(&f.v)).all(|e| e["type"] != "recall"),
        "no recall event for an unknown seq: {:?}",
        pushes.iter().map(|f| &f.v).collect::<Vec<_>>()
    );
    let both = json!({"GroupId": "live", "MsgSeqList": [{"MsgSeq": seq}]});
    let v = server.v4_ok("group_open_http_svc/group_msg_recall", &both).await;
    assert_eq!(v["RecallRetList"][0]["RetCode"], 0);
    viewer.wait_event("live", "recall").await;
    let v = server.v4_ok("group_open_http_svc/group_msg_recall", &both).await;
    assert_eq!(v["RecallRetList"][0]["RetCode"], 10030);

    // AV-unsupported member commands answer "not supported for this group type".
    for (command, expected) in [
        ("get_group_member_info", 10004),
        ("modify_group_member_info", 10007),
        ("delete_group_member", 10004),
        ("get_role_in_group", 10004),
        ("add_group_member", 10007),
    ] {
        let v = server.v4(&format!("group_open_http_svc/{command}"), &json!({"GroupId": "live"})).await;
        assert_fail(&v, expected);
        assert!(v["ErrorInfo"].as_str().unwrap().contains("not supported for this group type"), "{v}");
    }
}
