//! Webhooks to the app's business backend, in the cloud's format (docs/cloud-compat.md, "Chat webhooks";
//! §4): `POST {url}?SdkAppid=&CallbackCommand=&contenttype=json&ClientIP=&OptPlatform=`
//! (+ `Sign`/`RequestTime` when a token is set) with the command's JSON body.
//!
//! Before-callbacks (`Group.CallbackBeforeSendMsg`, `Group.CallbackBeforeApplyJoinGroup`)
//! are awaited for at most `timeout_ms`; on timeout, a non-200 status or an
//! unparsable reply the default is to let the action through (fail-open), or to refuse
//! it for the commands listed in `fail_closed`. After-callbacks go into a bounded queue
//! served by a few workers with retries: they never delay delivery, and when the queue
//! is full they are dropped and counted (`onair_callbacks_dropped_total`).

use onair_core::admission::Platform;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use onair_core::message::MsgElem;
use onair_shell::http::{HttpClient, HttpError};
use onair_shell::webhook::{Delivery, Dispatcher, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use onair_shell::{now_ms, now_secs};

/// `[callback]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CallbackConfig {
    /// The backend's URL (`http://` or `https://`); empty = callbacks off.
    pub url: String,
    /// Optional token: adds `Sign = sha256(token + RequestTime)` and `RequestTime`.
    pub token: String,
    /// How long a before-callback may take.
    pub timeout_ms: u64,
    /// Before-callback commands that refuse the action when the backend fails
    /// (default: every command fails open).
    pub fail_closed: Vec<String>,
    /// After-callbacks waiting to be sent; beyond, they are dropped and counted.
    pub queue: usize,
    /// Concurrent after-callback senders.
    pub workers: usize,
    /// Attempts per after-callback (with backoff 0.5 s, 1 s, 2 s …).
    pub attempts: u32,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            url: String::new(),
            token: String::new(),
            timeout_ms: 2000,
            fail_closed: Vec::new(),
            queue: 10_000,
            workers: 4,
            attempts: 3,
        }
    }
}

/// Where a request came from, for `ClientIP` / `OptPlatform`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `Web`, `Android`, … or the server API.
    pub platform: Platform,
    /// The client's address (may be empty).
    pub client_ip: String,
}

impl Origin {
    /// A server-API caller whose address is unknown (a server-made action).
    pub fn rest() -> Origin {
        Origin { platform: Platform::RestApi, client_ip: String::new() }
    }

    /// A server-API caller at `client_ip`: the cloud fills `ClientIP` for REST
    /// actions too, and backends log or allow-list it.
    pub fn rest_from(client_ip: impl Into<String>) -> Origin {
        Origin { platform: Platform::RestApi, client_ip: client_ip.into() }
    }
}

/// The backend's verdict on a message.
#[derive(Debug, Clone, PartialEq)]
pub enum SendVerdict {
    /// Deliver, possibly with a replaced body / custom data.
    Allow {
        /// Replacement `MsgBody`.
        body: Option<Vec<MsgElem>>,
        /// Replacement `CloudCustomData`.
        cloud_custom_data: Option<String>,
    },
    /// Refuse: the sender gets 10016.
    Reject,
    /// Drop silently: the sender sees success, nobody receives it.
    Drop,
}

/// What a before-send callback is told.
pub struct BeforeSend<'a> {
    /// Room.
    pub group_id: &'a str,
    /// Sender.
    pub from: &'a str,
    /// Who asked (the sender, or the admin of a REST call).
    pub operator: &'a str,
    /// Client random.
    pub random: u32,
    /// Elements.
    pub body: &'a [MsgElem],
    /// Custom data.
    pub cloud_custom_data: &'a str,
}

