//! The leader side (Leader.lead + LearnerHandler), for one term.
//!
//! A term runs *rounds*: the first one establishes the epoch (discovery:
//! FOLLOWERINFO from a quorum, epoch = max accepted + 1, LEADERINFO, quorum
//! of ACKEPOCH; sync: DIFF/TRUNC/SNAP + proposals + NEWLEADER to each
//! learner, quorum of NEWLEADER ACKs, UPTODATE). Later rounds are epoch
//! bumps when the zxid counter runs out (see the module docs of `zab`):
//! the same steps with the current followers, who need no sync data.
//! Between rounds the leader broadcasts: proposals go to every learner that
//! has been sent NEWLEADER, and a zxid commits once a quorum of voters
//! (the leader counting once its own disk has it) has logged it; commits
//! are cumulative so they are always in zxid order.

use super::read_index::{ReadRounds, Reader};
use super::{zxid, Command, Config, Epoch, EpochKind, Flow, Message, Quorum, ServerId, Store, SyncPlan, Zxid, PROTOCOL_VERSION};
use crate::txn::{LogEntry, Txn, TxnHeader};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// This server is not an established leader (yet).
    NotLeader,
    /// `max_outstanding` proposals are in flight; retry later.
    Busy,
    /// Epoch numbers themselves are exhausted (2^31 epochs).
    EpochExhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// FOLLOWERINFO received; LEADERINFO not yet sent (epoch undecided, or
    /// held back while an epoch bump runs).
    Info {
        accepted_epoch: Epoch,
    },
    EpochSent,
    EpochAcked {
        last_zxid: Zxid,
    },
    NewLeaderSent,
    /// ACKed NEWLEADER of a round that is not established yet.
    NewLeaderAcked,
    UpToDate,
}

#[derive(Debug)]
struct Learner {
    observer: bool,
    stage: Stage,
    /// Receives proposals and commits (set when NEWLEADER is sent).
    forwarding: bool,
    /// Has ACKed a NEWLEADER: counts when checking the leader still has a quorum.
    synced: bool,
    /// Everything up to here is durable on the learner.
    acked: Zxid,
    newleader: (Epoch, Zxid),
    last_heard_ms: u64,
}

#[derive(Debug)]
struct Round {
    epoch: Epoch,
    bump: bool,
    started_ms: u64,
    epoch_ackers: BTreeSet<ServerId>,
    newleader_sent: bool,
    history_end: Zxid,
    /// The leader's own NEWLEADER "ACK" needs its disk at this operation.
    history_seq: u64,
    self_acked: bool,
    newleader_ackers: BTreeSet<ServerId>,
}

#[derive(Debug)]
pub struct Leader {
    me: ServerId,
    quorum: Quorum,
    members: BTreeSet<ServerId>,
    /// reconfigEnabled: servers outside the config may sync as non-voting
    /// learners, so that a reconfig can then add them.
    allow_joiners: bool,
    /// A proposed, uncommitted reconfig: its zxid and the new voters. Every
    /// zxid from it on needs a quorum of both configs (ZooKeeper's
    /// qvAcksetPairs) until it commits and the new config is activated.
    pending: Vec<(Zxid, Quorum)>,
    /// The committed config's version: reconfigs up to it are not pending.
    config_version: Zxid,
    tick_ms: u64,
    init_limit_ticks: u64,
    sync_limit_ticks: u64,
    max_outstanding: usize,
    counter_limit: u32,
    /// The established epoch: None until the first round completes.
    epoch: Option<Epoch>,
    /// Accepted epochs from FOLLOWERINFO (and our own), until the epoch is chosen.
    info: BTreeMap<ServerId, Epoch>,
    round: Option<Round>,
    learners: BTreeMap<ServerId, Learner>,
    /// Writes accepted during an epoch bump, zxids of the new epoch.
    queued: VecDeque<LogEntry>,
    started_ms: u64,
    last_ping_ms: u64,
    now_ms: u64,
    /// Read-index rounds (linearizable reads).
    reads: ReadRounds,
}

/// The zxid a serving leader of `epoch` gives the write after `prev` (the
/// last it gave, or its last logged zxid when it began serving): the next
/// counter, or — once the counter reached `counter_limit` — the first of the
/// next epoch, which the leader then bumps to without an election. The
/// processor numbers writes with this while the broadcast actor proposes
/// them; `Leader::next_zxid` follows the same rule.
pub fn zxid_after(prev: Zxid, epoch: Epoch, counter_limit: u32) -> Zxid {
    let epoch = epoch.max(zxid::epoch_of(prev));
    if zxid::epoch_of(prev) != epoch {
        zxid::make(epoch, 1)
    } else if zxid::counter_of(prev) >= counter_limit {
        zxid::make(epoch + 1, 1)
    } else {
        prev + 1
    }
}

impl Leader {
    pub fn new(cfg: &Config) -> Leader {
        Leader {
            me: cfg.my_id,
            quorum: Quorum::new(cfg.voters.iter().copied()),
            members: cfg.members().collect(),
            allow_joiners: cfg.allow_joiners,
            pending: Vec::new(),
            config_version: cfg.config_version,
            tick_ms: cfg.tick_ms,
            init_limit_ticks: cfg.init_limit_ticks,
            sync_limit_ticks: cfg.sync_limit_ticks,
            max_outstanding: cfg.max_outstanding,
            counter_limit: cfg.counter_limit,
            epoch: None,
            info: BTreeMap::new(),
            round: None,
            learners: BTreeMap::new(),
            queued: VecDeque::new(),
            started_ms: 0,
            last_ping_ms: 0,
            now_ms: 0,
            reads: ReadRounds::default(),
        }
    }

