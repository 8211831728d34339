//! `onair-bench`: load tools for OnAir (and a Socket.IO peer for comparison).
//!
//! `onair-bench chat` fills one live room with viewers, publishes at a fixed
//! rate from a few logged-in senders, and reports deliveries, loss,
//! publish→receive latency and the server's memory and CPU. The tool runs
//! on the same cores as the server, so it is built to be cheaper than the
//! server: see `worker.rs` for how viewers avoid JSON and per-socket tasks,
//! and `coord.rs` for how the parent splits the load over worker processes.

mod coord;
mod frame;
mod hist;
mod likes;
mod media;
mod net;
mod procfs;
mod target;
mod whep;
mod worker;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "onair-bench", version, about = "Load tools for OnAir live rooms")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One big room: N viewers, P senders publishing R msgs/s in total.
    Chat(Box<coord::ChatArgs>),
    /// A like storm against one room, checked for an exact total.
    Likes(likes::LikeArgs),
    /// Many light viewers of one live stream (RTMP play or HTTP-FLV).
    Media(Box<media::MediaArgs>),
    /// Many WebRTC (WHEP) viewers of one live stream: real ICE/DTLS/SRTP per viewer.
    Whep(Box<whep::WhepArgs>),
    /// Internal: a worker process started by `whep`.
    #[command(hide = true)]
    WhepWorker {
        #[arg(long)]
        spec: String,
    },
    /// Internal: a worker process started by `media`.
    #[command(hide = true)]
    MediaWorker {
        #[arg(long)]
        spec: String,
    },
    /// Internal: a worker process started by `chat`.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        spec: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Single-threaded runtimes: the parent spreads load over processes, and
    // a worker never needs more than one core.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.cmd {
        Cmd::Chat(args) => rt.block_on(coord::run(*args)),
        Cmd::Likes(args) => rt.block_on(likes::run(args)),
        Cmd::Media(args) => rt.block_on(media::run(*args)),
        Cmd::MediaWorker { spec } => {
            let spec: media::MediaWorkerSpec = serde_json::from_str(&spec).context("worker spec")?;
            // Viewers are `spawn_local` tasks: one thread per worker process.
            tokio::task::LocalSet::new().block_on(&rt, media::worker(spec))
        }
        Cmd::Whep(args) => rt.block_on(whep::run(*args)),
        Cmd::WhepWorker { spec } => {
            let spec: whep::WhepWorkerSpec = serde_json::from_str(&spec).context("worker spec")?;
            tokio::task::LocalSet::new().block_on(&rt, whep::worker(spec))
        }
        Cmd::Worker { spec } => {
            let spec: worker::WorkerSpec = serde_json::from_str(&spec).context("worker spec")?;
            rt.block_on(worker::run(spec))
        }
    }
}
