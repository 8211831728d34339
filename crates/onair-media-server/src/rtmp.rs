//! The RTMP listener: one task per connection, which becomes the stream's publisher
//! task (parse, mux once, broadcast) or a player task (write pre-built chunks).
//!
//! Limits: a connection semaphore (`[rtmp] max_connections`), a handshake and idle
//! deadline (`idle_timeout_secs`), a write deadline for players
//! (`slow_viewer_grace_ms`); a player that falls behind the stream's ring twice within
//! the grace window is disconnected.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use onair_media::frame::TrackKind;
use onair_media::pacing::ViewerPacing;
use onair_media::rtmp::{self as r, RtmpEvent, ServerConn, StreamKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::publish::{EndReason, LivePublish};
use crate::registry::{Protocol, Subscription};

/// Accepts RTMP connections until shutdown.
pub async fn serve(listener: TcpListener, svc: Arc<MediaService>, tasks: TaskTracker) {
    let limit = Arc::new(tokio::sync::Semaphore::new(svc.rtmp.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = svc.shutdown().cancelled() => return,
        };
        let (socket, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "RTMP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("onair_rtmp_refused_total", "reason" => "max_connections").increment(1);
            continue;
        };
        let _ = socket.set_nodelay(true);
        if svc.rtmp.send_buffer > 0 {
            let _ = socket2::SockRef::from(&socket).set_send_buffer_size(svc.rtmp.send_buffer);
        }
        let svc = svc.clone();
        tasks.spawn(async move {
            metrics::gauge!("onair_rtmp_connections").increment(1.0);
            let shutdown = svc.shutdown().clone();
            tokio::select! {
                outcome = handle(socket, addr, &svc) => {
                    if let Err(e) = outcome {
                        tracing::debug!(%addr, error = %e, "RTMP connection ended");
                    }
                }
                _ = shutdown.cancelled() => {}
            }
            metrics::gauge!("onair_rtmp_connections").decrement(1.0);
            drop(permit);
        });
    }
}

async fn handle(mut socket: TcpStream, addr: SocketAddr, svc: &Arc<MediaService>) -> anyhow::Result<()> {
    let idle = Duration::from_secs(svc.rtmp.idle_timeout_secs.max(1));
    let mut conn = ServerConn::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(8 * 1024);
    let mut app_query = String::new();
    let mut publishing: Option<LivePublish> = None;
    let result: anyhow::Result<()> = async {
        loop {
            let n = match tokio::time::timeout(idle, socket.read(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => return Err(Silent(idle.as_secs()).into()),
            };
            if n == 0 {
                return Ok(());
            }
            out.clear();
            let events = conn.feed(&buf[..n], &mut out)?;
            for event in events {
                match event {
                    RtmpEvent::ConnectRequested { request_id, app } => {
                        let (name, query) = r::split_app(&app);
                        if name == svc.rtmp.app {
                            app_query = query.to_string();
                            conn.accept(request_id, &mut out)?;
                        } else {
                            tracing::info!(%addr, app = %name, "RTMP connect to an unknown app refused");
                            conn.reject(request_id, "NetConnection.Connect.Rejected", "unknown application", &mut out)?;
                            socket.write_all(&out).await?;
                            return Ok(());
                        }
                    }
                    RtmpEvent::PublishRequested { request_id, key, .. } => {
                        let key = StreamKey::parse(&key, &app_query);
                        svc.preempt_house(&key).await;
                        match svc.begin_publish(&key, addr.ip().to_string()) {
                            Ok(p) => {
                                conn.accept(request_id, &mut out)?;
                                tracing::info!(%addr, stream = %key.name, "publishing");
                                publishing = Some(p);
                            }
                            Err(refused) => {
                                let (code, why) = ("NetStream.Publish.BadName", refused.to_string());
                                tracing::warn!(%addr, stream = %key.name, reason = %why, "publish refused");
                                metrics::counter!("onair_rtmp_refused_total", "reason" => "publish").increment(1);
                                conn.reject(request_id, code, &why, &mut out)?;
                                socket.write_all(&out).await?;
                                return Ok(());
                            }
                        }
                    }
                    RtmpEvent::PlayRequested { request_id, key, stream_id, .. } => {
                        let key = StreamKey::parse(&key, &app_query);
                        if publishing.is_some() {
                            anyhow::bail!("play on a publishing connection");
                        }
                        let sub = match svc.check_play(&key) {
                            Err(why) => Err(("NetStream.Play.Failed", format!("play refused: {why}"))),
                            // On an edge this may wait (bounded) for the origin's stream.
                            Ok(()) => svc
                                .open(&key.name, Protocol::Rtmp, &key.query, "")
                                .await
                                .ok_or(("NetStream.Play.StreamNotFound", format!("stream {} is not live", key.name))),
                        };
                        match sub {
                            Ok(sub) => {
                                // rml_rtmp's own play answer is replaced (see `r::play_start`).
                                conn.accept(request_id, &mut Vec::new())?;
                                out.extend_from_slice(&r::play_start(stream_id, &key.name));
                                socket.write_all(&out).await?;
                                // A player needs neither the publisher-sized read buffer
                                // nor this output buffer: give their memory back.
                                drop(std::mem::take(&mut buf));
                                drop(std::mem::take(&mut out));
                                return play(socket, conn, sub, stream_id, svc).await;
                            }
                            Err((code, why)) => {
                                tracing::info!(%addr, stream = %key.name, reason = %why, "play refused");
                                conn.reject(request_id, code, &why, &mut out)?;
                                socket.write_all(&out).await?;
                                return Ok(());
                            }
                        }
                    }
                    RtmpEvent::Metadata(meta) => {
                        if let Some(p) = &mut publishing {
                            p.set_metadata(meta);
                        }
                    }
                    RtmpEvent::Audio { timestamp, data } => {
                        ingest(&mut publishing, TrackKind::Audio, timestamp, data)?;
                    }
                    RtmpEvent::Video { timestamp, data } => {
                        ingest(&mut publishing, TrackKind::Video, timestamp, data)?;
                    }
                    RtmpEvent::PublishFinished => {
                        if let Some(p) = publishing.take() {
                            p.finish(EndReason::Closed, "publisher stopped");
                        }
                    }
                    RtmpEvent::PlayFinished => {}
                }
            }
            if !out.is_empty() {
                socket.write_all(&out).await?;
            }
        }
    }
    .await;
    if let Some(p) = publishing.take() {
        let (reason, msg) = match &result {
            Ok(()) => (EndReason::Closed, "publisher closed the connection".to_string()),
            Err(e) if e.is::<Silent>() => (EndReason::NoData, e.to_string()),
            Err(e) => (EndReason::ProtocolError, e.to_string()),
        };
        p.finish(reason, &msg);
    }
    result
}

/// A connection that sent nothing for the idle timeout (stream callback errcode 8).
#[derive(Debug, thiserror::Error)]
#[error("no data for {0} s")]
struct Silent(u64);

/// One audio/video message of a publishing connection (ignored before `publish`).
fn ingest(publishing: &mut Option<LivePublish>, kind: TrackKind, timestamp: u32, data: Bytes) -> anyhow::Result<()> {
    let Some(p) = publishing else { return Ok(()) };
    if let Err(e) = p.ingest(kind, timestamp, data) {
        let name = p.stream().name.clone();
        tracing::warn!(stream = %name, error = %e, "unsupported media: disconnecting the publisher");
        anyhow::bail!("stream {name}: {e}");
    }
    Ok(())
}

/// A queue of shared buffers written with vectored writes (merged writes: one
/// syscall for everything ready, no copy).
#[derive(Default)]
pub struct BytesQueue {
    q: VecDeque<Bytes>,
    len: usize,
}

impl BytesQueue {
    /// Appends a buffer.
    pub fn push(&mut self, b: Bytes) {
        self.len += b.len();
        self.q.push_back(b);
    }
}

impl Buf for BytesQueue {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.q.front().map(|b| &b[..]).unwrap_or(&[])
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in dst.iter_mut().zip(self.q.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut cnt: usize) {
        self.len -= cnt.min(self.len);
        while cnt > 0 {
            let Some(front) = self.q.front_mut() else { return };
            if cnt >= front.len() {
                cnt -= front.len();
                self.q.pop_front();
            } else {
                front.advance(cnt);
                cnt = 0;
            }
        }
    }
}

async fn play(
    socket: TcpStream,
    mut conn: ServerConn,
    mut sub: Subscription,
    stream_id: u32,
    svc: &Arc<MediaService>,
) -> anyhow::Result<()> {
    let mut pacing = ViewerPacing::new(svc.cfg.slow_viewer_grace_ms, svc.cfg.merge_write_ms);
    let grace = Duration::from_millis(pacing.grace_ms());
    let (mut rd, mut wr) = socket.into_split();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    let mut queue = BytesQueue::default();
    let mut batch = Vec::new();
    let stream = sub.stream().clone();
    let mut ended = false;
    while !ended {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                out.clear();
                for e in conn.feed(&buf[..n], &mut out)? {
                    if e == RtmpEvent::PlayFinished {
                        return Ok(());
                    }
                }
                if !out.is_empty() {
                    // Control replies (acknowledgements, pings) go through the same queue to keep
                    // the byte order of the chunk stream.
                    queue.push(Bytes::copy_from_slice(&out));
                }
            }
            // Received here, gathered in the branch: `recv` is cancel-safe, the merge
            // window inside `gather` is not (a packet taken must not be lost to `read`).
            first = sub.recv() => {
                ended = !sub.gather(first, &mut pacing, &mut batch).await?;
                for p in batch.drain(..) {
                    queue.push(if stream_id == r::PLAY_STREAM_ID {
                        p.rtmp.clone()
                    } else {
                        r::with_stream_id(&p.rtmp, stream_id)
                    });
                }
            }
        }
        if queue.remaining() > 0 {
            let n = queue.remaining();
            match tokio::time::timeout(grace, wr.write_all_buf(&mut queue)).await {
                Ok(r) => r?,
                Err(_) => {
                    metrics::counter!("onair_media_viewers_cut_total", "protocol" => "rtmp").increment(1);
                    anyhow::bail!("player accepted nothing for {} ms", grace.as_millis());
                }
            }
            stream.add_bytes_out(n);
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_queue_advances_across_buffers() {
        let mut q = BytesQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.remaining(), 7);
        q.advance(4);
        assert_eq!((q.remaining(), q.chunk()), (3, &b"efg"[..]));
        let mut slots = [IoSlice::new(&[]); 4];
        assert_eq!(q.chunks_vectored(&mut slots), 1);
        q.advance(3);
        assert_eq!(q.remaining(), 0);
    }
}
