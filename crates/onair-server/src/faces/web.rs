//! The web app: the pages, assets and JS SDK in `web/` (embedded in the binary at
//! compile time by `rust-embed`), plus the few endpoints only the pages need — the
//! page configuration, demo guest logins, the anchor's push address and a redacted
//! view of the config for the admin console.
//!
//! Pages are static files; each reads its room id from `location.pathname` and talks
//! to the public API and `/ws`, so nothing here renders user data into HTML.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onair_core::gifts::Gift;
use onair_core::{Code, Rejection};
use rust_embed::RustEmbed;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::extract::{Admin, Caller};
use crate::state::Shared;
use onair_hub::NewRoom;

/// Everything under `web/` except the tests (and their `node_modules`) and the
/// `package.json` that marks the modules for Node.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[exclude = "tests/**"]
#[exclude = "package.json"]
struct Assets;

/// The room created in demo mode when there is no room yet.
pub const DEMO_ROOM: &str = "demo";
/// The owner of the demo room; demo mode hands out its login for the studio.
pub const DEMO_ANCHOR: &str = "demo-anchor";
/// Validity of demo logins (a day).
const DEMO_SIG_SECS: u64 = 86_400;
/// Coins each demo guest starts with.
const DEMO_COINS: u64 = 1_000;
/// The gift catalog a demo server starts with when it has none: (id, name, price, icon).
const DEMO_GIFTS: [(&str, &str, u64, &str); 4] = [
    ("rose", "Rose", 1, "🌹"),
    ("heart", "Heart", 5, "💖"),
    ("cake", "Cake", 20, "🎂"),
    ("rocket", "Rocket", 100, "🚀"),
];

/// The page and asset routes and the web app's own endpoints.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { file("index.html", &h) }))
        .route("/room/{id}", get(|h: HeaderMap| async move { file("room.html", &h) }))
        .route("/studio/{id}", get(|h: HeaderMap| async move { file("studio.html", &h) }))
        .route("/admin", get(|h: HeaderMap| async move { file("admin.html", &h) }))
        .route("/assets/{*path}", get(asset))
        .route("/sdk/{*path}", get(sdk))
        .route("/api/v1/web/config", get(web_config))
        .route("/api/v1/demo/guest", post(demo_guest))
        .route("/api/v1/rooms/{id}/push-url", get(push_url))
        .route("/api/v1/admin/config", get(admin_config))
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("assets/{path}"), &headers)
}

async fn sdk(Path(path): Path<String>, headers: HeaderMap) -> Response {
    file(&format!("sdk/{path}"), &headers)
}

/// One embedded file with its content type and a strong ETag (its SHA-256). Files are
/// not fingerprinted, so browsers revalidate every time (`no-cache`) and get a 304
/// without the body when nothing changed.
fn file(path: &str, headers: &HeaderMap) -> Response {
    if path.split('/').any(|seg| seg == ".." || seg.starts_with('.')) {
        return not_found();
    }
    let Some(f) = Assets::get(path) else {
        return not_found();
    };
    let etag: String = f.metadata.sha256_hash()[..16].iter().map(|b| format!("{b:02x}")).collect();
    let etag = format!("\"{etag}\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut mime = f.metadata.mimetype().to_owned();
    if mime.starts_with("text/") || mime == "application/javascript" || mime == "image/svg+xml" {
        mime.push_str("; charset=utf-8");
    }
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""))),
        (header::HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let ctype = HeaderValue::from_str(&mime).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = (common, [(header::CONTENT_TYPE, ctype)], f.data.into_owned()).into_response();
    if path.ends_with(".html") {
        page_headers(response.headers_mut(), matches!(path, "admin.html" | "studio.html"));
    }
    response
}

/// The pages' Content-Security-Policy: scripts only from this server (every page
/// script is an ES module under `/assets` or `/sdk`; nothing inline), styles also
/// inline (`style=` attributes), images and media from anywhere (gift icons and
/// replay URLs may live on a CDN), connections to any HTTP/WebSocket origin (edges).
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; \
     connect-src 'self' ws: wss: http: https:; worker-src 'self' blob:; object-src 'none'; \
     base-uri 'none'; form-action 'self'";

