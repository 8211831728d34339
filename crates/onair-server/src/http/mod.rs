//! The HTTP surface: the router that ties every face to its path, the probes
//! (`/healthz`, `/metrics`), the API documentation, and what all faces share
//! ([`error`]: the error type and JSON answers; [`extract`]: bodies, queries and
//! authentication).

pub mod error;
pub mod extract;
pub mod forwarded;
pub mod serve;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, extract::State};
use onair_core::{Code, Rejection};
use serde_json::json;

use crate::state::Shared;
use error::ApiError;

/// Builds the whole HTTP surface.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(crate::faces::web::routes())
        .route("/ws", get(crate::faces::ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/docs", get(api_docs))
        .route("/v4/{service}/{command}", axum::routing::any(crate::faces::v4::dispatch))
        .merge(crate::faces::api::routes())
        .merge(crate::faces::api_live::routes())
        .merge(crate::faces::media::routes())
        .merge(crate::faces::director::routes())
        .merge(crate::faces::broadcast::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), load_named_room))
        .layer(axum::middleware::from_fn(cors))
        .layer(axum::middleware::from_fn(no_store))
        .with_state(state)
}

/// Paths other sites may read: media, the player's assets and SDK, and the API (whose
/// credentials travel in headers or the query, never in cookies, so `*` exposes
/// nothing a caller did not hold already).
fn cross_origin(path: &str) -> bool {
    ["/live/", "/vod/", "/assets/", "/sdk/", "/api/v1/", "/v4/", "/whip/", "/whep/"].iter().any(|p| path.starts_with(p))
}

/// CORS for [`cross_origin`] paths: preflights (`OPTIONS` with
/// `Access-Control-Request-Method`) are answered here with what a player or SDK may
/// send; other answers get `Access-Control-Allow-Origin: *` unless they set their own.
async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{HeaderValue, Method, header};
    let path = req.uri().path();
    if !cross_origin(path) {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let asked = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        // Whatever headers the caller asked for (Authorization, Content-Type, the
        // UserSig headers): the API checks credentials itself.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            asked.unwrap_or_else(|| HeaderValue::from_static("authorization, content-type")),
        );
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("location, link, x-codecs, etag"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return r;
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("location, link, x-codecs, etag"));
    }
    r
}

/// In a cluster, a room created on another node a moment ago may not be loaded here
/// yet: before a native room route (`/api/v1/rooms/{id}…`) runs, the room it names is
/// looked up in the shared store, so no handler answers 404/10010 for a room that
/// exists. One node: nothing to do (`Hub::find` only reads memory).
async fn load_named_room(
    State(state): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(rest) = req.uri().path().strip_prefix("/api/v1/rooms/") {
        let raw = rest.split('/').next().unwrap_or_default();
        if let Some(id) = percent_decode(raw)
            && !id.is_empty()
        {
            let _ = state.hub.find(&id).await; // the handler answers "does not exist" itself
        }
    }
    next.run(req).await
}

/// `%XX`-decodes a path segment as axum's `Path` does (`None` when malformed or not
/// UTF-8: then no room is named and the handler answers as usual).
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// API answers carry credentials (push URLs, guest logins, wallets, UserSigs in the
/// admin console's calls): no cache, shared or private, may keep them. Answers that
/// chose their own caching (the public gift catalog, media files) keep it.
async fn no_store(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path().starts_with("/v4/");
    let mut response = next.run(req).await;
    if api && !response.headers().contains_key(axum::http::header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
    response
}

/// The OpenAPI document of the native API (kept in docs/, embedded at build time).
const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

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

#[cfg(test)]
mod tests {
    #[test]
    fn room_ids_in_paths_are_decoded() {
        assert_eq!(super::percent_decode("%40TGS%23ABC").as_deref(), Some("@TGS#ABC"));
        assert_eq!(super::percent_decode("live").as_deref(), Some("live"));
        assert_eq!(super::percent_decode("bad%4"), None);
        assert_eq!(super::percent_decode("bad%zz"), None);
    }
}