/// The webhook client.
pub struct Callbacks {
    cfg: CallbackConfig,
    /// Builds each request's URL (shared with queued after-callbacks).
    signer: Arc<Signer>,
    client: HttpClient,
    /// After-callbacks (None when no URL is configured).
    after: Option<Dispatcher>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BeforeReply {
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    msg_body: Option<Vec<MsgElem>>,
    #[serde(default)]
    cloud_custom_data: Option<String>,
}

impl Callbacks {
    /// A client; starts the after-callback workers when a URL is configured.
    pub fn start(cfg: CallbackConfig, sdkappid: u64) -> Arc<Callbacks> {
        let client = HttpClient::new(Duration::from_millis(cfg.timeout_ms.max(100)));
        let after = (!cfg.url.is_empty()).then(|| {
            let policy = RetryPolicy {
                attempts: cfg.attempts.max(1),
                first_delay: Duration::from_millis(500),
                timeout: Duration::from_millis(cfg.timeout_ms.max(1000)),
            };
            Dispatcher::start(client.clone(), policy, cfg.queue, cfg.workers, "onair_callbacks_dropped_total")
        });
        let signer = Arc::new(Signer { url: cfg.url.clone(), token: cfg.token.clone(), sdkappid });
        Arc::new(Callbacks { after, cfg, signer, client })
    }

    /// Whether a URL is configured.
    pub fn enabled(&self) -> bool {
        self.after.is_some()
    }

    /// `Group.CallbackBeforeSendMsg`.
    pub async fn before_send(&self, m: BeforeSend<'_>, origin: &Origin) -> SendVerdict {
        const COMMAND: &str = "Group.CallbackBeforeSendMsg";
        let body = json!({
            "CallbackCommand": COMMAND,
            "GroupId": m.group_id,
            "Type": "AVChatRoom",
            "From_Account": m.from,
            "Operator_Account": m.operator,
            "Random": m.random,
            "OnlineOnlyFlag": 0,
            "MsgBody": m.body,
            "CloudCustomData": m.cloud_custom_data,
            "EventTime": now_ms(),
        });
        match self.ask(COMMAND, &body, origin).await {
            Some(reply) => match reply.error_code.unwrap_or(0) {
                0 => SendVerdict::Allow { body: reply.msg_body, cloud_custom_data: reply.cloud_custom_data },
                1 => SendVerdict::Reject,
                2 => SendVerdict::Drop,
                other => {
                    tracing::warn!(command = COMMAND, code = other, "unknown ErrorCode in callback reply");
                    self.on_failure(COMMAND)
                }
            },
            None => self.on_failure(COMMAND),
        }
    }

    /// `Group.CallbackBeforeApplyJoinGroup`: whether the join may proceed.
    pub async fn before_join(&self, group_id: &str, requestor: &str, origin: &Origin) -> bool {
        const COMMAND: &str = "Group.CallbackBeforeApplyJoinGroup";
        let body = json!({
            "CallbackCommand": COMMAND,
            "GroupId": group_id,
            "Type": "AVChatRoom",
            "Requestor_Account": requestor,
            "EventTime": now_ms(),
        });
        match self.ask(COMMAND, &body, origin).await {
            Some(reply) => reply.error_code.unwrap_or(0) == 0,
            None => !self.fails_closed(COMMAND),
        }
    }

    /// Queues an after-callback; `body` gets `CallbackCommand` and `EventTime` added.
    pub fn after(&self, command: &'static str, mut body: Value, origin: Origin) {
        let Some(after) = &self.after else { return };
        if let Value::Object(map) = &mut body {
            map.insert("CallbackCommand".into(), Value::from(command));
            map.entry("EventTime").or_insert(Value::from(now_ms()));
        }
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let signer = self.signer.clone();
        let url = Box::new(move || signer.url_for(command, &origin));
        after.send(Delivery { url, body, label: command });
    }

    fn on_failure(&self, command: &str) -> SendVerdict {
        if self.fails_closed(command) {
            SendVerdict::Reject
        } else {
            SendVerdict::Allow { body: None, cloud_custom_data: None }
        }
    }

    fn fails_closed(&self, command: &str) -> bool {
        self.cfg.fail_closed.iter().any(|c| c == command)
    }

