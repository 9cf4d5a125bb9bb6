//! A tiny synchronous ensemble for scenario unit tests: lossless FIFO
//! delivery, disks that complete when the network is quiet, scripted
//! partitions and crashes. The randomized simulator lives in tests/zab_sim.rs.

use super::{Command, Config, Durable, EpochKind, Message, Peer, PeerState, ServerId, Zxid};
use crate::txn::{LogEntry, Txn, TxnHeader};
use std::collections::{BTreeSet, VecDeque};

#[derive(Default, Clone)]
struct Disk {
    accepted: u32,
    current: u32,
    snap: Vec<LogEntry>,
    log: Vec<LogEntry>,
}

enum DiskOp {
    Append(Vec<LogEntry>),
    Truncate(Zxid),
    Install(Vec<LogEntry>),
}

pub struct Net {
    n: u64,
    window: usize,
    peers: Vec<Option<Peer>>,
    disks: Vec<Disk>,
    disk_ops: Vec<VecDeque<DiskOp>>,
    dbs: Vec<Vec<LogEntry>>,
    /// Read indexes answered, by (server, read id), and reads refused.
    pub reads_ready: std::collections::BTreeMap<(ServerId, u64), Zxid>,
    pub reads_refused: std::collections::BTreeSet<(ServerId, u64)>,
    /// A snapshot stream being received, per server.
    receiving: Vec<Option<Vec<u8>>>,
    queue: VecDeque<(ServerId, ServerId, Message)>,
    down: BTreeSet<(ServerId, ServerId)>,
    now: u64,
    pub sent_trunc: bool,
    pub sent_snap: bool,
    /// Read-index heartbeats sent (a round's, to each learner).
    pub heartbeats: u64,
}

impl Net {
    pub fn new(n: u64) -> Net {
        Net::with_window(n, 100)
    }

    pub fn with_window(n: u64, window: usize) -> Net {
        let mut net = Net {
            n,
            window,
            peers: (0..n).map(|_| None).collect(),
            disks: vec![Disk::default(); n as usize],
            disk_ops: (0..n).map(|_| VecDeque::new()).collect(),
            dbs: vec![Vec::new(); n as usize],
            receiving: vec![None; n as usize],
            reads_ready: Default::default(),
            reads_refused: Default::default(),
            queue: VecDeque::new(),
            down: BTreeSet::new(),
            now: 0,
            sent_trunc: false,
            sent_snap: false,
            heartbeats: 0,
        };
        for id in 1..=n {
            net.restart(id);
        }
        net
    }

    fn cfg(&self, id: ServerId) -> Config {
        let mut c = Config::new(id, 1..=self.n, []);
        c.tick_ms = 10;
        c.finalize_wait_ms = 10;
        c.notify_min_ms = 20;
        c.notify_max_ms = 200;
        c.diff_window = self.window;
        c
    }

    pub fn peer(&self, id: ServerId) -> &Peer {
        self.peers[id as usize - 1].as_ref().expect("alive")
    }

    pub fn applied(&self, id: ServerId) -> Vec<Zxid> {
        self.dbs[id as usize - 1].iter().map(|e| e.hdr.zxid).collect()
    }

