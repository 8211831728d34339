//! HTTP: the native admin API under `/api/v1`, `/healthz`, `/metrics`, and the
//! router that ties them to the WebSocket endpoint.
//!
//! Reads of public room data need no login; every change needs an app admin,
//! authenticated like the cloud's REST API: `?sdkappid=&identifier=&usersig=`.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use onair_core::message::{MsgElem, Outgoing, Priority, SenderProfile};
use onair_core::room::{AttrWrite, ProfilePatch};
use onair_core::{Code, Rejection};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::hub::{NewRoom, SendCtx};
use crate::state::Shared;
use crate::ws::check_profile_field;

/// Builds the whole HTTP surface.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(crate::web::routes())
        .route("/ws", get(crate::ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/rooms", get(crate::api_live::list_rooms).post(create_room))
        .route("/api/v1/rooms/{id}", get(crate::api_live::get_room).patch(modify_room).delete(destroy_room))
        .route("/api/v1/rooms/{id}/attrs", get(get_attrs).put(set_attrs).patch(modify_attrs).delete(delete_attrs))
        .route("/api/v1/rooms/{id}/members", get(room_members))
        .route("/api/v1/rooms/{id}/messages", get(room_messages).post(send_message))
        .route("/api/v1/rooms/{id}/notification", post(notify_room))
        .route("/api/v1/rooms/{id}/mutes", get(list_mutes).post(mute_users))
        .route("/api/v1/rooms/{id}/bans", get(list_bans).post(ban_users).delete(unban_users))
        .route("/api/v1/rooms/{id}/kick", post(kick_users))
        .route("/api/v1/filter", get(get_app_filter).put(put_app_filter).delete(delete_app_filter))
        .route("/api/v1/rooms/{id}/filter", get(get_room_filter).put(put_room_filter).delete(delete_room_filter))
        .route("/api/v1/rooms/{id}/slow-mode", axum::routing::put(set_slow_mode))
        .route("/api/v1/rooms/{id}/recall", post(recall_message))
        .route("/api/v1/rooms/{id}/admins", get(list_admins).post(add_admins).delete(remove_admins))
        .route("/api/v1/broadcast", post(broadcast))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/docs", get(api_docs))
        .route("/api/v1/users/{id}", get(get_user).put(put_user))
        .route("/v4/{service}/{command}", axum::routing::any(crate::v4::dispatch))
        .merge(crate::api_live::routes())
        .merge(crate::media::http::routes())
        .merge(crate::media::hls::routes(state.hls.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// An API error: the cloud code and text, with a fitting HTTP status.
pub struct ApiError(pub Rejection);

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            Code::RoomNotFound => StatusCode::NOT_FOUND,
            Code::NoPermission => StatusCode::FORBIDDEN,
            Code::RoomIdInUse | Code::InvalidTransition | Code::IdempotencyConflict | Code::Conflict => {
                StatusCode::CONFLICT
            }
            Code::UnknownGift | Code::NotFound => StatusCode::NOT_FOUND,
            Code::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::UnknownCommand => StatusCode::NOT_FOUND,
            Code::UserSigExpired
            | Code::UserSigEmpty
            | Code::UserSigInvalid
            | Code::UserSigIdentifier
            | Code::UserSigApp
            | Code::NotLoggedIn => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"code": self.0.code.number(), "message": self.0.info}))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

/// JSON body extractor whose failures are API errors (90001/10004), not axum's text.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("could not read body: {e}"))))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError(Rejection::new(Code::JsonParse, format!("body is not valid JSON: {e}"))))?;
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("invalid request body: {e}"))))
    }
}

/// Query-string extractor whose failures are API errors (10004), not axum's text.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("bad query string: {e}"))))
    }
}

/// An authenticated app admin (from `?sdkappid=&identifier=&usersig=`).
pub struct Admin(pub String);

#[derive(Deserialize)]
struct AdminQuery {
    sdkappid: Option<u64>,
    identifier: Option<String>,
    usersig: Option<String>,
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.app_admin {
            return Err(ApiError(Rejection::new(Code::NoPermission, format!("'{}' is not an app admin", caller.user))));
        }
        Ok(Admin(caller.user))
    }
}

/// Any authenticated user: an app admin (API token or admin UserSig) or a user with
/// a valid UserSig, from the same three places as [`Admin`].
pub struct Caller {
    /// Account.
    pub user: String,
    /// Whether the account is an app admin.
    pub app_admin: bool,
}

