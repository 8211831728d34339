//! The rooms of this node and the operations on them, shared by the WebSocket
//! handlers, the native admin API and the cloud-compatible `/v4` face. No HTTP
//! framework: faces call these methods and render the results.
//!
//! Each room is a [`RoomChat`] core behind a short sync lock plus a ticker task.
//! The ticker runs one delivery round per tick: the core decides (frequency control,
//! seqs, presence), the round's messages are committed to the store, the push frame is
//! encoded once and handed to every member's [`Outbox`], and only then are senders
//! acked — so an ack means "stored and delivered".
//!
//! The operations, by module (all methods of [`Hub`] unless noted):
//!
//! | module | operations |
//! |---|---|
//! | this file | rooms: `load`, `get`, `list`, `create`, `destroy_by`, `modify_by`, `write_attrs_by`; messages: `send` (the one path: [`onair_core::admission`] decides), `send_as_with`, `notify_room`, `broadcast`; [`Room`]: `join`, `leave`, `submit`, `push_event`, `role_of`, `view` |
//! | `moderation` | `mute`, `muted`, `ban`, `unban`, `bans`, `kick`, `recall`, `set_slow_mode`, `room_admins`, `set_room_admins`, `set_marks`, `marked` |
//! | `words` | `set_app_filter`, `seed_app_filter`, `app_filter`, `set_room_filter`, `room_filter` (screening runs inside `send`) |
//! | `live` | `change_state` (the one path of live-state changes), `set_state`, `schedule`, `set_stream`, `room_for_stream`, `on_stream`; [`HubObserver`] |
//! | `business` | gifts (`gift_catalog`, `put_gift`, `delete_gift`, `send_gift`, `gift_leaderboard`), `like`, levels (`level_of`, `level`, `set_member`), `room_stats`, lotteries (`start_lottery`, `draw_lottery*`, `lottery_*`, `lotteries`), co-hosts (`cohost_request`, `cohost_answer`, `cohost_end`, `cohost_layout`, `cohosts`; guests' stream events drive the mix through `set_mixer`) |
//! | `cluster` | [`Link`], `start_cluster`, `cluster_health`: what a node does with the [`bus`] |
//! | `pacing` | `count_socket_write`, `observe_fanout`, `write_cost_ns`, `room_tick`: the delivery rounds' tick from the measured cost per socket write |
//! | [`callbacks`], [`outbox`], [`sessions`], [`bus`] | webhooks, a connection's queue, logins, the Redis transport |

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::outbox::Frame;
use onair_core::Millis;
use onair_core::admission;
use onair_core::chat::{ChatConfig, RoomChat, Submit};
use onair_core::dedup::Seen;
use onair_core::event::{MemberBrief, RoomEvent};
use onair_core::filter::{self, WordList};
use onair_core::gifts::Gift;
use onair_core::limits::{self, LimitsConfig, UserLimits};
use onair_core::message::{MsgElem, Outgoing, body_text, validate_body};
use onair_core::moderation::{Moderation, PERMANENT_SECS};
use onair_core::popularity::PopularityWeights;
use onair_core::presence::RecentMember;
use onair_core::random::SplitMix64;
use onair_core::room::{
    AttrWrite, ProfilePatch, RoomLimits, RoomProfile, generate_id, validate_custom_id, write_attrs,
};
use onair_core::tick::TickPolicy;
use onair_core::{Code, Rejection};
use onair_proto::RoomView;
use onair_store::{HistoryWriter, LotteryRecord, Store};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod bus;
pub mod callbacks;
mod delivery;
pub mod outbox;
mod pacing;
pub mod sessions;

use crate::callbacks::{BeforeSend, Callbacks, Origin, SendVerdict};
use crate::outbox::{FrameClass, Outbox};
use onair_shell::{now_ms, seed};

mod business;
mod cluster;
mod live;
mod moderation;
mod overlay;
mod words;

pub use business::BusinessConfig;
pub use cluster::Link;
use cluster::{Owner, RoomCluster};
pub use live::HubObserver;

pub use moderation::BanEntry;
pub use words::{action_name, parse_action};

/// The drop reason of a message cut by frequency control (ack `dropReason`,
/// REST `MsgDropReason`).
pub const DROP_FREQUENCY: &str = "FrequencyLimit";
/// The drop reason of a duplicate `Random` that is not delivered again.
pub const DROP_DUPLICATE: &str = "Duplicate";

/// Where the outcome of a submitted message goes.
pub enum Reply {
    /// A WebSocket `send`: ack into the sender's outbox with its request id.
    Ws {
        /// The sender's connection (its member key in the rooms it joined).
        conn: u64,
        /// The sender's outbox.
        outbox: Arc<Outbox>,
        /// The request id to echo.
        id: Value,
    },
    /// An API call waiting for the outcome.
    Api(oneshot::Sender<Result<SendResult, Rejection>>),
    /// A message another node forwarded to this room's sequencer: the outcome goes
    /// back to that node under its ticket number.
    Remote {
        /// The bus.
        bus: Arc<crate::bus::Bus>,
        /// The origin node.
        node: Arc<str>,
        /// The origin's ticket.
        ticket: u64,
    },
}

impl Reply {
    fn resolve(self, result: SendResult) {
        match self {
            Reply::Ws { outbox, id, .. } => {
                let frame = onair_proto::encode_send_ack(&id, result.seq, result.time, &result.drop_reason);
                outbox.push(FrameClass::Essential, Frame::from(frame));
            }
            Reply::Api(tx) => {
                let _ = tx.send(Ok(result)); // the caller may have gone away; nothing to do then
            }
            Reply::Remote { bus, node, ticket } => bus.to_node(
                &node,
                &crate::bus::Wire::Outcome {
                    ticket,
                    seq: result.seq,
                    time: result.time,
                    drop_reason: result.drop_reason,
                    error: None,
                },
            ),
        }
    }

