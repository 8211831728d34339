//! The broadcast API of a room's stream: relays to external RTMP(S) destinations,
//! files played as live (playout), the slate, and uploads of the files they play.
//!
//! - `GET|POST /api/v1/rooms/{id}/relays`, `DELETE /api/v1/rooms/{id}/relays/{relay}`
//! - `GET|POST|DELETE /api/v1/rooms/{id}/playout`
//! - `GET|PUT|DELETE /api/v1/rooms/{id}/slate`
//! - `GET|PUT|DELETE /api/v1/rooms/{id}/ladder` (the room's ABR ladder)
//! - `PUT /api/v1/uploads/{name}` (raw body; app admins)
//!
//! Everything here belongs to whoever manages the room (owner, room admin, app admin):
//! a relay's stream key is a secret of theirs, answered masked. Playing a path of the
//! data dir other than an upload or the room's own recordings is for app admins only.
//! The room layer drives the slate: a task here asks the media service for the slate
//! variant that fits each room's live state ([`spawn_slate_follower`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body as RawBody;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use onair_core::live::LiveState;
use onair_core::{Code, Rejection};
use onair_media_server::playout::{Item, PlayoutError, ShowRequest, Slate, SlateVariant};
use onair_media_server::relays::RelayError;
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult, ok};
use crate::http::extract::{Admin, Body, Caller};
use crate::state::Shared;

/// Routes of this module (merged into the main router).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/rooms/{id}/relays", get(list_relays).post(add_relay))
        .route("/api/v1/rooms/{id}/relays/{relay}", axum::routing::delete(remove_relay))
        .route("/api/v1/rooms/{id}/playout", get(playout_status).post(start_playout).delete(stop_playout))
        .route("/api/v1/rooms/{id}/slate", get(get_slate).put(put_slate).delete(delete_slate))
        .route("/api/v1/rooms/{id}/ladder", get(get_ladder).put(put_ladder).delete(delete_ladder))
        .route("/api/v1/uploads/{name}", put(upload))
}

/// An error in the shape every API face answers (`{"code", "message"}` with the
/// server's own code numbers), keeping the HTTP status this face chose (422 for an
/// unplayable file and 503 for a feature that is off say more than a code would).
fn refuse(status: StatusCode, message: String) -> Response {
    let code = match status {
        StatusCode::FORBIDDEN => Code::NoPermission,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::CONFLICT => Code::Conflict,
        StatusCode::PAYLOAD_TOO_LARGE => Code::PacketTooLong,
        s if s.is_server_error() => Code::Internal,
        _ => Code::InvalidParam,
    };
    (status, axum::Json(json!({"code": code.number(), "message": message}))).into_response()
}

fn relay_error(e: RelayError) -> Response {
    let status = match e {
        RelayError::NotFound => StatusCode::NOT_FOUND,
        RelayError::Duplicate | RelayError::TooMany => StatusCode::CONFLICT,
        RelayError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RelayError::Off(_) => StatusCode::SERVICE_UNAVAILABLE,
        RelayError::BadStream | RelayError::BadDestination(_) => StatusCode::BAD_REQUEST,
    };
    refuse(status, e.to_string())
}

