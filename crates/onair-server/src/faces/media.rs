//! The media face: `GET /live/{stream}.flv` (HTTP-FLV), the LL-HLS / live fMP4 /
//! snapshot / recording files the media service answers ([`MediaReply`] rendered
//! here), and the stream stats API (`GET /api/v1/streams`, `GET /api/v1/streams/{name}`).
//!
//! WebRTC: `POST /whip/{stream}` and `POST /whep/{stream}` (SDP offer in, `201` with
//! the answer and a `Location` to `DELETE`), wired by `onair_media_server::webrtc`.
//! `PATCH` (trickle ICE) is answered 405: the server is ICE-lite and puts its host
//! candidates in the answer, so clients send a complete (non-trickle) offer.
//!
//! The stats are public like room reads: they name streams and their numbers, never
//! the publisher's address or push URL query (which holds the signature).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use onair_media::flv;
use onair_media::rtmp::StreamKey;
use serde_json::json;

use crate::state::Shared;
use onair_media::pacing::ViewerPacing;
use onair_media_server::hls;
use onair_media_server::registry::{Packet, Protocol, Subscription};
use onair_media_server::reply::{MediaBody, MediaReply};
use onair_media_server::{MediaService, valid_stream_name};
use onair_shell::now_ms;

/// The media routes, merged into the main router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/live/{file}", get(live_file))
        .route("/live/{stream}/snapshot.jpg", get(snapshot))
        .route("/live/{stream}/master.m3u8", get(master))
        .route("/live/{stream}/{sid}/{file}", get(media_file))
        .route("/vod/{stream}/{id}/{file}", get(vod_file))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{name}", get(get_stream))
        .route("/whip/{stream}", post(whip).patch(no_trickle))
        .route("/whip/{stream}/{id}", axum::routing::delete(whip_delete).patch(no_trickle))
        .route("/whep/{stream}", post(whep).patch(no_trickle))
        .route("/whep/{stream}/{id}", axum::routing::delete(whep_delete).patch(no_trickle))
}

/// A WHIP/WHEP refusal: plain text, the reason a client library shows.
fn refuse(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        message.to_string(),
    )
        .into_response()
}

/// The offer of a WHIP/WHEP `POST`: `application/sdp` (415 otherwise), UTF-8 (400).
fn sdp_offer(headers: &HeaderMap, body: &Bytes) -> Result<String, (u16, String)> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Err((415, format!("Content-Type must be application/sdp, not {ct:?}")));
    }
    match std::str::from_utf8(body) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err((400, "malformed SDP offer: not UTF-8".into())),
    }
}

fn created(w: &onair_media_server::webrtc::WebRtc, answer: onair_media_server::webrtc::Answer) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/sdp")
        .header(header::LOCATION, &answer.location)
        .header(header::CACHE_CONTROL, "no-store");
    for link in w.link_headers() {
        b = b.header(header::LINK, link);
    }
    b.body(Body::from(answer.sdp)).unwrap_or_else(|_| refuse(500, "response"))
}

fn no_webrtc() -> Response {
    refuse(503, "WebRTC is off on this server ([webrtc] enabled = false)")
}

