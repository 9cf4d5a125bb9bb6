//! Fast leader election (FastLeaderElection.lookForLeader) for one round.
//!
//! Every voter starts by voting for itself and adopts any better vote it
//! hears, by (peer epoch, last zxid, server id), re-broadcasting each
//! change. Once a quorum shares its vote and nothing better arrives for
//! `finalize_wait_ms`, the round is decided. A server that arrives late
//! learns the leader from the FOLLOWING/LEADING replies of a quorum, but
//! only if the leader itself says it is LEADING (checkLeader), so a crashed
//! leader that its followers have not yet given up on is not followed.

use super::{Command, Config, Epoch, Message, Notification, PeerState, Quorum, ServerId, Vote, Zxid, PROTOCOL_VERSION};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug)]
pub struct Election {
    me: ServerId,
    quorum: Quorum,
    /// Servers that said they are voters by their own configs, and ones
    /// that said they are not (their word wins over our configs).
    eligible: BTreeSet<ServerId>,
    ineligible: BTreeSet<ServerId>,
    /// The committed config alone: enough to join a leader already
    /// established (discovery is what keeps that safe), so a server holding
    /// a reconfig the new leader never had can still follow it and be
    /// truncated.
    committed: Quorum,
    config_version: Zxid,
    /// This server's own candidacy (never adopted by others if an observer).
    self_vote: Vote,
    /// The election round (ZooKeeper's logicalclock).
    clock: u64,
    proposal: Vote,
    /// Votes of this round, by voter.
    recv: BTreeMap<ServerId, Notification>,
    /// FOLLOWING/LEADING replies from servers past the election, any round.
    out_of_election: BTreeMap<ServerId, Notification>,
    decide_at_ms: Option<u64>,
    resend_at_ms: u64,
    resend_interval_ms: u64,
    finalize_wait_ms: u64,
    notify_max_ms: u64,
    now_ms: u64,
    outcome: Option<Vote>,
}

impl Election {
    /// A new round numbered `clock` (the caller keeps the counter across rounds).
    pub fn new(cfg: &Config, my_last_zxid: Zxid, my_current_epoch: Epoch, clock: u64) -> Election {
        let self_vote = Vote { leader: cfg.my_id, zxid: my_last_zxid, epoch: my_current_epoch, election_epoch: clock };
        Election {
            me: cfg.my_id,
            config_version: cfg.config_version,
            quorum: Quorum::joint(cfg.voters.iter().copied(), cfg.proposed_voters.iter().cloned()),
            committed: Quorum::new(cfg.voters.iter().copied()),
            eligible: BTreeSet::new(),
            ineligible: BTreeSet::new(),
            self_vote,
            clock,
            proposal: self_vote,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            decide_at_ms: None,
            resend_at_ms: 0,
            resend_interval_ms: cfg.notify_min_ms,
            finalize_wait_ms: cfg.finalize_wait_ms,
            notify_max_ms: cfg.notify_max_ms,
            now_ms: 0,
            outcome: None,
        }
    }

    pub fn on_start(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        self.resend_at_ms = now_ms + self.resend_interval_ms;
        self.record_own_vote();
        self.broadcast(&mut out);
        self.update_decision(&mut out);
        out
    }

    /// The decided vote, once the round is over.
    pub fn outcome(&self) -> Option<Vote> {
        self.outcome
    }

    pub fn clock(&self) -> u64 {
        self.clock
    }

    pub fn proposal(&self) -> Vote {
        self.proposal
    }

    /// This server's current notification, as sent to others.
    pub fn notification(&self) -> Notification {
        Notification {
            version: PROTOCOL_VERSION,
            vote: Vote { election_epoch: self.clock, ..self.proposal },
            state: PeerState::Looking,
            config_version: self.config_version,
            eligible: self.quorum.is_voter(self.me),
        }
    }

