//! A connection's bounded outgoing queue and its slow-consumer policy.
//!
//! The room pushes one shared frame (refcounted bytes) into every member's outbox
//! and moves on: it never waits for a socket. The connection task drains the whole
//! queue, writes every frame into the socket buffer and flushes once, so a client
//! that fell a little behind catches up with one syscall.
//!
//! When the queue is full the client is behind: the oldest frame of the lowest
//! class is dropped first (presence refreshes, then Lowest … High chat), essential
//! frames (replies, profile/state events) are never dropped; a client that stays
//! full for the grace period, or overflows even the essential budget, is closed
//! with the reason "slow consumer".
//!
//! Frames are bounded in bytes too (a few big frames weigh as much as thousands of
//! small ones): a queue over its byte cap counts as full. Every outbox of the process
//! also draws on one [`OutboxBudget`]; when the queued bytes of all connections pass
//! it, the slowest readers (the queues not taken for the longest, then the biggest)
//! are closed with 4008 until the total is back under 90 % of the budget. Rooms never wait and
//! are never cut: only the clients that cannot keep up.
//!
//! Accounting counts each queued copy at its full length, although the bytes of a
//! room frame are shared: that over-counts, so the budget is a safe upper bound.
//!
//! **Direct writes.** When a connection has attached its socket ([`Outbox::attach_socket`]),
//! nothing is queued and the connection is not writing, a push writes the frame to
//! the socket itself, without waiting (the socket is non-blocking), and queues only
//! what the socket did not take. A room's round then writes its members one after
//! another in one tight loop instead of waking a task per member: on loopback each
//! wake-up of a task, and each write that finds its reader asleep, costs more than the
//! write. The connection marks its own writes ([`Outbox::begin_own_write`] …
//! [`Outbox::done_writing`]), so bytes from the two writers never interleave: a
//! direct write happens only under the queue's lock, only while the connection's
//! writer is idle, and only at a frame boundary.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A WebSocket text frame: refcounted bytes known to be UTF-8, cloned (not copied) into
/// every member's outbox.
pub type Frame = tungstenite::Utf8Bytes;
use nix::sys::socket::{MsgFlags, SockaddrStorage, sendmsg};
use onair_core::message::Priority;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Essential frames (mostly send acks of ~80 bytes) a full queue still takes before
/// the client is closed: a fast sender that reads normally gets many acks per tick,
/// and they must not count as falling behind.
const ESSENTIAL_HEADROOM: usize = 1024;

/// How expendable a frame is, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameClass {
    /// Only refreshable numbers (online count, enter/quit); the next one supersedes it.
    Refresh,
    /// Chat whose highest priority is this.
    Chat(Priority),
    /// Replies and state-changing events: never dropped.
    Essential,
}

/// Why the server is closing a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code (4000-4999 are OnAir's).
    pub code: u16,
    /// Text for the close frame.
    pub reason: String,
}

/// Held by every copy of a room's push frame until the connection has written it
/// (or dropped it); the room counts the holders to learn how far its last frame
/// has drained before it makes the next one.
pub type DrainMark = Arc<()>;

struct Entry {
    class: FrameClass,
    frame: Frame,
    /// Bytes of the frame (header and payload) a direct write already sent.
    skip: usize,
    mark: Option<DrainMark>,
}

/// A frame the connection has to write, from byte `skip` of its header and payload
/// on (non-zero only for the first frame, when a direct write sent part of it).
#[derive(Debug, Clone)]
pub struct Unsent {
    /// The frame.
    pub frame: Frame,
    /// Bytes of its header and payload already on the wire.
    pub skip: usize,
}

impl Unsent {
    /// The slices still to write of this frame, given its `header` (from
    /// [`text_header`]).
    pub fn slices<'a>(&'a self, header: &'a [u8]) -> [IoSlice<'a>; 2] {
        let payload = self.frame.as_bytes();
        match self.skip.checked_sub(header.len()) {
            None => [IoSlice::new(&header[self.skip..]), IoSlice::new(payload)],
            Some(into_payload) => [IoSlice::new(&[]), IoSlice::new(&payload[into_payload.min(payload.len())..])],
        }
    }
}

