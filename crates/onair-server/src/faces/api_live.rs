//! The native API of the live-room business layer: live state, gifts and wallets,
//! likes, levels, statistics, lotteries and co-hosting (`/api/v1/...`).
//!
//! Public reads (room list, room, catalog, leaderboard, levels, statistics,
//! lotteries) need no login and carry short cache lifetimes so a CDN or the browser
//! can absorb a busy room list. Everything that changes something names its caller.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post, put};
use onair_core::gifts::Gift;
use onair_core::lottery::LotterySpec;
use onair_core::{Code, Rejection};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::error::{ApiError, ApiResult, cached, ok, storage, to_json};
use crate::http::extract::{Admin, ApiQuery, Body, Caller};
use crate::state::Shared;

/// Routes of this module (merged into the main router).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/rooms/{id}/state", post(set_state))
        .route("/api/v1/rooms/{id}/schedule", put(schedule))
        .route("/api/v1/rooms/{id}/stream", put(set_stream))
        .route("/api/v1/gifts", get(gift_catalog))
        .route("/api/v1/gifts/{gift_id}", put(put_gift).delete(delete_gift))
        .route("/api/v1/rooms/{id}/gifts", post(send_gift))
        .route("/api/v1/rooms/{id}/gifts/leaderboard", get(leaderboard))
        .route("/api/v1/users/{id}/wallet", get(wallet))
        .route("/api/v1/users/{id}/wallet/topup", post(top_up))
        .route("/api/v1/users/{id}/ledger", get(ledger))
        .route("/api/v1/users/{id}/earnings", get(earnings))
        .route("/api/v1/rooms/{id}/likes", get(likes).post(like))
        .route("/api/v1/users/{id}/level", get(level))
        .route("/api/v1/users/{id}/membership", put(membership))
        .route("/api/v1/rooms/{id}/stats", get(stats))
        .route("/api/v1/rooms/{id}/lotteries", get(room_lotteries).post(start_lottery))
        .route("/api/v1/lotteries/{id}", get(lottery))
        .route("/api/v1/lotteries/{id}/draw", post(draw_lottery))
        .route("/api/v1/rooms/{id}/cohost", get(cohosts))
        .route("/api/v1/rooms/{id}/cohost/request", post(cohost_request))
        .route("/api/v1/rooms/{id}/cohost/layout", post(cohost_layout))
        .route("/api/v1/rooms/{id}/cohost/{user}/{action}", post(cohost_action))
        .route("/api/v1/streams/{name}/lifecycle", post(stream_lifecycle))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateBody {
    state: String,
}