    /// The serving leader, if exactly one live server is one.
    pub fn leader(&self) -> Option<ServerId> {
        let leaders: Vec<ServerId> = self.peers.iter().flatten().filter(|p| p.state() == PeerState::Leading && p.is_serving()).map(|p| p.id()).collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    pub fn serving_count(&self) -> usize {
        self.peers.iter().flatten().filter(|p| p.is_serving()).count()
    }

    fn up(&self, a: ServerId, b: ServerId) -> bool {
        !self.down.contains(&(a.min(b), a.max(b))) && self.peers[a as usize - 1].is_some() && self.peers[b as usize - 1].is_some()
    }

    pub fn write(&mut self, cxid: i32) {
        let id = self.leader().expect("a serving leader");
        let hdr = TxnHeader { session_id: 1, cxid, zxid: 0, time_ms: 0 };
        let (_, out) = self.peers[id as usize - 1].as_mut().unwrap().propose(hdr, Txn::Error { code: cxid }).expect("accepted");
        self.exec(id, out);
    }

    pub fn read_index(&mut self, id: ServerId, read: u64) {
        self.event(id, |p| p.read_index(read));
    }

    /// Drops the messages queued between `a` and `b` and keeps the link: what
    /// a link that died and was replaced before either side noticed loses.
    pub fn drop_between(&mut self, a: ServerId, b: ServerId) {
        self.queue.retain(|(f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
    }

    fn event(&mut self, id: ServerId, f: impl FnOnce(&mut Peer) -> Vec<Command>) {
        if let Some(p) = self.peers[id as usize - 1].as_mut() {
            let out = f(p);
            self.exec(id, out);
        }
    }

    pub fn partition(&mut self, a: ServerId, b: ServerId) {
        self.down.insert((a.min(b), a.max(b)));
        self.drop_between(a, b);
        self.event(a, |p| p.on_disconnected(b));
        self.event(b, |p| p.on_disconnected(a));
    }

    pub fn heal(&mut self, a: ServerId, b: ServerId) {
        self.down.remove(&(a.min(b), a.max(b)));
        if self.up(a, b) {
            self.event(a, |p| p.on_connected(b));
            self.event(b, |p| p.on_connected(a));
        }
    }

    pub fn crash(&mut self, id: ServerId) {
        self.peers[id as usize - 1] = None;
        self.disk_ops[id as usize - 1].clear();
        self.receiving[id as usize - 1] = None;
        for other in 1..=self.n {
            if other != id {
                self.drop_between(id, other);
                self.event(other, |p| p.on_disconnected(id));
            }
        }
    }

    pub fn restart(&mut self, id: ServerId) {
        let i = id as usize - 1;
        let d = self.disks[i].clone();
        let snapshot_zxid = d.snap.last().map_or(0, |e| e.hdr.zxid);
        self.dbs[i] = d.snap.clone();
        let mut p = Peer::new(self.cfg(id), Durable { accepted_epoch: d.accepted, current_epoch: d.current, snapshot_zxid, log: d.log });
        let out = p.start(self.now);
        self.peers[i] = Some(p);
        self.exec(id, out);
        for other in 1..=self.n {
            if other != id && self.up(id, other) {
                self.event(other, |p| p.on_connected(id));
            }
        }
    }

    fn send(&mut self, from: ServerId, to: ServerId, msg: Message) {
        if self.up(from, to) {
            self.sent_trunc |= matches!(msg, Message::Trunc { .. });
            self.heartbeats += matches!(msg, Message::Heartbeat { .. }) as u64;
            self.queue.push_back((from, to, msg));
        }
    }

    fn exec(&mut self, id: ServerId, cmds: Vec<Command>) {
        let i = id as usize - 1;
        for c in cmds {
            match c {
                Command::Send { to, msg } => self.send(id, to, msg),
                Command::Broadcast { to, msg } => to.into_iter().for_each(|t| self.send(id, t, msg.clone())),
                Command::CloseLink { peer } => {
                    self.drop_between(id, peer);
                    self.event(peer, |p| p.on_disconnected(id));
                }
                Command::PersistEpoch { kind: EpochKind::Accepted, epoch } => self.disks[i].accepted = epoch,
                Command::PersistEpoch { kind: EpochKind::Current, epoch } => self.disks[i].current = epoch,
                Command::AppendLog { entries } => self.disk_ops[i].push_back(DiskOp::Append(entries)),
                Command::TruncateLog { to_zxid } => self.disk_ops[i].push_back(DiskOp::Truncate(to_zxid)),
                Command::BeginSnapshot { .. } => self.receiving[i] = Some(Vec::new()),
                Command::SnapshotChunk { data } => self.receiving[i].as_mut().expect("a snapshot begun").extend(data),
                Command::InstallSnapshot { bytes, crc, .. } => {
                    let data = self.receiving[i].take().expect("a snapshot begun");
                    assert_eq!((data.len() as u64, crc32c::crc32c(&data)), (bytes, crc), "the stream arrived whole");
                    let image: Vec<LogEntry> = rmp_serde::from_slice(&data).unwrap();
                    self.dbs[i] = image.clone();
                    self.disk_ops[i].push_back(DiskOp::Install(image));
                }
                Command::SendSnapshot { to, zxid } => {
                    assert_eq!(self.dbs[i].last().map_or(0, |e| e.hdr.zxid), zxid);
                    self.sent_snap = true;
                    let data = rmp_serde::to_vec(&self.dbs[i]).unwrap();
                    // Streamed in three pieces, as the runtime streams in bounded ones.
                    self.send(id, to, Message::SnapStart { zxid });
                    let piece = data.len() / 3 + 1;
                    for chunk in data.chunks(piece) {
                        self.send(id, to, Message::SnapChunk { data: chunk.to_vec() });
                    }
                    let (bytes, crc) = (data.len() as u64, crc32c::crc32c(&data));
                    self.send(id, to, Message::SnapEnd { bytes, crc, fuzzy_until: zxid });
                }
                Command::Apply { entries } => self.dbs[i].extend(entries),
                Command::ReadReady { id: read, zxid } => {
                    self.reads_ready.insert((id, read), zxid);
                }
                Command::ReadRefused { id: read } => {
                    self.reads_refused.insert((id, read));
                }
                Command::Fatal { reason } => panic!("server {id}: {reason}"),
                _ => {}
            }
        }
    }

    /// Delivers messages and completes disk writes until nothing is left.
    fn quiesce(&mut self) {
        loop {
            if let Some((from, to, msg)) = self.queue.pop_front() {
                self.event(to, |p| p.on_message(from, msg));
                continue;
            }
            let Some(i) = (0..self.n as usize).find(|i| !self.disk_ops[*i].is_empty()) else { return };
            let op = self.disk_ops[i].pop_front().unwrap();
            let disk = &mut self.disks[i];
            let zxid = match op {
                DiskOp::Append(entries) => {
                    disk.log.extend(entries);
                    disk.log.last().unwrap().hdr.zxid
                }
                DiskOp::Truncate(to) => {
                    disk.log.retain(|e| e.hdr.zxid <= to);
                    to
                }
                DiskOp::Install(image) => {
                    let z = image.last().map_or(0, |e| e.hdr.zxid);
                    disk.snap = image;
                    disk.log.clear();
                    z
                }
            };
            self.event(i as ServerId + 1, |p| p.on_persisted(zxid));
        }
    }

    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.quiesce();
            self.now += 5;
            let now = self.now;
            for id in 1..=self.n {
                self.event(id, |p| p.on_tick(now));
            }
        }
        self.quiesce();
    }

    pub fn run_until(&mut self, done: impl Fn(&Net) -> bool, max_ms: u64) {
        let end = self.now + max_ms;
        while !done(self) {
            assert!(self.now < end, "condition not reached in {max_ms} ms");
            self.run_for(5);
        }
    }

    pub fn settle(&mut self) {
        self.run_for(100);
    }
}
