//! [`HistoryWriter`]: one task that commits every room's delivered messages.
//!
//! SQLite has a single writer, and a commit (an fsync in WAL mode at checkpoints,
//! a lock round trip always) costs far more than an extra row. So rooms do not
//! write their own history: they queue it here, and the task takes one job, drains
//! whatever else is already waiting (bounded per batch), and commits it all in one
//! transaction. Each caller's future resolves only after its batch is committed, so
//! the server can ack a sender once the message is durable. The queue is bounded:
//! when it is full, `append` waits (backpressure) instead of dropping anything.
//!
//! On PostgreSQL the same batching pays off differently: a commit is a network round
//! trip and a WAL flush, and the whole batch goes as one statement (see
//! `Store::append_messages`), so a batch costs about one round trip however many
//! rooms it holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use onair_core::message::ChatMessage;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{Store, StoreError};

/// Most jobs committed in one transaction.
const MAX_BATCH_JOBS: usize = 512;
/// Once a batch holds this many messages, no more jobs are added to it.
const MAX_BATCH_MESSAGES: usize = 5000;

/// One room's messages and the caller waiting for their commit.
struct Job {
    room_id: String,
    msgs: Vec<Arc<ChatMessage>>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// State shared by every clone of a writer.
struct Shared {
    /// Set by `shutdown`: `append` refuses new work from then on.
    closed: AtomicBool,
    /// Wakes the task to close its queue and flush.
    stop: Notify,
    /// The task, taken by the first `shutdown`.
    task: Mutex<Option<JoinHandle<()>>>,
}

/// Batches history writes from every room into few transactions (one writer task;
/// SQLite has one writer anyway). Cloning is cheap; all clones feed the same task.
#[derive(Clone)]
pub struct HistoryWriter {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl HistoryWriter {
    /// Spawns the writer task on the current tokio runtime. `queue` bounds pending
    /// jobs (at least 1): when it is full, `append` waits (backpressure; nothing is
    /// dropped).
    pub fn spawn(store: Store, queue: usize) -> HistoryWriter {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let shared = Arc::new(Shared { closed: AtomicBool::new(false), stop: Notify::new(), task: Mutex::new(None) });
        let task = tokio::spawn(run(store, rx, Arc::clone(&shared)));
        *shared.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        HistoryWriter { tx, shared }
    }

    /// Queues one room's delivered messages and resolves when they are committed
    /// (so the caller can ack senders only after the write is durable). Fails with
    /// [`StoreError::Closed`] after shutdown, or [`StoreError::Batch`] if the
    /// transaction holding them failed.
    pub async fn append(&self, room_id: &str, msgs: Vec<Arc<ChatMessage>>) -> Result<(), StoreError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        if msgs.is_empty() {
            return Ok(());
        }
        let (done, committed) = oneshot::channel();
        let job = Job { room_id: room_id.to_owned(), msgs, done };
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        committed.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Stops accepting work, flushes everything queued, waits for the task. Other
    /// clones get [`StoreError::Closed`] from then on; calling it again is a no-op.
    pub async fn shutdown(self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop.notify_one();
        let task = self.shared.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "history writer task failed");
        }
    }
}

