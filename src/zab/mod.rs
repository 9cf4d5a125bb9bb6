//! Zab, ZooKeeper's atomic broadcast, as pure state machines: events go in
//! (a peer message, a tick with the time, a disk write that completed, a
//! client write), a list of `Command`s comes out (send, persist, apply). The
//! runtime executes the commands and feeds completions back; nothing here
//! touches a socket, a clock or a random number generator.
//!
//! Layout, in ZooKeeper's names: `election` (FastLeaderElection), `leader`
//! (Leader + LearnerHandler), `follower` (Learner/Follower/Observer), `log`
//! (the part of ZKDatabase/FileTxnSnapLog the protocol needs: epochs, the
//! in-memory log window, outstanding disk writes), `quorum`, and `peer`
//! (QuorumPeer: one server switching between the roles).
//!
//! ## Contract with the runtime
//! * Commands are executed in order. `PersistEpoch` and `Apply` complete
//!   before the next command runs (they are small / in-memory); a `Send`
//!   after a `PersistEpoch` must not leave before the epoch is on disk.
//! * `AppendLog`, `TruncateLog` and `InstallSnapshot` are disk operations that
//!   may complete later, but strictly in the order issued; each completion is
//!   reported with `Peer::on_persisted(zxid)`, zxid being the last zxid of the
//!   durable log after that operation. This is what lets a follower ACK
//!   NEWLEADER only once the leader's history is on its disk (ZOOKEEPER-3911,
//!   -4394 and friends) and lets the leader pipeline proposals.
//! * Links are FIFO (TCP). Messages sent while a link is down are lost; each
//!   side learns of a broken link via `on_disconnected`. `CloseLink` asks the
//!   runtime to reset a connection: queued messages are dropped and the other
//!   side sees a disconnect (the runtime may reconnect at once).
//! * `SendSnapshot{to, zxid}` means: stream the database, which because
//!   `Apply` is synchronous is at `zxid` when the command runs, on that link
//!   in command order: `SnapStart`, `SnapChunk`s, `SnapEnd`. The copy may be
//!   fuzzy (transactions after `zxid` applied while it is taken); the
//!   proposals that follow it on the link make it exact, as in ZooKeeper.
//! * `BeginSnapshot`, `SnapshotChunk` and `InstallSnapshot` write a received
//!   snapshot to disk in order; only `InstallSnapshot` is a disk operation
//!   reported by `on_persisted`.
//!
//! ## Epoch counter exhaustion (ZOOKEEPER-1277)
//! ZooKeeper throws `XidRolloverException` and re-elects, dropping every
//! client connection. Warden's leader instead re-runs discovery and
//! synchronization with its *current* followers for epoch+1 while staying
//! leader ("epoch bump"): LEADERINFO(e+1) → quorum of ACKEPOCH →
//! NEWLEADER(e+1, last zxid of e) → quorum of ACKs → UPTODATE. Client writes
//! arriving meanwhile are queued with zxids of the new epoch and proposed
//! once it is established, so clients only see a short delay. Safety is the
//! ordinary Zab argument: epoch e+1 is established only by a quorum that
//! strictly raised its accepted epoch to e+1. If the bump cannot finish in
//! `init_limit` ticks the leader steps down as it would on quorum loss
//! (queued writes are then lost like any uncommitted proposal: the runtime
//! fails pending requests on `LookForLeader`). The same bump, to one past
//! its accepted epoch, lets a learner rejoin that promised a later epoch to a
//! would-be leader which never established (ZooKeeper would keep refusing
//! it until the next election).
//!
//! ## Deviations from ZooKeeper, and why
//! * NEWLEADER carries the leader's last zxid, not `(epoch, 0)`, so the
//!   follower can check its synced log ends exactly there; its ACK carries
//!   `(epoch, 0)`, which no proposal uses.
//! * ACK and COMMIT are cumulative; UPTODATE commits nothing by itself.
//! * A server that missed the election follows a leader that a quorum
//!   follows and that says it leads, whatever the peer epoch in their votes.
//! * The database only ever holds committed transactions: entries logged but
//!   not known committed stay in the log until a leader commits them, so a
//!   TRUNC never has to reload the database.

use crate::txn::LogEntry;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub mod election;
pub mod elector;
pub mod follower;
pub mod leader;
pub mod log;
pub mod peer;
pub mod quorum;
pub mod read_index;
#[cfg(test)]
mod testkit;
pub mod wire;

