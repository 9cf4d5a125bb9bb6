//! The ensemble under test: real `warden server` processes on loopback with
//! free ports and a temp dir each, every member pair linked through a
//! `Proxy`. Processes are signalled by pid only, and all are killed when the
//! `Cluster` is dropped (also on panic); PR_SET_PDEATHSIG covers the harness
//! itself dying.

use crate::netns::Netns;
use crate::proxy::{LinkState, Proxy};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type Id = u64;

#[path = "../../tests/support/ports.rs"]
mod ports;
pub use ports::free_port;

pub struct Member {
    pub id: Id,
    pub client_port: u16,
    pub quorum_port: u16,
    pub election_port: u16,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub stopped: bool,
    /// warden.fsyncDelayMs at the next start (the slow-disk fault).
    pub fsync_delay_ms: u64,
    /// Started under libfaketime reading its spec from this file (changed
    /// while it runs), with FAKETIME_DONT_FAKE_MONOTONIC when only the wall
    /// clock is to move (an NTP step; a rate change moves both clocks).
    pub faketime: Option<(PathBuf, bool)>,
    pub admin_port: u16,
}

impl Member {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("warden.log")
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// (low id, high id) -> the proxy the high id dials to reach the low id.
    pub links: BTreeMap<(Id, Id), Proxy>,
    warden_bin: PathBuf,
    tick_ms: u32,
    linearizable_reads: bool,
    /// `--netns`: members in their own namespaces; links cut by nft instead of proxies.
    pub net: Option<Netns>,
    /// The clients' connect string (a moved member changes it).
    pub client_connect: std::sync::Arc<std::sync::RwLock<String>>,
}

/// The admin token members get, so the harness can read `/metrics` over the bridge.
pub const ADMIN_TOKEN: &str = "warden-chaos";

