//! `onair`: the live-room server binary.
//!
//! `onair serve` runs everything with zero configuration (SQLite in `./onair-data`,
//! HTTP + WebSocket on `0.0.0.0:8080`); `onair usersig --user ID` mints a login
//! credential for the configured app.

mod config;
mod faces;
mod http;
mod pacing;
mod state;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use onair_store::{AppRecord, HistoryWriter, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::state::{AppCreds, AppState};

#[derive(Parser)]
#[command(name = "onair", version, about = "Self-hosted live-room server: chat, live video, business logic")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// TOML config file (optional; `ONAIR_…` environment variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Demo mode: guest logins for anyone and a demo room (config `demo`; on by
        /// default when no app is configured).
        #[arg(long)]
        demo: bool,
    },
    /// Print a UserSig for an account of the configured app.
    Usersig {
        /// Account id.
        #[arg(long)]
        user: String,
        /// Validity in seconds (default 180 days).
        #[arg(long, default_value_t = onair_auth::DEFAULT_USERSIG_EXPIRE_SECS)]
        expire: u64,
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a signed RTMP push URL (and the play URLs) for a stream.
    PushUrl {
        /// Stream name.
        #[arg(long)]
        stream: String,
        /// Host in the URL (default: `[media] public_host`).
        #[arg(long)]
        host: Option<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 86_400)]
        valid_secs: u64,
        /// Print a signed WHIP URL (WebRTC publish over HTTP) instead of the RTMP one.
        #[arg(long)]
        whip: bool,
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ONAIR_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve { config, demo } => {
            let mut cfg = Config::load(config.as_deref())?;
            // Resolved once here: the web module reads `cfg.demo` as a plain switch.
            cfg.demo.enabled = Some(demo || cfg.demo.enabled.unwrap_or(cfg.app.sdkappid == 0));
            runtime.block_on(serve(cfg))
        }
        Command::Usersig { user, expire, config } => {
            runtime.block_on(usersig(Config::load(config.as_deref())?, &user, expire))
        }
        Command::PushUrl { stream, host, valid_secs, whip, config } => {
            push_url(Config::load(config.as_deref())?, &stream, host, valid_secs, whip)
        }
    }
}

/// The app from the config, else the stored one, else a new one (stored).
async fn app_creds(cfg: &Config, store: &Store, create: bool) -> anyhow::Result<(AppCreds, bool)> {
    let admins: HashSet<String> = cfg.app.admins.iter().cloned().collect();
    if cfg.app.sdkappid != 0 {
        let record = AppRecord {
            sdkappid: cfg.app.sdkappid,
            secret_key: cfg.app.secret_key.clone(),
            created_at: onair_shell::now_secs(),
        };
        if create {
            store.save_app(&record).await?;
        }
        return Ok((AppCreds { sdkappid: record.sdkappid, secret_key: record.secret_key, admins }, false));
    }
    if let Some(app) = store.load_app().await? {
        return Ok((AppCreds { sdkappid: app.sdkappid, secret_key: app.secret_key, admins }, false));
    }
    anyhow::ensure!(
        create,
        "no app yet in {}: run `onair serve` once, or set [app] sdkappid and secret_key",
        if cfg.store.url.trim().is_empty() {
            cfg.data_dir.display().to_string()
        } else {
            "the [store] url database".to_owned()
        }
    );
    let record = AppRecord {
        sdkappid: 1_400_000_000 + onair_shell::seed() % 100_000_000,
        secret_key: onair_shell::random_hex(32),
        created_at: onair_shell::now_secs(),
    };
    store.save_app(&record).await?;
    Ok((AppCreds { sdkappid: record.sdkappid, secret_key: record.secret_key, admins }, true))
}

/// Opens the database `[store] url` names (empty: SQLite in the data directory) and
/// logs which one it is; fails the start with the reason if it cannot be opened.
async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let store = if cfg.store.url.trim().is_empty() {
        Store::connect("", &cfg.data_dir)
            .await
            .with_context(|| format!("opening the database in {}", cfg.data_dir.display()))?
    } else {
        // The error names the server without the password; the URL may hold one.
        let ca = Some(cfg.tls.ca_file.trim()).filter(|p| !p.is_empty()).map(std::path::Path::new);
        Store::connect_with_ca(&cfg.store.url, &cfg.data_dir, ca)
            .await
            .with_context(|| format!("opening the [store] url database {}", onair_shell::redact_url(&cfg.store.url)))?
    };
    match store.backend() {
        "sqlite" => tracing::info!(backend = "sqlite", dir = %cfg.data_dir.display(), "store opened"),
        backend => tracing::info!(backend, "store opened"),
    }
    Ok(store)
}

