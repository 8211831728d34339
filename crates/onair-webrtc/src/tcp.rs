//! Passive ICE-TCP (RFC 6544) beside the UDP port, for clients whose networks block
//! UDP: one TCP listener; every answer carries a `tcptype passive` host candidate per
//! announced address, which ICE ranks below UDP (str0m's type preference 90 vs 126),
//! so a client only ends up here when UDP fails.
//!
//! A connection is accepted within the connection bounds (total, per client IP), then
//! must send, within [`FIRST_FRAME_TIMEOUT`], a first frame that is a STUN request
//! naming a live session by our ICE ufrag (as the UDP receive task finds a new
//! address's session); anything else closes it. From then on the connection belongs to
//! that session: its frames ([`crate::framing`], RFC 4571) go to the session's shard
//! as `Receive { proto: Protocol::Tcp, .. }` exactly like UDP datagrams, and what str0m
//! transmits with `Protocol::Tcp` to the connection's remote address goes to its
//! writer task.
//!
//! Bounds: each writer has a queue bounded in bytes (`Limits::tcp_queue_bytes`); when
//! full, whole packets are dropped and counted, which is what RTP expects of a full
//! UDP buffer (NACK/RTX and keyframe requests recover); the one write in progress
//! holds at most that much again. A write that does not complete within
//! [`WRITE_STALL`] (a peer that stopped reading) and a bound connection silent for
//! `Limits::idle_timeout` are closed. Closing a session closes its connections; a
//! connection that drops leaves its session to ICE consent and the idle timeout, as a
//! UDP path that goes quiet does.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::Limits;
use crate::engine::{Datagram, Routes, SessionId, shard_of};
use crate::framing::{self, Deframer, FrameError, MAX_FRAME};

/// A new connection's first frame (a STUN binding request) must arrive within this.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A write (at most a queue's worth) that does not complete within this (the peer
/// stopped reading) closes the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// ICE-TCP numbers for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections open now (bound to a session or still waiting for their first frame).
    pub connections: usize,
    /// Connections bound to a session now.
    pub bound: usize,
    /// Connections refused by the total or per-IP bound, since start.
    pub refused: u64,
    /// Packets dropped because a writer's queue was full, since start.
    pub dropped_packets: u64,
}