    /// The established epoch, once a quorum has synced with this leader.
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    pub fn is_serving(&self) -> bool {
        self.epoch.is_some()
    }

    pub(crate) fn start(&mut self, store: &mut Store, now_ms: u64, out: &mut Vec<Command>) {
        self.started_ms = now_ms;
        self.last_ping_ms = now_ms;
        self.now_ms = now_ms;
        self.info.insert(self.me, store.accepted_epoch);
        // A reconfig the last leader proposed but did not commit binds us too.
        let version = self.config_version;
        self.pending =
            store.entries_after(store.committed()).filter(|e| e.hdr.zxid > version).filter_map(|e| reconfig_quorum(e).map(|q| (e.hdr.zxid, q))).collect();
        self.try_choose_epoch(store, out);
    }

    pub(crate) fn on_message(&mut self, store: &mut Store, from: ServerId, msg: Message, now_ms: u64, out: &mut Vec<Command>) -> Flow {
        self.now_ms = now_ms;
        if let Some(l) = self.learners.get_mut(&from) {
            l.last_heard_ms = now_ms;
        }
        match msg {
            Message::FollowerInfo { accepted_epoch, observer, .. } => self.on_follower_info(store, from, accepted_epoch, observer, out),
            Message::AckEpoch { current_epoch, last_zxid } => return self.on_ack_epoch(store, from, current_epoch, last_zxid, out),
            Message::Ack { zxid } => self.on_ack(store, from, zxid, out),
            Message::HeartbeatAck { round } if self.is_forwarding(from) => {
                self.reads.ack(from, round);
                self.finish_reads(out);
            }
            Message::ReadIndex { id } if self.is_forwarding(from) => self.read_index(store, Reader::Learner(from, id), out),
            _ => {}
        }
        Flow::Continue
    }

    fn is_forwarding(&self, id: ServerId) -> bool {
        self.learners.get(&id).is_some_and(|l| l.forwarding)
    }

    /// A read index for `reader` (`read_index.rs`): its commit index now,
    /// answered once a heartbeat round sent after this has a quorum.
    pub(crate) fn read_index(&mut self, store: &Store, reader: Reader, out: &mut Vec<Command>) {
        if self.epoch.is_none() {
            if let Reader::Local(id) = reader {
                out.push(Command::ReadRefused { id });
            }
            return;
        }
        if let Reader::Learner(from, id) = reader {
            // The request is itself an answer sent after its reads began, by
            // a voter still following this leader: when that voter and the
            // leader make a quorum (3 members), no round is needed.
            if self.is_quorum(None, [self.me, from]) {
                out.push(Command::Send { to: from, msg: Message::ReadIndexOk { id, zxid: store.committed() } });
                return;
            }
        }
        if let Some(round) = self.reads.ask(reader, store.committed(), self.me) {
            self.send_heartbeat(round, out);
        }
        self.finish_reads(out);
    }

    fn send_heartbeat(&self, round: u64, out: &mut Vec<Command>) {
        let to: Vec<ServerId> = self.learners.iter().filter(|(_, l)| l.forwarding).map(|(id, _)| *id).collect();
        if !to.is_empty() {
            out.push(Command::Broadcast { to, msg: Message::Heartbeat { round } });
        }
    }

    fn finish_reads(&mut self, out: &mut Vec<Command>) {
        let mut reads = std::mem::take(&mut self.reads);
        while let Some((done, next)) = reads.complete(|acks| self.is_quorum(None, acks.iter().copied()), self.me) {
            for (reader, zxid) in done {
                match reader {
                    Reader::Local(id) => out.push(Command::ReadReady { id, zxid }),
                    Reader::Learner(to, id) if self.learners.contains_key(&to) => out.push(Command::Send { to, msg: Message::ReadIndexOk { id, zxid } }),
                    Reader::Learner(..) => {}
                }
            }
            match next {
                Some(round) => self.send_heartbeat(round, out),
                None => break,
            }
        }
        self.reads = reads;
    }

    pub(crate) fn on_persisted(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        self.check_round(store, out);
        self.try_commit(store, out);
    }

    pub fn on_disconnected(&mut self, peer: ServerId) {
        // Sets of ACKs keep the peer: what it promised and logged stays promised and logged.
        self.learners.remove(&peer);
    }

    /// Pings learners; drops silent ones; steps down without a quorum.
    pub(crate) fn on_tick(&mut self, now_ms: u64, out: &mut Vec<Command>) -> Flow {
        self.now_ms = now_ms;
        if now_ms >= self.last_ping_ms + self.tick_ms {
            self.last_ping_ms = now_ms;
            let to: Vec<ServerId> = self.learners.iter().filter(|(_, l)| !matches!(l.stage, Stage::Info { .. })).map(|(id, _)| *id).collect();
            if !to.is_empty() {
                out.push(Command::Broadcast { to, msg: Message::Ping });
            }
            // A read round whose heartbeats were lost must not wait forever.
            if let Some(round) = self.reads.round_out() {
                self.send_heartbeat(round, out);
            }
        }
        let init_ms = self.init_limit_ticks * self.tick_ms;
        let sync_ms = self.sync_limit_ticks * self.tick_ms;
        if self.epoch.is_none() && now_ms > self.started_ms + init_ms {
            return Flow::StepDown("no quorum synced in initLimit");
        }
        if self.round.as_ref().is_some_and(|r| r.bump && now_ms > r.started_ms + init_ms) {
            return Flow::StepDown("epoch bump did not complete in initLimit");
        }
        let silent: Vec<ServerId> =
            self.learners.iter().filter(|(_, l)| now_ms > l.last_heard_ms + if l.synced { sync_ms } else { init_ms }).map(|(id, _)| *id).collect();
        for id in silent {
            self.drop_learner(id, out);
        }
        if self.epoch.is_some() {
            let live = self.learners.iter().filter(|(_, l)| l.synced && l.forwarding).map(|(id, _)| *id);
            if !self.is_quorum(None, live.chain([self.me])) {
                return Flow::StepDown("lost the quorum of synced followers");
            }
        }
        Flow::Continue
    }