async fn usersig(cfg: Config, user: &str, expire: u64) -> anyhow::Result<()> {
    anyhow::ensure!(!user.is_empty() && user.len() <= 32, "--user must be 1-32 bytes");
    init_tls(&cfg)?;
    let app = if cfg.app.sdkappid != 0 {
        AppCreds { sdkappid: cfg.app.sdkappid, secret_key: cfg.app.secret_key.clone(), admins: HashSet::new() }
    } else {
        let store = open_store(&cfg).await?;
        let (app, _) = app_creds(&cfg, &store, false).await?;
        store.close().await;
        app
    };
    println!("{}", app.mint(user, expire));
    Ok(())
}

/// The RTMP base URL (`rtmp://HOST:PORT/APP/`) that push and play URLs start with.
fn rtmp_base(cfg: &Config, host: Option<&str>) -> String {
    let host = host.unwrap_or(&cfg.media.public_host);
    let port = cfg.rtmp.listen.rsplit(':').next().unwrap_or("1935");
    format!("rtmp://{host}:{port}/{}/", cfg.rtmp.app)
}

/// Signs RTMP push URLs (`txSecret`/`txTime`, the streaming service's scheme, with
/// the media push key) for co-hosts. `bound` is the RTMP base with the port the
/// listener really got (set once it started; the configured one until then).
fn push_signer(cfg: &Config, key: String, bound: Arc<std::sync::OnceLock<String>>) -> onair_hub::PushSigner {
    let configured = rtmp_base(cfg, None);
    let valid = cfg.live.push_valid_secs;
    Arc::new(move |stream: &str| {
        let base = bound.get().unwrap_or(&configured);
        onair_media_server::signed_url(base, &key, stream, "", valid)
    })
}

/// Signs WHIP URLs for co-hosts: a path on this server (`/whip/{stream}?txSecret=…`),
/// which the watch page posts to on its own origin.
fn whip_signer(cfg: &Config, key: String) -> onair_hub::PushSigner {
    let valid = cfg.live.push_valid_secs;
    Arc::new(move |stream: &str| onair_media_server::signed_url("/whip/", &key, stream, "", valid))
}

fn push_url(cfg: Config, stream: &str, host: Option<String>, valid_secs: u64, whip: bool) -> anyhow::Result<()> {
    anyhow::ensure!(onair_media_server::valid_stream_name(stream), "--stream must be 1-128 of A-Z a-z 0-9 - _ .");
    let key = onair_media_server::push_key(&cfg.media, &cfg.data_dir, false)?;
    let rtmp = rtmp_base(&cfg, host.as_deref());
    let host = host.unwrap_or_else(|| cfg.media.public_host.clone());
    let http_port = cfg.http.listen.rsplit(':').next().unwrap_or("8080");
    let http = format!("http://{host}:{http_port}");
    if whip {
        // The same signature as RTMP; WHIP clients that only take a bearer token can
        // send the query part as `Authorization: Bearer txSecret=…&txTime=…`.
        println!("{}", onair_media_server::signed_url(&format!("{http}/whip/"), &key, stream, "", valid_secs));
        eprintln!("play (WHEP)     {http}/whep/{stream}");
    } else {
        println!("{}", onair_media_server::signed_url(&rtmp, &key, stream, "", valid_secs));
    }
    let play_key = if cfg.media.play_key.is_empty() { key.clone() } else { cfg.media.play_key.clone() };
    let flv = format!("http://{host}:{http_port}/live/");
    if cfg.media.play_auth {
        eprintln!("play (RTMP)     {}", onair_media_server::signed_url(&rtmp, &play_key, stream, "", valid_secs));
        eprintln!("play (HTTP-FLV) {}", onair_media_server::signed_url(&flv, &play_key, stream, ".flv", valid_secs));
    } else {
        eprintln!("play (RTMP)     {rtmp}{stream}");
        eprintln!("play (HTTP-FLV) {flv}{stream}.flv");
    }
    Ok(())
}

