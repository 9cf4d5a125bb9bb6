//! The nemesis: one fault at a time on a schedule drawn from the seeded RNG,
//! healed before the next, and the ensemble must serve again before going on
//! (a storage fault costs a member its vote; a second one before it has
//! caught up would be a double fault ZooKeeper does not survive either).

use crate::cluster::{Cluster, Id};
use crate::proxy::LinkState;
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Partition,
    Wipe,
    Corrupt,
    SlowDisk,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        Ok(match s {
            "kill" => Kind::Kill,
            "pause" => Kind::Pause,
            "partition" => Kind::Partition,
            "wipe" => Kind::Wipe,
            "corrupt" => Kind::Corrupt,
            "slow-disk" => Kind::SlowDisk,
            _ => return Err(format!("unknown fault {s:?} (kill, pause, partition, wipe, corrupt, slow-disk)")),
        })
    }
}

#[derive(Default, Debug)]
pub struct Report {
    /// Fault label ("kill leader", "partition bridge blackhole", ...) -> count.
    pub injected: BTreeMap<String, u64>,
    /// Every fault as it happened, with times.
    pub schedule: Vec<String>,
    /// Safety or liveness problems seen by the nemesis itself.
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }
}

pub struct Nemesis {
    pub rng: Rng,
    pub kinds: Vec<Kind>,
    pub start: Instant,
    pub report: Report,
}

const SERVE_AGAIN: Duration = Duration::from_secs(30);

impl Nemesis {
    fn log(&mut self, line: String) {
        let t = self.start.elapsed().as_secs_f64();
        let line = format!("[{t:7.2}s] {line}");
        println!("nemesis {line}");
        self.report.schedule.push(line);
    }

    fn injected(&mut self, label: String, detail: String) {
        *self.report.injected.entry(label.clone()).or_default() += 1;
        self.log(format!("{label}: {detail}"));
    }

    fn anomaly(&mut self, what: String) {
        self.log(format!("ANOMALY: {what}"));
        self.report.anomalies.push(what);
    }

    /// Runs faults until `until`; returns with everything healed.
    pub async fn run(&mut self, c: &mut Cluster, until: Instant) {
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(self.rng.range(500, 2000))).await;
            if Instant::now() >= until {
                break;
            }
            let kind = *self.rng.pick(&self.kinds);
            let hold = Duration::from_millis(self.rng.range(1000, 4000));
            match kind {
                Kind::Kill => self.kill(c, hold).await,
                Kind::Pause => self.pause(c, hold).await,
                Kind::Partition => self.partition(c, hold).await,
                Kind::Wipe => self.wipe(c, hold).await,
                Kind::Corrupt => self.corrupt(c).await,
                Kind::SlowDisk => self.slow_disk(c, hold).await,
            }
            for crash in heal_all(c) {
                self.anomaly(crash);
            }
            if let Err(e) = c.wait_serving(SERVE_AGAIN).await {
                self.anomaly(format!("after {kind:?}: {e}"));
                for id in c.ids() {
                    self.log(format!("member {id} log tail:\n{}", c.log_tail(id, 15)));
                }
            }
        }
    }

    /// The leader with probability 1/2 (when there is one), else any member.
    async fn target(&mut self, c: &Cluster) -> (Id, &'static str) {
        let want_leader = self.rng.chance(1, 2);
        let any = *self.rng.pick(&c.ids());
        if want_leader {
            if let Some(l) = c.leader().await {
                return (l, "leader");
            }
        }
        (any, "member")
    }

    async fn kill(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        c.kill(id);
        self.injected(format!("kill {role}"), format!("SIGKILL member {id}, restart after {hold:?}"));
        tokio::time::sleep(hold).await;
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id}: {e}"));
        }
    }

    /// A member restarted on a disk whose every fsync takes 20-200 ms
    /// (warden.fsyncDelayMs), then restarted on a normal one.
    async fn slow_disk(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        let delay = 20 + self.rng.below(181);
        c.kill(id);
        c.member_mut(id).fsync_delay_ms = delay;
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id} on a slow disk: {e}"));
        }
        self.injected(format!("slow-disk {role}"), format!("member {id} fsyncs take {delay} ms for {hold:?}"));
        tokio::time::sleep(hold).await;
        c.kill(id);
        c.member_mut(id).fsync_delay_ms = 0;
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id} on a normal disk: {e}"));
        }
    }

    async fn pause(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        c.pause(id);
        self.injected(format!("pause {role}"), format!("SIGSTOP member {id}, SIGCONT after {hold:?}"));
        tokio::time::sleep(hold).await;
        c.resume(id);
    }

    async fn partition(&mut self, c: &mut Cluster, hold: Duration) {
        let mode = if self.rng.chance(2, 3) { LinkState::Blackhole } else { LinkState::Reset };
        let mode_name = if mode == LinkState::Blackhole { "blackhole" } else { "reset" };
        let mut ids = c.ids();
        shuffle(&mut self.rng, &mut ids);
        let shape = self.rng.below(3);
        let leader = c.leader().await;
        let (label, detail) = match (shape, leader) {
            (0, Some(l)) => {
                let rest: Vec<Id> = c.ids().into_iter().filter(|i| *i != l).collect();
                c.partition(&[l], &rest, mode);
                ("isolate-leader", format!("{l} | {rest:?}"))
            }
            (1, _) => {
                // Bridge: two halves that only the middle member reaches.
                let half = (ids.len() - 1) / 2;
                let (a, rest) = ids.split_at(half);
                let (mid, b) = rest.split_at(1);
                c.partition(a, b, mode);
                ("bridge", format!("{a:?} | {b:?}, bridged by {}", mid[0]))
            }
            _ => {
                let minority = ids.len() / 2;
                let (a, b) = ids.split_at(minority);
                c.partition(a, b, mode);
                ("split", format!("minority {a:?} | majority {b:?}"))
            }
        };
        self.injected(format!("partition {label} {mode_name}"), format!("{detail} for {hold:?}"));
        tokio::time::sleep(hold).await;
        c.heal_links();
    }

    async fn wipe(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        c.kill(id);
        let dir = c.member(id).data_dir();
        let _ = std::fs::remove_dir_all(&dir);
        self.injected(format!("wipe {role}"), format!("SIGKILL member {id}, deleted {}, restart after {hold:?} (rejoins by SNAP)", dir.display()));
        tokio::time::sleep(hold).await;
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id}: {e}"));
        }
    }

    async fn corrupt(&mut self, c: &mut Cluster) {
        let (id, role) = self.target(c).await;
        c.kill(id);
        let flipped = flip_log_byte(&c.member(id).data_dir(), &mut self.rng);
        let (file, offset) = match flipped {
            Ok(f) => f,
            Err(why) => {
                self.log(format!("corrupt skipped on member {id}: {why}; restarting it"));
                if let Err(e) = c.spawn(id) {
                    self.anomaly(format!("restart of member {id}: {e}"));
                }
                return;
            }
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        self.injected(format!("corrupt {role}"), format!("SIGKILL member {id}, flipped byte {offset} of {}", file.display()));
        let log_before = std::fs::metadata(c.member(id).log_path()).map(|m| m.len()).unwrap_or(0);
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id}: {e}"));
            return;
        }
        // It must refuse to start, naming the damaged file.
        let end = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = c.exited(id) {
                break Some(st);
            }
            if Instant::now() >= end {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let text = std::fs::read(c.member(id).log_path()).unwrap_or_default();
        let new_output = String::from_utf8_lossy(&text[(log_before as usize).min(text.len())..]).into_owned();
        match status {
            Some(st) if !st.success() && new_output.contains(&name) => {
                let line = new_output.lines().find(|l| l.contains(&name)).unwrap_or("").to_string();
                self.log(format!("member {id} refused to start ({st}): {}", line.trim()));
            }
            Some(st) => self.anomaly(format!("member {id} exited ({st}) on a corrupt log without naming {name}:\n{new_output}")),
            None => {
                let mode = c.mode(id).await;
                self.anomaly(format!("member {id} started on a corrupt log ({name} byte {offset}), mode {mode:?}:\n{new_output}"));
                c.kill(id);
            }
        }
        // The operator's remedy: delete its data; it rejoins by SNAP.
        let _ = std::fs::remove_dir_all(c.member(id).data_dir());
        self.log(format!("member {id}: data dir deleted, restarting to rejoin by SNAP"));
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id}: {e}"));
        }
    }
}