impl Caller {
    /// Whether the caller may manage `room` (its owner, a room admin or an app admin).
    pub fn manages(&self, room: &crate::hub::Room) -> bool {
        self.app_admin || room.profile().owner == self.user || room.is_admin(&self.user)
    }

    /// Refuses unless the caller manages `room`.
    pub fn must_manage(&self, room: &crate::hub::Room) -> Result<(), ApiError> {
        if self.manages(room) {
            return Ok(());
        }
        Err(ApiError(Rejection::new(
            Code::NoPermission,
            format!("'{}' is not the owner or an admin of room '{}'", self.user, room.id),
        )))
    }

    /// Refuses unless the caller is `user` or an app admin.
    pub fn must_be(&self, user: &str) -> Result<(), ApiError> {
        if self.app_admin || self.user == user {
            return Ok(());
        }
        Err(ApiError(Rejection::new(Code::NoPermission, format!("only '{user}' or an app admin may do this"))))
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // 1. A static API token (`[app] api_token`) acts as the first app admin.
        if let Some(auth) = header("authorization") {
            let token = auth.strip_prefix("Bearer ").unwrap_or_default();
            let expected = &state.cfg.app.api_token;
            if expected.is_empty() || !onair_auth::constant_time_eq(token.as_bytes(), expected.as_bytes()) {
                return Err(ApiError(Rejection::new(Code::UserSigInvalid, "invalid API token")));
            }
            let user = state.cfg.app.admins.first().cloned().unwrap_or_else(|| "administrator".into());
            return Ok(Caller { user, app_admin: true });
        }
        // 2. A UserSig in headers, or 3. in the query like the cloud's REST API.
        let (sdkappid, identifier, usersig) = match (header("x-onair-identifier"), header("x-onair-usersig")) {
            (Some(identifier), Some(usersig)) => (Some(state.app.sdkappid), Some(identifier), Some(usersig)),
            _ => {
                let q: AdminQuery = Query::<AdminQuery>::try_from_uri(&parts.uri)
                    .map(|q| q.0)
                    .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("bad query string: {e}"))))?;
                (q.sdkappid, q.identifier, q.usersig)
            }
        };
        let (Some(sdkappid), Some(identifier), Some(usersig)) = (sdkappid, identifier, usersig) else {
            return Err(ApiError(Rejection::new(
                Code::UserSigEmpty,
                "this API needs a UserSig (?sdkappid=&identifier=&usersig=, or the headers X-OnAir-Identifier \
                 and X-OnAir-UserSig) or Authorization: Bearer <api_token>",
            )));
        };
        state.app.verify(sdkappid, &identifier, &usersig)?;
        let app_admin = state.app.admins.contains(&identifier);
        Ok(Caller { user: identifier, app_admin })
    }
}

/// The OpenAPI document of the native API (kept in docs/, embedded at build time).
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A readable page of the OpenAPI document, rendered in the browser from the JSON
/// (no external assets: the server may run without internet).
async fn api_docs() -> Html<&'static str> {
    Html(API_DOCS_PAGE)
}