/// The header of an unmasked, final text frame of `len` payload bytes (RFC 6455 §5.2):
/// the bytes and how many of them are used.
pub fn text_header(len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x81; // FIN, opcode 1 (text)
    let used = if len < 126 {
        h[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, used)
}

/// What a direct write got out.
enum Direct {
    /// The whole frame.
    Whole,
    /// This many bytes of its header and payload.
    Part(usize),
}

/// Something other than a socket a push may write directly ([`Outbox::attach`]; a
/// socket is attached with [`Outbox::attach_socket`]).
pub trait DirectSink: Send + Sync {
    /// Writes what the socket takes now, without waiting; returns the bytes written
    /// (`WouldBlock` or any error: nothing was written, the connection's own writer
    /// will find out).
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize>;
}

struct Inner {
    queue: VecDeque<Entry>,
    /// Bytes of the frames in `queue`.
    bytes: usize,
    /// When the oldest frame in `queue` was queued: how long this reader has not
    /// taken anything (a connection stuck writing to a stalled socket stops taking).
    waiting_since: Option<Instant>,
    full_since: Option<Instant>,
    close: Option<CloseReason>,
    dropped: u64,
    /// The connection's own writer is writing (or has stopped for good): no direct
    /// writes until it says it is done.
    writing: bool,
    /// The socket, while the connection has it attached for direct writes. Kept under
    /// the queue's lock: a direct write reads it with the queue's state, and the
    /// connection takes it away ([`Outbox::detach`]) before it is done.
    sink: Option<Sink>,
}

/// Where direct writes go.
enum Sink {
    /// A socket, written with `sendmsg` by its descriptor. The descriptor is kept
    /// here, beside the queue's lock, rather than read through its owner: a turn
    /// writes thousands of sockets in a row, and every other object a write reads is a
    /// cache miss (one cost ~4 % of the server's CPU at 19,500 viewers).
    Socket {
        fd: RawFd,
        /// Keeps `fd` open and naming this socket for as long as the sink is here.
        _owner: Box<dyn Send + Sync>,
    },
    Custom(Box<dyn DirectSink>),
}

/// Direct writes of every outbox in the process (the connections count their own).
static DIRECT_WRITES: AtomicU64 = AtomicU64::new(0);

/// Frames or parts of frames pushes have written straight to sockets, since start.
pub fn direct_writes_total() -> u64 {
    DIRECT_WRITES.load(Ordering::Relaxed)
}

/// The outgoing queue of one connection.
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    /// Bytes queued before the queue counts as full.
    max_bytes: usize,
    grace: Duration,
    /// The process-wide budget this outbox draws on, and its slot there.
    budget: Option<(Arc<OutboxBudget>, u64)>,
}

/// One byte budget shared by every outbox of the process.
pub struct OutboxBudget {
    limit: usize,
    used: AtomicUsize,
    next_id: AtomicU64,
    members: Mutex<std::collections::HashMap<u64, Weak<Outbox>>>,
    /// Only one push at a time looks for victims; the others go on.
    reaping: AtomicBool,
    /// When victims were last looked for (ms since `epoch`): at most every
    /// [`REAP_EVERY`], since a look visits every connection.
    last_reap: AtomicU64,
    epoch: Instant,
    /// See [`MIN_LAG`].
    min_lag: Duration,
    /// `onair_ws_outbox_bytes`, looked up once: it is set on every push and take, and
    /// a lookup by name per frame and connection is a hash and a lock in the recorder.
    gauge: metrics::Gauge,
}

/// A reader that took its queue within this long is keeping up: the budget never
/// cuts it. The budget counts every queued copy of a room frame, but a frame pushed
/// to every member at once is one allocation, so a big room's fresh round alone can
/// pass the budget; only readers that are behind hold memory no one else does.
pub const MIN_LAG: Duration = Duration::from_millis(1000);

/// How often (at most) the budget looks for victims while it is exceeded.
const REAP_EVERY: Duration = Duration::from_millis(100);

impl OutboxBudget {
    /// A budget of `limit` bytes (0 = unlimited: nothing is ever cut for it).
    pub fn new(limit: usize) -> Arc<OutboxBudget> {
        OutboxBudget::with_min_lag(limit, MIN_LAG)
    }

    /// A budget that only cuts readers behind by `min_lag` or more.
    pub fn with_min_lag(limit: usize, min_lag: Duration) -> Arc<OutboxBudget> {
        Arc::new(OutboxBudget {
            min_lag,
            limit,
            used: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            members: Mutex::new(Default::default()),
            reaping: AtomicBool::new(false),
            last_reap: AtomicU64::new(0),
            epoch: Instant::now(),
            gauge: metrics::gauge!("onair_ws_outbox_bytes"),
        })
    }

