//! `warden`: a ZooKeeper-compatible coordination service built from actix actors.

/// Requests are allocated on I/O threads and freed on the processor's (and
/// replies the other way): glibc's per-thread arenas lock on every such free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod admin_cli;
mod auditor;
mod broadcast;
mod cli;
mod clock;
mod codec;
mod conf_dump;
mod connection;
mod data_files;
mod delivery;
mod deps;
mod dispatcher;
mod election;
mod ensemble_up;
mod fourlw_cli;
mod io_batch;
mod lin_reads;
mod listener;
mod mailbox;
mod messages;
mod metrics;
mod node;
mod nonce;
mod outbox;
mod peer_link;
mod processor;
mod registry;
mod sd_notify;
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

const EXAMPLES: &str = "\
Examples:
  warden server --config /etc/warden/zoo.cfg        # a ZooKeeper zoo.cfg, unchanged
  warden server --set clientPort=2181 --set dataDir=/var/lib/warden
  warden cli -server localhost:2181 ls /            # like zkCli.sh
  warden fourlw ruok --server localhost:2181        # like: echo ruok | nc localhost 2181
  warden admin mntr                                 # the AdminServer's monitor figures
  warden snapshot verify /var/lib/warden/version-2/snapshot.100000000

Configuration keys are ZooKeeper's (zoo.cfg keys and zookeeper.* system properties).
`warden help <command>` or `warden <command> --help` describes each command.";

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Warden: a ZooKeeper-compatible coordination server, and tools to operate it",
    long_about = "Warden: a ZooKeeper-compatible coordination server, and tools to operate it.\n\n\
                  Clients, zoo.cfg, dataDir, myid, four-letter words and the AdminServer work as in Apache ZooKeeper 3.8.",
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a server: standalone, or an ensemble member when the config has server.N lines (like zkServer.sh start-foreground).
    #[command(
        long_about = "Run a server in the foreground, like `zkServer.sh start-foreground`: standalone, or an ensemble member when the \
                      config has server.N lines (the member's id is read from dataDir/myid, or from warden.myid). Logs go to stderr; \
                      SIGTERM or SIGINT stops it. Under systemd (Type=notify) it reports READY=1 once the client port accepts.\n\n\
                      With no --config: the built-in default, standalone, clientPort 2181 on 127.0.0.1, dataDir ./data \
                      (unlike ZooKeeper, clientPortAddress defaults to loopback).",
        after_help = "Examples:\n  \
                      warden server --config /etc/warden/zoo.cfg\n  \
                      warden server --config zoo.cfg --set clientPortAddress=0.0.0.0 --set '4lw.commands.whitelist=ruok,isro,srvr,mntr'\n  \
                      warden server --set dataDir=/var/lib/warden --set zookeeper.snapCount=50000"
    )]
    Server {
        /// A ZooKeeper zoo.cfg (key=value lines: clientPort, dataDir, tickTime, server.N, ...) or Warden's TOML with the same keys; told apart by extension and content.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Set a zoo.cfg key or a ZooKeeper system property (as -Dzookeeper.X=V would), over the file; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Send a four-letter word (ruok, isro, srvr, stat, mntr, conf, ...) to a client port and print the answer; for health checks.
    #[command(
        long_about = "Send a four-letter word to a server's client port and print the answer, as `echo ruok | nc localhost 2181` \
                      would, for images and probes without a shell or nc. Works against Warden and ZooKeeper. The word must be \
                      allowed by the server's 4lw.commands.whitelist (Warden's default allows only srvr).\n\n\
                      Exit status: 0 when an answer came (and matched --expect), 1 otherwise.",
        after_help = "Examples:\n  \
                      warden fourlw ruok --expect imok                  # liveness: the process answers\n  \
                      warden fourlw isro --expect rw                    # readiness: serving reads and writes in a quorum\n  \
                      warden fourlw mntr --server zk1.example:2181"
    )]
    Fourlw {
        /// The four-letter word.
        word: String,
        /// The server's client port, host:port.
        #[arg(long, default_value = "127.0.0.1:2181", value_name = "HOST:PORT")]
        server: String,
        /// Fail (exit 1) unless the answer, trimmed, is exactly this (imok for ruok; rw, ro or null for isro).
        #[arg(long, value_name = "TEXT")]
        expect: Option<String>,
        /// Connect and read timeout in milliseconds.
        #[arg(long, default_value_t = 2000, value_name = "MS")]
        timeout: u64,
    },
    /// Query the AdminServer (admin.serverPort, default 8080) as tables: mntr, actors, supervise, or any command.
    /// Make a backup the whole state of a stopped node (its dataDir), as ZooKeeper 3.9's restore does for a live one.
    #[command(
        long_about = "Restore a backup: a snapshot in ZooKeeper's format (what `GET /commands/snapshot` on Warden or \
                      ZooKeeper 3.9 answers, or a snapshot.<zxid> file ZooKeeper wrote) or Warden's own. With --data-dir the \
                      node must be stopped: its version-2/ is kept aside as version-2.before-restore-<time> and the backup \
                      becomes its only state (restore every member of an ensemble from the same backup). A running \
                      standalone node restores through its AdminServer: POST /commands/restore.",
        after_help = "Examples:\n  \
                      curl -s -o backup.snap http://127.0.0.1:8080/commands/snapshot\n  \
                      warden restore --data-dir /var/lib/zookeeper backup.snap\n  \
                      curl -s --data-binary @backup.snap http://127.0.0.1:8080/commands/restore"
    )]
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The stopped node's dataDir.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Its dataLogDir, if not the dataDir.
        #[arg(long, value_name = "DIR")]
        data_log_dir: Option<PathBuf>,
    },
    #[command(long_about = "Query a running server's AdminServer (admin.enableServer, admin.serverAddress, admin.serverPort; \
                            default 127.0.0.1:8080) and print the answer as tables. The same endpoint serves \
                            /commands/<name> as ZooKeeper's AdminServer does, and Prometheus text at /metrics.")]
    Admin {
        /// The AdminServer, host:port (admin.serverAddress:admin.serverPort).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
        address: String,
        /// Bearer token (the server's warden.adminToken), required when the AdminServer listens beyond loopback.
        #[arg(long)]
        token: Option<String>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print transaction logs (log.<zxid> files), like ZooKeeper's LogFormatter / zkTxnLogToolkit.sh dump.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Print or verify snapshots (snapshot.<zxid> files), like ZooKeeper's SnapshotFormatter / zkSnapShotToolkit.sh.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Development: run a local loopback ensemble of N members (child processes) until Ctrl-C.
    Ensemble {
        #[command(subcommand)]
        command: EnsembleCommand,
    },
    /// A ZooKeeper shell like zkCli.sh: warden cli [-server HOST:PORT] [-timeout MS] [-r] [COMMAND ARGS...]
    #[command(
        disable_help_flag = true,
        long_about = "A ZooKeeper shell like zkCli.sh, with its options and commands: warden cli [-server HOST:PORT] \
                      [-timeout MS] [-r] [COMMAND ARGS...]. With a command it runs once (exit 0, 1 on error, 127 for an \
                      unknown command); without, an interactive prompt. Works against Warden and ZooKeeper. \
                      `warden cli -help` lists the commands.",
        after_help = "Examples:\n  \
                      warden cli -server localhost:2181 ls -R /\n  \
                      warden cli create /app/config '{\"v\":1}'\n  \
                      warden cli -server zk1:2181,zk2:2181,zk3:2181"
    )]
    Cli {
        /// zkCli.sh's options (-server, -timeout, -r), then a command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Every actor: mailbox depth and capacity, messages handled, handling times, restarts, supervision policy.
    Actors,
    /// Change an actor kind's supervision live: max_restarts=N window_ms=N backoff_ms=N mailbox_capacity=N.
    #[command(after_help = "Example:\n  warden admin supervise processor mailbox_capacity=20000")]
    Supervise {
        /// Actor kind, as `warden admin actors` lists them (processor, dispatcher, session, ...).
        kind: String,
        /// One or more NAME=VALUE settings.
        settings: Vec<String>,
    },
    /// ZooKeeper's monitor figures (the mntr four-letter word, /commands/monitor).
    Mntr,
    /// Any AdminServer command by name or four-letter alias (stats, conf, dump, watch_summary, ruok, isro, ...).
    Command {
        /// The command: a /commands name (server_stats, configuration, connections, ...) or its four-letter word.
        name: String,
    },
}

