//! `examples/seed_backend.py` — a business backend written for the cloud's IM REST API
//! with `requests` and the official `TLSSigAPIv2` — runs unchanged against the real
//! binary (only its base URL differs), while WebSocket clients in the room see what
//! it did, and its webhook receiver moderates their messages.
//!
//! Needs `python3` with `pip install requests tls-sig-api-v2`; fails (never skips)
//! without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const TOKEN: &str = "seed-callback-token";
const ANCHOR: &str = "anchor_1";
const VIEWER: &str = "viewer_1";

fn script_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed_backend.py")
}

/// Fails with the install command when the script's dependencies are missing.
fn require_python_deps() {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg("import requests, TLSSigAPIv2")
        .output()
        .expect("python3 is needed for this test (with `pip install requests tls-sig-api-v2`)");
    assert!(
        out.status.success(),
        "examples/seed_backend.py needs the Python packages `requests` and `TLSSigAPIv2`: \
         run `pip install requests tls-sig-api-v2` ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The running script: its stdin, and every stdout/stderr line so far.
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn spawn(server: &Server, callback_port: u16) -> Script {
        let mut child = Command::new("python3")
            .arg(script_path())
            .args(["--handshake", "--wait-callbacks", "60"])
            .env("IM_BASE_URL", format!("http://127.0.0.1:{}", server.port))
            .env("IM_SDKAPPID", SDKAPPID.to_string())
            .env("IM_SECRET_KEY", SECRET_KEY)
            .env("IM_ADMIN", ADMIN)
            .env("CALLBACK_PORT", callback_port.to_string())
            .env("CALLBACK_BIND", "127.0.0.1")
            .env("CALLBACK_TOKEN", TOKEN)
            .env("FORBIDDEN_WORDS", "badword")
            .env("ANCHOR", ANCHOR)
            .env("VIEWER", VIEWER)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run python3 examples/seed_backend.py");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        for (pipe, sink) in [
            (Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, out.clone()),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ] {
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let stdin = child.stdin.take();
        Script { child, stdin, out, err }
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    fn transcript(&self) -> String {
        format!(
            "---- script stdout ----\n{}\n---- script stderr ----\n{}",
            self.lines().join("\n"),
            self.err.lock().unwrap().join("\n")
        )
    }

    /// Waits for a stdout line matching `pred`; panics with the transcript when the
    /// script fails, exits or takes too long.
    async fn wait_line(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if let Some(failed) = self.lines().into_iter().find(|l| l.starts_with("FAILED")) {
                panic!("the script failed ({failed}) before {what}\n{}", self.transcript());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(200)).await; // let the readers drain
                if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                    return line;
                }
                panic!("the script exited ({status}) before {what}\n{}", self.transcript());
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", self.transcript());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The JSON of the script's `STEP <name> OK {…}` line.
    async fn step(&mut self, name: &str) -> Value {
        let prefix = format!("STEP {name} OK ");
        let line = self.wait_line(&prefix, T, |l| l.starts_with(&prefix)).await;
        serde_json::from_str(&line[prefix.len()..]).unwrap()
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{line}\n").as_bytes()).await.expect("write to the script's stdin");
        stdin.flush().await.unwrap();
    }
}

/// The first pushed message of `room` whose body's first element satisfies `pred`.
async fn wait_msg(c: &mut Client, room: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let f = c
        .wait_for(what, T, |v| v["op"] == "push" && v["roomId"] == room && msgs(v).iter().any(|m| pred(&m["body"][0])))
        .await;
    msgs(&f.v).into_iter().find(|m| pred(&m["body"][0])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_backend_runs_unchanged_against_onair() {
    require_python_deps();
    let callback_port = free_port();
    let server = Server::start(&format!(
        "[callback]\nurl = \"http://127.0.0.1:{callback_port}/im-callback\"\ntoken = \"{TOKEN}\"\ntimeout_ms = 3000\n"
    ))
    .await;
    let mut script = Script::spawn(&server, callback_port);

    // Phase 1: the accounts and the room; the clients come in before anything happens there.
    let ready = script.wait_line("ROOM_READY", Duration::from_secs(30), |l| l.starts_with("ROOM_READY ")).await;
    let room = ready["ROOM_READY ".len()..].trim().to_string();
    assert!(!room.is_empty(), "{ready}");
    let mut anchor = server.login_client(ANCHOR, "Web").await;
    let join = anchor.join_ok(&room).await;
    assert_eq!(join["room"]["owner"], ANCHOR, "create_group's Owner_Account: {join}");
    assert_eq!(join["you"]["role"], "Owner", "{join}");
    assert_eq!(join["room"]["name"], "Seed live room", "{join}");
    let mut viewer = server.login_client(VIEWER, "Android").await;
    viewer.join_ok(&room).await;
    script.say("go").await;

    // Phase 2: the script's REST steps, as the room sees them.
    let steps_done = Duration::from_secs(30);
    script.wait_line("STEPS_DONE", steps_done, |l| l == "STEPS_DONE").await;

    // Everything the room pushed meanwhile (one frame may carry several of these).
    let frames = anchor.collect_pushes(Duration::from_secs(1)).await;
    let pushed_msgs: Vec<Value> = frames.iter().flat_map(|f| msgs(&f.v)).collect();
    let pushed_events: Vec<Value> = frames.iter().flat_map(|f| events(&f.v)).collect();
    let event = |kind: &str| {
        pushed_events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event reached the anchor; pushes: {pushed_events:?}"))
            .clone()
    };

    let profile = event("profile");
    assert_eq!(profile["notification"], "Welcome! Be nice in the chat.", "{profile}");

    let gift = pushed_msgs
        .iter()
        .find(|m| m["body"][0]["MsgType"] == "TIMCustomElem")
        .unwrap_or_else(|| panic!("the gift did not reach the anchor; pushed: {pushed_msgs:?}"))
        .clone();
    assert_eq!(gift["priority"], "High", "{gift}");
    assert_eq!(gift["from"], ADMIN, "{gift}");
    let data: Value = serde_json::from_str(gift["body"][0]["MsgContent"]["Data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"cmd":"gift_msg","msg":{"type":1,"giftUrl":"https://example.com/gifts/rocket.png","giftName":"rocket","giftCount":1}}),
        "{gift}"
    );
    // A REST message passes the before-send callback too (no ForbidCallbackControl).
    let tag: Value = serde_json::from_str(gift["cloudCustomData"].as_str().unwrap()).unwrap();
    assert_eq!(tag, json!({"moderation":"passed"}), "{gift}");
    let sent = script.step("send_group_msg_gift").await;
    assert_eq!(sent["MsgSeq"], gift["seq"], "{sent}");

    let muted = event("muted");
    assert_eq!(muted["userId"], VIEWER, "{muted}");
    let until = muted["mutedUntil"].as_u64().unwrap();
    assert!(until.abs_diff(now_secs() + 60) <= 15, "MuteTime 60: {muted}");
    let list = script.step("get_group_muted_account").await;
    assert_eq!(list["MutedAccountList"], json!([{"Member_Account": VIEWER, "MutedUntil": until}]), "{list}");

    let kicked = event("kicked");
    assert_eq!((&kicked["userId"], &kicked["reason"]), (&json!(VIEWER), &json!("spam")), "{kicked}");
    let viewer_frames = viewer.collect_pushes(Duration::from_millis(200)).await;
    let viewer_events: Vec<Value> = viewer_frames.iter().flat_map(|f| events(&f.v)).collect();
    assert!(
        viewer_events.iter().any(|e| e["type"] == "kicked" && e["userId"] == VIEWER),
        "the viewer got no kicked event: {viewer_events:?}"
    );
    assert!(
        viewer_frames.iter().flat_map(|f| msgs(&f.v)).any(|m| m["seq"] == gift["seq"]),
        "the viewer did not get the gift: {viewer_frames:?}"
    );
    let rejoin = viewer.join(&room).await;
    assert_eq!(rejoin["code"], 10007, "a banned viewer cannot come back: {rejoin}");

    let online = script.step("get_online_member_num").await;
    assert_eq!(online["OnlineMemberNum"], 1, "only the anchor is left: {online}");
    let members = script.step("get_members").await;
    let accounts: Vec<&str> =
        members["MemberList"].as_array().unwrap().iter().filter_map(|m| m["Member_Account"].as_str()).collect();
    assert_eq!(accounts, vec![ANCHOR], "{members}");

    // Phase 3: the script's webhook receiver moderates the room's chat.
    let refused = anchor.send_text(&room, "what a badword", "Normal", 7).await;
    assert_eq!(refused["code"], 10016, "the backend rejects the forbidden word: {refused}");
    let ack = anchor
        .request(json!({"op":"send","roomId":room,"random":8,"body":[text_elem("hello everyone")],
                        "cloudCustomData":"{\"color\":\"red\"}"}))
        .await;
    assert_eq!(ack["code"], 0, "{ack}");
    let seq = ack["seq"].as_u64().unwrap();
    assert!(seq > 0, "{ack}");
    let hello = wait_msg(&mut anchor, &room, "hello", |e| e["MsgContent"]["Text"] == "hello everyone").await;
    assert_eq!(hello["seq"], seq, "{hello}");
    let data: Value = serde_json::from_str(hello["cloudCustomData"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({"color":"red","moderation":"passed"}), "rewritten by the backend: {hello}");
    let pushed = anchor.collect_pushes(Duration::from_millis(500)).await;
    assert!(
        !pushed.iter().flat_map(|f| msgs(&f.v)).any(|m| m["body"][0]["MsgContent"]["Text"] == "what a badword"),
        "a rejected message was delivered: {pushed:?}"
    );

    // The after-callbacks reached the script, signed.
    script
        .wait_line("the after-send callback of 'hello'", T, |l| {
            l.starts_with("CALLBACK Group.CallbackAfterSendMsg ") && l.contains(&format!("\"MsgSeq\": {seq}"))
        })
        .await;
    script
        .wait_line("the exception callback of the refused message", T, |l| {
            l.starts_with("CALLBACK Group.CallbackSendMsgException ") && l.contains("10016")
        })
        .await;
    script
        .wait_line("the group-info callback", T, |l| l.starts_with("CALLBACK Group.CallbackAfterGroupInfoChanged "))
        .await;

    // Done: the script shuts its receiver and reports.
    script.say("done").await;
    let status = tokio::time::timeout(Duration::from_secs(20), script.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the script did not exit\n{}", script.transcript()))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(status.success(), "the script exited with {status}\n{}", script.transcript());
    let lines = script.lines();
    assert!(!lines.iter().any(|l| l.starts_with("FAILED")), "{}", script.transcript());
    assert!(
        lines.iter().any(|l| l.starts_with("CALLBACK Group.CallbackBeforeSendMsg REJECT from=anchor_1")),
        "{}",
        script.transcript()
    );
    assert!(lines.iter().any(|l| l.starts_with("CALLBACKS {")), "{}", script.transcript());
}