pub use election::Election;
pub use elector::{Elector, Look};
pub use follower::Follower;
pub use leader::{Leader, ProposeError};
pub use log::{Store, SyncPlan};
pub use peer::{Peer, Replica};
pub use quorum::Quorum;

pub type ServerId = u64;
pub type Epoch = u32;
/// (epoch << 32) | counter, as ZooKeeper; `i64` to match `TxnHeader::zxid`.
pub type Zxid = i64;

/// Carried in notifications, FOLLOWERINFO and LEADERINFO so that a future
/// incompatible change can be refused instead of misread.
pub const PROTOCOL_VERSION: u32 = 1;

pub mod zxid {
    use super::{Epoch, Zxid};

    pub fn make(epoch: Epoch, counter: u32) -> Zxid {
        ((epoch as i64) << 32) | counter as i64
    }

    pub fn epoch_of(zxid: Zxid) -> Epoch {
        (zxid >> 32) as Epoch
    }

    pub fn counter_of(zxid: Zxid) -> u32 {
        zxid as u32
    }
}

/// A candidate for leadership. `epoch` is the candidate's current epoch (the
/// "peer epoch"); `election_epoch` is the election round (logical clock) in
/// which the vote was cast and takes no part in the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub leader: ServerId,
    pub zxid: Zxid,
    pub epoch: Epoch,
    pub election_epoch: u64,
}

impl Vote {
    /// FastLeaderElection's totalOrderPredicate: newer epoch, then longer
    /// history, then higher server id.
    pub fn order_key(&self) -> (Epoch, Zxid, ServerId) {
        (self.epoch, self.zxid, self.leader)
    }

