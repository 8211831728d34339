//! The native admin API under `/api/v1`: rooms, attributes, members, messages,
//! moderation, word lists, users.
//!
//! Reads of public room data need no login; every change needs an app admin,
//! authenticated like the cloud's REST API: `?sdkappid=&identifier=&usersig=`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use onair_core::message::{MsgElem, Outgoing, Priority, SenderProfile, check_profile_field};
use onair_core::room::{AttrWrite, ProfilePatch};
use onair_core::{Code, Rejection};
use serde::Deserialize;
use serde_json::{Value, json};

use onair_hub::{NewRoom, SendCtx};
use onair_proto::views::{MemberView, MuteView};

use crate::http::error::{ApiError, ApiResult, cached, ok, to_json};
use crate::http::extract::{Admin, ApiQuery, Body, Caller, ClientIp};
use crate::state::Shared;

/// Routes of this face (merged into the main router).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/rooms", get(list_rooms).post(create_room))
        .route("/api/v1/rooms/{id}", get(get_room).patch(modify_room).delete(destroy_room))
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
        .route("/api/v1/users/{id}", get(get_user).put(put_user))
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
    ip: ClientIp,
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
    let room = state.hub.modify_by(&id, patch, &admin, &ip.origin()).await?;
    ok(serde_json::to_value(room.view()).unwrap_or_default())
}

async fn destroy_room(
    State(state): State<Shared>,
    ip: ClientIp,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    state.hub.destroy_by(&id, &admin, &ip.origin()).await?;
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
    ip: ClientIp,
    Admin(a): Admin,
    Path(id): Path<String>,
    Body(b): Body<AttrsBody>,
) -> ApiResult {
    ok(json!({"attrs": state.hub.write_attrs_by(&id, AttrWrite::Set, b.attrs, &a, &ip.origin()).await?}))
}

async fn modify_attrs(
    State(state): State<Shared>,
    ip: ClientIp,
    Admin(a): Admin,
    Path(id): Path<String>,
    Body(b): Body<AttrsBody>,
) -> ApiResult {
    ok(json!({"attrs": state.hub.write_attrs_by(&id, AttrWrite::Modify, b.attrs, &a, &ip.origin()).await?}))
}

async fn delete_attrs(
    State(state): State<Shared>,
    ip: ClientIp,
    Admin(a): Admin,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> ApiResult {
    let body = crate::http::extract::read_body(body, crate::http::extract::MAX_JSON_BODY).await?;
    let keys: KeysBody = if body.is_empty() {
        KeysBody::default()
    } else {
        serde_json::from_value(crate::http::extract::parse_json(&body)?)
            .map_err(|e| Rejection::new(Code::InvalidParam, format!("invalid request body: {e}")))?
    };
    let attrs = match keys.keys {
        Some(keys) => {
            state
                .hub
                .write_attrs_by(
                    &id,
                    AttrWrite::Delete,
                    keys.into_iter().map(|k| (k, String::new())).collect(),
                    &a,
                    &ip.origin(),
                )
                .await?
        }
        None => state.hub.write_attrs_by(&id, AttrWrite::Clear, BTreeMap::new(), &a, &ip.origin()).await?,
    };
    ok(json!({ "attrs": attrs }))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

async fn room_members(
    State(state): State<Shared>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    let room = state.hub.get(&id)?;
    let members: Vec<Value> = room
        .recent_members(q.limit.unwrap_or(state.cfg.chat.member_list_size))
        .iter()
        .map(|m| to_json(&MemberView::of(m)))
        .collect();
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
    let msgs = state.store.messages_before(&id, q.before, limit).await.map_err(onair_hub::internal)?;
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
    state.store.sender_profile(user_id).await.map_err(onair_hub::internal)
}

async fn send_message(
    State(state): State<Shared>,
    ip: ClientIp,
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
    let random = b.random.unwrap_or_else(|| onair_shell::seed() as u32);
    let result = state
        .hub
        .send_as_with(
            &id,
            Outgoing { sender, priority, random, body: b.body, cloud_custom_data: b.cloud_custom_data },
            SendCtx { origin: ip.origin(), ..SendCtx::admin(&admin) },
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
    state.store.upsert_user(&record).await.map_err(onair_hub::internal)?;
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
    let list: Vec<Value> = result.iter().map(|m| to_json(&MuteView::of(m))).collect();
    ok(json!({ "muted": list }))
}

async fn list_mutes(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    let list: Vec<Value> = state.hub.muted(&id)?.iter().map(|m| to_json(&MuteView::of(m))).collect();
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
    ip: ClientIp,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(b): Body<BanBody>,
) -> ApiResult {
    state.hub.ban(&id, &b.users, b.seconds, &b.reason, &admin, &ip.origin()).await?;
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
    let list: Vec<Value> = page.iter().map(|b| to_json(&b.view())).collect();
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
    ip: ClientIp,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(b): Body<KickBody>,
) -> ApiResult {
    state.hub.kick(&id, &b.users, &b.reason, &admin, &ip.origin()).await?;
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
            json!({"action": onair_hub::action_name(action), "count": words.len(), "words": words})
        }
        None => json!({"action": null, "count": 0, "words": []}),
    }
}

async fn get_app_filter(State(state): State<Shared>, _a: Admin) -> ApiResult {
    ok(filter_json(state.hub.app_filter()))
}

async fn put_app_filter(State(state): State<Shared>, _a: Admin, Body(b): Body<FilterBody>) -> ApiResult {
    let action = onair_hub::parse_action(&b.action)?;
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
    let action = onair_hub::parse_action(&b.action)?;
    let count = state.hub.set_room_filter(&id, Some((action, b.words))).await?;
    ok(json!({ "count": count }))
}

async fn delete_room_filter(State(state): State<Shared>, _a: Admin, Path(id): Path<String>) -> ApiResult {
    state.hub.set_room_filter(&id, None).await?;
    ok(json!({"count": 0}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RoomListQuery {
    sort: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/rooms`: public, sorted by popularity (default) or creation,
/// optionally filtered by live state, paged with an opaque cursor.
pub async fn list_rooms(State(state): State<Shared>, ApiQuery(q): ApiQuery<RoomListQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let offset: usize = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => c.parse().map_err(|_| ApiError(Rejection::new(Code::InvalidParam, "bad cursor")))?,
    };
    if let Some(s) = q.state.as_deref() {
        onair_core::live::LiveState::parse(s)?;
    }
    let mut rooms: Vec<onair_proto::RoomView> =
        state.hub.list().iter().map(|r| r.view()).filter(|v| q.state.as_deref().is_none_or(|s| v.state == s)).collect();
    match q.sort.as_deref().unwrap_or("popularity") {
        "popularity" => rooms.sort_by(|a, b| b.popularity.total_cmp(&a.popularity).then(a.room_id.cmp(&b.room_id))),
        "created" => {}
        other => {
            return Err(ApiError(Rejection::new(
                Code::InvalidParam,
                format!("unknown sort '{other}'; expected popularity or created"),
            )));
        }
    }
    let total = rooms.len();
    let page: Vec<Value> = rooms.iter().skip(offset).take(limit).map(to_json).collect();
    let next = if offset + page.len() < total { (offset + page.len()).to_string() } else { String::new() };
    Ok(cached(json!({"rooms": page, "total": total, "nextCursor": next}), 2))
}

/// `GET /api/v1/rooms/{id}`: public.
pub async fn get_room(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(cached(to_json(&state.hub.get(&id)?.view()), 2))
}