/// Connects to the other nodes when `[cluster] redis` is set.
async fn join_cluster(
    cfg: &Config,
    store: &Store,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<Option<(Arc<onair_hub::Link>, tokio::sync::mpsc::UnboundedReceiver<onair_hub::bus::Inbound>)>> {
    if cfg.cluster.redis.is_empty() {
        return Ok(None);
    }
    if !cfg.store.url.starts_with("postgres") {
        tracing::warn!(
            "[cluster] without [store] url = \"postgres://…\": the nodes must share one database; \
             a shared SQLite data_dir only works for nodes on one machine"
        );
    }
    let node = if cfg.cluster.node_id.is_empty() {
        format!("n-{}", onair_shell::random_hex(4))
    } else {
        cfg.cluster.node_id.clone()
    };
    let ca_pem = match cfg.tls.ca_file.trim() {
        "" => None,
        path => Some(std::fs::read(path).with_context(|| format!("reading [tls] ca_file {path}"))?),
    };
    let bus_cfg = onair_hub::bus::BusConfig {
        url: cfg.cluster.redis.clone(),
        ca_pem,
        node: node.clone(),
        prefix: cfg.cluster.prefix.clone(),
    };
    let (bus, inbound) = onair_hub::bus::Bus::connect(bus_cfg, shutdown.clone(), tasks)
        .await
        .with_context(|| format!("joining the cluster through {}", onair_shell::redact_url(&cfg.cluster.redis)))?;
    tracing::info!(node = %node, redis = %onair_shell::redact_url(&cfg.cluster.redis), prefix = %cfg.cluster.prefix, "joined the cluster");
    Ok(Some((onair_hub::Link::new(bus, store.clone(), cfg.chat_config().resume_buffer), inbound)))
}

/// Process-wide TLS setup, before any client exists: ring as rustls' provider (the
/// only one built in; the database, Redis and HTTP clients all use it) and the extra
/// CA of `[tls] ca_file`.
fn init_tls(cfg: &Config) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = cfg.tls.ca_file.trim();
    if !path.is_empty() {
        let n = onair_shell::http::trust_extra_ca(std::path::Path::new(path)).context("[tls] ca_file")?;
        tracing::info!(ca_file = path, certificates = n, "trusting an extra CA for backends");
    }
    Ok(())
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    init_tls(&cfg)?;
    onair_media_server::quiet_library_panics();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics_handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;

    let store = open_store(&cfg).await?;
    let (app, created) = app_creds(&cfg, &store, true).await?;
    let writer = HistoryWriter::spawn(store.clone(), 4096);
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let callbacks = onair_hub::callbacks::Callbacks::start(cfg.callback.clone(), app.sdkappid);
    let rules = onair_hub::RoomRules {
        chat: cfg.chat_config(),
        limits: cfg.room_limits(),
        tick: cfg.tick_policy(),
        user_limits: cfg.user_limits(),
        business: cfg.business(),
    };
    let push_created = onair_media_server::push_key_missing(&cfg.media, &cfg.data_dir);
    let push_key = onair_media_server::push_key(&cfg.media, &cfg.data_dir, true)?;
    let rtmp_bound = Arc::new(std::sync::OnceLock::new());
    let push_url = push_signer(&cfg, push_key.clone(), rtmp_bound.clone());
    let whip_url = whip_signer(&cfg, push_key.clone());
    let (link, inbound) = match join_cluster(&cfg, &store, &shutdown, &tasks).await? {
        Some((link, inbound)) => (Some(link), Some(inbound)),
        None => (None, None),
    };
    let hub = onair_hub::Hub::load(
        store.clone(),
        writer.clone(),
        rules,
        tasks.clone(),
        shutdown.clone(),
        onair_hub::Services { callbacks, push_url: Some(push_url), whip_url: Some(whip_url), link },
    )
    .await?;
    if let Some(inbound) = inbound {
        hub.start_cluster(inbound);
    }
    tasks.spawn(pacing::run(hub.clone(), shutdown.clone()));

    if !cfg.filter.words_file.is_empty() {
        let path = &cfg.filter.words_file;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading filter.words_file {path}"))?;
        let words = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let action =
            onair_hub::parse_action(&cfg.filter.action).map_err(|r| anyhow::anyhow!("filter.action: {}", r.info))?;
        let list = onair_core::filter::WordList::new(words, action).with_context(|| format!("filter list {path}"))?;
        tracing::info!(words = list.len(), "loaded the sensitive-word list");
        hub.seed_app_filter(list);
    }
    // Rooms follow their streams: publish → live, unpublish → paused, recording → replay.
    let observer: Arc<dyn onair_media::lifecycle::StreamObserver> =
        onair_hub::HubObserver::start(hub.clone(), &tasks, shutdown.clone());
    let media = onair_media_server::MediaService::start(
        cfg.rtmp.clone(),
        cfg.media.clone(),
        &cfg.data_dir,
        push_key,
        app.sdkappid,
        observer,
        shutdown.clone(),
        tasks.clone(),
    )
    .await?;
    if let Some(addr) = media.rtmp_addr {
        let host = &cfg.media.public_host;
        let _ = rtmp_bound.set(format!("rtmp://{host}:{}/{}/", addr.port(), cfg.rtmp.app));
    }
    let hls = onair_media_server::hls::HlsHub::new(cfg.media.hls.clone(), &cfg.data_dir, media.clone()).await;
    hls.spawn(shutdown.clone(), tasks.clone());
    // The monitor's `hls` viewer figure counts playlist readers too (a weak handle:
    // the HLS part holds the media service).
    let readers = Arc::downgrade(&hls);
    media.set_hls_readers(Box::new(move |name| readers.upgrade().map_or(0, |h| h.hls_viewers(name))));
    // The room layer feeds the chat outputs' text (filtered, bounded) to the media service.
    hub.set_chat_overlay(media.director.clone(), media.director.settings.board());
    let webrtc =
        onair_media_server::webrtc::WebRtc::start(cfg.webrtc.clone(), media.clone(), shutdown.clone(), tasks.clone())
            .await
            .with_context(|| {
                format!("starting WebRTC on UDP {} ([webrtc] listen; enabled = false turns it off)", cfg.webrtc.listen)
            })?;
    let renditions = onair_media_server::renditions::Renditions::start(
        media.clone(),
        &cfg.data_dir,
        shutdown.clone(),
        tasks.clone(),
    )
    .await;
    let relay_ca = Some(cfg.tls.ca_file.trim()).filter(|p| !p.is_empty()).map(std::path::Path::new);
    let relays = onair_media_server::relays::Relays::start(
        media.clone(),
        &cfg.data_dir,
        relay_ca,
        shutdown.clone(),
        tasks.clone(),
    )
    .await;
    let playout =
        onair_media_server::playout::Playout::start(media.clone(), &cfg.data_dir, shutdown.clone(), tasks.clone())
            .await;
    // Co-host mixes: the hub says which streams to compose, the media service runs them.
    let keyframe = webrtc.clone().map(|w| -> onair_media_server::mixer::KeyframeRequest {
        Arc::new(move |stream: &str| w.engine().request_keyframe(stream))
    });
    if let Some(mixer) =
        onair_media_server::mixer::Mixer::start(media.clone(), keyframe, shutdown.clone(), tasks.clone()).await
    {
        hub.set_mixer(mixer);
    }
    let listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .with_context(|| format!("binding {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    if !cfg.media.origin.trim().is_empty() {
        // An edge pulling from itself would wait on its own pull forever.
        onair_media_server::edge::check_not_self(&cfg.media.origin, addr)?;
    }
    let state = Arc::new(AppState {
        conn_limit: Arc::new(tokio::sync::Semaphore::new(cfg.http.max_connections)),
        outbox_budget: onair_hub::outbox::OutboxBudget::new(cfg.chat.outbox_budget_bytes),
        demo: faces::web::DemoGate::new(cfg.demo.guests_per_minute),
        cfg,
        app: app.clone(),
        store: store.clone(),
        hub,
        sessions: Default::default(),
        metrics: metrics_handle,
        shutdown: shutdown.clone(),
        next_conn_id: AtomicU64::new(1),
        media,
        hls,
        webrtc,
        relays,
        playout,
        renditions,
    });
    faces::broadcast::end_rooms_with_shows(&state);
    faces::broadcast::spawn_slate_follower(state.clone(), &tasks);
    // Listen for SIGTERM/SIGINT before announcing the server, so a stop that comes
    // right after the "listening" line is a graceful one.
    let signals = Signals::new()?;
    faces::web::demo_setup(&state).await?;
    print_banner(&state, addr, created, push_created);

    let router = http::router(state.clone());
    let limits = http::serve::Limits::from_config(&state.cfg.http);
    let server = http::serve::run(listener, router, limits, shutdown.clone());
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutting down");
        signal_token.cancel();
    });
    server.await;
    // WebSocket tasks see the token and close with 1001; rooms run a last round.
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    writer.shutdown().await;
    store.close().await;
    Ok(())
}

