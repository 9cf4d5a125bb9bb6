//! One ensemble member (QuorumPeer): looks for a leader, then leads or
//! follows until that fails, then looks again. Owns the `Store`, which
//! outlives roles, and routes every event to the current role.

use super::{
    Command, Config, Durable, Election, Flow, Follower, Leader, Message, Notification, PeerState, ProposeError, ServerId, Store, Vote, Zxid,
    PROTOCOL_VERSION,
};
use crate::txn::{Txn, TxnHeader};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
enum Role {
    Looking(Election),
    Following(Follower),
    Leading(Leader),
    /// A safety check failed (`Command::Fatal`); the node ignores everything.
    Halted,
}

#[derive(Debug)]
pub struct Peer {
    cfg: Config,
    store: Store,
    role: Role,
    /// Election round counter, kept across rounds (ZooKeeper's logicalclock).
    clock: u64,
    /// The vote that ended the last election, told to servers still looking.
    vote: Option<Vote>,
    now_ms: u64,
    /// FOLLOWERINFO that arrived while we were still deciding: a follower
    /// that finished the election first must not have to time out.
    early_infos: BTreeMap<ServerId, Message>,
}

impl Peer {
    pub fn new(cfg: Config, durable: Durable) -> Peer {
        let store = Store::new(durable, cfg.diff_window);
        let election = Election::new(&cfg, store.last_zxid(), store.current_epoch, 0);
        let mut peer = Peer { cfg, store, role: Role::Looking(election), clock: 0, vote: None, now_ms: 0, early_infos: BTreeMap::new() };
        peer.cfg.proposed_voters = peer.proposed_voters();
        peer.role = Role::Looking(Election::new(&peer.cfg, peer.store.last_zxid(), peer.store.current_epoch, 0));
        peer
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
            Role::Looking(_) | Role::Halted => PeerState::Looking,
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
    /// here, or arrived inside a SNAP, or was found at start).
    /// `version`: the zxid of the reconfig that made it.
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

    /// The voters of reconfigs this server logged after its committed
    /// config and does not know committed.
    fn proposed_voters(&self) -> Vec<BTreeSet<ServerId>> {
        let version = self.cfg.config_version;
        let store = &self.store;
        store.entries_after(store.committed()).filter(|e| e.hdr.zxid > version).filter_map(|e| super::reconfig_members(&e.txn)).map(|m| m.0).collect()
    }

    fn activate(&mut self, voters: BTreeSet<ServerId>, observers: BTreeSet<ServerId>, version: Zxid, out: &mut Vec<Command>) {
        if voters.is_empty() || version <= self.cfg.config_version {
            return;
        }
        self.cfg.voters = voters;
        self.cfg.observers = observers;
        self.cfg.config_version = version;
        self.cfg.proposed_voters.retain(|_| false);
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
            .last();
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
            Role::Looking(e) => {
                out = e.on_tick(now_ms);
                self.after_election(&mut out);
                Flow::Continue
            }
            Role::Following(f) => f.on_tick(now_ms),
            Role::Leading(l) => l.on_tick(now_ms, &mut out),
            Role::Halted => Flow::Continue,
        };
        self.handle(flow, &mut out);
        self.activate_committed(&mut out);
        out
    }

