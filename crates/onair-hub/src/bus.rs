//! The Redis side of a cluster: the wire messages nodes exchange, the channels they
//! travel on, sequencer leases, and a subscriber that reconnects by itself.
//!
//! Channels (all under `[cluster] prefix`):
//! - `{p}:room:{id}` — the room's sequencer publishes each delivery round here; only
//!   nodes with members in the room subscribe, so a node never receives traffic of
//!   rooms it does not serve.
//! - `{p}:node:{id}` — messages for one node: submissions and events for the rooms
//!   it sequences, presence reports, and outcomes of the messages it forwarded.
//! - `{p}:ctl` — rare cluster-wide changes (profiles, bans, admins, word lists,
//!   rooms created or destroyed): every node reloads that part from the database.
//!
//! Keys: `{p}:lease:{room}` names the node holding the room's sequencer (a lease
//! renewed every [`RENEW_EVERY`], gone after [`LEASE_TTL`] without renewal);
//! `{p}:online:{room}` holds the sequencer's cluster-wide count and newest members
//! for nodes with no member in the room (they read all such rooms with one `MGET`
//! per second).
//!
//! Pub/sub is at-most-once; nothing here relies on it for durability. Messages are
//! committed to the shared database before they are published, and a node that sees
//! a gap in a room's seqs reads the missing messages back from the database.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use onair_core::cluster::NodeMembers;
use onair_core::event::{MemberBrief, RoomEvent};
use onair_core::message::{ChatMessage, Outgoing};
use onair_core::presence::RecentMember;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// How long a sequencer lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often leases are renewed, owners looked up and presence reported.
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// A node that took a room over waits this long before numbering messages, so a
/// previous holder that lost its lease has stopped (it checks every [`RENEW_EVERY`]).
pub const SETTLE: Duration = Duration::from_millis(2500);
/// A node not heard from for this long is taken as gone: its members leave.
pub const NODE_TTL_MS: u64 = 5_000;
/// Messages waiting to be published at most; beyond, new ones are dropped and counted
/// (Redis is down or slow: a backlog would only grow, and receivers repair gaps
/// from the database).
const OUTBOX: usize = 16_384;
/// A subscribe or unsubscribe that Redis does not confirm within this is given up
/// (the next reconnect subscribes everything again).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Who sent a message, as the sequencer needs it for permissions and callbacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireCtx {
    /// Who asked.
    pub operator: String,
    /// `OptPlatform`.
    pub platform: String,
    /// Sent through the server API (exempt from the word lists), whatever
    /// `platform` says.
    #[serde(default)]
    pub rest_api: bool,
    /// `ClientIP`.
    pub client_ip: String,
    /// May speak while mute-all is on.
    pub privileged: bool,
    /// `ForbidAfterSendMsgCallback`.
    pub forbid_after: bool,
    /// Made by the server for a user (no activity credit, no lottery entry).
    pub system: bool,
}

