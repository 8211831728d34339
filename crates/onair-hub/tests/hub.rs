//! The hub in process: a temporary SQLite store, real room tickers, and outboxes read
//! directly instead of sockets. Milliseconds per test, no binary, no port: the send
//! path, delivery rounds, moderation and live state as the faces drive them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use onair_core::admission::Platform;
use onair_core::chat::ChatConfig;
use onair_core::event::MemberBrief;
use onair_core::limits::LimitsConfig;
use onair_core::message::{MsgElem, Outgoing, Priority, SenderProfile, TextElem};
use onair_core::room::RoomLimits;
use onair_core::tick::TickPolicy;
use onair_core::{Code, Rejection};
use onair_hub::callbacks::{CallbackConfig, Callbacks, Origin};
use onair_hub::outbox::Outbox;
use onair_hub::{BusinessConfig, Hub, NewRoom, Reply, Room, RoomRules, SendCtx, SendResult, Services};
use onair_store::{HistoryWriter, Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Fixture {
    hub: Arc<Hub>,
    store: Store,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn hub() -> Fixture {
    hub_with(TickPolicy { min_ms: 10, max_ms: 50, writes_per_sec: Some(1_000_000), ..TickPolicy::default() }).await
}

async fn hub_with(tick: TickPolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let writer = HistoryWriter::spawn(store.clone(), 256);
    let shutdown = CancellationToken::new();
    let rules = RoomRules {
        user_limits: LimitsConfig::default(),
        chat: ChatConfig::default(),
        limits: RoomLimits::default(),
        tick,
        business: BusinessConfig::default(),
    };
    let services = Services {
        callbacks: Callbacks::start(CallbackConfig::default(), 1_400_000_000),
        push_url: None,
        whip_url: None,
        link: None,
    };
    let hub = Hub::load(store.clone(), writer, rules, TaskTracker::new(), shutdown.clone(), services).await.unwrap();
    Fixture { hub, store, _dir: dir, shutdown }
}

async fn room(hub: &Arc<Hub>, id: &str, owner: &str) -> Arc<Room> {
    hub.create(NewRoom { room_id: Some(id.into()), owner: owner.into(), ..Default::default() }).await.unwrap()
}

/// A member connection: its outbox, joined to `room`.
async fn member(room: &Room, conn: u64, user: &str) -> Arc<Outbox> {
    let outbox = Arc::new(Outbox::new(1024, Duration::from_secs(10)));
    let brief = MemberBrief { user_id: user.into(), nick: user.into(), avatar: String::new(), level: 0 };
    room.join(conn, &outbox, Some(brief), None, |_, _| "{}".into()).await.unwrap();
    outbox
}

/// Everything a member has received until `pred` holds for one frame (or 5 s pass).
async fn read_until(outbox: &Outbox, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut frames = Vec::new();
        let mut marks = Vec::new();
        outbox.take(&mut frames, &mut marks);
        for f in frames {
            let v: Value = serde_json::from_str(f.frame.as_str()).unwrap();
            let hit = pred(&v);
            seen.push(v);
            if hit {
                return seen;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not received; saw {seen:?}");
        let _ = tokio::time::timeout(Duration::from_millis(100), outbox.ready()).await;
    }
}

fn text(user: &str, random: u32, t: &str) -> Outgoing {
    Outgoing {
        sender: SenderProfile { user_id: user.into(), nick: user.into(), avatar: String::new(), level: 0 },
        priority: Priority::Normal,
        random,
        body: vec![MsgElem::Text(TextElem { text: t.into() })],
        cloud_custom_data: String::new(),
    }
}

fn client_ctx(user: &str, privileged: bool) -> SendCtx {
    SendCtx {
        operator: user.into(),
        origin: Origin { platform: Platform::Client("Web".into()), client_ip: "127.0.0.1".into() },
        privileged,
        forbid_before: false,
        forbid_after: false,
        system: false,
    }
}

/// Sends as a client and waits for the outcome (the ack a WebSocket sender gets).
async fn send(hub: &Hub, room: &Arc<Room>, msg: Outgoing, ctx: SendCtx) -> Result<SendResult, Rejection> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    hub.send(room, Reply::Api(tx), msg, ctx).await?;
    tokio::time::timeout(Duration::from_secs(5), rx).await.unwrap().unwrap()
}

fn has_text(v: &Value, needle: &str) -> bool {
    v.to_string().contains(needle)
}

#[tokio::test]
async fn a_message_is_acked_with_a_seq_and_pushed_to_every_member() {
    let f = hub().await;
    let r = room(&f.hub, "r1", "anchor").await;
    let alice = member(&r, 1, "alice").await;
    let bob = member(&r, 2, "bob").await;
    let first = send(&f.hub, &r, text("alice", 1, "hello room"), client_ctx("alice", false)).await.unwrap();
    assert_eq!(first.seq, 1);
    assert!(first.drop_reason.is_empty());
    read_until(&bob, |v| has_text(v, "hello room")).await;
    read_until(&alice, |v| has_text(v, "hello room")).await;
    let second = send(&f.hub, &r, text("bob", 2, "hi"), client_ctx("bob", false)).await.unwrap();
    assert_eq!(second.seq, 2, "seqs are consecutive per room");
    // The same Random within the window is a duplicate: acked with the first seq.
    let again = send(&f.hub, &r, text("alice", 1, "hello room"), client_ctx("alice", false)).await.unwrap();
    assert_eq!(again.seq, 1);
}

#[tokio::test]
async fn moderation_runs_in_the_products_order() {
    let f = hub().await;
    let r = room(&f.hub, "r2", "anchor").await;
    let _viewer = member(&r, 1, "carol").await;
    f.hub.mute("r2", &["carol".into()], 60).await.unwrap();
    let err = send(&f.hub, &r, text("carol", 1, "x"), client_ctx("carol", false)).await.unwrap_err();
    assert_eq!(err.code, Code::Muted);
    assert!(err.info.contains("more seconds"), "{}", err.info);
    // A ban outranks the mute.
    f.hub.ban("r2", &["carol".into()], 60, "spam", "anchor", &onair_hub::callbacks::Origin::rest()).await.unwrap();
    let err = send(&f.hub, &r, text("carol", 2, "x"), client_ctx("carol", false)).await.unwrap_err();
    assert_eq!(err.code, Code::NoPermission);
    // Mute-all stops members but not those who manage the room.
    let patch = onair_core::room::ProfilePatch { mute_all: Some(true), ..Default::default() };
    f.hub.modify_by("r2", patch, "anchor", &onair_hub::callbacks::Origin::rest()).await.unwrap();
    let err = send(&f.hub, &r, text("dave", 3, "x"), client_ctx("dave", false)).await.unwrap_err();
    assert_eq!(err.code, Code::Muted);
    let role = r.role_of("anchor", false);
    assert!(role.manages());
    let ok = send(&f.hub, &r, text("anchor", 4, "quiet please"), client_ctx("anchor", role.manages())).await;
    assert!(ok.unwrap().seq > 0);
}

#[tokio::test]
async fn only_the_server_api_skips_the_word_lists() {
    let f = hub().await;
    let r = room(&f.hub, "r3", "anchor").await;
    let list = onair_core::filter::WordList::new(["forbidden"], onair_core::filter::FilterAction::Reject).unwrap();
    f.hub.seed_app_filter(list);
    let err = send(&f.hub, &r, text("eve", 1, "a forbidden word"), client_ctx("eve", false)).await.unwrap_err();
    assert_eq!(err.code, Code::SensitiveWord);
    // A client that calls its platform RESTAPI is still a client.
    let mut spoof = client_ctx("eve", false);
    spoof.origin.platform = Platform::Client("RESTAPI".into());
    let err = send(&f.hub, &r, text("eve", 2, "a forbidden word"), spoof).await.unwrap_err();
    assert_eq!(err.code, Code::SensitiveWord);
    let ok = send(&f.hub, &r, text("eve", 3, "a forbidden word"), SendCtx::admin("administrator")).await.unwrap();
    assert!(ok.seq > 0);
}

#[tokio::test]
async fn live_state_moves_and_is_pushed_to_members() {
    let f = hub().await;
    let r = room(&f.hub, "r4", "anchor").await;
    let viewer = member(&r, 1, "frank").await;
    f.hub.set_state("r4", "live").await.unwrap();
    read_until(&viewer, |v| has_text(v, "\"live\"")).await;
    assert_eq!(r.profile().state, "live");
    let err = f.hub.set_state("r4", "upcoming").await.unwrap_err();
    assert_eq!(err.code, Code::InvalidTransition);
}

#[tokio::test]
async fn a_gift_moves_coins_once_and_is_shown_to_the_room() {
    let f = hub().await;
    let r = room(&f.hub, "r5", "anchor").await;
    let viewer = member(&r, 1, "gina").await;
    let rocket = onair_core::gifts::Gift {
        gift_id: "rocket".into(),
        name: "Rocket".into(),
        price: 100,
        icon: String::new(),
        animation: String::new(),
    };
    f.hub.put_gift(rocket).await.unwrap();
    f.store.top_up("gina", 250, "t1", "administrator").await.unwrap();
    let sender = SenderProfile { user_id: "gina".into(), nick: "Gina".into(), avatar: String::new(), level: 0 };
    let paid = f.hub.send_gift("r5", sender.clone(), "rocket", 2, "k1").await.unwrap();
    assert_eq!(paid.balance, 50);
    assert!(!paid.replayed);
    // The same request again (a client retry) moves nothing and answers the first receipt.
    let again = f.hub.send_gift("r5", sender.clone(), "rocket", 2, "k1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.ledger_id, paid.ledger_id);
    assert_eq!(f.store.wallet("gina").await.unwrap().balance, 50);
    assert_eq!(f.store.wallet("anchor").await.unwrap().earnings, 200);
    let err = f.hub.send_gift("r5", sender, "rocket", 1, "k2").await.unwrap_err();
    assert_eq!(err.code, Code::InsufficientBalance);
    read_until(&viewer, |v| has_text(v, "rocket")).await;
}

#[tokio::test]
async fn frequency_control_cuts_the_lowest_priority_first() {
    let f = hub().await;
    let r = room(&f.hub, "r6", "anchor").await;
    let _viewer = member(&r, 1, "hank").await;
    // 120 low-priority messages and 20 high ones offered at once: the room takes 40/s,
    // so lows are cut while every high one is delivered.
    let mut waiters = Vec::new();
    for i in 0..140u32 {
        let (priority, user) = if i % 7 == 0 { (Priority::High, "vip") } else { (Priority::Low, "fan") };
        let mut msg = text(user, i + 1, "x");
        msg.priority = priority;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Admins skip the per-user limits, so only frequency control decides here.
        f.hub.send(&r, Reply::Api(tx), msg, SendCtx::admin(user)).await.unwrap();
        waiters.push((priority, rx));
    }
    let (mut high_ok, mut low_cut) = (0, 0);
    for (priority, rx) in waiters {
        let outcome = tokio::time::timeout(Duration::from_secs(10), rx).await.unwrap().unwrap().unwrap();
        match (priority, outcome.drop_reason.as_str()) {
            (Priority::High, "") => high_ok += 1,
            (Priority::Low, onair_hub::DROP_FREQUENCY) => low_cut += 1,
            _ => {}
        }
    }
    assert_eq!(high_ok, 20, "every high-priority message is delivered");
    assert!(low_cut > 0, "low-priority messages beyond the rate are cut");
}

/// What the media service would receive from the room layer for chat outputs.
#[derive(Default)]
struct Sink {
    enabled: std::sync::Mutex<Vec<(String, bool)>>,
    texts: std::sync::Mutex<Vec<(String, String)>>,
}

impl onair_media::overlay::ChatOverlaySink for Sink {
    fn set_enabled(&self, stream: &str, on: bool) {
        self.enabled.lock().unwrap().push((stream.into(), on));
    }
    fn set_text(&self, stream: &str, text: &str) {
        self.texts.lock().unwrap().push((stream.into(), text.into()));
    }
}

#[tokio::test]
async fn chat_in_the_picture_draws_only_delivered_messages_within_its_bounds() {
    let f = hub().await;
    let r = room(&f.hub, "pic", "anchor").await;
    let err = f.hub.set_chat_overlay_enabled("pic", true).await.unwrap_err();
    assert_eq!(err.code, Code::Conflict, "no media service yet: {}", err.info);
    let sink = Arc::new(Sink::default());
    let cfg = onair_media::overlay::ChatBoardConfig { max_lines: 2, max_chars: 30, per_sec: 1.0, hold_ms: 60_000 };
    f.hub.set_chat_overlay(sink.clone(), cfg);
    f.hub.set_stream("pic", "cam").await.unwrap();
    let v = f.hub.set_chat_overlay_enabled("pic", true).await.unwrap();
    assert_eq!((v["enabled"].as_bool(), v["output"].as_str()), (Some(true), Some("cam_chat")));
    assert_eq!(sink.enabled.lock().unwrap().as_slice(), &[("cam".to_string(), true)]);

    let list = onair_core::filter::WordList::new(["forbidden"], onair_core::filter::FilterAction::Reject).unwrap();
    f.hub.seed_app_filter(list);
    assert!(send(&f.hub, &r, text("eve", 1, "a forbidden word"), client_ctx("eve", false)).await.is_err());
    send(&f.hub, &r, text("ann", 2, "hello\nworld"), client_ctx("ann", false)).await.unwrap();
    let last = || sink.texts.lock().unwrap().last().cloned().unwrap_or_default();
    assert_eq!(last(), ("cam".to_string(), "ann: hello world".to_string()), "cleaned, one line");
    // The burst (2) is spent: more messages are delivered but not drawn.
    for i in 0..3 {
        send(&f.hub, &r, text("bob", 10 + i, &format!("m{i}")), client_ctx("bob", false)).await.unwrap();
    }
    let v = f.hub.chat_overlay_view("pic").unwrap();
    assert_eq!(v["lines"], serde_json::json!(["ann: hello world", "bob: m0"]));
    assert_eq!(v["skipped"], 2);
    assert!(!sink.texts.lock().unwrap().iter().any(|(_, t)| t.contains("forbidden")), "refused: never drawn");

    // The stream is renamed: the output follows; switched off: it goes.
    f.hub.set_stream("pic", "cam2").await.unwrap();
    f.hub.set_chat_overlay_enabled("pic", false).await.unwrap();
    assert_eq!(
        sink.enabled.lock().unwrap().as_slice(),
        &[
            ("cam".to_string(), true),
            ("cam".to_string(), false),
            ("cam2".to_string(), true),
            ("cam2".to_string(), false)
        ]
    );
}

/// Seqs of the messages in the pushes of `frames`, and the seqs acked, in the order
/// received: `(is_ack, seq)`.
fn seqs_in(frames: &[Value]) -> Vec<(bool, u64)> {
    let mut out = Vec::new();
    for v in frames {
        match v["op"].as_str() {
            Some("push") => {
                for m in v["msgs"].as_array().into_iter().flatten() {
                    out.push((false, m["seq"].as_u64().unwrap()));
                }
            }
            Some("ack") => out.push((true, v["seq"].as_u64().unwrap())),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn a_stretched_tick_writes_members_in_turns_each_message_once_in_order() {
    // 1,000 writes/s for 60 members: a 60 ms tick, cut into 12 slots of 5 ms.
    let policy =
        TickPolicy { min_ms: 10, max_ms: 200, writes_per_sec: Some(1_000), slot_ms: 5, ..TickPolicy::default() };
    assert_eq!(policy.tick(60, 0.0).slots.groups, 12);
    let f = hub_with(policy).await;
    let r = room(&f.hub, "big", "anchor").await;
    let mut viewers = Vec::new();
    for conn in 0..51 {
        viewers.push(member(&r, conn, &format!("v{conn}")).await);
    }
    // Nine senders (five messages each: within the per-user burst), as WebSocket
    // connections are: their acks go to their outboxes.
    const SENDERS: u64 = 9;
    let senders: Vec<Arc<Outbox>> = {
        let mut s = Vec::new();
        for conn in 100..100 + SENDERS {
            s.push(member(&r, conn, &format!("s{conn}")).await);
        }
        s
    };
    let total = 45u64;
    let mut late = None;
    for i in 0..total {
        let who = (i % SENDERS) as usize;
        let conn = 100 + who as u64;
        let user = format!("s{conn}");
        let reply = Reply::Ws { conn, outbox: senders[who].clone(), id: Value::from(i) };
        f.hub.send(&r, reply, text(&user, i as u32 + 1, &format!("m{i}")), client_ctx(&user, false)).await.unwrap();
        if i == total / 2 {
            // A member joining mid-stream gets what is delivered after its join, once.
            late = Some(member(&r, 200, "late").await);
        }
        // 33 msgs/s: under the room's 40/s, so frequency control cuts nothing.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.view().next_seq, total + 1, "nothing was cut by frequency control");
    let last = |v: &Value| v["msgs"].as_array().is_some_and(|m| m.iter().any(|m| m["seq"].as_u64() == Some(total)));
    for (i, viewer) in viewers.iter().enumerate() {
        let got: Vec<u64> = seqs_in(&read_until(viewer, last).await).into_iter().map(|(_, s)| s).collect();
        assert_eq!(got, (1..=total).collect::<Vec<_>>(), "viewer {i}: every message once, in order");
    }
    let late_got: Vec<u64> =
        seqs_in(&read_until(late.as_ref().unwrap(), last).await).into_iter().map(|(_, s)| s).collect();
    let first = late_got[0];
    assert_eq!(late_got, (first..=total).collect::<Vec<_>>(), "the late joiner: no gap, no repeat");
    for (who, sender) in senders.iter().enumerate() {
        let acked = |v: &Value| {
            v["op"] == "ack" && v["id"].as_u64().is_some_and(|id| id + SENDERS >= total && id % SENDERS == who as u64)
        };
        let got = seqs_in(&read_until(sender, acked).await);
        let pushed: Vec<u64> = got.iter().filter(|(ack, _)| !ack).map(|(_, s)| *s).collect();
        assert_eq!(pushed, (1..).take(pushed.len()).collect::<Vec<_>>(), "sender {who}: pushes in order");
        for (at, (ack, seq)) in got.iter().enumerate() {
            if *ack {
                assert!(got[..at].contains(&(false, *seq)), "sender {who}: push of {seq} before its ack: {got:?}");
            }
        }
    }
}