    /// Leaving leadership: close every learner link so they re-elect at once.
    pub fn shutdown(&mut self, out: &mut Vec<Command>) {
        for reader in self.reads.abandon() {
            if let Reader::Local(id) = reader {
                out.push(Command::ReadRefused { id });
            }
        }
        for id in std::mem::take(&mut self.learners).into_keys() {
            out.push(Command::CloseLink { peer: id });
        }
    }

    /// Each learner: (id, observer, synced with this leader, durable up to).
    pub fn learners(&self) -> Vec<(ServerId, bool, bool, Zxid)> {
        self.learners.iter().map(|(id, l)| (*id, l.observer, l.synced, l.acked)).collect()
    }

    /// The zxid `propose` would give the next write, without proposing: the
    /// runtime prepares the transaction (checks against outstanding changes)
    /// under that zxid first.
    pub fn next_zxid(&self, store: &Store) -> Result<Zxid, ProposeError> {
        let Some(epoch) = self.epoch else { return Err(ProposeError::NotLeader) };
        if store.entries_after(store.committed()).count() + self.queued.len() >= self.max_outstanding {
            return Err(ProposeError::Busy);
        }
        let last = store.last_zxid();
        if let Some(r) = &self.round {
            return Ok(zxid::make(r.epoch, self.queued.len() as u32 + 1));
        }
        if zxid::epoch_of(last) == epoch && zxid::counter_of(last) >= self.counter_limit {
            if epoch >= i32::MAX as Epoch {
                return Err(ProposeError::EpochExhausted);
            }
            return Ok(zxid::make(epoch + 1, 1));
        }
        let counter = if zxid::epoch_of(last) == epoch { zxid::counter_of(last) } else { 0 };
        Ok(zxid::make(epoch, counter + 1))
    }

    /// Assigns the next zxid to a client write and proposes it. `hdr.zxid`
    /// is ignored. During an epoch bump the write is queued (with a zxid of
    /// the new epoch) and proposed once the bump completes.
    pub fn propose(&mut self, store: &mut Store, hdr: TxnHeader, txn: Txn, out: &mut Vec<Command>) -> Result<Zxid, ProposeError> {
        let Some(epoch) = self.epoch else { return Err(ProposeError::NotLeader) };
        if store.entries_after(store.committed()).count() + self.queued.len() >= self.max_outstanding {
            return Err(ProposeError::Busy);
        }
        let last = store.last_zxid();
        if self.round.is_none() && zxid::epoch_of(last) == epoch && zxid::counter_of(last) >= self.counter_limit {
            if epoch >= i32::MAX as Epoch {
                return Err(ProposeError::EpochExhausted);
            }
            // The counter is nearly exhausted: bump the epoch without an election.
            self.begin_round(store, epoch + 1, true, out);
        }
        if let Some(r) = &self.round {
            let z = zxid::make(r.epoch, self.queued.len() as u32 + 1);
            self.queued.push_back(LogEntry { hdr: TxnHeader { zxid: z, ..hdr }, txn });
            return Ok(z);
        }
        let epoch = self.epoch.expect("established");
        let last = store.last_zxid();
        let counter = if zxid::epoch_of(last) == epoch { zxid::counter_of(last) } else { 0 };
        let z = zxid::make(epoch, counter + 1);
        self.broadcast_proposal(store, LogEntry { hdr: TxnHeader { zxid: z, ..hdr }, txn }, out);
        Ok(z)
    }

    /// A quorum of the current config and, for zxids from a pending
    /// reconfig on (or any zxid when `z` is None), of the proposed one.
    fn is_quorum(&self, z: Option<Zxid>, ids: impl IntoIterator<Item = ServerId>) -> bool {
        let ids: BTreeSet<ServerId> = ids.into_iter().collect();
        let binding = self.pending.iter().filter(|(from, _)| z.is_none_or(|z| z >= *from));
        self.quorum.is_quorum(ids.iter().copied()) && binding.into_iter().all(|(_, q)| q.is_quorum(ids.iter().copied()))
    }

    /// A voter of the current config or of a pending one.
    fn is_quorum_member(&self, id: ServerId) -> bool {
        self.quorum.is_voter(id) || self.pending.iter().any(|(_, q)| q.is_voter(id))
    }

    /// The committed reconfig's config is now the ensemble's: learners it
    /// left out are dropped; a leader it leaves without a vote steps down.
    pub(crate) fn activate(&mut self, voters: &BTreeSet<ServerId>, observers: &BTreeSet<ServerId>, version: Zxid, out: &mut Vec<Command>) -> Flow {
        self.quorum = Quorum::new(voters.iter().copied());
        self.config_version = version;
        self.members = voters.union(observers).copied().collect();
        self.pending.retain(|(z, _)| *z > version);
        let ids: Vec<ServerId> = self.learners.keys().copied().collect();
        for id in ids {
            if self.members.contains(&id) || self.allow_joiners {
                let observer = !self.quorum.is_voter(id);
                self.learners.get_mut(&id).expect("learner").observer = observer;
            } else {
                self.drop_learner(id, out);
            }
        }
        if self.quorum.is_voter(self.me) {
            Flow::Continue
        } else {
            Flow::StepDown("a reconfig took this leader out of the voters")
        }
    }