    pub fn on_notification(&mut self, from: ServerId, n: Notification) -> Vec<Command> {
        let mut out = Vec::new();
        if self.outcome.is_some() {
            return out;
        }
        let (add, remove) = if n.eligible { (&mut self.eligible, &mut self.ineligible) } else { (&mut self.ineligible, &mut self.eligible) };
        add.insert(from);
        remove.remove(&from);
        if !self.is_candidate(self.proposal.leader) && self.proposal.leader != self.me {
            // We backed a server that says it cannot lead (it lost the
            // reconfig that made it a voter, in a crash): start from our own vote again.
            self.proposal = self.self_vote;
            self.record_own_vote();
            self.broadcast(&mut out);
        }
        let decided = matches!(n.state, PeerState::Following | PeerState::Leading);
        if !self.quorum.is_voter(from) && !decided {
            // Observers do not vote; tell them where we are so they can learn the leader.
            self.send_to(from, &mut out);
            return out;
        }
        // A non-voter's LEADING still counts as the leader's own word (a
        // leader from a reconfig we have not seen); quorums count voters only.
        match n.state {
            PeerState::Looking => self.on_looking(from, n, &mut out),
            PeerState::Following | PeerState::Leading => self.on_decided(from, n, &mut out),
            PeerState::Observing => {}
        }
        out
    }

