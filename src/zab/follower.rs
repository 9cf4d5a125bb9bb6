//! The learner side (Learner.registerWithLeader / syncWithLeader and
//! Follower.processPacket); observers run the same code and never ACK
//! proposals.
//!
//! The durability rule that ZooKeeper got wrong several times: the ACK of
//! NEWLEADER promises the leader that its whole history is on our disk, so
//! it waits until every disk write issued before NEWLEADER arrived has
//! completed, and only then is `current_epoch` raised (raising it earlier
//! would let a crash leave a server that votes with the new epoch but lacks
//! the history — ZOOKEEPER-4394/4643).

use super::{zxid, Command, Epoch, EpochKind, Flow, Message, ServerId, Store, Zxid, PROTOCOL_VERSION};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// FOLLOWERINFO sent, waiting for LEADERINFO.
    Connecting,
    /// Epoch accepted; receiving DIFF/TRUNC/SNAP, proposals, NEWLEADER.
    Syncing,
    /// UPTODATE received: serving clients.
    Serving,
}

#[derive(Debug, Clone, Copy)]
struct NewLeaderWait {
    epoch: Epoch,
    /// The ACK may go once this disk operation is durable.
    seq: u64,
}

#[derive(Debug)]
pub struct Follower {
    leader: ServerId,
    observer: bool,
    phase: Phase,
    newleader: Option<NewLeaderWait>,
    newleader_acked: bool,
    /// Proposals after NEWLEADER are ACKed one by one once durable.
    ack_proposals: bool,
    ack_waits: VecDeque<(u64, Zxid)>,
    /// A streamed snapshot at this zxid is arriving: only its chunks and end may come.
    receiving_snapshot: Option<Zxid>,
    last_heard_ms: u64,
    tick_ms: u64,
    init_limit_ticks: u64,
    sync_limit_ticks: u64,
}

impl Follower {
    /// A reconfig made this learner a voter or an observer.
    pub(crate) fn set_observer(&mut self, observer: bool) {
        self.observer = observer;
    }

    pub fn new(leader: ServerId, observer: bool, tick_ms: u64, init_limit_ticks: u64, sync_limit_ticks: u64) -> Follower {
        Follower {
            leader,
            observer,
            phase: Phase::Connecting,
            newleader: None,
            newleader_acked: false,
            ack_proposals: false,
            ack_waits: VecDeque::new(),
            receiving_snapshot: None,
            last_heard_ms: 0,
            tick_ms,
            init_limit_ticks,
            sync_limit_ticks,
        }
    }

    pub fn leader(&self) -> ServerId {
        self.leader
    }

    pub fn is_serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    pub fn start(&mut self, store: &Store, now_ms: u64, out: &mut Vec<Command>) {
        self.last_heard_ms = now_ms;
        let msg =
            Message::FollowerInfo { version: PROTOCOL_VERSION, accepted_epoch: store.accepted_epoch, last_zxid: store.last_zxid(), observer: self.observer };
        out.push(Command::Send { to: self.leader, msg });
    }

    /// A message from the leader (the caller filters other senders).
    pub(crate) fn on_message(&mut self, store: &mut Store, msg: Message, now_ms: u64, out: &mut Vec<Command>) -> Flow {
        self.last_heard_ms = now_ms;
        if let Some(zxid) = self.receiving_snapshot {
            return self.on_snapshot_message(store, zxid, msg, out);
        }
        match msg {
            Message::LeaderInfo { epoch, .. } => return self.on_leader_info(store, epoch, out),
            Message::Diff { .. } if self.phase == Phase::Syncing => {}
            Message::Trunc { zxid } if self.phase == Phase::Syncing => {
                if let Err(reason) = store.truncate(zxid, out) {
                    out.push(Command::Fatal { reason });
                    return Flow::StepDown("unsafe TRUNC");
                }
            }
            Message::SnapStart { zxid } if self.phase == Phase::Syncing => {
                if let Err(reason) = store.check_snapshot(zxid) {
                    out.push(Command::Fatal { reason });
                    return Flow::StepDown("unsafe SNAP");
                }
                self.receiving_snapshot = Some(zxid);
                out.push(Command::BeginSnapshot { zxid });
            }
            Message::Snap { zxid, data } if self.phase == Phase::Syncing => {
                // An older leader's SNAP in one message: the same steps.
                let (bytes, crc) = (data.len() as u64, crc32c::crc32c(&data));
                self.receiving_snapshot = Some(zxid);
                out.push(Command::BeginSnapshot { zxid });
                out.push(Command::SnapshotChunk { data });
                return self.on_snapshot_message(store, zxid, Message::SnapEnd { bytes, crc, fuzzy_until: zxid }, out);
            }
            Message::Proposal(entry) if self.phase != Phase::Connecting => {
                let z = entry.hdr.zxid;
                if z <= store.last_zxid() || zxid::epoch_of(z) > store.accepted_epoch {
                    return Flow::StepDown("proposal out of order");
                }
                store.append(vec![entry], out);
                // Observers ACK too: one promoted by a reconfig counts
                // towards the new config's quorum before it is activated.
                if self.ack_proposals {
                    self.ack_waits.push_back((store.issued_seq(), z));
                }
            }
            Message::Commit { zxid } if self.phase != Phase::Connecting => store.commit(zxid, out),
            Message::NewLeader { epoch, zxid } if self.phase != Phase::Connecting => {
                if epoch != store.accepted_epoch || store.last_zxid() != zxid {
                    return Flow::StepDown("NEWLEADER does not match what was synced");
                }
                self.newleader = Some(NewLeaderWait { epoch, seq: store.issued_seq() });
                self.ack_proposals = true;
                self.flush_acks(store, out);
            }
            Message::UpToDate if self.phase != Phase::Connecting => {
                // Commits come as COMMIT: a late joiner's NEWLEADER history
                // may end in proposals that are not committed yet.
                if !self.newleader_acked {
                    return Flow::StepDown("UPTODATE before NEWLEADER was acknowledged");
                }
                if self.phase == Phase::Syncing {
                    self.phase = Phase::Serving;
                    out.push(Command::Serving { leader: self.leader, epoch: store.current_epoch });
                }
            }
            Message::Ping => out.push(Command::Send { to: self.leader, msg: Message::Ping }),
            // Still following this leader: it may answer its reads (read_index.rs).
            Message::Heartbeat { round } if self.phase != Phase::Connecting => {
                out.push(Command::Send { to: self.leader, msg: Message::HeartbeatAck { round } })
            }
            Message::ReadIndexOk { id, zxid } if self.phase == Phase::Serving => out.push(Command::ReadReady { id, zxid }),
            _ => return Flow::StepDown("unexpected message from leader"),
        }
        Flow::Continue
    }

