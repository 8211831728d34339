//! `onair-bench likes`: a like storm against one room, checked for exactness.
//!
//! `clients` anonymous viewers join the room and send `like` ops (each carrying
//! `batch` taps, as the SDK batches them) as fast as the server acks them, with up
//! to `window` ops in flight per connection. One more viewer only listens and adds
//! up the `delta` of every `like` event. At the end three numbers must agree: the
//! likes the server acked as accepted, the room's stored total (read over HTTP), and
//! the sum of the deltas the listener saw. Run the server with a per-user cap above
//! the storm (`ONAIR_LIKES__PER_USER_PER_SEC`), or the cap shows in `accepted`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::net::{WsUrl, http_json};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Arguments of `likes`.
#[derive(Args, Debug, Clone)]
pub struct LikeArgs {
    /// Server WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Room to like (must exist).
    #[arg(long, default_value = "likes")]
    pub room: String,
    /// Liking connections.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Taps per `like` op.
    #[arg(long, default_value_t = 10)]
    pub batch: u64,
    /// Ops in flight per connection.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Seconds of storm.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
}

async fn connect_and_join(url: &str, room: &str) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.with_context(|| format!("connect {url}"))?;
    ws.send(Message::text(json!({"op": "join", "id": 0, "roomId": room}).to_string())).await?;
    loop {
        let Some(msg) = ws.next().await else { bail!("closed before the join ack") };
        if let Message::Text(t) = msg? {
            let v: Value = serde_json::from_str(&t)?;
            if v["op"] == "ack" && v["id"] == 0 {
                if v["code"] != 0 {
                    bail!("join failed: {v}");
                }
                return Ok(ws);
            }
        }
    }
}

/// One liking connection: returns (ops acked, likes accepted).
async fn liker(url: String, room: String, batch: u64, window: usize, until: Instant) -> Result<(u64, u64)> {
    let ws = connect_and_join(&url, &room).await?;
    let (mut tx, mut rx) = ws.split();
    let frame = json!({"op": "like", "id": 1, "roomId": room, "count": batch}).to_string();
    let mut in_flight = 0usize;
    let (mut acked, mut accepted) = (0u64, 0u64);
    loop {
        while in_flight < window && Instant::now() < until {
            tx.feed(Message::text(frame.clone())).await?;
            in_flight += 1;
        }
        tx.flush().await?;
        if in_flight == 0 {
            break;
        }
        let Some(msg) = rx.next().await else { bail!("connection closed") };
        if let Message::Text(t) = msg? {
            // Acks carry `"op":"ack"`; pushes (like events) are skipped cheaply.
            if t.as_str().contains("\"op\":\"ack\"") {
                let v: Value = serde_json::from_str(&t)?;
                if v["code"] != 0 {
                    bail!("like refused: {v}");
                }
                acked += 1;
                accepted += v["accepted"].as_u64().unwrap_or(0);
                in_flight -= 1;
            }
        }
    }
    Ok((acked, accepted))
}

/// The listener: sum of `delta` and the last `total` of the room's like events.
async fn listener(url: String, room: String, stop: tokio::sync::watch::Receiver<bool>) -> Result<(u64, u64, u64)> {
    let mut ws = connect_and_join(&url, &room).await?;
    let (mut sum, mut last, mut events) = (0u64, 0u64, 0u64);
    let mut stop = stop;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let Some(msg) = msg else { break };
                if let Message::Text(t) = msg? && t.as_str().contains("\"like\"") {
                    let v: Value = serde_json::from_str(&t)?;
                    for e in v["events"].as_array().into_iter().flatten().filter(|e| e["type"] == "like") {
                        sum += e["delta"].as_u64().unwrap_or(0);
                        last = e["total"].as_u64().unwrap_or(0);
                        events += 1;
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    Ok((sum, last, events))
}

async fn room_total(url: &WsUrl, room: &str) -> Result<u64> {
    let (code, body) =
        http_json("GET", url.resolve()?, &url.authority, &format!("/api/v1/rooms/{room}/likes"), "").await?;
    if code != 200 {
        bail!("GET likes: HTTP {code}: {body}");
    }
    let v: Value = serde_json::from_str(&body)?;
    Ok(v["total"].as_u64().unwrap_or(0))
}

/// Runs the storm and prints the result.
pub async fn run(args: LikeArgs) -> Result<()> {
    let url = WsUrl::parse(&args.url)?;
    let before = room_total(&url, &args.room).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listen = tokio::spawn(listener(args.url.clone(), args.room.clone(), stop_rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let until = started + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        tasks.push(tokio::spawn(liker(args.url.clone(), args.room.clone(), args.batch, args.window, until)));
    }
    let (mut ops, mut accepted) = (0u64, 0u64);
    for t in tasks {
        let (o, a) = t.await??;
        ops += o;
        accepted += a;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One like window plus margin for the last event to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop_tx.send(true);
    let (delta_sum, last_total, events) = listen.await??;
    let after = room_total(&url, &args.room).await?;
    let exact = after - before == accepted && delta_sum == accepted && last_total == after;
    println!(
        "{}",
        json!({
            "clients": args.clients, "batch": args.batch, "secs": elapsed,
            "likeOps": ops, "likeOpsPerSec": ops as f64 / elapsed,
            "likesAccepted": accepted, "likesPerSec": accepted as f64 / elapsed,
            "roomTotalDelta": after - before, "eventDeltaSum": delta_sum, "likeEvents": events,
            "lastEventTotal": last_total, "roomTotal": after, "exact": exact,
        })
    );
    if !exact {
        bail!("totals disagree: accepted {accepted}, room delta {}, event deltas {delta_sum}", after - before);
    }
    Ok(())
}
