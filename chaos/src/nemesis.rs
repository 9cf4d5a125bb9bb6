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
    OneWay,
    Loss,
    Rate,
    Netem,
    LinkDown,
    Move,
    Clock,
}

impl Kind {
    pub fn parse(s: &str, netns: bool) -> Result<Kind, String> {
        let net_only = ["one-way", "loss", "rate", "netem", "link-down", "move", "clock"];
        if net_only.contains(&s) && !netns {
            return Err(format!("fault {s:?} needs --netns (members in their own network namespaces)"));
        }
        Ok(match s {
            "one-way" => Kind::OneWay,
            "loss" => Kind::Loss,
            "rate" => Kind::Rate,
            "netem" => Kind::Netem,
            "link-down" => Kind::LinkDown,
            "move" => Kind::Move,
            "clock" => Kind::Clock,
            "kill" => Kind::Kill,
            "pause" => Kind::Pause,
            "partition" => Kind::Partition,
            "wipe" => Kind::Wipe,
            "corrupt" => Kind::Corrupt,
            "slow-disk" => Kind::SlowDisk,
            _ => return Err(format!("unknown fault {s:?} (kill, pause, partition, wipe, corrupt, slow-disk; with --netns: {})", net_only.join(", "))),
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
    pub resources: crate::soak::Resources,
    /// Sample members' resources this often (between faults); None: never.
    pub sample_every: Option<Duration>,
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
        let mut next_sample = Instant::now();
        while Instant::now() < until {
            if self.sample_every.is_some() && Instant::now() >= next_sample {
                next_sample += self.sample_every.unwrap();
                self.sample(c).await;
            }
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
                Kind::OneWay => self.one_way(c, hold).await,
                Kind::Loss => self.loss(c, hold).await,
                Kind::Rate => self.rate(c, hold).await,
                Kind::Netem => self.netem(c, hold).await,
                Kind::LinkDown => self.link_down(c, hold).await,
                Kind::Move => self.move_member(c).await,
                Kind::Clock => self.clock(c, hold).await,
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

    pub async fn sample(&mut self, c: &Cluster) {
        for line in self.resources.sample(c).await {
            self.log(format!("resources {line}"));
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
    for id in c.ids() {
        if c.member(id).faketime.is_some() {
            c.kill(id);
            c.member_mut(id).faketime = None;
        }
    }
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

impl Nemesis {
    /// A session on member `skewed` goes silent; its ephemeral must vanish
    /// within ZooKeeper's window for the leader's clock rate.
    async fn expiry_probe(&mut self, c: &Cluster, skewed: Id, skew_rate: f64) {
        let Ok(leader) = c.wait_leader(SERVE_AGAIN).await else { return };
        let rate = if leader == skewed { skew_rate } else { 1.0 };
        let others: Vec<Id> = c.ids().into_iter().filter(|i| *i != skewed).collect();
        let path = format!("{}/expiry-{skewed}-{}", crate::workload::EPH, self.start.elapsed().as_millis());
        let r = crate::expiry::probe(c.client_addr(skewed), &c.connect_string(&others), &path).await;
        let still = c.leader().await;
        match r {
            Ok((t, took)) => {
                let (lo, hi) = crate::expiry::window(t, c.tick_ms(), rate);
                let text = format!(
                    "session on member {skewed} (leader {leader}, clock rate {rate}) with timeout {t} ms expired after {took:?}, window [{lo:?}, {hi:?}]"
                );
                if still != Some(leader) {
                    self.log(format!("expiry inconclusive, leader changed to {still:?}: {text}"));
                } else if took < lo || took > hi {
                    self.anomaly(format!("session expiry out of bounds: {text}"));
                } else {
                    self.log(format!("expiry ok: {text}"));
                }
            }
            Err(e) if still != Some(leader) => self.log(format!("expiry probe inconclusive (leader changed): {e}")),
            Err(e) => self.anomaly(format!("session expiry probe on member {skewed}: {e}")),
        }
    }

    /// Holds a network fault; a quarter of the time a member is also killed
    /// or paused in the middle of it (combined faults).
    async fn hold_net(&mut self, c: &mut Cluster, hold: Duration) {
        if !self.rng.chance(1, 4) {
            tokio::time::sleep(hold).await;
            return;
        }
        tokio::time::sleep(hold / 3).await;
        let (id, role) = self.target(c).await;
        if self.rng.chance(1, 2) {
            c.kill(id);
            self.injected(format!("combined kill {role}"), format!("SIGKILL member {id} during the network fault"));
            tokio::time::sleep(hold / 3).await;
            if let Err(e) = c.spawn(id) {
                self.anomaly(format!("restart of member {id}: {e}"));
            }
        } else {
            c.pause(id);
            self.injected(format!("combined pause {role}"), format!("SIGSTOP member {id} during the network fault"));
            tokio::time::sleep(hold / 3).await;
            c.resume(id);
        }
        tokio::time::sleep(hold / 3).await;
    }

    /// Packets one way only: shapes "isolate" (one member hears nobody or
    /// nobody hears it), "ring" (each member hears only its successor: no one
    /// has a majority of two-way links in a 3-ring, ZooKeeper must still elect
    /// at most one leader) and "bridge" one-way.
    async fn one_way(&mut self, c: &mut Cluster, hold: Duration) {
        let mut ids = c.ids();
        shuffle(&mut self.rng, &mut ids);
        let reset = self.rng.chance(1, 4);
        let net = c.net.as_mut().expect("netns");
        let (label, detail) = match self.rng.below(3) {
            0 => {
                let (x, rest) = (ids[0], &ids[1..]);
                if self.rng.chance(1, 2) {
                    rest.iter().for_each(|o| net.cut(*o, x, reset));
                    ("one-way deaf", format!("member {x} hears nobody, all hear it"))
                } else {
                    rest.iter().for_each(|o| net.cut(x, *o, reset));
                    ("one-way mute", format!("nobody hears member {x}, it hears all"))
                }
            }
            1 => {
                // Member i hears only i+1 (mod n): every other direction to i is dropped.
                for (i, to) in ids.iter().enumerate() {
                    let succ = ids[(i + 1) % ids.len()];
                    ids.iter().filter(|f| **f != *to && **f != succ).for_each(|f| net.cut(*f, *to, reset));
                }
                ("majority-ring", format!("ring {ids:?}: each member hears only the next"))
            }
            _ => {
                let half = (ids.len() - 1) / 2;
                let (a, rest) = ids.split_at(half.max(1));
                let (mid, b) = rest.split_at(1);
                // a cannot hear b, b hears a; both hear the middle.
                b.iter().for_each(|y| a.iter().for_each(|x| net.cut(*y, *x, reset)));
                ("one-way bridge", format!("{a:?} deaf to {b:?} (not vice versa), {} hears and is heard by all", mid[0]))
            }
        };
        let detail = format!("{detail} ({}) for {hold:?}; {}", if reset { "tcp reset" } else { "drop" }, net.describe());
        c.apply_net();
        self.injected(format!("partition {label}"), detail);
        self.hold_net(c, hold).await;
        c.heal_links();
    }

    /// Random loss of 1-30 % of packets arriving at one member, or at all.
    async fn loss(&mut self, c: &mut Cluster, hold: Duration) {
        let percent = 1 + self.rng.below(30) as u32;
        let all = self.rng.chance(1, 3);
        let (id, role) = self.target(c).await;
        let ids = if all { c.ids() } else { vec![id] };
        let net = c.net.as_mut().expect("netns");
        ids.iter().for_each(|i| net.set_loss(*i, percent));
        c.apply_net();
        self.injected(format!("loss {}", if all { "all" } else { role }), format!("{percent}% of packets into {ids:?} dropped (nft numgen) for {hold:?}"));
        self.hold_net(c, hold * 2).await;
        c.heal_links();
    }

    /// A member's egress limited to 64 kbit/s - 2 mbit/s (tbf).
    async fn rate(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        let kbit = [64, 256, 1024, 2048][self.rng.below(4) as usize];
        let rate = format!("{kbit}kbit");
        let r = c.net.as_ref().expect("netns").qdisc(id, &["tbf", "rate", &rate, "burst", "16kb", "latency", "500ms"]);
        match r {
            Ok(()) => self.injected(format!("rate {role}"), format!("member {id} egress limited to {rate} for {hold:?}")),
            Err(e) => self.anomaly(format!("tbf on member {id}: {e}")),
        }
        self.hold_net(c, hold * 2).await;
        c.heal_links();
    }

    /// Delay with jitter, duplication, reordering or corruption on one
    /// member's egress (tc netem). Without sch_netem: duplication (nft dup)
    /// or reordering (an htb slow lane); delay and corruption need netem.
    async fn netem(&mut self, c: &mut Cluster, hold: Duration) {
        if !c.net.as_ref().expect("netns").netem {
            return self.dup_or_reorder(c, hold).await;
        }
        let (id, role) = self.target(c).await;
        let (label, spec): (&str, Vec<String>) = match self.rng.below(4) {
            0 => {
                let d = self.rng.range(5, 200);
                ("delay", vec!["delay".into(), format!("{d}ms"), format!("{}ms", d / 2), "distribution".into(), "normal".into()])
            }
            1 => ("duplicate", vec!["duplicate".into(), format!("{}%", self.rng.range(1, 30))]),
            2 => ("reorder", vec!["delay".into(), "20ms".into(), "reorder".into(), format!("{}%", self.rng.range(10, 50)), "50%".into()]),
            _ => ("corrupt", vec!["corrupt".into(), format!("{}%", self.rng.range(1, 10))]),
        };
        let mut args = vec!["netem"];
        args.extend(spec.iter().map(String::as_str));
        match c.net.as_ref().unwrap().qdisc(id, &args) {
            Ok(()) => self.injected(format!("netem {label} {role}"), format!("member {id} egress: {} for {hold:?}", args.join(" "))),
            Err(e) => self.anomaly(format!("netem on member {id}: {e}")),
        }
        self.hold_net(c, hold * 2).await;
        c.heal_links();
    }

    async fn dup_or_reorder(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        let percent = self.rng.range(5, 40) as u32;
        let duplicate = self.rng.chance(1, 2);
        let net = c.net.as_mut().expect("netns");
        let (label, detail) = if duplicate {
            net.set_dup(id, percent);
            ("duplicate", format!("member {id} egress: {percent}% of packets sent twice (nft dup) for {hold:?}"))
        } else {
            if let Err(e) = net.set_reorder(id, percent) {
                return self.anomaly(format!("htb slow lane on member {id}: {e}"));
            }
            ("reorder", format!("member {id} egress: {percent}% of packets held in a 256 kbit lane (htb), behind later ones, for {hold:?}"))
        };
        c.apply_net();
        self.injected(format!("{label} {role}"), detail);
        self.hold_net(c, hold * 2).await;
        c.heal_links();
    }

    async fn link_down(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        match c.net.as_ref().expect("netns").link(id, false) {
            Ok(()) => self.injected(format!("link-down {role}"), format!("member {id}'s eth0 down for {hold:?}")),
            Err(e) => self.anomaly(format!("link down on member {id}: {e}")),
        }
        tokio::time::sleep(hold).await;
        c.heal_links();
    }

    /// A member moves to a new address (a pod rescheduled): it restarts
    /// there, then every other member is restarted one at a time with the
    /// new `server.N` line (the rolling restart ZooKeeper's operators do
    /// without dynamic reconfig), waiting for a quorum between restarts.
    async fn move_member(&mut self, c: &mut Cluster) {
        let (id, role) = self.target(c).await;
        c.kill(id);
        let old = c.host(id);
        let new = match c.net.as_mut().expect("netns").readdress(id) {
            Ok(a) => a,
            Err(e) => {
                self.anomaly(format!("readdress member {id}: {e}"));
                let _ = c.spawn(id);
                return;
            }
        };
        self.injected(format!("move {role}"), format!("member {id} {old} -> {new}, rolling restart of the others with the new server.{id}"));
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id}: {e}"));
        }
        *c.client_connect.write().unwrap() = c.connect_string(&c.ids());
        for other in c.ids().into_iter().filter(|o| *o != id) {
            if let Err(e) = c.wait_leader(SERVE_AGAIN).await {
                self.anomaly(format!("before restarting member {other} for the move: {e}"));
            }
            c.kill(other);
            if let Err(e) = c.spawn(other) {
                self.anomaly(format!("restart of member {other}: {e}"));
            }
            // As an operator does: the next restart only once this one serves again.
            let end = Instant::now() + SERVE_AGAIN;
            while c.mode(other).await.is_none() && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if c.mode(other).await.is_none() {
                self.anomaly(format!("member {other} not serving {SERVE_AGAIN:?} after its restart for the move of member {id}"));
            }
        }
    }

    /// A member restarted under libfaketime: its clocks (monotonic too) run
    /// at 1.5x or 0.5x, or its wall clock alone steps by +-1 h while it runs
    /// (an NTP step). Restarted with the real clock afterwards.
    async fn clock(&mut self, c: &mut Cluster, hold: Duration) {
        let (id, role) = self.target(c).await;
        let rc = c.member(id).dir.join("faketime.rc");
        let (label, start, jump, wall_only) = match self.rng.below(4) {
            0 => ("fast", "+0 x1.5", None, false),
            1 => ("slow", "+0 x0.5", None, false),
            2 => ("jump-forward", "+0", Some("+3600"), true),
            _ => ("jump-back", "+0", Some("-3600"), true),
        };
        if let Err(e) = std::fs::write(&rc, start) {
            self.anomaly(format!("{}: {e}", rc.display()));
            return;
        }
        c.kill(id);
        c.member_mut(id).faketime = Some((rc.clone(), wall_only));
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("start of member {id} under faketime: {e}"));
            c.member_mut(id).faketime = None;
            let _ = c.spawn(id);
            return;
        }
        self.injected(
            format!("clock {label} {role}"),
            format!(
                "member {id} under libfaketime {start:?}{} for {:?}",
                jump.map(|j| format!(", wall clock steps {j} s mid-way")).unwrap_or_default(),
                hold * 3
            ),
        );
        let mut serving = c.wait_serving(SERVE_AGAIN).await;
        if let (Ok(l), "leader") = (&serving, role) {
            if *l != id {
                // Its restart cost it the lead: restart the new leader once, so
                // the skewed member may win the election (skew on the leader's clock).
                let l = *l;
                c.kill(l);
                if let Err(e) = c.spawn(l) {
                    self.anomaly(format!("restart of member {l}: {e}"));
                }
                serving = c.wait_serving(SERVE_AGAIN).await;
                self.log(format!("member {l} restarted to hand the lead on: leader now {serving:?}"));
            }
        }
        if let Err(e) = serving {
            self.anomaly(format!("with member {id}'s clock {label}: {e}"));
        }
        if let Some(j) = jump {
            let _ = std::fs::write(&rc, j);
            // libfaketime rereads its file at most once a second.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let rate = match label {
            "fast" => 1.5,
            "slow" => 0.5,
            _ => 1.0,
        };
        self.expiry_probe(c, id, rate).await;
        self.hold_net(c, hold * 3).await;
        c.kill(id);
        c.member_mut(id).faketime = None;
        if let Err(e) = c.spawn(id) {
            self.anomaly(format!("restart of member {id} with the real clock: {e}"));
        }
    }
}
