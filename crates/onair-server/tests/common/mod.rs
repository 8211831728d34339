//! Black-box harness: runs the real `onair` binary on a free port in a temp data
//! dir and talks to it over real WebSocket and HTTP connections.
//!
//! With `ONAIR_TEST_STORE=postgres` every server a test starts uses a fresh
//! PostgreSQL database instead of SQLite (e.g. `ONAIR_TEST_STORE=postgres cargo test
//! -p onair-server --test business`), so any suite can be run on both backends.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SDKAPPID: u64 = 1_400_000_001;
pub const SECRET_KEY: &str = "testsecretkey0123456789abcdef0123456789abcdef";
pub const ADMIN: &str = "administrator";

/// Generous: the machine has 2 cores and tests run in parallel.
pub const T: Duration = Duration::from_secs(10);

/// A port that is free now and outside the kernel's ephemeral range (32768–60999),
/// for a test that must name a port before its server starts: every other server
/// and client here gets its ports from that range (port 0), so none can take this
/// one between the check and the bind.
pub fn reserved_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread parallel test binaries apart; within one, hand out ports in turn.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 100) as u16 * 100;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 100;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The binary under test: this build's, or `ONAIR_TEST_BIN` (e.g. an older build, to
/// show that a new test fails without the change it covers).
pub fn onair_bin() -> String {
    std::env::var("ONAIR_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_onair").to_owned())
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A UserSig for this test app.
pub fn sig(user: &str) -> String {
    onair_auth::gen_usersig(SDKAPPID, SECRET_KEY, user, 86_400, now_secs())
}

/// A PostgreSQL database of this test's own, created empty on the local server
/// (`ONAIR_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`) and
/// dropped with the returned handle; its `url` is what `[store] url` takes, e.g.
/// `Server::start_with_env(toml, &[("ONAIR_STORE__URL", &pg.url)])`. `None`, after a
/// loud message on stderr, only if PostgreSQL is unreachable — and then a panic
/// instead when `ONAIR_REQUIRE_POSTGRES` is set (CI).
pub async fn fresh_postgres() -> Option<onair_store::test_util::ScratchPostgres> {
    onair_store::test_util::ScratchPostgres::create().await
}

/// A running `onair serve`.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    pub port: u16,
    /// The RTMP listener's port (the harness puts it on a free port).
    pub rtmp_port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Everything the server printed on stdout (the banner).
    stdout: Arc<Mutex<Vec<String>>>,
    env: Vec<(String, String)>,
    /// The PostgreSQL database this server uses, when `ONAIR_TEST_STORE=postgres`.
    pg: Option<onair_store::test_util::ScratchPostgres>,
}

impl Server {
    /// Starts a server with the base config plus `extra_toml`.
    pub async fn start(extra_toml: &str) -> Server {
        Server::start_with_env(extra_toml, &[]).await
    }