/// Everything nodes say to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Wire {
    /// A delivery round of a room, from its sequencer to the other nodes.
    Round {
        /// Room id.
        room: String,
        /// Sequencer node.
        from: String,
        /// Cluster-wide online count.
        online: u64,
        /// Newest members first, when membership changed in this round.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recent: Option<Vec<RecentMember>>,
        /// Messages with their seqs (already stored).
        delivered: Vec<Arc<ChatMessage>>,
        /// System events.
        events: Vec<RoomEvent>,
    },
    /// The sequencer's cluster-wide count and recent members (every second when
    /// they changed, so counts are fresh even in a quiet room).
    Count {
        /// Room id.
        room: String,
        /// Sequencer node.
        from: String,
        /// Cluster-wide online count.
        online: u64,
        /// Newest members first.
        recent: Vec<RecentMember>,
    },
    /// A user message for the room's sequencer.
    Submit {
        /// Room id.
        room: String,
        /// Node waiting for the outcome.
        from: String,
        /// The origin's ticket number.
        ticket: u64,
        /// The message, already checked by the origin (mute, ban, filter, callback).
        msg: Outgoing,
        /// Sender context.
        ctx: WireCtx,
    },
    /// The outcome of a forwarded message, back to its origin.
    Outcome {
        /// The origin's ticket number.
        ticket: u64,
        /// Seq (0 when not delivered).
        seq: u64,
        /// Server time, Unix seconds.
        time: u64,
        /// Empty when delivered.
        drop_reason: String,
        /// Set when the sequencer could not take the message (code, info).
        error: Option<(onair_core::Code, String)>,
    },
    /// A system event for the room's sequencer to deliver.
    Event {
        /// Room id.
        room: String,
        /// The event.
        event: RoomEvent,
    },
    /// Likes taken on another node, for the sequencer's exact total.
    Likes {
        /// Room id.
        room: String,
        /// Who liked (account or connection key), for the per-user cap.
        liker: String,
        /// How many.
        count: u64,
    },
    /// Gifts sent on another node, for the sequencer's room statistics.
    Gifts {
        /// Room id.
        room: String,
        /// Gifts.
        count: u64,
        /// Their value in coins.
        coins: u64,
    },
    /// A connection joined on `from`.
    Join {
        /// Room id.
        room: String,
        /// Reporting node.
        from: String,
        /// `None` = anonymous.
        member: Option<MemberBrief>,
    },
    /// A connection left on `from`.
    Leave {
        /// Room id.
        room: String,
        /// Reporting node.
        from: String,
        /// `None` = anonymous.
        user: Option<String>,
    },
    /// `from`'s full member list of a room (when the sequencer changed or asked).
    Members {
        /// Room id.
        room: String,
        /// Reporting node.
        from: String,
        /// The list.
        members: NodeMembers,
    },
    /// `from` is alive and holds these connections per room (anonymous viewers are
    /// counted from here only, not reported one by one).
    Heartbeat {
        /// Reporting node.
        from: String,
        /// (room, anonymous connections, logged-in connections).
        rooms: Vec<(String, u64, u64)>,
    },
    /// The sequencer asks a node for its full member list of a room.
    SendMembers {
        /// Room id.
        room: String,
    },
    /// Something of a room changed in the database: reload it.
    Changed {
        /// Room id (empty for the app-wide word list).
        room: String,
        /// Node that made the change (it does not reload).
        from: String,
        /// What changed.
        part: Part,
    },
}

/// What a [`Wire::Changed`] asks to reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Part {
    /// Profile, attributes, live state, mute-all.
    Profile,
    /// Mutes and bans.
    Moderation,
    /// Room admins.
    Admins,
    /// Sensitive-word lists.
    Filter,
    /// The room's running lottery (started, ended early, or drawn).
    Lottery,
    /// The room was created.
    Created,
    /// The room was destroyed.
    Destroyed,
}

/// What the subscriber hands to the hub.
pub enum Inbound {
    /// A message from another node.
    Wire(Box<Wire>),
    /// The subscriber (re)connected: reports may have been lost, resync.
    Reconnected,
}

/// A command waiting for the publisher.
enum Out {
    /// `PUBLISH channel payload`.
    Publish(String, Vec<u8>),
    /// `SET key value PX COUNT_TTL`.
    Set(String, Vec<u8>),
}

/// A room's cluster-wide count as its sequencer last stored it, for nodes that have
/// no members there (they do not receive the room's rounds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountSnapshot {
    /// Cluster-wide online count.
    pub online: u64,
    /// Newest members first.
    pub recent: Vec<RecentMember>,
}

/// How long a stored count lives without being refreshed (its sequencer died).
const COUNT_TTL: Duration = Duration::from_secs(10);

/// Cluster settings the transport needs.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// `redis://…`, or `rediss://…` for TLS.
    pub url: String,
    /// PEM of the CA a `rediss://` server's certificate must chain to (`[tls]
    /// ca_file`); `None` = the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// This node.
    pub node: String,
    /// Key and channel prefix.
    pub prefix: String,
}