    async fn ask(&self, command: &'static str, body: &Value, origin: &Origin) -> Option<BeforeReply> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let started = std::time::Instant::now();
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let result = self.client.post_json(&self.url_for(command, origin), payload, timeout).await;
        metrics::histogram!("onair_callback_seconds", "command" => command).record(started.elapsed().as_secs_f64());
        let reply = match result {
            Ok(bytes) => serde_json::from_slice::<BeforeReply>(&bytes).ok(),
            Err(HttpError::TimedOut) => {
                tracing::warn!(command, timeout_ms = self.cfg.timeout_ms, "callback timed out");
                None
            }
            Err(e) => {
                tracing::warn!(command, error = %e, "callback failed");
                None
            }
        };
        if reply.is_none() {
            metrics::counter!("onair_callback_failures_total", "command" => command).increment(1);
        }
        reply
    }

    fn url_for(&self, command: &str, origin: &Origin) -> String {
        self.signer.url_for(command, origin)
    }
}

/// Builds a callback URL with the cloud's query parameters and, with a token, a
/// signature of the moment it is called (so each retry is signed afresh).
struct Signer {
    url: String,
    token: String,
    sdkappid: u64,
}

impl Signer {
    fn url_for(&self, command: &str, origin: &Origin) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        let mut url = format!(
            "{}{sep}SdkAppid={}&CallbackCommand={}&contenttype=json&ClientIP={}&OptPlatform={}",
            self.url,
            self.sdkappid,
            command,
            query_escape(&origin.client_ip),
            query_escape(origin.platform.as_str()),
        );
        if !self.token.is_empty() {
            let t = now_secs();
            url.push_str(&format!("&Sign={}&RequestTime={t}", onair_auth::callback_sign(&self.token, t)));
        }
        url
    }
}

/// Percent-encodes a query value (the few values here are short ids and IPs).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_carry_the_cloud_query_and_signature() {
        let cfg =
            CallbackConfig { url: "http://127.0.0.1:9/cb".into(), token: "xxxxyyyy".into(), ..Default::default() };
        let cb = Callbacks::start(cfg, 1400000001);
        let url = cb.url_for(
            "Group.CallbackAfterSendMsg",
            &Origin { platform: Platform::Client("Web".into()), client_ip: "10.0.0.1".into() },
        );
        assert!(url.starts_with("http://127.0.0.1:9/cb?SdkAppid=1400000001&CallbackCommand=Group.CallbackAfterSendMsg&contenttype=json&ClientIP=10.0.0.1&OptPlatform=Web&Sign="), "{url}");
        let t: u64 = url.rsplit("RequestTime=").next().and_then(|t| t.parse().ok()).expect("time");
        assert!(url.contains(&format!("Sign={}", onair_auth::callback_sign("xxxxyyyy", t))));
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }

    #[tokio::test]
    async fn an_unreachable_backend_fails_open_unless_configured_closed() {
        let open = Callbacks::start(
            CallbackConfig { url: "http://127.0.0.1:9/".into(), timeout_ms: 300, ..Default::default() },
            1,
        );
        let m = BeforeSend { group_id: "g", from: "a", operator: "a", random: 1, body: &[], cloud_custom_data: "" };
        assert_eq!(
            open.before_send(m, &Origin::rest()).await,
            SendVerdict::Allow { body: None, cloud_custom_data: None }
        );
        let closed = Callbacks::start(
            CallbackConfig {
                url: "http://127.0.0.1:9/".into(),
                timeout_ms: 300,
                fail_closed: vec!["Group.CallbackBeforeSendMsg".into(), "Group.CallbackBeforeApplyJoinGroup".into()],
                ..Default::default()
            },
            1,
        );
        let m = BeforeSend { group_id: "g", from: "a", operator: "a", random: 1, body: &[], cloud_custom_data: "" };
        assert_eq!(closed.before_send(m, &Origin::rest()).await, SendVerdict::Reject);
        assert!(!closed.before_join("g", "a", &Origin::rest()).await);
    }
}