fn signal(pid: u32, sig: i32) {
    // Safety: kill(2) with a pid we spawned and have not reaped.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl Cluster {
    pub async fn start(
        n: u64,
        warden_bin: &Path,
        root: &Path,
        tick_ms: u32,
        delay: Duration,
        linearizable_reads: bool,
        net: Option<Netns>,
    ) -> Result<Cluster, String> {
        let mut members = Vec::new();
        for id in 1..=n {
            let dir = root.join(format!("member{id}"));
            std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
            // In a namespace of its own a member has the usual ports to itself.
            let port = |usual: u16| if net.is_some() { usual } else { free_port() };
            members.push(Member {
                id,
                client_port: port(2181),
                quorum_port: port(2888),
                election_port: port(3888),
                admin_port: port(8080),
                dir,
                child: None,
                stopped: false,
                fsync_delay_ms: 0,
                faketime: None,
            });
        }
        let mut links = BTreeMap::new();
        for lo in 1..=n {
            for hi in (lo + 1..=n).filter(|_| net.is_none()) {
                let target = SocketAddr::from((Ipv4Addr::LOCALHOST, members[lo as usize - 1].quorum_port));
                let p = Proxy::start(target, delay).await.map_err(|e| format!("proxy: {e}"))?;
                links.insert((lo, hi), p);
            }
        }
        let mut c = Cluster { members, links, warden_bin: warden_bin.to_path_buf(), tick_ms, linearizable_reads, net, client_connect: Default::default() };
        *c.client_connect.write().unwrap() = c.connect_string(&c.ids());
        for id in 1..=n {
            c.spawn(id)?;
        }
        Ok(c)
    }

    pub fn tick_ms(&self) -> u32 {
        self.tick_ms
    }

    pub fn ids(&self) -> Vec<Id> {
        self.members.iter().map(|m| m.id).collect()
    }

    pub fn member(&self, id: Id) -> &Member {
        &self.members[id as usize - 1]
    }

    pub fn member_mut(&mut self, id: Id) -> &mut Member {
        &mut self.members[id as usize - 1]
    }

    /// Member `id`'s server lines: its own real ports; for a lower id (which
    /// it dials) the proxy of that link; for a higher id (which dials it) the
    /// real ports, never used for dialing.
    fn server_lines(&self, id: Id) -> Vec<String> {
        self.members
            .iter()
            .map(|m| {
                if let Some(net) = &self.net {
                    return format!("server.{}={}:{}:{}", m.id, net.addr(m.id), m.quorum_port, m.election_port);
                }
                let q = if m.id < id { self.links[&(m.id, id)].port } else { m.quorum_port };
                format!("server.{}=127.0.0.1:{}:{}", m.id, q, m.election_port)
            })
            .collect()
    }

    /// Starts member `id`'s process (its data dir as it is).
    pub fn spawn(&mut self, id: Id) -> Result<(), String> {
        let lines = self.server_lines(id);
        let tick = self.tick_ms;
        let lin_reads = self.linearizable_reads;
        let bin = self.warden_bin.clone();
        let host = self.host(id);
        let ns = self.net.as_ref().map(|n| n.ns(id));
        let m = self.member_mut(id);
        std::fs::create_dir_all(m.data_dir()).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(m.log_path()).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match &ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
            None => Command::new(&bin),
        };
        if ns.is_some() {
            // `ip netns exec` execs: the pid is the member's.
            cmd.arg(&bin);
        }
        if let Some((rc, wall_only)) = &m.faketime {
            cmd.env("LD_PRELOAD", libfaketime().ok_or("libfaketimeMT.so.1 not found (Debian package faketime)")?);
            cmd.env("FAKETIME_TIMESTAMP_FILE", rc);
            cmd.env("FAKETIME_CACHE_DURATION", "1");
            if *wall_only {
                cmd.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            }
        }
        cmd.arg("server");
        let mut set = |kv: String| {
            cmd.args(["--set", &kv]);
        };
        set(format!("clientPort={}", m.client_port));
        set(format!("clientPortAddress={host}"));
        set("admin.enableServer=true".into());
        set(format!("admin.serverAddress={host}"));
        set(format!("admin.serverPort={}", m.admin_port));
        set(format!("warden.adminToken={ADMIN_TOKEN}"));
        set(format!("dataDir={}", m.data_dir().display()));
        set("4lw.commands.whitelist=*".into());
        set(format!("tickTime={tick}"));
        set("initLimit=10".into());
        set("syncLimit=5".into());
        // Reads on any member wait behind a quorum barrier: what makes the
        // register histories (reads included) checkable for linearizability.
        set(format!("warden.linearizableReads={lin_reads}"));
        set(format!("warden.myid={id}"));
        set(format!("warden.fsyncDelayMs={}", m.fsync_delay_ms));
        for l in lines {
            set(l);
        }
        // Safety: prctl in the child before exec; only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2)).spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        m.child = Some(child);
        m.stopped = false;
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, id: Id) {
        let m = self.member_mut(id);
        if let Some(mut c) = m.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                signal(c.id(), libc::SIGKILL);
            }
            let _ = c.wait();
        }
        m.stopped = false;
    }

    pub fn pause(&mut self, id: Id) {
        let m = self.member_mut(id);
        if let Some(c) = &m.child {
            signal(c.id(), libc::SIGSTOP);
            m.stopped = true;
        }
    }

    pub fn resume(&mut self, id: Id) {
        let m = self.member_mut(id);
        if let Some(c) = &m.child {
            signal(c.id(), libc::SIGCONT);
        }
        m.stopped = false;
    }

    /// The exit status if the process ended by itself.
    pub fn exited(&mut self, id: Id) -> Option<std::process::ExitStatus> {
        let m = self.member_mut(id);
        let st = m.child.as_mut()?.try_wait().ok().flatten();
        if st.is_some() {
            m.child = None;
        }
        st
    }

    pub fn is_running(&self, id: Id) -> bool {
        self.member(id).child.is_some()
    }

    /// Member `id`'s address: its own on the bridge, or loopback.
    pub fn host(&self, id: Id) -> Ipv4Addr {
        self.net.as_ref().map(|n| n.addr(id)).unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// Cuts the link both ways (blackhole: silent; reset: refused).
    pub fn set_link(&mut self, a: Id, b: Id, s: LinkState) {
        if let Some(net) = &mut self.net {
            if s != LinkState::Open {
                net.cut(a, b, s == LinkState::Reset);
                net.cut(b, a, s == LinkState::Reset);
            }
            return;
        }
        let key = (a.min(b), a.max(b));
        self.links[&key].set(s);
    }

    pub fn heal_links(&mut self) {
        if let Some(net) = &mut self.net {
            if let Err(e) = net.heal() {
                eprintln!("warden-chaos: healing the network: {e}");
            }
        }
        for p in self.links.values() {
            p.set(LinkState::Open);
        }
    }

    /// Cuts every link between the two sides.
    pub fn partition(&mut self, side_a: &[Id], side_b: &[Id], s: LinkState) {
        for a in side_a {
            for b in side_b {
                self.set_link(*a, *b, s);
            }
        }
        self.apply_net();
    }

    /// Makes the namespaces' nft rules match the cuts recorded so far.
    pub fn apply_net(&self) {
        if let Some(net) = &self.net {
            if let Err(e) = net.apply_all() {
                eprintln!("warden-chaos: nft: {e}");
            }
        }
    }

    pub fn client_addr(&self, id: Id) -> SocketAddr {
        SocketAddr::from((self.host(id), self.member(id).client_port))
    }

    pub fn admin_addr(&self, id: Id) -> SocketAddr {
        SocketAddr::from((self.host(id), self.member(id).admin_port))
    }

    pub fn connect_string(&self, ids: &[Id]) -> String {
        ids.iter().map(|id| self.client_addr(*id).to_string()).collect::<Vec<_>>().join(",")
    }

    pub fn pid(&self, id: Id) -> Option<u32> {
        self.member(id).child.as_ref().map(|c| c.id())
    }

    /// `srvr`'s Mode line (leader / follower / observer), None if not serving.
    pub async fn mode(&self, id: Id) -> Option<String> {
        if !self.is_running(id) || self.member(id).stopped {
            return None;
        }
        let text = four_letter(self.client_addr(id), "srvr").await.ok()?;
        text.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_string)
    }

    pub async fn leader(&self) -> Option<Id> {
        for id in self.ids() {
            if self.mode(id).await.as_deref() == Some("leader") {
                return Some(id);
            }
        }
        None
    }

    /// Waits until every running member serves with exactly one leader.
    pub async fn wait_serving(&self, deadline: Duration) -> Result<Id, String> {
        let end = Instant::now() + deadline;
        loop {
            let mut modes = Vec::new();
            for id in self.ids().into_iter().filter(|id| self.is_running(*id)) {
                modes.push((id, self.mode(id).await));
            }
            let leaders: Vec<Id> = modes.iter().filter(|(_, m)| m.as_deref() == Some("leader")).map(|(id, _)| *id).collect();
            if leaders.len() == 1 && modes.iter().all(|(_, m)| m.is_some()) {
                return Ok(leaders[0]);
            }
            if Instant::now() >= end {
                return Err(format!("ensemble not serving after {deadline:?}: {modes:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until exactly one running member leads (others may still be joining).
    pub async fn wait_leader(&self, deadline: Duration) -> Result<Id, String> {
        let end = Instant::now() + deadline;
        loop {
            let mut leaders = Vec::new();
            for id in self.ids() {
                if self.mode(id).await.as_deref() == Some("leader") {
                    leaders.push(id);
                }
            }
            if leaders.len() == 1 {
                return Ok(leaders[0]);
            }
            if Instant::now() >= end {
                return Err(format!("no single leader after {deadline:?}: {leaders:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_tail(&self, id: Id, lines: usize) -> String {
        let text = std::fs::read_to_string(self.member(id).log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                if matches!(c.try_wait(), Ok(None)) {
                    // A stopped process must be continued to die promptly.
                    signal(c.id(), libc::SIGCONT);
                    signal(c.id(), libc::SIGKILL);
                }
                let _ = c.wait();
            }
        }
    }
}

/// libfaketime's multi-threaded library (Debian's faketime package).
pub fn libfaketime() -> Option<PathBuf> {
    ["/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime", "/usr/lib/faketime", "/usr/local/lib/faketime"]
        .iter()
        .map(|d| Path::new(d).join("libfaketimeMT.so.1"))
        .find(|p| p.exists())
}

pub async fn four_letter(addr: SocketAddr, cmd: &str) -> std::io::Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(cmd.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(2), io).await.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "4lw timeout")))
}