/// The connection of this node to the others.
pub struct Bus {
    node: Arc<str>,
    prefix: String,
    client: redis::Client,
    conn: ConnectionManager,
    out: mpsc::Sender<Out>,
    /// Room channels this node wants (resubscribed after every reconnect).
    rooms: parking_lot::Mutex<BTreeSet<String>>,
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    healthy: AtomicBool,
    /// The subscription connection is up (rounds and outcomes can arrive).
    connected: AtomicBool,
    /// Redis commands issued (publishes count one each, pipelines one per command).
    ops: AtomicU64,
    failures: AtomicU64,
    /// Wakes the lease loop early (a room needs a sequencer now).
    pub wake: Notify,
}

impl Bus {
    /// Connects (failing when Redis is unreachable at start: a misconfigured node
    /// should not come up half-working) and starts the subscriber and publisher.
    pub async fn connect(
        cfg: BusConfig,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<(Arc<Bus>, mpsc::UnboundedReceiver<Inbound>)> {
        // `rediss://` is TLS (rustls): the system's roots, or only the CA of
        // `[tls] ca_file` when one is set.
        let client = match &cfg.ca_pem {
            Some(pem) if cfg.url.starts_with("rediss://") => redis::Client::build_with_tls(
                cfg.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            )?,
            _ => redis::Client::open(cfg.url.as_str())?,
        };
        let manager_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            // A saturated node may wait seconds for a big pipeline's replies; a
            // shorter timeout turned slowness into "failed" publishes that Redis did run.
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), manager_cfg),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to Redis at {} timed out", onair_shell::redact_url(&cfg.url)))??;
        let (out_tx, out_rx) = mpsc::channel(OUTBOX);
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let bus = Arc::new(Bus {
            node: cfg.node.into(),
            prefix: cfg.prefix,
            client,
            conn,
            out: out_tx,
            rooms: parking_lot::Mutex::new(BTreeSet::new()),
            sink: tokio::sync::Mutex::new(None),
            healthy: AtomicBool::new(true),
            connected: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            wake: Notify::new(),
        });
        tasks.spawn(bus.clone().run_publisher(out_rx, shutdown.clone()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.spawn(bus.clone().run_subscriber(in_tx, shutdown, Some(ready_tx)));
        // The node and control channels must be live before the node serves anyone.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
        Ok((bus, in_rx))
    }

    /// This node's name.
    pub fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// Whether the subscription is up and Redis answered the last time it was asked.
    pub fn healthy(&self) -> bool {
        self.connected() && self.healthy.load(Ordering::Acquire)
    }

    /// Whether the subscription connection is up: forwarding a message makes sense
    /// (its outcome can come back). A slow command alone does not clear this.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Redis commands issued so far, and how many failed.
    pub fn ops(&self) -> (u64, u64) {
        (self.ops.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    fn ctl_channel(&self) -> String {
        format!("{}:ctl", self.prefix)
    }

    fn count_key(&self, room: &str) -> String {
        format!("{}:online:{room}", self.prefix)
    }

    /// Stores a room's count for the nodes that do not serve it (queued, never blocks).
    pub fn store_count(&self, room: &str, count: &CountSnapshot) {
        match serde_json::to_vec(count) {
            Ok(value) => {
                if self.out.try_send(Out::Set(self.count_key(room), value)).is_err() {
                    metrics::counter!("onair_cluster_publish_dropped_total").increment(1);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not encode a room count"),
        }
    }

    /// The stored counts of rooms (one `MGET`); `None` where none is stored.
    pub async fn counts(&self, rooms: &[String]) -> redis::RedisResult<Vec<Option<CountSnapshot>>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = rooms.iter().map(|r| self.count_key(r)).collect();
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let got: redis::RedisResult<Vec<Option<Vec<u8>>>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await;
        self.note(got.is_ok());
        Ok(got?.into_iter().map(|v| v.and_then(|b| serde_json::from_slice(&b).ok())).collect())
    }

    fn lease_key(&self, room: &str) -> String {
        format!("{}:lease:{room}", self.prefix)
    }

    fn note(&self, ok: bool) {
        self.healthy.store(ok, Ordering::Release);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a message for a room's subscribers (never blocks; sent in order).
    pub fn to_room(&self, room: &str, msg: &Wire) {
        self.queue(self.room_channel(room), msg);
    }

    /// Queues a message for one node.
    pub fn to_node(&self, node: &str, msg: &Wire) {
        self.queue(self.node_channel(node), msg);
    }

    /// Queues a message for every node.
    pub fn to_all(&self, msg: &Wire) {
        self.queue(self.ctl_channel(), msg);
    }

    fn queue(&self, channel: String, msg: &Wire) {
        match serde_json::to_vec(msg) {
            Ok(payload) => {
                if self.out.try_send(Out::Publish(channel, payload)).is_err() {
                    metrics::counter!("onair_cluster_publish_dropped_total").increment(1);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not encode a cluster message"),
        }
    }

    /// Publishes queued messages, everything waiting at once in one pipeline: one
    /// round trip per batch instead of one per message.
    async fn run_publisher(self: Arc<Self>, mut rx: mpsc::Receiver<Out>, stop: CancellationToken) {
        let mut conn = self.conn.clone();
        let mut batch = Vec::new();
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, 256) => n,
                _ = stop.cancelled() => 0,
            };
            if n == 0 {
                break;
            }
            let mut pipe = redis::pipe();
            for out in batch.drain(..) {
                match out {
                    Out::Publish(channel, payload) => pipe.publish(channel, payload).ignore(),
                    Out::Set(key, value) => {
                        pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(COUNT_TTL.as_millis() as u64).ignore()
                    }
                };
            }
            self.ops.fetch_add(n as u64, Ordering::Relaxed);
            let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            if let Err(e) = &sent {
                tracing::warn!(error = %e, messages = n, "cluster publish failed (Redis unreachable?)");
                metrics::counter!("onair_cluster_publish_failed_total").increment(n as u64);
            }
            self.note(sent.is_ok());
        }
    }

    /// Keeps one subscription connection: node and control channels plus the rooms
    /// this node serves; after any disconnect it reconnects with backoff and
    /// subscribes again, then tells the hub to resync.
    async fn run_subscriber(
        self: Arc<Self>,
        tx: mpsc::UnboundedSender<Inbound>,
        stop: CancellationToken,
        mut ready: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        while !stop.is_cancelled() {
            match self.subscribe_all().await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(100);
                    self.note(true);
                    self.connected.store(true, Ordering::Release);
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    if !first {
                        tracing::info!("cluster bus reconnected");
                        let _ = tx.send(Inbound::Reconnected);
                    }
                    first = false;
                    // A Redis that stops answering without closing the socket would
                    // leave the stream silent forever: a ping every few seconds finds it.
                    let mut ping = tokio::time::interval(Duration::from_secs(3));
                    ping.tick().await;
                    loop {
                        let msg = tokio::select! {
                            m = stream.next() => m,
                            _ = ping.tick() => {
                                if self.ping_subscription().await { continue } else { break }
                            }
                            _ = stop.cancelled() => return,
                        };
                        let Some(msg) = msg else { break };
                        match serde_json::from_slice::<Wire>(msg.get_payload_bytes()) {
                            Ok(w) => {
                                if tx.send(Inbound::Wire(Box::new(w))).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "undecodable cluster message ignored"),
                        }
                    }
                    self.connected.store(false, Ordering::Release);
                    *self.sink.lock().await = None;
                    self.note(false);
                    tracing::warn!("cluster bus disconnected; serving local members, reconnecting");
                }
                Err(e) => {
                    self.note(false);
                    tracing::warn!(error = %e, "cluster bus unreachable; retrying in {backoff:?}");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn subscribe_all(&self) -> redis::RedisResult<redis::aio::PubSubStream> {
        let pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
        let (mut sink, stream) = pubsub.split();
        let mut channels = vec![self.node_channel(&self.node), self.ctl_channel()];
        channels.extend(self.rooms.lock().iter().map(|r| self.room_channel(r)));
        tokio::time::timeout(SUBSCRIBE_TIMEOUT * 2, sink.subscribe(channels))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "subscribe timed out")))??;
        *self.sink.lock().await = Some(sink);
        Ok(stream)
    }

    async fn ping_subscription(&self) -> bool {
        let mut sink = self.sink.lock().await;
        let Some(sink) = sink.as_mut() else { return false };
        self.ops.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(SUBSCRIBE_TIMEOUT * 2, sink.ping::<redis::Value>()).await.is_ok_and(|r| r.is_ok())
    }

    /// Starts receiving a room's rounds; returns once Redis confirmed (or the bus is
    /// down, in which case the next reconnect subscribes).
    pub async fn subscribe_room(&self, room: &str) {
        if !self.rooms.lock().insert(room.to_owned()) {
            return;
        }
        if let Some(sink) = self.sink.lock().await.as_mut() {
            self.ops.fetch_add(1, Ordering::Relaxed);
            let ok = tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(self.room_channel(room)))
                .await
                .is_ok_and(|r| r.is_ok());
            self.note(ok);
        }
    }

    /// Stops receiving a room's rounds.
    pub async fn unsubscribe_room(&self, room: &str) {
        if !self.rooms.lock().remove(room) {
            return;
        }
        if let Some(sink) = self.sink.lock().await.as_mut() {
            self.ops.fetch_add(1, Ordering::Relaxed);
            let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.unsubscribe(self.room_channel(room))).await;
        }
    }

    /// Whether this node is subscribed (or will be after a reconnect) to a room.
    pub fn wants_room(&self, room: &str) -> bool {
        self.rooms.lock().contains(room)
    }

    /// Tries to take a room's sequencer lease.
    pub async fn acquire(&self, room: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        self.ops.fetch_add(1, Ordering::Relaxed);
        let ttl = LEASE_TTL.as_millis() as u64;
        let got: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(self.lease_key(room))
            .arg(&*self.node)
            .arg("NX")
            .arg("PX")
            .arg(ttl)
            .query_async(&mut conn)
            .await;
        self.note(got.is_ok());
        got.map(|r| r.is_some())
    }

    /// Renews the leases this node holds; `false` for each one it lost.
    pub async fn renew(&self, rooms: &[String]) -> redis::RedisResult<Vec<bool>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        // Compare-and-extend: only the holder may renew.
        const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                             return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(self.lease_key(room))
                .arg(&*self.node)
                .arg(LEASE_TTL.as_millis() as u64);
        }
        self.ops.fetch_add(rooms.len() as u64, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let got: redis::RedisResult<Vec<i64>> = pipe.query_async(&mut conn).await;
        self.note(got.is_ok());
        got.map(|v| v.into_iter().map(|x| x == 1).collect())
    }

    /// The current holder of each room's lease.
    pub async fn owners(&self, rooms: &[String]) -> redis::RedisResult<Vec<Option<String>>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = rooms.iter().map(|r| self.lease_key(r)).collect();
        self.ops.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let got: redis::RedisResult<Vec<Option<String>>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await;
        self.note(got.is_ok());
        got
    }

    /// Gives the leases back at shutdown, so other nodes take over at once.
    pub async fn release(&self, rooms: &[String]) {
        const RELEASE: &str =
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        let mut conn = self.conn.clone();
        for room in rooms {
            let _: redis::RedisResult<i64> = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(self.lease_key(room))
                .arg(&*self.node)
                .query_async(&mut conn)
                .await;
        }
    }
}

/// Groups per-room counts by the node that sequences each room (one heartbeat per node).
pub fn group_by_owner(rooms: Vec<(String, String, u64, u64)>) -> HashMap<String, Vec<(String, u64, u64)>> {
    let mut out: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for (owner, room, anonymous, logged_in) in rooms {
        out.entry(owner).or_default().push((room, anonymous, logged_in));
    }
    out
}