/// `POST /whip/{stream}`: credentials as for RTMP push, in the query
/// (`?txSecret=…&txTime=…`) or `Authorization: Bearer txSecret=…&txTime=…`.
async fn whip(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(w) = &state.webrtc else { return no_webrtc() };
    let offer = match sdp_offer(&headers, &body) {
        Ok(o) => o,
        Err((status, why)) => return refuse(status, &why),
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match w.whip(&stream, query.as_deref().unwrap_or(""), bearer, &offer, peer.ip()).await {
        Ok(a) => created(w, a),
        Err(e) => refuse(e.status, &e.message),
    }
}

/// `POST /whep/{stream}`: plays any live stream (play signature when `play_auth`).
async fn whep(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(w) = &state.webrtc else { return no_webrtc() };
    let offer = match sdp_offer(&headers, &body) {
        Ok(o) => o,
        Err((status, why)) => return refuse(status, &why),
    };
    match w.whep(&stream, query.as_deref().unwrap_or(""), &offer, peer.ip()).await {
        Ok(a) => created(w, a),
        Err(e) => refuse(e.status, &e.message),
    }
}

async fn whip_delete(State(state): State<Shared>, Path((stream, id)): Path<(String, String)>) -> Response {
    end_session(&state, &stream, &id, true).await
}

async fn whep_delete(State(state): State<Shared>, Path((stream, id)): Path<(String, String)>) -> Response {
    end_session(&state, &stream, &id, false).await
}

/// The resource id is the capability (random, see `webrtc`): knowing it is enough.
async fn end_session(state: &Shared, stream: &str, id: &str, publish: bool) -> Response {
    let Some(w) = &state.webrtc else { return no_webrtc() };
    if w.delete(stream, id, publish).await { StatusCode::OK.into_response() } else { refuse(404, "no such session") }
}

/// Trickle ICE and ICE restarts are not offered (RFC 9725 §4.3.1: 405).
async fn no_trickle() -> Response {
    let mut r = refuse(405, "trickle ICE is not supported: send a complete offer");
    r.headers_mut().insert(header::ALLOW, axum::http::HeaderValue::from_static("POST, DELETE, OPTIONS"));
    r
}

/// Renders the media service's answer, readable from players on other origins
/// (hls.js, MediaSource pages).
fn render(reply: MediaReply) -> Response {
    let (parts, body) = hls::cors(reply).into_parts();
    let body = match body {
        MediaBody::Full(bytes) => Body::from(bytes),
        MediaBody::Stream(chunks) => {
            Body::from_stream(futures_util::StreamExt::map(chunks, Ok::<_, std::convert::Infallible>))
        }
    };
    Response::from_parts(parts, body)
}

async fn snapshot(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    render(hls::snapshot(&state.hls, &name).await)
}

async fn master(State(state): State<Shared>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    render(hls::master(&state.hls, &name, query.as_deref().unwrap_or("")).await)
}

async fn media_file(State(state): State<Shared>, Path((name, sid, file)): Path<(String, String, String)>) -> Response {
    render(hls::media_file(&state.hls, &name, &sid, &file).await)
}

async fn vod_file(State(state): State<Shared>, Path((name, id, file)): Path<(String, String, String)>) -> Response {
    render(hls::vod_file(&state.hls, &name, &id, &file).await)
}

fn error(status: StatusCode, message: &str) -> Response {
    // `no-store`: a CDN must not remember that a stream was not live.
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(json!({"code": status.as_u16(), "message": message})))
        .into_response()
}

