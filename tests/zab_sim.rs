//! Deterministic simulation of a Zab ensemble (TigerBeetle's VOPR, small).
//!
//! Each seed runs the pure `Peer` state machines of 3 or 5 voters (some
//! runs add an observer) on a simulated network and disk: per-link FIFO
//! delivery with random delays, link drops (in-flight messages lost, both
//! sides told) and heals, crashes (volatile state lost, un-fsynced disk
//! writes partly lost) and restarts, runtime snapshots that purge the log,
//! and clients writing to whoever leads. After every event it checks:
//!
//! * Leadership: at most one leader establishes itself in each epoch.
//! * PrefixConsistency: every server's applied sequence is a prefix of one
//!   global committed history, zxids strictly increasing.
//! * Integrity: nothing is applied anywhere before a leader committed it.
//! * Durability: every committed entry (everything a leader applied, i.e.
//!   reported to a client) is on the disks of a quorum of voters, so no
//!   later election can lose it; and no TRUNC from the leader of epoch e
//!   removes an entry committed in an epoch <= e.
//! * No `Command::Fatal`, no panic in the core.
//!
//! Then faults stop, everything heals, and the ensemble must elect a
//! leader, bring every server up to date and commit a final write.
//!
//! A failure prints its seed and the command that replays it
//! (`ZAB_SIM_SEED=<seed>`, plus `ZAB_SIM_TRACE=1` to print every event);
//! `ZAB_SIM_SEEDS=<n>` and `ZAB_SIM_STEPS=<n>` make longer soaks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use warden_core::txn::{LogEntry, Txn, TxnHeader};
use warden_core::zab::{zxid, Command, Config, Durable, Epoch, EpochKind, Message, Peer, PeerState, ServerId, Zxid};

/// xorshift64*: tiny, deterministic, good enough for scheduling.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// One committed transaction as the simulator sees it: zxid + client write id.
type Item = (Zxid, u64);

/// Marks an item as a reconfig; the low bits are its voters (bit i = server i).
const RECONFIG: u64 = 1 << 63;

fn item(e: &LogEntry) -> Item {
    match &e.txn {
        Txn::SetData { data: Some(d), .. } => (e.hdr.zxid, u64::from_le_bytes(d[..8].try_into().unwrap())),
        t @ Txn::Reconfig { .. } => {
            let (voters, _) = warden_core::zab::reconfig_members(t).expect("a reconfig parses");
            (e.hdr.zxid, RECONFIG | voters.iter().fold(0, |m, id| m | 1 << id))
        }
        other => panic!("unexpected txn {other:?}"),
    }
}

fn voters_of(i: &Item) -> Option<BTreeSet<ServerId>> {
    (i.1 & RECONFIG != 0).then(|| (1..63).filter(|b| i.1 & (1 << b) != 0).collect())
}

fn config_text(voters: &BTreeSet<ServerId>, version: Zxid) -> Vec<u8> {
    let lines: String = voters.iter().map(|id| format!("server.{id}=127.0.0.1:{}:{}:participant\n", 10_000 + id, 20_000 + id)).collect();
    format!("{lines}version={version:x}").into_bytes()
}

/// As the preparer makes it: the text carries the zxid it will get.
fn reconfig_txn(voters: &BTreeSet<ServerId>, zxid: Zxid) -> Txn {
    Txn::Reconfig { data: config_text(voters, zxid) }
}

#[derive(Default, Clone)]
struct Disk {
    accepted: Epoch,
    current: Epoch,
    snap: Vec<Item>,
    log: Vec<LogEntry>,
}

enum DiskOp {
    Append(Vec<LogEntry>),
    /// `committed`: length of the committed history when the TRUNC arrived;
    /// `leader_epoch`: the epoch of the leader that sent it.
    Truncate {
        to: Zxid,
        committed: usize,
        leader_epoch: Epoch,
    },
    Install(Vec<Item>),
}

struct Node {
    peer: Option<Peer>,
    incarnation: u64,
    disk: Disk,
    pending: VecDeque<DiskOp>,
    disk_free_at: u64,
    /// The in-memory database: what was applied, in order.
    db: Vec<Item>,
    /// A streamed snapshot being received (lost with a crash).
    receiving: Option<Vec<u8>>,
    /// This leader term already established an epoch (for counting bumps).
    leading_established: bool,
    /// The epoch this server last established as leader.
    leading_epoch: Epoch,
    /// The committed config file the runtime writes when it applies a
    /// reconfig (zoo.cfg.dynamic): (version, voters). Survives crashes.
    config: Option<(Zxid, BTreeSet<ServerId>)>,
    /// Split mode: when the last hand-off between its halves arrives.
    hand_off_at: u64,
}