    /// Like [`Server::start`], with extra `ONAIR_…` environment variables (for
    /// settings in tables the base config already opens, such as `[http]`).
    pub async fn start_with_env(extra_toml: &str, env: &[(&str, &str)]) -> Server {
        // Per-user send limits are off unless a test sets them: most tests send fast
        // and repeat texts on purpose.
        const LIMITS_OFF: &str = "user_rate_per_sec = 0\nflood_max_repeats = 0\n";
        let extra_toml = if extra_toml.contains("user_rate_per_sec") || extra_toml.contains("flood_max_repeats") {
            extra_toml.to_string()
        } else if extra_toml.contains("[chat]\n") {
            extra_toml.replacen("[chat]\n", &format!("[chat]\n{LIMITS_OFF}"), 1)
        } else {
            format!("{extra_toml}\n[chat]\n{LIMITS_OFF}")
        };
        let dir = tempfile::TempDir::new().expect("temp dir");
        let config = dir.path().join("onair.toml");
        let text = format!(
            "data_dir = {data:?}\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[app]\nsdkappid = {SDKAPPID}\n\
             secret_key = \"{SECRET_KEY}\"\nadmins = [\"{ADMIN}\"]\n\n{extra_toml}\n",
            data = dir.path().display().to_string(),
        );
        std::fs::write(&config, text).expect("write config");
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        // ONAIR_TEST_STORE=postgres runs any test file on PostgreSQL: each server
        // gets a fresh database (unless the test chose its own [store] url).
        // A server pointed at another's data dir (ONAIR_DATA_DIR, as the cluster
        // tests do to share one database) gets that server's database.
        let mut pg = None;
        if std::env::var("ONAIR_TEST_STORE").is_ok_and(|v| v == "postgres")
            && !env.iter().any(|(k, _)| k == "ONAIR_STORE__URL")
            && !extra_toml.contains("[store]")
        {
            static BY_DATA_DIR: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
            let shared_dir = env.iter().find(|(k, _)| k == "ONAIR_DATA_DIR").map(|(_, v)| v.clone());
            let shared_url = shared_dir.and_then(|d| {
                BY_DATA_DIR.lock().unwrap().iter().find(|(dir, _)| *dir == d).map(|(_, url)| url.clone())
            });
            let url = match shared_url {
                Some(url) => url,
                None => {
                    let db = fresh_postgres().await.expect("ONAIR_TEST_STORE=postgres needs PostgreSQL");
                    let url = db.url.clone();
                    BY_DATA_DIR.lock().unwrap().push((dir.path().display().to_string(), url.clone()));
                    pg = Some(db);
                    url
                }
            };
            env.push(("ONAIR_STORE__URL".into(), url));
        }
        let mut server = Server {
            child: None,
            dir,
            config,
            port: 0,
            rtmp_port: 0,
            stderr: Arc::new(Mutex::new(Vec::new())),
            stdout: Arc::new(Mutex::new(Vec::new())),
            env,
            pg,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(onair_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("ONAIR_LOG", "warn")
            // Tests run in parallel: RTMP on a free port, never the default 1935.
            .env("ONAIR_RTMP__LISTEN", "127.0.0.1:0")
            // WebRTC likewise: a free UDP port on loopback, never the default 8189.
            .env("ONAIR_WEBRTC__LISTEN", "127.0.0.1:0")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn onair");
        let stderr = child.stderr.take().expect("stderr");
        let log = self.stderr.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut rtmp_port = 0;
        let out = self.stdout.clone();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                out.lock().unwrap().push(line.clone());
                if let Some(rest) = line.strip_prefix("rtmp listening on rtmp://127.0.0.1:") {
                    rtmp_port = rest.trim().parse::<u16>().expect("rtmp port");
                }
                if let Some(rest) = line.strip_prefix("listening on http://127.0.0.1:") {
                    return rest.trim().parse::<u16>().expect("port");
                }
            }
            // Copy first: panicking with the lock held would poison it for Drop.
            let stderr = self.stderr();
            panic!("onair exited before listening; stderr: {stderr:?}");
        })
        .await
        .expect("onair did not print its listening line within 30 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        let out = self.stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                out.lock().unwrap().push(line);
            }
        });
        self.port = port;
        self.rtmp_port = rtmp_port;
        self.child = Some(child);
    }

    /// SIGTERM, then wait for a clean exit (asserts exit status 0).
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("server running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("onair did not exit within 20 s of SIGTERM")
            .expect("wait");
        assert!(exit.success(), "onair exited with {exit:?} after SIGTERM; stderr: {:?}", self.stderr());
    }

    /// SIGKILL: the process dies at once (no shutdown, no lease release).
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().await.expect("kill");
    }

    /// Stops (if running) and starts again on the same data dir (new port).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.spawn().await;
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// Stdout so far (every start's banner).
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// A connected WebSocket client.
    pub async fn ws(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// A client logged in as `user` on `platform`.
    pub async fn login_client(&self, user: &str, platform: &str) -> Client {
        let mut c = self.ws().await;
        let ack = c.login(user, platform).await;
        assert_eq!(ack["code"], 0, "login {user}: {ack}");
        c
    }

    /// `sdkappid=…&identifier=administrator&usersig=…`.
    pub fn admin_query(&self) -> String {
        format!("sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={}", sig(ADMIN))
    }

    /// An admin API path with the auth query appended.
    pub fn admin(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{}", self.admin_query())
    }

    /// One HTTP/1.1 request; returns the status and the body parsed as JSON
    /// (`Value::String` of the raw text if it is not JSON).
    pub async fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let (status, text) = self.http_raw(method, path, body.map(|b| b.to_string())).await;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn http_raw(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        let (status, _, body) = self.http_full(method, path, body).await;
        (status, body)
    }

    /// One HTTP/1.1 request; returns the status, the response head (status line and
    /// headers) and the body.
    pub async fn http_full(&self, method: &str, path: &str, body: Option<String>) -> (u16, String, String) {
        tokio::time::timeout(T, http_request(self.port, method, path, body))
            .await
            .unwrap_or_else(|_| panic!("HTTP {method} {path} timed out"))
    }

    /// A path with `user`'s UserSig in the query (the cloud REST style).
    pub fn as_user(&self, path: &str, user: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}sdkappid={SDKAPPID}&identifier={user}&usersig={}", sig(user))
    }

    /// One cloud-compatible call `/v4/{service_command}` as the app admin; asserts
    /// HTTP 200 and returns the envelope.
    pub async fn v4(&self, service_command: &str, body: &Value) -> Value {
        let path = format!("/v4/{service_command}?{}&random=12345&contenttype=json", self.admin_query());
        let (status, v) = self.http("POST", &path, Some(body)).await;
        assert_eq!(status, 200, "/v4/{service_command} answered HTTP {status}: {v}");
        v
    }

    /// Like [`Server::v4`], and asserts `ActionStatus` OK.
    pub async fn v4_ok(&self, service_command: &str, body: &Value) -> Value {
        let v = self.v4(service_command, body).await;
        assert_eq!((&v["ActionStatus"], &v["ErrorCode"]), (&json!("OK"), &json!(0)), "/v4/{service_command}: {v}");
        v
    }

    /// Creates a room (admin) and asserts 201.
    pub async fn create_room(&self, room_id: &str) -> Value {
        let (status, v) =
            self.http("POST", &self.admin("/api/v1/rooms"), Some(&json!({"roomId": room_id, "name": room_id}))).await;
        assert_eq!(status, 201, "create room {room_id}: {v}");
        v
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, text) = self.http_raw("GET", "/metrics", None).await;
        assert_eq!(status, 200);
        text
    }

    /// The sum of a metric's samples (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        parse_metric(&self.metrics().await, name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.stderr();
            if !log.is_empty() {
                eprintln!("---- onair stderr ----\n{}\n----------------------", log.join("\n"));
            }
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Sum of every sample of `name` in Prometheus text.
pub fn parse_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
            if !rest.starts_with(' ') {
                return None;
            }
            rest.trim().parse::<f64>().ok()
        })
        .sum()
}

