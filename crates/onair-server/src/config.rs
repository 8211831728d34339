//! Configuration: one typed struct, loaded once in `main` from defaults, an optional
//! TOML file and `ONAIR_…` environment variables (nested keys with `__`, e.g.
//! `ONAIR_HTTP__LISTEN=127.0.0.1:9000`), then passed down.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use onair_core::chat::ChatConfig;
use onair_core::freq::FreqConfig;
use onair_core::limits::LimitsConfig;
use onair_core::presence::PresenceConfig;
use onair_core::room::RoomLimits;
use onair_core::tick::TickPolicy;
use serde::{Deserialize, Serialize};

use onair_hub::callbacks::CallbackConfig;
use onair_media_server::{MediaConfig, RtmpConfig};

/// Everything `onair serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where the embedded database lives (created if missing).
    pub data_dir: PathBuf,
    /// HTTP + WebSocket listener.
    pub http: HttpConfig,
    /// The app (SDKAppID, secret key, admins). Empty = created on first start and stored.
    pub app: AppConfig,
    /// Room chat behaviour.
    pub chat: ChatSettings,
    /// Byte limits of room profiles and attributes.
    pub limits: LimitSettings,
    /// Webhooks to the business backend.
    pub callback: CallbackConfig,
    /// The app's sensitive-word list loaded at start.
    pub filter: FilterSettings,
    /// Live state.
    pub live: LiveSettings,
    /// Gift combos.
    pub gifts: GiftSettings,
    /// Like aggregation.
    pub likes: onair_core::likes::LikeConfig,
    /// User level weights.
    pub levels: onair_core::level::LevelWeights,
    /// Room popularity weights.
    pub popularity: PopularitySettings,
    /// RTMP listener (push and play).
    pub rtmp: RtmpConfig,
    /// Live video: keys, GOP cache, viewer queues, stream callbacks.
    pub media: MediaConfig,
    /// `[webrtc]`: WHIP publish and WHEP play on one UDP port.
    pub webrtc: onair_media_server::webrtc::WebRtcSettings,
    /// `[demo]`: guest logins and a demo room for trying the web app.
    pub demo: DemoSettings,
    /// `[store]`: which database (the embedded SQLite by default, or PostgreSQL).
    pub store: StoreSettings,
    /// `[cluster]`: several nodes sharing rooms through Redis.
    pub cluster: ClusterSettings,
    /// `[tls]`: trust for the backends OnAir calls (webhooks, PostgreSQL, Redis).
    pub tls: TlsSettings,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates (a private CA of your backends). The HTTP
    /// client (webhooks, stream callbacks, edge pulls) trusts them besides the
    /// system's roots; PostgreSQL with `sslmode=verify-ca`/`verify-full` uses it unless
    /// the URL names `sslrootcert`; `rediss://` trusts only it when set. Empty = the
    /// system's roots only.
    pub ca_file: String,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// Empty = SQLite in `data_dir`; `postgres://user@host/db` = PostgreSQL (required
    /// by a cluster, whose nodes must share one database).
    pub url: String,
}

/// `[cluster]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// Empty = one node with an in-process bus; `redis://host:port` = share rooms
    /// with every node on the same Redis and prefix.
    pub redis: String,
    /// This node's name in the cluster (empty = a random one per start).
    pub node_id: String,
    /// Prefix of every Redis key and channel, so several clusters can share a Redis.
    pub prefix: String,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings { redis: String::new(), node_id: String::new(), prefix: "onair".into() }
    }
}

/// `[demo]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoSettings {
    /// Guest logins minted by the server (`POST /api/v1/demo/guest`) and a demo room
    /// when there is none. Unset = on when no `[app]` is configured (a zero-config
    /// start), off otherwise; `onair serve --demo` turns it on; `false` turns it off.
    pub enabled: Option<bool>,
    /// Guest logins one client address may mint per minute.
    pub guests_per_minute: u32,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings { enabled: None, guests_per_minute: 10 }
    }
}

/// `[live]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    /// A paused room (stream gone) ends after this long.
    pub pause_grace_secs: u64,
    /// Validity of a co-host's signed push URL (signed with `[media] push_key`).
    pub push_valid_secs: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings { pause_grace_secs: 300, push_valid_secs: 86_400 }
    }
}

/// `[gifts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GiftSettings {
    /// Merge at most this many repeated clicks into one event.
    pub combo_batch: u64,
    /// Emit merged clicks at least this often.
    pub combo_window_ms: u64,
    /// A combo ends after this long without a click.
    pub combo_end_ms: u64,
}

impl Default for GiftSettings {
    fn default() -> Self {
        GiftSettings { combo_batch: 20, combo_window_ms: 1_000, combo_end_ms: 1_000 }
    }
}