#[derive(Clone, Copy)]
struct Link {
    up: bool,
    gen: u64,
}

enum Ev {
    Deliver {
        from: ServerId,
        to: ServerId,
        gen: u64,
        msg: Message,
    },
    DiskDone {
        node: ServerId,
        incarnation: u64,
    },
    Tick {
        node: ServerId,
        incarnation: u64,
    },
    Client,
    Fault,
    Restart {
        node: ServerId,
    },
    Heal {
        a: ServerId,
        b: ServerId,
    },
    /// Split mode: a command from one half of a member to the other.
    HandOff {
        node: ServerId,
        incarnation: u64,
        cmd: Command,
    },
}

#[derive(Default, Debug, Clone)]
struct Stats {
    /// Why servers went back to election, and how often.
    step_downs: BTreeMap<&'static str, u64>,
    /// ACKEPOCHs from learners that had already accepted that epoch.
    repeat_epoch_acks: u64,
    steps: u64,
    leaders: u64,
    commits: u64,
    crashes: u64,
    partitions: u64,
    truncs: u64,
    snaps: u64,
    bumps: u64,
    reconfigs: u64,
    sim_ms: u64,
}

struct Sim {
    seed: u64,
    trace: bool,
    rng: Rng,
    weather: Weather,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    voters: u64,
    observers: u64,
    /// Servers outside the starting config that reconfigs add and remove.
    spares: u64,
    n: u64,
    nodes: Vec<Node>,
    /// Canonical (low, high) pair → link state.
    links: BTreeMap<(ServerId, ServerId), Link>,
    /// Per direction: time the last scheduled delivery lands (FIFO).
    link_busy_until: BTreeMap<(ServerId, ServerId), u64>,
    /// The global committed history every applied sequence must prefix.
    history: Vec<Item>,
    /// For each history entry, the epoch of the leader that committed it.
    history_epochs: Vec<Epoch>,
    /// Epoch → the leader that established it.
    established: BTreeMap<Epoch, ServerId>,
    next_write: u64,
    faults: bool,
    clients: bool,
    /// Odd seeds run each member as two halves (elector and replica) whose
    /// hand-offs arrive later, FIFO, as between the runtime's two actors.
    split: bool,
    stats: Stats,
}

const TICK_MS: u64 = 20;

/// Per-seed weather, so seeds differ in kind and not only in order.
struct Weather {
    slow_message_percent: u64,
    disk_ms_max: u64,
    fault_gap_ms_max: u64,
    client_gap_ms_max: u64,
}

impl Weather {
    fn pick(rng: &mut Rng) -> Weather {
        Weather {
            slow_message_percent: [2, 10, 30][rng.range(0, 2) as usize],
            disk_ms_max: [2, 6, 15][rng.range(0, 2) as usize],
            fault_gap_ms_max: [60, 120, 400][rng.range(0, 2) as usize],
            client_gap_ms_max: [4, 12, 40][rng.range(0, 2) as usize],
        }
    }
}

impl Sim {
    fn new(seed: u64, voters: u64, observers: u64, spares: u64) -> Sim {
        let n = voters + observers + spares;
        let mut links = BTreeMap::new();
        for a in 1..=n {
            for b in a + 1..=n {
                links.insert((a, b), Link { up: true, gen: 0 });
            }
        }
        let nodes = (0..n)
            .map(|_| Node {
                peer: None,
                incarnation: 0,
                disk: Disk::default(),
                pending: VecDeque::new(),
                disk_free_at: 0,
                db: Vec::new(),
                receiving: None,
                leading_established: false,
                leading_epoch: 0,
                config: None,
                hand_off_at: 0,
            })
            .collect();
        let mut rng = Rng::new(seed);
        let weather = Weather::pick(&mut rng);
        let mut sim = Sim {
            seed,
            trace: std::env::var("ZAB_SIM_TRACE").is_ok(),
            rng,
            weather,
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            voters,
            observers,
            spares,
            n,
            nodes,
            links,
            link_busy_until: BTreeMap::new(),
            history: Vec::new(),
            history_epochs: Vec::new(),
            established: BTreeMap::new(),
            next_write: 1,
            faults: true,
            clients: true,
            split: seed % 2 == 1,
            stats: Stats::default(),
        };
        for id in 1..=n {
            sim.restart(id);
        }
        sim.schedule(1, Ev::Client);
        sim.schedule(50, Ev::Fault);
        sim
    }

