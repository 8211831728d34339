//! The audio bridge: WebRTC speaks Opus, FLV/RTMP/HLS players need AAC, so audio crosses
//! between them through one `ffmpeg` child per stream and direction.
//!
//! - [`BridgeKind::OpusToAac`] (WHIP publisher → registry): Opus packets with their ms
//!   timestamps go into the child as Ogg Opus (one packet per page, the granule position
//!   carrying the time, so gaps survive); AAC comes out as FLV (`-f flv`), read with
//!   `onair_media::flv::FlvDemuxer`: the audio tag bodies are exactly what
//!   `Publisher::ingest(TrackKind::Audio, ts, body)` takes, sequence header first.
//! - [`BridgeKind::AacToOpus`] (RTMP publisher → WHEP players): FLV audio tag bodies from
//!   the registry go in as an audio-only FLV stream; Opus comes out as Ogg with 20 ms
//!   pages, read with [`crate::ogg::OggReader`].
//!
//! Out of process on purpose, like the renditions: no AAC encoder in Rust worth having,
//! no C codec linked into the server, and an encoder crash or stall only ends one
//! stream's audio. The child's timeline starts at 0; the bridge maps it back onto the
//! caller's by the first input timestamp. Queues: input is bounded
//! ([`INPUT_QUEUE`] packets, ~5 s; full → the packet is dropped and counted — a glitch
//! beats a stalled publisher), output is bounded and the reader waits (ffmpeg then
//! blocks on its pipe, which bounds it too).

use std::ffi::OsStr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use onair_media::flv::{self, FlvDemuxer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::ogg::{OggReader, OggWriter, opus_packet_samples};

/// Input packets queued for the child (~5 s of 20 ms audio).
pub const INPUT_QUEUE: usize = 256;
/// Output packets queued for the consumer.
pub const OUTPUT_QUEUE: usize = 256;
/// How long a child may take to flush and exit after its input closed before it is killed.
pub const FLUSH_GRACE: Duration = Duration::from_secs(15);

/// Which way the bridge converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeKind {
    /// Opus packets in, FLV AAC audio tag bodies out.
    OpusToAac,
    /// FLV AAC audio tag bodies in, Opus packets out.
    AacToOpus,
}

/// One packet into or out of the bridge: an Opus packet or an FLV audio tag body, with
/// its timestamp in ms on the caller's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    /// Milliseconds.
    pub timestamp: u64,
    /// Opus packet or FLV audio tag body (see [`BridgeKind`]).
    pub data: Bytes,
}

/// The ffmpeg arguments for `kind` at `kbps` (pure; tested without ffmpeg).
pub fn ffmpeg_args(kind: BridgeKind, kbps: u32) -> Vec<String> {
    let bitrate = format!("{}k", kbps.clamp(16, 320));
    let head = ["-hide_banner", "-loglevel", "error", "-nostdin"];
    let tail: Vec<&str> = match kind {
        BridgeKind::OpusToAac => vec![
            "-fflags",
            "+nobuffer",
            "-f",
            "ogg",
            "-i",
            "pipe:0",
            "-vn",
            // Fill timestamp gaps (DTX, loss) with silence so AAC stays continuous.
            "-af",
            "aresample=async=1000",
            "-c:a",
            "aac",
            "-b:a",
            &bitrate,
            "-ar",
            "48000",
            "-ac",
            "2",
            "-f",
            "flv",
            "-flvflags",
            "no_duration_filesize",
            "-flush_packets",
            "1",
            "pipe:1",
        ],
        // No `+nobuffer` here: ffmpeg's FLV probe then finds no audio parameters.
        BridgeKind::AacToOpus => vec![
            // Probe little: the FLV's AAC sequence header says everything, and the
            // default analysis held the first Opus packet back ~5 s (WHEP viewers of an
            // RTMP stream heard nothing for that long).
            "-analyzeduration",
            "100000",
            "-probesize",
            "4096",
            "-f",
            "flv",
            "-i",
            "pipe:0",
            "-vn",
            "-af",
            "aresample=async=1000",
            "-c:a",
            "libopus",
            "-b:a",
            &bitrate,
            "-ar",
            "48000",
            "-ac",
            "2",
            "-application",
            "lowdelay",
            "-frame_duration",
            "20",
            // One page per packet: the ogg muxer otherwise holds a second of audio.
            "-f",
            "ogg",
            "-page_duration",
            "20000",
            "-flush_packets",
            "1",
            "pipe:1",
        ],
    };
    head.iter().chain(tail.iter()).map(|s| s.to_string()).collect()
}

/// A running bridge: push packets in with [`AudioBridge::send`], take converted ones
/// with [`AudioBridge::recv`]. Dropping it (or [`AudioBridge::finish`]) closes the
/// child's input; the child flushes and exits (killed if it lingers).
#[derive(Debug)]
pub struct AudioBridge {
    input: Option<mpsc::Sender<AudioPacket>>,
    output: mpsc::Receiver<AudioPacket>,
    dropped: Arc<AtomicU64>,
}

