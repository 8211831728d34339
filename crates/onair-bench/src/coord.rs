//! The parent of a `chat` run: creates the room, starts the workers,
//! measures the server from `/proc`, drives the timeline and aggregates.
//!
//! Timeline: connect (workers report `ready`) → settle (idle RSS and CPU) →
//! start (senders begin) → warmup → measurement window (deliveries/s,
//! latency, CPU) → senders stop → drain (viewers keep counting so loss is
//! judged on delivered, not in-flight, messages) → stop.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};

use crate::hist::Histogram;
use crate::net::{WsUrl, http_json, http_post_json, urlencode};
use crate::procfs::{CpuMark, cpu_split, machine_busy_pct, machine_jiffies, rss_bytes};
use crate::target::Target;
use crate::worker::{Ready, Report, Timeline, WorkerResult, WorkerSpec, now_us};

#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// WebSocket URL of the server (OnAir: `ws://HOST:PORT/ws`; Socket.IO:
    /// `ws://HOST:PORT`, the Engine.IO path is added). Several (repeated or
    /// comma-separated) spread the connections over cluster nodes, see `--spread`;
    /// the room is created on the first.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,
    /// With several `--url`s: `conn` gives every viewer worker's connections to
    /// the servers round-robin; `proc` pins viewer worker k to server k mod n.
    /// Senders and sampled viewers are always spread round-robin.
    #[arg(long, value_enum, default_value = "conn")]
    pub spread: Spread,
    #[arg(long, value_enum, default_value = "onair")]
    pub target: Target,
    /// Viewers (anonymous, receive only).
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Logged-in senders (`bench-sender-0..P`).
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Messages per second, in total over all senders.
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds of sending before the window opens.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Seconds viewers keep counting after the senders stop.
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
    /// Idle seconds after all viewers joined (idle RSS and CPU).
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
    #[arg(long, default_value = "bench")]
    pub room: String,
    #[arg(long, default_value_t = 1_400_000_001)]
    pub sdkappid: u64,
    #[arg(long, env = "ONAIR_BENCH_SECRET_KEY", default_value = "benchsecretkey0123456789")]
    pub secret_key: String,
    /// Viewer worker processes (plus one probe process for senders and
    /// sampled viewers).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Fraction of viewers that decode JSON and measure latency.
    #[arg(long, default_value_t = 0.02)]
    pub sample: f64,
    /// Server process(es) to read RSS and CPU from (`/proc/PID`), one per
    /// `--url` in the same order (repeated or comma-separated). With several,
    /// the `server` line is their sum and each node gets its own line.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Redis (`HOST:PORT`) of a cluster: `INFO` is read at the start and end of the
    /// window to report Redis commands per message and Redis CPU.
    #[arg(long)]
    pub redis: Option<String>,
    /// Print the report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Client source addresses 127.0.0.2..=127.0.0.(N+1).
    #[arg(long, default_value_t = 8)]
    pub src_addrs: usize,
    /// Connection attempts in flight per worker.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Per-connection timeout for connect + upgrade + join, seconds.
    #[arg(long, default_value_t = 20)]
    pub connect_timeout: u64,
    /// How often raw viewers drain their sockets, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub read_interval_ms: u64,
    /// Raw viewers polled by one task.
    #[arg(long, default_value_t = 500)]
    pub group_size: usize,
    /// Refuse to put more sockets than this into one process (the machine
    /// allows 20,000 open files per process).
    #[arg(long, default_value_t = 15_000)]
    pub max_per_proc: usize,
    /// Don't create the room over HTTP first (OnAir only).
    #[arg(long)]
    pub no_create_room: bool,
    /// Before starting, wait up to this many seconds for the machine to be
    /// idle (other processes < 10 % of a core), so they don't skew the run.
    #[arg(long, default_value_t = 0)]
    pub wait_idle: u64,
}

/// How viewer connections are spread over several servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    Conn,
    Proc,
}

struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    probe: bool,
}