/// One bound connection as the shards see it.
struct Conn {
    session: SessionId,
    queue: Mutex<Queue>,
    /// Wakes the writer task (a permit is kept when it is busy: no lost wake-ups).
    wake: Notify,
    /// `true` ends both of the connection's tasks.
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct Queue {
    /// Framed packets (length prefix included).
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The ICE-TCP side of an engine: its candidates, its bound connections by remote
/// address, and the bookkeeping the bounds need.
pub(crate) struct TcpSide {
    /// The TCP host candidates announced in every answer.
    candidates: Vec<SocketAddr>,
    local: SocketAddr,
    limits: Limits,
    conns: RwLock<HashMap<SocketAddr, Arc<Conn>>>,
    counts: Mutex<Counts>,
    refused: AtomicU64,
    dropped: AtomicU64,
}

impl TcpSide {
    /// Binds the listener on `bind`; candidates are `ips` with the bound port.
    pub(crate) async fn bind(
        bind: SocketAddr,
        ips: &[IpAddr],
        limits: Limits,
    ) -> std::io::Result<(Arc<TcpSide>, TcpListener)> {
        let listener = TcpListener::bind(bind).await?;
        let local = listener.local_addr()?;
        let candidates = ips.iter().map(|ip| SocketAddr::new(*ip, local.port())).collect();
        let side = TcpSide {
            candidates,
            local,
            limits,
            conns: RwLock::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            refused: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        Ok((Arc::new(side), listener))
    }

    /// The TCP host candidates.
    pub(crate) fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// The bound listener address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The local address a frame from `src` came in on, as the session's ICE agent
    /// knows it: the announced candidate of the same family (see the UDP twin in
    /// `engine.rs`).
    pub(crate) fn destination(&self, src: SocketAddr) -> SocketAddr {
        self.candidates.iter().find(|c| c.is_ipv4() == src.is_ipv4()).copied().unwrap_or(self.local)
    }

    /// Queues `packet` to the connection from `dst` (a str0m `Transmit` with
    /// `Protocol::Tcp`). No connection (it dropped): the packet is lost, as on UDP.
    pub(crate) fn send(&self, dst: SocketAddr, packet: &[u8]) {
        let Some(conn) = self.conns.read().get(&dst).cloned() else { return };
        let mut framed = Vec::with_capacity(packet.len() + 2);
        if framing::encode_into(&mut framed, packet).is_err() {
            return;
        }
        {
            let mut q = conn.queue.lock();
            if q.bytes + framed.len() > self.limits.tcp_queue_bytes {
                drop(q);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.bytes += framed.len();
            q.frames.push_back(framed);
        }
        conn.wake.notify_one();
    }

    /// Closes the connections of session `id` among `addrs` (the session's remote
    /// addresses; a UDP one that happens to match is not bound to `id`).
    pub(crate) fn close_session(&self, id: SessionId, addrs: &[SocketAddr]) {
        let conns = self.conns.read();
        for a in addrs {
            if let Some(c) = conns.get(a)
                && c.session == id
            {
                c.closed.send_replace(true);
            }
        }
    }

    /// Current numbers.
    pub(crate) fn stats(&self) -> TcpStats {
        TcpStats {
            connections: self.counts.lock().total,
            bound: self.conns.read().len(),
            refused: self.refused.load(Ordering::Relaxed),
            dropped_packets: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Counts a new connection from `ip` in, or refuses it at a bound.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut c = self.counts.lock();
        let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if c.total >= self.limits.max_tcp_connections || from_ip >= self.limits.max_tcp_connections_per_ip {
            drop(c);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        c.total += 1;
        *c.per_ip.entry(ip).or_default() += 1;
        Some(Slot { side: self.clone(), ip })
    }
}

/// A connection's place in the bounds, given back when its task ends.
struct Slot {
    side: Arc<TcpSide>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.side.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// What a connection task needs of the engine: where sessions are found and the
/// shards' inbound queues.
#[derive(Clone)]
pub(crate) struct Inbound {
    pub(crate) routes: Arc<Mutex<Routes>>,
    pub(crate) shards: Vec<mpsc::Sender<Datagram>>,
}

/// The accept loop; ends with the engine (when the shards have).
pub(crate) async fn listen(side: Arc<TcpSide>, listener: TcpListener, inbound: Inbound) {
    let Some(first) = inbound.shards.first().cloned() else { return };
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::debug!(error = %e, "webrtc tcp accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = first.closed() => return,
        };
        let Some(slot) = side.admit(peer.ip()) else {
            tracing::debug!(%peer, "webrtc tcp connection refused: too many");
            continue;
        };
        tokio::spawn(serve(side.clone(), stream, peer, inbound.clone(), slot));
    }
}

/// Reads frames into `de` until one is complete; `Ok(None)` at end of stream.
async fn read_frame(rd: &mut OwnedReadHalf, de: &mut Deframer, buf: &mut [u8]) -> Result<Option<Vec<u8>>, ReadEnd> {
    loop {
        if let Some(f) = de.next_frame()? {
            return Ok(Some(f));
        }
        let n = rd.read(buf).await?;
        if n == 0 {
            return Ok(None);
        }
        de.push(buf.get(..n).unwrap_or_default());
    }
}

/// Why a connection's reading stopped with an error.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One connection: the first frame binds it to a session, then its frames go to that
/// session's shard until it ends or the session closes it.
async fn serve(side: Arc<TcpSide>, stream: TcpStream, peer: SocketAddr, inbound: Inbound, _slot: Slot) {
    // Media is paced by its sender: Nagle would only add delay.
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let mut de = Deframer::new(MAX_FRAME);
    let mut buf = vec![0u8; 8192];
    let first = match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read_frame(&mut rd, &mut de, &mut buf)).await {
        Ok(Ok(Some(f))) => f,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "webrtc tcp connection closed before its first frame");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "webrtc tcp connection sent no first frame in time");
            return;
        }
    };
    let Some(ufrag) = crate::demux::stun_local_ufrag(&first).map(str::to_owned) else {
        tracing::debug!(%peer, "webrtc tcp connection's first frame is no STUN request");
        return;
    };
    let session_of = |ufrag: &str| inbound.routes.lock().by_ufrag.get(ufrag).copied();
    let Some(id) = session_of(&ufrag) else {
        tracing::debug!(%peer, "webrtc tcp connection's first frame names no session");
        return;
    };
    let Some(shard) = inbound.shards.get(shard_of(id, inbound.shards.len())) else { return };
    let (closed_tx, mut closed) = watch::channel(false);
    let conn =
        Arc::new(Conn { session: id, queue: Mutex::new(Queue::default()), wake: Notify::new(), closed: closed_tx });
    // Bound before the request is delivered, so its answer finds the connection.
    side.conns.write().insert(peer, conn.clone());
    // A session that closed meanwhile (its ufrag goes before its connections are
    // closed) would never close this one: check again now that it is visible.
    if session_of(&ufrag) != Some(id) {
        conn.closed.send_replace(true);
    }
    let writer = tokio::spawn(write_loop(conn.clone(), wr));
    let deliver = |data: Vec<u8>| {
        // A shard that is behind loses the packet, as a UDP datagram would be lost.
        let _ = shard.try_send(Datagram { id, src: peer, proto: str0m::net::Protocol::Tcp, at: Instant::now(), data });
    };
    deliver(first);
    let idle = side.limits.idle_timeout;
    loop {
        tokio::select! {
            r = tokio::time::timeout(idle, read_frame(&mut rd, &mut de, &mut buf)) => match r {
                Ok(Ok(Some(f))) => deliver(f),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    tracing::debug!(session = %id, %peer, error = %e, "webrtc tcp connection read");
                    break;
                }
                Err(_) => {
                    tracing::debug!(session = %id, %peer, "webrtc tcp connection silent");
                    break;
                }
            },
            _ = closed.wait_for(|c| *c) => break,
        }
    }
    {
        let mut conns = side.conns.write();
        if conns.get(&peer).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            conns.remove(&peer);
        }
    }
    conn.closed.send_replace(true);
    let _ = writer.await;
}

/// A connection's writer: sends what the shards queued, several packets per write.
async fn write_loop(conn: Arc<Conn>, mut wr: OwnedWriteHalf) {
    let mut closed = conn.closed.subscribe();
    let mut out = Vec::new();
    loop {
        out.clear();
        {
            let mut q = conn.queue.lock();
            while let Some(f) = q.frames.pop_front() {
                out.extend_from_slice(&f);
            }
            q.bytes = 0;
        }
        if out.is_empty() {
            tokio::select! {
                () = conn.wake.notified() => continue,
                _ = closed.wait_for(|c| *c) => break,
            }
        }
        let written = tokio::select! {
            r = tokio::time::timeout(WRITE_STALL, wr.write_all(&out)) => r,
            _ = closed.wait_for(|c| *c) => break,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(session = %conn.session, error = %e, "webrtc tcp write");
                break;
            }
            Err(_) => {
                tracing::debug!(session = %conn.session, "webrtc tcp peer stopped reading");
                break;
            }
        }
    }
    // Ends the reader too (a failed writer means a dead connection).
    conn.closed.send_replace(true);
    let _ = wr.shutdown().await;
}