/// The shutdown signals, registered up front.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?,
        })
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The start banner. Secrets (the secret key, an admin UserSig, the push key and a
/// signed push URL) are printed only by the start that created them: later starts
/// (and logs collected from them) never carry them; `onair usersig` and `onair
/// push-url` print them on request.
fn print_banner(state: &state::Shared, addr: std::net::SocketAddr, created: bool, push_created: bool) {
    let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
    let base = format!("http://{host}:{}", addr.port());
    let admin = state.cfg.app.admins.first().cloned().unwrap_or_else(|| "administrator".into());
    let sig = created.then(|| state.app.mint(&admin, onair_auth::DEFAULT_USERSIG_EXPIRE_SECS));
    let secrets = match &sig {
        Some(sig) => format!(
            " (new app created and stored)\
             \n  secret key      {key}  (printed once: this start created it)\
             \n  admin           {admin}\
             \n  admin UserSig   {sig}",
            key = state.app.secret_key,
        ),
        None => format!("\n  admin           {admin}  (a login: `onair usersig --user {admin}`)"),
    };
    // The address really bound: on 0.0.0.0 the URLs above use 127.0.0.1, but the last
    // line must not pretend the server is reachable only there.
    let listening = if addr.ip().is_unspecified() {
        format!("http://{addr} (every address; from this machine {base})")
    } else {
        base.clone()
    };
    // Formatted first and written at once: `println!` with arguments writes piece by
    // piece, and a log line from another task could land in the middle.
    let text = format!(
        "OnAir is running.\n\
         \n  SDKAppID        {sdkappid}{secrets}\
         \n  data            {data}\
         \n\
         \n  open            {base}/\
         \n  WebSocket       ws://{host}:{port}/ws\
         \n  rooms API       {base}/api/v1/rooms\
         \n  health          {base}/healthz\
         \n  metrics         {base}/metrics\
         {rtmp}\
         {webrtc}\
         {web}\
         \n\
         \nlistening on {listening}\n",
        web = faces::web::banner(state, &base, &admin, sig.as_deref()),
        sdkappid = state.app.sdkappid,
        data = state.cfg.data_dir.display(),
        port = addr.port(),
        rtmp = rtmp_banner(state, &host, addr.port(), push_created),
        webrtc = webrtc_banner(state, &base, push_created),
    );
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn webrtc_banner(state: &AppState, base: &str, push_created: bool) -> String {
    let Some(w) = &state.webrtc else { return "\n  WebRTC          off ([webrtc] enabled = false)".into() };
    let media = &state.media;
    // A signed WHIP URL is a push credential: printed only by the start that created
    // the push key, like the RTMP one.
    let whip = if !media.rtmp.auth {
        format!("{base}/whip/test  (push auth off)")
    } else if push_created {
        onair_media_server::signed_url(&format!("{base}/whip/"), media.push_key(), "test", "", 86_400)
    } else {
        "`onair push-url --stream NAME --whip` prints a signed URL".to_owned()
    };
    let (tcp, tcp_line) = match w.tcp_local_addr() {
        Some(t) => (
            format!("\n  WebRTC ICE-TCP  {}, same addresses (fallback for UDP-blocking networks)", t.port()),
            format!("\nwebrtc listening on tcp {t}"),
        ),
        None => ("\n  WebRTC ICE-TCP  off ([webrtc] ice_tcp = true to add it)".to_owned(), String::new()),
    };
    format!(
        "\n  WHIP publish    {whip}\
         \n  WHEP play       {base}/whep/test\
         \n  WebRTC UDP      {port}, announcing {candidates}{tcp}\
         \n\
         \nwebrtc listening on udp {local}{tcp_line}",
        port = w.local_addr().port(),
        candidates = w.candidates_text(),
        local = w.local_addr(),
    )
}

fn rtmp_banner(state: &AppState, host: &str, http_port: u16, push_created: bool) -> String {
    let media = &state.media;
    let Some(addr) = media.rtmp_addr else { return "\n  RTMP            off ([rtmp] listen is empty)".into() };
    let rtmp = format!("rtmp://{host}:{}/{}/", addr.port(), media.rtmp.app);
    let push = if !media.rtmp.auth {
        format!("{rtmp}test  (push auth off)")
    } else if push_created {
        onair_media_server::signed_url(&rtmp, media.push_key(), "test", "", 86_400)
    } else {
        "`onair push-url --stream NAME` prints a signed URL".to_owned()
    };
    let key = if push_created {
        format!("\n  push key        {}  (printed once: this start created it)", media.push_key())
    } else {
        String::new()
    };
    let edge = match media.origin() {
        Some(origin) => format!("\n  edge of         {origin}  (streams relayed on demand)"),
        None => String::new(),
    };
    format!(
        "\n  RTMP push       {push}{key}\
         \n  watch           http://{host}:{http_port}/live/test.flv  or  {rtmp}test{edge}\
         \n\
         \nrtmp listening on rtmp://{addr}",
    )
}
