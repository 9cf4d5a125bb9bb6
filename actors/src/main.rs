//! `warden`: a ZooKeeper-compatible coordination service built from actix actors.

/// Requests are allocated on I/O threads and freed on the processor's (and
/// replies the other way): glibc's per-thread arenas lock on every such free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_cli;
mod broadcast;
mod cli;
mod clock;
mod codec;
mod connection;
mod dispatcher;
mod election;
mod ensemble;
mod ensemble_up;
mod io_batch;
mod listener;
mod mailbox;
mod messages;
mod node;
mod outbox;
mod peer_link;
mod processor;
mod quorum_sasl;
mod registry;
mod snapshotter;
mod stats;
mod storage;
mod supervise;
mod tls;
mod tools;
mod tracker;
mod zk_import;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "warden", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. With no --config, the embedded default: 127.0.0.1:2181, data in ./data.
    Server {
        /// Warden TOML or ZooKeeper zoo.cfg (detected by content and extension).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override any zoo.cfg key or ZooKeeper system property, e.g. --set clientPort=2182.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Read the admin endpoint as tables: actors, supervise, mntr, or any /commands name.
    Admin {
        /// The admin endpoint, host:port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        address: String,
        /// Bearer token (warden.adminToken), if the node requires one.
        #[arg(long)]
        token: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Inspect transaction logs.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Inspect snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Start a local loopback ensemble of N members (child processes) until Ctrl-C.
    Ensemble {
        #[command(subcommand)]
        command: EnsembleCommand,
    },
    /// ZooKeeper shell like zkCli.sh: warden cli [-server HOST:PORT] [-timeout MS] [COMMAND ARGS...]
    #[command(disable_help_flag = true)]
    Cli {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Every actor: mailbox depth and capacity, messages handled, handling times, restarts, policy.
    Actors,
    /// Change a kind's supervision live: max_restarts=N window_ms=N backoff_ms=N mailbox_capacity=N.
    Supervise { kind: String, settings: Vec<String> },
    /// ZooKeeper's monitor figures.
    Mntr,
    /// Any AdminServer command by name (stats, conf, dump, watch_summary, ...).
    Command { name: String },
}

#[derive(Subcommand)]
enum EnsembleCommand {
    /// Members listen on 127.0.0.1: clients at --client-port+i, peers at --quorum-port+i.
    Up {
        #[arg(default_value_t = 3)]
        members: u16,
        /// Where configs, data and logs go.
        #[arg(long, default_value = "./ensemble")]
        dir: PathBuf,
        #[arg(long, default_value_t = 2181)]
        client_port: u16,
        #[arg(long, default_value_t = 2888)]
        quorum_port: u16,
        #[arg(long, default_value_t = 3888)]
        election_port: u16,
        #[arg(long, default_value_t = 8081)]
        admin_port: u16,
        #[arg(long, default_value_t = 500)]
        tick_ms: u32,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print every transaction of a log segment, or of all segments in a data dir.
    Dump { target: PathBuf },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Print every node and session of a snapshot.
    Dump { file: PathBuf },
    /// Check a snapshot's checksums and structure; exit 1 if it is unusable.
    Verify { file: PathBuf },
    /// Write a stopped node's state (its dataDir) as a snapshot Apache ZooKeeper loads: the way back.
    Export {
        /// The directory to write (its version-2/ gets snapshot.<zxid>, acceptedEpoch, currentEpoch).
        #[arg(long = "zookeeper", value_name = "DIR")]
        zookeeper: PathBuf,
        /// The stopped node's dataDir.
        data_dir: PathBuf,
        /// Its dataLogDir, if not the dataDir.
        #[arg(long)]
        data_log_dir: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server { config, set } => run_server(config, set),
        Command::Admin { address, token, command } => {
            let t = admin_cli::Target { address, token };
            match command {
                AdminCommand::Actors => admin_cli::actors(&t),
                AdminCommand::Supervise { kind, settings } => admin_cli::supervise(&t, &kind, &settings),
                AdminCommand::Mntr => admin_cli::command(&t, "monitor"),
                AdminCommand::Command { name } => admin_cli::command(&t, &name),
            }
        }
        Command::Log { command: LogCommand::Dump { target } } => tools::log_dump(&target),
        Command::Snapshot { command: SnapshotCommand::Dump { file } } => tools::snapshot_dump(&file),
        Command::Snapshot { command: SnapshotCommand::Verify { file } } => tools::snapshot_verify(&file),
        Command::Snapshot { command: SnapshotCommand::Export { zookeeper, data_dir, data_log_dir } } => {
            tools::snapshot_export_zookeeper(&data_dir, data_log_dir.as_deref(), &zookeeper)
        }
        Command::Cli { args } => cli::run(args),
        Command::Ensemble { command: EnsembleCommand::Up { members, dir, client_port, quorum_port, election_port, admin_port, tick_ms } } => {
            ensemble_up::up(ensemble_up::UpOptions { members, dir, client_port, quorum_port, election_port, admin_port, tick_ms })
        }
    };
    if let Err(message) = result {
        eprintln!("warden: {message}");
        std::process::exit(1);
    }
}

fn run_server(config: Option<PathBuf>, set: Vec<String>) -> Result<(), String> {
    let sets = set.iter().map(|s| warden_core::config::parse_set_flag(s)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let (mut config, warnings) = warden_core::config::load(config.as_deref(), &sets).map_err(|e| e.to_string())?;
    node::resolve_myid(&mut config)?;
    node::run(config, warnings)
}