    /// The message could not be decided (its sequencer was unreachable).
    fn fail(self, rejection: Rejection) {
        match self {
            Reply::Ws { outbox, id, .. } => {
                outbox.push(FrameClass::Essential, Frame::from(onair_proto::ack_error(&id, &rejection)));
            }
            Reply::Api(tx) => {
                let _ = tx.send(Err(rejection));
            }
            Reply::Remote { bus, node, ticket } => bus.to_node(
                &node,
                &crate::bus::Wire::Outcome {
                    ticket,
                    seq: 0,
                    time: now_ms() / 1000,
                    drop_reason: String::new(),
                    error: Some((rejection.code, rejection.info)),
                },
            ),
        }
    }
}

/// Who is sending, for permissions and callbacks.
#[derive(Debug, Clone)]
pub struct SendCtx {
    /// Who asked (the sender, or the admin of an API call).
    pub operator: String,
    /// Platform and address, for the callbacks' `OptPlatform`/`ClientIP`.
    pub origin: Origin,
    /// Owner or app admin: may speak while mute-all is on.
    pub privileged: bool,
    /// `ForbidBeforeSendMsgCallback`.
    pub forbid_before: bool,
    /// `ForbidAfterSendMsgCallback`.
    pub forbid_after: bool,
    /// A message the server makes for a user (a gift): it earns no activity and
    /// enters no lottery.
    pub system: bool,
}

impl SendCtx {
    /// An app admin sending through the server API.
    pub fn admin(operator: &str) -> SendCtx {
        SendCtx {
            operator: operator.to_owned(),
            origin: Origin::rest(),
            privileged: true,
            forbid_before: false,
            forbid_after: false,
            system: false,
        }
    }
}

/// A submitted message's reply route and context, carried through the room core.
pub struct Ticket {
    reply: Reply,
    ctx: Arc<SendCtx>,
}

/// The outcome of a send as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// Seq when delivered (0 when not).
    pub seq: u64,
    /// Server time, Unix seconds.
    pub time: u64,
    /// Empty when delivered; else why not.
    pub drop_reason: String,
}

/// A membership change reported to the backend (`Hub::member_changed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A logged-in user joined (`Group.CallbackAfterNewMemberJoin`).
    Joined,
    /// The member left on their own: `leave`, logout, disconnect, a Web room switch
    /// (`ExitType` `Quit`).
    Quit,
    /// An operator took the member out: a kick or a ban (`ExitType` `Kicked`).
    Kicked {
        /// Who did it (`Operator_Account`).
        operator: String,
    },
}

/// A connection in a room.
struct Member {
    outbox: Arc<Outbox>,
    user: Option<String>,
    /// Which slot of a tick cut into slots writes this member
    /// (`onair_core::tick::bucket_of` the room's count of joins).
    bucket: u8,
    /// The first staged round this member has not been sent.
    cursor: u64,
    /// Presence is credited (watch time, online time for levels) up to here.
    credited_at: Millis,
}

/// Unix seconds as the cloud reports an end time (permanent = u32::MAX).
fn end_secs(until: Millis) -> u64 {
    if until == u64::MAX { PERMANENT_SECS } else { until / 1000 }
}

/// One live room on this node.
pub struct Room {
    /// Room id.
    pub id: String,
    chat: Mutex<RoomChat<Ticket>>,
    profile: Mutex<RoomProfile>,
    members: Mutex<HashMap<u64, Member>>,
    moderation: Mutex<Moderation>,
    admins: Mutex<BTreeSet<String>>,
    limits: Mutex<UserLimits>,
    filter: Mutex<Option<Arc<WordList>>>,
    /// Member marks (the cloud's `modify_user_info`), for online members only.
    marks: Mutex<HashMap<String, BTreeSet<u64>>>,
    /// Rounds delivered but not yet written to every member.
    staged: Mutex<onair_core::stagger::Staged<delivery::StagedRound>>,
    /// Joins so far: the next member's phase.
    joins: AtomicU64,
    /// Held by a delivery round and by joins, so a joiner's history and the pushes
    /// it receives afterwards neither overlap nor leave a gap.
    delivery: tokio::sync::Mutex<()>,
    /// Serializes profile/attribute writes with their storage.
    profile_write: tokio::sync::Mutex<()>,
    wake: Notify,
    closed: AtomicBool,
    /// Gifts, likes, statistics, lottery, co-hosts.
    biz: Mutex<business::RoomBiz>,
    popularity: PopularityWeights,
    /// Which node numbers this room's messages (always this one on a single node).
    owner: Mutex<Owner>,
    /// The room's cluster state; `None` on a single node.
    cl: Option<RoomCluster>,
    /// The chat output's board when the room's chat-in-the-picture is on.
    overlay: Mutex<Option<onair_media::overlay::ChatBoard>>,
}

impl Room {
    /// The room as clients see it.
    pub fn view(&self) -> RoomView {
        let online = self.online();
        let next_seq = self.chat.lock().next_seq();
        let (likes, popularity) = {
            let biz = self.biz.lock();
            (biz.likes.total(), biz.stats.popularity(online, now_ms(), &self.popularity))
        };
        let p = self.profile.lock();
        RoomView {
            room_id: p.id.clone(),
            name: p.name.clone(),
            introduction: p.introduction.clone(),
            notification: p.notification.clone(),
            face_url: p.face_url.clone(),
            owner: p.owner.clone(),
            app_defined_data: p.app_defined_data.clone(),
            attrs: p.attrs.clone(),
            mute_all: p.mute_all,
            state: p.state.clone(),
            online,
            created_at: p.created_at / 1000,
            info_seq: p.info_seq,
            next_seq,
            slow_mode: self.limits.lock().slow_mode_ms() / 1000,
            scheduled_at: p.scheduled_at / 1000,
            state_changed_at: p.state_changed_at / 1000,
            stream: p.stream.clone(),
            replay_url: p.replay_url.clone(),
            likes,
            popularity,
        }
    }