    /// LEADERINFO: at the start of following, or an epoch bump while serving.
    fn on_leader_info(&mut self, store: &mut Store, epoch: Epoch, out: &mut Vec<Command>) -> Flow {
        let current_epoch = if epoch > store.accepted_epoch {
            store.set_epoch(EpochKind::Accepted, epoch, out);
            Some(store.current_epoch)
        } else if epoch == store.accepted_epoch && self.phase == Phase::Connecting {
            None
        } else {
            return Flow::StepDown("leader epoch is not newer than the accepted epoch");
        };
        if self.phase == Phase::Connecting {
            self.phase = Phase::Syncing;
        }
        out.push(Command::Send { to: self.leader, msg: Message::AckEpoch { current_epoch, last_zxid: store.last_zxid() } });
        Flow::Continue
    }

    /// A disk write completed (the store already knows): send what it unblocks.
    pub fn on_persisted(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        self.flush_acks(store, out);
    }

    fn flush_acks(&mut self, store: &mut Store, out: &mut Vec<Command>) {
        if let Some(nl) = self.newleader {
            if store.durable_seq() < nl.seq {
                return; // proposal ACKs queue behind the NEWLEADER ACK
            }
            store.set_epoch(EpochKind::Current, nl.epoch, out);
            out.push(Command::Send { to: self.leader, msg: Message::Ack { zxid: zxid::make(nl.epoch, 0) } });
            self.newleader_acked = true;
            self.newleader = None;
        }
        let mut ack = None;
        while let Some(&(seq, z)) = self.ack_waits.front() {
            if seq > store.durable_seq() {
                break;
            }
            ack = Some(z);
            self.ack_waits.pop_front();
        }
        if let Some(zxid) = ack {
            out.push(Command::Send { to: self.leader, msg: Message::Ack { zxid } });
        }
    }

    /// Gives up on a silent leader: initLimit while syncing, syncLimit after.
    /// Reads `id` of this learner's clients: ask the leader for a read index.
    pub(crate) fn read_index(&mut self, id: u64, out: &mut Vec<Command>) {
        match self.phase {
            Phase::Serving => out.push(Command::Send { to: self.leader, msg: Message::ReadIndex { id } }),
            _ => out.push(Command::ReadRefused { id }),
        }
    }

    /// While a streamed snapshot arrives: its chunks, then its end; anything
    /// else breaks the stream (the leader resyncs us from the start).
    fn on_snapshot_message(&mut self, store: &mut Store, zxid: Zxid, msg: Message, out: &mut Vec<Command>) -> Flow {
        match msg {
            Message::SnapChunk { data } => {
                out.push(Command::SnapshotChunk { data });
                // The leader's pings wait behind the stream: tell it we are alive.
                out.push(Command::Send { to: self.leader, msg: Message::Ping });
            }
            Message::SnapEnd { bytes, crc, fuzzy_until } => {
                self.receiving_snapshot = None;
                if let Err(reason) = store.install_snapshot(zxid, bytes, crc, fuzzy_until, out) {
                    out.push(Command::Fatal { reason });
                    return Flow::StepDown("unsafe SNAP");
                }
            }
            _ => return Flow::StepDown("a message inside a snapshot stream"),
        }
        Flow::Continue
    }