fn playout_error(e: PlayoutError) -> Response {
    let status = match e {
        PlayoutError::Bad(_) => StatusCode::BAD_REQUEST,
        PlayoutError::NotFound(_) => StatusCode::NOT_FOUND,
        PlayoutError::Forbidden(_) => StatusCode::FORBIDDEN,
        PlayoutError::Unplayable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PlayoutError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        PlayoutError::Off(_) => StatusCode::SERVICE_UNAVAILABLE,
        PlayoutError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    refuse(status, e.to_string())
}

/// The room's stream, once the caller is known to manage the room.
fn managed_stream(state: &Shared, caller: &Caller, id: &str) -> Result<String, ApiError> {
    let room = state.hub.get(id)?;
    caller.must_manage(&room)?;
    Ok(room.profile().stream)
}

async fn list_relays(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let stream = managed_stream(&state, &caller, &id)?;
    ok(json!({"stream": stream, "relays": state.relays.list(&stream)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayBody {
    /// `rtmp(s)://host[:port]/app/KEY`, or the server URL with `key` apart.
    url: String,
    #[serde(default)]
    key: Option<String>,
}

async fn add_relay(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<RelayBody>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    Ok(match state.relays.add(&stream, &b.url, b.key.as_deref()) {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => relay_error(e),
    })
}

async fn remove_relay(
    State(state): State<Shared>,
    caller: Caller,
    Path((id, relay)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    Ok(match state.relays.remove(&stream, &relay) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => relay_error(e),
    })
}

async fn playout_status(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let stream = managed_stream(&state, &caller, &id)?;
    ok(json!({"stream": stream, "playout": state.playout.status(&stream)}))
}

async fn start_playout(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ShowRequest>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    if !caller.app_admin && req.items.iter().any(|i| matches!(i, Item::Path(_))) {
        return Err(ApiError(Rejection::new(
            Code::NoPermission,
            "only an app admin may play a data-dir path; play an upload or a recording of the room",
        )));
    }
    Ok(match state.playout.schedule(&stream, req).await {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => playout_error(e),
    })
}

async fn stop_playout(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    Ok(if state.playout.stop(&stream) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        refuse(StatusCode::NOT_FOUND, "nothing is being played for this room".into())
    })
}

async fn get_slate(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let stream = managed_stream(&state, &caller, &id)?;
    ok(json!({"stream": stream, "slate": state.playout.slate(&stream)}))
}

async fn put_slate(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(slate): Body<Slate>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    Ok(match state.playout.set_slate(&stream, Some(slate.clone())).await {
        Ok(()) => {
            follow_one(&state, &id, &stream);
            axum::Json(json!({"stream": stream, "slate": slate})).into_response()
        }
        Err(e) => playout_error(e),
    })
}

async fn delete_slate(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(&state, &caller, &id)?;
    Ok(match state.playout.set_slate(&stream, None).await {
        Ok(()) => {
            state.playout.want_slate(&stream, None);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => playout_error(e),
    })
}

async fn upload(State(state): State<Shared>, _admin: Admin, Path(name): Path<String>, body: RawBody) -> Response {
    match state.playout.upload(&name, body.into_data_stream()).await {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => playout_error(e),
    }
}

fn ladder_view(state: &Shared, stream: &str) -> serde_json::Value {
    json!({
        "stream": stream,
        "renditions": state.media.ladder(stream),
        "master": format!("/live/{stream}/master.m3u8"),
        "maxTranscodes": state.cfg.media.max_transcodes,
    })
}

async fn get_ladder(State(state): State<Shared>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let stream = managed_stream(&state, &caller, &id)?;
    ok(ladder_view(&state, &stream))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LadderBody {
    renditions: Vec<onair_media_server::renditions::Rendition>,
}

async fn put_ladder(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<LadderBody>,
) -> Result<Response, ApiError> {
    set_ladder(&state, &caller, &id, Some(b.renditions))
}

async fn delete_ladder(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    set_ladder(&state, &caller, &id, None)
}

fn set_ladder(
    state: &Shared,
    caller: &Caller,
    id: &str,
    ladder: Option<Vec<onair_media_server::renditions::Rendition>>,
) -> Result<Response, ApiError> {
    let stream = managed_stream(state, caller, id)?;
    let Some(r) = &state.renditions else {
        return Ok(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "renditions are off: they need ffmpeg and the RTMP listener".into(),
        ));
    };
    Ok(match r.set_ladder(&stream, ladder) {
        Ok(()) => axum::Json(ladder_view(state, &stream)).into_response(),
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    })
}

/// The slate variant a room in `state` shows (None: on air, or over).
fn variant_for(state: &str) -> Option<SlateVariant> {
    match LiveState::parse(state) {
        Ok(LiveState::Upcoming) => Some(SlateVariant::Upcoming),
        Ok(LiveState::Paused) => Some(SlateVariant::Paused),
        _ => None,
    }
}

fn follow_one(state: &Shared, room_id: &str, stream: &str) {
    let Ok(room) = state.hub.get(room_id) else { return };
    state.playout.want_slate(stream, variant_for(&room.profile().state));
}

/// Keeps every slate in step with its room's live state (checked each second: a
/// state change shows within a second, and nothing is missed if an event is).
pub fn spawn_slate_follower(state: Shared, tasks: &tokio_util::task::TaskTracker) {
    let shutdown = state.shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            for stream in state.playout.slate_streams() {
                match state.hub.room_for_stream(&stream) {
                    Some(room) => follow_one(&state, &room, &stream),
                    None => state.playout.want_slate(&stream, None),
                }
            }
        }
    });
}

/// A show of files that ended by itself with `endRoom`: the room ends with it.
pub fn end_rooms_with_shows(state: &Shared) {
    let weak = Arc::downgrade(state);
    state.playout.on_finished(Box::new(move |stream, end_room| {
        let Some(state) = weak.upgrade() else { return };
        if !end_room {
            return;
        }
        let Some(room) = state.hub.room_for_stream(stream) else { return };
        let stream = stream.to_string();
        // live → ended is a legal move, and the child's unpublish then leaves an ended
        // room as it is: the order of the two does not matter.
        tokio::spawn(async move {
            if let Err(r) = state.hub.set_state(&room, LiveState::Ended.as_str()).await {
                tracing::warn!(room, stream, error = %r.info, "could not end the room with its show");
            }
        });
    }));
}
