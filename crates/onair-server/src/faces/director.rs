//! The Live Director's face: stream monitoring (`GET /api/v1/streams/{name}/history`,
//! public like the stream stats), the image watermark (`/api/v1/admin/watermark`,
//! app admins) and a room's chat-in-the-picture switch
//! (`/api/v1/rooms/{id}/chat-overlay`, the room's owner or an admin).

use std::path::{Component, Path as FsPath};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use onair_core::{Code, Rejection};
use onair_media_server::director::{MAX_WATERMARK_BYTES, Position, WatermarkError};
use serde::Deserialize;
use serde_json::json;

use crate::http::error::{ApiError, ApiResult, ok};
use crate::http::extract::{Admin, ApiQuery, Body, Caller, parse_json, read_body};
use crate::state::Shared;

/// Routes of this module (merged into the main router).
pub fn routes() -> Router<Shared> {
    let watermark = get(get_watermark).put(put_watermark).delete(delete_watermark);
    Router::new()
        .route("/api/v1/streams/{name}/history", get(history))
        .route("/api/v1/admin/watermark", watermark)
        .route("/api/v1/rooms/{id}/chat-overlay", get(get_chat_overlay).put(put_chat_overlay))
}

async fn history(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match state.media.history(&name) {
        Some(v) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(json!({"code": 404, "message": "no history: the stream is not live and did not end recently"})),
        )
            .into_response(),
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(Rejection::new(Code::InvalidParam, message))
}

/// Placement of a watermark: query parameters with a PNG body, or JSON fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placement {
    /// A PNG already in the data dir (JSON bodies only), relative to it.
    #[serde(default)]
    path: Option<String>,
    #[serde(default = "default_position")]
    position: String,
    #[serde(default = "one")]
    scale: f32,
    #[serde(default = "one")]
    opacity: f32,
    #[serde(default = "default_margin")]
    margin: u32,
}

fn default_position() -> String {
    "top-right".into()
}

fn one() -> f32 {
    1.0
}

fn default_margin() -> u32 {
    16
}

fn watermark_error(e: WatermarkError) -> Response {
    // Not an image at all: 415 says "this media type is not taken" to any client.
    let status = if e.not_image { StatusCode::UNSUPPORTED_MEDIA_TYPE } else { StatusCode::BAD_REQUEST };
    (status, axum::Json(json!({"code": Code::InvalidParam.number(), "message": e.message}))).into_response()
}

async fn get_watermark(State(state): State<Shared>, _a: Admin) -> ApiResult {
    ok(json!({"watermark": state.media.director.watermark().map(|w| w.view())}))
}

/// `PUT /api/v1/admin/watermark`: `Content-Type: image/png` with the image as the body
/// and `?position=&scale=&opacity=&margin=`, or JSON `{"path": "branding/logo.png",
/// "position": …}` naming a file in the data dir. Refused (415) when not a PNG image.
async fn put_watermark(
    State(state): State<Shared>,
    _a: Admin,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<Placement>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // A PNG up to the limit (a JSON body naming a file is far smaller); larger is 413
    // with the limit named, read no further.
    let body = read_body(body, MAX_WATERMARK_BYTES).await?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (placement, png) = if mime == "application/json" {
        let p: Placement =
            serde_json::from_value(parse_json(&body)?).map_err(|e| bad(format!("invalid request body: {e}")))?;
        let Some(rel) = p.path.clone() else {
            return Err(bad("a JSON body names a file in the data dir: {\"path\": \"…\"}; or send the PNG itself"));
        };
        let file = data_file(&state.cfg.data_dir, &rel)?;
        let bytes =
            tokio::fs::read(&file).await.map_err(|e| bad(format!("cannot read {rel:?} in the data dir: {e}")))?;
        (p, bytes)
    } else if body.is_empty() {
        return Err(bad("send the PNG image as the body (Content-Type: image/png), or JSON with a path"));
    } else {
        (query, body.to_vec())
    };
    let Some(position) = Position::parse(&placement.position) else {
        return Err(bad(format!(
            "position {:?}: one of top-left, top-right, bottom-left, bottom-right, center",
            placement.position
        )));
    };
    match state.media.director.set_watermark(&png, position, placement.scale, placement.opacity, placement.margin).await
    {
        Ok(w) => ok(json!({"watermark": w.view()})),
        Err(e) => Ok(watermark_error(e)),
    }
}

/// A path inside the data dir: relative, no `..`, no root.
fn data_file(data_dir: &FsPath, rel: &str) -> Result<std::path::PathBuf, ApiError> {
    let p = FsPath::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad(format!("path {rel:?}: a relative path inside the data dir (no '..', not absolute)")));
    }
    Ok(data_dir.join(p))
}

async fn delete_watermark(State(state): State<Shared>, _a: Admin) -> ApiResult {
    let removed = state.media.director.clear_watermark().await;
    ok(json!({"removed": removed}))
}

async fn get_chat_overlay(State(state): State<Shared>, Path(id): Path<String>) -> ApiResult {
    ok(state.hub.chat_overlay_view(&id)?)
}

#[derive(Deserialize)]
struct OverlaySwitch {
    enabled: bool,
}

async fn put_chat_overlay(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    Body(b): Body<OverlaySwitch>,
) -> ApiResult {
    caller.must_manage(&*state.hub.get(&id)?)?;
    ok(state.hub.set_chat_overlay_enabled(&id, b.enabled).await?)
}
