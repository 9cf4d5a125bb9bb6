//! A loopback ensemble of real `warden` processes for multi-process tests:
//! free ports, a temp dir per member, every process stopped by its pid.

#![allow(dead_code)]

use super::{free_port, unique_dir, Server};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Member {
    pub id: u64,
    pub client_port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub server: Option<Server>,
}

/// At most this many ensembles run at once: two cores cannot keep more
/// members' timers honest, and fewer processes make free-port races rare.
const CONCURRENT_ENSEMBLES: usize = 2;

static RUNNING: (std::sync::Mutex<usize>, std::sync::Condvar) = (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A running-ensemble slot, given back on drop.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let (lock, cv) = &RUNNING;
        let mut n = cv.wait_while(lock.lock().unwrap_or_else(|e| e.into_inner()), |n| *n >= CONCURRENT_ENSEMBLES).unwrap_or_else(|e| e.into_inner());
        *n += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cv) = &RUNNING;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }
}

pub struct Ensemble {
    _slot: Slot,
    pub members: Vec<Member>,
    servers: Vec<String>,
    /// Members in the starting config; later ids are spares that join by reconfig.
    initial: u64,
    initial_voters: u64,
    extra: Vec<(String, String)>,
    /// Settings for one member only, applied after the common ones.
    member_extra: std::collections::HashMap<u64, Vec<(String, String)>>,
}

impl Ensemble {
    /// `voters` participants then `observers` observers, ids from 1.
    pub fn start(voters: u64, observers: u64, extra: &[(&str, &str)]) -> Ensemble {
        Self::start_with_spares(voters, observers, &[], extra)
    }

    /// Also `spares` (their roles, "participant" or "observer"), ids after
    /// the others, not started and not in the others' config: each one's
    /// config is the starting one plus itself, ready to join by reconfig.
    pub fn start_with_spares(voters: u64, observers: u64, spares: &[&str], extra: &[(&str, &str)]) -> Ensemble {
        // Wait for a slot before choosing ports, so they are fresh.
        let slot = Slot::take();
        let initial = voters + observers;
        let total = initial + spares.len() as u64;
        let servers: Vec<String> = (1..=total)
            .map(|id| {
                let role = if id > initial {
                    format!(":{}", spares[(id - initial - 1) as usize])
                } else if id > voters {
                    ":observer".into()
                } else {
                    String::new()
                };
                format!("server.{id}=127.0.0.1:{}:{}{role}", free_port(), free_port())
            })
            .collect();
        let members = (1..=total).map(|id| Member { id, client_port: free_port(), admin_port: free_port(), dir: unique_dir(), server: None }).collect();
        let extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut e = Ensemble { _slot: slot, members, servers, initial, initial_voters: voters, extra, member_extra: Default::default() };
        for id in 1..=initial {
            e.start_member(id);
        }
        e
    }

    /// A member's `server.N=host:quorum:election:role;host:client` line,
    /// as a reconfig's joining list takes it.
    pub fn join_spec(&self, id: u64, role: &str) -> String {
        let line = &self.servers[id as usize - 1];
        let peer = line.split(':').take(3).collect::<Vec<_>>().join(":");
        format!("{peer}:{role};127.0.0.1:{}", self.member(id).client_port)
    }

    pub fn member(&self, id: u64) -> &Member {
        &self.members[id as usize - 1]
    }

    pub fn server(&mut self, id: u64) -> &mut Server {
        self.members[id as usize - 1].server.as_mut().expect("member is running")
    }

    pub fn start_member(&mut self, id: u64) {
        if let Err(e) = self.try_start_member(id) {
            panic!("member {id}: {e}");
        }
    }

    /// Starts a member; Err (with its log) if it exits before answering ruok.
    pub fn try_start_member(&mut self, id: u64) -> Result<(), String> {
        let m = &self.members[id as usize - 1];
        let lines = self.servers.iter().take(self.initial as usize).chain((id > self.initial).then(|| &self.servers[id as usize - 1]));
        let mut extra: Vec<(String, String)> = lines
            .map(|s| {
                let (k, v) = s.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        extra.push(("warden.myid".into(), id.to_string()));
        extra.push(("admin.serverPort".into(), m.admin_port.to_string()));
        if id > self.initial_voters && id <= self.initial {
            extra.push(("peerType".into(), "observer".into()));
        }
        extra.extend(self.extra.iter().cloned());
        extra.extend(self.member_extra.get(&id).cloned().unwrap_or_default());
        let refs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start_in(&m.dir, m.client_port, &refs)?;
        self.members[id as usize - 1].server = Some(server);
        Ok(())
    }

    /// Settings for member `id` alone at its next start.
    pub fn set_member_extra(&mut self, id: u64, extra: &[(&str, &str)]) {
        self.member_extra.insert(id, extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    }

    /// SIGKILL (or another signal) to a member; it is no longer running.
    pub fn kill(&mut self, id: u64, signal: &str) {
        if let Some(mut s) = self.members[id as usize - 1].server.take() {
            s.signal(signal);
        }
    }

    /// `srvr`'s Mode line of a running member ("leader", "follower",
    /// "observer"), or None while it is not serving.
    pub fn mode(&self, id: u64) -> Option<String> {
        let s = self.member(id).server.as_ref()?;
        let text = s.four_letter("srvr").ok()?;
        text.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_string)
    }

    pub fn running(&self) -> Vec<u64> {
        self.members.iter().filter(|m| m.server.is_some()).map(|m| m.id).collect()
    }

    /// Waits until one running member leads and every other running one
    /// serves as follower or observer; returns the leader's id.
    pub fn wait_serving(&self, deadline: Duration) -> u64 {
        let end = Instant::now() + deadline;
        loop {
            let modes: Vec<(u64, Option<String>)> = self.running().into_iter().map(|id| (id, self.mode(id))).collect();
            let leaders: Vec<u64> = modes.iter().filter(|(_, m)| m.as_deref() == Some("leader")).map(|(id, _)| *id).collect();
            if leaders.len() == 1 && modes.iter().all(|(_, m)| m.is_some()) {
                return leaders[0];
            }
            if Instant::now() >= end {
                panic!("ensemble not serving after {deadline:?}: {modes:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until some running member leads; returns it.
    pub fn wait_leader(&self, deadline: Duration) -> u64 {
        let end = Instant::now() + deadline;
        loop {
            if let Some(id) = self.running().into_iter().find(|id| self.mode(*id).as_deref() == Some("leader")) {
                return id;
            }
            if Instant::now() >= end {
                panic!("no leader after {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect_string(&self, ids: &[u64]) -> String {
        ids.iter().map(|id| format!("127.0.0.1:{}", self.member(*id).client_port)).collect::<Vec<_>>().join(",")
    }

    /// GET `path` from a member's admin endpoint; the body.
    pub fn admin_get(&self, id: u64, path: &str) -> String {
        super::admin(self.member(id).admin_port, "GET", path).1
    }

    /// POST `path` to a member's admin endpoint; (status, body).
    pub fn admin_post(&self, id: u64, path: &str) -> (u16, String) {
        super::admin(self.member(id).admin_port, "POST", path)
    }

    pub fn all_ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.id).collect()
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // Servers stop by pid in their own Drop; dirs go afterwards.
        for m in &mut self.members {
            m.server.take();
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&m.dir);
            }
        }
    }
}