    /// Pushes an event to every connection of one user in this room only.
    pub fn push_to_user(&self, user: &str, event: RoomEvent) {
        let conns = self.connections_of(user);
        // After what was delivered before it.
        self.write_now(&conns);
        let frame = Frame::from(onair_proto::encode_push::<Arc<onair_core::message::ChatMessage>>(
            &self.id,
            &[],
            std::slice::from_ref(&event),
        ));
        let members = self.members.lock();
        for member in conns.iter().filter_map(|id| members.get(id)) {
            member.outbox.push(FrameClass::Essential, frame.clone());
        }
    }

    /// The member keys of `user`'s connections here.
    fn connections_of(&self, user: &str) -> Vec<u64> {
        self.members.lock().iter().filter(|(_, m)| m.user.as_deref() == Some(user)).map(|(k, _)| *k).collect()
    }

    /// Credits the presence of every member up to `now` (called about once a second).
    fn credit_members(&self, now: Millis) {
        let mut credits = Vec::new();
        for member in self.members.lock().values_mut() {
            let ms = now.saturating_sub(member.credited_at);
            member.credited_at = now;
            credits.push((member.user.clone(), ms));
        }
        let mut biz = self.biz.lock();
        for (user, ms) in credits {
            biz.credit_presence(user.as_deref(), ms);
        }
    }

    /// Credits the rest of a departing member's presence.
    fn settle(&self, member: &Member) {
        let ms = now_ms().saturating_sub(member.credited_at);
        self.biz.lock().credit_presence(member.user.as_deref(), ms);
    }

    /// A copy of the profile.
    pub fn profile(&self) -> RoomProfile {
        self.profile.lock().clone()
    }

    /// Whether the room was destroyed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Exact online count (cluster-wide: on a node that does not sequence the room,
    /// the sequencer's last report).
    pub fn online(&self) -> u64 {
        let local = self.chat.lock().online();
        match &self.cl {
            Some(cl) if !self.sequencing() => cl.online.load(Ordering::Acquire).max(local),
            _ => local,
        }
    }

