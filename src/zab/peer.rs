//! One ensemble member (QuorumPeer), in two halves that talk only by
//! commands: the `Elector` (elector.rs) runs elections, and the `Replica`
//! here leads or follows until that fails, then asks for an election. The
//! replica owns the `Store`, which outlives roles, and routes every event to
//! its current role.
//!
//! The runtime runs the halves in two actors and carries the hand-off
//! commands between them: `Elect` (replica -> elector), `Elected` and
//! `ConfigAdopted` (elector -> replica), `ConfigActive` (replica ->
//! elector). `Peer` is the same two halves joined directly, for the
//! simulator and the tests.

use super::elector::{Elector, Look};
use super::{Command, Config, Durable, Flow, Follower, Leader, Message, PeerState, ProposeError, ServerId, Store, Vote, Zxid};
use crate::txn::{Txn, TxnHeader};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[allow(clippy::large_enum_variant)] // one per member; boxing the leader buys nothing
#[derive(Debug)]
enum Role {
    /// Waiting for the elector's outcome.
    Looking,
    Following(Follower),
    Leading(Leader),
    /// A safety check failed (`Command::Fatal`); the node ignores everything.
    Halted,
}

/// The broadcast half: discovery, synchronization and atomic broadcast.
#[derive(Debug)]
pub struct Replica {
    cfg: Config,
    store: Store,
    role: Role,
    now_ms: u64,
    /// FOLLOWERINFO that arrived while we were still deciding: a follower
    /// that finished the election first must not have to time out.
    early_infos: BTreeMap<ServerId, Message>,
}

impl Replica {
    pub fn new(cfg: Config, durable: Durable) -> Replica {
        let store = Store::new(durable, cfg.diff_window);
        let mut r = Replica { cfg, store, role: Role::Looking, now_ms: 0, early_infos: BTreeMap::new() };
        r.cfg.proposed_voters = r.proposed().into_iter().map(|(_, v)| v).collect();
        r
    }