/// `[popularity]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PopularitySettings {
    /// Points per online member.
    pub online: f64,
    /// Points per recent message.
    pub message: f64,
    /// Points per recent like.
    pub like: f64,
    /// Points per recent gift coin.
    pub gift_coin: f64,
    /// Half-life of recent activity.
    pub half_life_secs: u64,
}

impl Default for PopularitySettings {
    fn default() -> Self {
        let w = onair_core::popularity::PopularityWeights::default();
        PopularitySettings {
            online: w.online,
            message: w.message,
            like: w.like,
            gift_coin: w.gift_coin,
            half_life_secs: w.half_life_ms / 1000,
        }
    }
}

/// `[filter]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterSettings {
    /// A file with one word per line (`#` starts a comment line); empty = none. Used
    /// when no list was stored through the API yet.
    pub words_file: String,
    /// `reject` (80001 to the sender), `mask` (`***`) or `drop` (silently).
    pub action: String,
}

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings { words_file: String::new(), action: "reject".into() }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Address to listen on (port 0 = any free port; the chosen one is printed).
    pub listen: String,
    /// Most concurrent WebSocket connections; beyond, upgrades get 503.
    pub max_connections: usize,
    /// Kernel send buffer per accepted socket, bytes (0 = the OS default, which
    /// auto-grows to megabytes and hides a stalled client for seconds).
    pub socket_send_buffer: usize,
    /// A socket whose peer acknowledges nothing we send for this long is closed by the
    /// kernel (`TCP_USER_TIMEOUT`, Linux): frees an HTTP-FLV viewer that never reads
    /// (its body is never polled again, so no timer of ours would see it). 0 = off.
    pub stall_timeout_secs: u64,
    /// A request head (request line and headers) must arrive whole within this.
    pub header_read_timeout_secs: u64,
    /// An HTTP connection that moves no byte either way for this long is closed
    /// (idle keep-alive; WebSockets have `[chat] idle_timeout_secs`).
    pub keepalive_timeout_secs: u64,
    /// Open sockets from one client address (0 = no cap). A trusted proxy's own
    /// address is not capped (it carries many clients).
    pub max_connections_per_ip: usize,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` /
    /// `X-Real-IP` name the client: per-client limits and callbacks' `ClientIP` then
    /// see the client, not the proxy. Empty (the default): no header is believed.
    pub trusted_proxies: Vec<String>,
    /// Open sockets in all (HTTP and WebSocket); beyond, new ones are closed at once.
    /// Clamped under the open-file limit (`ulimit -n`) less 256.
    pub max_open_connections: usize,
    /// Of `max_open_connections`, the last ones are kept for `/healthz`, `/metrics`
    /// and the admin API (`/api/v1/admin/…`): other requests on them get 503.
    pub reserved_connections: usize,
}

/// `[app]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AppConfig {
    /// SDKAppID; 0 = use the stored one or create one.
    pub sdkappid: u64,
    /// Secret key for UserSigs; empty = use the stored one or create one.
    pub secret_key: String,
    /// App admin accounts (may call the admin API and moderate any room).
    pub admins: Vec<String>,
    /// Optional static token for the native admin API (`Authorization: Bearer …`);
    /// empty = UserSig only.
    pub api_token: String,
}

