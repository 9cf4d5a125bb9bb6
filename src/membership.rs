//! The ensemble's membership as ZooKeeper keeps it in `/zookeeper/config`
//! (QuorumMaj.toString and parseDynamicConfig), and the new membership a
//! reconfig request asks for (PrepRequestProcessor's reconfig case).

use crate::config::{parse_server, PeerRole, ServerSpec};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub servers: BTreeMap<u64, ServerSpec>,
    /// The zxid of the reconfig that made it; 0 for a static config.
    pub version: i64,
}

impl Membership {
    pub fn new(servers: impl IntoIterator<Item = ServerSpec>, version: i64) -> Membership {
        Membership { servers: servers.into_iter().map(|s| (s.id, s)).collect(), version }
    }

    /// The `/zookeeper/config` text: `server.N=...` lines, then `version=<hex>`
    /// (no trailing newline), as ZooKeeper writes it.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for spec in self.servers.values() {
            s.push_str(&format!("server.{}={}\n", spec.id, format_server(spec)));
        }
        s.push_str(&format!("version={:x}", self.version));
        s
    }

    /// Reads `/zookeeper/config` text or a non-incremental member list
    /// (lines or commas); other keys are ignored, as ZooKeeper does.
    pub fn parse(text: &str) -> Result<Membership, String> {
        let mut servers = BTreeMap::new();
        let mut version = 0;
        for line in text.split(['\n', ',']).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (key, value) = line.split_once('=').ok_or_else(|| format!("{line:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            if let Some(id) = key.strip_prefix("server.") {
                let id: u64 = id.parse().map_err(|_| format!("{key} needs a numeric server id"))?;
                servers.insert(id, parse_server(id, value)?);
            } else if key == "version" {
                version = i64::from_str_radix(value, 16).map_err(|_| format!("version {value:?} is not hexadecimal"))?;
            }
        }
        Ok(Membership { servers, version })
    }

    pub fn voters(&self) -> BTreeSet<u64> {
        self.ids_with(PeerRole::Participant)
    }

    pub fn observers(&self) -> BTreeSet<u64> {
        self.ids_with(PeerRole::Observer)
    }

    fn ids_with(&self, role: PeerRole) -> BTreeSet<u64> {
        self.servers.values().filter(|s| s.role == role).map(|s| s.id).collect()
    }

    /// Incremental reconfig: `leaving` ids (comma separated) removed, then
    /// `joining` `server.N=spec;client` entries added or replaced.
    pub fn incremental(&self, joining: Option<&str>, leaving: Option<&str>) -> Result<Membership, String> {
        let mut next = self.servers.clone();
        for id in leaving.into_iter().flat_map(|l| l.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            let id: u64 = id.parse().map_err(|_| format!("leaving server id {id:?} is not a number"))?;
            next.remove(&id);
        }
        for joiner in joining.into_iter().flat_map(|j| j.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = joiner.split_once('=').ok_or("Wrong format of server string")?;
            let id = key.trim().rsplit('.').next().and_then(|n| n.parse::<u64>().ok()).ok_or("Wrong format of server string")?;
            let spec = parse_server(id, value.trim())?;
            if spec.client_address.is_none() {
                return Err("Wrong format of server string - each server should have 3 ports specified".into());
            }
            if let Some(other) = next.values().find(|o| o.id != id && shares_address(o, &spec)) {
                return Err(format!("server.{id} uses an address of server.{}", other.id));
            }
            next.insert(id, spec);
        }
        Ok(Membership { servers: next, version: self.version })
    }
}

fn shares_address(a: &ServerSpec, b: &ServerSpec) -> bool {
    let ports = |s: &ServerSpec| [s.quorum_port, s.election_port];
    a.host == b.host && ports(a).iter().any(|p| ports(b).contains(p))
}

/// QuorumServer.toString: `host:quorum:election:role[;clientHost:clientPort]`.
pub fn format_server(s: &ServerSpec) -> String {
    let host = |h: &str| if h.contains(':') { format!("[{h}]") } else { h.to_string() };
    let role = match s.role {
        PeerRole::Participant => "participant",
        PeerRole::Observer => "observer",
    };
    let mut out = format!("{}:{}:{}:{role}", host(&s.host), s.quorum_port, s.election_port);
    if let Some((client_host, port)) = &s.client_address {
        // A bare `;port` means every interface, as ZooKeeper prints it.
        let client_host = if client_host.is_empty() { "0.0.0.0" } else { client_host };
        out.push_str(&format!(";{}:{port}", host(client_host)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Membership {
        Membership::parse(
            "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nserver.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890:observer;2183\nversion=0",
        )
        .unwrap()
    }

    #[test]
    fn config_text_round_trips_in_zookeeper_format() {
        let m = three();
        assert_eq!(m.voters(), BTreeSet::from([1, 2]));
        assert_eq!(m.observers(), BTreeSet::from([3]));
        let text = Membership { version: 0x1_0000_0004, ..m.clone() }.to_text();
        assert_eq!(
            text,
            "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\nserver.2=127.0.0.1:2889:3889:participant\nserver.3=127.0.0.1:2890:3890:observer;0.0.0.0:2183\nversion=100000004"
        );
        assert_eq!(Membership::parse(&text).unwrap().version, 0x1_0000_0004);
    }

    #[test]
    fn incremental_reconfig_keeps_the_joiners_spec_and_removes_leavers() {
        let joining = "server.100=0.0.0.0:1234:2345:observer;0.0.0.0:3456";
        let m = three().incremental(Some(joining), Some("2")).unwrap();
        assert_eq!(m.servers.keys().copied().collect::<Vec<_>>(), vec![1, 3, 100]);
        assert!(m.to_text().contains(joining), "kazoo finds the joiner's line verbatim: {}", m.to_text());
    }

    #[test]
    fn bad_server_specs_are_refused() {
        let m = three();
        assert!(m.incremental(Some("some thing"), None).is_err());
        assert!(m.incremental(Some("server.4=127.0.0.1:2891:3891"), None).is_err(), "no client port");
        assert!(m.incremental(Some("server.4=127.0.0.1:2888:3999;2184"), None).is_err(), "quorum port of server.1");
        assert!(m.incremental(None, Some("x")).is_err());
        assert!(Membership::parse("server.1=nonsense").is_err());
        assert!(Membership::parse("version=zz").is_err());
    }
}