/// Everything back: links open, paused members continued, dead ones
/// started. Returns the members that had exited by themselves (a crash or a
/// fail-stop: always a finding, the nemesis only kills with SIGKILL and
/// reaps at once).
pub fn heal_all(c: &mut Cluster) -> Vec<String> {
    c.heal_links();
    let mut crashed = Vec::new();
    for id in c.ids() {
        if c.member(id).stopped {
            c.resume(id);
        }
        if let Some(st) = c.exited(id) {
            crashed.push(format!("member {id} exited by itself ({st}); log tail:\n{}", c.log_tail(id, 12)));
        }
        if !c.is_running(id) {
            let _ = c.spawn(id);
        }
    }
    crashed
}

fn shuffle(rng: &mut Rng, v: &mut [Id]) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Flips one byte inside a record of the newest log segment that is not its
/// last record (damage in the last record, followed only by zeros, reads as a
/// torn write and is cut off by design). Falls back to an older segment when
/// the newest has fewer than two records. Returns the file and offset.
pub fn flip_log_byte(data_dir: &std::path::Path, rng: &mut Rng) -> Result<(std::path::PathBuf, usize), String> {
    use warden_core::txnlog::{parse_name, LOG_PREFIX, MAGIC};
    let dir = data_dir.join("version-2");
    let mut segs: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_name(&e.file_name().to_string_lossy(), LOG_PREFIX).map(|z| (z, e.path())))
        .collect();
    segs.sort();
    for (i, (_, path)) in segs.iter().enumerate().rev() {
        let mut bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let records: Vec<(usize, usize)> =
            warden_core::record::Records::new(&bytes, MAGIC.len()).map_while(|r| r.ok()).map(|(off, p)| (off, p.len())).collect();
        let newest = i == segs.len() - 1;
        let usable = if newest { records.len().saturating_sub(1) } else { records.len() };
        if usable == 0 {
            continue;
        }
        let (off, len) = records[rng.below(usable as u64) as usize];
        let at = off + warden_core::record::HEADER_BYTES + rng.below(len as u64) as usize;
        bytes[at] ^= 1 << rng.below(8);
        std::fs::write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok((path.clone(), at));
    }
    Err(format!("no log segment under {} with a record to damage", dir.display()))
}