    /// Bytes queued in all outboxes now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.gauge.set(now as f64);
    }

    fn sub(&self, n: usize) {
        let now = self.used.fetch_sub(n, Ordering::Relaxed).saturating_sub(n);
        self.gauge.set(now as f64);
    }

    fn over(&self) -> bool {
        self.limit > 0 && self.used() > self.limit
    }

    /// Closes the slowest outboxes (not taken for the longest, then the most queued
    /// bytes) until the total is under 90 % of the budget; never one that took its
    /// queue within [`MIN_LAG`]. Called with no outbox lock held (lock order: members,
    /// then one outbox at a time).
    fn reap(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64 + REAP_EVERY.as_millis() as u64;
        let last = self.last_reap.load(Ordering::Relaxed);
        if now_ms < last + REAP_EVERY.as_millis() as u64 {
            return;
        }
        if self.reaping.swap(true, Ordering::Acquire) {
            return;
        }
        self.last_reap.store(now_ms, Ordering::Relaxed);
        let target = self.limit / 10 * 9;
        // Slowest first: the readers that have not taken their queue for the longest
        // (one that keeps up takes it every round; one stuck writing to a stalled
        // socket stops taking), then the biggest queues. Ages are compared in 100 ms
        // steps so that readers equally far behind go by size.
        let now = Instant::now();
        let mut by_slowness: Vec<(Duration, usize, Arc<Outbox>)> = {
            let members = self.members.lock();
            members
                .values()
                .filter_map(Weak::upgrade)
                .map(|o| {
                    let (waiting, bytes) = {
                        let inner = o.inner.lock();
                        (inner.waiting_since.map_or(Duration::ZERO, |t| now.duration_since(t)), inner.bytes)
                    };
                    (waiting, bytes, o)
                })
                .collect()
        };
        by_slowness.sort_by_key(|(waiting, bytes, _)| std::cmp::Reverse((waiting.as_millis() / 100, *bytes)));
        for (waiting, bytes, outbox) in by_slowness {
            if self.used() <= target {
                break;
            }
            if waiting < self.min_lag {
                break; // sorted: the rest keep up too
            }
            let mut inner = outbox.inner.lock();
            // Already closing (its bytes are gone) or empty: cutting it frees nothing.
            if inner.close.is_some() || inner.bytes == 0 {
                continue;
            }
            outbox.close_locked(&mut inner, "slow consumer: server outbox memory budget exceeded");
            drop(inner);
            outbox.notify.notify_one();
            metrics::counter!("onair_ws_budget_disconnects_total").increment(1);
            tracing::info!(
                queued = bytes,
                waiting_ms = waiting.as_millis() as u64,
                total = self.used(),
                budget = self.limit,
                "outbox budget exceeded: closed the slowest reader (4008)"
            );
        }
        self.reaping.store(false, Ordering::Release);
    }
}

/// The bounds of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Frames queued before the slow-consumer policy starts dropping.
    pub frames: usize,
    /// Bytes queued before the same (0 = no byte cap).
    pub bytes: usize,
    /// How long a queue may stay full before the connection is closed.
    pub grace: Duration,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the socket at once (see [`Outbox::attach_socket`]).
    Written,
    /// Queued.
    Queued,
    /// Queued after dropping an older, less important frame; or dropped itself.
    Dropped,
    /// The connection is (now) closing; the frame was discarded.
    Closing,
}

impl Outbox {
    /// An outbox holding up to `capacity` frames before dropping.
    pub fn new(capacity: usize, grace: Duration) -> Self {
        Outbox::build(OutboxLimits { frames: capacity, bytes: 0, grace }, None)
    }