/// The writer task: batch, commit, report; until stopped or every sender is gone.
async fn run(store: Store, mut rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            rx.recv().await
        } else {
            tokio::select! {
                biased;
                () = shared.stop.notified() => {
                    // No new sends from here on; what is buffered is still received.
                    rx.close();
                    stopping = true;
                    continue;
                }
                job = rx.recv() => job,
            }
        };
        let Some(first) = first else { break };
        let mut messages = first.msgs.len();
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_JOBS && messages < MAX_BATCH_MESSAGES {
            match rx.try_recv() {
                Ok(job) => {
                    messages += job.msgs.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit(&store, jobs, messages).await;
    }
    tracing::debug!("history writer stopped");
}

/// Commits one batch and completes every job with the outcome.
async fn commit(store: &Store, jobs: Vec<Job>, messages: usize) {
    let started = Instant::now();
    let count = jobs.len();
    let mut batches = Vec::with_capacity(count);
    let mut waiters = Vec::with_capacity(count);
    for job in jobs {
        batches.push((job.room_id, job.msgs));
        waiters.push(job.done);
    }
    let result = store.append_messages(&batches).await;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    match &result {
        Ok(()) => tracing::debug!(jobs = count, messages, elapsed_us, "history batch committed"),
        Err(e) => {
            tracing::error!(jobs = count, messages, elapsed_us, error = %e, "history batch failed")
        }
    }
    let failure = result.err().map(|e| e.to_string());
    for waiter in waiters {
        let outcome = match &failure {
            None => Ok(()),
            Some(msg) => Err(StoreError::Batch(msg.clone())),
        };
        // A caller that stopped waiting is fine: its messages are written anyway.
        let _ = waiter.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use onair_core::message::{MsgElem, Priority, SenderProfile, TextElem};

    use super::*;
    use crate::test_util::each_backend;

    fn msg(seq: u64) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            seq,
            time_ms: seq,
            sender: SenderProfile { user_id: "u".into(), ..Default::default() },
            priority: Priority::Low,
            random: 1,
            body: vec![MsgElem::Text(TextElem { text: format!("m{seq}") })],
            cloud_custom_data: String::new(),
        })
    }

    fn msgs(range: std::ops::RangeInclusive<u64>) -> Vec<Arc<ChatMessage>> {
        range.map(msg).collect()
    }

    /// An open transaction holding a lock that history inserts must wait for.
    enum Blocker {
        Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
        Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    }

    impl Blocker {
        async fn lock(store: &Store) -> Blocker {
            match &store.db {
                crate::db::Backend::Sqlite(pool) => {
                    Blocker::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await.expect("write lock"))
                }
                crate::db::Backend::Postgres(pool) => {
                    let mut tx = pool.begin().await.expect("begin");
                    sqlx::query("LOCK TABLE messages IN EXCLUSIVE MODE").execute(&mut *tx).await.expect("lock");
                    Blocker::Postgres(tx)
                }
            }
        }

        async fn release(self) {
            match self {
                Blocker::Sqlite(tx) => tx.commit().await.expect("unlock"),
                Blocker::Postgres(tx) => tx.commit().await.expect("unlock"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appenders_are_all_committed_in_order() {
        each_backend(|db| async move {
            let store = db.open().await;
            // A small queue so appenders also exercise backpressure.
            let writer = HistoryWriter::spawn(store.clone(), 8);
            let mut tasks = Vec::new();
            for t in 0..50u64 {
                let (writer, store) = (writer.clone(), store.clone());
                tasks.push(tokio::spawn(async move {
                    let room = format!("room{}", t % 5);
                    let base = (t / 5) * 20;
                    for chunk in 0..4 {
                        let first = base + chunk * 5 + 1;
                        writer.append(&room, msgs(first..=first + 4)).await.expect("append");
                        // Resolved means committed: visible to a fresh read.
                        let page = store.messages_before(&room, Some(first + 5), 1).await.expect("read");
                        assert_eq!(page.first().map(|m| m.seq), Some(first + 4));
                    }
                }));
            }
            for task in tasks {
                task.await.expect("appender");
            }
            for r in 0..5 {
                let room = format!("room{r}");
                assert_eq!(store.max_seq(&room).await.expect("max"), 200);
                let all = store.latest_messages(&room, 1000).await.expect("latest");
                assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
                assert_eq!(all[41], msg(42));
            }
            writer.shutdown().await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn shutdown_flushes_queued_work_and_refuses_more() {
        each_backend(|db| async move {
            let store = db.open().await;
            let writer = HistoryWriter::spawn(store.clone(), 100);

            // Hold a lock that history inserts wait for (SQLite's write lock, or an
            // exclusive lock on PostgreSQL's messages table) so the writer blocks on its
            // first batch and the rest of the work piles up in the queue.
            let blocker = Blocker::lock(&store).await;

            let mut tasks = Vec::new();
            for i in 0..20u64 {
                let writer = writer.clone();
                tasks.push(tokio::spawn(async move { writer.append("r", msgs(i * 3 + 1..=i * 3 + 3)).await }));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let late = writer.clone();
            let shutdown = tokio::spawn(writer.shutdown());
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(matches!(late.append("r", msgs(100..=100)).await, Err(StoreError::Closed)));
            assert!(!shutdown.is_finished(), "still flushing behind the lock");

            blocker.release().await;
            shutdown.await.expect("shutdown");
            for task in tasks {
                task.await.expect("task").expect("queued work committed");
            }
            assert_eq!(store.max_seq("r").await.expect("max"), 60);
            assert_eq!(store.latest_messages("r", 100).await.expect("latest").len(), 60);
        })
        .await;
    }

    #[tokio::test]
    async fn a_failed_batch_is_reported_to_its_waiters_and_the_task_lives_on() {
        each_backend(|db| async move {
            let store = db.open().await;
            let writer = HistoryWriter::spawn(store.clone(), 4);
            let res = writer.append("r", msgs(u64::MAX..=u64::MAX)).await;
            assert!(matches!(res, Err(StoreError::Batch(_))), "{res:?}");
            writer.append("r", msgs(1..=2)).await.expect("next batch fine");
            assert_eq!(store.max_seq("r").await.expect("max"), 2);
            writer.append("r", Vec::new()).await.expect("empty is a no-op");
            writer.shutdown().await;
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_every_handle_stops_the_task_after_flushing() {
        each_backend(|db| async move {
            let store = db.open().await;
            let writer = HistoryWriter::spawn(store.clone(), 4);
            writer.append("r", msgs(1..=3)).await.expect("append");
            let task = writer.shared.task.lock().unwrap_or_else(PoisonError::into_inner).take().expect("task");
            drop(writer);
            tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("no panic");
            assert_eq!(store.max_seq("r").await.expect("max"), 3);
        })
        .await;
    }
}