    /// The committed config a server starts with, as the runtime finds it:
    /// the newer of its config file and its snapshot's last reconfig.
    fn starting_config(&self, id: ServerId) -> (Zxid, BTreeSet<ServerId>) {
        let node = &self.nodes[id as usize - 1];
        let in_snap = node.disk.snap.iter().rev().find_map(|i| voters_of(i).map(|v| (i.0, v)));
        node.config.clone().into_iter().chain(in_snap).max_by_key(|(z, _)| *z).unwrap_or_else(|| (0, (1..=self.voters).collect()))
    }

    fn cfg(&self, id: ServerId) -> Config {
        let (version, voters) = self.starting_config(id);
        let observers: Vec<ServerId> = if version == 0 { (self.voters + 1..=self.voters + self.observers).collect() } else { Vec::new() };
        let mut c = Config::new(id, voters.clone(), observers);
        c.config_version = version;
        if version > 0 {
            c.config_data = config_text(&voters, version);
        }
        c.allow_joiners = self.spares > 0;
        c.tick_ms = TICK_MS;
        c.init_limit_ticks = 10;
        c.sync_limit_ticks = 5;
        c.finalize_wait_ms = 10;
        c.notify_min_ms = 20;
        c.notify_max_ms = 160;
        c.diff_window = 8;
        c.max_outstanding = 30;
        c.counter_limit = 25;
        c
    }

    fn schedule(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    fn node(&mut self, id: ServerId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn alive(&self, id: ServerId) -> bool {
        self.nodes[id as usize - 1].peer.is_some()
    }

    fn link(&mut self, a: ServerId, b: ServerId) -> &mut Link {
        self.links.get_mut(&(a.min(b), a.max(b))).expect("link")
    }

    fn fail(&self, what: String) -> ! {
        panic!("seed {}: t={}ms: {what}", self.seed, self.now);
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>6} {}", self.now, what());
        }
    }

    // ---- inputs to a peer -------------------------------------------------

    fn with_peer(&mut self, id: ServerId, f: impl FnOnce(&mut Peer) -> Vec<Command>) {
        let Some(peer) = self.node(id).peer.as_mut() else { return };
        let out = f(peer);
        self.exec(id, out);
    }