    fn build(limits: OutboxLimits, budget: Option<(Arc<OutboxBudget>, u64)>) -> Self {
        let (capacity, grace) = (limits.frames, limits.grace);
        Outbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                bytes: 0,
                waiting_since: None,
                full_since: None,
                close: None,
                dropped: 0,
                writing: false,
                sink: None,
            }),
            notify: Notify::new(),
            capacity,
            max_bytes: limits.bytes,
            grace,
            budget,
        }
    }

    /// Lets pushes write to this (non-blocking) socket themselves when the queue is
    /// empty and the connection is not writing (see the module's notes), until
    /// [`Outbox::detach`]. The outbox holds `socket` until then, so it stays open.
    pub fn attach_socket<S: AsFd + Send + Sync + 'static>(&self, socket: Arc<S>) {
        let fd = socket.as_fd().as_raw_fd();
        self.inner.lock().sink = Some(Sink::Socket { fd, _owner: Box::new(socket) });
    }

    /// Like [`Outbox::attach_socket`], for a sink that is not a socket.
    pub fn attach(&self, sink: Box<dyn DirectSink>) {
        self.inner.lock().sink = Some(Sink::Custom(sink));
    }

    /// Ends direct writes and gives up the socket: a sink may keep its socket open,
    /// so a connection detaches it when it is done with the socket.
    pub fn detach(&self) {
        let sink = self.inner.lock().sink.take();
        drop(sink); // outside the lock: closing a socket is a system call
    }

    /// The connection is about to write to the socket itself (frames it took,
    /// control frames, the close): direct writes stop until [`Outbox::done_writing`].
    /// Waits for a direct write under way to finish.
    pub fn begin_own_write(&self) {
        self.inner.lock().writing = true;
    }

    /// The connection's writer has written everything it started: direct writes may
    /// go on. Never call it while bytes of a frame are still unwritten.
    pub fn done_writing(&self) {
        self.inner.lock().writing = false;
    }

    /// Writes `frame` straight to the socket when that is allowed now (`None`: it
    /// must be queued whole).
    fn write_direct(&self, inner: &Inner, frame: &Frame) -> Option<Direct> {
        let sink = inner.sink.as_ref()?;
        if inner.writing || inner.close.is_some() || !inner.queue.is_empty() {
            return None;
        }
        let (header, used) = text_header(frame.len());
        let bufs = [IoSlice::new(&header[..used]), IoSlice::new(frame.as_bytes())];
        let written = match sink {
            // Past tokio's readiness bookkeeping: a `WouldBlock` here needs none, the
            // connection's own writer meets it again and waits through tokio as usual.
            Sink::Socket { fd, .. } => {
                let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                sendmsg::<SockaddrStorage>(*fd, &bufs, &[], flags, None).map_err(std::io::Error::from)
            }
            Sink::Custom(sink) => sink.try_write(&bufs),
        };
        if matches!(written, Ok(n) if n > 0) {
            DIRECT_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        match written {
            Ok(n) if n >= used + frame.len() => Some(Direct::Whole),
            Ok(n) if n > 0 => Some(Direct::Part(n)),
            _ => None,
        }
    }

    /// An outbox bounded in frames and bytes, drawing on the process-wide `budget`.
    pub fn with_budget(limits: OutboxLimits, budget: Option<Arc<OutboxBudget>>) -> Arc<Self> {
        let slot = budget.as_ref().map(|b| b.next_id.fetch_add(1, Ordering::Relaxed));
        Arc::new_cyclic(|weak: &Weak<Outbox>| {
            if let (Some(b), Some(id)) = (&budget, slot) {
                b.members.lock().insert(id, weak.clone());
            }
            Outbox::build(limits, budget.zip(slot))
        })
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    fn full(&self, inner: &Inner) -> bool {
        inner.queue.len() >= self.capacity || (self.max_bytes > 0 && inner.bytes >= self.max_bytes)
    }

    fn half_empty(&self, inner: &Inner) -> bool {
        inner.queue.len() < self.capacity / 2 && (self.max_bytes == 0 || inner.bytes < self.max_bytes / 2)
    }

    fn enqueue(&self, inner: &mut Inner, entry: Entry) {
        let n = entry.frame.len();
        inner.bytes += n;
        // Set by the first frame after a take; dropping frames for newer ones keeps it.
        if inner.waiting_since.is_none() {
            inner.waiting_since = Some(Instant::now());
        }
        if let Some((budget, _)) = &self.budget {
            budget.add(n);
        }
        inner.queue.push_back(entry);
    }

    fn dequeue_at(&self, inner: &mut Inner, i: usize) {
        if let Some(e) = inner.queue.remove(i) {
            self.forget(inner, e.frame.len());
        }
    }

    fn forget(&self, inner: &mut Inner, n: usize) {
        inner.bytes = inner.bytes.saturating_sub(n);
        if let Some((budget, _)) = &self.budget {
            budget.sub(n);
        }
    }

    fn clear_locked(&self, inner: &mut Inner) {
        // The rest of a frame a direct write began stays: the close frame must not
        // land in the middle of it.
        inner.queue.retain(|e| e.skip > 0);
        let kept: usize = inner.queue.iter().map(|e| e.frame.len()).sum();
        if inner.queue.is_empty() {
            inner.waiting_since = None;
        }
        let n = std::mem::replace(&mut inner.bytes, kept) - kept;
        if let Some((budget, _)) = &self.budget {
            budget.sub(n);
        }
    }

    /// Queues a frame, applying the slow-consumer policy. Never blocks on I/O.
    pub fn push(&self, class: FrameClass, frame: Frame) -> Pushed {
        self.push_marked(class, frame, None)
    }

    /// Queues a room frame carrying its drain mark.
    pub fn push_marked(&self, class: FrameClass, frame: Frame, mark: Option<DrainMark>) -> Pushed {
        let result = {
            let mut inner = self.inner.lock();
            match self.write_direct(&inner, &frame) {
                Some(Direct::Whole) => return Pushed::Written,
                // The rest goes first, whatever its class: half a frame cannot be dropped.
                Some(Direct::Part(n)) => {
                    self.enqueue(&mut inner, Entry { class: FrameClass::Essential, frame, skip: n, mark });
                    Pushed::Queued
                }
                None => self.push_locked(&mut inner, Entry { class, frame, skip: 0, mark }),
            }
        };
        if result != Pushed::Closing || self.is_closing() {
            self.notify.notify_one();
        }
        if let Some((budget, _)) = &self.budget
            && budget.over()
        {
            budget.reap();
        }
        result
    }

    fn push_locked(&self, inner: &mut Inner, entry: Entry) -> Pushed {
        let class = entry.class;
        if inner.close.is_some() {
            return Pushed::Closing;
        }
        if !self.full(inner) {
            if self.half_empty(inner) {
                inner.full_since = None;
            }
            self.enqueue(inner, entry);
            return Pushed::Queued;
        }
        let now = Instant::now();
        let since = *inner.full_since.get_or_insert(now);
        if now.duration_since(since) >= self.grace {
            return self.close_locked(inner, "slow consumer: fell behind for too long");
        }
        inner.dropped += 1;
        metrics::counter!("onair_ws_frames_dropped_total").increment(1);
        // The oldest frame of the lowest droppable class goes first.
        let victim = inner
            .queue
            .iter()
            .enumerate()
            .filter(|(_, e)| e.class != FrameClass::Essential)
            .min_by_key(|(i, e)| (e.class, *i))
            .map(|(i, e)| (i, e.class));
        match victim {
            Some((i, victim_class)) if victim_class <= class => {
                self.dequeue_at(inner, i);
                self.enqueue(inner, entry);
            }
            _ if class != FrameClass::Essential => {} // the new frame is the least important: drop it
            _ if inner.queue.len() < self.capacity + ESSENTIAL_HEADROOM
                && (self.max_bytes == 0 || inner.bytes < self.max_bytes.saturating_mul(2)) =>
            {
                self.enqueue(inner, entry)
            }
            _ => return self.close_locked(inner, "slow consumer: reply queue overflow"),
        }
        Pushed::Dropped
    }

    fn close_locked(&self, inner: &mut Inner, reason: &str) -> Pushed {
        metrics::counter!("onair_ws_slow_consumer_disconnects_total").increment(1);
        self.clear_locked(inner);
        inner.close = Some(CloseReason { code: 4008, reason: reason.into() });
        Pushed::Closing
    }

    /// Asks the connection to close after writing what is queued.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut inner = self.inner.lock();
            if inner.close.is_none() {
                inner.close = Some(CloseReason { code, reason: reason.into() });
            }
        }
        self.notify.notify_one();
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.inner.lock().close.is_some()
    }

    /// Waits until something is queued or a close is requested.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Takes every queued frame (and the close request, if any). The drain marks go
    /// to `marks`: the caller drops them once the frames are written.
    /// Taking frames starts the connection's own write ([`Outbox::begin_own_write`]):
    /// it calls [`Outbox::done_writing`] once they are written.
    pub fn take(&self, into: &mut Vec<Unsent>, marks: &mut Vec<DrainMark>) -> Option<CloseReason> {
        let mut inner = self.inner.lock();
        let mut n = 0;
        let taken = !inner.queue.is_empty();
        for entry in inner.queue.drain(..) {
            n += entry.frame.len();
            into.push(Unsent { frame: entry.frame, skip: entry.skip });
            marks.extend(entry.mark);
        }
        inner.writing |= taken;
        self.forget(&mut inner, n);
        inner.full_since = None;
        inner.waiting_since = None;
        inner.close.clone()
    }

    /// Frames dropped so far by the slow-consumer policy.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        let n = std::mem::take(&mut inner.bytes);
        if let Some((budget, id)) = &self.budget {
            budget.sub(n);
            budget.members.lock().remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Frame {
        Frame::from(s.to_string())
    }

    #[test]
    fn lowest_class_oldest_is_dropped_first_and_essentials_survive() {
        let ob = Outbox::new(4, Duration::from_secs(60));
        let mark = DrainMark::default();
        ob.push_marked(FrameClass::Refresh, f("marked"), Some(mark.clone()));
        let mut out = vec![];
        let mut marks = vec![];
        ob.take(&mut out, &mut marks);
        assert_eq!(Arc::strong_count(&mark), 2, "held until the writer drops it");
        drop(marks);
        assert_eq!(Arc::strong_count(&mark), 1);
        ob.push(FrameClass::Chat(Priority::Normal), f("n1"));
        ob.push(FrameClass::Refresh, f("r1"));
        ob.push(FrameClass::Essential, f("e1"));
        ob.push(FrameClass::Chat(Priority::Low), f("l1"));
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("h1")), Pushed::Dropped);
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("h2")), Pushed::Dropped);
        assert_eq!(ob.push(FrameClass::Refresh, f("r2")), Pushed::Dropped, "least important: itself dropped");
        out.clear();
        assert!(ob.take(&mut out, &mut vec![]).is_none());
        let got: Vec<&str> = out.iter().map(|b| b.frame.as_str()).collect();
        assert_eq!(got, vec!["n1", "e1", "h1", "h2"]);
        assert_eq!(ob.dropped(), 3);
    }

    /// A socket that takes `room` more bytes, then would block; records what it took.
    struct FakeSocket {
        room: Mutex<usize>,
        wire: Arc<Mutex<Vec<u8>>>,
    }

    impl DirectSink for FakeSocket {
        fn try_write(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut room = self.room.lock();
            if *room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let mut wire = self.wire.lock();
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(*room);
                wire.extend_from_slice(&b[..take]);
                *room -= take;
                n += take;
            }
            Ok(n)
        }
    }

    /// An outbox attached to a socket that takes `room` bytes in all.
    fn attached(room: usize) -> (Arc<Outbox>, Arc<Mutex<Vec<u8>>>) {
        attached_with(room, Outbox::new(100, Duration::from_secs(60)))
    }

    fn attached_with(room: usize, outbox: Outbox) -> (Arc<Outbox>, Arc<Mutex<Vec<u8>>>) {
        let ob = Arc::new(outbox);
        let wire = Arc::new(Mutex::new(Vec::new()));
        ob.attach(Box::new(FakeSocket { room: Mutex::new(room), wire: wire.clone() }));
        (ob, wire)
    }

    /// The bytes the connection's own writer sends for `out`.
    fn written(out: &[Unsent]) -> Vec<u8> {
        let mut wire = Vec::new();
        for u in out {
            let (h, used) = text_header(u.frame.len());
            for s in u.slices(&h[..used]) {
                wire.extend_from_slice(&s);
            }
        }
        wire
    }

    fn framed(s: &str) -> Vec<u8> {
        let (h, used) = text_header(s.len());
        [&h[..used], s.as_bytes()].concat()
    }

    #[test]
    fn a_socket_is_written_by_its_descriptor_until_detached() {
        use std::io::{Read, Write};
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let ours = Arc::new(ours);
        let ob = Arc::new(Outbox::new(100, Duration::from_secs(60)));
        ob.attach_socket(ours.clone());
        assert_eq!(Arc::strong_count(&ours), 2, "the outbox keeps the socket open");
        let before = direct_writes_total();
        assert_eq!(ob.push(FrameClass::Essential, f("hello")), Pushed::Written);
        assert!(direct_writes_total() > before);
        let mut got = vec![0u8; framed("hello").len()];
        theirs.read_exact(&mut got).expect("read");
        assert_eq!(got, framed("hello"));
        // A full socket takes nothing: the frame is queued whole for the connection.
        let chunk = [0u8; 4096];
        for size in [chunk.len(), 1] {
            while (&*ours).write(&chunk[..size]).is_ok() {}
        }
        assert_eq!(ob.push(FrameClass::Essential, f("full")), Pushed::Queued);
        let mut out = vec![];
        ob.take(&mut out, &mut vec![]);
        assert_eq!((out.len(), out[0].skip), (1, 0));
        ob.done_writing();
        ob.detach();
        assert_eq!(Arc::strong_count(&ours), 1, "detached: the socket is the connection's alone");
        assert_eq!(ob.push(FrameClass::Essential, f("later")), Pushed::Queued);
    }

    #[test]
    fn an_idle_connection_is_written_directly_and_keeps_no_queue() {
        let (ob, wire) = attached(1 << 20);
        let mark = DrainMark::default();
        assert_eq!(ob.push_marked(FrameClass::Chat(Priority::Normal), f("hello"), Some(mark.clone())), Pushed::Written);
        assert_eq!(Arc::strong_count(&mark), 1, "written: drained at once");
        assert_eq!(ob.queued_bytes(), 0);
        assert_eq!(*wire.lock(), framed("hello"));
    }

    #[test]
    fn nothing_is_written_directly_while_the_connection_writes() {
        let (ob, wire) = attached(1 << 20);
        ob.begin_own_write();
        assert_eq!(ob.push(FrameClass::Essential, f("a")), Pushed::Queued);
        ob.done_writing();
        // Something is queued: the next frame queues behind it, in order.
        assert_eq!(ob.push(FrameClass::Essential, f("b")), Pushed::Queued);
        let mut out = vec![];
        ob.take(&mut out, &mut vec![]);
        // Taking starts the connection's own write: still no direct writes.
        assert_eq!(ob.push(FrameClass::Essential, f("c")), Pushed::Queued);
        assert!(wire.lock().is_empty());
        ob.done_writing();
        ob.take(&mut out, &mut vec![]);
        ob.done_writing();
        assert_eq!(ob.push(FrameClass::Essential, f("d")), Pushed::Written);
        let mut all = written(&out);
        all.extend_from_slice(&wire.lock());
        assert_eq!(all, [framed("a"), framed("b"), framed("c"), framed("d")].concat());
    }

    #[test]
    fn the_rest_of_a_partly_written_frame_goes_first_and_survives_a_close() {
        let text = "x".repeat(300);
        // The socket takes the 4-byte header and 6 bytes of payload.
        let (ob, wire) = attached(10);
        assert_eq!(ob.push(FrameClass::Refresh, f(&text)), Pushed::Queued);
        assert_eq!(wire.lock().len(), 10);
        assert_eq!(ob.push(FrameClass::Chat(Priority::Low), f("next")), Pushed::Queued);
        // A requested close writes what is queued first: the rest, then the next frame.
        ob.close(1000, "bye");
        let mut out = vec![];
        assert!(ob.take(&mut out, &mut vec![]).is_some());
        let mut all = wire.lock().clone();
        all.extend_from_slice(&written(&out));
        assert_eq!(all, [framed(&text), framed("next")].concat(), "the wire holds each frame whole, once");
        // A slow consumer's close drops what is queued, except the rest of the begun frame.
        let (ob, wire) = attached_with(10, Outbox::new(2, Duration::ZERO));
        assert_eq!(ob.push(FrameClass::Refresh, f(&text)), Pushed::Queued);
        assert_eq!(ob.push(FrameClass::Essential, f("a")), Pushed::Queued);
        assert_eq!(ob.push(FrameClass::Essential, f("b")), Pushed::Closing, "full, no grace");
        let mut out = vec![];
        assert_eq!(ob.take(&mut out, &mut vec![]).map(|c| c.code), Some(4008));
        assert_eq!(out.len(), 1);
        assert_eq!(ob.queued_bytes(), 0);
        let mut all = wire.lock().clone();
        all.extend_from_slice(&written(&out));
        assert_eq!(all, framed(&text), "the begun frame is finished before the close");
        // A socket with no room at all: queued whole.
        let (ob, wire) = attached(0);
        assert_eq!(ob.push(FrameClass::Essential, f("q")), Pushed::Queued);
        assert!(wire.lock().is_empty());
    }

    #[test]
    fn a_frame_cut_inside_its_header_is_finished_from_there() {
        let text = "y".repeat(200);
        let (ob, wire) = attached(1);
        ob.push(FrameClass::Essential, f(&text));
        let mut out = vec![];
        ob.take(&mut out, &mut vec![]);
        assert_eq!(out[0].skip, 1);
        let mut all = wire.lock().clone();
        all.extend_from_slice(&written(&out));
        assert_eq!(all, framed(&text));
    }

    #[test]
    fn staying_full_past_the_grace_closes() {
        let ob = Outbox::new(2, Duration::from_millis(0));
        ob.push(FrameClass::Essential, f("a"));
        ob.push(FrameClass::Essential, f("b"));
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("c")), Pushed::Closing);
        let mut out = vec![];
        let reason = ob.take(&mut out, &mut vec![]).expect("closing");
        assert_eq!(reason.code, 4008);
        assert!(out.is_empty());
        assert_eq!(ob.push(FrameClass::Essential, f("d")), Pushed::Closing);
    }

    #[test]
    fn a_queue_over_its_byte_cap_counts_as_full() {
        let limits = OutboxLimits { frames: 1000, bytes: 1000, grace: Duration::from_secs(0) };
        let ob = Outbox::with_budget(limits, None);
        let big = "x".repeat(600);
        assert_eq!(ob.push(FrameClass::Chat(Priority::Normal), f(&big)), Pushed::Queued);
        assert_eq!(ob.push(FrameClass::Chat(Priority::Normal), f(&big)), Pushed::Queued);
        assert_eq!(ob.queued_bytes(), 1200);
        // Two frames, far under the frame cap, but over the byte cap: full, and with
        // no grace the connection closes.
        assert_eq!(ob.push(FrameClass::Chat(Priority::Normal), f(&big)), Pushed::Closing);
        assert_eq!(ob.queued_bytes(), 0);
    }

    #[test]
    fn past_the_budget_the_slowest_outboxes_are_cut_first() {
        let budget = OutboxBudget::with_min_lag(10_000, Duration::from_millis(50));
        let limits = OutboxLimits { frames: 1000, bytes: 0, grace: Duration::from_secs(60) };
        let fast = Outbox::with_budget(limits, Some(budget.clone()));
        let slow = Outbox::with_budget(limits, Some(budget.clone()));
        let slower = Outbox::with_budget(limits, Some(budget.clone()));
        let kb = "x".repeat(1000);
        for _ in 0..3 {
            slow.push(FrameClass::Chat(Priority::Normal), f(&kb));
        }
        for _ in 0..5 {
            slower.push(FrameClass::Chat(Priority::Normal), f(&kb));
        }
        // `fast` takes its queue all the time: it is never behind.
        std::thread::sleep(Duration::from_millis(60));
        for _ in 0..2 {
            fast.push(FrameClass::Chat(Priority::Normal), f(&kb));
        }
        assert_eq!(budget.used(), 10_000);
        assert!(!slower.is_closing());
        // One more byte over: the slowest (behind, most queued) goes, and that is enough.
        fast.push(FrameClass::Chat(Priority::Normal), f("y"));
        assert!(slower.is_closing(), "the slowest reader is cut");
        assert!(!slow.is_closing() && !fast.is_closing(), "the others stay");
        assert_eq!(budget.used(), 5_001);
        let mut out = vec![];
        assert_eq!(slower.take(&mut out, &mut vec![]).map(|c| c.code), Some(4008));
        fast.take(&mut out, &mut vec![]);
        assert_eq!(budget.used(), 3_000);
        drop(slow);
        assert_eq!(budget.used(), 0, "a dropped outbox gives its bytes back");
    }

    #[test]
    fn readers_that_keep_up_are_never_cut_by_the_budget() {
        // A fresh round pushed to every member passes the budget (each copy is
        // counted) without anyone being behind: nobody is cut.
        let budget = OutboxBudget::with_min_lag(1_000, Duration::from_secs(60));
        let limits = OutboxLimits { frames: 1000, bytes: 0, grace: Duration::from_secs(60) };
        let members: Vec<_> = (0..5).map(|_| Outbox::with_budget(limits, Some(budget.clone()))).collect();
        let frame = f(&"x".repeat(400));
        for m in &members {
            m.push(FrameClass::Chat(Priority::Normal), frame.clone());
        }
        assert_eq!(budget.used(), 2_000);
        assert!(members.iter().all(|m| !m.is_closing()));
    }
}