    /// Whether `user` is one of the room's admins.
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.lock().contains(user)
    }

    /// Whether `user` owns the room (read in place: no copy of the profile).
    pub fn is_owner(&self, user: &str) -> bool {
        self.profile.lock().owner == user
    }

    /// `user`'s role here; `app_admin` when the app lists them as an admin. The one
    /// answer to "who manages this room" ([`admission::Role::manages`]).
    pub fn role_of(&self, user: &str, app_admin: bool) -> admission::Role {
        admission::Role::of(app_admin, self.is_owner(user), self.is_admin(user))
    }

    /// Takes every connection of `user` out of the room with a `kicked` event
    /// (`banned_until` 0 = a kick, not a ban) and tells the others. Returns whether
    /// the user was a member: on this node, or (where this node sequences the room)
    /// on any node, as far as the room's presence knows.
    fn remove_user(&self, user: &str, reason: &str, banned_until: u64) -> bool {
        let member = self.has_user(user);
        let event = RoomEvent::Kicked { user_id: user.to_owned(), reason: reason.to_owned(), banned_until };
        self.push_to_user(user, event.clone());
        let here = self.drop_user_connections(user);
        self.push_event(event);
        member || here
    }

    /// Takes every connection of `user` out of the room (they were told already);
    /// returns whether there was any.
    fn drop_user_connections(&self, user: &str) -> bool {
        // What was delivered before they were taken out still reaches them.
        let conns = self.connections_of(user);
        self.write_now(&conns);
        let removed: Vec<Member> = {
            let mut members = self.members.lock();
            conns.into_iter().filter_map(|k| members.remove(&k)).collect()
        };
        for member in &removed {
            self.chat.lock().leave(Some(user));
            self.settle(member);
            if let Some(cl) = &self.cl {
                cl.left(self, Some(user.to_owned()));
            }
        }
        !removed.is_empty()
    }

    /// Whether `user` has a connection in this room.
    pub fn has_user(&self, user: &str) -> bool {
        self.chat.lock().has_member(user)
    }

    /// Unix seconds until which `user` is muted here (0 = not muted).
    pub fn muted_until(&self, user: &str) -> u64 {
        self.moderation.lock().muted_until(user, now_ms()).map_or(0, end_secs)
    }

    /// Recently joined online members, newest first (cluster-wide).
    pub fn recent_members(&self, limit: usize) -> Vec<RecentMember> {
        match &self.cl {
            Some(cl) if !self.sequencing() => cl.recent.lock().iter().take(limit).cloned().collect(),
            _ => self.chat.lock().recent_members(limit),
        }
    }

    /// Adds a connection: presence, history (or resume), the join ack into its
    /// outbox, then membership — all inside the delivery lock.
    pub async fn join(
        &self,
        conn_id: u64,
        outbox: &Arc<Outbox>,
        member: Option<MemberBrief>,
        resume_after: Option<u64>,
        encode_ack: impl FnOnce(&RoomView, &onair_core::chat::JoinSnapshot) -> String,
    ) -> Result<u64, Rejection> {
        let _delivery = self.delivery.lock().await;
        if self.is_closed() {
            return Err(room_not_found(&self.id));
        }
        let now = now_ms();
        if let Some(user) = member.as_ref().map(|m| &m.user_id)
            && let Some(ban) = self.moderation.lock().banned(user, now)
        {
            return Err(Rejection::new(
                Code::NoPermission,
                format!("banned from room '{}' until {} ({})", self.id, end_secs(ban.until), ban.reason),
            ));
        }
        if let Some(cl) = &self.cl {
            self.sync_mirror(cl).await?;
        }
        let user = member.as_ref().map(|m| m.user_id.clone());
        let report = member.clone();
        let mut snapshot = self.chat.lock().join(member, resume_after, now);
        snapshot.online = snapshot.online.max(self.online());
        let view = self.view();
        outbox.push(FrameClass::Essential, Frame::from(encode_ack(&view, &snapshot)));
        // Everything staged so far is in the history the joiner was just sent.
        let cursor = self.staged.lock().head();
        let bucket = onair_core::tick::bucket_of(self.joins.fetch_add(1, Ordering::Relaxed));
        self.members.lock().insert(conn_id, Member { outbox: outbox.clone(), user, credited_at: now, bucket, cursor });
        if let Some(cl) = &self.cl {
            cl.joined(self, report);
        }
        self.wake.notify_one();
        Ok(snapshot.online)
    }

    /// Removes a connection; returns whether it was a member (a kick or ban may have
    /// taken it out already, and then its leaving is no news).
    pub fn leave(&self, conn_id: u64, user_id: Option<&str>) -> bool {
        let removed = self.members.lock().remove(&conn_id);
        let was_member = removed.is_some();
        if let Some(member) = removed {
            self.settle(&member);
            let mut chat = self.chat.lock();
            chat.leave(user_id);
            if let Some(user) = user_id
                && !chat.has_member(user)
            {
                self.marks.lock().remove(user);
            }
            drop(chat);
            if let Some(cl) = &self.cl {
                cl.left(self, user_id.map(str::to_owned));
            }
            self.wake.notify_one();
        }
        was_member
    }

    /// Offers a message; the outcome reaches the ticket at the next tick (or now,
    /// for duplicates and invalid bodies).
    pub fn submit(&self, ticket: Ticket, msg: Outgoing) -> Result<(), Rejection> {
        if self.is_closed() {
            return Err(room_not_found(&self.id));
        }
        metrics::counter!("onair_messages_submitted_total").increment(1);
        match &self.cl {
            Some(cl) => match cl.route_submit(self, ticket, msg)? {
                Some((ticket, msg)) => self.submit_here(ticket, msg),
                None => Ok(()),
            },
            None => self.submit_here(ticket, msg),
        }
    }

    /// Offers a message to this node's core (the room's sequencer).
    fn submit_here(&self, ticket: Ticket, msg: Outgoing) -> Result<(), Rejection> {
        let result = self.chat.lock().submit(ticket, msg, now_ms());
        match result {
            Submit::Queued => {
                self.wake.notify_one();
                Ok(())
            }
            Submit::Duplicate(ticket, seen) => {
                let (seq, reason) = match seen {
                    Seen::Delivered(seq) => (seq, ""),
                    Seen::Pending => (0, DROP_DUPLICATE),
                    Seen::Cut => (0, DROP_FREQUENCY),
                };
                ticket.reply.resolve(SendResult { seq, time: now_ms() / 1000, drop_reason: reason.into() });
                Ok(())
            }
            Submit::Rejected(_, rejection) => Err(rejection),
        }
    }

    /// Queues a system event (bypasses frequency control); in a cluster it goes to
    /// the room's sequencer.
    pub fn push_event(&self, event: RoomEvent) {
        let here = match &self.cl {
            Some(cl) => cl.route_event(self, event),
            None => Some(event),
        };
        if let Some(event) = here {
            self.chat.lock().push_event(event);
            self.wake.notify_one();
        }
    }

    /// Whether the room's ticker has a round to run: the core's work where this node
    /// sequences the room, the sequencer's published rounds where it mirrors it.
    fn has_round_work(&self) -> bool {
        match &self.cl {
            Some(cl) if !self.sequencing() => cl.has_pending(),
            _ => self.chat.lock().has_work(),
        }
    }

    /// Whether this node numbers the room's messages (always, on a single node).
    pub fn sequencing(&self) -> bool {
        matches!(*self.owner.lock(), Owner::Local)
    }
}

/// How rooms behave: chat tuning, profile limits, delivery rounds, per-user limits.
#[derive(Debug, Clone, Copy)]
pub struct RoomRules {
    /// Per-user sending limits.
    pub user_limits: LimitsConfig,
    /// Chat core tuning.
    pub chat: ChatConfig,
    /// Profile and attribute limits.
    pub limits: RoomLimits,
    /// Delivery round scheduling.
    pub tick: TickPolicy,
    /// Gifts, likes, levels, popularity, live state.
    pub business: BusinessConfig,
}

/// All rooms of this node.
pub struct Hub {
    rooms: RwLock<HashMap<String, Arc<Room>>>,
    chat_cfg: ChatConfig,
    limits: RoomLimits,
    /// When rooms deliver: the tick policy and the measured cost per socket write.
    pacing: pacing::Pacing,
    user_limits: LimitsConfig,
    store: Store,
    writer: HistoryWriter,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    broadcast_seq: AtomicU64,
    rng: Mutex<SplitMix64>,
    callbacks: Arc<Callbacks>,
    app_filter: RwLock<Option<Arc<WordList>>>,
    business: BusinessConfig,
    /// Users' activity behind levels (a write-back cache of the store).
    activity: Mutex<HashMap<String, business::ActivityEntry>>,
    /// The gift catalog (a copy of the store's).
    gifts: RwLock<HashMap<String, Gift>>,
    /// Signs a push URL for a stream name (co-hosting), when the media service runs.
    push_url: Option<PushSigner>,
    /// Signs a WHIP URL for a stream name (co-hosting from the browser).
    whip_url: Option<PushSigner>,
    /// The media service's co-host mixer, once it runs.
    mixer: std::sync::OnceLock<Arc<dyn onair_media::lifecycle::MixControl>>,
    /// The other nodes, when this node is part of a cluster.
    link: Option<Arc<Link>>,
    /// The chat outputs' sink (set once when the media service runs).
    chat_overlay: std::sync::OnceLock<overlay::ChatOverlay>,
}

