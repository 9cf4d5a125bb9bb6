//! Command line: the benchmark options (flat) and a few helper subcommands
//! used by bench/compare.sh. `BenchArgs::into_config` validates.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Without --duration or --ops, a run lasts this long.
pub const DEFAULT_DURATION_SECS: f64 = 10.0;
/// Largest --value-size accepted: ZooKeeper's default jute.maxbuffer is 1 MiB - 1
/// for the whole packet.
pub const MAX_VALUE_SIZE: usize = 1_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "warden-bench",
    version,
    about = "Load generator for ZooKeeper-protocol servers (Warden, Apache ZooKeeper)",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Wait until a session handshake succeeds on every server; prints the milliseconds waited.
    Ready {
        #[arg(long, default_value = "127.0.0.1:2181")]
        servers: String,
        /// Give up (exit 1) after this many seconds.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Send a four-letter word (ruok, mntr, srvr, ...) and print the reply.
    FourLetter {
        #[arg(long, default_value = "127.0.0.1:2181")]
        server: String,
        word: String,
    },
    /// Print a markdown table of medians from --json reports, grouped by workload and --label.
    Summarize {
        /// Add a ratio row A/B per workload, e.g. warden/zookeeper.
        #[arg(long)]
        ratio: Option<String>,
        files: Vec<PathBuf>,
    },
    /// Print a free TCP port on 127.0.0.1.
    FreePort,
    /// SIGKILL --kill-pid (an ensemble's leader), then create a node through any
    /// of --servers until one succeeds; prints the milliseconds from the kill.
    Failover {
        #[arg(long)]
        servers: String,
        #[arg(long)]
        kill_pid: i32,
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Poll getData of --path on --server (a fresh session per try) until it succeeds;
    /// prints the milliseconds waited.
    WaitRead {
        #[arg(long)]
        server: String,
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Many sessions and watches on one server: open/churn/close, memory per
    /// session and per watch, watch fan-out (bench/scale.sh).
    ScaleClients(crate::scale::ClientsArgs),
    /// Run the ceiling server: ZooKeeper framing, every request answered at once from nothing.
    CeilingServer {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        value_size: usize,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Sequential creates (PERSISTENT_SEQUENTIAL) under the prefix.
    Create,
    /// setData on a random key.
    Set,
    /// getData on a random key.
    Get,
    /// exists on a random key.
    Exists,
    /// getData with probability --read-fraction, else setData.
    Mixed,
    /// --watchers sessions watch one node; one setData; time until every notification arrived.
    WatchStorm,
    /// connect, create an ephemeral, closeSession: one op.
    SessionChurn,
    /// multi of create + setData + delete on a fresh path.
    Multi,
    /// Create the --keys nodes <prefix>/k<i> of --value-size bytes (timed); NODEEXISTS is expected.
    Populate,
    /// Delete the --keys nodes <prefix>/k<i>, created untimed first (timed: the deletes).
    Delete,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Exists => "exists",
            Workload::Mixed => "mixed",
            Workload::WatchStorm => "watch-storm",
            Workload::SessionChurn => "session-churn",
            Workload::Multi => "multi",
            Workload::Populate => "populate",
            Workload::Delete => "delete",
        }
    }

    /// Workloads that read or write the key space and so pre-populate it (untimed).
    pub fn needs_keys(self) -> bool {
        matches!(self, Workload::Set | Workload::Get | Workload::Exists | Workload::Mixed | Workload::Delete)
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// host:port[,host:port...]; connections are spread round-robin.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub servers: String,
    /// Connections (sessions); for session-churn, concurrent connect/create/close loops.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    pub outstanding: usize,
    /// Measured phase length in seconds (default 10 when --ops is not given).
    #[arg(long, conflicts_with = "ops")]
    pub duration: Option<f64>,
    /// Number of operations to run instead of a duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Bytes of data per create/setData.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Key-space size for set/get/exists/mixed; node count for populate.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Spread the keys over this many parent znodes: key i is <prefix>/p<i % parents>/k<i>
    /// (0: flat, <prefix>/k<i>). The parents are created before the measured phase.
    #[arg(long, default_value_t = 0)]
    pub parents: u64,
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub workload: Workload,
    /// Fraction of reads in mixed, in [0, 1].
    #[arg(long, default_value_t = 0.9)]
    pub read_fraction: f64,
    /// Watching sessions in watch-storm.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Rounds in watch-storm (it ignores --duration/--ops).
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Root znode the benchmark works under (created if missing).
    #[arg(long, default_value = "/bench")]
    pub prefix: String,
    /// Server process(es) to measure: CPU time over the measured phase and RSS
    /// after it, summed (comma-separated pids for an ensemble's members).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Session timeout requested in the handshake, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: i32,
    /// Client runtime worker threads (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Free-form label stored in the report (e.g. the server's name), used by `summarize`.
    #[arg(long)]
    pub label: Option<String>,
    /// Appended to the workload's name in the report (e.g. the shape, "16x8"), so
    /// `summarize` keeps runs of one workload in different shapes apart.
    #[arg(long)]
    pub workload_tag: Option<String>,
    /// A request (or watch-storm round) unanswered this long fails its connection, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub request_timeout: f64,
    /// Seed for key choice (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// How long the measured phase runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Duration(Duration),
    Ops(u64),
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct Config {
    pub servers: Vec<String>,
    pub connections: usize,
    pub outstanding: usize,
    pub limit: Limit,
    pub value_size: usize,
    pub keys: u64,
    pub parents: u64,
    pub workload: Workload,
    pub read_fraction: f64,
    pub watchers: usize,
    pub rounds: u64,
    pub json: Option<PathBuf>,
    pub prefix: String,
    pub server_pid: Vec<u32>,
    pub session_timeout_ms: i32,
    pub threads: usize,
    pub label: Option<String>,
    pub workload_tag: Option<String>,
    pub request_timeout: Duration,
    pub seed: u64,
}

pub fn parse_servers(s: &str) -> Result<Vec<String>, String> {
    let servers: Vec<String> = s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect();
    if servers.is_empty() {
        return Err("--servers: no server given".into());
    }
    for srv in &servers {
        let (host, port) = srv.rsplit_once(':').ok_or_else(|| format!("--servers: '{srv}' is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("--servers: '{srv}' is not host:port"));
        }
    }
    Ok(servers)
}

fn positive_secs(name: &str, v: f64) -> Result<Duration, String> {
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!("{name} must be a positive number of seconds, got {v}"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl BenchArgs {
    pub fn into_config(self) -> Result<Config, String> {
        let servers = parse_servers(&self.servers)?;
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.outstanding == 0 {
            return Err("--outstanding must be at least 1".into());
        }
        let limit = match (self.duration, self.ops) {
            (Some(_), Some(_)) => return Err("give --duration or --ops, not both".into()),
            (Some(d), None) => Limit::Duration(positive_secs("--duration", d)?),
            (None, Some(0)) => return Err("--ops must be at least 1".into()),
            (None, Some(n)) => Limit::Ops(n),
            (None, None) => Limit::Duration(Duration::from_secs_f64(DEFAULT_DURATION_SECS)),
        };
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err(format!("--read-fraction must be within [0, 1], got {}", self.read_fraction));
        }
        if self.value_size > MAX_VALUE_SIZE {
            return Err(format!("--value-size must be at most {MAX_VALUE_SIZE} bytes"));
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.watchers == 0 {
            return Err("--watchers must be at least 1".into());
        }
        if self.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.session_timeout_ms <= 0 {
            return Err("--session-timeout-ms must be positive".into());
        }
        let p = &self.prefix;
        if !p.starts_with('/') || p == "/" || p.ends_with('/') || p.contains("//") {
            return Err(format!("--prefix must be an absolute znode path other than /, got '{p}'"));
        }
        let seed = self.seed.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
        Ok(Config {
            servers,
            connections: self.connections,
            outstanding: self.outstanding,
            limit,
            value_size: self.value_size,
            keys: self.keys,
            parents: self.parents,
            workload: self.workload,
            read_fraction: self.read_fraction,
            watchers: self.watchers,
            rounds: self.rounds,
            json: self.json,
            prefix: self.prefix,
            server_pid: self.server_pid,
            session_timeout_ms: self.session_timeout_ms,
            threads: self.threads,
            label: self.label,
            workload_tag: self.workload_tag,
            request_timeout: positive_secs("--request-timeout", self.request_timeout)?,
            seed,
        })
    }
}

impl Config {
    /// Parses benchmark options as the binary does (argv[0] first); for tests and embedding.
    pub fn from_args<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        if cli.command.is_some() {
            return Err("expected benchmark options, got a subcommand".into());
        }
        cli.bench.into_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &[&str]) -> Result<Config, String> {
        let mut args = vec!["warden-bench"];
        args.extend_from_slice(extra);
        Config::from_args(args)
    }

    #[test]
    fn defaults_are_sensible() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.limit, Limit::Duration(Duration::from_secs(10)));
        assert_eq!(c.servers, vec!["127.0.0.1:2181".to_string()]);
        assert_eq!(c.workload, Workload::Mixed);
        assert_eq!((c.connections, c.outstanding, c.value_size, c.keys), (8, 32, 100, 10_000));
        assert_eq!(c.prefix, "/bench");
    }

    #[test]
    fn ops_or_duration_but_not_both() {
        assert_eq!(cfg(&["--ops", "500"]).unwrap().limit, Limit::Ops(500));
        assert_eq!(cfg(&["--duration", "2.5"]).unwrap().limit, Limit::Duration(Duration::from_millis(2500)));
        assert!(cfg(&["--ops", "5", "--duration", "1"]).is_err());
        assert!(cfg(&["--ops", "0"]).is_err());
        assert!(cfg(&["--duration", "0"]).is_err());
        assert!(cfg(&["--duration", "-1"]).is_err());
    }

    #[test]
    fn read_fraction_must_be_a_probability() {
        assert!(cfg(&["--read-fraction", "1.5"]).unwrap_err().contains("read-fraction"));
        assert!(cfg(&["--read-fraction=-0.1"]).is_err());
        assert!(cfg(&["--read-fraction", "NaN"]).is_err());
        assert_eq!(cfg(&["--read-fraction", "0"]).unwrap().read_fraction, 0.0);
        assert_eq!(cfg(&["--read-fraction", "1"]).unwrap().read_fraction, 1.0);
    }

    #[test]
    fn servers_and_workloads_parse() {
        let c = cfg(&["--servers", "127.0.0.1:1,localhost:2", "--workload", "watch-storm"]).unwrap();
        assert_eq!(c.servers, vec!["127.0.0.1:1".to_string(), "localhost:2".to_string()]);
        assert_eq!(c.workload, Workload::WatchStorm);
        assert_eq!(cfg(&["--workload", "session-churn"]).unwrap().workload, Workload::SessionChurn);
        assert!(cfg(&["--workload", "nope"]).is_err());
        assert!(cfg(&["--servers", "nohost"]).is_err());
        assert!(cfg(&["--servers", "h:0"]).is_err());
        assert!(cfg(&["--servers", ""]).is_err());
    }

    #[test]
    fn bad_sizes_and_prefixes_are_rejected() {
        assert!(cfg(&["--connections", "0"]).is_err());
        assert!(cfg(&["--outstanding", "0"]).is_err());
        assert!(cfg(&["--keys", "0"]).is_err());
        assert!(cfg(&["--value-size", "2000000"]).is_err());
        for p in ["bench", "/", "/a/", "/a//b"] {
            assert!(cfg(&["--prefix", p]).is_err(), "{p}");
        }
        assert_eq!(cfg(&["--prefix", "/a/b"]).unwrap().prefix, "/a/b");
        assert_eq!(cfg(&[]).unwrap().parents, 0);
        assert_eq!(cfg(&["--parents", "1000"]).unwrap().parents, 1000);
    }

    #[test]
    fn a_repeated_option_takes_the_last_value() {
        assert_eq!(cfg(&["--keys", "5", "--keys", "7"]).unwrap().keys, 7);
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["warden-bench", "summarize", "--ratio", "a/b", "x.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Summarize { ratio: Some(_), ref files }) if files.len() == 1));
        let cli = Cli::try_parse_from(["warden-bench", "four-letter", "--server", "h:1", "mntr"]).unwrap();
        assert!(matches!(cli.command, Some(Command::FourLetter { .. })));
        let cli = Cli::try_parse_from(["warden-bench", "wait-read", "--server", "h:1", "--path", "/a"]).unwrap();
        assert!(matches!(cli.command, Some(Command::WaitRead { ref path, .. }) if path == "/a"));
        let cli = Cli::try_parse_from(["warden-bench", "scale-clients", "--server", "h:1", "--sources", "5"]).unwrap();
        assert!(matches!(cli.command, Some(Command::ScaleClients(ref a)) if a.sources == 5 && a.sessions == 1000));
        assert!(Cli::try_parse_from(["warden-bench", "scale-clients", "--server", "h:1", "--sources", "0"]).is_err());
        assert!(Cli::try_parse_from(["warden-bench", "scale-clients", "--server", "h:1", "--sources", "251"]).is_err());
    }
}