    /// The config the elector starts with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn start(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        self.look("starting", &mut out);
        out
    }

    pub fn id(&self) -> ServerId {
        self.cfg.my_id
    }

    pub fn state(&self) -> PeerState {
        match &self.role {
            Role::Looking | Role::Halted => PeerState::Looking,
            Role::Following(_) if self.cfg.is_observer() => PeerState::Observing,
            Role::Following(_) => PeerState::Following,
            Role::Leading(_) => PeerState::Leading,
        }
    }

    /// The leader this server follows or is, once past the election.
    pub fn leader(&self) -> Option<ServerId> {
        match &self.role {
            Role::Following(f) => Some(f.leader()),
            Role::Leading(_) => Some(self.cfg.my_id),
            _ => None,
        }
    }

    /// Synchronized with an established leader (or is one): may serve clients.
    pub fn is_serving(&self) -> bool {
        match &self.role {
            Role::Following(f) => f.is_serving(),
            Role::Leading(l) => l.is_serving(),
            _ => false,
        }
    }

    pub fn is_halted(&self) -> bool {
        matches!(self.role, Role::Halted)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The ensemble's voters and observers changed (a reconfig committed
    /// here, or arrived inside a SNAP, or was found at start, or the
    /// elector adopted it from a peer). `version`: the zxid of the reconfig
    /// that made it.
    pub fn set_membership(&mut self, data: &[u8]) -> Vec<Command> {
        let mut out = Vec::new();
        if let Some((voters, observers, version)) = super::config_members(data) {
            if version > self.cfg.config_version {
                self.cfg.config_data = data.to_vec();
            }
            self.activate(voters, observers, version, &mut out);
        }
        out
    }

    /// Reconfigs this server logged after its committed config and does
    /// not know committed: (zxid, voters).
    fn proposed(&self) -> Vec<(Zxid, BTreeSet<ServerId>)> {
        let version = self.cfg.config_version;
        let store = &self.store;
        store
            .entries_after(store.committed())
            .filter(|e| e.hdr.zxid > version)
            .filter_map(|e| super::reconfig_members(&e.txn).map(|m| (e.hdr.zxid, m.0)))
            .collect()
    }

    fn activate(&mut self, voters: BTreeSet<ServerId>, observers: BTreeSet<ServerId>, version: Zxid, out: &mut Vec<Command>) {
        if voters.is_empty() || version <= self.cfg.config_version {
            return;
        }
        self.cfg.voters = voters.clone();
        self.cfg.observers = observers.clone();
        self.cfg.config_version = version;
        self.cfg.proposed_voters.retain(|_| false);
        out.push(Command::ConfigActive { voters, observers, version, data: self.cfg.config_data.clone() });
        let flow = match &mut self.role {
            Role::Leading(l) => l.activate(&self.cfg.voters, &self.cfg.observers, version, out),
            Role::Following(f) => {
                f.set_observer(self.cfg.is_observer());
                Flow::Continue
            }
            _ => Flow::Continue,
        };
        self.handle(flow, out);
    }

    /// Activates the config of any reconfig committed by these commands.
    fn activate_committed(&mut self, out: &mut Vec<Command>) {
        let latest = out
            .iter()
            .filter_map(|c| if let Command::Apply { entries } = c { Some(entries) } else { None })
            .flatten()
            .filter_map(|e| super::reconfig_members(&e.txn).map(|m| (m, e.hdr.zxid, e.txn.clone())))
            .next_back();
        if let Some(((voters, observers), version, crate::txn::Txn::Reconfig { data })) = latest {
            if version > self.cfg.config_version {
                self.cfg.config_data = data;
            }
            self.activate(voters, observers, version, out);
        }
    }

    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        let flow = match &mut self.role {
            Role::Following(f) => f.on_tick(now_ms),
            Role::Leading(l) => match l.on_tick(now_ms, &mut out) {
                Flow::Continue => {
                    l.on_tick_round(&mut self.store, &mut out);
                    Flow::Continue
                }
                stop => stop,
            },
            Role::Looking | Role::Halted => Flow::Continue,
        };
        self.handle(flow, &mut out);
        self.activate_committed(&mut out);
        out
    }

    /// Discovery, sync and broadcast messages (election messages are the elector's).
    pub fn on_message(&mut self, from: ServerId, msg: Message) -> Vec<Command> {
        let mut out = Vec::new();
        let now = self.now_ms;
        let flow = match &mut self.role {
            Role::Looking => {
                if let Message::FollowerInfo { .. } = msg {
                    self.early_infos.insert(from, msg);
                }
                Flow::Continue
            }
            Role::Following(f) if from == f.leader() => f.on_message(&mut self.store, msg, now, &mut out),
            Role::Leading(l) => l.on_message(&mut self.store, from, msg, now, &mut out),
            _ => Flow::Continue,
        };
        self.handle(flow, &mut out);
        self.activate_committed(&mut out);
        out
    }

    /// The oldest outstanding disk operation completed; the durable log now ends at `zxid`.
    pub fn on_persisted(&mut self, zxid: Zxid) -> Vec<Command> {
        let mut out = Vec::new();
        if self.is_halted() {
            return out;
        }
        if let Err(reason) = self.store.persisted(zxid) {
            out.push(Command::Fatal { reason });
            self.role = Role::Halted;
            return out;
        }
        let flow = match &mut self.role {
            Role::Following(f) => {
                f.on_persisted(&mut self.store, &mut out);
                Flow::Continue
            }
            Role::Leading(l) => {
                l.on_persisted(&mut self.store, &mut out);
                Flow::Continue
            }
            _ => Flow::Continue,
        };
        self.handle(flow, &mut out);
        self.activate_committed(&mut out);
        out
    }

    pub fn on_disconnected(&mut self, peer: ServerId) -> Vec<Command> {
        let mut out = Vec::new();
        self.early_infos.remove(&peer);
        let flow = match &mut self.role {
            Role::Following(f) if f.leader() == peer => Flow::StepDown("lost the connection to the leader"),
            Role::Leading(l) => {
                l.on_disconnected(peer);
                Flow::Continue
            }
            _ => Flow::Continue,
        };
        self.handle(flow, &mut out);
        out
    }

    /// Leaves the current role and looks for a leader (the runtime found
    /// its view of the role out of step with this one).
    pub fn step_down(&mut self, reason: &'static str) -> Vec<Command> {
        let mut out = Vec::new();
        if matches!(self.role, Role::Following(_) | Role::Leading(_)) {
            self.handle(Flow::StepDown(reason), &mut out);
        }
        out
    }

    /// The zxid the next `propose` will assign (see `Leader::next_zxid`).
    pub fn next_zxid(&self) -> Result<Zxid, ProposeError> {
        let Role::Leading(l) = &self.role else { return Err(ProposeError::NotLeader) };
        l.next_zxid(&self.store)
    }

    /// Leader: its learners as (id, observer, synced, durable up to).
    pub fn learners(&self) -> Vec<(ServerId, bool, bool, Zxid)> {
        match &self.role {
            Role::Leading(l) => l.learners(),
            _ => Vec::new(),
        }
    }

    /// The established epoch, if leading or following one.
    pub fn epoch(&self) -> Option<super::Epoch> {
        match &self.role {
            Role::Leading(l) => l.epoch(),
            Role::Following(_) => Some(self.store.current_epoch),
            _ => None,
        }
    }

    /// Reads `id` want a read index (linearizable reads): answered by
    /// `Command::ReadReady` (or `ReadRefused`), now or later.
    pub fn read_index(&mut self, id: u64) -> Vec<Command> {
        let mut out = Vec::new();
        match &mut self.role {
            Role::Leading(l) => l.read_index(&self.store, super::read_index::Reader::Local(id), &mut out),
            Role::Following(f) => f.read_index(id, &mut out),
            _ => out.push(Command::ReadRefused { id }),
        }
        out
    }

    /// A client write at the leader: returns its zxid and the commands that
    /// propose it. `hdr.zxid` is ignored.
    pub fn propose(&mut self, hdr: TxnHeader, txn: Txn) -> Result<(Zxid, Vec<Command>), ProposeError> {
        let Role::Leading(l) = &mut self.role else { return Err(ProposeError::NotLeader) };
        let mut out = Vec::new();
        let zxid = l.propose(&mut self.store, hdr, txn, &mut out)?;
        Ok((zxid, out))
    }

    fn handle(&mut self, flow: Flow, out: &mut Vec<Command>) {
        if out.iter().any(|c| matches!(c, Command::Fatal { .. })) {
            self.role = Role::Halted;
            return;
        }
        if let Flow::StepDown(reason) = flow {
            match &mut self.role {
                // Close the link so the leader forgets us at once, as a TCP close would.
                Role::Following(f) => out.push(Command::CloseLink { peer: f.leader() }),
                Role::Leading(l) => l.shutdown(out),
                _ => {}
            }
            self.look(reason, out);
        }
    }

    fn look(&mut self, reason: &'static str, out: &mut Vec<Command>) {
        out.push(Command::LookForLeader { reason });
        self.role = Role::Looking;
        out.push(Command::Elect(self.look_inputs()));
    }

    /// What an election round starts from: this history and the reconfigs
    /// logged but not known committed.
    pub fn look_inputs(&mut self) -> Look {
        let proposed = self.proposed();
        self.cfg.proposed_voters = proposed.iter().map(|(_, v)| v.clone()).collect();
        Look { last_zxid: self.store.last_zxid(), current_epoch: self.store.current_epoch, proposed }
    }

    /// The elector decided: lead or follow. An outcome that arrives when
    /// not looking (a stale one) is ignored.
    pub fn on_elected(&mut self, vote: Vote) -> Vec<Command> {
        let mut out = Vec::new();
        if !matches!(self.role, Role::Looking) {
            return out;
        }
        if vote.leader == self.cfg.my_id {
            let mut leader = Leader::new(&self.cfg);
            out.push(Command::BecomeLeader);
            leader.start(&mut self.store, self.now_ms, &mut out);
            self.role = Role::Leading(leader);
            let mut flow = Flow::Continue;
            for (from, msg) in std::mem::take(&mut self.early_infos) {
                if flow != Flow::Continue {
                    break;
                }
                let Role::Leading(l) = &mut self.role else { unreachable!() };
                flow = l.on_message(&mut self.store, from, msg, self.now_ms, &mut out);
            }
            self.handle(flow, &mut out);
        } else {
            let c = &self.cfg;
            let mut f = Follower::new(vote.leader, c.is_observer(), c.tick_ms, c.init_limit_ticks, c.sync_limit_ticks);
            out.push(Command::BecomeFollower { leader: vote.leader, observer: c.is_observer() });
            f.start(&self.store, self.now_ms, &mut out);
            self.role = Role::Following(f);
            self.early_infos.clear();
        }
        out
    }
}

