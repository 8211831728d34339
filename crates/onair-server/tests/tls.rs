//! TLS to the backends (issue 14): an https webhook receiver, PostgreSQL with
//! `sslmode`, and Redis over `rediss://`, each checked against a CA the test makes
//! (`[tls] ca_file`) or, for the machine's PostgreSQL, its own certificate.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and one server certificate it signed (for `localhost` and 127.0.0.1), as
/// PEM files in a temp dir.
struct TestPki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn mint_pki() -> TestPki {
    let dir = tempfile::TempDir::new().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "OnAir test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    TestPki {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", cert.pem()),
        key: write("server.key", key.serialize_pem()),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
        _dir: dir,
    }
}

/// A tiny HTTPS server: records each request's first line and answers the cloud's
/// callback "OK".
async fn https_receiver(pki: &TestPki) -> (u16, Arc<Mutex<Vec<String>>>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert_der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then Content-Length bytes of body.
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text[..end]
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(str::to_owned))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            log.lock().unwrap().push(text.lines().next().unwrap_or_default().to_owned());
                            let body = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#;
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = tls.write_all(reply.as_bytes()).await;
                            let _ = tls.flush().await;
                            buf.clear();
                        }
                    }
                }
            });
        }
    });
    (port, seen)
}

async fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("not within {within:?}: {what}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_trust_the_configured_ca_file() {
    let pki = mint_pki();
    let (port, seen) = https_receiver(&pki).await;
    let url = format!("https://localhost:{port}/cb");

    // Without the CA the receiver's certificate is unknown: nothing arrives.
    let server = Server::start(&format!("[callback]\nurl = \"{url}\"\ntimeout_ms = 500\n")).await;
    server.create_room("tls").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("tls").await;
    assert_eq!(alice.send_text("tls", "untrusted", "Normal", 1).await["code"], 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(seen.lock().unwrap().is_empty(), "no request over an untrusted certificate");
    drop(alice);
    drop(server);

    // With `[tls] ca_file` the same backend is trusted.
    let server =
        Server::start(&format!("[callback]\nurl = \"{url}\"\ntimeout_ms = 2000\n[tls]\nca_file = {:?}\n", pki.ca))
            .await;
    server.create_room("tls").await;
    let mut alice = server.login_client("alice", "Web").await;
    alice.join_ok("tls").await;
    assert_eq!(alice.send_text("tls", "trusted", "Normal", 2).await["code"], 0);
    let arrived = wait_until("an https callback", T, || {
        seen.lock().unwrap().iter().any(|l| l.starts_with("POST /cb?") && l.contains("CallbackAfterSendMsg"))
    })
    .await;
    assert!(arrived, "the after-send callback arrives over TLS; saw {:?}", seen.lock().unwrap());
}

/// Runs `onair serve` with `config` and returns its stderr if it exits within 20 s
/// (None if it kept running: it started).
async fn start_fails(config: &Path) -> Option<String> {
    let mut child = tokio::process::Command::new(onair_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("ONAIR_LOG", "warn")
        .env("ONAIR_RTMP__LISTEN", "127.0.0.1:0")
        .env("ONAIR_WEBRTC__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(_) => {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            Some(text)
        }
        Err(_) => None,
    }
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("onair.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[app]\nsdkappid = {SDKAPPID}\nsecret_key = \
             \"{SECRET_KEY}\"\n{extra}\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmode_require_and_verify_use_tls() {
    let Some(db) = fresh_postgres().await else {
        eprintln!("skipped: no PostgreSQL at 127.0.0.1:5432");
        return;
    };
    // `require`: TLS without checking the certificate (the local server has one).
    let url = format!("{}?sslmode=require", db.url);
    let server = Server::start(&format!("[store]\nurl = {url:?}\n")).await;
    assert_eq!(server.http("GET", "/healthz", None).await.0, 200);
    server.create_room("pg-tls").await;
    // The server's own view: onair's connections to this scratch database are
    // encrypted.
    let db_name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let query = format!(
        "select count(*) filter (where s.ssl), count(*) from pg_stat_activity a \
         join pg_stat_ssl s using (pid) where a.application_name = 'onair' and a.datname = '{db_name}'"
    );
    let ssl = std::process::Command::new("psql")
        .arg("postgres://postgres@127.0.0.1:5432/postgres")
        .args(["-Atc", &query])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if let Ok(counts) = &ssl {
        let (tls, all) = counts.split_once('|').unwrap_or(("0", "0"));
        assert!(tls.parse::<u32>().unwrap_or(0) >= 1 && tls == all, "onair's connections over TLS: {counts}");
    }
    drop(server);

    // `verify-full` against a CA that did not sign the server's certificate: the
    // handshake is attempted and the certificate refused — the start fails.
    let pki = mint_pki();
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("{}?sslmode=verify-full", db.url);
    let config = write_config(dir.path(), &format!("[store]\nurl = {url:?}\n[tls]\nca_file = {:?}\n", pki.ca));
    let err = start_fails(&config).await.expect("verify-full with the wrong CA must not start");
    let lower = err.to_ascii_lowercase();
    assert!(
        lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl"),
        "the failure names the certificate: {err}"
    );
    assert!(!err.contains("TLS upgrade required"), "TLS is built in: {err}");

    // `verify-ca` with the server's own (self-signed) certificate as `[tls] ca_file`.
    let snakeoil = Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    if snakeoil.exists() {
        let url = format!("{}?sslmode=verify-ca", db.url);
        let server =
            Server::start(&format!("[store]\nurl = {url:?}\n[tls]\nca_file = {:?}\n", snakeoil.display().to_string()))
                .await;
        assert_eq!(server.http("GET", "/healthz", None).await.0, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_the_configured_ca() {
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        eprintln!("skipped: no redis-server");
        return;
    }
    let pki = mint_pki();
    let port = reserved_port();
    let dir = tempfile::TempDir::new().unwrap();
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--requirepass", "s3cret-pw"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let up = wait_until("redis TLS port", T, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    assert!(up, "redis-server with TLS did not start");

    let url = format!("rediss://:s3cret-pw@localhost:{port}");
    let server = Server::start(&format!("[cluster]\nredis = {url:?}\n[tls]\nca_file = {:?}\n", pki.ca)).await;
    let (status, health) = server.http("GET", "/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(health["cluster"]["bus"], "ok", "the node reached Redis over TLS: {health}");
    // The password is in no log line and not in the admin console.
    let (_, cfg) = server.http("GET", &server.admin("/api/v1/admin/config"), None).await;
    assert!(!cfg.to_string().contains("s3cret-pw"), "{cfg}");
    assert!(server.stderr().iter().all(|l| !l.contains("s3cret-pw")), "{:?}", server.stderr());

    // Without the CA the certificate is refused, and the error does not show the
    // password either.
    let dir = tempfile::TempDir::new().unwrap();
    let config = write_config(dir.path(), &format!("[cluster]\nredis = {url:?}\n"));
    let err = start_fails(&config).await.expect("an untrusted Redis certificate must fail the start");
    assert!(!err.contains("s3cret-pw"), "the start error hides the password: {err}");
    assert!(err.contains("rediss://***@localhost"), "{err}");
    let _ = redis.start_kill();
}
