//! The WebSocket endpoint (`GET /ws`): one task per connection that reads client
//! frames, answers them through the connection's outbox, and writes whatever the
//! outbox holds in one flush. The outbox may also write a frame to the socket itself
//! when the connection is idle (`Outbox::attach_socket`), so a room's round reaches its members
//! without waking their tasks. Protocol: docs/protocol.md.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use onair_core::event::MemberBrief;
use onair_core::message::{Outgoing, SenderProfile, check_profile_field};
use onair_core::room::ProfilePatch;
use onair_core::{Code, Rejection};
use onair_hub::outbox::Frame;
use onair_proto::views::{MemberView, MuteView};
use onair_proto::{
    JoinRequest, LoginRequest, Moderation, ModerationAction, Request, RequestKind, SendRequest, YouView,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::http::error::to_json;
use crate::http::serve::Watched;
use crate::state::Shared;
use onair_core::admission::Platform;
use onair_hub::callbacks::Origin;
use onair_hub::outbox::{CloseReason, FrameClass, Outbox, Unsent, text_header};
use onair_hub::sessions::Session;
use onair_hub::{MemberChange, Reply, Room, SendCtx};
use onair_shell::now_secs;

/// Largest inbound WebSocket message accepted at the transport level; frames
/// between 16 KiB and this get a 93000 reply, larger ones close the connection (1009).
const MAX_WS_MESSAGE: usize = 64 * 1024;

/// The socket of one connection. Upgraded by hand rather than with axum's
/// `WebSocketUpgrade` so that frames are tungstenite's own `Utf8Bytes`: the hub's
/// outboxes hold that type, and a round's one encoded frame reaches every socket as a
/// refcount, never re-validated or copied per connection (see [`write_text_frames`]).
type Socket = WebSocketStream<LazyRead<Watched>>;

/// tungstenite's own read buffer, kept tiny: [`LazyRead`] below it does the real
/// buffering, and only while a frame is half read.
const TUNGSTENITE_READ_BUFFER: usize = 128;

/// Bytes read from the socket per read call when tungstenite asks for less (one
/// stack buffer per call, never held by an idle connection).
const READ_CHUNK: usize = 4096;

/// Frames per vectored write (two slices each: header and payload), well under the
/// kernel's `IOV_MAX` of 1024.
const FRAMES_PER_WRITE: usize = 256;

/// A reader that holds no buffer while the client is quiet. A viewer almost never
/// sends, yet a buffered reader keeps its buffer for the connection's whole life (4 KiB
/// each, half of an idle connection's memory). This one reads into a buffer on the
/// stack and keeps on the heap only the bytes the caller could not take yet (the rest
/// of a frame being read), freed as soon as they are taken.
///
/// It also tells the connection's outbox before each write of the connection's own
/// (tungstenite's pongs, pings and close, and the frames the task took), so that the
/// outbox's direct writes never land inside them ([`Outbox::begin_own_write`]).
struct LazyRead<S> {
    inner: S,
    /// Read but not yet taken: `(bytes, taken so far)`.
    pending: Option<(Box<[u8]>, usize)>,
    outbox: Arc<Outbox>,
}

impl<S> LazyRead<S> {
    /// `read_ahead`: bytes the HTTP layer read past the upgrade request.
    fn new(inner: S, read_ahead: &[u8], outbox: Arc<Outbox>) -> Self {
        let pending = (!read_ahead.is_empty()).then(|| (read_ahead.into(), 0));
        LazyRead { inner, pending, outbox }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LazyRead<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some((bytes, taken)) = &mut this.pending {
            let n = buf.remaining().min(bytes.len() - *taken);
            buf.put_slice(&bytes[*taken..*taken + n]);
            *taken += n;
            if *taken == bytes.len() {
                this.pending = None;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= READ_CHUNK {
            return std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = ReadBuf::new(&mut chunk);
        std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        let n = buf.remaining().min(got.len());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.pending = Some((got[n..].into(), 0));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LazyRead<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.outbox.begin_own_write();
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.outbox.begin_own_write();
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes `frames` as text frames straight to the socket: each frame's header, built
/// here, and its payload — the bytes shared by every member of the room — go out in
/// one vectored write, so nothing is copied per connection and no write buffer stays
/// allocated between rounds. tungstenite's own queue (pongs) is flushed first, so its
/// bytes never interleave with these.
async fn write_text_frames(socket: &mut Socket, frames: &[Unsent]) -> Result<(), WsError> {
    socket.flush().await?;
    let io = socket.get_mut();
    for chunk in frames.chunks(FRAMES_PER_WRITE) {
        let headers: Vec<([u8; 10], usize)> = chunk.iter().map(|f| text_header(f.frame.len())).collect();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunk.len() * 2);
        for (frame, (header, used)) in chunk.iter().zip(&headers) {
            // The first frame may have been begun by a direct write.
            slices.extend(frame.slices(&header[..*used]).into_iter().filter(|s| !s.is_empty()));
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = io.write_vectored(rest).await?;
            if n == 0 {
                return Err(WsError::Io(std::io::ErrorKind::WriteZero.into()));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

/// Whether a comma-separated header (`Connection: keep-alive, Upgrade`) holds `token`.
fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `GET /ws`: the RFC 6455 handshake, then one task per connection.
pub async fn upgrade(
    State(state): State<Shared>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    mut req: axum::extract::Request,
) -> Response {
    let refuse = |status: StatusCode, why: &'static str| (status, why).into_response();
    if req.method() != Method::GET {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "the WebSocket endpoint takes GET\n");
    }
    let headers = req.headers();
    if !header_has(headers, header::CONNECTION, "upgrade") || !header_has(headers, header::UPGRADE, "websocket") {
        return refuse(StatusCode::UPGRADE_REQUIRED, "this is a WebSocket endpoint: send Upgrade: websocket\n");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13\n");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n");
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return refuse(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key\n");
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return refuse(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded\n");
    };
    let Ok(permit) = state.conn_limit.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections").into_response();
    };
    // Tiny read buffer: the 128 KiB default would cost ~2.5 GiB at 20k viewers, who
    // send almost nothing; `LazyRead` buffers only while a frame is half read. Room
    // frames bypass tungstenite's write buffer (`write_text_frames`): it only carries
    // pings, pongs and the close frame.
    let config = WebSocketConfig::default()
        .read_buffer_size(TUNGSTENITE_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    tokio::spawn(async move {
        let _permit = permit;
        let Ok(upgraded) = on_upgrade.await else { return };
        // Every connection is served over a `Watched` TCP socket (`http::serve`).
        let parts = match upgraded.downcast::<TokioIo<Watched>>() {
            Ok(parts) => parts,
            Err(_) => {
                tracing::error!(%peer, "upgraded connection is not a served TCP socket; closing it");
                return;
            }
        };
        let (watched, read_ahead) = (parts.io.into_inner(), parts.read_buf);
        let conn = Conn::new(state, peer.ip());
        conn.outbox.attach_socket(watched.tcp());
        // However the task ends, the outbox lets go of the socket with it.
        let _detach = DetachOnDrop(conn.outbox.clone());
        let io = LazyRead::new(watched, &read_ahead, conn.outbox.clone());
        // A slice of the HTTP layer's whole read buffer: kept, it would cost every
        // idle connection kilobytes.
        drop(read_ahead);
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        conn.run(socket).await;
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Detaches the outbox's socket when dropped: the socket closes once the connection's
/// task and the outbox have both let go of it.
struct DetachOnDrop(Arc<Outbox>);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        self.0.detach();
    }
}

struct Login {
    user_id: String,
    platform: String,
    profile: Arc<Mutex<SenderProfile>>,
    expires_at: u64,
    is_admin: bool,
}

struct Conn {
    state: Shared,
    id: u64,
    client_ip: std::net::IpAddr,
    outbox: Arc<Outbox>,
    login: Option<Login>,
    rooms: Vec<Arc<Room>>,
}

impl Conn {
    fn new(state: Shared, client_ip: std::net::IpAddr) -> Conn {
        let id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let limits = onair_hub::outbox::OutboxLimits {
            frames: state.cfg.chat.outbox_frames,
            bytes: state.cfg.chat.outbox_bytes,
            grace: Duration::from_millis(state.cfg.chat.slow_consumer_grace_ms),
        };
        let outbox = Outbox::with_budget(limits, Some(state.outbox_budget.clone()));
        Conn { state, id, client_ip, outbox, login: None, rooms: Vec::new() }
    }

    async fn run(mut self, mut socket: Socket) {
        metrics::gauge!("onair_ws_connections").increment(1.0);
        let cfg = &self.state.cfg.chat;
        let ping_every = Duration::from_secs(cfg.ping_interval_secs.max(1));
        let idle_limit = Duration::from_secs(cfg.idle_timeout_secs.max(1));
        let write_limit = Duration::from_millis(cfg.slow_consumer_grace_ms.max(1000));
        let shutdown = self.state.shutdown.clone();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut last_heard = tokio::time::Instant::now();
        // Created once: re-creating it every iteration would register and unregister
        // this task with the token's shared waiter list on every frame, a lock that
        // every connection of the server contends on.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let close: Option<CloseReason> = loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => break Some(CloseReason { code: 1001, reason: "server shutting down".into() }),
                _ = self.outbox.ready() => {
                    // Taken per round, not kept: an idle connection holds no vectors.
                    let (mut frames, mut marks) = (Vec::new(), Vec::new());
                    let close = self.outbox.take(&mut frames, &mut marks);
                    if !frames.is_empty() {
                        // The unit the delivery rounds' pacing measures its cost in.
                        self.state.hub.count_socket_write();
                        let mut write = std::pin::pin!(write_text_frames(&mut socket, &frames));
                        // Polled once before a timer is armed: a reader that keeps up takes
                        // the whole write at once, and a timer per write (registered in and
                        // removed from the runtime's wheel) costs more than the write's
                        // own bookkeeping. Only a write that has to wait gets the limit.
                        let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
                        let written = match first {
                            Poll::Ready(done) => Ok(done),
                            Poll::Pending => tokio::time::timeout(write_limit, write).await,
                        };
                        drop(marks);
                        match written {
                            // Every byte is out (tungstenite's queue was flushed first).
                            Ok(Ok(())) => self.outbox.done_writing(),
                            Ok(Err(_)) => break None,
                            Err(_) => {
                                metrics::counter!("onair_ws_write_timeouts_total").increment(1);
                                // Counted once per connection: the outbox counts it when its
                                // policy closed first.
                                if !self.outbox.is_closing() {
                                    metrics::counter!("onair_ws_slow_consumer_disconnects_total").increment(1);
                                }
                                break Some(CloseReason { code: 4008, reason: "slow consumer: write timed out".into() });
                            }
                        }
                    }
                    if close.is_some() {
                        break close;
                    }
                }
                msg = socket.next() => {
                    last_heard = tokio::time::Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            // Boxed: the request path (webhooks, storage) holds big futures,
                            // and inline they would make every idle connection's task as
                            // large as the largest of them.
                            Box::pin(self.handle(text.as_bytes())).await
                        }
                        Some(Ok(Message::Binary(_))) => self.reply_err(&Value::Null, Rejection::new(Code::JsonParse, "binary frames are not supported; send JSON text frames")),
                        Some(Ok(Message::Ping(_))) => {
                            // tungstenite queued the pong; push it out now. Until it is out
                            // whole, the outbox writes nothing directly.
                            if let Ok(Ok(())) = tokio::time::timeout(write_limit, socket.flush()).await {
                                self.outbox.done_writing();
                            }
                        }
                        Some(Ok(Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Ok(Message::Frame(_))) => {}
                        Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                            break Some(CloseReason { code: 1009, reason: format!("message too big (limit {MAX_WS_MESSAGE} bytes)") });
                        }
                        Some(Err(WsError::Utf8(_))) => {
                            break Some(CloseReason { code: 1007, reason: "text frame is not valid UTF-8".into() });
                        }
                        Some(Err(_)) => break None,
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > idle_limit {
                        break Some(CloseReason { code: 4000, reason: "idle timeout".into() });
                    }
                    if let Some(login) = &self.login
                        && now_secs() > login.expires_at
                    {
                        self.outbox.push(FrameClass::Essential, Frame::from(onair_proto::kicked_frame("USERSIG_EXPIRED", "your UserSig expired; log in again")));
                        self.outbox.close(4001, "UserSig expired");
                        continue;
                    }
                    match tokio::time::timeout(write_limit, socket.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => self.outbox.done_writing(),
                        Ok(Err(_)) => break None,
                        Err(_) => break Some(CloseReason { code: 4008, reason: "slow consumer: write timed out".into() }),
                    }
                }
            }
        };
        // From here on only this task writes (the close frame), and nothing after it.
        self.outbox.begin_own_write();
        if let Some(close) = &close {
            let frame = CloseFrame { code: close.code.into(), reason: close.reason.clone().into() };
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(Some(frame)))).await;
        }
        let reason = if close.as_ref().is_some_and(|c| c.code == 4000) { "TimeOut" } else { "LinkClose" };
        self.cleanup(reason);
        metrics::gauge!("onair_ws_connections").decrement(1.0);
    }

    fn cleanup(&mut self, reason: &str) {
        self.leave_all();
        if let Some(login) = self.login.take() {
            self.state.sessions.logout(&login.user_id, &login.platform, self.id);
            self.state_change(&login, "Disconnect", reason, None);
        }
    }

    fn origin(&self) -> Origin {
        let platform = self.login.as_ref().map_or_else(Platform::default, |l| Platform::Client(l.platform.clone()));
        Origin { platform, client_ip: self.client_ip.to_string() }
    }

    /// Leaves one room, telling the backend when a logged-in member left. Nothing is
    /// reported when the connection was no longer a member (a kick or ban took it out
    /// and reported that) or the room was destroyed (the cloud sends no exits for a
    /// dissolved group).
    fn leave_room(&self, room: &Room) {
        let user = self.login.as_ref().map(|l| l.user_id.as_str());
        let was_member = room.leave(self.id, user);
        if let Some(user) = user
            && was_member
            && !room.is_closed()
        {
            self.state.hub.member_changed(&room.id, user, MemberChange::Quit, &self.origin());
        }
    }

    fn leave_all(&mut self) {
        for room in std::mem::take(&mut self.rooms) {
            self.leave_room(&room);
        }
    }

    /// `State.StateChange` to the backend. The login is passed in, not read from the
    /// connection: on logout and disconnect it has already been taken out, and the
    /// callback must still name the session's platform (`OptPlatform`).
    fn state_change(&self, login: &Login, action: &str, reason: &str, kicked: Option<&str>) {
        let mut body = json!({"Info": {"Action": action, "To_Account": login.user_id, "Reason": reason}});
        if let (Some(platform), Value::Object(map)) = (kicked, &mut body) {
            map.insert("KickedDevice".into(), json!([{ "Platform": platform }]));
        }
        let origin =
            Origin { platform: Platform::Client(login.platform.clone()), client_ip: self.client_ip.to_string() };
        self.state.hub.callbacks().after("State.StateChange", body, origin);
    }

    fn reply(&self, frame: String) {
        self.outbox.push(FrameClass::Essential, Frame::from(frame));
    }

    fn reply_err(&self, id: &Value, rejection: Rejection) {
        self.reply(onair_proto::ack_error(id, &rejection));
    }

    async fn handle(&mut self, frame: &[u8]) {
        let Request { id, kind } = match onair_proto::decode_request(frame) {
            Ok(r) => r,
            Err(e) => return self.reply_err(&e.id, e.rejection),
        };
        let result = match kind {
            RequestKind::Login(req) => self.login(&id, req).await,
            RequestKind::Logout => self.logout(&id),
            RequestKind::Join(req) => self.join(&id, req).await,
            RequestKind::Leave { room_id } => self.leave(&id, &room_id),
            RequestKind::Send(req) => self.send(&id, req).await,
            RequestKind::Ping => {
                let mut extra = serde_json::Map::new();
                extra.insert("time".into(), Value::from(now_secs()));
                self.reply(onair_proto::ack_ok_with(&id, extra));
                Ok(())
            }
            RequestKind::Members { room_id, limit } => self.members(&id, &room_id, limit),
            RequestKind::SetProfile { nick, avatar } => self.set_profile(&id, nick, avatar).await,
            RequestKind::Like { room_id, count } => self.like(&id, &room_id, count),
            RequestKind::Moderate(m) => self.moderate(&id, m).await,
        };
        if let Err(rejection) = result {
            self.reply_err(&id, rejection);
        }
    }

    async fn login(&mut self, id: &Value, req: LoginRequest) -> Result<(), Rejection> {
        if self.login.is_some() {
            return Err(Rejection::new(Code::InvalidParam, "already logged in on this connection; log out first"));
        }
        if req.user_id.is_empty() || req.user_id.len() > 32 {
            return Err(Rejection::new(Code::InvalidParam, "userId must be 1-32 bytes"));
        }
        if req.platform.is_empty() || req.platform.len() > 16 {
            return Err(Rejection::new(Code::InvalidParam, "platform must be 1-16 bytes (e.g. Web, Android, iOS)"));
        }
        let verified = self.state.app.verify(req.sdkappid, &req.user_id, &req.user_sig)?;
        let stored = self.state.store.get_user(&req.user_id).await.map_err(onair_hub::internal)?;
        // A first login creates the account (as the cloud's auto-import does).
        let mut changed = stored.is_none();
        let mut record =
            stored.unwrap_or_else(|| onair_store::UserRecord { user_id: req.user_id.clone(), ..Default::default() });
        if let Some(nick) = req.nick.filter(|n| *n != record.nick) {
            check_profile_field("nick", &nick, 64)?;
            record.nick = nick;
            changed = true;
        }
        if let Some(avatar) = req.avatar.filter(|a| *a != record.avatar) {
            check_profile_field("avatar", &avatar, 500)?;
            record.avatar = avatar;
            changed = true;
        }
        if changed && let Err(e) = self.state.store.upsert_user(&record).await {
            tracing::warn!(error = %e, "profile save failed");
        }
        let profile = Arc::new(Mutex::new(SenderProfile::from(&record)));
        let session = Session { conn_id: self.id, outbox: self.outbox.clone(), profile: profile.clone() };
        let replaced = self.state.sessions.login(&req.user_id, &req.platform, session);
        let kicked_platform = replaced.as_ref().map(|_| req.platform.clone());
        if let Some(old) = replaced {
            let message = format!("logged in again on another {} client", req.platform);
            old.outbox.push(
                FrameClass::Essential,
                Frame::from(onair_proto::kicked_frame("KICKED_OUT_MULT_DEVICE", &message)),
            );
            old.outbox.close(4001, "kicked: logged in elsewhere on the same platform");
        }
        if changed {
            let current = profile.lock().clone();
            self.state.sessions.update_profile(&req.user_id, &current);
        }
        // Levels come from stored activity: have it in memory before the first send.
        if let Err(r) = self.state.hub.load_activity(&req.user_id).await {
            tracing::warn!(user = %req.user_id, error = %r, "activity not loaded; level shows 1 until it is");
        }
        let is_admin = self.state.app.admins.contains(&req.user_id);
        self.login = Some(Login {
            user_id: req.user_id.clone(),
            platform: req.platform,
            profile,
            expires_at: verified.expires_at(),
            is_admin,
        });
        if let Some(login) = &self.login {
            self.state_change(login, "Login", "Register", kicked_platform.as_deref());
        }
        let mut extra = serde_json::Map::new();
        extra.insert("userId".into(), Value::from(req.user_id));
        extra.insert("expireAt".into(), Value::from(verified.expires_at()));
        extra.insert("admin".into(), Value::from(is_admin));
        self.reply(onair_proto::ack_ok_with(id, extra));
        Ok(())
    }

    fn logout(&mut self, id: &Value) -> Result<(), Rejection> {
        if self.login.is_none() {
            return Err(Rejection::new(Code::NotLoggedIn, "not logged in"));
        }
        self.leave_all();
        let Some(login) = self.login.take() else { return Ok(()) };
        self.state.sessions.logout(&login.user_id, &login.platform, self.id);
        self.state_change(&login, "Logout", "Unregister", None);
        self.reply(onair_proto::ack_ok(id));
        Ok(())
    }

    fn single_room(&self) -> bool {
        self.state.cfg.chat.web_single_room && self.login.as_ref().is_none_or(|l| l.platform == "Web")
    }

    async fn join(&mut self, id: &Value, req: JoinRequest) -> Result<(), Rejection> {
        // `find`: in a cluster the room may have been created on another node a
        // moment ago (its announcement not here yet); the store knows.
        let room = self.state.hub.find(&req.room_id).await?;
        let rejoin = self.rooms.iter().any(|r| r.id == room.id);
        if let Some(login) = &self.login
            && !rejoin
            && self.state.hub.callbacks().enabled()
            && !self.state.hub.callbacks().before_join(&room.id, &login.user_id, &self.origin()).await
        {
            return Err(Rejection::new(Code::CallbackRejected, "joining was refused by the app backend"));
        }
        // Re-joining the same room refreshes the snapshot; on Web, joining B leaves A.
        let single = self.single_room();
        let user_id = self.login.as_ref().map(|l| l.user_id.clone());
        for r in std::mem::take(&mut self.rooms) {
            if r.id == room.id {
                r.leave(self.id, user_id.as_deref());
            } else if single {
                self.leave_room(&r);
            } else {
                self.rooms.push(r);
            }
        }
        let member = self.login.as_ref().map(|l| {
            let p = l.profile.lock();
            let level = p.level.max(self.state.hub.level_of(&p.user_id));
            MemberBrief { user_id: p.user_id.clone(), nick: p.nick.clone(), avatar: p.avatar.clone(), level }
        });
        let role = match &self.login {
            None => "Anonymous",
            Some(l) if room.is_owner(&l.user_id) => "Owner",
            Some(l) if room.role_of(&l.user_id, l.is_admin).manages() => "Admin",
            Some(_) => "Member",
        };
        let muted_until = user_id.as_deref().map_or(0, |u| room.muted_until(u));
        let you = YouView { muted_until, role };
        room.join(self.id, &self.outbox, member, req.last_seq, |view, snap| {
            onair_proto::encode_join_ack(id, view, &snap.history, &you, snap.resume)
        })
        .await?;
        if let Some(user) = &user_id
            && !rejoin
        {
            self.state.hub.member_changed(&room.id, user, MemberChange::Joined, &self.origin());
        }
        self.rooms.push(room);
        Ok(())
    }

    fn leave(&mut self, id: &Value, room_id: &str) -> Result<(), Rejection> {
        let Some(i) = self.rooms.iter().position(|r| r.id == room_id) else {
            self.state.hub.get(room_id)?;
            return Err(Rejection::new(Code::NoPermission, format!("not in room '{room_id}'")));
        };
        let room = self.rooms.swap_remove(i);
        self.leave_room(&room);
        self.reply(onair_proto::ack_ok(id));
        Ok(())
    }

    async fn send(&mut self, id: &Value, req: SendRequest) -> Result<(), Rejection> {
        let Some(login) = &self.login else {
            return Err(Rejection::new(Code::NotLoggedIn, "log in to send; anonymous viewers are read-only"));
        };
        let Some(room) = self.rooms.iter().find(|r| r.id == req.room_id).cloned() else {
            self.state.hub.get(&req.room_id)?;
            return Err(Rejection::new(
                Code::NoPermission,
                format!("join room '{}' before sending to it", req.room_id),
            ));
        };
        let msg = Outgoing {
            sender: login.profile.lock().clone(),
            priority: req.priority,
            // Omitted: a server-made random, as `/v4 send_group_msg` does, so the
            // message is de-duplicated against nothing rather than against the
            // sender's first message (protocol.md, `send`).
            random: req.random.unwrap_or_else(|| onair_shell::seed() as u32),
            body: req.body,
            cloud_custom_data: req.cloud_custom_data,
        };
        let ctx = SendCtx {
            operator: login.user_id.clone(),
            origin: self.origin(),
            privileged: room.role_of(&login.user_id, login.is_admin).manages(),
            forbid_before: false,
            forbid_after: false,
            system: false,
        };
        let reply = Reply::Ws { conn: self.id, outbox: self.outbox.clone(), id: id.clone() };
        self.state.hub.send(&room, reply, msg, ctx).await
    }

    /// Likes from a member of the room (anonymous viewers too, capped per connection).
    fn like(&self, id: &Value, room_id: &str, count: u64) -> Result<(), Rejection> {
        if !self.rooms.iter().any(|r| r.id == room_id) {
            self.state.hub.get(room_id)?;
            return Err(Rejection::new(Code::NoPermission, format!("join room '{room_id}' before liking it")));
        }
        let user = self.login.as_ref().map(|l| l.user_id.as_str());
        let anonymous = format!("conn:{}", self.id);
        let (accepted, total) = self.state.hub.like(room_id, user.unwrap_or(&anonymous), user, count)?;
        let mut extra = serde_json::Map::new();
        extra.insert("accepted".into(), Value::from(accepted));
        extra.insert("total".into(), Value::from(total));
        self.reply(onair_proto::ack_ok_with(id, extra));
        Ok(())
    }

    fn members(&self, id: &Value, room_id: &str, limit: Option<usize>) -> Result<(), Rejection> {
        let room = self.state.hub.get(room_id)?;
        let members: Vec<Value> = room
            .recent_members(limit.unwrap_or(self.state.cfg.chat.member_list_size))
            .iter()
            .map(|m| to_json(&MemberView::of(m)))
            .collect();
        let mut extra = serde_json::Map::new();
        extra.insert("online".into(), Value::from(room.online()));
        extra.insert("members".into(), Value::from(members));
        self.reply(onair_proto::ack_ok_with(id, extra));
        Ok(())
    }

    async fn set_profile(&mut self, id: &Value, nick: Option<String>, avatar: Option<String>) -> Result<(), Rejection> {
        let Some(login) = &self.login else {
            return Err(Rejection::new(Code::NotLoggedIn, "log in to set a profile"));
        };
        let mut p = login.profile.lock().clone();
        if let Some(n) = nick {
            check_profile_field("nick", &n, 64)?;
            p.nick = n;
        }
        if let Some(a) = avatar {
            check_profile_field("avatar", &a, 500)?;
            p.avatar = a;
        }
        let record = onair_store::UserRecord {
            user_id: p.user_id.clone(),
            nick: p.nick.clone(),
            avatar: p.avatar.clone(),
            level: p.level,
        };
        self.state.store.upsert_user(&record).await.map_err(onair_hub::internal)?;
        self.state.sessions.update_profile(&p.user_id, &p);
        self.reply(onair_proto::ack_ok(id));
        Ok(())
    }
}

impl Conn {
    /// Moderation from the WebSocket: the owner, room admins and app admins, each
    /// only over users of a lower role (app admin > owner > room admin > member).
    async fn moderate(&mut self, id: &Value, m: Moderation) -> Result<(), Rejection> {
        let Some(login) = &self.login else {
            return Err(Rejection::new(Code::NotLoggedIn, "log in to moderate"));
        };
        let operator = login.user_id.clone();
        let hub = self.state.hub.clone();
        let room = hub.get(&m.room_id)?;
        let role = |user: &str| room.role_of(user, self.state.app.admins.contains(user));
        let mine = role(&operator);
        if !mine.manages() {
            return Err(Rejection::new(Code::NoPermission, "only the owner, room admins and app admins may moderate"));
        }
        let outranks = |users: &[String]| match users.iter().find(|u| !mine.outranks(role(u))) {
            Some(u) => Err(Rejection::new(Code::NoPermission, format!("cannot moderate '{u}': same or higher role"))),
            None => Ok(()),
        };
        let mut extra = serde_json::Map::new();
        match m.action {
            ModerationAction::Bans { offset, limit } => {
                let (page, next) = hub.bans(&room.id, offset, limit)?;
                let list: Vec<Value> = page.iter().map(|b| to_json(&b.view())).collect();
                extra.insert("bans".into(), Value::from(list));
                extra.insert("nextOffset".into(), Value::from(next));
            }
            ModerationAction::Mutes => {
                let list: Vec<Value> = hub.muted(&room.id)?.iter().map(|m| to_json(&MuteView::of(m))).collect();
                extra.insert("muted".into(), Value::from(list));
            }
            ModerationAction::Words { action, words } => {
                let list = if words.is_empty() { None } else { Some((onair_hub::parse_action(&action)?, words)) };
                let count = hub.set_room_filter(&room.id, list).await?;
                extra.insert("count".into(), Value::from(count));
            }
            ModerationAction::Mute { user_ids, seconds } => {
                outranks(&user_ids)?;
                hub.mute(&room.id, &user_ids, seconds).await?;
            }
            ModerationAction::Ban { user_ids, seconds, reason } => {
                outranks(&user_ids)?;
                hub.ban(&room.id, &user_ids, seconds, &reason, &operator, &self.origin()).await?;
            }
            ModerationAction::Unban { user_ids } => hub.unban(&room.id, &user_ids).await?,
            ModerationAction::Kick { user_ids, reason } => {
                outranks(&user_ids)?;
                hub.kick(&room.id, &user_ids, &reason, &operator, &self.origin()).await?;
            }
            ModerationAction::Recall { seq } => hub.recall(&room.id, seq, &operator).await?,
            ModerationAction::SlowMode { seconds } => hub.set_slow_mode(&room.id, seconds)?,
            ModerationAction::MuteAll { on } => {
                let patch = ProfilePatch { mute_all: Some(on), ..Default::default() };
                hub.modify_by(&room.id, patch, &operator, &self.origin()).await?;
            }
        }
        self.reply(onair_proto::ack_ok_with(id, extra));
        Ok(())
    }
}
