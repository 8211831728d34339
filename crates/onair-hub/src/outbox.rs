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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A WebSocket text frame: refcounted bytes known to be UTF-8, cloned (not copied) into
/// every member's outbox.
pub type Frame = tungstenite::Utf8Bytes;
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
    mark: Option<DrainMark>,
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
            }),
            notify: Notify::new(),
            capacity,
            max_bytes: limits.bytes,
            grace,
            budget,
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
        inner.queue.clear();
        inner.waiting_since = None;
        let n = std::mem::take(&mut inner.bytes);
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
            self.push_locked(&mut inner, Entry { class, frame, mark })
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
    pub fn take(&self, into: &mut Vec<Frame>, marks: &mut Vec<DrainMark>) -> Option<CloseReason> {
        let mut inner = self.inner.lock();
        let mut n = 0;
        for entry in inner.queue.drain(..) {
            n += entry.frame.len();
            into.push(entry.frame);
            marks.extend(entry.mark);
        }
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
        let got: Vec<&str> = out.iter().map(|b| b.as_str()).collect();
        assert_eq!(got, vec!["n1", "e1", "h1", "h2"]);
        assert_eq!(ob.dropped(), 3);
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
