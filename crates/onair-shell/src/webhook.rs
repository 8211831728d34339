//! Webhook delivery: a bounded queue served by a few workers that `POST` each JSON
//! body with a timeout and retry with doubling delays. Chat webhooks (after-events)
//! and stream callbacks both go through it; it never blocks the caller.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::http::{HttpClient, without_query};

/// How a dispatcher retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per delivery (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_delay: Duration,
    /// Timeout of one attempt (connect + answer).
    pub timeout: Duration,
}

/// Makes a webhook's URL for one attempt: signed URLs carry the time of the request
/// (`RequestTime`), which must be fresh on every retry, not the time it was queued.
pub type UrlMaker = Box<dyn Fn() -> String + Send + Sync>;

/// One webhook to deliver.
pub struct Delivery {
    /// Where, made anew for each attempt (may carry a signature in its query).
    pub url: UrlMaker,
    /// JSON body.
    pub body: Bytes,
    /// For logs and metrics (`Group.CallbackAfterSendMsg`, `stream_event_1`, …).
    pub label: &'static str,
}

/// A queue of webhooks and its workers.
pub struct Dispatcher {
    queue: mpsc::Sender<Delivery>,
    /// Metric counting deliveries dropped (queue full or retries exhausted).
    dropped_metric: &'static str,
}

impl Dispatcher {
    /// Starts `workers` workers behind a queue of `queue` deliveries.
    pub fn start(
        client: HttpClient,
        policy: RetryPolicy,
        queue: usize,
        workers: usize,
        dropped_metric: &'static str,
    ) -> Dispatcher {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let rx = rx.clone();
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    let next = { rx.lock().await.recv().await };
                    let Some(delivery) = next else { return };
                    deliver(&client, policy, &delivery, dropped_metric).await;
                }
            });
        }
        Dispatcher { queue: tx, dropped_metric }
    }

    /// Queues a delivery; when the queue is full it is dropped and counted (webhooks
    /// must never hold up chat or media).
    pub fn send(&self, delivery: Delivery) {
        if let Err(e) = self.queue.try_send(delivery) {
            let label = match &e {
                mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d.label,
            };
            metrics::counter!(self.dropped_metric, "command" => label).increment(1);
        }
    }
}

async fn deliver(client: &HttpClient, policy: RetryPolicy, d: &Delivery, dropped_metric: &'static str) {
    let attempts = policy.attempts.max(1);
    let mut delay = policy.first_delay;
    for attempt in 1..=attempts {
        let url = (d.url)();
        match client.post_json(&url, d.body.clone(), policy.timeout).await {
            Ok(_) => return,
            Err(error) if attempt == attempts => {
                tracing::warn!(command = d.label, url = %without_query(&url), %error, "webhook given up");
                metrics::counter!(dropped_metric, "command" => d.label).increment(1);
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}