#[derive(Subcommand)]
enum EnsembleCommand {
    /// Start N members on 127.0.0.1: clientPort+i for clients, quorum and election ports from the bases given.
    #[command(after_help = "Example:\n  warden ensemble up 3 --dir /tmp/zk3     # clients on 127.0.0.1:2181-2183")]
    Up {
        /// How many members (server.1 .. server.N).
        #[arg(default_value_t = 3)]
        members: u16,
        /// Where each member's zoo.cfg, dataDir (with myid) and log go.
        #[arg(long, default_value = "./ensemble")]
        dir: PathBuf,
        /// First member's clientPort; member i gets client_port+i-1.
        #[arg(long, default_value_t = 2181)]
        client_port: u16,
        /// First member's quorum port (server.N=host:QUORUM:election).
        #[arg(long, default_value_t = 2888)]
        quorum_port: u16,
        /// First member's election port (server.N=host:quorum:ELECTION).
        #[arg(long, default_value_t = 3888)]
        election_port: u16,
        /// First member's admin.serverPort.
        #[arg(long, default_value_t = 8081)]
        admin_port: u16,
        /// tickTime in milliseconds.
        #[arg(long, default_value_t = 500)]
        tick_ms: u32,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print every transaction of a log segment, or of every segment in a dataDir / dataLogDir.
    Dump {
        /// A log.<zxid> file, or a directory (dataDir, dataLogDir or its version-2).
        target: PathBuf,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Print every znode and session of a snapshot (Warden's or Apache ZooKeeper's).
    Dump {
        /// A snapshot.<zxid> file.
        file: PathBuf,
    },
    /// Check a snapshot's checksums and structure; exit 1 if a server could not load it.
    Verify {
        /// A snapshot.<zxid> file.
        file: PathBuf,
    },
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
        Command::Restore { file, data_dir, data_log_dir } => tools::restore_offline(&file, &data_dir, data_log_dir.as_deref()),
        Command::Fourlw { word, server, expect, timeout } => fourlw_cli::run(&word, &server, timeout, expect.as_deref()),
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
