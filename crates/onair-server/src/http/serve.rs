//! The HTTP listener: our own accept loop over hyper's HTTP/1 connection, so that a
//! connection that never finishes its request, or sits idle, cannot hold a socket
//! (and a file descriptor) for ever.
//!
//! - **Header-read timeout** (`[http] header_read_timeout_secs`): a request head must
//!   arrive whole within it (hyper's `header_read_timeout`; slowloris).
//! - **Idle timeout** (`[http] keepalive_timeout_secs`): a connection that moves no
//!   byte either way for this long is closed. Upgraded WebSockets leave this loop
//!   and keep their own ping/idle policy.
//! - **Per-IP cap** (`[http] max_connections_per_ip`): one address cannot take all
//!   the sockets (a trusted proxy's address is not capped).
//! - **Trusted proxies** (`[http] trusted_proxies`): a request from one names its
//!   client in `X-Forwarded-For`/`X-Real-IP`, and every face sees that client as the
//!   request's `ConnectInfo` (see `forwarded`).
//! - **Limit with a reserve** (`[http] max_open_connections`,
//!   `reserved_connections`): past `max - reserve` open sockets a new connection is
//!   still accepted, but only answers the probes (`/healthz`, `/metrics`) and the
//!   admin API; everything else gets 503 and the socket is closed. Past `max`
//!   connections are closed at once.
//!
//! Refusals are counted in `onair_http_connections_refused_total{reason}`, open
//! sockets in the gauge `onair_http_connections_open`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpConfig;
use crate::http::forwarded::TrustedProxies;

/// The limits the accept loop enforces (from `[http]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Whole request head within this.
    pub header_read: Duration,
    /// No byte either way for this long closes the connection.
    pub idle: Duration,
    /// Open sockets from one address (0 = no cap).
    pub per_ip: usize,
    /// Open sockets in all (beyond, closed at once).
    pub max_open: usize,
    /// Of `max_open`, kept for the probes and the admin API.
    pub reserved: usize,
    /// Kernel send buffer per socket (0 = OS default).
    pub send_buffer: usize,
    /// `TCP_USER_TIMEOUT` (0 = off).
    pub stall_secs: u64,
    /// Reverse proxies whose forwarding headers name the client (not capped per IP).
    pub trusted: Arc<TrustedProxies>,
}

impl Limits {
    /// The limits of `cfg`, with the total clamped under this process's open-file
    /// limit (less room for the database, RTMP and outbound sockets), so the accept
    /// loop refuses before the kernel does.
    pub fn from_config(cfg: &HttpConfig) -> Limits {
        let mut max_open = cfg.max_open_connections;
        if let Some(nofile) = open_file_limit() {
            let usable = nofile.saturating_sub(256).max(64);
            if max_open > usable {
                // Info, not a warning: the default is above most machines' limit, and
                // the clamp is the intended behaviour there.
                tracing::info!(
                    configured = max_open,
                    nofile,
                    used = usable,
                    "[http] max_open_connections is above the open-file limit (ulimit -n); using less"
                );
                max_open = usable;
            }
        }
        Limits {
            header_read: Duration::from_secs(cfg.header_read_timeout_secs.max(1)),
            idle: Duration::from_secs(cfg.keepalive_timeout_secs.max(1)),
            per_ip: cfg.max_connections_per_ip,
            // Checked when the configuration was loaded.
            trusted: Arc::new(TrustedProxies::parse(&cfg.trusted_proxies).unwrap_or_default()),
            max_open,
            reserved: cfg.reserved_connections.min(max_open / 2),
            send_buffer: cfg.socket_send_buffer,
            stall_secs: cfg.stall_timeout_secs,
        }
    }
}

/// The soft `RLIMIT_NOFILE` from `/proc/self/limits` (Linux; `None` elsewhere).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Whether a path still answers on a reserved connection: the probes and the admin
/// API, so an operator can see and act while the server is full.
fn privileged(path: &str) -> bool {
    path == "/healthz" || path == "/metrics" || path.starts_with("/api/v1/admin")
}

/// Open sockets, in all and per address.
#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One accepted socket's place in [`Counts`], given back on drop.
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.open.fetch_sub(1, Ordering::Relaxed);
        let mut map = self.counts.per_ip.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        metrics::gauge!("onair_http_connections_open").decrement(1.0);
    }
}