/// `[chat]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// User messages delivered per room per second (frequency control).
    pub rate_per_sec: u32,
    /// A message not selected within this long is cut.
    pub max_wait_ms: u64,
    /// Delivery tick: one push frame per room per tick at most.
    pub tick_ms: u64,
    /// Longest tick a big room may stretch to (see `fanout_cpu_share`).
    pub max_tick_ms: u64,
    /// Share of one core a room's fan-out may use: a big room's tick grows (up to
    /// `max_tick_ms`) so that members × the measured CPU cost per socket write, per
    /// tick, stays within it, and each write batches more messages.
    pub fanout_cpu_share: f64,
    /// Delivery delay (tick + members × cost per write) a room's tick is kept under
    /// unless `fanout_cpu_share` needs a longer one (then `/metrics` counts it in
    /// `onair_fanout_over_target_rounds_total`).
    pub fanout_latency_target_ms: u64,
    /// A fixed budget instead of the measured cost (0 = off, the default): socket
    /// writes per second one room may cause, the tick growing above `members / tick_ms`.
    pub fanout_writes_per_sec: u64,
    /// Slot of a stretched tick, ms: a big room runs a round every slot and writes one
    /// group of its members per slot, each member once per tick (0 = every member
    /// every round, as small rooms are).
    pub fanout_slot_ms: u64,
    /// Messages a newcomer gets on join (≤ 100).
    pub history_on_join: usize,
    /// Only history younger than this is replayed on join.
    pub history_max_age_secs: u64,
    /// Messages per room kept in memory for resume.
    pub resume_buffer: usize,
    /// Recent-members list size (≤ 1000).
    pub member_list_size: usize,
    /// Below this many online, enter/quit events name each member.
    pub small_room_threshold: u64,
    /// A Web (or anonymous) connection is in at most one room: joining B leaves A.
    pub web_single_room: bool,
    /// Frames queued per connection before the slow-consumer policy starts dropping.
    pub outbox_frames: usize,
    /// Bytes queued per connection before the same policy starts (0 = frames only):
    /// a few big frames weigh as much as many small ones.
    pub outbox_bytes: usize,
    /// Bytes queued in all connections' outboxes together (0 = unlimited). Past it,
    /// the slowest readers (not read for the longest, then the biggest queues) are closed
    /// with 4008 until the total is under 90 %; rooms are never cut.
    pub outbox_budget_bytes: usize,
    /// A connection that stays behind this long is disconnected.
    pub slow_consumer_grace_ms: u64,
    /// Server WebSocket ping interval.
    pub ping_interval_secs: u64,
    /// A connection silent (no frame, no pong) this long is closed.
    pub idle_timeout_secs: u64,
    /// Messages per second one user may send in one room (0 = unlimited).
    pub user_rate_per_sec: u32,
    /// Burst of the per-user rate.
    pub user_burst: u32,
    /// The same text more than `flood_max_repeats` times within this window is refused.
    pub flood_window_ms: u64,
    /// Repeats allowed within the window.
    pub flood_max_repeats: u32,
}

