//! The web app's server side: embedded pages and assets (content types, ETags),
//! demo mode (off with a configured app, guest logins and the demo room when on),
//! and the anchor's push address. The pages themselves are tested in a real
//! browser by web/tests (run by scripts/test).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 GET with extra headers: status, lower-cased headers, body.
async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[tokio::test]
async fn pages_and_assets_are_embedded_with_types_and_etags() {
    let server = Server::start("").await;
    for (path, ctype) in [
        ("/", "text/html"),
        ("/room/r1", "text/html"),
        ("/studio/r1", "text/html"),
        ("/admin", "text/html"),
        ("/sdk/onair.js", "javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/room.js", "javascript"),
    ] {
        let (status, headers, body) = get(&server, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(header(&headers, "content-type").contains(ctype), "{path}: {headers:?}");
        assert!(!body.is_empty());
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        let (status, _, body) = get(&server, path, &[("If-None-Match", &etag)]).await;
        assert_eq!(status, 304, "{path} revalidation");
        assert!(body.is_empty());
    }
    let (_, _, room_page) = get(&server, "/room/x", &[]).await;
    assert!(room_page.contains("/assets/room.js"));
    for path in ["/assets/nope.js", "/assets/../Cargo.toml", "/assets/.hidden", "/sdk/tests/e2e.test.mjs"] {
        assert_eq!(get(&server, path, &[]).await.0, 404, "{path}");
    }
    // The browser tests are not part of the embedded files.
    assert_eq!(get(&server, "/assets/../tests/package.json", &[]).await.0, 404);
}

#[tokio::test]
async fn demo_mode_is_off_when_the_app_is_configured() {
    let server = Server::start("").await;
    let (status, cfg) = server.http("GET", "/api/v1/web/config", None).await;
    assert_eq!(status, 200);
    assert_eq!(cfg, json!({"sdkAppId": SDKAPPID, "demo": false, "demoRoom": "", "ws": "/ws", "mediaEdge": false}));
    let (status, v) = server.http("POST", "/api/v1/demo/guest", None).await;
    assert_eq!(status, 403, "{v}");
    let (_, rooms) = server.http("GET", "/api/v1/rooms", None).await;
    assert_eq!(rooms["rooms"], json!([]), "no demo room without demo mode");
}

#[tokio::test]
async fn demo_mode_mints_guests_and_creates_the_demo_room() {
    let server = Server::start("[demo]\nenabled = true\n[media]\npush_key = \"mediapushkey0123\"\n").await;
    let (_, cfg) = server.http("GET", "/api/v1/web/config", None).await;
    assert_eq!(cfg["demo"], true);
    let (_, rooms) = server.http("GET", "/api/v1/rooms", None).await;
    assert_eq!(rooms["rooms"][0]["roomId"], "demo");
    assert_eq!(rooms["rooms"][0]["owner"], "demo-anchor");

    // Two guests are two different users whose UserSigs log in.
    let (s1, g1) = server.http("POST", "/api/v1/demo/guest", None).await;
    let (s2, g2) = server.http("POST", "/api/v1/demo/guest", Some(&json!({"nick": "Bob"}))).await;
    assert_eq!((s1, s2), (200, 200), "{g1} {g2}");
    assert_ne!(g1["userId"], g2["userId"]);
    assert_eq!(g2["nick"], "Bob");
    assert_eq!(g1["sdkAppId"], SDKAPPID);
    let mut c = server.ws().await;
    let ack =
        c.request(json!({"op": "login", "sdkappid": SDKAPPID, "userId": g1["userId"], "userSig": g1["userSig"]})).await;
    assert_eq!(ack["code"], 0, "{ack}");
    let ack = c.request(json!({"op": "join", "roomId": "demo"})).await;
    assert_eq!(ack["you"]["role"], "Member");

    // The anchor role is the demo room's owner; never an app admin; bad input is refused.
    let (_, anchor) = server.http("POST", "/api/v1/demo/guest", Some(&json!({"role": "anchor"}))).await;
    assert_eq!(anchor["userId"], "demo-anchor");
    let (status, _) = server.http("POST", "/api/v1/demo/guest", Some(&json!({"role": "admin"}))).await;
    assert_eq!(status, 400);
    let (status, _) = server.http_raw("POST", "/api/v1/demo/guest", Some("{not json".into())).await;
    assert_eq!(status, 400);

    // The push address: the owner gets it, a guest does not, nobody without a login.
    let q = |g: &Value| {
        format!(
            "sdkappid={SDKAPPID}&identifier={}&usersig={}",
            g["userId"].as_str().unwrap(),
            g["userSig"].as_str().unwrap()
        )
    };
    let (status, push) = server.http("GET", &format!("/api/v1/rooms/demo/push-url?{}", q(&anchor)), None).await;
    assert_eq!(status, 200, "{push}");
    let key = push["streamKey"].as_str().unwrap();
    let (stream, query) = key.split_once('?').unwrap();
    assert_eq!(stream, "demo");
    let params: std::collections::HashMap<_, _> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    // Signed with `[media] push_key`: what the RTMP listener checks (and co-host URLs use).
    let expected = onair_auth::tx_secret("mediapushkey0123", "demo", params["txTime"]);
    assert_eq!(params["txSecret"], expected);
    assert!(push["server"].as_str().unwrap().starts_with("rtmp://127.0.0.1:"));
    assert_eq!(push["url"], format!("{}{}", push["server"].as_str().unwrap(), key));
    let (status, _) = server.http("GET", &format!("/api/v1/rooms/demo/push-url?{}", q(&g1)), None).await;
    assert_eq!(status, 403);
    let (status, _) = server.http("GET", "/api/v1/rooms/demo/push-url", None).await;
    assert_eq!(status, 401);
    let (status, _) = server.http("GET", &server.admin("/api/v1/rooms/nope/push-url"), None).await;
    assert_eq!(status, 404);

    // The owner edits the notice (the studio does); a guest may not.
    let path = |g: &Value| format!("/api/v1/rooms/demo?{}", q(g));
    let (status, v) = server.http("PATCH", &path(&anchor), Some(&json!({"notification": "Live at 8"}))).await;
    assert_eq!((status, &v["notification"]), (200, &json!("Live at 8")), "{v}");
    let (status, _) = server.http("PATCH", &path(&g1), Some(&json!({"notification": "hijacked"}))).await;
    assert_eq!(status, 403);

    // The admin's config view hides the secrets.
    let (status, v) = server.http("GET", &server.admin("/api/v1/admin/config"), None).await;
    assert_eq!(status, 200);
    assert_eq!(v["config"]["app"]["secret_key"], "(set)");
    assert_eq!(v["config"]["media"]["push_key"], "(set)");
    assert_eq!(v["config"]["app"]["api_token"], "", "an empty secret stays empty");
    assert!(!v.to_string().contains(SECRET_KEY));
    assert!(!v.to_string().contains("mediapushkey0123"));
    let (status, _) = server.http("GET", &format!("/api/v1/admin/config?{}", q(&g1)), None).await;
    assert_eq!(status, 403, "a guest is not an admin");

    // Demo guests start with coins and a gift catalog to spend them on.
    let (_, gifts) = server.http("GET", "/api/v1/gifts", None).await;
    assert!(gifts["gifts"].as_array().unwrap().len() >= 3, "{gifts}");
    let (status, wallet) =
        server.http("GET", &format!("/api/v1/users/{}/wallet?{}", g1["userId"].as_str().unwrap(), q(&g1)), None).await;
    assert_eq!(status, 200, "{wallet}");
    assert_eq!(wallet["balance"], 1000);
    let (status, sent) = server
        .http(
            "POST",
            &format!("/api/v1/rooms/demo/gifts?{}", q(&g1)),
            Some(&json!({"giftId": "rose", "count": 3, "idempotencyKey": "k1"})),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["balance"], 997);
}
