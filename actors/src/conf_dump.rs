//! The lines `conf` and `envi` report (ZooKeeperServer.dumpConf,
//! Environment.list), read from the config, the disk and the process.

use std::path::Path;
use warden_core::config::Config;

pub fn environment() -> Vec<(String, String)> {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "<NA>".into());
    vec![
        ("host.name".into(), std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "<NA>".into())),
        ("os.name".into(), std::env::consts::OS.into()),
        ("os.arch".into(), std::env::consts::ARCH.into()),
        ("user.name".into(), var("USER")),
        ("user.home".into(), var("HOME")),
        ("user.dir".into(), std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default()),
        ("process.id".into(), std::process::id().to_string()),
    ]
}

pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// The lines an ensemble member's `conf` adds (QuorumZooKeeperServer.dumpConf).
pub fn zookeeper_conf_quorum(c: &Config) -> Vec<(String, String)> {
    let Some(me) = c.my_id.and_then(|id| c.servers.iter().find(|s| s.id == id)) else { return Vec::new() };
    let peer_type = if me.role == warden_core::config::PeerRole::Observer { "1" } else { "0" };
    [
        ("initLimit", c.init_limit.to_string()),
        ("syncLimit", c.sync_limit.to_string()),
        ("electionAlg", "3".into()),
        ("electionPort", me.election_port.to_string()),
        ("quorumPort", me.quorum_port.to_string()),
        ("peerType", peer_type.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `conf` in ZooKeeper's key order (`ZooKeeperServer.dumpConf`).
pub fn zookeeper_conf(c: &Config) -> Vec<(String, String)> {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    [
        ("clientPort", c.client_port.to_string()),
        ("secureClientPort", c.secure_client_port.map_or("-1".into(), |p| p.to_string())),
        ("dataDir", abs(&c.data_dir)),
        ("dataDirSize", dir_size(&c.data_dir).to_string()),
        ("dataLogDir", abs(&c.data_log_dir)),
        ("dataLogSize", dir_size(&c.data_log_dir).to_string()),
        ("tickTime", c.tick_time_ms.to_string()),
        ("maxClientCnxns", c.max_client_cnxns.to_string()),
        ("minSessionTimeout", c.min_session_timeout_ms.to_string()),
        ("maxSessionTimeout", c.max_session_timeout_ms.to_string()),
        ("clientPortListenBacklog", "-1".into()),
        ("serverId", c.my_id.unwrap_or(0).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