/// `/live/{stream}.{ext}`: dispatches on the extension. HLS (`.m3u8`) is served by
/// the HLS part when present.
async fn live_file(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((name, ext)) = file.rsplit_once('.') else { return error(StatusCode::NOT_FOUND, "no such file") };
    match ext {
        "flv" => {
            let via = headers.get(onair_media_server::edge::RELAY_HEADER).and_then(|v| v.to_str().ok());
            http_flv(&state.media, name, query.as_deref().unwrap_or(""), via).await
        }
        "m3u8" | "mp4" | "json" => {
            match hls::live_file(&state.hls, &file, query.as_deref().unwrap_or(""), client_key(peer, &headers)).await {
                Some(reply) => render(reply),
                None => error(StatusCode::NOT_FOUND, "no such file"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such file"),
    }
}

/// HTTP-FLV. `via` is the relay chain of an edge's pull (`x-onair-relay`): such a
/// viewer is counted as `relay`, and one that already went through this node is a loop.
async fn http_flv(svc: &Arc<MediaService>, name: &str, query: &str, via: Option<&str>) -> Response {
    if !valid_stream_name(name) {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    let key = StreamKey { name: name.to_string(), query: query.to_string() };
    if let Err(why) = svc.check_play(&key) {
        return error(StatusCode::FORBIDDEN, &format!("play refused: {why}"));
    }
    if via.is_some_and(|v| svc.relay_loop(v)) {
        return error(StatusCode::LOOP_DETECTED, "relay loop: this node is already in the chain");
    }
    let protocol = if via.is_some() { Protocol::Relay } else { Protocol::HttpFlv };
    let Some(sub) = svc.open(name, protocol, query, via.unwrap_or("")).await else {
        return error(StatusCode::NOT_FOUND, "stream is not live");
    };
    let header_bytes = Bytes::copy_from_slice(&flv::file_header(true, true));
    let state = FlvBody {
        sub,
        first: Some(header_bytes),
        pacing: ViewerPacing::new(svc.cfg.slow_viewer_grace_ms, svc.cfg.merge_write_ms),
        batch: Vec::new(),
        ready: VecDeque::new(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/x-flv")
        // An endless live body: never cached by a CDN or browser.
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

struct FlvBody {
    sub: Subscription,
    first: Option<Bytes>,
    pacing: ViewerPacing,
    batch: Vec<Arc<Packet>>,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl FlvBody {
    /// The next chunk of the body; `None` ends it. Each item is a shared, pre-built
    /// tag. Items come in batches paced by [`ViewerPacing`] (merged writes): hyper polls
    /// the body again while it is ready, queues the tags and writes them with one
    /// vectored write.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(h) = self.first.take() {
            return Some(Ok(h));
        }
        if let Some(b) = self.ready.pop_front() {
            return Some(Ok(b));
        }
        if self.ended {
            return None;
        }
        loop {
            let first = self.sub.recv().await;
            match self.sub.gather(first, &mut self.pacing, &mut self.batch).await {
                Ok(live) => self.ended = !live,
                Err(behind) => return Some(Err(std::io::Error::other(behind))),
            }
            for p in self.batch.drain(..) {
                self.sub.stream().add_bytes_out(p.flv.len());
                self.ready.push_back(p.flv.clone());
            }
            match self.ready.pop_front() {
                Some(b) => return Some(Ok(b)),
                // A skip with nothing after it yet: wait for the next batch.
                None if !self.ended => continue,
                None => return None,
            }
        }
    }
}

/// An HLS reader's identity: its address and user agent (two players behind one NAT
/// usually differ in the latter), hashed.
fn client_key(peer: std::net::SocketAddr, headers: &HeaderMap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.ip().hash(&mut h);
    headers.get(header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// A stream's stats with every viewer counted once: the registry counts connections
/// (RTMP, HTTP-FLV, live fMP4 as `hls`), the HLS part counts playlist readers, which
/// join the `hls` figure; `viewersTotal` is the sum.
fn stream_view(state: &Shared, s: &onair_media_server::registry::Stream, now: u64) -> serde_json::Value {
    let mut stats = s.stats(now);
    *stats.viewers.entry("hls").or_default() += state.hls.hls_viewers(&stats.name);
    let total: u64 = stats.viewers.values().sum();
    let mut v = serde_json::to_value(&stats).unwrap_or_default();
    v["viewersTotal"] = json!(total);
    // Only when there is one: pages must not ask for a snapshot that would 404.
    if state.hls.has_snapshot(&stats.name) {
        v["snapshot"] = json!(format!("/live/{}/snapshot.jpg", stats.name));
    }
    if let Some(w) = &state.webrtc {
        v["webrtc"] = w.stream_sessions(&stats.name);
        // The watch page plays over WebRTC where this is listed (and falls back).
        v["whep"] = json!(format!("/whep/{}", stats.name));
    }
    v
}

async fn list_streams(State(state): State<Shared>) -> Response {
    let now = now_ms();
    let streams: Vec<_> = state.media.registry.list().iter().map(|s| stream_view(&state, s, now)).collect();
    axum::Json(json!({"streams": streams})).into_response()
}

async fn get_stream(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match state.media.registry.get(&name) {
        Some(s) => axum::Json(stream_view(&state, &s, now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, "stream is not live"),
    }
}