const API_DOCS_PAGE: &str = r#"<!doctype html><meta charset=utf-8><title>OnAir API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}
code,pre{background:#f4f4f4;padding:2px 4px;border-radius:4px}h2{margin-top:2em}.m{font-weight:bold;text-transform:uppercase;margin-right:.5em}</style>
<h1>OnAir native API</h1><p>Machine-readable: <a href=/api/v1/openapi.json>/api/v1/openapi.json</a></p><div id=out>loading…</div>
<script type=module>
const doc = await (await fetch('/api/v1/openapi.json')).json();
const out = document.getElementById('out'); out.textContent = '';
const el = (tag, text) => { const e = document.createElement(tag); if (text) e.textContent = text; return e; };
if (doc.info?.description) out.append(el('p', doc.info.description));
for (const [path, ops] of Object.entries(doc.paths || {})) {
  out.append(el('h2', path));
  for (const [method, op] of Object.entries(ops)) {
    if (typeof op !== 'object' || !op.responses) continue;
    const p = el('p'); p.append(el('span', method), el('span', op.summary || '')); p.firstChild.className = 'm';
    out.append(p);
    if (op.description) out.append(el('p', op.description));
    const body = op.requestBody?.content?.['application/json']?.schema;
    if (body) { out.append(el('div', 'Request body:')); out.append(el('pre', JSON.stringify(body, null, 2))); }
  }
}
</script>"#;

/// `status` is `ok`, or `degraded` while a cluster node cannot reach Redis (it
/// keeps serving its own members; still HTTP 200, since the node is alive).
async fn healthz(State(state): State<Shared>) -> Response {
    match state.hub.cluster_health() {
        Some(cluster) => {
            let status = if cluster["bus"] == "ok" { "ok" } else { "degraded" };
            Json(json!({"status": status, "rooms": state.hub.list().len(), "cluster": cluster})).into_response()
        }
        None => Json(json!({"status": "ok", "rooms": state.hub.list().len()})).into_response(),
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn method_not_allowed() -> Response {
    let body = Json(json!({"code": Code::UnknownCommand.number(), "message": "method not allowed on this endpoint"}));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

async fn not_found() -> ApiError {
    ApiError(Rejection::new(Code::UnknownCommand, "no such endpoint"))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateRoom {
    room_id: Option<String>,
    name: String,
    owner: String,
    introduction: String,
    notification: String,
    face_url: String,
    app_defined_data: BTreeMap<String, String>,
    attrs: BTreeMap<String, String>,
}

async fn create_room(State(state): State<Shared>, _admin: Admin, Body(req): Body<CreateRoom>) -> ApiResult {
    let room = state
        .hub
        .create(NewRoom {
            room_id: req.room_id,
            name: req.name,
            owner: req.owner,
            introduction: req.introduction,
            notification: req.notification,
            face_url: req.face_url,
            app_defined_data: req.app_defined_data,
            attrs: req.attrs,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(room.view())).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ModifyRoom {
    name: Option<String>,
    introduction: Option<String>,
    notification: Option<String>,
    face_url: Option<String>,
    app_defined_data: Option<BTreeMap<String, String>>,
    mute_all: Option<bool>,
}

/// The room's owner and room admins may change its profile too (the studio edits the
/// notice), like the cloud's client SDK lets a group owner do.
async fn modify_room(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ModifyRoom>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    let admin = caller.user;
    let patch = ProfilePatch {
        name: req.name,
        introduction: req.introduction,
        notification: req.notification,
        face_url: req.face_url,
        app_defined_data: req.app_defined_data,
        mute_all: req.mute_all,
    };
    let room = state.hub.modify_by(&id, patch, &admin).await?;
    ok(serde_json::to_value(room.view()).unwrap_or_default())
}

async fn destroy_room(State(state): State<Shared>, Admin(admin): Admin, Path(id): Path<String>) -> ApiResult {
    state.hub.destroy_by(&id, &admin).await?;
    ok(json!({"code": 0}))
}

async fn get_attrs(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    ok(json!({"attrs": state.hub.get(&id)?.profile().attrs}))
}

#[derive(Deserialize)]
struct AttrsBody {
    #[serde(default)]
    attrs: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeysBody {
    keys: Option<Vec<String>>,
}

async fn set_attrs(
    State(state): State<Shared>,
    Admin(a): Admin,
    Path(id): Path<String>,
    Body(b): Body<AttrsBody>,
) -> ApiResult {
    ok(json!({"attrs": state.hub.write_attrs_by(&id, AttrWrite::Set, b.attrs, &a).await?}))
}

async fn modify_attrs(
    State(state): State<Shared>,
    Admin(a): Admin,
    Path(id): Path<String>,
    Body(b): Body<AttrsBody>,
) -> ApiResult {
    ok(json!({"attrs": state.hub.write_attrs_by(&id, AttrWrite::Modify, b.attrs, &a).await?}))
}

async fn delete_attrs(
    State(state): State<Shared>,
    Admin(a): Admin,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let keys: KeysBody = if body.is_empty() {
        KeysBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| Rejection::new(Code::JsonParse, format!("body is not valid JSON: {e}")))?
    };
    let attrs = match keys.keys {
        Some(keys) => {
            state
                .hub
                .write_attrs_by(&id, AttrWrite::Delete, keys.into_iter().map(|k| (k, String::new())).collect(), &a)
                .await?
        }
        None => state.hub.write_attrs_by(&id, AttrWrite::Clear, BTreeMap::new(), &a).await?,
    };
    ok(json!({ "attrs": attrs }))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

/// A ban as the ban lists show it (WebSocket and API).
pub fn ban_json(b: &crate::hub::BanEntry) -> Value {
    json!({"userId": b.user, "bannedUntil": b.banned_until, "reason": b.reason})
}

/// A mute as the mute lists show it (WebSocket and API).
pub fn mute_json((user, until): &(String, u64)) -> Value {
    json!({"userId": user, "mutedUntil": until})
}

/// A recently joined member as the member lists show it (WebSocket and API).
pub fn member_json(m: &onair_core::presence::RecentMember) -> Value {
    json!({"userId": m.brief.user_id, "nick": m.brief.nick, "avatar": m.brief.avatar, "level": m.brief.level,
           "joinTime": m.joined_at / 1000})
}

async fn room_members(
    State(state): State<Shared>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    let room = state.hub.get(&id)?;
    let members: Vec<Value> =
        room.recent_members(q.limit.unwrap_or(state.cfg.chat.member_list_size)).iter().map(member_json).collect();
    ok(json!({"online": room.online(), "members": members}))
}

async fn room_messages(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    state.hub.get(&id)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let msgs = state.store.messages_before(&id, q.before, limit).await.map_err(crate::hub::internal)?;
    let next_before = if msgs.len() == limit { msgs.last().map(|m| m.seq) } else { None };
    let wire: Vec<Value> =
        msgs.iter().map(|m| serde_json::to_value(onair_proto::wire_msg(m)).unwrap_or_default()).collect();
    ok(json!({"messages": wire, "nextBefore": next_before}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendBody {
    from: Option<String>,
    priority: Option<String>,
    random: Option<u32>,
    body: Vec<MsgElem>,
    #[serde(default)]
    cloud_custom_data: String,
}

async fn sender_profile(state: &Shared, user_id: &str) -> Result<SenderProfile, Rejection> {
    state.store.sender_profile(user_id).await.map_err(crate::hub::internal)
}

async fn send_message(
    State(state): State<Shared>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(b): Body<SendBody>,
) -> ApiResult {
    let priority = match b.priority.as_deref() {
        None => Priority::Normal,
        Some(p) => {
            Priority::parse(p).ok_or_else(|| Rejection::new(Code::InvalidParam, format!("unknown priority '{p}'")))?
        }
    };
    let from = b.from.unwrap_or_else(|| admin.clone());
    let sender = sender_profile(&state, &from).await?;
    let random = b.random.unwrap_or_else(|| crate::util::seed() as u32);
    let result = state
        .hub
        .send_as_with(
            &id,
            Outgoing { sender, priority, random, body: b.body, cloud_custom_data: b.cloud_custom_data },
            SendCtx::admin(&admin),
        )
        .await?;
    ok(json!({"seq": result.seq, "time": result.time, "dropReason": result.drop_reason}))
}

#[derive(Deserialize)]
struct NotifyBody {
    content: String,
}

async fn notify_room(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<NotifyBody>,
) -> ApiResult {
    if b.content.len() > onair_core::message::MAX_MESSAGE_BYTES {
        return Err(Rejection::new(Code::MsgTooLong, "notification content exceeds 12 KB").into());
    }
    state.hub.notify_room(&id, b.content)?;
    ok(json!({"code": 0}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BroadcastBody {
    from: Option<String>,
    body: Vec<MsgElem>,
    #[serde(default)]
    cloud_custom_data: String,
}

async fn broadcast(State(state): State<Shared>, Admin(admin): Admin, Body(b): Body<BroadcastBody>) -> ApiResult {
    let (seq, rooms) = state.hub.broadcast(b.from.unwrap_or(admin), b.body, b.cloud_custom_data)?;
    ok(json!({"seq": seq, "rooms": rooms}))
}

async fn get_user(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    let p = sender_profile(&state, &id).await?;
    ok(
        json!({"userId": p.user_id, "nick": p.nick, "avatar": p.avatar, "level": p.level, "platforms": state.sessions.platforms(&id)}),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PutUser {
    nick: Option<String>,
    avatar: Option<String>,
    level: Option<u32>,
}

async fn put_user(State(state): State<Shared>, _a: Admin, Path(id): Path<String>, Body(b): Body<PutUser>) -> ApiResult {
    if id.is_empty() || id.len() > 32 {
        return Err(Rejection::new(Code::InvalidParam, "user id must be 1-32 bytes").into());
    }
    let mut p = sender_profile(&state, &id).await?;
    if let Some(n) = b.nick {
        check_profile_field("nick", &n, 64)?;
        p.nick = n;
    }
    if let Some(a) = b.avatar {
        check_profile_field("avatar", &a, 500)?;
        p.avatar = a;
    }
    if let Some(l) = b.level {
        p.level = l;
    }
    let record = onair_store::UserRecord {
        user_id: p.user_id.clone(),
        nick: p.nick.clone(),
        avatar: p.avatar.clone(),
        level: p.level,
    };
    state.store.upsert_user(&record).await.map_err(crate::hub::internal)?;
    state.sessions.update_profile(&id, &p);
    ok(json!({"userId": p.user_id, "nick": p.nick, "avatar": p.avatar, "level": p.level}))
}

#[derive(Deserialize)]
struct MuteBody {
    users: Vec<String>,
    /// 0 = unmute; ≥ 4294967295 = permanent.
    seconds: u64,
}

async fn mute_users(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<MuteBody>,
) -> ApiResult {
    let result = state.hub.mute(&id, &b.users, b.seconds).await?;
    let list: Vec<Value> = result.iter().map(mute_json).collect();
    ok(json!({ "muted": list }))
}

async fn list_mutes(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    let list: Vec<Value> = state.hub.muted(&id)?.iter().map(mute_json).collect();
    ok(json!({ "muted": list }))
}

#[derive(Deserialize)]
struct BanBody {
    users: Vec<String>,
    #[serde(default)]
    seconds: u64,
    #[serde(default)]
    reason: String,
}

async fn ban_users(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<BanBody>,
) -> ApiResult {
    state.hub.ban(&id, &b.users, b.seconds, &b.reason).await?;
    ok(json!({"code": 0}))
}

#[derive(Deserialize)]
struct UsersBody {
    users: Vec<String>,
}

async fn unban_users(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<UsersBody>,
) -> ApiResult {
    state.hub.unban(&id, &b.users).await?;
    ok(json!({"code": 0}))
}

#[derive(Deserialize)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn list_bans(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult {
    let (page, next) = state.hub.bans(&id, q.offset.unwrap_or(0), q.limit.unwrap_or(100))?;
    let list: Vec<Value> = page.iter().map(ban_json).collect();
    ok(json!({"bans": list, "nextOffset": next}))
}

#[derive(Deserialize)]
struct KickBody {
    users: Vec<String>,
    #[serde(default)]
    reason: String,
}

async fn kick_users(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<KickBody>,
) -> ApiResult {
    state.hub.kick(&id, &b.users, &b.reason).await?;
    ok(json!({"code": 0}))
}

#[derive(Deserialize)]
struct RecallBody {
    seq: u64,
}

async fn recall_message(
    State(state): State<Shared>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(b): Body<RecallBody>,
) -> ApiResult {
    state.hub.recall(&id, b.seq, &admin).await?;
    ok(json!({"code": 0}))
}

async fn list_admins(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    ok(json!({ "admins": state.hub.room_admins(&id)? }))
}

async fn add_admins(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<UsersBody>,
) -> ApiResult {
    ok(json!({ "admins": state.hub.set_room_admins(&id, &b.users, true).await? }))
}

async fn remove_admins(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<UsersBody>,
) -> ApiResult {
    ok(json!({ "admins": state.hub.set_room_admins(&id, &b.users, false).await? }))
}

#[derive(Deserialize)]
struct SlowModeBody {
    seconds: u64,
}

async fn set_slow_mode(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<SlowModeBody>,
) -> ApiResult {
    state.hub.set_slow_mode(&id, b.seconds)?;
    ok(json!({"code": 0}))
}

#[derive(Deserialize)]
struct FilterBody {
    action: String,
    words: Vec<String>,
}

fn filter_json(list: Option<(onair_core::filter::FilterAction, Vec<String>)>) -> Value {
    match list {
        Some((action, words)) => {
            json!({"action": crate::hub::action_name(action), "count": words.len(), "words": words})
        }
        None => json!({"action": null, "count": 0, "words": []}),
    }
}

async fn get_app_filter(State(state): State<Shared>, _a: Admin) -> ApiResult {
    ok(filter_json(state.hub.app_filter()))
}

async fn put_app_filter(State(state): State<Shared>, _a: Admin, Body(b): Body<FilterBody>) -> ApiResult {
    let action = crate::hub::parse_action(&b.action)?;
    let count = state.hub.set_app_filter(Some((action, b.words))).await?;
    ok(json!({ "count": count }))
}

async fn delete_app_filter(State(state): State<Shared>, _a: Admin) -> ApiResult {
    state.hub.set_app_filter(None).await?;
    ok(json!({"count": 0}))
}

async fn get_room_filter(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    ok(filter_json(state.hub.room_filter(&id)?))
}

async fn put_room_filter(
    State(state): State<Shared>,
    _a: Admin,
    Path(id): Path<String>,
    Body(b): Body<FilterBody>,
) -> ApiResult {
    let action = crate::hub::parse_action(&b.action)?;
    let count = state.hub.set_room_filter(&id, Some((action, b.words))).await?;
    ok(json!({ "count": count }))
}

async fn delete_room_filter(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    state.hub.set_room_filter(&id, None).await?;
    ok(json!({"count": 0}))
}
