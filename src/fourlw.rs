//! Four-letter-word replies (ZooKeeper's `FourLetterCommands`), formatted from
//! a snapshot of server numbers so the text is testable without a server.

use std::fmt::Write;

/// The ZooKeeper release whose wire behaviour Warden matches; clients' version
/// gates read this from `envi` / `srvr`.
pub const ZOOKEEPER_COMPAT_VERSION: &str = "3.8.4";

pub const KNOWN: &[&str] =
    &["conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "ruok", "stmk", "srvr", "srst", "stat", "wchc", "wchp", "wchs", "mntr", "isro", "hash"];

/// The 4-byte word, if these are the first bytes of a four-letter command.
pub fn parse(word: &[u8; 4]) -> Option<&'static str> {
    KNOWN.iter().copied().find(|k| k.as_bytes() == word)
}

pub fn full_version(warden_version: &str) -> String {
    format!("{ZOOKEEPER_COMPAT_VERSION}-warden-{warden_version}, built on 1970-01-01 00:00 UTC")
}

#[derive(Debug, Clone, Default)]
pub struct ClientLine {
    pub address: String,
    pub queued: u64,
    pub received: u64,
    pub sent: u64,
    /// 0 until the handshake completes.
    pub session_id: i64,
    pub timeout_ms: i32,
    pub established_ms: i64,
}

/// Everything the words report, gathered by the server at one moment.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    pub warden_version: String,
    pub mode: String,
    pub latency_min_ms: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub connections: u64,
    pub outstanding: u64,
    pub last_zxid: i64,
    pub node_count: u64,
    pub watch_count: u64,
    pub ephemerals_count: u64,
    pub approximate_data_size: u64,
    pub global_sessions: u64,
    pub uptime_ms: u64,
    pub auth_failed_count: u64,
    /// Transaction log fsyncs since start (group commit shows as fsyncs < writes).
    pub fsync_count: u64,
    pub clients: Vec<ClientLine>,
    /// `conf` lines, ZooKeeper key order.
    pub conf: Vec<(String, String)>,
    /// Ensemble members: the quorum lines `conf` adds (initLimit ...
    /// peerType) and the membership (`/zookeeper/config`), as
    /// QuorumZooKeeperServer.dumpConf.
    pub conf_quorum: Vec<(String, String)>,
    pub membership: Option<String>,
    /// `envi` lines after zookeeper.version.
    pub env: Vec<(String, String)>,
    pub read_only: bool,
    /// `dump`: live sessions with their timeouts, and their ephemerals.
    pub sessions: Vec<(i64, i32)>,
    pub ephemerals: Vec<(i64, Vec<String>)>,
    /// `dirs`: bytes in the snapshot and log directories.
    pub data_dir_bytes: u64,
    pub log_dir_bytes: u64,
    /// Ensemble members only.
    pub quorum: Option<QuorumStatus>,
    /// Local sessions on this member (localSessionsEnabled, read-only mode).
    pub local_sessions: u64,
    pub throttle: ThrottleCounts,
    /// ZooKeeper's readlatency, updatelatency and fsynctime summaries.
    pub read_latency: LatencySummary,
    pub update_latency: LatencySummary,
    pub fsync_time: LatencySummary,
}

/// The throttles' counters, under ZooKeeper's metric names in `mntr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThrottleCounts {
    pub connection_rejected: u64,
    pub throttled_ops: u64,
    pub stale_requests_dropped: u64,
    pub request_throttle_wait_count: u64,
    /// Requests waiting in the request throttler (ZooKeeper's throttler queue, part of zk_outstanding_requests).
    pub request_throttle_queue: u64,
}

/// A latency summary in milliseconds, as ZooKeeper's AvgMinMaxPercentileCounter
/// reports it in `mntr` (the server fills it from an HdrHistogram).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySummary {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
}