    fn exec(&mut self, id: ServerId, cmds: Vec<Command>) {
        for c in cmds {
            self.log(|| format!("  {id} -> {}", brief(&c)));
            if self.split && Peer::is_hand_off(&c) {
                // Between the election and broadcast actors: FIFO, a little later.
                let (now, delay) = (self.now, self.rng.range(0, 3));
                let node = self.node(id);
                node.hand_off_at = node.hand_off_at.max(now) + delay;
                let (at, incarnation) = (node.hand_off_at, node.incarnation);
                self.seq += 1;
                self.events.insert((at, self.seq), Ev::HandOff { node: id, incarnation, cmd: c.clone() });
            }
            match c {
                Command::Send { to, msg } => self.send(id, to, msg),
                Command::Broadcast { to, msg } => to.into_iter().for_each(|t| self.send(id, t, msg.clone())),
                Command::CloseLink { peer } => self.close_link(id, peer),
                Command::PersistEpoch { kind: EpochKind::Accepted, epoch } => self.node(id).disk.accepted = epoch,
                Command::PersistEpoch { kind: EpochKind::Current, epoch } => self.node(id).disk.current = epoch,
                Command::AppendLog { entries } => self.disk_op(id, DiskOp::Append(entries)),
                Command::TruncateLog { to_zxid } => {
                    let leader_epoch = self.node(id).peer.as_ref().expect("alive").store().accepted_epoch;
                    let committed = self.history.len();
                    self.disk_op(id, DiskOp::Truncate { to: to_zxid, committed, leader_epoch });
                }
                Command::BeginSnapshot { .. } => self.node(id).receiving = Some(Vec::new()),
                Command::SnapshotChunk { data } => match self.node(id).receiving.as_mut() {
                    Some(r) => r.extend(data),
                    None => self.fail(format!("server {id} got a snapshot chunk outside a stream")),
                },
                Command::InstallSnapshot { zxid, bytes, crc, .. } => {
                    let data = self.node(id).receiving.take().unwrap_or_default();
                    if (data.len() as u64, crc32c::crc32c(&data)) != (bytes, crc) {
                        self.fail(format!("server {id} installs a snapshot stream that did not arrive whole"));
                    }
                    let image: Vec<Item> = rmp_serde::from_slice(&data).unwrap();
                    if image.last().map_or(0, |i| i.0) != zxid || !self.is_history_prefix(&image) {
                        self.fail(format!("server {id} installs a snapshot that is not committed history"));
                    }
                    self.node(id).db = image.clone();
                    let config = image.iter().rev().find_map(|i| voters_of(i).map(|v| (i.0, v)));
                    self.disk_op(id, DiskOp::Install(image));
                    if let Some((version, voters)) = config {
                        // The runtime: the leader's tree may hold a config not seen committed here.
                        self.node(id).config = Some((version, voters.clone()));
                        self.with_peer(id, |p| p.set_membership(&config_text(&voters, version)));
                    }
                }
                Command::SendSnapshot { to, zxid } => {
                    let db = &self.node(id).db;
                    if db.last().map_or(0, |i| i.0) != zxid {
                        self.fail(format!("server {id} asked to snapshot at {zxid:#x}, database is elsewhere"));
                    }
                    let data = rmp_serde::to_vec(db).unwrap();
                    self.stats.snaps += 1;
                    // Streamed in pieces (faults may fall between them).
                    self.send(id, to, Message::SnapStart { zxid });
                    let pieces = self.rng.range(1, 4) as usize;
                    for chunk in data.chunks(data.len() / pieces + 1) {
                        self.send(id, to, Message::SnapChunk { data: chunk.to_vec() });
                    }
                    let (bytes, crc) = (data.len() as u64, crc32c::crc32c(&data));
                    self.send(id, to, Message::SnapEnd { bytes, crc, fuzzy_until: zxid });
                }
                Command::Apply { entries } => self.apply(id, entries),
                Command::Serving { leader, epoch } if leader == id => {
                    if let Some(other) = self.established.insert(epoch, id).filter(|o| *o != id) {
                        self.fail(format!("epoch {epoch} established by both {other} and {id}"));
                    }
                    self.node(id).leading_epoch = epoch;
                    // A second epoch in the same term is an epoch bump, not an election.
                    if std::mem::replace(&mut self.node(id).leading_established, true) {
                        self.stats.bumps += 1;
                    } else {
                        self.stats.leaders += 1;
                    }
                }
                Command::BecomeLeader => self.node(id).leading_established = false,
                Command::LookForLeader { reason } => {
                    self.node(id).leading_established = false;
                    *self.stats.step_downs.entry(reason).or_insert(0) += 1
                }
                Command::Fatal { reason } => self.fail(format!("server {id} fatal: {reason}")),
                Command::ConfigAdopted { data } => {
                    let (voters, _, version) = warden_core::zab::config_members(&data).expect("a config parses");
                    self.node(id).config = Some((version, voters));
                }
                _ => {}
            }
        }
    }

    fn send(&mut self, from: ServerId, to: ServerId, msg: Message) {
        let link = *self.link(from, to);
        if !link.up || !self.alive(to) {
            return;
        }
        match msg {
            Message::Trunc { .. } => self.stats.truncs += 1,
            Message::AckEpoch { current_epoch: None, .. } => self.stats.repeat_epoch_acks += 1,
            _ => {}
        }
        let delay = if self.rng.percent(self.weather.slow_message_percent) { self.rng.range(5, 30) } else { self.rng.range(1, 4) };
        let busy = self.link_busy_until.entry((from, to)).or_insert(0);
        let at = (self.now + delay).max(*busy);
        *busy = at;
        self.seq += 1;
        self.events.insert((at, self.seq), Ev::Deliver { from, to, gen: link.gen, msg });
    }

    /// A TCP reset: in-flight messages both ways are lost, the peer is told;
    /// the runtime reconnects at once.
    fn close_link(&mut self, from: ServerId, peer: ServerId) {
        if !self.link(from, peer).up {
            return;
        }
        self.link(from, peer).gen += 1;
        self.with_peer(peer, |p| p.on_disconnected(from));
    }

    /// Disk writes complete in issue order, each some ms after the previous.
    fn disk_op(&mut self, id: ServerId, op: DiskOp) {
        let delay = self.rng.range(1, self.weather.disk_ms_max);
        let now = self.now;
        let node = self.node(id);
        node.pending.push_back(op);
        node.disk_free_at = node.disk_free_at.max(now) + delay;
        let (at, incarnation) = (node.disk_free_at, node.incarnation);
        self.seq += 1;
        self.events.insert((at, self.seq), Ev::DiskDone { node: id, incarnation });
    }

