//! The election half of a member (QuorumPeer's FastLeaderElection side):
//! runs a round of `Election` each time the replica looks for a leader
//! (`Command::Elect`), tells the replica the outcome (`Command::Elected`),
//! answers servers still looking with the vote that ended its last round,
//! and adopts a newer committed config a peer sends (`Command::ConfigAdopted`).
//! It owns no log: what a round needs of the history comes in `Elect`.

use super::{Command, Config, Election, Epoch, Message, Notification, PeerState, ServerId, Vote, Zxid, PROTOCOL_VERSION};
use std::collections::BTreeSet;

/// What a round starts from, as the replica knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    pub last_zxid: Zxid,
    pub current_epoch: Epoch,
    /// Reconfigs logged after the committed config and not known committed:
    /// (zxid, voters). Elections need a quorum of each.
    pub proposed: Vec<(Zxid, BTreeSet<ServerId>)>,
}

#[derive(Debug)]
pub struct Elector {
    cfg: Config,
    /// The round in progress (None once decided, until the next `look`).
    round: Option<Election>,
    /// Election round counter, kept across rounds (ZooKeeper's logicalclock).
    clock: u64,
    /// The vote that ended the last round, told to servers still looking.
    vote: Option<Vote>,
    /// The last round's inputs, to start over under a newer config.
    last_look: Look,
    halted: bool,
    now_ms: u64,
}

impl Elector {
    pub fn new(cfg: Config) -> Elector {
        Elector { cfg, round: None, clock: 0, vote: None, last_look: Look::default(), halted: false, now_ms: 0 }
    }

    pub fn is_looking(&self) -> bool {
        self.round.is_some()
    }

    /// What this server tells lookers it is doing: the role its last
    /// round led to, under the config in force now (a reconfig may have
    /// made an observer a follower since).
    pub fn state(&self) -> PeerState {
        match (&self.round, self.vote) {
            (None, Some(v)) if !self.halted && v.leader == self.cfg.my_id => PeerState::Leading,
            (None, Some(_)) if !self.halted && self.cfg.is_observer() => PeerState::Observing,
            (None, Some(_)) if !self.halted => PeerState::Following,
            _ => PeerState::Looking,
        }
    }

    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The replica left its role (or started): a new round.
    pub fn look(&mut self, look: Look, now_ms: u64) -> Vec<Command> {
        if self.halted {
            return Vec::new();
        }
        self.now_ms = now_ms;
        let version = self.cfg.config_version;
        self.cfg.proposed_voters = look.proposed.iter().filter(|(z, _)| *z > version).map(|(_, v)| v.clone()).collect();
        self.last_look = look;
        self.clock += 1;
        let mut e = Election::new(&self.cfg, self.last_look.last_zxid, self.last_look.current_epoch, self.clock);
        let mut out = e.on_start(now_ms);
        self.round = Some(e);
        self.after_round(&mut out);
        out
    }

    /// A decided round: remember the vote and the role it leads to. The
    /// round already put `Command::Elected` in `out`.
    fn after_round(&mut self, out: &mut [Command]) {
        let Some(e) = &self.round else { return };
        self.clock = self.clock.max(e.clock());
        let Some(vote) = e.outcome() else { return };
        debug_assert!(out.iter().any(|c| matches!(c, Command::Elected { .. })));
        self.vote = Some(vote);
        self.round = None;
    }

    pub fn on_notification(&mut self, from: ServerId, n: Notification) -> Vec<Command> {
        let mut out = Vec::new();
        if self.halted {
            return out;
        }
        if let Some(e) = &mut self.round {
            out.extend(e.on_notification(from, n));
            self.after_round(&mut out);
        } else if n.state == PeerState::Looking {
            // Past the election: tell the looker whom we follow (or that we lead).
            if let Some(vote) = self.vote {
                let me = self.cfg.my_id;
                let eligible = self.cfg.voters.contains(&me) || self.cfg.proposed_voters.iter().any(|p| p.contains(&me));
                let msg = Message::Notification(Notification {
                    version: PROTOCOL_VERSION,
                    vote,
                    state: self.state(),
                    config_version: self.cfg.config_version,
                    eligible,
                });
                out.push(Command::Send { to: from, msg });
            }
        }
        if n.config_version < self.cfg.config_version && !self.cfg.config_data.is_empty() {
            out.push(Command::Send { to: from, msg: Message::Config { data: self.cfg.config_data.clone() } });
        }
        out
    }