/// Both halves joined directly: each hand-off command is carried to the
/// other half at once, in place, so the output reads as one member's.
#[derive(Debug)]
pub struct Peer {
    elector: Elector,
    replica: Replica,
    /// Hand-offs are returned for the caller to deliver later with
    /// `hand_off`, as between two actors (the simulator's split mode).
    deferred: bool,
}

impl Peer {
    pub fn new(cfg: Config, durable: Durable) -> Peer {
        let replica = Replica::new(cfg, durable);
        Peer { elector: Elector::new(replica.config().clone()), replica, deferred: false }
    }

    /// Returns hand-off commands instead of carrying them at once.
    pub fn with_deferred_hand_off(mut self) -> Peer {
        self.deferred = true;
        self
    }

    /// Whether `c` goes from one half to the other.
    pub fn is_hand_off(c: &Command) -> bool {
        matches!(c, Command::Elect(_) | Command::ConfigActive { .. } | Command::Elected { .. } | Command::ConfigAdopted { .. })
    }

    /// Delivers a hand-off command to the half it is for.
    pub fn hand_off(&mut self, c: Command) -> Vec<Command> {
        let out = self.deliver(&c);
        self.route(out)
    }

    fn deliver(&mut self, c: &Command) -> Vec<Command> {
        match c {
            Command::Elect(look) => self.elector.look(look.clone(), self.replica.now_ms),
            Command::ConfigActive { voters, observers, version, data } => {
                self.elector.set_membership(voters.clone(), observers.clone(), *version, data.clone());
                Vec::new()
            }
            Command::Elected { vote, .. } => self.replica.on_elected(*vote),
            Command::ConfigAdopted { data } => self.replica.set_membership(data),
            _ => Vec::new(),
        }
    }

