//! The one outbound HTTP client of the shells (chat webhooks, stream callbacks, a
//! media edge's pulls from its origin): hyper's pooled client over a connector that
//! speaks `http://` and `https://` (rustls with the system's root certificates and
//! the operator's extra CA, `[tls] ca_file`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a request failed, in words a log line can carry.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL or a header does not make a request.
    #[error("bad request to {url}: {reason}")]
    BadRequest {
        /// The URL (without its query: it may carry credentials).
        url: String,
        /// Why.
        reason: String,
    },
    /// Connecting, TLS or the exchange failed.
    #[error("{0}")]
    Transport(String),
    /// The answer was not 200.
    #[error("HTTP {0}")]
    Status(u16),
    /// No whole answer within the timeout.
    #[error("timed out")]
    TimedOut,
}

/// A request body.
pub type RequestBody = Full<Bytes>;

/// A pooled client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

impl HttpClient {
    /// A client whose connections give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        let tls =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(system_roots()).with_no_client_auth());
        let connector = match tls {
            Ok(config) => HttpsConnectorBuilder::new().with_tls_config(config),
            // The ring provider supports the default versions; this cannot happen, but a
            // client without TLS is still a client.
            Err(_) => HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder().with_root_certificates(system_roots()).with_no_client_auth(),
            ),
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        HttpClient { client }
    }

    /// Sends `request` and returns the response head with its streaming body.
    pub async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, HttpError> {
        self.client.request(request).await.map_err(|e| HttpError::Transport(error_chain(&e)))
    }

    /// `POST` a JSON body; the answer's body when it is `200 OK`, all within `timeout`.
    pub async fn post_json(&self, url: &str, body: Bytes, timeout: Duration) -> Result<Bytes, HttpError> {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| HttpError::BadRequest { url: without_query(url), reason: e.to_string() })?;
        let exchange = async {
            let response = self.send(request).await?;
            let status = response.status();
            let bytes =
                response.into_body().collect().await.map_err(|e| HttpError::Transport(e.to_string()))?.to_bytes();
            if status != http::StatusCode::OK {
                return Err(HttpError::Status(status.as_u16()));
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(HttpError::TimedOut))
    }
}

/// Extra trusted CAs (`[tls] ca_file`), set once at start before any client is made:
/// a process-wide setting, like the system store it extends, so every client (chat
/// webhooks, stream callbacks, edge pulls) trusts the same backends.
static EXTRA_ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();

/// Why a CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// Unreadable or not PEM.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// PEM without a single certificate.
    #[error("{0}: no CERTIFICATE in the file")]
    Empty(String),
}

/// The PEM certificates in `path`.
pub fn load_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let unreadable = |reason: String| CaFileError::Unreadable { path: path.display().to_string(), reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(CaFileError::Empty(path.display().to_string()));
    }
    Ok(certs)
}

/// Trusts the CA certificates in `path` (PEM) besides the system's, in every client
/// made from now on. Returns how many were added. Call once, at start.
pub fn trust_extra_ca(path: &std::path::Path) -> Result<usize, CaFileError> {
    let certs = load_pem_certs(path)?;
    let n = certs.len();
    let _ = EXTRA_ROOTS.set(certs);
    Ok(n)
}

/// The system's root certificates (unreadable ones are skipped with a log line) and
/// the extra CA, if one was set.
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(extra) = EXTRA_ROOTS.get() {
        let (added, ignored) = roots.add_parsable_certificates(extra.iter().cloned());
        tracing::debug!(added, ignored, "extra CA certificates trusted");
    }
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, "system root certificates loaded");
    roots
}

/// A URL without its query string (which may hold tokens) and without its userinfo
/// (`user:password@`), for logs and errors.
pub fn without_query(url: &str) -> String {
    crate::redact_url(url.split('?').next().unwrap_or_default())
}

/// An error with its sources, one line ("connection refused" is usually a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