async fn http_request(port: u16, method: &str, path: &str, body: Option<String>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect http");
    let body = body.unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write http");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read http");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("http header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).expect("status").parse().expect("status code");
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    (status, head, String::from_utf8(payload).expect("utf-8 body"))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A JSON frame and when it arrived.
#[derive(Debug, Clone)]
pub struct Frame {
    pub at: Instant,
    pub v: Value,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// A close frame (code, reason).
    Close(Option<u16>, String),
    /// The stream ended without a close frame.
    Eof,
    /// A transport error (e.g. reset).
    Error(String),
}

enum Incoming {
    Frame(Frame),
    Other(Message),
    End(Ended),
}

type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client whose socket is always drained by a reader task (so it is
/// never a slow consumer); frames are buffered with their arrival time.
pub struct Client {
    sink: SplitSink<WsStream, Message>,
    rx: mpsc::UnboundedReceiver<Incoming>,
    buffer: VecDeque<Frame>,
    pub ended: Option<Ended>,
    next_id: u64,
    pub other: Vec<Message>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
            .await
            .expect("ws connect timed out")
            .expect("ws connect");
        Client::from_stream(ws)
    }

    pub fn from_stream(ws: WsStream) -> Client {
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let item = stream.next().await;
                let at = Instant::now();
                let msg = match item {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str())
                            .unwrap_or_else(|e| panic!("server sent non-JSON text {t:?}: {e}"));
                        Incoming::Frame(Frame { at, v })
                    }
                    Some(Ok(Message::Close(c))) => {
                        let (code, reason) = match c {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        let _ = tx.send(Incoming::End(Ended::Close(code, reason)));
                        break;
                    }
                    Some(Ok(other)) => Incoming::Other(other),
                    Some(Err(e)) => {
                        let _ = tx.send(Incoming::End(Ended::Error(e.to_string())));
                        break;
                    }
                    None => {
                        let _ = tx.send(Incoming::End(Ended::Eof));
                        break;
                    }
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Client { sink, rx, buffer: VecDeque::new(), ended: None, next_id: 1000, other: Vec::new() }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_raw(Message::text(v.to_string())).await;
    }

    pub async fn send_raw(&mut self, m: Message) {
        let sent = tokio::time::timeout(T, self.sink.send(m)).await.expect("ws send timed out");
        if let Err(e) = sent {
            // Say how the server ended the connection, if it did.
            let _ = self.pull(tokio::time::Instant::now() + Duration::from_secs(1)).await;
            while self.ended.is_none()
                && self.pull(tokio::time::Instant::now() + Duration::from_secs(1)).await.is_some()
            {}
            panic!("ws send failed: {e} (connection ended: {:?})", self.ended);
        }
    }

    /// Sends a close frame (best effort).
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(T, self.sink.send(Message::Close(None))).await;
    }

    /// The next frame off the wire (not the buffer), or `None` at timeout / end.
    async fn pull(&mut self, deadline: tokio::time::Instant) -> Option<Frame> {
        if self.ended.is_some() {
            return None;
        }
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return None,
                Ok(None) => {
                    self.ended.get_or_insert(Ended::Eof);
                    return None;
                }
                Ok(Some(Incoming::Frame(f))) => return Some(f),
                Ok(Some(Incoming::Other(m))) => self.other.push(m),
                Ok(Some(Incoming::End(e))) => {
                    self.ended = Some(e);
                    return None;
                }
            }
        }
    }

    /// The next JSON frame (buffered ones first).
    pub async fn recv_json_timeout(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(f) = self.buffer.pop_front() {
            return Some(f.v);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        self.pull(deadline).await.map(|f| f.v)
    }

    /// Waits for the ack with this id; every other frame stays buffered.
    pub async fn expect_ack(&mut self, id: &Value) -> Value {
        if let Some(i) = self.buffer.iter().position(|f| f.v["op"] == "ack" && f.v["id"] == *id) {
            return self.buffer.remove(i).unwrap().v;
        }
        let deadline = tokio::time::Instant::now() + T;
        loop {
            match self.pull(deadline).await {
                Some(f) if f.v["op"] == "ack" && f.v["id"] == *id => return f.v,
                Some(f) => self.buffer.push_back(f),
                None => panic!("no ack for id {id} (ended: {:?}); buffered: {:?}", self.ended, self.buffer),
            }
        }
    }

    /// Sends `req` with a fresh id and waits for its ack.
    pub async fn request(&mut self, mut req: Value) -> Value {
        let id = json!(self.next_id());
        req["id"] = id.clone();
        self.send_json(&req).await;
        self.expect_ack(&id).await
    }

    /// Waits for the first frame (buffered or new) matching `pred`; earlier
    /// non-matching frames stay buffered. Panics at timeout.
    pub async fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Frame {
        match self.try_wait_for(timeout, &pred).await {
            Some(f) => f,
            None => panic!("timed out waiting for {what} (ended: {:?}); buffered: {:?}", self.ended, self.buffer),
        }
    }

    pub async fn try_wait_for(&mut self, timeout: Duration, pred: &impl Fn(&Value) -> bool) -> Option<Frame> {
        if let Some(i) = self.buffer.iter().position(|f| pred(&f.v)) {
            return self.buffer.remove(i);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let f = self.pull(deadline).await?;
            if pred(&f.v) {
                return Some(f);
            }
            self.buffer.push_back(f);
        }
    }

    /// Waits for a push event of `kind` in `room`; returns the event.
    pub async fn wait_event(&mut self, room: &str, kind: &str) -> Value {
        let f = self
            .wait_for(&format!("{kind} event in {room}"), T, |v| {
                v["op"] == "push" && v["roomId"] == room && events(v).iter().any(|e| e["type"] == kind)
            })
            .await;
        self.take_event(f, |e| e["type"] == kind)
    }

    /// Takes the first event matching `pred` out of `f`; the rest of the frame (other
    /// events, messages) goes back to the front of the buffer for later waits.
    fn take_event(&mut self, mut f: Frame, pred: impl Fn(&Value) -> bool) -> Value {
        let list = f.v["events"].as_array_mut().unwrap();
        let i = list.iter().position(&pred).unwrap();
        let event = list.remove(i);
        if !list.is_empty() || !msgs(&f.v).is_empty() {
            self.buffer.push_front(f);
        }
        event
    }

    /// Waits for an event of `kind` in `room` satisfying `pred` (skipping others of that kind).
    pub async fn wait_event_where(&mut self, room: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let f = self
            .wait_for(&format!("matching {kind} event in {room}"), T, |v| {
                v["op"] == "push" && v["roomId"] == room && events(v).iter().any(|e| e["type"] == kind && pred(e))
            })
            .await;
        self.take_event(f, |e| e["type"] == kind && pred(e))
    }

    /// Every push frame (buffered and new) for `duration`; other frames stay buffered.
    pub async fn collect_pushes(&mut self, duration: Duration) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for f in self.buffer.drain(..) {
            if f.v["op"] == "push" { out.push(f) } else { keep.push_back(f) }
        }
        self.buffer = keep;
        let deadline = tokio::time::Instant::now() + duration;
        while let Some(f) = self.pull(deadline).await {
            if f.v["op"] == "push" {
                out.push(f);
            } else {
                self.buffer.push_back(f);
            }
        }
        out
    }

    /// Collects pushed messages of `room` until `n` have arrived (panics at timeout).
    pub async fn collect_msgs(&mut self, room: &str, n: usize, timeout: Duration) -> Vec<(Instant, Value)> {
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for f in self.buffer.drain(..) {
            if f.v["op"] == "push" && f.v["roomId"] == room {
                out.extend(msgs(&f.v).into_iter().map(|m| (f.at, m)));
            } else {
                keep.push_back(f);
            }
        }
        self.buffer = keep;
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match self.pull(deadline).await {
                Some(f) if f.v["op"] == "push" && f.v["roomId"] == room => {
                    out.extend(msgs(&f.v).into_iter().map(|m| (f.at, m)))
                }
                Some(f) => self.buffer.push_back(f),
                None => panic!("got {} of {n} messages in {room} (ended: {:?})", out.len(), self.ended),
            }
        }
        out
    }

    /// Drops every buffered frame.
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Buffered frames (not yet consumed).
    pub fn buffered(&self) -> Vec<Value> {
        self.buffer.iter().map(|f| f.v.clone()).collect()
    }

    /// Waits until the connection ends; returns how (frames meanwhile are buffered).
    pub async fn wait_closed(&mut self, timeout: Duration) -> Ended {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ended.is_none() {
            match self.pull(deadline).await {
                Some(f) => self.buffer.push_back(f),
                None if self.ended.is_none() => panic!("connection still open after {timeout:?}"),
                None => {}
            }
        }
        self.ended.clone().unwrap()
    }

    pub async fn login(&mut self, user: &str, platform: &str) -> Value {
        self.login_with(json!({"userId": user, "userSig": sig(user), "platform": platform, "sdkappid": SDKAPPID})).await
    }

    pub async fn login_with(&mut self, mut req: Value) -> Value {
        req["op"] = json!("login");
        self.request(req).await
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.request(json!({"op": "join", "roomId": room})).await
    }

    /// Joins and asserts success.
    pub async fn join_ok(&mut self, room: &str) -> Value {
        let ack = self.join(room).await;
        assert_eq!(ack["code"], 0, "join {room}: {ack}");
        ack
    }

    pub async fn send_text(&mut self, room: &str, text: &str, priority: &str, random: u32) -> Value {
        self.send_body(room, json!([text_elem(text)]), priority, random).await
    }

    pub async fn send_body(&mut self, room: &str, body: Value, priority: &str, random: u32) -> Value {
        self.request(json!({"op": "send", "roomId": room, "priority": priority, "random": random, "body": body})).await
    }

    /// Sends without waiting for the ack; returns the id.
    pub async fn send_text_nowait(&mut self, room: &str, text: &str, priority: &str, random: u32) -> Value {
        let id = json!(self.next_id());
        let req = json!({"op": "send", "id": id, "roomId": room, "priority": priority, "random": random,
                         "body": [text_elem(text)]});
        self.send_json(&req).await;
        id
    }

    pub async fn ping(&mut self) -> Value {
        self.request(json!({"op": "ping"})).await
    }

    /// Asserts the connection still answers.
    pub async fn assert_alive(&mut self) {
        let ack = self.ping().await;
        assert_eq!(ack["code"], 0, "ping: {ack}");
        assert!(ack["time"].as_u64().unwrap_or(0) > 1_700_000_000, "ping time: {ack}");
    }
}