async fn set_state(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<StateBody>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    ok(state.hub.set_state(&id, &b.state).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleBody {
    scheduled_at: u64,
}

async fn schedule(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<ScheduleBody>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    ok(state.hub.schedule(&id, b.scheduled_at).await?)
}

#[derive(Deserialize)]
struct StreamBody {
    stream: String,
}

async fn set_stream(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<StreamBody>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    // Renditions (`{source}_{name}`) are made by the server from another stream.
    if state.media.is_rendition(&b.stream) {
        return Err(ApiError(Rejection::new(
            Code::Conflict,
            format!("stream '{}' is reserved: its name is a rendition's (`{{source}}_{{rendition}}`)", b.stream),
        )));
    }
    // So are chat outputs (`{source}_chat`, see `onair_media_server::director`).
    if b.stream.len() > onair_media_server::director::CHAT_SUFFIX.len()
        && b.stream.ends_with(onair_media_server::director::CHAT_SUFFIX)
    {
        return Err(ApiError(Rejection::new(
            Code::Conflict,
            format!("stream '{}' is reserved: its name is a chat output's (`{{source}}_chat`)", b.stream),
        )));
    }
    ok(state.hub.set_stream(&id, &b.stream).await?)
}

async fn gift_catalog(State(state): State<Shared>) -> ApiResult {
    Ok(cached(json!({"gifts": state.hub.gift_catalog().iter().map(to_json).collect::<Vec<_>>()}), 10))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GiftBody {
    name: String,
    price: u64,
    icon: String,
    animation: String,
}

async fn put_gift(
    State(state): State<Shared>,
    _admin: Admin,
    Path(gift_id): Path<String>,
    Body(b): Body<GiftBody>,
) -> ApiResult {
    let gift = Gift { gift_id, name: b.name, price: b.price, icon: b.icon, animation: b.animation };
    state.hub.put_gift(gift.clone()).await?;
    ok(to_json(&gift))
}

async fn delete_gift(State(state): State<Shared>, _admin: Admin, Path(gift_id): Path<String>) -> ApiResult {
    state.hub.delete_gift(&gift_id).await?;
    ok(json!({"deleted": gift_id}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendGiftBody {
    gift_id: String,
    #[serde(default = "one")]
    count: i64,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn one() -> i64 {
    1
}

async fn send_gift(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(b): Body<SendGiftBody>,
) -> ApiResult {
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let key = b.idempotency_key.or(header_key).unwrap_or_default();
    let count =
        u64::try_from(b.count).map_err(|_| ApiError(Rejection::new(Code::InvalidParam, "count must be 1..=9999")))?;
    // Demo guests' coins are free: they buy nothing outside the demo rooms (owned
    // by the demo anchor), so a stranger cannot credit a real anchor with them.
    if crate::faces::web::is_demo_guest(&caller.user) && !state.hub.get(&id)?.is_owner(crate::faces::web::DEMO_ANCHOR) {
        return Err(ApiError(Rejection::new(Code::NoPermission, "demo coins can only be gifted in demo rooms")));
    }
    let sender = state.store.sender_profile(&caller.user).await.map_err(onair_hub::internal)?;
    let reply = state.hub.send_gift(&id, sender, &b.gift_id, count, &key).await?;
    ok(json!({
        "balance": reply.balance, "ledgerId": reply.ledger_id, "comboId": reply.combo_id,
        "replayed": reply.replayed,
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LimitQuery {
    limit: Option<usize>,
    before: Option<u64>,
}

async fn leaderboard(
    State(state): State<Shared>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    Ok(cached(state.hub.gift_leaderboard(&id, q.limit.unwrap_or(10)).await?, 2))
}

async fn wallet(State(state): State<Shared>, caller: Caller, Path(user): Path<String>) -> ApiResult {
    caller.must_be(&user)?;
    let w = state.store.wallet(&user).await.map_err(storage)?;
    ok(json!({"userId": w.user_id, "balance": w.balance, "earnings": w.earnings}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TopUpBody {
    amount: i64,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Most coins one top-up may add.
const MAX_TOP_UP: u64 = 1_000_000_000_000;

async fn top_up(
    State(state): State<Shared>,
    admin: Admin,
    Path(user): Path<String>,
    headers: HeaderMap,
    Body(b): Body<TopUpBody>,
) -> ApiResult {
    let amount = u64::try_from(b.amount)
        .ok()
        .filter(|a| (1..=MAX_TOP_UP).contains(a))
        .ok_or_else(|| ApiError(Rejection::new(Code::InvalidParam, format!("amount must be 1..={MAX_TOP_UP}"))))?;
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let key = b.idempotency_key.or(header_key).unwrap_or_default();
    if key.is_empty() || key.len() > 128 {
        return Err(ApiError(Rejection::new(Code::InvalidParam, "idempotencyKey is required (1..=128 bytes)")));
    }
    if user.is_empty() || user.len() > 32 {
        return Err(ApiError(Rejection::new(Code::InvalidParam, "user id must be 1-32 bytes")));
    }
    let receipt = state.store.top_up(&user, amount, &key, &admin.0).await.map_err(|e| match e {
        onair_store::MoneyError::KeyReused => ApiError(Rejection::new(
            Code::IdempotencyConflict,
            format!("idempotency key '{key}' was already used for a different top-up"),
        )),
        onair_store::MoneyError::Insufficient { .. } => {
            ApiError(Rejection::new(Code::Internal, "unexpected balance error on a top-up"))
        }
        onair_store::MoneyError::Store(e) => storage(e),
    })?;
    let w = state.store.wallet(&user).await.map_err(storage)?;
    ok(json!({
        "userId": user, "balance": w.balance, "earnings": w.earnings,
        "ledgerId": receipt.ledger_id, "replayed": receipt.replayed,
    }))
}

async fn ledger(
    State(state): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> ApiResult {
    caller.must_be(&user)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = state.store.ledger(&user, q.before.unwrap_or(0), limit).await.map_err(storage)?;
    let next = if rows.len() == limit { rows.last().map_or(0, |r| r.id) } else { 0 };
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id, "kind": r.kind, "amount": r.amount, "balanceAfter": r.balance_after,
                "giftId": r.gift_id, "count": r.gift_count, "roomId": r.room_id,
                "counterparty": r.counterparty, "idempotencyKey": r.idempotency_key, "at": r.at,
            })
        })
        .collect();
    ok(json!({"userId": user, "entries": entries, "nextBefore": next}))
}

async fn earnings(State(state): State<Shared>, caller: Caller, Path(user): Path<String>) -> ApiResult {
    caller.must_be(&user)?;
    let w = state.store.wallet(&user).await.map_err(storage)?;
    let by_room = state.store.earnings_by_room(&user).await.map_err(storage)?;
    let by_room: Vec<Value> =
        by_room.into_iter().map(|(room, total)| json!({"roomId": room, "total": total})).collect();
    ok(json!({"userId": user, "earnings": w.earnings, "byRoom": by_room}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LikeBody {
    count: Option<i64>,
}

async fn like(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<LikeBody>,
) -> ApiResult {
    let count = u64::try_from(b.count.unwrap_or(1))
        .map_err(|_| ApiError(Rejection::new(Code::InvalidParam, "count must be 1..=1000")))?;
    let (accepted, total) = state.hub.like(&id, &caller.user, Some(&caller.user), count)?;
    ok(json!({"accepted": accepted, "total": total}))
}

async fn likes(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let view = state.hub.get(&id)?.view();
    Ok(cached(json!({"roomId": id, "total": view.likes}), 1))
}

async fn level(State(state): State<Shared>, Path(user): Path<String>) -> ApiResult {
    Ok(cached(state.hub.level(&user).await?, 5))
}

#[derive(Deserialize)]
struct MembershipBody {
    member: bool,
}

async fn membership(
    State(state): State<Shared>,
    _admin: Admin,
    Path(user): Path<String>,
    Body(b): Body<MembershipBody>,
) -> ApiResult {
    if user.is_empty() || user.len() > 32 {
        return Err(ApiError(Rejection::new(Code::InvalidParam, "user id must be 1-32 bytes")));
    }
    ok(state.hub.set_member(&user, b.member).await?)
}

async fn stats(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(cached(state.hub.room_stats(&id)?, 2))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LotteryBody {
    keyword: String,
    duration_secs: u64,
    winners: u32,
    #[serde(default)]
    min_level: u32,
}

async fn start_lottery(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<LotteryBody>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    let spec =
        LotterySpec { keyword: b.keyword, duration_secs: b.duration_secs, winners: b.winners, min_level: b.min_level };
    ok(state.hub.start_lottery(&id, spec, &caller.user).await?)
}

async fn room_lotteries(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(cached(state.hub.lotteries(&id).await?, 2))
}

async fn lottery(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    Ok(cached(state.hub.lottery_view(&id).await?, 1))
}

async fn draw_lottery(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let record = state.hub.lottery_record(&id).await?;
    caller.must_manage(&*state.hub.get(&record.room_id)?)?;
    ok(state.hub.draw_lottery_by_id(&id).await?)
}

async fn cohosts(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    ok(state.hub.cohosts(&id)?)
}

async fn cohost_request(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let profile = state.store.sender_profile(&caller.user).await.map_err(storage)?;
    state.hub.cohost_request(&id, &profile)?;
    ok(json!({"userId": caller.user, "status": "pending"}))
}

#[derive(Deserialize)]
struct LayoutBody {
    layout: String,
}

/// `POST /api/v1/rooms/{id}/cohost/layout` `{"layout": "side-by-side" | "pip" | "grid"}`.
async fn cohost_layout(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<LayoutBody>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    ok(state.hub.cohost_layout(&id, &b.layout)?)
}

async fn cohost_action(
    State(state): State<Shared>,
    caller: Caller,
    Path((id, user, action)): Path<(String, String, String)>,
) -> ApiResult {
    let room = state.hub.get(&id)?;
    match action.as_str() {
        "accept" | "refuse" => {
            caller.must_manage(&room)?;
            ok(state.hub.cohost_answer(&id, &user, action == "accept")?)
        }
        "end" => {
            if caller.user != user {
                caller.must_manage(&room)?;
            }
            state.hub.cohost_end(&id, &user)?;
            ok(json!({"userId": user, "status": "ended"}))
        }
        other => Err(ApiError(Rejection::new(
            Code::UnknownCommand,
            format!("unknown co-host action '{other}'; expected accept, refuse or end"),
        ))),
    }
}

#[derive(Deserialize)]
struct LifecycleBody {
    event: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    info: Option<Value>,
}

/// `POST /api/v1/streams/{name}/lifecycle` (app admin): a stream event from a media
/// server (the built-in one calls the hub directly; an external SRS or nginx-rtmp
/// can report through here), moving the room's live state like the built-in one.
async fn stream_lifecycle(
    State(state): State<Shared>,
    _admin: Admin,
    Path(name): Path<String>,
    Body(b): Body<LifecycleBody>,
) -> ApiResult {
    use onair_media::lifecycle::StreamLifecycle;
    let event = match b.event.as_str() {
        "published" => StreamLifecycle::Published { info: b.info.unwrap_or_else(|| json!({})) },
        "unpublished" => StreamLifecycle::Unpublished,
        "recording" if !b.url.is_empty() => StreamLifecycle::RecordingReady { url: b.url },
        "recording" => return Err(ApiError(Rejection::new(Code::InvalidParam, "'recording' needs 'url'"))),
        other => {
            return Err(ApiError(Rejection::new(
                Code::InvalidParam,
                format!("unknown event '{other}'; expected published, unpublished or recording"),
            )));
        }
    };
    let Some(room) = state.hub.room_for_stream(&name) else {
        return Err(ApiError(Rejection::new(Code::RoomNotFound, format!("no room uses stream '{name}'"))));
    };
    state.hub.on_stream(&name, event).await;
    ok(to_json(&state.hub.get(&room)?.view()))
}