    /// Carries hand-off commands between the halves, depth first; the
    /// internal ones (`Elect`, `ConfigActive`) are not returned.
    fn route(&mut self, out: Vec<Command>) -> Vec<Command> {
        let mut todo: VecDeque<Command> = out.into();
        let mut done = Vec::new();
        while let Some(c) = todo.pop_front() {
            if matches!(c, Command::Fatal { .. }) {
                self.elector.halt();
            }
            if self.deferred {
                done.push(c);
                continue;
            }
            let more = self.deliver(&c);
            if !matches!(c, Command::Elect(_) | Command::ConfigActive { .. }) {
                done.push(c);
            }
            for m in more.into_iter().rev() {
                todo.push_front(m);
            }
        }
        done
    }

    pub fn start(&mut self, now_ms: u64) -> Vec<Command> {
        let out = self.replica.start(now_ms);
        self.route(out)
    }

    pub fn id(&self) -> ServerId {
        self.replica.id()
    }

    pub fn state(&self) -> PeerState {
        self.replica.state()
    }

    pub fn leader(&self) -> Option<ServerId> {
        self.replica.leader()
    }

    pub fn is_serving(&self) -> bool {
        self.replica.is_serving()
    }

    pub fn is_halted(&self) -> bool {
        self.replica.is_halted()
    }

    pub fn store(&self) -> &Store {
        self.replica.store()
    }

    pub fn set_membership(&mut self, data: &[u8]) -> Vec<Command> {
        let out = self.replica.set_membership(data);
        self.route(out)
    }

    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Command> {
        let mut out = self.elector.on_tick(now_ms);
        out.extend(self.replica.on_tick(now_ms));
        self.route(out)
    }

    pub fn on_message(&mut self, from: ServerId, msg: Message) -> Vec<Command> {
        let out = match msg {
            Message::Notification(n) => self.elector.on_notification(from, n),
            Message::Config { data } => self.elector.on_config(data),
            msg => self.replica.on_message(from, msg),
        };
        self.route(out)
    }