/// What a new connection may do.
enum Admit {
    Full(Slot),
    Reserve(Slot),
    Refused(&'static str),
}

impl Counts {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Admit {
        let mut map = self.per_ip.lock();
        let mine = map.get(&ip).copied().unwrap_or(0);
        if limits.per_ip > 0 && mine >= limits.per_ip && !limits.trusted.contains(ip) {
            return Admit::Refused("per_ip");
        }
        let open = self.open.load(Ordering::Relaxed);
        if open >= limits.max_open {
            return Admit::Refused("limit");
        }
        *map.entry(ip).or_insert(0) += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        drop(map);
        metrics::gauge!("onair_http_connections_open").increment(1.0);
        let slot = Slot { counts: self.clone(), ip };
        if open >= limits.max_open.saturating_sub(limits.reserved) { Admit::Reserve(slot) } else { Admit::Full(slot) }
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish
/// (up to 5 s).
pub async fn run(listener: TcpListener, router: Router, limits: Limits, shutdown: CancellationToken) {
    let counts = Arc::new(Counts::default());
    let conns = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE/ENFILE and friends: the socket stays in the backlog; wait a
                // little instead of spinning on it.
                metrics::counter!("onair_http_accept_errors_total").increment(1);
                tracing::warn!(error = %e, "accept error");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (slot, reserve) = match counts.admit(peer.ip(), &limits) {
            Admit::Full(slot) => (slot, false),
            Admit::Reserve(slot) => {
                metrics::counter!("onair_http_connections_refused_total", "reason" => "reserve").increment(1);
                (slot, true)
            }
            Admit::Refused(reason) => {
                metrics::counter!("onair_http_connections_refused_total", "reason" => reason).increment(1);
                drop(tcp);
                continue;
            }
        };
        tune(&tcp, &limits);
        let router = router.clone();
        let limits = limits.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move { serve_conn(tcp, slot, peer, router, reserve, &limits, shutdown).await });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), conns.wait()).await;
}

fn tune(tcp: &TcpStream, limits: &Limits) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if limits.stall_secs > 0 {
        let _ = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(Duration::from_secs(limits.stall_secs)));
    }
    // Writes are already batched per flush, so Nagle would only add delay.
    let _ = tcp.set_nodelay(true);
    // A bounded kernel send buffer keeps a stalled viewer's backlog in our outbox,
    // where the slow-consumer policy can see and bound it.
    if limits.send_buffer > 0 {
        let _ = socket2::SockRef::from(tcp).set_send_buffer_size(limits.send_buffer);
    }
}

async fn serve_conn(
    tcp: TcpStream,
    slot: Slot,
    peer: SocketAddr,
    router: Router,
    reserve: bool,
    limits: &Limits,
    shutdown: CancellationToken,
) {
    let epoch = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = Watched { inner: Arc::new(tcp), activity: activity.clone(), epoch, _slot: slot };
    let trusted = limits.trusted.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // Every face reads the client's address from here: behind a trusted proxy it
        // is the one the proxy names.
        let client = SocketAddr::new(trusted.client_of(peer.ip(), req.headers()), peer.port());
        req.extensions_mut().insert(ConnectInfo(client));
        let mut router = router.clone();
        async move {
            if reserve && !privileged(req.uri().path()) {
                let mut response =
                    (StatusCode::SERVICE_UNAVAILABLE, "server at its connection limit; try again later\n")
                        .into_response();
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Ok::<Response, std::convert::Infallible>(response);
            }
            tower_service::Service::call(&mut router, req.map(axum::body::Body::new)).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(Some(limits.header_read)).keep_alive(!reserve);
    let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    tokio::pin!(conn);
    let idle = limits.idle;
    let mut check = tokio::time::interval(idle.min(Duration::from_secs(1)).max(Duration::from_millis(100)));
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                let last = Duration::from_millis(activity.load(Ordering::Relaxed));
                if epoch.elapsed().saturating_sub(last) >= idle {
                    metrics::counter!("onair_http_idle_closed_total").increment(1);
                    return;
                }
            }
        }
    }
}

/// A socket that notes when it last moved a byte (milliseconds since `epoch`), and
/// holds its place in the counts for as long as it lives — also after an upgrade
/// hands it to a WebSocket task.
///
/// The stream is shared (`Arc`) so that a WebSocket connection's outbox can write to
/// it from the room's task (`faces::ws`); all I/O goes through tokio's `&TcpStream`
/// readiness calls, which is what its own `AsyncRead`/`AsyncWrite` do underneath.
pub(crate) struct Watched {
    inner: Arc<TcpStream>,
    activity: Arc<AtomicU64>,
    epoch: Instant,
    _slot: Slot,
}

impl Watched {
    fn touch(&self) {
        self.activity.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The socket, for writers outside the task that owns it (it closes when this
    /// `Watched` and every such holder are gone).
    pub(crate) fn tcp(&self) -> Arc<TcpStream> {
        self.inner.clone()
    }

    /// Retries `op` until it does not find the socket unready; `ready` waits for
    /// readiness (and `op` returning `WouldBlock` clears it, so the wait is real).
    fn io<T>(
        &self,
        cx: &mut Context<'_>,
        ready: impl Fn(&TcpStream, &mut Context<'_>) -> Poll<std::io::Result<()>>,
        mut op: impl FnMut(&TcpStream) -> std::io::Result<T>,
    ) -> Poll<std::io::Result<T>> {
        loop {
            std::task::ready!(ready(&self.inner, cx))?;
            match op(&self.inner) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n =
            std::task::ready!(self.io(cx, TcpStream::poll_read_ready, |tcp| tcp.try_read(buf.initialize_unfilled())))?;
        buf.advance(n);
        if n > 0 {
            self.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = self.io(cx, TcpStream::poll_write_ready, |tcp| tcp.try_write(data));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = self.io(cx, TcpStream::poll_write_ready, |tcp| tcp.try_write_vectored(bufs));
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Writes go straight to the kernel: nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.inner).shutdown(std::net::Shutdown::Write))
    }
}