impl AudioBridge {
    /// Starts `ffmpeg` (the program path or name) converting `kind` at `kbps`.
    pub fn spawn(kind: BridgeKind, ffmpeg: impl AsRef<OsStr>, kbps: u32) -> std::io::Result<AudioBridge> {
        let mut child = Command::new(ffmpeg)
            .args(ffmpeg_args(kind, kbps))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(std::io::Error::other("ffmpeg pipes missing")),
        };
        let (in_tx, in_rx) = mpsc::channel(INPUT_QUEUE);
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
        // The caller's timestamp of the child's time 0 (set by the writer before the
        // first byte goes in, so the reader always sees it).
        let origin = Arc::new(AtomicU64::new(u64::MAX));
        let o = origin.clone();
        tokio::spawn(async move {
            let _ = write_input(kind, stdin, in_rx, o).await;
            // Input closed: give ffmpeg time to convert what it holds and exit (generous:
            // on a loaded machine 3 s cut the tail off), then make sure it is gone.
            if tokio::time::timeout(FLUSH_GRACE, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        });
        tokio::spawn(read_output(kind, stdout, out_tx, origin));
        Ok(AudioBridge { input: Some(in_tx), output: out_rx, dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// Queues one input packet; `false` when it was dropped (queue full or bridge
    /// finished).
    pub fn send(&self, packet: AudioPacket) -> bool {
        let ok = self.input.as_ref().is_some_and(|tx| tx.try_send(packet).is_ok());
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Input packets dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next converted packet; `None` once the child has exited.
    pub async fn recv(&mut self) -> Option<AudioPacket> {
        self.output.recv().await
    }

    /// Ends the input: the child converts what it has and exits; `recv` drains it.
    pub fn finish(&mut self) {
        self.input = None;
    }
}

async fn write_input(
    kind: BridgeKind,
    mut stdin: ChildStdin,
    mut rx: mpsc::Receiver<AudioPacket>,
    origin: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut ogg = OggWriter::new(0x6f6e6169);
    let mut first: Option<u64> = None;
    let mut granule = 0u64;
    while let Some(p) = rx.recv().await {
        let t0 = *first.get_or_insert_with(|| {
            origin.store(p.timestamp, Ordering::Release);
            p.timestamp
        });
        let rel = p.timestamp.saturating_sub(t0);
        let mut out = Vec::new();
        match kind {
            BridgeKind::OpusToAac => {
                if granule == 0 {
                    out.extend(ogg.headers(2));
                }
                let Some(samples) = opus_packet_samples(&p.data) else { continue };
                // The page's granule is the packet's last sample; never backwards.
                granule = (rel * 48 + u64::from(samples)).max(granule + u64::from(samples));
                let Some(page) = ogg.page(&p.data, granule, 0) else { continue };
                out.extend(page);
            }
            BridgeKind::AacToOpus => {
                if granule == 0 {
                    out.extend_from_slice(&flv::file_header(true, false));
                    granule = 1;
                }
                out.extend_from_slice(&flv::write_tag(flv::TAG_AUDIO, rel, &p.data));
            }
        }
        stdin.write_all(&out).await?;
    }
    stdin.shutdown().await
}

async fn read_output(kind: BridgeKind, mut stdout: ChildStdout, tx: mpsc::Sender<AudioPacket>, origin: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut flv = FlvDemuxer::new();
    let mut ogg = OggReader::new();
    let mut pre_skip = 0u64;
    let mut next_start = 0u64;
    let mut headers = 0;
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let t0 = match origin.load(Ordering::Acquire) {
            u64::MAX => 0,
            t => t,
        };
        let mut out = Vec::new();
        match kind {
            BridgeKind::OpusToAac => {
                flv.push(&buf[..n]);
                loop {
                    match flv.next_tag() {
                        Ok(Some(tag)) if tag.tag_type == flv::TAG_AUDIO => {
                            out.push(AudioPacket { timestamp: t0 + u64::from(tag.timestamp), data: tag.body });
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "audio bridge: bad FLV from ffmpeg");
                            return;
                        }
                    }
                }
            }
            BridgeKind::AacToOpus => {
                ogg.push(&buf[..n]);
                loop {
                    match ogg.next_packet() {
                        Ok(Some(p)) if headers < 2 => {
                            if headers == 0 && p.data.len() >= 12 && p.data.starts_with(b"OpusHead") {
                                pre_skip = u64::from(u16::from_le_bytes([p.data[10], p.data[11]]));
                            }
                            headers += 1;
                        }
                        Ok(Some(p)) => {
                            let samples = u64::from(opus_packet_samples(&p.data).unwrap_or(960));
                            // Packets follow each other; a granule only moves the start
                            // forward (a gap). The last page's granule is smaller than
                            // start + samples: it marks samples to trim at the end.
                            let start = match p.granule {
                                Some(g) => g.saturating_sub(samples).max(next_start),
                                None => next_start,
                            };
                            next_start = start + samples;
                            // Decoders drop the first `pre_skip` samples: a packet's audio
                            // starts that much earlier (the first one before time 0).
                            let ms = (start as i64 - pre_skip as i64).div_euclid(48);
                            let timestamp = (t0 as i64).saturating_add(ms).max(0) as u64;
                            out.push(AudioPacket { timestamp, data: Bytes::from(p.data) });
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "audio bridge: bad Ogg from ffmpeg");
                            return;
                        }
                    }
                }
            }
        }
        for p in out {
            if tx.send(p).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_read_a_pipe_and_write_a_pipe() {
        for kind in [BridgeKind::OpusToAac, BridgeKind::AacToOpus] {
            let a = ffmpeg_args(kind, 64);
            let i = a.iter().position(|s| s == "-i").map(|i| a[i + 1].as_str());
            assert_eq!(i, Some("pipe:0"));
            assert_eq!(a.last().map(String::as_str), Some("pipe:1"));
            assert!(a.contains(&"64k".to_string()));
        }
        assert!(ffmpeg_args(BridgeKind::OpusToAac, 1).contains(&"16k".to_string()), "bitrate clamped");
        let o = ffmpeg_args(BridgeKind::AacToOpus, 64);
        assert!(o.windows(2).any(|w| w[0] == "-page_duration" && w[1] == "20000"));
    }
}
