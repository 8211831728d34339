//! UserSigs made by Tencent's official library (PyPI `tls-sig-api-v2`) and by
//! `onair usersig` log in over WebSocket and authenticate the admin API.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_library_usersigs_log_in_and_authenticate_the_admin_api() {
    let server = Server::start("").await;
    let user_sig = official_sig("alice", 86_400);
    let admin_sig = official_sig(ADMIN, 3_600);

    // Admin REST with the official admin UserSig.
    let query = format!("sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={admin_sig}");
    let (status, room) =
        server.http("POST", &format!("/api/v1/rooms?{query}"), Some(&json!({"roomId":"official","name":"o"}))).await;
    assert_eq!(status, 201, "official admin UserSig refused by the admin API: {room}");
    let (status, v) = server.http("GET", &format!("/api/v1/rooms/official/messages?{query}"), None).await;
    assert_eq!(status, 200, "{v}");

    // WebSocket login with the official user UserSig; the expiry is the library's.
    let mut alice = server.ws().await;
    let ack = alice.login_with(json!({"sdkappid":SDKAPPID,"userId":"alice","userSig":user_sig})).await;
    assert_eq!(ack["code"], 0, "official UserSig refused: {ack}");
    assert_eq!(ack["admin"], false);
    let expire_at = ack["expireAt"].as_u64().unwrap();
    assert!(expire_at.abs_diff(now_secs() + 86_400) <= 120, "expireAt {expire_at}");
    alice.join_ok("official").await;
    let sent = alice.send_text("official", "signed by the cloud's library", "Normal", 1).await;
    assert_eq!((sent["seq"].clone(), sent["dropReason"].clone()), (json!(1), json!("")), "{sent}");

    // The admin's official UserSig also logs in over WebSocket, as an admin.
    let mut admin = server.ws().await;
    let ack = admin.login_with(json!({"sdkappid":SDKAPPID,"userId":ADMIN,"userSig":admin_sig})).await;
    assert_eq!((ack["code"].clone(), ack["admin"].clone()), (json!(0), json!(true)), "{ack}");

    // The official UserSig is bound to its identifier and app.
    let mut c = server.ws().await;
    let ack = c.login_with(json!({"sdkappid":SDKAPPID,"userId":"mallory","userSig":official_sig("alice", 60)})).await;
    assert_eq!(ack["code"], 70013, "{ack}");
    let ack =
        c.login_with(json!({"sdkappid":1_400_000_999u64,"userId":"alice","userSig":official_sig("alice", 60)})).await;
    assert_eq!(ack["code"], 70014, "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onair_usersig_cli_output_logs_in() {
    let server = Server::start("").await;
    let cli = |user: &str, expire: Option<u64>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_onair"));
        cmd.arg("usersig").arg("--user").arg(user).arg("--config").arg(server.config_path()).env("ONAIR_LOG", "warn");
        if let Some(e) = expire {
            cmd.arg("--expire").arg(e.to_string());
        }
        let out = cmd.output().expect("run onair usersig");
        assert!(out.status.success(), "onair usersig failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "prints exactly the UserSig: {text:?}");
        text.trim().to_string()
    };
    let sig_default = cli("carol", None);
    let mut c = server.ws().await;
    let ack = c.login_with(json!({"sdkappid":SDKAPPID,"userId":"carol","userSig":sig_default})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let days_180 = 180 * 86_400;
    assert!(ack["expireAt"].as_u64().unwrap().abs_diff(now_secs() + days_180) <= 120, "default 180 days: {ack}");

    let short = cli("dave", Some(600));
    let mut d = server.ws().await;
    let ack = d.login_with(json!({"sdkappid":SDKAPPID,"userId":"dave","userSig":short})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    assert!(ack["expireAt"].as_u64().unwrap().abs_diff(now_secs() + 600) <= 120, "{ack}");

    // The CLI's admin UserSig works on the REST API.
    let admin_sig = cli(ADMIN, Some(3600));
    let (status, v) = server
        .http(
            "POST",
            &format!("/api/v1/rooms?sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={admin_sig}"),
            Some(&json!({"roomId":"cli"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    // And the CLI refuses a bad user id.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["usersig", "--user", &"u".repeat(33), "--config"])
        .arg(server.config_path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 33-byte user id must be refused");
}