pub fn text_elem(text: &str) -> Value {
    json!({"MsgType": "TIMTextElem", "MsgContent": {"Text": text}})
}

/// The events array of a push.
pub fn events(v: &Value) -> Vec<Value> {
    v["events"].as_array().cloned().unwrap_or_default()
}

/// The msgs array of a push.
pub fn msgs(v: &Value) -> Vec<Value> {
    v["msgs"].as_array().cloned().unwrap_or_default()
}

/// Close code helper for tests.
pub fn close_code(e: &Ended) -> Option<u16> {
    match e {
        Ended::Close(c, _) => *c,
        _ => None,
    }
}

pub fn is_code(e: &Ended, code: u16) -> bool {
    matches!(e, Ended::Close(Some(c), _) if *c == code)
}

/// Polls `f` until it returns true (panics after `timeout`).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A UserSig from the official Python package. Fails (never skips) when it is missing.
pub fn official_sig(identifier: &str, expire: u64) -> String {
    let script = format!(
        "import sys\ntry:\n    import TLSSigAPIv2\nexcept ImportError:\n    sys.exit(42)\n\
         print(TLSSigAPIv2.TLSSigAPIv2({SDKAPPID}, {SECRET_KEY:?}).gen_sig({identifier:?}, {expire}))\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 is needed for this test (and `pip install tls-sig-api-v2`)");
    assert_ne!(
        out.status.code(),
        Some(42),
        "the official TLSSigAPIv2 Python package is missing: run `pip install tls-sig-api-v2`"
    );
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(sig.len() > 50, "unexpected official UserSig {sig:?}");
    sig
}