    pub fn on_message(&mut self, from: ServerId, msg: Message) -> Vec<Command> {
        let mut out = Vec::new();
        let now = self.now_ms;
        if let Message::Notification(n) = msg {
            if !self.is_halted() {
                self.on_notification(from, n, &mut out);
            }
            return out;
        }
        if let Message::Config { data } = msg {
            if !self.is_halted() {
                self.on_config(data, &mut out);
            }
            return out;
        }
        let flow = match &mut self.role {
            Role::Looking(_) => {
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

    pub fn on_connected(&mut self, peer: ServerId) -> Vec<Command> {
        match &mut self.role {
            Role::Looking(e) => e.on_connected(peer),
            _ => Vec::new(),
        }
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
            Role::Looking(e) => {
                e.on_disconnected(peer);
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

    /// A client write at the leader: returns its zxid and the commands that
    /// propose it. `hdr.zxid` is ignored.
    pub fn propose(&mut self, hdr: TxnHeader, txn: Txn) -> Result<(Zxid, Vec<Command>), ProposeError> {
        let Role::Leading(l) = &mut self.role else { return Err(ProposeError::NotLeader) };
        let mut out = Vec::new();
        let zxid = l.propose(&mut self.store, hdr, txn, &mut out)?;
        Ok((zxid, out))
    }

    fn on_notification(&mut self, from: ServerId, n: Notification, out: &mut Vec<Command>) {
        if let Role::Looking(e) = &mut self.role {
            out.extend(e.on_notification(from, n));
            self.after_election(out);
        } else if n.state == PeerState::Looking {
            // Past the election: tell the looker whom we follow (or that we lead).
            if let Some(vote) = self.vote {
                let me = self.cfg.my_id;
                let eligible = self.cfg.voters.contains(&me) || self.cfg.proposed_voters.iter().any(|p| p.contains(&me));
                let msg = Message::Notification(Notification { version: PROTOCOL_VERSION, vote, state: self.state(), config_version: self.cfg.config_version, eligible });
                out.push(Command::Send { to: from, msg });
            }
        }
        if n.config_version < self.cfg.config_version && !self.cfg.config_data.is_empty() {
            out.push(Command::Send { to: from, msg: Message::Config { data: self.cfg.config_data.clone() } });
        }
    }

    /// A peer's committed config, newer than ours: adopt it (a committed
    /// config is safe to vote under) and, if looking, start over with it.
    fn on_config(&mut self, data: Vec<u8>, out: &mut Vec<Command>) {
        let Some((voters, observers, version)) = super::config_members(&data) else { return };
        if version <= self.cfg.config_version || voters.is_empty() {
            return;
        }
        self.cfg.config_data = data.clone();
        out.push(Command::ConfigAdopted { data });
        self.activate(voters, observers, version, out);
        if matches!(self.role, Role::Looking(_)) {
            self.look("adopted a newer config from a peer", out);
        }
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
        self.clock += 1;
        out.push(Command::LookForLeader { reason });
        self.cfg.proposed_voters = self.proposed_voters();
        let mut e = Election::new(&self.cfg, self.store.last_zxid(), self.store.current_epoch, self.clock);
        out.extend(e.on_start(self.now_ms));
        self.role = Role::Looking(e);
        self.after_election(out);
    }

    fn after_election(&mut self, out: &mut Vec<Command>) {
        let Role::Looking(e) = &self.role else { return };
        self.clock = self.clock.max(e.clock());
        let Some(vote) = e.outcome() else { return };
        self.vote = Some(vote);
        if vote.leader == self.cfg.my_id {
            let mut leader = Leader::new(&self.cfg);
            out.push(Command::BecomeLeader);
            leader.start(&mut self.store, self.now_ms, out);
            self.role = Role::Leading(leader);
            let mut flow = Flow::Continue;
            for (from, msg) in std::mem::take(&mut self.early_infos) {
                if flow != Flow::Continue {
                    break;
                }
                let Role::Leading(l) = &mut self.role else { unreachable!() };
                flow = l.on_message(&mut self.store, from, msg, self.now_ms, out);
            }
            self.handle(flow, out);
        } else {
            let c = &self.cfg;
            let mut f = Follower::new(vote.leader, c.is_observer(), c.tick_ms, c.init_limit_ticks, c.sync_limit_ticks);
            out.push(Command::BecomeFollower { leader: vote.leader, observer: c.is_observer() });
            f.start(&self.store, self.now_ms, out);
            self.role = Role::Following(f);
            self.early_infos.clear();
        }
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