    fn broadcast_proposal(&mut self, store: &mut Store, entry: LogEntry, out: &mut Vec<Command>) {
        // Here, not at `propose`: a reconfig queued during an epoch bump
        // binds from when it is proposed (the simulator found it committing
        // with the old quorum alone).
        if let Some(q) = reconfig_quorum(&entry) {
            self.pending.push((entry.hdr.zxid, q));
        }
        store.append(vec![entry.clone()], out);
        let to = self.forwarding();
        if !to.is_empty() {
            out.push(Command::Broadcast { to, msg: Message::Proposal(entry) });
        }
    }

    fn forwarding(&self) -> Vec<ServerId> {
        self.learners.iter().filter(|(_, l)| l.forwarding).map(|(id, _)| *id).collect()
    }

    fn on_follower_info(&mut self, store: &mut Store, from: ServerId, accepted_epoch: Epoch, observer: bool, out: &mut Vec<Command>) {
        if (!self.members.contains(&from) && !self.allow_joiners) || from == self.me {
            return;
        }
        // A FOLLOWERINFO always starts a fresh learner (it reconnected).
        let learner = Learner {
            observer: observer || !self.quorum.is_voter(from),
            stage: Stage::Info { accepted_epoch },
            forwarding: false,
            synced: false,
            acked: 0,
            newleader: (0, 0),
            last_heard_ms: self.now_ms,
        };
        self.learners.insert(from, learner);
        match (&self.round, self.epoch) {
            (None, None) => {
                // Non-voters' epochs are kept too; the quorum counts voters only.
                self.info.insert(from, accepted_epoch);
                self.try_choose_epoch(store, out);
            }
            (Some(r), _) if r.bump => {} // LEADERINFO once the bump is done
            (Some(r), _) => {
                let epoch = r.epoch;
                self.send_leader_info(from, epoch, out);
            }
            // It promised a later epoch to a would-be leader that never
            // established, and would refuse ours forever (ZooKeeper leaves it
            // out until the next election). Bump past it; it gets LEADERINFO
            // once the bump is done. (One that accepted our own epoch — it
            // followed us, or restarted — joins as ZooKeeper lets it: its
            // ACKEPOCH carries no current epoch, and no bump disturbs the
            // writes in flight.)
            (None, Some(epoch)) if accepted_epoch > epoch => {
                if accepted_epoch < i32::MAX as Epoch {
                    self.begin_round(store, accepted_epoch + 1, true, out);
                }
            }
            (None, Some(epoch)) => self.send_leader_info(from, epoch, out),
        }
    }

    fn send_leader_info(&mut self, to: ServerId, epoch: Epoch, out: &mut Vec<Command>) {
        out.push(Command::Send { to, msg: Message::LeaderInfo { version: PROTOCOL_VERSION, epoch } });
        self.learners.get_mut(&to).expect("known learner").stage = Stage::EpochSent;
    }

    fn try_choose_epoch(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        if self.epoch.is_none() && self.round.is_none() && self.is_quorum(None, self.info.keys().copied()) {
            let epoch = self.info.values().max().expect("quorum is not empty") + 1;
            self.begin_round(store, epoch, false, out);
        }
    }

    fn begin_round(&mut self, store: &mut Store, epoch: Epoch, bump: bool, out: &mut Vec<Command>) {
        store.set_epoch(EpochKind::Accepted, epoch, out);
        self.round = Some(Round {
            epoch,
            bump,
            started_ms: self.now_ms,
            epoch_ackers: BTreeSet::from([self.me]),
            newleader_sent: false,
            history_end: 0,
            history_seq: 0,
            self_acked: false,
            newleader_ackers: BTreeSet::new(),
        });
        let ids: Vec<ServerId> = self.learners.keys().copied().collect();
        for id in ids {
            match (self.learners[&id].stage, bump) {
                (Stage::Info { .. }, false) | (Stage::UpToDate, true) => self.send_leader_info(id, epoch, out),
                (Stage::Info { .. }, true) => {}
                // Mid-sync in the old epoch: let it reconnect rather than mix epochs.
                (_, true) => self.drop_learner(id, out),
                (_, false) => unreachable!("learners past Info before the first epoch"),
            }
        }
        self.check_round(store, out);
    }

    fn on_ack_epoch(&mut self, store: &mut Store, from: ServerId, current_epoch: Option<Epoch>, last_zxid: Zxid, out: &mut Vec<Command>) -> Flow {
        let Some(learner) = self.learners.get_mut(&from) else { return Flow::Continue };
        if learner.stage != Stage::EpochSent {
            return Flow::Continue;
        }
        learner.stage = Stage::EpochAcked { last_zxid };
        match &mut self.round {
            Some(r) if !r.newleader_sent => {
                // Only a voter's history can hold committed entries we lack;
                // a non-voter ahead is simply truncated.
                let voter = self.is_quorum_member(from);
                let Some(r) = &mut self.round else { unreachable!() };
                if let (false, Some(ce), true) = (r.bump, current_epoch, voter) {
                    if (ce, last_zxid) > (store.current_epoch, store.last_zxid()) {
                        return Flow::StepDown("a follower is ahead of the leader");
                    }
                }
                // An ACKEPOCH without current epoch had accepted it before: not a fresh promise.
                if current_epoch.is_some() {
                    r.epoch_ackers.insert(from);
                }
                self.check_round(store, out);
            }
            _ => self.send_newleader(store, from, last_zxid, out),
        }
        Flow::Continue
    }

