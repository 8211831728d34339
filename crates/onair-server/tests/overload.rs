//! Frequency control under overload: 300 messages in about a second from 10 senders.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SENDERS: usize = 10;
const PER_SENDER: usize = 30;

/// 30 High in total (one per sender in every ten), the rest spread over the others.
fn priority(k: usize) -> &'static str {
    match k % 10 {
        9 => "High",
        0 | 2 | 4 | 6 => "Normal",
        1 | 5 | 8 => "Low",
        _ => "Lowest",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_capped_high_priority_survives_and_every_send_gets_one_ack() {
    let server = Server::start("[chat]\nrate_per_sec = 40\n").await;
    server.create_room("hot").await;
    let mut listener = server.ws().await;
    listener.join_ok("hot").await;
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let mut c = server.login_client(&format!("sender{s}"), "Android").await;
        c.join_ok("hot").await;
        senders.push(c);
    }
    listener.clear();

    // Each sender sends 30 messages spread over ~1 s, all at once in parallel.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (s, mut c) in senders.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for k in 0..PER_SENDER {
                let random = (s * 1000 + k) as u32;
                let p = priority(k);
                let id = c.send_text_nowait("hot", &format!("s{s} k{k} {p}"), p, random).await;
                sent.push((id, random, p));
                tokio::time::sleep(Duration::from_millis(1000 / PER_SENDER as u64)).await;
            }
            let mut acks = Vec::new();
            for (id, random, p) in sent {
                let ack = c.expect_ack(&id).await;
                acks.push((format!("sender{s}"), random, p, ack));
            }
            // No second ack for anything.
            let late = c.try_wait_for(Duration::from_millis(800), &|v| v["op"] == "ack").await;
            assert!(late.is_none(), "sender{s} got an extra ack: {late:?}");
            (c, acks)
        }));
    }
    let mut acks = Vec::new();
    let mut clients = Vec::new();
    for t in tasks {
        let (c, a) = t.await.unwrap();
        acks.extend(a);
        clients.push(c);
    }
    let send_span = start.elapsed();
    assert!(send_span < Duration::from_secs(8), "sending took {send_span:?}");
    assert_eq!(acks.len(), SENDERS * PER_SENDER);

    let mut delivered: BTreeMap<u64, (String, u32, &str)> = BTreeMap::new();
    let mut cut: Vec<(String, u32, &str)> = Vec::new();
    for (from, random, p, ack) in &acks {
        assert_eq!(ack["code"], 0, "a cut message is still a success for its sender: {ack}");
        match (ack["seq"].as_u64().unwrap(), ack["dropReason"].as_str().unwrap()) {
            (0, "FrequencyLimit") => cut.push((from.clone(), *random, p)),
            (seq, "") if seq > 0 => {
                assert!(delivered.insert(seq, (from.clone(), *random, p)).is_none(), "seq {seq} given twice");
            }
            _ => panic!("unexpected ack {ack}"),
        }
    }
    let count = |p: &str, of: &mut dyn Iterator<Item = &str>| of.filter(|x| *x == p).count();
    let d_high = count("High", &mut delivered.values().map(|d| d.2));
    assert_eq!(d_high, 30, "every High message must be delivered");
    assert!(!cut.is_empty(), "300 messages/s must be cut down to the room rate");
    let d_normal = count("Normal", &mut delivered.values().map(|d| d.2));
    let d_lowest = count("Lowest", &mut delivered.values().map(|d| d.2));
    assert!(d_lowest <= d_normal, "Lowest ({d_lowest}) must not beat Normal ({d_normal})");
    let n = delivered.len() as u64;
    assert_eq!(delivered.keys().copied().collect::<Vec<_>>(), (1..=n).collect::<Vec<_>>(), "seqs gap-free");

    // The listener sees exactly the delivered messages, gap-free, in seq order.
    let got = listener.collect_msgs("hot", n as usize, T).await;
    let extra = listener.collect_pushes(Duration::from_millis(300)).await;
    assert!(extra.iter().all(|f| msgs(&f.v).is_empty()), "more messages than acks said were delivered");
    let seqs: Vec<u64> = got.iter().map(|(_, m)| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    for (_, m) in &got {
        let (from, random, p) = &delivered[&m["seq"].as_u64().unwrap()];
        assert_eq!((&m["from"], &m["random"], &m["priority"]), (&json!(from), &json!(random), &json!(p)), "{m}");
    }
    // At most rate + burst (40 + 10) per second: by server time and by arrival time.
    let mut per_second: HashMap<u64, usize> = HashMap::new();
    for (_, m) in &got {
        *per_second.entry(m["time"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(per_second.values().all(|&c| c <= 50), "per server second: {per_second:?}");
    let arrivals: Vec<Instant> = got.iter().map(|(at, _)| *at).collect();
    for (i, a) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..].iter().take_while(|b| b.duration_since(*a) < Duration::from_secs(1)).count();
        assert!(in_window <= 50, "{in_window} messages arrived within 1 s of message {}", i + 1);
    }

    // Cut messages are not in the durable history; delivered ones all are.
    let mut history: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/v1/rooms/hot/messages?limit=100&before={b}"),
            None => "/api/v1/rooms/hot/messages?limit=100".to_string(),
        };
        let (status, page) = server.http("GET", &server.admin(&path), None).await;
        assert_eq!(status, 200, "{page}");
        history.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["nextBefore"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    let stored: BTreeSet<(String, u64)> =
        history.iter().map(|m| (m["from"].as_str().unwrap().to_string(), m["random"].as_u64().unwrap())).collect();
    assert_eq!(history.len() as u64, n, "history holds exactly the delivered messages");
    for (from, random, _) in &cut {
        assert!(!stored.contains(&(from.clone(), u64::from(*random))), "cut message {from}/{random} is in history");
    }
    for (from, random, _) in delivered.values() {
        assert!(stored.contains(&(from.clone(), u64::from(*random))), "delivered {from}/{random} missing from history");
    }
    // Metrics agree.
    let metrics = server.metrics().await;
    assert_eq!(parse_metric(&metrics, "onair_messages_delivered_total"), n as f64);
    assert_eq!(parse_metric(&metrics, "onair_messages_cut_total"), cut.len() as f64);
    drop(clients);
}