    /// A peer's committed config, newer than ours: adopt it (a committed
    /// config is safe to vote under) and, if looking, start over with it.
    pub fn on_config(&mut self, data: Vec<u8>) -> Vec<Command> {
        let mut out = Vec::new();
        let Some((voters, observers, version)) = super::config_members(&data) else { return out };
        if self.halted || version <= self.cfg.config_version || voters.is_empty() {
            return out;
        }
        self.set_membership(voters, observers, version, data.clone());
        out.push(Command::ConfigAdopted { data });
        if self.round.is_some() {
            let look = self.last_look.clone();
            out.extend(self.look(look, self.now_ms));
        }
        out
    }

    /// The replica activated a config (a reconfig committed, one came in a
    /// SNAP, or one was adopted): vote under it from now on.
    pub fn set_membership(&mut self, voters: BTreeSet<ServerId>, observers: BTreeSet<ServerId>, version: Zxid, data: Vec<u8>) {
        if voters.is_empty() || version <= self.cfg.config_version {
            return;
        }
        if !data.is_empty() {
            self.cfg.config_data = data;
        }
        self.cfg.voters = voters;
        self.cfg.observers = observers;
        self.cfg.config_version = version;
        self.cfg.proposed_voters.clear();
    }

    pub fn on_tick(&mut self, now_ms: u64) -> Vec<Command> {
        self.now_ms = now_ms;
        let Some(e) = &mut self.round else { return Vec::new() };
        let mut out = e.on_tick(now_ms);
        self.after_round(&mut out);
        out
    }

    pub fn on_connected(&mut self, peer: ServerId) -> Vec<Command> {
        match &mut self.round {
            Some(e) => e.on_connected(peer),
            None => Vec::new(),
        }
    }

    pub fn on_disconnected(&mut self, peer: ServerId) {
        if let Some(e) = &mut self.round {
            e.on_disconnected(peer);
        }
    }

    /// A safety check failed on this member: it takes no further part.
    pub fn halt(&mut self) {
        self.halted = true;
        self.round = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zab::zxid::make;

    fn cfg(me: ServerId) -> Config {
        let mut c = Config::new(me, [1, 2, 3], []);
        c.finalize_wait_ms = 0;
        c
    }

    fn notification_from(out: &[Command]) -> Notification {
        out.iter()
            .find_map(|c| match c {
                Command::Broadcast { msg: Message::Notification(n), .. } | Command::Send { msg: Message::Notification(n), .. } => Some(*n),
                _ => None,
            })
            .expect("a notification")
    }

    #[test]
    fn a_round_decides_once_a_quorum_agrees_and_then_answers_lookers() {
        let mut e = Elector::new(cfg(3));
        let out = e.look(Look { last_zxid: make(1, 5), current_epoch: 1, proposed: vec![] }, 0);
        let mine = notification_from(&out);
        assert_eq!((mine.vote.leader, mine.state), (3, PeerState::Looking));
        assert!(e.is_looking());
        // 2 votes for 3 too: a quorum of {1,2,3}.
        let from_2 = Notification { vote: Vote { leader: 3, ..mine.vote }, ..mine };
        let out = e.on_notification(2, from_2);
        assert!(out.iter().any(|c| matches!(c, Command::Elected { leader: 3, .. })), "{out:?}");
        assert_eq!(e.state(), PeerState::Leading);
        assert!(!e.is_looking());
        // A server still looking hears that 3 leads.
        let looker = Notification { vote: Vote { leader: 1, zxid: make(1, 2), epoch: 1, election_epoch: 1 }, ..mine };
        let answer = notification_from(&e.on_notification(1, looker));
        assert_eq!((answer.vote.leader, answer.state), (3, PeerState::Leading));
    }

    #[test]
    fn a_newer_config_is_adopted_and_restarts_the_round() {
        let mut e = Elector::new(cfg(3));
        e.look(Look { last_zxid: make(1, 5), current_epoch: 1, proposed: vec![(make(1, 6), [3, 4, 5].into())] }, 0);
        let clock = e.clock();
        let text = b"server.3=127.0.0.1:1:2:participant\nserver.4=127.0.0.1:3:4:participant\nversion=100000007".to_vec();
        let out = e.on_config(text.clone());
        assert!(out.contains(&Command::ConfigAdopted { data: text.clone() }));
        assert_eq!(e.clock(), clock + 1, "a new round under the adopted config");
        let n = notification_from(&out[1..]);
        assert_eq!(n.config_version, 0x1_0000_0007);
        assert!(e.on_config(text).is_empty(), "not newer the second time");
    }
}