/// What the hub talks to besides the store.
pub struct Services {
    /// The webhook client.
    pub callbacks: Arc<Callbacks>,
    /// Signs co-host push URLs, when the media service runs.
    pub push_url: Option<PushSigner>,
    /// Signs co-host WHIP URLs (a path such as `/whip/{stream}?txSecret=…`).
    pub whip_url: Option<PushSigner>,
    /// The other nodes, when this node is part of a cluster.
    pub link: Option<Arc<Link>>,
}

impl Hub {
    /// Connects the media service's co-host mixer (once; the media service starts
    /// after the hub).
    pub fn set_mixer(&self, mixer: Arc<dyn onair_media::lifecycle::MixControl>) {
        let _ = self.mixer.set(mixer);
    }
}

/// Makes a signed RTMP push URL for a stream name.
pub type PushSigner = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A new room request.
#[derive(Debug, Clone, Default)]
pub struct NewRoom {
    /// Custom id, or `None` for a generated `@TGS#…`.
    pub room_id: Option<String>,
    /// Name (required by the cloud; may be empty here).
    pub name: String,
    /// Anchor account.
    pub owner: String,
    /// Introduction.
    pub introduction: String,
    /// Notice.
    pub notification: String,
    /// Face URL.
    pub face_url: String,
    /// Custom fields.
    pub app_defined_data: BTreeMap<String, String>,
    /// Initial attributes.
    pub attrs: BTreeMap<String, String>,
}

fn room_not_found(id: &str) -> Rejection {
    Rejection::new(Code::RoomNotFound, format!("room '{id}' does not exist"))
}

/// A storage failure as clients see it (10002, "retry later"); the cause goes to the log.
pub fn internal(e: impl std::fmt::Display) -> Rejection {
    tracing::error!(error = %e, "storage failure");
    Rejection::new(Code::Internal, "internal storage error; retry later")
}

impl Hub {
    /// Loads every stored room (profile, next seq, resume buffer) and starts its ticker.
    pub async fn load(
        store: Store,
        writer: HistoryWriter,
        rules: RoomRules,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        services: Services,
    ) -> anyhow::Result<Arc<Hub>> {
        let Services { callbacks, push_url, whip_url, link } = services;
        let RoomRules { chat: chat_cfg, limits, tick, user_limits, business } = rules;
        let hub = Arc::new(Hub {
            rooms: RwLock::new(HashMap::new()),
            chat_cfg,
            limits,
            pacing: pacing::Pacing::new(tick),
            user_limits,
            store: store.clone(),
            writer,
            tasks,
            shutdown,
            broadcast_seq: AtomicU64::new(now_ms()),
            rng: Mutex::new(SplitMix64::new(seed())),
            callbacks,
            app_filter: RwLock::new(None),
            business,
            activity: Mutex::new(HashMap::new()),
            gifts: RwLock::new(store.gifts().await?.into_iter().map(|g| (g.gift_id.clone(), g)).collect()),
            push_url,
            whip_url,
            mixer: std::sync::OnceLock::new(),
            link,
            chat_overlay: std::sync::OnceLock::new(),
        });
        let mut running: HashMap<String, LotteryRecord> =
            store.running_lotteries().await?.into_iter().map(|l| (l.room_id.clone(), l)).collect();
        for profile in store.list_rooms().await? {
            let lottery = running.remove(&profile.id);
            hub.install_stored(profile, lottery).await?;
        }
        hub.reload_filters().await.map_err(|r| anyhow::anyhow!(r.info))?;
        let ticking = hub.clone();
        hub.tasks.spawn(ticking.run_business());
        Ok(hub)
    }

    fn install(
        self: &Arc<Self>,
        profile: RoomProfile,
        next_seq: u64,
        restored: Vec<Arc<onair_core::message::ChatMessage>>,
        moderation: Moderation,
        admins: Vec<String>,
        biz: business::RoomBiz,
    ) -> Arc<Room> {
        let room = Arc::new(Room {
            id: profile.id.clone(),
            chat: Mutex::new(RoomChat::new(self.chat_cfg, next_seq, restored)),
            profile: Mutex::new(profile),
            members: Mutex::new(HashMap::new()),
            staged: Mutex::new(onair_core::stagger::Staged::new()),
            joins: AtomicU64::new(0),
            moderation: Mutex::new(moderation),
            admins: Mutex::new(admins.into_iter().collect()),
            limits: Mutex::new(UserLimits::new(self.user_limits)),
            filter: Mutex::new(None),
            marks: Mutex::new(HashMap::new()),
            delivery: tokio::sync::Mutex::new(()),
            profile_write: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            biz: Mutex::new(biz),
            popularity: self.business.popularity,
            owner: Mutex::new(if self.link.is_some() { Owner::Unknown } else { Owner::Local }),
            cl: self.link.as_ref().map(|l| RoomCluster::new(l.clone())),
            overlay: Mutex::new(None),
        });
        {
            // Two paths may install the same stored room at once in a cluster (a
            // request's `find` and the announcement of its creation): the first wins,
            // the other gets it and starts no second ticker.
            let mut rooms = self.rooms.write();
            if let Some(existing) = rooms.get(&room.id) {
                return existing.clone();
            }
            rooms.insert(room.id.clone(), room.clone());
        }
        metrics::gauge!("onair_rooms").set(self.rooms.read().len() as f64);
        let hub = self.clone();
        let ticking = room.clone();
        self.tasks.spawn(async move { hub.run_ticker(ticking).await });
        room
    }

