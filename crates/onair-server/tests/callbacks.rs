//! Webhooks end to end: a real HTTP receiver in the test answers the server's
//! before-callbacks (allow / reject / drop / rewrite / hang / 500) and records the
//! after-callbacks; WebSocket clients show what the room then did.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{Value, json};

/// What the receiver answers a before-callback with.
#[derive(Clone)]
enum Answer {
    Code(i64),
    Rewrite(Value),
    Hang(Duration),
    Status500,
    Garbage,
}

/// One received callback: its query parameters and JSON body.
type Call = (HashMap<String, String>, Value);

#[derive(Clone, Default)]
struct Receiver {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    seen: Arc<Mutex<Vec<Call>>>,
}

impl Receiver {
    fn answer(&self, command: &str, a: Answer) {
        self.answers.lock().unwrap().insert(command.into(), a);
    }

    fn calls(&self, command: &str) -> Vec<Call> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, _)| q.get("CallbackCommand").map(String::as_str) == Some(command))
            .cloned()
            .collect()
    }

    async fn wait_call(&self, command: &str, pred: impl Fn(&Value) -> bool) -> Call {
        let deadline = Instant::now() + T;
        loop {
            if let Some(c) = self.calls(command).into_iter().find(|(_, b)| pred(b)) {
                return c;
            }
            assert!(Instant::now() < deadline, "no {command} callback; saw {:?}", self.seen.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(r): State<Receiver>, Query(q): Query<HashMap<String, String>>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let command = q.get("CallbackCommand").cloned().unwrap_or_default();
    r.seen.lock().unwrap().push((q, body));
    let answer = r.answers.lock().unwrap().get(&command).cloned();
    let ok = |code: i64| axum::Json(json!({"ActionStatus":"OK","ErrorCode":code,"ErrorInfo":""})).into_response();
    match answer {
        None => ok(0),
        Some(Answer::Code(c)) => ok(c),
        Some(Answer::Rewrite(v)) => axum::Json(v).into_response(),
        Some(Answer::Hang(d)) => {
            tokio::time::sleep(d).await;
            ok(0)
        }
        Some(Answer::Status500) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Some(Answer::Garbage) => "<html>oops".into_response(),
    }
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new().route("/cb", axum::routing::post(handle)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

async fn setup(extra: &str) -> (Server, Receiver, Client, Client) {
    let (r, url) = start_receiver().await;
    let server =
        Server::start(&format!("[callback]\nurl = \"{url}\"\ntoken = \"xxxxyyyy\"\ntimeout_ms = 500\n{extra}\n")).await;
    server.create_room("cb").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("cb").await;
    let mut bob = server.ws().await;
    bob.join_ok("cb").await;
    (server, r, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_messages_are_delivered_and_reported_with_the_cloud_query() {
    let (_server, r, mut alice, mut bob) = setup("").await;
    let ack = alice.send_text("cb", "hello", "Normal", 7).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let got = bob.collect_msgs("cb", 1, T).await;
    assert_eq!(got[0].1["body"][0]["MsgContent"]["Text"], "hello");

    let (q, before) = r.wait_call("Group.CallbackBeforeSendMsg", |_| true).await;
    assert_eq!(q["SdkAppid"], SDKAPPID.to_string());
    assert_eq!(q["contenttype"], "json");
    assert_eq!(q["OptPlatform"], "Web");
    assert_eq!(q["ClientIP"], "127.0.0.1");
    let t: u64 = q["RequestTime"].parse().unwrap();
    assert!(t.abs_diff(now_secs()) < 60);
    assert_eq!(q["Sign"], onair_auth::callback_sign("xxxxyyyy", t));
    assert_eq!(before["GroupId"], "cb");
    assert_eq!(before["Type"], "AVChatRoom");
    assert_eq!(before["From_Account"], "alice");
    assert_eq!(before["Random"], 7);
    assert_eq!(before["MsgBody"], json!([text_elem("hello")]));

    let (_, after) = r.wait_call("Group.CallbackAfterSendMsg", |_| true).await;
    assert_eq!(after["MsgSeq"], ack["seq"]);
    assert_eq!(after["MsgTime"], ack["time"]);
    assert_eq!(after["From_Account"], "alice");
    assert_eq!(after["MsgBody"], json!([text_elem("hello")]));

    let (_, joined) = r.wait_call("Group.CallbackAfterNewMemberJoin", |_| true).await;
    assert_eq!(joined["NewMemberList"], json!([{"Member_Account": "alice"}]));
    let (_, login) = r.wait_call("State.StateChange", |b| b["Info"]["Action"] == "Login").await;
    assert_eq!(login["Info"], json!({"Action":"Login","To_Account":"alice","Reason":"Register"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_drop_and_rewrite_are_obeyed() {
    let (_server, r, mut alice, mut bob) = setup("").await;

    r.answer("Group.CallbackBeforeSendMsg", Answer::Code(1));
    let ack = alice.send_text("cb", "refused", "Normal", 1).await;
    assert_eq!(ack["code"], 10016, "{ack}");
    let (_, exc) = r.wait_call("Group.CallbackSendMsgException", |b| b["Random"] == 1).await;
    assert_eq!(exc["ErrorCode"], 10016);

    r.answer("Group.CallbackBeforeSendMsg", Answer::Code(2));
    let ack = alice.send_text("cb", "dropped", "Normal", 2).await;
    assert_eq!((ack["code"].clone(), ack["seq"].clone(), ack["dropReason"].clone()), (json!(0), json!(0), json!("")));

    r.answer(
        "Group.CallbackBeforeSendMsg",
        Answer::Rewrite(json!({"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"",
            "MsgBody":[text_elem("rewritten")],"CloudCustomData":"from-backend"})),
    );
    let ack = alice.send_text("cb", "original", "Normal", 3).await;
    assert_eq!(ack["code"], 0);
    let got = bob.collect_msgs("cb", 1, T).await;
    assert_eq!(got.len(), 1, "refused and dropped messages never arrive: {got:?}");
    assert_eq!(got[0].1["body"], json!([text_elem("rewritten")]));
    assert_eq!(got[0].1["cloudCustomData"], "from-backend");
    let (_, after) = r.wait_call("Group.CallbackAfterSendMsg", |b| b["Random"] == 3).await;
    assert_eq!(after["MsgBody"], json!([text_elem("rewritten")]), "after-callback carries the modified message");
    assert!(r.calls("Group.CallbackAfterSendMsg").iter().all(|(_, b)| b["Random"] == 3), "only delivered ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_backend_fails_open_within_the_timeout() {
    let (_server, r, mut alice, mut bob) = setup("").await;
    for (i, answer) in
        [Answer::Hang(Duration::from_secs(5)), Answer::Status500, Answer::Garbage].into_iter().enumerate()
    {
        r.answer("Group.CallbackBeforeSendMsg", answer);
        let started = Instant::now();
        let ack = alice.send_text("cb", &format!("m{i}"), "Normal", 100 + i as u32).await;
        assert_eq!(ack["code"], 0, "{ack}");
        assert!(ack["seq"].as_u64().unwrap() > 0, "delivered: {ack}");
        assert!(started.elapsed() < Duration::from_secs(3), "bounded by the 500 ms timeout: {:?}", started.elapsed());
    }
    assert_eq!(bob.collect_msgs("cb", 3, T).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_commands_refuse_when_the_backend_fails() {
    let (_server, r, mut alice, _bob) =
        setup("fail_closed = [\"Group.CallbackBeforeSendMsg\", \"Group.CallbackBeforeApplyJoinGroup\"]").await;
    r.answer("Group.CallbackBeforeSendMsg", Answer::Status500);
    let ack = alice.send_text("cb", "x", "Normal", 1).await;
    assert_eq!(ack["code"], 10016, "{ack}");
    r.answer("Group.CallbackBeforeApplyJoinGroup", Answer::Hang(Duration::from_secs(5)));
    let mut carol = _server.login_client("carol", "Web").await;
    let ack = carol.join("cb").await;
    assert_eq!(ack["code"], 10016, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_join_can_refuse_and_after_callbacks_never_delay_delivery() {
    let (server, r, mut alice, mut bob) = setup("").await;
    r.answer("Group.CallbackBeforeApplyJoinGroup", Answer::Code(1));
    let mut mallory = server.login_client("mallory", "Web").await;
    let ack = mallory.join("cb").await;
    assert_eq!(ack["code"], 10016, "{ack}");
    let (_, req) = r.wait_call("Group.CallbackBeforeApplyJoinGroup", |b| b["Requestor_Account"] == "mallory").await;
    assert_eq!(req["GroupId"], "cb");

    // The receiver now hangs on every after-callback: delivery must not notice.
    r.answer("Group.CallbackAfterSendMsg", Answer::Hang(Duration::from_secs(10)));
    r.answer("Group.CallbackBeforeSendMsg", Answer::Code(0));
    let started = Instant::now();
    for i in 0..20u32 {
        alice.send_text_nowait("cb", &format!("fast {i}"), "Normal", 1000 + i).await;
    }
    let got = bob.collect_msgs("cb", 20, T).await;
    assert_eq!(got.len(), 20);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_changes_and_disconnects_are_reported() {
    let (server, r, mut alice, _bob) = setup("").await;
    let (s, _) =
        server.http("PATCH", &server.admin("/api/v1/rooms/cb"), Some(&json!({"notification": "new notice"}))).await;
    assert_eq!(s, 200);
    let (_, info) = r.wait_call("Group.CallbackAfterGroupInfoChanged", |_| true).await;
    assert_eq!(info["Notification"], "new notice");
    assert_eq!(info["Operator_Account"], ADMIN);
    assert!(info.get("Name").is_none(), "only changed fields: {info}");

    let (s, _) = server
        .http("PATCH", &server.admin("/api/v1/rooms/cb/attrs"), Some(&json!({"attrs": {"seat1": "alice"}})))
        .await;
    assert_eq!(s, 200);
    let (_, attrs) = r.wait_call("Group.CallbackAfterGroupAttrChanged", |_| true).await;
    assert_eq!(attrs["OptionType"], "modify");
    assert_eq!(attrs["GroupAttr"], json!([{"key": "seat1", "value": "alice"}]));

    alice.close().await;
    let (_, st) = r.wait_call("State.StateChange", |b| b["Info"]["Action"] == "Disconnect").await;
    assert_eq!(st["Info"]["To_Account"], "alice");
    assert_eq!(st["Info"]["Reason"], "LinkClose");
    let (_, exit) = r.wait_call("Group.CallbackAfterMemberExit", |_| true).await;
    assert_eq!(exit["ExitMemberList"], json!([{"Member_Account": "alice"}]));

    let (s, _) = server.http("DELETE", &server.admin("/api/v1/rooms/cb"), None).await;
    assert_eq!(s, 200);
    let (_, gone) = r.wait_call("Group.CallbackAfterGroupDestroyed", |_| true).await;
    assert_eq!(gone["GroupId"], "cb");
}

/// Issue 15: each callback names the real platform and origin, kicks and bans are
/// exits of type `Kicked` (reported once), and a destroyed room reports no exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platforms_exit_types_and_rest_origins_are_the_clouds() {
    let (server, r, mut alice, _bob) = setup("").await;
    let exits = |user: &str| {
        r.calls("Group.CallbackAfterMemberExit")
            .into_iter()
            .filter(|(_, b)| b["ExitMemberList"][0]["Member_Account"] == user)
            .collect::<Vec<_>>()
    };

    // Logout from Android and an admin kick of an iOS login name their platforms.
    let mut dave = server.login_client("dave", "Android").await;
    let ack = dave.request(json!({"op": "logout"})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let (q, _) = r.wait_call("State.StateChange", |b| b["Info"]["Action"] == "Logout").await;
    assert_eq!(q["OptPlatform"], "Android");
    let _erin = server.login_client("erin", "iOS").await;
    server.v4_ok("im_open_login_svc/kick", &json!({"UserID": "erin"})).await;
    let (q, st) = r
        .wait_call("State.StateChange", |b| b["Info"]["Action"] == "Disconnect" && b["Info"]["To_Account"] == "erin")
        .await;
    assert_eq!(q["OptPlatform"], "iOS", "{st}");

    // A ban is an exit of type Kicked by the admin, from the REST caller's address;
    // the banned member's later disconnect is no second exit.
    let mut frank = server.login_client("frank", "Android").await;
    frank.join_ok("cb").await;
    server
        .v4_ok(
            "group_open_http_svc/ban_group_member",
            &json!({"GroupId": "cb", "Members_Account": ["frank"], "Duration": 60}),
        )
        .await;
    let (q, exit) =
        r.wait_call("Group.CallbackAfterMemberExit", |b| b["ExitMemberList"][0]["Member_Account"] == "frank").await;
    assert_eq!((&exit["ExitType"], &exit["Operator_Account"]), (&json!("Kicked"), &json!(ADMIN)), "{exit}");
    assert_eq!((q["OptPlatform"].as_str(), q["ClientIP"].as_str()), ("RESTAPI", "127.0.0.1"));
    frank.close().await;
    // A kick through the native API is the same kind of exit.
    let mut gina = server.login_client("gina", "Web").await;
    gina.join_ok("cb").await;
    let (s, _) = server.http("POST", &server.admin("/api/v1/rooms/cb/kick"), Some(&json!({"users": ["gina"]}))).await;
    assert_eq!(s, 200);
    let (_, exit) =
        r.wait_call("Group.CallbackAfterMemberExit", |b| b["ExitMemberList"][0]["Member_Account"] == "gina").await;
    assert_eq!(exit["ExitType"], "Kicked");

    // A REST send: the after-send callback carries MsgId, and the REST caller's address.
    let sent = server
        .v4_ok(
            "group_open_http_svc/send_group_msg",
            &json!({"GroupId": "cb", "Random": 5, "MsgBody": [text_elem("hi")]}),
        )
        .await;
    let (q, after) = r.wait_call("Group.CallbackAfterSendMsg", |b| b["Random"] == 5).await;
    assert_eq!(after["MsgSeq"], sent["MsgSeq"]);
    assert!(after["MsgId"].as_str().is_some_and(|id| !id.is_empty()), "{after}");
    assert_eq!(q["ClientIP"], "127.0.0.1");

    // Destroyed: alice's disconnect afterwards is no exit from a room that is gone.
    server.v4_ok("group_open_http_svc/destroy_group", &json!({"GroupId": "cb"})).await;
    r.wait_call("Group.CallbackAfterGroupDestroyed", |_| true).await;
    alice.close().await;
    r.wait_call("State.StateChange", |b| b["Info"]["Action"] == "Disconnect" && b["Info"]["To_Account"] == "alice")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(exits("alice").is_empty(), "no exit after destroy: {:?}", exits("alice"));
    assert_eq!(exits("frank").len(), 1, "one exit for the ban: {:?}", exits("frank"));
    assert_eq!(exits("gina").len(), 1, "{:?}", exits("gina"));
}

/// A WebSocket client connecting from `from` (any 127.x address is this machine's)
/// with `X-Forwarded-For: xff`.
async fn ws_via(server: &Server, from: [u8; 4], xff: &str) -> Client {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("x-forwarded-for", xff.parse().unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let stream = socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], server.port))).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.unwrap();
    Client::from_stream(ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_callbacks_and_limits_see_the_client_it_names() {
    let (r, url) = start_receiver().await;
    let server = Server::start_with_env(
        &format!("[callback]\nurl = \"{url}\"\ntoken = \"xxxxyyyy\"\ntimeout_ms = 500\n"),
        &[("ONAIR_HTTP__TRUSTED_PROXIES", "[\"127.0.0.1\"]"), ("ONAIR_HTTP__MAX_CONNECTIONS_PER_IP", "2")],
    )
    .await;
    let client_ip = |user: &'static str| {
        let r = r.clone();
        async move {
            let (q, _) = r
                .wait_call("State.StateChange", |b| b["Info"]["Action"] == "Login" && b["Info"]["To_Account"] == user)
                .await;
            q["ClientIP"].clone()
        }
    };
    // Through the proxy (127.0.0.1): the first address from the right it does not
    // vouch for; what the client wrote further left is its own claim.
    let mut zoe = ws_via(&server, [127, 0, 0, 1], "198.51.100.1, 203.0.113.9").await;
    assert_eq!(zoe.login("zoe", "Web").await["code"], 0);
    assert_eq!(client_ip("zoe").await, "203.0.113.9");
    // From a peer that is not a listed proxy, the header is ignored.
    let mut mallory = ws_via(&server, [127, 0, 0, 2], "203.0.113.66").await;
    assert_eq!(mallory.login("mallory", "Web").await["code"], 0);
    assert_eq!(client_ip("mallory").await, "127.0.0.2");
    // The proxy carries many clients: its own address is not capped at 2 sockets.
    let mut through = Vec::new();
    for i in 0..4 {
        let mut c = ws_via(&server, [127, 0, 0, 1], &format!("203.0.113.{}", 100 + i)).await;
        assert_eq!(c.request(json!({"op": "ping"})).await["code"], 0, "connection {i} through the proxy");
        through.push(c);
    }
    // A stranger still is.
    let _second = ws_via(&server, [127, 0, 0, 2], "x").await;
    let stream = tokio::net::TcpSocket::new_v4().unwrap();
    stream.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut third = stream.connect(std::net::SocketAddr::from(([127, 0, 0, 1], server.port))).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), tokio::io::AsyncReadExt::read(&mut third, &mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third socket from 127.0.0.2 is closed: {read:?}");
}