impl LatencySummary {
    /// `zk_avg_NAME` ... `zk_sum_NAME`, and with `percentiles` `zk_p50_NAME` ... `zk_p999_NAME`.
    fn pairs(&self, name: &str, percentiles: bool, out: &mut Vec<(String, String)>) {
        // Java prints the average as a double: "0.0", "1.5".
        let avg = if self.count == 0 { 0.0 } else { self.sum as f64 / self.count as f64 };
        let avg = if avg.fract() == 0.0 { format!("{avg:.1}") } else { avg.to_string() };
        out.push((format!("zk_avg_{name}"), avg));
        for (k, v) in [("min", self.min), ("max", self.max), ("cnt", self.count), ("sum", self.sum)] {
            out.push((format!("zk_{k}_{name}"), v.to_string()));
        }
        if percentiles {
            for (k, v) in [("p50", self.p50), ("p95", self.p95), ("p99", self.p99), ("p999", self.p999)] {
                out.push((format!("zk_{k}_{name}"), v.to_string()));
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// ZooKeeper's zk_peer_state, e.g. "leading - broadcast".
    pub peer_state: String,
    pub server_id: u64,
    pub leader_id: Option<u64>,
    pub epoch: u32,
    pub last_logged_zxid: i64,
    pub committed_zxid: i64,
    pub last_election_ms: u64,
    /// Leader only.
    pub learners: Vec<LearnerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LearnerStatus {
    pub id: u64,
    pub observer: bool,
    pub synced: bool,
    pub acked_zxid: i64,
    /// Proposals the leader logged that the learner has not acknowledged.
    pub lag: u64,
}

fn stats_body(s: &ServerSnapshot, out: &mut String) {
    let _ = write!(
        out,
        "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
        s.latency_min_ms,
        s.latency_avg_ms,
        s.latency_max_ms,
        s.packets_received,
        s.packets_sent,
        s.connections,
        s.outstanding,
        s.last_zxid,
        s.mode,
        s.node_count
    );
}

/// The reply text for an allowed command.
/// What ZooKeeper's commands print while the server is not serving
/// (an ensemble member looking for or syncing with a leader).
pub const ZK_NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests";

pub fn reply(cmd: &str, s: &ServerSnapshot) -> String {
    let mut out = String::new();
    if s.mode == "looking" && !matches!(cmd, "ruok" | "envi") {
        // As ZooKeeper's commands: isro says "null", the rest the sentence.
        return if cmd == "isro" { "null".into() } else { format!("{ZK_NOT_SERVING}\n") };
    }
    match cmd {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str(if s.read_only { "ro" } else { "rw" }),
        "srvr" | "stat" => {
            let _ = writeln!(out, "Zookeeper version: {}", full_version(&s.warden_version));
            if s.read_only {
                out.push_str("READ-ONLY mode; serving only read-only clients\n");
            }
            if cmd == "stat" {
                out.push_str("Clients:\n");
                for c in &s.clients {
                    let _ = writeln!(out, " /{}[1](queued={},recved={},sent={})\n", c.address, c.queued, c.received, c.sent);
                }
                out.push('\n');
            }
            stats_body(s, &mut out);
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={}", full_version(&s.warden_version));
            let _ = writeln!(out, "warden.version={}", s.warden_version);
            for (k, v) in &s.env {
                let _ = writeln!(out, "{k}={v}");
            }
        }
        "cons" => {
            for c in &s.clients {
                let _ = writeln!(
                    out,
                    " /{}[1](queued={},recved={},sent={},sid=0x{:x},est={},to={})\n",
                    c.address, c.queued, c.received, c.sent, c.session_id, c.established_ms, c.timeout_ms
                );
            }
        }
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        "dirs" => {
            let _ = write!(out, "datadir_size: {}\nlogdir_size: {}\n", s.data_dir_bytes, s.log_dir_bytes);
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let _ = writeln!(out, "Global Sessions({}):", s.sessions.len());
            for (id, timeout) in &s.sessions {
                let _ = writeln!(out, "0x{id:x}\t{timeout}ms");
            }
            out.push_str("ephemeral nodes dump:\n");
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", s.ephemerals.len());
            for (id, paths) in &s.ephemerals {
                let _ = writeln!(out, "0x{id:x}:");
                for p in paths {
                    let _ = writeln!(out, "\t{p}");
                }
            }
        }
        "conf" => {
            for (k, v) in s.conf.iter().chain(&s.conf_quorum) {
                let _ = writeln!(out, "{k}={v}");
            }
            if let Some(m) = &s.membership {
                let _ = writeln!(out, "membership: ");
                out.push_str(m);
            }
        }
        "mntr" => {
            for (k, v) in mntr_pairs(s) {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        other => {
            let _ = writeln!(out, "{other} is not supported by this Warden version yet.");
        }
    }
    out
}

/// `mntr`'s keys and values, in ZooKeeper's order (also the admin monitor command).
pub fn mntr_pairs(s: &ServerSnapshot) -> Vec<(String, String)> {
    let mut pairs = vec![
        ("zk_version", full_version(&s.warden_version)),
        ("zk_server_state", s.mode.clone()),
        ("zk_avg_latency", format!("{:.4}", s.latency_avg_ms)),
        ("zk_max_latency", s.latency_max_ms.to_string()),
        ("zk_min_latency", s.latency_min_ms.to_string()),
        ("zk_packets_received", s.packets_received.to_string()),
        ("zk_packets_sent", s.packets_sent.to_string()),
        ("zk_num_alive_connections", s.connections.to_string()),
        ("zk_outstanding_requests", s.outstanding.to_string()),
        ("zk_znode_count", s.node_count.to_string()),
        ("zk_watch_count", s.watch_count.to_string()),
        ("zk_ephemerals_count", s.ephemerals_count.to_string()),
        ("zk_approximate_data_size", s.approximate_data_size.to_string()),
        ("zk_global_sessions", s.global_sessions.to_string()),
        ("zk_local_sessions", s.local_sessions.to_string()),
        ("zk_auth_failed_count", s.auth_failed_count.to_string()),
        ("zk_uptime", s.uptime_ms.to_string()),
        ("zk_last_proposal_size", "-1".to_string()),
        ("zk_warden_fsync_count", s.fsync_count.to_string()),
        ("zk_connection_rejected", s.throttle.connection_rejected.to_string()),
        ("zk_throttled_ops", s.throttle.throttled_ops.to_string()),
        ("zk_stale_requests_dropped", s.throttle.stale_requests_dropped.to_string()),
        ("zk_request_throttle_wait_count", s.throttle.request_throttle_wait_count.to_string()),
        ("zk_warden_request_throttle_queue", s.throttle.request_throttle_queue.to_string()),
    ];
    if let Some(q) = &s.quorum {
        pairs.push(("zk_peer_state", q.peer_state.clone()));
        pairs.push(("zk_warden_server_id", q.server_id.to_string()));
        pairs.push(("zk_warden_leader_id", q.leader_id.map_or("-1".into(), |l| l.to_string())));
        pairs.push(("zk_warden_epoch", q.epoch.to_string()));
        pairs.push(("zk_warden_last_logged_zxid", format!("0x{:x}", q.last_logged_zxid)));
        pairs.push(("zk_warden_committed_zxid", format!("0x{:x}", q.committed_zxid)));
        pairs.push(("zk_warden_last_election_ms", q.last_election_ms.to_string()));
        if s.mode == "leader" {
            let voters = q.learners.iter().filter(|l| !l.observer);
            pairs.push(("zk_learners", q.learners.len().to_string()));
            pairs.push(("zk_synced_followers", voters.clone().filter(|l| l.synced).count().to_string()));
            pairs.push(("zk_synced_non_voting_followers", q.learners.iter().filter(|l| l.observer && l.synced).count().to_string()));
            pairs.push(("zk_synced_observers", q.learners.iter().filter(|l| l.observer && l.synced).count().to_string()));
            pairs.push(("zk_followers", voters.count().to_string()));
            pairs.push(("zk_pending_syncs", "0".to_string()));
            pairs.push(("zk_warden_max_learner_lag", q.learners.iter().map(|l| l.lag).max().unwrap_or(0).to_string()));
        }
    }
    let mut pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    s.read_latency.pairs("readlatency", true, &mut pairs);
    s.update_latency.pairs("updatelatency", true, &mut pairs);
    s.fsync_time.pairs("fsynctime", false, &mut pairs);
    pairs
}

/// ZooKeeper's answer to a command left out of `4lw.commands.whitelist`.
pub fn not_whitelisted(cmd: &str) -> String {
    format!("{cmd} is not executed because it is not in the whitelist.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> ServerSnapshot {
        ServerSnapshot { warden_version: "0.1.0".into(), mode: "standalone".into(), node_count: 5, last_zxid: 0x1f, ..Default::default() }
    }

    #[test]
    fn recognises_only_known_words() {
        assert_eq!(parse(b"ruok"), Some("ruok"));
        assert_eq!(parse(b"mntr"), Some("mntr"));
        assert_eq!(parse(&[0, 0, 0, 45]), None);
    }

    #[test]
    fn srvr_and_stat_look_like_zookeeper() {
        let s = snap();
        let srvr = reply("srvr", &s);
        assert!(srvr.starts_with("Zookeeper version: 3.8.4-warden-0.1.0"));
        assert!(srvr.contains("Zxid: 0x1f\nMode: standalone\nNode count: 5\n"));
        let mut s2 = s.clone();
        s2.clients.push(ClientLine { address: "127.0.0.1:5000".into(), received: 3, sent: 2, ..Default::default() });
        assert!(reply("stat", &s2).contains("Clients:\n /127.0.0.1:5000[1](queued=0,recved=3,sent=2)\n"));
    }

    #[test]
    fn envi_carries_a_parseable_zookeeper_version() {
        let e = reply("envi", &snap());
        assert!(e.contains("\nzookeeper.version=3.8.4-warden-0.1.0"));
        assert!(e.contains("\nwarden.version=0.1.0\n"));
    }

    #[test]
    fn dump_dirs_and_resets() {
        let mut s = snap();
        s.sessions = vec![(0x10, 4000)];
        s.ephemerals = vec![(0x10, vec!["/e".into()])];
        let d = reply("dump", &s);
        assert!(d.contains("Sessions with Ephemerals (1):\n0x10:\n\t/e\n"), "{d}");
        s.data_dir_bytes = 5;
        assert_eq!(reply("dirs", &s), "datadir_size: 5\nlogdir_size: 0\n");
        assert_eq!(reply("srst", &s), "Server stats reset.\n");
        s.clients.push(ClientLine { address: "127.0.0.1:9".into(), session_id: 0x10, timeout_ms: 4000, ..Default::default() });
        assert!(reply("cons", &s).starts_with(" /127.0.0.1:9[1](queued=0,recved=0,sent=0,sid=0x10,"));
    }

    #[test]
    fn mntr_is_tab_separated() {
        let m = reply("mntr", &snap());
        assert!(m.contains("zk_server_state\tstandalone\n"));
        assert!(m.contains("zk_znode_count\t5\n"));
        assert_eq!(reply("ruok", &snap()), "imok");
        assert_eq!(reply("isro", &snap()), "rw");
    }

    #[test]
    fn mntr_has_zookeepers_latency_summaries() {
        let mut s = snap();
        s.read_latency = LatencySummary { count: 4, sum: 6, min: 1, max: 3, p50: 1, p95: 3, p99: 3, p999: 3 };
        let m = reply("mntr", &s);
        for line in ["zk_avg_readlatency\t1.5\n", "zk_min_readlatency\t1\n", "zk_cnt_readlatency\t4\n", "zk_sum_readlatency\t6\n", "zk_p99_readlatency\t3\n"] {
            assert!(m.contains(line), "{line:?} missing from {m}");
        }
        // An empty summary still reports, with a Java double average; fsynctime has no percentiles in ZooKeeper.
        assert!(m.contains("zk_avg_updatelatency\t0.0\nzk_min_updatelatency\t0\n"));
        assert!(m.contains("zk_sum_fsynctime\t0\n") && !m.contains("zk_p99_fsynctime"));
    }
}