    pub fn on_persisted(&mut self, zxid: Zxid) -> Vec<Command> {
        let out = self.replica.on_persisted(zxid);
        self.route(out)
    }

    pub fn on_connected(&mut self, peer: ServerId) -> Vec<Command> {
        let out = self.elector.on_connected(peer);
        self.route(out)
    }

    pub fn on_disconnected(&mut self, peer: ServerId) -> Vec<Command> {
        self.elector.on_disconnected(peer);
        let out = self.replica.on_disconnected(peer);
        self.route(out)
    }

    pub fn step_down(&mut self, reason: &'static str) -> Vec<Command> {
        let out = self.replica.step_down(reason);
        self.route(out)
    }

    pub fn next_zxid(&self) -> Result<Zxid, ProposeError> {
        self.replica.next_zxid()
    }

    pub fn learners(&self) -> Vec<(ServerId, bool, bool, Zxid)> {
        self.replica.learners()
    }

    pub fn epoch(&self) -> Option<super::Epoch> {
        self.replica.epoch()
    }

    pub fn read_index(&mut self, id: u64) -> Vec<Command> {
        let out = self.replica.read_index(id);
        self.route(out)
    }

    pub fn propose(&mut self, hdr: TxnHeader, txn: Txn) -> Result<(Zxid, Vec<Command>), ProposeError> {
        let (zxid, out) = self.replica.propose(hdr, txn)?;
        Ok((zxid, self.route(out)))
    }
}

#[cfg(test)]
mod tests {
    use crate::zab::testkit::Net;
    use crate::zab::{zxid, PeerState};

    #[test]
    fn zab_three_servers_elect_and_replicate() {
        let mut net = Net::new(3);
        net.run_until(|n| n.leader().is_some_and(|l| n.serving_count() == 3 && l == 3), 5_000);
        for i in 0..5 {
            net.write(i);
        }
        net.settle();
        assert_eq!(net.applied(1), (1..=5).map(|c| zxid::make(1, c)).collect::<Vec<_>>());
        assert_eq!(net.applied(1), net.applied(2));
        assert_eq!(net.applied(1), net.applied(3));
    }

    #[test]
    fn zab_single_voter_leads_alone() {
        let mut net = Net::new(1);
        net.run_until(|n| n.leader() == Some(1), 1_000);
        net.write(1);
        net.settle();
        assert_eq!(net.applied(1), vec![zxid::make(1, 1)]);
    }

    #[test]
    fn zab_re_election_after_leader_crash() {
        let mut net = Net::new(3);
        net.run_until(|n| n.serving_count() == 3, 5_000);
        assert_eq!(net.leader(), Some(3), "equal histories: the highest id leads");
        net.write(1);
        net.settle();
        // 2 misses a write (its link to 3 is down), so 1 has the longer history.
        net.partition(2, 3);
        net.write(2);
        net.run_for(50);
        net.crash(3);
        net.heal(2, 3);
        net.run_until(|n| n.leader().is_some() && n.serving_count() == 2, 10_000);
        assert_eq!(net.leader(), Some(1), "the survivor with the longest history leads");
        assert_eq!(net.peer(1).store().current_epoch, 2);
        net.write(3);
        net.settle();
        // The old leader comes back as a follower and catches up.
        net.restart(3);
        net.run_until(|n| n.serving_count() == 3, 10_000);
        assert_eq!(net.peer(3).state(), PeerState::Following);
        net.settle();
        assert_eq!(net.applied(3), net.applied(1));
        assert_eq!(net.applied(2), net.applied(1));
        assert_eq!(net.applied(1).len(), 3);
    }

    #[test]
    fn zab_uncommitted_tail_is_truncated_on_rejoin() {
        let mut net = Net::new(3);
        net.run_until(|n| n.serving_count() == 3, 5_000);
        net.write(1);
        net.settle();
        // The leader logs a proposal nobody else receives, then dies.
        net.partition(3, 1);
        net.partition(3, 2);
        net.write(2);
        net.run_for(5);
        net.crash(3);
        net.heal(3, 1);
        net.heal(3, 2);
        net.run_until(|n| n.serving_count() == 2, 10_000);
        net.write(3);
        net.settle();
        net.restart(3);
        net.run_until(|n| n.serving_count() == 3, 10_000);
        net.settle();
        assert!(net.sent_trunc, "3 held 1:2, which the new leader never had");
        assert_eq!(net.applied(3), net.applied(2));
        assert_eq!(net.applied(3), vec![zxid::make(1, 1), zxid::make(2, 1)]);
    }