    pub fn same_candidate(&self, other: &Vote) -> bool {
        self.order_key() == other.order_key()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// An election message: the sender's vote and what it is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub version: u32,
    pub vote: Vote,
    pub state: PeerState,
    /// The version of the sender's committed config: a server with a newer
    /// one answers with `Message::Config` (ZooKeeper sends the config itself).
    #[serde(default)]
    pub config_version: Zxid,
    /// The sender is a voter by its own configs (committed or proposed):
    /// others accept it as a candidate even before they see a reconfig
    /// that made it one.
    #[serde(default)]
    pub eligible: bool,
}

/// Everything peers say to each other (ZAB 1.0 packet vocabulary). Serde so
/// the runtime can frame it with MessagePack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Leader election.
    Notification(Notification),
    /// Discovery: learner → leader, what epoch it has accepted.
    FollowerInfo {
        version: u32,
        accepted_epoch: Epoch,
        last_zxid: Zxid,
        observer: bool,
    },
    /// Discovery: leader → learner, the new epoch.
    LeaderInfo {
        version: u32,
        epoch: Epoch,
    },
    /// Discovery: learner accepted the epoch. `current_epoch` is None when
    /// the learner had already accepted it (not counted towards the quorum).
    AckEpoch {
        current_epoch: Option<Epoch>,
        last_zxid: Zxid,
    },
    /// Sync: proposals after the learner's `zxid` follow.
    Diff {
        zxid: Zxid,
    },
    /// Sync: drop everything after `zxid` (an uncommitted tail), then proposals.
    Trunc {
        zxid: Zxid,
    },
    /// Sync: the leader's database at `zxid` in one message (from leaders
    /// before streamed snapshots; `SnapStart` supersedes it).
    Snap {
        zxid: Zxid,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Sync done: the leader's history ends at `zxid`; ACK (with zxid
    /// `make(epoch, 0)`) once all of it is durable.
    NewLeader {
        epoch: Epoch,
        zxid: Zxid,
    },
    /// The NEWLEADER was ACKed by a quorum: the learner may serve clients.
    /// (Commits still come as COMMIT, which the leader sends first.)
    UpToDate,
    Proposal(LogEntry),
    /// Cumulative: the sender has durably logged everything up to `zxid`.
    /// A zero counter acknowledges NEWLEADER of that epoch.
    Ack {
        zxid: Zxid,
    },
    /// Cumulative: everything up to `zxid` is committed.
    Commit {
        zxid: Zxid,
    },
    Ping,
    /// Runtime traffic carried on the same link but outside the protocol's
    /// state machine (the runtime handles it; `Peer` ignores it): a client
    /// request a learner forwards to the leader (ZooKeeper's REQUEST).
    Request(Forward),
    /// Learner → leader: sessions heard from since the last batch, so the
    /// leader's tracker (the only one that expires sessions) keeps them.
    Touch {
        sessions: Vec<i64>,
    },
    /// Leader → learners: the tree digest after applying `zxid`; a learner
    /// whose tree differs at the same zxid has diverged and stops.
    Digest {
        zxid: Zxid,
        digest: u64,
    },
    /// The sender's committed config (`/zookeeper/config` text), to a
    /// server whose notification showed an older one: a member that missed
    /// reconfigs learns whom to vote with and follow.
    Config {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Sync: the leader's database at `zxid` follows as `SnapChunk`s (the
    /// bytes of a snapshot file, in bounded pieces) and a `SnapEnd`; then
    /// proposals after `zxid`.
    SnapStart {
        zxid: Zxid,
    },
    SnapChunk {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The stream's length and crc32c over all chunks, and the leader's last
    /// applied zxid when its copy ended: the copy is fuzzy up to there, so
    /// the learner's tree is exact only once it has applied that far.
    SnapEnd {
        bytes: u64,
        crc: u32,
        fuzzy_until: Zxid,
    },
    /// Learner → leader: a read index for the learner's reads `id`.
    ReadIndex {
        id: u64,
    },
    /// Leader → learner: reads `id` may be served once `zxid` is applied.
    ReadIndexOk {
        id: u64,
        zxid: Zxid,
    },
    /// Leader → learners: confirm you still follow me (a read-index round).
    Heartbeat {
        round: u64,
    },
    HeartbeatAck {
        round: u64,
    },
}

/// A request a learner forwards to the leader. `cxid` is the client's xid,
/// which comes back in the committed transaction's header so the learner can
/// match it to its waiting client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub session_id: i64,
    pub cxid: i32,
    pub auth: Vec<crate::proto::Id>,
    pub op: ForwardOp,
    /// The session is local to the learner (localSessionsEnabled): the
    /// leader does not know it and lets it through.
    #[serde(default)]
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOp {
    Client(crate::proto::Request),
    /// A new session's id was chosen by the learner (its id in the top byte).
    CreateSession {
        timeout_ms: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochKind {
    /// The epoch this server promised to follow (raised at LEADERINFO).
    Accepted,
    /// The epoch whose history this server has durably (raised at NEWLEADER).
    Current,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Send {
        to: ServerId,
        msg: Message,
    },
    Broadcast {
        to: Vec<ServerId>,
        msg: Message,
    },
    /// Reset the connection to `peer` (in-flight messages are lost).
    CloseLink {
        peer: ServerId,
    },
    /// Write the epoch file before executing the next command.
    PersistEpoch {
        kind: EpochKind,
        epoch: Epoch,
    },
    /// Append to the txn log; completion reported by `on_persisted`.
    AppendLog {
        entries: Vec<LogEntry>,
    },
    /// Remove log entries after `to_zxid`; completion reported by `on_persisted`.
    TruncateLog {
        to_zxid: Zxid,
    },
    /// Stream the database (at `zxid`) to `to`: `SnapStart`, chunks, `SnapEnd`.
    SendSnapshot {
        to: ServerId,
        zxid: Zxid,
    },
    /// A snapshot at `zxid` is arriving: start writing it aside.
    BeginSnapshot {
        zxid: Zxid,
    },
    /// The next piece of the snapshot being received.
    SnapshotChunk {
        data: Vec<u8>,
    },
    /// The received snapshot is complete (`bytes` long, crc32c `crc`): make
    /// it durable, load it as the database and empty the log; completion
    /// reported by `on_persisted(zxid)`. Transactions up to `fuzzy_until`
    /// follow that the snapshot may already partly reflect.
    InstallSnapshot {
        zxid: Zxid,
        bytes: u64,
        crc: u32,
        fuzzy_until: Zxid,
    },
    /// Reads `id` (asked with `Replica::read_index`) may be served once the
    /// database has applied `zxid`.
    ReadReady {
        id: u64,
        zxid: Zxid,
    },
    /// Reads `id` cannot get a read index here (not serving): their clients
    /// must go elsewhere.
    ReadRefused {
        id: u64,
    },
    /// Committed transactions, in zxid order, for the database.
    Apply {
        entries: Vec<LogEntry>,
    },
    /// The election finished: the replica leads or follows. (Elector -> replica.)
    Elected {
        leader: ServerId,
        vote: Vote,
    },
    BecomeLeader,
    BecomeFollower {
        leader: ServerId,
        observer: bool,
    },
    /// Synchronized with a quorum: this server may serve clients in `epoch`.
    Serving {
        leader: ServerId,
        epoch: Epoch,
    },
    /// Stop serving; an election is running.
    LookForLeader {
        reason: &'static str,
    },
    /// A safety check failed; the node must stop rather than serve wrong data.
    Fatal {
        reason: String,
    },
    /// A newer committed config learned from a peer (`Message::Config`) is
    /// now this server's: the replica activates it, the runtime keeps it and
    /// links to its members. (Elector -> replica and runtime.)
    ConfigAdopted {
        data: Vec<u8>,
    },
    /// The replica left its role (or started): the elector runs a round
    /// from this history. (Replica -> elector.)
    Elect(Look),
    /// The replica activated a config: the elector votes under it.
    /// (Replica -> elector.)
    ConfigActive {
        voters: BTreeSet<ServerId>,
        observers: BTreeSet<ServerId>,
        version: Zxid,
        data: Vec<u8>,
    },
}

/// Timers and limits, in ZooKeeper's units where it has them.
#[derive(Debug, Clone)]
pub struct Config {
    pub my_id: ServerId,
    pub voters: BTreeSet<ServerId>,
    pub observers: BTreeSet<ServerId>,
    pub tick_ms: u64,
    /// Discovery + sync must finish within this many ticks.
    pub init_limit_ticks: u64,
    /// A peer silent for this many ticks in broadcast is gone.
    pub sync_limit_ticks: u64,
    /// After a quorum agrees, wait this long for a better vote.
    pub finalize_wait_ms: u64,
    /// Notification resend interval: starts at min, doubles up to max.
    pub notify_min_ms: u64,
    pub notify_max_ms: u64,
    /// Committed entries kept in memory so lagging learners get a DIFF.
    pub diff_window: usize,
    /// Proposals in flight (uncommitted + queued) before `propose` says Busy.
    pub max_outstanding: usize,
    /// Bump the epoch once the zxid counter reaches this.
    pub counter_limit: u32,
    /// reconfigEnabled: the leader syncs servers outside the config as
    /// non-voting learners, so a reconfig can add them.
    pub allow_joiners: bool,
    /// The zxid of the committed reconfig `voters` come from (0: static).
    pub config_version: Zxid,
    /// The voters of reconfigs in the log after `config_version` that are
    /// not known committed: elections need a quorum of each until they are.
    pub proposed_voters: Vec<BTreeSet<ServerId>>,
    /// The committed config's text (empty for a static config).
    pub config_data: Vec<u8>,
}

impl Config {
    pub fn new(my_id: ServerId, voters: impl IntoIterator<Item = ServerId>, observers: impl IntoIterator<Item = ServerId>) -> Config {
        Config {
            my_id,
            voters: voters.into_iter().collect(),
            observers: observers.into_iter().collect(),
            tick_ms: 2000,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            finalize_wait_ms: 200,
            notify_min_ms: 200,
            notify_max_ms: 60_000,
            diff_window: 500,
            max_outstanding: 1000,
            // The last counter before the 32 bits wrap; nothing is proposed
            // in the old epoch once a bump starts.
            counter_limit: u32::MAX - 1,
            allow_joiners: false,
            config_version: 0,
            proposed_voters: Vec::new(),
            config_data: Vec::new(),
        }
    }

    pub fn members(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.voters.iter().chain(self.observers.iter()).copied()
    }

    pub fn is_observer(&self) -> bool {
        !self.voters.contains(&self.my_id)
    }
}

/// The (voters, observers) a reconfig transaction makes the ensemble.
pub fn reconfig_members(txn: &crate::txn::Txn) -> Option<(BTreeSet<ServerId>, BTreeSet<ServerId>)> {
    let crate::txn::Txn::Reconfig { data } = txn else { return None };
    config_members(data).map(|(voters, observers, _)| (voters, observers))
}

/// (voters, observers, version) of `/zookeeper/config` text.
pub fn config_members(data: &[u8]) -> Option<(BTreeSet<ServerId>, BTreeSet<ServerId>, Zxid)> {
    let m = crate::membership::Membership::parse(&String::from_utf8_lossy(data)).ok()?;
    Some((m.voters(), m.observers(), m.version))
}

/// What a server has on disk, handed to `Peer::new` at start.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    pub accepted_epoch: Epoch,
    pub current_epoch: Epoch,
    /// Zxid of the loaded snapshot (= the database's last zxid).
    pub snapshot_zxid: Zxid,
    /// Log entries after the snapshot, in zxid order.
    pub log: Vec<LogEntry>,
}

/// A role's answer to an event: keep going, or go back to election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    StepDown(&'static str),
}
