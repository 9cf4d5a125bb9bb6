//! `--netns`: every member in its own network namespace with its own address
//! on a bridge. The bridge lives in a "hub" namespace the harness creates and
//! joins (the clients run there); nothing is linked to the machine's own
//! namespaces, so no packet leaves. Names carry the harness's pid, so
//! parallel runs do not collide, and `Drop` deletes every namespace created.
//!
//! Faults are applied inside a member's namespace: nft rules on its input
//! (partitions, one-way cuts, random loss), a tbf qdisc on its egress (rate),
//! `tc netem` where the kernel has it, and its link down/up. Without netem,
//! duplication is nft's `dup` on the member's output and reordering an htb
//! slow lane that nft sends a random share of its packets into.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub type Id = u64;

/// The hub's own address on the bridge (the clients' source address).
pub const HUB_HOST: u8 = 254;

pub struct Netns {
    pub hub: String,
    prefix: String,
    created: Vec<String>,
    /// The member's current last octet (a "moved" member gets a new one).
    host: BTreeMap<Id, u8>,
    /// (from, to): packets from `from` are dropped on arrival at `to`.
    cut: BTreeSet<(Id, Id)>,
    /// Reject with a TCP reset instead of silently dropping.
    reset: bool,
    /// Random loss in percent on packets arriving at the member.
    loss: BTreeMap<Id, u32>,
    /// Percent of the member's outgoing packets sent twice (nft dup).
    dup: BTreeMap<Id, u32>,
    /// Percent of the member's outgoing packets put in the slow lane.
    reorder: BTreeMap<Id, u32>,
    pub netem: bool,
}

/// The htb class that holds back reordered packets: at this rate a 100-byte
/// packet waits ~3 ms and a full one ~47 ms behind the ones sent after it.
const SLOW_LANE: &str = "1:20";
const SLOW_LANE_RATE: &str = "256kbit";