    /// Sync data (unless bumping) then NEWLEADER, and start forwarding.
    fn send_newleader(&mut self, store: &Store, to: ServerId, learner_last: Zxid, out: &mut Vec<Command>) {
        let (epoch, zxid) = match &self.round {
            Some(r) if r.bump => (r.epoch, r.history_end),
            Some(r) => (r.epoch, self.send_sync(store, to, learner_last, out)),
            None => (self.epoch.expect("established"), self.send_sync(store, to, learner_last, out)),
        };
        out.push(Command::Send { to, msg: Message::NewLeader { epoch, zxid } });
        let l = self.learners.get_mut(&to).expect("known learner");
        l.stage = Stage::NewLeaderSent;
        l.forwarding = true;
        l.newleader = (epoch, zxid);
        if let Some(round) = self.reads.round_out() {
            out.push(Command::Send { to, msg: Message::Heartbeat { round } });
        }
    }

    /// DIFF, TRUNC or SNAP, the proposals after it and a commit; returns
    /// the zxid the learner's log ends at afterwards.
    fn send_sync(&self, store: &Store, to: ServerId, learner_last: Zxid, out: &mut Vec<Command>) -> Zxid {
        let from = match store.sync_plan(learner_last) {
            SyncPlan::Diff { from } => {
                out.push(Command::Send { to, msg: Message::Diff { zxid: from } });
                from
            }
            SyncPlan::Trunc { to: t } => {
                out.push(Command::Send { to, msg: Message::Trunc { zxid: t } });
                t
            }
            SyncPlan::Snap { zxid } => {
                out.push(Command::SendSnapshot { to, zxid });
                zxid
            }
        };
        for e in store.entries_after(from) {
            out.push(Command::Send { to, msg: Message::Proposal(e.clone()) });
        }
        // Always: the learner may hold committed entries it never applied
        // (its log already ended where ours does, so nothing else follows).
        out.push(Command::Send { to, msg: Message::Commit { zxid: store.committed() } });
        store.last_zxid()
    }

    fn on_ack(&mut self, store: &mut Store, from: ServerId, z: Zxid, out: &mut Vec<Command>) {
        let Some(l) = self.learners.get_mut(&from) else { return };
        if zxid::counter_of(z) != 0 {
            if l.forwarding && z > l.acked {
                l.acked = z;
                self.try_commit(store, out);
            }
            return;
        }
        // NEWLEADER ACK.
        if l.stage != Stage::NewLeaderSent || zxid::epoch_of(z) != l.newleader.0 {
            return;
        }
        l.synced = true;
        l.acked = l.acked.max(l.newleader.1);
        match &mut self.round {
            Some(r) if r.epoch == zxid::epoch_of(z) => {
                l.stage = Stage::NewLeaderAcked;
                r.newleader_ackers.insert(from);
                self.check_round(store, out);
            }
            _ => {
                l.stage = Stage::UpToDate;
                out.push(Command::Send { to: from, msg: Message::UpToDate });
                self.try_commit(store, out);
            }
        }
    }

    /// Advances the current round as far as the acknowledgements allow.
    fn check_round(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        let Some(r) = &self.round else { return };
        let epoch_quorum = !r.newleader_sent && self.is_quorum(None, r.epoch_ackers.iter().copied());
        let Some(r) = &mut self.round else { unreachable!() };
        if epoch_quorum {
            // The history is now fixed: no proposals until the round completes.
            r.newleader_sent = true;
            r.history_end = store.last_zxid();
            r.history_seq = store.issued_seq();
            let ready: Vec<(ServerId, Zxid)> =
                self.learners.iter().filter_map(|(id, l)| if let Stage::EpochAcked { last_zxid } = l.stage { Some((*id, last_zxid)) } else { None }).collect();
            for (id, last) in ready {
                self.send_newleader(store, id, last, out);
            }
        }
        let Some(r) = &mut self.round else { unreachable!() };
        if r.newleader_sent && !r.self_acked && store.durable_seq() >= r.history_seq {
            // Our own history is on disk: only now may our current epoch move.
            r.self_acked = true;
            r.newleader_ackers.insert(self.me);
            let epoch = r.epoch;
            store.set_epoch(EpochKind::Current, epoch, out);
        }
        let r = self.round.as_ref().expect("round");
        if r.self_acked && self.is_quorum(None, r.newleader_ackers.iter().copied()) && !self.bump_waits_for_stragglers() {
            self.finish_round(store, out);
        }
    }

    /// An epoch bump with its quorum may still wait half a tick for the
    /// learners that have not acknowledged it yet: one that has not even
    /// acknowledged the new epoch when the round finishes is reset (it
    /// would get new-epoch proposals before its NEWLEADER), and its clients
    /// lose their connection. Waiting longer is always safe; `on_tick`
    /// finishes the round once the wait is over.
    fn bump_waits_for_stragglers(&self) -> bool {
        let Some(r) = &self.round else { return false };
        let straggling = self.learners.values().any(|l| matches!(l.stage, Stage::EpochSent | Stage::EpochAcked { .. } | Stage::NewLeaderSent));
        r.bump && straggling && self.now_ms < r.started_ms + self.tick_ms / 2
    }

    /// From the replica's tick: a bump that waited for stragglers finishes.
    pub(crate) fn on_tick_round(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        if self.round.as_ref().is_some_and(|r| r.bump) {
            self.check_round(store, out);
        }
    }

