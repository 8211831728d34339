//! Datagrams to many destinations in one system call (`sendmmsg(2)`).
//!
//! A shard sends every viewer's packets through the one UDP socket: at 1 Mbit/s a
//! viewer gets ~100 datagrams a second, so a few hundred viewers mean tens of thousands
//! of `sendto` calls a second, each paying the system call's entry and exit (where the
//! thread is also most often preempted by the receivers it just woke). The shard queues
//! what a round of its work produced and hands it to the kernel in batches of up to
//! [`BATCH`]. Semantics stay those of `try_send_to`: a full socket buffer drops the rest
//! of the batch (NACK/RTX or the next keyframe recover), a datagram the kernel refuses
//! (an unreachable destination) is skipped, and nothing ever blocks.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// UDP send numbers of the whole engine, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Datagrams dropped because the socket's send buffer was full, since start.
    pub dropped_datagrams: u64,
    /// Datagrams the kernel refused (e.g. an unreachable destination), since start.
    pub refused_datagrams: u64,
}

/// A shard's queued datagrams.
pub struct SendBatch {
    queued: Vec<(SockaddrStorage, Vec<u8>)>,
    /// Datagrams dropped because the socket's send buffer was full.
    pub dropped: u64,
    /// Datagrams the kernel refused (e.g. an unreachable destination).
    pub refused: u64,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    /// An empty queue.
    pub fn new() -> SendBatch {
        SendBatch { queued: Vec::with_capacity(BATCH), dropped: 0, refused: 0 }
    }

    /// Queues one datagram; a full batch goes out at once.
    pub fn push(&mut self, socket: &UdpSocket, to: SocketAddr, data: Vec<u8>) {
        self.queued.push((SockaddrStorage::from(to), data));
        if self.queued.len() >= BATCH {
            self.flush(socket);
        }
    }

    /// Sends everything queued (or drops it, see the module header).
    pub fn flush(&mut self, socket: &UdpSocket) {
        if self.queued.is_empty() {
            return;
        }
        let fd = socket.as_raw_fd();
        // Made per flush, not kept: the headers hold raw pointers, which would make the
        // shard's task not `Send` (and a flush sends up to a whole batch anyway).
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut start = 0;
        while start < self.queued.len() {
            let chunk = &self.queued[start..self.queued.len().min(start + BATCH)];
            let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = chunk.iter().map(|(a, _)| Some(*a)).collect();
            match sendmmsg(fd, &mut headers, &slices, &addrs, [], MsgFlags::MSG_DONTWAIT) {
                Ok(sent) => match sent.count() {
                    // Nothing went and no error: drop the rest rather than spin.
                    0 => {
                        self.dropped += (self.queued.len() - start) as u64;
                        break;
                    }
                    n => start += n,
                },
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => {
                    self.dropped += (self.queued.len() - start) as u64;
                    break;
                }
                // The first datagram of the chunk was refused: skip it, send the rest.
                Err(_) => {
                    self.refused += 1;
                    start += 1;
                }
            }
        }
        self.queued.clear();
    }

    /// Whether anything waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn batches_reach_every_destination_in_order() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut batch = SendBatch::new();
        // More than one batch, alternating destinations.
        for i in 0..(BATCH as u32 + 10) {
            let to = if i % 2 == 0 { a.local_addr().unwrap() } else { b.local_addr().unwrap() };
            batch.push(&tx, to, i.to_be_bytes().to_vec());
        }
        batch.flush(&tx);
        assert!(batch.is_empty());
        let mut buf = [0u8; 8];
        for (sock, first) in [(&a, 0u32), (&b, 1)] {
            let mut expect = first;
            while expect < BATCH as u32 + 10 {
                let n = sock.recv(&mut buf).await.unwrap();
                assert_eq!(u32::from_be_bytes(buf[..n].try_into().unwrap()), expect);
                expect += 2;
            }
        }
        assert_eq!((batch.dropped, batch.refused), (0, 0));
    }

    #[tokio::test]
    async fn a_refused_destination_is_skipped_and_the_rest_still_go() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut batch = SendBatch::new();
        // An IPv6 destination on an IPv4 socket is refused by the kernel.
        batch.push(&tx, "[::1]:9".parse().unwrap(), vec![1]);
        batch.push(&tx, rx.local_addr().unwrap(), vec![2]);
        batch.flush(&tx);
        let mut buf = [0u8; 4];
        let n = rx.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &[2]);
        assert_eq!(batch.refused, 1);
    }
}