    #[test]
    fn zab_read_index_needs_a_quorum_round_and_covers_every_commit_before_it() {
        let mut net = Net::new(3);
        net.run_until(|n| n.serving_count() == 3, 5_000);
        net.write(1);
        net.write(2);
        net.settle();
        let leader = net.leader().unwrap();
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let committed = net.peer(leader).store().committed();
        net.read_index(leader, 7);
        net.read_index(follower, 8);
        net.settle();
        assert_eq!(net.reads_ready.get(&(leader, 7)), Some(&committed));
        assert_eq!(net.reads_ready.get(&(follower, 8)), Some(&committed), "the follower gets the leader's commit index");
        // A leader cut off from both followers confirms nothing, and refuses when it steps down.
        for other in (1..=3).filter(|id| *id != leader) {
            net.partition(leader, other);
        }
        net.read_index(leader, 9);
        net.run_for(20);
        assert!(!net.reads_ready.contains_key(&(leader, 9)), "no quorum answered the round");
        net.run_until(|n| n.reads_refused.contains(&(leader, 9)), 10_000);
    }

    #[test]
    fn zab_a_followers_read_index_request_counts_as_its_answer_where_the_two_make_a_quorum() {
        for (members, round_needed) in [(3, false), (5, true)] {
            let mut net = Net::new(members);
            net.run_until(|n| n.serving_count() == members as usize, 5_000);
            net.write(1);
            net.settle();
            let leader = net.leader().unwrap();
            let follower = (1..=members).find(|id| *id != leader).unwrap();
            let committed = net.peer(leader).store().committed();
            let before = net.heartbeats;
            net.read_index(follower, 8);
            net.settle();
            assert_eq!(net.reads_ready.get(&(follower, 8)), Some(&committed), "{members} members");
            assert_eq!(net.heartbeats > before, round_needed, "{members} members: a round only where leader + asker are no quorum");
            // The leader's own reads always need a round.
            let before = net.heartbeats;
            net.read_index(leader, 9);
            net.settle();
            assert_eq!(net.reads_ready.get(&(leader, 9)), Some(&committed));
            assert!(net.heartbeats > before, "{members} members");
        }
    }

    #[test]
    fn zab_read_round_whose_heartbeat_was_lost_is_sent_again() {
        // Seed 110 of the netns chaos runs: the leader's only heartbeat of a
        // round went down with a replaced link, the round never completed, and
        // the reads it held fenced their sessions' writes: the leader stopped applying.
        let mut net = Net::new(3);
        net.run_until(|n| n.serving_count() == 3, 5_000);
        let leader = net.leader().unwrap();
        let (a, b) = {
            let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
            (others[0], others[1])
        };
        net.crash(a);
        net.read_index(leader, 7);
        net.drop_between(leader, b);
        net.run_until(|n| n.reads_ready.contains_key(&(leader, 7)), 200);
        // A learner that starts forwarding while a round is out gets it too.
        net.read_index(leader, 8);
        net.drop_between(leader, b);
        net.restart(a);
        net.run_until(|n| n.reads_ready.contains_key(&(leader, 8)), 2_000);
        assert!(net.reads_refused.is_empty());
    }

    #[test]
    fn zab_lagging_follower_gets_a_snapshot() {
        let mut net = Net::with_window(3, 2);
        net.run_until(|n| n.serving_count() == 3, 5_000);
        net.crash(1);
        for i in 0..6 {
            net.write(i);
        }
        net.settle();
        net.restart(1);
        net.run_until(|n| n.serving_count() == 3, 10_000);
        net.settle();
        assert!(net.sent_snap, "1 was further behind than the DIFF window");
        assert_eq!(net.applied(1), net.applied(3));
        assert_eq!(net.applied(1).len(), 6);
    }
}