    /// A quorum has our history durably in the new epoch: it is established.
    fn finish_round(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        let r = self.round.take().expect("round");
        self.epoch = Some(r.epoch);
        out.push(Command::Serving { leader: self.me, epoch: r.epoch });
        store.commit(r.history_end, out);
        // Every forwarding learner holds the history (FIFO: it came before NEWLEADER).
        let to = self.forwarding();
        if !to.is_empty() {
            out.push(Command::Broadcast { to, msg: Message::Commit { zxid: r.history_end } });
        }
        let ids: Vec<ServerId> = self.learners.keys().copied().collect();
        for id in ids {
            match self.learners[&id].stage {
                Stage::NewLeaderAcked => {
                    self.learners.get_mut(&id).expect("learner").stage = Stage::UpToDate;
                    out.push(Command::Send { to: id, msg: Message::UpToDate });
                }
                // Still in the old epoch while new-epoch proposals start: reconnect.
                Stage::EpochSent if r.bump => self.drop_learner(id, out),
                Stage::Info { .. } if r.bump => self.send_leader_info(id, r.epoch, out),
                _ => {}
            }
        }
        while let Some(entry) = self.queued.pop_front() {
            self.broadcast_proposal(store, entry, out);
        }
        self.try_commit(store, out);
    }

    /// Commits the longest run of proposals a quorum has logged.
    fn try_commit(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        if self.epoch.is_none() {
            return;
        }
        let mut commit = store.committed();
        for e in store.entries_after(store.committed()) {
            let z = e.hdr.zxid;
            let me = (store.durable_zxid() >= z).then_some(self.me);
            // Observers' ACKs too: the quorums count only their voters.
            let acked = self.learners.iter().filter(|(_, l)| l.forwarding && l.acked >= z).map(|(id, _)| *id);
            if !self.is_quorum(Some(z), acked.chain(me)) {
                break;
            }
            commit = z;
        }
        if commit > store.committed() {
            store.commit(commit, out);
            let to = self.forwarding();
            if !to.is_empty() {
                out.push(Command::Broadcast { to, msg: Message::Commit { zxid: commit } });
            }
        }
    }

    fn drop_learner(&mut self, id: ServerId, out: &mut Vec<Command>) {
        if self.learners.remove(&id).is_some() {
            out.push(Command::CloseLink { peer: id });
        }
    }
}

/// The new voters of a reconfig entry.
fn reconfig_quorum(e: &LogEntry) -> Option<Quorum> {
    reconfig_quorum_of(&e.txn)
}