    /// Decides after the finalize wait; resends the vote when nothing is heard.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        if self.outcome.is_some() {
            return out;
        }
        if self.decide_at_ms.is_some_and(|t| now_ms >= t) {
            self.decide(self.proposal, &mut out);
        } else if now_ms >= self.resend_at_ms {
            // Links may have dropped our notifications: send again, backing off.
            self.broadcast(&mut out);
            self.resend_interval_ms = (self.resend_interval_ms * 2).min(self.notify_max_ms);
            self.resend_at_ms = now_ms + self.resend_interval_ms;
        }
        out
    }

    /// A link came up: the peer may have missed our vote.
    pub fn on_connected(&mut self, peer: ServerId) -> Vec<Command> {
        let mut out = Vec::new();
        if self.outcome.is_none() && self.quorum.is_voter(peer) {
            self.send_to(peer, &mut out);
        }
        out
    }

    /// A link broke: a leader we heard LEADING from may be gone (crashed
    /// and restarted, say), so its word no longer counts.
    pub fn on_disconnected(&mut self, peer: ServerId) {
        self.out_of_election.remove(&peer);
    }

    fn on_looking(&mut self, from: ServerId, n: Notification, out: &mut Vec<Command>) {
        let theirs = n.vote;
        if theirs.election_epoch > self.clock {
            // A newer round: join it, keeping only the better of theirs and ours.
            self.clock = theirs.election_epoch;
            self.recv.clear();
            self.proposal = if self.beats(&theirs, &self.self_vote) { theirs } else { self.self_vote };
            self.record_own_vote();
            self.broadcast(out);
        } else if theirs.election_epoch < self.clock {
            // They are behind: answer so they catch up; their vote is stale.
            self.send_to(from, out);
            return;
        } else if self.beats(&theirs, &self.proposal) {
            self.proposal = theirs;
            self.record_own_vote();
            self.broadcast(out);
        }
        self.recv.insert(from, n);
        self.update_decision(out);
    }

    fn on_decided(&mut self, from: ServerId, n: Notification, out: &mut Vec<Command>) {
        let v = n.vote;
        if v.election_epoch == self.clock {
            self.recv.insert(from, n);
            let agreeing: Vec<ServerId> = self.recv.iter().filter(|(_, m)| m.vote.same_candidate(&v)).map(|(id, _)| *id).collect();
            if self.quorum.is_quorum(agreeing) && self.check_leader(&self.recv, v.leader, v.election_epoch) {
                self.decide(v, out);
                return;
            }
        }
        // Past elections: a quorum following the same leader is enough.
        // ZooKeeper also compares the peer epoch, but a server that joined
        // the leader's current term from an older round's replies carries
        // an older vote, and a quorum would then never agree (the simulator
        // found that livelock). Safety rests on discovery, not on this.
        self.out_of_election.insert(from, n);
        if !self.quorum.is_voter(v.leader) && v.leader != self.me && !self.out_of_election.contains_key(&v.leader) {
            // Followed, but outside our config (a reconfig we have not seen):
            // ask it directly for its own word.
            self.send_to(v.leader, out);
        }
        let agreeing: Vec<ServerId> = self.out_of_election.iter().filter(|(_, m)| m.vote.leader == v.leader).map(|(id, _)| *id).collect();
        if self.committed.is_quorum(agreeing) && self.check_leader(&self.out_of_election, v.leader, v.election_epoch) {
            self.clock = v.election_epoch;
            self.decide(v, out);
        }
    }

    /// Someone other than us can only be followed if it told us it leads.
    fn check_leader(&self, votes: &BTreeMap<ServerId, Notification>, leader: ServerId, election_epoch: u64) -> bool {
        if leader == self.me {
            self.clock == election_epoch
        } else {
            votes.get(&leader).is_some_and(|n| n.state == PeerState::Leading)
        }
    }

    /// A voter by our configs or by its own word: during a reconfig servers
    /// may disagree on the proposed config, and a candidate some of them
    /// refused could never gather both quorums (the simulator found that
    /// livelock), nor may one with the longest history be passed over.
    fn is_candidate(&self, id: ServerId) -> bool {
        !self.ineligible.contains(&id) && (self.quorum.is_voter(id) || self.eligible.contains(&id))
    }

    /// totalOrderPredicate; a non-voter is never a candidate.
    fn beats(&self, new: &Vote, current: &Vote) -> bool {
        if !self.is_candidate(new.leader) {
            return false;
        }
        !self.is_candidate(current.leader) || new.order_key() > current.order_key()
    }

    fn record_own_vote(&mut self) {
        self.proposal.election_epoch = self.clock;
        if self.quorum.is_voter(self.me) {
            self.recv.insert(self.me, self.notification());
        }
    }

    /// Starts or cancels the finalize wait depending on whether a quorum
    /// (of this round) shares our proposal.
    fn update_decision(&mut self, out: &mut Vec<Command>) {
        let agreeing: Vec<ServerId> = self.recv.iter().filter(|(_, n)| n.vote.same_candidate(&self.proposal)).map(|(id, _)| *id).collect();
        if !self.quorum.is_quorum(agreeing) || !self.is_candidate(self.proposal.leader) {
            self.decide_at_ms = None;
            return;
        }
        if self.finalize_wait_ms == 0 {
            self.decide(self.proposal, out);
        } else if self.decide_at_ms.is_none() {
            self.decide_at_ms = Some(self.now_ms + self.finalize_wait_ms);
        }
    }

    fn decide(&mut self, vote: Vote, out: &mut Vec<Command>) {
        let vote = Vote { election_epoch: self.clock, ..vote };
        self.outcome = Some(vote);
        out.push(Command::Elected { leader: vote.leader, vote });
    }

    fn broadcast(&self, out: &mut Vec<Command>) {
        let to: Vec<ServerId> = self.quorum.voters().filter(|id| *id != self.me).collect();
        if !to.is_empty() {
            out.push(Command::Broadcast { to, msg: Message::Notification(self.notification()) });
        }
    }

    fn send_to(&self, to: ServerId, out: &mut Vec<Command>) {
        out.push(Command::Send { to, msg: Message::Notification(self.notification()) });
    }

    /// Tells a peer's state: the role this round leads to.
    pub fn role_for(&self, vote: &Vote) -> PeerState {
        if vote.leader == self.me {
            PeerState::Leading
        } else if self.quorum.is_voter(self.me) {
            PeerState::Following
        } else {
            PeerState::Observing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zab::zxid::make;
    use std::collections::VecDeque;

    fn cfg(id: ServerId, n: u64) -> Config {
        let mut c = Config::new(id, 1..=n, []);
        c.finalize_wait_ms = 10;
        c.notify_min_ms = 50;
        c
    }

    /// Runs elections to completion with instant, lossless delivery.
    fn run(mut nodes: Vec<Election>) -> Vec<Vote> {
        let mut queue: VecDeque<(ServerId, ServerId, Notification)> = VecDeque::new();
        let push = |from: ServerId, cmds: Vec<Command>, q: &mut VecDeque<(ServerId, ServerId, Notification)>| {
            for c in cmds {
                match c {
                    Command::Broadcast { to, msg: Message::Notification(n) } => to.into_iter().for_each(|t| q.push_back((from, t, n))),
                    Command::Send { to, msg: Message::Notification(n) } => q.push_back((from, to, n)),
                    _ => {}
                }
            }
        };
        for e in nodes.iter_mut() {
            let out = e.on_start(0);
            push(e.me, out, &mut queue);
        }
        let mut now = 0;
        while nodes.iter().any(|e| e.outcome().is_none()) {
            while let Some((from, to, n)) = queue.pop_front() {
                if let Some(e) = nodes.iter_mut().find(|e| e.me == to) {
                    let out = e.on_notification(from, n);
                    push(to, out, &mut queue);
                }
            }
            now += 5;
            assert!(now < 10_000, "election did not finish");
            for e in nodes.iter_mut() {
                let out = e.on_tick(now);
                push(e.me, out, &mut queue);
            }
        }
        nodes.iter().map(|e| e.outcome().unwrap()).collect()
    }

    #[test]
    fn zab_election_picks_highest_epoch_then_zxid_then_id() {
        // Highest epoch wins even with a shorter log.
        let votes =
            run(vec![Election::new(&cfg(1, 3), make(1, 9), 1, 1), Election::new(&cfg(2, 3), make(2, 1), 2, 1), Election::new(&cfg(3, 3), make(1, 9), 1, 1)]);
        assert!(votes.iter().all(|v| v.leader == 2), "{votes:?}");
        // Same epoch: the longest log.
        let votes =
            run(vec![Election::new(&cfg(1, 3), make(2, 7), 2, 1), Election::new(&cfg(2, 3), make(2, 5), 2, 1), Election::new(&cfg(3, 3), make(2, 6), 2, 1)]);
        assert!(votes.iter().all(|v| v.leader == 1), "{votes:?}");
        // All equal: the highest id.
        let votes = run((1..=5).map(|id| Election::new(&cfg(id, 5), make(3, 3), 3, 1)).collect());
        assert!(votes.iter().all(|v| v.leader == 5), "{votes:?}");
    }

    #[test]
    fn zab_election_joins_a_newer_round() {
        // Server 1 is in round 7, the others in round 1: they all move to round 7.
        let votes =
            run(vec![Election::new(&cfg(1, 3), make(1, 1), 1, 7), Election::new(&cfg(2, 3), make(1, 2), 1, 1), Election::new(&cfg(3, 3), make(1, 1), 1, 1)]);
        assert!(votes.iter().all(|v| v.leader == 2 && v.election_epoch == 7), "{votes:?}");
    }

    #[test]
    fn zab_late_server_follows_the_established_leader_only_if_it_leads() {
        let mut e = Election::new(&cfg(3, 3), make(1, 1), 1, 1);
        e.on_start(0);
        let leader_vote = Vote { leader: 2, zxid: make(1, 5), epoch: 1, election_epoch: 4 };
        let following = Notification { version: 1, vote: leader_vote, state: PeerState::Following, config_version: 0, eligible: true };
        let out = e.on_notification(1, following);
        assert!(out.is_empty() && e.outcome().is_none(), "one follower is not a quorum");
        // A quorum (1 and 3 itself is not counted) still needs the leader's own word.
        let out = e.on_notification(2, Notification { state: PeerState::Leading, ..following });
        assert!(matches!(out[..], [Command::Elected { leader: 2, .. }]), "{out:?}");
        assert_eq!(e.clock(), 4);
    }

    #[test]
    fn zab_observer_never_wins_and_voters_ignore_its_vote() {
        let ocfg = |id| {
            let mut c = Config::new(id, [1, 2, 3], [9]);
            c.finalize_wait_ms = 10;
            c
        };
        let mut voter = Election::new(&ocfg(1), make(1, 1), 1, 1);
        voter.on_start(0);
        let obs = Election::new(&ocfg(9), make(5, 5), 5, 1);
        let out = voter.on_notification(9, obs.notification());
        assert!(matches!(out[..], [Command::Send { to: 9, .. }]), "answers the observer");
        assert_eq!(voter.proposal().leader, 1, "did not adopt the observer");
    }
}