/// `[limits]` (bytes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Room name.
    pub name: usize,
    /// Room introduction.
    pub introduction: usize,
    /// Room notice.
    pub notification: usize,
    /// Room face URL.
    pub face_url: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./onair-data"),
            http: HttpConfig::default(),
            app: AppConfig::default(),
            chat: ChatSettings::default(),
            limits: LimitSettings::default(),
            callback: CallbackConfig::default(),
            filter: FilterSettings::default(),
            live: LiveSettings::default(),
            gifts: GiftSettings::default(),
            likes: Default::default(),
            levels: Default::default(),
            popularity: PopularitySettings::default(),
            rtmp: RtmpConfig::default(),
            media: MediaConfig::default(),
            webrtc: Default::default(),
            demo: DemoSettings::default(),
            store: StoreSettings::default(),
            cluster: ClusterSettings::default(),
            tls: TlsSettings::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".into(),
            max_connections: 100_000,
            socket_send_buffer: 256 * 1024,
            stall_timeout_secs: 30,
            header_read_timeout_secs: 10,
            keepalive_timeout_secs: 60,
            max_connections_per_ip: 1000,
            trusted_proxies: Vec::new(),
            max_open_connections: 110_000,
            reserved_connections: 32,
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            sdkappid: 0,
            secret_key: String::new(),
            admins: vec!["administrator".into()],
            api_token: String::new(),
        }
    }
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            rate_per_sec: 40,
            max_wait_ms: 1000,
            tick_ms: 50,
            max_tick_ms: 500,
            fanout_cpu_share: 0.8,
            fanout_latency_target_ms: 400,
            fanout_writes_per_sec: 0,
            fanout_slot_ms: onair_core::tick::DEFAULT_SLOT_MS,
            history_on_join: 20,
            history_max_age_secs: 86_400,
            resume_buffer: 1000,
            member_list_size: 30,
            small_room_threshold: 500,
            web_single_room: true,
            outbox_frames: 64,
            outbox_bytes: 512 * 1024,
            outbox_budget_bytes: 256 * 1024 * 1024,
            slow_consumer_grace_ms: 5_000,
            ping_interval_secs: 30,
            idle_timeout_secs: 120,
            user_rate_per_sec: 5,
            user_burst: 10,
            flood_window_ms: 30_000,
            flood_max_repeats: 3,
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        let d = RoomLimits::default();
        LimitSettings { name: d.name, introduction: d.introduction, notification: d.notification, face_url: d.face_url }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `ONAIR_…` variables.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(path.exists(), "config file {} does not exist", path.display());
            fig = fig.merge(Toml::file(path));
        }
        let cfg: Config = fig.merge(Env::prefixed("ONAIR_").split("__")).extract()?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> anyhow::Result<()> {
        crate::http::forwarded::TrustedProxies::parse(&self.http.trusted_proxies).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(self.chat.tick_ms >= 1 && self.chat.tick_ms <= 1000, "chat.tick_ms must be 1..=1000");
        anyhow::ensure!(
            self.chat.max_tick_ms >= self.chat.tick_ms && self.chat.max_tick_ms <= 5000,
            "chat.max_tick_ms must be tick_ms..=5000"
        );
        anyhow::ensure!(
            self.chat.fanout_cpu_share > 0.0 && self.chat.fanout_cpu_share <= 1.0,
            "chat.fanout_cpu_share must be in (0, 1] (a share of one core)"
        );
        anyhow::ensure!(
            (1..=60_000).contains(&self.chat.fanout_latency_target_ms),
            "chat.fanout_latency_target_ms must be 1..=60000"
        );
        anyhow::ensure!(
            self.chat.fanout_slot_ms <= self.chat.max_tick_ms,
            "chat.fanout_slot_ms must be 0..=max_tick_ms (0 = no slots)"
        );
        anyhow::ensure!(self.chat.history_on_join <= 100, "chat.history_on_join must be ≤ 100");
        anyhow::ensure!(self.chat.member_list_size <= 1000, "chat.member_list_size must be ≤ 1000");
        anyhow::ensure!(self.chat.rate_per_sec >= 1, "chat.rate_per_sec must be ≥ 1");
        anyhow::ensure!(self.chat.outbox_frames >= 4, "chat.outbox_frames must be ≥ 4");
        anyhow::ensure!(
            self.chat.outbox_bytes == 0 || self.chat.outbox_bytes >= 16 * 1024,
            "chat.outbox_bytes must be 0 (off) or ≥ 16384 (one big message must fit)"
        );
        anyhow::ensure!(!self.app.admins.is_empty(), "app.admins must name at least one account");
        anyhow::ensure!(
            (self.app.sdkappid == 0) == self.app.secret_key.is_empty(),
            "set both app.sdkappid and app.secret_key, or neither"
        );
        Ok(())
    }

    /// The core's chat tuning derived from these settings.
    /// The business rules' tuning.
    pub fn business(&self) -> onair_hub::BusinessConfig {
        use onair_core::gifts::ComboConfig;
        use onair_core::level::LevelWeights;
        use onair_core::likes::LikeConfig;
        use onair_core::popularity::PopularityWeights;
        let (g, l, v, p) = (&self.gifts, &self.likes, &self.levels, &self.popularity);
        onair_hub::BusinessConfig {
            combo: ComboConfig {
                batch: g.combo_batch.max(1),
                window_ms: g.combo_window_ms.max(100),
                end_after_ms: g.combo_end_ms.max(100),
            },
            likes: LikeConfig { window_ms: l.window_ms.clamp(100, 1_000), ..*l },
            levels: LevelWeights { max_level: v.max_level.max(1), ..*v },
            popularity: PopularityWeights {
                online: p.online,
                message: p.message,
                like: p.like,
                gift_coin: p.gift_coin,
                half_life_ms: p.half_life_secs.saturating_mul(1000),
            },
            pause_grace_ms: self.live.pause_grace_secs.saturating_mul(1000),
        }
    }

    pub fn chat_config(&self) -> ChatConfig {
        let c = &self.chat;
        ChatConfig {
            freq: FreqConfig { max_wait_ms: c.max_wait_ms, ..FreqConfig::with_rate(c.rate_per_sec) },
            presence: PresenceConfig {
                small_room_threshold: c.small_room_threshold,
                member_list_size: c.member_list_size,
                ..PresenceConfig::default()
            },
            history_on_join: c.history_on_join,
            history_max_age_ms: c.history_max_age_secs * 1000,
            resume_buffer: c.resume_buffer.max(c.history_on_join).max(1),
            ..ChatConfig::default()
        }
    }

    /// Per-user sending limits (slow mode is set per room at run time).
    pub fn user_limits(&self) -> LimitsConfig {
        LimitsConfig {
            user_rate_per_sec: self.chat.user_rate_per_sec,
            user_burst: self.chat.user_burst,
            flood_window_ms: self.chat.flood_window_ms,
            flood_max_repeats: self.chat.flood_max_repeats,
            ..LimitsConfig::default()
        }
    }

    /// When rooms deliver.
    pub fn tick_policy(&self) -> TickPolicy {
        TickPolicy {
            min_ms: self.chat.tick_ms,
            max_ms: self.chat.max_tick_ms,
            writes_per_sec: Some(self.chat.fanout_writes_per_sec).filter(|&w| w > 0),
            cpu_share: self.chat.fanout_cpu_share,
            latency_target_ms: self.chat.fanout_latency_target_ms,
            slot_ms: self.chat.fanout_slot_ms,
        }
    }

    /// Room profile limits.
    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            name: self.limits.name,
            introduction: self.limits.introduction,
            notification: self.limits.notification,
            face_url: self.limits.face_url,
            ..RoomLimits::default()
        }
    }
}