    /// Makes the oldest pending disk operation durable; returns the zxid the
    /// log ends at afterwards.
    fn complete_disk_op(&mut self, id: ServerId) -> Zxid {
        let op = self.node(id).pending.pop_front().expect("pending op");
        match op {
            DiskOp::Append(entries) => {
                let disk = &mut self.node(id).disk;
                disk.log.extend(entries);
                disk.log.last().unwrap().hdr.zxid
            }
            DiskOp::Truncate { to, committed, leader_epoch } => {
                // A leader's history holds everything committed before its
                // epoch, so its TRUNC never cuts such an entry. Entries
                // committed later, by a higher epoch, may be missing from a
                // would-be leader that will never establish; cutting them
                // from a learner that did not promise that higher epoch is
                // harmless (the durability check watches the quorum).
                let cut: Vec<Item> = self.node(id).disk.log.iter().filter(|e| e.hdr.zxid > to).map(item).collect();
                for i in cut {
                    if let Ok(at) = self.history[..committed].binary_search(&i) {
                        if self.history_epochs[at] <= leader_epoch {
                            self.fail(format!("server {id} truncated {:#x}, committed in epoch {} <= {leader_epoch}", i.0, self.history_epochs[at]));
                        }
                    }
                }
                self.node(id).disk.log.retain(|e| e.hdr.zxid <= to);
                to
            }
            DiskOp::Install(image) => {
                let disk = &mut self.node(id).disk;
                let z = image.last().map_or(0, |i| i.0);
                disk.snap = image;
                disk.log.clear();
                z
            }
        }
    }

    fn apply(&mut self, id: ServerId, entries: Vec<LogEntry>) {
        // Where this batch of commands stands (a reconfig that removes the
        // leader makes it step down later in the same batch).
        let leading = self.nodes[id as usize - 1].leading_established;
        let epoch = self.nodes[id as usize - 1].leading_epoch;
        for e in &entries {
            let it = item(e);
            let db = &self.nodes[id as usize - 1].db;
            if db.last().is_some_and(|last| last.0 >= it.0) {
                self.fail(format!("server {id} applied {:#x} after {:#x}", it.0, db.last().unwrap().0));
            }
            let at = db.len();
            match self.history.get(at) {
                Some(h) if *h != it => self.fail(format!("server {id} applied {:?} at {at}, history has {:?} (prefix consistency)", it, h)),
                Some(_) => {}
                None if leading => {
                    self.history.push(it);
                    self.history_epochs.push(epoch);
                    self.stats.commits += 1;
                }
                None => self.fail(format!("server {id} applied {:#x}, which no leader committed (integrity)", it.0)),
            }
            self.node(id).db.push(it);
            if let Some(v) = voters_of(&it) {
                // The runtime writes the committed config when it applies a reconfig.
                self.node(id).config = Some((it.0, v));
            }
        }
        self.check_durability();
    }

    fn is_history_prefix(&self, items: &[Item]) -> bool {
        items.len() <= self.history.len() && self.history[..items.len()] == *items
    }

    /// Length of the committed history durably on `id`'s disk.
    fn durable_prefix(&self, id: ServerId) -> usize {
        let disk = &self.nodes[id as usize - 1].disk;
        if !self.is_history_prefix(&disk.snap) {
            self.fail(format!("server {id}'s snapshot is not committed history"));
        }
        let mut len = disk.snap.len();
        let from = disk.snap.last().map_or(0, |i| i.0);
        for e in disk.log.iter().filter(|e| e.hdr.zxid > from) {
            if self.history.get(len) != Some(&item(e)) {
                break;
            }
            len += 1;
        }
        len
    }

    /// Every committed entry is on a quorum of voters' disks.
    /// (A reconfig is committed only with a quorum of its new voters, whose
    /// ACKs are cumulative: the latest committed config's voters are the ones.)
    fn check_durability(&self) {
        let needed = self.history.len();
        let voters: BTreeSet<ServerId> = self.history.iter().rev().find_map(voters_of).unwrap_or_else(|| (1..=self.voters).collect());
        let holding = voters.iter().filter(|id| self.durable_prefix(**id) >= needed).count();
        if holding * 2 <= voters.len() {
            self.fail(format!("committed history of {needed} entries is durable on only {holding} of voters {voters:?}"));
        }
    }

    // ---- faults -----------------------------------------------------------

    fn crash(&mut self, id: ServerId) {
        self.log(|| format!("CRASH {id}"));
        self.stats.crashes += 1;
        // Some of the writes in flight reached the disk, the rest did not.
        let pending = self.node(id).pending.len() as u64;
        let survive = self.rng.range(0, pending);
        for _ in 0..survive {
            self.complete_disk_op(id);
        }
        let node = self.node(id);
        node.peer = None;
        node.incarnation += 1;
        node.pending.clear();
        node.db.clear();
        node.receiving = None;
        for other in 1..=self.n {
            if other != id && self.link(id, other).up {
                self.link(id, other).gen += 1;
                self.with_peer(other, |p| p.on_disconnected(id));
            }
        }
        self.check_durability();
    }