/// Security headers of an HTML page. The admin console and the studio act with an
/// admin's or an anchor's login, so no other site may frame them (clickjacking); the
/// watch page and the room list may be embedded.
fn page_headers(h: &mut HeaderMap, privileged: bool) {
    let csp = if privileged { format!("{PAGE_CSP}; frame-ancestors 'none'") } else { PAGE_CSP.to_owned() };
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if privileged {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn not_found() -> Response {
    ApiError(Rejection::new(Code::UnknownCommand, "no such page or asset")).into_response()
}

/// Whether demo mode is on (resolved in `main`: `--demo`, `[demo] enabled`, or on by
/// default when no app is configured).
pub fn demo_enabled(state: &Shared) -> bool {
    state.cfg.demo.enabled.unwrap_or(false)
}

/// What a page needs before it connects: the app id and whether demo logins exist.
async fn web_config(State(state): State<Shared>) -> Response {
    let demo = demo_enabled(&state);
    Json(json!({
        "sdkAppId": state.app.sdkappid,
        "demo": demo,
        "demoRoom": if demo { DEMO_ROOM } else { "" },
        "ws": "/ws",
        // An edge pulls a stream on its first request: pages must not wait for it to
        // appear in the stream list first.
        "mediaEdge": state.media.origin().is_some(),
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GuestReq {
    /// `viewer` (default: a fresh `guest-…` account) or `anchor` (the demo room's owner).
    role: Option<String>,
    nick: Option<String>,
    /// The one-time anchor code from the start banner (needed unless the request
    /// comes from this machine).
    code: Option<String>,
}

/// Demo mode on a public address: who may be the demo anchor, and how fast one
/// address may mint guests.
pub struct DemoGate {
    /// The one-time code the banner prints for an anchor login from another machine;
    /// `None` once used.
    anchor_code: parking_lot::Mutex<Option<String>>,
    /// Guests minted per address in the current minute.
    guests: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, (u64, u32)>>,
    /// Guests one address may mint per minute.
    per_minute: u32,
}

impl DemoGate {
    /// A gate with a fresh anchor code.
    pub fn new(per_minute: u32) -> DemoGate {
        DemoGate {
            anchor_code: parking_lot::Mutex::new(Some(onair_shell::random_hex(6))),
            guests: Default::default(),
            per_minute,
        }
    }

    /// The anchor code while it is unused (for the banner).
    pub fn anchor_code(&self) -> Option<String> {
        self.anchor_code.lock().clone()
    }

    /// Takes the code if `given` is it (constant time); it works once.
    fn take_code(&self, given: &str) -> bool {
        let mut code = self.anchor_code.lock();
        let ok = code.as_deref().is_some_and(|c| onair_auth::constant_time_eq(c.as_bytes(), given.as_bytes()));
        if ok {
            *code = None;
        }
        ok
    }

    /// Counts a guest for `ip`; false past the per-minute allowance.
    fn allow_guest(&self, ip: std::net::IpAddr) -> bool {
        let minute = onair_shell::now_secs() / 60;
        let mut map = self.guests.lock();
        if map.len() > 100_000 {
            // Old windows only: an address spraying guests stays counted.
            map.retain(|_, (m, _)| *m == minute);
        }
        let entry = map.entry(ip).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }
}

/// Whether a request comes from this machine itself: a loopback peer with no
/// forwarding header (a reverse proxy on this machine makes every client look local;
/// it adds one of these headers).
fn local_request(peer: std::net::SocketAddr, headers: &HeaderMap) -> bool {
    peer.ip().is_loopback() && !["forwarded", "x-forwarded-for", "x-real-ip"].iter().any(|h| headers.contains_key(*h))
}

/// Whether `user` is an account demo mode minted (`guest-` and 8 hex digits).
pub fn is_demo_guest(user: &str) -> bool {
    user.strip_prefix("guest-").is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Demo mode only: a login minted by the server, so a new user can try the product in
/// two tabs at once without a backend. Never an app admin.
async fn demo_guest(
    State(state): State<Shared>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if !demo_enabled(&state) {
        return Err(
            Rejection::new(Code::NoPermission, "demo logins are off on this server (config `[demo] enabled`)").into()
        );
    }
    let body = crate::http::extract::read_body(body, crate::http::extract::MAX_JSON_BODY).await?;
    let req: GuestReq = if body.is_empty() {
        GuestReq::default()
    } else {
        let value = crate::http::extract::parse_json(&body)?;
        serde_json::from_value(value).map_err(|e| Rejection::new(Code::InvalidParam, format!("invalid body: {e}")))?
    };
    let (user_id, nick) = match req.role.as_deref().unwrap_or("viewer") {
        "viewer" => {
            let id = format!("guest-{}", &onair_shell::random_hex(4));
            let nick = req.nick.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("Guest {}", &id[6..]));
            (id, nick)
        }
        "anchor" => {
            // The demo room's owner can push, moderate and rename its stream: only
            // from this machine, or with the banner's one-time code.
            let code_ok = req.code.as_deref().is_some_and(|c| state.demo.take_code(c));
            if !local_request(peer, &headers) && !code_ok {
                return Err(Rejection::new(
                    Code::NoPermission,
                    "the demo anchor login is for this machine only, or give the one-time code the server printed \
                     at start ({\"role\":\"anchor\",\"code\":\"…\"})",
                )
                .into());
            }
            (DEMO_ANCHOR.to_owned(), "Demo anchor".to_owned())
        }
        other => return Err(Rejection::new(Code::InvalidParam, format!("unknown role '{other}'")).into()),
    };
    onair_core::message::check_profile_field("nick", &nick, 64)?;
    // The machine itself (the first run's browser, the web tests) is not limited.
    if user_id != DEMO_ANCHOR && !local_request(peer, &headers) && !state.demo.allow_guest(peer.ip()) {
        metrics::counter!("onair_demo_guests_refused_total").increment(1);
        return Err(Rejection::new(
            Code::SenderLimit,
            format!("too many guest logins from your address (at most {} a minute)", state.demo.per_minute),
        )
        .into());
    }
    if state.app.admins.contains(&user_id) {
        return Err(Rejection::new(Code::NoPermission, "that account is an app admin").into());
    }
    if user_id != DEMO_ANCHOR {
        // Demo coins so a guest can send gifts; the key makes it once per guest.
        let key = format!("demo-coins:{user_id}");
        if let Err(e) = state.store.top_up(&user_id, DEMO_COINS, &key, "demo").await {
            tracing::warn!(error = %e, user = %user_id, "demo coins not credited");
        }
    }
    let sig = state.app.mint(&user_id, DEMO_SIG_SECS);
    Ok(Json(json!({
        "sdkAppId": state.app.sdkappid,
        "userId": user_id,
        "userSig": sig,
        "nick": nick,
        "expireAt": onair_shell::now_secs() + DEMO_SIG_SECS,
    }))
    .into_response())
}

/// The stream name of a room: the room JSON's `stream` when the business layer sets
/// one, else the room id (what the media server names a room's stream by default).
fn stream_of(state: &Shared, room_id: &str) -> Result<String, ApiError> {
    let room = state.hub.get(room_id)?;
    let view = serde_json::to_value(room.view()).unwrap_or_default();
    Ok(view.get("stream").and_then(Value::as_str).map_or_else(|| room_id.to_owned(), str::to_owned))
}

/// The anchor's push address for OBS: server URL and stream key (the key carries the
/// streaming service's `txSecret`/`txTime` signature), owner/admin only. Signed like
/// co-host URLs: the media push key on this server's RTMP address,
/// `push_valid_secs`.
async fn push_url(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    caller.must_manage(&*state.hub.get(&id)?)?;
    let stream = stream_of(&state, &id)?;
    let (key, base) = push_signing(&state);
    let expire_at = onair_shell::now_secs() + state.cfg.live.push_valid_secs;
    let tx_time = format!("{expire_at:X}");
    let secret = onair_auth::tx_secret(&key, &stream, &tx_time);
    // The configured public host (`[media] public_host`), never the request's Host
    // header: a URL that carries a signature must not point wherever a client says.
    let server = format!("{}/", base.trim_end_matches('/'));
    let key = format!("{stream}?txSecret={secret}&txTime={tx_time}");
    Ok(Json(json!({
        "stream": stream,
        "server": server,
        "streamKey": key,
        "url": format!("{server}{key}"),
        // The same signature works for WHIP (publishing from a browser) on this server.
        "whip": format!("/whip/{key}"),
        "expireAt": expire_at,
    }))
    .into_response())
}

/// The key push addresses are signed with and the RTMP base they point at: the
/// media service's push key (the one its RTMP listener checks, `[media] push_key`)
/// and its real address (`[media] public_host`, the port the listener got, `[rtmp]
/// app`) — the same as the co-host URLs.
fn push_signing(state: &Shared) -> (String, String) {
    let media = &state.media;
    let port = media.rtmp_addr.map_or_else(
        || state.cfg.rtmp.listen.rsplit(':').next().unwrap_or("1935").to_owned(),
        |addr| addr.port().to_string(),
    );
    (media.push_key().to_owned(), format!("rtmp://{}:{port}/{}", state.cfg.media.public_host, media.rtmp.app))
}

/// The config as the admin console shows it, without secrets.
async fn admin_config(State(state): State<Shared>, _a: Admin) -> Response {
    let mut cfg = serde_json::to_value(&state.cfg).unwrap_or_default();
    redact(&mut cfg);
    Json(json!({"sdkAppId": state.app.sdkappid, "config": cfg})).into_response()
}

/// Replaces every non-empty string under a key that names a secret (`…key`, `…token`,
/// `…secret…`, `…password…`) with `(set)`, and hides the credentials inside every URL
/// (see [`onair_shell::redact_url`]), at any depth: sections added later (media keys,
/// callback tokens) are covered without a list to keep up to date.
fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                let secret =
                    k.ends_with("key") || k.ends_with("token") || k.contains("secret") || k.contains("password");
                match item {
                    Value::String(s) if secret => {
                        if !s.is_empty() {
                            *s = "(set)".into();
                        }
                    }
                    // URLs (`cluster.redis`, `callback.url`, `media.callback_url`,
                    // `store.url`, …) may carry `user:password@` or `?auth=` tokens.
                    Value::String(s) if s.contains("://") => *s = onair_shell::redact_url(s),
                    _ => redact(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Demo mode: a gift catalog when there is none, and the demo room on a server
/// without rooms, so the room list is not empty on a first start.
pub async fn demo_setup(state: &Shared) -> anyhow::Result<()> {
    if !demo_enabled(state) {
        return Ok(());
    }
    if state.hub.gift_catalog().is_empty() {
        for (id, name, price, icon) in DEMO_GIFTS {
            let gift =
                Gift { gift_id: id.into(), name: name.into(), price, icon: icon.into(), animation: String::new() };
            state.hub.put_gift(gift).await.map_err(|r| anyhow::anyhow!("demo gift {id}: {}", r.info))?;
        }
    }
    if !state.hub.list().is_empty() {
        return Ok(());
    }
    state
        .hub
        .create(NewRoom {
            room_id: Some(DEMO_ROOM.to_owned()),
            name: "OnAir demo room".to_owned(),
            owner: DEMO_ANCHOR.to_owned(),
            introduction: "Try OnAir: open this page in two tabs and chat.".to_owned(),
            notification: "Welcome! Be nice in the chat.".to_owned(),
            ..NewRoom::default()
        })
        .await
        .map_err(|r| anyhow::anyhow!("creating the demo room: {}", r.info))?;
    tracing::info!(room = DEMO_ROOM, "demo mode: created the demo room");
    Ok(())
}

/// The lines the start banner prints for the web app.
pub fn banner(state: &Shared, base: &str, admin: &str, admin_sig: Option<&str>) -> String {
    let room = state.hub.list().first().map(|r| r.profile().id.clone());
    let mut out = String::new();
    if let Some(room) = room {
        out.push_str(&format!("\n  watch page      {base}/room/{room}\n  studio          {base}/studio/{room}"));
    }
    match admin_sig {
        Some(sig) => out.push_str(&format!("\n  admin console   {base}/admin#identifier={admin}&usersig={sig}")),
        None => out.push_str(&format!("\n  admin console   {base}/admin")),
    }
    if demo_enabled(state) {
        out.push_str("\n  demo mode       on: guest logins for anyone (off: `[demo] enabled = false` or ONAIR_DEMO__ENABLED=false)");
        if let Some(code) = state.demo.anchor_code() {
            out.push_str(&format!("\n  demo anchor     from this machine, or elsewhere once with code {code}"));
        }
    }
    out
}