    /// A room by id.
    pub fn get(&self, id: &str) -> Result<Arc<Room>, Rejection> {
        self.rooms.read().get(id).cloned().ok_or_else(|| room_not_found(id))
    }

    /// A room by id; in a cluster a room this node does not know yet is looked up in
    /// the shared store and loaded before the answer is "does not exist" (another
    /// node may have created it a moment ago, and its announcement is on the way).
    pub async fn find(self: &Arc<Self>, id: &str) -> Result<Arc<Room>, Rejection> {
        if let Ok(room) = self.get(id) {
            return Ok(room);
        }
        if self.link.is_none() {
            return Err(room_not_found(id));
        }
        match self.store.room(id).await.map_err(internal)? {
            Some(profile) => {
                let room = self.install_stored(profile, None).await.map_err(internal)?;
                // A lottery running there is part of the room's state here too.
                if let Err(r) = self.reload_lottery(&room).await {
                    tracing::warn!(room = %id, error = %r.info, "room loaded without its lottery");
                }
                Ok(room)
            }
            None => Err(room_not_found(id)),
        }
    }

    /// Every room, ordered by creation.
    pub fn list(&self) -> Vec<Arc<Room>> {
        let mut rooms: Vec<_> = self.rooms.read().values().cloned().collect();
        rooms.sort_by_key(|r| {
            let p = r.profile.lock();
            (p.created_at, p.id.clone())
        });
        rooms
    }

    /// Creates a room (custom id rules, or a generated `@TGS#…` id).
    pub async fn create(self: &Arc<Self>, req: NewRoom) -> Result<Arc<Room>, Rejection> {
        let id = match req.room_id {
            Some(id) => {
                validate_custom_id(&id)?;
                id
            }
            None => loop {
                let id = generate_id(&mut *self.rng.lock());
                if !self.rooms.read().contains_key(&id) {
                    break id;
                }
            },
        };
        let mut profile = RoomProfile::new(id.clone(), req.name, req.owner, now_ms());
        profile.introduction = req.introduction;
        profile.notification = req.notification;
        profile.face_url = req.face_url;
        profile.app_defined_data = req.app_defined_data.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        profile.attrs = req.attrs;
        profile.validate(&self.limits)?;
        if self.rooms.read().contains_key(&id) {
            return Err(Rejection::new(Code::RoomIdInUse, format!("room '{id}' already exists")));
        }
        match self.store.insert_room(&profile).await {
            Ok(()) => {}
            Err(onair_store::StoreError::Conflict(_)) => {
                return Err(Rejection::new(Code::RoomIdInUse, format!("room '{id}' already exists")));
            }
            Err(e) => return Err(internal(e)),
        }
        let biz = business::RoomBiz::new(&self.business, Default::default(), None);
        let room = self.install(profile, 1, Vec::new(), Moderation::default(), Vec::new(), biz);
        self.changed(&room.id, cluster::Part::Created);
        Ok(room)
    }

    /// Loads a stored room into this node (start, or another node created it).
    async fn install_stored(
        self: &Arc<Self>,
        profile: RoomProfile,
        lottery: Option<LotteryRecord>,
    ) -> Result<Arc<Room>, onair_store::StoreError> {
        let next_seq = self.store.max_seq(&profile.id).await? + 1;
        let restored = self.store.latest_messages(&profile.id, self.chat_cfg.resume_buffer).await?;
        let (mutes, bans) = self.store.load_moderation(&profile.id).await?;
        let moderation = Moderation::restore(mutes, bans, now_ms());
        let admins = self.store.room_admins(&profile.id).await?;
        let stats = self.store.room_stats(&profile.id).await?;
        let biz = business::RoomBiz::new(&self.business, stats, lottery);
        Ok(self.install(profile, next_seq, restored, moderation, admins, biz))
    }

    /// Closes a room on this node only: members get a `destroyed` event and are out.
    async fn close_here(&self, room: &Arc<Room>) -> bool {
        let _delivery = room.delivery.lock().await;
        if room.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        {
            // Only this incarnation: the id may already name a room created again.
            let mut rooms = self.rooms.write();
            if rooms.get(&room.id).is_some_and(|r| Arc::ptr_eq(r, room)) {
                rooms.remove(&room.id);
            }
        }
        metrics::gauge!("onair_rooms").set(self.rooms.read().len() as f64);
        self.chat_overlay_closed(room);
        let frame = Frame::from(onair_proto::encode_push::<Arc<onair_core::message::ChatMessage>>(
            &room.id,
            &[],
            &[RoomEvent::Destroyed { reason: "the room was destroyed".into() }],
        ));
        for (_, member) in room.members.lock().drain() {
            member.outbox.push(FrameClass::Essential, frame.clone());
        }
        room.wake.notify_one();
        true
    }

    /// Destroys a room: members get a `destroyed` event and are out; history is
    /// deleted; `operator` is named in the callback.
    pub async fn destroy_by(self: &Arc<Self>, id: &str, operator: &str, origin: &Origin) -> Result<(), Rejection> {
        let room = self.find(id).await?;
        let p = room.profile();
        let members: Vec<Value> =
            room.recent_members(usize::MAX).into_iter().map(|m| json!({"Member_Account": m.brief.user_id})).collect();
        if !self.close_here(&room).await {
            return Err(room_not_found(id));
        }
        self.store.delete_room(id).await.map_err(internal)?;
        self.changed(id, cluster::Part::Destroyed);
        self.callbacks.after(
            "Group.CallbackAfterGroupDestroyed",
            json!({"GroupId": id, "Type": "AVChatRoom", "Owner_Account": p.owner, "Name": p.name,
                   "MemberList": members, "Operator_Account": operator}),
            origin.clone(),
        );
        Ok(())
    }