    fn restart(&mut self, id: ServerId) {
        self.log(|| format!("RESTART {id}"));
        let cfg = self.cfg(id);
        let node = self.node(id);
        let d = node.disk.clone();
        node.db = d.snap.clone();
        let snapshot_zxid = d.snap.last().map_or(0, |i| i.0);
        let mut peer = Peer::new(cfg, Durable { accepted_epoch: d.accepted, current_epoch: d.current, snapshot_zxid, log: d.log });
        if self.split {
            peer = peer.with_deferred_hand_off();
        }
        let now = self.now;
        let out = peer.start(now);
        self.node(id).peer = Some(peer);
        self.exec(id, out);
        let inc = self.node(id).incarnation;
        let first_tick = self.rng.range(1, 10);
        self.schedule(first_tick, Ev::Tick { node: id, incarnation: inc });
        for other in 1..=self.n {
            if other != id && self.link(id, other).up && self.alive(other) {
                self.with_peer(other, |p| p.on_connected(id));
                self.with_peer(id, |p| p.on_connected(other));
            }
        }
    }

    fn partition(&mut self, a: ServerId, b: ServerId) {
        if !self.link(a, b).up {
            return;
        }
        self.log(|| format!("PARTITION {a}-{b}"));
        self.stats.partitions += 1;
        let l = self.link(a, b);
        l.up = false;
        l.gen += 1;
        self.with_peer(a, |p| p.on_disconnected(b));
        self.with_peer(b, |p| p.on_disconnected(a));
    }

    fn heal(&mut self, a: ServerId, b: ServerId) {
        if self.link(a, b).up {
            return;
        }
        self.log(|| format!("HEAL {a}-{b}"));
        self.link(a, b).up = true;
        if self.alive(a) && self.alive(b) {
            self.with_peer(a, |p| p.on_connected(b));
            self.with_peer(b, |p| p.on_connected(a));
        }
    }

    /// The runtime writes a snapshot of its database and purges the log.
    fn snapshot(&mut self, id: ServerId) {
        let node = self.node(id);
        if node.peer.is_none() || !node.pending.is_empty() {
            return;
        }
        let last = node.db.last().map_or(0, |i| i.0);
        node.disk.snap = node.db.clone();
        node.disk.log.retain(|e| e.hdr.zxid > last);
    }

    fn fault(&mut self) {
        let id = self.rng.range(1, self.n);
        match self.rng.range(0, 9) {
            0..=2 if self.alive(id) => {
                self.crash(id);
                let after = self.rng.range(30, 600);
                self.schedule(after, Ev::Restart { node: id });
            }
            3..=6 => {
                let other = self.rng.range(1, self.n);
                if other != id {
                    self.partition(id, other);
                    let after = self.rng.range(20, 400);
                    self.schedule(after, Ev::Heal { a: id, b: other });
                }
            }
            _ => self.snapshot(id),
        }
    }

    fn client_write(&mut self) {
        let leaders: Vec<ServerId> =
            (1..=self.n).filter(|id| self.nodes[*id as usize - 1].peer.as_ref().is_some_and(|p| p.state() == PeerState::Leading && p.is_serving())).collect();
        if leaders.is_empty() {
            return;
        }
        let id = leaders[self.rng.range(0, leaders.len() as u64 - 1) as usize];
        if self.spares > 0 && self.rng.percent(4) {
            return self.client_reconfig(id);
        }
        let w = self.next_write;
        let hdr = TxnHeader { session_id: 1, cxid: w as i32, zxid: 0, time_ms: self.now as i64 };
        let txn = Txn::SetData { path: "/k".into(), data: Some(w.to_le_bytes().to_vec()), version: -1 };
        let result = self.node(id).peer.as_mut().unwrap().propose(hdr, txn);
        if let Ok((z, out)) = result {
            self.log(|| format!("WRITE {w} at {id} as {z:#x}"));
            self.next_write += 1;
            self.exec(id, out);
        }
    }