/// Runs a command; Err with its stderr when it fails.
pub fn run(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog).args(args).stdin(Stdio::null()).output().map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{prog} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn run_stdin(prog: &str, args: &[&str], input: &str) -> Result<(), String> {
    let mut child =
        Command::new(prog).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| format!("{prog}: {e}"))?;
    child.stdin.take().unwrap().write_all(input.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{prog} {}: {}\n{input}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    /// Why namespaces cannot be used here, if they cannot.
    pub fn unavailable() -> Option<String> {
        // Safety: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root".into());
        }
        for (prog, arg) in [("ip", "-V"), ("nft", "--version"), ("tc", "-V")] {
            if Command::new(prog).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
                return Some(format!("`{prog}` not found (Debian: iproute2, nftables)"));
            }
        }
        None
    }

    /// Deletes namespaces left by runs of this harness whose process is gone
    /// (killed by SIGKILL: no teardown ran); returns their names.
    pub fn sweep_stale() -> Vec<String> {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
        let mut gone = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("wchaos") else { continue };
            let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let ours = matches!(&rest[pid.len()..], "hub") || rest[pid.len()..].strip_prefix('m').is_some_and(|n| n.parse::<u64>().is_ok());
            if !pid.is_empty() && ours && !std::path::Path::new(&format!("/proc/{pid}")).exists() && run("ip", &["netns", "del", name]).is_ok() {
                gone.push(name.to_string());
            }
        }
        gone
    }

    /// The hub with its bridge, and one namespace per member linked to it.
    pub fn create(members: u64) -> Result<Netns, String> {
        let stale = Netns::sweep_stale();
        if !stale.is_empty() {
            println!("warden-chaos: deleted namespaces of dead earlier runs: {}", stale.join(" "));
        }
        let prefix = format!("wchaos{}", std::process::id());
        let mut n = Netns {
            hub: format!("{prefix}hub"),
            prefix,
            created: Vec::new(),
            host: BTreeMap::new(),
            cut: BTreeSet::new(),
            reset: false,
            loss: BTreeMap::new(),
            dup: BTreeMap::new(),
            reorder: BTreeMap::new(),
            netem: false,
        };
        let hub = n.hub.clone();
        n.add_ns(&hub)?;
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &hub, "addr", "add", &format!("10.77.0.{HUB_HOST}/24"), "dev", "br0"])?;
        run("ip", &["-n", &hub, "link", "set", "br0", "up"])?;
        run("ip", &["-n", &hub, "link", "set", "lo", "up"])?;
        for id in 1..=members {
            let ns = n.ns(id);
            n.add_ns(&ns)?;
            let port = format!("m{id}");
            // Both ends are created in namespaces of this run, never in the machine's own.
            run("ip", &["-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            n.host.insert(id, id as u8);
            run("ip", &["-n", &ns, "addr", "add", &format!("10.77.0.{id}/24"), "dev", "eth0"])?;
        }
        n.netem = run("ip", &["netns", "exec", &n.ns(1), "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]).is_ok();
        if n.netem {
            let _ = run("ip", &["netns", "exec", &n.ns(1), "tc", "qdisc", "del", "dev", "lo", "root"]);
        }
        Ok(n)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        run("ip", &["netns", "add", name])?;
        self.created.push(name.to_string());
        Ok(())
    }

    pub fn ns(&self, id: Id) -> String {
        format!("{}m{id}", self.prefix)
    }

    pub fn addr(&self, id: Id) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, self.host[&id])
    }

    /// Joins the hub on the calling thread; threads it creates later are in it too.
    /// Call before any other thread exists.
    pub fn join_hub(&self) -> Result<(), String> {
        let path = format!("/run/netns/{}", self.hub);
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        use std::os::fd::AsRawFd;
        // Safety: setns with an open namespace fd.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Moves member `id` to a new address (its old one removed); returns it.
    pub fn readdress(&mut self, id: Id) -> Result<Ipv4Addr, String> {
        let old = self.addr(id);
        let used: BTreeSet<u8> = self.host.values().copied().collect();
        let new = (10..200u8).map(|h| h.wrapping_add(old.octets()[3])).find(|h| *h > 0 && *h < HUB_HOST && !used.contains(h)).ok_or("no free address")?;
        let ns = self.ns(id);
        run("ip", &["-n", &ns, "addr", "del", &format!("{old}/24"), "dev", "eth0"])?;
        run("ip", &["-n", &ns, "addr", "add", &format!("10.77.0.{new}/24"), "dev", "eth0"])?;
        self.host.insert(id, new);
        self.apply_all()?;
        Ok(self.addr(id))
    }

    pub fn link(&self, id: Id, up: bool) -> Result<(), String> {
        run("ip", &["-n", &self.ns(id), "link", "set", "eth0", if up { "up" } else { "down" }])
    }

    /// Drops packets from `from` arriving at `to` (one direction).
    pub fn cut(&mut self, from: Id, to: Id, reset: bool) {
        self.cut.insert((from, to));
        self.reset = reset;
    }

    pub fn set_loss(&mut self, id: Id, percent: u32) {
        self.loss.insert(id, percent);
    }

    /// Sends `percent` of member `id`'s outgoing packets twice.
    pub fn set_dup(&mut self, id: Id, percent: u32) {
        self.dup.insert(id, percent);
    }

    /// Holds `percent` of member `id`'s outgoing packets in a slow htb lane,
    /// so they arrive after packets sent later (the egress qdisc is replaced).
    pub fn set_reorder(&mut self, id: Id, percent: u32) -> Result<(), String> {
        let ns = self.ns(id);
        let tc = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns, "tc"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        tc(&["qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "10"])?;
        tc(&["class", "add", "dev", "eth0", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"])?;
        tc(&["class", "add", "dev", "eth0", "parent", "1:", "classid", SLOW_LANE, "htb", "rate", SLOW_LANE_RATE])?;
        self.reorder.insert(id, percent);
        Ok(())
    }

    /// Egress of member `id`: a netem spec (delay, loss, duplicate, reorder,
    /// corrupt: only where the kernel has netem) or a tbf rate limit.
    pub fn qdisc(&self, id: Id, spec: &[&str]) -> Result<(), String> {
        let ns = self.ns(id);
        let mut args = vec!["netns", "exec", &ns, "tc", "qdisc", "replace", "dev", "eth0", "root"];
        args.extend_from_slice(spec);
        run("ip", &args)
    }

    /// Heals every fault: rules cleared, qdiscs removed, links up.
    pub fn heal(&mut self) -> Result<(), String> {
        self.cut.clear();
        self.loss.clear();
        self.dup.clear();
        self.reorder.clear();
        self.reset = false;
        let mut errs = Vec::new();
        for id in self.host.keys().copied().collect::<Vec<_>>() {
            let ns = self.ns(id);
            // Deleting an absent root qdisc fails harmlessly.
            let _ = run("ip", &["netns", "exec", &ns, "tc", "qdisc", "del", "dev", "eth0", "root"]);
            if let Err(e) = self.link(id, true) {
                errs.push(e);
            }
        }
        if let Err(e) = self.apply_all() {
            errs.push(e);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Writes each member's nft table from the current cuts and losses.
    pub fn apply_all(&self) -> Result<(), String> {
        for id in self.host.keys() {
            let mut rules = String::new();
            for (from, to) in &self.cut {
                if to == id {
                    let verdict = if self.reset { "reject with tcp reset" } else { "drop" };
                    let l4 = if self.reset { "meta l4proto tcp " } else { "" };
                    rules += &format!("    ip saddr {} {l4}{verdict}\n", self.addr(*from));
                }
            }
            if let Some(p) = self.loss.get(id).filter(|p| **p > 0) {
                rules += &format!("    numgen random mod 100 < {p} drop\n");
            }
            let mut out = String::new();
            if let Some(p) = self.reorder.get(id).filter(|p| **p > 0) {
                out += &format!("    oif \"eth0\" numgen random mod 100 < {p} meta priority set {SLOW_LANE}\n");
            }
            // `dup to ip daddr` exists only in the ip family: a table of its own.
            let mut dup = String::new();
            if let Some(p) = self.dup.get(id).filter(|p| **p > 0) {
                dup += &format!("    oif \"eth0\" numgen random mod 100 < {p} dup to ip daddr device \"eth0\"\n");
            }
            let script = format!(
                "table inet chaos\ndelete table inet chaos\ntable inet chaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{out}  }}\n}}\ntable ip chaosdup\ndelete table ip chaosdup\ntable ip chaosdup {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{dup}  }}\n}}\n"
            );
            run_stdin("ip", &["netns", "exec", &self.ns(*id), "nft", "-f", "-"], &script)?;
        }
        Ok(())
    }

    /// A description of the rules now in force, for the schedule.
    pub fn describe(&self) -> String {
        format!("cuts (from->to) {:?}, loss {:?}, dup {:?}, reorder {:?}", self.cut, self.loss, self.dup, self.reorder)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Members' namespaces first, then the hub (deleting it destroys the bridge and veth ends).
        for name in self.created.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", name]) {
                eprintln!("warden-chaos: could not delete namespace {name}: {e}");
            }
        }
    }
}