    /// Changes profile fields and/or mute-all; members are told at once; `operator`
    /// is named in the callback.
    pub async fn modify_by(
        &self,
        id: &str,
        patch: ProfilePatch,
        operator: &str,
        origin: &Origin,
    ) -> Result<Arc<Room>, Rejection> {
        let room = self.get(id)?;
        let lists = self.word_lists(&room);
        let lists: Vec<&WordList> = lists.iter().map(|l| l.as_ref()).collect();
        for (field, text) in
            [("Name", &patch.name), ("Introduction", &patch.introduction), ("Notification", &patch.notification)]
        {
            if let Some(text) = text
                && filter::check(&lists, text).action.is_some()
            {
                return Err(Rejection::new(
                    Code::SensitiveWord,
                    format!("{field} contains a word that is not allowed"),
                ));
            }
        }
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        let (change, mute) = next.apply(patch, &self.limits)?;
        if next.info_seq != room.profile.lock().info_seq {
            next.info_changed_at = now_ms();
        }
        self.store.update_room(&next).await.map_err(internal)?;
        *room.profile.lock() = next;
        self.changed(&room.id, cluster::Part::Profile);
        if change != Default::default() {
            let mut body = json!({"GroupId": id, "Type": "AVChatRoom", "Operator_Account": operator});
            if let Value::Object(map) = &mut body {
                for (key, value) in [
                    ("Name", &change.name),
                    ("Introduction", &change.introduction),
                    ("Notification", &change.notification),
                    ("FaceUrl", &change.face_url),
                ] {
                    if let Some(v) = value {
                        map.insert(key.into(), Value::from(v.clone()));
                    }
                }
                if let Some(data) = &change.app_defined_data {
                    let list: Vec<Value> = data.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
                    map.insert("UserDefinedDataList".into(), Value::from(list));
                }
            }
            self.callbacks.after("Group.CallbackAfterGroupInfoChanged", body, origin.clone());
            room.push_event(RoomEvent::Profile(change));
        }
        if let Some(on) = mute {
            room.push_event(RoomEvent::MuteAll { on });
        }
        drop(_w);
        Ok(room)
    }

    /// Writes group attributes (modify / set / delete / clear); members get the full
    /// set; `operator` is named in the callback.
    pub async fn write_attrs_by(
        &self,
        id: &str,
        op: AttrWrite,
        given: BTreeMap<String, String>,
        operator: &str,
        origin: &Origin,
    ) -> Result<BTreeMap<String, String>, Rejection> {
        let room = self.get(id)?;
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        let attrs = write_attrs(&next.attrs, op, given, &self.limits)?;
        if attrs == next.attrs {
            return Ok(attrs);
        }
        next.attrs = attrs.clone();
        next.info_seq += 1;
        next.info_changed_at = now_ms();
        self.store.update_room(&next).await.map_err(internal)?;
        *room.profile.lock() = next;
        self.changed(&room.id, cluster::Part::Profile);
        let option = match op {
            AttrWrite::Modify => "modify",
            AttrWrite::Set => "set",
            AttrWrite::Delete => "delete",
            AttrWrite::Clear => "clear",
        };
        let list: Vec<Value> = attrs.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        self.callbacks.after(
            "Group.CallbackAfterGroupAttrChanged",
            json!({"GroupId": id, "Type": "AVChatRoom", "Operator_Account": operator, "OptionType": option, "GroupAttr": list}),
            origin.clone(),
        );
        room.push_event(RoomEvent::Attrs { attrs: attrs.clone() });
        Ok(attrs)
    }

    /// Sends a message on behalf of a user (admin API) and waits for its outcome.
    pub async fn send_as_with(
        self: &Arc<Self>,
        id: &str,
        msg: Outgoing,
        ctx: SendCtx,
    ) -> Result<SendResult, Rejection> {
        let room = self.find(id).await?;
        let (tx, rx) = oneshot::channel();
        self.send(&room, Reply::Api(tx), msg, ctx).await?;
        rx.await.map_err(|_| Rejection::new(Code::Internal, "the room closed before the message was decided"))?
    }

    /// The one path of every user message: mute-all, the before-send callback
    /// (which may rewrite, refuse or silently drop it), then the room's core.
    pub async fn send(&self, room: &Arc<Room>, reply: Reply, mut msg: Outgoing, ctx: SendCtx) -> Result<(), Rejection> {
        let result = self.send_checked(room, reply, &mut msg, &ctx).await;
        if let Err(rejection) = &result {
            self.exception(room, &msg, &ctx, rejection);
        }
        result
    }