    /// A reconfig to a random voter set, when the preparer would let it
    /// through: none in progress, a quorum of the new voters synced.
    fn client_reconfig(&mut self, leader: ServerId) {
        let size = self.rng.range(3, self.n.min(5));
        let mut voters = BTreeSet::new();
        while (voters.len() as u64) < size {
            voters.insert(self.rng.range(1, self.n));
        }
        let peer = self.node(leader).peer.as_ref().unwrap();
        let store = peer.store();
        if store.entries_after(store.committed()).any(|e| matches!(e.txn, Txn::Reconfig { .. })) {
            return;
        }
        let synced: BTreeSet<ServerId> = peer.learners().into_iter().filter(|l| l.2).map(|l| l.0).chain([leader]).collect();
        if voters.intersection(&synced).count() * 2 <= voters.len() {
            return;
        }
        let Ok(next) = peer.next_zxid() else { return };
        let hdr = TxnHeader { session_id: 1, cxid: 0, zxid: 0, time_ms: self.now as i64 };
        if let Ok((z, out)) = self.node(leader).peer.as_mut().unwrap().propose(hdr, reconfig_txn(&voters, next)) {
            self.log(|| format!("RECONFIG to {voters:?} at {leader} as {z:#x}"));
            self.stats.reconfigs += 1;
            self.exec(leader, out);
        }
    }

    // ---- the loop ---------------------------------------------------------

    fn step(&mut self) -> bool {
        let Some(((at, _), ev)) = self.events.pop_first() else { return false };
        self.now = at;
        self.stats.steps += 1;
        match ev {
            Ev::Deliver { from, to, gen, msg } => {
                if self.link(from, to).gen == gen {
                    self.log(|| format!("{from} => {to}: {}", brief_msg(&msg)));
                    self.with_peer(to, |p| p.on_message(from, msg));
                }
            }
            Ev::DiskDone { node, incarnation } => {
                if self.node(node).incarnation == incarnation {
                    let z = self.complete_disk_op(node);
                    self.log(|| format!("{node} persisted {z:#x}"));
                    self.with_peer(node, |p| p.on_persisted(z));
                    self.check_durability();
                }
            }
            Ev::Tick { node, incarnation } => {
                if self.node(node).incarnation == incarnation && self.alive(node) {
                    let now = self.now;
                    self.with_peer(node, |p| p.on_tick(now));
                    let next = self.rng.range(8, 12);
                    self.schedule(next, Ev::Tick { node, incarnation });
                }
            }
            Ev::Client => {
                if self.clients {
                    self.client_write();
                    let next = self.rng.range(1, self.weather.client_gap_ms_max);
                    self.schedule(next, Ev::Client);
                }
            }
            Ev::Fault => {
                if self.faults {
                    self.fault();
                    let next = self.rng.range(10, self.weather.fault_gap_ms_max);
                    self.schedule(next, Ev::Fault);
                }
            }
            Ev::Restart { node } => {
                if !self.alive(node) {
                    self.restart(node);
                }
            }
            Ev::Heal { a, b } => self.heal(a, b),
            Ev::HandOff { node, incarnation, cmd } => {
                if self.node(node).incarnation == incarnation {
                    self.with_peer(node, |p| p.hand_off(cmd));
                }
            }
        }
        true
    }

    /// Faults stop and everything heals; the ensemble must converge and commit.
    fn heal_and_converge(&mut self) {
        self.faults = false;
        self.clients = false;
        for a in 1..=self.n {
            for b in a + 1..=self.n {
                self.heal(a, b);
            }
        }
        for id in 1..=self.n {
            if !self.alive(id) {
                self.restart(id);
            }
        }
        let deadline = self.now + 20_000;
        // (write id, when issued): a write accepted by a leader that then
        // lost its quorum is legitimately lost, so the client retries.
        let mut final_write: Option<(u64, u64)> = None;
        loop {
            if self.now > deadline {
                let states: Vec<String> =
                    self.nodes.iter().map(|n| n.peer.as_ref().map_or("down".into(), |p| format!("{:?}/{}", p.state(), p.is_serving()))).collect();
                self.fail(format!("no convergence 20 s after healing: {states:?}, final write {final_write:?}"));
            }
            let serving = self.nodes.iter().all(|n| n.peer.as_ref().is_some_and(|p| p.is_serving()));
            let retry = final_write.is_some_and(|(w, at)| self.now > at + 1000 && !self.history.iter().any(|i| i.1 == w));
            if serving && (final_write.is_none() || retry) {
                let before = self.next_write;
                self.client_write();
                if self.next_write > before {
                    final_write = Some((before, self.now));
                }
            }
            if let Some((w, _)) = final_write {
                let done = self.history.iter().any(|i| i.1 == w) && self.nodes.iter().all(|n| n.db.len() == self.history.len());
                if done {
                    return;
                }
            }
            if !self.step() {
                self.fail("event queue ran dry".into());
            }
        }
    }
}

fn brief_msg(m: &Message) -> String {
    match m {
        Message::Proposal(e) => format!("Proposal({:#x})", e.hdr.zxid),
        Message::Snap { zxid, data } => format!("Snap({zxid:#x}, {} bytes)", data.len()),
        other => format!("{other:?}"),
    }
}

