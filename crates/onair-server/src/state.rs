//! The shared application state: cheap to clone (an `Arc`), built once at start.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use metrics_exporter_prometheus::PrometheusHandle;
use onair_auth::UserSigError;
use onair_core::{Code, Rejection};
use onair_store::Store;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use onair_hub::Hub;
use onair_hub::sessions::Sessions;
use onair_shell::now_secs;

/// The app this server hosts.
#[derive(Debug, Clone)]
pub struct AppCreds {
    /// SDKAppID.
    pub sdkappid: u64,
    /// Secret key (HMAC key of UserSigs).
    pub secret_key: String,
    /// App admin accounts.
    pub admins: HashSet<String>,
}

impl AppCreds {
    /// Verifies a UserSig for this app, mapping failures to the cloud's codes.
    pub fn verify(
        &self,
        sdkappid: u64,
        identifier: &str,
        usersig: &str,
    ) -> Result<onair_auth::VerifiedUserSig, Rejection> {
        if sdkappid != self.sdkappid {
            return Err(Rejection::new(Code::UserSigApp, format!("SDKAppID {sdkappid} is not this server's app")));
        }
        onair_auth::verify_usersig(self.sdkappid, &self.secret_key, identifier, usersig, now_secs()).map_err(|e| {
            let code = match e {
                UserSigError::Empty => Code::UserSigEmpty,
                UserSigError::Expired { .. } => Code::UserSigExpired,
                UserSigError::IdentifierMismatch => Code::UserSigIdentifier,
                UserSigError::AppMismatch => Code::UserSigApp,
                UserSigError::Malformed(_) | UserSigError::BadSignature => Code::UserSigInvalid,
            };
            Rejection::new(code, e.to_string())
        })
    }

    /// Mints a UserSig for this app.
    pub fn mint(&self, identifier: &str, expire_secs: u64) -> String {
        onair_auth::gen_usersig(self.sdkappid, &self.secret_key, identifier, expire_secs, now_secs())
    }
}

/// Everything handlers need.
pub struct AppState {
    /// Configuration as loaded.
    pub cfg: Config,
    /// The hosted app.
    pub app: AppCreds,
    /// Durable storage.
    pub store: Store,
    /// Rooms.
    pub hub: Arc<Hub>,
    /// Logins.
    pub sessions: Sessions,
    /// Prometheus rendering.
    pub metrics: PrometheusHandle,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
    /// Connection id source.
    pub next_conn_id: AtomicU64,
    /// Bounds concurrent WebSocket connections.
    pub conn_limit: Arc<Semaphore>,
    /// The byte budget every WebSocket outbox draws on (`[chat] outbox_budget_bytes`).
    pub outbox_budget: Arc<onair_hub::outbox::OutboxBudget>,
    /// Demo mode's anchor code and guest rate.
    pub demo: crate::faces::web::DemoGate,
    /// Live video (RTMP, HTTP-FLV, stream registry).
    pub media: Arc<onair_media_server::MediaService>,
    /// LL-HLS, live fMP4, recordings, snapshots.
    pub hls: Arc<onair_media_server::hls::HlsHub>,
    /// WHIP/WHEP (None when `[webrtc] enabled = false`).
    pub webrtc: Option<Arc<onair_media_server::webrtc::WebRtc>>,
    /// Relays of live streams to external RTMP(S) destinations.
    pub relays: Arc<onair_media_server::relays::Relays>,
    /// Files and slates played as live streams.
    pub playout: Arc<onair_media_server::playout::Playout>,
    /// Renditions and per-stream ABR ladders (None without ffmpeg or RTMP).
    pub renditions: Option<Arc<onair_media_server::renditions::Renditions>>,
}

/// The handle handlers receive.
pub type Shared = Arc<AppState>;