pub async fn run(args: ChatArgs) -> Result<()> {
    if args.rate <= 0.0 || args.senders == 0 {
        bail!("need --senders ≥ 1 and --rate > 0");
    }
    let mut servers = Vec::new();
    for u in &args.url {
        let url = WsUrl::parse(u)?;
        let dst = url.resolve()?;
        servers.push((url, dst));
    }
    let Some((url, dst)) = servers.first().cloned() else { bail!("need at least one --url") };
    let n_nodes = servers.len();
    if args.server_pid.len() > 1 && args.server_pid.len() != n_nodes {
        bail!("give one --server-pid per --url ({} URLs, {} pids)", n_nodes, args.server_pid.len());
    }
    let sampled = if args.sample > 0.0 && args.viewers > 0 {
        ((args.viewers as f64 * args.sample).ceil() as usize).clamp(1, args.viewers)
    } else {
        0
    };
    let raw = args.viewers - sampled;
    let procs = args.procs.max(1);
    let per_proc = raw.div_ceil(procs);
    if per_proc > args.max_per_proc {
        bail!(
            "{raw} raw viewers over {procs} processes is {per_proc} sockets each; use --procs {}",
            raw.div_ceil(args.max_per_proc)
        );
    }
    if sampled + args.senders > args.max_per_proc {
        bail!("too many sampled viewers + senders for one probe process; lower --sample");
    }

    if args.wait_idle > 0 {
        wait_idle(&args).await;
    }
    if args.target == Target::Onair && !args.no_create_room {
        create_room(&args, &url, dst).await?;
        // Other nodes learn of the room through the cluster bus.
        for (u, d) in servers.iter().skip(1) {
            wait_room(&args, u, *d).await?;
        }
    }

    // One entry per server (a dummy 0 when none was given: reads fail → n/a).
    let spids: Vec<u32> = if args.server_pid.is_empty() { vec![0] } else { args.server_pid.clone() };
    let rss_before_each: Vec<Option<u64>> = spids.iter().map(|p| rss_bytes(*p)).collect();
    let rss_before = sum_u64(&rss_before_each);
    let started = Instant::now();

    // Spawn: probe first (index 0), then the viewer workers.
    let exe = std::env::current_exe().context("current_exe")?;
    let (tx, mut rx) = mpsc::channel::<(usize, Report)>(64);
    let mut workers: Vec<Worker> = Vec::new();
    let mut specs = vec![(true, sampled)];
    for i in 0..procs {
        let n = raw / procs + usize::from(i < raw % procs);
        if n > 0 {
            specs.push((false, n));
        }
    }
    for (index, (probe, viewers)) in specs.into_iter().enumerate() {
        // Viewer worker k (index k + 1) pinned to server k mod n with `--spread proc`.
        let only = (!probe && n_nodes > 1 && args.spread == Spread::Proc).then(|| (index - 1) % n_nodes);
        let spec = WorkerSpec {
            index,
            probe,
            target: args.target,
            urls: args.url.clone(),
            only,
            room: args.room.clone(),
            viewers,
            senders: if probe { args.senders } else { 0 },
            rate: args.rate,
            sdkappid: args.sdkappid,
            secret_key: args.secret_key.clone(),
            src_addrs: args.src_addrs,
            connect_concurrency: args.connect_concurrency,
            connect_timeout_secs: args.connect_timeout,
            read_interval_ms: args.read_interval_ms,
            group_size: args.group_size,
        };
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg("--spec")
            .arg(serde_json::to_string(&spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning worker")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let stdin = child.stdin.take();
        let pid = child.id().unwrap_or(0);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Report>(&line) {
                    Ok(r) => {
                        if tx.send((index, r)).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("worker {index}: {line}"),
                }
            }
        });
        workers.push(Worker { child, stdin, pid, probe });
    }
    drop(tx);
    let n_workers = workers.len();
    progress(
        &args,
        &format!(
            "{n_workers} workers ({} viewers: {raw} raw over {} procs, {sampled} sampled; {} senders); connecting…",
            args.viewers,
            n_workers - 1,
            args.senders
        ),
    );

    // Connect phase.
    let mut readies: Vec<Option<Ready>> = vec![None; n_workers];
    let connect_deadline = Instant::now() + Duration::from_secs(60 + (args.viewers as u64 / 100));
    while readies.iter().any(Option::is_none) {
        let got = tokio::time::timeout_at(connect_deadline, rx.recv()).await;
        match got {
            Ok(Some((i, Report::Ready(r)))) => {
                progress(
                    &args,
                    &format!("worker {i}: {} connected, {} failed in {:.1}s", r.connected, r.failed, r.connect_secs),
                );
                readies[i] = Some(r);
            }
            Ok(Some((i, Report::Result(_)))) => {
                bail!("worker {i} reported a result before the run")
            }
            Ok(None) => bail!("a worker exited during the connect phase"),
            Err(_) => bail!("workers did not finish connecting in time"),
        }
    }
    let readies: Vec<Ready> = readies.into_iter().flatten().collect();
    let connect_secs = started.elapsed().as_secs_f64();

    // Settle: idle memory and CPU.
    let idle_a = CpuMark::take(&spids);
    sleep(Duration::from_secs(args.settle)).await;
    let idle_b = CpuMark::take(&spids);
    let rss_idle_each: Vec<Option<u64>> = spids.iter().map(|p| rss_bytes(*p)).collect();
    let rss_idle = sum_u64(&rss_idle_each);
    let cpu_idle_each = idle_b.percent_since(&idle_a);
    let cpu_idle = sum_f64(&cpu_idle_each);

    // Run.
    let start_us = now_us() + 500_000;
    let tl = Timeline {
        start_us,
        measure_start_us: start_us + args.warmup * 1_000_000,
        measure_end_us: start_us + (args.warmup + args.duration) * 1_000_000,
        stop_us: start_us + (args.warmup + args.duration + args.drain) * 1_000_000,
    };
    let line = format!("{}\n", serde_json::to_string(&tl)?);
    for w in &mut workers {
        if let Some(stdin) = w.stdin.as_mut() {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await?;
        }
    }
    progress(
        &args,
        &format!(
            "sending {} msgs/s: {}s warmup, {}s measured, {}s drain",
            args.rate, args.warmup, args.duration, args.drain
        ),
    );

    // [servers..., parent, workers...]
    let mut pids: Vec<u32> = spids.clone();
    pids.push(std::process::id());
    pids.extend(workers.iter().map(|w| w.pid));
    sleep_until(at(tl.measure_start_us)).await;
    let cpu_a = CpuMark::take(&pids);
    let split_a: Vec<Option<(f64, f64)>> = spids.iter().map(|p| cpu_split(*p)).collect();
    let machine_a = machine_jiffies();
    let redis_a = sample_redis(&args).await;
    let health_a = sample_health(&servers).await;
    let mut rss_max_each: Vec<Option<u64>> = vec![None; spids.len()];
    let mut rss_max = None::<u64>;
    let mut track_rss = |rss_max_each: &mut Vec<Option<u64>>| {
        let now: Vec<Option<u64>> = spids.iter().map(|p| rss_bytes(*p)).collect();
        for (m, r) in rss_max_each.iter_mut().zip(&now) {
            if let Some(r) = *r {
                *m = Some(m.map_or(r, |m| m.max(r)));
            }
        }
        if let Some(r) = sum_u64(&now) {
            rss_max = Some(rss_max.map_or(r, |m| m.max(r)));
        }
        now
    };
    let window_end = at(tl.measure_end_us);
    while Instant::now() + Duration::from_secs(1) < window_end {
        sleep(Duration::from_secs(1)).await;
        track_rss(&mut rss_max_each);
    }
    sleep_until(window_end).await;
    let cpu_b = CpuMark::take(&pids);
    let split_b: Vec<Option<(f64, f64)>> = spids.iter().map(|p| cpu_split(*p)).collect();
    // Seconds of user and kernel time of all servers over the window.
    let cpu_split_secs = split_a.iter().zip(&split_b).try_fold((0.0, 0.0), |(u, k), (a, b)| {
        let (a, b) = ((*a)?, (*b)?);
        Some((u + b.0 - a.0, k + b.1 - a.1))
    });
    let machine = machine_busy_pct(machine_a, machine_jiffies());
    let redis_b = sample_redis(&args).await;
    let health_b = sample_health(&servers).await;
    let rss_load_each = track_rss(&mut rss_max_each);
    let rss_load = sum_u64(&rss_load_each);
    let cpu_all = cpu_b.percent_since(&cpu_a);
    let (cpu_servers, cpu_tool) = cpu_all.split_at(spids.len());
    let mut cpu = vec![sum_f64(cpu_servers)];
    cpu.extend_from_slice(cpu_tool);
    let per_server: Vec<ServerEach> = (0..spids.len())
        .map(|i| ServerEach {
            rss_idle: rss_idle_each[i],
            rss_before: rss_before_each[i],
            rss_max: rss_max_each[i],
            cpu_idle: cpu_idle_each.get(i).copied().flatten(),
            cpu: cpu_servers.get(i).copied().flatten(),
        })
        .collect();
    let redis_ops_each: Vec<Option<u64>> =
        health_a.iter().zip(&health_b).map(|(a, b)| Some(b.as_ref()?.saturating_sub(*a.as_ref()?))).collect();

    // Results.
    let mut results: Vec<Option<WorkerResult>> = vec![None; n_workers];
    let result_deadline = at(tl.stop_us) + Duration::from_secs(30);
    while results.iter().any(Option::is_none) {
        match tokio::time::timeout_at(result_deadline, rx.recv()).await {
            Ok(Some((i, Report::Result(r)))) => results[i] = Some(*r),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let missing = results.iter().filter(|r| r.is_none()).count();
    if missing > 0 {
        eprintln!("onair-bench: {missing} workers did not report; their viewers count as lost");
    }
    for w in &mut workers {
        drop(w.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await.is_err() {
            let _ = w.child.start_kill();
        }
    }

    let mut report = build_report(
        &args,
        &readies,
        &results,
        &workers,
        connect_secs,
        ServerSample { rss_before, rss_idle, rss_max, rss_load, cpu_idle, cpu, cpu_split_secs, machine },
    );
    if n_nodes > 1 || args.server_pid.len() > 1 {
        report.nodes = node_reports(&args, &readies, &results, &report, &per_server, &redis_ops_each);
    }
    if let (Some(a), Some(b)) = (redis_a, redis_b) {
        report.redis = Some(redis_report(&args, &a, &b, &report));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

async fn wait_idle(args: &ChatArgs) {
    let deadline = Instant::now() + Duration::from_secs(args.wait_idle);
    let me: Vec<u32> = if args.server_pid.is_empty() { vec![0] } else { args.server_pid.clone() };
    loop {
        let (m, c) = (machine_jiffies(), CpuMark::take(&me));
        sleep(Duration::from_secs(1)).await;
        let busy = machine_busy_pct(m, machine_jiffies()).map_or(0.0, |b| b.0);
        let server: f64 = CpuMark::take(&me).percent_since(&c).iter().flatten().sum();
        if busy - server < 10.0 {
            return;
        }
        if Instant::now() >= deadline {
            progress(
                args,
                &format!("machine still busy ({:.0}% of a core outside the server); starting anyway", busy - server),
            );
            return;
        }
    }
}

fn progress(args: &ChatArgs, msg: &str) {
    let _ = args;
    eprintln!("onair-bench: {msg}");
}

fn at(unix_us: u64) -> Instant {
    let now = now_us();
    Instant::now() + Duration::from_micros(unix_us.saturating_sub(now))
}

async fn create_room(args: &ChatArgs, url: &WsUrl, dst: std::net::SocketAddr) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let sig = onair_auth::gen_usersig(args.sdkappid, &args.secret_key, "administrator", 86_400, now);
    let path = format!("/api/v1/rooms?sdkappid={}&identifier=administrator&usersig={}", args.sdkappid, urlencode(&sig));
    let body = serde_json::json!({"roomId": args.room, "name": "bench"}).to_string();
    let (code, resp) = http_post_json(dst, &url.authority, &path, &body).await.context("creating the room")?;
    let exists = code == 409 || resp.to_ascii_lowercase().contains("exist");
    if (200..300).contains(&code) || exists {
        progress(args, &format!("room {:?}: HTTP {code}{}", args.room, if exists { " (exists)" } else { "" }));
        Ok(())
    } else {
        bail!("creating room {:?}: HTTP {code}: {}", args.room, resp.chars().take(300).collect::<String>())
    }
}

/// Waits until a room created on the first node exists on another (it arrives
/// through the cluster's control channel).
async fn wait_room(args: &ChatArgs, url: &WsUrl, dst: std::net::SocketAddr) -> Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let sig = onair_auth::gen_usersig(args.sdkappid, &args.secret_key, "administrator", 86_400, now);
    let path = format!(
        "/api/v1/rooms/{}?sdkappid={}&identifier=administrator&usersig={}",
        urlencode(&args.room),
        args.sdkappid,
        urlencode(&sig)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok((200, _)) = http_json("GET", dst, &url.authority, &path, "").await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("room {:?} never appeared on {}", args.room, url.authority);
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// `cluster.redisOps` of each node's `/healthz` (None where it did not answer).
async fn sample_health(servers: &[(WsUrl, std::net::SocketAddr)]) -> Vec<Option<u64>> {
    if servers.len() < 2 {
        return vec![None; servers.len()];
    }
    let mut out = Vec::new();
    for (u, d) in servers {
        let got =
            tokio::time::timeout(Duration::from_secs(2), http_json("GET", *d, &u.authority, "/healthz", "")).await;
        out.push(match got {
            Ok(Ok((200, body))) => {
                serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["cluster"]["redisOps"].as_u64())
            }
            _ => None,
        });
    }
    out
}

/// `INFO stats cpu commandstats` of the cluster's Redis, as `key → value` lines.
async fn sample_redis(args: &ChatArgs) -> Option<BTreeMap<String, String>> {
    let addr = args.redis.as_deref()?;
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"INFO stats cpu commandstats\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut s, &mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            // `$LEN\r\n` + LEN bytes + `\r\n`.
            if let Some(eol) = buf.iter().position(|b| *b == b'\n') {
                let len: usize =
                    std::str::from_utf8(&buf[1..eol]).ok().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
                if buf.len() >= eol + 1 + len + 2 {
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    match tokio::time::timeout(Duration::from_secs(2), fut).await {
        Ok(Ok(text)) => Some(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        ),
        _ => {
            eprintln!("onair-bench: could not read INFO from Redis at {addr}");
            None
        }
    }
}

fn sum_u64(v: &[Option<u64>]) -> Option<u64> {
    v.iter().flatten().copied().reduce(|a, b| a + b)
}

fn sum_f64(v: &[Option<f64>]) -> Option<f64> {
    v.iter().flatten().copied().reduce(|a, b| a + b)
}

/// One server's own memory and CPU.
struct ServerEach {
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    rss_max: Option<u64>,
    cpu_idle: Option<f64>,
    cpu: Option<f64>,
}

/// One node of a cluster run: its viewers, what they got, and what it cost.
#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub url: String,
    pub pid: Option<u32>,
    pub viewers: u64,
    pub received_total: u64,
    pub expected_total: u64,
    pub loss_pct: f64,
    /// Sampled viewers on this node.
    pub latency_ms: Latency,
    pub rss_idle_mib: Option<f64>,
    pub rss_per_idle_conn_kib: Option<f64>,
    pub rss_load_max_mib: Option<f64>,
    pub cpu_idle_pct: Option<f64>,
    pub cpu_load_pct: Option<f64>,
    /// Redis commands this node issued in the window (`/healthz` `cluster.redisOps`).
    pub redis_ops_window: Option<u64>,
}

/// Redis over the measurement window.
#[derive(Debug, Serialize)]
pub struct RedisReport {
    pub addr: String,
    /// `total_commands_processed` delta (pub/sub deliveries to subscribers are not commands).
    pub commands_window: u64,
    pub commands_per_sec: f64,
    /// Commands per chat message sent in the window (each goes to every viewer).
    pub commands_per_msg: f64,
    /// Commands per 1,000 messages delivered to viewers in the window.
    pub commands_per_1k_deliveries: f64,
    /// Calls per command in the window (non-zero only).
    pub calls: BTreeMap<String, u64>,
    /// Redis's own CPU (user + sys), window.
    pub cpu_pct: f64,
    /// Bytes Redis wrote to its clients (mostly pub/sub fan-out to nodes), per second.
    pub net_output_bytes_per_sec: f64,
    pub net_input_bytes_per_sec: f64,
}

fn node_reports(
    args: &ChatArgs,
    readies: &[Ready],
    results: &[Option<WorkerResult>],
    report: &ChatReport,
    each: &[ServerEach],
    redis_ops: &[Option<u64>],
) -> Vec<NodeReport> {
    let n = args.url.len().max(each.len());
    let accepted = report
        .messages
        .sent
        .saturating_sub(report.messages.ack_errors.values().sum::<u64>())
        .saturating_sub(report.messages.freq_dropped);
    (0..n)
        .map(|k| {
            let viewers: u64 = readies.iter().map(|r| r.viewers_by_node.get(k).copied().unwrap_or(0)).sum();
            let received: u64 = results.iter().flatten().map(|r| r.msgs_by_node.get(k).copied().unwrap_or(0)).sum();
            let mut lat = Histogram::default();
            for r in results.iter().flatten() {
                if let Some(h) = r.latency_by_node_us.get(k) {
                    lat.merge(h);
                }
            }
            let expected = accepted * viewers;
            let e = each.get(k);
            NodeReport {
                url: args.url.get(k).cloned().unwrap_or_default(),
                pid: args.server_pid.get(k).copied(),
                viewers,
                received_total: received,
                expected_total: expected,
                loss_pct: if expected > 0 { (1.0 - received as f64 / expected as f64) * 100.0 } else { 0.0 },
                latency_ms: Latency::from(&lat),
                rss_idle_mib: mib(e.and_then(|e| e.rss_idle)),
                rss_per_idle_conn_kib: e.and_then(|e| match (e.rss_before, e.rss_idle) {
                    (Some(a), Some(b)) if viewers > 0 => Some((b as f64 - a as f64) / 1024.0 / viewers as f64),
                    _ => None,
                }),
                rss_load_max_mib: mib(e.and_then(|e| e.rss_max)),
                cpu_idle_pct: e.and_then(|e| e.cpu_idle),
                cpu_load_pct: e.and_then(|e| e.cpu),
                redis_ops_window: redis_ops.get(k).copied().flatten(),
            }
        })
        .collect()
}

fn redis_report(
    args: &ChatArgs,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    report: &ChatReport,
) -> RedisReport {
    let num = |m: &BTreeMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let delta = |k: &str| (num(b, k) - num(a, k)).max(0.0);
    // `cmdstat_publish:calls=12,usec=…`
    let calls = |m: &BTreeMap<String, String>, k: &str| {
        m.get(k)
            .and_then(|v| v.split(',').find_map(|f| f.strip_prefix("calls=")))
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut per_cmd = BTreeMap::new();
    // The tool's own INFO calls are not the cluster's work.
    for k in b.keys().filter(|k| k.starts_with("cmdstat_") && *k != "cmdstat_info") {
        let d = calls(b, k).saturating_sub(calls(a, k));
        if d > 0 {
            per_cmd.insert(k.trim_start_matches("cmdstat_").to_string(), d);
        }
    }
    let dur = args.duration.max(1) as f64;
    // `total_commands_processed` counts the first INFO (the second is counted after
    // it answered), and the commands Lua scripts call (a lease renewal is EVAL + GET +
    // PEXPIRE).
    let commands = (delta("total_commands_processed") as u64).saturating_sub(1);
    let msgs = report.messages.sent_in_window;
    let deliveries = report.deliveries.per_sec * dur;
    RedisReport {
        addr: args.redis.clone().unwrap_or_default(),
        commands_window: commands,
        commands_per_sec: commands as f64 / dur,
        commands_per_msg: if msgs > 0 { commands as f64 / msgs as f64 } else { 0.0 },
        commands_per_1k_deliveries: if deliveries > 0.0 { commands as f64 / deliveries * 1000.0 } else { 0.0 },
        calls: per_cmd,
        cpu_pct: (delta("used_cpu_user") + delta("used_cpu_sys")) / dur * 100.0,
        net_output_bytes_per_sec: delta("total_net_output_bytes") / dur,
        net_input_bytes_per_sec: delta("total_net_input_bytes") / dur,
    }
}

struct ServerSample {
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    rss_max: Option<u64>,
    rss_load: Option<u64>,
    cpu_idle: Option<f64>,
    /// CPU % over the window: [server, parent, workers...].
    cpu: Vec<Option<f64>>,
    /// The servers' user and kernel CPU seconds over the window.
    cpu_split_secs: Option<(f64, f64)>,
    /// All cores (busy, softirq) %, window.
    machine: Option<(f64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct ChatReport {
    pub target: Target,
    pub url: String,
    pub room: String,
    pub viewers: usize,
    pub senders: usize,
    pub rate: f64,
    pub warmup_secs: u64,
    pub duration_secs: u64,
    pub procs: usize,
    pub sample: f64,
    pub connections: Connections,
    pub messages: Messages,
    pub deliveries: Deliveries,
    pub latency_ms: Latency,
    pub ack_rtt_ms: Latency,
    pub server: Server,
    pub tool: Tool,
    /// Per server, when there are several (`--url` / `--server-pid` repeated).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReport>,
}

#[derive(Debug, Serialize)]
pub struct Connections {
    pub viewers_connected: u64,
    pub senders_connected: u64,
    pub failed: u64,
    pub failed_reasons: BTreeMap<String, u64>,
    pub dropped: u64,
    pub drop_reasons: BTreeMap<String, u64>,
    pub connect_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Messages {
    pub sent: u64,
    pub sent_in_window: u64,
    pub sent_per_sec: f64,
    pub acked_ok: u64,
    pub freq_dropped: u64,
    pub ack_errors: BTreeMap<String, u64>,
    pub ack_missing: u64,
    pub send_skipped_ticks: u64,
}

#[derive(Debug, Serialize)]
pub struct Deliveries {
    /// Messages received by all viewers per second, measurement window.
    pub per_sec: f64,
    pub frames_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Accepted messages (sent − refused − frequency-dropped) × viewers
    /// connected; received = counted until the drain period ended.
    pub expected_total: u64,
    pub received_total: u64,
    pub loss_pct: f64,
    /// Per-viewer averages, to cross-check raw counting against JSON.
    pub per_raw_viewer: f64,
    pub per_sampled_viewer: f64,
    pub sampled_seq_gaps: u64,
    pub sampled_seq_dups: u64,
    pub sampled_parse_errors: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl From<&Histogram> for Latency {
    fn from(h: &Histogram) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            samples: h.n,
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            p999: ms(h.quantile(0.999)),
            max: ms(h.max),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Server {
    pub pid: Option<u32>,
    pub rss_before_mib: Option<f64>,
    pub rss_idle_mib: Option<f64>,
    pub rss_per_idle_conn_kib: Option<f64>,
    pub rss_load_mib: Option<f64>,
    pub rss_load_max_mib: Option<f64>,
    pub cpu_idle_pct: Option<f64>,
    pub cpu_load_pct: Option<f64>,
    /// Of `cpu_load_pct`, the share spent in the kernel (system time), %.
    pub cpu_kernel_share_pct: Option<f64>,
    /// Server CPU time (user + system) over the window per message delivered to a
    /// viewer in it, µs.
    pub cpu_us_per_delivery: Option<f64>,
    /// The same per frame a viewer received (one socket write each): unlike the cost
    /// per delivery, it does not depend on how many messages a round batched.
    pub cpu_us_per_frame: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Tool {
    /// Parent + all workers, measurement window (100 % = one core).
    pub cpu_pct: f64,
    pub cpu_probe_pct: f64,
    pub cpu_viewer_workers_pct: Vec<f64>,
    /// Whole machine busy over the window (100 % = one core), including
    /// kernel work not charged to any process.
    pub machine_busy_pct: Option<f64>,
    /// Of which softirq (network stack work on loopback).
    pub machine_softirq_pct: Option<f64>,
    pub machine_cores: usize,
}

fn mib(b: Option<u64>) -> Option<f64> {
    b.map(|b| b as f64 / (1024.0 * 1024.0))
}

fn build_report(
    args: &ChatArgs,
    readies: &[Ready],
    results: &[Option<WorkerResult>],
    workers: &[Worker],
    connect_secs: f64,
    s: ServerSample,
) -> ChatReport {
    let mut agg = WorkerResult::default();
    let mut failed_reasons: BTreeMap<String, u64> = BTreeMap::new();
    let (mut viewers, mut senders, mut failed) = (0, 0, 0);
    for r in readies {
        viewers += r.viewers;
        senders += r.senders;
        failed += r.failed;
        for (k, v) in &r.errors {
            *failed_reasons.entry(k.clone()).or_default() += v;
        }
    }
    let mut raw_msgs = 0;
    let mut raw_viewers = 0;
    for r in results.iter().flatten() {
        agg.msgs_window += r.msgs_window;
        agg.frames_window += r.frames_window;
        agg.bytes_window += r.bytes_window;
        agg.msgs_total += r.msgs_total;
        agg.dropped += r.dropped;
        for (k, v) in &r.drop_reasons {
            *agg.drop_reasons.entry(k.clone()).or_default() += v;
        }
        agg.sampled_viewers += r.sampled_viewers;
        agg.sampled_msgs_total += r.sampled_msgs_total;
        agg.latency_us.merge(&r.latency_us);
        agg.seq_gaps += r.seq_gaps;
        agg.seq_dups += r.seq_dups;
        agg.parse_errors += r.parse_errors;
        agg.sent += r.sent;
        agg.sent_window += r.sent_window;
        agg.acked_ok += r.acked_ok;
        for (k, v) in &r.ack_errors {
            *agg.ack_errors.entry(k.clone()).or_default() += v;
        }
        agg.freq_dropped += r.freq_dropped;
        agg.ack_missing += r.ack_missing;
        agg.ack_rtt_us.merge(&r.ack_rtt_us);
        agg.send_skipped_ticks += r.send_skipped_ticks;
        if r.senders == 0 {
            raw_msgs += r.msgs_total;
            raw_viewers += r.viewers;
        }
    }
    let dur = args.duration.max(1) as f64;
    let deliveries_in_window = agg.msgs_window as f64;
    // Messages the server took: every send except refusals and frequency
    // drops. A send whose ack never came (server backlog) still counts: it
    // may well have been delivered.
    let refused: u64 = agg.ack_errors.values().sum();
    let accepted = agg.sent.saturating_sub(refused + agg.freq_dropped);
    let expected = accepted * viewers;
    let loss_pct = if expected > 0 { (1.0 - agg.msgs_total as f64 / expected as f64) * 100.0 } else { 0.0 };
    let per = |m: u64, n: u64| if n > 0 { m as f64 / n as f64 } else { 0.0 };

    let server_rss_per_conn = match (s.rss_before, s.rss_idle) {
        (Some(a), Some(b)) if viewers + senders > 0 => {
            Some((b as f64 - a as f64) / 1024.0 / (viewers + senders) as f64)
        }
        _ => None,
    };
    let tool_cpu: f64 = s.cpu.iter().skip(1).flatten().sum();
    let mut probe_cpu = 0.0;
    let mut viewer_cpu = Vec::new();
    for (w, c) in workers.iter().zip(s.cpu.iter().skip(2)) {
        let c = c.unwrap_or(0.0);
        if w.probe {
            probe_cpu = c;
        } else {
            viewer_cpu.push((c * 10.0).round() / 10.0);
        }
    }
    ChatReport {
        target: args.target,
        url: args.url.join(","),
        room: args.room.clone(),
        viewers: args.viewers,
        senders: args.senders,
        rate: args.rate,
        warmup_secs: args.warmup,
        duration_secs: args.duration,
        procs: args.procs,
        sample: args.sample,
        connections: Connections {
            viewers_connected: viewers,
            senders_connected: senders,
            failed,
            failed_reasons,
            dropped: agg.dropped,
            drop_reasons: agg.drop_reasons,
            connect_secs,
        },
        messages: Messages {
            sent: agg.sent,
            sent_in_window: agg.sent_window,
            sent_per_sec: agg.sent_window as f64 / dur,
            acked_ok: agg.acked_ok,
            freq_dropped: agg.freq_dropped,
            ack_errors: agg.ack_errors,
            ack_missing: agg.ack_missing,
            send_skipped_ticks: agg.send_skipped_ticks,
        },
        deliveries: Deliveries {
            per_sec: agg.msgs_window as f64 / dur,
            frames_per_sec: agg.frames_window as f64 / dur,
            bytes_per_sec: agg.bytes_window as f64 / dur,
            expected_total: expected,
            received_total: agg.msgs_total,
            loss_pct,
            per_raw_viewer: per(raw_msgs, raw_viewers),
            per_sampled_viewer: per(agg.sampled_msgs_total, agg.sampled_viewers),
            sampled_seq_gaps: agg.seq_gaps,
            sampled_seq_dups: agg.seq_dups,
            sampled_parse_errors: agg.parse_errors,
        },
        latency_ms: Latency::from(&agg.latency_us),
        ack_rtt_ms: Latency::from(&agg.ack_rtt_us),
        server: Server {
            pid: args.server_pid.first().copied(),
            rss_before_mib: mib(s.rss_before),
            rss_idle_mib: mib(s.rss_idle),
            rss_per_idle_conn_kib: server_rss_per_conn,
            rss_load_mib: mib(s.rss_load),
            rss_load_max_mib: mib(s.rss_max),
            cpu_idle_pct: s.cpu_idle,
            cpu_load_pct: s.cpu.first().copied().flatten(),
            cpu_kernel_share_pct: s.cpu_split_secs.filter(|(u, k)| u + k > 0.0).map(|(u, k)| k / (u + k) * 100.0),
            cpu_us_per_delivery: s
                .cpu_split_secs
                .filter(|_| deliveries_in_window > 0.0)
                .map(|(u, k)| (u + k) * 1e6 / deliveries_in_window),
            cpu_us_per_frame: s
                .cpu_split_secs
                .filter(|_| agg.frames_window > 0)
                .map(|(u, k)| (u + k) * 1e6 / agg.frames_window as f64),
        },
        tool: Tool {
            cpu_pct: tool_cpu,
            cpu_probe_pct: probe_cpu,
            cpu_viewer_workers_pct: viewer_cpu,
            machine_busy_pct: s.machine.map(|m| m.0),
            machine_softirq_pct: s.machine.map(|m| m.1),
            machine_cores: crate::procfs::machine_cores(),
        },
        nodes: Vec::new(),
        redis: None,
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}{unit}"))
}

impl ChatReport {
    pub fn human(&self) -> String {
        let c = &self.connections;
        let m = &self.messages;
        let d = &self.deliveries;
        let l = &self.latency_ms;
        let a = &self.ack_rtt_ms;
        let s = &self.server;
        let mut out = String::new();
        let mut line = |t: String| {
            out.push_str(&t);
            out.push('\n');
        };
        line(format!(
            "== onair-bench chat: {} {} room {:?}: {} viewers, {} senders, {} msgs/s, {}s window ({}s warmup), {} viewer procs, sample {}",
            self.target.name(),
            self.url,
            self.room,
            self.viewers,
            self.senders,
            self.rate,
            self.duration_secs,
            self.warmup_secs,
            self.procs,
            self.sample
        ));
        line(format!(
            "connections   {} viewers + {} senders held, {} failed, {} dropped during the run (connect phase {:.1}s)",
            c.viewers_connected, c.senders_connected, c.failed, c.dropped, c.connect_secs
        ));
        for (k, v) in &c.failed_reasons {
            line(format!("  failed  {v:>6} × {k}"));
        }
        for (k, v) in &c.drop_reasons {
            line(format!("  dropped {v:>6} × {k}"));
        }
        line(format!(
            "messages      sent {} ({:.1}/s in window), acked ok {}, dropped by frequency control {}, ack errors {}, no ack {}",
            m.sent,
            m.sent_per_sec,
            m.acked_ok,
            m.freq_dropped,
            m.ack_errors.values().sum::<u64>(),
            m.ack_missing
        ));
        for (k, v) in &m.ack_errors {
            line(format!("  ack error {v:>6} × {k}"));
        }
        line(format!(
            "deliveries    {:.0} msgs/s to viewers ({:.0} frames/s, {:.1} MB/s payload)",
            d.per_sec,
            d.frames_per_sec,
            d.bytes_per_sec / 1e6
        ));
        line(format!(
            "loss          received {} of expected {} (accepted msgs × viewers, counted until the drain ended): loss {:.3}%; per viewer raw {:.1} / sampled {:.1}",
            d.received_total, d.expected_total, d.loss_pct, d.per_raw_viewer, d.per_sampled_viewer
        ));
        if d.sampled_seq_gaps + d.sampled_seq_dups + d.sampled_parse_errors > 0 {
            line(format!(
                "  sampled viewers saw {} seq gaps, {} duplicate/out-of-order seqs, {} unparsable frames",
                d.sampled_seq_gaps, d.sampled_seq_dups, d.sampled_parse_errors
            ));
        }
        line(format!(
            "latency       publish→receive p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1} ({} samples)",
            l.p50, l.p90, l.p99, l.p999, l.max, l.samples
        ));
        line(format!("ack rtt       p50 {:.1} ms, p99 {:.1}, max {:.1}", a.p50, a.p99, a.max));
        line(format!(
            "server        RSS before {}, idle {} ({} per connection), load {} (max {}); CPU idle {}, load {}",
            opt(s.rss_before_mib, " MiB"),
            opt(s.rss_idle_mib, " MiB"),
            opt(s.rss_per_idle_conn_kib, " KiB"),
            opt(s.rss_load_mib, " MiB"),
            opt(s.rss_load_max_mib, " MiB"),
            opt(s.cpu_idle_pct, "%"),
            opt(s.cpu_load_pct, "%")
        ));
        line(format!(
            "server CPU    {} per delivery, {} per frame written, {} of it in the kernel",
            opt(s.cpu_us_per_delivery.map(|v| (v * 1000.0).round() / 1000.0), " µs"),
            opt(s.cpu_us_per_frame.map(|v| (v * 100.0).round() / 100.0), " µs"),
            opt(s.cpu_kernel_share_pct.map(|v| v.round()), "%")
        ));
        line(format!(
            "tool          CPU {:.1}% total (probe {:.1}%, viewer workers {:?})",
            self.tool.cpu_pct, self.tool.cpu_probe_pct, self.tool.cpu_viewer_workers_pct,
        ));
        let others = self.tool.machine_busy_pct.map(|m| m - self.tool.cpu_pct - s.cpu_load_pct.unwrap_or(0.0));
        line(format!(
            "machine       busy {} of {}00% (softirq {}; {} outside server + tool = other processes, uncharged kernel work)",
            opt(self.tool.machine_busy_pct, "%"),
            self.tool.machine_cores,
            opt(self.tool.machine_softirq_pct, "%"),
            opt(others, "%"),
        ));
        for (k, n) in self.nodes.iter().enumerate() {
            line(format!(
                "node {k}        {} pid {}: {} viewers, received {} of {} (loss {:.3}%), p50 {:.1} ms, p99 {:.1} ({} samples); RSS idle {} ({} per conn), max {}; CPU idle {}, load {}; Redis commands {}",
                n.url,
                n.pid.map_or_else(|| "n/a".into(), |p| p.to_string()),
                n.viewers,
                n.received_total,
                n.expected_total,
                n.loss_pct,
                n.latency_ms.p50,
                n.latency_ms.p99,
                n.latency_ms.samples,
                opt(n.rss_idle_mib, " MiB"),
                opt(n.rss_per_idle_conn_kib, " KiB"),
                opt(n.rss_load_max_mib, " MiB"),
                opt(n.cpu_idle_pct, "%"),
                opt(n.cpu_load_pct, "%"),
                n.redis_ops_window.map_or_else(|| "n/a".into(), |o| o.to_string()),
            ));
        }
        if let Some(r) = &self.redis {
            line(format!(
                "redis         {}: {} commands in the window ({:.1}/s) = {:.2} per message sent, {:.4} per 1,000 deliveries; CPU {:.1}%; out {:.2} MB/s, in {:.2} MB/s",
                r.addr,
                r.commands_window,
                r.commands_per_sec,
                r.commands_per_msg,
                r.commands_per_1k_deliveries,
                r.cpu_pct,
                r.net_output_bytes_per_sec / 1e6,
                r.net_input_bytes_per_sec / 1e6,
            ));
            let calls: Vec<String> = r.calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
            line(format!("  calls       {}", calls.join(", ")));
        }
        out
    }
}