fn brief(c: &Command) -> String {
    match c {
        Command::Send { to, msg } => format!("Send({to}, {})", brief_msg(msg)),
        Command::Broadcast { to, msg } => format!("Broadcast({to:?}, {})", brief_msg(msg)),
        Command::AppendLog { entries } => format!("AppendLog({:#x}..={:#x})", entries[0].hdr.zxid, entries.last().unwrap().hdr.zxid),
        Command::Apply { entries } => format!("Apply({:?})", entries.iter().map(|e| zxid::counter_of(e.hdr.zxid)).collect::<Vec<_>>()),
        Command::InstallSnapshot { zxid, .. } => format!("InstallSnapshot({zxid:#x})"),
        other => format!("{other:?}"),
    }
}

fn run_seed(seed: u64, voters: u64, observers: u64, spares: u64, steps: u64) -> Stats {
    let mut sim = Sim::new(seed, voters, observers, spares);
    while sim.stats.steps < steps {
        sim.step();
    }
    sim.heal_and_converge();
    sim.stats.sim_ms = sim.now;
    sim.stats.clone()
}

/// Runs `seeds` seeds (or just $ZAB_SIM_SEED), reporting the failing seed.
/// Runs `seeds` seeds of one configuration, reporting the failing seed.
/// Environment: ZAB_SIM_SEED=<s> replays only seed s (pick the configuration
/// with the test name filter); ZAB_SIM_SEEDS=<n> runs n fresh seeds (a soak,
/// starting far from the default range); ZAB_SIM_STEPS=<n> lengthens runs.
fn run_many(test: &str, first_seed: u64, seeds: u64, voters: u64, observers: u64, steps: u64) {
    run_many_with_spares(test, first_seed, seeds, voters, observers, 0, steps)
}

fn run_many_with_spares(test: &str, first_seed: u64, seeds: u64, voters: u64, observers: u64, spares: u64, steps: u64) {
    let env = |name: &str| std::env::var(name).ok().map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name} is a number")));
    let steps = env("ZAB_SIM_STEPS").unwrap_or(steps);
    let list: Vec<u64> = match (env("ZAB_SIM_SEED"), env("ZAB_SIM_SEEDS")) {
        (Some(seed), _) => vec![seed],
        (None, Some(n)) => (first_seed * 1_000_000..first_seed * 1_000_000 + n).collect(),
        (None, None) => (first_seed..first_seed + seeds).collect(),
    };
    let started = std::time::Instant::now();
    let mut total = Stats::default();
    for seed in list.iter().copied() {
        let stats = match catch_unwind(AssertUnwindSafe(|| run_seed(seed, voters, observers, spares, steps))) {
            Ok(s) => s,
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                panic!("{test}: seed {seed} failed: {msg}\n  replay: ZAB_SIM_SEED={seed} ZAB_SIM_STEPS={steps} ZAB_SIM_TRACE=1 cargo test -p warden-core --test zab_sim {test}");
            }
        };
        total.steps += stats.steps;
        total.leaders += stats.leaders;
        total.commits += stats.commits;
        total.crashes += stats.crashes;
        total.partitions += stats.partitions;
        total.truncs += stats.truncs;
        total.snaps += stats.snaps;
        total.bumps += stats.bumps;
        total.reconfigs += stats.reconfigs;
        total.sim_ms += stats.sim_ms;
        total.repeat_epoch_acks += stats.repeat_epoch_acks;
        for (k, v) in stats.step_downs {
            *total.step_downs.entry(k).or_insert(0) += v;
        }
    }
    eprintln!("{test}: {} seeds in {:?}: {total:?}", list.len(), started.elapsed());
}

#[test]
fn zab_sim_three_voters() {
    run_many("zab_sim_three_voters", 1, 1000, 3, 0, 4000);
}

#[test]
fn zab_sim_five_voters() {
    run_many("zab_sim_five_voters", 2, 1000, 5, 0, 4000);
}

#[test]
fn zab_sim_three_voters_one_observer() {
    run_many("zab_sim_three_voters_one_observer", 3, 500, 3, 1, 4000);
}

/// Reconfigs among 5 servers, 3 of them voters at first: random voter sets
/// of 3 to 5 (a removed leader steps down, joiners sync as non-voting
/// learners first), proposed as the preparer allows, under the same faults.
#[test]
fn zab_sim_reconfig() {
    run_many_with_spares("zab_sim_reconfig", 4, 500, 3, 0, 2, 4000);
}