    pub(crate) fn on_tick(&mut self, now_ms: u64) -> Flow {
        let limit = if self.phase == Phase::Serving { self.sync_limit_ticks } else { self.init_limit_ticks };
        if now_ms.saturating_sub(self.last_heard_ms) > limit * self.tick_ms {
            return Flow::StepDown("leader silent");
        }
        Flow::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{LogEntry, Txn, TxnHeader};
    use crate::zab::zxid::make;
    use crate::zab::Durable;

    fn entry(zxid: Zxid) -> LogEntry {
        LogEntry { hdr: TxnHeader { session_id: 1, cxid: 0, zxid, time_ms: 0 }, txn: Txn::Error { code: 0 } }
    }

    fn sent(out: &[Command]) -> Vec<Message> {
        out.iter().filter_map(|c| if let Command::Send { msg, .. } = c { Some(msg.clone()) } else { None }).collect()
    }

    #[test]
    fn zab_newleader_ack_waits_for_persistence() {
        let mut store = Store::new(Durable { accepted_epoch: 1, current_epoch: 1, snapshot_zxid: 0, log: vec![entry(make(1, 1))] }, 10);
        let mut f = Follower::new(7, false, 100, 10, 5);
        let mut out = Vec::new();
        f.start(&store, 0, &mut out);
        assert_eq!(f.on_message(&mut store, Message::LeaderInfo { version: 1, epoch: 2 }, 1, &mut out), Flow::Continue);
        assert!(out.contains(&Command::PersistEpoch { kind: EpochKind::Accepted, epoch: 2 }));
        out.clear();
        f.on_message(&mut store, Message::Diff { zxid: make(1, 1) }, 2, &mut out);
        f.on_message(&mut store, Message::Proposal(entry(make(1, 2))), 2, &mut out);
        f.on_message(&mut store, Message::Proposal(entry(make(1, 3))), 2, &mut out);
        f.on_message(&mut store, Message::NewLeader { epoch: 2, zxid: make(1, 3) }, 3, &mut out);
        assert!(sent(&out).is_empty(), "no ACK before the history is durable: {out:?}");
        assert_eq!(store.current_epoch, 1, "current epoch waits too");
        // A proposal of the new epoch arrives before the disk catches up.
        f.on_message(&mut store, Message::Proposal(entry(make(2, 1))), 4, &mut out);
        out.clear();
        store.persisted(make(1, 2)).unwrap();
        f.on_persisted(&mut store, &mut out);
        assert!(sent(&out).is_empty(), "half the history is not enough");
        store.persisted(make(1, 3)).unwrap();
        f.on_persisted(&mut store, &mut out);
        assert_eq!(out[0], Command::PersistEpoch { kind: EpochKind::Current, epoch: 2 }, "epoch before ACK");
        assert_eq!(sent(&out), vec![Message::Ack { zxid: make(2, 0) }]);
        out.clear();
        store.persisted(make(2, 1)).unwrap();
        f.on_persisted(&mut store, &mut out);
        assert_eq!(sent(&out), vec![Message::Ack { zxid: make(2, 1) }], "proposal ACK after the NEWLEADER ACK");
        out.clear();
        f.on_message(&mut store, Message::Commit { zxid: make(1, 3) }, 5, &mut out);
        assert!(matches!(&out[0], Command::Apply { entries } if entries.len() == 3));
        f.on_message(&mut store, Message::UpToDate, 5, &mut out);
        assert!(f.is_serving());
    }

    #[test]
    fn zab_follower_refuses_trunc_below_committed() {
        let mut store = Store::new(Durable { accepted_epoch: 1, current_epoch: 1, snapshot_zxid: 0, log: vec![entry(make(1, 1)), entry(make(1, 2))] }, 10);
        store.commit(make(1, 2), &mut Vec::new());
        let mut f = Follower::new(7, false, 100, 10, 5);
        let mut out = Vec::new();
        f.start(&store, 0, &mut out);
        f.on_message(&mut store, Message::LeaderInfo { version: 1, epoch: 2 }, 1, &mut out);
        let flow = f.on_message(&mut store, Message::Trunc { zxid: make(1, 1) }, 2, &mut out);
        assert_eq!(flow, Flow::StepDown("unsafe TRUNC"));
        assert!(matches!(out.last(), Some(Command::Fatal { .. })));
        assert_eq!(store.last_zxid(), make(1, 2));
    }

    #[test]
    fn zab_follower_rejects_an_older_leader_epoch_and_times_out() {
        let mut store = Store::new(Durable { accepted_epoch: 5, current_epoch: 4, ..Default::default() }, 10);
        let mut f = Follower::new(7, false, 100, 10, 5);
        let mut out = Vec::new();
        f.start(&store, 0, &mut out);
        assert!(matches!(f.on_message(&mut store, Message::LeaderInfo { version: 1, epoch: 4 }, 1, &mut out), Flow::StepDown(_)));
        let mut f = Follower::new(7, false, 100, 10, 5);
        f.start(&store, 0, &mut out);
        assert_eq!(f.on_tick(1000), Flow::Continue);
        assert!(matches!(f.on_tick(1001), Flow::StepDown(_)));
    }
}