    async fn send_checked(
        &self,
        room: &Arc<Room>,
        reply: Reply,
        msg: &mut Outgoing,
        ctx: &SendCtx,
    ) -> Result<(), Rejection> {
        // Gift (and other server-drawn) custom messages are the server's own: the
        // pages show them as real gifts. Users may not author them; the backend
        // (`/v4`, the admin API: Platform::RestApi) and the server itself may.
        if ctx.origin.platform != admission::Platform::RestApi
            && let Some(desc) = onair_core::message::server_reserved_desc(&msg.body)
        {
            return Err(Rejection::new(
                Code::NoPermission,
                format!("TIMCustomElem Desc '{desc}' is reserved for messages the server makes"),
            ));
        }
        // The computed level is stamped on every message; an app-assigned level
        // (profile) acts as a floor.
        msg.sender.level = msg.sender.level.max(self.level_of(&msg.sender.user_id));
        let now = now_ms();
        // The facts, each read under its own lock (none is held across the next).
        let (banned, muted_until) = {
            let moderation = room.moderation.lock();
            (moderation.banned(&msg.sender.user_id, now).is_some(), moderation.muted_until(&msg.sender.user_id, now))
        };
        let facts = admission::Facts {
            room_closed: room.is_closed(),
            room_id: &room.id,
            mute_all: room.profile.lock().mute_all,
            manages: ctx.privileged,
            banned,
            muted_until,
            platform: &ctx.origin.platform,
            ask_backend: self.callbacks.enabled() && !ctx.forbid_before,
            now,
        };
        let verdict = admission::admit(
            &facts,
            msg,
            |m| {
                let fingerprint = limits::fingerprint(&body_text(&m.body));
                room.limits
                    .lock()
                    .check(&m.sender.user_id, fingerprint, now)
                    .map_err(|v| Rejection::new(Code::SenderLimit, v.message()))
            },
            |m| self.screen(room, m),
        )?;
        let ask_backend = match verdict {
            admission::Verdict::DropSilently => {
                reply.resolve(SendResult { seq: 0, time: now / 1000, drop_reason: String::new() });
                return Ok(());
            }
            admission::Verdict::Submit { ask_backend } => ask_backend,
        };
        if ask_backend {
            let verdict = self
                .callbacks
                .before_send(
                    BeforeSend {
                        group_id: &room.id,
                        from: &msg.sender.user_id,
                        operator: &ctx.operator,
                        random: msg.random,
                        body: &msg.body,
                        cloud_custom_data: &msg.cloud_custom_data,
                    },
                    &ctx.origin,
                )
                .await;
            match verdict {
                SendVerdict::Allow { body, cloud_custom_data } => {
                    if let Some(body) = body {
                        msg.body = body;
                    }
                    if let Some(data) = cloud_custom_data {
                        msg.cloud_custom_data = data;
                    }
                }
                SendVerdict::Reject => {
                    return Err(Rejection::new(Code::CallbackRejected, "the message was refused by the app backend"));
                }
                SendVerdict::Drop => {
                    reply.resolve(SendResult { seq: 0, time: now_ms() / 1000, drop_reason: String::new() });
                    return Ok(());
                }
            }
        }
        room.submit(Ticket { reply, ctx: Arc::new(ctx.clone()) }, msg.clone())
    }

    fn exception(&self, room: &Room, msg: &Outgoing, ctx: &SendCtx, rejection: &Rejection) {
        self.callbacks.after(
            "Group.CallbackSendMsgException",
            json!({
                "GroupId": room.id, "Type": "AVChatRoom", "From_Account": msg.sender.user_id,
                "Operator_Account": ctx.operator, "Random": msg.random, "OnlineOnlyFlag": 0,
                "MsgBody": msg.body, "CloudCustomData": msg.cloud_custom_data,
                "ErrorCode": rejection.code.number(), "ErrorInfo": rejection.info,
            }),
            ctx.origin.clone(),
        );
    }

    /// Tells the backend about a membership change (logged-in users only):
    /// `Group.CallbackAfterNewMemberJoin`, or `Group.CallbackAfterMemberExit` with the
    /// cloud's `ExitType` (`Quit` for a member who left, `Kicked` for one an operator
    /// removed, a ban included).
    pub fn member_changed(&self, room_id: &str, user_id: &str, change: MemberChange, origin: &Origin) {
        match change {
            MemberChange::Joined => self.callbacks.after(
                "Group.CallbackAfterNewMemberJoin",
                json!({"GroupId": room_id, "Type": "AVChatRoom", "JoinType": "Apply", "Operator_Account": user_id,
                       "NewMemberList": [{"Member_Account": user_id}]}),
                origin.clone(),
            ),
            MemberChange::Quit => self.member_exit(room_id, user_id, "Quit", user_id, origin),
            MemberChange::Kicked { operator } => self.member_exit(room_id, user_id, "Kicked", &operator, origin),
        }
    }

    fn member_exit(&self, room_id: &str, user_id: &str, exit_type: &str, operator: &str, origin: &Origin) {
        self.callbacks.after(
            "Group.CallbackAfterMemberExit",
            json!({"GroupId": room_id, "Type": "AVChatRoom", "ExitType": exit_type, "Operator_Account": operator,
                   "ExitMemberList": [{"Member_Account": user_id}]}),
            origin.clone(),
        );
    }

    /// The webhook client.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// A system notification to one room's online members.
    pub fn notify_room(&self, id: &str, content: String) -> Result<(), Rejection> {
        self.get(id)?.push_event(RoomEvent::Notification { content });
        Ok(())
    }

    /// A message to every room of the app; returns the broadcast seq and room count.
    pub fn broadcast(
        &self,
        from: String,
        body: Vec<MsgElem>,
        cloud_custom_data: String,
    ) -> Result<(u64, usize), Rejection> {
        validate_body(&body, &cloud_custom_data)?;
        let seq = self.broadcast_seq.fetch_add(1, Ordering::AcqRel) + 1;
        let rooms = self.list();
        let time = now_ms() / 1000;
        for room in &rooms {
            room.push_event(RoomEvent::Broadcast {
                from: from.clone(),
                body: body.clone(),
                cloud_custom_data: cloud_custom_data.clone(),
                seq,
                time,
            });
        }
        Ok((seq, rooms.len()))
    }
}

/// The after-send callback's `MsgId` (newer cloud docs add it): an opaque string
/// unique per room message, built from what identifies it here (seq, second, random)
/// so every node that fires the callback names a message the same way.
pub(crate) fn msg_id(m: &onair_core::message::ChatMessage) -> String {
    format!("{}-{}-{}", m.seq, m.time_secs(), m.random)
}