fn reconfig_quorum_of(txn: &Txn) -> Option<Quorum> {
    let voters = super::reconfig_members(txn)?.0;
    (!voters.is_empty()).then(|| Quorum::new(voters))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zab::Durable;

    fn hdr() -> TxnHeader {
        TxnHeader { session_id: 1, cxid: 1, zxid: 0, time_ms: 0 }
    }

    fn setup(voters: u64) -> (Leader, Store) {
        let mut cfg = Config::new(1, 1..=voters, []);
        cfg.tick_ms = 10;
        (Leader::new(&cfg), Store::new(Durable { accepted_epoch: 3, current_epoch: 3, ..Default::default() }, 10))
    }

    fn drain_disk(store: &mut Store, out: &[Command]) {
        for c in out {
            match c {
                Command::AppendLog { entries } => store.persisted(entries.last().unwrap().hdr.zxid).unwrap(),
                Command::TruncateLog { to_zxid } => store.persisted(*to_zxid).unwrap(),
                _ => {}
            }
        }
    }

    /// Establishes epoch 4 with learners 2..=n all synced.
    fn establish(l: &mut Leader, store: &mut Store, n: u64) {
        let mut out = Vec::new();
        l.start(store, 0, &mut out);
        for id in 2..=n {
            l.on_message(store, id, Message::FollowerInfo { version: 1, accepted_epoch: 3, last_zxid: 0, observer: false }, 0, &mut out);
        }
        assert!(out.contains(&Command::PersistEpoch { kind: EpochKind::Accepted, epoch: 4 }), "max accepted + 1");
        for id in 2..=n {
            l.on_message(store, id, Message::AckEpoch { current_epoch: Some(3), last_zxid: 0 }, 0, &mut out);
        }
        for id in 2..=n {
            l.on_message(store, id, Message::Ack { zxid: zxid::make(4, 0) }, 0, &mut out);
        }
        assert_eq!(l.epoch(), Some(4));
        assert!(out.contains(&Command::Serving { leader: 1, epoch: 4 }));
    }

    fn applied(out: &[Command]) -> Vec<Zxid> {
        out.iter().flat_map(|c| if let Command::Apply { entries } = c { entries.iter().map(|e| e.hdr.zxid).collect() } else { vec![] }).collect()
    }

    fn reconfig_txn(voters: &[u64]) -> Txn {
        let text: String = voters.iter().map(|id| format!("server.{id}=127.0.0.1:{}:{}:participant\n", 1000 + id, 2000 + id)).collect();
        Txn::Reconfig { data: format!("{text}version=0").into_bytes() }
    }

    /// Learners 4 and 5 join as non-voting learners (allow_joiners) and sync.
    fn join(l: &mut Leader, store: &mut Store, ids: &[u64], out: &mut Vec<Command>) {
        for &id in ids {
            l.on_message(store, id, Message::FollowerInfo { version: 1, accepted_epoch: 0, last_zxid: 0, observer: false }, 1, out);
            l.on_message(store, id, Message::AckEpoch { current_epoch: Some(0), last_zxid: 0 }, 1, out);
            l.on_message(store, id, Message::Ack { zxid: zxid::make(4, 0) }, 1, out);
        }
    }

    #[test]
    fn zab_reconfig_commits_only_with_both_quorums_then_the_new_one_alone() {
        let mut cfg = Config::new(1, 1..=3, []);
        cfg.tick_ms = 10;
        cfg.allow_joiners = true;
        let mut l = Leader::new(&cfg);
        let mut store = Store::new(Durable { accepted_epoch: 3, current_epoch: 3, ..Default::default() }, 10);
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        join(&mut l, &mut store, &[4, 5], &mut out);
        assert!(out.contains(&Command::Send { to: 4, msg: Message::UpToDate }), "a joiner syncs before it is a member");
        let z = l.propose(&mut store, hdr(), reconfig_txn(&[1, 2, 4, 5]), &mut out).unwrap();
        store.persisted(z).unwrap();
        out.clear();
        l.on_persisted(&mut store, &mut out);
        l.on_message(&mut store, 2, Message::Ack { zxid: z }, 2, &mut out);
        assert!(applied(&out).is_empty(), "1 and 2 are a quorum of the old config, not of {{1,2,4,5}}");
        l.on_message(&mut store, 4, Message::Ack { zxid: z }, 2, &mut out);
        assert_eq!(applied(&out), vec![z], "quorums of both configs logged it");
        assert_eq!(l.activate(&BTreeSet::from([1, 2, 4, 5]), &BTreeSet::new(), z, &mut out), Flow::Continue);
        // 3 stays a non-voting learner; its ACK no longer counts.
        out.clear();
        let z2 = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        store.persisted(z2).unwrap();
        l.on_persisted(&mut store, &mut out);
        l.on_message(&mut store, 3, Message::Ack { zxid: z2 }, 3, &mut out);
        l.on_message(&mut store, 4, Message::Ack { zxid: z2 }, 3, &mut out);
        assert!(applied(&out).is_empty(), "the leader and 4 are 2 of 4 voters; 3 is no voter");
        l.on_message(&mut store, 5, Message::Ack { zxid: z2 }, 3, &mut out);
        assert_eq!(applied(&out), vec![z2]);
    }

    #[test]
    fn zab_leader_removed_by_reconfig_steps_down() {
        let (mut l, mut store) = setup(3);
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        assert!(matches!(l.activate(&BTreeSet::from([2, 3]), &BTreeSet::new(), 1, &mut out), Flow::StepDown(_)));
    }

    #[test]
    fn zab_minority_cannot_commit() {
        let (mut l, mut store) = setup(5);
        establish(&mut l, &mut store, 5);
        let mut out = Vec::new();
        let z1 = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        let z2 = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        assert_eq!((z1, z2), (zxid::make(4, 1), zxid::make(4, 2)));
        drain_disk(&mut store, &out);
        out.clear();
        l.on_persisted(&mut store, &mut out);
        l.on_message(&mut store, 2, Message::Ack { zxid: z2 }, 1, &mut out);
        assert!(applied(&out).is_empty(), "leader + 1 of 5 is a minority");
        // A third voter makes a majority; the cumulative ACK commits both, in order.
        l.on_message(&mut store, 3, Message::Ack { zxid: z1 }, 1, &mut out);
        assert_eq!(applied(&out), vec![z1]);
        l.on_message(&mut store, 4, Message::Ack { zxid: z2 }, 1, &mut out);
        assert_eq!(applied(&out), vec![z1, z2]);
        assert!(out.contains(&Command::Broadcast { to: vec![2, 3, 4, 5], msg: Message::Commit { zxid: z2 } }));
    }

    #[test]
    fn zab_leader_counts_itself_only_once_durable() {
        let (mut l, mut store) = setup(3);
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        let z = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        l.on_message(&mut store, 2, Message::Ack { zxid: z }, 1, &mut out);
        assert!(applied(&out).is_empty(), "our own log write is still in flight");
        store.persisted(z).unwrap();
        l.on_persisted(&mut store, &mut out);
        assert_eq!(applied(&out), vec![z]);
    }

    #[test]
    fn zab_repeated_epoch_promise_does_not_count() {
        // A learner that already accepted epoch 4 (from another would-be
        // leader) answers without a current epoch; counting it could let two
        // leaders establish epoch 4 with the same promise.
        let (mut l, mut store) = setup(3);
        let mut out = Vec::new();
        l.start(&mut store, 0, &mut out);
        l.on_message(&mut store, 2, Message::FollowerInfo { version: 1, accepted_epoch: 3, last_zxid: 0, observer: false }, 0, &mut out);
        assert!(out.contains(&Command::Send { to: 2, msg: Message::LeaderInfo { version: 1, epoch: 4 } }));
        l.on_message(&mut store, 2, Message::AckEpoch { current_epoch: None, last_zxid: 0 }, 0, &mut out);
        assert!(!out.iter().any(|c| matches!(c, Command::Send { msg: Message::NewLeader { .. }, .. })), "no quorum of fresh promises yet");
        l.on_message(&mut store, 3, Message::FollowerInfo { version: 1, accepted_epoch: 3, last_zxid: 0, observer: false }, 0, &mut out);
        l.on_message(&mut store, 3, Message::AckEpoch { current_epoch: Some(3), last_zxid: 0 }, 0, &mut out);
        assert!(out.contains(&Command::Send { to: 2, msg: Message::NewLeader { epoch: 4, zxid: 0 } }), "synced once a quorum promised");
    }

    #[test]
    fn zab_leader_bumps_past_a_learner_that_accepted_a_later_epoch() {
        let (mut l, mut store) = setup(3);
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        l.on_disconnected(3);
        l.on_message(&mut store, 3, Message::FollowerInfo { version: 1, accepted_epoch: 7, last_zxid: 0, observer: false }, 1, &mut out);
        assert!(out.contains(&Command::Send { to: 2, msg: Message::LeaderInfo { version: 1, epoch: 8 } }), "bump to 8 with the synced follower");
        l.on_message(&mut store, 2, Message::AckEpoch { current_epoch: Some(4), last_zxid: 0 }, 1, &mut out);
        l.on_message(&mut store, 2, Message::Ack { zxid: zxid::make(8, 0) }, 1, &mut out);
        assert_eq!(l.epoch(), Some(8));
        assert!(out.contains(&Command::Send { to: 3, msg: Message::LeaderInfo { version: 1, epoch: 8 } }), "the newcomer can follow now");
    }

    #[test]
    fn zab_leader_steps_down_when_a_follower_is_ahead() {
        let (mut l, mut store) = setup(3);
        let mut out = Vec::new();
        l.start(&mut store, 0, &mut out);
        l.on_message(&mut store, 2, Message::FollowerInfo { version: 1, accepted_epoch: 3, last_zxid: 0, observer: false }, 0, &mut out);
        let flow = l.on_message(&mut store, 2, Message::AckEpoch { current_epoch: Some(3), last_zxid: zxid::make(3, 1) }, 0, &mut out);
        assert!(matches!(flow, Flow::StepDown(_)));
    }

    #[test]
    fn zab_leader_loses_quorum_and_steps_down() {
        let (mut l, mut store) = setup(3);
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        assert_eq!(l.on_tick(10, &mut out), Flow::Continue);
        assert!(out.contains(&Command::Broadcast { to: vec![2, 3], msg: Message::Ping }));
        l.on_message(&mut store, 2, Message::Ping, 45, &mut out);
        assert_eq!(l.on_tick(60, &mut out), Flow::Continue, "2 still heard within syncLimit");
        assert!(out.contains(&Command::CloseLink { peer: 3 }), "3 was silent");
        assert!(matches!(l.on_tick(100, &mut out), Flow::StepDown(_)));
    }

    #[test]
    fn zab_epoch_bump_keeps_serving() {
        let (mut l, mut store) = setup(3);
        l.counter_limit = 2;
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        for _ in 0..2 {
            l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        }
        // The counter is at the limit: the next write starts a bump and is queued.
        let z = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        assert_eq!(z, zxid::make(5, 1));
        assert!(out.contains(&Command::Send { to: 2, msg: Message::LeaderInfo { version: 1, epoch: 5 } }));
        drain_disk(&mut store, &out);
        out.clear();
        l.on_persisted(&mut store, &mut out);
        l.on_message(&mut store, 2, Message::AckEpoch { current_epoch: Some(4), last_zxid: zxid::make(4, 2) }, 1, &mut out);
        assert!(out.contains(&Command::Send { to: 2, msg: Message::NewLeader { epoch: 5, zxid: zxid::make(4, 2) } }));
        assert!(out.contains(&Command::PersistEpoch { kind: EpochKind::Current, epoch: 5 }));
        l.on_message(&mut store, 2, Message::Ack { zxid: zxid::make(5, 0) }, 1, &mut out);
        assert_eq!(l.epoch(), Some(4), "a quorum, but the bump waits a little for 3");
        l.on_tick(1_001, &mut out);
        l.on_tick_round(&mut store, &mut out);
        assert_eq!(l.epoch(), Some(5), "half a tick later it finishes without 3");
        assert_eq!(applied(&out), vec![zxid::make(4, 1), zxid::make(4, 2)], "the old epoch's proposals commit with the bump");
        assert!(out.contains(&Command::Send { to: 2, msg: Message::UpToDate }));
        // 3 never acked the new epoch: it is reset rather than fed new-epoch
        // proposals before its NEWLEADER; the queued write goes to 2 only.
        assert!(out.contains(&Command::CloseLink { peer: 3 }));
        assert!(out.contains(&Command::Broadcast {
            to: vec![2],
            msg: Message::Proposal(LogEntry { hdr: TxnHeader { zxid: z, ..hdr() }, txn: Txn::Error { code: 0 } })
        }));
    }

    #[test]
    fn zab_zxid_after_numbers_writes_as_the_leader_does_across_a_bump() {
        let (mut l, mut store) = setup(3);
        l.counter_limit = 2;
        establish(&mut l, &mut store, 3);
        let mut prev = store.last_zxid();
        let mut out = Vec::new();
        for _ in 0..4 {
            let predicted = zxid_after(prev, 4, 2);
            assert_eq!(l.next_zxid(&store), Ok(predicted));
            prev = l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
            assert_eq!(prev, predicted);
        }
        assert_eq!(prev, zxid::make(5, 2), "two in epoch 4, then the bump's first two in 5");
        assert_eq!(zxid_after(zxid::make(3, 9), 4, 2), zxid::make(4, 1), "a new leader starts its epoch at 1");
    }

    #[test]
    fn zab_epoch_bump_waits_for_a_slower_learner_instead_of_resetting_it() {
        let (mut l, mut store) = setup(3);
        l.counter_limit = 2;
        establish(&mut l, &mut store, 3);
        let mut out = Vec::new();
        for _ in 0..3 {
            l.propose(&mut store, hdr(), Txn::Error { code: 0 }, &mut out).unwrap();
        }
        drain_disk(&mut store, &out);
        out.clear();
        l.on_persisted(&mut store, &mut out);
        l.on_message(&mut store, 2, Message::AckEpoch { current_epoch: Some(4), last_zxid: zxid::make(4, 2) }, 1, &mut out);
        l.on_message(&mut store, 2, Message::Ack { zxid: zxid::make(5, 0) }, 2, &mut out);
        assert_eq!(l.epoch(), Some(4), "waiting for 3");
        // 3 is slower but within half a tick: it joins the bump.
        l.on_message(&mut store, 3, Message::AckEpoch { current_epoch: Some(4), last_zxid: zxid::make(4, 2) }, 3, &mut out);
        l.on_message(&mut store, 3, Message::Ack { zxid: zxid::make(5, 0) }, 4, &mut out);
        assert_eq!(l.epoch(), Some(5));
        assert!(!out.contains(&Command::CloseLink { peer: 3 }), "3 kept its connection");
        assert!(out.contains(&Command::Send { to: 3, msg: Message::UpToDate }));
    }
}
